//! Preprocessing a file exactly as its build command would, inside a materialised revision: the
//! text the compiler really sees, for the differ to judge the change on (macros expanded, `#if`
//! decided, storage classes from macros visible).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{normalize, Placed};
use crate::flags::preimage_arguments;
use crate::{BuildError, CompileCommand, Compiler};

/// The preprocessed text of `command`'s file in `tree` (a materialised revision), run where the
/// build compiled it. Line markers naming files of `tree` are rewritten to repository-relative
/// paths; other files (system headers, generated headers of the build tree) keep their path.
pub fn preprocess(command: &CompileCommand, tree: &Path) -> Result<String, BuildError> {
    Invocation::new(command, tree)?.run().map(|out| out.text)
}

/// One preprocessing of a file, placed but not yet run: what decides its output besides the
/// files it reads (the preprocessing cache keys on it).
pub(crate) struct Invocation<'a> {
    /// The compiler the build used for the file.
    pub compiler: Compiler,
    /// The build's arguments and directory, mapped into the tree.
    pub placed: Placed,
    command: &'a CompileCommand,
    tree: &'a Path,
}

/// What one preprocessing produced.
pub(crate) struct Preprocessed {
    /// The text, line markers of the tree's files made repository-relative.
    pub text: String,
    /// Every file a line marker names, absolute and without `.` or `..` components, once each
    /// in the order first named (`<built-in>` and the like, and the working directory, left
    /// out); `None` when a marker's path could not be read back exactly.
    pub named: Option<Vec<PathBuf>>,
}

impl<'a> Invocation<'a> {
    /// The preprocessing of `command`'s file in `tree` with the build's compiler and flags.
    pub(crate) fn new(command: &'a CompileCommand, tree: &'a Path) -> Result<Self, BuildError> {
        Ok(Invocation {
            compiler: Compiler::for_command(command, &Compiler::locate()?),
            placed: command.place(tree, &preimage_arguments(&command.flags()))?,
            command,
            tree,
        })
    }

    /// Runs the compiler's preprocessor (`-E`).
    pub(crate) fn run(&self) -> Result<Preprocessed, BuildError> {
        let path = self.compiler.path();
        let output = crate::slots::output(
            Command::new(path)
                .current_dir(&self.placed.cwd)
                .args(&self.placed.arguments)
                .arg("-E")
                .arg(self.tree.join(&self.command.file)),
        )
        .map_err(|e| BuildError::NoCompiler(format!("{}: {e}", path.display())))?;
        if !output.status.success() {
            return Err(BuildError::Compile {
                file: self.command.file.clone(),
                diagnostics: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let prefix = format!("\"{}/", self.tree.to_string_lossy().trim_end_matches('/'));
        Ok(Preprocessed {
            named: named_files(&text, &self.placed.cwd),
            text: relative_markers(&text, &prefix),
        })
    }
}

/// `text` with every line marker's `"PREFIX...` path made relative (`prefix` is `"` followed by
/// the tree's path and a slash); nothing else is touched.
fn relative_markers(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.strip_prefix('#').filter(|_| line.contains(prefix)) {
            Some(_) => out.push_str(&line.replacen(prefix, "\"", 1)),
            None => out.push_str(line),
        }
    }
    out
}

/// The files the line markers of `text` name (see [`Preprocessed::named`]), relative ones
/// against `cwd`, where the compiler ran.
fn named_files(text: &str, cwd: &Path) -> Option<Vec<PathBuf>> {
    let mut seen = std::collections::HashSet::new();
    let mut files = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("# ")) {
        let Some(name) = marker_name(line) else {
            continue;
        };
        let name = name?;
        // `<built-in>`, `<command-line>`; a name ending in `//` is the working directory.
        if name.starts_with('<') || name.ends_with("//") {
            continue;
        }
        let path = normalize(&cwd.join(&name));
        if seen.insert(path.clone()) {
            files.push(path);
        }
    }
    Some(files)
}

/// The file name of the line marker `line` (`# 12 "name" 1 3`): `None` when the line is no
/// marker, `Some(None)` when its name has an escape other than `\\` and `\"`.
fn marker_name(line: &str) -> Option<Option<String>> {
    let rest = line.strip_prefix("# ")?;
    let (number, rest) = rest.split_once(' ')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut chars = rest.strip_prefix('"')?.chars();
    let mut name = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(Some(name)),
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | '"')) => name.push(escaped),
                _ => return Some(None),
            },
            c => name.push(c),
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlagSource;

    #[test]
    fn preprocesses_where_the_build_compiled_with_repository_paths() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("src")).unwrap();
        std::fs::create_dir_all(tree.path().join("include")).unwrap();
        std::fs::write(tree.path().join("include/cfg.h"), "#define LOCAL static\n").unwrap();
        std::fs::write(
            tree.path().join("src/a.c"),
            "#include \"cfg.h\"\nLOCAL int f(void) { return LEVEL; }\n",
        )
        .unwrap();
        let flags: Vec<String> = ["-I../include", "-DLEVEL=3"].map(String::from).into();
        let mut command =
            CompileCommand::from_flags("src/a.c", &flags, FlagSource::CommandLine, Path::new(""));
        command.directory = "src".into();
        let text = preprocess(&command, tree.path()).unwrap();
        assert!(text.contains("static int f(void) { return 3; }"), "{text}");
        assert!(text.contains("\"src/a.c\""), "{text}");
        assert!(text.contains("\"include/cfg.h\""), "{text}");
        assert!(
            !text.contains(&tree.path().to_string_lossy().to_string()),
            "{text}"
        );
    }

    #[test]
    fn the_files_markers_name() {
        let text = "# 0 \"/t/src/a.c\"\n# 0 \"<built-in>\"\n# 1 \"/t/src//\"\n\
                    # 1 \"../include/cfg.h\" 1\nint x;\n# 7 \"/t/src/a.c\" 2\n\
                    # 1 \"/t/q\\\"d.h\" 1\n#pragma once\n";
        let named = named_files(text, Path::new("/t/src")).unwrap();
        let expected: Vec<PathBuf> = ["/t/src/a.c", "/t/include/cfg.h", "/t/q\"d.h"]
            .map(PathBuf::from)
            .into();
        assert_eq!(named, expected);
        // An escape that cannot be read back exactly: the files are not known.
        assert_eq!(named_files("# 1 \"/t/\\303.h\"\n", Path::new("/t")), None);
    }

    #[test]
    fn a_failing_preprocess_names_the_file() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("a.c"), "#include \"absent.h\"\n").unwrap();
        let command =
            CompileCommand::from_flags("a.c", &[], FlagSource::CommandLine, Path::new(""));
        let err = preprocess(&command, tree.path()).unwrap_err().to_string();
        assert!(err.contains("a.c") && err.contains("absent.h"), "{err}");
    }
}
