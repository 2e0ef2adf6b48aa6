//! The applier: loads a relocatable patch object into a running process with ptrace, links it
//! against the process's own symbols, and redirects the old functions to the new code.
//!
//! Flow: [`Target::inspect`] reads the process (maps, modules, symbols) without stopping it;
//! [`plan`] resolves every symbol the patch needs and every function it replaces and checks them;
//! [`apply`] allocates a region in the target, links and writes the code while the target runs,
//! then stops every thread only for the commit (checks, jumps, resume) and reports the pause.

pub mod artifact;
pub mod ptrace;
