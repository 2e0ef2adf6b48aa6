//! One hotpatch at a time per target process: an exclusive `flock` on a file named after the
//! pid, taken by apply and revert before they read the process. The threadwise commit runs in
//! a helper process that inherits the open lock, so a revert started after the tool was killed
//! waits for the helper to finish instead of writing under it. A helper keeps only the lock of
//! its own target: one inherited from another thread's work on another process (a library
//! caller patching several at once) would hold that lock for as long as the helper runs.
//!
//! A lock file outlives its process (it cannot be removed when the lock is dropped: a helper
//! may still hold it). Taking a lock removes the files of processes that no longer exist, each
//! under its own lock; a taker that then finds its file no longer at the path takes a new one.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::libc;

use crate::error::ApplyError;

/// How long to wait for another hotpatch working on the same process.
const WAIT: Duration = Duration::from_secs(60);

/// How many locks [`held_by`] can name at once (more are held, but not kept by helpers).
const SLOTS: usize = 64;

/// The locks held now, each as `pid << 32 | fd` (0: a free slot): atomics, so that a child
/// forked while another thread takes or drops a lock can read them without a lock of its own.
static HELD: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// The held lock; dropping it (and the end of every process that inherited it) releases it.
#[derive(Debug)]
pub(crate) struct ProcessLock {
    /// The locked file: the lock lasts while it is open.
    _file: File,
    /// Its entry in [`HELD`], if it got one.
    slot: Option<usize>,
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            HELD[slot].store(0, Ordering::SeqCst);
        }
    }
}

/// The descriptor of the lock this process holds for `pid`, if any.
pub(crate) fn held_by(pid: i32) -> Option<RawFd> {
    HELD.iter().find_map(|slot| {
        let entry = slot.load(Ordering::SeqCst);
        (entry != 0 && (entry >> 32) as i32 == pid).then_some(entry as u32 as RawFd)
    })
}

fn register(pid: i32, fd: RawFd) -> Option<usize> {
    let entry = (u64::from(pid as u32) << 32) | u64::from(fd as u32);
    HELD.iter().position(|slot| {
        slot.compare_exchange(0, entry, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

/// The lock file of process `pid`.
fn lock_path(pid: i32) -> PathBuf {
    std::env::temp_dir().join(format!("{PREFIX}{pid}.lock"))
}

const PREFIX: &str = "hotpatch-pid-";

/// Takes the lock of `pid`, waiting while another hotpatch holds it.
pub(crate) fn lock(pid: i32) -> Result<ProcessLock, ApplyError> {
    remove_stale();
    let path = lock_path(pid);
    let failed = |detail: String| ApplyError::ProcRead {
        pid,
        what: format!("the lock {}", path.display()),
        detail,
    };
    let started = Instant::now();
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| failed(e.to_string()))?;
        while !try_flock(&file) {
            if started.elapsed() >= WAIT {
                return Err(failed(format!(
                    "another hotpatch has held it for {} s",
                    WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Removed (by a taker that found the process gone) while this one waited: the lock of
        // an unlinked file is no lock.
        if still_at(&file, &path) {
            let slot = register(pid, file.as_raw_fd());
            return Ok(ProcessLock { _file: file, slot });
        }
    }
}

/// Takes the exclusive lock on `file` if no one holds it.
fn try_flock(file: &File) -> bool {
    // SAFETY: flock on a descriptor `file` owns.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Whether `path` still names the file open as `file`.
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Removes the lock files of processes that no longer exist, each while holding its lock (one
/// held is left: its holder is still at work).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let gone = |pid: i32| !Path::new(&format!("/proc/{pid}")).exists();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| {
            n.strip_prefix(PREFIX)?
                .strip_suffix(".lock")?
                .parse::<i32>()
                .ok()
        });
        let Some(pid) = pid.filter(|&p| gone(p)) else {
            continue;
        };
        let path = entry.path();
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if try_flock(&file) && still_at(&file, &path) && gone(pid) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_a_lock_removes_the_files_of_processes_that_are_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id() as i32;
        child.wait().unwrap();
        std::fs::write(lock_path(gone), b"").unwrap();
        let me = std::process::id() as i32;
        let held = lock(me).unwrap();
        assert!(
            !lock_path(gone).exists(),
            "the lock file of pid {gone} stayed"
        );
        assert!(
            lock_path(me).exists(),
            "the lock file of a live process went"
        );
        drop(held);
    }
}
