//! Opening a repository from inside a git hook during a push.
//!
//! While `pre-receive` runs, git keeps the pushed objects in a quarantine directory and tells
//! hooks through `GIT_OBJECT_DIRECTORY` (the quarantine) and `GIT_ALTERNATE_OBJECT_DIRECTORIES`
//! (the repository's own object store). gix does not read those variables, but it does follow
//! `objects/info/alternates`. So when they are set, the repository is read through a scratch git
//! directory whose alternates name both stores: every pushed and every existing object is
//! visible, and nothing is written into the repository being pushed to.

use std::path::{Path, PathBuf};

/// A repository handle, and the scratch directory that must outlive it when one was needed.
pub(crate) struct Opened {
    /// The repository to read objects from.
    pub(crate) repository: gix::Repository,
    /// Kept alive while `repository` is used.
    _scratch: Option<tempfile::TempDir>,
}

/// Opens `repo`; in a push hook, through a scratch directory that also sees the quarantine.
pub(crate) fn open(repo: &Path) -> Option<Opened> {
    let real = gix::open(repo).ok()?;
    let stores = hook_object_stores();
    if stores.is_empty() {
        return Some(Opened {
            repository: real,
            _scratch: None,
        });
    }
    match scratch_repository(&stores) {
        Some((repository, scratch)) => Some(Opened {
            repository,
            _scratch: Some(scratch),
        }),
        None => Some(Opened {
            repository: real,
            _scratch: None,
        }),
    }
}

/// The object directories a hook environment names, the quarantine first.
fn hook_object_stores() -> Vec<PathBuf> {
    let mut stores = Vec::new();
    if let Some(primary) = std::env::var_os("GIT_OBJECT_DIRECTORY") {
        stores.push(PathBuf::from(primary));
    }
    if let Some(alternates) = std::env::var_os("GIT_ALTERNATE_OBJECT_DIRECTORIES") {
        stores.extend(std::env::split_paths(&alternates));
    }
    stores.retain(|p| p.is_absolute() && p.is_dir());
    stores
}

fn scratch_repository(stores: &[PathBuf]) -> Option<(gix::Repository, tempfile::TempDir)> {
    let scratch = tempfile::Builder::new()
        .prefix("hotpatch-quarantine-")
        .tempdir()
        .ok()?;
    let git_dir = scratch.path();
    std::fs::create_dir_all(git_dir.join("refs/heads")).ok()?;
    std::fs::create_dir_all(git_dir.join("objects/info")).ok()?;
    std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/main\n").ok()?;
    std::fs::write(
        git_dir.join("config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
    )
    .ok()?;
    let alternates: String = stores
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    std::fs::write(git_dir.join("objects/info/alternates"), alternates).ok()?;
    let repository = gix::open(git_dir).ok()?;
    Some((repository, scratch))
}
