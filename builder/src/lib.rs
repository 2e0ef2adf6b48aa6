//! The builder: compiles the patch translation units with the original build's flags and merges
//! them into one relocatable patch object carrying a `.hotpatch.manifest` section.
//!
//! It knows the externalizer's [`PatchUnit`]s and writes the manifest through the applier's
//! artifact types, so the reader and writer of the patch object cannot drift.

pub mod cache;
mod command;
mod compile;
mod compile_commands;
mod confirm;
mod flags;
mod jobs;
mod make;
mod merge;
mod model;
mod old_objects;
pub mod preimage;
mod prepare;
mod preprocess;
mod preprocessed;
mod select;
mod slots;
mod unsectioned;

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use hotpatch_applier::artifact::{
    FileFlags, FunctionAction, Manifest, ManifestFunction, NewData, Preimage, SymbolRef,
    MANIFEST_FORMAT,
};
use hotpatch_externalizer::{Action, PatchUnit};

pub use cache::{Cache, CacheCounts};
pub use command::{CompileCommand, FlagSource};
pub use compile::{compiler_runs, Compiler};
pub use flags::{recorded_switches, uses_lto, BuildSection, DEFAULT_CFLAGS, PATCH_FLAGS};
pub use merge::{file_local_symbol, static_local_symbol};
pub use model::{BuildModel, Discover, COMPILE_COMMANDS};
pub use old_objects::{compile_new_side, OldObjects};
pub use prepare::{prepare, Prepared};
pub use preprocess::preprocess;
pub use preprocessed::preprocess_cached;
pub use slots::connect_jobserver;

/// Why a patch could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// `hotpatch.toml`, `--cflags` or the build's own description could not be understood or
    /// asked (a malformed database, a failing dry run).
    #[error("bad build configuration: {0}")]
    Config(String),
    /// The build model does not say how a file the patch needs was compiled.
    #[error("no compile command for {file} in {looked_in}: pass --cflags for it, or --compile-commands FILE (or --build-dir DIR) of the build that compiled it")]
    NoCompileCommand {
        /// Repository-relative path of the file.
        file: String,
        /// What was searched (the database and its number of entries).
        looked_in: String,
    },
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
    /// The pre-image fingerprints of the old revision could not be made.
    #[error("{0}")]
    Preimage(String),
}

/// Where the patch comes from, recorded in the manifest.
#[derive(Debug, Clone, Default)]
pub struct PatchOrigin {
    /// The revision the running process is expected to run.
    pub old_revision: Option<String>,
    /// The revision the patch brings.
    pub new_revision: Option<String>,
    /// Full commit id of the old revision, when read from git.
    pub old_commit: Option<String>,
    /// Full commit id of the new revision, when read from git.
    pub new_commit: Option<String>,
    /// A materialised copy of the old revision: with it, every replaced function carries the
    /// fingerprint of its old code (compiled with the original flags) for the applier to check.
    pub old_root: Option<PathBuf>,
    /// Files of `old_root` the caller has compiled already with the original flags (to learn
    /// which statics exist): their pre-images come from these objects instead of a new compile.
    pub old_objects: OldObjects,
    /// GNU build id (hex) of the binary the patch is for, when known.
    pub target_build_id: Option<String>,
    /// Where the old and new files' compiles are kept between runs (default: nowhere).
    pub cache: Cache,
}

/// A built patch: the object bytes (manifest embedded) and what went into it.
#[derive(Debug, Clone)]
pub struct BuiltPatch {
    /// The relocatable ELF patch object, manifest included.
    pub object: Vec<u8>,
    /// The manifest embedded in `object`.
    pub manifest: Manifest,
    /// The compiler found for patches (`CC`, else the platform's); a file whose build command
    /// names another C compiler present here is compiled with that one (see `flags`).
    pub compiler: PathBuf,
    /// For every unit: the arguments it was compiled with (in the build's own directory and
    /// paths; the revision is substituted for the source tree) and where they came from.
    pub flags: Vec<FileFlags>,
    /// Compiler warnings per unit file (empty units omitted), and notes of the object-level
    /// confirmation.
    pub warnings: Vec<(String, String)>,
    /// Functions of the source change whose compiled code is the same as before, so the patch
    /// leaves them alone, as `file: name`.
    pub unchanged: Vec<String>,
    /// Milliseconds spent compiling and comparing the old and new files (the longest unit; the
    /// comparison runs in parallel with the patch compile).
    pub confirm_ms: f64,
    /// Functions the change reaches that cannot be replaced live (always active, their code
    /// changed): left out of the object's manifest. The caller refuses the patch unless the
    /// operator forces each by name.
    pub refusals: Vec<hotpatch_differ::Refusal>,
}

/// Compiles every unit inside `root` — a materialised copy of the new revision — with its
/// file's compile command in `commands`, and merges the results into one patch object. Each
/// unit's source is written beside its original file and compiled where the build compiled
/// (see [`CompileCommand`]), so quoted includes and relative `-I` paths resolve as in the
/// original build, to the revision's files, with the build tree's generated headers after them.
pub fn build(
    root: &Path,
    units: &[PatchUnit],
    commands: &BTreeMap<String, CompileCommand>,
    origin: &PatchOrigin,
) -> Result<BuiltPatch, BuildError> {
    let compiler = Compiler::locate()?;
    let mut arguments: Option<Vec<String>> = None;
    let mut flags = Vec::new();
    let mut merger = merge::Merger::default();
    let mut functions = Vec::new();
    let mut new_data = Vec::new();
    let mut warnings = Vec::new();
    let mut confirm_ms = 0.0f64;
    let mut file_cflags = BTreeMap::new();
    let mut unchanged = Vec::new();
    let mut refusals = Vec::new();
    let mut unit_commands = Vec::with_capacity(units.len());
    for unit in units {
        let command = commands
            .get(&unit.file)
            .ok_or_else(|| BuildError::NoCompileCommand {
                file: unit.file.clone(),
                looked_in: "the commands given to the builder".to_string(),
            })?;
        unit_commands.push(command);
    }
    let mut all_outputs = run_units(&compiler, root, units, &unit_commands, origin).into_iter();
    for ((index, unit), command) in units.iter().enumerate().zip(unit_commands) {
        let unit_arguments = flags::patch_arguments(&command.flags());
        match &arguments {
            None => arguments = Some(unit_arguments.clone()),
            Some(first) if *first != unit_arguments => {
                file_cflags.insert(unit.file.clone(), unit_arguments.clone());
            }
            Some(_) => {}
        }
        let unit_compiler = Compiler::for_command(command, &compiler);
        let outputs = all_outputs.next().unwrap_or_else(|| Err(jobs::died()))?;
        flags.push(FileFlags {
            compiler: unit_compiler.path().to_string_lossy().into_owned(),
            file: unit.file.clone(),
            directory: command.directory.to_string_lossy().into_owned(),
            arguments: unit_arguments.clone(),
            source: command.source.to_string(),
            switches: outputs.switches.clone().unwrap_or_default(),
            types: hotpatch_applier::type_layout::unit_layouts(&outputs.object, None)
                .unwrap_or_default()
                .concat(),
        });
        if !outputs.diagnostics.trim().is_empty() {
            warnings.push((unit.file.clone(), outputs.diagnostics.clone()));
        }
        confirm_ms = confirm_ms.max(outputs.confirm_ms);
        let confirmed = select::confirmed_functions(unit, outputs.confirmation.as_ref());
        warnings.extend(confirmed.warnings);
        unchanged.extend(confirmed.unchanged);
        refusals.extend(confirmed.refusals);
        if confirmed.functions.is_empty() && unit.new_data.is_empty() {
            // Nothing of this unit goes in (its candidates unchanged, or refused and forced
            // out): its code must not be linked into the process either.
            continue;
        }
        let locals: HashSet<&str> = unit.bindings.iter().map(String::as_str).collect();
        let symbols = merger.add_unit(
            index,
            &unit.file,
            &outputs.object,
            &locals,
            &unit.static_locals,
        )?;
        let mut preimages = outputs.preimages;
        let mut postimages = outputs.postimages;
        for function in &confirmed.functions {
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
            let images = Images {
                preimage: preimages.remove(&function.name),
                postimage: postimages.remove(&function.name),
            };
            functions.push(manifest_function(unit, function, symbol, images));
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
        old_commit: origin.old_commit.clone(),
        new_commit: origin.new_commit.clone(),
        target_build_id: origin.target_build_id.clone(),
        cflags: arguments.unwrap_or_default(),
        file_cflags,
        flags: flags.clone(),
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
        flags,
        warnings,
        unchanged,
        confirm_ms,
        refusals,
    })
}

/// The compiler runs of every unit (see [`jobs::run`]), in the order of `units`: all units at
/// once when each is of another file (their scratch files are named after it), else one by one.
fn run_units(
    compiler: &Compiler,
    root: &Path,
    units: &[PatchUnit],
    commands: &[&CompileCommand],
    origin: &PatchOrigin,
) -> Vec<Result<jobs::UnitOutputs, BuildError>> {
    let run = |(unit, command): (&PatchUnit, &&CompileCommand)| {
        let unit_compiler = Compiler::for_command(command, compiler);
        let arguments = flags::patch_arguments(&command.flags());
        jobs::run(&unit_compiler, root, unit, command, origin, &arguments)
    };
    let files: HashSet<&str> = units.iter().map(|u| u.file.as_str()).collect();
    if files.len() < units.len() || units.len() < 2 {
        return units.iter().zip(commands).map(run).collect();
    }
    std::thread::scope(|scope| {
        let jobs: Vec<_> = units
            .iter()
            .zip(commands)
            .map(|job| scope.spawn(move || run(job)))
            .collect();
        jobs.into_iter()
            .map(|job| job.join().unwrap_or_else(|_| Err(jobs::died())))
            .collect()
    })
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let io = |e: std::io::Error| BuildError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}

/// The fingerprints of one function's old and new code.
struct Images {
    preimage: Option<Preimage>,
    postimage: Option<Preimage>,
}

fn manifest_function(
    unit: &PatchUnit,
    function: &hotpatch_externalizer::PatchFunction,
    symbol: String,
    images: Images,
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
        file: Some(unit.file.clone()),
        preimage: images.preimage,
        postimage: images.postimage,
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
