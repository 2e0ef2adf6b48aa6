//! `hotpatch prepare REV`: compiles a revision's files into the object cache ahead of time (for
//! example right after the service's own build), so the next `diff REV..NEW` compiles only the
//! new side and the patch.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hotpatch_builder::Cache;
use hotpatch_differ::read_git_revision;
use serde_json::json;

/// Arguments of `hotpatch prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The revision (tag, branch, commit id ...) whose files to compile, read from git objects.
    pub revision: String,
    /// The git repository (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// Where the original build's flags are found.
    #[command(flatten)]
    pub model: crate::cli::ModelArgs,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hotpatch prepare`.
pub fn run(args: &PrepareArgs) -> Result<()> {
    let start = Instant::now();
    let cache = Cache::from_env(false)?;
    let Some(dir) = cache.dir().map(|d| d.to_path_buf()) else {
        bail!("the object cache is off (HOTPATCH_CACHE, or neither XDG_CACHE_HOME nor HOME is set): there is nowhere to prepare {} into", args.revision);
    };
    let snapshot = read_git_revision(&args.repo, &args.revision)?;
    let settings = args.model.settings(Some(&args.repo))?;
    let model = crate::build_flags::discover_model(&settings, &snapshot)?;
    // Every compile command of every C file the build compiles (a file it does not list has
    // no old side a diff could need).
    let commands: Vec<_> = snapshot
        .files
        .keys()
        .filter(|f| f.ends_with(".c"))
        .filter_map(|f| model.candidates(f).ok())
        .flatten()
        .collect();
    let tree = tempfile::Builder::new()
        .prefix("hotpatch-prepare-")
        .tempdir()?;
    snapshot
        .write_to(tree.path())
        .with_context(|| format!("writing {} to {}", snapshot.label, tree.path().display()))?;
    let prepared = hotpatch_builder::prepare((&snapshot, tree.path()), &commands, &cache)?;
    let counts = cache.counts();
    let failed: Vec<(String, String)> = prepared
        .failed
        .iter()
        .map(|(file, why)| (file.clone(), crate::units::first_line(why)))
        .collect();
    if args.json {
        crate::outcome::print_json(&json!({
            "revision": args.revision,
            "cache": dir,
            "files": prepared.files,
            "skipped": prepared.skipped,
            "failed": failed.iter().map(|(file, why)| json!({"file": file, "why": why})).collect::<Vec<_>>(),
            "timings": {
                "prepare_ms": crate::pipeline::elapsed_ms(start),
                "cache": counts,
                "compile_jobs": hotpatch_builder::compiler_runs(),
            },
        }))?;
    } else {
        println!(
            "prepared {} file(s) of {} in {} ({} compiled, {} already cached)",
            prepared.files.len(),
            args.revision,
            dir.display(),
            counts.misses,
            counts.hits
        );
        for file in &prepared.skipped {
            println!("  skipped {file}: built with LTO or not in the revision");
        }
    }
    if let Some((file, why)) = failed.first() {
        bail!(
            "{} of {} file(s) of {} did not compile with the build's flags, first {file}: {why}",
            failed.len(),
            commands.len(),
            args.revision
        );
    }
    Ok(())
}
