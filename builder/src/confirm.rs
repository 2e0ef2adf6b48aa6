//! Object-level confirmation: the old and new translation units of a changed file are compiled
//! with the original flags and `-ffunction-sections`, and each function's code is compared —
//! bytes with relocation sites zeroed, and relocations by what they refer to (symbol name,
//! string contents), never by offset. The functions to patch are those whose code changed, plus
//! the callers of a changed clone (`.constprop`, `.isra`, `.part`: the binary calls the clone
//! directly) and the parent of a changed `.cold` part (only ever entered from its parent).
//!
//! The comparison itself works on [`Functions`], which [`crate::unsectioned`] also derives from
//! the objects compiled as the build compiled them, so that those compiles serve both the
//! pre-images and the confirmation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use object::elf;
use object::read::{Object as _, ObjectSection as _, ObjectSymbol as _};
use object::{RelocationFlags, RelocationTarget, SectionIndex, SymbolKind};

/// The compiled code of one function, in a form that compares equal when only addresses moved:
/// its bytes with every relocation site zeroed, and what each relocation refers to, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Code {
    pub(crate) bytes: Vec<u8>,
    pub(crate) relocations: Vec<(elf::RelocationType, String)>,
}

/// Every function of one object: its code, and which functions each one refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Functions {
    /// Stable name → code.
    pub(crate) code: BTreeMap<String, Code>,
    /// Symbol → functions whose code refers to it.
    referrers: BTreeMap<String, BTreeSet<String>>,
    /// Stable name (`f.constprop.#`) → the name in this object (`f.constprop.0`).
    pub(crate) original: BTreeMap<String, String>,
}

impl Functions {
    /// Adds the code of the function `name` (stable), noting what it refers to.
    pub(crate) fn insert(&mut self, name: &str, code: Code) {
        for (_, target) in &code.relocations {
            if let Some(symbol) = target.strip_prefix("sym:") {
                self.referrers
                    .entry(symbol.to_string())
                    .or_default()
                    .insert(name.to_string());
            }
        }
        self.code.insert(name.to_string(), code);
    }
}

/// The confirmed patch set of one file: source function name → why it is patched.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// Functions whose running copies must be replaced, with the reason.
    pub patch: BTreeMap<String, String>,
    /// Functions the old object defines under their own name (a `static` function missing here
    /// was inlined into all its callers, so the binary has no copy of it to replace).
    pub old_functions: BTreeSet<String>,
}

/// The source function a compiler symbol belongs to: `f.constprop.0`, `f.isra.1`, `f.part.0`,
/// `f.cold`, `f.lto_priv.0` and combinations all belong to `f`.
pub fn base_name(symbol: &str) -> &str {
    symbol.split('.').next().unwrap_or(symbol)
}

/// Whether `symbol` is a compiler-made variant (clone, cold part, LTO rename) of a function.
fn is_variant(symbol: &str) -> bool {
    symbol.contains('.')
}

/// `f.constprop.3` → `f.constprop.#`: clone numbers are not stable between revisions.
pub(crate) fn stable_name(symbol: &str) -> String {
    symbol
        .split('.')
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                "#"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Compares the old and new objects of one file, compiled with one section per function.
pub fn confirm(old: &[u8], new: &[u8]) -> Result<Confirmation, String> {
    Ok(compare(&functions(old)?, &functions(new)?))
}

/// Compares the functions of the old and new objects of one file.
pub(crate) fn compare(old: &Functions, new: &Functions) -> Confirmation {
    let mut out = Confirmation {
        old_functions: old
            .code
            .keys()
            .filter(|n| !is_variant(n))
            .cloned()
            .collect(),
        ..Confirmation::default()
    };
    let mut names: Vec<&String> = old.code.keys().chain(new.code.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let changed = match (old.code.get(name), new.code.get(name)) {
            (Some(a), Some(b)) => a != b,
            (None, None) => false,
            _ => true,
        };
        if !changed {
            continue;
        }
        let base = base_name(name);
        let shown = old.original.get(name).unwrap_or(name);
        if !is_variant(name) {
            out.patch
                .entry(name.clone())
                .or_insert_with(|| "its code changed".to_string());
        } else if name.ends_with(".cold") || name.contains(".cold.") {
            out.patch
                .entry(base.to_string())
                .or_insert_with(|| format!("its cold part `{shown}` changed"));
        }
        if is_variant(name) {
            // The binary calls a clone directly: patch every function that refers to it.
            let mut pending = vec![name.clone()];
            let mut seen = vec![name.clone()];
            while let Some(symbol) = pending.pop() {
                for referrer in old.referrers.get(&symbol).into_iter().flatten() {
                    if seen.contains(referrer) {
                        continue;
                    }
                    seen.push(referrer.clone());
                    if is_variant(referrer) {
                        pending.push(referrer.clone());
                    } else {
                        out.patch
                            .entry(referrer.clone())
                            .or_insert_with(|| format!("calls the changed clone `{shown}`"));
                    }
                }
            }
        }
    }
    out
}

/// The functions of an object compiled with `-ffunction-sections -fdata-sections`.
pub(crate) fn functions(bytes: &[u8]) -> Result<Functions, String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let mut out = Functions::default();
    // One function per section with -ffunction-sections: section → its function's name.
    let mut by_section: HashMap<SectionIndex, String> = HashMap::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text {
            continue;
        }
        let (Ok(name), Some(section)) = (symbol.name(), symbol.section_index()) else {
            continue;
        };
        let stable = by_section
            .entry(section)
            .or_insert_with(|| stable_name(name));
        out.original.insert(stable.clone(), name.to_string());
    }
    for (index, name) in &by_section {
        let section = file.section_by_index(*index).map_err(|e| e.to_string())?;
        let mut bytes = section.data().map_err(|e| e.to_string())?.to_vec();
        let mut relocations = Vec::new();
        // In offset order: the assembler writes the relocations of relaxed jumps out of order.
        let mut sorted: Vec<_> = section.relocations().collect();
        sorted.sort_by_key(|(offset, _)| *offset);
        for (offset, relocation) in sorted {
            let RelocationFlags::Elf { r_type } = relocation.flags() else {
                continue;
            };
            let width = if is_wide(r_type) { 8 } else { 4 };
            for b in bytes
                .iter_mut()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(width)
            {
                *b = 0;
            }
            let target = describe(
                &file,
                &by_section,
                r_type,
                relocation.target(),
                relocation.addend(),
            );
            relocations.push((r_type, target));
        }
        out.insert(name, Code { bytes, relocations });
    }
    Ok(out)
}

/// What a relocation refers to, independent of where things were placed: a function or a
/// global by name; a string or constant of a mergeable section by its contents; anything else
/// local by its section's name and offset. References to local symbols (`.LC0`) and to section
/// symbols are resolved to what they point at, since their names and offsets are not stable.
fn describe(
    file: &object::File<'_>,
    by_section: &HashMap<SectionIndex, String>,
    r_type: elf::RelocationType,
    target: RelocationTarget,
    addend: i64,
) -> String {
    let RelocationTarget::Symbol(index) = target else {
        return "none".to_string();
    };
    let Ok(symbol) = file.symbol_by_index(index) else {
        return "bad".to_string();
    };
    let section_index = symbol.section_index();
    let local_data = symbol.is_local() && symbol.kind() != SymbolKind::Text;
    let (Some(section_index), true) = (section_index, local_data) else {
        return format!("sym:{}", stable_name(symbol.name().unwrap_or("")));
    };
    if let Some(function) = by_section.get(&section_index) {
        return format!("sym:{function}");
    }
    let Ok(section) = file.section_by_index(section_index) else {
        return "section:?".to_string();
    };
    let name = stable_name(section.name().unwrap_or("?"));
    let offset = i64::try_from(symbol.address())
        .unwrap_or(0)
        .saturating_add(addend);
    merged_datum(file, section_index, r_type, offset).unwrap_or_else(|| format!("{name}{offset:+}"))
}

/// The description of a reference to `offset` (the symbol's address plus the addend) in
/// `section` when it is mergeable (string literals and constants, which the linker merges by
/// contents): its kind and the datum itself, never where it lies nor the section's name
/// (`-fdata-sections` names a string section after the function that first used a literal,
/// `.rodata.FUNCTION.str1.1`, and a constant section holds the whole file's constants).
/// `None`: not a mergeable section.
pub(crate) fn merged_datum(
    file: &object::File<'_>,
    index: SectionIndex,
    r_type: elf::RelocationType,
    offset: i64,
) -> Option<String> {
    let section = file.section_by_index(index).ok()?;
    let object::SectionFlags::Elf { sh_flags, .. } = section.flags() else {
        return None;
    };
    let sh_flags = sh_flags.0;
    let entsize = section_entsize(file, index);
    if sh_flags & elf::SHF_MERGE.0 == 0 {
        return None;
    }
    let strings = sh_flags & elf::SHF_STRINGS.0 != 0;
    // PC-relative references carry -4: the datum is at offset + 4.
    let start = if is_pc_relative(r_type) {
        offset.saturating_add(4)
    } else {
        offset
    };
    let data = section.data().unwrap_or(&[]);
    let kind = format!(
        "{}{entsize}.{}",
        if strings { "str" } else { "cst" },
        section.align()
    );
    let Some(rest) = usize::try_from(start).ok().and_then(|s| data.get(s..)) else {
        return Some(format!("{kind}{start:+}"));
    };
    let datum: Vec<u8> = if strings {
        rest.iter().take_while(|&&b| b != 0).copied().collect()
    } else {
        // One constant: as wide as the section's entries (16 bytes when it does not say).
        let width = if entsize == 0 { 16 } else { entsize };
        rest.iter()
            .take(usize::try_from(width).unwrap_or(16))
            .copied()
            .collect()
    };
    Some(format!("{kind}:{datum:02x?}"))
}

/// The `sh_entsize` of a section (the width of a mergeable section's entries; 0 when unknown).
fn section_entsize(file: &object::File<'_>, index: SectionIndex) -> u64 {
    use object::read::elf::SectionHeader as _;
    let object::File::Elf64(elf) = file else {
        return 0;
    };
    elf.section_by_index(index)
        .map(|s| s.elf_section_header().sh_entsize(elf.endian()))
        .unwrap_or(0)
}

pub(crate) fn is_wide(r_type: elf::RelocationType) -> bool {
    matches!(
        r_type,
        elf::R_X86_64_64
            | elf::R_X86_64_PC64
            | elf::R_X86_64_DTPOFF64
            | elf::R_X86_64_TPOFF64
            | elf::R_X86_64_GOTOFF64
            | elf::R_X86_64_GOTPC64
            | elf::R_X86_64_GOTPCREL64
            | elf::R_X86_64_PLTOFF64
    )
}

pub(crate) fn is_pc_relative(r_type: elf::RelocationType) -> bool {
    matches!(
        r_type,
        elf::R_X86_64_PC32
            | elf::R_X86_64_PLT32
            | elf::R_X86_64_GOTPCREL
            | elf::R_X86_64_GOTPCRELX
            | elf::R_X86_64_REX_GOTPCRELX
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names() {
        assert_eq!(base_name("f.constprop.0"), "f");
        assert_eq!(base_name("f.cold"), "f");
        assert_eq!(base_name("f"), "f");
        assert_eq!(stable_name("f.isra.12"), "f.isra.#");
        assert!(is_variant("f.part.0") && !is_variant("f"));
    }

    fn compile(source: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.c"), source).unwrap();
        let status = std::process::Command::new("gcc")
            .current_dir(dir.path())
            .args([
                "-O2",
                "-g",
                "-ffunction-sections",
                "-fdata-sections",
                "-c",
                "x.c",
                "-o",
                "x.o",
            ])
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(dir.path().join("x.o")).unwrap()
    }

    #[test]
    fn changed_code_inlined_copies_and_clone_callers_are_confirmed() {
        let v1 = r#"
static int scale(int x) { return x * 2; }
static __attribute__((noinline)) int mix(int x, int k)
{ int r = 0; for (int i = 0; i < k; i++) r += (x ^ i) * k; return r; }
static __attribute__((noinline, noclone)) int kept(int x) { return x + 1; }
int a(int x) { return scale(x) + 1; }
int b(int x) { return mix(x, 4); }
int c(int x) { return kept(x) + 3; }
int d(void) { return 7; }
"#;
        let v2 = v1
            .replace("return x * 2;", "return x * 3;")
            .replace("(x ^ i) * k", "(x + i) * k")
            .replace("return x + 1;", "return x + 2;")
            .replace(
                "int d(void) { return 7; }",
                "int d(void)\n{\n    return 7;\n}",
            );
        let c = confirm(&compile(v1), &compile(&v2)).unwrap();
        let patched: Vec<&str> = c.patch.keys().map(String::as_str).collect();
        assert!(patched.contains(&"a"), "{c:?}");
        assert!(patched.contains(&"b"), "{c:?}");
        assert!(patched.contains(&"kept"), "{c:?}");
        assert!(!patched.contains(&"c"), "{c:?}");
        assert!(!patched.contains(&"d"), "line-only change: {c:?}");
        assert!(!c.old_functions.contains("scale"), "{c:?}");
    }

    #[test]
    fn string_literals_compare_by_contents() {
        let v1 =
            "const char *f(void) { return \"abc\"; }\nconst char *g(void) { return \"xyz\"; }\n";
        let v2 =
            "const char *f(void) { return \"abd\"; }\nconst char *g(void) { return \"xyz\"; }\n";
        let c = confirm(&compile(v1), &compile(v2)).unwrap();
        assert_eq!(c.patch.keys().collect::<Vec<_>>(), ["f"]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(confirm(b"x", b"y").is_err());
    }
}
