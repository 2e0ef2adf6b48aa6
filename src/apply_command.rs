//! `hotpatch apply FILE --pid N [--dry-run] [--json]`: applies a patch object written by
//! `hotpatch build`, or a plain relocatable `.o` with no manifest (each defined global function
//! replaces the one function of the target with its name).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hotpatch_applier::{ApplyOptions, PatchObject, Target};
use serde_json::json;

use crate::pipeline::elapsed_ms;

/// Arguments of `hotpatch apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The patch object (from `hotpatch build`, or a plain `gcc -c -fPIC` object).
    pub object: PathBuf,
    /// The process to patch.
    #[arg(long)]
    pub pid: i32,
    /// Resolve and check everything against the process without writing to it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds to keep retrying while a thread executes the bytes a jump would overwrite.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub timeout: f64,
    /// When a thread is inside a function being replaced, wait (up to --timeout) for that frame
    /// to return: a breakpoint at its return address, the commit at the stop it causes.
    #[arg(long, conflicts_with = "dry_run")]
    pub wait_return: bool,
}

/// Runs `hotpatch apply`.
pub fn run(args: &ApplyArgs) -> Result<()> {
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        bail!(
            "--timeout must be a number of seconds >= 0, not {}",
            args.timeout
        );
    }
    let bytes = std::fs::read(&args.object)
        .with_context(|| format!("cannot read {}", args.object.display()))?;
    let object = PatchObject::parse(bytes)
        .with_context(|| format!("cannot load {}", args.object.display()))?;
    let target =
        Target::inspect(args.pid).with_context(|| format!("cannot inspect pid {}", args.pid))?;
    let start = Instant::now();
    let plan = crate::build_flags::plan(
        &target,
        &object,
        &format!(
            "cannot patch pid {} with {}",
            args.pid,
            args.object.display()
        ),
    )?;
    let plan_ms = elapsed_ms(start);
    if args.dry_run {
        let functions: Vec<_> = plan
            .functions
            .iter()
            .map(|f| {
                json!({
                    "name": f.target.name(),
                    "file": f.target.file(),
                    "action": f.action,
                    "reason": f.reason,
                    "old_address": f.old_address,
                    "old_size": f.old_size,
                })
            })
            .collect();
        if args.json {
            let value = json!({
                "dry_run": true,
                "patch_id": plan.patch_id,
                "has_manifest": object.manifest().is_some(),
                "functions": functions,
                "resolutions": crate::render::resolutions_json(&plan),
                "register_contracts": plan.register_contracts,
                "timings": {"plan_ms": plan_ms},
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            println!(
                "dry run: patch {} would apply to pid {} (nothing written):",
                plan.patch_id, args.pid
            );
            for f in &plan.functions {
                let at = f
                    .old_address
                    .map(|a| format!(" at 0x{a:x}"))
                    .unwrap_or_default();
                println!("  {:?} {}{at}: {}", f.action, f.target, f.reason);
            }
            print!("{}", crate::render::binding_lines(&plan));
            for line in crate::register_contract::lines(&plan.register_contracts, true) {
                println!("{line}");
            }
        }
        return Ok(());
    }
    let options = ApplyOptions {
        timeout: Duration::from_secs_f64(args.timeout),
        wait_return: args.wait_return,
    };
    let start = Instant::now();
    let report = crate::spinner::while_waiting(
        &format!(
            "waiting for the threads of pid {} to leave the code being replaced",
            args.pid
        ),
        args.json,
        || hotpatch_applier::apply(&target, &plan, &options),
    )
    .with_context(|| format!("cannot patch pid {}", args.pid))?;
    let apply_ms = elapsed_ms(start);
    if args.json {
        let value = json!({
            "patch_id": report.patch_id,
            "pause_us": report.pause_us,
            "threads": report.threads,
            "region_address": report.region_address,
            "region_size": report.region_size,
            "functions": report.functions,
            "register_contracts": report.register_contracts,
            "timings": {"plan_ms": plan_ms, "apply_ms": apply_ms},
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "patched pid {} with {} in {} µs ({} threads stopped), patch {}:",
        args.pid,
        args.object.display(),
        report.pause_us,
        report.threads,
        report.patch_id
    );
    for f in &report.functions {
        let file = f
            .file
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        println!("  {:?} {}{file}: {}", f.action, f.name, f.reason);
    }
    for line in crate::register_contract::lines(&report.register_contracts, false) {
        println!("{line}");
    }
    Ok(())
}
