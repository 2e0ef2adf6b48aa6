//! The build model: for every source file of the running binary, the directory the compiler ran
//! in and the arguments it was given, found from the user's own build — never built, only asked.
//!
//! Per file, the first of these that has a command for it:
//! 1. `--compile-commands FILE`, else the database `[build] compile_commands` of `hotpatch.toml`
//!    names, else the build directory's own knowledge: `compile_commands.json` there or in its
//!    `build/` (read from disk: untracked is the normal case), CMake's export
//!    (`CMakeCache.txt`), `ninja -t compdb` (`build.ninja`), make's dry run (a `Makefile`);
//! 2. a `compile_commands.json` committed in the new revision (at its root or in `build/`);
//! 3. `--cflags`, then `[build] cflags` of `hotpatch.toml` (the work tree's, else the revision's);
//! 4. when nothing of 1–3 exists at all, [`crate::DEFAULT_CFLAGS`] (the report warns).
//!
//! A file that a build model of 1–2 does not list, with nothing in 3, is an error naming the file
//! and what was searched: compiling it with made-up flags would not reproduce the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{CompileCommand, FlagSource};
use crate::compile_commands::{self, Database};
use crate::flags::{split_words, BuildSection};
use crate::{make, BuildError};

/// Where compilation databases are looked for, relative to a build directory or a revision.
pub const COMPILE_COMMANDS: [&str; 2] = ["compile_commands.json", "build/compile_commands.json"];

/// Names of a Makefile, as GNU make looks for them.
const MAKEFILES: [&str; 3] = ["GNUmakefile", "makefile", "Makefile"];

/// What to look at to find the build model.
#[derive(Clone, Copy)]
pub struct Discover<'a> {
    /// The tree where the running binary (v1) was built: `--build-dir`, else the work tree.
    pub build_dir: Option<&'a Path>,
    /// `--compile-commands FILE`.
    pub compile_commands: Option<&'a Path>,
    /// The repository's work tree on this machine, when hotpatch runs in a checkout: the root
    /// of the build's source paths, and where `hotpatch.toml` is read from disk.
    pub work_tree: Option<&'a Path>,
    /// `--cflags`.
    pub cflags: Option<&'a str>,
    /// A file of the new revision, by repository-relative path.
    pub revision_file: &'a dyn Fn(&str) -> Option<String>,
    /// The repository's `.c` files (repository-relative).
    pub repo_files: &'a [&'a str],
}

/// The build model of a program: what is known about how each of its files was compiled.
#[derive(Debug, Clone)]
pub struct BuildModel {
    /// Sources of per-file commands, in priority order.
    databases: Vec<Database>,
    /// Flags for every file no database lists (`--cflags`, `hotpatch.toml`).
    explicit: Option<(Vec<String>, FlagSource)>,
    /// The directory flag-only commands run in (the work tree; empty: the revision's root).
    directory: PathBuf,
    /// What was searched for, for the message when nothing was found.
    searched: Vec<String>,
    /// What went wrong on the way without stopping it (a failing dry run, with explicit flags).
    warnings: Vec<String>,
}

impl BuildModel {
    /// Finds the build model (see the module documentation). Fails when a database or
    /// `hotpatch.toml` is malformed, or the build system's dry run or export fails.
    pub fn discover(d: &Discover<'_>) -> Result<BuildModel, BuildError> {
        let mut model = BuildModel {
            databases: Vec::new(),
            explicit: None,
            directory: d.work_tree.map(Path::to_path_buf).unwrap_or_default(),
            searched: Vec::new(),
            warnings: Vec::new(),
        };
        let disk_toml = d.work_tree.map(|w| w.join("hotpatch.toml"));
        let (toml, toml_label) = match disk_toml.as_ref().filter(|p| p.is_file()) {
            Some(path) => (Some(read_file(path)?), path.display().to_string()),
            None => (
                (d.revision_file)("hotpatch.toml"),
                "hotpatch.toml of the new revision".to_string(),
            ),
        };
        let section = toml
            .as_deref()
            .map(|text| BuildSection::parse(text, &toml_label))
            .transpose()?
            .unwrap_or_default();

        model.explicit = match (d.cflags, section.cflags.clone()) {
            (Some(text), _) => Some((split_words(text, "--cflags")?, FlagSource::CommandLine)),
            (None, Some(flags)) => Some((flags, FlagSource::HotpatchToml(toml_label.clone()))),
            (None, None) => None,
        };
        if let Some(path) = d.compile_commands {
            model.databases.push(read_database(path, d)?);
        } else if let Some(named) = &section.compile_commands {
            model.databases.push(named_database(named, &toml_label, d)?);
        } else if let Some(dir) = d.build_dir {
            match model.ask_build_dir(dir, d) {
                Ok(Some(db)) => model.databases.push(db),
                Ok(None) => {}
                // Explicit flags make a build directory that cannot answer no obstacle.
                Err(e) => match &model.explicit {
                    Some((_, source)) => model.warnings.push(format!("{e}; using {source}")),
                    None => return Err(e),
                },
            }
        }
        if section.compile_commands.is_none() {
            if let Some((path, text)) = COMPILE_COMMANDS
                .iter()
                .find_map(|p| (d.revision_file)(p).map(|t| (p, t)))
            {
                let source = FlagSource::RevisionCompileCommands(path.to_string());
                model.databases.push(compile_commands::parse(
                    &text,
                    source,
                    d.work_tree,
                    d.repo_files,
                )?);
            } else {
                model
                    .searched
                    .push("no compile_commands.json in the new revision".to_string());
            }
        }
        if model.explicit.is_none() {
            model
                .searched
                .push("no --cflags, no [build] cflags in hotpatch.toml".to_string());
        }
        Ok(model)
    }

    /// The build directory's own knowledge of its compiles, asked without building.
    fn ask_build_dir(
        &mut self,
        dir: &Path,
        d: &Discover<'_>,
    ) -> Result<Option<Database>, BuildError> {
        if !dir.is_dir() {
            return Err(BuildError::Config(format!(
                "the build directory {} does not exist",
                dir.display()
            )));
        }
        for name in COMPILE_COMMANDS {
            let path = dir.join(name);
            if path.is_file() {
                return read_database(&path, d).map(Some);
            }
        }
        for cmake_dir in [dir.to_path_buf(), dir.join("build")] {
            if cmake_dir.join("CMakeCache.txt").is_file() {
                return cmake_export(&cmake_dir, d).map(Some);
            }
        }
        if dir.join("build.ninja").is_file() {
            let text = run(
                Command::new("ninja")
                    .args(["-t", "compdb"])
                    .current_dir(dir),
                &format!("ninja -t compdb in {}", dir.display()),
            )?;
            let source = FlagSource::NinjaCompdb(dir.to_path_buf());
            return compile_commands::parse(&text, source, d.work_tree, d.repo_files).map(Some);
        }
        if MAKEFILES.iter().any(|m| dir.join(m).is_file()) {
            return make_dry_run(dir, d).map(Some);
        }
        self.searched.push(format!(
            "no compile_commands.json, CMakeCache.txt, build.ninja or Makefile in {} or its build/",
            dir.display()
        ));
        Ok(None)
    }

    /// Every compile command known for `file`, from the first source that lists it (several:
    /// the build compiles the file more than once, e.g. for a program and its `-debug` twin).
    /// Without any, the explicit flags or the default. Fails when a build model exists that does
    /// not list the file and no flags were given.
    pub fn candidates(&self, file: &str) -> Result<Vec<CompileCommand>, BuildError> {
        for db in &self.databases {
            let mut found: Vec<CompileCommand> = Vec::new();
            for command in db.commands.iter().filter(|c| c.file == file) {
                let same = |c: &CompileCommand| {
                    c.directory == command.directory && c.flags() == command.flags()
                };
                if !found.iter().any(same) {
                    found.push(command.clone());
                }
            }
            if !found.is_empty() {
                return Ok(found);
            }
        }
        if let Some((flags, source)) = &self.explicit {
            return Ok(vec![CompileCommand::from_flags(
                file,
                flags,
                source.clone(),
                &self.directory,
            )]);
        }
        match self.databases.first() {
            Some(db) => Err(BuildError::NoCompileCommand {
                file: file.to_string(),
                looked_in: format!(
                    "{} ({} entr{})",
                    db.source,
                    db.entries,
                    if db.entries == 1 { "y" } else { "ies" }
                ),
            }),
            None => Ok(vec![CompileCommand::default_for(file, &self.directory)]),
        }
    }

    /// The include directories of every command, as `-IDIR` relative to the repository root
    /// (those outside it left out): where the differ looks for the headers a file includes.
    pub fn include_flags(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let commands = self.databases.iter().flat_map(|db| db.commands.iter());
        for command in commands {
            for dir in command.include_dirs() {
                let flag = format!("-I{dir}");
                if !out.contains(&flag) {
                    out.push(flag);
                }
            }
        }
        if let Some((flags, _)) = &self.explicit {
            out.extend(flags.iter().cloned());
        }
        out
    }

    /// What went wrong while the model was found without stopping it: a build directory whose
    /// dry run or export failed while explicit flags were given (they are used instead).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What was searched without result, for the warning when the default flags are used.
    pub fn searched(&self) -> String {
        self.searched.join("; ")
    }
}

fn read_file(path: &Path) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|e| BuildError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn read_database(path: &Path, d: &Discover<'_>) -> Result<Database, BuildError> {
    let text = read_file(path)?;
    let source = FlagSource::CompileCommands(path.to_path_buf());
    compile_commands::parse(&text, source, d.work_tree, d.repo_files)
}

/// The database `[build] compile_commands` names: on disk relative to the work tree, else in
/// the new revision.
fn named_database(named: &str, toml: &str, d: &Discover<'_>) -> Result<Database, BuildError> {
    if let Some(path) = d.work_tree.map(|w| w.join(named)).filter(|p| p.is_file()) {
        return read_database(&path, d);
    }
    let text = (d.revision_file)(named).ok_or_else(|| {
        BuildError::Config(format!(
            "{toml} names the compilation database {named}, which neither the work tree nor the revision has"
        ))
    })?;
    let source = FlagSource::RevisionCompileCommands(named.to_string());
    compile_commands::parse(&text, source, d.work_tree, d.repo_files)
}

/// CMake writes the database when asked: re-configure the build directory with the export on
/// (nothing is built), then read it.
fn cmake_export(dir: &Path, d: &Discover<'_>) -> Result<Database, BuildError> {
    let path = dir.join("compile_commands.json");
    if !path.is_file() {
        run(
            Command::new("cmake")
                .arg("-DCMAKE_EXPORT_COMPILE_COMMANDS=ON")
                .arg(dir)
                .current_dir(dir),
            &format!(
                "cmake -DCMAKE_EXPORT_COMPILE_COMMANDS=ON in {}",
                dir.display()
            ),
        )?;
    }
    let text = read_file(&path)?;
    let source = FlagSource::CmakeExport(path);
    compile_commands::parse(&text, source, d.work_tree, d.repo_files)
}

/// make's dry run in `dir`: every compile make would run if the repository's sources had just
/// changed, run nowhere (see [`make::dry_run_arguments`]).
fn make_dry_run(dir: &Path, d: &Discover<'_>) -> Result<Database, BuildError> {
    let output = run(
        Command::new("make")
            .args(make::dry_run_arguments(dir, d.work_tree, d.repo_files))
            .current_dir(dir)
            .env("LC_ALL", "C"),
        &format!("make -n in {}", dir.display()),
    )?;
    let source = FlagSource::MakeDryRun(dir.to_path_buf());
    let mut commands = Vec::new();
    let found = make::compiles(&output, dir);
    for (directory, arguments) in &found {
        let Some(input) = arguments
            .iter()
            .skip(1)
            .find(|w| !w.starts_with('-') && w.ends_with(".c"))
        else {
            continue;
        };
        let path = crate::command::normalize(&directory.join(input));
        if let Some((file, root)) = compile_commands::locate(&path, d.work_tree, d.repo_files) {
            commands.push(CompileCommand {
                file,
                directory: directory.clone(),
                arguments: arguments.clone(),
                source: source.clone(),
                root,
            });
        }
    }
    Ok(Database {
        source,
        commands,
        entries: found.len(),
    })
}

/// Runs a build-system query and returns its standard output; `what` names it in errors.
fn run(command: &mut Command, what: &str) -> Result<String, BuildError> {
    let output = command
        .output()
        .map_err(|e| BuildError::Config(format!("{what} failed: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(5).collect();
        let detail = last.into_iter().rev().collect::<Vec<_>>().join(" / ");
        return Err(BuildError::Config(format!(
            "{what} failed ({}): {detail}",
            output.status
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discover(work: &Path, revision: &[(&str, &str)], cflags: Option<&str>) -> BuildModel {
        let revision: Vec<(String, String)> = revision
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        let read = move |p: &str| {
            revision
                .iter()
                .find(|(q, _)| q == p)
                .map(|(_, t)| t.clone())
        };
        BuildModel::discover(&Discover {
            build_dir: Some(work),
            compile_commands: None,
            work_tree: Some(work),
            cflags,
            revision_file: &read,
            repo_files: &["src/a.c", "src/b.c"],
        })
        .unwrap()
    }

    #[test]
    fn an_untracked_database_in_the_build_dir_wins() {
        let work = tempfile::tempdir().unwrap();
        let w = work.path().display();
        std::fs::create_dir_all(work.path().join("build")).unwrap();
        std::fs::write(
            work.path().join("build/compile_commands.json"),
            format!(r#"[{{"directory": "{w}/src", "file": "a.c", "command": "cc -O1 -c a.c"}}]"#),
        )
        .unwrap();
        let committed = r#"[{"directory": "/x", "file": "/x/src/a.c", "command": "cc -O3 -c /x/src/a.c"},
                            {"directory": "/x", "file": "/x/src/b.c", "command": "cc -O3 -c /x/src/b.c"}]"#;
        let model = discover(
            work.path(),
            &[("compile_commands.json", committed)],
            Some("-O0"),
        );
        let a = &model.candidates("src/a.c").unwrap()[0];
        assert_eq!(a.flags(), ["-O1"]);
        assert!(
            matches!(&a.source, FlagSource::CompileCommands(p) if p.ends_with("build/compile_commands.json"))
        );
        // Not in the work tree's database: the committed one.
        let b = &model.candidates("src/b.c").unwrap()[0];
        assert_eq!(
            b.source,
            FlagSource::RevisionCompileCommands("compile_commands.json".into())
        );
    }

    #[test]
    fn a_file_the_model_lacks_is_an_error_without_flags() {
        let work = tempfile::tempdir().unwrap();
        let w = work.path().display();
        std::fs::write(
            work.path().join("compile_commands.json"),
            format!(r#"[{{"directory": "{w}", "file": "src/a.c", "command": "cc -c src/a.c"}},
                        {{"directory": "{w}", "file": "src/a.c", "command": "cc -c src/a.c"}},
                        {{"directory": "{w}", "file": "src/a.c", "command": "cc -DDEBUG -c src/a.c"}}]"#),
        )
        .unwrap();
        let model = discover(work.path(), &[], None);
        // Duplicates are one candidate; the debug twin is another.
        assert_eq!(model.candidates("src/a.c").unwrap().len(), 2);
        let err = model.candidates("src/b.c").unwrap_err().to_string();
        assert!(
            err.contains("no compile command for src/b.c in compile_commands.json at")
                && err.contains("(3 entries)"),
            "{err}"
        );
        let model = discover(work.path(), &[], Some("-O1"));
        assert_eq!(
            model.candidates("src/b.c").unwrap()[0].source,
            FlagSource::CommandLine
        );
    }

    #[test]
    fn nothing_found_means_the_default_and_says_what_was_searched() {
        let work = tempfile::tempdir().unwrap();
        let model = discover(work.path(), &[], None);
        assert_eq!(
            model.candidates("src/a.c").unwrap()[0].source,
            FlagSource::Default
        );
        assert!(
            model.searched().contains("no --cflags"),
            "{}",
            model.searched()
        );
    }

    #[test]
    fn the_work_tree_s_hotpatch_toml_counts_before_the_revision_s() {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(
            work.path().join("hotpatch.toml"),
            "[build]\ncflags = \"-O1 -Iinc\"\n",
        )
        .unwrap();
        let model = discover(
            work.path(),
            &[("hotpatch.toml", "[build]\ncflags = \"-O3\"\n")],
            None,
        );
        let a = &model.candidates("src/a.c").unwrap()[0];
        assert_eq!(a.flags(), ["-O1", "-Iinc"]);
        let path = work.path().join("hotpatch.toml");
        assert_eq!(
            a.source.to_string(),
            format!("[build] cflags of {}", path.display())
        );
        std::fs::remove_file(&path).unwrap();
        let model = discover(
            work.path(),
            &[("hotpatch.toml", "[build]\ncflags = \"-O3\"\n")],
            None,
        );
        assert_eq!(
            model.candidates("src/a.c").unwrap()[0].source.to_string(),
            "[build] cflags of hotpatch.toml of the new revision"
        );
    }

    #[test]
    fn a_failing_dry_run_with_explicit_flags_is_a_warning() {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("Makefile"), "$(error broken)\n").unwrap();
        let model = discover(work.path(), &[], Some("-O1"));
        assert_eq!(
            model.candidates("src/a.c").unwrap()[0].source,
            FlagSource::CommandLine
        );
        assert!(
            model.warnings()[0].contains("make -n in")
                && model.warnings()[0].ends_with("; using --cflags"),
            "{:?}",
            model.warnings()
        );
    }

    #[test]
    fn a_failing_make_dry_run_is_an_error_naming_the_directory() {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(
            work.path().join("Makefile"),
            "all:\n\tfalse\n\t$(error broken)\n",
        )
        .unwrap();
        let read = |_: &str| None;
        let err = BuildModel::discover(&Discover {
            build_dir: Some(work.path()),
            compile_commands: None,
            work_tree: None,
            cflags: None,
            revision_file: &read,
            repo_files: &[],
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("make -n in {} failed", work.path().display()))
                && err.contains("broken"),
            "{err}"
        );
    }
}
