//! The commit: the only long stop. Stop every thread, make sure none is inside bytes about to be
//! overwritten (else resume, back off and retry until the timeout), write every jump, resume.

use std::time::{Duration, Instant};

use crate::error::ApplyError;
use crate::ptrace::{write_memory, StoppedProcess};

/// One jump to write.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// Function name, for messages.
    pub(crate) name: String,
    /// Where the jump goes (the old entry).
    pub(crate) entry: u64,
    /// The jump's bytes.
    pub(crate) jump: Vec<u8>,
    /// The bytes the jump replaces (same length), to roll back on failure.
    pub(crate) original: Vec<u8>,
    /// A thread with `busy.0 < pc < busy.1` must not be stopped here.
    pub(crate) busy: (u64, u64),
}

/// What the stop measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Committed {
    /// Microseconds from just before stopping to just after resuming.
    pub(crate) pause_us: u64,
    /// Threads stopped.
    pub(crate) threads: usize,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Writes all `sites` while every thread of `pid` is stopped and none is inside a busy range.
pub(crate) fn commit(pid: i32, sites: &[Site], timeout: Duration) -> Result<Committed, ApplyError> {
    if sites.is_empty() {
        return Ok(Committed::default());
    }
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let stop_began = Instant::now();
        let stopped = StoppedProcess::stop_all(pid)?;
        if let Some((tid, pc, function)) = busy_thread(&stopped, sites) {
            stopped.resume()?;
            let waited = started.elapsed();
            if waited >= timeout {
                let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
                return Err(ApplyError::ThreadBusy {
                    tid,
                    pc,
                    function,
                    waited_ms,
                });
            }
            std::thread::sleep(backoff.min(timeout.saturating_sub(waited)));
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        let threads = stopped.threads().len();
        for (written, site) in sites.iter().enumerate() {
            if let Err(error) = write_memory(pid, site.entry, &site.jump) {
                for done in &sites[..written] {
                    let _ = write_memory(pid, done.entry, &done.original);
                }
                drop(stopped);
                return Err(error.into());
            }
        }
        stopped.resume()?;
        let pause_us = u64::try_from(stop_began.elapsed().as_micros()).unwrap_or(u64::MAX);
        return Ok(Committed { pause_us, threads });
    }
}

fn busy_thread(stopped: &StoppedProcess, sites: &[Site]) -> Option<(i32, u64, String)> {
    stopped.threads().iter().find_map(|thread| {
        sites
            .iter()
            .find(|s| s.busy.0 < thread.pc && thread.pc < s.busy.1)
            .map(|s| (thread.tid, thread.pc, s.name.clone()))
    })
}
