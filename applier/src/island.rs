//! Jump islands: when a patch replaces functions of modules too far apart for one region to be
//! within `rel32` reach of all of them (the executable and a shared library), the region goes
//! near one, and each other module gets a page of its own nearby holding one absolute jump per
//! replaced function (`jmp *[rip+0]; .quad code`). The function's entry then takes the 5-byte
//! `jmp rel32` to its stub, so a short function of a far library is patched like a near one.
//! The islands are recorded in the ledger and follow the region: unmapped with it, or kept.

use crate::ledger::Island;
use crate::plan::Plan;
use crate::target::Target;
use crate::trampoline::{absolute_jump, ABS_LEN};

/// Bytes per stub: the absolute jump, padded with `int3` to keep stubs aligned.
const STUB: u64 = 16;

/// The island planned for one far module: where it must be within reach of, and the redirects
/// (indices in [`Plan`]'s redirects) whose entries jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IslandPlan {
    /// Lowest and highest address of the module.
    pub(crate) near: (u64, u64),
    /// The redirects served, in stub order.
    pub(crate) redirects: Vec<usize>,
}

impl IslandPlan {
    /// Bytes to map: whole pages for all stubs.
    pub(crate) fn size(&self) -> u64 {
        (self.redirects.len() as u64 * STUB).next_multiple_of(crate::layout::PAGE)
    }

    /// Address of the stub of the `k`-th redirect served, with the island at `base`.
    fn stub(base: u64, k: usize) -> u64 {
        // Saturating: the header's size is bounded with every address at `u64::MAX`.
        base.saturating_add(k as u64 * STUB)
    }
}

/// Has an island serve the redirect numbered `redirect`, whose `entry` lies out of the region's
/// reach, when the entry is in a module the target knows: added to the island of that module,
/// made if needed. `false` when it can have none (no module: it takes the absolute jump itself).
pub(crate) fn serve(
    target: &Target,
    islands: &mut Vec<IslandPlan>,
    entry: u64,
    redirect: usize,
) -> bool {
    let Some(module) = target.module_at(entry) else {
        return false;
    };
    let span = target.span_of(module);
    match islands.iter_mut().find(|i| i.near == span) {
        Some(island) => island.redirects.push(redirect),
        None => islands.push(IslandPlan {
            near: span,
            redirects: vec![redirect],
        }),
    }
    true
}

/// Where each function's entry jumps with the islands at `bases` (one per [`Plan`] island, in
/// order) and the code at `code` (per function): its stub when an island serves it, else the
/// code; and the stub alone (`None` when the entry jumps to the code itself).
pub(crate) fn entry_targets(
    plan: &Plan,
    code: &[u64],
    bases: &[u64],
) -> (Vec<u64>, Vec<Option<u64>>) {
    let mut via = vec![None; code.len()];
    for (island, &base) in plan.islands.iter().zip(bases) {
        for (k, &redirect) in island.redirects.iter().enumerate() {
            if let Some(r) = plan.redirects.get(redirect) {
                via[r.function] = Some(IslandPlan::stub(base, k));
            }
        }
    }
    let targets = code
        .iter()
        .zip(&via)
        .map(|(&code, via)| via.unwrap_or(code))
        .collect();
    (targets, via)
}

/// The bytes of `island` at `base`: each served function's absolute jump to its code (`code`,
/// per function), `int3` between and after them.
pub(crate) fn image(plan: &Plan, island: &IslandPlan, code: &[u64]) -> Vec<u8> {
    let mut bytes = vec![0xcc; usize::try_from(island.size()).unwrap_or(0)];
    for (k, &redirect) in island.redirects.iter().enumerate() {
        let Some(r) = plan.redirects.get(redirect) else {
            continue;
        };
        let at = k * STUB as usize;
        if let (Some(slot), Some(&to)) = (bytes.get_mut(at..at + ABS_LEN), code.get(r.function)) {
            slot.copy_from_slice(&absolute_jump(to));
        }
    }
    bytes
}

/// The ledger's record of the islands mapped at `bases`.
pub(crate) fn records(plan: &Plan, bases: &[u64]) -> Vec<Island> {
    plan.islands
        .iter()
        .zip(bases)
        .map(|(island, &address)| Island {
            address,
            size: island.size(),
        })
        .collect()
}
