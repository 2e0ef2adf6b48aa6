//! Several processes of one executable (a forking server's workers) patched as one: every
//! process is checked first (entries, region, a stop with the safety check) and nothing is
//! written to any unless all pass; then each is patched in turn, and when one fails after others
//! were committed, those are reverted.

use std::path::Path;

use crate::apply::{apply, check, ApplyOptions, ApplyReport};
use crate::error::ApplyError;
use crate::installed::installed_patches;
use crate::ledger::LedgerState;
use crate::plan::Plan;
use crate::revert::revert;
use crate::target::Target;

/// Checks every plan against its target (as [`check`] does, nothing written), then applies each
/// in turn. A failed check names its pid, and nothing was written to any process. If an apply
/// fails, the patches already applied are reverted (newest first) and the error names the
/// failing pid and what was rolled back. With `options.wait_return`, a thread found inside a
/// function being replaced does not fail the check (which looks once, without polling): the
/// commit waits for its frame to return.
pub fn apply_all(
    jobs: &[(&Target, &Plan)],
    options: &ApplyOptions,
) -> Result<Vec<ApplyReport>, ApplyError> {
    // With `wait_return` the commit waits for a blocking frame itself: the check looks once
    // (polling for the whole timeout would only delay that wait).
    let check_options = ApplyOptions {
        timeout: match options.wait_return {
            true => std::time::Duration::ZERO,
            false => options.timeout,
        },
        ..options.clone()
    };
    for (target, plan) in jobs {
        match check(target, plan, &check_options) {
            Ok(_) => {}
            Err(ApplyError::ThreadBusy { .. } | ApplyError::ContextBusy { .. })
                if options.wait_return => {}
            Err(error) => {
                return Err(ApplyError::GroupCheck {
                    pid: target.pid(),
                    source: Box::new(error),
                    processes: jobs.len(),
                })
            }
        }
    }
    let mut done: Vec<(i32, ApplyReport)> = Vec::new();
    for (target, plan) in jobs {
        match apply(target, plan, options) {
            Ok(report) => done.push((target.pid(), report)),
            Err(error) => {
                let done: Vec<(i32, &str)> = done
                    .iter()
                    .map(|(pid, report)| (*pid, report.patch_id.as_str()))
                    .collect();
                let (rolled_back, not_rolled_back) = roll_back(&done, options);
                return Err(ApplyError::Group {
                    pid: target.pid(),
                    source: Box::new(error),
                    rolled_back,
                    not_rolled_back,
                });
            }
        }
    }
    Ok(done.into_iter().map(|(_, report)| report).collect())
}

/// Reverts each `(pid, patch id)` of `done`, newest first: the undo of a group's apply that
/// failed part way. Returns the pids rolled back (`1, 2`) and, for those that could not be,
/// `; could NOT roll back pid N: why, ...` (empty when every one was).
pub fn roll_back(done: &[(i32, &str)], options: &ApplyOptions) -> (String, String) {
    let mut rolled_back = Vec::new();
    let mut failures = Vec::new();
    for (pid, patch_id) in done.iter().rev() {
        match revert(*pid, Some(patch_id), options) {
            Ok(_) => rolled_back.push(*pid),
            Err(e) => failures.push(format!("pid {pid}: {e}")),
        }
    }
    let not_rolled_back = if failures.is_empty() {
        String::new()
    } else {
        format!("; could NOT roll back {}", failures.join(", "))
    };
    (list(&rolled_back), not_rolled_back)
}

/// The sequence number of patch `patch_id` in process `pid` when it is applied there already
/// (its ledger says so): a process of a group that has it is skipped, not patched twice.
pub fn applied_sequence(pid: i32, patch_id: &str) -> Result<Option<u64>, ApplyError> {
    Ok(installed_patches(pid)?
        .iter()
        .find(|p| p.patch_id == patch_id && p.state == LedgerState::Applied)
        .map(|p| p.sequence))
}

fn list(pids: &[i32]) -> String {
    if pids.is_empty() {
        return "none".into();
    }
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pids of every process (other than this one) running the executable at `exe`, sorted.
/// Processes we may not inspect are skipped.
pub fn pids_of_exe(exe: &Path) -> Result<Vec<i32>, ApplyError> {
    let wanted = std::fs::canonicalize(exe).map_err(|e| ApplyError::ModuleRead {
        path: exe.display().to_string(),
        detail: e.to_string(),
    })?;
    let me = std::process::id() as i32;
    let entries = std::fs::read_dir("/proc").map_err(|e| ApplyError::ProcRead {
        pid: 0,
        what: "/proc".into(),
        detail: e.to_string(),
    })?;
    let mut out: Vec<i32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|&pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == wanted))
        .collect();
    out.sort_unstable();
    Ok(out)
}
