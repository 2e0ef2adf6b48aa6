//! Compilation databases: the `compile_commands.json` format CMake, Meson, Bear and
//! `ninja -t compdb` write, read into [`CompileCommand`]s of the repository's files.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::command::{normalize, CompileCommand, FlagSource};
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

/// The compile commands of one source of build knowledge (a database, a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Where the commands came from.
    pub source: FlagSource,
    /// The commands of the repository's files, in the order the source lists them.
    pub commands: Vec<CompileCommand>,
    /// How many compile commands the source held in all (also those of other files).
    pub entries: usize,
}

/// Finds which repository file an absolute source path of a build is, and where the
/// repository's root was for that build: below the known work tree `work_tree`, else the
/// longest repository path (`repo_files`) the source path ends with (a database written on
/// another machine).
pub(crate) fn locate(
    source: &Path,
    work_tree: Option<&Path>,
    repo_files: &[&str],
) -> Option<(String, PathBuf)> {
    if let Some(rel) = work_tree.and_then(|w| source.strip_prefix(w).ok()) {
        let rel = rel.to_string_lossy();
        if repo_files.contains(&rel.as_ref()) {
            return Some((rel.into_owned(), work_tree?.to_path_buf()));
        }
    }
    let text = source.to_string_lossy();
    repo_files
        .iter()
        .filter_map(|f| {
            let root = text.strip_suffix(f)?;
            (root.is_empty() || root.ends_with('/')).then(|| (f.to_string(), PathBuf::from(root)))
        })
        .max_by_key(|(f, _)| f.len())
}

/// Parses a compilation database: the commands of the repository's files (`repo_files`,
/// repository-relative), with their source paths located as [`locate`] does.
pub fn parse(
    text: &str,
    source: FlagSource,
    work_tree: Option<&Path>,
    repo_files: &[&str],
) -> Result<Database, BuildError> {
    let entries: Vec<Entry> =
        serde_json::from_str(text).map_err(|e| BuildError::Config(format!("{source}: {e}")))?;
    let mut commands = Vec::new();
    for entry in &entries {
        let directory = normalize(Path::new(&entry.directory));
        let path = normalize(&directory.join(&entry.file));
        let Some((file, root)) = locate(&path, work_tree, repo_files) else {
            continue;
        };
        let arguments = match (&entry.arguments, &entry.command) {
            (Some(arguments), _) => arguments.clone(),
            (None, Some(command)) => shlex::split(command).ok_or_else(|| {
                BuildError::Config(format!(
                    "{source}: unbalanced quotes in the command for {file}"
                ))
            })?,
            (None, None) => continue,
        };
        commands.push(CompileCommand {
            file,
            directory,
            arguments,
            source: source.clone(),
            root,
        });
    }
    Ok(Database {
        source,
        commands,
        entries: entries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_the_repository_with_their_roots() {
        let text = r#"[
          {"directory": "/src/proj/build", "file": "../src/lib.c",
           "arguments": ["cc", "-O1", "-I../include", "-c", "../src/lib.c", "-o", "lib.o"]},
          {"directory": "/src/proj", "file": "/src/proj/main.c",
           "command": "gcc -O3 -DB='x y' -c /src/proj/main.c -o main.o"},
          {"directory": "/elsewhere", "file": "other.c", "command": "cc -c other.c"}
        ]"#;
        let source = FlagSource::CompileCommands("/x/compile_commands.json".into());
        let db = parse(text, source, None, &["src/lib.c", "main.c"]).unwrap();
        assert_eq!(db.entries, 3);
        assert_eq!(db.commands.len(), 2);
        let lib = &db.commands[0];
        assert_eq!(
            (
                lib.file.as_str(),
                lib.root.as_path(),
                lib.directory.as_path()
            ),
            (
                "src/lib.c",
                Path::new("/src/proj/"),
                Path::new("/src/proj/build")
            )
        );
        assert_eq!(lib.flags(), ["-O1", "-I../include"]);
        assert_eq!(db.commands[1].flags(), ["-O3", "-DB=x y"]);
    }

    #[test]
    fn the_work_tree_decides_the_root_when_known() {
        let text = r#"[{"directory": "/w/a", "file": "src/x.c", "command": "cc -c src/x.c"}]"#;
        let source = FlagSource::CompileCommands("/w/a/compile_commands.json".into());
        let db = parse(
            text,
            source,
            Some(Path::new("/w")),
            &["a/src/x.c", "src/x.c"],
        )
        .unwrap();
        assert_eq!(db.commands[0].file, "a/src/x.c");
        assert_eq!(db.commands[0].root, Path::new("/w"));
    }

    #[test]
    fn malformed_databases_are_config_errors_naming_the_file() {
        let source = FlagSource::CompileCommands("/x/cc.json".into());
        let err = parse("{", source.clone(), None, &[]).unwrap_err();
        assert!(err.to_string().contains("/x/cc.json"), "{err}");
        assert!(parse("[]", source, None, &[]).unwrap().commands.is_empty());
    }
}
