//! Several processes of one executable (a forking server's workers) patched as one: every
//! process is patched, or, when one fails, those already patched are reverted.

use std::path::Path;

use crate::apply::{apply, ApplyOptions, ApplyReport};
use crate::error::ApplyError;
use crate::plan::Plan;
use crate::revert::revert;
use crate::target::Target;

/// Applies each plan to its target in turn. If one fails, the patches already applied are
/// reverted (newest first) and the error names the failing pid and what was rolled back.
pub fn apply_all(
    jobs: &[(&Target, &Plan)],
    options: &ApplyOptions,
) -> Result<Vec<ApplyReport>, ApplyError> {
    let mut done: Vec<(i32, ApplyReport)> = Vec::new();
    for (target, plan) in jobs {
        match apply(target, plan, options) {
            Ok(report) => done.push((target.pid(), report)),
            Err(error) => {
                let mut rolled_back = Vec::new();
                let mut failures = Vec::new();
                for (pid, report) in done.iter().rev() {
                    match revert(*pid, Some(&report.patch_id), options) {
                        Ok(_) => rolled_back.push(*pid),
                        Err(e) => failures.push(format!("pid {pid}: {e}")),
                    }
                }
                return Err(ApplyError::Group {
                    pid: target.pid(),
                    source: Box::new(error),
                    rolled_back: list(&rolled_back),
                    not_rolled_back: if failures.is_empty() {
                        String::new()
                    } else {
                        format!("; could NOT roll back {}", failures.join(", "))
                    },
                });
            }
        }
    }
    Ok(done.into_iter().map(|(_, report)| report).collect())
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
