//! The target process as the applier sees it before touching it: its mappings, the executable and
//! every mapped shared object (read from disk), their load biases and symbols. No ptrace needed.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::artifact::SymbolRef;
use crate::debuginfo::{compile_units, producers, static_local_addresses, DwarfAnswer};
use crate::error::ApplyError;
use crate::inline_map::InlineMap;
use crate::maps::{read_maps, Mapping};
use crate::scope::{read_scope, Scope};
use crate::symbols::{file_matches, read_module_symbols, FileGroup, ModSymbol, ModuleSymbols};

const PAGE: u64 = 4096;

/// One loaded ELF module of the target.
#[derive(Debug, Clone)]
pub(crate) struct Module {
    /// Path as shown in `/proc/PID/maps`.
    pub(crate) path: String,
    /// This is the main executable.
    pub(crate) is_exe: bool,
    /// Load bias: runtime address minus link-time address.
    pub(crate) bias: u64,
    /// Address ranges the module occupies.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// Its symbols.
    pub(crate) symbols: ModuleSymbols,
}

impl Module {
    /// The runtime address of a symbol of this module.
    pub(crate) fn address_of(&self, symbol: &ModSymbol) -> u64 {
        self.address_of_value(symbol.value)
    }

    /// The runtime address of link-time address `value` of this module.
    pub(crate) fn address_of_value(&self, value: u64) -> u64 {
        value.wrapping_add(self.bias)
    }
}

/// The local-symbol groups of `module` for source `file`: those whose `STT_FILE` name matches, or
/// (`lto`, the second try when no module has such a group) the unnamed groups link-time
/// optimisation leaves (its partitions have no source file name), where the file's statics live.
fn groups_for<'m>(module: &'m Module, file: &str, lto: bool) -> Vec<&'m FileGroup> {
    module
        .symbols
        .files
        .iter()
        .filter(|g| {
            if lto {
                is_lto_group(&g.file)
            } else {
                file_matches(&g.file, file)
            }
        })
        .collect()
}

/// An `STT_FILE` name of an LTO partition: empty, or the `ltrans` object's name.
fn is_lto_group(file: &str) -> bool {
    file.is_empty() || file.contains(".ltrans")
}

/// The local symbols of `group` that are `name`: exactly, or renamed `name.lto_priv.N` by LTO.
fn locals_named<'g>(group: &'g FileGroup, name: &'g str) -> impl Iterator<Item = &'g ModSymbol> {
    group
        .locals
        .iter()
        .filter(move |(key, _)| key.as_str() == name || is_lto_priv(key, name))
        .flat_map(|(_, symbols)| symbols.iter())
}

/// `name.lto_priv.N`.
fn is_lto_priv(symbol: &str, name: &str) -> bool {
    symbol
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(".lto_priv."))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `symbol` is the name gcc gives a static local `name`: `name.N`, possibly followed by
/// further `.suffix` parts (`name.0.lto_priv.0`).
fn is_static_local_name(symbol: &str, name: &str) -> bool {
    symbol
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split('.').next())
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A symbol found in the target.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Index of the module in [`Target::modules`].
    pub(crate) module: usize,
    /// The symbol.
    pub(crate) symbol: ModSymbol,
    /// Its runtime address (for IFUNCs: the resolver).
    pub(crate) address: u64,
    /// For file-local symbols, the `STT_FILE` name of the group.
    pub(crate) file: Option<String>,
}

/// The source files a process's binaries were compiled from (see [`Target::sources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFiles(Vec<String>);

impl SourceFiles {
    /// Whether repository path `file` is one of them (recorded paths may be absolute or
    /// relative to where the build ran: they match at a `/`).
    pub fn includes(&self, file: &str) -> bool {
        self.0.iter().any(|recorded| file_matches(recorded, file))
    }
}

/// A running process, inspected: mappings, modules and their symbols.
#[derive(Debug, Clone)]
pub struct Target {
    pid: i32,
    exe_path: PathBuf,
    pub(crate) modules: Vec<Module>,
    pub(crate) exe: usize,
    pub(crate) maps: Vec<Mapping>,
    /// The order the dynamic linker searches the modules in.
    pub(crate) scope: Scope,
    /// The executable's inline map, read on first use.
    inline_map: std::sync::OnceLock<Option<Arc<InlineMap>>>,
}

impl Target {
    /// Reads `/proc/PID/maps`, the executable and every mapped shared object, without stopping the
    /// process. A pid that does not exist gives [`ApplyError::NoSuchProcess`].
    pub fn inspect(pid: i32) -> Result<Target, ApplyError> {
        if pid <= 0 {
            return Err(ApplyError::NoSuchProcess(pid));
        }
        let maps = read_maps(pid)?;
        let exe_link = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ApplyError::NoSuchProcess(pid)
            } else {
                ApplyError::ProcRead {
                    pid,
                    what: format!("/proc/{pid}/exe"),
                    detail: e.to_string(),
                }
            }
        })?;
        let exe_name = exe_link.to_string_lossy().to_string();
        let mut modules = Vec::new();
        let mut exe = None;
        for (path, mappings) in group_by_path(&maps) {
            let is_exe = path == exe_name;
            let bytes = if is_exe {
                std::fs::read(format!("/proc/{pid}/exe")).map_err(|e| ApplyError::ModuleRead {
                    path: path.clone(),
                    detail: e.to_string(),
                })?
            } else {
                match read_elf_file(pid, &path, mappings[0]) {
                    Some(bytes) => bytes,
                    None => continue,
                }
            };
            let symbols = match read_module_symbols(&bytes) {
                Ok(symbols) => symbols,
                Err(detail) if is_exe => return Err(ApplyError::ModuleRead { path, detail }),
                Err(_) => continue,
            };
            let Some(bias) = load_bias(&mappings, &symbols.load_segments) else {
                if is_exe {
                    return Err(ApplyError::ModuleRead {
                        path,
                        detail: "its mappings match none of its PT_LOAD segments".into(),
                    });
                }
                continue;
            };
            if is_exe {
                exe = Some(modules.len());
            }
            let ranges = mappings.iter().map(|m| (m.start, m.end)).collect();
            modules.push(Module {
                path,
                is_exe,
                bias,
                ranges,
                symbols,
            });
        }
        let Some(exe) = exe else {
            return Err(ApplyError::ProcRead {
                pid,
                what: format!("/proc/{pid}/maps"),
                detail: format!("no mapping of the executable {exe_name}"),
            });
        };
        let scope = read_scope(pid, &modules, exe);
        Ok(Target {
            pid,
            exe_path: exe_link,
            modules,
            exe,
            maps,
            scope,
            inline_map: std::sync::OnceLock::new(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The ELF file of `module` (the executable through `/proc/PID/exe`, which stays readable
    /// when the file was replaced on disk).
    fn module_bytes(&self, module: &Module) -> std::io::Result<Vec<u8>> {
        if module.is_exe {
            std::fs::read(format!("/proc/{}/exe", self.pid))
        } else {
            std::fs::read(&module.path)
        }
    }

    /// What the debug information of the executable and its libraries says compiled the source
    /// `file`: the `DW_AT_producer` of each of its compilation units (gcc records the
    /// code-generation switches there). Empty without debug information.
    pub fn producers(&self, file: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for module in &self.modules {
            let Ok(bytes) = self.module_bytes(module) else {
                continue;
            };
            for producer in producers(&bytes, file) {
                if !out.contains(&producer) {
                    out.push(producer);
                }
            }
        }
        out
    }

    /// The layouts of the named types of each compilation unit of source `file` in the
    /// executable and its libraries (see [`crate::type_layout`]), one list per unit. Empty
    /// without debug information for it.
    pub fn type_layouts(&self, file: &str) -> Vec<Vec<crate::type_layout::TypeLayout>> {
        self.modules
            .iter()
            .filter_map(|module| self.module_bytes(module).ok())
            .filter_map(|bytes| crate::type_layout::unit_layouts(&bytes, Some(file)))
            .flatten()
            .collect()
    }

    /// The source files the process's code was compiled from, as far as the binaries say: the
    /// compilation units of every module's debug information, and the `STT_FILE` symbols of
    /// modules not built with link-time optimisation (whose partitions name no source). `None`
    /// when nothing says (stripped, LTO without `-g`): then every file may be part of it.
    pub fn sources(&self) -> Option<SourceFiles> {
        let mut files: Vec<String> = Vec::new();
        for module in &self.modules {
            if let Some(units) = self
                .module_bytes(module)
                .ok()
                .and_then(|bytes| compile_units(&bytes))
            {
                files.extend(units.into_iter().map(|u| u.path));
            }
            let groups = &module.symbols.files;
            if !groups.iter().any(|g| is_lto_group(&g.file)) {
                files.extend(groups.iter().map(|g| g.file.clone()));
            }
        }
        files.retain(|f| f.ends_with(".c"));
        files.sort();
        files.dedup();
        (!files.is_empty()).then_some(SourceFiles(files))
    }

    /// Whether any module's symbol table has a `static` variable `name` defined by source `file`
    /// (or has no symbol table at all, when nothing can be known).
    pub fn has_file_local_variable(&self, file: &str, name: &str) -> bool {
        !self.exe_module().symbols.has_symtab
            || [false, true].into_iter().any(|lto| {
                self.modules.iter().any(|m| {
                    groups_for(m, file, lto)
                        .iter()
                        .any(|g| locals_named(g, name).any(|s| !s.is_function()))
                })
            })
    }

    /// Where the executable's code of each source function went, from its debug information
    /// (see [`InlineMap`]); `None` without it. Read once per process and, in memory, once per
    /// build id: a second target running the same binary reuses the first one's map.
    pub fn inline_map(&self) -> Option<Arc<InlineMap>> {
        self.inline_map
            .get_or_init(|| {
                static BY_BUILD_ID: Mutex<Vec<(String, Option<Arc<InlineMap>>)>> =
                    Mutex::new(Vec::new());
                let id = self.build_id().map(str::to_string);
                if let Some(id) = &id {
                    let cache = BY_BUILD_ID.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some((_, map)) = cache.iter().find(|(known, _)| known == id) {
                        return map.clone();
                    }
                }
                let map = self
                    .module_bytes(self.exe_module())
                    .ok()
                    .and_then(|bytes| InlineMap::from_elf(&bytes))
                    .map(Arc::new);
                if let Some(id) = id {
                    let mut cache = BY_BUILD_ID.lock().unwrap_or_else(|e| e.into_inner());
                    cache.push((id, map.clone()));
                }
                map
            })
            .clone()
    }

    /// Gives the target the inline map of its executable read elsewhere (a cache keyed by its
    /// build id), unless it has one already: [`Target::inline_map`] then returns it.
    pub fn offer_inline_map(&self, map: InlineMap) {
        let _ = self.inline_map.set(Some(Arc::new(map)));
    }

    /// The GNU build id (hex) of the executable, if it has one.
    pub fn build_id(&self) -> Option<&str> {
        self.exe_module().symbols.build_id.as_deref()
    }

    /// The GNU build id (hex) of the module that `files` (source paths) were compiled into: the
    /// one module whose symbol table names them (a library built from them has its own build
    /// id), else the executable's.
    pub fn build_id_of_sources(&self, files: &[&str]) -> Option<&str> {
        let defines = |m: &Module| {
            files
                .iter()
                .any(|f| m.symbols.files.iter().any(|g| file_matches(&g.file, f)))
        };
        let mut modules = self.modules.iter().filter(|m| defines(m));
        let module = match (modules.next(), modules.next()) {
            (Some(only), None) => only,
            _ => self.exe_module(),
        };
        module.symbols.build_id.as_deref()
    }

    /// Whether the executable or a loaded library has GNU build id `id` (hex).
    pub fn has_build_id(&self, id: &str) -> bool {
        self.modules
            .iter()
            .any(|m| m.symbols.build_id.as_deref() == Some(id))
    }

    /// Path of the executable (the target of `/proc/PID/exe`).
    pub fn exe_path(&self) -> &Path {
        &self.exe_path
    }

    /// Whether any module's symbol table has a `static` function `name` defined by source `file`.
    pub fn has_file_local_function(&self, file: &str, name: &str) -> bool {
        [false, true].into_iter().any(|lto| {
            self.modules.iter().any(|m| {
                groups_for(m, file, lto)
                    .iter()
                    .any(|g| locals_named(g, name).any(ModSymbol::is_function))
            })
        })
    }

    /// The executable module.
    pub(crate) fn exe_module(&self) -> &Module {
        &self.modules[self.exe]
    }

    /// Looks a global symbol up the way the dynamic linker would: every module in the lookup
    /// scope's order (the link map: executable, `LD_PRELOAD`, `DT_NEEDED` breadth-first), the
    /// executable's `.symtab` before its `.dynsym`, then globals LTO made local. Within a table, a
    /// `GLOBAL` definition wins over a `WEAK` one; non-default symbol versions are ignored.
    pub(crate) fn lookup_global(&self, name: &str, want_function: bool) -> Option<Found> {
        self.lookup_in_scope(name, None, want_function, false)
            .or_else(|| self.lto_localized(name, want_function))
    }

    /// The first definition of `name` in the lookup scope with symbol version `version` (any
    /// definition of that version, default or not), or, without one, the default version.
    /// `exported_only`: only what `.dynsym` exports (what other modules' code can reach).
    pub(crate) fn lookup_in_scope(
        &self,
        name: &str,
        version: Option<&str>,
        want_function: bool,
        exported_only: bool,
    ) -> Option<Found> {
        self.lookup_in_order(
            &self.scope.order,
            name,
            version,
            want_function,
            exported_only,
        )
    }

    /// [`Target::lookup_in_scope`] over the modules of `order`.
    pub(crate) fn lookup_in_order(
        &self,
        order: &[usize],
        name: &str,
        version: Option<&str>,
        want_function: bool,
        exported_only: bool,
    ) -> Option<Found> {
        order.iter().find_map(|&index| {
            self.definition_in(index, name, version, want_function, exported_only)
        })
    }

    /// The definition of `name` module `index` exports (the executable, unless
    /// `exported_only`: also its `.symtab` globals), with the version rule of
    /// [`Target::lookup_in_scope`].
    pub(crate) fn definition_in(
        &self,
        index: usize,
        name: &str,
        version: Option<&str>,
        want_function: bool,
        exported_only: bool,
    ) -> Option<Found> {
        let module = self.modules.get(index)?;
        let symtab = module
            .is_exe
            .then_some(&module.symbols.symtab_globals)
            .filter(|_| version.is_none() && !exported_only);
        for table in symtab.into_iter().chain([&module.symbols.dynsym]) {
            let candidates = table.get(name).into_iter().flatten().filter(|s| {
                let version_ok = match version {
                    Some(wanted) => s.version.as_deref() == Some(wanted),
                    None => !s.hidden_version,
                };
                version_ok && (!want_function || s.is_function())
            });
            if let Some(symbol) = candidates.min_by_key(|s| s.weak) {
                return Some(Found {
                    module: index,
                    symbol: symbol.clone(),
                    address: module.address_of(symbol),
                    file: None,
                });
            }
        }
        None
    }

    /// The module whose mappings contain `address`.
    pub(crate) fn module_at(&self, address: u64) -> Option<usize> {
        self.modules.iter().position(|m| {
            m.ranges
                .iter()
                .any(|&(lo, hi)| lo <= address && address < hi)
        })
    }

    /// A global of the source that link-time optimisation made local to the executable (whole
    /// program: nothing outside uses it): found in the LTO partitions' locals when it is unique.
    pub(crate) fn lto_localized(&self, name: &str, want_function: bool) -> Option<Found> {
        let module = self.exe_module();
        let mut hits: Vec<&ModSymbol> = Vec::new();
        for group in module
            .symbols
            .files
            .iter()
            .filter(|g| is_lto_group(&g.file))
        {
            for symbol in locals_named(group, name) {
                if (!want_function || symbol.is_function())
                    && !hits.iter().any(|h| h.value == symbol.value)
                {
                    hits.push(symbol);
                }
            }
        }
        match hits.as_slice() {
            [symbol] => Some(Found {
                module: self.exe,
                symbol: (*symbol).clone(),
                address: module.address_of(symbol),
                file: None,
            }),
            _ => None,
        }
    }

    /// Looks up the `static` symbol `name` of source `file` in every module with a symbol table.
    /// `Ok(None)`: not found; an error for ambiguity, or when the executable is stripped and the
    /// symbol was not found elsewhere.
    pub(crate) fn lookup_file_local(
        &self,
        name: &str,
        file: &str,
        want_function: bool,
    ) -> Result<Option<Found>, ApplyError> {
        let mut hits: Vec<Found> = Vec::new();
        for lto in [false, true] {
            if !hits.is_empty() {
                break;
            }
            for (index, module) in self.modules.iter().enumerate() {
                for group in groups_for(module, file, lto) {
                    let symbols = locals_named(group, name);
                    for symbol in symbols.filter(|s| !want_function || s.is_function()) {
                        let address = module.address_of(symbol);
                        if !hits.iter().any(|h| h.address == address) {
                            hits.push(Found {
                                module: index,
                                symbol: symbol.clone(),
                                address,
                                file: Some(group.file.clone()),
                            });
                        }
                    }
                }
            }
        }
        let target = SymbolRef::FileLocal {
            name: name.into(),
            file: file.into(),
        };
        match hits.len() {
            0 if !self.exe_module().symbols.has_symtab => Err(ApplyError::NoSymbolTable {
                module: self.exe_module().path.clone(),
                target,
            }),
            0 => Ok(None),
            1 => Ok(hits.pop()),
            _ => Err(ApplyError::AmbiguousFileLocal {
                target,
                files: hits
                    .iter()
                    .filter_map(|h| h.file.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Finds the storage of the `static` local `name` of `function` in source `file`: from the
    /// DWARF of the module defining `file` when it has debug information, otherwise the unique
    /// local symbol `name.N` of that file's symbol group. `Ok(None)`: no module defines `file`.
    pub(crate) fn lookup_static_local(
        &self,
        function: &str,
        name: &str,
        file: &str,
    ) -> Result<Option<Found>, ApplyError> {
        let target = SymbolRef::StaticLocal {
            function: function.into(),
            name: name.into(),
            file: file.into(),
        };
        let refuse = |detail: String| ApplyError::StaticLocal {
            target: target.clone(),
            detail,
        };
        let any_named = self
            .modules
            .iter()
            .any(|m| !groups_for(m, file, false).is_empty());
        for (index, module) in self.modules.iter().enumerate() {
            let groups = groups_for(module, file, !any_named);
            if groups.is_empty() {
                continue;
            }
            let found = |value: u64, size: u64, group: Option<&str>| Found {
                module: index,
                symbol: ModSymbol {
                    name: name.to_string(),
                    value,
                    size,
                    st_type: object::elf::STT_OBJECT,
                    weak: false,
                    hidden_version: false,
                    version: None,
                    visibility: object::elf::STV_DEFAULT,
                },
                address: module.address_of_value(value),
                file: group.map(str::to_string),
            };
            if let Ok(bytes) = self.module_bytes(module) {
                if let DwarfAnswer::Addresses(addresses) =
                    static_local_addresses(&bytes, file, function, name)
                {
                    match addresses.as_slice() {
                        [one] => return Ok(Some(found(*one, 0, Some(file)))),
                        [] => {}
                        several => {
                            return Err(refuse(format!(
                                "the debug information of {} has {} variables of this name in `{function}`",
                                module.path,
                                several.len()
                            )))
                        }
                    }
                }
            }
            let mut candidates: Vec<(&str, &ModSymbol)> = Vec::new();
            for group in &groups {
                for (local, symbols) in &group.locals {
                    if !is_static_local_name(local, name) {
                        continue;
                    }
                    for symbol in symbols.iter().filter(|s| !s.is_function()) {
                        if !candidates.iter().any(|(_, c)| c.value == symbol.value) {
                            candidates.push((group.file.as_str(), symbol));
                        }
                    }
                }
            }
            return match candidates.as_slice() {
                [(group, symbol)] => Ok(Some(found(symbol.value, symbol.size, Some(group)))),
                [] => Err(refuse(format!(
                    "{} has neither debug information for it nor a `{name}.N` symbol of {file} (the compiler may have removed the variable)",
                    module.path
                ))),
                several => Err(refuse(format!(
                    "{} has no debug information for it and {} candidate symbols ({}); rebuild the target with -g",
                    module.path,
                    several.len(),
                    several
                        .iter()
                        .map(|(_, s)| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            };
        }
        if !self.exe_module().symbols.has_symtab {
            return Err(ApplyError::NoSymbolTable {
                module: self.exe_module().path.clone(),
                target,
            });
        }
        Ok(None)
    }

    /// Every function of the executable named `name`: its global definition and the `static` ones
    /// of each source file (deduplicated by address).
    pub(crate) fn exe_functions_named(&self, name: &str) -> Vec<Found> {
        let module = self.exe_module();
        let mut out: Vec<Found> = Vec::new();
        let globals = [&module.symbols.symtab_globals, &module.symbols.dynsym];
        let global_syms = globals
            .iter()
            .flat_map(|t| t.get(name).into_iter().flatten());
        let locals = module.symbols.files.iter().flat_map(|g| {
            g.locals
                .get(name)
                .into_iter()
                .flatten()
                .map(move |s| (Some(g.file.clone()), s))
        });
        for (file, symbol) in global_syms.map(|s| (None, s)).chain(locals) {
            let address = module.address_of(symbol);
            if symbol.is_function() && !out.iter().any(|f| f.address == address) {
                out.push(Found {
                    module: self.exe,
                    symbol: symbol.clone(),
                    address,
                    file,
                });
            }
        }
        out
    }

    /// The runtime address of the first symbol (of any module's `.symtab` or `.dynsym`, local or
    /// global) that starts after `address` in the same module.
    pub(crate) fn next_symbol_after(&self, address: u64) -> Option<u64> {
        let module = self.modules.iter().find(|m| {
            m.ranges
                .iter()
                .any(|&(lo, hi)| lo <= address && address < hi)
        })?;
        let symbols = &module.symbols;
        let all = symbols
            .symtab_globals
            .values()
            .chain(symbols.dynsym.values())
            .chain(symbols.files.iter().flat_map(|g| g.locals.values()))
            .flatten();
        all.filter(|s| s.size > 0 || s.is_function())
            .map(|s| module.address_of(s))
            .filter(|&a| a > address)
            .min()
    }

    /// The lowest and highest address of the executable's mappings.
    pub(crate) fn exe_span(&self) -> (u64, u64) {
        self.span_of(self.exe)
    }

    /// The lowest and highest address of module `index`'s mappings.
    pub(crate) fn span_of(&self, index: usize) -> (u64, u64) {
        let ranges = self.modules.get(index).map(|m| m.ranges.as_slice());
        let ranges = ranges.unwrap_or_default();
        let lo = ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let hi = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        (lo, hi)
    }
}

/// File-backed mappings grouped by path, in order of first appearance.
fn group_by_path(maps: &[Mapping]) -> Vec<(String, Vec<&Mapping>)> {
    let mut out: Vec<(String, Vec<&Mapping>)> = Vec::new();
    for mapping in maps {
        let Some(path) = mapping.path.as_deref() else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        match out.iter_mut().find(|(p, _)| p == path) {
            Some((_, list)) => list.push(mapping),
            None => out.push((path.to_string(), vec![mapping])),
        }
    }
    out
}

/// Reads a mapped file if it is ELF (checking the magic first, so big data files are not read).
/// Deleted or unreadable files are read through `/proc/PID/map_files`.
fn read_elf_file(pid: i32, path: &str, first: &Mapping) -> Option<Vec<u8>> {
    let via_proc = format!("/proc/{pid}/map_files/{:x}-{:x}", first.start, first.end);
    let candidates = [path.to_string(), via_proc];
    for candidate in candidates.iter().filter(|c| !c.ends_with(" (deleted)")) {
        let Ok(mut f) = std::fs::File::open(candidate) else {
            continue;
        };
        let mut magic = [0u8; 4];
        if f.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
            return None;
        }
        let mut bytes = magic.to_vec();
        if f.read_to_end(&mut bytes).is_ok() {
            return Some(bytes);
        }
    }
    None
}

/// Load bias from a mapping whose file offset is the page of some `PT_LOAD` segment's offset.
fn load_bias(mappings: &[&Mapping], segments: &[(u64, u64)]) -> Option<u64> {
    mappings.iter().find_map(|m| {
        segments
            .iter()
            .find(|(offset, _)| offset & !(PAGE - 1) == m.offset)
            .map(|(_, vaddr)| m.start.wrapping_sub(vaddr & !(PAGE - 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_pid_is_a_clear_error() {
        let err = Target::inspect(i32::MAX).unwrap_err();
        assert!(matches!(err, ApplyError::NoSuchProcess(_)), "{err}");
        assert!(matches!(
            Target::inspect(-3),
            Err(ApplyError::NoSuchProcess(-3))
        ));
    }

    #[test]
    fn lto_names() {
        assert!(is_lto_priv("calls.lto_priv.0", "calls"));
        assert!(!is_lto_priv("calls.lto_priv.", "calls"));
        assert!(!is_lto_priv("calls.0", "calls"));
        assert!(is_lto_group("") && is_lto_group("/tmp/ccx.ltrans0.ltrans.o"));
        assert!(!is_lto_group("lib.c"));
    }

    #[test]
    fn static_local_symbol_names() {
        assert!(is_static_local_name("n.0", "n"));
        assert!(is_static_local_name("n.12.lto_priv.0", "n"));
        assert!(!is_static_local_name("n", "n"));
        assert!(!is_static_local_name("nn.0", "n"));
        assert!(!is_static_local_name("n.x", "n"));
        assert!(!is_static_local_name("n.", "n"));
    }

    #[test]
    fn inspects_itself() {
        let target = Target::inspect(std::process::id() as i32).unwrap();
        assert!(target.exe_module().is_exe);
        assert!(target.lookup_global("malloc", true).is_some());
        // The lookup order is the dynamic linker's link map: the executable first, every
        // module once.
        assert!(target.scope.from_link_map);
        assert_eq!(target.scope.order.first(), Some(&target.exe));
        let mut order = target.scope.order.clone();
        order.sort_unstable();
        order.dedup();
        assert_eq!(order.len(), target.modules.len());
    }
}
