//! Preprocessing a file exactly as its build command would, inside a materialised revision: the
//! text the compiler really sees, for the differ to judge the change on (macros expanded, `#if`
//! decided, storage classes from macros visible).

use std::path::Path;
use std::process::Command;

use crate::flags::preimage_arguments;
use crate::{BuildError, CompileCommand, Compiler};

/// The preprocessed text of `command`'s file in `tree` (a materialised revision), run where the
/// build compiled it. Line markers naming files of `tree` are rewritten to repository-relative
/// paths; other files (system headers, generated headers of the build tree) keep their path.
pub fn preprocess(command: &CompileCommand, tree: &Path) -> Result<String, BuildError> {
    let compiler = Compiler::for_command(command, &Compiler::locate()?);
    let placed = command.place(tree, &preimage_arguments(&command.flags()))?;
    let source = tree.join(&command.file);
    crate::compile::count_run();
    let output = Command::new(compiler.path())
        .current_dir(&placed.cwd)
        .args(&placed.arguments)
        .arg("-E")
        .arg(&source)
        .output()
        .map_err(|e| BuildError::NoCompiler(format!("{}: {e}", compiler.path().display())))?;
    if !output.status.success() {
        return Err(BuildError::Compile {
            file: command.file.clone(),
            diagnostics: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let prefix = format!("\"{}/", tree.to_string_lossy().trim_end_matches('/'));
    Ok(relative_markers(&text, &prefix))
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
    fn a_failing_preprocess_names_the_file() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("a.c"), "#include \"absent.h\"\n").unwrap();
        let command =
            CompileCommand::from_flags("a.c", &[], FlagSource::CommandLine, Path::new(""));
        let err = preprocess(&command, tree.path()).unwrap_err().to_string();
        assert!(err.contains("a.c") && err.contains("absent.h"), "{err}");
    }
}
