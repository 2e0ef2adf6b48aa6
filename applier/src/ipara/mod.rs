//! Keeping the register contract of replaced functions (`-fipa-ra`).
//!
//! gcc's interprocedural register allocation lets a caller keep values in call-clobbered
//! registers across a call when it saw the callee's body (same file, or the whole program under
//! LTO) and knows the callee leaves them alone. A separately compiled replacement may use those
//! registers and corrupt the unpatched caller. So, for every function the patch replaces:
//!
//! 1. its direct callers in the running module are found (`call`, and `jmp`/`jcc` tail calls,
//!    to its entry, from functions the patch does not replace);
//! 2. after each call site, a bounded liveness walk over the caller's code says which
//!    call-clobbered registers it may read before writing them (through returns and tail calls
//!    up to the callers' callers);
//! 3. of those, the ones the old code does not write (what the compiler knew) but the
//!    replacement may write (decoded from the linked patch) are at risk.
//!
//! Registers at risk are preserved by a save/restore thunk when the function takes no stack
//! arguments (proven from DWARF) and they are general or `xmm0-15` registers; otherwise the
//! patch is refused, naming the caller, the call site and the registers.

mod dwarf;
mod flow;
mod regs;
mod thunk;

use std::collections::BTreeMap;

use object::{Object, ObjectSection, SectionFlags};
use serde::Serialize;

use crate::artifact::FunctionAction;
use crate::error::ApplyError;
use crate::layout::Zone;
use crate::link::{Image, Linker};
use crate::object_file::Placement;
use crate::plan::Plan;
use crate::target::{Module, Target};
use flow::{clobbers, Bound, CodeSpace, Func, Liveness};
use regs::RegSet;

/// What the register contract check found for one replaced function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterContract {
    /// The replaced function.
    pub function: String,
    /// Call-clobbered registers the old code (with its callees) writes, as far as seen.
    pub old_writes: Vec<String>,
    /// Call-clobbered registers the replacement (with its callees) may write.
    pub new_writes: Vec<String>,
    /// Every call site checked.
    pub callers: Vec<CheckedCall>,
    /// What was done: `nothing at risk`, or `thunk` (the registers it saves are `saved`).
    pub action: String,
    /// The registers the thunk saves around the replacement (empty without one).
    pub saved: Vec<String>,
}

/// One call site of a replaced function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckedCall {
    /// The function holding the call.
    pub caller: String,
    /// Address of the call (or tail-call jump) instruction.
    pub site: u64,
    /// A tail call (`jmp`): what counts is what the caller's callers keep live.
    pub tail_call: bool,
    /// Call-clobbered registers the caller may read after the call before writing them.
    pub live: Vec<String>,
    /// Of those, the ones the old code leaves alone and the replacement may write.
    pub at_risk: Vec<String>,
}

/// A thunk to install: the jump at the old entry goes to it instead of the new code.
#[derive(Debug, Clone)]
pub(crate) struct Thunk {
    /// Index in [`Plan::functions`].
    pub(crate) function: usize,
    /// Offset in the text zone.
    pub(crate) offset: u64,
    /// The registers it preserves.
    saves: RegSet,
}

/// Checks the register contract of every replaced function of `plan` against the linked test
/// image `image`; records the result in the plan and reserves room for the thunks needed.
/// Refuses what no thunk can fix, unless its item is `accepted` (forced by the operator).
pub(crate) fn keep(
    target: &Target,
    plan: &mut Plan,
    image: &Image,
    accepted: &[String],
) -> Result<(), ApplyError> {
    let replaced: Vec<(usize, u64, u64)> = plan
        .functions
        .iter()
        .enumerate()
        .filter(|(_, f)| f.action == FunctionAction::Replace)
        .filter_map(|(i, f)| Some((i, f.old_address?, f.old_size.unwrap_or(0))))
        .collect();
    if replaced.is_empty() {
        return Ok(());
    }
    let linker = plan.linker(image.text_base, image.data_base);
    let patch_space = patch_space(plan, &linker, image);
    let mut by_module: BTreeMap<usize, Vec<(usize, u64, u64)>> = BTreeMap::new();
    for &(index, entry, size) in &replaced {
        let module = target
            .modules
            .iter()
            .position(|m| m.ranges.iter().any(|&(lo, hi)| lo <= entry && entry < hi));
        if let Some(module) = module {
            by_module
                .entry(module)
                .or_default()
                .push((index, entry, size));
        }
    }
    let mut contracts = Vec::new();
    let mut thunks = Vec::new();
    for (module_index, functions) in by_module {
        let module = &target.modules[module_index];
        // Without the callers' code nothing can be checked: refuse rather than guess.
        let (space, elf) =
            module_space(target, module).map_err(|detail| ApplyError::ModuleRead {
                path: module.path.clone(),
                detail: format!("{detail} (needed to check the callers of replaced functions)"),
            })?;
        let sites = space.sites();
        let excluded: Vec<(u64, u64)> = replaced
            .iter()
            .map(|&(_, entry, size)| (entry, entry.saturating_add(size.max(1))))
            .collect();
        let mut liveness = Liveness::new(&space, &sites, &excluded);
        for (index, entry, _) in functions {
            let name = plan.functions[index].target.name().to_string();
            let new_address = linker
                .symbol_address(plan.functions[index].object_symbol)
                .map_err(ApplyError::MalformedObject)?;
            let old = clobbers(&space, entry, Bound::Lower);
            let new = clobbers(&patch_space, new_address, Bound::Upper);
            let mut callers = Vec::new();
            let mut at_risk = RegSet::EMPTY;
            for site in liveness.sites_of(entry) {
                let live = liveness.live_at(&site);
                let risk = (live & new).minus(old);
                at_risk = at_risk | risk;
                callers.push(CheckedCall {
                    caller: space.funcs()[site.func].name.clone(),
                    site: site.at,
                    tail_call: site.tail,
                    live: live.names(),
                    at_risk: risk.names(),
                });
            }
            if !module.symbols.has_symtab {
                // Without a symbol table the callers cannot be found: any code may be one.
                let risk = new.minus(old) & sites.readable();
                at_risk = at_risk | risk;
                callers.push(CheckedCall {
                    caller: "any caller (the module has no symbol table to find them)".into(),
                    site: entry,
                    tail_call: false,
                    live: RegSet::all().names(),
                    at_risk: risk.names(),
                });
            }
            let mut action = if at_risk.is_empty() {
                "nothing at risk".to_string()
            } else {
                "thunk".to_string()
            };
            if !at_risk.is_empty() {
                match thunkable(&elf, module, entry, at_risk) {
                    Ok(()) => thunks.push(Thunk {
                        function: index,
                        offset: 0,
                        saves: at_risk,
                    }),
                    Err(why) => {
                        let first = callers.iter().find(|c| !c.at_risk.is_empty());
                        let (caller, site, registers) = first
                            .map(|c| (c.caller.clone(), c.site, c.at_risk.join(", ")))
                            .unwrap_or_default();
                        let refusal = ApplyError::RegisterContract {
                            function: name.clone(),
                            caller,
                            site,
                            registers,
                            detail: why,
                        };
                        if !refusal
                            .refusal_item()
                            .is_some_and(|item| accepted.contains(&item))
                        {
                            return Err(refusal);
                        }
                        action = format!("forced: {} left unprotected", at_risk.names().join(", "));
                        at_risk = RegSet::EMPTY;
                    }
                }
            }
            contracts.push(RegisterContract {
                function: name,
                old_writes: old.names(),
                new_writes: new.names(),
                callers,
                action,
                saved: at_risk.names(),
            });
        }
    }
    plan.register_contracts = contracts;
    if !thunks.is_empty() {
        reserve(plan, thunks);
    }
    Ok(())
}

/// Places the thunks and their `.eh_frame` records at the end of the text zone: the records
/// right after the patch's own (one sequence the unwinder reads), then the code.
fn reserve(plan: &mut Plan, mut thunks: Vec<Thunk>) {
    let placed = |thunks: &[Thunk]| -> Vec<(u64, RegSet)> {
        thunks.iter().map(|t| (t.offset, t.saves)).collect()
    };
    let cfi_len = thunk::cfi(&placed(&thunks), 0).len() as u64;
    let layout = &mut plan.layout;
    let cfi_at = match layout.eh_frame {
        Some((start, size)) if start.saturating_add(size) == layout.text_end => {
            let at = layout.reserve_text(cfi_len, 1);
            layout.eh_frame = Some((start, size.saturating_add(cfi_len)));
            at
        }
        _ => {
            let at = layout.reserve_text(cfi_len, 8);
            layout.eh_frame = Some((at, cfi_len));
            at
        }
    };
    for thunk in &mut thunks {
        thunk.offset = layout.reserve_text(thunk::thunk_len(thunk.saves), 16);
    }
    plan.thunk_cfi = (cfi_at, thunk::cfi(&placed(&thunks), cfi_at));
    plan.thunks = thunks;
}

/// Why no thunk can preserve `at_risk` for the function at `entry`, if so.
fn thunkable(elf: &[u8], module: &Module, entry: u64, at_risk: RegSet) -> Result<(), String> {
    let beyond = at_risk.beyond_sse2();
    if !beyond.is_empty() {
        return Err(format!(
            "a thunk saves general and xmm0-15 registers only, not {beyond}"
        ));
    }
    let low_pc = entry.wrapping_sub(module.bias);
    dwarf::registers_only(elf, low_pc)
        .map_err(|why| format!("a thunk's frame would shift stack arguments, and {why}"))
}

/// Writes each thunk of `plan` into the linked `image` and returns, per function of the plan,
/// where the jump at its old entry goes: its thunk, or its new code (`new_addresses`).
pub(crate) fn install(
    plan: &Plan,
    image: &mut Image,
    new_addresses: &[u64],
) -> Result<Vec<u64>, ApplyError> {
    let mut targets = new_addresses.to_vec();
    let (cfi_at, cfi) = &plan.thunk_cfi;
    let fits = usize::try_from(*cfi_at)
        .ok()
        .and_then(|at| image.text.get_mut(at..at.checked_add(cfi.len())?));
    match fits {
        Some(slot) => slot.copy_from_slice(cfi),
        None => {
            return Err(ApplyError::MalformedObject(
                "the thunks' frame records do not fit the region".into(),
            ))
        }
    }
    for thunk in &plan.thunks {
        let at = image.text_base.saturating_add(thunk.offset);
        let to = new_addresses.get(thunk.function).copied().unwrap_or(0);
        let overflow = || ApplyError::MalformedObject("the thunk does not fit its region".into());
        let code = thunk::thunk_code(at, to, thunk.saves).ok_or_else(overflow)?;
        let start = usize::try_from(thunk.offset).map_err(|_| overflow())?;
        let slot = image
            .text
            .get_mut(start..start + code.len())
            .ok_or_else(overflow)?;
        slot.copy_from_slice(&code);
        if let Some(target) = targets.get_mut(thunk.function) {
            *target = at;
        }
    }
    Ok(targets)
}

/// The linked patch code: its function symbols at their addresses in `image`.
fn patch_space(plan: &Plan, linker: &Linker, image: &Image) -> CodeSpace {
    let mut funcs = Vec::new();
    for (index, symbol) in plan.object.symbols.iter().enumerate() {
        let Placement::Section(section) = symbol.placement else {
            continue;
        };
        let in_text = matches!(plan.layout.sections.get(&section), Some((Zone::Text, _)));
        if symbol.st_type != object::elf::STT_FUNC || !in_text {
            continue;
        }
        if let Ok(start) = linker.symbol_address(index) {
            funcs.push(Func {
                start,
                end: start.saturating_add(symbol.size),
                name: symbol.name.clone(),
            });
        }
    }
    let code_len = usize::try_from(plan.layout.code_size).unwrap_or(usize::MAX);
    let code = image.text.get(..code_len).unwrap_or_default().to_vec();
    CodeSpace::new(funcs, vec![(image.text_base, code)])
}

/// The code of `module` as its file holds it (not as memory does: earlier patches wrote jumps
/// there), at run-time addresses, with its function symbols; and the file's bytes.
fn module_space(target: &Target, module: &Module) -> Result<(CodeSpace, Vec<u8>), String> {
    // The file the process mapped, even if a new build replaced the path since.
    let mapped = if module.is_exe {
        Some(format!("/proc/{}/exe", target.pid()))
    } else {
        module
            .ranges
            .first()
            .map(|(lo, hi)| format!("/proc/{}/map_files/{lo:x}-{hi:x}", target.pid()))
    };
    let bytes = match mapped.map(std::fs::read) {
        Some(Ok(bytes)) => bytes,
        _ => std::fs::read(&module.path).map_err(|e| e.to_string())?,
    };
    let chunks = {
        let file = object::File::parse(bytes.as_slice()).map_err(|e| e.to_string())?;
        file.sections()
            .filter(|s| match s.flags() {
                SectionFlags::Elf { sh_flags, .. } => {
                    sh_flags.0 & object::elf::SHF_EXECINSTR.0 != 0
                }
                _ => false,
            })
            .filter_map(|s| {
                let data = s.data().ok()?;
                Some((module.address_of_value(s.address()), data.to_vec()))
            })
            .collect::<Vec<_>>()
    };
    let symbols = &module.symbols;
    let funcs = symbols
        .symtab_globals
        .values()
        .chain(symbols.dynsym.values())
        .chain(symbols.files.iter().flat_map(|g| g.locals.values()))
        .flatten()
        .filter(|s| s.is_function() && s.size > 0)
        .map(|s| {
            let start = module.address_of(s);
            Func {
                start,
                end: start.saturating_add(s.size),
                name: s.name.clone(),
            }
        })
        .collect();
    let units = dwarf::compile_units(&bytes)
        .into_iter()
        .map(|(lo, hi, unit)| {
            (
                module.address_of_value(lo),
                module.address_of_value(hi),
                unit,
            )
        })
        .collect();
    let plt = symbols
        .plt_ranges
        .iter()
        .map(|&(lo, hi)| (module.address_of_value(lo), module.address_of_value(hi)))
        .collect();
    let space = CodeSpace::new(funcs, chunks)
        .with_units(units)
        .with_opaque(plt);
    Ok((space, bytes))
}
