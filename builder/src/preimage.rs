//! Pre-image fingerprints (Ksplice's run-pre matching): the old (v1) translation unit of a file is
//! compiled exactly with the original build's flags, and each function to be replaced is
//! fingerprinted: its bytes with every relocation site masked, because the linker fills those
//! sites in (and relaxes the instruction around some GOT and TLS references). A section is laid
//! out identically in the object and in the linked binary (references between functions of one
//! section are resolved by the assembler in both), so the applier can compare the fingerprint
//! with the process's memory before it writes anything.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use hotpatch_applier::artifact::Preimage;
use object::elf;
use object::read::{Object as _, ObjectSection as _, ObjectSymbol as _};
use object::{RelocationFlags, SymbolKind};

use crate::{BuildError, CompileCommand, Compiler};

/// Fingerprints of the functions `names` as the old revision of `file` (in the materialised old
/// tree `old_root`) compiles with `arguments` (the original flags, see
/// `flags::preimage_arguments`), replayed with `command` where the build compiled. A function the
/// old object does not define (new, or inlined away) has no entry.
pub fn fingerprints(
    compiler: &Compiler,
    old_root: &Path,
    command: &CompileCommand,
    arguments: &[String],
    names: &HashSet<&str>,
) -> Result<HashMap<String, Preimage>, BuildError> {
    let file = command.file.as_str();
    let placed = command.place(old_root, arguments)?;
    let source = old_root.join(file);
    let path = old_root.join(format!("{file}.hotpatch-v1.o"));
    compiler
        .compile(&placed.cwd, &source, &path, &placed.arguments, file)
        .map_err(|e| match e {
            BuildError::Compile { file, diagnostics } => BuildError::Preimage(format!(
                "the old revision of {file} does not compile with the original flags ({}), so the running code cannot be checked against it:\n{diagnostics}",
                command.source
            )),
            other => other,
        })?;
    let bytes = std::fs::read(&path).map_err(|e| BuildError::Io {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let _ = std::fs::remove_file(&path);
    fingerprint_object(&bytes, names)
        .map_err(|e| BuildError::Preimage(format!("the old object of {file}: {e}")))
}

/// Fingerprints the functions `names` defined in the relocatable object `bytes`.
pub fn fingerprint_object(
    bytes: &[u8],
    names: &HashSet<&str>,
) -> Result<HashMap<String, Preimage>, String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for symbol in file.symbols() {
        let Ok(name) = symbol.name() else { continue };
        if symbol.kind() != SymbolKind::Text || !names.contains(name) {
            continue;
        }
        let Some(index) = symbol.section_index() else {
            continue;
        };
        let section = file.section_by_index(index).map_err(|e| e.to_string())?;
        let data = section.data().map_err(|e| e.to_string())?;
        let start = symbol.address();
        let end = start.saturating_add(symbol.size());
        let code = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| data.get(s..e))
            .ok_or_else(|| format!("`{name}` lies outside its section"))?;
        let mut masked = Vec::new();
        for (offset, relocation) in section.relocations() {
            if offset < start || offset >= end {
                continue;
            }
            let RelocationFlags::Elf { r_type } = relocation.flags() else {
                continue;
            };
            let (before, width) = site(r_type);
            let from = (offset - start).saturating_sub(before);
            masked.push([from, (offset - start - from) + width]);
        }
        masked.sort_unstable();
        out.insert(name.to_string(), Preimage::of(code, masked));
    }
    Ok(out)
}

/// The bytes a relocation of type `r_type` may change when linked: how many before its offset
/// (the instruction bytes a linker relaxation rewrites) and how many from it.
fn site(r_type: elf::RelocationType) -> (u64, u64) {
    match r_type {
        elf::R_X86_64_64
        | elf::R_X86_64_PC64
        | elf::R_X86_64_DTPOFF64
        | elf::R_X86_64_TPOFF64
        | elf::R_X86_64_GOTOFF64
        | elf::R_X86_64_GOTPC64
        | elf::R_X86_64_GOTPCREL64
        | elf::R_X86_64_PLTOFF64 => (0, 8),
        // mov/call/jmp through the GOT may become lea/mov $imm/addr32 call: opcode, ModRM, REX.
        elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX | elf::R_X86_64_GOTPCREL => (3, 4),
        // Initial-exec → local-exec: `mov x@gottpoff(%rip), %reg` becomes `mov $x, %reg`.
        elf::R_X86_64_GOTTPOFF => (3, 4),
        // General and local dynamic sequences are rewritten whole (up to 16 bytes).
        elf::R_X86_64_TLSGD => (4, 12),
        elf::R_X86_64_TLSLD => (3, 9),
        elf::R_X86_64_GOTPC32_TLSDESC => (3, 4),
        elf::R_X86_64_TLSDESC_CALL => (0, 2),
        _ => (0, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_cover_relaxed_instructions() {
        assert_eq!(site(elf::R_X86_64_PLT32), (0, 4));
        assert_eq!(site(elf::R_X86_64_REX_GOTPCRELX), (3, 4));
        assert_eq!(site(elf::R_X86_64_64), (0, 8));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(fingerprint_object(b"junk", &HashSet::new()).is_err());
    }
}
