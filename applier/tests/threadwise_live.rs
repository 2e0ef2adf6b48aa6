//! The threadwise commit (`commit_threadwise`) on real processes: 64 threads calling two
//! replaced functions in a tight loop check that every call chain is all old or all new while
//! short-lived threads are created and exit and signals arrive; the stop-all commit when not asked,
//! with `--wait-return`, and for a process stopped by `SIGSTOP` (which stays stopped); no
//! breakpoint left behind.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hotpatch_applier::ApplyOptions;

fn build(dir: &Path) -> PathBuf {
    build_program_at(
        dir,
        &c_dir().join("threadwise_target.c"),
        "threadwise",
        "-O0",
    )
}

/// The named counter of a status line.
fn field(line: &str, name: &str) -> i64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

fn options(stop_all: bool) -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_secs(10),
        threadwise: !stop_all,
        ..ApplyOptions::default()
    }
}

fn patch(dir: &Path, id: &str) -> Vec<u8> {
    let functions = ["outer".to_string(), "inner".to_string()];
    compile_patch(dir, "threadwise_patch.c", &manifest_many(id, &functions))
}

#[test]
fn sixty_four_threads_switch_one_at_a_time_and_no_call_chain_mixes() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    // Three fresh processes: a stop-all revert cannot find 64 threads out of a function they
    // call in a tight loop, which is the point of the threadwise commit.
    for round in 0..3 {
        let running = start(&exe, &["64"]);
        let pid = running.pid();
        running.wait_for(30, |l| field(l, "calls") > 0 && field(l, "now") == 11);
        let id = format!("threadwise-{round}");
        let report = apply_patch(pid, patch(dir.path(), &id), &options(false)).unwrap();
        assert_eq!(report.commit.strategy, "threadwise", "{:?}", report.commit);
        assert_eq!(report.commit.all_stopped_us, 0);
        assert!(report.commit.max_thread_stop_us > 0);
        assert!(report.threads >= 65, "{}", report.threads);
        let line = running.wait_for(30, |l| field(l, "now") == 22 && field(l, "switched") == 64);
        assert_eq!(field(&line, "mixes"), 0, "{line}");
        // Every replaced entry holds its jump, no breakpoint, and nothing traces the target.
        for f in &report.functions {
            let entry = f.old_address.unwrap();
            assert_eq!(read_mem(pid, entry, 1)[0], 0xe9, "{}", f.name);
        }
        assert!(traced_threads(pid).is_empty(), "{:?}", traced_threads(pid));
        // Threads created and exiting, signals handled, after the commit too.
        let before = field(&line, "churned");
        let line = running.wait_for(30, |l| field(l, "churned") > before + 2);
        assert_eq!(field(&line, "mixes"), 0, "{line}");
    }
}

#[test]
fn a_thread_that_never_leaves_the_old_code_times_out_and_leaves_no_breakpoint() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    let running = start(&exe, &["4", "stay"]);
    let pid = running.pid();
    running.wait_for(30, |l| field(l, "now") == 11 && l.contains("staying"));
    let target = hotpatch_applier::Target::inspect(pid).unwrap();
    let object = hotpatch_applier::PatchObject::parse(patch(dir.path(), "stay")).unwrap();
    let plan = hotpatch_applier::plan(&target, &object).unwrap();
    let entries: Vec<(u64, Vec<u8>)> = plan
        .functions
        .iter()
        .map(|f| {
            let at = f.old_address.unwrap();
            (at, read_mem(pid, at, 16))
        })
        .collect();
    let options = ApplyOptions {
        timeout: Duration::from_millis(300),
        ..options(false)
    };
    let err = hotpatch_applier::apply(&target, &plan, &options).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`inner`, which is being replaced"), "{text}");
    for (at, bytes) in &entries {
        assert_eq!(&read_mem(pid, *at, 16), bytes, "at {at:#x}");
    }
    assert!(traced_threads(pid).is_empty());
    let line = running.wait_for(30, |l| field(l, "now") == 11);
    assert_eq!(field(&line, "mixes"), 0, "{line}");
}

/// Three fresh targets of `mode` (`fork` or `vfork`), each patched while it makes children that
/// call the chain: then `more` children later, none killed by a signal, no chain mixed.
fn children_made_during_the_commit_survive(mode: &str, more: i64) {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    for round in 0..3 {
        let running = start(&exe, &["16", mode]);
        let pid = running.pid();
        running.wait_for(30, |l| field(l, "forks") > 0 && field(l, "now") == 11);
        let id = format!("{mode}-{round}");
        let report = apply_patch(pid, patch(dir.path(), &id), &options(false)).unwrap();
        assert_eq!(report.commit.strategy, "threadwise");
        let line = running.wait_for(30, |l| field(l, "now") == 22);
        let forks = field(&line, "forks");
        let line = running.wait_for(30, |l| field(l, "forks") > forks + more);
        assert_eq!(field(&line, "fork_deaths"), 0, "{line}");
        assert_eq!(field(&line, "mixes"), 0, "{line}");
        assert!(traced_threads(pid).is_empty(), "{:?}", traced_threads(pid));
    }
}

#[test]
fn a_child_forked_during_the_commit_runs_the_old_code_without_a_breakpoint() {
    children_made_during_the_commit_survive("fork", 2);
}

#[test]
fn a_child_vforked_during_the_commit_shares_the_breakpoints_and_is_routed_past_them() {
    children_made_during_the_commit_survive("vfork", 16);
}

#[test]
fn without_threadwise_every_thread_stops_together() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    let running = start(&exe, &["4"]);
    let pid = running.pid();
    running.wait_for(30, |l| field(l, "now") == 11);
    let report = apply_patch(pid, patch(dir.path(), "stop-all"), &options(true)).unwrap();
    assert_eq!(report.commit.strategy, "stop-all");
    assert_eq!(report.commit.stop_all_because, None);
    assert!(report.commit.all_stopped_us > 0);
    assert_eq!(
        report.commit.all_stopped_us,
        report.commit.max_thread_stop_us
    );
    let line = running.wait_for(30, |l| field(l, "now") == 22);
    assert_eq!(field(&line, "mixes"), 0, "{line}");
}

#[test]
fn wait_return_falls_back_to_stop_all_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    let running = start(&exe, &["0"]);
    let pid = running.pid();
    running.wait_for(30, |l| field(l, "now") == 11);
    let options = ApplyOptions {
        wait_return: true,
        ..options(false)
    };
    let report = apply_patch(pid, patch(dir.path(), "fallback"), &options).unwrap();
    assert_eq!(report.commit.strategy, "stop-all");
    let because = report.commit.stop_all_because.unwrap_or_default();
    assert!(because.contains("--wait-return"), "{because}");
    running.wait_for(30, |l| field(l, "now") == 22);
}

/// Whether every thread of `pid` is in a group stop (`T` in its `stat`).
fn all_stopped(pid: i32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks.flatten().all(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        state.starts_with('T')
    })
}

/// Waits until every thread of `pid` is in a group stop (a thread released from a ptrace stop
/// re-enters it a moment later).
fn wait_all_stopped(pid: i32, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !all_stopped(pid) {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_process_stopped_by_sigstop_is_patched_at_one_stop_and_stays_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    for (round, stop_all) in [(0, false), (1, true)] {
        let running = start(&exe, &["stay"]);
        let pid = running.pid();
        running.wait_for(30, |l| l.starts_with("tick ") && l.contains("value 1"));
        // SAFETY: kill(2) on the guarded child.
        unsafe { nix::libc::kill(pid, nix::libc::SIGSTOP) };
        wait_all_stopped(pid, "SIGSTOP never stopped the target");
        let manifest = manifest(&format!("stopped-{round}"), "value", "v1", "v2");
        let object = compile_patch(dir.path(), "life_patch_v2.c", &manifest);
        // A wait for its threads would have to continue it: refused, nothing written.
        let waiting = ApplyOptions {
            wait_return: true,
            ..options(stop_all)
        };
        let err = apply_patch(pid, object.clone(), &waiting).unwrap_err();
        assert!(
            matches!(err, hotpatch_applier::ApplyError::ProcessStopped { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("--wait-return waits for its threads"),
            "{err}"
        );
        let target = hotpatch_applier::Target::inspect(pid).unwrap();
        let parsed = hotpatch_applier::PatchObject::parse(object.clone()).unwrap();
        let plan = hotpatch_applier::plan(&target, &parsed).unwrap();
        let err = hotpatch_applier::apply_at(&target, &plan, &options(stop_all), "value");
        let err = err.unwrap_err().to_string();
        assert!(err.contains("--at waits for its threads"), "{err}");
        assert!(hotpatch_applier::installed_patches(pid).unwrap().is_empty());
        let report = apply_patch(pid, object, &options(stop_all)).unwrap();
        assert_eq!(report.commit.strategy, "stop-all");
        if !stop_all {
            let because = report.commit.stop_all_because.clone().unwrap_or_default();
            assert!(because.contains("the process is stopped"), "{because}");
        }
        wait_all_stopped(pid, "the commit continued a stopped process");
        assert!(traced_threads(pid).is_empty());
        // SAFETY: as above.
        unsafe { nix::libc::kill(pid, nix::libc::SIGCONT) };
        running.wait_for(30, |l| l.starts_with("tick ") && l.contains("value 2"));
    }
}
