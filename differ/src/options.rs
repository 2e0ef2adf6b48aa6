//! Options of a diff: where the original build looks for headers, and the preprocessed units
//! of the files the compiler sees differently from their text.

use std::collections::BTreeMap;

use crate::UnitTexts;

/// How to analyse a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Include directories of the original build (`-I`, `-iquote`), relative to the snapshot's
    /// root (a leading `./` is ignored); searched after the including file's own directory for
    /// quoted includes, and alone for `<...>` includes. Absolute paths outside the snapshot are
    /// ignored (system headers do not change between revisions).
    pub include_dirs: Vec<String>,
    /// Preprocessed translation units by `.c` path (see [`crate::files_to_analyse`]): a file
    /// listed here is judged on what the compiler sees, every other on its source as written.
    pub units: BTreeMap<String, UnitTexts>,
    /// The `.c` files the running program was built from, when known (from the binary's
    /// `STT_FILE` symbols or DWARF units): a file outside it (a utility with its own `main`,
    /// test code) and a header only such files include make no refusal and no patch.
    pub program: Option<Program>,
}

/// The source files of the running program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    /// How the report names it (the executable's path).
    pub name: String,
    /// Repository-relative `.c` paths compiled into it.
    pub files: std::collections::BTreeSet<String>,
}

impl DiffOptions {
    /// Options with the include directories named by build flags (already split into words):
    /// `-Idir`, `-I dir`, `-iquote dir`, `-iquotedir`, `-isystem dir`, `-idirafter dir`.
    pub fn from_flags<S: AsRef<str>>(flags: &[S]) -> DiffOptions {
        let mut include_dirs = Vec::new();
        let mut words = flags.iter().map(AsRef::as_ref);
        while let Some(word) = words.next() {
            for option in ["-iquote", "-isystem", "-idirafter", "-I"] {
                if let Some(rest) = word.strip_prefix(option) {
                    let dir = if rest.is_empty() {
                        words.next()
                    } else {
                        Some(rest)
                    };
                    include_dirs.extend(dir.map(normalise_dir));
                    break;
                }
            }
        }
        DiffOptions {
            include_dirs,
            units: BTreeMap::new(),
            program: None,
        }
    }
}

fn normalise_dir(dir: &str) -> String {
    let trimmed = dir.trim_start_matches("./").trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        String::new()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_dirs_from_flags() {
        let flags = [
            "-O2",
            "-Iinclude",
            "-I",
            "./src/",
            "-iquote",
            "q",
            "-I.",
            "-DX",
        ];
        assert_eq!(
            DiffOptions::from_flags(&flags).include_dirs,
            ["include", "src", "q", ""]
        );
        assert!(DiffOptions::from_flags(&["-I"]).include_dirs.is_empty());
    }
}
