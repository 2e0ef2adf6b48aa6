//! Which compiler flags a patch is built with, and where they came from.
//!
//! Precedence (the skeleton's rule): `--cflags` on the command line, else `[build] cflags` in
//! `hotpatch.toml` at the root of the new revision, else `-O2 -g`. The patch always adds
//! `-fPIC -ffunction-sections -fdata-sections` and never uses LTO.

use serde::Deserialize;

use crate::BuildError;

/// Flags used when neither the command line nor `hotpatch.toml` names any.
pub const DEFAULT_CFLAGS: &str = "-O2 -g";

/// Flags every patch object is compiled with on top of the original build's flags: position
/// independent, one section per function and per datum, so the applier can place them freely.
pub const PATCH_FLAGS: [&str; 3] = ["-fPIC", "-ffunction-sections", "-fdata-sections"];

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
}

/// The original build's language and optimisation flags, as the patch will use them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildFlags {
    /// The flags, already split into words, without the patch-specific additions.
    pub cflags: Vec<String>,
    /// Where they came from.
    pub origin: FlagsOrigin,
}

#[derive(Debug, Default, Deserialize)]
struct HotpatchToml {
    #[serde(default)]
    build: BuildSection,
}

#[derive(Debug, Default, Deserialize)]
struct BuildSection {
    cflags: Option<String>,
}

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
            });
        }
        if let Some(toml_text) = hotpatch_toml {
            let parsed: HotpatchToml = toml::from_str(toml_text)
                .map_err(|e| BuildError::Config(format!("hotpatch.toml: {}", e.message())))?;
            if let Some(text) = parsed.build.cflags {
                return Ok(BuildFlags {
                    cflags: split_words(&text, "hotpatch.toml [build] cflags")?,
                    origin: FlagsOrigin::HotpatchToml,
                });
            }
        }
        Ok(BuildFlags {
            cflags: split_words(DEFAULT_CFLAGS, "default flags")?,
            origin: FlagsOrigin::Default,
        })
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
                "-fdata-sections"
            ]
        );
    }
}
