//! The differ: reads two revisions of a C code base and classifies what changed, function by
//! function.
//!
//! Revisions come from git objects ([`read_git_revision`]) or plain directories
//! ([`Snapshot::from_dir`]); [`diff_snapshots`] parses every changed `.c` file on both sides with
//! tree-sitter-c ([`index`]) and compares functions on tokens, so whitespace and comments never
//! make a change.

mod changeset;
mod compare;
mod error;
mod git;
pub mod index;
mod quarantine;
mod snapshot;

pub use changeset::{Change, ChangeSet, FunctionChange};
pub use compare::diff_snapshots;
pub use error::DifferError;
pub use git::{parse_range, read_git_revision};
pub use snapshot::Snapshot;
