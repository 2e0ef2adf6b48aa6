//! ptrace control of a target process: remote system calls through one thread, memory access, and
//! stopping every thread for the commit.
//!
//! All tracing uses `PTRACE_SEIZE` + `PTRACE_INTERRUPT` (never `PTRACE_ATTACH`, which would send a
//! `SIGSTOP` that could be observed or lost). Two rules hold on every path, including errors:
//!
//! * a thread we seized is detached before we return (or, for [`StoppedProcess`], when it is
//!   resumed or dropped), with its registers restored;
//! * a signal the kernel reported to us while a thread was stopped (a signal-delivery-stop) is
//!   handed back to that thread, with its original `siginfo`, so the target never loses one.
//!
//! The Linux ptrace API binds a tracee to the OS thread that seized it: every later request for
//! it must come from that same thread. [`remote_syscall`] seizes and detaches within one call;
//! [`StoppedProcess`] is therefore `!Send`.
//!
//! Memory is accessed through `/proc/PID/mem`, which (for a caller allowed to ptrace the target)
//! also writes read-only text pages; `process_vm_writev` would fail there with `EFAULT`.

mod helper;
mod proc;
mod seized;
mod sys;

pub(crate) use helper::{in_child, Forked};
pub(crate) use proc::{group_stopped, shares_memory};
pub(crate) use seized::{Seized, TrapSite, MEMBARRIER_REGISTER_SYNC_CORE};

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use thiserror::Error;

use sys::{Regs, SigInfo, Stop};

/// Why a ptrace operation on the target failed.
#[derive(Debug, Error)]
pub enum PtraceError {
    /// The process does not exist (or exited while we worked on it).
    #[error("no process with pid {0} (it does not exist or has exited)")]
    NoSuchProcess(i32),
    /// The kernel refused to let us trace the process.
    #[error("not permitted to trace pid {pid}: {reason}")]
    NotPermitted {
        /// The target pid.
        pid: i32,
        /// Why, as far as we can tell (e.g. "another tracer is attached", "ptrace_scope", "not root").
        reason: String,
    },
    /// Any other failure, with the operation that failed.
    #[error("{op} on pid {pid} failed: {detail}")]
    Failed {
        /// The pid or tid concerned.
        pid: i32,
        /// What we were doing ("PTRACE_SEIZE", "writing /proc/N/mem at 0x...", ...).
        op: String,
        /// The OS error or other detail.
        detail: String,
    },
}

/// Builds [`PtraceError::Failed`] for a ptrace request on thread `tid`, or
/// [`PtraceError::NoSuchProcess`] when the whole process has gone away meanwhile.
fn op_failed(pid: i32, tid: i32, op: &str, err: Errno) -> PtraceError {
    if proc::ensure_process(pid).is_err() {
        return PtraceError::NoSuchProcess(pid);
    }
    PtraceError::Failed {
        pid: tid,
        op: op.to_string(),
        detail: err.desc().to_string(),
    }
}

/// Maps a failed `PTRACE_SEIZE` of thread `tid` to the error the caller sees.
fn seize_error(pid: i32, tid: i32, err: Errno) -> PtraceError {
    match err {
        Errno::ESRCH => PtraceError::NoSuchProcess(pid),
        Errno::EPERM => PtraceError::NotPermitted {
            pid,
            reason: proc::eperm_reason(pid, tid),
        },
        e => op_failed(pid, tid, &format!("PTRACE_SEIZE of thread {tid}"), e),
    }
}

/// Upper bound on the single-steps spent getting the injected `syscall` executed; each extra step
/// is caused by a signal or stop that arrived first, so this is only a guard against livelock.
const MAX_STEPS: usize = 256;

/// Runs one system call in the target through one of its threads and returns the raw result
/// (negative errno on failure), while the other threads keep running. The thread's registers,
/// pending syscall restart and signals are restored exactly; the thread is detached afterwards.
///
/// The main thread is used if it is alive, else another thread. Its `rip` is pointed at an
/// existing `syscall` instruction of the process (in the vDSO or libc), never at new code, and
/// the stack is not touched. The result is the raw `rax`: kernel-internal restart codes
/// (`-ERESTARTSYS`, ...) may appear if the injected call itself blocks and is interrupted.
///
/// The injection runs in a short-lived helper process forked for it: while the thread is ours
/// its registers point at the injected call and a single-step trap may be pending, so a tracer
/// that died then (the tool killed with SIGKILL) would let the thread run on with them, or die
/// of the `SIGTRAP`. Killing the tool does not kill the helper, which finishes the call and
/// releases the thread as it was.
pub fn remote_syscall(pid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PtraceError> {
    proc::ensure_process(pid)?;
    helper::run(pid, || remote_syscall_here(pid, nr, args))
}

/// [`remote_syscall`] from the calling process itself.
fn remote_syscall_here(pid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PtraceError> {
    let insn = find_syscall_insn(pid)?;
    on_some_thread(pid, "remote syscall", |tid| {
        inject(pid, tid, insn, nr, args)
    })
}

/// Runs `run` on the main thread if it is alive, else on the others in tid order, until one
/// gives a result (`Ok(None)`: the thread vanished under us, try another one).
fn on_some_thread(
    pid: i32,
    what: &str,
    mut run: impl FnMut(i32) -> Result<Option<i64>, PtraceError>,
) -> Result<i64, PtraceError> {
    let mut tids = proc::list_tasks(pid)?;
    if let Some(i) = tids.iter().position(|&t| t == pid) {
        let main = tids.remove(i);
        tids.insert(0, main);
    }
    for tid in tids {
        if proc::thread_is_dead(pid, tid) {
            continue;
        }
        if let Some(result) = run(tid)? {
            return Ok(result);
        }
    }
    proc::ensure_process(pid)?;
    Err(PtraceError::Failed {
        pid,
        op: what.to_string(),
        detail: "no thread of the process could be seized".to_string(),
    })
}

/// The thread pointer (`%fs` base) of one thread of the target, read at a brief stop of that
/// thread alone (through the injection helper; the thread is released as it was).
pub fn thread_pointer(pid: i32) -> Result<u64, PtraceError> {
    proc::ensure_process(pid)?;
    let tp = helper::run(pid, || {
        on_some_thread(pid, "reading the thread pointer", |tid| {
            let Some((mut th, saved)) = seize_for_injection(pid, tid)? else {
                return Ok(None);
            };
            th.finish()?;
            Ok(Some(saved.fs_base as i64))
        })
    })?;
    Ok(tp as u64)
}

/// Where an injected function call returns to: no code is there, so its `ret` stops the thread
/// with `SIGSEGV` at this address.
const RETURN_MARK: u64 = 0;
/// The red zone below a thread's stack pointer, left alone.
const RED_ZONE: u64 = 128;
/// Stack below the call's frame saved and put back afterwards (what the called function may
/// write there), so the call leaves no trace in the thread's memory.
const CALL_SCRATCH: u64 = 8192;

/// Calls the function at `function` (no arguments) in the target through one of its threads
/// and returns what it returns (`rax`), while the other threads keep running; for short,
/// self-contained functions such as IFUNC resolvers, which the dynamic linker calls the same
/// way. The thread's registers, its stack below the red zone and its signals are restored
/// exactly; a call that faults or does not return within `timeout` is abandoned the same way,
/// with an error. Runs in a helper process like [`remote_syscall`].
pub fn remote_call(pid: i32, function: u64, timeout: Duration) -> Result<u64, PtraceError> {
    proc::ensure_process(pid)?;
    let deadline = Instant::now() + timeout;
    let result = helper::run(pid, || {
        on_some_thread(pid, "remote call", |tid| {
            call_on(pid, tid, function, deadline).map(|r| r.map(|v| v as i64))
        })
    })?;
    Ok(result as u64)
}

/// [`remote_call`] through thread `tid`; `Ok(None)` when the thread vanished before the call.
fn call_on(
    pid: i32,
    tid: i32,
    function: u64,
    deadline: Instant,
) -> Result<Option<u64>, PtraceError> {
    let Some((mut th, saved)) = seize_for_injection(pid, tid)? else {
        return Ok(None);
    };
    let top = saved.rsp.wrapping_sub(RED_ZONE) & !0xf;
    let entry_rsp = top.wrapping_sub(8);
    let low = top.wrapping_sub(CALL_SCRATCH);
    let stack = read_memory(pid, low, CALL_SCRATCH as usize)?;
    write_memory(pid, entry_rsp, &RETURN_MARK.to_le_bytes())?;
    let mut regs = saved;
    regs.rip = function;
    regs.rsp = entry_rsp;
    regs.rax = 0;
    regs.orig_rax = u64::MAX;
    sys::set_regs(tid, &regs).map_err(|e| op_failed(pid, tid, "PTRACE_SETREGS", e))?;
    let result = run_until_return(&mut th, function, deadline);
    if !th.done {
        if !th.stopped {
            // Stop it again (timeout) before its stack is put back.
            let _ = sys::interrupt(tid);
            match sys::wait_stop(tid) {
                Ok(Stop::Gone) | Err(_) => th.done = true,
                Ok(Stop::Signal { sig }) if !is_fault(sig) => {
                    th.stopped = true;
                    th.remember_signal(sig);
                }
                Ok(_) => th.stopped = true,
            }
        }
        if th.stopped {
            write_memory(pid, low, &stack)?;
            th.finish()?;
        }
    }
    result.map(Some)
}

/// Signals an injected call's own fault raises (never handed to the target).
fn is_fault(sig: i32) -> bool {
    use nix::libc::{SIGBUS, SIGFPE, SIGILL, SIGSEGV, SIGTRAP};
    [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP].contains(&sig)
}

/// Resumes the called thread until the call returns to [`RETURN_MARK`]; signals meant for the
/// target are kept for later, a fault ends the call with an error.
fn run_until_return(
    th: &mut Injection,
    function: u64,
    deadline: Instant,
) -> Result<u64, PtraceError> {
    let (pid, tid) = (th.pid, th.tid);
    let call = format!("the call of 0x{function:x}");
    loop {
        sys::cont(tid, 0).map_err(|e| op_failed(pid, tid, "PTRACE_CONT", e))?;
        th.stopped = false;
        let stop = loop {
            match sys::poll_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))? {
                Some(stop) => break stop,
                None if Instant::now() >= deadline => {
                    return Err(PtraceError::Failed {
                        pid,
                        op: call,
                        detail: "it did not return in time".to_string(),
                    })
                }
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        };
        match stop {
            Stop::Gone => {
                th.done = true;
                return Err(PtraceError::NoSuchProcess(pid));
            }
            Stop::Exiting => {
                th.stopped = true;
                return Err(PtraceError::NoSuchProcess(pid));
            }
            Stop::Interrupt { .. } | Stop::OtherEvent { .. } => th.stopped = true,
            Stop::Signal { sig } => {
                th.stopped = true;
                let now =
                    sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
                if sig == nix::libc::SIGSEGV && now.rip == RETURN_MARK {
                    return Ok(now.rax);
                }
                if is_fault(sig) {
                    return Err(PtraceError::Failed {
                        pid,
                        op: call,
                        detail: format!("it faulted (signal {sig}) at 0x{:x}", now.rip),
                    });
                }
                th.remember_signal(sig);
            }
        }
    }
}

/// Finds the address of a `syscall` instruction (`0f 05`) in an executable mapping, looking in
/// the vDSO first, then libc, then everything else.
fn find_syscall_insn(pid: i32) -> Result<u64, PtraceError> {
    let mut maps = proc::exec_mappings(pid)?;
    maps.sort_by_key(|m| {
        if m.name == "[vdso]" {
            0
        } else if m.name.contains("/libc.so") || m.name.contains("/libc-") {
            1
        } else {
            2
        }
    });
    let mem = proc::open_mem(pid, false)?;
    const CHUNK: u64 = 64 * 1024;
    for m in &maps {
        let mut at = m.start;
        while at < m.end {
            let len = CHUNK.min(m.end - at);
            let mut buf = vec![0u8; len as usize];
            if proc::read_exact_at(&mem, pid, at, &mut buf).is_err() {
                break; // unreadable mapping: try the next one
            }
            if let Some(i) = buf.windows(2).position(|w| w == [0x0f, 0x05]) {
                return Ok(at + i as u64);
            }
            // Overlap by one byte so an instruction split across chunks is still found.
            at += if len > 1 { len - 1 } else { len };
        }
    }
    Err(PtraceError::Failed {
        pid,
        op: "looking for a syscall instruction".to_string(),
        detail: "no executable mapping contains 0f 05".to_string(),
    })
}

/// A thread seized for one remote syscall. Dropping it (on any error path) restores the saved
/// registers, re-queues remembered signals and detaches, all best-effort.
struct Injection {
    pid: i32,
    tid: i32,
    /// The registers at the stop, once read.
    saved: Option<Regs>,
    /// Signals reported to us (signal-delivery-stops) while the thread was ours, in order.
    signals: Vec<SigInfo>,
    /// Whether the thread is known to be in a ptrace-stop right now.
    stopped: bool,
    /// Set once the thread is detached or gone.
    done: bool,
}

impl Injection {
    /// Records the signal of a signal-delivery-stop so it can be handed back.
    fn remember_signal(&mut self, sig: i32) {
        match sys::get_siginfo(self.tid) {
            Ok(info) => self.signals.push(info),
            Err(_) => {
                // Without siginfo, keep at least the signal number.
                // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
                let mut info: SigInfo = unsafe { std::mem::zeroed() };
                info.si_signo = sig;
                info.si_code = -6; // SI_TKILL
                self.signals.push(info);
            }
        }
    }

    /// Restores registers and detaches, handing back the first remembered signal through the
    /// current signal-delivery-stop (with its original siginfo) and re-queueing the others.
    fn finish(&mut self) -> Result<(), PtraceError> {
        let (pid, tid) = (self.pid, self.tid);
        if let Some(mut regs) = self.saved {
            if self.signals.is_empty() {
                undo_stop_eintr(pid, tid, &mut regs);
            }
            sys::set_regs(tid, &regs).map_err(|e| op_failed(pid, tid, "PTRACE_SETREGS", e))?;
        }
        let mut first_sig = 0;
        if let Some((first, rest)) = self.signals.split_first() {
            for info in rest {
                let _ = sys::requeue_signal(pid, tid, info);
            }
            if sys::set_siginfo(tid, first).is_ok() {
                first_sig = first.si_signo;
            } else {
                let _ = sys::requeue_signal(pid, tid, first);
            }
        }
        self.signals.clear();
        let r = sys::detach(tid, first_sig);
        self.done = true;
        r.map_err(|e| op_failed(pid, tid, "PTRACE_DETACH", e))
    }

    /// Best-effort cleanup for error paths.
    fn abandon(&mut self) {
        if self.done {
            return;
        }
        let tid = self.tid;
        if !self.stopped {
            // The thread is running (or stepping): stop it again before touching it.
            let _ = sys::interrupt(tid);
            match sys::wait_stop(tid) {
                Ok(Stop::Gone) | Err(_) => {
                    self.done = true;
                    return;
                }
                // Our own single-step trap is not the target's signal: drop it.
                Ok(Stop::Signal { sig }) if sig == nix::libc::SIGTRAP && is_kernel_trap(tid) => {}
                Ok(Stop::Signal { sig }) => self.remember_signal(sig),
                Ok(_) => {}
            }
        }
        if let Some(mut regs) = self.saved {
            if self.signals.is_empty() {
                undo_stop_eintr(self.pid, tid, &mut regs);
            }
            let _ = sys::set_regs(tid, &regs);
        }
        // We may not be in a signal-delivery-stop: re-queue every signal rather than rely on
        // PTRACE_DETACH's signal argument.
        for info in std::mem::take(&mut self.signals) {
            let _ = sys::requeue_signal(self.pid, tid, &info);
        }
        let _ = sys::detach(tid, 0);
        self.done = true;
    }
}

impl Drop for Injection {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Runs the syscall through thread `tid`. `Ok(None)` means the thread disappeared before the
/// syscall ran (the caller may try another thread).
/// Seizes thread `tid` and stops it for an injection, with its registers saved; `Ok(None)` when
/// it vanished first. Dropping the [`Injection`] restores and releases it.
fn seize_for_injection(pid: i32, tid: i32) -> Result<Option<(Injection, Regs)>, PtraceError> {
    match sys::seize(tid) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(None),
        Err(Errno::EPERM) if proc::thread_is_dead(pid, tid) => return Ok(None),
        Err(e) => return Err(seize_error(pid, tid, e)),
    }
    let mut th = Injection {
        pid,
        tid,
        saved: None,
        signals: Vec::new(),
        stopped: false,
        done: false,
    };
    if let Err(e) = sys::interrupt(tid) {
        if e != Errno::ESRCH {
            return Err(op_failed(pid, tid, "PTRACE_INTERRUPT", e));
        }
    }
    match sys::wait_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))? {
        Stop::Gone => {
            th.done = true;
            return Ok(None);
        }
        Stop::Exiting => {
            th.stopped = true;
            return Ok(None); // dropping `th` detaches; the thread finishes exiting
        }
        Stop::Signal { sig } => {
            th.stopped = true;
            th.remember_signal(sig);
        }
        Stop::Interrupt { .. } | Stop::OtherEvent { .. } => th.stopped = true,
    }

    let saved = sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
    th.saved = Some(saved);
    Ok(Some((th, saved)))
}

fn inject(
    pid: i32,
    tid: i32,
    insn: u64,
    nr: i64,
    args: [u64; 6],
) -> Result<Option<i64>, PtraceError> {
    let Some((mut th, saved)) = seize_for_injection(pid, tid)? else {
        return Ok(None);
    };
    let mut regs = saved;
    regs.rip = insn;
    regs.rax = nr as u64;
    // -1: not inside a syscall, so the kernel's restart logic leaves our registers alone.
    regs.orig_rax = u64::MAX;
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    sys::set_regs(tid, &regs).map_err(|e| op_failed(pid, tid, "PTRACE_SETREGS", e))?;

    for _ in 0..MAX_STEPS {
        sys::single_step(tid).map_err(|e| op_failed(pid, tid, "PTRACE_SINGLESTEP", e))?;
        th.stopped = false;
        let stop = sys::wait_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))?;
        match stop {
            Stop::Gone => {
                th.done = true;
                return Err(PtraceError::NoSuchProcess(pid));
            }
            Stop::Exiting => {
                th.stopped = true;
                return Err(PtraceError::NoSuchProcess(pid));
            }
            // The pending PTRACE_INTERRUPT trap (if a signal stop came first) or a group-stop:
            // the syscall has not run yet; step again.
            Stop::Interrupt { .. } | Stop::OtherEvent { .. } => th.stopped = true,
            Stop::Signal { sig } => {
                th.stopped = true;
                let now =
                    sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
                if sig == nix::libc::SIGTRAP && now.rip == insn + 2 && is_kernel_trap(tid) {
                    th.finish()?;
                    return Ok(Some(now.rax as i64));
                }
                // A real signal arrived first: keep it for later and step again without it.
                th.remember_signal(sig);
            }
        }
    }
    Err(PtraceError::Failed {
        pid: tid,
        op: "single-stepping the injected syscall".to_string(),
        detail: format!("the syscall did not complete within {MAX_STEPS} steps"),
    })
}

/// `epoll_wait`, `epoll_pwait` and `epoll_pwait2`: the kernel ends them with `EINTR` (never a
/// restart) whenever their thread is stopped, `PTRACE_INTERRUPT` included.
const EINTR_ON_STOP: [u64; 3] = [232, 281, 441];

/// Undoes the `EINTR` our own stop caused in an epoll wait of `regs` (a thread about to be
/// released at an interrupt stop): the call is set up to run again, as the kernel restarts the
/// calls it may restart. Left alone while a signal is pending for the thread (the `EINTR` may be
/// its, and its handler must see it) or when `rip` does not follow a `syscall` instruction.
fn undo_stop_eintr(pid: i32, tid: i32, regs: &mut Regs) -> bool {
    if !EINTR_ON_STOP.contains(&regs.orig_rax) || regs.rax as i64 != -(Errno::EINTR as i64) {
        return false;
    }
    if proc::signal_pending(pid, tid) != Some(false) {
        return false;
    }
    let at = regs.rip.wrapping_sub(2);
    if read_memory(pid, at, 2).ok().as_deref() != Some(&[0x0f, 0x05][..]) {
        return false;
    }
    regs.rax = regs.orig_rax;
    regs.rip = at;
    true
}

/// [`undo_stop_eintr`] on the registers of the stopped thread `tid`.
fn restart_stop_eintr(pid: i32, tid: i32) {
    if let Ok(mut regs) = sys::get_regs(tid) {
        if undo_stop_eintr(pid, tid, &mut regs) {
            let _ = sys::set_regs(tid, &regs);
        }
    }
}

/// Whether `tid` stopped right after executing the `int3` placed at `addr`; if so its pc is put
/// back at `addr`, so the original instruction runs when it resumes.
fn at_breakpoint(tid: i32, addr: u64) -> bool {
    let Ok(mut regs) = sys::get_regs(tid) else {
        return false;
    };
    if regs.rip != addr.wrapping_add(1) {
        return false;
    }
    regs.rip = addr;
    sys::set_regs(tid, &regs).is_ok()
}

/// Whether the current signal-delivery-stop's SIGTRAP was generated by the kernel (our
/// single-step) rather than sent by a process (`kill`/`tgkill` give `si_code <= 0`).
fn is_kernel_trap(tid: i32) -> bool {
    sys::get_siginfo(tid).map(|i| i.si_code > 0).unwrap_or(true)
}

/// The 8-byte little-endian word of the target's memory at `addr`; `None` if unreadable.
pub(crate) fn read_word(pid: i32, addr: u64) -> Option<u64> {
    let bytes = read_memory(pid, addr, 8).ok()?;
    Some(u64::from_le_bytes(bytes.as_slice().try_into().ok()?))
}

/// Reads `len` bytes of the target's memory at `addr` (through `/proc/PID/mem`).
pub fn read_memory(pid: i32, addr: u64, len: usize) -> Result<Vec<u8>, PtraceError> {
    let mem = proc::open_mem(pid, false)?;
    let mut buf = vec![0u8; len];
    proc::read_exact_at(&mem, pid, addr, &mut buf)?;
    Ok(buf)
}

/// Writes `bytes` into the target's memory at `addr` (through `/proc/PID/mem`, which also writes
/// read-only text pages).
pub fn write_memory(pid: i32, addr: u64, bytes: &[u8]) -> Result<(), PtraceError> {
    let mem = proc::open_mem(pid, true)?;
    proc::write_all_at(&mem, pid, addr, bytes)
}

/// One stopped thread and where it stands.
#[derive(Debug, Clone)]
pub struct StoppedThread {
    /// Thread id.
    pub tid: i32,
    /// Instruction pointer.
    pub pc: u64,
    /// Stack pointer.
    pub sp: u64,
    /// Frame pointer (`rbp`), the third register stack unwinding starts from.
    pub bp: u64,
    /// Every general-purpose register (`rax` ... `r15`, `rip`), for scans that must see an
    /// address a thread holds only in a register (a context switch half done).
    pub registers: Vec<u64>,
    /// The thread pointer (`fs` base): glibc keeps its pointer guard at `fs:0x30`.
    pub fs_base: u64,
}

impl StoppedThread {
    fn from_regs(tid: i32, regs: &Regs) -> StoppedThread {
        let r = regs;
        StoppedThread {
            tid,
            pc: r.rip,
            sp: r.rsp,
            bp: r.rbp,
            registers: vec![
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
                r.r12, r.r13, r.r14, r.r15, r.rip,
            ],
            fs_base: r.fs_base,
        }
    }
}

/// A thread we have seized, and what must be done to release it.
#[derive(Debug)]
struct Held {
    tid: i32,
    /// Whether we have seen its ptrace-stop (otherwise it must be waited for before detaching).
    stopped: bool,
    /// Signal of a signal-delivery-stop, handed back at detach (0: none).
    signal: i32,
}

/// Every thread of a process stopped with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`. Dropping it resumes
/// and detaches every thread, so no error path can leave a thread stopped or traced.
///
/// It is `!Send`: Linux only accepts ptrace requests for a tracee from the OS thread that seized
/// it, so the value must be resumed or dropped on the thread that called [`StoppedProcess::stop_all`].
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<hotpatch_applier::ptrace::StoppedProcess>();
/// ```
#[derive(Debug)]
pub struct StoppedProcess {
    pid: i32,
    threads: Vec<StoppedThread>,
    held: Vec<Held>,
    _same_os_thread: PhantomData<*const ()>,
}

impl StoppedProcess {
    /// Seizes and interrupts every thread, re-reading the thread list until it is stable.
    ///
    /// Threads created meanwhile are caught by the re-reads; threads that exit meanwhile are
    /// dropped. A thread that reports a signal-delivery-stop instead of the interrupt keeps its
    /// signal, delivered at resume. May block while a thread is in an uninterruptible kernel
    /// wait (e.g. a `vfork` parent).
    pub fn stop_all(pid: i32) -> Result<StoppedProcess, PtraceError> {
        proc::ensure_process(pid)?;
        let mut sp = StoppedProcess {
            pid,
            threads: Vec::new(),
            held: Vec::new(),
            _same_os_thread: PhantomData,
        };
        let mut seen = std::collections::HashSet::new();
        loop {
            let tids = proc::list_tasks(pid)?;
            let fresh: Vec<i32> = tids.into_iter().filter(|&t| seen.insert(t)).collect();
            if fresh.is_empty() {
                break;
            }
            // Seize and interrupt all new threads first, then collect the stops: they stop in
            // parallel.
            let first_new = sp.held.len();
            for tid in fresh {
                match sys::seize(tid) {
                    Ok(()) => {}
                    Err(Errno::ESRCH) => continue,
                    Err(Errno::EPERM) if proc::thread_is_dead(pid, tid) => continue,
                    Err(e) => return Err(seize_error(pid, tid, e)),
                }
                sp.held.push(Held {
                    tid,
                    stopped: false,
                    signal: 0,
                });
                match sys::interrupt(tid) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(op_failed(pid, tid, "PTRACE_INTERRUPT", e)),
                }
            }
            let mut i = first_new;
            while i < sp.held.len() {
                let tid = sp.held[i].tid;
                let stop = sys::wait_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))?;
                match stop {
                    Stop::Gone => {
                        sp.held.remove(i);
                        continue;
                    }
                    Stop::Exiting => {
                        // Exiting: it will never run user code again; let it finish.
                        let _ = sys::detach(tid, 0);
                        sp.held.remove(i);
                        continue;
                    }
                    Stop::Signal { sig } => {
                        sp.held[i].stopped = true;
                        sp.held[i].signal = sig;
                    }
                    Stop::Interrupt { .. } | Stop::OtherEvent { .. } => sp.held[i].stopped = true,
                }
                let regs =
                    sys::get_regs(tid).map_err(|e| op_failed(pid, tid, "PTRACE_GETREGS", e))?;
                sp.threads.push(StoppedThread::from_regs(tid, &regs));
                i += 1;
            }
        }
        if sp.held.is_empty() {
            return Err(PtraceError::NoSuchProcess(pid));
        }
        Ok(sp)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The stopped threads.
    pub fn threads(&self) -> &[StoppedThread] {
        &self.threads
    }

    /// Lets every thread run again, still traced, until one of them reaches `addr` (a breakpoint
    /// is placed there for the purpose, as a debugger does) or `timeout` passes; then every
    /// thread is stopped again and the thread list and registers are read anew. Returns the
    /// thread that reached `addr`, now stopped with its pc at `addr`, and when it was seen
    /// stopping there (the start of the pause).
    ///
    /// The original byte is back in place before this returns, on every path (unless the process
    /// died). Threads created meanwhile are traced too (a thread hitting the breakpoint untraced
    /// would die of `SIGTRAP`), and a child forked meanwhile, which copied the breakpoint, gets
    /// the original byte back before it runs and is let go. Signals that arrive meanwhile are
    /// delivered as they come.
    pub fn run_to(
        &mut self,
        addr: u64,
        timeout: Duration,
    ) -> Result<Option<(i32, Instant)>, PtraceError> {
        let pid = self.pid;
        let original = read_memory(pid, addr, 1)?;
        let traced_clones =
            sys::SEIZE_OPTIONS | nix::libc::PTRACE_O_TRACECLONE | nix::libc::PTRACE_O_TRACEFORK;
        for h in &self.held {
            sys::set_options(h.tid, traced_clones)
                .map_err(|e| op_failed(pid, h.tid, "PTRACE_SETOPTIONS", e))?;
        }
        write_memory(pid, addr, &[0xcc])?;
        let breakpoint = (addr, original[0]);
        let hit = self.run_until_hit(breakpoint, timeout);
        let restored = write_memory(pid, addr, &original);
        let stopped = self.stop_running(breakpoint);
        for h in &self.held {
            let _ = sys::set_options(h.tid, sys::SEIZE_OPTIONS);
        }
        restored?;
        stopped?;
        self.reread_threads()?;
        hit
    }

    /// Continues every held thread and polls them until one traps at the breakpoint
    /// (`(address, original byte)`).
    fn run_until_hit(
        &mut self,
        breakpoint: (u64, u8),
        timeout: Duration,
    ) -> Result<Option<(i32, Instant)>, PtraceError> {
        let (pid, addr) = (self.pid, breakpoint.0);
        for h in &mut self.held {
            if h.stopped {
                sys::cont(h.tid, h.signal).map_err(|e| op_failed(pid, h.tid, "PTRACE_CONT", e))?;
                h.signal = 0;
                h.stopped = false;
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mut i = 0;
            while i < self.held.len() {
                let tid = self.held[i].tid;
                let stop = sys::poll_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))?;
                match stop {
                    None => {}
                    Some(Stop::Gone) => {
                        self.held.remove(i);
                        continue;
                    }
                    Some(Stop::Exiting) => {
                        let _ = sys::detach(tid, 0);
                        self.held.remove(i);
                        continue;
                    }
                    Some(Stop::Signal { sig }) => {
                        if sig == nix::libc::SIGTRAP && at_breakpoint(tid, addr) {
                            self.held[i].stopped = true;
                            return Ok(Some((tid, Instant::now())));
                        }
                        sys::cont(tid, sig).map_err(|e| op_failed(pid, tid, "PTRACE_CONT", e))?;
                    }
                    Some(Stop::OtherEvent { event }) => {
                        self.adopt_new_task(tid, event, breakpoint);
                        sys::cont(tid, 0).map_err(|e| op_failed(pid, tid, "PTRACE_CONT", e))?;
                    }
                    Some(Stop::Interrupt { .. }) => {
                        sys::cont(tid, 0).map_err(|e| op_failed(pid, tid, "PTRACE_CONT", e))?;
                    }
                }
                i += 1;
            }
            // Every thread gone: the process exited (or was killed) while we waited.
            if self.held.is_empty() {
                return Err(PtraceError::NoSuchProcess(pid));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Records the new thread of a clone event (it reports its own first stop later); the child
    /// of a fork event copied the breakpoint (`(address, original byte)`): it gets the original
    /// byte back at its first stop and is let go, untraced, as a process forked before.
    fn adopt_new_task(&mut self, tid: i32, event: i32, (addr, original): (u64, u8)) {
        let Some(new) = sys::event_msg(tid).ok().and_then(|m| i32::try_from(m).ok()) else {
            return;
        };
        match event {
            nix::libc::PTRACE_EVENT_CLONE if !self.held.iter().any(|h| h.tid == new) => {
                self.held.push(Held {
                    tid: new,
                    stopped: false,
                    signal: 0,
                });
            }
            nix::libc::PTRACE_EVENT_FORK
                if !matches!(sys::wait_stop(new), Ok(Stop::Gone) | Err(_)) =>
            {
                let _ = write_memory(new, addr, &[original]);
                let _ = sys::detach(new, 0);
            }
            _ => {}
        }
    }

    /// Stops every held thread that runs; one that trapped at the breakpoint (`(address,
    /// original byte)`) meanwhile is put back at its address and its `SIGTRAP` dropped.
    fn stop_running(&mut self, breakpoint: (u64, u8)) -> Result<(), PtraceError> {
        let (pid, addr) = (self.pid, breakpoint.0);
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].stopped {
                i += 1;
                continue;
            }
            let tid = self.held[i].tid;
            let _ = sys::interrupt(tid);
            match sys::wait_stop(tid).map_err(|e| op_failed(pid, tid, "waitpid", e))? {
                Stop::Gone => {
                    self.held.remove(i);
                    continue;
                }
                Stop::Exiting => {
                    let _ = sys::detach(tid, 0);
                    self.held.remove(i);
                    continue;
                }
                Stop::Signal { sig } => {
                    if !(sig == nix::libc::SIGTRAP && at_breakpoint(tid, addr)) {
                        self.held[i].signal = sig;
                    }
                }
                Stop::OtherEvent { event } => self.adopt_new_task(tid, event, breakpoint),
                Stop::Interrupt { .. } => {}
            }
            self.held[i].stopped = true;
            i += 1;
        }
        Ok(())
    }

    /// Reads the registers of every held thread again.
    fn reread_threads(&mut self) -> Result<(), PtraceError> {
        let pid = self.pid;
        self.threads.clear();
        for h in &self.held {
            let regs =
                sys::get_regs(h.tid).map_err(|e| op_failed(pid, h.tid, "PTRACE_GETREGS", e))?;
            self.threads.push(StoppedThread::from_regs(h.tid, &regs));
        }
        if self.held.is_empty() {
            return Err(PtraceError::NoSuchProcess(pid));
        }
        Ok(())
    }

    /// Resumes and detaches every thread, reporting the first failure.
    ///
    /// Every thread is released even when an earlier one fails; a thread that exited meanwhile
    /// is not an error.
    pub fn resume(mut self) -> Result<(), PtraceError> {
        self.release_all()
    }

    /// Detaches every held thread (waiting first for the stop of any not yet seen stopped).
    fn release_all(&mut self) -> Result<(), PtraceError> {
        let pid = self.pid;
        let mut first_err = None;
        for h in std::mem::take(&mut self.held) {
            let mut signal = h.signal;
            if !h.stopped {
                let _ = sys::interrupt(h.tid);
                match sys::wait_stop(h.tid) {
                    Ok(Stop::Gone) => continue,
                    Ok(Stop::Signal { sig }) => signal = sig,
                    Ok(_) => {}
                    Err(e) => {
                        first_err.get_or_insert(op_failed(pid, h.tid, "waitpid", e));
                        continue;
                    }
                }
            }
            if signal == 0 {
                restart_stop_eintr(pid, h.tid);
            }
            match sys::detach(h.tid, signal) {
                Ok(()) => {}
                Err(Errno::ESRCH) if proc::thread_is_dead(pid, h.tid) => {}
                Err(e) => {
                    first_err.get_or_insert(op_failed(pid, h.tid, "PTRACE_DETACH", e));
                }
            }
        }
        self.threads.clear();
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for StoppedProcess {
    fn drop(&mut self) {
        let _ = self.release_all();
    }
}
