//! The compiler runs of one patch unit, started together: the patch unit itself, the old file
//! for the pre-image fingerprints, and the old and new files for object-level confirmation.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hotpatch_applier::artifact::Preimage;
use hotpatch_externalizer::{Action, PatchUnit};

use crate::confirm::{self, Confirmation};
use crate::flags::{preimage_arguments, uses_lto};
use crate::{preimage, BuildError, CompileCommand, Compiler, PatchOrigin};

/// What the compiler runs of one unit produced.
pub struct UnitOutputs {
    /// The compiled patch unit.
    pub object: Vec<u8>,
    /// The compiler's warnings for it.
    pub diagnostics: String,
    /// Fingerprints of the old code of the unit's replaced functions.
    pub preimages: HashMap<String, Preimage>,
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
    let died = || BuildError::Object("a compiler job of the builder panicked".to_string());
    std::thread::scope(|scope| {
        let patch = scope.spawn(|| compile_patch(compiler, root, unit, command, arguments));
        let switches =
            scope.spawn(|| compiler.recorded_switches(root, &command.codegen_flags(), &unit.file));
        let preimages = scope.spawn(|| unit_preimages(compiler, unit, command, origin));
        let confirmation = scope.spawn(|| {
            let start = Instant::now();
            let result = confirm_file(compiler, root, unit, command, origin);
            (result, start.elapsed().as_secs_f64() * 1000.0)
        });
        let (object, diagnostics) = patch.join().map_err(|_| died())??;
        let preimages = preimages.join().map_err(|_| died())??;
        let (confirmation, confirm_ms) = confirmation.join().map_err(|_| died())?;
        let switches = switches.join().map_err(|_| died())??;
        Ok(UnitOutputs {
            switches,
            object,
            diagnostics,
            preimages,
            confirmation: confirmation?,
            confirm_ms,
        })
    })
}

fn compile_patch(
    compiler: &Compiler,
    root: &Path,
    unit: &PatchUnit,
    command: &CompileCommand,
    arguments: &[String],
) -> Result<(Vec<u8>, String), BuildError> {
    let source = root.join(unit_source_path(&unit.file));
    let output = PathBuf::from(format!("{}.o", source.display()));
    crate::write_file(&source, unit.source.as_bytes())?;
    let placed = command.place(root, arguments)?;
    let diagnostics =
        compiler.compile(&placed.cwd, &source, &output, &placed.arguments, &unit.file)?;
    let bytes = read(&output)?;
    Ok((bytes, diagnostics))
}

/// Where the translation unit of `file` is written: beside it, as `NAME.hotpatch.c`.
fn unit_source_path(file: &str) -> PathBuf {
    let path = Path::new(file);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.hotpatch.c"))
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|e| BuildError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Fingerprints of the old code of the unit's replaced functions (none without an old tree,
/// for an LTO build, or for a file the old revision does not have).
fn unit_preimages(
    compiler: &Compiler,
    unit: &PatchUnit,
    command: &CompileCommand,
    origin: &PatchOrigin,
) -> Result<HashMap<String, Preimage>, BuildError> {
    let Some(old_root) = origin.old_root.as_deref() else {
        return Ok(HashMap::new());
    };
    let flags = command.flags();
    if uses_lto(&flags) || !old_root.join(&unit.file).is_file() {
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
    preimage::fingerprints(
        compiler,
        old_root,
        command,
        &preimage_arguments(&flags),
        &names,
    )
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
    if uses_lto(&flags)
        || !old_root.join(&unit.file).is_file()
        || !new_root.join(&unit.file).is_file()
    {
        return Ok(None);
    }
    let mut arguments = preimage_arguments(&flags);
    arguments.push("-ffunction-sections".to_string());
    arguments.push("-fdata-sections".to_string());
    let compile = |root: &Path, which: &str| -> Result<Vec<u8>, BuildError> {
        let output = root.join(format!("{}.hotpatch-confirm-{which}.o", unit.file));
        let placed = command.place(root, &arguments)?;
        compiler
            .compile(
                &placed.cwd,
                &root.join(&unit.file),
                &output,
                &placed.arguments,
                &unit.file,
            )
            .map_err(|e| match e {
                BuildError::Compile { file, diagnostics } => BuildError::Preimage(format!(
                    "the {which} revision of {file} does not compile with the original flags, so its code cannot be compared:\n{diagnostics}"
                )),
                other => other,
            })?;
        let bytes = read(&output)?;
        let _ = std::fs::remove_file(&output);
        Ok(bytes)
    };
    let (old, new) = std::thread::scope(|scope| {
        let old = scope.spawn(|| compile(old_root, "old"));
        let new = compile(new_root, "new");
        (old.join(), new)
    });
    let old = old.map_err(|_| BuildError::Object("a compiler job panicked".to_string()))??;
    let new = new?;
    confirm::confirm(&old, &new)
        .map(Some)
        .map_err(|e| BuildError::Object(format!("comparing the objects of {}: {e}", unit.file)))
}
