//! What this layer reads from `/proc`: thread lists, thread states, tracer ids, executable
//! mappings, and the memory file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use nix::libc;

use super::PtraceError;

/// Fails with [`PtraceError::NoSuchProcess`] unless `/proc/PID` exists and is not a zombie.
pub(crate) fn ensure_process(pid: i32) -> Result<(), PtraceError> {
    if pid <= 0 {
        return Err(PtraceError::NoSuchProcess(pid));
    }
    match thread_state(pid, pid) {
        Some('Z') | Some('X') | None if !has_live_task(pid) => Err(PtraceError::NoSuchProcess(pid)),
        _ => Ok(()),
    }
}

/// Whether the process still has a thread that is not a zombie.
fn has_live_task(pid: i32) -> bool {
    list_tasks(pid)
        .map(|tids| {
            tids.iter()
                .any(|&t| !matches!(thread_state(pid, t), Some('Z') | Some('X') | None))
        })
        .unwrap_or(false)
}

/// The thread ids in `/proc/PID/task`, sorted.
pub(crate) fn list_tasks(pid: i32) -> Result<Vec<i32>, PtraceError> {
    let dir = format!("/proc/{pid}/task");
    let entries = fs::read_dir(&dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PtraceError::NoSuchProcess(pid),
        _ => PtraceError::Failed {
            pid,
            op: format!("listing {dir}"),
            detail: e.to_string(),
        },
    })?;
    let mut tids: Vec<i32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// The one-letter scheduler state of a thread (`R`, `S`, `t`, `Z`, ...), or `None` if it is gone.
pub(crate) fn thread_state(pid: i32, tid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the state follows the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Whether a thread of `pid` is in a group stop (`T`: stopped by `SIGSTOP`, `SIGTSTP`, ...): the
/// threadwise commit would have to let it run to switch it, so such a process is left to the
/// stop-all commit, and `--wait-return`/`--at` (which continue every thread) refuse it.
pub(crate) fn group_stopped(pid: i32) -> bool {
    list_tasks(pid)
        .unwrap_or_default()
        .into_iter()
        .any(|tid| thread_state(pid, tid) == Some('T'))
}

/// Whether tasks `a` and `b` share one address space (`kcmp(KCMP_VM)`): a child made by `vfork`
/// (`CLONE_VM`) does, a forked one does not. `None` when the kernel cannot say (no `kcmp`, or
/// a task gone).
pub(crate) fn shares_memory(a: i32, b: i32) -> Option<bool> {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp takes plain integers and reads nothing of ours.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_VM, 0, 0) };
    match r {
        0 => Some(true),
        1..=3 => Some(false),
        _ => None,
    }
}

/// Whether a thread is gone or a zombie (so a failed seize of it is not an error).
pub(crate) fn thread_is_dead(pid: i32, tid: i32) -> bool {
    matches!(thread_state(pid, tid), None | Some('Z') | Some('X'))
}

/// `TracerPid:` of a thread (0 when untraced), or `None` if it cannot be read.
pub(crate) fn tracer_pid(pid: i32, tid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a signal is pending for thread `tid` (its own or the process's), or `None` if its
/// status cannot be read.
pub(crate) fn signal_pending(pid: i32, tid: i32) -> Option<bool> {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let mut pending = false;
    for key in ["SigPnd:", "ShdPnd:"] {
        let mask = status.lines().find_map(|l| l.strip_prefix(key))?;
        pending |= u64::from_str_radix(mask.trim(), 16).ok()? != 0;
    }
    Some(pending)
}

/// Whether a `SIGTRAP` is pending for thread `tid` of `pid` itself (`SigPnd`: the kernel sends a
/// breakpoint's or a step's trap to the thread that took it); `false` when it cannot be read.
pub(crate) fn trap_pending(pid: i32, tid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigPnd:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (nix::libc::SIGTRAP - 1)) != 0)
}

/// Explains, as far as we can tell, why the kernel refused to let us trace `tid` of `pid`.
pub(crate) fn eperm_reason(pid: i32, tid: i32) -> String {
    if let Some(tracer) = tracer_pid(pid, tid).filter(|&t| t != 0) {
        let tool = super::helper::tool_pid();
        if std::path::Path::new(&format!("/proc/{tool}/task/{tracer}")).exists() {
            return format!(
                "already traced by this process (tracer thread {tracer}; \
                 is a StoppedProcess of it still alive?)"
            );
        }
        let comm = fs::read_to_string(format!("/proc/{tracer}/comm"))
            .map(|c| format!(" ({})", c.trim()))
            .unwrap_or_default();
        return format!("another tracer is attached: TracerPid {tracer}{comm}");
    }
    if thread_is_dead(pid, tid) {
        return format!("thread {tid} is exiting");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { nix::libc::geteuid() };
    if let Ok(scope) = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        match scope.trim() {
            "3" => return "yama ptrace_scope is 3: ptrace attach is disabled".to_string(),
            "2" if euid != 0 => {
                return "yama ptrace_scope is 2: only CAP_SYS_PTRACE may attach".to_string();
            }
            "1" if euid != 0 => {
                return "yama ptrace_scope is 1: only ancestors (or CAP_SYS_PTRACE) may attach"
                    .to_string();
            }
            _ => {}
        }
    }
    if euid != 0 {
        return format!(
            "not privileged: running as uid {euid} without CAP_SYS_PTRACE \
             (the target may belong to another user or be non-dumpable)"
        );
    }
    "the kernel refused PTRACE_SEIZE (EPERM; a security module may forbid it)".to_string()
}

/// One executable mapping from `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub(crate) struct ExecMapping {
    /// Start address.
    pub(crate) start: u64,
    /// End address (exclusive).
    pub(crate) end: u64,
    /// The path or pseudo-name (`[vdso]`), possibly empty.
    pub(crate) name: String,
}

/// The readable, executable mappings of a process.
pub(crate) fn exec_mappings(pid: i32) -> Result<Vec<ExecMapping>, PtraceError> {
    let mut path = format!("/proc/{pid}/maps");
    if thread_is_dead(pid, pid) {
        // A zombie leader has no address space (empty maps): read a live thread's view.
        if let Some(tid) = list_tasks(pid)?
            .into_iter()
            .find(|&t| !thread_is_dead(pid, t))
        {
            path = format!("/proc/{pid}/task/{tid}/maps");
        }
    }
    let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PtraceError::NoSuchProcess(pid),
        _ => PtraceError::Failed {
            pid,
            op: format!("reading {path}"),
            detail: e.to_string(),
        },
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("r-x") && !perms.starts_with("rwx") {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        // offset, dev, inode, then the (optional, possibly space-containing) name.
        let name = fields.skip(3).collect::<Vec<_>>().join(" ");
        if name == "[vsyscall]" {
            continue;
        }
        out.push(ExecMapping { start, end, name });
    }
    Ok(out)
}

/// Opens `/proc/PID/mem` for reading or for reading and writing.
///
/// When the thread-group leader has exited (a zombie leader has no address space, so its `mem`
/// fails with `ESRCH`), the `mem` file of a live thread is used instead: it is the same memory.
pub(crate) fn open_mem(pid: i32, write: bool) -> Result<File, PtraceError> {
    if pid <= 0 {
        return Err(PtraceError::NoSuchProcess(pid));
    }
    let path = format!("/proc/{pid}/mem");
    let err = match open_rw(&path, write) {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    if err.raw_os_error() == Some(nix::libc::ESRCH) {
        for tid in list_tasks(pid)? {
            if tid != pid && !thread_is_dead(pid, tid) {
                if let Ok(f) = open_rw(&format!("/proc/{pid}/task/{tid}/mem"), write) {
                    return Ok(f);
                }
            }
        }
        return Err(PtraceError::NoSuchProcess(pid));
    }
    Err(match err.kind() {
        io::ErrorKind::NotFound => PtraceError::NoSuchProcess(pid),
        io::ErrorKind::PermissionDenied => PtraceError::NotPermitted {
            pid,
            reason: format!("cannot open {path}: {err}; {}", eperm_reason(pid, pid)),
        },
        _ => PtraceError::Failed {
            pid,
            op: format!("opening {path}"),
            detail: err.to_string(),
        },
    })
}

fn open_rw(path: &str, write: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(write).open(path)
}

/// Reads exactly `buf.len()` bytes at `addr` from an open memory file, looping on short reads.
pub(crate) fn read_exact_at(
    file: &File,
    pid: i32,
    addr: u64,
    buf: &mut [u8],
) -> Result<(), PtraceError> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = addr
            .checked_add(done as u64)
            .ok_or_else(|| mem_error(pid, "reading", addr, done, "address overflows"))?;
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => {
                return Err(mem_error(
                    pid,
                    "reading",
                    addr,
                    done,
                    "end of readable memory",
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(mem_error(pid, "reading", addr, done, &e.to_string())),
        }
    }
    Ok(())
}

/// Writes all of `bytes` at `addr` into an open memory file, looping on short writes.
pub(crate) fn write_all_at(
    file: &File,
    pid: i32,
    addr: u64,
    bytes: &[u8],
) -> Result<(), PtraceError> {
    let mut done = 0usize;
    while done < bytes.len() {
        let at = addr
            .checked_add(done as u64)
            .ok_or_else(|| mem_error(pid, "writing", addr, done, "address overflows"))?;
        match file.write_at(&bytes[done..], at) {
            Ok(0) => {
                return Err(mem_error(
                    pid,
                    "writing",
                    addr,
                    done,
                    "no progress (unmapped memory?)",
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(mem_error(pid, "writing", addr, done, &e.to_string())),
        }
    }
    Ok(())
}

fn mem_error(pid: i32, what: &str, addr: u64, done: usize, detail: &str) -> PtraceError {
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return PtraceError::NoSuchProcess(pid);
    }
    PtraceError::Failed {
        pid,
        op: format!(
            "{what} /proc/{pid}/mem at {:#x}",
            addr.wrapping_add(done as u64)
        ),
        detail: detail.to_string(),
    }
}
