//! ptrace control of a target process: remote system calls through one thread, memory access, and
//! stopping every thread for the commit.
//!
//! CONTRACT (implementation pending): the signatures below are fixed; bodies are being written.

use thiserror::Error;

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

/// Runs one system call in the target through one of its threads and returns the raw result
/// (negative errno on failure), while the other threads keep running. The thread's registers,
/// pending syscall restart and signals are restored exactly; the thread is detached afterwards.
pub fn remote_syscall(pid: i32, nr: i64, args: [u64; 6]) -> Result<i64, PtraceError> {
    let _ = (pid, nr, args);
    todo!("ptrace helper")
}

/// Reads `len` bytes of the target's memory at `addr` (through `/proc/PID/mem`).
pub fn read_memory(pid: i32, addr: u64, len: usize) -> Result<Vec<u8>, PtraceError> {
    let _ = (pid, addr, len);
    todo!("ptrace helper")
}

/// Writes `bytes` into the target's memory at `addr` (through `/proc/PID/mem`, which also writes
/// read-only text pages).
pub fn write_memory(pid: i32, addr: u64, bytes: &[u8]) -> Result<(), PtraceError> {
    let _ = (pid, addr, bytes);
    todo!("ptrace helper")
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
}

/// Every thread of a process stopped with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`. Dropping it resumes
/// and detaches every thread, so no error path can leave a thread stopped or traced.
#[derive(Debug)]
pub struct StoppedProcess {
    pid: i32,
    threads: Vec<StoppedThread>,
}

impl StoppedProcess {
    /// Seizes and interrupts every thread, re-reading the thread list until it is stable.
    pub fn stop_all(pid: i32) -> Result<StoppedProcess, PtraceError> {
        let _ = pid;
        todo!("ptrace helper")
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The stopped threads.
    pub fn threads(&self) -> &[StoppedThread] {
        &self.threads
    }

    /// Resumes and detaches every thread, reporting the first failure.
    pub fn resume(self) -> Result<(), PtraceError> {
        todo!("ptrace helper")
    }
}
