//! The differ: reads two revisions of a C code base and classifies what changed, function by
//! function.
//!
//! Revisions come from git objects ([`read_git_revision`]), plain directories
//! ([`Snapshot::from_dir`]) or single files ([`Snapshot::from_file`]); [`diff_snapshots_with`]
//! parses every changed `.c` and `.h` file (and every `.c` file that includes a changed header)
//! on both sides with tree-sitter-c ([`index`]), compares functions on tokens, so whitespace and
//! comments never make a change, marks functions that use a changed macro, type or inline
//! function as changed, and lists the changes that cannot be applied live as [`Refusal`]s.

mod changeset;
mod compare;
mod defs;
mod enums;
mod error;
mod git;
mod includes;
mod incremental;
pub mod index;
mod items;
mod layout;
mod options;
mod parse;
mod pieces;
mod quarantine;
mod refusal;
mod rules;
mod snapshot;
pub mod tokens;
pub mod unit;
mod unit_diff;

pub use changeset::{Change, ChangeSet, FunctionChange};
pub use compare::{diff_snapshots, diff_snapshots_with, files_to_analyse};
pub use error::DifferError;
pub use git::{parse_range, read_git_revision};
pub use items::ItemChange;
pub use options::{DiffOptions, Program};
pub use refusal::{snippet, Refusal, RefusalKind};
pub use snapshot::Snapshot;
pub use unit::UnitTexts;
