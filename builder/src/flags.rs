//! The argument lists a patch compiles with, made from the original build's flags, and the
//! `[build]` section of `hotpatch.toml`.
//!
//! The patch always adds `-fPIC -ffunction-sections -fdata-sections` and never uses LTO.

use serde::Deserialize;

use crate::BuildError;

/// Flags used when nothing names any: no compile command, no `--cflags`, no `hotpatch.toml`.
pub const DEFAULT_CFLAGS: &str = "-O2 -g";

/// Flags every patch object is compiled with on top of the original build's flags: position
/// independent, one section per function and per datum, so the applier can place them freely.
/// `__thread` variables are reached the way `-fPIC` reaches them, the general-dynamic model (a
/// `tls_index` pair and `__tls_get_addr`): that works for the executable's variables and for
/// those of any library, static TLS or dynamic (a `dlopen`ed library's). The
/// warnings the patch unit's own shape causes are off (its `extern` redeclarations, the
/// definitions it keeps but does not use, fall-through comments lost in preprocessed text): they
/// are not the build's, and under the build's `-Werror` they would stop the patch.
pub const PATCH_FLAGS: [&str; 8] = [
    "-fPIC",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wno-redundant-decls",
    "-Wno-unused-function",
    "-Wno-unused-variable",
    "-Wno-unused-const-variable",
    "-Wno-implicit-fallthrough",
];

/// The `[build]` section of a `hotpatch.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildSection {
    /// `cflags = "..."`, split into words.
    pub cflags: Option<Vec<String>>,
    /// `compile_commands = "path"`: the compilation database to use.
    pub compile_commands: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct HotpatchToml {
    #[serde(default)]
    build: RawBuildSection,
}

#[derive(Debug, Default, Deserialize)]
struct RawBuildSection {
    cflags: Option<String>,
    compile_commands: Option<String>,
}

impl BuildSection {
    /// Parses the text of a `hotpatch.toml`; `label` names the file in errors.
    pub fn parse(text: &str, label: &str) -> Result<BuildSection, BuildError> {
        let parsed: HotpatchToml = toml::from_str(text)
            .map_err(|e| BuildError::Config(format!("{label}: {}", e.message())))?;
        let cflags = parsed
            .build
            .cflags
            .map(|text| split_words(&text, &format!("{label} [build] cflags")))
            .transpose()?;
        Ok(BuildSection {
            cflags,
            compile_commands: parsed.build.compile_commands,
        })
    }
}

/// Splits a flag string the way a shell would (quotes respected, never split inside them).
pub fn split_words(text: &str, what: &str) -> Result<Vec<String>, BuildError> {
    shlex::split(text)
        .ok_or_else(|| BuildError::Config(format!("{what}: unbalanced quotes in `{text}`")))
}

/// The full argument list for compiling a patch unit: the original flags with whatever would
/// break a relocatable patch removed (LTO, non-PIC code generation, output and mode options),
/// `-g` when they ask for no debug information (gcc's code is the same with it, and the patch's
/// types are compared with the running binary's through it), then [`PATCH_FLAGS`].
pub fn patch_arguments(flags: &[String]) -> Vec<String> {
    let mut out = filtered(flags, |flag| {
        matches!(
            flag,
            "-fno-pic" | "-fno-PIC" | "-fno-pie" | "-fno-PIE" | "-fpie" | "-fPIE"
        )
    });
    if !out.iter().any(|f| f.starts_with("-g")) {
        out.push("-g".to_string());
    }
    out.extend(PATCH_FLAGS.iter().map(|f| f.to_string()));
    out
}

/// The argument list for compiling the *old* revision of a file to fingerprint its functions:
/// the original flags unchanged, minus output, mode, LTO and link options. Nothing is added:
/// with `-ffunction-sections` the assembler could no longer shorten a jump to a neighbouring
/// function of the same section (`jmp rel8`), which the original build did.
pub fn preimage_arguments(flags: &[String]) -> Vec<String> {
    filtered(flags, |flag| flag == "-rdynamic" || flag.starts_with("-L"))
}

/// The argument list for compiling a revision of a file to compare its code function by
/// function (see `confirm`): [`preimage_arguments`] with one section per function and datum.
pub fn confirm_arguments(flags: &[String]) -> Vec<String> {
    let mut out = preimage_arguments(flags);
    out.push("-ffunction-sections".to_string());
    out.push("-fdata-sections".to_string());
    out
}

/// Whether the original build used link-time optimisation: its code is then not what a
/// per-file compile produces, so no pre-image can be computed.
pub fn uses_lto(flags: &[String]) -> bool {
    flags
        .iter()
        .any(|f| f.starts_with("-flto") && f != "-fno-lto")
}

/// The code-generation switches a gcc `DW_AT_producer` records (`GNU C17 12.2.0 -mtune=generic
/// -march=x86-64 -g -O2 ...`), in a canonical form to compare two of them: the last `-O` level
/// (`-O0` when none), every `-m` and `-f` switch, `-std=`; not debug-information, warning and
/// preprocessor options, nor what a patch sets itself (position independence, sections, TLS
/// model) or drops (LTO), nor path maps. `None`: not a gcc producer (clang records no switches).
pub fn recorded_switches(producer: &str) -> Option<Vec<String>> {
    if !producer.starts_with("GNU ") {
        return None;
    }
    const IGNORED: [&str; 17] = [
        "-fPIC",
        "-fpic",
        "-fPIE",
        "-fpie",
        "-fno-pic",
        "-fno-PIC",
        "-fno-pie",
        "-fno-PIE",
        "-ffunction-sections",
        "-fdata-sections",
        "-ftls-model=",
        "-flto",
        "-ffat-lto-objects",
        "-fno-fat-lto-objects",
        "-fuse-linker-plugin",
        "-fdiagnostics-",
        "-fmessage-length=",
    ];
    let mut level = "-O0".to_string();
    let mut switches = Vec::new();
    for word in producer.split_whitespace().filter(|w| w.starts_with('-')) {
        if let Some(rest) = word.strip_prefix("-O") {
            level = if rest.is_empty() {
                "-O1".into()
            } else {
                word.to_string()
            };
        } else if (word.starts_with("-f") || word.starts_with("-m") || word.starts_with("-std="))
            && !IGNORED.iter().any(|i| word.starts_with(i))
            && !word.contains("-prefix-map=")
        {
            switches.push(word.to_string());
        }
    }
    switches.sort();
    switches.dedup();
    switches.insert(0, level);
    Some(switches)
}

/// `flags` without output, mode, dependency-file, LTO and link options, nor those `drop` names.
fn filtered(flags: &[String], drop: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::with_capacity(flags.len());
    let mut skip_next = false;
    for flag in flags {
        if skip_next {
            skip_next = false;
            continue;
        }
        match flag.as_str() {
            "-o" | "-MF" | "-MT" | "-MQ" => skip_next = true,
            "-c" | "-S" | "-E" | "-M" | "-MM" | "-MD" | "-MMD" | "-MP" => {}
            "-pie" | "-no-pie" | "-static" | "-shared" => {}
            f if f.starts_with("-flto") || f.starts_with("-ffat-lto") => {}
            f if f.starts_with("-l") || f.starts_with("-Wl,") => {}
            f if drop(f) => {}
            _ => out.push(flag.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split_words(text, "test").unwrap()
    }

    #[test]
    fn hotpatch_toml_build_section() {
        let section =
            BuildSection::parse("[build]\ncflags = \"-O1 -DX='a b'\"", "hotpatch.toml").unwrap();
        assert_eq!(section.cflags.unwrap(), ["-O1", "-DX=a b"]);
        let section = BuildSection::parse("[other]\nx = 1", "hotpatch.toml").unwrap();
        assert_eq!(section, BuildSection::default());
    }

    #[test]
    fn bad_configuration_is_an_error_that_names_the_file() {
        let err = BuildSection::parse("[build\n", "/w/hotpatch.toml").unwrap_err();
        assert!(err.to_string().contains("/w/hotpatch.toml"), "{err}");
        let err = split_words("-DX='open", "--cflags").unwrap_err();
        assert!(err.to_string().contains("unbalanced quotes"), "{err}");
    }

    #[test]
    fn recorded_switches_compare_code_generation_only() {
        let binary = "GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2 -O3 -fno-strict-aliasing \
                      -fPIE -flto -ffile-prefix-map=/a=/b -fasynchronous-unwind-tables";
        assert_eq!(
            recorded_switches(binary).unwrap(),
            [
                "-O3",
                "-fasynchronous-unwind-tables",
                "-fno-strict-aliasing",
                "-march=x86-64",
                "-mtune=generic"
            ]
        );
        assert_eq!(recorded_switches("GNU C11 12.2.0 -g").unwrap(), ["-O0"]);
        assert_eq!(recorded_switches("clang version 14.0.6"), None);
    }

    #[test]
    fn preimage_arguments_keep_code_generation_flags() {
        let flags = words("-O2 -fno-pic -no-pie -flto -c -o x.o -g");
        assert_eq!(preimage_arguments(&flags), ["-O2", "-fno-pic", "-g"]);
        assert!(uses_lto(&flags));
    }

    #[test]
    fn patch_arguments_drop_lto_and_output_and_add_pic_sections() {
        let flags = words("-O2 -flto=auto -c -o x.o -fno-pic -g -Iinc");
        let mut expected = vec!["-O2", "-g", "-Iinc"];
        expected.extend(PATCH_FLAGS);
        assert_eq!(patch_arguments(&flags), expected);
        let mut with_g = vec!["-O1", "-g"];
        with_g.extend(PATCH_FLAGS);
        assert_eq!(patch_arguments(&words("-O1")), with_g);
    }
}
