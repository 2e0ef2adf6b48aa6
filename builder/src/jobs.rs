//! The compiler runs of one patch unit, started together: the patch unit itself, the old and new
//! files with the original flags, which give the pre- and post-image fingerprints and, most of
//! the time, the object-level confirmation too (else the files are compiled once more with one
//! section per function for it). Each process waits for a slot of the run (see `slots`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hotpatch_applier::artifact::Preimage;
use hotpatch_externalizer::{Action, PatchUnit};

use crate::cache::Cache;
use crate::confirm::{self, Confirmation};
use crate::flags::confirm_arguments;
use crate::preimage::{self, Side};
use crate::{old_objects, unsectioned, BuildError, CompileCommand, Compiler, PatchOrigin};

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
    let cache = &origin.cache;
    std::thread::scope(|scope| {
        let patch = scope.spawn(|| compile_patch(compiler, root, unit, command, arguments));
        let switches = scope.spawn(|| {
            compiler.recorded_switches(root, &command.codegen_flags(), &unit.file, cache)
        });
        let compiled = origin.old_objects.object(&unit.file);
        let start = Instant::now();
        let old =
            scope.spawn(move || as_built(compiler, old_root, command, Side::Old, compiled, cache));
        let new = scope.spawn(|| as_built(compiler, Some(root), command, Side::New, None, cache));
        let (object, diagnostics) = patch.join().map_err(|_| died())??;
        let old = old.join().map_err(|_| died())??;
        let new = new.join().map_err(|_| died())??;
        let preimages = unit_fingerprints(unit, old.as_deref(), Side::Old)?;
        let postimages = unit_fingerprints(unit, new.as_deref(), Side::New)?;
        let confirmation = match (old_root, old.as_deref(), new.as_deref()) {
            (Some(old_root), Some(old), Some(new)) => Some(confirm_file(
                compiler,
                (old_root, root),
                unit,
                command,
                cache,
                (old, new),
            )?),
            _ => None,
        };
        let confirm_ms = start.elapsed().as_secs_f64() * 1000.0;
        let switches = switches.join().map_err(|_| died())??;
        Ok(UnitOutputs {
            switches,
            object,
            diagnostics,
            preimages,
            postimages,
            confirmation,
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

/// The object of the `side` revision of the unit's file (the tree under `root`) compiled with
/// the original flags: `compiled` when the caller compiled it already, else compiled here
/// (through `cache`). `None`: no such tree, an LTO build, or a file that revision does not have.
fn as_built<'a>(
    compiler: &Compiler,
    root: Option<&Path>,
    command: &CompileCommand,
    side: Side,
    compiled: Option<&'a [u8]>,
    cache: &Cache,
) -> Result<Option<Cow<'a, [u8]>>, BuildError> {
    let Some(root) = root.filter(|root| old_objects::compiles_as_built(command, root)) else {
        return Ok(None);
    };
    if let Some(object) = compiled {
        return Ok(Some(Cow::Borrowed(object)));
    }
    old_objects::compile_file(compiler, root, command, side, cache).map(|o| Some(Cow::Owned(o)))
}

/// Fingerprints of the `side` code of the unit's replaced functions in `object` (the `side`
/// revision compiled with the original flags; none without it).
fn unit_fingerprints(
    unit: &PatchUnit,
    object: Option<&[u8]>,
    side: Side,
) -> Result<HashMap<String, Preimage>, BuildError> {
    let Some(object) = object else {
        return Ok(HashMap::new());
    };
    // A new function has no old code; its new code is fingerprinted like the others, so that a
    // later patch replacing it can be checked against it.
    let names: HashSet<&str> = unit
        .functions
        .iter()
        .filter(|f| side == Side::New || f.action != Action::Add)
        .map(|f| f.name.as_str())
        .collect();
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    preimage::fingerprints(&unit.file, object, &names, side)
}

/// Compares the old and new file function by function: from `objects`, the two compiled with
/// the original flags, when their functions can be told apart exactly (see
/// [`crate::unsectioned`]); otherwise the files under `roots` (old, new) are compiled again
/// with one section per function (in parallel) and those are compared.
fn confirm_file(
    compiler: &Compiler,
    roots: (&Path, &Path),
    unit: &PatchUnit,
    command: &CompileCommand,
    cache: &Cache,
    objects: (&[u8], &[u8]),
) -> Result<Confirmation, BuildError> {
    if let Ok(confirmation) = unsectioned::confirm(objects.0, objects.1) {
        return Ok(confirmation);
    }
    let (old_root, new_root) = roots;
    let arguments = confirm_arguments(&command.flags());
    let compile = |root: &Path, side: Side| -> Result<Vec<u8>, BuildError> {
        old_objects::compile_revision(compiler, root, command, side, &arguments, cache)
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
        .map_err(|e| BuildError::Object(format!("comparing the objects of {}: {e}", unit.file)))
}
