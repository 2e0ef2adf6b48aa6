//! `hotpatch build OLD..NEW -o FILE [--pid N] [--cflags ...] [--json]`: writes the patch object
//! (relocatable ELF with its `.hotpatch.manifest`) instead of applying it, for `hotpatch apply`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hotpatch_applier::{FunctionAction, Target};
use hotpatch_differ::{parse_range, read_git_revision};
use serde_json::json;

use crate::pipeline::{self, elapsed_ms, Timings};
use crate::refusal;
use crate::spinner::compiling;

/// Arguments of `hotpatch build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Revision range OLD..NEW (tags, branches, commit ids ...), read from git objects.
    pub range: String,
    /// Where to write the patch object.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The git repository (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// A process running OLD: the patch records its build id (applying it to another binary is
    /// refused), and the process's symbols say which statics exist (without it, OLD compiled
    /// with the original flags says).
    #[arg(long)]
    pub pid: Option<i32>,
    /// Where the original build's flags are found.
    #[command(flatten)]
    pub model: crate::cli::ModelArgs,
    /// Accept one named refusal (repeatable), as `hotpatch diff --force`.
    #[arg(long, value_name = "ITEM")]
    pub force: Vec<String>,
    /// Compile everything afresh: neither read nor write the object cache (as
    /// `HOTPATCH_CACHE=off`; see `hotpatch prepare`).
    #[arg(long)]
    pub no_cache: bool,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hotpatch build`.
pub fn run(args: &BuildArgs) -> Result<()> {
    let mut timings = Timings::default();
    let start = Instant::now();
    let (old_rev, new_rev) = parse_range(&args.range)?;
    let old = read_git_revision(&args.repo, &old_rev)?;
    let new = read_git_revision(&args.repo, &new_rev)?;
    let settings = args.model.settings(Some(&args.repo))?;
    let model = crate::build_flags::discover_model(&settings, &new)?;
    let target = args
        .pid
        .map(|pid| Target::inspect(pid).with_context(|| format!("cannot inspect pid {pid}")))
        .transpose()?;
    let program = target
        .as_ref()
        .and_then(|t| pipeline::program_of(t, &old, &new));
    let cache = hotpatch_builder::Cache::from_env(args.no_cache)?;
    let mut changes = pipeline::classify(
        (&old, &new),
        args.model.cflags.as_deref(),
        (Some(&model), &cache),
        program,
    );
    refusal::apply_forces(&mut changes, &args.force);
    timings.diff_ms = elapsed_ms(start);
    // A patch object is as dangerous as an apply: the same refusals hold, before compiling.
    refusal::check(&changes, args.json, false, false)?;
    for warning in &changes.warnings {
        eprintln!("warning: {warning}");
    }
    if !pipeline::has_patchable_changes(&changes) {
        bail!(
            "nothing to patch between {} and {}: no function changed",
            changes.old_label,
            changes.new_label
        );
    }
    let patch = crate::spinner::while_waiting(&compiling(&changes), args.json, || {
        let how = (&model, &cache);
        pipeline::build_patch(&changes, (&old, &new), target.as_ref(), how, &mut timings)
    })?;
    let shown = changes.warnings.clone();
    refusal::accept_built(&mut changes, &patch.built, &args.force);
    for warning in changes.warnings.iter().filter(|w| !shown.contains(w)) {
        eprintln!("warning: {warning}");
    }
    refusal::check(&changes, args.json, false, true)?;
    let result = write_and_report(args, &changes, &patch, &timings);
    crate::build_flags::report_warnings(result, &patch.warnings)
}

/// Writes the patch object and says what it holds.
fn write_and_report(
    args: &BuildArgs,
    changes: &hotpatch_differ::ChangeSet,
    patch: &pipeline::BuiltUnits,
    timings: &Timings,
) -> Result<()> {
    std::fs::write(&args.output, &patch.built.object)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let manifest = &patch.built.manifest;
    if args.json {
        let value = json!({
            "output": args.output,
            "patch_id": manifest.patch_id,
            "old": changes.old_label,
            "new": changes.new_label,
            "target_build_id": manifest.target_build_id,
            "functions": manifest.functions.iter().map(|f| json!({
                "name": f.target.name(),
                "file": f.file,
                "action": f.action,
                "reason": f.reason,
                "preimage": f.preimage.is_some(),
            })).collect::<Vec<_>>(),
            "unchanged": patch.built.unchanged,
            "bindings": manifest.bindings,
            "cflags": manifest.cflags,
            "flags": manifest.flags,
            "flag_choices": patch.choices,
            "timings": timings,
        });
        crate::outcome::print_json(&value)?;
        return Ok(());
    }
    println!(
        "wrote {} ({} bytes): patch {} for {} → {}",
        args.output.display(),
        patch.built.object.len(),
        manifest.patch_id,
        changes.old_label,
        changes.new_label
    );
    match &manifest.target_build_id {
        Some(id) => println!("  for the binary with build id {id}"),
        None => println!(
            "  for any binary built from {old} (no --pid: build id not recorded; {old} compiled with the original flags decided which statics exist)",
            old = changes.old_label
        ),
    }
    print!("{}", crate::render::flags_text(patch));
    for name in &patch.built.unchanged {
        println!("  left alone   {name}: its compiled code did not change");
    }
    for f in &manifest.functions {
        let check = match (f.action, &f.preimage) {
            (FunctionAction::Add, _) => "",
            (_, Some(_)) => ", old code fingerprinted",
            (_, None) => ", old code not fingerprinted",
        };
        println!(
            "  {:<12} {}: {}{check}",
            crate::render::action_verb(f.action),
            f.target,
            f.reason
        );
    }
    Ok(())
}
