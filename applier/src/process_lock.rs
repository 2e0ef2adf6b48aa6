//! One hotpatch at a time per target process: an exclusive `flock` on a file named after the
//! pid, taken by apply and revert before they read the process. The threadwise commit runs in
//! a helper process that inherits the open lock, so a revert started after the tool was killed
//! waits for the helper to finish instead of writing under it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::libc;

use crate::error::ApplyError;

/// How long to wait for another hotpatch working on the same process.
const WAIT: Duration = Duration::from_secs(60);

/// The held lock; dropping it (and the end of every process that inherited it) releases it.
#[derive(Debug)]
pub(crate) struct ProcessLock {
    _file: File,
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
            return Ok(ProcessLock { _file: file });
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
