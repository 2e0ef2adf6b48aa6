//! Symbol tables of one module (executable or shared object) read from its file: `.symtab` with
//! local symbols grouped by the preceding `STT_FILE` symbol, `.dynsym` with symbol versions and
//! visibility, the GOT slots and copy relocations of its dynamic relocations, what its dynamic
//! section says about lookups (`DT_SYMBOLIC`, where `DT_DEBUG` is) and its `PT_LOAD` segments (to
//! compute the load bias).

use std::collections::HashMap;

use object::elf;
use object::read::elf::{Dyn as _, ElfFile64, ProgramHeader as _};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SymbolIndex, SymbolSection};

/// A defined symbol of a module, at its link-time (unbiased) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModSymbol {
    /// Name, without any `@VERSION` suffix.
    pub(crate) name: String,
    /// Link-time address (`st_value`).
    pub(crate) value: u64,
    /// `st_size`.
    pub(crate) size: u64,
    /// `STT_*` type.
    pub(crate) st_type: elf::SymbolType,
    /// Binding is `STB_WEAK`.
    pub(crate) weak: bool,
    /// A non-default symbol version (`name@VER`, not `name@@VER`) of `.dynsym`.
    pub(crate) hidden_version: bool,
    /// The version name of a `.dynsym` definition (`GLIBC_2.14`), if it has one.
    pub(crate) version: Option<String>,
    /// `STV_*` visibility.
    pub(crate) visibility: elf::SymbolVisibility,
}

impl ModSymbol {
    /// A function (or IFUNC resolver).
    pub(crate) fn is_function(&self) -> bool {
        self.st_type == elf::STT_FUNC || self.st_type == elf::STT_GNU_IFUNC
    }
}

/// The local symbols of one source file (the symbols after one `STT_FILE` symbol).
#[derive(Debug, Clone, Default)]
pub(crate) struct FileGroup {
    /// The `STT_FILE` name, as the compiler recorded it (often the path given to gcc).
    pub(crate) file: String,
    /// Local symbols by name.
    pub(crate) locals: HashMap<String, Vec<ModSymbol>>,
}

/// Everything the applier needs from one module's file.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModuleSymbols {
    /// The file has a `.symtab` (is not stripped).
    pub(crate) has_symtab: bool,
    /// Defined global and weak symbols of `.symtab`.
    pub(crate) symtab_globals: HashMap<String, Vec<ModSymbol>>,
    /// Defined global and weak symbols of `.dynsym`.
    pub(crate) dynsym: HashMap<String, Vec<ModSymbol>>,
    /// Local symbols of `.symtab` grouped by source file, in table order.
    pub(crate) files: Vec<FileGroup>,
    /// GOT slots (link-time addresses) filled by `JUMP_SLOT`/`GLOB_DAT` relocations, by symbol.
    pub(crate) got_slots: HashMap<String, Vec<u64>>,
    /// GOT slots filled by `IRELATIVE` relocations, by the link-time address of their resolver:
    /// how a library's own calls to its IFUNCs (glibc's `strlen`, `memcpy`...) were resolved.
    pub(crate) irelative_slots: HashMap<u64, Vec<u64>>,
    /// Link-time address ranges of the PLT sections (a GOT slot pointing here is unresolved).
    pub(crate) plt_ranges: Vec<(u64, u64)>,
    /// `PT_LOAD` segments as (file offset, virtual address).
    pub(crate) load_segments: Vec<(u64, u64)>,
    /// The GNU build id (`.note.gnu.build-id`) as lowercase hex, if the module has one.
    pub(crate) build_id: Option<String>,
    /// The `PT_TLS` segment as (virtual address, memory size, alignment), if any.
    pub(crate) tls_segment: Option<(u64, u64, u64)>,
    /// Link-time address of the `PT_DYNAMIC` segment (the dynamic section), if any.
    pub(crate) dynamic_address: Option<u64>,
    /// `DT_SYMBOLIC` or `DF_SYMBOLIC` (linked with `-Bsymbolic`): the module's own definitions
    /// come first for its own references.
    pub(crate) symbolic: bool,
    /// The version each undefined `.dynsym` symbol asks for (`memcpy` → `GLIBC_2.14`): what the
    /// module was linked against.
    pub(crate) needed_versions: HashMap<String, String>,
    /// Symbols with an `R_X86_64_COPY` relocation: library variables copied into this
    /// executable, which every module then uses.
    pub(crate) copy_relocations: Vec<String>,
    /// `DT_NEEDED`: the libraries the module was linked against, as named there.
    pub(crate) needed: Vec<String>,
    /// `DT_SONAME`, if it has one.
    pub(crate) soname: Option<String>,
    /// `PT_INTERP`: the dynamic linker an executable asks for.
    pub(crate) interpreter: Option<String>,
    /// GOT slots filled by `R_X86_64_DTPMOD64` relocations against the module's own TLS block
    /// (local-dynamic, or general-dynamic for a symbol it defines): they hold its TLS module id.
    pub(crate) tls_module_slots: Vec<u64>,
}

/// Parses the symbol information of an ELF64 module. Errors are descriptions for messages.
pub(crate) fn read_module_symbols(bytes: &[u8]) -> Result<ModuleSymbols, String> {
    let file = ElfFile64::<Endianness>::parse(bytes).map_err(|e| e.to_string())?;
    let endian = file.endian();
    let mut out = ModuleSymbols {
        build_id: file
            .build_id()
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
        ..ModuleSymbols::default()
    };

    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_LOAD {
            out.load_segments
                .push((ph.p_offset(endian), ph.p_vaddr(endian)));
        }
        if ph.p_type(endian) == elf::PT_TLS {
            out.tls_segment = Some((ph.p_vaddr(endian), ph.p_memsz(endian), ph.p_align(endian)));
        }
        if ph.p_type(endian) == elf::PT_DYNAMIC {
            out.dynamic_address = Some(ph.p_vaddr(endian));
        }
        if let Ok(Some(path)) = ph.interpreter(endian, bytes) {
            out.interpreter = Some(String::from_utf8_lossy(path).into_owned());
        }
        if let Ok(Some(entries)) = ph.dynamic(endian, bytes) {
            for entry in entries {
                let (tag, value) = (entry.d_tag(endian), entry.d_val(endian));
                out.symbolic |= tag == elf::DT_SYMBOLIC
                    || (tag == elf::DT_FLAGS && value & elf::DF_SYMBOLIC.0 != 0);
            }
        }
    }

    read_dependencies(&file, bytes, &mut out);

    let mut current: Option<FileGroup> = None;
    for symbol in file.symbols() {
        out.has_symtab = true;
        let object::SymbolFlags::Elf { st_info, st_other } = symbol.flags() else {
            continue;
        };
        let st_type = st_info.st_type();
        let binding = st_info.st_bind();
        let Ok(raw_name) = symbol.name() else {
            continue;
        };
        if st_type == elf::STT_FILE {
            if let Some(group) = current.take() {
                out.files.push(group);
            }
            current = Some(FileGroup {
                file: raw_name.to_string(),
                locals: HashMap::new(),
            });
            continue;
        }
        if !matches!(
            symbol.section(),
            SymbolSection::Section(_) | SymbolSection::Absolute
        ) || st_type == elf::STT_SECTION
            || raw_name.is_empty()
        {
            continue;
        }
        let sym = ModSymbol {
            name: strip_version(raw_name).to_string(),
            value: symbol.address(),
            size: symbol.size(),
            st_type,
            weak: binding == elf::STB_WEAK,
            hidden_version: false,
            version: None,
            visibility: st_other.visibility(),
        };
        if binding == elf::STB_LOCAL {
            let group = current.get_or_insert_with(FileGroup::default);
            group.locals.entry(sym.name.clone()).or_default().push(sym);
        } else {
            out.symtab_globals
                .entry(sym.name.clone())
                .or_default()
                .push(sym);
        }
    }
    if let Some(group) = current.take() {
        out.files.push(group);
    }

    let versions = file
        .elf_section_table()
        .versions(endian, bytes)
        .ok()
        .flatten();
    for symbol in file.dynamic_symbols() {
        let object::SymbolFlags::Elf { st_info, st_other } = symbol.flags() else {
            continue;
        };
        let binding = st_info.st_bind();
        let Ok(name) = symbol.name() else { continue };
        let index = versions
            .as_ref()
            .map(|v| v.version_index(endian, symbol.index()));
        let version = versions
            .as_ref()
            .zip(index)
            .and_then(|(v, index)| v.version(index.index()).ok().flatten())
            .map(|v| String::from_utf8_lossy(v.name()).into_owned());
        if symbol.is_undefined() {
            if let Some(version) = version {
                out.needed_versions.insert(name.to_string(), version);
            }
            continue;
        }
        if binding == elf::STB_LOCAL {
            continue;
        }
        let sym = ModSymbol {
            name: name.to_string(),
            value: symbol.address(),
            size: symbol.size(),
            st_type: st_info.st_type(),
            weak: binding == elf::STB_WEAK,
            hidden_version: index.is_some_and(|i| i.is_hidden()),
            version,
            visibility: st_other.visibility(),
        };
        out.dynsym.entry(sym.name.clone()).or_default().push(sym);
    }

    if let Some(relocations) = file.dynamic_relocations() {
        for (offset, reloc) in relocations {
            let object::RelocationFlags::Elf { r_type } = reloc.flags() else {
                continue;
            };
            if r_type == elf::R_X86_64_IRELATIVE {
                // The addend is the resolver's link-time address; the slot holds what it chose.
                let resolver = reloc.addend() as u64;
                out.irelative_slots
                    .entry(resolver)
                    .or_default()
                    .push(offset);
                continue;
            }
            if r_type == elf::R_X86_64_DTPMOD64 && defines_own(&file, reloc.target()) {
                out.tls_module_slots.push(offset);
                continue;
            }
            let object::RelocationTarget::Symbol(index) = reloc.target() else {
                continue;
            };
            let Some(name) = dynamic_symbol_name(&file, index) else {
                continue;
            };
            if r_type == elf::R_X86_64_COPY {
                out.copy_relocations.push(name);
            } else if r_type == elf::R_X86_64_JUMP_SLOT || r_type == elf::R_X86_64_GLOB_DAT {
                out.got_slots.entry(name).or_default().push(offset);
            }
        }
    }

    for section in file.sections() {
        if let Ok(name) = section.name() {
            if name == ".plt" || name == ".plt.sec" || name == ".plt.got" {
                let start = section.address();
                out.plt_ranges
                    .push((start, start.saturating_add(section.size())));
            }
        }
    }
    Ok(out)
}

/// Fills `needed` and `soname` from the dynamic section and its string table.
fn read_dependencies(file: &ElfFile64<Endianness>, bytes: &[u8], out: &mut ModuleSymbols) {
    let endian = file.endian();
    let sections = file.elf_section_table();
    let Ok(Some((entries, link))) = sections.dynamic(endian, bytes) else {
        return;
    };
    let Ok(strings) = sections.strings(endian, bytes, link) else {
        return;
    };
    for entry in entries {
        let tag = entry.d_tag(endian);
        let Ok(offset) = u32::try_from(entry.d_val(endian)) else {
            continue;
        };
        let Ok(name) = strings.get(offset) else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if tag == elf::DT_NEEDED {
            out.needed.push(name);
        } else if tag == elf::DT_SONAME {
            out.soname = Some(name);
        }
    }
}

/// Whether a dynamic relocation's target is the module itself: no symbol (the local-dynamic
/// model), or a symbol the module defines.
fn defines_own(file: &ElfFile64<Endianness>, target: object::RelocationTarget) -> bool {
    match target {
        object::RelocationTarget::Absolute => true,
        object::RelocationTarget::Symbol(index) => file
            .dynamic_symbol_table()
            .and_then(|t| object::ObjectSymbolTable::symbol_by_index(&t, index).ok())
            .is_some_and(|s| !s.is_undefined()),
        _ => false,
    }
}

fn dynamic_symbol_name(file: &ElfFile64<Endianness>, index: SymbolIndex) -> Option<String> {
    let table = file.dynamic_symbol_table()?;
    let symbol = object::ObjectSymbolTable::symbol_by_index(&table, index).ok()?;
    symbol.name().ok().map(str::to_string)
}

/// `printf@GLIBC_2.2.5` → `printf` (binutils writes versions into `.symtab` names).
fn strip_version(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// Whether the `STT_FILE` name `recorded` denotes the source path `wanted`: equal, or one is a
/// suffix of the other at a `/` boundary (so `lib.c` matches `src/lib.c` and `/build/src/lib.c`).
pub(crate) fn file_matches(recorded: &str, wanted: &str) -> bool {
    fn suffix_at_slash(long: &str, short: &str) -> bool {
        long.len() > short.len()
            && long.ends_with(short)
            && long.as_bytes().get(long.len() - short.len() - 1) == Some(&b'/')
    }
    let recorded = recorded.strip_prefix("./").unwrap_or(recorded);
    let wanted = wanted.strip_prefix("./").unwrap_or(wanted);
    !wanted.is_empty()
        && (recorded == wanted
            || suffix_at_slash(recorded, wanted)
            || suffix_at_slash(wanted, recorded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_match_at_slash_boundaries() {
        assert!(file_matches("lib.c", "lib.c"));
        assert!(file_matches("lib.c", "src/lib.c"));
        assert!(file_matches("/tmp/build/src/lib.c", "src/lib.c"));
        assert!(file_matches("./lib.c", "lib.c"));
        assert!(!file_matches("mylib.c", "lib.c"));
        assert!(!file_matches("lib.c", "ib.c"));
        assert!(!file_matches("a/lib.c", "b/lib.c"));
        assert!(!file_matches("", ""));
    }

    #[test]
    fn versions_are_stripped() {
        assert_eq!(strip_version("printf@GLIBC_2.2.5"), "printf");
        assert_eq!(strip_version("main"), "main");
    }
}
