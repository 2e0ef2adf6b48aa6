//! The stages strung together: revisions → ChangeSet → patch units → patch object. Shared by
//! `diff` and `demo`, so both run exactly the same pipeline.

use std::time::Instant;

use anyhow::{Context, Result};
use hotpatch_applier::{PatchObject, Target};
use hotpatch_builder::{BuildFlags, BuiltPatch, OldObjects, PatchOrigin};
use hotpatch_differ::{diff_snapshots_with, Change, ChangeSet, DiffOptions, Snapshot};
use hotpatch_externalizer::PatchUnit;
use serde::Serialize;

/// Milliseconds spent in each stage, reported in `--json` as `timings`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    /// Reading both revisions and classifying the changes.
    pub diff_ms: f64,
    /// Writing the patch translation units.
    pub externalize_ms: f64,
    /// Compiling and merging them into the patch object (without a target, also compiling the
    /// old files first to learn which statics they keep).
    pub compile_ms: f64,
    /// Compiling the old and new files and comparing their code function by function (runs
    /// in parallel with the patch compile, so it overlaps `compile_ms`).
    pub confirm_ms: f64,
    /// Resolving, loading and committing the patch in the process.
    pub apply_ms: f64,
}

/// Milliseconds since `start`.
pub fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Classifies the changes from `old` to `new`. Headers are found through the include directories
/// of the original build's flags (`cflags`, else `hotpatch.toml` of the new revision).
pub fn classify(old: &Snapshot, new: &Snapshot, cflags: Option<&str>) -> ChangeSet {
    let options = BuildFlags::resolve(cflags, new.text("hotpatch.toml"))
        .map(|flags| DiffOptions::from_flags(&flags.cflags))
        .unwrap_or_default();
    diff_snapshots_with(old, new, &options)
}

/// Whether the change set holds anything a patch can carry (changed or new functions).
pub fn has_patchable_changes(changes: &ChangeSet) -> bool {
    changes
        .functions
        .iter()
        .any(|f| f.change != Change::Removed)
}

/// A compiled patch and what went into it.
pub struct BuiltUnits {
    /// The translation units, as the externalizer wrote them.
    pub units: Vec<PatchUnit>,
    /// The compiled, merged object with its manifest.
    pub built: BuiltPatch,
    /// The object as the applier reads it.
    pub object: PatchObject,
}

/// Externalizes the change set against the new revision and compiles the patch. `static`
/// functions the running binary no longer has (inlined everywhere) are handled through their
/// callers, unchanged ones are compiled into the patch as private copies, and so are `static`
/// variables it folded away. Which of them exist, the target says; without a target, the old
/// revision of each changed file compiled with the original flags says (the same objects then
/// give the pre-images).
pub fn build_patch(
    changes: &ChangeSet,
    old: &Snapshot,
    new: &Snapshot,
    target: Option<&Target>,
    cflags: Option<&str>,
    timings: &mut Timings,
) -> Result<BuiltUnits> {
    let start = Instant::now();
    let c_files: Vec<&str> = new
        .files
        .keys()
        .map(String::as_str)
        .filter(|f| f.ends_with(".c"))
        .collect();
    let flags = BuildFlags::resolve(cflags, new.text("hotpatch.toml"))?.with_compile_commands(
        new.text("hotpatch.toml"),
        |path| new.text(path),
        &c_files,
    )?;
    // The old revision too: the pre-images (and without a target, which statics exist) are
    // compiled from it.
    let old_tree = tempfile::Builder::new()
        .prefix("hotpatch-build-v1-")
        .tempdir()?;
    old.write_to(old_tree.path())
        .with_context(|| format!("writing {} to {}", old.label, old_tree.path().display()))?;
    // A running target is the truth about its statics; compiling v1 first would only delay it.
    let old_objects = match target {
        Some(_) => OldObjects::default(),
        None => OldObjects::compile(old_tree.path(), &patched_files(changes), &flags)?,
    };
    let prepare_ms = elapsed_ms(start);

    let start = Instant::now();
    let has_local = |file: &str, name: &str| match target {
        Some(t) => t.has_file_local_function(file, name),
        None => old_objects.has_local_function(file, name),
    };
    let has_variable = |file: &str, name: &str| match target {
        Some(t) => t.has_file_local_variable(file, name),
        None => old_objects.has_local_variable(file, name),
    };
    let options = hotpatch_externalizer::Options {
        target_has_local_function: Some(&has_local),
        target_has_local_variable: Some(&has_variable),
        units: None,
    };
    let units = hotpatch_externalizer::externalize(changes, old, new, &options)?;
    timings.externalize_ms = elapsed_ms(start);

    let start = Instant::now();
    let tree = tempfile::Builder::new()
        .prefix("hotpatch-build-")
        .tempdir()?;
    new.write_to(tree.path())
        .with_context(|| format!("writing {} to {}", new.label, tree.path().display()))?;
    let origin = PatchOrigin {
        old_revision: Some(changes.old_label.clone()),
        new_revision: Some(changes.new_label.clone()),
        old_commit: old.commit.clone(),
        new_commit: new.commit.clone(),
        old_root: Some(old_tree.path().to_path_buf()),
        old_objects,
        target_build_id: target.and_then(|t| t.build_id().map(str::to_string)),
    };
    let built = hotpatch_builder::build(tree.path(), &units, &flags, &origin)?;
    let object = PatchObject::parse(built.object.clone())?;
    timings.compile_ms = prepare_ms + elapsed_ms(start);
    timings.confirm_ms = built.confirm_ms;
    Ok(BuiltUnits {
        units,
        built,
        object,
    })
}

/// The `.c` files with changed or new functions: those the externalizer makes units of.
pub fn patched_files(changes: &ChangeSet) -> Vec<&str> {
    let mut files: Vec<&str> = changes
        .functions
        .iter()
        .filter(|f| f.change != Change::Removed && f.file.ends_with(".c"))
        .map(|f| f.file.as_str())
        .collect();
    files.sort_unstable();
    files.dedup();
    files
}
