//! `hotpatch diff OLD..NEW [--apply | --dry-run] [--pid N]`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotpatch_applier::{ApplyOptions, Target};
use hotpatch_differ::{diff_snapshots, parse_range, read_git_revision};

use crate::cli::DiffArgs;
use crate::pipeline::{self, elapsed_ms, Timings};
use crate::render::{self, Printer};

/// Runs `hotpatch diff`.
pub fn run(args: &DiffArgs) -> Result<()> {
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        bail!(
            "--timeout must be a number of seconds >= 0, not {}",
            args.timeout
        );
    }
    let out = Printer::new(args.color.enabled(), args.json);
    let mut timings = Timings::default();

    let start = Instant::now();
    let (old_rev, new_rev) = parse_range(&args.range)?;
    let old = read_git_revision(&args.repo, &old_rev)?;
    let new = read_git_revision(&args.repo, &new_rev)?;
    let changes = diff_snapshots(&old, &new);
    timings.diff_ms = elapsed_ms(start);

    if !args.apply && !args.dry_run {
        return out.changes(&changes);
    }
    if !pipeline::has_patchable_changes(&changes) {
        return out.nothing_to_patch(&changes);
    }
    // Inspecting reads /proc and the binaries only; it fails early on a bad pid, before compiling.
    let target = args
        .pid
        .map(|pid| Target::inspect(pid).with_context(|| format!("cannot inspect pid {pid}")))
        .transpose()?;
    let patch = pipeline::build_patch(
        &changes,
        &old,
        &new,
        target.as_ref(),
        args.cflags.as_deref(),
        &mut timings,
    )?;
    let plan = match &target {
        Some(target) => Some(
            hotpatch_applier::plan(target, &patch.object)
                .with_context(|| format!("cannot patch pid {}", target.pid()))?,
        ),
        None => None,
    };
    if args.dry_run {
        return out.dry_run(&render::DryRun {
            changes: &changes,
            patch: &patch,
            plan: plan.as_ref(),
            show_source: args.show_source,
            timings: &timings,
        });
    }
    let (Some(target), Some(plan)) = (target, plan) else {
        bail!("--apply needs --pid");
    };
    let start = Instant::now();
    let options = ApplyOptions {
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let report = hotpatch_applier::apply(&target, &plan, &options)
        .with_context(|| format!("cannot patch pid {}", target.pid()))?;
    timings.apply_ms = elapsed_ms(start);
    out.applied(&render::Applied {
        changes: &changes,
        patch: &patch,
        report: &report,
        timings: &timings,
    })
}
