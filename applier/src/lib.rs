//! The applier: loads a relocatable patch object into a running process with ptrace, links it
//! against the process's own symbols, and redirects the old functions to the new code.
//!
//! Flow:
//! - [`PatchObject::parse`] reads the patch (ELF64 x86-64 `ET_REL`, optional `.hotpatch.manifest`).
//! - [`Target::inspect`] reads the process (maps, modules, symbols) without stopping it.
//! - [`plan`] decides what each function does (replace, add), resolves every undefined symbol
//!   (manifest bindings, file-local statics, globals, IFUNCs), checks each replaced function can
//!   hold its jump and test-links the patch; it writes nothing.
//! - [`apply`] maps a region within ±2 GiB of the executable (ledger header, text zone, data zone),
//!   links and writes the patch while the target runs, then stops every thread only for the
//!   commit (safety check, jumps, resume) and reports the pause.
//!
//! Modules, one job each: [`object_file`] (the patch), [`target`] and `symbols`/`maps` (the
//! process), [`plan`], `layout`/`link` (the region image), `region` (placing and mapping it),
//! `trampoline` (entry jumps), `commit` (the stop), [`apply`], [`ledger`] (the header format),
//! [`ptrace`] (low-level process control) and [`artifact`] (the manifest contract).

pub mod apply;
pub mod artifact;
mod commit;
pub mod error;
mod layout;
pub mod ledger;
mod link;
mod maps;
pub mod object_file;
pub mod plan;
pub mod ptrace;
mod region;
mod resolve;
mod symbols;
pub mod target;
mod trampoline;

pub use apply::{apply, AppliedFunction, ApplyOptions, ApplyReport};
pub use artifact::{FunctionAction, Manifest, SymbolRef};
pub use error::ApplyError;
pub use object_file::PatchObject;
pub use plan::{plan, Plan, PlannedFunction, Resolution};
pub use ptrace::PtraceError;
pub use target::Target;
