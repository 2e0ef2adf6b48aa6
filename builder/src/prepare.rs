//! Compiling a revision's files ahead of time into the object cache (`hotpatch prepare REV`):
//! the compiles a later diff from this revision needs of its old side — each file with the
//! original flags (pre-images, and confirmation where that object can tell its functions apart
//! exactly, see `unsectioned`), with one section per function where it cannot, and the
//! switches the compiler records — and the differ's preprocessing of each file, so that diff
//! preprocesses and compiles only the new side and the patch.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use hotpatch_differ::{Snapshot, UnitTexts};

use crate::cache::Cache;
use crate::flags::confirm_arguments;
use crate::old_objects::{compile_file, compile_revision, compiles_as_built};
use crate::preimage::Side;
use crate::{BuildError, CompileCommand, Compiler, FlagSource};

/// What preparing a revision did.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Files whose results are now in the cache.
    pub files: Vec<String>,
    /// Files skipped: built with LTO (a per-file object says nothing of the binary) or absent.
    pub skipped: Vec<String>,
    /// Files that failed, with why (the others are prepared all the same).
    pub failed: Vec<(String, String)>,
}

/// Compiles every one of `commands` (files of `revision`, materialised at `root`) into
/// `cache`, as many at once as there are cores.
pub fn prepare(
    (revision, root): (&Snapshot, &Path),
    commands: &[CompileCommand],
    cache: &Cache,
) -> Result<Prepared, BuildError> {
    let compiler = Compiler::locate()?;
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(commands.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(command) = commands.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = prepare_file(&compiler, (revision, root), command, cache);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((command.file.clone(), result));
                }
            });
        }
    });
    let mut out = Prepared::default();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by(|a, b| a.0.cmp(&b.0));
    for (file, result) in results {
        match result {
            Ok(true) => out.files.push(file),
            Ok(false) => out.skipped.push(file),
            Err(e) => out.failed.push((file, e.to_string())),
        }
    }
    Ok(out)
}

/// The cached compiles of one file; `false`: the file is not compiled as built (skipped).
fn prepare_file(
    compiler: &Compiler,
    (revision, root): (&Snapshot, &Path),
    command: &CompileCommand,
    cache: &Cache,
) -> Result<bool, BuildError> {
    if !compiles_as_built(command, root) {
        return Ok(false);
    }
    // The differ's text of the old side (it preprocesses files whose command the build gives),
    // which also keys the compiles below.
    let cache = &match command.source {
        FlagSource::Default => cache.clone(),
        _ => {
            let unit = UnitTexts {
                old: Some(crate::preprocess_cached(command, revision, root, cache)?),
                new: None,
            };
            let units = BTreeMap::from([(command.file.clone(), unit)]);
            cache.clone().with_units(&units)
        }
    };
    let compiler = Compiler::for_command(command, compiler);
    // The side only says which text the cache would know; a prepared revision is the old side
    // of the next diff, and its key does not depend on the side.
    let object = compile_file(&compiler, root, command, Side::Old, cache)?;
    // The confirmation compile is needed only where that object cannot serve it.
    if crate::unsectioned::functions(&object).is_err() {
        let arguments = confirm_arguments(&command.flags());
        compile_revision(&compiler, root, command, Side::Old, &arguments, cache)?;
    }
    compiler.recorded_switches(root, &command.codegen_flags(), &command.file, cache)?;
    Ok(true)
}
