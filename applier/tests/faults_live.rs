//! Apply and revert while the target's threads sit in blocking system calls, take signals, and
//! (the thread remote syscalls are injected through) keep live values in the red zone below
//! their stack pointer (CASES.md §D syscall_restart, signals_kept, red_zone, end to end through
//! the library API). The target is `tests/c/fault_target.c`; it reports every anomaly itself
//! (`read error`, `short sleep`, `short wait`, `signal lost`, `red zone corrupted`) and exits,
//! so the test fails on the first one. The process is killed and reaped on every path.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hotpatch_applier::{installed_patches, revert, ApplyOptions};

/// Lines the target prints only when a property broke.
const BAD: &[&str] = &[
    "read error",
    "read eof",
    "short sleep",
    "short wait",
    "signal lost",
    "red zone corrupted",
    "failed",
];

/// The fault target, started with a pipe on its standard input; killed and reaped on drop.
struct Faulty {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    all: Arc<Mutex<Vec<String>>>,
}

impl Drop for Faulty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Faulty {
    fn start(exe: &Path) -> Faulty {
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fault target starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let all = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let keep = Arc::clone(&all);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Faulty {
            child,
            stdin,
            lines: rx,
            all,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("the target reads its stdin");
        stdin.flush().unwrap();
    }

    /// Reads lines until `pred` holds for one, within `secs`; fails at once on an anomaly line.
    fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no {what} within {secs} s; last lines: {:?}", self.tail())
            });
            assert!(
                !BAD.iter().any(|b| line.contains(b)),
                "the target reported: {line}"
            );
            if pred(&line) {
                return line;
            }
        }
    }

    fn drain(&self) {
        while let Ok(line) = self.lines.try_recv() {
            assert!(
                !BAD.iter().any(|b| line.contains(b)),
                "the target reported: {line}"
            );
        }
    }

    fn tail(&self) -> Vec<String> {
        let all = self.all.lock().unwrap();
        all[all.len().saturating_sub(8)..].to_vec()
    }

    /// `value` as printed by the main thread's next tick.
    fn next_value(&self) -> i64 {
        let line = self.wait_for(30, "tick", |l| l.starts_with("tick "));
        tick_field(&line, "value")
    }

    /// Waits (up to 30 s) until ticks show `value == want`.
    fn wait_value(&self, want: i64) {
        self.drain();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.next_value() != want {
            assert!(Instant::now() < deadline, "value never became {want}");
        }
    }
}

/// `rz_spin` really keeps its values below `%rsp` without moving `%rsp` (what makes it a red-zone
/// user): checked on the built binary when objdump is there.
fn assert_red_zone_user(exe: &Path) {
    let Ok(out) = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(exe)
        .output()
    else {
        eprintln!("objdump not found: red-zone use of rz_spin not re-checked");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let body: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("<rz_spin>:"))
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(body.len() > 5, "rz_spin not found in {}", exe.display());
    let code = body.join("\n");
    assert!(code.contains("-0x80(%rsp"), "{code}");
    assert!(
        !body
            .iter()
            .any(|l| l.contains(",%rsp") && !l.contains("(%rsp")),
        "rz_spin adjusts %rsp: {code}"
    );
    assert!(!code.contains("push") && !code.contains("call"), "{code}");
}

#[test]
fn apply_and_revert_keep_syscalls_signals_and_red_zone() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), &c_dir().join("fault_target.c"), "fault");
    assert_red_zone_user(&exe);
    let mut target = Faulty::start(&exe);
    target.wait_for(30, "first sleep", |l| l.starts_with("slept "));
    target.wait_for(30, "first poll", |l| l.starts_with("polled "));
    assert_eq!(target.next_value(), 1);
    let patch = compile_patch(
        dir.path(),
        "fault_patch.c",
        &manifest("fault", "value", "v1", "v2"),
    );
    let options = ApplyOptions {
        timeout: Duration::from_secs(3),
        wait_return: false,
        threadwise: false,
    };
    let pid = target.pid();

    for cycle in 0..20 {
        let report = apply_patch(pid, patch.clone(), &options)
            .unwrap_or_else(|e| panic!("cycle {cycle}: apply: {e}"));
        assert_eq!(report.threads, 6, "{report:?}");
        target.wait_value(2);
        // The reader was blocked in read() through the apply's stops and injected syscalls.
        let line = format!("line {cycle}");
        target.send(&line);
        let echo = format!("echo {line}");
        target.wait_for(30, &echo, |l| l == echo);

        let reverted =
            revert(pid, None, &options).unwrap_or_else(|e| panic!("cycle {cycle}: revert: {e}"));
        assert!(reverted.unmapped, "{reverted:?}");
        target.wait_value(1);
        assert!(target.alive(), "cycle {cycle}: the target died");
    }
    assert!(installed_patches(pid).unwrap().is_empty());

    // The sleeping and polling threads go on (an epoll wait our stop ended with EINTR is
    // restarted with its whole timeout, so under back-to-back stops it may not have completed
    // since), and every signal sent arrived.
    target.drain();
    target.wait_for(30, "a sleep after the cycles", |l| l.starts_with("slept "));
    target.wait_for(30, "a poll after the cycles", |l| l.starts_with("polled "));
    target.send("report");
    let line = target.wait_for(10, "signal report", |l| l.starts_with("signals sent "));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> u64 { words[i].trim_end_matches(',').parse().unwrap() };
    let (sent, received) = (number(2), number(4));
    let (sent_main, received_main) = (number(8), number(10));
    eprintln!("{line}");
    assert_eq!(sent, received, "{line}");
    assert_eq!(sent_main, received_main, "{line}");
    assert!(sent > 100, "too few signals to mean anything: {line}");
    let all = target.all.lock().unwrap().clone();
    for b in BAD {
        assert!(
            !all.iter().any(|l| l.contains(b)),
            "the target reported `{b}`"
        );
    }
    let echoes = all.iter().filter(|l| l.starts_with("echo line ")).count();
    assert_eq!(echoes, 20);
    assert!(target.alive());
}

/// A revert killed between writing the original bytes back and marking its header `reverted`
/// (both happen at one stop, so only SIGKILL of the tool can split them): `list` still reads the
/// patch as applied, and a new `revert` must settle it rather than refuse because the entry "no
/// longer jumps to it".
#[test]
fn a_revert_interrupted_after_restoring_the_entry_is_settled_by_revert() {
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "1"]);
    assert_eq!(next_tick_value(&running), 1);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let options = ApplyOptions {
        timeout: Duration::from_secs(3),
        wait_return: false,
        threadwise: false,
    };
    apply_patch(running.pid(), patch, &options).unwrap();
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 2
    });

    // What the interrupted revert wrote: the original bytes at the entry, header untouched.
    let installed = installed_patches(running.pid()).unwrap();
    let range = installed[0].record.functions[0]
        .overwritten
        .clone()
        .expect("value was redirected");
    let original: Vec<u8> = (0..range.original_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&range.original_hex[i..i + 2], 16).unwrap())
        .collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/mem", running.pid()))
        .unwrap()
        .write_all_at(&original, range.address)
        .unwrap();
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed.len(), 1);
    assert!(installed[0].is_live() && !installed[0].functions[0].active);

    let settled = revert(running.pid(), None, &options).expect("revert settles it");
    assert!(
        settled.restored.is_empty() && settled.unmapped,
        "{settled:?}"
    );
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 1
    });
    assert!(running.alive());
}
