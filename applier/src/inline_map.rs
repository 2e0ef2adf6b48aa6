//! Where the code of each source function went, as the binary's own debug information says:
//! its out-of-line copies (`DW_TAG_subprogram` entries with code, clones such as `.constprop`,
//! `.isra` and `.part` included, their `.cold` parts being ranges of the same entry) and the
//! functions that hold inlined copies of it (`DW_TAG_inlined_subroutine`, at any depth) and the
//! functions its code calls (`DW_TAG_call_site`), in every compilation unit. Link-time optimisation writes its code into artificial units whose entries
//! name their source functions through `DW_AT_abstract_origin` references into the units of the
//! original files (`DW_FORM_ref_addr`); those are followed across units.
//!
//! Under LTO this is the only truth about which functions' code a change reaches: per-file
//! compiles say nothing about the linked code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::OnceLock;

use bincode::Options as _;
use gimli::{AttributeValue, UnitOffset};
use object::{Object, ObjectSymbol, SymbolKind};
use serde::{Deserialize, Serialize};

use crate::debuginfo::{normalize, unit_path, with_dwarf, Slice};
use crate::symbols::file_matches;

/// A source function: its name and the file that declares it (`DW_AT_decl_file` of its abstract
/// origin, else its compilation unit).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceFunction {
    /// The function's name in the source.
    pub name: String,
    /// The file it is declared in, as the debug information records it.
    pub file: String,
}

impl SourceFunction {
    /// Whether it is declared in repository path `file` (recorded paths may be absolute or
    /// relative to where the build ran: they match at a `/`).
    pub fn is_in(&self, file: &str) -> bool {
        file_matches(&self.file, file)
    }
}

impl std::fmt::Display for SourceFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.rsplit('/').next().unwrap_or(&self.file);
        write!(f, "`{}` ({file})", self.name)
    }
}

/// One out-of-line copy of a source function in the binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutOfLineCopy {
    /// Its link-time entry address.
    pub address: u64,
    /// The symbol at that address (`rate`, `mix.constprop.0`, `scale.lto_priv.0`), if any.
    pub symbol: Option<String>,
}

/// Everything the debug information says about one source function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its out-of-line copies (none: it was inlined everywhere, or removed).
    pub copies: Vec<OutOfLineCopy>,
    /// The functions holding an inlined copy of it, each with the copy of theirs that does.
    pub inlined_into: BTreeSet<(SourceFunction, u64)>,
    /// The functions its code calls (`DW_TAG_call_site`, also from inside its inlined copies).
    pub calls: BTreeSet<SourceFunction>,
    /// An out-of-line copy says every call in its code has a call site (`DW_AT_call_all_calls`,
    /// gcc at `-O1` and above with `-g`): then a call missing from `calls` is not made.
    pub all_calls: bool,
}

/// A function the patch must replace, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchMember {
    /// The function.
    pub function: SourceFunction,
    /// Its out-of-line copies (none: only the functions holding its inlined copies run it).
    pub copies: Vec<OutOfLineCopy>,
    /// Why: `changed`, or ``holds an inlined copy of `rate` (rate.c) per DWARF``.
    pub reason: String,
}

/// The inline map of one binary (see the module documentation), kept as the bytes
/// [`InlineMap::to_bytes`] gives: a table of the source functions' names, sorted, each with the
/// encoded records of the functions of that name, decoded on first use. Every question asked
/// of the map is about a name, so a map read back from a cache costs the table, not the whole
/// map (BENCHMARKS.md (f)).
#[derive(Debug, Default)]
pub struct InlineMap {
    /// The encoded map ([`Stored`]).
    bytes: Vec<u8>,
    /// Each name (a range of `bytes`) with the range of its encoded records, sorted by name.
    names: Vec<(Range<usize>, Range<usize>)>,
    /// The records of `names[i]`, once decoded.
    decoded: Vec<OnceLock<Vec<Record>>>,
    /// Every file a function the map describes is declared in.
    files: Vec<String>,
    /// How many source functions the map describes.
    functions: usize,
}

/// What the map keeps of one source function.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    function: SourceFunction,
    /// What the debug information says about it (`None`: only its lines are known).
    entry: Option<Entry>,
    /// The `DW_AT_decl_line`s of its copies with code (out-of-line or inlined).
    lines: BTreeSet<u64>,
}

/// The encoded form: each name with the `bincode` of its records.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    files: Vec<String>,
    functions: u64,
    #[serde(borrow)]
    names: Vec<(&'a str, &'a [u8])>,
}

/// The encoding of the stored map: `bincode` with variable-length integers (a third of the
/// size of fixed ones, so a third to read back).
fn codec() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

/// The map as the DWARF reader collects it.
#[derive(Default)]
struct Collected {
    entries: BTreeMap<SourceFunction, Entry>,
    /// The `DW_AT_decl_line`s of the functions with code (out-of-line or inlined copies).
    lines: BTreeMap<SourceFunction, BTreeSet<u64>>,
}

impl Collected {
    /// Encodes the collected map, grouped by name ([`Stored`]).
    fn encode(&self) -> Option<Vec<u8>> {
        // Both maps are sorted by name first: each name's records are one run of each. All
        // records go into one buffer, each name's run a range of it.
        let no_lines = BTreeSet::new();
        let mut records: Vec<(&str, RecordRef<'_>)> = self
            .entries
            .iter()
            .map(|(function, entry)| {
                let lines = self.lines.get(function).unwrap_or(&no_lines);
                (
                    function.name.as_str(),
                    RecordRef {
                        function,
                        entry: Some(entry),
                        lines,
                    },
                )
            })
            .collect();
        records.extend(
            self.lines
                .iter()
                .filter(|(function, _)| !self.entries.contains_key(*function))
                .map(|(function, lines)| {
                    let record = RecordRef {
                        function,
                        entry: None,
                        lines,
                    };
                    (function.name.as_str(), record)
                }),
        );
        records.sort_by_key(|(name, _)| *name);
        let mut buffer = Vec::new();
        let mut runs: Vec<(&str, Range<usize>)> = Vec::new();
        for run in records.chunk_by(|a, b| a.0 == b.0) {
            let start = buffer.len();
            let refs: Vec<&RecordRef<'_>> = run.iter().map(|(_, r)| r).collect();
            codec().serialize_into(&mut buffer, &refs).ok()?;
            runs.push((run[0].0, start..buffer.len()));
        }
        let files: BTreeSet<&str> = self.entries.keys().map(|f| f.file.as_str()).collect();
        codec()
            .serialize(&Stored {
                files: files.into_iter().map(str::to_string).collect(),
                functions: self.entries.len() as u64,
                names: runs
                    .into_iter()
                    .map(|(name, range)| (name, &buffer[range]))
                    .collect(),
            })
            .ok()
    }
}

/// A [`Record`] to encode, borrowed from the collected map (encodes as the record does).
#[derive(Serialize)]
struct RecordRef<'a> {
    function: &'a SourceFunction,
    entry: Option<&'a Entry>,
    lines: &'a BTreeSet<u64>,
}

impl InlineMap {
    /// The version of what [`InlineMap::to_bytes`] holds and of how the DWARF is read into it:
    /// a store keyed by it never gives a map an older reader made.
    pub const FORMAT: u32 = 1;

    /// Reads the map from the ELF file `elf`; `None` without (readable) debug information.
    pub fn from_elf(elf: &[u8]) -> Option<InlineMap> {
        let symbols = function_symbols(elf);
        let collected = with_dwarf(elf, |dwarf| read(dwarf, &symbols)).flatten()?;
        InlineMap::from_bytes(collected.encode()?)
    }

    /// The map as bytes, to keep it between runs (a binary's map depends only on its contents:
    /// keyed by its build id, it is read from DWARF once per binary, not once per run).
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A map [`InlineMap::to_bytes`] gave; `None` for bytes whose table is not one (a damaged or
    /// older entry: the caller reads the DWARF again). The records are decoded when a question
    /// names them; the bytes are meant to come from a store that checks their integrity (the
    /// object cache's SHA-1): a record that does not decode then reads as no function.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<InlineMap> {
        let stored: Stored<'_> = codec().deserialize(&bytes).ok()?;
        let base = bytes.as_ptr() as usize;
        let range = |part: &[u8]| {
            let start = (part.as_ptr() as usize).checked_sub(base)?;
            let end = start.checked_add(part.len())?;
            (end <= bytes.len()).then_some(start..end)
        };
        let names: Vec<(Range<usize>, Range<usize>)> = stored
            .names
            .iter()
            .map(|(name, records)| Some((range(name.as_bytes())?, range(records)?)))
            .collect::<Option<_>>()?;
        let sorted = stored.names.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted || stored.functions == 0 {
            return None;
        }
        let (files, functions) = (stored.files, usize::try_from(stored.functions).ok()?);
        let decoded = (0..names.len()).map(|_| OnceLock::new()).collect();
        Some(InlineMap {
            bytes,
            names,
            decoded,
            files,
            functions,
        })
    }

    /// How many source functions the debug information describes.
    pub fn len(&self) -> usize {
        self.functions
    }

    /// Whether it describes none (a map is only made when it describes some).
    pub fn is_empty(&self) -> bool {
        self.functions == 0
    }

    /// Every function named `name`, in any file, with what the debug information says.
    fn named(&self, name: &str) -> &[Record] {
        let text = |r: &Range<usize>| self.bytes.get(r.clone()).unwrap_or_default();
        let Ok(at) = self
            .names
            .binary_search_by(|(n, _)| text(n).cmp(name.as_bytes()))
        else {
            return &[];
        };
        self.decoded[at].get_or_init(|| {
            codec()
                .deserialize(text(&self.names[at].1))
                .unwrap_or_default()
        })
    }

    /// The source functions named `name`, in any file, with what the debug information says.
    pub fn everywhere<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a SourceFunction, &'a Entry)> + 'a {
        self.named(name)
            .iter()
            .filter_map(|r| Some((&r.function, r.entry.as_ref()?)))
    }

    /// The source functions named `name` declared in `file` (matched at a `/`: recorded paths
    /// may be absolute or relative to where the build ran).
    pub fn lookup<'a>(
        &'a self,
        name: &'a str,
        file: &'a str,
    ) -> impl Iterator<Item = (&'a SourceFunction, &'a Entry)> + 'a {
        self.everywhere(name).filter(move |(f, _)| f.is_in(file))
    }

    /// What the debug information says about `function`, if it describes it.
    fn entry(&self, function: &SourceFunction) -> Option<&Entry> {
        self.named(&function.name)
            .iter()
            .find(|r| &r.function == function)?
            .entry
            .as_ref()
    }

    /// The lines the debug information says the functions named `name` declared in `file` are
    /// declared at (`DW_AT_decl_line`: the line of the name in the definition), for those with
    /// code in the binary. Empty: not known.
    pub fn decl_lines(&self, name: &str, file: &str) -> BTreeSet<u64> {
        self.named(name)
            .iter()
            .filter(|r| r.function.is_in(file))
            .flat_map(|r| r.lines.iter().copied())
            .collect()
    }

    /// Whether the debug information describes any function declared in `file` (a file compiled
    /// with `-g` into this binary).
    pub fn knows_file(&self, file: &str) -> bool {
        self.files.iter().any(|f| file_matches(f, file))
    }

    /// The patch set of a change to the functions `changed` (`(name, file)`): each of them, and
    /// every function that holds an inlined copy of one of them, in any file, closed over the
    /// functions so added (a holder's own inlined copies elsewhere run its old code too). Each
    /// with its reason; the changed ones first, in the order given.
    pub fn patch_set(&self, changed: &[(String, String)]) -> Vec<PatchMember> {
        let mut out: Vec<PatchMember> = Vec::new();
        let mut queue: Vec<SourceFunction> = Vec::new();
        for (name, file) in changed {
            let found: Vec<_> = self.lookup(name, file).collect();
            if found.is_empty() {
                // Unknown to the debug information (new, or a file compiled without `-g`).
                out.push(PatchMember {
                    function: SourceFunction {
                        name: name.clone(),
                        file: file.clone(),
                    },
                    copies: Vec::new(),
                    reason: "changed".to_string(),
                });
            }
            for (function, entry) in found {
                if out.iter().all(|m| &m.function != function) {
                    out.push(PatchMember {
                        function: function.clone(),
                        copies: entry.copies.clone(),
                        reason: "changed".to_string(),
                    });
                    queue.push(function.clone());
                }
            }
        }
        let mut next = 0;
        while let Some(callee) = queue.get(next).cloned() {
            next += 1;
            let Some(entry) = self.entry(&callee) else {
                continue;
            };
            for (holder, _) in &entry.inlined_into {
                if out.iter().any(|m| &m.function == holder) {
                    continue;
                }
                out.push(PatchMember {
                    function: holder.clone(),
                    copies: self
                        .entry(holder)
                        .map(|e| e.copies.clone())
                        .unwrap_or_default(),
                    reason: format!("holds an inlined copy of {callee} per DWARF"),
                });
                queue.push(holder.clone());
            }
        }
        out
    }
}

/// Function symbols of the ELF file by address (the first name at an address wins; `.cold`
/// parts never start a function's entry).
fn function_symbols(elf: &[u8]) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    if let Ok(file) = object::File::parse(elf) {
        for symbol in file.symbols() {
            if symbol.kind() != SymbolKind::Text || symbol.address() == 0 {
                continue;
            }
            let Ok(name) = symbol.name() else { continue };
            if name.ends_with(".cold") || name.contains(".cold.") {
                continue;
            }
            out.entry(symbol.address())
                .or_insert_with(|| name.to_string());
        }
    }
    out
}

/// All units of the DWARF, with their start offsets in `.debug_info`, in section order.
struct Units<'a> {
    units: Vec<(usize, gimli::Unit<Slice<'a>>)>,
    names: HashMap<(usize, UnitOffset), Option<SourceFunction>>,
}

impl<'a> Units<'a> {
    /// The unit holding `.debug_info` offset `offset`, and the offset within it.
    fn locate(&self, offset: gimli::DebugInfoOffset) -> Option<(usize, UnitOffset)> {
        let at = self.units.partition_point(|(start, _)| *start <= offset.0);
        let index = at.checked_sub(1)?;
        let unit_offset = offset.to_unit_offset(&self.units[index].1.header)?;
        Some((index, unit_offset))
    }

    /// Where a reference attribute of unit `index` points.
    fn target(
        &self,
        index: usize,
        value: AttributeValue<Slice<'a>>,
    ) -> Option<(usize, UnitOffset)> {
        match value {
            AttributeValue::UnitRef(offset) => Some((index, offset)),
            AttributeValue::DebugInfoRef(offset) => self.locate(offset),
            _ => None,
        }
    }

    /// The `DW_AT_decl_line` of the entry at `at`, on it or through its
    /// `DW_AT_abstract_origin`/`DW_AT_specification` chain (the first link that has one).
    fn decl_line(&self, at: (usize, UnitOffset)) -> Option<u64> {
        let mut here = at;
        for _ in 0..8 {
            let (index, offset) = here;
            let entry = self.units[index].1.entry(offset).ok()?;
            if let Some(line) = entry
                .attr_value(gimli::DW_AT_decl_line)
                .and_then(|v| v.udata_value())
            {
                return Some(line);
            }
            let link = entry
                .attr_value(gimli::DW_AT_abstract_origin)
                .or_else(|| entry.attr_value(gimli::DW_AT_specification))?;
            here = self.target(index, link)?;
        }
        None
    }

    /// The source function of the entry at `at`: its name and declaring file, found on it or
    /// through its `DW_AT_abstract_origin`/`DW_AT_specification` chain (across units).
    fn function(
        &mut self,
        dwarf: &gimli::Dwarf<Slice<'a>>,
        at: (usize, UnitOffset),
    ) -> Option<SourceFunction> {
        if let Some(known) = self.names.get(&at) {
            return known.clone();
        }
        let mut name: Option<String> = None;
        let mut file: Option<String> = None;
        let mut here = at;
        let mut unit_file = None;
        // A chain is at most a few links long; the bound guards against cycles in bad input.
        for _ in 0..8 {
            let (index, offset) = here;
            let unit = &self.units[index].1;
            let Ok(entry) = unit.entry(offset) else { break };
            if name.is_none() {
                name = entry
                    .attr_value(gimli::DW_AT_name)
                    .and_then(|v| dwarf.attr_string(unit, v).ok())
                    .map(|s| String::from_utf8_lossy(s.slice()).into_owned());
            }
            if file.is_none() {
                file = entry
                    .attr_value(gimli::DW_AT_decl_file)
                    .and_then(|v| decl_file(dwarf, unit, v));
            }
            unit_file = unit_path(unit);
            let link = entry
                .attr_value(gimli::DW_AT_abstract_origin)
                .or_else(|| entry.attr_value(gimli::DW_AT_specification));
            match link.and_then(|v| self.target(index, v)) {
                Some(next) if name.is_none() || file.is_none() => here = next,
                _ => break,
            }
        }
        let found = name.map(|name| SourceFunction {
            name,
            file: file.or(unit_file).unwrap_or_default(),
        });
        self.names.insert(at, found.clone());
        found
    }
}

/// The path of file `value` (a `DW_AT_decl_file`) of `unit`'s line program.
fn decl_file(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    value: AttributeValue<Slice<'_>>,
) -> Option<String> {
    let index = match value {
        AttributeValue::FileIndex(i) | AttributeValue::Udata(i) => i,
        _ => return None,
    };
    let header = unit.line_program.as_ref()?.header();
    let file = header.file(index)?;
    let text = |v| {
        dwarf
            .attr_string(unit, v)
            .ok()
            .map(|s| String::from_utf8_lossy(s.slice()).into_owned())
    };
    let name = text(file.path_name())?;
    if name.starts_with('/') {
        return Some(normalize(&name));
    }
    let dir = file.directory(header).and_then(text);
    let comp_dir = unit
        .comp_dir
        .map(|d| String::from_utf8_lossy(d.slice()).into_owned());
    let path = match (dir, comp_dir) {
        (Some(d), _) if d.starts_with('/') => format!("{d}/{name}"),
        (Some(d), Some(c)) => format!("{c}/{d}/{name}"),
        (None, Some(c)) => format!("{c}/{name}"),
        (Some(d), None) => format!("{d}/{name}"),
        (None, None) => name,
    };
    Some(normalize(&path))
}

/// One entry of interest, as read before names are resolved (that needs the units mutably).
struct Found {
    offset: UnitOffset,
    tag: gimli::DwTag,
    depth: isize,
    /// Entry address of a subprogram's or inlined subroutine's code.
    code: Option<u64>,
    /// For a call site: the entry of the called function.
    callee: Option<(usize, UnitOffset)>,
    /// A subprogram that says every call of its code is described by a call site.
    all_calls: bool,
}

/// Reads the map: every concrete subprogram, inlined subroutine and call site of every unit.
fn read(dwarf: &gimli::Dwarf<Slice<'_>>, symbols: &HashMap<u64, String>) -> Option<Collected> {
    let mut units = Units {
        units: Vec::new(),
        names: HashMap::new(),
    };
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Some(start) = header.debug_info_offset() else {
            continue;
        };
        if let Ok(unit) = dwarf.unit(header) {
            units.units.push((start.0, unit));
        }
    }
    let mut map = Collected::default();
    for index in 0..units.units.len() {
        let mut found: Vec<Found> = Vec::new();
        {
            let unit = &units.units[index].1;
            let mut entries = unit.entries();
            while let Ok(Some(entry)) = entries.next_dfs() {
                let tag = entry.tag();
                if tag == gimli::DW_TAG_call_site || tag == gimli::DW_TAG_GNU_call_site {
                    let origin = entry
                        .attr_value(gimli::DW_AT_call_origin)
                        .or_else(|| entry.attr_value(gimli::DW_AT_abstract_origin));
                    if let Some(callee) = origin.and_then(|v| units.target(index, v)) {
                        found.push(Found {
                            offset: entry.offset(),
                            tag,
                            depth: entry.depth(),
                            code: None,
                            callee: Some(callee),
                            all_calls: false,
                        });
                    }
                    continue;
                }
                if tag != gimli::DW_TAG_subprogram && tag != gimli::DW_TAG_inlined_subroutine {
                    continue;
                }
                let entry_pc = entry
                    .attr_value(gimli::DW_AT_entry_pc)
                    .and_then(|v| dwarf.attr_address(unit, v).ok().flatten());
                let first_range = dwarf
                    .die_ranges(unit, entry)
                    .ok()
                    .and_then(|mut r| r.next().ok().flatten())
                    .map(|r| r.begin);
                let code = if tag == gimli::DW_TAG_subprogram {
                    entry_pc.or(first_range)
                } else {
                    first_range.or(entry_pc)
                };
                let all_calls = [gimli::DW_AT_call_all_calls, gimli::DW_AT_GNU_all_call_sites]
                    .into_iter()
                    .any(|a| matches!(entry.attr_value(a), Some(AttributeValue::Flag(true))));
                found.push(Found {
                    offset: entry.offset(),
                    tag,
                    depth: entry.depth(),
                    code,
                    callee: None,
                    all_calls,
                });
            }
        }
        // Concrete subprograms enclosing the current entry: (depth, function, entry address).
        let mut enclosing: Vec<(isize, Option<(SourceFunction, u64)>)> = Vec::new();
        for Found {
            offset,
            tag,
            depth,
            code,
            callee,
            all_calls,
        } in found
        {
            while enclosing.last().is_some_and(|(d, _)| *d >= depth) {
                enclosing.pop();
            }
            let holder = || enclosing.iter().rev().find_map(|(_, h)| h.clone());
            if let Some(callee) = callee {
                if let (Some(callee), Some((holder, _))) = (units.function(dwarf, callee), holder())
                {
                    map.entries.entry(holder).or_default().calls.insert(callee);
                }
                continue;
            }
            let function = units.function(dwarf, (index, offset));
            if let (Some(function), Some(_)) = (&function, code) {
                if let Some(line) = units.decl_line((index, offset)) {
                    map.lines.entry(function.clone()).or_default().insert(line);
                }
            }
            if tag == gimli::DW_TAG_subprogram {
                let concrete = match (function, code) {
                    (Some(function), Some(address)) if address != 0 => {
                        let copy = OutOfLineCopy {
                            address,
                            symbol: symbols.get(&address).cloned(),
                        };
                        let entry = map.entries.entry(function.clone()).or_default();
                        entry.all_calls |= all_calls;
                        if !entry.copies.contains(&copy) {
                            entry.copies.push(copy);
                            entry.copies.sort();
                        }
                        Some((function, address))
                    }
                    (Some(function), _) => {
                        map.entries.entry(function).or_default();
                        None
                    }
                    _ => None,
                };
                enclosing.push((depth, concrete));
            } else if let (Some(function), Some(_)) = (function, code) {
                let holder = holder();
                let entry = map.entries.entry(function.clone()).or_default();
                if let Some(holder) = holder.filter(|(h, _)| *h != function) {
                    entry.inlined_into.insert(holder);
                }
            }
        }
    }
    (!map.entries.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(dir: &std::path::Path, files: &[(&str, &str)], flags: &str) -> Vec<u8> {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let out = dir.join("prog");
        let status = std::process::Command::new("gcc")
            .args(flags.split_whitespace())
            .arg("-o")
            .arg(&out)
            .args(files.iter().map(|(n, _)| *n))
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(out).unwrap()
    }

    const RATE: &str = "int rate(int x) { return x * 3; }\n";
    const LIB: &str = "int rate(int x);\nstatic volatile int base = 14;\n__attribute__((noinline)) int value(void) { return rate(base); }\n";
    const MAIN: &str = "int value(void);\nint main(void) { return value() != 42; }\n";

    #[test]
    fn lto_inlines_across_files_and_the_map_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = build(
            dir.path(),
            &[("main.c", MAIN), ("lib.c", LIB), ("rate.c", RATE)],
            "-O2 -g -flto",
        );
        let map = InlineMap::from_elf(&bytes).expect("debug information");
        let main = map
            .everywhere("main")
            .next()
            .map(|(_, e)| e)
            .expect("main known");
        assert_eq!(main.copies.len(), 1, "{main:?}");
        assert!(
            main.calls.iter().any(|f| f.name == "value"),
            "main's call of value is a DW_TAG_call_site: {main:?}"
        );
        let (_, rate) = map.lookup("rate", "rate.c").next().expect("rate known");
        let holders: Vec<String> = rate
            .inlined_into
            .iter()
            .map(|(f, _)| f.to_string())
            .collect();
        assert_eq!(holders, ["`value` (lib.c)"], "{map:#?}");
        let set = map.patch_set(&[("rate".into(), "rate.c".into())]);
        // Read back from its bytes, the map answers the same; bytes that are not one are refused.
        let again = InlineMap::from_bytes(map.to_bytes().to_vec()).expect("decodes");
        assert_eq!(again.patch_set(&[("rate".into(), "rate.c".into())]), set);
        assert_eq!(again.len(), map.len());
        assert_eq!(
            again.decl_lines("value", "lib.c"),
            map.decl_lines("value", "lib.c")
        );
        let bytes = map.to_bytes();
        assert!(InlineMap::from_bytes(bytes[..bytes.len() / 2].to_vec()).is_none());
        assert!(InlineMap::from_bytes(b"not a map".to_vec()).is_none());
        assert!(InlineMap::from_bytes(Vec::new()).is_none());
        let got: Vec<(String, String)> = set
            .iter()
            .map(|m| (m.function.name.clone(), m.reason.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("rate".to_string(), "changed".to_string()),
                (
                    "value".to_string(),
                    "holds an inlined copy of `rate` (rate.c) per DWARF".to_string()
                )
            ]
        );
        assert_eq!(map.decl_lines("rate", "rate.c"), BTreeSet::from([1]));
        assert_eq!(map.decl_lines("value", "lib.c"), BTreeSet::from([3]));
        let value = &set[1].copies;
        assert_eq!(value.len(), 1);
        assert_eq!(value[0].symbol.as_deref(), Some("value"));
    }

    #[test]
    fn the_declaration_line_is_the_line_of_the_name_not_of_the_return_type() {
        let dir = tempfile::tempdir().unwrap();
        let source = "static int twice(int);\n\nstatic int\n__attribute__((noinline))\ntwice(int x)\n{\n  return 2 * x;\n}\n\nint\nmain(int argc, char **argv)\n{\n  (void)argv;\n  return twice(argc);\n}\n";
        let bytes = build(dir.path(), &[("main.c", source)], "-O2 -g -flto");
        let map = InlineMap::from_elf(&bytes).expect("debug information");
        assert_eq!(map.decl_lines("twice", "main.c"), BTreeSet::from([5]));
        assert_eq!(map.decl_lines("main", "main.c"), BTreeSet::from([11]));
        assert!(map.decl_lines("main", "other.c").is_empty());
    }

    #[test]
    fn garbage_and_binaries_without_dwarf_have_no_map() {
        assert!(InlineMap::from_elf(b"nope").is_none());
        let dir = tempfile::tempdir().unwrap();
        let bytes = build(
            dir.path(),
            &[("main.c", MAIN), ("lib.c", LIB), ("rate.c", RATE)],
            "-O2 -flto",
        );
        assert!(InlineMap::from_elf(&bytes).is_none());
    }
}
