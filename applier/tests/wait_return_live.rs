//! Waiting for a blocking frame to return (`wait_return`: a breakpoint at its return address,
//! the commit at the stop it causes), for apply and revert, and reverting at a safe point
//! (`revert_at`). No path may leave a breakpoint behind: each test compares the target's code
//! with its executable file. The target is `tests/c/life_target.c`; every process a test starts
//! is killed and reaped on every path (`common::Running`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hotpatch_applier::{installed_patches, revert, revert_at, ApplyError, ApplyOptions};

fn options(ms: u64, wait_return: bool) -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_millis(ms),
        wait_return,
        threadwise: false,
    }
}

/// The target in `linger MS` mode, once its worker is inside `linger` (it printed `enter`).
fn lingering(dir: &std::path::Path, ms: &str) -> (Running, std::path::PathBuf) {
    let exe = build_target(dir);
    let running = start(&exe, &["linger", ms]);
    running.wait_for(5, |l| l == "enter");
    (running, exe)
}

fn linger_patch(dir: &std::path::Path) -> Vec<u8> {
    compile_patch(
        dir,
        "life_patch_linger.c",
        &manifest("pl", "linger", "v1", "v2"),
    )
}

/// The code differs from the file only inside `[entry, entry + 14)`.
fn only_the_jump_differs(pid: i32, exe: &std::path::Path, entry: u64) {
    let differences = code_differences(pid, exe);
    assert!(
        differences
            .iter()
            .all(|&a| (entry..entry + 14).contains(&a)),
        "code differs from the file outside the jump at 0x{entry:x}: {differences:x?}"
    );
}

#[test]
fn wait_return_applies_right_as_the_frame_returns() {
    let dir = tempfile::tempdir().unwrap();
    let patch = linger_patch(dir.path());
    let (mut running, exe) = lingering(dir.path(), "1500");
    let started = Instant::now();
    let report = apply_patch(running.pid(), patch, &options(10_000, true)).unwrap();
    let waited = started.elapsed();
    let returned = Instant::now();
    // It waited at the return address, not by polling: one stop to find the thread in the way,
    // one at the return.
    assert_eq!(report.stops, 2, "{report:?}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    running.wait_for(5, |l| l == "left");
    let after = returned.elapsed();
    eprintln!("waited {waited:?}; `left` printed {after:?} after the commit; {report:?}");
    assert!(after < Duration::from_secs(1), "{after:?}");
    only_the_jump_differs(
        running.pid(),
        &exe,
        report.functions[0].old_address.unwrap(),
    );
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    running.wait_for(5, |l| l == "enter");
    assert!(running.alive());
}

#[test]
fn without_wait_return_the_apply_gives_up_naming_the_thread_and_frame() {
    let dir = tempfile::tempdir().unwrap();
    let patch = linger_patch(dir.path());
    let (mut running, exe) = lingering(dir.path(), "5000");
    let err = apply_patch(running.pid(), patch, &options(400, false)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ThreadBusy { .. }), "{text}");
    assert!(text.contains("`linger`, which is being replaced"), "{text}");
    assert!(
        text.contains("thread ") && text.contains("linger+0x"),
        "{text}"
    );
    assert!(
        text.contains("--wait-return would wait for the frame to return"),
        "{text}"
    );
    assert_eq!(code_differences(running.pid(), &exe), Vec::<u64>::new());
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    assert!(running.alive());
}

#[test]
fn wait_return_that_times_out_leaves_no_breakpoint() {
    let dir = tempfile::tempdir().unwrap();
    let patch = linger_patch(dir.path());
    let (mut running, exe) = lingering(dir.path(), "5000");
    let started = Instant::now();
    let err = apply_patch(running.pid(), patch, &options(500, true)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ThreadBusy { .. }), "{text}");
    assert!(
        text.contains("--wait-return waited for the frame to return to"),
        "{text}"
    );
    assert_eq!(code_differences(running.pid(), &exe), Vec::<u64>::new());
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    // The worker gets past the return address it was waited at, unharmed.
    running.wait_for(10, |l| l == "left");
    assert!(running.alive());
}

#[test]
fn wait_return_while_the_target_exits_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let patch = linger_patch(dir.path());
    let (running, _exe) = lingering(dir.path(), "5000");
    let pid = running.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        send(pid, "KILL");
    });
    let started = Instant::now();
    let err = apply_patch(pid, patch, &options(10_000, true)).unwrap_err();
    let took = started.elapsed();
    killer.join().unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}: {err}");
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
    drop(running);
}

#[test]
fn revert_with_wait_return_reverts_right_as_the_frame_in_the_patch_returns() {
    let dir = tempfile::tempdir().unwrap();
    let patch = linger_patch(dir.path());
    let (mut running, exe) = lingering(dir.path(), "1000");
    apply_patch(running.pid(), patch, &options(10_000, true)).unwrap();
    // The worker's next call runs the patch's `linger`.
    running.wait_for(5, |l| l == "enter");
    let err = revert(running.pid(), None, &options(200, false)).unwrap_err();
    assert!(matches!(err, ApplyError::ThreadBusy { .. }), "{err}");
    let report = revert(running.pid(), None, &options(10_000, true)).unwrap();
    let returned = Instant::now();
    assert_eq!(report.stops, 2, "{report:?}");
    running.wait_for(5, |l| l == "left");
    assert!(returned.elapsed() < Duration::from_secs(1));
    // Nothing refers to the region any more: the return addresses its `linger` left below the
    // worker's stack pointer are dead.
    assert!(report.unmapped, "{}", report.region);
    assert_eq!(code_differences(running.pid(), &exe), Vec::<u64>::new());
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    assert!(running.alive());
}

#[test]
fn revert_at_reverts_when_a_thread_reaches_the_function() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["stay"]);
    next_tick_value(&running);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    apply_patch(running.pid(), patch, &options(3000, false)).unwrap();
    running.drain();
    running.wait_for(5, |l| l.starts_with("tick ") && tick_field(l, "value") == 2);

    let err = revert_at(running.pid(), None, &options(300, false), "slow").unwrap_err();
    assert!(
        matches!(err, ApplyError::SafePointNotReached { .. }) && err.to_string().contains("`slow`"),
        "{err}"
    );
    assert_eq!(installed_patches(running.pid()).unwrap().len(), 1);
    let err = revert_at(running.pid(), None, &options(300, false), "nosuchfn").unwrap_err();
    assert!(err.to_string().contains("nosuchfn"), "{err}");

    let report = revert_at(running.pid(), None, &options(3000, false), "stay").unwrap();
    assert_eq!(report.patch_id, "p2");
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    assert_eq!(code_differences(running.pid(), &exe), Vec::<u64>::new());
    running.drain();
    running.wait_for(5, |l| l.starts_with("tick ") && tick_field(l, "value") == 1);
    assert!(running.alive());
}
