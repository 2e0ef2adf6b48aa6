//! Applying a plan: allocate the region, link the patch at its address, write the ledger header,
//! code and data while the target runs, protect the code, then commit the jumps in one short stop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::artifact::{FunctionAction, SymbolRef};
use crate::commit::{commit, Busy, SafePoint, Safety, Site, Stops};
use crate::error::ApplyError;
use crate::installed::{installed_patches, InstalledPatch};
use crate::layout::PAGE;
use crate::ledger::{
    self, LedgerFunction, LedgerRecord, LedgerState, OverwrittenRange, UnwindRecord,
};
use crate::link::Image;
use crate::maps::read_maps;
use crate::plan::Plan;
use crate::ptrace::{read_memory, write_memory};
use crate::references::ReturnTargets;
use crate::region::{self, PROT_EXEC, PROT_READ};
use crate::target::Target;
use crate::trampoline::{branches_into, covered_length, jump_bytes};
use crate::unwind::StackUnwinder;

/// Tunables of [`apply`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long to keep retrying while a thread is inside code being overwritten.
    pub timeout: Duration,
    /// When a thread's frame is in the way, wait for that frame to return (a breakpoint at its
    /// return address, the commit at the stop it causes) instead of polling; within `timeout`.
    pub wait_return: bool,
    /// Switch the threads to the new code one at a time (`commit_threadwise`), where it
    /// applies, instead of committing at one stop of every thread (the default: no moment
    /// stops every thread together, see the README's "Committing thread by thread").
    pub threadwise: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            timeout: Duration::from_secs(3),
            wait_return: false,
            threadwise: true,
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The patch id.
    pub patch_id: String,
    /// How long every thread was stopped for the commit, in microseconds.
    pub pause_us: u64,
    /// How many threads were stopped.
    pub threads: usize,
    /// All stops together, in microseconds (stops that found a thread in the way included).
    pub total_stopped_us: u64,
    /// How many times every thread was stopped.
    pub stops: u32,
    /// Threads whose stack could not be unwound to its end at the commit (there were none in
    /// the way as far as the walk saw).
    pub incomplete_stacks: usize,
    /// Order of this patch among the patches of the process.
    pub sequence: u64,
    /// Start of the region holding the patch.
    pub region_address: u64,
    /// Size of the region.
    pub region_size: u64,
    /// Every function of the patch.
    pub functions: Vec<AppliedFunction>,
    /// The register contract of each replaced function with its unpatched callers.
    pub register_contracts: Vec<crate::ipara::RegisterContract>,
    /// How the commit went: which strategy, and what it cost the threads.
    pub commit: CommitReport,
}

/// How a commit stopped the threads.
#[derive(Debug, Clone, Serialize)]
pub struct CommitReport {
    /// `threadwise` (threads switched one at a time) or `stop-all` (every thread at one stop).
    pub strategy: String,
    /// Why the stop-all commit was used when the threadwise one was asked for (`--wait-return`, `--at`,
    /// code the threadwise commit cannot displace, a kernel without membarrier SYNC_CORE).
    pub stop_all_because: Option<String>,
    /// The longest time any single thread was stopped, in microseconds: an upper bound (counted
    /// from the interrupt, or for a trap at an entry from the last moment no stop was waiting).
    pub max_thread_stop_us: u64,
    /// The longest time every thread was stopped together, in microseconds (0: never).
    pub all_stopped_us: u64,
}

/// One function of an applied patch.
#[derive(Debug, Clone, Serialize)]
pub struct AppliedFunction {
    /// Source name of the function.
    pub name: String,
    /// Source file defining the function, when the patch names it (a plain object names the
    /// file of `static` functions only).
    pub file: Option<String>,
    /// What was done.
    pub action: FunctionAction,
    /// Why it is in the patch.
    pub reason: String,
    /// Entry of the replaced function (now a jump).
    pub old_address: Option<u64>,
    /// Address of the new code.
    pub new_address: u64,
}

/// What a live dry run ([`check`]) found: the stop it would need, measured.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The longest single stop, in microseconds: the pause the commit would cause, predicted.
    pub pause_us: u64,
    /// All stops together, in microseconds.
    pub total_stopped_us: u64,
    /// How many times every thread was stopped.
    pub stops: u32,
    /// Threads stopped.
    pub threads: usize,
    /// Threads whose stack could not be unwound to its end.
    pub incomplete_stacks: usize,
}

/// A live dry run: checks that every entry still holds the bytes the plan read, then stops every
/// thread exactly as the commit would (waiting, up to the timeout, until no thread is inside a
/// function being replaced) and resumes at once. Nothing is written to the process.
pub fn check(
    target: &Target,
    plan: &Plan,
    options: &ApplyOptions,
) -> Result<CheckReport, ApplyError> {
    let pid = target.pid();
    for redirect in &plan.redirects {
        if read_memory(pid, redirect.entry, redirect.code.len())? != redirect.code {
            let name = plan.functions[redirect.function].target.name().to_string();
            return Err(ApplyError::CodeChanged {
                name,
                address: redirect.entry,
            });
        }
    }
    // Where the region would go decides the jumps' length, hence the bytes they would cover.
    let maps = read_maps(pid)?;
    let size = PAGE + plan.image_size();
    let min = region::mmap_min_addr();
    let base = region::choose(&maps, plan.near, target.exe_span(), size, min)
        .ok_or(ApplyError::NoRegion { pid, size })?;
    let islands = plan
        .islands
        .iter()
        .map(|island| {
            let size = island.size();
            region::choose(&maps, island.near, target.exe_span(), size, min)
                .ok_or(ApplyError::NoRegion { pid, size })
        })
        .collect::<Result<Vec<u64>, ApplyError>>()?;
    let predicted = vec![base + PAGE; plan.functions.len()];
    let (predicted, _) = crate::island::entry_targets(plan, &predicted, &islands);
    let sites = sites(plan, &predicted)?;
    let busy = Busy::for_sites(&sites);
    let contexts = ReturnTargets::for_sites(pid, &sites);
    let earlier = installed_patches(pid).unwrap_or_default();
    refuse_if_applied(pid, &plan.patch_id, &earlier)?;
    let unwinder = StackUnwinder::for_process(target, pid, &earlier);
    // A dry run places no breakpoint: it only polls.
    let safety = Safety {
        busy: &busy,
        unwinder: Some(&unwinder),
        incomplete_blocks: true,
        timeout: options.timeout,
        at: None,
        contexts: Some(&contexts),
        wait_return: false,
    };
    let mut stops = Stops::default();
    crate::commit::stop_safely(pid, &safety, &mut stops, |_, _| Ok(()))?;
    Ok(CheckReport {
        pause_us: stops.pause_us,
        total_stopped_us: stops.total_us,
        stops: stops.count,
        threads: stops.threads,
        incomplete_stacks: stops.incomplete_stacks,
    })
}

/// Refuses the patch `patch_id` when it is applied to the process already.
pub(crate) fn refuse_if_applied(
    pid: i32,
    patch_id: &str,
    earlier: &[InstalledPatch],
) -> Result<(), ApplyError> {
    match earlier
        .iter()
        .find(|p| p.patch_id == patch_id && p.state == LedgerState::Applied)
    {
        Some(same) => Err(ApplyError::AlreadyApplied {
            patch_id: same.patch_id.clone(),
            pid,
            sequence: same.sequence,
        }),
        None => Ok(()),
    }
}

/// How many times a region is re-chosen when its range was taken meanwhile.
const REGION_ATTEMPTS: usize = 3;

/// Applies a plan to the running target. On any error before the commit the region is unmapped
/// again and the target is left as it was; no path leaves a thread stopped.
pub fn apply(
    target: &Target,
    plan: &Plan,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    apply_with(target, plan, options, None)
}

/// Like [`apply`], but commits only when a thread reaches the entry of `function` (a safe point
/// the operator chose, e.g. the top of an event loop): a breakpoint is placed there while the
/// process runs traced, and the commit happens at the stop it causes (the usual safety check
/// still applies). Gives up after `options.timeout`. While it waits the breakpoint is in the
/// process: if the tool is killed then, the next thread to reach `function` dies of `SIGTRAP`.
pub fn apply_at(
    target: &Target,
    plan: &Plan,
    options: &ApplyOptions,
    function: &str,
) -> Result<ApplyReport, ApplyError> {
    let point = safe_point(target, function)?;
    apply_with(target, plan, options, Some(point))
}

/// The safe point at the entry of `function`: a global, else the one `static` function of that
/// name.
pub(crate) fn safe_point(target: &Target, function: &str) -> Result<SafePoint, ApplyError> {
    let at = |address| SafePoint {
        name: function.to_string(),
        address,
    };
    if let Some(found) = target.lookup_global(function, true) {
        return Ok(at(found.address));
    }
    let locals = target.exe_functions_named(function);
    match locals.as_slice() {
        [one] => Ok(at(one.address)),
        [] => Err(ApplyError::MissingFunction(SymbolRef::Global {
            name: function.to_string(),
        })),
        several => Err(ApplyError::AmbiguousFunction {
            name: function.to_string(),
            candidates: several
                .iter()
                .map(|f| f.file.clone().unwrap_or_else(|| "global".into()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn apply_with(
    target: &Target,
    plan: &Plan,
    options: &ApplyOptions,
    at: Option<SafePoint>,
) -> Result<ApplyReport, ApplyError> {
    let pid = target.pid();
    if pid != plan.pid {
        return Err(ApplyError::ProcRead {
            pid,
            what: "the plan".into(),
            detail: format!("it was made for pid {}", plan.pid),
        });
    }
    let _one_at_a_time = crate::process_lock::lock(pid)?;
    let waits = match (&at, options.wait_return) {
        (Some(_), _) => Some("--at"),
        (None, true) => Some("--wait-return"),
        (None, false) => None,
    };
    if let Some(option) = waits.filter(|_| crate::ptrace::group_stopped(pid)) {
        return Err(ApplyError::ProcessStopped {
            pid,
            option: option.into(),
        });
    }
    for redirect in &plan.redirects {
        if read_memory(pid, redirect.entry, redirect.code.len())? != redirect.code {
            let name = plan.functions[redirect.function].target.name().to_string();
            return Err(ApplyError::CodeChanged {
                name,
                address: redirect.entry,
            });
        }
    }
    // Earlier patches: their order, and names for their code in messages.
    let earlier = installed_patches(pid).unwrap_or_default();
    refuse_if_applied(pid, &plan.patch_id, &earlier)?;
    let sequence = earlier.iter().map(|p| p.sequence).max().unwrap_or(0) + 1;
    let unwinder = StackUnwinder::for_process(target, pid, &earlier);
    // Every number at its longest: the header's size is bounded before anything is placed.
    let most = vec![u64::MAX; plan.islands.len()];
    let stamp = Stamp {
        now: u64::MAX,
        sequence: u64::MAX,
        base: u64::MAX,
        size: u64::MAX,
        text_base: u64::MAX,
        islands: crate::island::records(plan, &most),
    };
    let (_, via) = crate::island::entry_targets(plan, &vec![u64::MAX; plan.functions.len()], &most);
    let header_bound = ledger::encode(&record(plan, &[], &via, &stamp, &[]));
    let header_size = (header_bound.len() as u64).next_multiple_of(PAGE);
    let stub_space =
        (plan.redirects.len() as u64 * crate::commit_threadwise::STUB_SIZE).next_multiple_of(PAGE);
    let image_end = (header_size + plan.image_size()).next_multiple_of(PAGE);
    let region_size = image_end + stub_space;
    let base = allocate_region(target, plan.near, region_size)?;
    let mut prepared = Prepared {
        stubs_at: base + image_end,
        at,
        unwinder,
        sequence,
        base,
        header_size,
        region_size,
        islands: Vec::new(),
    };
    let result = allocate_islands(target, plan, &mut prepared)
        .and_then(|()| write_and_commit(target, plan, options, &mut prepared));
    // A commit whose helper vanished may have left jumps (or breakpoints) leading into the
    // region: it stays for `list` to show and `revert` to settle.
    let unknown = matches!(result, Err(ApplyError::CommitUnknown { .. }));
    if result.is_err() && !unknown {
        for (island, &at) in plan.islands.iter().zip(&prepared.islands) {
            region::release(pid, at, island.size());
        }
        region::release(pid, base, region_size);
    }
    result
}

/// Maps a jump island near each far module of the plan (see `island`), into `prepared`.
fn allocate_islands(
    target: &Target,
    plan: &Plan,
    prepared: &mut Prepared,
) -> Result<(), ApplyError> {
    for island in &plan.islands {
        let at = allocate_region(target, island.near, island.size())?;
        prepared.islands.push(at);
    }
    Ok(())
}

/// Maps the region within reach of `near` (the span of the patched module).
fn allocate_region(target: &Target, near: (u64, u64), size: u64) -> Result<u64, ApplyError> {
    let pid = target.pid();
    let mut last_error = None;
    for _ in 0..REGION_ATTEMPTS {
        let maps = read_maps(pid)?;
        let min = region::mmap_min_addr();
        let base = region::choose(&maps, near, target.exe_span(), size, min)
            .ok_or(ApplyError::NoRegion { pid, size })?;
        match region::allocate(pid, base, size) {
            Ok(()) => return Ok(base),
            Err(e @ ApplyError::RemoteCall { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(ApplyError::NoRegion { pid, size }))
}

/// What was settled before the region was written.
struct Prepared {
    at: Option<SafePoint>,
    unwinder: StackUnwinder,
    sequence: u64,
    base: u64,
    header_size: u64,
    region_size: u64,
    /// Where the plan's jump islands are mapped, in order.
    islands: Vec<u64>,
    /// Where the threadwise commit's stubs go (the region's last pages).
    stubs_at: u64,
}

/// The numbers of a ledger record that are not in the plan.
struct Stamp {
    now: u64,
    sequence: u64,
    base: u64,
    size: u64,
    /// Address of the text zone.
    text_base: u64,
    /// The jump islands.
    islands: Vec<ledger::Island>,
}

fn write_and_commit(
    target: &Target,
    plan: &Plan,
    options: &ApplyOptions,
    prepared: &mut Prepared,
) -> Result<ApplyReport, ApplyError> {
    let pid = target.pid();
    let (base, header_size, region_size) =
        (prepared.base, prepared.header_size, prepared.region_size);
    let text_base = base + header_size;
    let linker = plan.linker(text_base, text_base + plan.layout.text_size);
    let mut image = linker.link()?;
    let mut new_addresses = Vec::new();
    for function in &plan.functions {
        let address = linker
            .symbol_address(function.object_symbol)
            .map_err(ApplyError::MalformedObject)?;
        new_addresses.push(address);
    }
    // Where each jump goes: the new code, or the thunk that keeps the register contract.
    let jump_targets = crate::ipara::install(plan, &mut image, &new_addresses)?;
    // A far module's entries jump to their island stubs, which jump on to those targets.
    let (entry_targets, via) = crate::island::entry_targets(plan, &jump_targets, &prepared.islands);
    let sites = sites(plan, &entry_targets)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = Stamp {
        now,
        sequence: prepared.sequence,
        base,
        size: region_size,
        text_base,
        islands: crate::island::records(plan, &prepared.islands),
    };
    // This patch's own code gets unwind tables too (no thread can be in it before the jumps,
    // but a prepared region may be settled while one is).
    if let (Some(unwind), Some((offset, size))) =
        (unwind_record(plan, text_base), plan.layout.eh_frame)
    {
        let records = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(offset + size).ok())
            .and_then(|(from, to)| image.text.get(from..to));
        if let Some(records) = records {
            prepared.unwinder.add_patch_code(
                &format!("[patch {}]", plan.patch_id),
                &unwind,
                records.to_vec(),
            );
        }
    }
    let header = ledger::encode(&record(plan, &jump_targets, &via, &stamp, &sites));
    if header.len() as u64 > header_size {
        return Err(ApplyError::Ledger(
            "the header outgrew its reserved pages".into(),
        ));
    }
    for (island, &at) in plan.islands.iter().zip(&prepared.islands) {
        write_memory(pid, at, &crate::island::image(plan, island, &jump_targets))?;
        region::protect(pid, at, island.size(), PROT_READ | PROT_EXEC)?;
    }
    write_image(pid, base, &header, &image)?;
    region::protect(pid, base, header_size, PROT_READ)?;
    region::protect(pid, text_base, plan.layout.text_size, PROT_READ | PROT_EXEC)?;

    let busy = Busy::for_sites(&sites);
    let mut contexts = ReturnTargets::for_sites(pid, &sites);
    let applied = LedgerState::Applied.word().to_le_bytes();
    let state = (base + ledger::STATE_OFFSET, &applied[..]);
    let (stops, commit) = match threadwise_stubs(pid, options, prepared, &sites)? {
        Ok(stubs) => {
            let request = crate::commit_threadwise::Request {
                pid,
                sites: &sites,
                stubs: &stubs,
                new_code: text_base..text_base + plan.layout.text_size,
                unwinder: &prepared.unwinder,
                contexts: &contexts,
                timeout: options.timeout,
                after: Some((state.0, state.1.to_vec())),
            };
            let t = crate::commit_threadwise::commit(&request)?;
            let stops = Stops {
                pause_us: t.max_us,
                total_us: t.total_us,
                count: t.count,
                threads: t.threads,
                incomplete_stacks: 0,
            };
            let report = CommitReport {
                strategy: "threadwise".into(),
                stop_all_because: None,
                max_thread_stop_us: t.max_us,
                all_stopped_us: 0,
            };
            (stops, report)
        }
        Err(because) => {
            // Most of memory is searched for suspended contexts before the stop; each stop
            // reads only what was written since.
            contexts.scan_ahead(pid);
            let safety = Safety {
                busy: &busy,
                unwinder: Some(&prepared.unwinder),
                incomplete_blocks: true,
                timeout: options.timeout,
                at: prepared.at.clone(),
                contexts: Some(&contexts),
                wait_return: options.wait_return,
            };
            let stops: Stops = commit(pid, &sites, &safety, Some(state))?;
            let report = CommitReport {
                strategy: "stop-all".into(),
                stop_all_because: because,
                max_thread_stop_us: stops.pause_us,
                all_stopped_us: stops.pause_us,
            };
            (stops, report)
        }
    };
    let functions = plan
        .functions
        .iter()
        .zip(&new_addresses)
        .map(|(f, &new_address)| AppliedFunction {
            name: f.target.name().to_string(),
            file: f.file.clone(),
            action: f.action,
            reason: f.reason.clone(),
            old_address: f.old_address,
            new_address,
        })
        .collect();
    Ok(ApplyReport {
        patch_id: plan.patch_id.clone(),
        pause_us: stops.pause_us,
        threads: stops.threads,
        total_stopped_us: stops.total_us,
        stops: stops.count,
        incomplete_stacks: stops.incomplete_stacks,
        sequence: prepared.sequence,
        region_address: base,
        region_size,
        functions,
        register_contracts: plan.register_contracts.clone(),
        commit,
    })
}

/// The threadwise commit's stubs, written into the region, when it applies; else why not
/// (`None`: it was not asked for).
fn threadwise_stubs(
    pid: i32,
    options: &ApplyOptions,
    prepared: &Prepared,
    sites: &[Site],
) -> Result<Result<Vec<u64>, Option<String>>, ApplyError> {
    if !options.threadwise {
        return Ok(Err(None));
    }
    if options.wait_return {
        return Ok(Err(Some(
            "--wait-return waits at one stop of every thread".into(),
        )));
    }
    if prepared.at.is_some() {
        return Ok(Err(Some("--at commits at the stop of every thread".into())));
    }
    if crate::ptrace::group_stopped(pid) {
        return Ok(Err(Some(
            "the process is stopped (a stop signal): its threads stay stopped, so one stop of \
             every thread costs it nothing"
                .into(),
        )));
    }
    let mut image = Vec::new();
    let mut stubs = Vec::new();
    for site in sites {
        let at = prepared.stubs_at + image.len() as u64;
        match crate::commit_threadwise::stub(site, at) {
            Ok(code) => {
                image.extend_from_slice(&code);
                image.resize(image.len().next_multiple_of(STUB_ALIGN), 0xcc);
                stubs.push(at);
            }
            Err(why) => return Ok(Err(Some(why))),
        }
    }
    if let Err(why) = crate::commit_threadwise::register_sync_core(pid) {
        return Ok(Err(Some(why)));
    }
    write_memory(pid, prepared.stubs_at, &image)?;
    let size = (image.len() as u64).next_multiple_of(PAGE);
    region::protect(pid, prepared.stubs_at, size, PROT_READ | PROT_EXEC)?;
    Ok(Ok(stubs))
}

/// Each stub starts at a multiple of this (its reserved room).
const STUB_ALIGN: usize = crate::commit_threadwise::STUB_SIZE as usize;

fn write_image(pid: i32, base: u64, header: &[u8], image: &Image) -> Result<(), ApplyError> {
    write_memory(pid, base, header)?;
    if !image.text.is_empty() {
        write_memory(pid, image.text_base, &image.text)?;
    }
    if !image.data.is_empty() {
        write_memory(pid, image.data_base, &image.data)?;
    }
    Ok(())
}

/// The jumps to write, with the bytes they replace and the ranges no thread may be inside.
fn sites(plan: &Plan, new_addresses: &[u64]) -> Result<Vec<Site>, ApplyError> {
    let mut out = Vec::new();
    for redirect in &plan.redirects {
        let name = plan.functions[redirect.function].target.name().to_string();
        let to = new_addresses[redirect.function];
        let jump = jump_bytes(redirect.entry, to);
        // Decoded from the original bytes: an earlier patch's jump is never read as code.
        let covered = covered_length(
            &name,
            &redirect.original,
            redirect.entry,
            redirect.size,
            jump.len(),
        )?;
        let covered_end = redirect.entry.saturating_add(covered as u64);
        // A branch back into the overwritten bytes would land mid-jump: then no thread may be
        // anywhere in the old body.
        let original = &redirect.original;
        let busy_end = if branches_into(original, redirect.entry, redirect.entry, covered_end) {
            redirect.entry.saturating_add(redirect.size)
        } else {
            covered_end
        };
        let original = redirect.code.get(..jump.len()).unwrap_or_default().to_vec();
        out.push(Site {
            name,
            entry: redirect.entry,
            jump,
            original,
            target: to,
            code: redirect.code.clone(),
            busy: (redirect.entry, busy_end),
            function: (redirect.entry, redirect.entry.saturating_add(redirect.size)),
        });
    }
    Ok(out)
}

/// The ledger record of this application (`via`: each function's island stub, if any). With
/// empty `new_addresses`/`sites`, every number is replaced by `u64::MAX` so the result bounds
/// the header's size.
fn record(
    plan: &Plan,
    new_addresses: &[u64],
    via: &[Option<u64>],
    stamp: &Stamp,
    sites: &[Site],
) -> LedgerRecord {
    let functions = plan
        .functions
        .iter()
        .enumerate()
        .map(|(index, f)| {
            let redirect = plan.redirects.iter().find(|r| r.function == index);
            let overwritten = redirect.map(|r| {
                let original = match sites.iter().find(|s| s.entry == r.entry) {
                    Some(site) => ledger::hex(&site.original),
                    None => "ff".repeat(crate::trampoline::ABS_LEN),
                };
                OverwrittenRange {
                    address: r.entry,
                    original_hex: original,
                }
            });
            LedgerFunction {
                name: f.target.name().to_string(),
                file: f.file.clone(),
                action: f.action,
                new_address: new_addresses.get(index).copied().unwrap_or(u64::MAX),
                new_size: plan.object.symbols.get(f.object_symbol).map(|s| s.size),
                overwritten,
                via: via.get(index).copied().flatten(),
            }
        })
        .collect();
    LedgerRecord {
        patch_id: plan.patch_id.clone(),
        applied_at_unix: stamp.now,
        sequence: stamp.sequence,
        region_address: stamp.base,
        region_size: stamp.size,
        manifest: plan.object.manifest().cloned(),
        functions,
        unwind: unwind_record(plan, stamp.text_base),
        islands: stamp.islands.clone(),
    }
}

/// Where the patch's `.eh_frame` records go with the text zone at `text_base`, and the code they
/// cover.
fn unwind_record(plan: &Plan, text_base: u64) -> Option<UnwindRecord> {
    let (offset, size) = plan.layout.eh_frame?;
    Some(UnwindRecord {
        eh_frame_address: text_base.saturating_add(offset),
        eh_frame_size: size,
        text_address: text_base,
        // Up to the end of the text zone's contents: the thunks are code too.
        text_size: plan.layout.text_end,
    })
}
