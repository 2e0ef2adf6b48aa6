//! The record of the patches in effect for an executable, kept by GNU build id for
//! `hotpatch watch`: `STATE/BUILD-ID/NNNNNN-PATCH_ID.hp.o`, one patch object per successful apply
//! in the order they were applied, its modification time set to when the apply chose its
//! processes: a process that started later was not among them, and is "new" for that patch.
//! `revert` removes the reverted patch from it.
//!
//! The state directory is `/var/lib/hotpatch` (the watch service's systemd unit creates it), or
//! `$HOTPATCH_STATE_DIR`. It is an opt-in: without the directory nothing is recorded, so applies
//! on a machine without the service leave no files behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

/// The state directory when `$HOTPATCH_STATE_DIR` is not set.
pub const DEFAULT_DIR: &str = "/var/lib/hotpatch";

/// The environment variable that moves the state directory (tests, a second service).
pub const ENV: &str = "HOTPATCH_STATE_DIR";

/// One recorded patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The patch id.
    pub patch_id: String,
    /// The patch object.
    pub path: PathBuf,
    /// When the apply that recorded it chose its processes.
    pub as_of: SystemTime,
}

/// The state directory: `$HOTPATCH_STATE_DIR`, else [`DEFAULT_DIR`].
pub fn dir() -> PathBuf {
    std::env::var_os(ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// The GNU build id (lowercase hex) of the ELF file at `path`, if it has one.
pub fn file_build_id(path: &Path) -> Result<Option<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    use object::Object as _;
    let id = file
        .build_id()
        .with_context(|| format!("cannot read the build id of {}", path.display()))?;
    Ok(id.map(|id| id.iter().map(|b| format!("{b:02x}")).collect()))
}

/// The build id of the executable process `pid` runs.
pub fn exe_build_id(pid: i32) -> Result<Option<String>> {
    file_build_id(Path::new(&format!("/proc/{pid}/exe")))
}

/// The patches recorded for `build_id` in `state`, oldest first.
pub fn recorded(state: &Path, build_id: &str) -> Result<Vec<Recorded>> {
    let folder = state.join(build_id);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", folder.display())),
    };
    let mut out: Vec<Recorded> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (_, rest) = name.split_once('-')?;
            let patch_id = rest.strip_suffix(".hp.o")?.to_string();
            let as_of = e.metadata().ok()?.modified().ok()?;
            Some(Recorded {
                patch_id,
                path: e.path(),
                as_of,
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Records `object` (patch `patch_id`, applied to the processes running at `as_of`) as in effect
/// for `build_id`, after the ones recorded already; a patch recorded already stays where it is.
/// `Ok(None)`: no state directory, nothing recorded.
pub fn record(
    state: &Path,
    build_id: &str,
    patch_id: &str,
    object: &[u8],
    as_of: SystemTime,
) -> Result<Option<PathBuf>> {
    if !state.is_dir() {
        return Ok(None);
    }
    let existing = recorded(state, build_id)?;
    if let Some(found) = existing.iter().find(|r| r.patch_id == patch_id) {
        return Ok(Some(found.path.clone()));
    }
    let folder = state.join(build_id);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let next = existing
        .iter()
        .filter_map(|r| {
            r.path
                .file_name()?
                .to_str()?
                .split_once('-')?
                .0
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(1, |n| n + 1);
    let path = folder.join(format!("{next:06}-{patch_id}.hp.o"));
    // Written aside and renamed, so a watcher never reads half an object.
    let partial = folder.join(format!(".{patch_id}.partial"));
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&partial)?;
        std::io::Write::write_all(&mut &file, object)?;
        file.set_modified(as_of)?;
        std::fs::rename(&partial, &path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path))
}

/// Removes patch `patch_id` from the record of `build_id`; whether it was recorded.
pub fn forget(state: &Path, build_id: &str, patch_id: &str) -> Result<bool> {
    let mut removed = false;
    for entry in recorded(state, build_id)? {
        if entry.patch_id == patch_id {
            std::fs::remove_file(&entry.path)
                .with_context(|| format!("cannot remove {}", entry.path.display()))?;
            removed = true;
        }
    }
    Ok(removed)
}

/// After a successful apply of `object` to `pids` (the processes as listed at `as_of`): records it
/// for each of their executables' build ids. A failure is a warning on standard error, not an
/// error: the processes are patched.
pub fn after_apply(pids: &[i32], patch_id: &str, object: &[u8], as_of: SystemTime) {
    let state = dir();
    if !state.is_dir() {
        return;
    }
    for build_id in build_ids(pids) {
        if let Err(e) = record(&state, &build_id, patch_id, object, as_of) {
            eprintln!(
                "warning: patch {patch_id} is applied but not recorded for new processes: {}",
                crate::render::error_text(&e)
            );
        }
    }
}

/// After a successful revert of `patch_id` in `pid`: new processes of its executable no longer
/// get it. A failure is a warning on standard error.
pub fn after_revert(pid: i32, patch_id: &str) {
    let state = dir();
    if !state.is_dir() {
        return;
    }
    for build_id in build_ids(&[pid]) {
        if let Err(e) = forget(&state, &build_id, patch_id) {
            eprintln!(
                "warning: patch {patch_id} is reverted but still recorded for new processes: {}",
                crate::render::error_text(&e)
            );
        }
    }
}

/// The distinct build ids of the executables of `pids` (those without one are left out: their
/// patches cannot be matched to a binary).
fn build_ids(pids: &[i32]) -> BTreeSet<String> {
    pids.iter()
        .filter_map(|&pid| match exe_build_id(pid) {
            Ok(id) => id,
            Err(e) => {
                eprintln!(
                    "warning: pid {pid}: {}; its patch is not recorded",
                    crate::render::error_text(&e)
                );
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_forgets() {
        let state = tempfile::tempdir().unwrap();
        let id = "abcd";
        assert_eq!(recorded(state.path(), id).unwrap(), vec![]);
        let then = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let now = SystemTime::now();
        let first = record(state.path(), id, "p1", b"one", then)
            .unwrap()
            .unwrap();
        let second = record(state.path(), id, "p2", b"two", now)
            .unwrap()
            .unwrap();
        assert_eq!(
            record(state.path(), id, "p1", b"one", now).unwrap(),
            Some(first)
        );
        assert_eq!(recorded(state.path(), id).unwrap()[0].as_of, then);
        let ids: Vec<String> = recorded(state.path(), id)
            .unwrap()
            .into_iter()
            .map(|r| r.patch_id)
            .collect();
        assert_eq!(ids, ["p1", "p2"]);
        assert!(forget(state.path(), id, "p1").unwrap());
        assert!(!forget(state.path(), id, "p1").unwrap());
        let third = record(state.path(), id, "p3", b"three", now)
            .unwrap()
            .unwrap();
        assert!(third > second, "{third:?} after {second:?}");
        assert_eq!(
            record(&state.path().join("missing"), id, "p4", b"", now).unwrap(),
            None
        );
    }
}
