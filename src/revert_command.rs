//! `hotpatch revert --pid N [ID]`: undo the newest (or the named) patch of a running process,
//! last-in first-out per function, from the ledger in the process itself. With several `--pid`
//! or `--exe PATH`, each process is reverted in turn; a `--pid`'s descendants running the same
//! executable (its family, unless `--no-children`) get the same patch reverted, and those that do
//! not have it are skipped with a note; every member is checked before any is reverted, and
//! reverted with its region kept mapped until all are: when one fails, the patch is put back in
//! those reverted before it (all or nothing). `--at FUNCTION` reverts at a safe point,
//! `--wait-return` waits for a frame inside the patch's code to return.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hotpatch_applier::{
    check_revert, installed_patches, reinstate, release_reverted, revert, revert_at,
    revert_keeping_region, ApplyError, ApplyOptions, RevertReport,
};
use serde_json::json;

/// Arguments of `hotpatch revert`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("process").args(["pid", "exe"]).multiple(true).required(true)))]
pub struct RevertArgs {
    /// The patch to revert (default: the newest one still applied): its id, or the beginning of
    /// it when that names one applied patch.
    pub id: Option<String>,
    /// The process to revert it in, with its descendants running the same executable (see
    /// --no-children); repeatable.
    #[arg(long)]
    pub pid: Vec<i32>,
    /// Revert in each --pid alone, not in its descendants running the same executable.
    #[arg(long)]
    pub no_children: bool,
    /// Every process running this executable.
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
    /// Seconds to keep retrying while a thread is inside the patch's code.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = crate::cli::seconds)]
    pub timeout: f64,
    /// When a thread is inside the patch's code, wait (up to --timeout) for that frame to
    /// return: a breakpoint at its return address, the revert at the stop it causes.
    #[arg(long)]
    pub wait_return: bool,
    /// Revert only when a thread reaches this function (a breakpoint safe point); gives up
    /// after --timeout.
    #[arg(long, value_name = "FUNCTION")]
    pub at: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hotpatch revert`.
pub fn run(args: &RevertArgs) -> Result<()> {
    let options = ApplyOptions {
        timeout: Duration::from_secs_f64(args.timeout),
        wait_return: args.wait_return,
        threadwise: false,
    };
    let selection = crate::processes::resolve(&args.pid, args.exe.as_deref(), !args.no_children)?;
    selection.print_notes(args.json, false);
    let pids = selection.pids();
    let mut done = Vec::new();
    let mut failed: Vec<(i32, anyhow::Error)> = Vec::new();
    let mut skipped: Vec<(i32, String)> = Vec::new();
    for group in &selection.groups {
        // The family reverts the patch its first process names (or its newest).
        let id = match (group.as_slice(), full_id(group[0], args.id.as_deref())) {
            ([_], id) => id,
            (_, Ok(None)) => newest_live(group[0]).map(Some),
            (_, id) => id,
        };
        let family = group.len() > 1;
        if let (Ok(id), true) = (&id, family) {
            check_family(group, id.as_deref())?;
        }
        // A family's members are reverted with their regions kept, so that a failure puts the
        // patch back in those reverted before it: all or nothing.
        let mut reverted: Vec<(i32, RevertReport)> = Vec::new();
        for (index, &pid) in group.iter().enumerate() {
            if index > 0 {
                if let Ok(Some(id)) = &id {
                    if !has_live(pid, id) {
                        skipped.push((pid, not_reverted_because(pid, id)));
                        continue;
                    }
                }
            }
            let waiting = match &args.at {
                Some(function) => {
                    format!("waiting for a thread of pid {pid} to reach `{function}`")
                }
                None => format!("waiting for the threads of pid {pid} to leave the patch's code"),
            };
            let result = match &id {
                Ok(id) => crate::spinner::while_waiting(&waiting, args.json, || {
                    match (&args.at, family) {
                        (at, true) => {
                            revert_keeping_region(pid, id.as_deref(), &options, at.as_deref())
                        }
                        (Some(function), false) => {
                            revert_at(pid, id.as_deref(), &options, function)
                        }
                        (None, false) => revert(pid, id.as_deref(), &options),
                    }
                })
                .map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::anyhow!("{}", crate::render::error_text(e))),
            };
            match result {
                Ok(report) => reverted.push((pid, report)),
                // A member found beside the named process that exits meanwhile has nothing
                // left to revert, as an apply drops it.
                Err(_) if index > 0 && crate::processes::has_exited(pid) => {
                    skipped.push((pid, "it exited before it was reverted".to_string()))
                }
                Err(e) if family => {
                    let back = put_back(&reverted, &options, group.len());
                    failed.push((pid, e.context(format!("cannot revert in pid {pid}{back}"))));
                    reverted.clear();
                    break;
                }
                Err(e) => failed.push((pid, e.context(format!("cannot revert in pid {pid}")))),
            }
        }
        for (pid, mut report) in reverted {
            if family {
                if let Err(e) = release_reverted(pid, &mut report) {
                    report.region = format!("kept mapped: {e}");
                }
            }
            crate::state::after_revert(pid, &report.patch_id);
            done.push((pid, report));
        }
    }
    if pids.len() == 1 {
        if let Some((_, error)) = failed.pop() {
            return Err(error);
        }
    }
    if args.json {
        if let ([(_, report)], 1) = (done.as_slice(), pids.len()) {
            crate::outcome::print_json(&report)?;
        } else {
            let processes: Vec<_> = done
                .iter()
                .map(|(pid, r)| json!({ "pid": pid, "report": r }))
                .collect();
            let failures: Vec<_> = failed
                .iter()
                .map(|(pid, e)| json!({ "pid": pid, "error": crate::outcome::error_json(e) }))
                .collect();
            let skipped: Vec<_> = skipped
                .iter()
                .map(|(pid, reason)| json!({ "pid": pid, "reason": reason }))
                .collect();
            crate::outcome::print_json(&json!({
                "processes": processes,
                "failed": failures,
                "skipped": skipped,
                "notes": selection.notes,
                "warnings": selection.warnings,
            }))?;
        }
    } else {
        for (pid, report) in &done {
            print_text(*pid, report);
        }
        for (pid, reason) in &skipped {
            println!("skipped pid {pid}: {reason}");
        }
    }
    if !failed.is_empty() {
        let messages: Vec<String> = failed
            .iter()
            .map(|(_, e)| crate::render::error_text(e))
            .collect();
        bail!("{}", messages.join("; "));
    }
    Ok(())
}

/// Why a member of a family without live patch `id` is skipped.
fn not_reverted_because(pid: i32, id: &str) -> String {
    match crate::processes::has_exited(pid) {
        true => "it exited before it was reverted".to_string(),
        false => format!("it does not have patch {id} applied"),
    }
}

/// Puts the patch back in the members of a family of `processes` reverted before one failed
/// (the last reverted first), and says how that went, for the error.
fn put_back(reverted: &[(i32, RevertReport)], options: &ApplyOptions, processes: usize) -> String {
    if reverted.is_empty() {
        return format!(", and nothing was reverted in any of the {processes} processes");
    }
    let mut back = Vec::new();
    let mut failures = Vec::new();
    for (pid, report) in reverted.iter().rev() {
        match reinstate(*pid, &report.patch_id, options) {
            Ok(_) => back.push(*pid),
            Err(e) => failures.push(format!("pid {pid}: {e}")),
        }
    }
    back.sort_unstable();
    let mut text = String::new();
    if !back.is_empty() {
        text = format!(
            ", so patch {} is back in {} (reverted before it)",
            reverted[0].1.patch_id,
            crate::processes::pids_phrase(&back)
        );
    }
    match failures.is_empty() {
        true => text.push_str(" and the family is as it was"),
        false => text.push_str(&format!(
            ", but could NOT be put back in {} (those run the old code)",
            failures.join(", ")
        )),
    }
    text
}

/// Checks every member of a family that has patch `id` (the first member: `id` or its newest)
/// as its revert will, before any is reverted: a patch missing from the first, a later patch
/// on the same functions, an entry that no longer holds the jump stop the whole revert with
/// nothing reverted anywhere. A member that exited meanwhile is left to the revert to report.
fn check_family(group: &[i32], id: Option<&str>) -> Result<()> {
    for (index, &pid) in group.iter().enumerate() {
        if index > 0 && id.is_some_and(|id| !has_live(pid, id)) {
            continue;
        }
        match check_revert(pid, id) {
            Ok(_) | Err(ApplyError::NoSuchProcess(_)) => {}
            Err(e) => bail!(
                "cannot revert in pid {pid}: {}; nothing was reverted in any of the {} processes",
                crate::render::error_text(&anyhow::Error::new(e)),
                group.len()
            ),
        }
    }
    Ok(())
}

/// The whole id of the patch `prefix` names in `pid`: the one live patch whose id begins with it.
/// An ambiguous prefix is an error naming the candidates; one that matches nothing is passed on
/// as it is, for the applier to say which patches are applied.
fn full_id(pid: i32, prefix: Option<&str>) -> Result<Option<String>> {
    let Some(prefix) = prefix else {
        return Ok(None);
    };
    let patches =
        installed_patches(pid).with_context(|| format!("cannot read the patches of pid {pid}"))?;
    let mut matching: Vec<&str> = patches
        .iter()
        .filter(|p| p.is_live() && p.patch_id.starts_with(prefix))
        .map(|p| p.patch_id.as_str())
        .collect();
    matching.dedup();
    match matching.as_slice() {
        [] => Ok(Some(prefix.to_string())),
        [one] => Ok(Some(one.to_string())),
        many => bail!(
            "patch id `{prefix}` is ambiguous in pid {pid}: it begins {}; give more of it",
            many.join(", ")
        ),
    }
}

/// The id of the newest live patch of `pid`: what a revert without an id undoes there.
fn newest_live(pid: i32) -> Result<String> {
    let patches =
        installed_patches(pid).with_context(|| format!("cannot read the patches of pid {pid}"))?;
    match patches
        .iter()
        .filter(|p| p.is_live())
        .max_by_key(|p| p.sequence)
    {
        Some(newest) => Ok(newest.patch_id.clone()),
        None => bail!("pid {pid} has no applied patch to revert"),
    }
}

/// Whether patch `id` is live in `pid` (a process whose patches cannot be read is tried, so that
/// the revert says why).
fn has_live(pid: i32, id: &str) -> bool {
    installed_patches(pid).map_or(true, |patches| {
        patches.iter().any(|p| p.is_live() && p.patch_id == id)
    })
}

fn print_text(pid: i32, report: &RevertReport) {
    println!(
        "reverted patch {} in pid {pid}: paused {} µs ({} thread{}, {} stop{}, {} µs stopped in all)",
        report.patch_id,
        report.pause_us,
        report.threads,
        if report.threads == 1 { "" } else { "s" },
        report.stops,
        if report.stops == 1 { "" } else { "s" },
        report.total_stopped_us
    );
    for f in &report.restored {
        println!("  {} restored at 0x{:x}", f.name, f.address);
    }
    println!("  region {}", report.region);
    if let Some(scan) = &report.reference_scan {
        println!("  references sought: {scan}");
    }
}
