//! Reading the patch object: an ELF64 x86-64 relocatable object (`gcc -c -fPIC`), its manifest,
//! sections, symbols and relocations, copied into owned tables the planner and linker use.

use object::elf;
use object::read::elf::{ElfFile64, SectionHeader as _};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, RelocationTarget, SymbolSection};

use crate::artifact::{Manifest, MANIFEST_SECTION};
use crate::error::ApplyError;

/// A parsed patch object, ready to be planned against a target.
#[derive(Debug, Clone)]
pub struct PatchObject {
    id_hash: String,
    manifest: Option<Manifest>,
    pub(crate) sections: Vec<ObjSection>,
    pub(crate) symbols: Vec<ObjSymbol>,
}

/// Where a section goes in the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionClass {
    /// Executable code (text zone).
    Text,
    /// Read-only data (text zone, after code and stubs).
    ReadOnly,
    /// Writable data (data zone).
    Data,
    /// Zero-initialised data (data zone, after data).
    Bss,
    /// Call frame information (`.eh_frame`): text zone, after read-only data, every such section
    /// back to back so the records form one sequence the unwinder reads.
    EhFrame,
    /// Not loaded (metadata, the manifest, non-alloc sections).
    Skip,
}

/// One section of the object.
#[derive(Debug, Clone)]
pub(crate) struct ObjSection {
    /// ELF section index.
    pub(crate) index: usize,
    /// Section name.
    pub(crate) name: String,
    /// Where it goes.
    pub(crate) class: SectionClass,
    /// Required alignment (at least 1).
    pub(crate) align: u64,
    /// Size in memory.
    pub(crate) size: u64,
    /// Contents (empty for bss).
    pub(crate) data: Vec<u8>,
    /// Relocations to apply to this section.
    pub(crate) relocations: Vec<ObjRelocation>,
}

/// One relocation of a section.
#[derive(Debug, Clone)]
pub(crate) struct ObjRelocation {
    /// Offset in the section.
    pub(crate) offset: u64,
    /// `R_X86_64_*` type.
    pub(crate) r_type: elf::RelocationType,
    /// Symbol index, or `None` for a relocation against no symbol (value 0).
    pub(crate) symbol: Option<usize>,
    /// Explicit addend.
    pub(crate) addend: i64,
}

/// Where a symbol of the object is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Undefined: resolved against the target.
    Undefined,
    /// Defined in the section with this index, at `value` bytes into it.
    Section(usize),
    /// An absolute value.
    Absolute,
    /// A common symbol (not supported; gcc defaults to -fno-common).
    Common,
    /// Anything else (no section).
    Other,
}

/// One symbol of the object.
#[derive(Debug, Clone)]
pub(crate) struct ObjSymbol {
    /// Name (empty for section symbols).
    pub(crate) name: String,
    /// `STT_*` type.
    pub(crate) st_type: elf::SymbolType,
    /// `STB_*` binding.
    pub(crate) binding: elf::SymbolBind,
    /// Where it is defined.
    pub(crate) placement: Placement,
    /// `st_value`: offset in its section for defined symbols.
    pub(crate) value: u64,
    /// `st_size`.
    pub(crate) size: u64,
}

impl ObjSymbol {
    /// A name for messages: section symbols have none, so say so.
    pub(crate) fn display_name(&self, sections: &[ObjSection]) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        match self.placement {
            Placement::Section(index) => sections
                .iter()
                .find(|s| s.index == index)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| format!("section #{index}")),
            _ => "<unnamed>".to_string(),
        }
    }
}

impl PatchObject {
    /// Parses a patch object. The bytes must be an ELF64 little-endian x86-64 `ET_REL` object;
    /// anything else, or a damaged file, gives an error saying what it is instead.
    pub fn parse(bytes: Vec<u8>) -> Result<PatchObject, ApplyError> {
        check_header(&bytes)?;
        let file = ElfFile64::<Endianness>::parse(bytes.as_slice())
            .map_err(|e| ApplyError::MalformedObject(e.to_string()))?;
        let manifest = read_manifest(&file)?;
        let mut sections = read_sections(&file)?;
        let symbols = read_symbols(&file)?;
        keep_usable_eh_frames(&mut sections, &symbols);
        Ok(PatchObject {
            id_hash: format!("{:016x}", fnv1a(&bytes)),
            manifest,
            sections,
            symbols,
        })
    }

    /// The manifest of the `.hotpatch.manifest` section, if the object carries one.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The patch id: the manifest's, or `plain-` and a hash of the object bytes.
    pub fn patch_id(&self) -> String {
        match &self.manifest {
            Some(m) => m.patch_id.clone(),
            None => format!("plain-{}", self.id_hash),
        }
    }

    /// Index of the defined symbol named `name` (globals preferred over locals).
    pub(crate) fn defined_symbol(&self, name: &str) -> Option<usize> {
        let mut found = None;
        for (i, s) in self.symbols.iter().enumerate() {
            if s.name == name && matches!(s.placement, Placement::Section(_)) {
                if s.binding != elf::STB_LOCAL {
                    return Some(i);
                }
                found.get_or_insert(i);
            }
        }
        found
    }

    /// The section with ELF index `index`.
    pub(crate) fn section(&self, index: usize) -> Option<&ObjSection> {
        self.sections.iter().find(|s| s.index == index)
    }
}

/// Checks magic, class, byte order, machine and type before handing the bytes to `object`.
fn check_header(bytes: &[u8]) -> Result<(), ApplyError> {
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ApplyError::NotElf);
    }
    let wrong = |found: String| Err(ApplyError::WrongObjectKind { found });
    match bytes.get(4).map(|&c| elf::FileClass(c)) {
        Some(elf::ELFCLASS64) => {}
        Some(elf::ELFCLASS32) => return wrong("a 32-bit ELF file".into()),
        _ => return wrong("an ELF file of unknown class".into()),
    }
    if bytes.get(5).map(|&d| elf::DataEncoding(d)) != Some(elf::ELFDATA2LSB) {
        return wrong("a big-endian ELF file".into());
    }
    let half = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let (Some(e_type), Some(e_machine)) = (half(16).map(elf::FileType), half(18).map(elf::Machine))
    else {
        return Err(ApplyError::MalformedObject("truncated ELF header".into()));
    };
    if e_machine != elf::EM_X86_64 {
        return wrong(format!(
            "an ELF file for machine {} ({})",
            e_machine.0,
            machine_name(e_machine)
        ));
    }
    if e_type != elf::ET_REL {
        let kind = match e_type {
            elf::ET_EXEC => "an executable (ET_EXEC)".to_string(),
            elf::ET_DYN => "a shared object or PIE executable (ET_DYN)".to_string(),
            elf::ET_CORE => "a core dump (ET_CORE)".to_string(),
            other => format!("an ELF file of type {}", other.0),
        };
        return wrong(kind);
    }
    Ok(())
}

fn machine_name(machine: elf::Machine) -> &'static str {
    match machine {
        elf::EM_386 => "i386",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390",
        _ => "not x86-64",
    }
}

fn read_manifest(file: &ElfFile64<Endianness>) -> Result<Option<Manifest>, ApplyError> {
    let Some(section) = file.section_by_name(MANIFEST_SECTION) else {
        return Ok(None);
    };
    let data = section
        .data()
        .map_err(|e| ApplyError::MalformedObject(e.to_string()))?;
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let text = std::str::from_utf8(&data[..end]).map_err(|e| {
        ApplyError::MalformedObject(format!("section {MANIFEST_SECTION} is not UTF-8: {e}"))
    })?;
    Ok(Some(Manifest::from_json(text)?))
}

fn classify(name: &str, sh_type: elf::SectionType, sh_flags: elf::SectionFlags) -> SectionClass {
    let has = |flag: elf::SectionFlags| sh_flags.0 & flag.0 != 0;
    let alloc = has(elf::SHF_ALLOC);
    let skipped = name == MANIFEST_SECTION
        || name.starts_with(".note")
        || name.starts_with(".init_array")
        || name.starts_with(".fini_array")
        || name.starts_with(".ctors")
        || name.starts_with(".dtors");
    if !alloc || skipped || sh_type == elf::SHT_GROUP {
        return SectionClass::Skip;
    }
    if name == ".eh_frame" {
        return SectionClass::EhFrame;
    }
    if has(elf::SHF_EXECINSTR) {
        SectionClass::Text
    } else if sh_type == elf::SHT_NOBITS {
        SectionClass::Bss
    } else if has(elf::SHF_WRITE) {
        SectionClass::Data
    } else {
        SectionClass::ReadOnly
    }
}

fn read_sections(file: &ElfFile64<Endianness>) -> Result<Vec<ObjSection>, ApplyError> {
    let endian = file.endian();
    let malformed = |e: object::Error| ApplyError::MalformedObject(e.to_string());
    let mut out = Vec::new();
    for section in file.sections() {
        let header = section.elf_section_header();
        let name = section.name().map_err(malformed)?.to_string();
        let sh_type = header.sh_type(endian);
        let class = classify(&name, sh_type, header.sh_flags(endian));
        if header.sh_flags(endian).0 & elf::SHF_TLS.0 != 0 && class != SectionClass::Skip {
            return Err(ApplyError::ThreadLocal(format!("section {name}")));
        }
        let data = if class == SectionClass::Bss || class == SectionClass::Skip {
            Vec::new()
        } else {
            section.data().map_err(malformed)?.to_vec()
        };
        let mut relocations = Vec::new();
        if class != SectionClass::Skip {
            for (offset, reloc) in section.relocations() {
                let object::RelocationFlags::Elf { r_type } = reloc.flags() else {
                    return Err(ApplyError::MalformedObject(format!(
                        "relocation in {name} is not an ELF relocation"
                    )));
                };
                let symbol = match reloc.target() {
                    RelocationTarget::Symbol(index) => Some(index.0),
                    _ => None,
                };
                relocations.push(ObjRelocation {
                    offset,
                    r_type,
                    symbol,
                    addend: reloc.addend(),
                });
            }
        }
        out.push(ObjSection {
            index: section.index().0,
            name,
            class,
            align: section.align().max(1),
            size: section.size(),
            data,
            relocations,
        });
    }
    Ok(out)
}

fn read_symbols(file: &ElfFile64<Endianness>) -> Result<Vec<ObjSymbol>, ApplyError> {
    let mut out = vec![ObjSymbol {
        name: String::new(),
        st_type: elf::STT_NOTYPE,
        binding: elf::STB_LOCAL,
        placement: Placement::Other,
        value: 0,
        size: 0,
    }];
    for symbol in file.symbols() {
        let index = symbol.index().0;
        let object::SymbolFlags::Elf { st_info, .. } = symbol.flags() else {
            continue;
        };
        let placement = match symbol.section() {
            SymbolSection::Undefined => Placement::Undefined,
            SymbolSection::Section(s) => Placement::Section(s.0),
            SymbolSection::Absolute => Placement::Absolute,
            SymbolSection::Common => Placement::Common,
            _ => Placement::Other,
        };
        let entry = ObjSymbol {
            name: symbol
                .name()
                .map_err(|e| ApplyError::MalformedObject(e.to_string()))?
                .into(),
            st_type: st_info.st_type(),
            binding: st_info.st_bind(),
            placement,
            value: symbol.address(),
            size: symbol.size(),
        };
        if index >= out.len() {
            out.resize(index + 1, out[0].clone());
        }
        out[index] = entry;
    }
    Ok(out)
}

/// Keeps an `.eh_frame` section loaded only when the unwinder can use it as it is: its records
/// up to a zero terminator, if any (gcc emits none in objects; a terminator in the middle of the
/// concatenated sections would hide the records after it), and relocations only of the kinds
/// CFI uses against the patch's own sections. Anything else (a personality routine in the
/// target, say) leaves the section out, as before: its code is then not unwindable.
fn keep_usable_eh_frames(sections: &mut [ObjSection], symbols: &[ObjSymbol]) {
    let code: Vec<usize> = sections
        .iter()
        .filter(|s| s.class == SectionClass::Text)
        .map(|s| s.index)
        .collect();
    for section in sections
        .iter_mut()
        .filter(|s| s.class == SectionClass::EhFrame)
    {
        let records = records_length(&section.data);
        let usable = records.is_some_and(|len| len > 0)
            && section.relocations.iter().all(|r| {
                matches!(
                    r.r_type,
                    elf::R_X86_64_PC32 | elf::R_X86_64_PC64 | elf::R_X86_64_64
                ) && r.symbol.and_then(|i| symbols.get(i)).is_some_and(
                    |s| matches!(s.placement, Placement::Section(i) if code.contains(&i)),
                )
            });
        match records {
            Some(len) if usable => {
                section.data.truncate(len);
                section.size = len as u64;
                section.relocations.retain(|r| r.offset < len as u64);
            }
            _ => {
                section.class = SectionClass::Skip;
                section.data.clear();
                section.relocations.clear();
            }
        }
    }
}

/// Length of the CIE/FDE records at the start of `data`: up to a zero terminator or the end.
/// `None` when a record overruns the data or uses the 64-bit length form.
fn records_length(data: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    while at < data.len() {
        let len = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?);
        if len == 0 {
            return Some(at);
        }
        if len == u32::MAX {
            return None;
        }
        let next = at.checked_add(4)?.checked_add(len as usize)?;
        if next > data.len() {
            return None;
        }
        at = next;
    }
    Some(at)
}

/// FNV-1a, 64 bit: a stable hash for naming plain objects.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_elf_bytes_are_refused() {
        assert!(matches!(
            PatchObject::parse(b"hello".to_vec()),
            Err(ApplyError::NotElf)
        ));
        assert!(matches!(
            PatchObject::parse(Vec::new()),
            Err(ApplyError::NotElf)
        ));
    }

    #[test]
    fn truncated_headers_do_not_panic() {
        for len in 0..80 {
            let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
            bytes.resize(len.max(7), 0);
            let _ = PatchObject::parse(bytes);
        }
    }

    #[test]
    fn eh_frame_records_end_at_a_terminator_and_must_fit() {
        // A record: 4-byte length, then that many bytes.
        let mut data = vec![8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(records_length(&data), Some(12));
        data.extend_from_slice(&[0, 0, 0, 0, 9, 9]);
        assert_eq!(records_length(&data), Some(12), "stops at the terminator");
        assert_eq!(records_length(&[20, 0, 0, 0, 1]), None, "overruns");
        assert_eq!(
            records_length(&[0xff, 0xff, 0xff, 0xff]),
            None,
            "64-bit form"
        );
        assert_eq!(records_length(&[]), Some(0));
    }

    #[test]
    fn other_machines_are_refused() {
        let obj = object::write::Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::Aarch64,
            object::Endianness::Little,
        );
        let err = PatchObject::parse(obj.write().unwrap()).unwrap_err();
        assert!(err.to_string().contains("aarch64"), "{err}");
    }
}
