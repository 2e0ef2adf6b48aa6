//! Reading back the patches installed in a process from the process alone: every anonymous
//! mapping that starts with a ledger header is a patch region; its record says what was applied,
//! and the function entries say which jumps are in place right now.

use serde::Serialize;

use crate::artifact::{FunctionAction, Preimage};
use crate::error::ApplyError;
use crate::ledger::{self, LedgerFunction, LedgerRecord, LedgerState, LEDGER_PREFIX};
use crate::maps::read_maps;
use crate::ptrace::read_memory;
use crate::revert::unhex;
use crate::trampoline::{jump_bytes, INT3};

/// Largest header JSON read back (a bound against garbage lengths).
const MAX_JSON: usize = 16 << 20;

/// One patch found in a process.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledPatch {
    /// The patch id.
    pub patch_id: String,
    /// Order of application (higher is newer).
    pub sequence: u64,
    /// When it was applied, seconds since the Unix epoch.
    pub applied_at_unix: u64,
    /// The source revision the patch was made from (`OLD` of `OLD..NEW`), if recorded.
    pub old_revision: Option<String>,
    /// The source revision the patch brings the process to, if recorded.
    pub new_revision: Option<String>,
    /// The state: the header's state word, except that a `prepared` header whose jumps are in
    /// place (the tool was stopped after writing them) reads as `applied`.
    pub state: LedgerState,
    /// The state word as the header records it.
    pub header_state: LedgerState,
    /// Start of the region.
    pub region_address: u64,
    /// Size of the region.
    pub region_size: u64,
    /// The functions of the patch.
    pub functions: Vec<InstalledFunction>,
    /// The whole ledger record.
    #[serde(skip)]
    pub record: LedgerRecord,
}

/// One function of an installed patch.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledFunction {
    /// Source name.
    pub name: String,
    /// Source file defining the function (patches of older versions record it for `static`
    /// functions only).
    pub file: Option<String>,
    /// Replaced or added.
    pub action: FunctionAction,
    /// Entry of the replaced function, when the patch redirected one.
    pub old_address: Option<u64>,
    /// Address of the new code.
    pub new_address: u64,
    /// Size of the new code, when the ledger records it.
    pub new_size: Option<u64>,
    /// The jump island stub the entry jumps to, when the new code is out of `rel32` reach.
    pub via: Option<u64>,
    /// Whether the old entry jumps to this patch's code right now (false once reverted, or once
    /// a later patch redirected the same function).
    pub active: bool,
    /// Whether the entry starts with a breakpoint (`int3`) of a threadwise commit whose helper
    /// was killed before it took it back or completed the jump (the rest of the entry holds the
    /// original bytes or the jump's): a thread reaching it dies of `SIGTRAP`; `revert` puts the
    /// original bytes back.
    pub breakpoint: bool,
}

impl InstalledPatch {
    /// The addresses of its region.
    pub fn region(&self) -> std::ops::Range<u64> {
        self.region_address..self.region_address.saturating_add(self.region_size)
    }

    /// Whether the patch still has an effect (or a prepared region to settle).
    pub fn is_live(&self) -> bool {
        self.state != LedgerState::Reverted
    }

    /// The fingerprint of the new code this patch brought for `function` (its manifest's
    /// post-image), if its manifest records one.
    pub fn postimage(&self, function: &InstalledFunction) -> Option<&Preimage> {
        self.record
            .manifest
            .as_ref()?
            .functions
            .iter()
            .find(|f| {
                // Records of older versions name the file of `static` functions only.
                let file = f.file.as_deref().or(f.target.file());
                f.target.name() == function.name && file == function.file.as_deref()
            })?
            .postimage
            .as_ref()
    }
}

/// The patch whose code runs for the function at `entry`: the one among `patches` whose jump is
/// at that entry right now, with its record of the function.
pub(crate) fn in_effect_at(
    patches: &[InstalledPatch],
    entry: u64,
) -> Option<(&InstalledPatch, &InstalledFunction)> {
    patches.iter().find_map(|patch| {
        patch
            .functions
            .iter()
            .find(|f| f.active && f.old_address == Some(entry))
            .map(|f| (patch, f))
    })
}

/// Every patch region of process `pid`, oldest first (by sequence, then address). Regions whose
/// header cannot be decoded (another hotpatch version, damage) are skipped.
pub fn installed_patches(pid: i32) -> Result<Vec<InstalledPatch>, ApplyError> {
    let maps = read_maps(pid)?;
    let mut out = Vec::new();
    for mapping in maps
        .iter()
        .filter(|m| m.path.is_none() && m.perms.starts_with('r'))
    {
        let Ok(prefix) = read_memory(pid, mapping.start, LEDGER_PREFIX) else {
            continue;
        };
        let Some(len) = ledger::announced_length(&prefix) else {
            continue;
        };
        if len > MAX_JSON || (LEDGER_PREFIX + len) as u64 > mapping.end - mapping.start {
            continue;
        }
        let Ok(bytes) = read_memory(pid, mapping.start, LEDGER_PREFIX + len) else {
            continue;
        };
        let Ok(record) = ledger::decode(&bytes) else {
            continue;
        };
        if record.region_address != mapping.start {
            continue;
        }
        out.push(installed(pid, record, ledger::state(&bytes)));
    }
    out.sort_by_key(|p| (p.sequence, p.region_address));
    Ok(out)
}

fn installed(pid: i32, record: LedgerRecord, header_state: LedgerState) -> InstalledPatch {
    let functions: Vec<InstalledFunction> = record
        .functions
        .iter()
        .map(|f| {
            let old_address = f.overwritten.as_ref().map(|o| o.address);
            let active = old_address.is_some_and(|entry| jumps_to(pid, entry, f.entry_target()));
            let breakpoint = !active && left_breakpoint(pid, f);
            InstalledFunction {
                name: f.name.clone(),
                file: f.file.clone(),
                action: f.action,
                old_address,
                new_address: f.new_address,
                new_size: f.new_size,
                via: f.via,
                active,
                breakpoint,
            }
        })
        .collect();
    let state = match header_state {
        LedgerState::Prepared if functions.iter().any(|f| f.active) => LedgerState::Applied,
        other => other,
    };
    let manifest = record.manifest.as_ref();
    InstalledPatch {
        patch_id: record.patch_id.clone(),
        sequence: record.sequence,
        applied_at_unix: record.applied_at_unix,
        old_revision: manifest.and_then(|m| m.old_revision.clone()),
        new_revision: manifest.and_then(|m| m.new_revision.clone()),
        state,
        header_state,
        region_address: record.region_address,
        region_size: record.region_size,
        functions,
        record,
    }
}

/// Whether the entry of `function` holds a threadwise commit's `int3` followed by the rest of
/// its original bytes or of the patch's jump (the states a killed commit can leave).
fn left_breakpoint(pid: i32, function: &LedgerFunction) -> bool {
    let Some(range) = &function.overwritten else {
        return false;
    };
    let Some(original) = unhex(&range.original_hex) else {
        return false;
    };
    let jump = jump_bytes(range.address, function.entry_target());
    let Ok(now) = read_memory(pid, range.address, original.len()) else {
        return false;
    };
    now.first() == Some(&INT3)
        && original.len() == jump.len()
        && (now[1..] == original[1..] || now[1..] == jump[1..])
}

/// Whether the bytes at `entry` are the jump the applier writes from `entry` to `to`.
pub(crate) fn jumps_to(pid: i32, entry: u64, to: u64) -> bool {
    let jump = jump_bytes(entry, to);
    read_memory(pid, entry, jump.len()).is_ok_and(|b| b == jump)
}

/// The revision process `pid` runs according to its ledger: the `new_revision` of the newest
/// patch still applied, or `None` when no applied patch records one.
pub fn running_revision(pid: i32) -> Result<Option<String>, ApplyError> {
    Ok(installed_patches(pid)?
        .into_iter()
        .rev()
        .find(|p| p.state == LedgerState::Applied)
        .and_then(|p| p.new_revision))
}
