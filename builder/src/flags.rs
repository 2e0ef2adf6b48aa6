//! Which compiler flags a patch is built with, and where they came from.
//!
//! Precedence: a file's entry in `compile_commands.json` (see [`BuildFlags::with_compile_commands`]),
//! else `--cflags` on the command line, else `[build] cflags` in `hotpatch.toml` at the root of
//! the new revision, else `-O2 -g`. The patch always adds
//! `-fPIC -ffunction-sections -fdata-sections` and never uses LTO.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::BuildError;

/// Flags used when neither the command line nor `hotpatch.toml` names any.
pub const DEFAULT_CFLAGS: &str = "-O2 -g";

/// Flags every patch object is compiled with on top of the original build's flags: position
/// independent, one section per function and per datum, so the applier can place them freely.
/// `__thread` variables are reached in the initial-exec model (a GOT slot holding the offset
/// from the thread pointer), which the applier links for the executable's variables.
pub const PATCH_FLAGS: [&str; 4] = [
    "-fPIC",
    "-ffunction-sections",
    "-fdata-sections",
    "-ftls-model=initial-exec",
];

/// Where the flags of a build came from, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagsOrigin {
    /// `--cflags` on the command line.
    CommandLine,
    /// `[build] cflags` in `hotpatch.toml`.
    HotpatchToml,
    /// Nothing named any flags: [`DEFAULT_CFLAGS`].
    Default,
    /// The file's entry in `compile_commands.json`.
    CompileCommands,
}

/// The original build's language and optimisation flags, as the patch will use them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildFlags {
    /// The flags, already split into words, without the patch-specific additions.
    pub cflags: Vec<String>,
    /// Where they came from.
    pub origin: FlagsOrigin,
    /// Flags of individual files from `compile_commands.json` (repository-relative path →
    /// flags); a file listed here is compiled with its own flags instead of `cflags`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_file: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct HotpatchToml {
    #[serde(default)]
    build: BuildSection,
}

#[derive(Debug, Default, Deserialize)]
struct BuildSection {
    cflags: Option<String>,
    compile_commands: Option<String>,
}

/// Where a compilation database is looked for when `hotpatch.toml` names none.
pub const COMPILE_COMMANDS: [&str; 2] = ["compile_commands.json", "build/compile_commands.json"];

impl BuildFlags {
    /// Chooses the flags: `command_line` (`--cflags`) first, then the text of `hotpatch.toml` when
    /// the revision has one, then [`DEFAULT_CFLAGS`].
    pub fn resolve(
        command_line: Option<&str>,
        hotpatch_toml: Option<&str>,
    ) -> Result<BuildFlags, BuildError> {
        if let Some(text) = command_line {
            return Ok(BuildFlags {
                cflags: split_words(text, "--cflags")?,
                origin: FlagsOrigin::CommandLine,
                per_file: BTreeMap::new(),
            });
        }
        if let Some(toml_text) = hotpatch_toml {
            let parsed: HotpatchToml = toml::from_str(toml_text)
                .map_err(|e| BuildError::Config(format!("hotpatch.toml: {}", e.message())))?;
            if let Some(text) = parsed.build.cflags {
                return Ok(BuildFlags {
                    cflags: split_words(&text, "hotpatch.toml [build] cflags")?,
                    origin: FlagsOrigin::HotpatchToml,
                    per_file: BTreeMap::new(),
                });
            }
        }
        Ok(BuildFlags {
            cflags: split_words(DEFAULT_CFLAGS, "default flags")?,
            origin: FlagsOrigin::Default,
            per_file: BTreeMap::new(),
        })
    }

    /// Adds the per-file flags of the compilation database: the one `hotpatch.toml` names
    /// (`[build] compile_commands = "path"`), else `compile_commands.json` at the root or in
    /// `build/`. `read` returns a file of the revision by repository-relative path; `files` are
    /// the repository's `.c` files. They win over every other source of flags for their files.
    pub fn with_compile_commands<'a>(
        mut self,
        hotpatch_toml: Option<&str>,
        read: impl Fn(&str) -> Option<&'a str>,
        files: &[&str],
    ) -> Result<BuildFlags, BuildError> {
        let named = match hotpatch_toml {
            Some(text) => {
                toml::from_str::<HotpatchToml>(text)
                    .map_err(|e| BuildError::Config(format!("hotpatch.toml: {}", e.message())))?
                    .build
                    .compile_commands
            }
            None => None,
        };
        let text = match &named {
            Some(path) => Some(read(path).ok_or_else(|| {
                BuildError::Config(format!(
                    "hotpatch.toml names the compilation database {path}, which the revision does not have"
                ))
            })?),
            None => COMPILE_COMMANDS.iter().find_map(|p| read(p)),
        };
        if let Some(text) = text {
            self.per_file = crate::compile_commands::parse(text, files)?;
        }
        Ok(self)
    }

    /// The flags `file` is compiled with: its compilation-database entry, else the common ones.
    pub fn for_file(&self, file: &str) -> BuildFlags {
        match self.per_file.get(file) {
            Some(flags) => BuildFlags {
                cflags: flags.clone(),
                origin: FlagsOrigin::CompileCommands,
                per_file: BTreeMap::new(),
            },
            None => BuildFlags {
                per_file: BTreeMap::new(),
                ..self.clone()
            },
        }
    }

    /// The full argument list for compiling a patch unit: the original flags with whatever would
    /// break a relocatable patch removed (LTO, non-PIC code generation, output and mode options),
    /// then [`PATCH_FLAGS`].
    pub fn patch_arguments(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.cflags.len() + PATCH_FLAGS.len());
        let mut skip_next = false;
        for flag in &self.cflags {
            if skip_next {
                skip_next = false;
                continue;
            }
            match flag.as_str() {
                "-o" | "-MF" | "-MT" | "-MQ" => skip_next = true,
                "-c" | "-S" | "-E" | "-M" | "-MM" | "-MD" | "-MMD" | "-MP" => {}
                "-fno-pic" | "-fno-PIC" | "-fno-pie" | "-fno-PIE" | "-fpie" | "-fPIE" | "-pie"
                | "-no-pie" | "-static" | "-shared" => {}
                f if f.starts_with("-flto") || f.starts_with("-ffat-lto") => {}
                f if f.starts_with("-l") || f.starts_with("-Wl,") => {}
                _ => out.push(flag.clone()),
            }
        }
        out.extend(PATCH_FLAGS.iter().map(|f| f.to_string()));
        out
    }
}

impl BuildFlags {
    /// The argument list for compiling the *old* revision of a file to fingerprint its functions:
    /// the original flags unchanged, minus output, mode, LTO and link options. Nothing is added:
    /// with `-ffunction-sections` the assembler could no longer shorten a jump to a neighbouring
    /// function of the same section (`jmp rel8`), which the original build did.
    pub fn preimage_arguments(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.cflags.len());
        let mut skip_next = false;
        for flag in &self.cflags {
            if skip_next {
                skip_next = false;
                continue;
            }
            match flag.as_str() {
                "-o" | "-MF" | "-MT" | "-MQ" => skip_next = true,
                "-c" | "-S" | "-E" | "-M" | "-MM" | "-MD" | "-MMD" | "-MP" => {}
                "-pie" | "-no-pie" | "-static" | "-shared" | "-rdynamic" => {}
                f if f.starts_with("-flto") || f.starts_with("-ffat-lto") => {}
                f if f.starts_with("-l") || f.starts_with("-Wl,") || f.starts_with("-L") => {}
                _ => out.push(flag.clone()),
            }
        }
        out
    }

    /// Whether the original build used link-time optimisation: its code is then not what a
    /// per-file compile produces, so no pre-image can be computed.
    pub fn uses_lto(&self) -> bool {
        self.cflags
            .iter()
            .any(|f| f.starts_with("-flto") && f != "-fno-lto")
    }
}

fn split_words(text: &str, what: &str) -> Result<Vec<String>, BuildError> {
    shlex::split(text)
        .ok_or_else(|| BuildError::Config(format!("{what}: unbalanced quotes in `{text}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_over_hotpatch_toml() {
        let f =
            BuildFlags::resolve(Some("-O3 -DX='a b'"), Some("[build]\ncflags = \"-O1\"")).unwrap();
        assert_eq!(f.cflags, ["-O3", "-DX=a b"]);
        assert_eq!(f.origin, FlagsOrigin::CommandLine);
    }

    #[test]
    fn hotpatch_toml_then_default() {
        let f = BuildFlags::resolve(None, Some("[build]\ncflags = \"-O1 -Iinclude\"")).unwrap();
        assert_eq!(
            (f.cflags, f.origin),
            (
                vec!["-O1".into(), "-Iinclude".into()],
                FlagsOrigin::HotpatchToml
            )
        );
        let f = BuildFlags::resolve(None, Some("[other]\nx = 1")).unwrap();
        assert_eq!(
            (f.cflags, f.origin),
            (vec!["-O2".into(), "-g".into()], FlagsOrigin::Default)
        );
    }

    #[test]
    fn bad_configuration_is_an_error_that_names_the_file() {
        let err = BuildFlags::resolve(None, Some("[build\n")).unwrap_err();
        assert!(err.to_string().contains("hotpatch.toml"), "{err}");
        let err = BuildFlags::resolve(Some("-DX='open"), None).unwrap_err();
        assert!(err.to_string().contains("unbalanced quotes"), "{err}");
    }

    #[test]
    fn compile_commands_win_for_their_files() {
        let db =
            r#"[{"directory": "/b", "file": "/b/src/a.c", "command": "cc -O1 -DX -c src/a.c"}]"#;
        let read = |p: &str| (p == "build/compile_commands.json").then_some(db);
        let f = BuildFlags::resolve(Some("-O2"), None)
            .unwrap()
            .with_compile_commands(None, read, &["src/a.c", "src/b.c"])
            .unwrap();
        assert_eq!(f.for_file("src/a.c").cflags, ["-O1", "-DX"]);
        assert_eq!(f.for_file("src/a.c").origin, FlagsOrigin::CompileCommands);
        assert_eq!(f.for_file("src/b.c").cflags, ["-O2"]);
        let err = BuildFlags::resolve(None, None)
            .unwrap()
            .with_compile_commands(Some("[build]\ncompile_commands = \"x.json\""), read, &[])
            .unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
    }

    #[test]
    fn preimage_arguments_keep_code_generation_flags() {
        let f = BuildFlags::resolve(Some("-O2 -fno-pic -no-pie -flto -c -o x.o -g"), None).unwrap();
        assert_eq!(f.preimage_arguments(), ["-O2", "-fno-pic", "-g"]);
        assert!(f.uses_lto());
    }

    #[test]
    fn patch_arguments_drop_lto_and_output_and_add_pic_sections() {
        let f =
            BuildFlags::resolve(Some("-O2 -flto=auto -c -o x.o -fno-pic -g -Iinc"), None).unwrap();
        assert_eq!(
            f.patch_arguments(),
            [
                "-O2",
                "-g",
                "-Iinc",
                "-fPIC",
                "-ffunction-sections",
                "-fdata-sections",
                "-ftls-model=initial-exec"
            ]
        );
    }
}
