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

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
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
    /// What the debug information says about it.
    entry: Entry,
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

/// A source function met while reading the DWARF, interned: an index of
/// [`Collected::functions`].
type FunctionId = u32;

/// An interned source function's key: its name, borrowed from the DWARF's strings (owned only
/// when it is not UTF-8), and the index of its file in [`Collected::files`].
type FunctionKey<'a> = (Cow<'a, str>, u32);

/// What the reader collects of one source function. Functions are referred to by index and
/// names are borrowed: a binary describes tens of thousands of functions, and allocating (and
/// freeing) two strings for every mention of one cost more than reading the DWARF itself
/// (BENCHMARKS.md (f)).
#[derive(Default)]
struct Collecting<'a> {
    /// Whether the debug information has an entry of its own for it (a function only called
    /// from described code has none).
    described: bool,
    /// Its out-of-line copies: entry address and the symbol there.
    copies: Vec<(u64, Option<&'a str>)>,
    /// The functions holding an inlined copy of it, each with the address of its copy that does.
    inlined_into: Vec<(FunctionId, u64)>,
    /// The functions its code calls.
    calls: Vec<FunctionId>,
    /// See [`Entry::all_calls`].
    all_calls: bool,
    /// The `DW_AT_decl_line`s of its copies with code (out-of-line or inlined).
    lines: Vec<u64>,
}

/// The map as the DWARF reader collects it.
#[derive(Default)]
struct Collected<'a> {
    /// Every function met, with its key and what was collected of it.
    functions: Vec<(FunctionKey<'a>, Collecting<'a>)>,
    /// The index of each key in `functions`.
    ids: HashMap<FunctionKey<'a>, FunctionId>,
    /// Every file a function is declared in.
    files: Vec<String>,
    /// The index of each file in `files`.
    file_ids: HashMap<String, u32>,
}

impl<'a> Collected<'a> {
    /// The id of the function `name` declared in file `file`, interned on first sight.
    fn function(&mut self, name: Cow<'a, str>, file: u32) -> FunctionId {
        let functions = &mut self.functions;
        *self.ids.entry((name, file)).or_insert_with_key(|key| {
            functions.push((key.clone(), Collecting::default()));
            (functions.len() - 1) as FunctionId
        })
    }

    /// The index of file `path`, interned on first sight.
    fn file(&mut self, path: String) -> u32 {
        let files = &mut self.files;
        *self.file_ids.entry(path).or_insert_with_key(|path| {
            files.push(path.clone());
            (files.len() - 1) as u32
        })
    }

    /// What is collected of function `id`.
    fn at(&mut self, id: FunctionId) -> &mut Collecting<'a> {
        &mut self.functions[id as usize].1
    }

    /// Function `id` as the map names it.
    fn source(&self, id: FunctionId) -> FunctionRef<'_> {
        let ((name, file), _) = &self.functions[id as usize];
        FunctionRef {
            name,
            file: &self.files[*file as usize],
        }
    }

    /// Whether any function has an entry of its own.
    fn describes_any(&self) -> bool {
        self.functions.iter().any(|(_, c)| c.described)
    }

    /// Encodes the collected map: the described functions sorted by name and file, each name's
    /// records one range of a buffer ([`Stored`]).
    fn encode(&self) -> Option<Vec<u8>> {
        let mut described: Vec<FunctionId> = (0..self.functions.len() as FunctionId)
            .filter(|&id| self.functions[id as usize].1.described)
            .collect();
        described.sort_by_cached_key(|&id| self.source(id));
        let mut buffer = Vec::new();
        let mut runs: Vec<(&str, Range<usize>)> = Vec::new();
        for run in described.chunk_by(|&a, &b| self.source(a).name == self.source(b).name) {
            let start = buffer.len();
            let records: Vec<RecordRef<'_>> = run.iter().map(|&id| self.record(id)).collect();
            codec().serialize_into(&mut buffer, &records).ok()?;
            runs.push((self.source(run[0]).name, start..buffer.len()));
        }
        let files: BTreeSet<&str> = described.iter().map(|&id| self.source(id).file).collect();
        codec()
            .serialize(&Stored {
                files: files.into_iter().map(str::to_string).collect(),
                functions: described.len() as u64,
                names: runs
                    .into_iter()
                    .map(|(name, range)| (name, &buffer[range]))
                    .collect(),
            })
            .ok()
    }

    /// The record of function `id`, its sets sorted and without repeats.
    fn record(&self, id: FunctionId) -> RecordRef<'_> {
        fn set<T: Ord>(mut items: Vec<T>) -> Vec<T> {
            items.sort();
            items.dedup();
            items
        }
        let collected = &self.functions[id as usize].1;
        let copies = set(collected.copies.clone())
            .into_iter()
            .map(|(address, symbol)| CopyRef { address, symbol })
            .collect();
        let inlined_into = collected.inlined_into.iter();
        RecordRef {
            function: self.source(id),
            entry: EntryRef {
                copies,
                inlined_into: set(inlined_into.map(|&(h, at)| (self.source(h), at)).collect()),
                calls: set(collected.calls.iter().map(|&c| self.source(c)).collect()),
                all_calls: collected.all_calls,
            },
            lines: set(collected.lines.clone()),
        }
    }
}

/// A [`SourceFunction`] borrowed from the collected map (encodes as one; sorts as one).
#[derive(Serialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FunctionRef<'a> {
    name: &'a str,
    file: &'a str,
}

/// An [`OutOfLineCopy`] borrowed from the collected map (encodes as one).
#[derive(Serialize)]
struct CopyRef<'a> {
    address: u64,
    symbol: Option<&'a str>,
}

/// An [`Entry`] borrowed from the collected map (encodes as one: a sorted sequence without
/// repeats encodes as the set).
#[derive(Serialize)]
struct EntryRef<'a> {
    copies: Vec<CopyRef<'a>>,
    inlined_into: Vec<(FunctionRef<'a>, u64)>,
    calls: Vec<FunctionRef<'a>>,
    all_calls: bool,
}

/// A [`Record`] borrowed from the collected map (encodes as one).
#[derive(Serialize)]
struct RecordRef<'a> {
    function: FunctionRef<'a>,
    entry: EntryRef<'a>,
    lines: Vec<u64>,
}
impl InlineMap {
    /// The version of what [`InlineMap::to_bytes`] holds and of how the DWARF is read into it:
    /// a store keyed by it never gives a map an older reader made.
    pub const FORMAT: u32 = 2;

    /// Reads the map from the ELF file `elf`; `None` without (readable) debug information.
    pub fn from_elf(elf: &[u8]) -> Option<InlineMap> {
        let symbols = function_symbols(elf);
        let bytes = with_dwarf(elf, |dwarf| read(dwarf, &symbols)?.encode()).flatten()?;
        InlineMap::from_bytes(bytes)
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
        self.named(name).iter().map(|r| (&r.function, &r.entry))
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
            .find(|r| &r.function == function)
            .map(|r| &r.entry)
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
fn function_symbols(elf: &[u8]) -> HashMap<u64, &str> {
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
            out.entry(symbol.address()).or_insert(name);
        }
    }
    out
}

/// All units of the DWARF, with their start offsets in `.debug_info`, in section order.
struct Units<'a> {
    units: Vec<(usize, gimli::Unit<Slice<'a>>)>,
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
}

/// What an entry and the chain of its `DW_AT_abstract_origin`/`DW_AT_specification` links say.
#[derive(Clone, Copy)]
struct Described {
    /// Its source function (`None`: no name on the chain).
    function: Option<FunctionId>,
    /// Its `DW_AT_decl_line`: of the first link that has one.
    line: Option<u64>,
}

/// The reader of one binary's DWARF: the units, the map collected so far, and what it has
/// already worked out about entries and files (each is looked up once).
struct Reader<'a, 'r> {
    dwarf: &'r gimli::Dwarf<Slice<'a>>,
    units: &'r Units<'a>,
    symbols: &'r HashMap<u64, &'a str>,
    map: Collected<'a>,
    /// Entries described so far, by unit index and offset.
    described: HashMap<(usize, UnitOffset), Described>,
    /// Each unit's `DW_AT_decl_file` values, as interned files, once looked up.
    decl_files: Vec<HashMap<u64, Option<u32>>>,
    /// Each unit's own path as an interned file, once looked up.
    unit_files: Vec<Option<u32>>,
}

impl<'a> Reader<'a, '_> {
    /// What the entry at `at` says, on it or through its `DW_AT_abstract_origin` /
    /// `DW_AT_specification` chain (across units): the name and declaring file of the first
    /// links that have them (the file falls back to the unit of the last link), and the line.
    fn describe(&mut self, at: (usize, UnitOffset)) -> Described {
        if let Some(known) = self.described.get(&at) {
            return *known;
        }
        let (mut name, mut file, mut line) = (None, None, None);
        let mut here = at;
        let mut last_unit = at.0;
        // A chain is at most a few links long; the bound guards against cycles in bad input.
        for _ in 0..8 {
            let (index, offset) = here;
            let unit = &self.units.units[index].1;
            let Ok(entry) = unit.entry(offset) else { break };
            last_unit = index;
            if name.is_none() {
                name = entry
                    .attr_value(gimli::DW_AT_name)
                    .and_then(|v| self.dwarf.attr_string(unit, v).ok())
                    .map(|s| String::from_utf8_lossy(s.slice()));
            }
            if file.is_none() {
                file = entry
                    .attr_value(gimli::DW_AT_decl_file)
                    .and_then(|v| self.decl_file(index, v));
            }
            if line.is_none() {
                line = entry
                    .attr_value(gimli::DW_AT_decl_line)
                    .and_then(|v| v.udata_value());
            }
            let link = entry
                .attr_value(gimli::DW_AT_abstract_origin)
                .or_else(|| entry.attr_value(gimli::DW_AT_specification));
            match link.and_then(|v| self.units.target(index, v)) {
                Some(next) if name.is_none() || file.is_none() || line.is_none() => here = next,
                _ => break,
            }
        }
        let function = name.map(|name| {
            let file = file.unwrap_or_else(|| self.unit_file(last_unit));
            self.map.function(name, file)
        });
        let found = Described { function, line };
        self.described.insert(at, found);
        found
    }

    /// The interned file of `DW_AT_decl_file` value `value` of unit `index`.
    fn decl_file(&mut self, index: usize, value: AttributeValue<Slice<'a>>) -> Option<u32> {
        let number = match value {
            AttributeValue::FileIndex(i) | AttributeValue::Udata(i) => i,
            _ => return None,
        };
        if let Some(known) = self.decl_files[index].get(&number) {
            return *known;
        }
        let path = decl_file(self.dwarf, &self.units.units[index].1, number);
        let file = path.map(|p| self.map.file(p));
        self.decl_files[index].insert(number, file);
        file
    }

    /// The interned path of unit `index` (empty when it has none).
    fn unit_file(&mut self, index: usize) -> u32 {
        if let Some(known) = self.unit_files[index] {
            return known;
        }
        let path = unit_path(&self.units.units[index].1).unwrap_or_default();
        let file = self.map.file(path);
        self.unit_files[index] = Some(file);
        file
    }

    /// Reads unit `index` into the map: its concrete subprograms, inlined subroutines and call
    /// sites.
    fn read_unit(&mut self, index: usize) {
        let found = self.scan(index);
        // Concrete subprograms enclosing the current entry: (depth, function, entry address).
        let mut enclosing: Vec<(isize, Option<(FunctionId, u64)>)> = Vec::new();
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
            let holder = enclosing.iter().rev().find_map(|(_, h)| *h);
            if let Some(callee) = callee {
                if let (Some(callee), Some((holder, _))) = (self.describe(callee).function, holder)
                {
                    let holder = self.map.at(holder);
                    holder.described = true;
                    holder.calls.push(callee);
                }
                continue;
            }
            let here = self.describe((index, offset));
            let Some(function) = here.function else {
                if tag == gimli::DW_TAG_subprogram {
                    enclosing.push((depth, None));
                }
                continue;
            };
            let symbols = self.symbols;
            let collected = self.map.at(function);
            collected.described |= tag == gimli::DW_TAG_subprogram || code.is_some();
            if let (Some(line), Some(_)) = (here.line, code) {
                collected.lines.push(line);
            }
            if tag == gimli::DW_TAG_subprogram {
                let address = code.filter(|a| *a != 0);
                if let Some(address) = address {
                    collected.all_calls |= all_calls;
                    collected
                        .copies
                        .push((address, symbols.get(&address).copied()));
                }
                enclosing.push((depth, address.map(|a| (function, a))));
            } else if code.is_some() {
                if let Some(holder) = holder.filter(|(h, _)| *h != function) {
                    collected.inlined_into.push(holder);
                }
            }
        }
    }

    /// The entries of interest of unit `index`, in order, with their attributes read.
    fn scan(&self, index: usize) -> Vec<Found> {
        let dwarf = self.dwarf;
        let unit = &self.units.units[index].1;
        let mut found: Vec<Found> = Vec::new();
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            let tag = entry.tag();
            if tag == gimli::DW_TAG_call_site || tag == gimli::DW_TAG_GNU_call_site {
                let origin = entry
                    .attr_value(gimli::DW_AT_call_origin)
                    .or_else(|| entry.attr_value(gimli::DW_AT_abstract_origin));
                if let Some(callee) = origin.and_then(|v| self.units.target(index, v)) {
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
        found
    }
}

/// The path of file number `index` (a `DW_AT_decl_file`) of `unit`'s line program.
fn decl_file(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    index: u64,
) -> Option<String> {
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

/// One entry of interest, as scanned before names are resolved (that needs the reader mutably).
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
/// `None` when it describes no function.
fn read<'a>(
    dwarf: &gimli::Dwarf<Slice<'a>>,
    symbols: &HashMap<u64, &'a str>,
) -> Option<Collected<'a>> {
    let mut units = Units { units: Vec::new() };
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Some(start) = header.debug_info_offset() else {
            continue;
        };
        if let Ok(unit) = dwarf.unit(header) {
            units.units.push((start.0, unit));
        }
    }
    let count = units.units.len();
    let mut reader = Reader {
        dwarf,
        units: &units,
        symbols,
        map: Collected::default(),
        described: HashMap::new(),
        decl_files: vec![HashMap::new(); count],
        unit_files: vec![None; count],
    };
    for index in 0..count {
        reader.read_unit(index);
    }
    let map = reader.map;
    map.describes_any().then_some(map)
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
