//! The old revision's files compiled exactly as the original build compiled them (the original
//! flags, as its compile command gives them). Such an object is what the linker put into the
//! running binary, so it tells two things: the pre-image of every function a patch replaces
//! (see [`crate::preimage`]), and which file-local (`static`) functions and variables the
//! compiler kept at all. The second matters when there is no running process to ask (`hotpatch
//! build` without `--pid`): a `static` helper inlined into all its callers, or a never-written
//! `static` variable folded into its readers, has no symbol, so the patch must carry a private
//! copy instead of a binding nothing could resolve.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use object::read::{Object as _, ObjectSymbol as _};
use object::SymbolKind;

use crate::cache::{cacheable, without_tree, Cache, Key, KeyBuilder};
use crate::flags::{preimage_arguments, uses_lto};
use crate::preimage::Side;
use crate::{BuildError, CompileCommand, Compiler};

/// The old objects of some files of the old revision, with the file-local symbols each defines.
#[derive(Clone, Default)]
pub struct OldObjects {
    files: BTreeMap<String, OldObject>,
}

/// One file of the old revision, compiled with the original flags.
#[derive(Clone)]
struct OldObject {
    bytes: Vec<u8>,
    /// `static` functions defined under their own name (clones and cold parts not counted).
    functions: BTreeSet<String>,
    /// File-scope `static` variables with storage (data, bss or TLS).
    variables: BTreeSet<String>,
}

impl std::fmt::Debug for OldObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.files
                    .iter()
                    .map(|(file, o)| (file, (&o.functions, &o.variables))),
            )
            .finish()
    }
}

impl OldObjects {
    /// Compiles each of `commands` (files relative to `old_root`, a materialised copy of the old
    /// revision) exactly as the build did, where the build did, as many files at once as there
    /// are cores. Files the old revision does not have, and files built with LTO (whose per-file
    /// objects say nothing about the linked binary), are skipped.
    pub fn compile(
        old_root: &Path,
        commands: &[&CompileCommand],
        cache: &Cache,
    ) -> Result<OldObjects, BuildError> {
        let compiler = Compiler::locate()?;
        let wanted: Vec<&CompileCommand> = commands
            .iter()
            .copied()
            .filter(|command| compiles_as_built(command, old_root))
            .collect();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut out = OldObjects::default();
        for chunk in wanted.chunks(cores) {
            let compiled: Vec<Result<Vec<u8>, BuildError>> = std::thread::scope(|scope| {
                let jobs: Vec<_> = chunk
                    .iter()
                    .map(|command| {
                        let compiler = Compiler::for_command(command, &compiler);
                        scope.spawn(move || {
                            compile_file(&compiler, old_root, command, Side::Old, cache)
                        })
                    })
                    .collect();
                jobs.into_iter()
                    .map(|job| {
                        job.join().unwrap_or_else(|_| {
                            Err(BuildError::Object("a compiler job panicked".to_string()))
                        })
                    })
                    .collect()
            });
            for (command, bytes) in chunk.iter().zip(compiled) {
                out.insert(&command.file, bytes?)?;
            }
        }
        Ok(out)
    }

    /// Adds the old object `bytes` of `file`, reading its symbol table.
    fn insert(&mut self, file: &str, bytes: Vec<u8>) -> Result<(), BuildError> {
        let bad = |e: object::Error| BuildError::Object(format!("the old object of {file}: {e}"));
        let parsed = object::File::parse(&*bytes).map_err(bad)?;
        let mut functions = BTreeSet::new();
        let mut variables = BTreeSet::new();
        for symbol in parsed.symbols() {
            let Ok(name) = symbol.name() else { continue };
            if !symbol.is_local() || symbol.section_index().is_none() || name.contains('.') {
                continue;
            }
            match symbol.kind() {
                SymbolKind::Text => functions.insert(name.to_string()),
                SymbolKind::Data | SymbolKind::Tls => variables.insert(name.to_string()),
                _ => continue,
            };
        }
        self.files.insert(
            file.to_string(),
            OldObject {
                bytes,
                functions,
                variables,
            },
        );
        Ok(())
    }

    /// Whether the old object of `file` defines the `static` function `name` under its own name,
    /// as the running binary's symbol table would. A file not compiled here answers yes (nothing
    /// is known, so the function is assumed to be there, as before this check existed).
    pub fn has_local_function(&self, file: &str, name: &str) -> bool {
        self.files
            .get(file)
            .is_none_or(|o| o.functions.contains(name))
    }

    /// Whether the old object of `file` has storage for the file-scope `static` variable `name`
    /// (a variable never written is folded into its readers and has none). A file not compiled
    /// here answers yes.
    pub fn has_local_variable(&self, file: &str, name: &str) -> bool {
        self.files
            .get(file)
            .is_none_or(|o| o.variables.contains(name))
    }

    /// The old object of `file`, if it was compiled here.
    pub(crate) fn object(&self, file: &str) -> Option<&[u8]> {
        self.files.get(file).map(|o| o.bytes.as_slice())
    }
}

/// Whether a per-file compile with `command` under `root` is what the original build linked:
/// the file exists there and the build does not use LTO (whose inlining crosses files).
pub(crate) fn compiles_as_built(command: &CompileCommand, root: &Path) -> bool {
    !uses_lto(&command.flags()) && root.join(&command.file).is_file()
}

/// Compiles the new revision of `command`'s file under `root` (a materialised copy) as the build
/// compiled it, for a [`crate::build`] with the same `cache` to find: started on a thread of its
/// own before the patch units are written, the compile that `build` waits for longest is under
/// way meanwhile (`build` waits for it rather than compiling again). Does nothing when the
/// cache is off (the compile would not be shared) or the file is not compiled as built; a
/// failure is `build`'s to report.
pub fn compile_new_side(root: &Path, command: &CompileCommand, cache: &Cache) {
    if !cache.enabled() || !compiles_as_built(command, root) {
        return;
    }
    if let Ok(compiler) = Compiler::locate() {
        let compiler = Compiler::for_command(command, &compiler);
        let _ = compile_file(&compiler, root, command, Side::New, cache);
    }
}

/// Compiles the `side` revision of `command`'s file (under `root`) exactly with the original
/// flags, where the build compiled, and returns the object (from `cache` when it has it).
pub(crate) fn compile_file(
    compiler: &Compiler,
    root: &Path,
    command: &CompileCommand,
    side: Side,
    cache: &Cache,
) -> Result<Vec<u8>, BuildError> {
    let which = side.word();
    let arguments = preimage_arguments(&command.flags());
    compile_revision(compiler, root, command, side, &arguments, cache).map_err(|e| match e {
        BuildError::Compile { file, diagnostics } => {
            let purpose = match side {
                Side::Old => "the running code cannot be known from it",
                Side::New => "a later patch cannot be checked against it",
            };
            BuildError::Preimage(format!(
                "the {which} revision of {file} does not compile with the original flags ({}), so {purpose}:\n{diagnostics}",
                command.source
            ))
        }
        other => other,
    })
}

/// Compiles the `side` revision of `command`'s file under `root` with `arguments` (the
/// original flags, and what the purpose adds to them that does not change preprocessing),
/// where the build compiled. The object comes from `cache` when it has it, and goes into it
/// otherwise.
pub(crate) fn compile_revision(
    compiler: &Compiler,
    root: &Path,
    command: &CompileCommand,
    side: Side,
    arguments: &[String],
    cache: &Cache,
) -> Result<Vec<u8>, BuildError> {
    let placed = command.place(root, arguments)?;
    let Some(key) = object_key(compiler, root, command, side, &placed, cache) else {
        return compile_placed(compiler, root, command, side, &placed);
    };
    // Once per run (a compile started ahead is waited for), from the cache when it has it.
    cache.compile_once(&key, || {
        if let Some(bytes) = cache.get(&key) {
            return Ok(bytes);
        }
        let bytes = compile_placed(compiler, root, command, side, &placed)?;
        cache.put(&key, &bytes);
        Ok(bytes)
    })
}

/// The object of compiling `command`'s file under `root` as `placed`.
fn compile_placed(
    compiler: &Compiler,
    root: &Path,
    command: &CompileCommand,
    side: Side,
    placed: &crate::command::Placed,
) -> Result<Vec<u8>, BuildError> {
    let file = command.file.as_str();
    let source = root.join(file);
    let output = root.join(format!("{file}.hotpatch-{}-{}.o", side.word(), unique()));
    compiler.compile(&placed.cwd, &source, &output, &placed.arguments, file)?;
    let bytes = std::fs::read(&output).map_err(|e| BuildError::Io {
        path: output.clone(),
        detail: e.to_string(),
    })?;
    let _ = std::fs::remove_file(&output);
    Ok(bytes)
}

/// A number no other compile of this process uses, for its output's name (compiles of one file
/// and side with different arguments run at the same time).
fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The cache key of compiling `command`'s file under `root` as `placed`: its preprocessed text
/// (the differ's, else made here), the arguments, the directory and source path, the compiler.
/// `None` (compile without the cache): the cache is off, the arguments read files the text does
/// not show, or the file does not preprocess (the compile then reports why).
fn object_key(
    compiler: &Compiler,
    root: &Path,
    command: &CompileCommand,
    side: Side,
    placed: &crate::command::Placed,
    cache: &Cache,
) -> Option<Key> {
    if !cache.enabled() || !cacheable(&placed.arguments) {
        return None;
    }
    let arguments = without_tree(&placed.arguments.join("\0"), root);
    let mut key = KeyBuilder::new("object-1");
    key.compiler(compiler.path())
        .field(
            "cwd",
            without_tree(&placed.cwd.to_string_lossy(), root).as_bytes(),
        )
        .field("source", command.file.as_bytes())
        .field("arguments", arguments.as_bytes());
    let make = || crate::preprocess(command, root).ok();
    cache
        .with_unit_text((&command.file, side), make, |text| {
            key.field("text", text.as_bytes());
            key.finish()
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlagSource;

    /// Commands of `flags` for `files`, run at the revision's root.
    fn commands(files: &[&str], flags: &str) -> Vec<CompileCommand> {
        let flags: Vec<String> = flags.split_whitespace().map(str::to_string).collect();
        files
            .iter()
            .map(|f| CompileCommand::from_flags(f, &flags, FlagSource::CommandLine, Path::new("")))
            .collect()
    }

    #[test]
    fn inlined_helpers_and_folded_variables_have_no_symbol() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("lib.c"),
            "static int calls;\nstatic int base = 41;\nstatic __thread int t;\n\
             static int bonus(int n) { return n > 0; }\n\
             static __attribute__((noinline)) int kept(int n) { return n * 3 + t++; }\n\
             int value(void) { calls++; return base + bonus(calls) + kept(calls); }\n",
        )
        .unwrap();
        let commands = commands(&["lib.c", "absent.c"], "-O2 -g");
        let old = OldObjects::compile(
            root.path(),
            &commands.iter().collect::<Vec<_>>(),
            &Cache::default(),
        )
        .unwrap();
        assert!(old.has_local_function("lib.c", "kept"), "{old:?}");
        assert!(!old.has_local_function("lib.c", "bonus"), "{old:?}");
        assert!(!old.has_local_function("lib.c", "value"), "global: {old:?}");
        assert!(old.has_local_variable("lib.c", "calls"), "{old:?}");
        assert!(old.has_local_variable("lib.c", "t"), "{old:?}");
        assert!(!old.has_local_variable("lib.c", "base"), "{old:?}");
        assert!(old.object("lib.c").is_some());
        // Not compiled: nothing known, so everything is assumed present.
        assert!(old.has_local_function("absent.c", "bonus"));
        assert!(old.has_local_variable("absent.c", "base"));
        assert!(old.object("absent.c").is_none());
    }

    #[test]
    fn lto_files_are_not_compiled() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("lib.c"), "int f(void) { return 1; }\n").unwrap();
        let commands = commands(&["lib.c"], "-O2 -flto");
        let old = OldObjects::compile(
            root.path(),
            &commands.iter().collect::<Vec<_>>(),
            &Cache::default(),
        )
        .unwrap();
        assert!(old.object("lib.c").is_none());
    }
}
