//! Where everything of the patch goes in the region, relative to the zone starts: the text zone
//! (code sections, call stubs, read-only data) and the data zone (GOT slots, data, bss). Each zone
//! is a whole number of pages. The layout does not depend on the region's address.

use std::collections::BTreeMap;

use object::elf;

use crate::object_file::{PatchObject, Placement, SectionClass};

/// Page size of x86-64 Linux.
pub(crate) const PAGE: u64 = 4096;
/// Bytes of a `tls_index` pair: the module id and the offset in its block, 8 bytes each.
pub(crate) const TLS_INDEX_SIZE: u64 = 16;
/// Bytes reserved per call stub (`jmp *[rip+0]` + 8-byte address, padded).
pub(crate) const STUB_SIZE: u64 = 16;

/// Which zone of the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    /// Read + execute after writing.
    Text,
    /// Read + write.
    Data,
}

/// Offsets of sections, GOT slots and stubs in their zones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// Size of the text zone, page aligned.
    pub(crate) text_size: u64,
    /// Size of the data zone, page aligned.
    pub(crate) data_size: u64,
    /// Section index → (zone, offset).
    pub(crate) sections: BTreeMap<usize, (Zone, u64)>,
    /// Symbol index → offset of its GOT slot in the data zone.
    pub(crate) got: BTreeMap<usize, u64>,
    /// Symbol index → offset in the data zone of its `tls_index` pair (module id, offset), the
    /// argument an `R_X86_64_TLSGD` sequence hands `__tls_get_addr`.
    pub(crate) tls_pairs: BTreeMap<usize, u64>,
    /// Symbol index → offset of its call stub in the text zone.
    pub(crate) stubs: BTreeMap<usize, u64>,
    /// Size of the code sections at the start of the text zone (the code CFI describes).
    pub(crate) code_size: u64,
    /// The `.eh_frame` records in the text zone: (offset, size), all sections back to back.
    pub(crate) eh_frame: Option<(u64, u64)>,
    /// End of what the text zone holds (`text_size` is this rounded up to a page).
    pub(crate) text_end: u64,
}

/// Whether the relocation type reads a GOT slot (`GOTTPOFF`: a slot holding a thread-local
/// variable's offset from the thread pointer).
pub(crate) fn uses_got(r_type: elf::RelocationType) -> bool {
    matches!(
        r_type,
        elf::R_X86_64_GOTPCREL
            | elf::R_X86_64_GOTPCRELX
            | elf::R_X86_64_REX_GOTPCRELX
            | elf::R_X86_64_GOTTPOFF
    )
}

/// Whether the relocation may be sent through a call stub when its target is out of reach.
pub(crate) fn may_use_stub(r_type: elf::RelocationType) -> bool {
    matches!(r_type, elf::R_X86_64_PLT32 | elf::R_X86_64_PC32)
}

fn align_up(value: u64, align: u64) -> u64 {
    let align = align.max(1);
    value.div_ceil(align).saturating_mul(align)
}

impl Layout {
    /// Reserves `size` bytes aligned to `align` at the end of the text zone (code the applier
    /// writes itself) and returns their offset. The data zone moves up if the text zone grows.
    pub(crate) fn reserve_text(&mut self, size: u64, align: u64) -> u64 {
        let offset = align_up(self.text_end, align);
        self.text_end = offset.saturating_add(size);
        self.text_size = align_up(self.text_end, PAGE);
        offset
    }

    /// Lays out the loadable sections of `object`. `is_external_function(sym)` says whether an
    /// undefined symbol resolved to a function (a call to it may need a stub).
    pub(crate) fn compute(
        object: &PatchObject,
        is_external_function: impl Fn(usize) -> bool,
    ) -> Layout {
        let mut layout = Layout::default();
        let mut text = 0u64;
        let mut data = 0u64;
        let place = |layout: &mut Layout, class: SectionClass, zone: Zone, cursor: &mut u64| {
            for section in object.sections.iter().filter(|s| s.class == class) {
                *cursor = align_up(*cursor, section.align);
                layout.sections.insert(section.index, (zone, *cursor));
                *cursor = cursor.saturating_add(section.size);
            }
        };
        place(&mut layout, SectionClass::Text, Zone::Text, &mut text);
        layout.code_size = text;

        let relocations = object
            .sections
            .iter()
            .filter(|s| s.class != SectionClass::Skip)
            .flat_map(|s| s.relocations.iter());
        let mut got_symbols = Vec::new();
        let mut tls_symbols = Vec::new();
        let mut stub_symbols = Vec::new();
        for reloc in relocations {
            let Some(sym) = reloc.symbol else { continue };
            if uses_got(reloc.r_type) && !got_symbols.contains(&sym) {
                got_symbols.push(sym);
            }
            if reloc.r_type == elf::R_X86_64_TLSGD && !tls_symbols.contains(&sym) {
                tls_symbols.push(sym);
            }
            let external = object
                .symbols
                .get(sym)
                .is_some_and(|s| s.placement == Placement::Undefined);
            let call = reloc.r_type == elf::R_X86_64_PLT32 || is_external_function(sym);
            if may_use_stub(reloc.r_type) && external && call && !stub_symbols.contains(&sym) {
                stub_symbols.push(sym);
            }
        }
        text = align_up(text, STUB_SIZE);
        for sym in stub_symbols {
            layout.stubs.insert(sym, text);
            text += STUB_SIZE;
        }
        place(&mut layout, SectionClass::ReadOnly, Zone::Text, &mut text);
        // Each `.eh_frame` is a sequence of length-prefixed records without a terminator:
        // placed with no padding between them, they read as one sequence.
        text = align_up(text, 8);
        let eh_start = text;
        for section in object
            .sections
            .iter()
            .filter(|s| s.class == SectionClass::EhFrame)
        {
            layout.sections.insert(section.index, (Zone::Text, text));
            text = text.saturating_add(section.size);
        }
        if text > eh_start {
            layout.eh_frame = Some((eh_start, text - eh_start));
        }

        // The data zone starts on a page: the pairs come first, 16-byte aligned as glibc's
        // `tls_index` is.
        for sym in tls_symbols {
            layout.tls_pairs.insert(sym, data);
            data += TLS_INDEX_SIZE;
        }
        for sym in got_symbols {
            layout.got.insert(sym, data);
            data += 8;
        }
        place(&mut layout, SectionClass::Data, Zone::Data, &mut data);
        place(&mut layout, SectionClass::Bss, Zone::Data, &mut data);
        layout.text_end = text;
        layout.text_size = align_up(text, PAGE);
        layout.data_size = align_up(data, PAGE);
        layout
    }
}
