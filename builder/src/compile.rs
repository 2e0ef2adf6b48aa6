//! Invoking the C compiler on one patch translation unit.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::BuildError;

/// The C compiler, located the way the `cc` crate does it (`CC`, then the platform default).
#[derive(Debug, Clone)]
pub struct Compiler {
    path: PathBuf,
}

impl Compiler {
    /// Locates the C compiler for x86-64 Linux.
    pub fn locate() -> Result<Compiler, BuildError> {
        let target = "x86_64-unknown-linux-gnu";
        let tool = cc::Build::new()
            .target(target)
            .host(target)
            .opt_level(2)
            .cargo_metadata(false)
            .cargo_warnings(false)
            .out_dir(std::env::temp_dir())
            .try_get_compiler()
            .map_err(|e| BuildError::NoCompiler(e.to_string()))?;
        Ok(Compiler {
            path: tool.path().to_path_buf(),
        })
    }

    /// Path of the compiler executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The code-generation switches this compiler records in `DW_AT_producer` for `flags`
    /// (see [`crate::flags::recorded_switches`]), learnt by compiling a one-line file (written
    /// in `scratch` beside `unit_file`) to assembly; `None` for a compiler that records none.
    pub fn recorded_switches(
        &self,
        scratch: &Path,
        flags: &[String],
        unit_file: &str,
    ) -> Result<Option<Vec<String>>, BuildError> {
        let source = scratch.join(format!("{unit_file}.hotpatch-switches.c"));
        crate::write_file(&source, b"int hotpatch_switches;\n")?;
        let result = Command::new(&self.path)
            .current_dir(scratch)
            .args(flags)
            .args(["-g", "-S", "-o", "-"])
            .arg(&source)
            .output();
        let _ = std::fs::remove_file(&source);
        let result =
            result.map_err(|e| BuildError::NoCompiler(format!("{}: {e}", self.path.display())))?;
        if !result.status.success() {
            return Err(BuildError::Compile {
                file: unit_file.to_string(),
                diagnostics: String::from_utf8_lossy(&result.stderr).into_owned(),
            });
        }
        let assembly = String::from_utf8_lossy(&result.stdout);
        let producer = assembly.lines().find_map(|line| {
            let text = line.trim_start();
            let rest = text
                .strip_prefix(".string")
                .or_else(|| text.strip_prefix(".ascii"))?;
            let quoted = rest.trim().strip_prefix('"')?.strip_suffix('"')?;
            quoted.starts_with("GNU ").then(|| quoted.to_string())
        });
        Ok(producer.and_then(|p| crate::flags::recorded_switches(&p)))
    }

    /// Compiles `source` into `output` running in `cwd` (where the original build ran the
    /// compiler, mapped into a materialised revision: see `CompileCommand::place`), so that
    /// relative paths in `arguments` mean what they meant for the original build. Returns the
    /// compiler's diagnostics (warnings) on success; `unit_file` names the file in errors.
    pub fn compile(
        &self,
        cwd: &Path,
        source: &Path,
        output: &Path,
        arguments: &[String],
        unit_file: &str,
    ) -> Result<String, BuildError> {
        let result = Command::new(&self.path)
            .current_dir(cwd)
            .args(arguments)
            .arg("-c")
            .arg(source)
            .arg("-o")
            .arg(output)
            .output()
            .map_err(|e| BuildError::NoCompiler(format!("{}: {e}", self.path.display())))?;
        let diagnostics = String::from_utf8_lossy(&result.stderr).into_owned();
        if result.status.success() {
            Ok(diagnostics)
        } else {
            Err(BuildError::Compile {
                file: unit_file.to_string(),
                diagnostics,
            })
        }
    }
}
