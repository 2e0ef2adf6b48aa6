//! The stages strung together: revisions → ChangeSet → patch units → patch object. Shared by
//! `diff` and `demo`, so both run exactly the same pipeline.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use hotpatch_applier::{PatchObject, Target};
use hotpatch_builder::{
    BuildModel, BuildSection, BuiltPatch, Cache, CacheCounts, CompileCommand, FlagSource,
    OldObjects, PatchOrigin, DEFAULT_CFLAGS,
};
use hotpatch_differ::{
    diff_snapshots_with, files_to_analyse, Change, ChangeSet, DiffOptions, Program, Snapshot,
};
use hotpatch_externalizer::PatchUnit;
use serde::Serialize;

/// Milliseconds spent in each stage, reported in `--json` as `timings`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    /// Reading both revisions and classifying the changes.
    pub diff_ms: f64,
    /// Writing the patch translation units.
    pub externalize_ms: f64,
    /// Compiling and merging them into the patch object.
    pub compile_ms: f64,
    /// Compiling the old and new files and comparing their code function by function (runs
    /// in parallel with the patch compile, so it overlaps `compile_ms`).
    pub confirm_ms: f64,
    /// Resolving, loading and committing the patch in the process.
    pub apply_ms: f64,
    /// Lookups of the object cache (the old and new files' compiles).
    pub cache: CacheCounts,
    /// Compiler processes started (compiles, preprocessing, probes): what the cache saves.
    pub compile_jobs: usize,
    /// Getting the running binary's inline map (its DWARF read, or its map read back from the
    /// cache by build id).
    pub inline_map_ms: f64,
    /// Where the inline map came from: `cache`, `dwarf` (read and then cached), or `none` (no
    /// target, or no debug information).
    pub inline_map: &'static str,
}

/// Milliseconds since `start`.
pub fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Classifies the changes from `old` to `new`. Headers are found through the include directories
/// of the original build: every command of the build model, and the explicit flags (`cflags`,
/// else `hotpatch.toml` of the new revision). Each analysed file with a compile command is
/// judged on its preprocessed units, as the compiler sees it (from `cache` when they are there).
pub fn classify(
    (old, new): (&Snapshot, &Snapshot),
    cflags: Option<&str>,
    (model, cache): (Option<&BuildModel>, &Cache),
    program: Option<Program>,
) -> ChangeSet {
    let mut flags = match cflags {
        Some(text) => shlex::split(text),
        None => new
            .text("hotpatch.toml")
            .and_then(|text| BuildSection::parse(text, "hotpatch.toml").ok())
            .and_then(|section| section.cflags),
    }
    .unwrap_or_default();
    if let Some(model) = model {
        flags.extend(model.include_flags());
    }
    let mut options = DiffOptions::from_flags(&flags);
    options.program = program;
    let mut warnings = Vec::new();
    if let Some(model) = model {
        let files = files_to_analyse(old, new, &options);
        (options.units, warnings) = crate::units::preprocess_units(old, new, model, &files, cache);
    }
    let mut changes = diff_snapshots_with(old, new, &options);
    warnings.append(&mut changes.warnings);
    changes.warnings = warnings;
    changes
}

/// The `.c` files of either revision that the running process's binaries were built from, when
/// they say (see `Target::sources`): a change outside them is no concern of this process.
pub fn program_of(target: &Target, old: &Snapshot, new: &Snapshot) -> Option<Program> {
    let sources = target.sources()?;
    let files = old
        .files
        .keys()
        .chain(new.files.keys())
        .filter(|f| f.ends_with(".c") && sources.includes(f))
        .cloned()
        .collect();
    Some(Program {
        name: target.exe_path().display().to_string(),
        files,
    })
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
    /// How a compile command was chosen where the build had several for one file.
    pub choices: Vec<String>,
    /// Said loudly: files compiled with the default flags because nothing else was found.
    pub warnings: Vec<String>,
    /// The patch set as the running binary shows it (its inline map), when there is a target:
    /// under LTO it replaced the source-level candidates.
    pub selection: Option<crate::lto::Selection>,
}

/// Externalizes the change set against the new revision and compiles the patch with each file's
/// command of the build model. `static` functions the running binary no longer has (inlined
/// everywhere) are handled through their callers, unchanged ones are compiled into the patch as
/// private copies, and so are `static` variables it folded away. Which of them exist, the
/// target says; without a target, the old revision of each changed file compiled with its
/// build command says (the same objects then give the pre-images). Where the build compiled a
/// file several ways, the way that reproduces the running code is chosen. The compiles of the
/// old and new files go through `cache`; with it, each changed file's new side (the compile the
/// build waits for longest) is compiled from the start, while the patch units are written.
pub fn build_patch(
    changes: &ChangeSet,
    (old, new): (&Snapshot, &Snapshot),
    target: Option<&Target>,
    (model, cache): (&BuildModel, &Cache),
    timings: &mut Timings,
) -> Result<BuiltUnits> {
    let start = Instant::now();
    let cache = cache.clone().with_units(&changes.units);
    // The new revision: the patch and the new sides are compiled in it.
    let tree = tempfile::Builder::new()
        .prefix("hotpatch-build-")
        .tempdir()?;
    new.write_to(tree.path())
        .with_context(|| format!("writing {} to {}", new.label, tree.path().display()))?;
    // Files the build compiled one way only; the others' command is chosen later.
    let ahead: Vec<CompileCommand> = patched_files(changes)
        .into_iter()
        .filter_map(|file| match model.candidates(file) {
            Ok(mut candidates) if candidates.len() == 1 => candidates.pop(),
            _ => None,
        })
        .collect();
    std::thread::scope(|scope| {
        for command in &ahead {
            scope.spawn(|| hotpatch_builder::compile_new_side(tree.path(), command, &cache));
        }
        let how = (model, &cache, tree.path());
        build_in(changes, (old, new), target, how, (start, timings))
    })
}

/// [`build_patch`] once the new revision is written to `tree`; `start` is when it began.
fn build_in(
    changes: &ChangeSet,
    (old, new): (&Snapshot, &Snapshot),
    target: Option<&Target>,
    (model, cache, tree): (&BuildModel, &Cache, &std::path::Path),
    (start, timings): (Instant, &mut Timings),
) -> Result<BuiltUnits> {
    // The old revision: the pre-images (and without a target, which statics exist) are
    // compiled from it.
    let old_tree = tempfile::Builder::new()
        .prefix("hotpatch-build-v1-")
        .tempdir()?;
    old.write_to(old_tree.path())
        .with_context(|| format!("writing {} to {}", old.label, old_tree.path().display()))?;
    // A running target is the truth about its statics; compiling v1 first would only delay it.
    let old_objects = match target {
        Some(_) => OldObjects::default(),
        None => {
            let mut commands = Vec::new();
            for file in patched_files(changes) {
                // A file the build compiled several ways is chosen later, by the running code;
                // until then nothing is known of it, and every static is assumed present.
                if let [only] = model.candidates(file)?.as_slice() {
                    commands.push(only.clone());
                }
            }
            OldObjects::compile(old_tree.path(), &commands.iter().collect::<Vec<_>>(), cache)?
        }
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
        units: Some(&changes.units),
    };
    let map_start = Instant::now();
    timings.inline_map = target.map_or("none", |t| crate::dwarf_cache::prime(t, cache));
    timings.inline_map_ms = elapsed_ms(map_start);
    let selection =
        target.and_then(|t| crate::lto::select(changes, new, t, uses_lto(changes, model)));
    let units = match selection.as_ref().filter(|s| s.decides) {
        Some(selection) => {
            let mut units =
                hotpatch_externalizer::externalize(&selection.widen(changes), old, new, &options)?;
            selection.restrict(&mut units);
            units
        }
        None => hotpatch_externalizer::externalize(changes, old, new, &options)?,
    };
    timings.externalize_ms = elapsed_ms(start);

    let start = Instant::now();
    let origin = PatchOrigin {
        old_revision: Some(changes.old_label.clone()),
        new_revision: Some(changes.new_label.clone()),
        old_commit: old.commit.clone(),
        new_commit: new.commit.clone(),
        old_root: Some(old_tree.path().to_path_buf()),
        old_objects,
        // The build id of the module the changed files were compiled into (a library's own).
        target_build_id: target.and_then(|t| {
            t.build_id_of_sources(&patched_files(changes))
                .map(str::to_string)
        }),
        cache: cache.clone(),
    };
    let mut commands = BTreeMap::new();
    let mut choices = Vec::new();
    for unit in &units {
        let mut candidates = model.candidates(&unit.file)?;
        let command = if candidates.len() == 1 {
            candidates.remove(0)
        } else {
            let (command, why) =
                crate::build_flags::choose_by_evidence(unit, candidates, tree, &origin, target)?;
            choices.push(why);
            command
        };
        commands.insert(unit.file.clone(), command);
    }
    let defaulted: Vec<&str> = commands
        .values()
        .filter(|c| c.source == FlagSource::Default)
        .map(|c| c.file.as_str())
        .collect();
    let mut warnings = model.warnings().to_vec();
    warnings.extend(selection.as_ref().and_then(|s| s.warning.clone()));
    if !defaulted.is_empty() {
        warnings.push(format!(
            "no build flags found for {} ({}): compiling with the default {DEFAULT_CFLAGS}, which may \
             not be how the running binary was built; give --build-dir DIR (where it was built), \
             --compile-commands FILE or --cflags",
            defaulted.join(", "),
            model.searched()
        ));
    }
    let built = hotpatch_builder::build(tree, &units, &commands, &origin)
        .map_err(|e| crate::build_flags::with_warnings(e.into(), &warnings))?;
    let object = PatchObject::parse(built.object.clone())?;
    timings.compile_ms = prepare_ms + elapsed_ms(start);
    timings.confirm_ms = built.confirm_ms;
    timings.cache = cache.counts();
    timings.compile_jobs = hotpatch_builder::compiler_runs();
    Ok(BuiltUnits {
        units,
        built,
        object,
        choices,
        warnings,
        selection,
    })
}

/// Whether any file with changed or new functions was built with link-time optimisation.
fn uses_lto(changes: &ChangeSet, model: &BuildModel) -> bool {
    patched_files(changes).into_iter().any(|file| {
        model
            .candidates(file)
            .is_ok_and(|c| c.iter().any(|c| hotpatch_builder::uses_lto(&c.flags())))
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
