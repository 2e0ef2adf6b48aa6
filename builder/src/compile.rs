//! Invoking the C compiler on one patch translation unit.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::{Cache, KeyBuilder};
use crate::{BuildError, CompileCommand, FlagSource};

/// Compiler processes this process started (compiles, preprocessing, probes).
static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many compiler processes this process has started so far (compiles, preprocessing,
/// probes): `--json` reports it as `timings.compile_jobs`, to show what the cache saved.
pub fn compiler_runs() -> usize {
    RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one compiler process about to start (see [`crate::slots::output`]).
pub(crate) fn count_run() {
    RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The executable `program` names: a path (relative ones against `directory`), or a name
/// looked up on `PATH`.
pub(crate) fn resolve(program: &str, directory: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(directory.join(program)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether `program` (a path or a name) names a C compiler driver: `cc`, `gcc` or `clang`,
/// possibly after a target prefix (`x86_64-linux-gnu-`) and before a version (`-12`, `-14.0`).
fn is_c_compiler(program: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    let name = match name.rsplit_once('-') {
        Some((head, version))
            if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            head
        }
        _ => name,
    };
    ["cc", "gcc", "clang"].iter().any(|driver| {
        name == *driver
            || name
                .strip_suffix(driver)
                .is_some_and(|prefix| prefix.ends_with('-'))
    })
}

/// The C compiler, located the way the `cc` crate does it (`CC`, then the platform default).
#[derive(Debug, Clone)]
pub struct Compiler {
    path: PathBuf,
}

impl Compiler {
    /// Locates the C compiler for x86-64 Linux, once per run: the `cc` crate runs the compiler
    /// twice to find out what it is (tens of milliseconds), and every compile and preprocess of
    /// a run asks.
    pub fn locate() -> Result<Compiler, BuildError> {
        static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
        let found = FOUND.get_or_init(|| {
            let target = "x86_64-unknown-linux-gnu";
            cc::Build::new()
                .target(target)
                .host(target)
                .opt_level(2)
                .cargo_metadata(false)
                .cargo_warnings(false)
                .out_dir(std::env::temp_dir())
                .try_get_compiler()
                .map(|tool| tool.path().to_path_buf())
                .map_err(|e| e.to_string())
        });
        match found {
            Ok(path) => Ok(Compiler { path: path.clone() }),
            Err(e) => Err(BuildError::NoCompiler(e.clone())),
        }
    }

    /// Path of the compiler executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The compiler `command` ran — its first word, when that names a C compiler (`cc`, `gcc`,
    /// `clang`, with a target prefix or version suffix such as `x86_64-linux-gnu-gcc-12`) found on
    /// this machine (absolute, relative to the command's directory, or on `PATH`) — else
    /// `fallback`. Commands made of flags alone (`--cflags`, the default) use `fallback`.
    pub fn for_command(command: &CompileCommand, fallback: &Compiler) -> Compiler {
        if matches!(
            command.source,
            FlagSource::CommandLine | FlagSource::HotpatchToml(_) | FlagSource::Default
        ) {
            return fallback.clone();
        }
        let Some(program) = command.arguments.first().filter(|p| is_c_compiler(p)) else {
            return fallback.clone();
        };
        let same = |a: &Path, b: &Path| {
            std::fs::canonicalize(a)
                .ok()
                .is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a))
        };
        let fallback_path = resolve(&fallback.path.to_string_lossy(), Path::new(""));
        match resolve(program, &command.directory) {
            // The same program under another name (`/usr/bin/cc` for `cc`) is the fallback.
            Some(path) if !fallback_path.is_some_and(|f| same(&f, &path)) => Compiler { path },
            _ => fallback.clone(),
        }
    }

    /// The code-generation switches this compiler records in `DW_AT_producer` for `flags`
    /// (see [`crate::flags::recorded_switches`]), learnt by compiling a one-line file (written
    /// in `scratch` beside `unit_file`) to assembly; `None` for a compiler that records none.
    /// The answer is kept in `cache`, by the compiler and the flags.
    pub fn recorded_switches(
        &self,
        scratch: &Path,
        flags: &[String],
        unit_file: &str,
        cache: &Cache,
    ) -> Result<Option<Vec<String>>, BuildError> {
        let key = cache.enabled().then(|| {
            KeyBuilder::new("switches-1")
                .compiler(&self.path)
                .field("flags", flags.join("\0").as_bytes())
                .finish()
        });
        let key = key.flatten();
        let cached = key.as_ref().and_then(|k| cache.get(k));
        if let Some(switches) = cached.and_then(|b| serde_json::from_slice(&b).ok()) {
            return Ok(switches);
        }
        let switches = self.ask_switches(scratch, flags, unit_file)?;
        if let (Some(key), Ok(bytes)) = (key, serde_json::to_vec(&switches)) {
            cache.put(&key, &bytes);
        }
        Ok(switches)
    }

    fn ask_switches(
        &self,
        scratch: &Path,
        flags: &[String],
        unit_file: &str,
    ) -> Result<Option<Vec<String>>, BuildError> {
        let source = scratch.join(format!("{unit_file}.hotpatch-switches.c"));
        crate::write_file(&source, b"int hotpatch_switches;\n")?;
        let result = crate::slots::output(
            Command::new(&self.path)
                .current_dir(scratch)
                .args(flags)
                .args(["-g", "-S", "-o", "-"])
                .arg(&source),
        );
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
        let result = crate::slots::output(
            Command::new(&self.path)
                .current_dir(cwd)
                .args(arguments)
                .arg("-c")
                .arg(source)
                .arg("-o")
                .arg(output),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_compiler_names() {
        for name in [
            "cc",
            "gcc",
            "/usr/bin/clang-14",
            "x86_64-linux-gnu-gcc-12",
            "gcc-12.2",
        ] {
            assert!(is_c_compiler(name), "{name}");
        }
        for name in ["ccache", "g++", "/bin/bash", "libtool", "mycc", "clang++"] {
            assert!(!is_c_compiler(name), "{name}");
        }
    }
}
