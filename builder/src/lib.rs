//! The builder: compiles the patch translation units with the original build's flags and merges
//! them into one relocatable patch object carrying a `.hotpatch.manifest` section.
//!
//! It knows the externalizer's [`PatchUnit`]s and writes the manifest through the applier's
//! artifact types, so the reader and writer of the patch object cannot drift.

mod compile;
mod flags;
mod merge;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use hotpatch_applier::artifact::{
    FunctionAction, Manifest, ManifestFunction, NewData, SymbolRef, MANIFEST_FORMAT,
};
use hotpatch_externalizer::{Action, PatchUnit};

pub use compile::Compiler;
pub use flags::{BuildFlags, FlagsOrigin, DEFAULT_CFLAGS, PATCH_FLAGS};
pub use merge::file_local_symbol;

/// Why a patch could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `hotpatch.toml` or `--cflags` could not be understood.
    #[error("bad build configuration: {0}")]
    Config(String),
    /// No C compiler could be found or started.
    #[error("no usable C compiler: {0}")]
    NoCompiler(String),
    /// The patch translation unit did not compile.
    #[error("the patch for {file} does not compile:\n{diagnostics}")]
    Compile {
        /// Repository-relative path of the source file the unit was made from.
        file: String,
        /// The compiler's diagnostics, verbatim.
        diagnostics: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {detail}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// The compiled object is not what the patch needs.
    #[error("{0}")]
    Object(String),
}

/// Where the patch comes from, recorded in the manifest.
#[derive(Debug, Clone, Default)]
pub struct PatchOrigin {
    /// The revision the running process is expected to run.
    pub old_revision: Option<String>,
    /// The revision the patch brings.
    pub new_revision: Option<String>,
}

/// A built patch: the object bytes (manifest embedded) and what went into it.
#[derive(Debug, Clone)]
pub struct BuiltPatch {
    /// The relocatable ELF patch object, manifest included.
    pub object: Vec<u8>,
    /// The manifest embedded in `object`.
    pub manifest: Manifest,
    /// The compiler that built it.
    pub compiler: PathBuf,
    /// The exact compiler arguments used for every unit.
    pub arguments: Vec<String>,
    /// Compiler warnings per unit file (empty units omitted).
    pub warnings: Vec<(String, String)>,
}

/// Compiles every unit inside `root` — a materialised copy of the new revision — and merges the
/// results into one patch object. Each unit's source is written beside its original file, so
/// quoted includes and relative `-I` paths resolve exactly as in the original build.
pub fn build(
    root: &Path,
    units: &[PatchUnit],
    flags: &BuildFlags,
    origin: &PatchOrigin,
) -> Result<BuiltPatch, BuildError> {
    let compiler = Compiler::locate()?;
    let arguments = flags.patch_arguments();
    let mut merger = merge::Merger::default();
    let mut functions = Vec::new();
    let mut new_data = Vec::new();
    let mut warnings = Vec::new();
    for (index, unit) in units.iter().enumerate() {
        let source = unit_source_path(&unit.file);
        let output = PathBuf::from(format!("{}.o", source.display()));
        write_file(&root.join(&source), unit.source.as_bytes())?;
        let diagnostics = compiler.compile(root, &source, &output, &arguments, &unit.file)?;
        if !diagnostics.trim().is_empty() {
            warnings.push((unit.file.clone(), diagnostics));
        }
        let bytes = std::fs::read(root.join(&output)).map_err(|e| BuildError::Io {
            path: root.join(&output),
            detail: e.to_string(),
        })?;
        let locals: HashSet<&str> = unit.bindings.iter().map(String::as_str).collect();
        let symbols = merger.add_unit(index, &unit.file, &bytes, &locals)?;
        for function in &unit.functions {
            let symbol = symbols
                .functions
                .get(&function.name)
                .cloned()
                .ok_or_else(|| {
                    BuildError::Object(format!(
                        "the compiled patch for {} has no code for `{}`",
                        unit.file, function.name
                    ))
                })?;
            functions.push(manifest_function(unit, function, symbol));
        }
        new_data.extend(unit.new_data.iter().map(|name| NewData {
            name: name.clone(),
            file: unit.file.clone(),
        }));
    }
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        patch_id: String::new(),
        old_revision: origin.old_revision.clone(),
        new_revision: origin.new_revision.clone(),
        target_build_id: None,
        cflags: arguments.clone(),
        functions,
        bindings: merger.bindings().to_vec(),
        new_data,
    };
    manifest.patch_id = patch_id(&manifest, units);
    let object = merger.finish(&manifest.to_json())?;
    Ok(BuiltPatch {
        object,
        manifest,
        compiler: compiler.path().to_path_buf(),
        arguments,
        warnings,
    })
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

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let io = |e: std::io::Error| BuildError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}

fn manifest_function(
    unit: &PatchUnit,
    function: &hotpatch_externalizer::PatchFunction,
    symbol: String,
) -> ManifestFunction {
    let target = if function.is_static {
        SymbolRef::FileLocal {
            name: function.name.clone(),
            file: unit.file.clone(),
        }
    } else {
        SymbolRef::Global {
            name: function.name.clone(),
        }
    };
    let action = match function.action {
        Action::Replace => FunctionAction::Replace,
        Action::Add => FunctionAction::Add,
        Action::InlinedOnly => FunctionAction::InlinedOnly,
    };
    ManifestFunction {
        symbol,
        target,
        action,
        reason: function.reason.clone(),
    }
}

/// A short id derived from what the patch contains and where it comes from.
fn patch_id(manifest: &Manifest, units: &[PatchUnit]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    manifest.to_json().hash(&mut hasher);
    for unit in units {
        unit.source.hash(&mut hasher);
    }
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}
