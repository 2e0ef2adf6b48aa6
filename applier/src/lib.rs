//! The applier: loads a relocatable patch object into a running process with ptrace, links it
//! against the process's own symbols, and redirects the old functions to the new code.
//!
//! Flow:
//! - [`PatchObject::parse`] reads the patch (ELF64 x86-64 `ET_REL`, optional `.hotpatch.manifest`).
//! - [`Target::inspect`] reads the process (maps, modules, symbols) without stopping it.
//! - [`plan`] decides what each function does (replace, add), resolves every undefined symbol
//!   (manifest bindings, file-local statics, globals bound by the dynamic linker's rules in
//!   `bind`, IFUNCs), checks each replaced function can
//!   hold its jump and test-links the patch; it writes nothing.
//! - [`apply`] maps a region within ±2 GiB of the patched module (ledger header, text zone, data
//!   zone; a jump island near each other module out of its reach), links and writes the patch while the target runs, then stops every thread only for the
//!   commit (safety check on every thread's unwound stack, jumps, ledger state, resume) and
//!   reports the pause.
//! - [`installed_patches`] reads the ledgers back from the process; [`revert()`] undoes the newest
//!   (or a named) patch, last-in first-out per function; [`reinstate()`] puts back one reverted
//!   with its region kept (a family's revert, all or nothing).
//!
//! Modules, one job each: [`object_file`] (the patch), [`target`] and `symbols`/`maps`/`scope`
//! (the process; `scope` its link map), `bind` (which definition a global name reaches),
//! [`plan`], `layout`/`link` (the region image), `region` (placing and mapping it),
//! `trampoline` (entry jumps), `island` (jump islands near modules out of the region's reach), `ipara` (the register contract with unpatched callers, and its
//! save/restore thunks), `commit` (the stop and its safety check), `unwind` (CFI stack
//! walks), `references` (the scan of memory for code addresses: suspended contexts, regions
//! still referenced), `written` (which pages a running process wrote since a moment: userfaultfd
//! write tracking, so the scan reads most memory before its stop), [`apply`] (also `check`, the live dry run, and `apply_at`, the breakpoint safe point),
//! [`inline_map`] (where each source function's code went, from the binary's DWARF),
//! [`ledger`] (the header format), [`installed`] (reading it back), [`mod@revert`],
//! [`mod@reinstate`], [`group`] (several
//! processes, all or none: each checked before any is written), [`family`] (a process and its
//! descendants running the same executable), [`ptrace`] (low-level process control) and [`artifact`] (the manifest
//! contract).

pub mod apply;
pub mod artifact;
mod bind;
mod commit;
mod commit_threadwise;
mod debuginfo;
pub mod error;
pub mod family;
pub mod group;
mod helper_commit;
pub mod inline_map;
pub mod installed;
mod ipara;
mod island;
mod layout;
pub mod ledger;
mod link;
mod maps;
pub mod object_file;
pub mod plan;
mod process_lock;
pub mod ptrace;
mod references;
mod region;
pub mod reinstate;
mod resident;
mod resolve;
pub mod revert;
mod scope;
mod symbols;
pub mod target;
#[cfg(test)]
mod test_support;
mod trampoline;
pub mod type_layout;
mod unwind;
mod written;

pub use apply::{
    apply, apply_at, check, AppliedFunction, ApplyOptions, ApplyReport, CheckReport, CommitReport,
};
pub use artifact::{FunctionAction, Manifest, Preimage, SymbolRef};
pub use error::ApplyError;
pub use family::family_of;
pub use group::{applied_sequence, apply_all, pids_of_exe, roll_back};
pub use inline_map::{InlineMap, PatchMember, SourceFunction};
pub use installed::{installed_patches, running_revision, InstalledFunction, InstalledPatch};
pub use ipara::{CheckedCall, RegisterContract};
pub use ledger::LedgerState;
pub use object_file::PatchObject;
pub use plan::{plan, plan_accepting, Plan, PlannedFunction, Resolution};
pub use ptrace::PtraceError;
pub use reinstate::reinstate;
pub use revert::{
    check_revert, release_reverted, revert, revert_at, revert_keeping_region, RestoredFunction,
    RevertReport,
};
pub use target::Target;
