//! The compiler runs of one patch unit, started together: the patch unit itself, the old and new
//! files for the pre- and post-image fingerprints, and the old and new files for object-level
//! confirmation.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hotpatch_applier::artifact::Preimage;
use hotpatch_externalizer::{Action, PatchUnit};

use crate::cache::Cache;
use crate::confirm::{self, Confirmation};
use crate::flags::confirm_arguments;
use crate::preimage::{self, Side};
use crate::{old_objects, BuildError, CompileCommand, Compiler, PatchOrigin};

/// What the compiler runs of one unit produced.
pub struct UnitOutputs {
    /// The compiled patch unit.
    pub object: Vec<u8>,
    /// The compiler's warnings for it.
    pub diagnostics: String,
    /// Fingerprints of the old code of the unit's replaced functions.
    pub preimages: HashMap<String, Preimage>,
    /// Fingerprints of their new code, made the same way.
    pub postimages: HashMap<String, Preimage>,
    /// The object-level comparison of the old and new file (`None`: no old file to compare).
    pub confirmation: Option<Confirmation>,
    /// Wall time of the confirmation, in milliseconds.
    pub confirm_ms: f64,
    /// The code-generation switches the compiler records for the original flags (`None`: it
    /// records none).
    pub switches: Option<Vec<String>>,
}

/// Runs every compiler job of `unit` in parallel: the patch unit compiled with `arguments`, and
/// the old and new file with the original build's flags, each replayed with `command` where
/// the build compiled.
pub fn run(
    compiler: &Compiler,
    root: &Path,
    unit: &PatchUnit,
    command: &CompileCommand,
    origin: &PatchOrigin,
    arguments: &[String],
) -> Result<UnitOutputs, BuildError> {
    let old_root = origin.old_root.as_deref();
    std::thread::scope(|scope| {
        let patch = scope.spawn(|| compile_patch(compiler, root, unit, command, arguments));
        let switches = scope.spawn(|| {
            compiler.recorded_switches(root, &command.codegen_flags(), &unit.file, &origin.cache)
        });
        let old_object = origin.old_objects.object(&unit.file);
        let cache = &origin.cache;
        let preimages = scope.spawn(move || {
            unit_fingerprints(
                compiler,
                old_root,
                unit,
                command,
                Side::Old,
                old_object,
                cache,
            )
        });
        let postimages = scope.spawn(|| {
            unit_fingerprints(compiler, Some(root), unit, command, Side::New, None, cache)
        });
        let confirmation = scope.spawn(|| {
            let start = Instant::now();
            let result = confirm_file(compiler, root, unit, command, origin);
            (result, start.elapsed().as_secs_f64() * 1000.0)
        });
        let (object, diagnostics) = patch.join().map_err(|_| died())??;
        let preimages = preimages.join().map_err(|_| died())??;
        let postimages = postimages.join().map_err(|_| died())??;
        let (confirmation, confirm_ms) = confirmation.join().map_err(|_| died())?;
        let switches = switches.join().map_err(|_| died())??;
        Ok(UnitOutputs {
            switches,
            object,
            diagnostics,
            preimages,
            postimages,
            confirmation: confirmation?,
            confirm_ms,
        })
    })
}

/// The error of a compiler job whose thread panicked.
pub fn died() -> BuildError {
    BuildError::Object("a compiler job of the builder panicked".to_string())
}

fn compile_patch(
    compiler: &Compiler,
    root: &Path,
    unit: &PatchUnit,
    command: &CompileCommand,
    arguments: &[String],
) -> Result<(Vec<u8>, String), BuildError> {
    let source = root.join(unit_source_path(&unit.file, unit.preprocessed));
    let output = PathBuf::from(format!("{}.o", source.display()));
    crate::write_file(&source, unit.source.as_bytes())?;
    let placed = command.place(root, arguments)?;
    // Preprocessed text is compiled as such, also when the build's flags name a language.
    let mut arguments = placed.arguments;
    if unit.preprocessed {
        arguments.push("-fpreprocessed".to_string());
    }
    let diagnostics = compiler.compile(&placed.cwd, &source, &output, &arguments, &unit.file)?;
    let bytes = read(&output)?;
    Ok((bytes, diagnostics))
}

/// Where the translation unit of `file` is written: beside it, as `NAME.hotpatch.c`, or
/// `NAME.hotpatch.i` for preprocessed text.
fn unit_source_path(file: &str, preprocessed: bool) -> PathBuf {
    let path = Path::new(file);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = if preprocessed { "i" } else { "c" };
    path.with_file_name(format!("{stem}.hotpatch.{extension}"))
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|e| BuildError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Fingerprints of the `side` code of the unit's replaced functions, the `side` revision being
/// the tree under `root` (none without that tree, for an LTO build, or for a file that revision
/// does not have), from `compiled` when the caller compiled that revision's object already, or
/// else compiled here (through `cache`).
fn unit_fingerprints(
    compiler: &Compiler,
    root: Option<&Path>,
    unit: &PatchUnit,
    command: &CompileCommand,
    side: Side,
    compiled: Option<&[u8]>,
    cache: &Cache,
) -> Result<HashMap<String, Preimage>, BuildError> {
    let Some(root) = root else {
        return Ok(HashMap::new());
    };
    if !old_objects::compiles_as_built(command, root) {
        return Ok(HashMap::new());
    }
    let names: HashSet<&str> = unit
        .functions
        .iter()
        .filter(|f| f.action != Action::Add)
        .map(|f| f.name.as_str())
        .collect();
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let built;
    let object = match compiled {
        Some(object) => object,
        None => {
            built = old_objects::compile_file(compiler, root, command, side, cache)?;
            &built
        }
    };
    preimage::fingerprints(&unit.file, object, &names, side)
}

/// Compiles the old and new file with the original flags and `-ffunction-sections` (in
/// parallel) and compares them function by function.
fn confirm_file(
    compiler: &Compiler,
    new_root: &Path,
    unit: &PatchUnit,
    command: &CompileCommand,
    origin: &PatchOrigin,
) -> Result<Option<Confirmation>, BuildError> {
    let Some(old_root) = origin.old_root.as_deref() else {
        return Ok(None);
    };
    // With LTO the binary's inlining and cloning cross files: a per-file compile cannot confirm
    // it, so the source-level selection (a superset) stands.
    let flags = command.flags();
    if !old_objects::compiles_as_built(command, old_root) || !new_root.join(&unit.file).is_file() {
        return Ok(None);
    }
    let arguments = confirm_arguments(&flags);
    let compile = |root: &Path, side: Side| -> Result<Vec<u8>, BuildError> {
        old_objects::compile_revision(compiler, root, command, side, &arguments, &origin.cache)
            .map_err(|e| match e {
                BuildError::Compile { file, diagnostics } => BuildError::Preimage(format!(
                    "the {} revision of {file} does not compile with the original flags, so its code cannot be compared:\n{diagnostics}",
                    side.word()
                )),
                other => other,
            })
    };
    let (old, new) = std::thread::scope(|scope| {
        let old = scope.spawn(|| compile(old_root, Side::Old));
        let new = compile(new_root, Side::New);
        (old.join(), new)
    });
    let old = old.map_err(|_| BuildError::Object("a compiler job panicked".to_string()))??;
    let new = new?;
    confirm::confirm(&old, &new)
        .map(Some)
        .map_err(|e| BuildError::Object(format!("comparing the objects of {}: {e}", unit.file)))
}
