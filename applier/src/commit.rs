//! The commit stop, shared by apply and revert: stop every thread, check that none is inside code
//! being replaced or retired (its pc, and with unwinding its return addresses) and, for an apply,
//! that no suspended context in memory will return into it (`references`), else resume, back
//! off and retry until the timeout — or, with `wait_return`, let the threads run to the return
//! address of the blocking frame (a breakpoint, as `--at` places one) and check again at that
//! stop; then let the caller write while everything is stopped, and resume. Every stop is
//! measured.

use std::ops::Range;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;
use crate::ptrace::{write_memory, StoppedProcess, StoppedThread};
use crate::references::{Hit, Parts, ReturnTargets};
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
    /// Where the jump leads.
    pub(crate) target: u64,
    /// The function's code as it is in memory (an earlier patch's jump included): what a
    /// thread not yet switched runs.
    pub(crate) code: Vec<u8>,
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
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
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
    /// Functions whose return addresses, found anywhere in writable memory, block like a
    /// thread's frame: a context suspended inside them (a coroutine) would return into them.
    pub(crate) contexts: Option<&'a ReturnTargets>,
    /// When a thread's frame blocks, wait at that frame's return address (a breakpoint) for it
    /// to return, instead of polling.
    pub(crate) wait_return: bool,
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

/// What keeps a stop from going ahead.
pub(crate) enum Obstacle {
    /// Threads in busy code, and the return address `--wait-return` last waited at.
    Threads(Vec<Blocker>, Option<u64>),
    /// A word in memory that is a return address into a function being replaced.
    Context(Hit, String),
}

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
            if !run_to(&mut stopped, point.address, left, stops, &mut began)? {
                drop(stopped);
                return Err(ApplyError::SafePointNotReached {
                    function: point.name.clone(),
                    waited_ms: millis(started.elapsed()),
                });
            }
        }
        let obstacle = match obstacle(&mut stopped, safety, started, stops, &mut began)? {
            Ok(stacks) => {
                stops.threads = stopped.threads().len();
                stops.incomplete_stacks = stacks.iter().filter(|s| s.incomplete.is_some()).count();
                let result = write(&stopped, &stacks);
                // Once the writes are in, a failure to detach some thread (every thread is
                // still released, as far as the kernel allows) must not be reported as a failed
                // commit: the caller would undo work that is live, e.g. unmap code the jumps
                // now lead to.
                let _ = stopped.resume();
                stops.record(began);
                return result;
            }
            Err(obstacle) => obstacle,
        };
        let resumed = stopped.resume();
        stops.record(began);
        resumed?;
        let waited = started.elapsed();
        if waited >= safety.timeout {
            return Err(give_up(obstacle, safety, millis(waited)));
        }
        std::thread::sleep(backoff.min(safety.timeout.saturating_sub(waited)));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// [`stop_safely`], run in a helper process when it waits at a breakpoint (`--at`,
/// `--wait-return`), so that a SIGKILL of the tool while the threads run towards it cannot leave
/// the breakpoint in their way (see `helper_commit`); `what` names the commit in messages.
pub(crate) fn stop_safely_surviving_the_tool<T: Serialize + DeserializeOwned>(
    pid: i32,
    safety: &Safety<'_>,
    stops: &mut Stops,
    what: &str,
    write: impl FnOnce(&StoppedProcess, &[ThreadStack]) -> Result<T, ApplyError>,
) -> Result<T, ApplyError> {
    if !safety.wait_return && safety.at.is_none() {
        return stop_safely(pid, safety, stops, write);
    }
    let (value, measured) = crate::helper_commit::in_helper(pid, what, || {
        let mut measured = Stops::default();
        stop_safely(pid, safety, &mut measured, write).map(|value| (value, measured))
    })?;
    *stops = measured;
    Ok(value)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Lets the stopped threads run, traced, until one reaches `address` or `left` passes (the
/// stop so far is recorded; `began` becomes the start of the stop at the breakpoint). Whether a
/// thread reached it; either way every thread is stopped again and no breakpoint is left.
fn run_to(
    stopped: &mut StoppedProcess,
    address: u64,
    left: Duration,
    stops: &mut Stops,
    began: &mut Instant,
) -> Result<bool, ApplyError> {
    stops.record(*began);
    let hit = stopped.run_to(address, left)?;
    *began = match hit {
        Some((_, at)) => at,
        None => Instant::now(),
    };
    Ok(hit.is_some())
}

/// The stacks of the stopped threads when nothing is in the way, else what is. With
/// `wait_return`, a blocking frame is waited for at its return address first (as long as the
/// timeout allows), and the check repeated at the stop that return causes.
fn obstacle(
    stopped: &mut StoppedProcess,
    safety: &Safety<'_>,
    started: Instant,
    stops: &mut Stops,
    began: &mut Instant,
) -> Result<Result<Vec<ThreadStack>, Obstacle>, ApplyError> {
    let mut waited_at = None;
    loop {
        let stacks = stacks_of(stopped, safety.unwinder);
        let blockers = blockers(&stacks, safety);
        if blockers.is_empty() {
            return Ok(
                match suspended_context(stopped.pid(), (stopped.threads(), Parts::All), safety)? {
                    Some((hit, function)) => Err(Obstacle::Context(hit, function)),
                    None => Ok(stacks),
                },
            );
        }
        let left = safety.timeout.saturating_sub(started.elapsed());
        // Only code the unwinder knows is a return address worth a breakpoint.
        let ret = blockers
            .iter()
            .filter_map(|b| b.returns_to)
            .find(|&r| safety.unwinder.is_some_and(|u| u.covers(r)));
        match ret {
            Some(ret) if safety.wait_return && !left.is_zero() => {
                waited_at = Some(ret);
                run_to(stopped, ret, left, stops, began)?;
            }
            _ => return Ok(Err(Obstacle::Threads(blockers, waited_at))),
        }
    }
}

/// A return address into a function being replaced stored in writable memory (or a register of
/// `threads`, as `parts` says), with that function's name. A scan that fails is an error: what
/// cannot be seen is not assumed safe.
pub(crate) fn suspended_context(
    pid: i32,
    (threads, parts): (&[StoppedThread], Parts),
    safety: &Safety<'_>,
) -> Result<Option<(Hit, String)>, ApplyError> {
    let Some(targets) = safety.contexts else {
        return Ok(None);
    };
    let hits = crate::references::scan(
        pid,
        (threads, parts),
        &[],
        crate::references::Stacks::Walked,
        (targets.bounds(), |w| targets.function_of(w).is_some()),
        targets.ahead(),
    )?;
    Ok(hits.hits.into_iter().next().map(|hit| {
        let function = targets
            .function_of(hit.value)
            .unwrap_or_default()
            .to_string();
        (hit, function)
    }))
}

/// The error after the timeout.
pub(crate) fn give_up(obstacle: Obstacle, safety: &Safety<'_>, waited_ms: u64) -> ApplyError {
    match obstacle {
        Obstacle::Threads(blockers, waited_at) => {
            let first = &blockers[0];
            let mut detail = describe(&blockers, safety.unwinder);
            if let Some(ret) = waited_at {
                let to = match safety.unwinder {
                    Some(u) => u.symbolize(ret),
                    None => format!("0x{ret:x}"),
                };
                detail.push_str(&format!(
                    "; --wait-return waited for the frame to return to {to}"
                ));
            } else if !safety.wait_return && blockers.iter().any(|b| b.returns_to.is_some()) {
                detail.push_str("; --wait-return would wait for the frame to return");
            }
            ApplyError::ThreadBusy {
                tid: first.tid,
                pc: first.pc,
                function: first.what.clone(),
                detail,
                waited_ms,
            }
        }
        Obstacle::Context(hit, function) => ApplyError::ContextBusy {
            location: hit.location(),
            address: match safety.unwinder {
                Some(u) => u.symbolize(hit.value),
                None => format!("0x{:x}", hit.value),
            },
            function,
            waited_ms,
        },
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
    stop_safely_surviving_the_tool(pid, safety, &mut stops, "the commit", |_, _| {
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

pub(crate) fn stacks_of(
    stopped: &StoppedProcess,
    unwinder: Option<&StackUnwinder>,
) -> Vec<ThreadStack> {
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
pub(crate) struct Blocker {
    tid: i32,
    pc: u64,
    what: String,
    stack: ThreadStack,
    /// The return address of its outermost frame in busy code, when the walk found one: once
    /// the thread is there, that frame has returned.
    returns_to: Option<u64>,
}

pub(crate) fn blockers(stacks: &[ThreadStack], safety: &Safety<'_>) -> Vec<Blocker> {
    let mut out = Vec::new();
    for stack in stacks {
        let pc = stack.frames.first().copied().unwrap_or(0);
        let busy_at = |i: usize, address: u64| {
            safety.busy.iter().find(|b| {
                if i == 0 {
                    b.pc.contains(&address)
                } else {
                    b.ret
                        .as_ref()
                        .is_some_and(|r| r.contains(&address.saturating_sub(1)))
                }
            })
        };
        let hits: Vec<(usize, &Busy)> = stack
            .frames
            .iter()
            .enumerate()
            .filter_map(|(i, &a)| busy_at(i, a).map(|b| (i, b)))
            .collect();
        let returns_to = hits
            .last()
            .and_then(|(i, _)| stack.frames.get(i + 1).copied());
        let what = match (hits.first(), &stack.incomplete) {
            (Some((_, b)), _) => b.what.clone(),
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
            returns_to,
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
