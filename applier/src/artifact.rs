//! The patch-object contract: the manifest that the builder writes into `.hotpatch.manifest` and the
//! applier reads back. Both sides use these types, so writer and reader cannot drift.

use serde::{Deserialize, Serialize};

/// Name of the ELF section that carries the manifest as UTF-8 JSON.
pub const MANIFEST_SECTION: &str = ".hotpatch.manifest";

/// Version of the manifest format this build writes and reads. Readers refuse other versions.
pub const MANIFEST_FORMAT: u32 = 1;

/// Everything the applier needs to know about a patch object beyond its ELF contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// Identifier of this patch, unique enough to name it in `list` and `revert`.
    pub patch_id: String,
    /// The source revision the running process is expected to run (e.g. `v1 (1a2b3c4d)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_revision: Option<String>,
    /// The source revision the patch brings (e.g. `v2 (5e6f7a8b)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_revision: Option<String>,
    /// Full commit id of the old revision, when it came from git: what the process must run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_commit: Option<String>,
    /// Full commit id of the new revision, when it came from git: what the process runs after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_commit: Option<String>,
    /// GNU build id (hex) of the binary the patch was built for, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_build_id: Option<String>,
    /// Compiler flags the patch was built with, for the report and for reproducing it.
    #[serde(default)]
    pub cflags: Vec<String>,
    /// Files compiled with flags other than the first file's: repository-relative path → the
    /// exact arguments. Files not listed used [`Manifest::cflags`].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub file_cflags: std::collections::BTreeMap<String, Vec<String>>,
    /// For every compiled file: its arguments, the directory the build compiled it in, and
    /// where the arguments came from (`compile_commands.json at PATH`, `make dry run in DIR`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<FileFlags>,
    /// Functions the patch defines: each replaces a function of the target or is new.
    pub functions: Vec<ManifestFunction>,
    /// How undefined symbols of the object bind to the target. Undefined symbols that are not
    /// listed here bind to a global symbol of the same name.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Data objects the patch brings with fresh storage (new globals), for the report.
    #[serde(default)]
    pub new_data: Vec<NewData>,
}

/// How one file of a patch was compiled, and where that came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFlags {
    /// Repository-relative path of the source file.
    pub file: String,
    /// The directory the original build compiled it in (empty: the repository's root).
    pub directory: String,
    /// The compiler the patch of this file was compiled with.
    #[serde(default)]
    pub compiler: String,
    /// The compiler arguments of the patch unit (the original flags, adapted for a patch).
    pub arguments: Vec<String>,
    /// Where the original flags came from, in words.
    pub source: String,
    /// The code-generation switches the compiler records (`DW_AT_producer`) for the original
    /// flags, canonical (last `-O` level first, then `-f`/`-m`/`-std=` sorted): compared with
    /// the running binary's before anything is written. Empty: not known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<String>,
    /// The layouts of the named types the patch unit's DWARF describes (the types its code
    /// uses): compared with the running binary's for the same file before anything is written.
    /// Empty: not known (compiled without debug information).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<crate::type_layout::TypeLayout>,
}

/// One function defined by the patch object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFunction {
    /// Name of the defining symbol inside the patch object.
    pub symbol: String,
    /// Which function of the target this is: its source name, and for `static` functions the file.
    pub target: SymbolRef,
    /// Replace the target's function, or add a function the target does not have.
    pub action: FunctionAction,
    /// Why the function is in the patch, in words for the operator
    /// (e.g. "changed", "new", "may inline `scale`").
    pub reason: String,
    /// Repository-relative path of the source file defining the function (for a `static` one,
    /// the same as its target's file). Absent in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Fingerprint of the function's old (v1) code, compiled with the original flags: the applier
    /// compares it with the process's memory before writing anything. Absent: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preimage: Option<Preimage>,
    /// Fingerprint of the function's new code, made exactly as [`ManifestFunction::preimage`] is
    /// (the new revision compiled with the original flags). While this patch is in effect, a
    /// later patch of the function is accepted only if its pre-image equals this fingerprint:
    /// its old side is then this patch's new side, compiled the same way. Absent: a later patch
    /// with a pre-image is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postimage: Option<Preimage>,
}

/// The fingerprint of a function's expected code in the running binary (Ksplice's run-pre
/// matching): its old bytes with every relocation site zeroed, since the linker fills those in
/// (and may relax the instruction around a GOT or TLS reference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage {
    /// Size of the function's code in bytes (its `st_size`).
    pub size: u64,
    /// The code as lowercase hex, masked bytes written as `00`.
    pub code: String,
    /// Byte ranges `[start, length]` that are not compared.
    #[serde(default)]
    pub masked: Vec<[u64; 2]>,
}

impl Preimage {
    /// Fingerprints `code`, not comparing the `masked` ranges (`[start, length]`).
    pub fn of(code: &[u8], masked: Vec<[u64; 2]>) -> Preimage {
        let hex: String = code
            .iter()
            .enumerate()
            .map(|(i, &b)| if in_mask(&masked, i) { 0 } else { b })
            .map(|b| format!("{b:02x}"))
            .collect();
        Preimage {
            size: code.len() as u64,
            code: hex,
            masked,
        }
    }

    /// The first offset at which `code` (read from the process) differs from the fingerprint,
    /// ignoring the masked ranges and the first `skip` bytes; `None` when it matches. A length
    /// or malformed fingerprint mismatch reports the offset `size`.
    pub fn first_difference(&self, code: &[u8], skip: usize) -> Option<u64> {
        let expected = decode_hex(&self.code);
        match expected {
            Some(expected)
                if expected.len() as u64 == self.size && code.len() == expected.len() =>
            {
                (0..code.len())
                    .find(|&i| i >= skip && !in_mask(&self.masked, i) && code[i] != expected[i])
                    .map(|i| i as u64)
            }
            _ => Some(self.size),
        }
    }

    /// The first offset at which the fingerprint `other` differs from this one — in a compared
    /// byte, or in which bytes are masked — or `None` when the two are the same fingerprint. A
    /// malformed fingerprint differs at offset 0; fingerprints of different sizes differ at the
    /// end of the shorter one at the latest.
    pub fn first_difference_from(&self, other: &Preimage) -> Option<u64> {
        let (Some(mine), Some(theirs)) = (decode_hex(&self.code), decode_hex(&other.code)) else {
            return Some(0);
        };
        (0..mine.len().max(theirs.len()))
            .find(|&i| {
                mine.get(i) != theirs.get(i)
                    || in_mask(&self.masked, i) != in_mask(&other.masked, i)
            })
            .map(|i| i as u64)
    }
}

fn in_mask(masked: &[[u64; 2]], i: usize) -> bool {
    let i = i as u64;
    masked
        .iter()
        .any(|&[start, len]| start <= i && i < start.saturating_add(len))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// What the applier does with a function of the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionAction {
    /// Redirect the target's existing function to the patch's code.
    Replace,
    /// The function is new; only code of the patch calls it.
    Add,
    /// The function changed, but the target has no symbol for it (inlined everywhere); its callers
    /// are replaced instead. Applying checks that the target really lacks it.
    InlinedOnly,
}

/// A symbol of the target, named the way the source names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SymbolRef {
    /// A global (external linkage) symbol, looked up in the executable first, then in libraries.
    Global {
        /// Symbol name.
        name: String,
    },
    /// A `static` (file-local) symbol defined by the named source file.
    FileLocal {
        /// Symbol name as in the source.
        name: String,
        /// Repository-relative path of the source file that defines it (matched against the
        /// binary's `STT_FILE` symbols by path suffix).
        file: String,
    },
    /// A `static` variable declared inside a function: found through the function's DWARF entry
    /// when the binary has debug information, otherwise as the unique `name.N` local symbol of
    /// the source file.
    StaticLocal {
        /// The function declaring it.
        function: String,
        /// The variable's name.
        name: String,
        /// Repository-relative path of the source file defining the function.
        file: String,
    },
}

impl SymbolRef {
    /// The source name of the symbol.
    pub fn name(&self) -> &str {
        match self {
            SymbolRef::Global { name }
            | SymbolRef::FileLocal { name, .. }
            | SymbolRef::StaticLocal { name, .. } => name,
        }
    }

    /// The source file named by a file-local or static-local reference.
    pub fn file(&self) -> Option<&str> {
        match self {
            SymbolRef::Global { .. } => None,
            SymbolRef::FileLocal { file, .. } | SymbolRef::StaticLocal { file, .. } => Some(file),
        }
    }
}

impl std::fmt::Display for SymbolRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SymbolRef::Global { name } => write!(f, "`{name}`"),
            SymbolRef::FileLocal { name, file } => write!(f, "`{name}` (static in {file})"),
            SymbolRef::StaticLocal {
                function,
                name,
                file,
            } => write!(f, "`{name}` (static local of `{function}` in {file})"),
        }
    }
}

/// Binds an undefined symbol of the patch object to a symbol of the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Name of the undefined symbol inside the patch object.
    pub symbol: String,
    /// The target symbol it means.
    pub target: SymbolRef,
}

/// A data object the patch brings with fresh storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewData {
    /// Source name of the variable.
    pub name: String,
    /// Source file that defines it.
    pub file: String,
}

impl Manifest {
    /// Serialises the manifest to the JSON stored in [`MANIFEST_SECTION`].
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest always serialises")
    }

    /// Parses the JSON of a [`MANIFEST_SECTION`], refusing unknown format versions.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let format = value.get("format").and_then(|f| f.as_u64());
        if format != Some(u64::from(MANIFEST_FORMAT)) {
            return Err(ManifestError::UnsupportedFormat(format));
        }
        serde_json::from_value(value).map_err(|e| ManifestError::Malformed(e.to_string()))
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The section is not the JSON this format expects.
    #[error("the patch manifest is malformed: {0}")]
    Malformed(String),
    /// The manifest was written by an incompatible version of hotpatch.
    #[error("the patch manifest has format {0:?}; this hotpatch reads format {MANIFEST_FORMAT}")]
    UnsupportedFormat(Option<u64>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            patch_id: "p1".into(),
            old_revision: Some("v1".into()),
            new_revision: Some("v2".into()),
            old_commit: None,
            new_commit: None,
            target_build_id: None,
            cflags: vec!["-O2".into()],
            file_cflags: [("src/a.c".to_string(), vec!["-O1".to_string()])].into(),
            flags: vec![],
            functions: vec![ManifestFunction {
                symbol: "scale".into(),
                target: SymbolRef::FileLocal {
                    name: "scale".into(),
                    file: "lib.c".into(),
                },
                action: FunctionAction::Replace,
                reason: "changed".into(),
                file: Some("lib.c".into()),
                preimage: Some(Preimage::of(&[0x55, 1, 2, 3, 4, 0xc3], vec![[1, 4]])),
                postimage: Some(Preimage::of(&[0x55, 1, 2, 3, 5, 0xc3], vec![[1, 4]])),
            }],
            bindings: vec![Binding {
                symbol: "hp.lib.c.count".into(),
                target: SymbolRef::FileLocal {
                    name: "count".into(),
                    file: "lib.c".into(),
                },
            }],
            new_data: vec![],
        }
    }

    #[test]
    fn preimages_ignore_masked_bytes_only() {
        let p = Preimage::of(&[0xe8, 1, 2, 3, 4, 0xc3], vec![[1, 4]]);
        assert_eq!(p.code, "e800000000c3");
        assert_eq!(p.first_difference(&[0xe8, 9, 9, 9, 9, 0xc3], 0), None);
        assert_eq!(p.first_difference(&[0xe9, 9, 9, 9, 9, 0xc3], 0), Some(0));
        assert_eq!(p.first_difference(&[0xe9, 9, 9, 9, 9, 0xc3], 5), None);
        assert_eq!(
            p.first_difference(&[0xe8, 9, 9, 9, 9, 0xc3, 0x90], 0),
            Some(6)
        );
        let huge = Preimage::of(&[1], vec![[u64::MAX, u64::MAX]]);
        assert_eq!(huge.first_difference(&[1], 0), None);
        let bad = Preimage {
            size: 1,
            code: "zz".into(),
            masked: vec![],
        };
        assert_eq!(bad.first_difference(&[1], 0), Some(1));
    }

    #[test]
    fn fingerprints_compare_exactly_with_each_other() {
        let p = Preimage::of(&[0xe8, 1, 2, 3, 4, 0xc3], vec![[1, 4]]);
        assert_eq!(p.first_difference_from(&p.clone()), None);
        // The same compile of the same code: masked bytes are zero in both.
        let same = Preimage::of(&[0xe8, 9, 9, 9, 9, 0xc3], vec![[1, 4]]);
        assert_eq!(p.first_difference_from(&same), None);
        let other_byte = Preimage::of(&[0xe8, 1, 2, 3, 4, 0xc2], vec![[1, 4]]);
        assert_eq!(p.first_difference_from(&other_byte), Some(5));
        // Equal bytes but another relocation site: not the same code.
        let other_mask = Preimage::of(&[0xe8, 0, 0, 0, 0, 0xc3], vec![[1, 2]]);
        assert_eq!(p.first_difference_from(&other_mask), Some(3));
        let longer = Preimage::of(&[0xe8, 1, 2, 3, 4, 0xc3, 0x90], vec![[1, 4]]);
        assert_eq!(p.first_difference_from(&longer), Some(6));
        let bad = Preimage {
            size: 1,
            code: "zz".into(),
            masked: vec![],
        };
        assert_eq!(p.first_difference_from(&bad), Some(0));
    }

    #[test]
    fn static_local_references_round_trip() {
        let mut m = sample();
        m.bindings.push(Binding {
            symbol: "hp.static:lib.c:count:n".into(),
            target: SymbolRef::StaticLocal {
                function: "count".into(),
                name: "n".into(),
                file: "lib.c".into(),
            },
        });
        let text = m.to_json();
        assert!(text.contains("\"kind\": \"static_local\""), "{text}");
        assert_eq!(Manifest::from_json(&text).unwrap(), m);
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = sample();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn other_format_versions_are_refused() {
        let text = sample().to_json().replace("\"format\": 1", "\"format\": 7");
        assert_eq!(
            Manifest::from_json(&text),
            Err(ManifestError::UnsupportedFormat(Some(7)))
        );
        assert!(matches!(
            Manifest::from_json("{"),
            Err(ManifestError::Malformed(_))
        ));
    }
}
