//! The code of every function of an object compiled as the build compiled it — many functions
//! per text section, data in shared sections — in exactly the form [`crate::confirm`] gives the
//! same file compiled with `-ffunction-sections -fdata-sections`, so that the compile made for
//! the pre-images (or post-images) also serves the confirmation, and a run compiles each side
//! once instead of twice.
//!
//! What one section per function changes, and how it is undone here:
//! - A reference from one function to another of the same section (a call or jump to a `static`
//!   function, its address taken) is resolved by the assembler, without a relocation; with one
//!   section per function it is a relocation against the callee's section. Each instruction is
//!   decoded (iced-x86): a near branch or RIP-relative operand leaving the function without a
//!   relocation becomes that relocation (`R_X86_64_PC32` against the function it reaches).
//! - The assembler may encode such a jump short (`rel8`); across sections it cannot. A function
//!   with a short jump to another function is refused here (its bytes and length differ).
//! - Alignment inside a function depends on where it starts: the derivation is exact only when
//!   the function starts at a multiple of its section's alignment (the largest alignment any
//!   function of the section asks for); otherwise it is refused.
//! - A reference to a `static` variable is one to `.bss + offset` rather than to `.bss.NAME`:
//!   the variable containing the address is found among the object's symbols and described as
//!   `SECTION.NAME+offset`, as its own section would be. A jump table (anonymous data holding
//!   code addresses) is described as the referencing function's own section
//!   (`.rodata.FUNCTION`), offsets counted from the first table the function refers to. Other
//!   anonymous data (string literals at `-O0`) stays in one shared section at offsets that
//!   depend on the rest of the file: refused.
//!
//! Whatever cannot be derived exactly is an error with the reason; the caller then compiles the
//! file with one section per function, as before. `tests/unsectioned.rs` of the builder checks
//! that the derivation equals the real compile, function by function, over the test corpus.

use std::collections::{HashMap, HashSet};

use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind};
use object::elf;
use object::read::{Object as _, ObjectSection as _, ObjectSymbol as _};
use object::{Relocation, RelocationFlags, RelocationTarget, SectionIndex, SymbolKind};

use crate::confirm::{self, is_pc_relative, is_wide, merged_datum, stable_name, Code, Functions};

/// One symbol's extent in its section.
#[derive(Debug, Clone)]
struct Extent {
    start: u64,
    end: u64,
    name: String,
}

/// The extents of one kind of symbol, per section, sorted by start.
type Extents = HashMap<SectionIndex, Vec<Extent>>;

/// The symbol of `extents` (in `section`) whose extent contains `point`.
fn containing(extents: &Extents, section: SectionIndex, point: i64) -> Option<&Extent> {
    let point = u64::try_from(point).ok()?;
    extents
        .get(&section)?
        .iter()
        .find(|e| e.start <= point && (point < e.end || (e.start == e.end && point == e.start)))
}

/// Compares the old and new objects of one file compiled as the build compiled them; `Err`
/// says why the comparison cannot be made from them exactly (then compile with one section
/// per function and use [`confirm::confirm`]).
pub fn confirm(old: &[u8], new: &[u8]) -> Result<confirm::Confirmation, String> {
    Ok(confirm::compare(&functions(old)?, &functions(new)?))
}

/// The functions of `bytes`, as [`confirm::functions`] reads the same file compiled with one
/// section per function and datum.
pub(crate) fn functions(bytes: &[u8]) -> Result<Functions, String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let mut functions: Extents = HashMap::new();
    let mut variables: Extents = HashMap::new();
    for symbol in file.symbols() {
        let (Ok(name), Some(section)) = (symbol.name(), symbol.section_index()) else {
            continue;
        };
        let extent = Extent {
            start: symbol.address(),
            end: symbol.address().saturating_add(symbol.size()),
            name: name.to_string(),
        };
        match symbol.kind() {
            SymbolKind::Text if symbol.size() == 0 => {
                return Err(format!("the function symbol `{name}` has no size"))
            }
            SymbolKind::Text => functions.entry(section).or_default().push(extent),
            SymbolKind::Data | SymbolKind::Tls if symbol.is_local() => {
                variables.entry(section).or_default().push(extent)
            }
            _ => {}
        }
    }
    for list in functions.values_mut().chain(variables.values_mut()) {
        list.sort_by_key(|e| (e.start, e.end));
    }
    for list in functions.values() {
        for pair in list.windows(2) {
            if pair[1].start < pair[0].end {
                return Err(format!(
                    "the functions `{}` and `{}` overlap",
                    pair[0].name, pair[1].name
                ));
            }
        }
    }
    let reader = Reader {
        file: &file,
        functions: &functions,
        variables: &variables,
        code_pointers: code_pointers(&file, &functions),
    };
    let mut out = Functions::default();
    for (index, list) in &functions {
        let section = file.section_by_index(*index).map_err(|e| e.to_string())?;
        let data = section.data().map_err(|e| e.to_string())?;
        let mut relocations: Vec<(u64, Relocation)> = section.relocations().collect();
        relocations.sort_by_key(|(offset, _)| *offset);
        for function in list {
            if section.align() > 1 && function.start % section.align() != 0 {
                return Err(format!(
                    "`{}` starts off its section's {}-byte alignment",
                    function.name,
                    section.align()
                ));
            }
            let code = reader.code(*index, function, data, &relocations)?;
            let stable = stable_name(&function.name);
            out.original.insert(stable.clone(), function.name.clone());
            out.insert(&stable, code);
        }
    }
    Ok(out)
}

/// Where data sections hold addresses of code (jump tables): section → offsets of the
/// relocations there that refer to a text section.
fn code_pointers(
    file: &object::File<'_>,
    functions: &Extents,
) -> HashMap<SectionIndex, HashSet<u64>> {
    let mut out: HashMap<SectionIndex, HashSet<u64>> = HashMap::new();
    for section in file.sections() {
        if functions.contains_key(&section.index()) {
            continue;
        }
        for (offset, relocation) in section.relocations() {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            let to_code = file
                .symbol_by_index(index)
                .ok()
                .and_then(|s| s.section_index())
                .is_some_and(|s| functions.contains_key(&s));
            if to_code {
                out.entry(section.index()).or_default().insert(offset);
            }
        }
    }
    out
}

/// What describing one function's references needs of its object.
struct Reader<'a, 'data> {
    file: &'a object::File<'data>,
    functions: &'a Extents,
    variables: &'a Extents,
    code_pointers: HashMap<SectionIndex, HashSet<u64>>,
}

/// One reference of a function's code: where its site is, its type, and what it refers to
/// before anonymous data is placed (see [`Target`]).
struct Site {
    offset: u64,
    r_type: elf::RelocationType,
    target: Target,
}

/// What a reference refers to.
enum Target {
    /// Described already, as one section per function would describe it.
    Known(String),
    /// Anonymous data of `section` (named `name`): its address, and the address the
    /// instruction reaches (for PC-relative references, past the displacement).
    Anonymous {
        section: SectionIndex,
        name: String,
        address: i64,
        point: i64,
    },
}

impl Reader<'_, '_> {
    /// The code of `function`, in `section` (whose bytes are `data`, relocations sorted).
    fn code(
        &self,
        section: SectionIndex,
        function: &Extent,
        data: &[u8],
        relocations: &[(u64, Relocation)],
    ) -> Result<Code, String> {
        let name = &function.name;
        let range = usize::try_from(function.start)
            .ok()
            .zip(usize::try_from(function.end).ok())
            .and_then(|(s, e)| data.get(s..e))
            .ok_or_else(|| format!("`{name}` lies outside its section"))?;
        let instructions = decode(range, function)?;
        let own: Vec<&(u64, Relocation)> = relocations
            .iter()
            .filter(|(offset, _)| (function.start..function.end).contains(offset))
            .collect();
        let relocated: HashSet<u64> = own.iter().map(|(o, _)| *o).collect();
        let mut sites = Vec::new();
        for (offset, relocation) in &own {
            let RelocationFlags::Elf { r_type } = relocation.flags() else {
                continue;
            };
            let next = instructions
                .iter()
                .find(|(i, _)| i.ip() <= *offset && *offset < i.next_ip())
                .map(|(i, _)| i.next_ip())
                .ok_or_else(|| format!("a relocation of `{name}` is in no instruction"))?;
            let correction = if is_pc_relative(r_type) {
                i64::try_from(next - offset).unwrap_or(0)
            } else {
                0
            };
            let target =
                self.describe(relocation.target(), relocation.addend(), correction, r_type)?;
            sites.push(Site {
                offset: *offset,
                r_type,
                target,
            });
        }
        for (instruction, displacement) in &instructions {
            let resolved = self.resolved(
                section,
                function,
                range,
                instruction,
                *displacement,
                &relocated,
            )?;
            if let Some((site, target)) = resolved {
                sites.push(Site {
                    offset: site,
                    r_type: elf::R_X86_64_PC32,
                    target: Target::Known(format!("sym:{target}")),
                });
            }
        }
        sites.sort_by_key(|s| s.offset);
        let mut bytes = range.to_vec();
        for site in &sites {
            let width = if is_wide(site.r_type) { 8 } else { 4 };
            let from = usize::try_from(site.offset - function.start).unwrap_or(usize::MAX);
            for b in bytes.iter_mut().skip(from).take(width) {
                *b = 0;
            }
        }
        Ok(Code {
            bytes,
            relocations: place_anonymous(name, sites),
        })
    }

    /// A reference of `instruction` (of `function`, whose bytes are `code`, in `section`) to
    /// another function of the same section that the assembler resolved itself, if it has one:
    /// the displacement's offset and the function reached (stable name). Sites in `relocated`
    /// have a relocation (their displacement is zero, the decoded target meaningless).
    fn resolved(
        &self,
        section: SectionIndex,
        function: &Extent,
        code: &[u8],
        instruction: &Instruction,
        displacement: Option<u64>,
        relocated: &HashSet<u64>,
    ) -> Result<Option<(u64, String)>, String> {
        let branch = instruction.op0_kind() == OpKind::NearBranch64;
        let (target, site) = if branch {
            // A rel32 displacement is the instruction's last four bytes.
            (
                instruction.near_branch64(),
                instruction.next_ip().saturating_sub(4),
            )
        } else if let (true, Some(site)) = (instruction.is_ip_rel_memory_operand(), displacement) {
            (instruction.ip_rel_memory_address(), site)
        } else {
            return Ok(None);
        };
        if relocated.contains(&site) || (function.start..function.end).contains(&target) {
            return Ok(None);
        }
        let reached = i64::try_from(target)
            .ok()
            .and_then(|t| containing(self.functions, section, t))
            .ok_or_else(|| {
                format!(
                    "`{}` refers to {target:#x} of its section, which no function covers",
                    function.name
                )
            })?;
        let rel32 = usize::try_from(site - function.start)
            .ok()
            .and_then(|from| code.get(from..from + 4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_le_bytes)
            .is_some_and(|d| {
                i64::try_from(instruction.next_ip()).unwrap_or(0) + i64::from(d)
                    == i64::try_from(target).unwrap_or(-1)
            });
        if branch && (!rel32 || site < instruction.ip()) {
            return Err(format!(
                "`{}` jumps to `{}` with a short jump, which one section per function would encode long",
                function.name, reached.name
            ));
        }
        Ok(Some((site, stable_name(&reached.name))))
    }

    /// What the relocation `target + addend` refers to; `correction` is what the instruction
    /// adds to reach its datum (the bytes after the site, for PC-relative references).
    fn describe(
        &self,
        target: RelocationTarget,
        addend: i64,
        correction: i64,
        r_type: elf::RelocationType,
    ) -> Result<Target, String> {
        let known = |s: String| Ok(Target::Known(s));
        let RelocationTarget::Symbol(index) = target else {
            return known("none".to_string());
        };
        let Ok(symbol) = self.file.symbol_by_index(index) else {
            return known("bad".to_string());
        };
        let local_data = symbol.is_local() && symbol.kind() != SymbolKind::Text;
        let (Some(section_index), true) = (symbol.section_index(), local_data) else {
            return known(format!("sym:{}", stable_name(symbol.name().unwrap_or(""))));
        };
        let address = i64::try_from(symbol.address())
            .unwrap_or(0)
            .saturating_add(addend);
        let point = address.saturating_add(correction);
        if self.functions.contains_key(&section_index) {
            let function = containing(self.functions, section_index, point).ok_or_else(|| {
                format!(
                    "a reference reaches {point:#x} of a text section, which no function covers"
                )
            })?;
            return known(format!("sym:{}", stable_name(&function.name)));
        }
        let section = self
            .file
            .section_by_index(section_index)
            .map_err(|e| e.to_string())?;
        if let Some(datum) = merged_datum(self.file, section_index, r_type, address) {
            return known(datum);
        }
        let section_name = section.name().unwrap_or("?").to_string();
        let variable = match symbol.kind() {
            SymbolKind::Data | SymbolKind::Tls => Some(Extent {
                start: symbol.address(),
                end: symbol.address().saturating_add(symbol.size()),
                name: symbol.name().unwrap_or("").to_string(),
            }),
            _ => containing(self.variables, section_index, point).cloned(),
        };
        match variable {
            Some(variable) => {
                let offset = address.saturating_sub(i64::try_from(variable.start).unwrap_or(0));
                known(format!(
                    "{}{offset:+}",
                    stable_name(&format!("{section_name}.{}", variable.name))
                ))
            }
            // A jump table: one section per function gives it the function's own section.
            None if u64::try_from(point)
                .ok()
                .zip(self.code_pointers.get(&section_index))
                .is_some_and(|(p, offsets)| offsets.contains(&p)) =>
            {
                Ok(Target::Anonymous {
                    section: section_index,
                    name: section_name,
                    address,
                    point,
                })
            }
            // Other anonymous data (string literals at -O0) stays in a section all functions
            // share, at offsets that depend on everything else in it.
            None => Err(format!(
                "a reference to anonymous data at {point:#x} of `{section_name}`"
            )),
        }
    }
}

/// The relocations of `function`'s sites in order, anonymous data described as the function's
/// own data section would hold it: offsets from the first datum of that section it reaches.
fn place_anonymous(function: &str, sites: Vec<Site>) -> Vec<(elf::RelocationType, String)> {
    let mut first: HashMap<SectionIndex, i64> = HashMap::new();
    for site in &sites {
        if let Target::Anonymous { section, point, .. } = site.target {
            let low = first.entry(section).or_insert(point);
            *low = (*low).min(point);
        }
    }
    sites
        .into_iter()
        .map(|site| {
            let description = match site.target {
                Target::Known(text) => text,
                Target::Anonymous {
                    section,
                    name,
                    address,
                    ..
                } => {
                    let offset = address.saturating_sub(first.get(&section).copied().unwrap_or(0));
                    format!("{}{offset:+}", stable_name(&format!("{name}.{function}")))
                }
            };
            (site.r_type, description)
        })
        .collect()
}

/// The instructions of `function` (whose bytes are `code`), each with the section offset of
/// its memory displacement when it has one; an undecodable byte is an error.
fn decode(code: &[u8], function: &Extent) -> Result<Vec<(Instruction, Option<u64>)>, String> {
    let mut decoder = Decoder::with_ip(64, code, function.start, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return Err(format!(
                "`{}` has bytes at {:#x} that do not decode",
                function.name,
                instruction.ip()
            ));
        }
        let offsets = decoder.get_constant_offsets(&instruction);
        let displacement = (offsets.has_displacement() && offsets.displacement_size() == 4)
            .then(|| instruction.ip() + offsets.displacement_offset() as u64);
        out.push((instruction, displacement));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// `file` compiled with `flags` (and `extra`), in a scratch directory.
    fn compile(file: &Path, flags: &[&str], extra: &[&str]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("x.o");
        let status = std::process::Command::new("gcc")
            .args(flags)
            .args(extra)
            .arg("-c")
            .arg(file)
            .arg("-o")
            .arg(&output)
            .status()
            .unwrap();
        assert!(status.success(), "{} {flags:?} {extra:?}", file.display());
        std::fs::read(output).unwrap()
    }

    /// Checks the derivation from the object of `file` compiled with `flags` against the real
    /// compile with one section per function: every function of the same bytes must have its
    /// references described the same way (other bytes are the compiler's own choice: gcc does
    /// not always generate the same code with `-ffunction-sections`, at `-O3` for one). Returns
    /// the functions compared equal and those of other bytes; `Err`: the derivation refused.
    fn same_as_sectioned(file: &Path, flags: &[&str]) -> Result<(usize, Vec<String>), String> {
        let derived = functions(&compile(file, flags, &[]))?;
        let sectioned = compile(file, flags, &["-ffunction-sections", "-fdata-sections"]);
        let real = confirm::functions(&sectioned).unwrap();
        assert_eq!(
            derived.code.keys().collect::<Vec<_>>(),
            real.code.keys().collect::<Vec<_>>(),
            "{} with {flags:?}",
            file.display()
        );
        let mut equal = 0;
        let mut other = Vec::new();
        for (name, code) in &real.code {
            let mine = &derived.code[name];
            if mine.bytes != code.bytes {
                other.push(format!("{} {flags:?}: {name}", file.display()));
                continue;
            }
            assert_eq!(mine, code, "`{name}` of {} with {flags:?}", file.display());
            equal += 1;
        }
        Ok((equal, other))
    }

    /// Every C file of the test corpus (both revisions of every case, the shared `main.c`, the
    /// demo and the load server).
    fn corpus() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
        let mut files = Vec::new();
        let mut pending = vec![root];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "c") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// The flag sets the corpus is compiled with: the cases' own and the optimisation levels.
    const FLAGS: [&[&str]; 6] = [
        &["-O2", "-g"],
        &["-O0", "-g"],
        &["-O1"],
        &["-O3", "-g", "-fno-omit-frame-pointer"],
        &["-Os", "-g"],
        &["-O2", "-g", "-fno-pic", "-fcf-protection=full"],
    ];

    /// The flag sets `file` compiles with (a file that needs its case's macro gets it).
    fn flag_sets(file: &Path) -> Vec<Vec<&'static str>> {
        let text = std::fs::read_to_string(file).unwrap();
        let sets: Vec<Vec<&str>> = if text.contains("FACTOR") {
            vec![vec!["-O2", "-g", "-DFACTOR=3"]]
        } else {
            FLAGS.iter().map(|f| f.to_vec()).collect()
        };
        sets.into_iter()
            .filter(|flags| {
                std::process::Command::new("gcc")
                    .args(flags)
                    .arg("-fsyntax-only")
                    .arg(file)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            })
            .collect()
    }

    #[test]
    fn the_derivation_equals_one_section_per_function_over_the_corpus() {
        let (mut equal, mut other, mut refused) = (0, Vec::new(), Vec::new());
        for file in corpus() {
            for flags in flag_sets(&file) {
                match same_as_sectioned(&file, &flags) {
                    Ok((same, differ)) => {
                        equal += same;
                        other.extend(differ);
                    }
                    Err(why) => refused.push(format!("{} {flags:?}: {why}", file.display())),
                }
            }
        }
        eprintln!("{equal} functions equal; other code: {other:#?}; refused: {refused:#?}");
        assert!(equal > 1000, "{equal} equal; refused: {refused:#?}");
        assert!(other.len() * 50 < equal, "{other:#?}");
    }

    #[test]
    fn the_selection_is_the_whole_file_comparison_over_the_corpus() {
        let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases");
        let mut compared = 0;
        let mut refused = Vec::new();
        for old in corpus().into_iter().filter(|f| f.starts_with(&cases)) {
            let text = old.to_string_lossy();
            if !text.contains("/v1/") {
                continue;
            }
            let new = PathBuf::from(text.replace("/v1/", "/v2/"));
            if !new.is_file() {
                continue;
            }
            let new_flags = flag_sets(&new);
            for flags in flag_sets(&old)
                .into_iter()
                .filter(|f| new_flags.contains(f))
            {
                let sections = ["-ffunction-sections", "-fdata-sections"];
                let whole = confirm::confirm(
                    &compile(&old, &flags, &sections),
                    &compile(&new, &flags, &sections),
                )
                .unwrap();
                match confirm(&compile(&old, &flags, &[]), &compile(&new, &flags, &[])) {
                    Ok(derived) => {
                        assert_eq!(derived, whole, "{} with {flags:?}", old.display());
                        compared += 1;
                    }
                    Err(why) => refused.push(format!("{} {flags:?}: {why}", old.display())),
                }
            }
        }
        eprintln!("{compared} compared; refused: {refused:#?}");
        assert!(compared > 200, "{compared} compared; refused: {refused:#?}");
    }
}
