//! Tests of the ptrace layer against real processes (C programs in `tests/c/ptrace_*.c`, compiled
//! with gcc). Every started process is killed and reaped by [`Target`]'s `Drop`, on every path.
//!
//! Timings are printed (run with `--nocapture`), never asserted.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use hotpatch_applier::ptrace::{
    read_memory, remote_syscall, write_memory, PtraceError, StoppedProcess,
};

const SYS_READ: u64 = 0;
const SYS_MMAP: i64 = 9;
const SYS_GETPID: i64 = 39;
const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const MAP_PRIVATE: u64 = 0x02;
const MAP_ANONYMOUS: u64 = 0x20;

/// A running C test program; killed and reaped on drop.
struct Target {
    child: Child,
    /// Lines printed before READY.
    preamble: Vec<String>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Target {
    /// Compiles `tests/c/<name>.c` and starts it with `args`, stdin and stdout piped.
    fn start(name: &str, args: &[&str]) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/c")
            .join(format!("{name}.c"));
        let exe: PathBuf = dir.path().join(name);
        let out = Command::new("gcc")
            .args(["-O2", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("run gcc");
        assert!(
            out.status.success(),
            "gcc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn target");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut t = Target {
            child,
            preamble: Vec::new(),
            stdin,
            lines: rx,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = t.lines.recv_timeout(left).expect("READY from target");
            if line == "READY" {
                break;
            }
            t.preamble.push(line);
        }
        t
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next output line starting with `prefix` (other lines are skipped), within `timeout`.
    fn expect_prefix(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(l) if l.starts_with("ERROR") => panic!("target reported: {l}"),
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?} within {timeout:?}: {e}"),
            }
        }
    }

    /// Every line received so far.
    fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a process that is not our child (e.g. a grandchild) on drop.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Each thread's (tid, state letter, TracerPid) from /proc.
fn thread_status(pid: i32) -> Vec<(i32, char, i32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let state = field("State:").chars().next().unwrap_or('?');
        let tracer = field("TracerPid:").parse().unwrap_or(-1);
        out.push((tid, state, tracer));
    }
    out
}

fn assert_untraced(pid: i32) {
    let st = thread_status(pid);
    assert!(!st.is_empty(), "no threads listed for {pid}");
    for (tid, state, tracer) in st {
        assert_eq!(tracer, 0, "thread {tid} still traced by {tracer}");
        assert!(
            state != 't' && state != 'T',
            "thread {tid} still stopped ({state})"
        );
    }
}

fn parse_num(line: &str, idx: usize) -> u64 {
    line.split_whitespace()
        .nth(idx)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"))
}

#[test]
fn remote_getpid_returns_pid() {
    let t = Target::start("ptrace_sleeper", &[]);
    let pid = t.pid();
    assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
    let mut times = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let r = remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap();
        times.push(start.elapsed());
        assert_eq!(r, pid as i64);
    }
    println!("remote_syscall(getpid) median over 50: {:?}", median(times));
    assert_untraced(pid);
    t.expect_prefix("SLEPT", Duration::from_secs(30));
}

#[test]
fn remote_mmap_and_memory_roundtrip() {
    let t = Target::start("ptrace_sleeper", &[]);
    let pid = t.pid();
    let args = [
        0,
        4096,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        u64::MAX,
        0,
    ];
    let addr = remote_syscall(pid, SYS_MMAP, args).unwrap();
    assert!(addr > 0, "mmap failed: {addr}");
    let addr = addr as u64;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let start = format!("{addr:x}-");
    assert!(
        maps.lines()
            .any(|l| l.starts_with(&start) && l.contains("rw-p")),
        "{addr:#x} not in maps:\n{maps}"
    );
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    write_memory(pid, addr, &data).unwrap();
    assert_eq!(read_memory(pid, addr, data.len()).unwrap(), data);
    // Reading past the mapping end fails cleanly (unless something happens to follow it).
    assert!(read_memory(pid, 0, 16).is_err());
    t.expect_prefix("SLEPT", Duration::from_secs(30));
    assert_untraced(pid);
}

#[test]
fn write_memory_patches_readonly_text() {
    let t = Target::start("ptrace_sleeper", &[]);
    let pid = t.pid();
    let func = t
        .preamble
        .iter()
        .find_map(|l| l.strip_prefix("FUNC 0x"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .expect("FUNC line");
    // The function lies in a read-only executable mapping.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let perms = maps
        .lines()
        .find_map(|l| {
            let (range, rest) = l.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            (a <= func && func < b).then(|| rest[..4].to_string())
        })
        .expect("mapping of never_called");
    assert_eq!(perms, "r-xp");
    let orig = read_memory(pid, func, 16).unwrap();
    let patched = vec![0xccu8; 16];
    write_memory(pid, func, &patched).unwrap();
    assert_eq!(read_memory(pid, func, 16).unwrap(), patched);
    write_memory(pid, func, &orig).unwrap();
    assert_eq!(read_memory(pid, func, 16).unwrap(), orig);
    t.expect_prefix("SLEPT", Duration::from_secs(30));
}

#[test]
fn exited_process_is_no_such_process() {
    let mut t = Target::start("ptrace_reader", &[]);
    let pid = t.pid();
    t.stdin = None; // EOF: the reader exits and stays a zombie until reaped
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_status(pid).iter().any(|s| s.1 != 'Z') {
        assert!(Instant::now() < deadline, "reader did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(
        remote_syscall(pid, SYS_GETPID, [0; 6]),
        Err(PtraceError::NoSuchProcess(p)) if p == pid
    ));
    assert!(matches!(
        StoppedProcess::stop_all(pid),
        Err(PtraceError::NoSuchProcess(p)) if p == pid
    ));
}

#[test]
fn nested_seize_from_this_process_is_explained() {
    let t = Target::start("ptrace_threads", &["2"]);
    let pid = t.pid();
    let sp = StoppedProcess::stop_all(pid).unwrap();
    match remote_syscall(pid, SYS_GETPID, [0; 6]) {
        Err(PtraceError::NotPermitted { reason, .. }) => {
            assert!(reason.contains("this process"), "{reason}")
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
    drop(sp);
    assert_untraced(pid);
    assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
}

#[test]
fn nanosleep_restarts_after_injection() {
    let t = Target::start("ptrace_sleeper", &[]);
    let pid = t.pid();
    t.expect_prefix("SLEPT", Duration::from_secs(30));
    // Inject at various points of the sleeps.
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(37 + i * 11));
        assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
    }
    let mut slept = Vec::new();
    for _ in 0..4 {
        let l = t.expect_prefix("SLEPT", Duration::from_secs(30));
        slept.push(parse_num(&l, 1));
    }
    slept.extend(
        t.drain()
            .iter()
            .filter(|l| l.starts_with("SLEPT"))
            .map(|l| parse_num(l, 1)),
    );
    println!("sleeps after injections (us): {slept:?}");
    assert!(
        slept.iter().all(|&us| us >= 200_000),
        "a sleep was cut short: {slept:?}"
    );
    assert_untraced(pid);
}

#[test]
fn blocked_read_survives_injection() {
    let mut t = Target::start("ptrace_reader", &[]);
    let pid = t.pid();
    common::wait_until_in_syscall(pid, SYS_READ);
    for _ in 0..5 {
        assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
    }
    t.send("hello\n");
    assert_eq!(t.expect_prefix("GOT", Duration::from_secs(30)), "GOT hello");
    common::wait_until_in_syscall(pid, SYS_READ);
    assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
    t.send("again\n");
    assert_eq!(t.expect_prefix("GOT", Duration::from_secs(30)), "GOT again");
    assert!(t.alive());
    assert_untraced(pid);
}

#[test]
fn stop_all_stops_every_thread_then_resume() {
    let mut t = Target::start("ptrace_threads", &["8"]);
    let pid = t.pid();
    let before = parse_num(&t.expect_prefix("COUNT", Duration::from_secs(30)), 2);
    {
        let sp = StoppedProcess::stop_all(pid).unwrap();
        assert_eq!(sp.pid(), pid);
        assert_eq!(sp.threads().len(), 9, "{:?}", sp.threads());
        let mut tids: Vec<i32> = sp.threads().iter().map(|t| t.tid).collect();
        tids.sort();
        let mut listed: Vec<i32> = thread_status(pid).iter().map(|s| s.0).collect();
        listed.sort();
        assert_eq!(tids, listed);
        for (tid, state, tracer) in thread_status(pid) {
            assert_eq!(state, 't', "thread {tid} not stopped");
            // TracerPid names the tracing thread: one of ours.
            assert!(
                Path::new(&format!("/proc/self/task/{tracer}")).exists(),
                "thread {tid} traced by {tracer}, not by us"
            );
        }
        assert!(sp.threads().iter().all(|t| t.pc != 0 && t.sp != 0));
        // While stopped, the counters do not move.
        let _ = t.drain();
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.drain().is_empty(), "output while stopped");
        sp.resume().unwrap();
    }
    assert_untraced(pid);
    let _ = t.drain();
    let l1 = t.expect_prefix("COUNT", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(100));
    let _ = t.drain();
    let l2 = t.expect_prefix("COUNT", Duration::from_secs(30));
    assert!(
        parse_num(&l2, 1) > parse_num(&l1, 1),
        "some thread stopped progressing"
    );
    assert!(parse_num(&l2, 2) > before);

    let (mut total, mut stop, mut resume) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..50 {
        let start = Instant::now();
        let sp = StoppedProcess::stop_all(pid).unwrap();
        let stopped = start.elapsed();
        let n = sp.threads().len();
        sp.resume().unwrap();
        let all = start.elapsed();
        total.push(all);
        stop.push(stopped);
        resume.push(all - stopped);
        assert_eq!(n, 9);
    }
    println!(
        "stop_all+resume (9 threads) median over 50: {:?} (stop_all {:?}, resume {:?})",
        median(total),
        median(stop),
        median(resume)
    );
    assert!(t.alive());
    assert_untraced(pid);
}

#[test]
fn remote_syscall_in_multithreaded_target() {
    let t = Target::start("ptrace_threads", &["8"]);
    let pid = t.pid();
    for _ in 0..20 {
        assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
    }
    t.expect_prefix("COUNT", Duration::from_secs(30));
    assert_untraced(pid);
}

#[test]
fn stop_all_under_thread_churn() {
    let mut t = Target::start("ptrace_churn", &[]);
    let pid = t.pid();
    let first = parse_num(&t.expect_prefix("ROUNDS", Duration::from_secs(30)), 1);
    let mut counts = Vec::new();
    for _ in 0..20 {
        let sp = StoppedProcess::stop_all(pid).unwrap();
        counts.push(sp.threads().len());
        for th in sp.threads() {
            assert_eq!(
                thread_status(pid)
                    .iter()
                    .find(|s| s.0 == th.tid)
                    .map(|s| s.1),
                Some('t'),
                "thread {} not stopped",
                th.tid
            );
        }
        sp.resume().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("threads seen per stop under churn: {counts:?}");
    std::thread::sleep(Duration::from_millis(100));
    let _ = t.drain();
    let last = parse_num(&t.expect_prefix("ROUNDS", Duration::from_secs(30)), 1);
    assert!(last > first, "no progress: {first} -> {last}");
    assert!(t.alive());
    assert_untraced(pid);
}

#[test]
fn signals_are_not_lost() {
    let mut t = Target::start("ptrace_signals", &[]);
    let pid = t.pid();
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..50 {
        let sp = StoppedProcess::stop_all(pid).unwrap();
        assert_eq!(sp.threads().len(), 3);
        sp.resume().unwrap();
        std::thread::sleep(Duration::from_micros(500 + (i % 7) * 300));
    }
    for i in 0..50 {
        assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
        std::thread::sleep(Duration::from_micros(500 + (i % 5) * 300));
    }
    assert_untraced(pid);
    t.send("stop\n");
    let fin = t.expect_prefix("FINAL", Duration::from_secs(30));
    println!("{fin}");
    let field = |name: &str| -> u64 {
        fin.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad line {fin}"))
    };
    let (sent, received, lost) = (field("sent="), field("received="), field("lost="));
    assert!(sent > 50, "too few signals sent: {fin}");
    assert_eq!(lost, 0, "{fin}");
    assert_eq!(sent, received, "{fin}");
}

#[test]
fn nonexistent_pid_is_no_such_process() {
    let pid = 0x3fff_fff0; // above any pid_max
    assert!(matches!(
        remote_syscall(pid, SYS_GETPID, [0; 6]),
        Err(PtraceError::NoSuchProcess(p)) if p == pid
    ));
    assert!(matches!(
        StoppedProcess::stop_all(pid),
        Err(PtraceError::NoSuchProcess(p)) if p == pid
    ));
    assert!(matches!(
        read_memory(pid, 0x1000, 8),
        Err(PtraceError::NoSuchProcess(p)) if p == pid
    ));
    assert!(matches!(
        write_memory(pid, 0x1000, &[0]),
        Err(PtraceError::NoSuchProcess(p)) if p == pid
    ));
    assert!(matches!(
        StoppedProcess::stop_all(-5),
        Err(PtraceError::NoSuchProcess(_))
    ));
}

#[test]
fn already_traced_is_not_permitted() {
    let t = Target::start_no_ready("ptrace_traceme");
    let line = t.expect_prefix("CHILD", Duration::from_secs(30));
    let child = parse_num(&line, 1) as i32;
    let _kill = KillOnDrop(child);
    match StoppedProcess::stop_all(child) {
        Err(PtraceError::NotPermitted { pid, reason }) => {
            println!("NotPermitted: {reason}");
            assert_eq!(pid, child);
            assert!(reason.contains("tracer"), "{reason}");
            assert!(reason.contains(&t.pid().to_string()), "{reason}");
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
    assert!(matches!(
        remote_syscall(child, SYS_GETPID, [0; 6]),
        Err(PtraceError::NotPermitted { .. })
    ));
}

#[test]
fn drop_detaches() {
    let t = Target::start("ptrace_threads", &["4"]);
    let pid = t.pid();
    {
        let sp = StoppedProcess::stop_all(pid).unwrap();
        assert_eq!(sp.threads().len(), 5);
        assert!(thread_status(pid).iter().all(|s| s.1 == 't'));
    }
    assert_untraced(pid);
    let _ = t.drain();
    t.expect_prefix("COUNT", Duration::from_secs(30));
}

impl Target {
    /// Like [`Target::start`] for a program that does not print READY.
    fn start_no_ready(name: &str) -> Target {
        Target::start_no_ready_args(name, &[])
    }

    /// Like [`Target::start_no_ready`], with arguments.
    fn start_no_ready_args(name: &str, args: &[&str]) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/c")
            .join(format!("{name}.c"));
        let exe = dir.path().join(name);
        let st = Command::new("gcc")
            .args(["-O2", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .expect("gcc");
        assert!(st.success());
        let mut child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Target {
            child,
            preamble: Vec::new(),
            stdin,
            lines: rx,
            _dir: dir,
        }
    }
}

#[test]
fn zombie_leader_is_skipped() {
    let t = Target::start("ptrace_threads", &["4", "exitmain"]);
    let pid = t.pid();
    t.expect_prefix("COUNT", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !thread_status(pid).iter().any(|s| s.0 == pid && s.1 == 'Z') {
        assert!(Instant::now() < deadline, "main thread did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(remote_syscall(pid, SYS_GETPID, [0; 6]).unwrap(), pid as i64);
    let sp = StoppedProcess::stop_all(pid).unwrap();
    let tids: Vec<i32> = sp.threads().iter().map(|t| t.tid).collect();
    assert_eq!(tids.len(), 5, "{tids:?}");
    assert!(!tids.contains(&pid));
    sp.resume().unwrap();
    assert_untraced(pid);
    let _ = t.drain();
    t.expect_prefix("COUNT", Duration::from_secs(30));
}

#[test]
fn failure_half_way_detaches_seized_threads() {
    let t = Target::start_no_ready_args("ptrace_traceme", &["thread"]);
    let line = t.expect_prefix("CHILD", Duration::from_secs(30));
    let child = parse_num(&line, 1) as i32;
    let _kill = KillOnDrop(child);
    match StoppedProcess::stop_all(child) {
        Err(PtraceError::NotPermitted { pid, reason }) => {
            assert_eq!(pid, child);
            assert!(reason.contains("tracer"), "{reason}");
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
    // The main thread was seized before the failure; it must be free again.
    let main = thread_status(child)
        .into_iter()
        .find(|s| s.0 == child)
        .expect("main thread");
    assert_eq!(main.2, 0, "main thread still traced");
    assert!(main.1 != 't' && main.1 != 'T', "main thread still stopped");
}
