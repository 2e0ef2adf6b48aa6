//! Planning: decide what each function of the patch does, resolve every undefined symbol, check
//! that every replaced function can hold its jump, lay the region out and link it once at a
//! candidate address so relocation problems surface before anything is written.

use std::collections::BTreeMap;

use object::elf;

use crate::apply::refuse_if_applied;
use crate::artifact::{FunctionAction, Manifest, Preimage, SymbolRef};
use crate::bind::{bind_global, split_version};
use crate::error::ApplyError;
use crate::installed::{in_effect_at, installed_patches, InstalledFunction, InstalledPatch};
use crate::ipara::{RegisterContract, Thunk};
use crate::layout::{Layout, PAGE};
use crate::ledger::LedgerState;
use crate::link::{Image, Linker, TlsIndex};
use crate::object_file::{PatchObject, Placement, SectionClass};
use crate::ptrace::read_memory;
use crate::region;
use crate::resolve::{runtime_address, tls_module_id, TlsModel};
use crate::target::{Found, Target};
use crate::trampoline::{covered_length, is_padding, ABS_LEN, REL32_LEN};

/// Largest function whose pre-image is compared.
const MAX_PREIMAGE: u64 = 1 << 20;
/// Most bytes of a replaced function read for checks (decoding the entry, branches into it).
const MAX_READ: u64 = 4096;
/// Pages assumed for the ledger header when test-linking at plan time.
const PLAN_HEADER_PAGES: u64 = 1;
/// Largest patch image accepted (text and data zones together).
const MAX_IMAGE: u64 = 256 << 20;

/// A checked plan: what will be redirected, added and linked. Making it writes nothing.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The patch id (from the manifest, or derived from the object bytes).
    pub patch_id: String,
    /// Every function of the patch and what happens to it.
    pub functions: Vec<PlannedFunction>,
    /// How each undefined symbol of the patch resolved.
    pub resolutions: Vec<Resolution>,
    /// The register contract of each replaced function with its unpatched callers.
    pub register_contracts: Vec<RegisterContract>,
    pub(crate) thunks: Vec<Thunk>,
    /// The thunks' `.eh_frame` records and their offset in the text zone.
    pub(crate) thunk_cfi: (u64, Vec<u8>),
    pub(crate) pid: i32,
    pub(crate) object: PatchObject,
    pub(crate) layout: Layout,
    pub(crate) externals: BTreeMap<usize, u64>,
    /// The `tls_index` pair of each thread-local symbol the patch reaches with the
    /// general-dynamic model (`R_X86_64_TLSGD`), by symbol index.
    pub(crate) tls_indices: BTreeMap<usize, TlsIndex>,
    pub(crate) redirects: Vec<Redirect>,
    /// The lowest and highest address of the module the replaced code lives in: the region is
    /// placed within `jmp rel32` reach of all of it.
    pub(crate) near: (u64, u64),
    /// A jump island for each other module with replaced functions, out of the region's reach.
    pub(crate) islands: Vec<crate::island::IslandPlan>,
}

impl Plan {
    /// The linker of this plan's object with the zones at `text_base` and `data_base`.
    pub(crate) fn linker(&self, text_base: u64, data_base: u64) -> Linker<'_> {
        Linker {
            object: &self.object,
            layout: &self.layout,
            externals: &self.externals,
            tls_indices: &self.tls_indices,
            text_base,
            data_base,
        }
    }
}

/// One function of the patch.
#[derive(Debug, Clone)]
pub struct PlannedFunction {
    /// The defining symbol in the patch object.
    pub symbol: String,
    /// The function of the target it stands for.
    pub target: SymbolRef,
    /// Replace (redirect the old function), add, or inlined-only (nothing in the target).
    pub action: FunctionAction,
    /// Why it is in the patch.
    pub reason: String,
    /// The source file defining it, when known (a manifest of this version names it for every
    /// function; otherwise only a `static` function's target does).
    pub file: Option<String>,
    /// Entry of the function being replaced.
    pub old_address: Option<u64>,
    /// Size (`st_size`) of the function being replaced.
    pub old_size: Option<u64>,
    pub(crate) object_symbol: usize,
}

/// How one undefined symbol of the patch resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The undefined symbol in the patch object.
    pub symbol: String,
    /// The target symbol it stands for.
    pub target: SymbolRef,
    /// The address code will use (IFUNCs: the resolved implementation; 0 for absent weak symbols).
    pub address: u64,
    /// The module defining it.
    pub module: String,
    /// Why it bound there: the lookup rule that decided, in words.
    pub rule: String,
}

/// A replaced function's entry, to be overwritten with a jump.
#[derive(Debug, Clone)]
pub(crate) struct Redirect {
    /// Index in [`Plan::functions`].
    pub(crate) function: usize,
    /// Entry address.
    pub(crate) entry: u64,
    /// `st_size`.
    pub(crate) size: u64,
    /// The function's first bytes (up to [`MAX_READ`]) when planned.
    pub(crate) code: Vec<u8>,
    /// The same bytes as the binary has them: where earlier patches' jumps are (the ledger
    /// says which bytes they overwrote), their original bytes, so that no jump written by
    /// hotpatch is ever decoded as instructions.
    pub(crate) original: Vec<u8>,
}

/// Resolves and checks everything needed to apply `patch` to `target`; writes nothing.
pub fn plan(target: &Target, patch: &PatchObject) -> Result<Plan, ApplyError> {
    plan_accepting(target, patch, &[])
}

/// [`plan`], with the register contract refusals whose item (`caller->function`, see
/// [`ApplyError::refusal_item`]) is in `accepted` taken as the operator's `--force`: those
/// callers' registers are left unprotected, and the contract says so.
pub fn plan_accepting(
    target: &Target,
    patch: &PatchObject,
    accepted: &[String],
) -> Result<Plan, ApplyError> {
    // The patches already in the process: a function one of them redirected runs its code.
    let earlier = installed_patches(target.pid())?;
    let functions = match patch.manifest() {
        Some(manifest) => {
            check_build_id(target, manifest)?;
            manifest_functions(target, patch, manifest, &earlier)?
        }
        None => plain_functions(target, patch)?,
    };
    let home = home_module(target, &functions);
    let near = region_anchor(target, &functions, home, &earlier);
    let mut redirects = Vec::new();
    let mut islands = Vec::new();
    for (index, function) in functions.iter().enumerate() {
        if let (Some(entry), Some(size)) = (function.old_address, function.old_size) {
            if redirects.iter().any(|r: &Redirect| r.entry == entry) {
                return Err(ApplyError::MalformedObject(format!(
                    "two functions of the patch replace {} at 0x{entry:x}",
                    function.target
                )));
            }
            let in_reach = near.0 <= entry && entry < near.1
                || crate::island::serve(target, &mut islands, entry, redirects.len());
            let jump = if in_reach { REL32_LEN } else { ABS_LEN };
            let site = Site { index, entry, size };
            redirects.push(check_redirect(target, jump, &earlier, function, site)?);
        }
    }
    let Undefined {
        externals,
        tls_indices,
        resolutions,
    } = resolve_undefined(target, patch, &functions, home)?;
    let layout = Layout::compute(patch, |sym| is_external_function(target, patch, sym));
    if layout.text_size.saturating_add(layout.data_size) > MAX_IMAGE {
        return Err(ApplyError::MalformedObject(format!(
            "its loadable sections need more than {} MiB",
            MAX_IMAGE >> 20
        )));
    }
    let mut plan = Plan {
        patch_id: patch.patch_id(),
        functions,
        resolutions,
        register_contracts: Vec::new(),
        thunks: Vec::new(),
        thunk_cfi: (0, Vec::new()),
        pid: target.pid(),
        object: patch.clone(),
        layout,
        externals,
        tls_indices,
        redirects,
        near,
        islands,
    };
    let image = test_link(target, &plan)?;
    crate::ipara::keep(target, &mut plan, &image, accepted)?;
    if !plan.thunks.is_empty() {
        test_link(target, &plan)?;
    }
    Ok(plan)
}

impl Plan {
    /// Bytes of the region without the ledger header (text and data zones).
    pub fn image_size(&self) -> u64 {
        self.layout.text_size + self.layout.data_size
    }
}

fn lookup_function(target: &Target, wanted: &SymbolRef) -> Result<Option<Found>, ApplyError> {
    match wanted {
        SymbolRef::Global { name } => Ok(target.lookup_global(name, true)),
        SymbolRef::FileLocal { name, file } => target.lookup_file_local(name, file, true),
        SymbolRef::StaticLocal { .. } => Err(ApplyError::MalformedObject(format!(
            "the manifest names {wanted} as a function to replace"
        ))),
    }
}

/// The error for a function that is not there: a stripped executable is the likely reason.
fn missing_function(target: &Target, wanted: &SymbolRef) -> ApplyError {
    let exe = target.exe_module();
    if exe.symbols.has_symtab {
        ApplyError::MissingFunction(wanted.clone())
    } else {
        ApplyError::NoSymbolTable {
            module: exe.path.clone(),
            target: wanted.clone(),
        }
    }
}

/// The module the replaced functions live in (the executable when there are none, or when they
/// are spread over several modules): whose references the patch's are bound like, and near
/// which the region goes.
fn home_module(target: &Target, functions: &[PlannedFunction]) -> usize {
    let mut modules = functions
        .iter()
        .filter_map(|f| f.old_address)
        .map(|address| target.module_at(address).unwrap_or(target.exe));
    match modules.next() {
        Some(first) if modules.all(|m| m == first) => first,
        _ => target.exe,
    }
}

/// The earlier patch whose region holds `address`.
fn region_of(earlier: &[InstalledPatch], address: u64) -> Option<&InstalledPatch> {
    earlier.iter().find(|p| p.region().contains(&address))
}

/// Largest span of patched modules one region is placed near: half of what `rel32` reaches,
/// the other half left for the region to fit in.
const MAX_ANCHOR_SPAN: u64 = 1 << 30;

/// The addresses the region must be within `rel32` reach of: all the modules (or earlier
/// patches' regions, for functions they added) whose functions are replaced when they lie close
/// together (one library, or several libraries mapped near each other), else the `home`
/// module's (then functions elsewhere take the absolute jump).
fn region_anchor(
    target: &Target,
    functions: &[PlannedFunction],
    home: usize,
    earlier: &[InstalledPatch],
) -> (u64, u64) {
    let spans = functions.iter().filter_map(|f| {
        let entry = f.old_address?;
        match target.module_at(entry) {
            Some(module) => Some(target.span_of(module)),
            None => region_of(earlier, entry).map(|p| (p.region().start, p.region().end)),
        }
    });
    let union = spans.reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    match union {
        Some((lo, hi)) if hi - lo <= MAX_ANCHOR_SPAN => (lo, hi),
        _ => target.span_of(home),
    }
}

fn manifest_functions(
    target: &Target,
    patch: &PatchObject,
    manifest: &Manifest,
    earlier: &[InstalledPatch],
) -> Result<Vec<PlannedFunction>, ApplyError> {
    let revision = manifest
        .old_revision
        .as_deref()
        .unwrap_or("the revision the patch was made from");
    // The same patch again is refused as such, not as a mismatch with itself.
    refuse_if_applied(target.pid(), &patch.patch_id(), earlier)?;
    let mut out = Vec::new();
    for function in &manifest.functions {
        let object_symbol = patch.defined_symbol(&function.symbol).ok_or_else(|| {
            ApplyError::ManifestSymbolMissing {
                symbol: function.symbol.clone(),
            }
        })?;
        let (action, old) = match function.action {
            FunctionAction::Replace => {
                let found = replaced_function(target, (earlier, revision), &function.target)?
                    .ok_or_else(|| missing_function(target, &function.target))?;
                (FunctionAction::Replace, Some(found))
            }
            FunctionAction::Add => (FunctionAction::Add, None),
            FunctionAction::InlinedOnly => {
                match replaced_function(target, (earlier, revision), &function.target) {
                    Ok(Some(found)) => (FunctionAction::Replace, Some(found)),
                    Ok(None) | Err(ApplyError::NoSymbolTable { .. }) => {
                        (FunctionAction::InlinedOnly, None)
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if let (Some(found), Some(preimage)) = (&old, &function.preimage) {
            let expected = Expected {
                name: function.target.name(),
                revision,
                preimage,
            };
            match in_effect_at(earlier, found.address).or(found.added_by) {
                Some((patch, installed)) => {
                    check_stacked(&expected, patch, patch.postimage(installed))?
                }
                None => check_preimage(target, &expected, found)?,
            }
        }
        let mut reason = function.reason.clone();
        match old.as_ref().and_then(|f| f.added_by) {
            Some((patch, _)) => reason.push_str(&format!(
                " (patch {} added it: replaced there)",
                patch.patch_id
            )),
            None if function.action == FunctionAction::InlinedOnly && old.is_some() => {
                reason.push_str(" (the running binary still has it, so it is replaced)")
            }
            None => {}
        }
        out.push(PlannedFunction {
            symbol: function.symbol.clone(),
            target: function.target.clone(),
            action,
            reason,
            file: function
                .file
                .clone()
                .or_else(|| function.target.file().map(str::to_string)),
            old_address: old.as_ref().map(|f| f.address),
            old_size: old.as_ref().map(|f| f.size),
            object_symbol,
        });
    }
    Ok(out)
}

/// A function a patch replaces, as it runs now.
struct Replaced<'a> {
    /// Its entry.
    address: u64,
    /// Its size (`st_size`).
    size: u64,
    /// The earlier patch that added it, with its record of it: then its code is that patch's.
    added_by: Option<(&'a InstalledPatch, &'a InstalledFunction)>,
}

/// Where the function `wanted` runs: its symbol in the process's modules, else the code of
/// the newest live patch that added it (a function new at an earlier patch's revision is
/// replaced in that patch's region). `None`: neither has it. `revision` is the one the new
/// patch was made from, for the error about an added function without a fingerprint.
fn replaced_function<'a>(
    target: &Target,
    (earlier, revision): (&'a [InstalledPatch], &str),
    wanted: &SymbolRef,
) -> Result<Option<Replaced<'a>>, ApplyError> {
    let in_binary = lookup_function(target, wanted);
    if let Ok(Some(found)) = &in_binary {
        return Ok(Some(Replaced {
            address: found.address,
            size: found.symbol.size,
            added_by: None,
        }));
    }
    let added = earlier
        .iter()
        .rev()
        .filter(|p| p.is_live())
        .find_map(|patch| {
            let function = patch.functions.iter().find(|f| {
                f.action == FunctionAction::Add
                    && f.name == wanted.name()
                    && wanted
                        .file()
                        .is_none_or(|file| f.file.as_deref() == Some(file))
            })?;
            Some((patch, function))
        });
    let Some((patch, function)) = added else {
        return in_binary.map(|_| None);
    };
    let size = function
        .new_size
        .or_else(|| patch.postimage(function).map(|image| image.size))
        .ok_or_else(|| ApplyError::UnfingerprintedPatch {
            name: function.name.clone(),
            revision: revision.to_string(),
            patch_id: patch.patch_id.clone(),
            running: patch
                .new_revision
                .clone()
                .unwrap_or_else(|| "a revision it does not record".into()),
        })?;
    Ok(Some(Replaced {
        address: function.new_address,
        size,
        added_by: Some((patch, function)),
    }))
}

/// Refuses when a manifest's target build id is that of no module of the process, naming the
/// module the patch's first replaced function lives in (a library's patch carries the library's
/// build id).
fn check_build_id(target: &Target, manifest: &Manifest) -> Result<(), ApplyError> {
    let Some(expected) = &manifest.target_build_id else {
        return Ok(());
    };
    if target.has_build_id(expected) {
        return Ok(());
    }
    let module = manifest
        .functions
        .iter()
        .filter(|f| f.action == FunctionAction::Replace)
        .find_map(|f| lookup_function(target, &f.target).ok().flatten())
        .and_then(|found| target.modules.get(found.module))
        .unwrap_or_else(|| target.exe_module());
    Err(ApplyError::BuildIdMismatch {
        expected: expected.clone(),
        pid: target.pid(),
        exe: module.path.clone(),
        found: module
            .symbols
            .build_id
            .as_deref()
            .unwrap_or("none")
            .to_string(),
    })
}

/// What a replaced function is expected to be: the fingerprint of its code at the patch's old
/// revision.
struct Expected<'a> {
    name: &'a str,
    revision: &'a str,
    preimage: &'a Preimage,
}

/// Compares the function's code in the binary (no patch redirected it) with the fingerprint of
/// its old code.
fn check_preimage(
    target: &Target,
    expected: &Expected,
    found: &Replaced,
) -> Result<(), ApplyError> {
    let Expected {
        name,
        revision,
        preimage,
    } = *expected;
    let mismatch = |detail: String| ApplyError::PreimageMismatch {
        name: name.to_string(),
        revision: revision.to_string(),
        detail,
    };
    if found.size != preimage.size {
        return Err(mismatch(format!(
            "it is {} bytes at 0x{:x}, {revision} is {} bytes",
            found.size, found.address, preimage.size
        )));
    }
    let len = usize::try_from(preimage.size)
        .ok()
        .filter(|&l| l as u64 <= MAX_PREIMAGE)
        .ok_or_else(|| mismatch(format!("{revision} claims {} bytes", preimage.size)))?;
    let code = read_memory(target.pid(), found.address, len)?;
    let starts_with_jump = matches!(code.as_slice(), [0xe9, ..] | [0xff, 0x25, ..]);
    match preimage.first_difference(&code, 0) {
        None => Ok(()),
        Some(_) if starts_with_jump => Err(mismatch(format!(
            "it starts with a jump at 0x{:x} that no patch recorded in the process accounts for",
            found.address
        ))),
        Some(at) => Err(mismatch(format!(
            "its code at 0x{:x} differs at byte {at}",
            found.address
        ))),
    }
}

/// Compares the code of the patch in effect for the function — the fingerprint of its new code,
/// made exactly as pre-images are — with the fingerprint of the old code this patch expects.
fn check_stacked(
    expected: &Expected,
    patch: &InstalledPatch,
    postimage: Option<&Preimage>,
) -> Result<(), ApplyError> {
    let Expected {
        name,
        revision,
        preimage,
    } = *expected;
    let running = patch
        .new_revision
        .clone()
        .unwrap_or_else(|| "a revision it does not record".to_string());
    let Some(postimage) = postimage else {
        return Err(ApplyError::UnfingerprintedPatch {
            name: name.to_string(),
            revision: revision.to_string(),
            patch_id: patch.patch_id.clone(),
            running,
        });
    };
    let detail = if postimage.size != preimage.size {
        Some(format!(
            "its code is {} bytes, {revision} is {} bytes",
            postimage.size, preimage.size
        ))
    } else {
        preimage
            .first_difference_from(postimage)
            .map(|at| format!("its code differs at byte {at}"))
    };
    match detail {
        None => Ok(()),
        Some(detail) => Err(ApplyError::StackedPreimageMismatch {
            name: name.to_string(),
            revision: revision.to_string(),
            patch_id: patch.patch_id.clone(),
            running,
            detail,
        }),
    }
}

fn plain_functions(
    target: &Target,
    patch: &PatchObject,
) -> Result<Vec<PlannedFunction>, ApplyError> {
    let mut out = Vec::new();
    for (index, symbol) in patch.symbols.iter().enumerate() {
        let defined = matches!(symbol.placement, Placement::Section(_));
        if !defined || symbol.binding != elf::STB_GLOBAL || symbol.st_type != elf::STT_FUNC {
            continue;
        }
        let candidates = target.exe_functions_named(&symbol.name);
        let (target_ref, action, reason, old) = match candidates.as_slice() {
            [] => (
                SymbolRef::Global {
                    name: symbol.name.clone(),
                },
                FunctionAction::Add,
                "new (no function of this name in the running binary)".to_string(),
                None,
            ),
            [found] => {
                let target_ref = match &found.file {
                    Some(file) => SymbolRef::FileLocal {
                        name: symbol.name.clone(),
                        file: file.clone(),
                    },
                    None => SymbolRef::Global {
                        name: symbol.name.clone(),
                    },
                };
                (
                    target_ref,
                    FunctionAction::Replace,
                    "same name as a function of the running binary".to_string(),
                    Some(found),
                )
            }
            several => {
                let candidates = several
                    .iter()
                    .map(|f| match &f.file {
                        Some(file) => format!("static in {file}"),
                        None => "global".to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ApplyError::AmbiguousFunction {
                    name: symbol.name.clone(),
                    candidates,
                });
            }
        };
        out.push(PlannedFunction {
            symbol: symbol.name.clone(),
            file: target_ref.file().map(str::to_string),
            target: target_ref,
            action,
            reason,
            old_address: old.map(|f| f.address),
            old_size: old.map(|f| f.symbol.size),
            object_symbol: index,
        });
    }
    if !out.iter().any(|f| f.action == FunctionAction::Replace) {
        return Err(ApplyError::NothingToReplace {
            exe: target.exe_path().display().to_string(),
        });
    }
    Ok(out)
}

/// A replaced function's entry, as [`check_redirect`] gets it.
struct Site {
    /// Index in the plan's functions.
    index: usize,
    /// Entry address.
    entry: u64,
    /// `st_size`.
    size: u64,
}

/// Reads the function's first bytes and checks the jump fits. Functions of the module the
/// region is placed near (`near`) get a `jmp rel32` (the region is always within its reach);
/// others the 14-byte absolute jump. Whole instructions are decoded from the function's
/// original bytes: earlier patches' jumps are undone first, by their ledger records.
fn check_redirect(
    target: &Target,
    jump: usize,
    earlier: &[InstalledPatch],
    function: &PlannedFunction,
    site: Site,
) -> Result<Redirect, ApplyError> {
    let Site { index, entry, size } = site;
    let name = function.target.name();
    let size = if size < jump as u64 {
        with_padding(target, earlier, name, (entry, size), jump)?
    } else {
        size
    };
    let len = usize::try_from(size.min(MAX_READ)).unwrap_or(0);
    let code = read_memory(target.pid(), entry, len)?;
    let original = without_patch_jumps(&code, entry, earlier);
    covered_length(name, &original, entry, size, jump)?;
    Ok(Redirect {
        function: index,
        entry,
        size,
        code,
        original,
    })
}

/// `code` (read at `entry`) with the bytes that the jumps of `earlier` patches overwrote at
/// `entry` put back, newest first, as a revert of each would.
fn without_patch_jumps(code: &[u8], entry: u64, earlier: &[InstalledPatch]) -> Vec<u8> {
    let ranges: Vec<(u64, &str)> = earlier
        .iter()
        .filter(|p| p.state != LedgerState::Reverted)
        .flat_map(|p| {
            p.record
                .functions
                .iter()
                .filter_map(|f| f.overwritten.as_ref())
                .filter(|o| o.address == entry)
                .map(|o| (p.sequence, o.original_hex.as_str()))
        })
        .collect();
    undo_jumps(code, ranges)
}

/// `code` with each `(sequence, original bytes in hex)` written back over its start, highest
/// sequence first.
fn undo_jumps(code: &[u8], mut ranges: Vec<(u64, &str)>) -> Vec<u8> {
    ranges.sort_by_key(|&(sequence, _)| std::cmp::Reverse(sequence));
    let mut bytes = code.to_vec();
    for (_, hex) in ranges {
        let original = crate::revert::unhex(hex).unwrap_or_default();
        for (byte, value) in bytes.iter_mut().zip(original) {
            *byte = value;
        }
    }
    bytes
}

/// A function shorter than its jump can still take it when the bytes after it, up to the next
/// symbol (in an earlier patch's region: the next function its ledger records), are alignment
/// padding (NOPs or `int3`, never executed) as the binary has them (an earlier patch's jump
/// over them undone): returns the function's size with that padding, or refuses.
fn with_padding(
    target: &Target,
    earlier: &[InstalledPatch],
    name: &str,
    (entry, size): (u64, u64),
    jump: usize,
) -> Result<u64, ApplyError> {
    let too_short = |why: String| ApplyError::FunctionTooShort {
        name: name.into(),
        size,
        jump,
        why,
    };
    let next = target
        .next_symbol_after(entry)
        .or_else(|| next_patch_function(earlier, entry));
    let Some(next) = next else {
        return Err(too_short(
            "no symbol follows it in its module, so no padding after it can be relied on".into(),
        ));
    };
    let padded = next.saturating_sub(entry).min(MAX_READ);
    if padded < jump as u64 {
        return Err(too_short(format!(
            "no padding before the next symbol: {padded} bytes until the next symbol (at 0x{next:x}), the jump needs {jump}"
        )));
    }
    let len = usize::try_from(padded).unwrap_or(0);
    let bytes = without_patch_jumps(&read_memory(target.pid(), entry, len)?, entry, earlier);
    let start = usize::try_from(size).unwrap_or(usize::MAX);
    match bytes.get(start..) {
        Some(tail) if is_padding(tail, entry.wrapping_add(size)) => Ok(padded),
        _ => Err(too_short(format!(
            "the {} bytes after it up to the next symbol are not all padding (NOPs or int3)",
            padded.saturating_sub(size)
        ))),
    }
}

/// The start of the function that follows `entry` in the earlier patch whose region holds it,
/// by that patch's ledger.
fn next_patch_function(earlier: &[InstalledPatch], entry: u64) -> Option<u64> {
    region_of(earlier, entry)?
        .functions
        .iter()
        .map(|f| f.new_address)
        .filter(|&a| a > entry)
        .min()
}

fn is_external_function(target: &Target, patch: &PatchObject, sym: usize) -> bool {
    let Some(symbol) = patch.symbols.get(sym) else {
        return false;
    };
    if symbol.st_type == elf::STT_FUNC {
        return true;
    }
    target
        .lookup_global(split_version(&symbol.name).0, true)
        .is_some()
}

/// What the undefined symbols of the patch resolved to.
struct Undefined {
    /// The address of each, by symbol index.
    externals: BTreeMap<usize, u64>,
    /// The `tls_index` of each thread-local one reached with the general-dynamic model.
    tls_indices: BTreeMap<usize, TlsIndex>,
    /// How each resolved, in words.
    resolutions: Vec<Resolution>,
}

/// How the patch's code reaches symbol `index`: general-dynamic when every relocation against
/// it is `R_X86_64_TLSGD` (what gcc emits for an extern `__thread` variable under `-fPIC`),
/// else initial-exec (also for symbols that are not thread-local, where it does not matter).
fn tls_model_of(patch: &PatchObject, index: usize) -> TlsModel {
    let mut relocations = patch
        .sections
        .iter()
        .filter(|s| s.class != SectionClass::Skip)
        .flat_map(|s| s.relocations.iter())
        .filter(|r| r.symbol == Some(index))
        .peekable();
    let some = relocations.peek().is_some();
    if some && relocations.all(|r| r.r_type == elf::R_X86_64_TLSGD) {
        TlsModel::GeneralDynamic
    } else {
        TlsModel::InitialExec
    }
}

/// Resolves every undefined symbol that a loaded section refers to; globals as the references
/// of module `home` (where the replaced code lives) were bound.
fn resolve_undefined(
    target: &Target,
    patch: &PatchObject,
    functions: &[PlannedFunction],
    home: usize,
) -> Result<Undefined, ApplyError> {
    let bindings = patch
        .manifest()
        .map(|m| m.bindings.as_slice())
        .unwrap_or_default();
    let mut externals = BTreeMap::new();
    let mut tls_indices = BTreeMap::new();
    let mut resolutions = Vec::new();
    let referenced = patch
        .sections
        .iter()
        .filter(|s| s.class != SectionClass::Skip)
        .flat_map(|s| s.relocations.iter().filter_map(|r| r.symbol));
    for index in referenced {
        let Some(symbol) = patch.symbols.get(index) else {
            return Err(ApplyError::MalformedObject(format!(
                "relocation against missing symbol #{index}"
            )));
        };
        if symbol.placement != Placement::Undefined || externals.contains_key(&index) {
            continue;
        }
        let wanted = bindings
            .iter()
            .find(|b| b.symbol == symbol.name)
            .map(|b| b.target.clone())
            .unwrap_or_else(|| SymbolRef::Global {
                name: symbol.name.clone(),
            });
        let tls = tls_model_of(patch, index);
        let bound = match &wanted {
            SymbolRef::Global { name } => {
                let requesters = requesters_of(target, patch, functions, index, home);
                bind_global_for(target, name, &requesters, tls)?
            }
            SymbolRef::FileLocal { name, file } => target
                .lookup_file_local(name, file, false)?
                .map(|found| local_binding(target, &wanted, &found, "file-local symbol", tls))
                .transpose()?,
            SymbolRef::StaticLocal {
                function,
                name,
                file,
            } => target
                .lookup_static_local(function, name, file)?
                .map(|found| local_binding(target, &wanted, &found, "static local", tls))
                .transpose()?,
        };
        if tls == TlsModel::GeneralDynamic {
            if let Some(bound) = &bound {
                let module = bound.module.ok_or_else(|| {
                    ApplyError::MalformedObject(format!(
                        "the thread-local `{}` bound to no module",
                        symbol.name
                    ))
                })?;
                let index_pair = TlsIndex {
                    module_id: tls_module_id(target, &symbol.name, module)?,
                    offset: bound.address,
                };
                tls_indices.insert(index, index_pair);
            }
        }
        let (address, module, rule) = match bound {
            Some(bound) => {
                let module = bound.module.and_then(|m| target.modules.get(m));
                let module = module.map_or_else(|| "(no module)".to_string(), |m| m.path.clone());
                (bound.address, module, bound.rule)
            }
            None if symbol.binding == elf::STB_WEAK => (
                0,
                "(absent weak symbol)".to_string(),
                "weak, and defined nowhere: null".to_string(),
            ),
            None => {
                return Err(ApplyError::UnresolvedSymbol {
                    symbol: symbol.name.clone(),
                    target: wanted,
                })
            }
        };
        externals.insert(index, address);
        resolutions.push(Resolution {
            symbol: symbol.name.clone(),
            target: wanted,
            address,
            module,
            rule,
        });
    }
    Ok(Undefined {
        externals,
        tls_indices,
        resolutions,
    })
}

/// The modules whose code refers to the patch's symbol `index`: for each section with a
/// relocation against it, the module of the function that section replaces (with
/// `-ffunction-sections` every function has its own); `home` for the other sections (data,
/// added functions).
fn requesters_of(
    target: &Target,
    patch: &PatchObject,
    functions: &[PlannedFunction],
    index: usize,
    home: usize,
) -> Vec<usize> {
    let module_of_section = |section: usize| {
        functions
            .iter()
            .filter(|f| {
                patch.symbols.get(f.object_symbol).map(|s| s.placement)
                    == Some(Placement::Section(section))
            })
            .find_map(|f| target.module_at(f.old_address?))
            .unwrap_or(home)
    };
    let mut modules: Vec<usize> = patch
        .sections
        .iter()
        .filter(|s| s.class != SectionClass::Skip)
        .filter(|s| s.relocations.iter().any(|r| r.symbol == Some(index)))
        .map(|s| module_of_section(s.index))
        .collect();
    modules.sort_unstable();
    modules.dedup();
    if modules.is_empty() {
        modules.push(home);
    }
    modules
}

/// Binds the global `name` as the code of every module of `requesters` would reach it; code of
/// two modules that would reach different definitions cannot share one patch symbol: refused.
fn bind_global_for(
    target: &Target,
    name: &str,
    requesters: &[usize],
    tls: TlsModel,
) -> Result<Option<crate::bind::Bound>, ApplyError> {
    let mut bound: Option<(usize, Option<crate::bind::Bound>)> = None;
    for &requester in requesters {
        let this = bind_global(target, name, requester, tls)?;
        match &bound {
            None => bound = Some((requester, this)),
            Some((first, earlier)) => {
                let address = |b: &Option<crate::bind::Bound>| b.as_ref().map(|b| b.address);
                if address(earlier) != address(&this) {
                    let path = |m: usize| target.modules[m].path.clone();
                    return Err(ApplyError::ConflictingBinding {
                        symbol: name.to_string(),
                        first: path(*first),
                        second: path(requester),
                    });
                }
            }
        }
    }
    Ok(bound.and_then(|(_, b)| b))
}

/// A `static` of a source file bound to the storage `found` (its module's symbol or DWARF).
fn local_binding(
    target: &Target,
    wanted: &SymbolRef,
    found: &Found,
    what: &str,
    tls: TlsModel,
) -> Result<crate::bind::Bound, ApplyError> {
    let path = &target.modules[found.module].path;
    let file = found.file.as_deref().unwrap_or("its file");
    let (address, note) = runtime_address(target, wanted.name(), found, tls)?;
    Ok(crate::bind::Bound {
        address,
        module: Some(found.module),
        rule: format!("{what} of {file} in {path}{note}"),
    })
}
/// Links once at the address the region would get now, so that unsupported or overflowing
/// relocations are reported by `plan`; the image shows the patch's code as it would run.
fn test_link(target: &Target, plan: &Plan) -> Result<Image, ApplyError> {
    let size = PLAN_HEADER_PAGES * PAGE + plan.image_size();
    let base = region::choose(
        &target.maps,
        plan.near,
        target.exe_span(),
        size,
        region::mmap_min_addr(),
    )
    .ok_or(ApplyError::NoRegion {
        pid: target.pid(),
        size,
    })?;
    let text_base = base + PLAN_HEADER_PAGES * PAGE;
    let linker = plan.linker(text_base, text_base + plan.layout.text_size);
    linker.link()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::hex;
    use crate::trampoline::{absolute_jump, jump_bytes};

    #[test]
    fn stacked_jumps_are_undone_newest_first() {
        // The binary's code: 13 bytes of `imul eax,edi,7; add eax,3; ...`, then padding.
        let binary: Vec<u8> = vec![
            0x6b, 0xc7, 0x07, 0x83, 0xc0, 0x03, 0xc3, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xcc,
            0xcc, 0xcc,
        ];
        // Patch 1 wrote a 14-byte absolute jump, patch 2 a rel32 jump over it.
        let first = absolute_jump(0x7f12_3456_789a);
        let mut memory = binary.clone();
        memory[..14].copy_from_slice(&first);
        let under_second = memory[..5].to_vec();
        let second = jump_bytes(0x1000, 0x2000);
        memory[..5].copy_from_slice(&second);
        let ranges = [(2, hex(&under_second)), (1, hex(&binary[..14]))];
        let ranges = ranges.iter().map(|(s, h)| (*s, h.as_str())).collect();
        assert_eq!(undo_jumps(&memory, ranges), binary);
    }
}
