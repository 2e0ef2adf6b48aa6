//! DWARF look-ups the symbol tables cannot answer: where a `static` local variable of a function
//! lives (a `DW_TAG_variable` inside the function's `DW_TAG_subprogram`, located by `DW_OP_addr`).

use std::borrow::Cow;

use gimli::{EndianSlice, LittleEndian};
use object::{Object, ObjectSection, ObjectSymbol};

use crate::symbols::file_matches;

/// The reader type of the DWARF sections of a module read into memory.
pub(crate) type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// What the debug information says about a static local.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DwarfAnswer {
    /// The module has no `.debug_info`.
    NoDebugInfo,
    /// Link-time addresses of every matching variable (deduplicated; empty: none found).
    Addresses(Vec<u64>),
}

/// Finds the link-time addresses of the static local `name` of `function` defined in a
/// compilation unit whose name matches `file`. Never fails: unreadable DWARF counts as absent.
pub(crate) fn static_local_addresses(
    elf: &[u8],
    file: &str,
    function: &str,
    name: &str,
) -> DwarfAnswer {
    with_dwarf(elf, |dwarf| {
        let mut found = Vec::new();
        let mut units = dwarf.units();
        while let Ok(Some(header)) = units.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let _ = scan_unit(dwarf, &unit, file, function, name, &mut found);
        }
        found.sort_unstable();
        found.dedup();
        DwarfAnswer::Addresses(found)
    })
    .unwrap_or(DwarfAnswer::NoDebugInfo)
}

/// One compilation unit of a module's debug information.
pub(crate) struct CompileUnit {
    /// Its source file: `DW_AT_name` joined to `DW_AT_comp_dir`, normalised.
    pub path: String,
    /// Its `DW_AT_producer`: the compiler and, for gcc, the code-generation switches.
    pub producer: Option<String>,
}

/// Every compilation unit of the ELF file `elf`; `None` without debug information.
pub(crate) fn compile_units(elf: &[u8]) -> Option<Vec<CompileUnit>> {
    with_dwarf(elf, |dwarf| {
        let mut found = Vec::new();
        let mut units = dwarf.units();
        while let Ok(Some(header)) = units.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let text = |attr| {
                let mut entries = unit.entries();
                let root = entries.next_dfs().ok()??;
                let value = root.attr_value(attr)?;
                let s = dwarf.attr_string(&unit, value).ok()?;
                Some(String::from_utf8_lossy(s.slice()).into_owned())
            };
            let Some(path) = unit_path(&unit) else {
                continue;
            };
            found.push(CompileUnit {
                path,
                producer: text(gimli::DW_AT_producer),
            });
        }
        found
    })
}

/// The `DW_AT_producer` of every compilation unit of `file` (its path matches `file` at a
/// `/`): the compiler and, for gcc, the code-generation switches it was run with. Empty without
/// debug information.
pub(crate) fn producers(elf: &[u8], file: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for unit in compile_units(elf).unwrap_or_default() {
        if let Some(producer) = unit.producer.filter(|_| file_matches(&unit.path, file)) {
            if !found.contains(&producer) {
                found.push(producer);
            }
        }
    }
    found
}

/// The source file of a unit: its `DW_AT_name` below its `DW_AT_comp_dir`, normalised.
pub(crate) fn unit_path(unit: &gimli::Unit<Slice<'_>>) -> Option<String> {
    let name = String::from_utf8_lossy(unit.name?.slice()).into_owned();
    let path = match unit.comp_dir {
        Some(dir) if !name.starts_with('/') => {
            format!("{}/{name}", String::from_utf8_lossy(dir.slice()))
        }
        _ => name,
    };
    Some(normalize(&path))
}

/// `path` without `.` and `..` components.
pub(crate) fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Runs `read` over the DWARF of the ELF file `elf`; `None` when it has no `.debug_info` (or is
/// not ELF, or its sections cannot be loaded).
pub(crate) fn with_dwarf<R>(
    elf: &[u8],
    read: impl FnOnce(&gimli::Dwarf<Slice<'_>>) -> R,
) -> Option<R> {
    let object = object::File::parse(elf).ok()?;
    object.section_by_name(".debug_info")?;
    let relocatable = object.kind() == object::ObjectKind::Relocatable;
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        let Some(section) = object.section_by_name(id.name()) else {
            return Ok(Cow::Borrowed(&[]));
        };
        let data = section.uncompressed_data().unwrap_or(Cow::Borrowed(&[]));
        Ok(if relocatable {
            Cow::Owned(relocated(&object, &section, data.into_owned()))
        } else {
            data
        })
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    Some(read(&dwarf))
}

/// `data` of a debug section of a relocatable object with its absolute relocations applied: a
/// compiler's object refers to strings, abbreviations and code through them (their fields hold
/// zero until linked). Relocations of other kinds, or out of bounds, are left alone.
fn relocated(
    object: &object::File<'_>,
    section: &object::Section<'_, '_>,
    mut data: Vec<u8>,
) -> Vec<u8> {
    for (offset, relocation) in section.relocations() {
        if relocation.kind() != object::RelocationKind::Absolute {
            continue;
        }
        let base = match relocation.target() {
            object::RelocationTarget::Symbol(index) => object
                .symbol_by_index(index)
                .map(|s| s.address())
                .unwrap_or(0),
            object::RelocationTarget::Section(_) | object::RelocationTarget::Absolute => 0,
            _ => continue,
        };
        let value = base.wrapping_add_signed(relocation.addend());
        let Ok(at) = usize::try_from(offset) else {
            continue;
        };
        let bytes = value.to_le_bytes();
        let width = usize::from(relocation.size() / 8);
        if let Some(field) = data
            .get_mut(at..at.saturating_add(width))
            .filter(|f| f.len() == width && width <= 8)
        {
            field.copy_from_slice(&bytes[..width]);
        }
    }
    data
}

fn scan_unit(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    file: &str,
    function: &str,
    name: &str,
    found: &mut Vec<u64>,
) -> gimli::Result<()> {
    let mut entries = unit.entries();
    // Subprograms enclosing the current entry: (depth, is the wanted function).
    let mut enclosing: Vec<(isize, bool)> = Vec::new();
    while let Some(entry) = entries.next_dfs()? {
        let depth = entry.depth();
        while enclosing.last().is_some_and(|&(d, _)| d >= depth) {
            enclosing.pop();
        }
        let entry_name = || {
            entry
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(unit, v).ok())
                .map(|s| String::from_utf8_lossy(s.slice()).into_owned())
        };
        match entry.tag() {
            gimli::DW_TAG_compile_unit if !entry_name().is_some_and(|n| file_matches(&n, file)) => {
                return Ok(());
            }
            gimli::DW_TAG_subprogram => {
                enclosing.push((depth, entry_name().as_deref() == Some(function)));
            }
            gimli::DW_TAG_variable => {
                let inside = enclosing.last().is_some_and(|&(_, wanted)| wanted);
                if inside && entry_name().as_deref() == Some(name) {
                    if let Some(address) = location_address(unit, entry) {
                        found.push(address);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The address of a location expression that is exactly `DW_OP_addr A`.
fn location_address(
    unit: &gimli::Unit<Slice<'_>>,
    entry: &gimli::DebuggingInformationEntry<Slice<'_>>,
) -> Option<u64> {
    let expression = entry.attr_value(gimli::DW_AT_location)?.exprloc_value()?;
    let mut ops = expression.operations(unit.encoding());
    match (ops.next().ok()?, ops.next().ok()?) {
        (Some(gimli::Operation::Address { address }), None) => Some(address),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_static_local_by_function_in_a_gcc_object() {
        let (bytes, symbol) = crate::test_support::gcc_shared_object(
            "int f(void) { static int n; return ++n; }\nint g(void) { static int n = 5; return n--; }\n",
        );
        let f = static_local_addresses(&bytes, "lib.c", "f", "n");
        let g = static_local_addresses(&bytes, "lib.c", "g", "n");
        let both = [symbol("n.0"), symbol("n.1")];
        let (DwarfAnswer::Addresses(f), DwarfAnswer::Addresses(g)) = (f, g) else {
            panic!("no debug info read");
        };
        assert_eq!(f.len(), 1);
        assert_eq!(g.len(), 1);
        assert_ne!(f, g);
        assert!(
            both.contains(&f[0]) && both.contains(&g[0]),
            "{f:?} {g:?} {both:?}"
        );
        assert_eq!(
            static_local_addresses(&bytes, "other.c", "f", "n"),
            DwarfAnswer::Addresses(vec![])
        );
    }

    #[test]
    fn producers_of_a_file_by_its_path_below_the_compile_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.c"), "int f(void) { return 1; }\n").unwrap();
        let out = dir.path().join("lib.so");
        let status = std::process::Command::new("gcc")
            .args([
                "-O1",
                "-g",
                "-fno-strict-aliasing",
                "-shared",
                "-fPIC",
                "-o",
            ])
            .arg(&out)
            .arg("src/lib.c")
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&out).unwrap();
        let found = producers(&bytes, "src/lib.c");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("GNU C") && found[0].contains("-O1 -fno-strict-aliasing"),
            "{found:?}"
        );
        assert!(producers(&bytes, "other/lib.c").is_empty());
        assert!(producers(b"garbage", "src/lib.c").is_empty());
    }

    #[test]
    fn garbage_and_objects_without_dwarf_are_no_debug_info() {
        assert_eq!(
            static_local_addresses(b"nope", "a.c", "f", "n"),
            DwarfAnswer::NoDebugInfo
        );
        let obj = object::write::Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let bytes = obj.write().unwrap();
        assert_eq!(
            static_local_addresses(&bytes, "a.c", "f", "n"),
            DwarfAnswer::NoDebugInfo
        );
    }
}
