//! The order in which the dynamic linker searches the modules of a process, read from the process
//! itself: `DT_DEBUG` in the executable's dynamic section points at `r_debug`, whose `r_map` is the
//! head of the link map, one `link_map` per loaded object in load order — the executable, the
//! `LD_PRELOAD` libraries, the `DT_NEEDED` libraries breadth-first, the dynamic linker, then what
//! `dlopen` loaded. Each entry is matched to a module by its dynamic section (`l_ld`).
//!
//! What the dynamic linker loaded at start (up to itself in the link map) is the global scope
//! every module searches. A library `dlopen` loaded later searches the global scope, then its own
//! local scope: itself and its `DT_NEEDED` libraries breadth-first.

use std::collections::VecDeque;

use crate::ptrace::read_word;
use crate::target::Module;

/// Most link-map entries followed (a bound against a damaged or cyclic list).
const MAX_ENTRIES: usize = 4096;
/// Most dynamic-section entries read.
const MAX_DYNAMIC: usize = 1024;
/// `DT_NULL`, `DT_DEBUG`.
const DT_NULL: u64 = 0;
const DT_DEBUG: u64 = 21;
/// Offsets in `struct r_debug` and `struct link_map` (glibc, x86-64; the public part).
const R_MAP: u64 = 8;
const L_LD: u64 = 16;
const L_NEXT: u64 = 24;

/// The lookup order of the modules, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// Indices of [`crate::target::Target::modules`], first searched first.
    pub(crate) order: Vec<usize>,
    /// The order is the dynamic linker's link map (otherwise it was rebuilt from the
    /// environment's `LD_PRELOAD` and the modules' `DT_NEEDED`).
    pub(crate) from_link_map: bool,
    /// How many modules at the start of `order` the dynamic linker loaded at start (the global
    /// scope); the others were `dlopen`ed.
    pub(crate) startup: usize,
}

impl Scope {
    /// The order in which module `requester`'s references are looked up: the global scope,
    /// then, for a `dlopen`ed library, itself and its `DT_NEEDED` libraries breadth-first; every
    /// other module after that (a last resort ld.so would not take).
    pub(crate) fn for_requester(&self, requester: usize, modules: &[Module]) -> Vec<usize> {
        let startup = &self.order[..self.startup.min(self.order.len())];
        if startup.contains(&requester) || !self.order.contains(&requester) {
            return self.order.clone();
        }
        let mut out = startup.to_vec();
        breadth_first(&[requester], modules, &mut out);
        for &index in &self.order {
            if !out.contains(&index) {
                out.push(index);
            }
        }
        out
    }
}

/// Appends to `out` the modules of `roots` and, breadth-first, the libraries their `DT_NEEDED`
/// entries name, each once (as `ld.so` orders the modules it loads).
fn breadth_first(roots: &[usize], modules: &[Module], out: &mut Vec<usize>) {
    let mut queue: VecDeque<usize> = roots.iter().copied().collect();
    while let Some(index) = queue.pop_front() {
        if out.contains(&index) {
            continue;
        }
        out.push(index);
        for name in modules.get(index).map_or(&[][..], |m| &m.symbols.needed) {
            if let Some(dependency) = modules.iter().position(|m| is_named(m, name)) {
                queue.push_back(dependency);
            }
        }
    }
}

/// The `LD_PRELOAD` libraries of process `pid` (from its environment at exec), as modules.
fn preloaded(pid: i32, modules: &[Module]) -> Vec<usize> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let value = environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(b"LD_PRELOAD="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    value
        .split([' ', ':'])
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let file = std::path::Path::new(entry)
                .file_name()?
                .to_string_lossy()
                .into_owned();
            modules
                .iter()
                .position(|m| m.path == entry || is_named(m, &file))
        })
        .collect()
}

/// Whether module `m` is the library `DT_NEEDED` names `name`: by its `DT_SONAME`, else its
/// file name.
fn is_named(m: &Module, name: &str) -> bool {
    m.symbols.soname.as_deref() == Some(name)
        || std::path::Path::new(&m.path)
            .file_name()
            .is_some_and(|f| f.to_string_lossy() == name)
}

/// Reads the lookup order of process `pid`. Without a readable link map, the order is rebuilt
/// as `ld.so` builds it: the executable, the `LD_PRELOAD` libraries of its environment, then
/// `DT_NEEDED` breadth-first. Modules neither lists follow in address order.
pub(crate) fn read_scope(pid: i32, modules: &[Module], exe: usize) -> Scope {
    let linked = link_map_order(pid, modules, exe).unwrap_or_default();
    let from_link_map = linked.first() == Some(&exe);
    let mut order = if from_link_map {
        linked
    } else {
        // What ld.so would have loaded: the executable, `LD_PRELOAD`, `DT_NEEDED` breadth-first.
        let mut roots = vec![exe];
        roots.extend(preloaded(pid, modules));
        let mut order = Vec::new();
        breadth_first(&roots, modules, &mut order);
        order
    };
    // The dynamic linker's own entry ends what it loaded at start.
    let interpreter = modules[exe]
        .symbols
        .interpreter
        .as_ref()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let rtld = order.iter().position(|&i| {
        interpreter.is_some() && std::fs::canonicalize(&modules[i].path).ok() == interpreter
    });
    let startup = match rtld {
        Some(position) if from_link_map => position + 1,
        _ => usize::MAX,
    };
    for index in 0..modules.len() {
        if !order.contains(&index) {
            order.push(index);
        }
    }
    Scope {
        order,
        from_link_map,
        startup,
    }
}

/// The modules in link-map order; `None` when the process has no readable link map.
fn link_map_order(pid: i32, modules: &[Module], exe: usize) -> Option<Vec<usize>> {
    let module = modules.get(exe)?;
    let dynamic = module.address_of_value(module.symbols.dynamic_address?);
    let r_debug = (0..MAX_DYNAMIC as u64).find_map(|i| {
        let entry = dynamic.checked_add(i * 16)?;
        match read_word(pid, entry) {
            Some(DT_DEBUG) => Some(entry.checked_add(8).and_then(|at| read_word(pid, at))),
            Some(DT_NULL) | None => Some(None),
            Some(_) => None,
        }
    })??;
    if r_debug == 0 {
        return None;
    }
    let mut entry = read_word(pid, r_debug.checked_add(R_MAP)?)?;
    let mut order = Vec::new();
    for _ in 0..MAX_ENTRIES {
        if entry == 0 {
            return Some(order);
        }
        let ld = read_word(pid, entry.checked_add(L_LD)?)?;
        let owner = modules
            .iter()
            .position(|m| m.ranges.iter().any(|&(lo, hi)| lo <= ld && ld < hi));
        if let Some(index) = owner.filter(|i| !order.contains(i)) {
            order.push(index);
        }
        entry = read_word(pid, entry.checked_add(L_NEXT)?)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::ModuleSymbols;

    fn module(path: &str, soname: Option<&str>, needed: &[&str]) -> Module {
        Module {
            path: path.to_string(),
            is_exe: false,
            bias: 0,
            ranges: Vec::new(),
            symbols: ModuleSymbols {
                soname: soname.map(str::to_string),
                needed: needed.iter().map(|n| n.to_string()).collect(),
                ..ModuleSymbols::default()
            },
        }
    }

    #[test]
    fn dependencies_come_breadth_first_each_once() {
        // exe needs liba and libb; liba needs libc; libb needs liba and libd.
        let modules = vec![
            module("/lib/libc.so.6", Some("libc.so.6"), &[]),
            module("/bin/app", None, &["liba.so", "libb.so.1"]),
            module("/opt/libd.so", None, &[]),
            module("/opt/liba.so", None, &["libc.so.6"]),
            module(
                "/opt/libb.so.1.2",
                Some("libb.so.1"),
                &["liba.so", "libd.so"],
            ),
        ];
        let mut order = Vec::new();
        breadth_first(&[1], &modules, &mut order);
        assert_eq!(order, [1, 3, 4, 0, 2]);
    }
}
