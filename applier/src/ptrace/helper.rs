//! Running one remote system call in a forked helper process, so that a SIGKILL of the tool
//! cannot interrupt it halfway (see [`super::remote_syscall`]).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;

use super::PtraceError;

/// In a helper process: the pid of the process that forked it (0 elsewhere).
static FORKED_BY: AtomicI32 = AtomicI32::new(0);

/// The process the tool runs as: the parent when this is a helper, else this process.
pub(super) fn tool_pid() -> i32 {
    match FORKED_BY.load(Ordering::Relaxed) {
        // SAFETY: getpid has no preconditions and cannot fail.
        0 => unsafe { libc::getpid() },
        parent => parent,
    }
}

/// Runs `call` in a child process and returns its result. Falls back to running it here when
/// no process can be forked.
pub(super) fn run(
    pid: i32,
    call: impl FnOnce() -> Result<i64, PtraceError>,
) -> Result<i64, PtraceError> {
    let failed = |detail: String| PtraceError::Failed {
        pid,
        op: "remote syscall".into(),
        detail,
    };
    match in_child(pid, || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
            .unwrap_or_else(|_| Err(failed("the helper process panicked".into())));
        encode(&result)
    }) {
        Forked::Returned(bytes) => decode(&bytes)
            .unwrap_or_else(|| Err(failed("its helper process ended without a result".into()))),
        Forked::Vanished(child) => Err(failed(format!(
            "its helper process {child} ended without a result"
        ))),
        Forked::NoChild(call) => {
            let bytes = call();
            decode(&bytes).unwrap_or_else(|| Err(failed("no result".into())))
        }
    }
}

/// What [`in_child`] got.
pub(crate) enum Forked<F> {
    /// The bytes the child wrote.
    Returned(Vec<u8>),
    /// The child (this pid) ended without writing anything.
    Vanished(i32),
    /// No child could be forked: the call, not run.
    NoChild(F),
}

/// Runs `call` in a forked child process, which the tool's death does not stop, and returns the
/// bytes it produced. The child starts a session of its own, so a signal sent to the tool's
/// process group (Ctrl-C at a terminal, `kill -- -PGID`, a hangup) does not reach it midway
/// through something it must finish. The child only runs `call` (raw system calls, /proc reads and allocations,
/// which glibc keeps usable after fork) and then `_exit`s without unwinding into the parent's
/// code or running its destructors. Of the descriptors it inherits it keeps only the standard
/// ones and the tool's lock on `pid` (see `process_lock`).
pub(crate) fn in_child<F: FnOnce() -> Vec<u8>>(pid: i32, call: F) -> Forked<F> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Forked::NoChild(call);
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let parent = tool_pid();
    // SAFETY: see the function's doc: the child runs `call` and `_exit`s.
    match unsafe { libc::fork() } {
        -1 => Forked::NoChild(call),
        0 => {
            FORKED_BY.store(parent, Ordering::Relaxed);
            // SAFETY: setsid has no preconditions; a forked child is never a group leader, so
            // it cannot fail.
            unsafe { libc::setsid() };
            drop(read_end);
            let mut keep = vec![write_end.as_raw_fd()];
            keep.extend(crate::process_lock::held_by(pid));
            close_inherited(&mut keep);
            let bytes =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_default();
            let mut at = 0;
            while at < bytes.len() {
                // SAFETY: writes from a live buffer to a descriptor this process owns.
                let n = unsafe {
                    libc::write(
                        write_end.as_raw_fd(),
                        bytes[at..].as_ptr().cast(),
                        bytes.len() - at,
                    )
                };
                if n <= 0 {
                    break;
                }
                at += n as usize;
            }
            // SAFETY: ends the helper without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        child => {
            drop(write_end);
            let mut bytes = Vec::new();
            let read = std::fs::File::from(read_end).read_to_end(&mut bytes);
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            while unsafe { libc::waitpid(child, &mut status, 0) } == -1
                && nix::errno::Errno::last() == nix::errno::Errno::EINTR
            {}
            match read {
                Ok(_) if !bytes.is_empty() => Forked::Returned(bytes),
                _ => Forked::Vanished(child),
            }
        }
    }
}

fn encode(result: &Result<i64, PtraceError>) -> Vec<u8> {
    let fields: Vec<String> = match result {
        Ok(value) => vec!["O".into(), value.to_string()],
        Err(PtraceError::NoSuchProcess(pid)) => vec!["N".into(), pid.to_string()],
        Err(PtraceError::NotPermitted { pid, reason }) => {
            vec!["P".into(), pid.to_string(), reason.clone()]
        }
        Err(PtraceError::Failed { pid, op, detail }) => {
            vec!["F".into(), pid.to_string(), op.clone(), detail.clone()]
        }
    };
    fields.join("\0").into_bytes()
}

fn decode(bytes: &[u8]) -> Option<Result<i64, PtraceError>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let fields: Vec<&str> = text.split('\0').collect();
    let pid = || fields.get(1)?.parse::<i32>().ok();
    Some(match fields[0] {
        "O" => Ok(fields.get(1)?.parse().ok()?),
        "N" => Err(PtraceError::NoSuchProcess(pid()?)),
        "P" => Err(PtraceError::NotPermitted {
            pid: pid()?,
            reason: fields.get(2)?.to_string(),
        }),
        "F" => Err(PtraceError::Failed {
            pid: pid()?,
            op: fields.get(2)?.to_string(),
            detail: fields.get(3)?.to_string(),
        }),
        _ => return None,
    })
}

/// Closes every descriptor from 3 up except those in `keep`.
fn close_inherited(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut from: u32 = 3;
    for &fd in keep.iter() {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd > from {
            close_range(from, fd - 1);
        }
        from = from.max(fd + 1);
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range only closes descriptors of this process, which no live object of
    // the child uses (see `close_inherited`'s caller).
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_cross_the_pipe_unchanged() {
        let cases = [
            Ok(-38),
            Err(PtraceError::NoSuchProcess(7)),
            Err(PtraceError::NotPermitted {
                pid: 8,
                reason: "ptrace_scope".into(),
            }),
            Err(PtraceError::Failed {
                pid: 9,
                op: "waitpid".into(),
                detail: "x\ny".into(),
            }),
        ];
        for case in cases {
            let back = decode(&encode(&case)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{case:?}"));
        }
        assert!(decode(b"").is_none());
        assert!(run(1, || Ok(5)).is_ok_and(|v| v == 5));
    }

    #[test]
    fn a_helper_keeps_the_lock_of_its_own_target_only() {
        // Locks of two made-up pids, as two threads patching two processes would hold them.
        let (mine, other) = (0x7fff_0001, 0x7fff_0002);
        let _mine = crate::process_lock::lock(mine).unwrap();
        let _other = crate::process_lock::lock(other).unwrap();
        let fds = [mine, other].map(|pid| crate::process_lock::held_by(pid).unwrap());
        let open_in_child = |fd: RawFd| -> bool {
            // SAFETY: F_GETFD only asks whether the descriptor is open.
            unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
        };
        let seen = match in_child(mine, || fds.map(|fd| u8::from(open_in_child(fd))).to_vec()) {
            Forked::Returned(bytes) => bytes,
            _ => panic!("no helper"),
        };
        assert_eq!(seen, vec![1, 0]);
        assert!(
            fds.iter().all(|&fd| open_in_child(fd)),
            "the parent keeps both"
        );
    }
}
