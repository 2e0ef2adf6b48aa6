//! Linking the patch object at a given region address: copy the sections into the zone images,
//! fill GOT slots and call stubs, and apply every relocation with checked arithmetic.

use std::collections::BTreeMap;

use object::elf;

use crate::error::ApplyError;
use crate::layout::{uses_got, Layout, Zone};
use crate::object_file::{ObjRelocation, ObjSection, PatchObject, Placement};
use crate::trampoline::absolute_jump;

/// The linked bytes of both zones.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// Address of the text zone.
    pub(crate) text_base: u64,
    /// Address of the data zone.
    pub(crate) data_base: u64,
    /// Bytes of the text zone (`layout.text_size` long).
    pub(crate) text: Vec<u8>,
    /// Bytes of the data zone (`layout.data_size` long).
    pub(crate) data: Vec<u8>,
}

/// glibc's `tls_index`: what `__tls_get_addr` is handed to find a thread-local variable in the
/// calling thread (allocating that thread's block of the module on first use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TlsIndex {
    /// The module's TLS id, as `ld.so` gave it.
    pub(crate) module_id: u64,
    /// The variable's offset in the module's TLS block.
    pub(crate) offset: u64,
}

/// What the linker needs besides the object: the layout, the zone addresses and the addresses of
/// the undefined symbols (by symbol index).
pub(crate) struct Linker<'a> {
    /// The object.
    pub(crate) object: &'a PatchObject,
    /// Its layout.
    pub(crate) layout: &'a Layout,
    /// Resolved addresses of undefined symbols.
    pub(crate) externals: &'a BTreeMap<usize, u64>,
    /// The `tls_index` of each thread-local symbol reached through `R_X86_64_TLSGD`.
    pub(crate) tls_indices: &'a BTreeMap<usize, TlsIndex>,
    /// Address of the text zone.
    pub(crate) text_base: u64,
    /// Address of the data zone.
    pub(crate) data_base: u64,
}

/// Name of an x86-64 relocation type, for messages.
pub(crate) fn relocation_name(r_type: elf::RelocationType) -> String {
    let name = match r_type.0 {
        0 => "NONE",
        1 => "64",
        2 => "PC32",
        3 => "GOT32",
        4 => "PLT32",
        5 => "COPY",
        6 => "GLOB_DAT",
        7 => "JUMP_SLOT",
        8 => "RELATIVE",
        9 => "GOTPCREL",
        10 => "32",
        11 => "32S",
        12 => "16",
        13 => "PC16",
        14 => "8",
        15 => "PC8",
        16 => "DTPMOD64",
        17 => "DTPOFF64",
        18 => "TPOFF64",
        19 => "TLSGD",
        20 => "TLSLD",
        21 => "DTPOFF32",
        22 => "GOTTPOFF",
        23 => "TPOFF32",
        24 => "PC64",
        25 => "GOTOFF64",
        26 => "GOTPC32",
        27 => "GOT64",
        28 => "GOTPCREL64",
        29 => "GOTPC64",
        30 => "GOTPLT64",
        31 => "PLTOFF64",
        32 => "SIZE32",
        33 => "SIZE64",
        34 => "GOTPC32_TLSDESC",
        35 => "TLSDESC_CALL",
        36 => "TLSDESC",
        37 => "IRELATIVE",
        38 => "RELATIVE64",
        41 => "GOTPCRELX",
        42 => "REX_GOTPCRELX",
        other => return format!("R_X86_64_#{other}"),
    };
    format!("R_X86_64_{name}")
}

fn is_tls(r_type: elf::RelocationType) -> bool {
    matches!(r_type.0, 16..=23 | 34..=36)
}

/// How a relocation's value is stored.
enum Field {
    U32,
    I32,
    I64,
}

impl Linker<'_> {
    /// Address of a placed section.
    fn section_address(&self, index: usize) -> Option<u64> {
        let (zone, offset) = *self.layout.sections.get(&index)?;
        let base = match zone {
            Zone::Text => self.text_base,
            Zone::Data => self.data_base,
        };
        base.checked_add(offset)
    }

    /// Runtime address of symbol `index` of the object (`Err` with a detail for messages).
    pub(crate) fn symbol_address(&self, index: usize) -> Result<u64, String> {
        let Some(symbol) = self.object.symbols.get(index) else {
            return Err(format!("symbol index {index} does not exist"));
        };
        match symbol.placement {
            Placement::Section(section) => self
                .section_address(section)
                .and_then(|base| base.checked_add(symbol.value))
                .ok_or_else(|| {
                    let name = self
                        .object
                        .section(section)
                        .map_or("?", |s| s.name.as_str());
                    format!("it refers to section {name}, which is not loaded")
                }),
            Placement::Undefined => self
                .externals
                .get(&index)
                .copied()
                .ok_or_else(|| format!("undefined symbol `{}` was not resolved", symbol.name)),
            Placement::Absolute => Ok(symbol.value),
            Placement::Common => Err(format!(
                "`{}` is a common symbol; compile the patch with -fno-common",
                symbol.name
            )),
            Placement::Other => Err(format!("symbol `{}` has no section", symbol.name)),
        }
    }

    /// Links every loaded section into the zone images. The gaps between functions are
    /// `int3`s, as a linker pads code: a later patch replacing a function of this one may put
    /// its jump over them, as it does over a module's padding.
    pub(crate) fn link(&self) -> Result<Image, ApplyError> {
        let mut text = vec![0u8; usize::try_from(self.layout.text_size).unwrap_or(0)];
        let code_size = usize::try_from(self.layout.code_size).unwrap_or(0);
        text.iter_mut()
            .take(code_size)
            .for_each(|b| *b = crate::trampoline::INT3);
        let mut data = vec![0u8; usize::try_from(self.layout.data_size).unwrap_or(0)];
        let size_error =
            |what: &str| ApplyError::MalformedObject(format!("{what} does not fit its zone"));

        for (&sym, &offset) in &self.layout.got {
            let value = self
                .symbol_address(sym)
                .map_err(ApplyError::MalformedObject)?;
            put(&mut data, offset, &value.to_le_bytes()).ok_or_else(|| size_error("a GOT slot"))?;
        }
        for (&sym, &offset) in &self.layout.tls_pairs {
            let pair = self.tls_indices.get(&sym).ok_or_else(|| {
                let name = self
                    .object
                    .symbols
                    .get(sym)
                    .map_or("?", |s| s.name.as_str());
                ApplyError::MalformedObject(format!(
                    "the thread-local `{name}` has no TLS module id and offset"
                ))
            })?;
            let mut bytes = pair.module_id.to_le_bytes().to_vec();
            bytes.extend_from_slice(&pair.offset.to_le_bytes());
            put(&mut data, offset, &bytes).ok_or_else(|| size_error("a tls_index pair"))?;
        }
        for (&sym, &offset) in &self.layout.stubs {
            let value = self
                .symbol_address(sym)
                .map_err(ApplyError::MalformedObject)?;
            put(&mut text, offset, &absolute_jump(value)).ok_or_else(|| size_error("a stub"))?;
        }
        for section in &self.object.sections {
            let Some(&(zone, offset)) = self.layout.sections.get(&section.index) else {
                continue;
            };
            let image = match zone {
                Zone::Text => &mut text,
                Zone::Data => &mut data,
            };
            put(image, offset, &section.data).ok_or_else(|| size_error(&section.name))?;
            for reloc in &section.relocations {
                self.relocate(image, offset, section, reloc)?;
            }
        }
        Ok(Image {
            text_base: self.text_base,
            data_base: self.data_base,
            text,
            data,
        })
    }

    fn relocate(
        &self,
        image: &mut [u8],
        section_offset: u64,
        section: &ObjSection,
        reloc: &ObjRelocation,
    ) -> Result<(), ApplyError> {
        let kind = relocation_name(reloc.r_type);
        let symbol_name = reloc
            .symbol
            .and_then(|i| self.object.symbols.get(i))
            .map_or_else(
                || "<none>".to_string(),
                |s| s.display_name(&self.object.sections),
            );
        let bad = |detail: String| ApplyError::BadRelocation {
            kind: kind.clone(),
            section: section.name.clone(),
            offset: reloc.offset,
            detail,
        };
        if reloc.r_type == elf::R_X86_64_NONE {
            return Ok(());
        }
        let linked_tls = [elf::R_X86_64_GOTTPOFF, elf::R_X86_64_TLSGD];
        if is_tls(reloc.r_type) && !linked_tls.contains(&reloc.r_type) {
            return Err(ApplyError::UnsupportedRelocation {
                kind: format!("{kind} (thread-local storage)"),
                symbol: symbol_name,
                section: section.name.clone(),
            });
        }
        let s = match reloc.symbol {
            Some(index) => self.symbol_address(index).map_err(bad)?,
            None => 0,
        };
        let p = self
            .section_address(section.index)
            .and_then(|base| base.checked_add(reloc.offset))
            .ok_or_else(|| bad("the section is not loaded".into()))?;
        let a = i128::from(reloc.addend);
        let (s, p) = (i128::from(s), i128::from(p));
        let (value, field) = match reloc.r_type {
            elf::R_X86_64_64 => (s + a, Field::I64),
            elf::R_X86_64_PC64 => (s + a - p, Field::I64),
            elf::R_X86_64_32 => (s + a, Field::U32),
            elf::R_X86_64_32S => (s + a, Field::I32),
            elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 => {
                let direct = s + a - p;
                let stub = reloc.symbol.and_then(|i| self.layout.stubs.get(&i));
                match stub {
                    Some(&offset) if i32::try_from(direct).is_err() => {
                        let stub = i128::from(self.text_base) + i128::from(offset);
                        (stub + a - p, Field::I32)
                    }
                    _ => (direct, Field::I32),
                }
            }
            elf::R_X86_64_TLSGD => {
                // `lea x@tlsgd(%rip), %rdi`: the address of the variable's `tls_index` pair.
                let pair = reloc
                    .symbol
                    .and_then(|i| self.layout.tls_pairs.get(&i))
                    .ok_or_else(|| bad("no tls_index pair was laid out".into()))?;
                (
                    i128::from(self.data_base) + i128::from(*pair) + a - p,
                    Field::I32,
                )
            }
            t if uses_got(t) => {
                let slot = reloc
                    .symbol
                    .and_then(|i| self.layout.got.get(&i))
                    .ok_or_else(|| bad("no GOT slot was laid out".into()))?;
                (
                    i128::from(self.data_base) + i128::from(*slot) + a - p,
                    Field::I32,
                )
            }
            _ => {
                return Err(ApplyError::UnsupportedRelocation {
                    kind,
                    symbol: symbol_name,
                    section: section.name.clone(),
                })
            }
        };
        let overflow = || ApplyError::RelocationOverflow {
            kind: kind.clone(),
            symbol: symbol_name.clone(),
            section: section.name.clone(),
            offset: reloc.offset,
            value: value as u64,
        };
        let bytes: Vec<u8> = match field {
            Field::I64 => {
                if value < i128::from(i64::MIN) || value > i128::from(u64::MAX) {
                    return Err(overflow());
                }
                (value as u64).to_le_bytes().to_vec()
            }
            Field::I32 => i32::try_from(value)
                .map_err(|_| overflow())?
                .to_le_bytes()
                .to_vec(),
            Field::U32 => u32::try_from(value)
                .map_err(|_| overflow())?
                .to_le_bytes()
                .to_vec(),
        };
        let end = reloc.offset.checked_add(bytes.len() as u64);
        if section.data.is_empty() || end.is_none_or(|end| end > section.data.len() as u64) {
            return Err(bad(
                "the relocated field lies outside the section's contents".into(),
            ));
        }
        let at = section_offset
            .checked_add(reloc.offset)
            .ok_or_else(|| bad("offset overflows".into()))?;
        put(image, at, &bytes).ok_or_else(|| bad("the field lies outside the zone".into()))
    }
}

/// Copies `bytes` into `image` at `offset`; `None` if it does not fit.
fn put(image: &mut [u8], offset: u64, bytes: &[u8]) -> Option<()> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(bytes.len())?;
    image.get_mut(start..end)?.copy_from_slice(bytes);
    Some(())
}
