//! The preprocessed units of the files a diff analyses, made with each file's command of the
//! build model: what the compiler sees, for the differ and the externalizer to work on.

use std::collections::BTreeMap;

use hotpatch_builder::{BuildModel, Cache, CompileCommand, FlagSource};
use hotpatch_differ::{Snapshot, UnitTexts};

/// Preprocesses both revisions of each of `files` with its build command, on every core, through
/// `cache` (a side preprocessed before with the same files is not preprocessed again). A file
/// without a known command (only the default flags), with several, or whose preprocessing fails
/// has no unit: it is compared as written, and the returned warnings say so, one line a file.
pub fn preprocess_units(
    old: &Snapshot,
    new: &Snapshot,
    model: &BuildModel,
    files: &[String],
    cache: &Cache,
) -> (BTreeMap<String, UnitTexts>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut commands: Vec<(&str, CompileCommand)> = Vec::new();
    let as_written = "compared as written (macros, `#if` and storage classes from macros are not seen as the compiler sees them)";
    for file in files {
        match model.candidates(file) {
            Ok(mut candidates) if candidates.len() == 1 => {
                let command = candidates.remove(0);
                if command.source == FlagSource::Default {
                    warnings.push(format!("{file}: no compile command known: {as_written}"));
                } else {
                    commands.push((file, command));
                }
            }
            Ok(candidates) => warnings.push(format!(
                "{file}: the build compiles it {} ways: {as_written}",
                candidates.len()
            )),
            Err(e) => warnings.push(format!("{file}: {e}: {as_written}")),
        }
    }
    if commands.is_empty() {
        return (BTreeMap::new(), warnings);
    }
    let trees = match (write(old), write(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => {
            warnings.push(format!(
                "cannot write the revisions to preprocess them ({e}): every file {as_written}"
            ));
            return (BTreeMap::new(), warnings);
        }
    };
    // Every (file, side) on its own thread, as many at once as there are cores.
    let jobs: Vec<(usize, bool)> = (0..commands.len())
        .flat_map(|i| [(i, false), (i, true)])
        .collect();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let mut texts: BTreeMap<(usize, bool), Result<String, String>> = BTreeMap::new();
    for chunk in jobs.chunks(cores) {
        let done: Vec<((usize, bool), Result<String, String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(i, is_new)| {
                    let (snapshot, tree) = if is_new {
                        (new, trees.1.path())
                    } else {
                        (old, trees.0.path())
                    };
                    let (file, command) = &commands[i];
                    scope.spawn(move || {
                        if !snapshot.files.contains_key(*file) {
                            return ((i, is_new), Err(String::new()));
                        }
                        let text =
                            hotpatch_builder::preprocess_cached(command, snapshot, tree, cache)
                                .map_err(|e| first_line(&e.to_string()));
                        ((i, is_new), text)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        texts.extend(done);
    }
    let mut units = BTreeMap::new();
    for (i, (file, _)) in commands.iter().enumerate() {
        let mut side = |is_new: bool| texts.remove(&(i, is_new)).unwrap_or(Err(String::new()));
        let (before, after) = (side(false), side(true));
        let failure = [&before, &after]
            .into_iter()
            .find_map(|t| t.as_ref().err().filter(|e| !e.is_empty()).cloned());
        if let Some(error) = failure {
            warnings.push(format!(
                "{file}: preprocessing failed ({error}): {as_written}"
            ));
            continue;
        }
        units.insert(
            file.to_string(),
            UnitTexts {
                old: before.ok(),
                new: after.ok(),
            },
        );
    }
    (units, warnings)
}

/// The revision written to a fresh temporary directory.
fn write(snapshot: &Snapshot) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("hotpatch-preprocess-")
        .tempdir()?;
    snapshot.write_to(dir.path())?;
    Ok(dir)
}

/// The first line of an error that names the problem (the compiler's diagnostics follow it).
pub fn first_line(error: &str) -> String {
    error
        .lines()
        .find(|l| l.contains("error"))
        .or_else(|| error.lines().next())
        .unwrap_or("")
        .trim()
        .to_string()
}
