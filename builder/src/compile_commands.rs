//! Per-file flags of the original build from a `compile_commands.json` (the JSON compilation
//! database CMake, Meson and Bear write): each entry's arguments with the compiler, the source,
//! the output and the mode removed, and include paths made relative to the repository root (the
//! patch is compiled from the root of a materialised copy of the revision).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::BuildError;

#[derive(Debug, Deserialize)]
struct Entry {
    directory: String,
    file: String,
    #[serde(default)]
    arguments: Option<Vec<String>>,
    #[serde(default)]
    command: Option<String>,
}

/// Options whose value is a path (as the next word, or glued to the option).
const PATH_OPTIONS: [&str; 6] = [
    "-I",
    "-iquote",
    "-isystem",
    "-idirafter",
    "-include",
    "-imacros",
];

/// Parses a compilation database and returns, for each entry whose source is one of the
/// repository's files (`repo_files`, repository-relative), the flags of that file.
pub fn parse(text: &str, repo_files: &[&str]) -> Result<BTreeMap<String, Vec<String>>, BuildError> {
    let entries: Vec<Entry> = serde_json::from_str(text)
        .map_err(|e| BuildError::Config(format!("compile_commands.json: {e}")))?;
    let mut out = BTreeMap::new();
    for entry in entries {
        let directory = PathBuf::from(&entry.directory);
        let source = normalize(&directory.join(&entry.file));
        // The repository's root on the build machine: the source path minus its
        // repository-relative path.
        let Some((file, root)) = repo_files.iter().find_map(|f| {
            let s = source.to_string_lossy();
            s.strip_suffix(f)
                .filter(|r| r.is_empty() || r.ends_with('/'))
                .map(|r| (f.to_string(), PathBuf::from(r)))
        }) else {
            continue;
        };
        let words = match (&entry.arguments, &entry.command) {
            (Some(arguments), _) => arguments.clone(),
            (None, Some(command)) => shlex::split(command).ok_or_else(|| {
                BuildError::Config(format!(
                    "compile_commands.json: unbalanced quotes in the command for {file}"
                ))
            })?,
            (None, None) => continue,
        };
        out.insert(file, flags_of(&words, &source, &directory, &root));
    }
    Ok(out)
}

/// The flags of one compile command: without the compiler, the source, `-c` and `-o X`; include
/// paths rewritten relative to the repository root when they lie inside it.
fn flags_of(words: &[String], source: &Path, directory: &Path, root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = words.iter().skip(1);
    while let Some(word) = iter.next() {
        if word == "-c" || (!word.starts_with('-') && normalize(&directory.join(word)) == source) {
            continue;
        }
        if word == "-o" {
            iter.next();
            continue;
        }
        if let Some(option) = PATH_OPTIONS.iter().find(|o| word.starts_with(**o)) {
            let glued = &word[option.len()..];
            let path = if glued.is_empty() {
                match iter.next() {
                    Some(next) => next.clone(),
                    None => break,
                }
            } else {
                glued.to_string()
            };
            let path = relocate(&path, directory, root);
            if *option == "-I" {
                out.push(format!("-I{path}"));
            } else {
                out.push(option.to_string());
                out.push(path);
            }
            continue;
        }
        out.push(word.clone());
    }
    out
}

/// `path` as the patch compile (run at the repository root) must spell it.
fn relocate(path: &str, directory: &Path, root: &Path) -> String {
    let absolute = normalize(&directory.join(path));
    match absolute.strip_prefix(root) {
        Ok(inside) if !root.as_os_str().is_empty() => {
            let inside = inside.to_string_lossy();
            if inside.is_empty() {
                ".".to_string()
            } else {
                inside.into_owned()
            }
        }
        _ => absolute.to_string_lossy().into_owned(),
    }
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
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

    #[test]
    fn entries_give_per_file_flags_relative_to_the_repository() {
        let text = r#"[
          {"directory": "/src/proj/build", "file": "../src/lib.c",
           "arguments": ["cc", "-O1", "-I../include", "-isystem", "/usr/x", "-DA=1", "-c", "../src/lib.c", "-o", "lib.o"]},
          {"directory": "/src/proj", "file": "/src/proj/main.c",
           "command": "gcc -O3 -iquote inc -DB='x y' -c /src/proj/main.c -o main.o"},
          {"directory": "/elsewhere", "file": "other.c", "command": "cc -c other.c"}
        ]"#;
        let flags = parse(text, &["src/lib.c", "main.c"]).unwrap();
        assert_eq!(
            flags["src/lib.c"],
            ["-O1", "-Iinclude", "-isystem", "/usr/x", "-DA=1"]
        );
        assert_eq!(flags["main.c"], ["-O3", "-iquote", "inc", "-DB=x y"]);
        assert_eq!(flags.len(), 2);
    }

    #[test]
    fn malformed_databases_are_config_errors() {
        assert!(matches!(parse("{", &[]), Err(BuildError::Config(_))));
        assert!(parse("[]", &[]).unwrap().is_empty());
    }
}
