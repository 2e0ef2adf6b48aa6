//! The commit stop, shared by apply and revert: stop every thread, check that none is inside code
//! being replaced or retired (its pc, and with unwinding its return addresses), else resume, back
//! off and retry until the timeout; then let the caller write while everything is stopped, and
//! resume. Every stop is measured.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::error::ApplyError;
use crate::ptrace::{write_memory, StoppedProcess};
use crate::unwind::{StackUnwinder, ThreadStack};

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
    /// The whole old function: no pc strictly after its entry and no return address in it.
    pub(crate) function: (u64, u64),
}

/// Code no thread may be in at the stop.
#[derive(Debug, Clone)]
pub(crate) struct Busy {
    /// What it is, for messages ("`value`, which is being replaced").
    pub(crate) what: String,
    /// A pc in this range blocks.
    pub(crate) pc: Range<u64>,
    /// A return address `ra` with `ra - 1` in this range blocks (the call is inside).
    pub(crate) ret: Option<Range<u64>>,
}

impl Busy {
    /// The busy ranges of jump sites: their overwritten bytes and, for frames, the whole function.
    pub(crate) fn for_sites(sites: &[Site]) -> Vec<Busy> {
        sites
            .iter()
            .map(|s| Busy {
                what: format!("`{}`, which is being replaced", s.name),
                pc: (s.busy.0 + 1).min(s.function.0 + 1)..s.busy.1.max(s.function.1),
                ret: Some(s.function.0..s.function.1),
            })
            .collect()
    }
}

/// What the stops measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stops {
    /// The longest single stop, in microseconds.
    pub(crate) pause_us: u64,
    /// All stops together (failed safety checks included), in microseconds.
    pub(crate) total_us: u64,
    /// How many times every thread was stopped.
    pub(crate) count: u32,
    /// Threads stopped at the last stop.
    pub(crate) threads: usize,
    /// Threads whose stack could not be unwound completely at the last stop.
    pub(crate) incomplete_stacks: usize,
}

impl Stops {
    fn record(&mut self, began: Instant) {
        let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.pause_us = self.pause_us.max(us);
        self.total_us = self.total_us.saturating_add(us);
        self.count += 1;
    }
}

/// How a stop checks threads.
pub(crate) struct Safety<'a> {
    /// Code no thread may be in.
    pub(crate) busy: &'a [Busy],
    /// Unwind tables; without them only pcs are checked.
    pub(crate) unwinder: Option<&'a StackUnwinder>,
    /// Whether a thread whose stack could not be walked to its end blocks (its hidden frames
    /// might be in busy code).
    pub(crate) incomplete_blocks: bool,
    /// How long to retry.
    pub(crate) timeout: Duration,
    /// A safe point: commit only when a thread reaches this address (a breakpoint).
    pub(crate) at: Option<SafePoint>,
}

/// Where `--at` waits.
#[derive(Debug, Clone)]
pub(crate) struct SafePoint {
    /// The function's name, for messages.
    pub(crate) name: String,
    /// Its entry.
    pub(crate) address: u64,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Stops every thread of `pid` until none is in busy code, then runs `write` with everything
/// stopped and resumes. `write` returns `Err` after undoing its own partial work.
pub(crate) fn stop_safely<T>(
    pid: i32,
    safety: &Safety<'_>,
    stops: &mut Stops,
    write: impl FnOnce(&StoppedProcess, &[ThreadStack]) -> Result<T, ApplyError>,
) -> Result<T, ApplyError> {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut began = Instant::now();
        let mut stopped = StoppedProcess::stop_all(pid)?;
        if let Some(point) = &safety.at {
            let left = safety.timeout.saturating_sub(started.elapsed());
            match stopped.run_to(point.address, left)? {
                Some((_, hit)) => began = hit,
                None => {
                    drop(stopped);
                    let waited_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    return Err(ApplyError::SafePointNotReached {
                        function: point.name.clone(),
                        waited_ms,
                    });
                }
            }
        }
        let stacks = stacks_of(&stopped, safety.unwinder);
        let blockers = blockers(&stacks, safety);
        if !blockers.is_empty() {
            let resumed = stopped.resume();
            stops.record(began);
            resumed?;
            let waited = started.elapsed();
            if waited >= safety.timeout {
                let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
                let first = &blockers[0];
                return Err(ApplyError::ThreadBusy {
                    tid: first.tid,
                    pc: first.pc,
                    function: first.what.clone(),
                    detail: describe(&blockers, safety.unwinder),
                    waited_ms,
                });
            }
            std::thread::sleep(backoff.min(safety.timeout.saturating_sub(waited)));
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        stops.threads = stopped.threads().len();
        stops.incomplete_stacks = stacks.iter().filter(|s| s.incomplete.is_some()).count();
        let result = write(&stopped, &stacks);
        // Once the writes are in, a failure to detach some thread (every thread is still
        // released, as far as the kernel allows) must not be reported as a failed commit: the
        // caller would undo work that is live, e.g. unmap code the jumps now lead to.
        let _ = stopped.resume();
        stops.record(began);
        return result;
    }
}

/// Writes all `sites` while every thread of `pid` is stopped and none is inside a busy range,
/// then `after` (the ledger's state word) at the same stop.
pub(crate) fn commit(
    pid: i32,
    sites: &[Site],
    safety: &Safety<'_>,
    after: Option<(u64, &[u8])>,
) -> Result<Stops, ApplyError> {
    let mut stops = Stops::default();
    if sites.is_empty() {
        return Ok(stops);
    }
    stop_safely(pid, safety, &mut stops, |_, _| {
        let writes: Vec<(u64, &[u8], &[u8])> = sites
            .iter()
            .map(|s| (s.entry, s.jump.as_slice(), s.original.as_slice()))
            .collect();
        write_all_or_nothing(pid, &writes)?;
        if let Some((address, bytes)) = after {
            // The jumps are in; a failed state write only leaves the header at `Prepared`,
            // which `list` resolves by looking at the entries.
            let _ = write_memory(pid, address, bytes);
        }
        Ok(())
    })?;
    Ok(stops)
}

/// Writes each `(address, new, old)`; on a failure writes back `old` of those already written.
pub(crate) fn write_all_or_nothing(
    pid: i32,
    writes: &[(u64, &[u8], &[u8])],
) -> Result<(), ApplyError> {
    for (done, (address, new, _)) in writes.iter().enumerate() {
        if let Err(error) = write_memory(pid, *address, new) {
            for (address, _, old) in &writes[..done] {
                let _ = write_memory(pid, *address, old);
            }
            return Err(error.into());
        }
    }
    Ok(())
}

fn stacks_of(stopped: &StoppedProcess, unwinder: Option<&StackUnwinder>) -> Vec<ThreadStack> {
    match unwinder {
        Some(u) => u.unwind_all(stopped.pid(), stopped.threads()),
        None => stopped
            .threads()
            .iter()
            .map(|t| ThreadStack {
                tid: t.tid,
                frames: vec![t.pc],
                incomplete: None,
            })
            .collect(),
    }
}

/// A thread that keeps the stop from going ahead.
#[derive(Debug, Clone)]
struct Blocker {
    tid: i32,
    pc: u64,
    what: String,
    stack: ThreadStack,
}

fn blockers(stacks: &[ThreadStack], safety: &Safety<'_>) -> Vec<Blocker> {
    let mut out = Vec::new();
    for stack in stacks {
        let pc = stack.frames.first().copied().unwrap_or(0);
        let hit = stack.frames.iter().enumerate().find_map(|(i, &address)| {
            safety.busy.iter().find_map(|b| {
                let inside = if i == 0 {
                    b.pc.contains(&address)
                } else {
                    b.ret
                        .as_ref()
                        .is_some_and(|r| r.contains(&address.saturating_sub(1)))
                };
                inside.then(|| b.what.clone())
            })
        });
        let what = match (hit, &stack.incomplete) {
            (Some(what), _) => what,
            (None, Some(why)) if safety.incomplete_blocks => {
                format!("a stack that could not be unwound completely ({why})")
            }
            _ => continue,
        };
        out.push(Blocker {
            tid: stack.tid,
            pc,
            what,
            stack: stack.clone(),
        });
    }
    out
}

fn describe(blockers: &[Blocker], unwinder: Option<&StackUnwinder>) -> String {
    blockers
        .iter()
        .map(|b| {
            let frames: Vec<String> = b
                .stack
                .frames
                .iter()
                .take(8)
                .map(|&a| match unwinder {
                    Some(u) => u.symbolize(a),
                    None => format!("0x{a:x}"),
                })
                .collect();
            format!(
                "thread {} in {} (frames: {})",
                b.tid,
                b.what,
                frames.join(" <- ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
