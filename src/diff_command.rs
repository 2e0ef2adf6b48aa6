//! `hotpatch diff OLD..NEW [--apply | --dry-run] [--pid N]`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotpatch_applier::{ApplyOptions, Target};
use hotpatch_differ::{parse_range, read_git_revision, Snapshot};

use crate::cli::DiffArgs;
use crate::outcome::UsageError;
use crate::pipeline::{self, elapsed_ms, Timings};
use crate::refusal;
use crate::render::{self, Printer};
use crate::spinner::compiling;

/// Runs `hotpatch diff`.
pub fn run(args: &DiffArgs) -> Result<()> {
    let out = Printer::new(args.color.enabled(), args.json);
    let mut timings = Timings::default();

    let start = Instant::now();
    let (old, new) = read_revisions(args)?;
    // The work tree is the default build directory only when the revisions come from its git.
    let repo = args.range.is_some().then_some(args.repo.as_path());
    let settings = args.model.settings(repo)?;
    // A plain diff does without a build model that cannot be found; compiling cannot.
    let model = crate::build_flags::discover_model(&settings, &new);
    // Processes started after this are not patched by this apply: `hotpatch watch` patches them.
    let listed_at = std::time::SystemTime::now();
    // Inspecting reads /proc and the binaries only. The process's binaries say which files are
    // part of it; a bad pid is reported after the refusals, before compiling.
    let selection = crate::processes::resolve(&args.pid, args.exe.as_deref(), !args.no_children)?;
    selection.print_notes(args.json, true);
    let pids = selection.pids();
    let inspected = pids
        .first()
        .map(|&pid| Target::inspect(pid).with_context(|| format!("cannot inspect pid {pid}")));
    let program = match &inspected {
        Some(Ok(target)) => pipeline::program_of(target, &old, &new),
        _ => None,
    };
    let cache = hotpatch_builder::Cache::from_env(args.no_cache)?;
    let mut changes = pipeline::classify(
        (&old, &new),
        args.model.cflags.as_deref(),
        (model.as_ref().ok(), &cache),
        program,
    );
    refusal::apply_forces(&mut changes, &args.force);
    changes.warnings.extend(selection.warnings.iter().cloned());
    timings.diff_ms = elapsed_ms(start);

    if !args.apply && !args.dry_run {
        out.changes(&changes)?;
        return refusal::report(&changes, args.json, args.color.enabled());
    }
    // Nothing is compiled and no process is touched while an unforced refusal remains.
    refusal::check(&changes, args.json, args.color.enabled(), false)?;
    if !pipeline::has_patchable_changes(&changes) {
        if !changes.outside_program.is_empty() {
            // Not "nothing changed": the changes are real, the process is not built from them.
            bail!(
                "every changed C file ({}) is outside the running program by its debug information and symbols (a program built from a generated amalgamation, such as one big janet.c, names that file instead): nothing was patched",
                changes.outside_program.join(", ")
            );
        }
        return out.nothing_to_patch(&changes);
    }
    let target = inspected.transpose()?;
    let model = model?;
    let patch = crate::spinner::while_waiting(&compiling(&changes), args.json, || {
        let how = (&model, &cache);
        pipeline::build_patch(&changes, (&old, &new), target.as_ref(), how, &mut timings)
    })?;
    refusal::accept_built(&mut changes, &patch.built, &args.force);
    // What the running binary contradicts (types, locations, register contract) is refused
    // like the rest, before anything is written.
    let plan = match &target {
        Some(target)
            if changes.refusals.is_empty()
                && !crate::processes::has_patch(target.pid(), &patch.built.manifest.patch_id) =>
        {
            crate::proof::prove(
                target,
                &patch.object,
                (&old, &new, repo),
                &mut changes,
                &args.force,
                &format!("cannot patch pid {}", target.pid()),
            )
            .map_err(|e| crate::build_flags::with_warnings(e, &patch.warnings))?
        }
        _ => None,
    };
    refusal::check(&changes, args.json, args.color.enabled(), false)
        .map_err(|e| crate::build_flags::with_warnings(e, &patch.warnings))?;
    let warnings = patch.warnings.clone();
    let result = patch_or_check(
        args,
        &out,
        &changes,
        (&selection, listed_at),
        (target, plan),
        patch,
        timings,
    );
    crate::build_flags::report_warnings(result, &warnings)
}

/// After the patch is built and planned against the process (`planned`, when there is one):
/// check (`--dry-run`) or apply.
fn patch_or_check(
    args: &DiffArgs,
    out: &Printer,
    changes: &hotpatch_differ::ChangeSet,
    (selection, listed_at): (&crate::processes::Selection, std::time::SystemTime),
    (target, plan): (Option<Target>, Option<hotpatch_applier::Plan>),
    patch: pipeline::BuiltUnits,
    mut timings: Timings,
) -> Result<()> {
    let pids = selection.pids();
    let options = ApplyOptions {
        timeout: Duration::from_secs_f64(args.timeout),
        wait_return: args.wait_return,
        threadwise: !args.stop_all,
    };
    if args.apply && pids.len() > 1 {
        if args.at.is_some() {
            bail!(UsageError(
                "--at works on one process; give a single --pid (with --no-children for a process with forked children)".into()
            ));
        }
        let record = crate::processes::Record {
            object: &patch.built.object,
            listed_at,
        };
        return crate::processes::apply_group(
            selection,
            target.map(|t| (t, plan)),
            &patch.object,
            &options,
            record,
            (args.json, &args.force),
        );
    }
    // Not proven in `run` when the process has this patch already: planning says so.
    let plan = match (&target, plan) {
        (Some(target), None) => Some(crate::build_flags::plan(
            target,
            &patch.object,
            &format!("cannot patch pid {}", target.pid()),
            &args.force,
        )?),
        (_, plan) => plan,
    };
    if args.dry_run {
        // Attach, check safety exactly as the commit would, detach: nothing is written.
        let options = ApplyOptions {
            wait_return: false,
            threadwise: false,
            ..options
        };
        let check = match (&target, &plan) {
            (Some(target), Some(plan)) => Some(
                hotpatch_applier::check(target, plan, &options)
                    .with_context(|| format!("cannot patch pid {}", target.pid()))?,
            ),
            _ => None,
        };
        let others = crate::processes::check_others(selection, &patch.object, &options)?;
        return out.dry_run(&render::DryRun {
            check: check.as_ref(),
            others: &others,
            changes,
            patch: &patch,
            plan: plan.as_ref(),
            show_source: args.show_source,
            timings: &timings,
        });
    }
    let (Some(target), Some(plan)) = (target, plan) else {
        bail!(UsageError("--apply needs --pid".into()));
    };
    let start = Instant::now();
    let report = match &args.at {
        Some(function) => crate::spinner::while_waiting(
            &format!(
                "waiting for a thread of pid {} to reach `{function}`",
                target.pid()
            ),
            args.json,
            || hotpatch_applier::apply_at(&target, &plan, &options, function),
        ),
        None => crate::spinner::while_waiting(
            &format!(
                "waiting for the threads of pid {} to leave the code being replaced",
                target.pid()
            ),
            args.json,
            || hotpatch_applier::apply(&target, &plan, &options),
        ),
    }
    .with_context(|| format!("cannot patch pid {}", target.pid()))?;
    timings.apply_ms = elapsed_ms(start);
    crate::state::after_apply(&pids, &report.patch_id, &patch.built.object, listed_at);
    out.applied(&render::Applied {
        changes,
        patch: &patch,
        report: &report,
        timings: &timings,
    })
}

/// The two revisions: `OLD..NEW` from git, or `--old`/`--new` directories or single files (two
/// files are compared as two versions of the new file's name).
fn read_revisions(args: &DiffArgs) -> Result<(Snapshot, Snapshot)> {
    if let (Some(old), Some(new)) = (&args.old, &args.new) {
        let read = |path: &std::path::Path, key: &str| -> Result<Snapshot> {
            let label = path.display().to_string();
            if path.is_dir() {
                Snapshot::from_dir(path, &label)
                    .with_context(|| format!("cannot read directory {label}"))
            } else {
                Snapshot::from_file(path, key, &label)
                    .with_context(|| format!("cannot read {label}"))
            }
        };
        if old.is_dir() != new.is_dir() {
            bail!(UsageError(format!(
                "--old {} and --new {} must both be directories or both be files",
                old.display(),
                new.display()
            )));
        }
        let key = new
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file.c".to_string());
        return Ok((read(old, &key)?, read(new, &key)?));
    }
    let Some(range) = &args.range else {
        bail!(UsageError(
            "give a revision range OLD..NEW, or --old and --new".into()
        ));
    };
    let (old_rev, new_rev) = parse_range(range)?;
    let old = read_git_revision(&args.repo, &old_rev)?;
    let new = read_git_revision(&args.repo, &new_rev)?;
    Ok((old, new))
}
