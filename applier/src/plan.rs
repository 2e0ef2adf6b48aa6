//! Planning: decide what each function of the patch does, resolve every undefined symbol, check
//! that every replaced function can hold its jump, lay the region out and link it once at a
//! candidate address so relocation problems surface before anything is written.

use std::collections::BTreeMap;

use object::elf;

use crate::apply::refuse_if_applied;
use crate::artifact::{FunctionAction, Manifest, Preimage, SymbolRef};
use crate::error::ApplyError;
use crate::installed::{in_effect_at, installed_patches, InstalledPatch};
use crate::layout::{Layout, PAGE};
use crate::link::Linker;
use crate::object_file::{PatchObject, Placement, SectionClass};
use crate::ptrace::read_memory;
use crate::region;
use crate::resolve::runtime_address;
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
    pub(crate) pid: i32,
    pub(crate) object: PatchObject,
    pub(crate) layout: Layout,
    pub(crate) externals: BTreeMap<usize, u64>,
    pub(crate) redirects: Vec<Redirect>,
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
}

/// Resolves and checks everything needed to apply `patch` to `target`; writes nothing.
pub fn plan(target: &Target, patch: &PatchObject) -> Result<Plan, ApplyError> {
    let functions = match patch.manifest() {
        Some(manifest) => {
            check_build_id(target, manifest)?;
            manifest_functions(target, patch, manifest)?
        }
        None => plain_functions(target, patch)?,
    };
    let mut redirects = Vec::new();
    for (index, function) in functions.iter().enumerate() {
        if let (Some(entry), Some(size)) = (function.old_address, function.old_size) {
            if redirects.iter().any(|r: &Redirect| r.entry == entry) {
                return Err(ApplyError::MalformedObject(format!(
                    "two functions of the patch replace {} at 0x{entry:x}",
                    function.target
                )));
            }
            redirects.push(check_redirect(target, index, function, entry, size)?);
        }
    }
    let (externals, resolutions) = resolve_undefined(target, patch)?;
    let layout = Layout::compute(patch, |sym| is_external_function(target, patch, sym));
    if layout.text_size.saturating_add(layout.data_size) > MAX_IMAGE {
        return Err(ApplyError::MalformedObject(format!(
            "its loadable sections need more than {} MiB",
            MAX_IMAGE >> 20
        )));
    }
    let plan = Plan {
        patch_id: patch.patch_id(),
        functions,
        resolutions,
        pid: target.pid(),
        object: patch.clone(),
        layout,
        externals,
        redirects,
    };
    test_link(target, &plan)?;
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

fn manifest_functions(
    target: &Target,
    patch: &PatchObject,
    manifest: &Manifest,
) -> Result<Vec<PlannedFunction>, ApplyError> {
    let revision = manifest
        .old_revision
        .as_deref()
        .unwrap_or("the revision the patch was made from");
    // The patches already in the process: a function one of them redirected runs its code
    // (and the same patch again is refused as such, not as a mismatch with itself).
    let earlier = if manifest.functions.iter().any(|f| f.preimage.is_some()) {
        installed_patches(target.pid())?
    } else {
        Vec::new()
    };
    refuse_if_applied(target.pid(), &patch.patch_id(), &earlier)?;
    let mut out = Vec::new();
    for function in &manifest.functions {
        let object_symbol = patch.defined_symbol(&function.symbol).ok_or_else(|| {
            ApplyError::ManifestSymbolMissing {
                symbol: function.symbol.clone(),
            }
        })?;
        let (action, old) = match function.action {
            FunctionAction::Replace => {
                let found = lookup_function(target, &function.target)?
                    .ok_or_else(|| missing_function(target, &function.target))?;
                (FunctionAction::Replace, Some(found))
            }
            FunctionAction::Add => (FunctionAction::Add, None),
            FunctionAction::InlinedOnly => match lookup_function(target, &function.target) {
                Ok(Some(found)) => (FunctionAction::Replace, Some(found)),
                Ok(None) | Err(ApplyError::NoSymbolTable { .. }) => {
                    (FunctionAction::InlinedOnly, None)
                }
                Err(e) => return Err(e),
            },
        };
        if let (Some(found), Some(preimage)) = (&old, &function.preimage) {
            let expected = Expected {
                name: function.target.name(),
                revision,
                preimage,
            };
            match in_effect_at(&earlier, found.address) {
                Some((patch, installed)) => {
                    check_stacked(&expected, patch, patch.postimage(installed))?
                }
                None => check_preimage(target, &expected, found)?,
            }
        }
        let mut reason = function.reason.clone();
        if function.action == FunctionAction::InlinedOnly && old.is_some() {
            reason.push_str(" (the running binary still has it, so it is replaced)");
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
            old_size: old.as_ref().map(|f| f.symbol.size),
            object_symbol,
        });
    }
    Ok(out)
}

/// Refuses when a manifest's target build id is that of no module of the process.
fn check_build_id(target: &Target, manifest: &Manifest) -> Result<(), ApplyError> {
    match &manifest.target_build_id {
        Some(expected) if !target.has_build_id(expected) => Err(ApplyError::BuildIdMismatch {
            expected: expected.clone(),
            pid: target.pid(),
            exe: target.exe_path().display().to_string(),
            found: target.build_id().unwrap_or("none").to_string(),
        }),
        _ => Ok(()),
    }
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
fn check_preimage(target: &Target, expected: &Expected, found: &Found) -> Result<(), ApplyError> {
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
    if found.symbol.size != preimage.size {
        return Err(mismatch(format!(
            "it is {} bytes at 0x{:x}, {revision} is {} bytes",
            found.symbol.size, found.address, preimage.size
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

/// Reads the function's first bytes and checks the jump fits. Functions of the executable get a
/// `jmp rel32` (the region is always within reach of it); others the 14-byte absolute jump.
fn check_redirect(
    target: &Target,
    index: usize,
    function: &PlannedFunction,
    entry: u64,
    size: u64,
) -> Result<Redirect, ApplyError> {
    let name = function.target.name();
    let (lo, hi) = target.exe_span();
    let jump = if lo <= entry && entry < hi {
        REL32_LEN
    } else {
        ABS_LEN
    };
    let size = if size < jump as u64 {
        with_padding(target, name, entry, size, jump)?
    } else {
        size
    };
    let len = usize::try_from(size.min(MAX_READ)).unwrap_or(0);
    let code = read_memory(target.pid(), entry, len)?;
    covered_length(name, &code, entry, size, jump)?;
    Ok(Redirect {
        function: index,
        entry,
        size,
        code,
    })
}

/// A function shorter than its jump can still take it when the bytes after it, up to the next
/// symbol, are alignment padding (NOPs or `int3`, never executed): returns the function's size
/// with that padding, or refuses.
fn with_padding(
    target: &Target,
    name: &str,
    entry: u64,
    size: u64,
    jump: usize,
) -> Result<u64, ApplyError> {
    let too_short = |why: String| ApplyError::FunctionTooShort {
        name: name.into(),
        size,
        jump,
        why,
    };
    let Some(next) = target.next_symbol_after(entry) else {
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
    let bytes = read_memory(target.pid(), entry, len)?;
    let start = usize::try_from(size).unwrap_or(usize::MAX);
    match bytes.get(start..) {
        Some(tail) if is_padding(tail, entry.wrapping_add(size)) => Ok(padded),
        _ => Err(too_short(format!(
            "the {} bytes after it up to the next symbol are not all padding (NOPs or int3)",
            padded.saturating_sub(size)
        ))),
    }
}

fn is_external_function(target: &Target, patch: &PatchObject, sym: usize) -> bool {
    let Some(symbol) = patch.symbols.get(sym) else {
        return false;
    };
    if symbol.st_type == elf::STT_FUNC {
        return true;
    }
    target.lookup_global(&symbol.name, true).is_some()
}

/// Resolves every undefined symbol that a loaded section refers to.
fn resolve_undefined(
    target: &Target,
    patch: &PatchObject,
) -> Result<(BTreeMap<usize, u64>, Vec<Resolution>), ApplyError> {
    let bindings = patch
        .manifest()
        .map(|m| m.bindings.as_slice())
        .unwrap_or_default();
    let mut externals = BTreeMap::new();
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
        let found = match &wanted {
            SymbolRef::Global { name } => target.lookup_global(name, false),
            SymbolRef::FileLocal { name, file } => target.lookup_file_local(name, file, false)?,
            SymbolRef::StaticLocal {
                function,
                name,
                file,
            } => target.lookup_static_local(function, name, file)?,
        };
        let (address, module) = match found {
            Some(found) => {
                let address = runtime_address(target, wanted.name(), &found)?;
                (address, target.modules[found.module].path.clone())
            }
            None if symbol.binding == elf::STB_WEAK => (0, "(absent weak symbol)".to_string()),
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
        });
    }
    Ok((externals, resolutions))
}

/// Links once at the address the region would get now, so that unsupported or overflowing
/// relocations are reported by `plan`.
fn test_link(target: &Target, plan: &Plan) -> Result<(), ApplyError> {
    let size = PLAN_HEADER_PAGES * PAGE + plan.image_size();
    let base = region::choose(
        &target.maps,
        target.exe_span(),
        size,
        region::mmap_min_addr(),
    )
    .ok_or(ApplyError::NoRegion {
        pid: target.pid(),
        size,
    })?;
    let text_base = base + PLAN_HEADER_PAGES * PAGE;
    let linker = Linker {
        object: &plan.object,
        layout: &plan.layout,
        externals: &plan.externals,
        text_base,
        data_base: text_base + plan.layout.text_size,
    };
    linker.link().map(|_| ())
}
