//! Errors of the differ.

use std::path::PathBuf;

/// Why reading or comparing revisions failed.
#[derive(Debug, thiserror::Error)]
pub enum DifferError {
    /// The given path is not (inside) a git repository gix can open.
    #[error("not a git repository: {}", path.display())]
    NotARepository {
        /// The path that was given.
        path: PathBuf,
    },
    /// The revision does not name a commit (or something that peels to one).
    #[error("unknown revision `{rev}`: {detail}")]
    UnknownRevision {
        /// The revision as the user wrote it.
        rev: String,
        /// What gix said about it.
        detail: String,
    },
    /// A revision range that is not of the form `OLD..NEW`.
    #[error("bad revision range `{0}`: expected OLD..NEW")]
    BadRange(String),
    /// Any other failure while reading git objects.
    #[error("git: {0}")]
    Git(String),
}
