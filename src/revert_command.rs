//! `hotpatch revert --pid N [ID]`: undo the newest (or the named) patch of a running process,
//! last-in first-out per function, from the ledger in the process itself. With several `--pid`
//! or `--exe PATH`, each process is reverted in turn. `--at FUNCTION` reverts at a safe point,
//! `--wait-return` waits for a frame inside the patch's code to return.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use hotpatch_applier::{revert, revert_at, ApplyOptions, RevertReport};
use serde_json::json;

/// Arguments of `hotpatch revert`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("process").args(["pid", "exe"]).multiple(true).required(true)))]
pub struct RevertArgs {
    /// The patch to revert (default: the newest one still applied).
    pub id: Option<String>,
    /// The process to revert it in; repeatable.
    #[arg(long)]
    pub pid: Vec<i32>,
    /// Every process running this executable.
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
    /// Seconds to keep retrying while a thread is inside the patch's code.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
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
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        bail!(
            "--timeout must be a number of seconds >= 0, not {}",
            args.timeout
        );
    }
    let options = ApplyOptions {
        timeout: Duration::from_secs_f64(args.timeout),
        wait_return: args.wait_return,
    };
    let pids = crate::processes::resolve(&args.pid, args.exe.as_deref())?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for &pid in &pids {
        let waiting = match &args.at {
            Some(function) => format!("waiting for a thread of pid {pid} to reach `{function}`"),
            None => format!("waiting for the threads of pid {pid} to leave the patch's code"),
        };
        match crate::spinner::while_waiting(&waiting, args.json, || match &args.at {
            Some(function) => revert_at(pid, args.id.as_deref(), &options, function),
            None => revert(pid, args.id.as_deref(), &options),
        }) {
            Ok(report) => done.push((pid, report)),
            Err(e) => failed.push(format!("cannot revert in pid {pid}: {e}")),
        }
    }
    if args.json {
        if let [(_, report)] = done.as_slice() {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else if !done.is_empty() {
            let processes: Vec<_> = done
                .iter()
                .map(|(pid, r)| json!({ "pid": pid, "report": r }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "processes": processes }))?
            );
        }
    } else {
        for (pid, report) in &done {
            print_text(*pid, report);
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

fn print_text(pid: i32, report: &RevertReport) {
    println!(
        "reverted patch {} in pid {pid}: paused {} us ({} thread{}, {} stop{}, {} us stopped in all)",
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
}
