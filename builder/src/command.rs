//! One compile command of the original build, and how it is replayed inside a materialised
//! revision ("compile where the build compiled").
//!
//! The build ran the compiler in `directory`, somewhere below `root` (where the repository's
//! work tree was). The patch is compiled in a temporary tree `T` holding exactly the files of a
//! revision. Every path of the command that lies below `root` is mapped to the same place below
//! `T`, so relative `-I`, `-iquote`, `-include` and quoted includes resolve as in the build, but
//! to the revision's files: a header changed in the new revision wins over the work tree's copy.
//! Files git does not hold (a generated `config.h`) are not in `T`: each mapped include directory
//! and the source's own directory are added again, as they are in the build tree, with
//! `-idirafter` after everything else, so they are found only when the revision has no file of
//! that name. An include directory the revision does not have at all (an out-of-tree build
//! directory, `build/generated/`) is used as it is in the build tree, in its original place.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::flags::{split_words, DEFAULT_CFLAGS};
use crate::BuildError;

/// Where a compile command came from, as the report says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagSource {
    /// A compilation database read from disk.
    CompileCommands(PathBuf),
    /// A compilation database CMake exported for this run, in a CMake build directory.
    CmakeExport(PathBuf),
    /// `ninja -t compdb` in this build directory.
    NinjaCompdb(PathBuf),
    /// make's dry run (`make -n -w -W SRC...`: nothing is built) in this directory.
    MakeDryRun(PathBuf),
    /// A compilation database committed in the new revision (repository-relative path).
    RevisionCompileCommands(String),
    /// `[build] cflags` of a `hotpatch.toml` (which one: a path, or the new revision's).
    HotpatchToml(String),
    /// `--cflags` on the command line (or `hotpatch.cflags` of a deploy repository).
    CommandLine,
    /// Nothing named any flags: [`DEFAULT_CFLAGS`].
    Default,
}

impl fmt::Display for FlagSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagSource::CompileCommands(path) => {
                write!(f, "compile_commands.json at {}", path.display())
            }
            FlagSource::CmakeExport(path) => write!(
                f,
                "CMake export (compile_commands.json at {})",
                path.display()
            ),
            FlagSource::NinjaCompdb(dir) => write!(f, "ninja -t compdb in {}", dir.display()),
            FlagSource::MakeDryRun(dir) => write!(f, "make dry run in {}", dir.display()),
            FlagSource::RevisionCompileCommands(path) => {
                write!(f, "{path} of the new revision")
            }
            FlagSource::HotpatchToml(which) => write!(f, "[build] cflags of {which}"),
            FlagSource::CommandLine => f.write_str("--cflags"),
            FlagSource::Default => write!(f, "the default flags {DEFAULT_CFLAGS}"),
        }
    }
}

/// How one source file was compiled by the original build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileCommand {
    /// Repository-relative path of the source file.
    pub file: String,
    /// The directory the compiler ran in. Empty: the root of the revision (flags given without a
    /// build tree).
    pub directory: PathBuf,
    /// The command line as the build ran it, the compiler first.
    pub arguments: Vec<String>,
    /// Where this command came from.
    pub source: FlagSource,
    /// Where the repository's root was when the command ran; paths below it are mapped into the
    /// materialised revision. Empty: unknown, relative paths mean the revision's root.
    pub root: PathBuf,
}

/// A compile command replayed inside a materialised revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The compiler's working directory.
    pub cwd: PathBuf,
    /// The arguments, every include path made absolute.
    pub arguments: Vec<String>,
}

/// Options whose value is the next word when it is not glued to them.
const SEPARATE_VALUE: [&str; 24] = [
    "-o",
    "-I",
    "-iquote",
    "-isystem",
    "-idirafter",
    "-include",
    "-imacros",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "--sysroot",
    "-MF",
    "-MT",
    "-MQ",
    "-x",
    "-D",
    "-U",
    "-Xpreprocessor",
    "-Xassembler",
    "-Xlinker",
    "-L",
    "--param",
    "-aux-info",
];

/// A word of a flag list, include-path options recognised with their values.
enum Flag<'a> {
    /// `-I DIR`, `-iquote DIR`, `-isystem DIR`, `-idirafter DIR` (glued or not).
    IncludeDir(&'static str, String),
    /// `-include FILE`, `-imacros FILE`.
    IncludeFile(&'static str, String),
    /// Anything else.
    Other(&'a String),
}

/// Splits `words` into [`Flag`]s (an include option missing its value ends the list).
fn parse_flags(words: &[String]) -> Vec<Flag<'_>> {
    let mut out = Vec::with_capacity(words.len());
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let dir_option = INCLUDE_DIRS.iter().find(|o| word.starts_with(**o));
        let file_option = INCLUDE_FILES.iter().find(|o| word == *o);
        let Some(&option) = dir_option.or(file_option) else {
            out.push(Flag::Other(word));
            continue;
        };
        let glued = &word[option.len()..];
        let value = if glued.is_empty() {
            match words.next() {
                Some(next) => next.clone(),
                None => break,
            }
        } else {
            glued.to_string()
        };
        out.push(if file_option.is_some() {
            Flag::IncludeFile(option, value)
        } else {
            Flag::IncludeDir(option, value)
        });
    }
    out
}

/// Include-directory options, longest first so that a glued value is split off correctly.
const INCLUDE_DIRS: [&str; 4] = ["-idirafter", "-isystem", "-iquote", "-I"];

/// Options naming a file to include.
const INCLUDE_FILES: [&str; 2] = ["-include", "-imacros"];

impl CompileCommand {
    /// A command made of flags alone (`--cflags`, `hotpatch.toml`, the default), run in
    /// `directory`, which is also the repository's root (empty: the revision's root).
    pub fn from_flags(
        file: &str,
        flags: &[String],
        source: FlagSource,
        directory: &Path,
    ) -> CompileCommand {
        let mut arguments = vec!["cc".to_string()];
        arguments.extend(flags.iter().cloned());
        CompileCommand {
            file: file.to_string(),
            directory: directory.to_path_buf(),
            arguments,
            source,
            root: directory.to_path_buf(),
        }
    }

    /// The default command for `file`: [`DEFAULT_CFLAGS`] in `directory`.
    pub fn default_for(file: &str, directory: &Path) -> CompileCommand {
        let flags = split_words(DEFAULT_CFLAGS, "the default flags").unwrap_or_default();
        CompileCommand::from_flags(file, &flags, FlagSource::Default, directory)
    }

    /// The build's flags: the arguments without the compiler, the input file, `-c` and `-o FILE`.
    pub fn flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut words = self.arguments.iter().skip(1);
        while let Some(word) = words.next() {
            if word == "-c" {
                continue;
            }
            if word == "-o" {
                words.next();
                continue;
            }
            if !word.starts_with('-') {
                continue; // the input file
            }
            out.push(word.clone());
            if SEPARATE_VALUE.contains(&word.as_str()) {
                if let Some(value) = words.next() {
                    out.push(value.clone());
                }
            }
        }
        out
    }

    /// The original flags that decide code generation, for asking the compiler which switches it
    /// records for them: [`crate::flags::preimage_arguments`] without include and macro options
    /// (a file-less compile does not need them, and relative ones would not resolve).
    pub fn codegen_flags(&self) -> Vec<String> {
        let flags = crate::flags::preimage_arguments(&self.flags());
        let mut out = Vec::new();
        let mut skip_value = false;
        for flag in parse_flags(&flags) {
            let Flag::Other(word) = flag else { continue };
            if std::mem::take(&mut skip_value) {
                continue;
            }
            match word.as_str() {
                "-D" | "-U" => skip_value = true,
                w if w.starts_with("-D") || w.starts_with("-U") => {}
                _ => out.push(word.clone()),
            }
        }
        out
    }

    /// The command's include directories that lie inside the repository, repository-relative
    /// (`.` for its root).
    pub fn include_dirs(&self) -> Vec<String> {
        let directory = normalize(&self.directory);
        let flags = self.flags();
        let mut out = Vec::new();
        for flag in parse_flags(&flags) {
            let Flag::IncludeDir(_, value) = flag else {
                continue;
            };
            let path = normalize(&directory.join(value));
            if let Some(rel) = self.repo_relative(&path) {
                let rel = rel.to_string_lossy();
                out.push(if rel.is_empty() {
                    ".".to_string()
                } else {
                    rel.into_owned()
                });
            }
        }
        out
    }

    /// Where the build had the repository's file `path`.
    fn in_build_tree(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// `path` of the build tree relative to the repository root, when it lies below it.
    fn repo_relative<'p>(&self, path: &'p Path) -> Option<&'p Path> {
        if self.root.as_os_str().is_empty() && path.is_absolute() {
            return None;
        }
        path.strip_prefix(&self.root).ok()
    }

    /// `path` of the build tree as it is inside `tree`, when it lies below the repository root.
    fn map(&self, path: &Path, tree: &Path) -> Option<PathBuf> {
        self.repo_relative(path).map(|rel| tree.join(rel))
    }

    /// Whether the command ran in a real build tree on this machine (so the build tree's own
    /// files, such as generated headers, can be used).
    fn has_build_tree(&self) -> bool {
        self.root.is_absolute() && self.root.is_dir()
    }

    /// Replays `arguments` (derived from [`CompileCommand::flags`]) inside `tree`, a
    /// materialised revision: see the module documentation.
    pub(crate) fn place(&self, tree: &Path, arguments: &[String]) -> Result<Placed, BuildError> {
        let directory = normalize(&self.directory);
        let cwd = match self.map(&directory, tree) {
            Some(mapped) => {
                std::fs::create_dir_all(&mapped).map_err(|e| BuildError::Io {
                    path: mapped.clone(),
                    detail: e.to_string(),
                })?;
                mapped
            }
            None if directory.is_dir() => directory.clone(),
            None => tree.to_path_buf(),
        };
        let build_tree = self.has_build_tree();
        let mut out = Vec::with_capacity(arguments.len() + 4);
        let mut fallbacks: Vec<PathBuf> = Vec::new();
        for flag in parse_flags(arguments) {
            let (option, path) = match flag {
                Flag::Other(word) => {
                    out.push(word.clone());
                    continue;
                }
                Flag::IncludeFile(option, value) => {
                    let in_build = normalize(&directory.join(&value));
                    let path = match self.map(&in_build, tree) {
                        Some(m) if m.is_file() => m,
                        _ if build_tree && in_build.is_file() => in_build,
                        // Not a file relative to the directory: the compiler searches the
                        // include path for it.
                        _ => PathBuf::from(&value),
                    };
                    (option, path)
                }
                Flag::IncludeDir(option, value) => {
                    let in_build = normalize(&directory.join(&value));
                    let path = match self.map(&in_build, tree) {
                        Some(m) if m.is_dir() => {
                            if build_tree && in_build.is_dir() {
                                fallbacks.push(in_build);
                            }
                            m
                        }
                        Some(m) if !build_tree => m,
                        _ => in_build,
                    };
                    (option, path)
                }
            };
            out.push(option.to_string());
            out.push(path.to_string_lossy().into_owned());
        }
        // Quoted includes are looked up beside the source first: in the build tree, beside it too.
        if build_tree {
            if let Some(parent) = Path::new(&self.file).parent() {
                fallbacks.push(normalize(&self.in_build_tree(&parent.to_string_lossy())));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for dir in fallbacks {
            if dir.is_dir() && seen.insert(dir.clone()) {
                out.push("-idirafter".to_string());
                out.push(dir.to_string_lossy().into_owned());
            }
        }
        // `__FILE__` (assert messages) and debug paths name the build's tree, not this temporary
        // one: the same for every materialised revision, so two revisions compare equal where
        // only the tree differs.
        let root = if self.root.is_absolute() {
            self.root.to_string_lossy().into_owned()
        } else {
            ".".to_string()
        };
        out.push(format!(
            "-ffile-prefix-map={}={root}",
            tree.to_string_lossy().trim_end_matches('/')
        ));
        Ok(Placed {
            cwd,
            arguments: out,
        })
    }
}

/// Removes `.` and `..` components without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(root: &Path, directory: &Path, arguments: &[&str]) -> CompileCommand {
        CompileCommand {
            file: "src/a.c".to_string(),
            directory: directory.to_path_buf(),
            arguments: arguments.iter().map(|s| s.to_string()).collect(),
            source: FlagSource::MakeDryRun(directory.to_path_buf()),
            root: root.to_path_buf(),
        }
    }

    #[test]
    fn flags_drop_compiler_input_and_output() {
        let c = command(
            Path::new("/w"),
            Path::new("/w/src"),
            &[
                "gcc", "-O2", "-D", "X=1", "-c", "a.c", "-o", "a.o", "-I", "../inc",
            ],
        );
        assert_eq!(c.flags(), ["-O2", "-D", "X=1", "-I", "../inc"]);
    }

    #[test]
    fn includes_map_into_the_revision_with_the_build_tree_after_it() {
        let work = tempfile::tempdir().unwrap();
        let (build, tree) = (work.path().join("build"), work.path().join("tree"));
        for dir in ["src", "include", "gen"] {
            std::fs::create_dir_all(build.join(dir)).unwrap();
        }
        std::fs::create_dir_all(tree.join("include")).unwrap();
        std::fs::create_dir_all(tree.join("src")).unwrap();
        std::fs::write(build.join("gen/config.h"), "").unwrap();
        let c = command(
            &build,
            &build.join("src"),
            &[
                "cc",
                "-I../include",
                "-iquote",
                "../gen",
                "-include",
                "../gen/config.h",
                "-c",
                "a.c",
            ],
        );
        let placed = c.place(&tree, &c.flags()).unwrap();
        assert_eq!(placed.cwd, tree.join("src"));
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        assert_eq!(
            placed.arguments,
            [
                "-I".to_string(),
                s(tree.join("include")),
                // The revision has no gen/: the build tree's, in place.
                "-iquote".into(),
                s(build.join("gen")),
                "-include".into(),
                s(build.join("gen/config.h")),
                "-idirafter".into(),
                s(build.join("include")),
                "-idirafter".into(),
                s(build.join("src")),
                // __FILE__ and debug paths name the build's tree.
                format!("-ffile-prefix-map={}={}", s(tree.clone()), s(build.clone())),
            ]
        );
    }

    #[test]
    fn include_dirs_inside_the_repository_relative_to_its_root() {
        let c = command(
            Path::new("/w"),
            Path::new("/w/src"),
            &[
                "cc",
                "-I../include",
                "-I",
                ".",
                "-isystem/usr/x",
                "-iquote",
                "/w/gen",
                "-c",
                "a.c",
            ],
        );
        assert_eq!(c.include_dirs(), ["include", "src", "gen"]);
    }

    #[test]
    fn flags_without_a_build_tree_resolve_in_the_revision() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("include")).unwrap();
        let c = CompileCommand::from_flags(
            "a.c",
            &["-Iinclude".to_string(), "-I/usr/x".to_string()],
            FlagSource::CommandLine,
            Path::new(""),
        );
        let placed = c.place(tree.path(), &c.flags()).unwrap();
        assert_eq!(placed.cwd, tree.path());
        assert_eq!(
            placed.arguments,
            [
                "-I",
                &tree.path().join("include").to_string_lossy(),
                "-I",
                "/usr/x",
                &format!("-ffile-prefix-map={}=.", tree.path().to_string_lossy())
            ]
        );
    }
}
