//! Thin wrappers over the raw `ptrace(2)`, `waitpid(2)` and signal-queueing system calls.
//!
//! nix's typed wrappers cannot express real-time signals (its `Signal` enum stops at the standard
//! ones) and its `waitpid` fails — after consuming the status — on a stop by an unknown signal, so
//! this layer works with raw signal numbers throughout.

use std::ffi::c_void;
use std::mem::MaybeUninit;

use nix::errno::Errno;
use nix::libc;

/// The general-purpose registers of a stopped thread.
pub(crate) type Regs = libc::user_regs_struct;

/// The signal information of a signal-delivery-stop.
pub(crate) type SigInfo = libc::siginfo_t;

/// Options passed to `PTRACE_SEIZE`: report a thread's exit as a stop, so a thread that exits while
/// we wait for it never leaves us blocked on a group leader whose exit is delayed.
pub(crate) const SEIZE_OPTIONS: libc::c_int = libc::PTRACE_O_TRACEEXIT;

fn request(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> Result<libc::c_long, Errno> {
    // SAFETY: every caller passes either plain integers or a pointer to a live, properly sized
    // buffer for the requests that read or write memory (GETREGS/SETREGS/GETSIGINFO/SETSIGINFO).
    let r = unsafe { libc::ptrace(req, tid, addr as *mut c_void, data as *mut c_void) };
    if r == -1 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `PTRACE_SEIZE` with [`SEIZE_OPTIONS`].
pub(crate) fn seize(tid: i32) -> Result<(), Errno> {
    seize_with(tid, SEIZE_OPTIONS)
}

/// `PTRACE_SEIZE` with `options`.
pub(crate) fn seize_with(tid: i32, options: libc::c_int) -> Result<(), Errno> {
    request(libc::PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}

/// `PTRACE_INTERRUPT`.
pub(crate) fn interrupt(tid: i32) -> Result<(), Errno> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// `PTRACE_SINGLESTEP` without injecting a signal.
pub(crate) fn single_step(tid: i32) -> Result<(), Errno> {
    request(libc::PTRACE_SINGLESTEP, tid, 0, 0).map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0 for none) if the thread is in a signal-delivery-stop.
/// `PTRACE_CONT`, delivering `sig` (0: none).
pub(crate) fn cont(tid: i32, sig: i32) -> Result<(), Errno> {
    let sig = usize::try_from(sig).unwrap_or(0);
    request(libc::PTRACE_CONT, tid, 0, sig).map(drop)
}

/// `PTRACE_SETOPTIONS`.
pub(crate) fn set_options(tid: i32, options: libc::c_int) -> Result<(), Errno> {
    request(libc::PTRACE_SETOPTIONS, tid, 0, options as usize).map(drop)
}

/// `PTRACE_GETEVENTMSG`: for a clone event, the new thread's id.
pub(crate) fn event_msg(tid: i32) -> Result<u64, Errno> {
    let mut msg: libc::c_ulong = 0;
    request(
        libc::PTRACE_GETEVENTMSG,
        tid,
        0,
        &mut msg as *mut libc::c_ulong as usize,
    )?;
    Ok(msg)
}

pub(crate) fn detach(tid: i32, sig: i32) -> Result<(), Errno> {
    let sig = usize::try_from(sig).unwrap_or(0);
    request(libc::PTRACE_DETACH, tid, 0, sig).map(drop)
}

/// `PTRACE_GETREGS`.
pub(crate) fn get_regs(tid: i32) -> Result<Regs, Errno> {
    let mut regs = MaybeUninit::<Regs>::zeroed();
    request(libc::PTRACE_GETREGS, tid, 0, regs.as_mut_ptr() as usize)?;
    // SAFETY: zero-initialised plain-old-data, filled in by the kernel.
    Ok(unsafe { regs.assume_init() })
}

/// `PTRACE_SETREGS`.
pub(crate) fn set_regs(tid: i32, regs: &Regs) -> Result<(), Errno> {
    request(libc::PTRACE_SETREGS, tid, 0, regs as *const Regs as usize).map(drop)
}

/// `PTRACE_GETSIGINFO`.
pub(crate) fn get_siginfo(tid: i32) -> Result<SigInfo, Errno> {
    let mut info = MaybeUninit::<SigInfo>::zeroed();
    request(libc::PTRACE_GETSIGINFO, tid, 0, info.as_mut_ptr() as usize)?;
    // SAFETY: zero-initialised plain-old-data, filled in by the kernel.
    Ok(unsafe { info.assume_init() })
}

/// `PTRACE_SETSIGINFO`.
pub(crate) fn set_siginfo(tid: i32, info: &SigInfo) -> Result<(), Errno> {
    request(
        libc::PTRACE_SETSIGINFO,
        tid,
        0,
        info as *const SigInfo as usize,
    )
    .map(drop)
}

/// Queues `info` for thread `tid` of process `pid` again (`rt_tgsigqueueinfo`), falling back to a
/// plain `tgkill` when the kernel refuses to forge the original sender (kernel-generated siginfo).
pub(crate) fn requeue_signal(pid: i32, tid: i32, info: &SigInfo) -> Result<(), Errno> {
    let sig = info.si_signo;
    // SAFETY: plain system calls; `info` points to a live siginfo_t.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            sig,
            info as *const SigInfo,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // SAFETY: plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// What `waitpid` reported for a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `PTRACE_EVENT_STOP`: the stop requested by `PTRACE_INTERRUPT`, or a group-stop (`sig` is then
    /// the stopping signal).
    Interrupt {
        /// SIGTRAP for an interrupt, the stop signal for a group-stop.
        sig: i32,
    },
    /// A signal-delivery-stop: the thread was about to receive `sig`.
    Signal {
        /// The signal being delivered.
        sig: i32,
    },
    /// `PTRACE_EVENT_EXIT`: the thread is exiting.
    Exiting,
    /// Any other ptrace event stop (not requested by us; treated as a plain stop).
    OtherEvent {
        /// The event number.
        event: i32,
    },
    /// The thread has exited or was killed (and has been reaped).
    Gone,
}

/// Like [`wait_stop`], without blocking: `None` when the thread has nothing to report.
pub(crate) fn poll_stop(tid: i32) -> Result<Option<Stop>, Errno> {
    match poll(tid)? {
        Polled::Nothing => Ok(None),
        Polled::Stop(_, stop) => Ok(Some(stop)),
        Polled::NoChild => Ok(Some(Stop::Gone)),
    }
}

/// The next state change of any traced thread, without blocking: the thread and its stop.
pub(crate) fn poll_any() -> Result<Option<(i32, Stop)>, Errno> {
    match poll(-1)? {
        Polled::Stop(tid, stop) => Ok(Some((tid, stop))),
        Polled::Nothing | Polled::NoChild => Ok(None),
    }
}

/// What one `waitpid(WNOHANG)` saw.
enum Polled {
    Nothing,
    Stop(i32, Stop),
    NoChild,
}

fn poll(who: i32) -> Result<Polled, Errno> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes the status into our local.
    let r = unsafe { libc::waitpid(who, &mut status, libc::__WALL | libc::WNOHANG) };
    match r {
        -1 => match Errno::last() {
            Errno::EINTR => Ok(Polled::Nothing),
            Errno::ECHILD => Ok(Polled::NoChild),
            e => Err(e),
        },
        0 => Ok(Polled::Nothing),
        _ => Ok(match decode(status) {
            Some(stop) => Polled::Stop(r, stop),
            None => Polled::Nothing,
        }),
    }
}

/// The stop a `waitpid` status reports (`None`: a continue, nothing to handle).
fn decode(status: libc::c_int) -> Option<Stop> {
    if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        return Some(Stop::Gone);
    }
    if !libc::WIFSTOPPED(status) {
        return None;
    }
    let sig = libc::WSTOPSIG(status);
    Some(match (status >> 16) & 0xff {
        0 => Stop::Signal { sig },
        libc::PTRACE_EVENT_STOP => Stop::Interrupt { sig },
        libc::PTRACE_EVENT_EXIT => Stop::Exiting,
        event => Stop::OtherEvent { event },
    })
}

/// Waits for the next state change of traced thread `tid` (`waitpid(tid, __WALL)`), retrying on
/// `EINTR`. `ECHILD` (the thread is not, or no longer, ours) is reported as [`Stop::Gone`].
pub(crate) fn wait_stop(tid: i32) -> Result<Stop, Errno> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain system call writing into a local integer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r == -1 {
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return Ok(Stop::Gone),
                e => return Err(e),
            }
        }
        if let Some(stop) = decode(status) {
            return Ok(stop);
        }
    }
}
