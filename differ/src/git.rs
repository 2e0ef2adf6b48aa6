//! Reading a revision out of git objects (never the work tree) with gix.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{DifferError, Snapshot};

/// Splits `OLD..NEW` into its two revisions; anything else is [`DifferError::BadRange`].
pub fn parse_range(range: &str) -> Result<(String, String), DifferError> {
    let bad = || DifferError::BadRange(range.to_string());
    let (old, new) = range.split_once("..").ok_or_else(bad)?;
    if old.is_empty() || new.is_empty() || new.starts_with('.') || new.contains("..") {
        return Err(bad());
    }
    Ok((old.to_string(), new.to_string()))
}

/// Reads every regular file of the tree of commit `rev` from the repository at `repo`.
///
/// `rev` is any revision spec gix understands (tag, branch, `HEAD~1`, short id). The label is
/// `"{rev} ({first 8 hex digits of the commit id})"`.
pub fn read_git_revision(repo: &Path, rev: &str) -> Result<Snapshot, DifferError> {
    let opened = crate::quarantine::open(repo).ok_or_else(|| DifferError::NotARepository {
        // Absolute, so that `--repo .` (the default) says which directory it was.
        path: std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf()),
    })?;
    let repository = &opened.repository;
    let unknown = |detail: String| DifferError::UnknownRevision {
        rev: rev.to_string(),
        detail,
    };
    let id = repository
        .rev_parse_single(rev)
        .map_err(|e| unknown(e.to_string()))?;
    let object = id.object().map_err(|e| unknown(e.to_string()))?;
    let commit = object
        .peel_to_commit()
        .map_err(|e| unknown(format!("does not name a commit: {e}")))?;
    let commit_hex = commit.id.to_string();
    let short: String = commit_hex.chars().take(8).collect();
    let tree = commit.tree().map_err(|e| DifferError::Git(e.to_string()))?;
    let entries = tree
        .traverse()
        .breadthfirst
        .files()
        .map_err(|e| DifferError::Git(e.to_string()))?;
    let mut files = BTreeMap::new();
    for entry in entries {
        if !entry.mode.is_blob() {
            continue; // trees, symlinks and submodules carry no C source
        }
        let blob = repository
            .find_blob(entry.oid)
            .map_err(|e| DifferError::Git(format!("reading {}: {e}", entry.filepath)))?;
        files.insert(entry.filepath.to_string(), blob.data.clone());
    }
    Ok(Snapshot {
        label: format!("{rev} ({short})"),
        files,
        commit: Some(commit_hex),
    })
}
