//! The target process as the applier sees it before touching it: its mappings, the executable and
//! every mapped shared object (read from disk), their load biases and symbols. No ptrace needed.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::artifact::SymbolRef;
use crate::error::ApplyError;
use crate::maps::{read_maps, Mapping};
use crate::symbols::{file_matches, read_module_symbols, ModSymbol, ModuleSymbols};

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
        symbol.value.wrapping_add(self.bias)
    }
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

/// A running process, inspected: mappings, modules and their symbols.
#[derive(Debug, Clone)]
pub struct Target {
    pid: i32,
    exe_path: PathBuf,
    pub(crate) modules: Vec<Module>,
    pub(crate) exe: usize,
    pub(crate) maps: Vec<Mapping>,
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
        Ok(Target {
            pid,
            exe_path: exe_link,
            modules,
            exe,
            maps,
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Path of the executable (the target of `/proc/PID/exe`).
    pub fn exe_path(&self) -> &Path {
        &self.exe_path
    }

    /// Whether any module's symbol table has a `static` function `name` defined by source `file`.
    pub fn has_file_local_function(&self, file: &str, name: &str) -> bool {
        self.modules.iter().any(|m| {
            m.symbols.files.iter().any(|g| {
                file_matches(&g.file, file)
                    && g.locals
                        .get(name)
                        .is_some_and(|v| v.iter().any(ModSymbol::is_function))
            })
        })
    }

    /// The executable module.
    pub(crate) fn exe_module(&self) -> &Module {
        &self.modules[self.exe]
    }

    /// Looks a global symbol up the way the dynamic linker would: the executable (`.symtab`, then
    /// `.dynsym`), then each shared object's `.dynsym` in map order. Within a table, a `GLOBAL`
    /// definition wins over a `WEAK` one; non-default symbol versions are ignored.
    pub(crate) fn lookup_global(&self, name: &str, want_function: bool) -> Option<Found> {
        let order =
            std::iter::once(self.exe).chain((0..self.modules.len()).filter(|&i| i != self.exe));
        for index in order {
            let module = &self.modules[index];
            let tables: Vec<&HashMap<String, Vec<ModSymbol>>> = if module.is_exe {
                vec![&module.symbols.symtab_globals, &module.symbols.dynsym]
            } else {
                vec![&module.symbols.dynsym]
            };
            for table in tables {
                let candidates = table
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.hidden_version && (!want_function || s.is_function()));
                let best = candidates.min_by_key(|s| s.weak);
                if let Some(symbol) = best {
                    let address = module.address_of(symbol);
                    return Some(Found {
                        module: index,
                        symbol: symbol.clone(),
                        address,
                        file: None,
                    });
                }
            }
        }
        None
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
        for (index, module) in self.modules.iter().enumerate() {
            for group in &module.symbols.files {
                if !file_matches(&group.file, file) {
                    continue;
                }
                let symbols = group.locals.get(name).into_iter().flatten();
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

    /// The lowest and highest address of the executable's mappings.
    pub(crate) fn exe_span(&self) -> (u64, u64) {
        let ranges = &self.exe_module().ranges;
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
    fn inspects_itself() {
        let target = Target::inspect(std::process::id() as i32).unwrap();
        assert!(target.exe_module().is_exe);
        assert!(target.lookup_global("malloc", true).is_some());
    }
}
