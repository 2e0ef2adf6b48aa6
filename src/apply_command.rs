//! `hotpatch apply FILE --pid N [--dry-run] [--json]`: applies a patch object written by
//! `hotpatch build`, or a plain relocatable `.o` with no manifest (each defined global function
//! replaces the one function of the target with its name).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use hotpatch_applier::{ApplyOptions, PatchObject, Target};
use serde_json::json;

use crate::pipeline::elapsed_ms;

/// Arguments of `hotpatch apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The patch object (from `hotpatch build`, or a plain `gcc -c -fPIC` object).
    pub object: PathBuf,
    /// The process to patch, with its descendants that run the same executable (a pre-forking
    /// server's workers) unless --no-children: every one is checked first, then all are patched
    /// or none; one that has the patch already is skipped.
    #[arg(long)]
    pub pid: i32,
    /// Patch the --pid alone, not its descendants running the same executable.
    #[arg(long)]
    pub no_children: bool,
    /// Resolve and check everything against the process without writing to it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds to keep retrying while a thread executes the bytes a jump would overwrite.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = crate::cli::seconds)]
    pub timeout: f64,
    /// When a thread is inside a function being replaced, wait (up to --timeout) for that frame
    /// to return: a breakpoint at its return address, the commit at the stop it causes.
    #[arg(long, conflicts_with = "dry_run")]
    pub wait_return: bool,
    /// Commit at one stop of every thread, the older commit, instead of switching the threads
    /// one at a time (the default; `--wait-return`, `--at` and code that cannot be displaced
    /// commit at one stop of every thread anyway).
    #[arg(long, conflicts_with = "dry_run")]
    pub stop_all: bool,
}

/// Runs `hotpatch apply`.
pub fn run(args: &ApplyArgs) -> Result<()> {
    let bytes = std::fs::read(&args.object)
        .with_context(|| format!("cannot read {}", args.object.display()))?;
    let object = PatchObject::parse(bytes.clone())
        .with_context(|| format!("cannot load {}", args.object.display()))?;
    let listed_at = std::time::SystemTime::now();
    let selection = crate::processes::resolve(&[args.pid], None, !args.no_children)?;
    selection.print_notes(args.json, false);
    let target =
        Target::inspect(args.pid).with_context(|| format!("cannot inspect pid {}", args.pid))?;
    let options = ApplyOptions {
        timeout: Duration::from_secs_f64(args.timeout),
        wait_return: args.wait_return,
        threadwise: !args.stop_all,
    };
    if selection.pids().len() > 1 && !args.dry_run {
        let record = crate::processes::Record {
            object: &bytes,
            listed_at,
        };
        return crate::processes::apply_group(
            &selection,
            Some((target, None)),
            &object,
            &options,
            record,
            (args.json, &[]),
        );
    }
    let start = Instant::now();
    let plan = crate::build_flags::plan(
        &target,
        &object,
        &format!(
            "cannot patch pid {} with {}",
            args.pid,
            args.object.display()
        ),
        &[],
    )?;
    let plan_ms = elapsed_ms(start);
    if args.dry_run {
        let others = crate::processes::check_others(&selection, &object, &options)?;
        let functions: Vec<_> = plan
            .functions
            .iter()
            .map(|f| {
                json!({
                    "name": f.target.name(),
                    "file": f.file,
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
                "other_processes": others,
                "timings": {"plan_ms": plan_ms},
            });
            crate::outcome::print_json(&value)?;
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
                let verb = crate::render::action_verb(f.action);
                println!("  would {verb} {}{at}: {}", f.target, f.reason);
            }
            print!("{}", crate::render::binding_lines(&plan));
            for line in crate::register_contract::lines(&plan.register_contracts, true) {
                println!("{line}");
            }
            for other in &others {
                println!("  pid {}: {}", other.pid, other.why());
            }
        }
        return Ok(());
    }
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
    crate::state::after_apply(&[args.pid], &report.patch_id, &bytes, listed_at);
    if args.json {
        let mut value = crate::render::report_json(&report);
        value["timings"] = json!({"plan_ms": plan_ms, "apply_ms": apply_ms});
        crate::outcome::print_json(&value)?;
        return Ok(());
    }
    let subject = format!("pid {} with {}", args.pid, args.object.display());
    let out = crate::render::Printer::new(crate::cli::ColorChoice::Auto.enabled(), false);
    print!("{}", out.report_text(&subject, &report));
    Ok(())
}
