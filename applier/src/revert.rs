//! Reverting an installed patch from its ledger alone: last-in first-out per function, original
//! bytes written back while every thread is stopped and none is inside the patch's code (pc or
//! return address), the header marked `reverted` at the same stop, and the region unmapped
//! afterwards when nothing can reach it any more: a scan as of that stop (most of it read before,
//! with writes tracked) found no address inside it in writable memory or registers (see
//! `references`).

use std::ops::Range;

use serde::Serialize;

use crate::apply::{safe_point, ApplyOptions};
use crate::artifact::FunctionAction;
use crate::commit::{stop_safely_surviving_the_tool, write_all_or_nothing, Busy, Safety, Stops};
use crate::error::ApplyError;
use crate::installed::{installed_patches, InstalledFunction, InstalledPatch};
use crate::ledger::{self, LedgerState};
use crate::ptrace::{read_memory, write_memory, StoppedProcess};
use crate::references;
use crate::region;
use crate::target::Target;
use crate::trampoline::{jump_bytes, jump_target};
use crate::unwind::StackUnwinder;

/// What [`revert`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RevertReport {
    /// The reverted patch.
    pub patch_id: String,
    /// Its sequence number in the process.
    pub sequence: u64,
    /// The longest single stop, in microseconds.
    pub pause_us: u64,
    /// All stops together, in microseconds.
    pub total_stopped_us: u64,
    /// How many times every thread was stopped.
    pub stops: u32,
    /// Threads stopped at the last stop.
    pub threads: usize,
    /// The functions whose entries got their previous bytes back.
    pub restored: Vec<RestoredFunction>,
    /// Whether the region was unmapped.
    pub unmapped: bool,
    /// `unmapped`, or `kept mapped: ` and why (e.g. `2 words in [heap] point into it ...`).
    pub region: String,
    /// Why the region stays mapped, when it does.
    pub kept_because: Option<String>,
    /// How the memory was scanned for references to the region, when it was: how much was
    /// read while the process ran and how much at the stop (only what was written since, when
    /// the kernel tracked writes), e.g. `21.3 MiB read while the process ran, 0.1 MiB written
    /// since then read at the stop`.
    pub reference_scan: Option<String>,
}

/// One entry given its previous bytes back.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredFunction {
    /// Source name.
    pub name: String,
    /// The entry.
    pub address: u64,
}

/// Reverts patch `id` (default: the newest live one) in process `pid`.
///
/// Refuses when a later live patch redirected one of the same functions (revert that one first),
/// when an entry no longer holds this patch's jump, and — after retrying until
/// `options.timeout` — while a thread's pc or return address is inside the patch region or its
/// stack cannot be walked completely. The region is unmapped only when nothing can reach it any
/// more: at the stop that restores the entries, no word of writable memory and no register of
/// any thread may hold an address inside it (a suspended context returning into its code, a
/// stored pointer to one of its functions); otherwise it stays mapped, marked `reverted`, and
/// [`RevertReport::region`] says why.
pub fn revert(
    pid: i32,
    id: Option<&str>,
    options: &ApplyOptions,
) -> Result<RevertReport, ApplyError> {
    revert_with(pid, id, options, None, true)
}

/// Like [`revert`] (or [`revert_at`] with `at`), but the region stays mapped (state `reverted`) even when nothing refers to
/// it, so that [`crate::reinstate()`] can put the patch back as it was: a family's revert takes
/// every member's patch out so, and puts it back in those done already when one fails (all or
/// nothing). [`release_reverted`] then unmaps what could have been; `kept_because` says whether.
pub fn revert_keeping_region(
    pid: i32,
    id: Option<&str>,
    options: &ApplyOptions,
    at: Option<&str>,
) -> Result<RevertReport, ApplyError> {
    revert_with(pid, id, options, at, false)
}

/// Unmaps the region of the patch `report` ([`revert_keeping_region`]) reverted, when its
/// revert found nothing referring to it (none can refer to it since: no entry jumps there and
/// no thread was in it), and says so in `report`.
pub fn release_reverted(pid: i32, report: &mut RevertReport) -> Result<(), ApplyError> {
    if report.kept_because.is_some() {
        return Ok(());
    }
    let installed = installed_patches(pid)?;
    let Some(patch) = installed
        .iter()
        .find(|p| p.sequence == report.sequence && p.state == LedgerState::Reverted)
    else {
        return Err(ApplyError::Revert(format!(
            "patch {} (#{}) is not reverted in pid {pid}",
            report.patch_id, report.sequence
        )));
    };
    release_region(pid, patch);
    report.unmapped = true;
    report.region = "unmapped".into();
    Ok(())
}

/// Unmaps the region of `patch` and its jump islands, which lead only into it.
fn release_region(pid: i32, patch: &InstalledPatch) {
    for island in &patch.record.islands {
        region::release(pid, island.address, island.size);
    }
    region::release(pid, patch.region_address, patch.region_size);
}

/// Like [`revert`], but commits only when a thread reaches the entry of `function` (a safe
/// point, as [`crate::apply_at`] places it; the usual checks still apply). Gives up after
/// `options.timeout`; while it waits a breakpoint is in the process.
pub fn revert_at(
    pid: i32,
    id: Option<&str>,
    options: &ApplyOptions,
    function: &str,
) -> Result<RevertReport, ApplyError> {
    revert_with(pid, id, options, Some(function), true)
}

fn revert_with(
    pid: i32,
    id: Option<&str>,
    options: &ApplyOptions,
    at: Option<&str>,
    release: bool,
) -> Result<RevertReport, ApplyError> {
    let _one_at_a_time = crate::process_lock::lock(pid)?;
    let (installed, chosen, restores) = planned(pid, id)?;
    let chosen = &installed[chosen];

    // Everything the stop needs is computed before stopping.
    let target = Target::inspect(pid)?;
    let at = at.map(|f| safe_point(&target, f)).transpose()?;
    let unwinder = StackUnwinder::for_process(&target, pid, &installed);
    let region = chosen.region();
    let mut busy = vec![Busy {
        what: format!(
            "the code of patch {}, which is being reverted",
            chosen.patch_id
        ),
        pc: region.clone(),
        ret: Some(region.clone()),
    }];
    // A thread at an island's stub is on its way into the region.
    for island in &chosen.record.islands {
        let range = island.address..island.address.saturating_add(island.size);
        busy.push(Busy {
            what: format!("a jump island of patch {}", chosen.patch_id),
            pc: range.clone(),
            ret: Some(range),
        });
    }
    let safety = Safety {
        busy: &busy,
        unwinder: Some(&unwinder),
        incomplete_blocks: true,
        timeout: options.timeout,
        at,
        // A suspended context in the patch's code does not block: it keeps the region mapped.
        contexts: None,
        wait_return: options.wait_return,
    };
    let reverted = LedgerState::Reverted.word().to_le_bytes();
    let state_at = chosen.region_address + ledger::STATE_OFFSET;
    let known_reason = keep_reason(chosen, &installed);
    // Most of memory is read before the stop; the stop reads only what was written since.
    let ahead = known_reason.is_none().then(|| {
        references::scan_ahead(pid, std::slice::from_ref(&region), region.clone(), |_| true)
    });
    let mut stops = Stops::default();
    let (kept_because, reference_scan) =
        stop_safely_surviving_the_tool(pid, &safety, &mut stops, "the revert", |stopped, _| {
            for r in &restores {
                if read_memory(pid, r.entry, r.jump.len())? != r.jump {
                    return Err(ApplyError::CodeChanged {
                        name: r.name.clone(),
                        address: r.entry,
                    });
                }
            }
            let writes: Vec<(u64, &[u8], &[u8])> = restores
                .iter()
                .map(|r| (r.entry, r.original.as_slice(), r.jump.as_slice()))
                .collect();
            write_all_or_nothing(pid, &writes)?;
            if let Err(error) = write_memory(pid, state_at, &reverted) {
                for r in &restores {
                    let _ = write_memory(pid, r.entry, &r.jump);
                }
                return Err(error.into());
            }
            // No entry jumps to the region any more and no thread is in it: whatever still
            // refers to it now is in memory or in a register, and nothing can make a new
            // reference out of none.
            Ok(match &ahead {
                Some(ahead) => still_referenced(stopped, &region, ahead),
                None => (known_reason.clone(), None),
            })
        })?;
    // The tracking ends: the process's pages take no more write faults.
    drop(ahead);

    let unmapped = release && kept_because.is_none();
    if unmapped {
        release_region(pid, chosen);
    }
    Ok(RevertReport {
        patch_id: chosen.patch_id.clone(),
        sequence: chosen.sequence,
        pause_us: stops.pause_us,
        total_stopped_us: stops.total_us,
        stops: stops.count,
        threads: stops.threads,
        restored: restores
            .iter()
            .map(|r| RestoredFunction {
                name: r.name.clone(),
                address: r.entry,
            })
            .collect(),
        unmapped,
        region: match (&kept_because, unmapped) {
            (None, true) => "unmapped".into(),
            (None, false) => "kept mapped until every process of the family is reverted".into(),
            (Some(why), _) => format!("kept mapped: {why}"),
        },
        kept_because,
        reference_scan,
    })
}

/// Why `region` must stay mapped, if a word of writable memory or a register of a stopped
/// thread holds an address inside it (or the memory cannot be scanned), and how the memory was
/// scanned: completing `ahead` (see [`references::scan_ahead`]) when it was made.
fn still_referenced(
    stopped: &StoppedProcess,
    region: &Range<u64>,
    ahead: &Result<references::Ahead, String>,
) -> (Option<String>, Option<String>) {
    let skip = std::slice::from_ref(region);
    match references::scan(
        stopped.pid(),
        (stopped.threads(), references::Parts::All),
        skip,
        references::Stacks::Live,
        (region.clone(), |_| true),
        ahead.as_ref().ok(),
    ) {
        Ok(scanned) => (
            (!scanned.hits.is_empty()).then(|| references::summary(&scanned.hits)),
            Some(scanned.describe(ahead)),
        ),
        Err(e) => (
            Some(format!(
                "the process's memory could not be scanned for references to it ({e})"
            )),
            None,
        ),
    }
}

/// Checks, without stopping or writing anything, what [`revert`] checks before its stop: `pid`
/// has patch `id` (else any) applied, no later live patch redirected one of its functions, and
/// every entry holds its jump. Returns the id of the patch a revert would take out. Whether a
/// thread is in the patch's code is not looked at: the revert waits for that. A family's revert
/// checks every member so first, and reverts none unless all pass.
pub fn check_revert(pid: i32, id: Option<&str>) -> Result<String, ApplyError> {
    let (installed, chosen, _) = planned(pid, id)?;
    Ok(installed[chosen].patch_id.clone())
}

/// The patches installed in `pid`, the index of the one to revert and its entries to restore,
/// checked as [`check_revert`] says.
fn planned(
    pid: i32,
    id: Option<&str>,
) -> Result<(Vec<InstalledPatch>, usize, Vec<Restore>), ApplyError> {
    let installed = installed_patches(pid)?;
    let chosen = choose(pid, &installed, id)?;
    check_lifo(&installed[chosen], &installed)?;
    let restores = restores(pid, &installed[chosen])?;
    Ok((installed, chosen, restores))
}

/// The index in `installed` of the patch to revert: `id`, else the newest live one.
fn choose(pid: i32, installed: &[InstalledPatch], id: Option<&str>) -> Result<usize, ApplyError> {
    let live: Vec<(usize, &InstalledPatch)> = installed
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_live())
        .collect();
    match id {
        None => live
            .last()
            .map(|(i, _)| *i)
            .ok_or_else(|| ApplyError::Revert(format!("pid {pid} has no applied patch to revert"))),
        Some(id) => live
            .iter()
            .rev()
            .find(|(_, p)| p.patch_id == id)
            .map(|(i, _)| *i)
            .ok_or_else(|| {
                let names: Vec<&str> = live.iter().map(|(_, p)| p.patch_id.as_str()).collect();
                let known = if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                };
                ApplyError::Revert(format!(
                    "pid {pid} has no applied patch `{id}` (applied: {known})"
                ))
            }),
    }
}

/// Refuses when a later live patch redirected one of the same entries, or the entry of a
/// function this one added (its code is in this patch's region).
fn check_lifo(chosen: &InstalledPatch, installed: &[InstalledPatch]) -> Result<(), ApplyError> {
    for function in chosen.functions.iter() {
        let (entry, how) = match function.old_address {
            Some(entry) => (entry, "also replaces"),
            None if function.action == FunctionAction::Add => {
                (function.new_address, "replaces the new")
            }
            None => continue,
        };
        let later = installed.iter().find(|p| {
            p.is_live()
                && p.sequence > chosen.sequence
                && p.functions.iter().any(|f| f.old_address == Some(entry))
        });
        if let Some(later) = later {
            return Err(ApplyError::Revert(format!(
                "cannot revert patch {}: patch {} was applied after it and {how} `{}`; \
                 revert {} first",
                chosen.patch_id, later.patch_id, function.name, later.patch_id
            )));
        }
    }
    Ok(())
}

/// One entry to give its previous bytes back.
struct Restore {
    name: String,
    entry: u64,
    /// The bytes now there: the jump, or a killed threadwise commit's `int3` and what follows.
    jump: Vec<u8>,
    /// The bytes before it.
    original: Vec<u8>,
}

/// One entry a patch redirected, as its ledger recorded it.
pub(crate) struct Redirected<'p> {
    /// The function.
    pub(crate) function: &'p InstalledFunction,
    /// Its entry, where the jump goes.
    pub(crate) entry: u64,
    /// The bytes the jump replaced.
    pub(crate) original: Vec<u8>,
    /// Where the jump leads: the new code, or its island stub.
    pub(crate) target: u64,
}

/// Every entry `patch` redirected, with the original bytes its ledger recorded (an error when
/// they are damaged).
pub(crate) fn redirected(patch: &InstalledPatch) -> Result<Vec<Redirected<'_>>, ApplyError> {
    let mut out = Vec::new();
    for (function, recorded) in patch.functions.iter().zip(&patch.record.functions) {
        let Some(range) = &recorded.overwritten else {
            continue;
        };
        let original = unhex(&range.original_hex).ok_or_else(|| {
            ApplyError::Ledger(format!(
                "the original bytes of `{}` in patch {} are damaged",
                function.name, patch.patch_id
            ))
        })?;
        out.push(Redirected {
            function,
            entry: range.address,
            original,
            target: recorded.entry_target(),
        });
    }
    Ok(out)
}

/// The entries to restore. A fully applied patch must hold its jump at every entry; a prepared
/// one (the tool stopped mid-commit) only at those it reached, and an entry left with a
/// threadwise commit's `int3` gets its original bytes back too.
fn restores(pid: i32, chosen: &InstalledPatch) -> Result<Vec<Restore>, ApplyError> {
    let mut out = Vec::new();
    for Redirected {
        function,
        entry,
        original,
        target,
    } in redirected(chosen)?
    {
        let jump = jump_bytes(entry, target);
        if function.breakpoint {
            // A killed threadwise commit's `int3` (and the rest of the entry as it left it):
            // the original bytes go back whole.
            out.push(Restore {
                name: function.name.clone(),
                entry,
                jump: read_memory(pid, entry, original.len())?,
                original,
            });
            continue;
        }
        if !function.active {
            if chosen.header_state == LedgerState::Prepared {
                continue;
            }
            let now = read_memory(pid, entry, jump.len()).unwrap_or_default();
            // A revert stopped between writing the original bytes back and marking the header:
            // this entry is restored already.
            if now == original {
                continue;
            }
            return Err(ApplyError::Revert(format!(
                "cannot revert patch {}: the entry of `{}` at 0x{:x} no longer jumps to it \
                 (it holds {}); something else changed it",
                chosen.patch_id,
                function.name,
                entry,
                ledger::hex(&now)
            )));
        }
        if original.len() != jump.len() {
            return Err(ApplyError::Ledger(format!(
                "patch {} recorded {} original bytes for `{}`, its jump is {}",
                chosen.patch_id,
                original.len(),
                function.name,
                jump.len()
            )));
        }
        out.push(Restore {
            name: function.name.clone(),
            entry,
            jump,
            original,
        });
    }
    Ok(out)
}

/// Why the region must stay mapped after the revert, if it must: code or data of it may still be
/// reachable through pointers the patch handed out (added functions, new data), or a later live
/// patch's recorded bytes jump into it.
fn keep_reason(chosen: &InstalledPatch, installed: &[InstalledPatch]) -> Option<String> {
    if let Some(f) = chosen
        .functions
        .iter()
        .find(|f| f.action == FunctionAction::Add)
    {
        return Some(format!(
            "it adds `{}`, whose address may be stored in the process",
            f.name
        ));
    }
    if chosen
        .record
        .manifest
        .as_ref()
        .is_some_and(|m| !m.new_data.is_empty())
    {
        return Some("it holds new data the process may point to".into());
    }
    let region = chosen.region();
    for later in installed
        .iter()
        .filter(|p| p.is_live() && p.sequence > chosen.sequence)
    {
        for f in &later.record.functions {
            let Some(range) = &f.overwritten else {
                continue;
            };
            let bytes = unhex(&range.original_hex).unwrap_or_default();
            if let Some(to) = jump_target(range.address, &bytes) {
                if region.contains(&to) {
                    return Some(format!(
                        "patch {} recorded a jump into it at `{}`",
                        later.patch_id, f.name
                    ));
                }
            }
        }
    }
    None
}

/// The bytes of lower-case or upper-case hex `text`; `None` for anything else.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Names for the code of installed patches, for frame descriptions: each function runs to the
/// next one or to the end of its region.
pub(crate) fn patch_names(installed: &[InstalledPatch]) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    for p in installed {
        let end = p.region().end;
        for f in &p.functions {
            out.push((
                f.new_address,
                end,
                format!("{} [patch {}]", f.name, p.patch_id),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hex() {
        assert_eq!(unhex("00ff1a"), Some(vec![0, 0xff, 0x1a]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
