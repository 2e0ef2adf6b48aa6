//! Every thread of a process seized but left running (`PTRACE_SEIZE` stops nothing), for the
//! commit that switches threads one at a time (`commit_threadwise`): threads are stopped one at
//! a time, and a thread that executes one of the `int3`s placed over the entries being replaced
//! is sent on by its own state: to the new code once it is switched, else to the old code's
//! displaced first instructions (its stub). New threads are traced from their first
//! instruction (`PTRACE_O_TRACECLONE`) and start switched to the goal: they have no old frames.
//! A child forked meanwhile (`PTRACE_O_TRACEFORK`) copied the `int3`s: its entries get their
//! original bytes back and it is let go. A child made by `vfork` (`PTRACE_O_TRACEVFORK`; also
//! `posix_spawn` and `system`) runs in the process's own memory, `int3`s included, and on the
//! frames of the thread that made it: it is one more thread, in that thread's state, until it
//! calls `exec` (`PTRACE_O_TRACEEXEC`) or exits. Its parent sleeps in the kernel until then, so
//! stopping the parent waits for the child, and the child's traps are served meanwhile.
//!
//! No path releases a thread while an `int3` is in memory: dropping a [`Seized`] that has not
//! been [`Seized::finish`]ed writes every entry's original bytes back (breakpoint first, then
//! the tail, then the first byte, with the cores synchronised between), and only then detaches.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;

use super::sys::{self, Regs, Stop};
use super::{
    find_syscall_insn, is_kernel_trap, op_failed, proc, read_memory, restart_stop_eintr,
    seize_error, write_memory, PtraceError, StoppedThread,
};
use crate::trampoline::INT3;

/// `membarrier(2)`.
const SYS_MEMBARRIER: i64 = 324;
/// Serialise the instruction stream of every core running a thread of the process.
const MEMBARRIER_SYNC_CORE: u64 = 32;
/// What must be registered first for [`MEMBARRIER_SYNC_CORE`].
pub(crate) const MEMBARRIER_REGISTER_SYNC_CORE: u64 = 64;

/// One entry with a breakpoint over it.
#[derive(Debug, Clone)]
pub(crate) struct TrapSite {
    /// The old function's entry, where the `int3` is.
    pub(crate) entry: u64,
    /// The bytes there before the commit (the jump's length).
    pub(crate) original: Vec<u8>,
    /// Where a switched thread goes: the jump's target.
    pub(crate) new: u64,
    /// Where a thread not switched goes: the displaced instructions, then a jump back.
    pub(crate) old: u64,
}

/// What the single-thread stops cost, for the report. Each is an upper bound: counted from the
/// interrupt that stopped the thread, or for a trap from the last moment the tool saw no stop
/// waiting (the kernel does not say when a stop began).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StopTimes {
    /// The longest time one thread was held stopped, in microseconds.
    pub(crate) max_us: u64,
    /// How many times a thread was held.
    pub(crate) count: u32,
    /// All holds together, in microseconds.
    pub(crate) total_us: u64,
}

impl StopTimes {
    fn record(&mut self, since: Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.max_us = self.max_us.max(us);
        self.total_us = self.total_us.saturating_add(us);
        self.count += 1;
    }
}

/// Whether a thread stopped at an entry may change to the goal state now: it has no frame in
/// the code it leaves.
pub(crate) type CleanCheck<'a> = dyn Fn(&StoppedThread) -> bool + 'a;

/// Every thread seized, running, with the routing state of each.
pub(crate) struct Seized<'a> {
    pid: i32,
    held: Vec<i32>,
    /// Threads switched to the new code.
    switched: HashSet<i32>,
    /// The state threads are moving to (`true`: new code).
    goal: bool,
    sites: Vec<TrapSite>,
    /// Whether the `int3`s are in memory (so a release must take them out first).
    armed: bool,
    /// Whether they are in and every core has seen them: a thread created from then on reaches
    /// an old function only through a trap.
    trapping: bool,
    clean: Box<CleanCheck<'a>>,
    syscall_insn: u64,
    /// Every time a thread was held stopped.
    times: StopTimes,
    /// Each thread's registers as last seen stopped.
    seen: HashMap<i32, StoppedThread>,
    /// Children forked meanwhile, their entries already given back their original bytes.
    forked: HashSet<i32>,
    /// Children made by `vfork` meanwhile, traced as threads until they `exec` or exit, each
    /// with the thread that made it (which sleeps in the kernel until then).
    vforked: HashMap<i32, i32>,
    /// Children (of another process id) whose first stop came before their parent's event:
    /// held stopped until that event says what they are.
    unclaimed: HashSet<i32>,
    /// The last moment no stop was waiting to be collected. A thread that stops by itself (at
    /// an entry's `int3`) stopped after it, so its stop is counted from then: an upper bound,
    /// since the kernel does not say when a stop began, and the tool may be busy elsewhere
    /// (walking another thread's stack) while the trap waits for it.
    quiet: Instant,
    _same_os_thread: PhantomData<*const ()>,
}

/// A thread held stopped by [`Seized::stop_one`].
pub(crate) struct Held {
    /// Where it stands.
    pub(crate) thread: StoppedThread,
    since: Instant,
}

impl<'a> Seized<'a> {
    /// Seizes every thread of `pid` without stopping any, stopping each once alone so a
    /// `clone` in flight completes, and re-reads the thread list until it is stable: then
    /// every thread is traced and so is every thread it creates.
    pub(crate) fn seize(
        pid: i32,
        sites: Vec<TrapSite>,
        clean: Box<CleanCheck<'a>>,
    ) -> Result<Seized<'a>, PtraceError> {
        proc::ensure_process(pid)?;
        let mut s = Seized {
            pid,
            held: Vec::new(),
            switched: HashSet::new(),
            goal: true,
            sites,
            armed: false,
            trapping: false,
            clean,
            syscall_insn: find_syscall_insn(pid)?,
            times: StopTimes::default(),
            seen: HashMap::new(),
            forked: HashSet::new(),
            vforked: HashMap::new(),
            unclaimed: HashSet::new(),
            quiet: Instant::now(),
            _same_os_thread: PhantomData,
        };
        block_sigchld();
        let options = sys::SEIZE_OPTIONS
            | libc::PTRACE_O_TRACECLONE
            | libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACEVFORK
            | libc::PTRACE_O_TRACEEXEC;
        loop {
            let fresh: Vec<i32> = proc::list_tasks(pid)?
                .into_iter()
                .filter(|t| !s.held.contains(t))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for tid in fresh {
                match sys::seize_with(tid, options) {
                    Ok(()) => s.held.push(tid),
                    Err(Errno::ESRCH) => {}
                    Err(Errno::EPERM) if proc::thread_is_dead(pid, tid) => {}
                    // Created by a thread already ours: traced since its clone.
                    Err(Errno::EPERM) if proc::tracer_pid(pid, tid) == Some(own_pid()) => {
                        s.adopt(tid);
                        continue;
                    }
                    Err(e) => return Err(seize_error(pid, tid, e)),
                }
                if s.held.last() == Some(&tid) {
                    if let Some(held) = s.stop_one(tid)? {
                        s.resume_one(held, None)?;
                    }
                }
            }
        }
        if s.held.is_empty() {
            return Err(PtraceError::NoSuchProcess(pid));
        }
        Ok(s)
    }

    /// The traced threads.
    pub(crate) fn threads(&self) -> &[i32] {
        &self.held
    }

    /// Whether `tid` runs the new code.
    pub(crate) fn is_switched(&self, tid: i32) -> bool {
        self.switched.contains(&tid)
    }

    /// Every thread's registers as last seen stopped (each not seen yet is stopped alone for
    /// it): where their stacks are, for the scan of memory made while they run.
    pub(crate) fn snapshots(&mut self) -> Result<Vec<StoppedThread>, PtraceError> {
        for tid in self.held.clone() {
            if !self.seen.contains_key(&tid) {
                if let Some(held) = self.stop_one(tid)? {
                    self.resume_one(held, None)?;
                }
            }
        }
        Ok(self
            .held
            .iter()
            .filter_map(|t| self.seen.get(t).cloned())
            .collect())
    }

    /// Whether `tid` is in the goal state.
    pub(crate) fn at_goal(&self, tid: i32) -> bool {
        self.switched.contains(&tid) == self.goal
    }

    /// Moves `tid` to the goal state.
    pub(crate) fn reach_goal(&mut self, tid: i32) {
        if self.goal {
            self.switched.insert(tid);
        } else {
            self.switched.remove(&tid);
        }
    }

    /// Whether every thread is in the goal state.
    pub(crate) fn all_at_goal(&self) -> bool {
        self.held.iter().all(|&t| self.at_goal(t))
    }

    /// Turns the goal around (a failed commit sends threads back to the old code) with the
    /// check of what a thread must have left first.
    pub(crate) fn set_goal(&mut self, goal: bool, clean: Box<CleanCheck<'a>>) {
        self.goal = goal;
        self.clean = clean;
    }

    /// Places the `int3` over every entry and synchronises the cores.
    pub(crate) fn arm(&mut self) -> Result<(), PtraceError> {
        self.quiet = Instant::now();
        self.armed = true;
        for site in self.sites.clone() {
            write_memory(self.pid, site.entry, &[INT3])?;
        }
        self.sync_cores()?;
        self.trapping = true;
        Ok(())
    }

    /// Writes every jump over its `int3` (the tail, sync, the first byte, sync): from then on
    /// no thread traps, and the threads may be released.
    pub(crate) fn commit_jumps(&mut self, jumps: &[Vec<u8>]) -> Result<(), PtraceError> {
        self.rewrite(jumps)?;
        (self.armed, self.trapping) = (false, false);
        Ok(())
    }

    fn rewrite(&mut self, bytes: &[Vec<u8>]) -> Result<(), PtraceError> {
        let entries: Vec<u64> = self.sites.iter().map(|s| s.entry).collect();
        for (&entry, b) in entries.iter().zip(bytes) {
            if b.len() > 1 {
                write_memory(self.pid, entry + 1, &b[1..])?;
            }
        }
        self.sync_cores()?;
        for (&entry, b) in entries.iter().zip(bytes) {
            write_memory(self.pid, entry, &b[..1])?;
        }
        self.sync_cores()
    }

    /// Serialises the instruction stream of every core running the process:
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` made by one of its threads.
    fn sync_cores(&mut self) -> Result<(), PtraceError> {
        let r = self.syscall(SYS_MEMBARRIER, [MEMBARRIER_SYNC_CORE, 0, 0, 0, 0, 0])?;
        if r < 0 {
            return Err(PtraceError::Failed {
                pid: self.pid,
                op: "membarrier(SYNC_CORE) in the target".into(),
                detail: Errno::from_raw(-r as i32).desc().to_string(),
            });
        }
        Ok(())
    }

    /// Runs one system call on one held thread (stopped alone for it), one not waiting for a
    /// `vfork` child when there is one.
    fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, PtraceError> {
        let pid = self.pid;
        loop {
            let waiting = |t: &&i32| self.vforked.values().any(|p| p == *t);
            let Some(&tid) = self.held.iter().find(|t| !waiting(t)).or(self.held.first()) else {
                return Err(PtraceError::NoSuchProcess(pid));
            };
            let Some(held) = self.stop_one(tid)? else {
                continue;
            };
            let saved = sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
            let mut regs = saved;
            regs.rip = self.syscall_insn;
            regs.rax = nr as u64;
            regs.orig_rax = u64::MAX;
            (regs.rdi, regs.rsi, regs.rdx) = (args[0], args[1], args[2]);
            (regs.r10, regs.r8, regs.r9) = (args[3], args[4], args[5]);
            sys::set_regs(tid, &regs).map_err(|e| op_failed(pid, tid, "PTRACE_SETREGS", e))?;
            let (result, signal) = self.step_syscall(tid)?;
            sys::set_regs(tid, &saved).map_err(|e| op_failed(pid, tid, "PTRACE_SETREGS", e))?;
            if signal == 0 {
                restart_stop_eintr(pid, tid);
            }
            self.times.record(held.since);
            sys::cont(tid, signal).map_err(|e| op_failed(pid, tid, "PTRACE_CONT", e))?;
            return Ok(result);
        }
    }

    /// Single-steps `tid` over the injected `syscall`; its result and a signal that arrived
    /// meanwhile (delivered when the thread goes on).
    fn step_syscall(&mut self, tid: i32) -> Result<(i64, i32), PtraceError> {
        let (pid, insn) = (self.pid, self.syscall_insn);
        let mut signal = 0;
        for _ in 0..super::MAX_STEPS {
            sys::single_step(tid).map_err(|e| op_failed(pid, tid, "PTRACE_SINGLESTEP", e))?;
            match sys::wait_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))? {
                Stop::Gone | Stop::Exiting => return Err(PtraceError::NoSuchProcess(pid)),
                Stop::Signal { sig } => {
                    let now =
                        sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
                    if sig == libc::SIGTRAP && now.rip == insn + 2 && is_kernel_trap(tid) {
                        return Ok((now.rax as i64, signal));
                    }
                    if signal == 0 {
                        signal = sig;
                    } else if let Ok(info) = sys::get_siginfo(tid) {
                        let _ = sys::requeue_signal(pid, tid, &info);
                    }
                }
                Stop::OtherEvent { event } => self.adopt_new(tid, event)?,
                Stop::Interrupt { .. } => {}
            }
        }
        Err(PtraceError::Failed {
            pid: tid,
            op: "single-stepping membarrier in the target".into(),
            detail: format!("it did not complete within {} steps", super::MAX_STEPS),
        })
    }

    /// Stops `tid` alone (handling whatever else it reports first; for a thread whose `vfork`
    /// child still runs, whatever any thread reports: it stops only once the child has called
    /// `exec` or exited, and the child, or a thread it waits for, may need a trap served until
    /// then); `None` when it is gone. The hold is
    /// counted from the interrupt (the thread stops at some moment after it: an upper bound,
    /// like the traps' in `route_trap`), or for a `vfork` parent from its child's `exec` or
    /// exit: until then the kernel keeps it asleep whether it is stopped or not.
    pub(crate) fn stop_one(&mut self, tid: i32) -> Result<Option<Held>, PtraceError> {
        let pid = self.pid;
        let mut since = Instant::now();
        match sys::interrupt(tid) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(op_failed(pid, tid, "PTRACE_INTERRUPT", e)),
        }
        let mut in_vfork = false;
        loop {
            let waits_for_child = self.vforked.values().any(|&parent| parent == tid);
            if in_vfork && !waits_for_child {
                since = Instant::now();
            }
            in_vfork = waits_for_child;
            // A `vfork` child may be in its `exec` (milliseconds): meanwhile the others' traps
            // are served, as for a parent waiting for it.
            let stop = if waits_for_child || self.vforked.contains_key(&tid) {
                match self.poll_fairly(tid)? {
                    Some(stop) => stop,
                    None => continue,
                }
            } else {
                sys::wait_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))?
            };
            // The interrupt's stop, or a group stop that came first: the kernel reports one
            // `PTRACE_EVENT_STOP` for both (waiting for another would wait forever).
            if let Stop::Interrupt { .. } = stop {
                if !self.take_pending_trap(tid)? {
                    self.forget(tid);
                    return Ok(None);
                }
                let regs =
                    sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
                let thread = StoppedThread::from_regs(tid, &regs);
                self.seen.insert(tid, thread.clone());
                return Ok(Some(Held { thread, since }));
            }
            if !self.settle(tid, stop)? {
                return Ok(None);
            }
            if let Stop::OtherEvent { .. } = stop {
                // An event stop (clone, fork, vfork) clears a pending interrupt: the thread
                // would run on and never stop for it (this hung commits). Ask again.
                match sys::interrupt(tid) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(op_failed(pid, tid, "PTRACE_INTERRUPT", e)),
                }
            }
        }
    }

    /// One round over every traced task, each collected at most once: `tid`'s stop when it
    /// has one, else the others' stops handled (then a short wait when there were none).
    /// `waitpid(-1)` alone would hand the same busy thread back every time and starve the
    /// rest, the `vfork` child that `tid` waits for among them.
    fn poll_fairly(&mut self, tid: i32) -> Result<Option<Stop>, PtraceError> {
        let pid = self.pid;
        let failed = |e| op_failed(pid, tid, "waitpid", e);
        if let Some(stop) = sys::poll_stop(tid).map_err(failed)? {
            return Ok(Some(stop));
        }
        let mut handled = false;
        for other in self.held.clone().into_iter().filter(|&t| t != tid) {
            if let Some(stop) = sys::poll_stop(other).map_err(failed)? {
                self.settle(other, stop)?;
                handled = true;
            }
        }
        // A task not known yet (a new thread's or child's first stop).
        if let Some((other, stop)) = sys::poll_any().map_err(failed)? {
            if other == tid {
                return Ok(Some(stop));
            }
            self.settle(other, stop)?;
            handled = true;
        }
        if !handled {
            // Nothing was waiting: a trap collected later stopped after this moment.
            self.quiet = Instant::now();
            wait_sigchld(Duration::from_millis(1));
        }
        Ok(None)
    }

    /// Lets a thread held by [`Seized::stop_one`] go on (at `rip` when given).
    pub(crate) fn resume_one(&mut self, held: Held, rip: Option<u64>) -> Result<(), PtraceError> {
        let (pid, tid) = (self.pid, held.thread.tid);
        if let Some(rip) = rip {
            self.set_rip(tid, rip)?;
        }
        restart_stop_eintr(pid, tid);
        self.times.record(held.since);
        match sys::cont(tid, 0) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(op_failed(pid, tid, "PTRACE_CONT", e)),
        }
    }

    /// The entry whose `int3` a thread at `rip` has just executed (`rip` one past a site's
    /// entry), if it is one.
    fn trapped_at(&self, rip: u64) -> Option<u64> {
        let at = rip.wrapping_sub(1);
        self.sites.iter().any(|s| s.entry == at).then_some(at)
    }

    /// Takes a `SIGTRAP` of one of our `int3`s still pending on `tid`, just stopped by an
    /// interrupt (it trapped right before the stop): the thread is let run into that signal's
    /// stop, where the signal is dropped, and put back at the entry, to trap again or run what
    /// is there by then. Held with the trap pending, the thread would take it at its next step
    /// or be handed it at its release, and die of it (this killed targets: a membarrier
    /// injected on such a thread passed the trap on as the target's own). `false`: it is gone.
    fn take_pending_trap(&mut self, tid: i32) -> Result<bool, PtraceError> {
        let pid = self.pid;
        let Ok(mut regs) = sys::get_regs(tid) else {
            return Ok(true);
        };
        let Some(entry) = self
            .trapped_at(regs.rip)
            .filter(|_| proc::trap_pending(pid, tid))
        else {
            return Ok(true);
        };
        for _ in 0..super::MAX_STEPS {
            sys::cont(tid, 0).map_err(|e| op_failed(pid, tid, "PTRACE_CONT", e))?;
            match sys::wait_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))? {
                Stop::Gone => return Ok(false),
                Stop::Exiting => {
                    let _ = sys::detach(tid, 0);
                    return Ok(false);
                }
                Stop::Signal { sig } if sig == libc::SIGTRAP && is_kernel_trap(tid) => {
                    regs.rip = entry;
                    sys::set_regs(tid, &regs)
                        .map_err(|e| op_failed(pid, tid, "PTRACE_SETREGS", e))?;
                    return Ok(true);
                }
                // Another signal dequeued first goes back to the queue for later.
                Stop::Signal { .. } => {
                    if let Ok(info) = sys::get_siginfo(tid) {
                        let _ = sys::requeue_signal(pid, tid, &info);
                    }
                }
                Stop::OtherEvent { event } => self.adopt_new(tid, event)?,
                Stop::Interrupt { .. } => {}
            }
        }
        Err(PtraceError::Failed {
            pid: tid,
            op: "taking a pending breakpoint trap".into(),
            detail: format!("it did not come within {} stops", super::MAX_STEPS),
        })
    }

    fn set_rip(&self, tid: i32, rip: u64) -> Result<(), PtraceError> {
        let pid = self.pid;
        let mut regs: Regs =
            sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
        regs.rip = rip;
        sys::set_regs(tid, &regs).map_err(|e| op_failed(pid, tid, "PTRACE_SETREGS", e))
    }

    /// Handles the stops the threads report, waiting up to `wait` for the first; at most a
    /// few per thread, since threads calling replaced functions trap again at once.
    pub(crate) fn pump(&mut self, wait: Duration) -> Result<(), PtraceError> {
        let mut waited = false;
        let mut budget = 2 * self.held.len() + 2;
        loop {
            match sys::poll_any().map_err(|e| op_failed(self.pid, self.pid, "waitpid", e))? {
                Some((tid, stop)) => {
                    self.settle(tid, stop)?;
                    budget -= 1;
                    if budget == 0 {
                        return Ok(());
                    }
                }
                None if waited => {
                    self.quiet = Instant::now();
                    return Ok(());
                }
                None => {
                    self.quiet = Instant::now();
                    wait_sigchld(wait);
                    waited = true;
                }
            }
        }
    }

    /// Handles one stop of `tid` and lets it go on; `false` when the thread is gone.
    fn settle(&mut self, tid: i32, stop: Stop) -> Result<bool, PtraceError> {
        let pid = self.pid;
        let go_on = |sig| match sys::cont(tid, sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(true),
            Err(e) => Err(op_failed(pid, tid, "PTRACE_CONT", e)),
        };
        match stop {
            Stop::Gone => {
                self.forget(tid);
                Ok(false)
            }
            Stop::Exiting => {
                let _ = sys::detach(tid, 0);
                self.forget(tid);
                Ok(false)
            }
            Stop::Signal { sig } if sig == libc::SIGTRAP => match self.route_trap(tid)? {
                true => go_on(0),
                false => go_on(sig),
            },
            Stop::Signal { sig } => go_on(sig),
            Stop::OtherEvent {
                event: libc::PTRACE_EVENT_EXEC,
            } if self.vforked.contains_key(&tid) => {
                // A vfork child leaves the process's memory: nothing of ours is in its own.
                let _ = sys::detach(tid, 0);
                self.forget(tid);
                Ok(false)
            }
            Stop::OtherEvent { event } => {
                self.adopt_new(tid, event)?;
                go_on(0)
            }
            Stop::Interrupt { .. } if !self.held.contains(&tid) => {
                if !is_other_process(pid, tid) {
                    // A new thread's first stop, before its parent's clone event was seen.
                    self.adopt(tid);
                    go_on(0)
                } else {
                    // A child's first stop, before its parent's fork or vfork event was seen.
                    self.unclaimed.insert(tid);
                    Ok(true)
                }
            }
            Stop::Interrupt { .. } => go_on(0),
        }
    }

    /// A `SIGTRAP` at one of our `int3`s: sends the thread on (`true`); `false` for any other
    /// `SIGTRAP`, which is the target's own.
    fn route_trap(&mut self, tid: i32) -> Result<bool, PtraceError> {
        let since = self.quiet;
        let pid = self.pid;
        let regs = sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
        let at = regs.rip.wrapping_sub(1);
        let Some(site) = self.sites.iter().find(|s| s.entry == at).cloned() else {
            return Ok(false);
        };
        if !is_kernel_trap(tid) || read_memory(pid, at, 1)?.first() != Some(&INT3) {
            // Not ours, or a trap taken on a stale core after the jump went in: run the entry.
            if is_kernel_trap(tid) {
                self.set_rip(tid, at)?;
                return Ok(true);
            }
            return Ok(false);
        }
        let mut thread = StoppedThread::from_regs(tid, &regs);
        thread.pc = at;
        thread.registers[16] = at;
        self.seen.insert(tid, thread.clone());
        if self.is_switched(tid) != self.goal && (self.clean)(&thread) {
            self.reach_goal(tid);
        }
        let to = if self.is_switched(tid) {
            site.new
        } else {
            site.old
        };
        self.set_rip(tid, to)?;
        self.times.record(since);
        Ok(true)
    }

    /// A task created by `parent` (its clone, fork or vfork event): a thread is adopted; a
    /// child process, once its first stop is collected, is given back its original bytes and
    /// let go when it has memory of its own (forked), or traced as one more thread in
    /// `parent`'s state when it shares the process's (vfork: it runs on `parent`'s frames).
    fn adopt_new(&mut self, parent: i32, event: i32) -> Result<(), PtraceError> {
        let vfork = match event {
            libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK => false,
            libc::PTRACE_EVENT_VFORK => true,
            _ => return Ok(()),
        };
        let Some(child) = sys::event_msg(parent)
            .ok()
            .and_then(|m| i32::try_from(m).ok())
        else {
            return Ok(());
        };
        if !is_other_process(self.pid, child) && !self.unclaimed.contains(&child) {
            self.adopt(child);
            return Ok(());
        }
        if self.forked.contains(&child) || self.vforked.contains_key(&child) {
            return Ok(());
        }
        if !self.unclaimed.remove(&child)
            && matches!(sys::wait_stop(child), Ok(Stop::Gone) | Err(_))
        {
            return Ok(());
        }
        if proc::shares_memory(self.pid, child).unwrap_or(vfork) {
            self.held.push(child);
            self.vforked.insert(child, parent);
            if self.is_switched(parent) {
                self.switched.insert(child);
            }
            return match sys::cont(child, 0) {
                Ok(()) | Err(Errno::ESRCH) => Ok(()),
                Err(e) => Err(op_failed(self.pid, child, "PTRACE_CONT", e)),
            };
        }
        self.release_child(child);
        Ok(())
    }

    /// A child forked during the commit (held at its first stop) copied the `int3`s: its
    /// entries get their original bytes back (it runs the old code, as a process forked before
    /// the commit, and its copy of the ledger says the patch is not in) before it runs and is
    /// let go.
    fn release_child(&mut self, child: i32) {
        self.forked.insert(child);
        for site in &self.sites {
            // Forked after the jumps went in, it has them (and no `int3`): it keeps them.
            if read_memory(child, site.entry, 1).ok().as_deref() == Some(&[INT3]) {
                let _ = write_memory(child, site.entry, &site.original);
            }
        }
        let _ = sys::detach(child, 0);
    }

    /// A thread created during the commit: once the `int3`s are in and synchronised, it has no
    /// old frames and reaches an old function only through a trapping entry, so it starts at
    /// the goal. One created before (while the memory is scanned) may already run old code
    /// without a trap: it is checked like the others (this mixed call chains).
    fn adopt(&mut self, tid: i32) {
        if !self.held.contains(&tid) {
            self.held.push(tid);
            if self.trapping {
                self.reach_goal(tid);
            }
        }
    }

    fn forget(&mut self, tid: i32) {
        self.vforked.remove(&tid);
        self.seen.remove(&tid);
        self.held.retain(|&t| t != tid);
        self.switched.remove(&tid);
    }

    /// Detaches every thread (each stopped alone first, so a trap it took is handled while it
    /// is still ours), after taking out any `int3` still in memory; what the stops cost.
    pub(crate) fn finish(mut self) -> Result<StopTimes, PtraceError> {
        if self.armed {
            self.disarm()?;
        }
        self.release()?;
        Ok(self.times)
    }

    /// Writes every entry's original bytes back over the `int3`s, synchronised.
    fn disarm(&mut self) -> Result<(), PtraceError> {
        let originals: Vec<Vec<u8>> = self.sites.iter().map(|s| s.original.clone()).collect();
        // Threads in the old code keep going there; those sent to the new code finish in it.
        for site in &mut self.sites {
            site.new = site.entry;
            site.old = site.entry;
        }
        self.rewrite(&originals)?;
        (self.armed, self.trapping) = (false, false);
        Ok(())
    }

    fn release(&mut self) -> Result<(), PtraceError> {
        let pid = self.pid;
        let mut first_err = None;
        while let Some(&tid) = self.held.first() {
            match self.stop_one(tid) {
                Ok(Some(held)) => {
                    self.times.record(held.since);
                    restart_stop_eintr(pid, tid);
                    if let Err(e) = sys::detach(tid, 0) {
                        if !(e == Errno::ESRCH && proc::thread_is_dead(pid, tid)) {
                            first_err.get_or_insert(op_failed(pid, tid, "PTRACE_DETACH", e));
                        }
                    }
                    self.forget(tid);
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                    let _ = sys::detach(tid, 0);
                    self.forget(tid);
                }
            }
        }
        // A child whose parent's event never came (the parent died first): let go as forked,
        // or, sharing the memory (which holds no `int3` by now), as it is.
        for child in std::mem::take(&mut self.unclaimed) {
            match proc::shares_memory(pid, child) {
                Some(false) => self.release_child(child),
                _ => drop(sys::detach(child, 0)),
            }
        }
        restore_sigchld();
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Seized<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Without a synchronised write-back a released thread could trap untraced: keep
            // trying while the process lives.
            while self.disarm().is_err() {
                if proc::ensure_process(self.pid).is_err() {
                    return;
                }
            }
        }
        let _ = self.release();
    }
}

/// Whether task `tid` is the leader of a process other than `pid` (a forked child), by its
/// `Tgid`; a task that cannot be read counts as a thread of `pid`.
fn is_other_process(pid: i32, tid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse::<i32>().ok());
    tgid.is_some_and(|g| g != pid && g == tid)
}

/// This process's pid (the tracer's).
fn own_pid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Blocks `SIGCHLD` in the calling thread, so [`wait_sigchld`] can wait for it.
fn block_sigchld() {
    // SAFETY: plain signal-mask calls on a local, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Undoes [`block_sigchld`], dropping a `SIGCHLD` our own tracees left pending.
fn restore_sigchld() {
    wait_sigchld(Duration::ZERO);
    // SAFETY: as in block_sigchld.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits up to `wait` for a `SIGCHLD` (a tracee reported a stop).
fn wait_sigchld(wait: Duration) {
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
    };
    // SAFETY: a local set and timespec; the siginfo out-pointer may be null.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigtimedwait(&set, std::ptr::null_mut(), &ts);
    }
}
