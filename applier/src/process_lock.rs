//! One hotpatch at a time per target process: an exclusive `flock` on a file named after the
//! pid, taken by apply and revert before they read the process. The threadwise commit runs in
//! a helper process that inherits the open lock, so a revert started after the tool was killed
//! waits for the helper to finish instead of writing under it. A helper keeps only the lock of
//! its own target: one inherited from another thread's work on another process (a library
//! caller patching several at once) would hold that lock for as long as the helper runs.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
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

/// Takes the lock of `pid`, waiting while another hotpatch holds it.
pub(crate) fn lock(pid: i32) -> Result<ProcessLock, ApplyError> {
    let path = std::env::temp_dir().join(format!("hotpatch-pid-{pid}.lock"));
    let failed = |detail: String| ApplyError::ProcRead {
        pid,
        what: format!("the lock {}", path.display()),
        detail,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| failed(e.to_string()))?;
    let started = Instant::now();
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let slot = register(pid, file.as_raw_fd());
            return Ok(ProcessLock { _file: file, slot });
        }
        if started.elapsed() >= WAIT {
            return Err(failed(format!(
                "another hotpatch has held it for {} s",
                WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
