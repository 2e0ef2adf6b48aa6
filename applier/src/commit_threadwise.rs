//! The commit that never stops the whole process: threads are switched to the new code one at a
//! time, each stopped alone and only for its own stack walk.
//!
//! 1. Every thread is seized (`PTRACE_SEIZE` stops nothing), with `PTRACE_O_TRACECLONE` so the
//!    threads it creates are traced from their first instruction (see `ptrace::Seized`). The
//!    writable memory is scanned for suspended contexts that return into the old code (threads
//!    running): before any `int3` is in, so no thread waits at an entry while it reads a large
//!    heap (tens of milliseconds).
//! 2. An `int3` goes over the first byte of every entry being replaced, then the cores are
//!    synchronised. A thread that executes one is stopped by it alone and sent on by its own
//!    state: to the new code once it is *switched*, else to its *stub* in the patch region: the
//!    instructions the jump will cover, copied (rip-relative displacements adjusted), then an
//!    absolute jump back behind them, so the old code runs on unchanged (as uprobes run
//!    displaced instructions out of line). A thread stopped at an entry that has no frame in the
//!    old code (the entry itself is no frame) is switched there and sent to the new code.
//! 3. Each thread not yet switched is stopped alone, its stack walked (the same check as the
//!    stop-all commit: pc and return addresses against the functions being replaced and their
//!    stubs, an incomplete walk blocks), switched if nothing is in the old code, and resumed.
//!    A switched thread never enters the old code again: every entry traps and sends it on.
//!    So each thread's call chain is all old until it is switched and all new after.
//! 4. Once every thread is switched, and no thread's registers (as last seen) hold an address
//!    of the old code, every jump's tail is written behind its `int3`, the cores synchronised,
//!    the first byte written, the cores synchronised again (the kernel's cross-modifying-code
//!    protocol for live text patching), and each thread is stopped alone once more and
//!    detached.
//!
//! **Why the cores are synchronised in the target.** Writing through `/proc/PID/mem` changes
//! the bytes, but a core running a thread of the target may still execute what it fetched
//! before. `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` serialises every core
//! running a thread of the calling process's memory, and its registration (made once, with a
//! remote system call, before anything is written) makes the scheduler serialise a core that
//! switches to the process later. The tool's own `membarrier` would serialise the tool's
//! cores only, so the call is made by one thread of the target (stopped alone, single-stepped
//! over a `syscall` instruction of its own code). Only a thread switched after a synchronised
//! `int3` is switched: it cannot run a stale copy of an old entry. A thread not switched may
//! run old bytes, which is its code anyway; the tail of a jump is written only when no thread
//! can be in the overwritten bytes (all are switched, and the `int3` keeps everyone out).
//!
//! **Failure.** If a thread stays in the old code past the timeout, the commit turns around:
//! the goal becomes the old code, a switched thread goes back once it has no frame in the
//! patch's code (waited for as long as that takes), the original bytes go back (first byte
//! last, synchronised), and the error names the blocking thread as the stop-all commit does.
//!
//! **The tool's death.** The whole commit runs in a helper process forked for it
//! (`helper_commit`): a SIGKILL of the tool leaves the helper to finish it, so no `int3` is left
//! behind with its tracer gone (an untraced thread would die of `SIGTRAP` on it).

use std::ops::Range;
use std::time::{Duration, Instant};

use iced_x86::{Decoder, DecoderOptions, FlowControl};
use serde::{Deserialize, Serialize};

use crate::commit::{blockers, give_up, suspended_context, Blocker, Busy, Obstacle, Safety, Site};
use crate::error::ApplyError;
use crate::ptrace::{
    remote_syscall, write_memory, Seized, StoppedThread, TrapSite, MEMBARRIER_REGISTER_SYNC_CORE,
};
use crate::references::{Parts, ReturnTargets};
use crate::trampoline::absolute_jump;
use crate::unwind::StackUnwinder;

/// Bytes of the region each site's stub takes.
pub(crate) const STUB_SIZE: u64 = 64;

/// What the threadwise commit measured.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct ThreadStops {
    /// The longest time one thread was stopped, in microseconds.
    pub(crate) max_us: u64,
    /// All single-thread stops together, in microseconds.
    pub(crate) total_us: u64,
    /// How many single-thread stops there were.
    pub(crate) count: u32,
    /// Threads traced at the end.
    pub(crate) threads: usize,
}

/// The stub of `site` at `at`: the instructions its jump covers, from its code as it is in
/// memory, then an absolute jump behind them. Why not, when the instructions cannot run
/// elsewhere (a branch, a rip-relative operand out of reach, code that does not decode).
pub(crate) fn stub(site: &Site, at: u64) -> Result<Vec<u8>, String> {
    // An entry that is a jump (an earlier patch's, or the code's own tail call): running it
    // out of line is going where it goes.
    if let Some(to) = crate::trampoline::jump_target(site.entry, &site.code) {
        return Ok(absolute_jump(to).to_vec());
    }
    let need = site.jump.len();
    let mut decoder = Decoder::with_ip(64, &site.code, site.entry, DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < need {
        if !decoder.can_decode() {
            return Err(format!(
                "`{}` ends within its first {need} bytes",
                site.name
            ));
        }
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(format!("`{}` does not decode at +{offset}", site.name));
        }
        if insn.flow_control() != FlowControl::Next {
            return Err(format!(
                "`{}` has a branch in the bytes its jump covers (+{offset})",
                site.name
            ));
        }
        let len = insn.len();
        let mut bytes = site.code[offset..offset + len].to_vec();
        if insn.is_ip_rel_memory_operand() {
            let offsets = decoder.get_constant_offsets(&insn);
            let end = at + (out.len() + len) as u64;
            let disp = insn.ip_rel_memory_address().wrapping_sub(end) as i64;
            let field = offsets.displacement_offset();
            match i32::try_from(disp) {
                Ok(d) if offsets.displacement_size() == 4 => {
                    bytes[field..field + 4].copy_from_slice(&d.to_le_bytes());
                }
                _ => {
                    return Err(format!(
                        "`{}` has a rip-relative operand its stub cannot reach",
                        site.name
                    ))
                }
            }
        }
        out.extend_from_slice(&bytes);
        offset += len;
    }
    out.extend_from_slice(&absolute_jump(site.entry + offset as u64));
    if out.len() as u64 > STUB_SIZE {
        return Err(format!("the stub of `{}` is too long", site.name));
    }
    Ok(out)
}

/// Registers the target for `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE` (a remote system
/// call): why not, when the kernel refuses it.
pub(crate) fn register_sync_core(pid: i32) -> Result<(), String> {
    match remote_syscall(pid, 324, [MEMBARRIER_REGISTER_SYNC_CORE, 0, 0, 0, 0, 0]) {
        Ok(0) => Ok(()),
        Ok(e) => Err(format!(
            "the kernel refused membarrier SYNC_CORE ({})",
            nix::errno::Errno::from_raw(-e as i32).desc()
        )),
        Err(e) => Err(format!("membarrier registration failed: {e}")),
    }
}

/// Everything the commit needs.
pub(crate) struct Request<'a> {
    /// The target.
    pub(crate) pid: i32,
    /// The jumps, in the order of `stubs`.
    pub(crate) sites: &'a [Site],
    /// Each site's stub address.
    pub(crate) stubs: &'a [u64],
    /// The patch's code: a thread going back must have left it.
    pub(crate) new_code: Range<u64>,
    /// Unwind tables.
    pub(crate) unwinder: &'a StackUnwinder,
    /// Return addresses that block where they are stored (suspended contexts).
    pub(crate) contexts: &'a ReturnTargets,
    /// How long to wait for every thread to be switched.
    pub(crate) timeout: Duration,
    /// The ledger's state word, written right after the jumps.
    pub(crate) after: Option<(u64, Vec<u8>)>,
}

/// Commits `request` thread by thread, in a helper process (see `helper_commit`).
pub(crate) fn commit(request: &Request<'_>) -> Result<ThreadStops, ApplyError> {
    crate::helper_commit::in_helper(request.pid, "the threadwise commit", || run(request))
}

/// The check of a stopped thread of `pid` against the busy code of `safety`: no pc or return
/// address in it, a complete walk. The blocking frames when there are.
fn check<'s>(pid: i32, safety: &'s Safety<'s>) -> impl Fn(&StoppedThread) -> Option<Blocker> + 's {
    move |thread| {
        let stacks = safety
            .unwinder
            .map(|u| u.unwind_all(pid, std::slice::from_ref(thread)))
            .unwrap_or_default();
        blockers(&stacks, safety).into_iter().next()
    }
}

fn run(request: &Request<'_>) -> Result<ThreadStops, ApplyError> {
    let pid = request.pid;
    let mut old_busy = Busy::for_sites(request.sites);
    for (site, &at) in request.sites.iter().zip(request.stubs) {
        old_busy.push(Busy {
            what: format!("the displaced first instructions of `{}`", site.name),
            pc: at..at + STUB_SIZE,
            ret: None,
        });
    }
    let new_busy = [Busy {
        what: "the patch's code".into(),
        pc: request.new_code.clone(),
        ret: Some(request.new_code.clone()),
    }];
    let safety = |busy| Safety {
        busy,
        unwinder: Some(request.unwinder),
        incomplete_blocks: true,
        timeout: request.timeout,
        at: None,
        contexts: Some(request.contexts),
        wait_return: false,
    };
    let forward = safety(&old_busy);
    let backward = safety(&new_busy);
    let trap_sites = request
        .sites
        .iter()
        .zip(request.stubs)
        .map(|(s, &old)| TrapSite {
            entry: s.entry,
            original: s.original.clone(),
            new: s.target,
            old,
        })
        .collect();
    let forward_check = check(pid, &forward);
    let backward_check = check(pid, &backward);
    let mut seized = Seized::seize(
        pid,
        trap_sites,
        Box::new(|t: &StoppedThread| forward_check(t).is_none()),
    )?;
    let started = Instant::now();
    let waited_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // The scan of memory for suspended contexts reads the process while its threads run (tens
    // of milliseconds for a large heap): made before the `int3`s are in, so that no thread
    // calling a replaced function waits at its entry for it. The threads' registers are
    // looked at once they are switched (before, they hold addresses of the old code).
    if let Some(obstacle) = lasting_context(pid, &mut seized, &forward, (started, request.timeout))?
    {
        seized.finish()?;
        return Err(give_up(obstacle, &forward, waited_ms()));
    }
    seized.arm()?;
    let blocked = sweep(&mut seized, &forward_check, Some(request.timeout))?;
    let obstacle = match blocked {
        Some(blockers) => Some(Obstacle::Threads(blockers, None)),
        None => suspended_context(pid, (&seized.snapshots()?, Parts::Registers), &forward)?
            .map(|(hit, function)| Obstacle::Context(hit, function)),
    };
    if let Some(obstacle) = obstacle {
        let waited_ms = waited_ms();
        seized.set_goal(
            false,
            Box::new(|t: &StoppedThread| backward_check(t).is_none()),
        );
        sweep(&mut seized, &backward_check, None)?;
        seized.finish()?;
        return Err(give_up(obstacle, &forward, waited_ms));
    }
    let jumps: Vec<Vec<u8>> = request.sites.iter().map(|s| s.jump.clone()).collect();
    seized.commit_jumps(&jumps)?;
    if let Some((address, bytes)) = &request.after {
        // The jumps are in; a failed state write leaves the header at `Prepared`, which
        // `list` resolves by looking at the entries.
        let _ = write_memory(pid, *address, bytes);
    }
    let threads = seized.threads().len();
    let times = seized.finish()?;
    Ok(ThreadStops {
        max_us: times.max_us,
        total_us: times.total_us,
        count: times.count,
        threads,
    })
}

/// A suspended context in memory that returns into replaced code, looked for again while the
/// threads of `pid` run until none is found or `timeout` passes since `started`, as the
/// stop-all commit backs off and retries: a word can be stale (the cached stack of a thread
/// that exited, which the next thread created reuses) and be gone a moment later.
fn lasting_context(
    pid: i32,
    seized: &mut Seized<'_>,
    safety: &Safety<'_>,
    (started, timeout): (Instant, Duration),
) -> Result<Option<Obstacle>, ApplyError> {
    let mut backoff = Duration::from_micros(200);
    loop {
        let snapshots = seized.snapshots()?;
        let Some((hit, function)) = suspended_context(pid, (&snapshots, Parts::Memory), safety)?
        else {
            return Ok(None);
        };
        if started.elapsed() >= timeout {
            return Ok(Some(Obstacle::Context(hit, function)));
        }
        seized.pump(backoff)?;
        backoff = (backoff * 2).min(Duration::from_millis(20));
    }
}

/// Stops each thread not at the goal alone, moves it there when `check` finds nothing in the
/// way, and repeats (handling traps meanwhile) until every thread is there, or `timeout` passes:
/// then the blockers of the last round.
fn sweep(
    seized: &mut Seized<'_>,
    check: &dyn Fn(&StoppedThread) -> Option<Blocker>,
    timeout: Option<Duration>,
) -> Result<Option<Vec<Blocker>>, ApplyError> {
    let started = Instant::now();
    let mut backoff = Duration::from_micros(200);
    loop {
        let mut blocked = Vec::new();
        for tid in seized.threads().to_vec() {
            seized.pump(Duration::ZERO)?;
            if seized.all_at_goal() {
                break;
            }
            if !seized.threads().contains(&tid) || seized.at_goal(tid) {
                continue;
            }
            let Some(held) = seized.stop_one(tid)? else {
                continue;
            };
            match check(&held.thread) {
                Some(blocker) => blocked.push(blocker),
                None => seized.reach_goal(tid),
            }
            seized.resume_one(held, None)?;
        }
        if seized.all_at_goal() {
            return Ok(None);
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) && !blocked.is_empty() {
            return Ok(Some(blocked));
        }
        seized.pump(backoff)?;
        backoff = (backoff * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trampoline::jump_bytes;

    fn site(code: &[u8]) -> Site {
        Site {
            name: "f".into(),
            entry: 0x1000,
            jump: jump_bytes(0x1000, 0x9000),
            original: code[..5].to_vec(),
            target: 0x9000,
            code: code.to_vec(),
            busy: (0x1000, 0x1005),
            function: (0x1000, 0x1000 + code.len() as u64),
        }
    }

    #[test]
    fn an_entry_holding_an_earlier_jump_runs_out_of_line_as_that_jump() {
        let mut code = jump_bytes(0x1000, 0x5000);
        code.extend_from_slice(&[0xcc; 8]);
        assert_eq!(
            stub(&site(&code), 0x8000),
            Ok(absolute_jump(0x5000).to_vec())
        );
    }

    #[test]
    fn covered_instructions_run_out_of_line_then_jump_back() {
        // push rbp; mov rbp, rsp; sub rsp, 16; ret
        let code = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0xc3];
        let mut expected = code[..8].to_vec();
        expected.extend_from_slice(&absolute_jump(0x1008));
        assert_eq!(stub(&site(&code), 0x8000), Ok(expected));
        // ret within the first five bytes: cannot run elsewhere.
        let early = [0x31, 0xc0, 0xc3, 0xcc, 0xcc, 0xcc];
        assert!(stub(&site(&early), 0x8000).unwrap_err().contains("branch"));
    }
}
