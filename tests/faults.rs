//! Bad inputs and faults an operator will meet: a target that exits while hotpatch works on it,
//! and a process that belongs to another user. Each gets a clear one-line error, never a hang or
//! a panic, and nothing is left behind.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_target_that_exits_during_apply_gives_a_clear_error_and_no_hang() {
    let dir = tempfile::tempdir().unwrap();
    let binary = simplest_case(dir.path());
    let repo = dir.path().join("repo");
    // Kill the target at different moments of the apply; whatever the moment, hotpatch ends
    // promptly with success (it finished first) or an error naming the pid, never a panic.
    for delay_ms in [0u64, 2, 5, 10, 20, 40] {
        let mut target = TargetProcess::start(&binary);
        target.wait_for("value=1");
        let pid = target.pid();
        let mut tool = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
            .args([
                "diff",
                "v1..v2",
                "--repo",
                repo.to_str().unwrap(),
                "--apply",
                "--pid",
            ])
            .arg(pid.to_string())
            .env("HOTPATCH_CACHE", "off") // no test shares a cache with another
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        drop(target); // kills and reaps the target
        let started = Instant::now();
        let status = loop {
            if let Some(status) = tool.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = tool.kill();
                panic!("hotpatch hung after its target (pid {pid}) exited");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let output = tool.wait_with_output().unwrap();
        let stderr = stderr_of(&output);
        assert_ne!(status.code(), Some(101), "hotpatch panicked: {stderr}");
        if !status.success() {
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert!(
                stderr.contains(&pid.to_string()),
                "the error does not name pid {pid}: {stderr}"
            );
        }
    }
}

#[test]
fn another_users_process_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let binary = simplest_case(dir.path());
    // Let an unprivileged user read the repository; the target stays root's.
    for entry in [dir.path().to_path_buf(), dir.path().join("repo")] {
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=1");
    let pid = target.pid().to_string();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_hotpatch"))
        .args([
            "diff",
            "v1..v2",
            "--repo",
            dir.path().join("repo").to_str().unwrap(),
            "--apply",
            "--pid",
            &pid,
        ])
        .env("HOME", "/tmp")
        .env("HOTPATCH_CACHE", "off") // no test shares a cache with another
        .output()
        .expect("running setpriv");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(&pid),
        "{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("permission denied") || lower.contains("not permitted"),
        "{stderr}"
    );
    target.read_lines(3);
    assert!(target.seen.last().unwrap().contains("value=1"));
    assert_counts_up_by_one(&target.seen, "state");
}
