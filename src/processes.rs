//! The processes `hotpatch diff --apply/--dry-run` works on: every `--pid`, and with `--exe` every
//! process running that executable. Several processes are patched as one: all, or none (those
//! already patched are reverted when one fails).

use std::path::Path;

use anyhow::{bail, Context, Result};
use hotpatch_applier::{
    apply_all, pids_of_exe, ApplyOptions, ApplyReport, PatchObject, Plan, Target,
};
use serde_json::json;

/// Every `--pid` in order, then the processes running `exe`, without repeats.
pub fn resolve(pids: &[i32], exe: Option<&Path>) -> Result<Vec<i32>> {
    let mut out: Vec<i32> = Vec::new();
    let mut push = |pid: i32| {
        if !out.contains(&pid) {
            out.push(pid);
        }
    };
    pids.iter().copied().for_each(&mut push);
    if let Some(exe) = exe {
        let found = pids_of_exe(exe)
            .with_context(|| format!("cannot list the processes running {}", exe.display()))?;
        if found.is_empty() {
            bail!("no process runs {}", exe.display());
        }
        found.into_iter().for_each(&mut push);
    }
    Ok(out)
}

/// Patches every process in `pids` (the first already inspected and planned) with `object`,
/// all or none, and prints one line per process (or one JSON document).
pub fn apply_group(
    pids: &[i32],
    first: (Target, Plan),
    object: &PatchObject,
    options: &ApplyOptions,
    (json, forced): (bool, &[String]),
) -> Result<()> {
    let mut targets = vec![first.0];
    let mut plans = vec![first.1];
    for &pid in pids.iter().skip(1) {
        let target = Target::inspect(pid).with_context(|| format!("cannot inspect pid {pid}"))?;
        let plan =
            crate::build_flags::plan(&target, object, &format!("cannot patch pid {pid}"), forced)?;
        targets.push(target);
        plans.push(plan);
    }
    let jobs: Vec<(&Target, &Plan)> = targets.iter().zip(&plans).collect();
    let reports = crate::spinner::while_waiting(
        "waiting for the threads of every process to leave the code being replaced",
        json,
        || apply_all(&jobs, options),
    )
    .context("cannot patch every process")?;
    print(pids, &reports, json)
}

fn print(pids: &[i32], reports: &[ApplyReport], json: bool) -> Result<()> {
    if json {
        let processes: Vec<_> = pids
            .iter()
            .zip(reports)
            .map(|(pid, r)| {
                let mut value = crate::render::report_json(r);
                value["pid"] = json!(pid);
                value
            })
            .collect();
        return crate::outcome::print_json(&json!({ "processes": processes }));
    }
    println!("patched {} processes (all or none):", pids.len());
    for (pid, r) in pids.iter().zip(reports) {
        let names: Vec<&str> = r.functions.iter().map(|f| f.name.as_str()).collect();
        println!(
            "  pid {pid}: patch {} in {} µs ({} thread{} stopped): {}",
            r.patch_id,
            r.pause_us,
            r.threads,
            crate::render::plural(r.threads),
            names.join(", ")
        );
        for line in crate::register_contract::lines(&r.register_contracts, false) {
            println!("  {line}");
        }
    }
    Ok(())
}
