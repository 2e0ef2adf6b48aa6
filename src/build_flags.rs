//! The command line's side of the build model: where to look for it ([`BuildSettings`]),
//! choosing among several compile commands of one file by evidence from the running process,
//! checking the patch's flags against the binary's DWARF before anything is written, and saying
//! the build's warnings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hotpatch_applier::artifact::FileFlags;
use hotpatch_applier::{ApplyError, PatchObject, Plan, Target};
use hotpatch_builder::{recorded_switches, BuildModel, CompileCommand, Discover, PatchOrigin};
use hotpatch_differ::Snapshot;
use hotpatch_externalizer::PatchUnit;

/// Finds the build model of the program (see `hotpatch_builder::BuildModel`) for the files of
/// the new revision.
pub fn discover_model(settings: &BuildSettings, new: &Snapshot) -> Result<BuildModel> {
    let c_files: Vec<&str> = new
        .files
        .keys()
        .map(String::as_str)
        .filter(|f| f.ends_with(".c"))
        .collect();
    let revision_file = |path: &str| new.text(path).map(str::to_string);
    Ok(BuildModel::discover(&Discover {
        build_dir: settings
            .build_dir
            .as_deref()
            .or(settings.work_tree.as_deref()),
        compile_commands: settings.compile_commands.as_deref(),
        work_tree: settings.work_tree.as_deref(),
        cflags: settings.cflags.as_deref(),
        revision_file: &revision_file,
        repo_files: &c_files,
    })?)
}

/// Where the original build's flags are looked for (see `hotpatch_builder::BuildModel`).
#[derive(Debug, Default, Clone)]
pub struct BuildSettings {
    /// `--cflags`: flags for every file the build model does not list.
    pub cflags: Option<String>,
    /// `--build-dir`: the tree where the running binary was built (default: the work tree).
    pub build_dir: Option<PathBuf>,
    /// `--compile-commands`: the compilation database to use.
    pub compile_commands: Option<PathBuf>,
    /// The repository's work tree, when hotpatch runs in a checkout.
    pub work_tree: Option<PathBuf>,
}

impl BuildSettings {
    /// The settings for the repository at `repo` (its work tree is found when it is a
    /// checkout; without one, the work tree the build directory lies in), with the command
    /// line's options. Relative paths are made absolute.
    pub fn for_repo(
        repo: Option<&Path>,
        cflags: Option<&str>,
        build_dir: Option<&Path>,
        compile_commands: Option<&Path>,
    ) -> Result<BuildSettings> {
        let absolute = |path: &Path, what: &str| -> Result<PathBuf> {
            std::fs::canonicalize(path).with_context(|| format!("{what} {}", path.display()))
        };
        // The work tree of the repository, else of the build directory (a deploy repository
        // is bare; the service's checkout is where it was built).
        let work_tree_of = |dir: &Path| {
            gix::discover(dir)
                .ok()
                .and_then(|repo| repo.workdir().map(Path::to_path_buf))
                .and_then(|dir| std::fs::canonicalize(dir).ok())
        };
        let work_tree = repo
            .and_then(work_tree_of)
            .or_else(|| build_dir.and_then(work_tree_of));
        Ok(BuildSettings {
            cflags: cflags.map(str::to_string),
            build_dir: build_dir.map(|d| absolute(d, "--build-dir")).transpose()?,
            compile_commands: compile_commands
                .map(|f| absolute(f, "--compile-commands"))
                .transpose()?,
            work_tree,
        })
    }
}

/// Chooses among several compile commands of one file the one whose compile of the old revision
/// reproduces the running code (the pre-image of the functions the patch replaces), and says
/// which and why. Without a running process, or without a function to compare, it refuses,
/// naming the candidates.
pub fn choose_by_evidence(
    unit: &PatchUnit,
    candidates: Vec<CompileCommand>,
    tree: &Path,
    origin: &PatchOrigin,
    target: Option<&Target>,
) -> Result<(CompileCommand, String)> {
    let file = &unit.file;
    let list = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "#{} in {}: {}",
                i + 1,
                c.directory.display(),
                c.arguments.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let source = candidates[0].source.to_string();
    let Some(target) = target else {
        bail!(
            "{file} has {} compile commands in {source} and no running process to choose by: {list}; \
             give --pid (the command whose compile of the old side reproduces the running code is used), or \
             --compile-commands FILE with one command for {file}",
            candidates.len()
        );
    };
    let mut matching = Vec::new();
    let mut mismatches = Vec::new();
    for (i, candidate) in candidates.iter().enumerate() {
        let one = BTreeMap::from([(file.clone(), candidate.clone())]);
        let built = match hotpatch_builder::build(tree, std::slice::from_ref(unit), &one, origin) {
            Ok(built) => built,
            Err(e) => {
                mismatches.push(format!("#{}: {}", i + 1, first_line(&e.to_string())));
                continue;
            }
        };
        let has_preimage = built
            .manifest
            .functions
            .iter()
            .any(|f| f.preimage.is_some());
        let switches = switch_mismatch(target, &built.manifest.flags);
        if !has_preimage && switches.is_none() {
            bail!(
                "{file} has {} compile commands in {source} and neither the old code of a function \
                 the patch replaces nor the binary's recorded compiler switches can be compared \
                 with pid {}: {list}; give --compile-commands FILE with one command for {file}, or \
                 --cflags",
                candidates.len(),
                target.pid()
            );
        }
        let object = PatchObject::parse(built.object)?;
        match (hotpatch_applier::plan(target, &object), switches) {
            (Ok(_), None | Some(Ok(()))) => matching.push(i),
            (Ok(_), Some(Err(difference))) => {
                mismatches.push(format!("#{}: {difference}", i + 1));
            }
            (
                Err(
                    ApplyError::PreimageMismatch { name, detail, .. }
                    | ApplyError::StackedPreimageMismatch { name, detail, .. },
                ),
                _,
            ) => {
                mismatches.push(format!(
                    "#{}: the running `{name}` differs ({detail})",
                    i + 1
                ));
            }
            (Err(e), _) => {
                return Err(e).with_context(|| format!("cannot patch pid {}", target.pid()))
            }
        }
    }
    let Some(&chosen) = matching.first() else {
        bail!(
            "none of the {} compile commands for {file} in {source} reproduces the code running in \
             pid {}: {list}; closest mismatches: {}",
            candidates.len(),
            target.pid(),
            mismatches.join("; ")
        );
    };
    let others: Vec<String> = matching[1..]
        .iter()
        .map(|i| format!("#{} reproduces it too", i + 1))
        .chain(mismatches.iter().map(|m| format!("not {m}")))
        .collect();
    let old_side = origin.old_revision.as_deref().unwrap_or("old-side");
    let why = format!(
        "{file}: {} compile commands in {source}; chose #{} (in {}) because its {old_side} compile \
         reproduces the code running in pid {}; {}",
        candidates.len(),
        chosen + 1,
        candidates[chosen].directory.display(),
        target.pid(),
        others.join("; ")
    );
    let command = candidates
        .into_iter()
        .nth(chosen)
        .context("the chosen compile command")?;
    Ok((command, why))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// `error` with the build's warnings (default flags used) under its `error:` line: they are
/// often why it failed.
pub fn with_warnings(error: anyhow::Error, warnings: &[String]) -> anyhow::Error {
    if warnings.is_empty() {
        return error;
    }
    // Kept as the context of the error, so that its kind (and `--json`'s fields) survive.
    let text = format!(
        "{}\nwarning: {}",
        crate::render::error_text(&error),
        warnings.join("\nwarning: ")
    );
    error.context(text)
}

/// Says the build's warnings after the outcome: on standard error after a success, under the
/// `error:` line of a failure.
pub fn report_warnings(result: Result<()>, warnings: &[String]) -> Result<()> {
    match result {
        Ok(()) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        Err(error) => Err(with_warnings(error, warnings)),
    }
}

/// `hotpatch_applier::plan`, with a pre-image mismatch explained (which flags the patch's v1
/// was compiled with, from where, and what to try), and the code-generation switches of the
/// manifest's flags and type layouts checked against the binary's DWARF. `forced`: the
/// refusals the operator accepted (`--force`). `what` begins every error (`cannot patch pid N`).
pub fn plan(target: &Target, object: &PatchObject, what: &str, forced: &[String]) -> Result<Plan> {
    let files = object
        .manifest()
        .map(|m| m.flags.as_slice())
        .unwrap_or_default();
    if let Some(manifest) = object.manifest() {
        let disagreements = crate::proof::layout_disagreements(target, manifest);
        if let Some((_, name, reason)) = disagreements
            .into_iter()
            .find(|(_, name, _)| !forced.contains(name))
        {
            bail!("{what}: {name}: {reason}");
        }
    }
    let plan = hotpatch_applier::plan_accepting(target, object, forced).map_err(|error| {
        if !matches!(error, ApplyError::PreimageMismatch { .. }) {
            return anyhow::Error::new(error).context(what.to_string());
        }
        let used: Vec<String> = files
            .iter()
            .map(|f| {
                let recorded = match switch_mismatch(target, std::slice::from_ref(f)) {
                    Some(Err(difference)) => format!(" ({difference})"),
                    _ => String::new(),
                };
                format!(
                    "{} with `{}` from {}{recorded}",
                    f.file,
                    f.arguments.join(" "),
                    f.source
                )
            })
            .collect();
        anyhow::anyhow!(
            "{what}: {error}; v1 was compiled as {}: if the running binary was built otherwise, \
             give --build-dir DIR (the tree where it was built), --compile-commands FILE or \
             --cflags '...'",
            if used.is_empty() {
                "the manifest does not say".to_string()
            } else {
                used.join(", ")
            }
        )
    })?;
    if let Some(Err(difference)) = switch_mismatch(target, files) {
        bail!(
            "{what}: {difference}: refusing before anything is written; give the build's own \
             flags (--build-dir DIR where it was built, --compile-commands FILE or --cflags '...')"
        );
    }
    Ok(plan)
}

/// Compares the code-generation switches of each file's flags (`files`) with those the running binary's
/// DWARF records for that file (`DW_AT_producer`). `None`: nothing to compare (no debug
/// information, a compiler that records no switches); `Err` says the first difference.
fn switch_mismatch(target: &Target, files: &[FileFlags]) -> Option<Result<(), String>> {
    let mut compared = false;
    for flags in files.iter().filter(|f| !f.switches.is_empty()) {
        let recorded: Vec<Vec<String>> = target
            .producers(&flags.file)
            .iter()
            .filter_map(|p| recorded_switches(p))
            .collect();
        let Some(binary) = recorded.first() else {
            continue;
        };
        compared = true;
        if recorded.contains(&flags.switches) {
            continue;
        }
        let only = |a: &[String], b: &[String]| {
            let words: Vec<&str> = a
                .iter()
                .filter(|w| !b.contains(w))
                .map(String::as_str)
                .collect();
            if words.is_empty() {
                "nothing more".to_string()
            } else {
                format!("`{}`", words.join(" "))
            }
        };
        return Some(Err(format!(
            "the running binary's DWARF says {} was compiled with {} that the patch's flags (from \
             {}) lack, and the patch's flags have {} that it lacks",
            flags.file,
            only(binary, &flags.switches),
            flags.source,
            only(&flags.switches, binary)
        )));
    }
    compared.then_some(Ok(()))
}
