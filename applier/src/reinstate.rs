//! Putting a reverted patch back as it was: the undo of [`crate::revert_keeping_region`], for a
//! family's revert that must be all or nothing. Its region is still mapped, so its code, data
//! and ledger are where its jumps lead; the entries get those jumps again at one stop of every
//! thread, with the same check as an apply: no thread may be inside the bytes a jump covers, or
//! have a frame in the code the jump takes it away from (its chain would mix the two versions),
//! nor may a suspended context return into that code.

use crate::apply::ApplyOptions;
use crate::commit::{commit, Busy, Safety, Site};
use crate::error::ApplyError;
use crate::installed::{installed_patches, InstalledPatch};
use crate::ledger::{self, LedgerState};
use crate::ptrace::read_memory;
use crate::references::ReturnTargets;
use crate::revert::{redirected, Redirected};
use crate::target::Target;
use crate::trampoline::jump_bytes;
use crate::unwind::StackUnwinder;

/// Puts patch `patch_id` back in process `pid` after [`crate::revert_keeping_region`] took it
/// out: the newest reverted record of that id, every entry of which must still hold the bytes
/// the revert wrote (nothing else changed it since). Returns the stop's pause in microseconds.
/// Refuses, writing nothing, when the patch is not reverted there, an entry changed, or a
/// thread stays in the way past `options.timeout`.
pub fn reinstate(pid: i32, patch_id: &str, options: &ApplyOptions) -> Result<u64, ApplyError> {
    let _one_at_a_time = crate::process_lock::lock(pid)?;
    let installed = installed_patches(pid)?;
    let patch = installed
        .iter()
        .filter(|p| p.patch_id == patch_id && p.state == LedgerState::Reverted)
        .max_by_key(|p| p.sequence)
        .ok_or_else(|| {
            ApplyError::Revert(format!(
                "cannot put patch {patch_id} back in pid {pid}: it is not reverted there"
            ))
        })?;
    let target = Target::inspect(pid)?;
    let sites = sites(pid, &target, patch, &installed)?;
    let busy = Busy::for_sites(&sites);
    let contexts = ReturnTargets::for_sites(pid, &sites);
    let unwinder = StackUnwinder::for_process(&target, pid, &installed);
    let safety = Safety {
        busy: &busy,
        unwinder: Some(&unwinder),
        incomplete_blocks: true,
        timeout: options.timeout,
        at: None,
        contexts: Some(&contexts),
        wait_return: options.wait_return,
    };
    // As an apply checks its entries: before the stop (the commit writes at once).
    for site in &sites {
        if read_memory(pid, site.entry, site.original.len())? != site.original {
            return Err(ApplyError::CodeChanged {
                name: site.name.clone(),
                address: site.entry,
            });
        }
    }
    let applied = LedgerState::Applied.word().to_le_bytes();
    let state_at = patch.region_address + ledger::STATE_OFFSET;
    let stops = commit(pid, &sites, &safety, Some((state_at, &applied)))?;
    Ok(stops.pause_us)
}

/// The jump sites of `patch` as its apply made them, from its ledger: each redirected entry,
/// its original bytes (what must be there now) and the old function around it, which ends at
/// the next symbol of its module, or with the earlier patch's region that holds it.
fn sites(
    pid: i32,
    target: &Target,
    patch: &InstalledPatch,
    installed: &[InstalledPatch],
) -> Result<Vec<Site>, ApplyError> {
    let mut out = Vec::new();
    for Redirected {
        function,
        entry,
        original,
        target: to,
    } in redirected(patch)?
    {
        let covered = entry + original.len() as u64;
        let in_region = installed
            .iter()
            .map(InstalledPatch::region)
            .find(|r| r.contains(&entry));
        let end = target
            .next_symbol_after(entry)
            .or(in_region.map(|r| r.end))
            .unwrap_or(covered)
            .max(covered);
        let code = read_memory(pid, entry, usize::try_from(end - entry).unwrap_or(0))?;
        out.push(Site {
            name: function.name.clone(),
            entry,
            jump: jump_bytes(entry, to),
            original,
            target: to,
            code,
            busy: (entry, covered),
            function: (entry, end),
        });
    }
    Ok(out)
}
