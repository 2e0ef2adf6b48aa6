//! Contexts suspended by `swapcontext` (coroutines) are on no thread's stack: the apply must still
//! refuse to replace a function one of them will return into, and a revert must keep the code
//! such a context will return into mapped. The target is `tests/c/coro_target.c`; every
//! process a test starts is killed and reaped on every path (`common::Running`).

mod common;

use std::time::Duration;

use common::*;
use hotpatch_applier::{installed_patches, revert, ApplyError, ApplyOptions, LedgerState};

fn options(ms: u64) -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_millis(ms),
        wait_return: false,
        threadwise: false,
    }
}

/// Builds and starts the coroutine target with `args`; returns it once it runs, with its
/// executable.
fn start_coroutines(dir: &std::path::Path, args: &[&str]) -> (Running, std::path::PathBuf) {
    let exe = build_program(dir, &c_dir().join("coro_target.c"), "coro");
    let running = start(&exe, args);
    running.wait_for(5, |l| l == "ready");
    (running, exe)
}

/// Moves the coroutine on (see `coro_target.c`) and waits for the line `until`.
fn poke(running: &Running, until: &str) {
    send(running.pid(), "USR1");
    running.wait_for(5, |l| l == until);
}

#[test]
fn a_coroutine_suspended_inside_the_function_blocks_the_apply_naming_where_it_is() {
    suspended_coroutine_blocks_the_apply(false);
}

/// The threadwise commit scans memory before its `int3`s go in: the same refusal, nothing
/// left behind.
#[test]
fn a_coroutine_suspended_inside_the_function_blocks_the_threadwise_apply_too() {
    suspended_coroutine_blocks_the_apply(true);
}

fn suspended_coroutine_blocks_the_apply(threadwise: bool) {
    let options = |ms| ApplyOptions {
        threadwise,
        ..options(ms)
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut running, exe) = start_coroutines(dir.path(), &[]);
    poke(&running, "step begins");
    running.wait_for(5, |l| l == "suspended");
    let patch = compile_patch(
        dir.path(),
        "coro_patch_step.c",
        &manifest("pc", "step", "v1", "v2"),
    );
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();

    // No thread is in `step`: only the saved context (and its stack) says it will return there.
    let err = apply_patch(running.pid(), patch.clone(), &options(300)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ContextBusy { .. }), "{text}");
    assert!(
        text.contains("`step`, which is being replaced") || text.contains("inside `step`"),
        "{text}"
    );
    assert!(
        text.contains("a word in ") && text.contains(" at 0x"),
        "{text}"
    );
    assert!(text.contains("step+0x"), "{text}");
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    assert_eq!(maps_before, maps_after, "nothing left behind");
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    assert_eq!(code_differences(running.pid(), &exe), Vec::<u64>::new());

    // Once the coroutine has finished in the old code, the patch goes in.
    running.drain();
    poke(&running, "step resumes");
    running.wait_for(5, |l| l == "coroutine done");
    apply_patch(running.pid(), patch, &options(3000)).unwrap();
    poke(&running, "step v2 begins");
    running.wait_for(5, |l| l == "suspended");
    running.wait_for(5, |l| l.starts_with("tick "));
    assert!(running.alive());
}

#[test]
fn a_revert_keeps_the_code_a_suspended_context_returns_into_and_the_process_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, exe) = start_coroutines(dir.path(), &[]);
    let patch = compile_patch(
        dir.path(),
        "coro_patch_step.c",
        &manifest("pc", "step", "v1", "v2"),
    );
    let applied = apply_patch(running.pid(), patch, &options(3000)).unwrap();
    let region = applied.region_address..applied.region_address + applied.region_size;
    // The coroutine suspends inside the new `step`, in the patch's region.
    poke(&running, "step v2 begins");
    running.wait_for(5, |l| l == "suspended");

    let report = revert(running.pid(), None, &options(3000)).unwrap();
    assert!(!report.unmapped, "{report:?}");
    assert!(
        report.region.starts_with("kept mapped: ") && report.region.contains("point into it"),
        "{}",
        report.region
    );
    assert!(report.region.contains("a word in "), "{}", report.region);
    let scan = report.reference_scan.as_deref().unwrap_or_default();
    assert!(scan.contains(" read while the process ran, "), "{scan}");
    eprintln!("revert: region {}", report.region);
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed.len(), 1, "{installed:?}");
    assert_eq!(installed[0].state, LedgerState::Reverted);
    assert_eq!(
        code_differences(running.pid(), &exe),
        Vec::<u64>::new(),
        "the entry of `step` holds its own code again"
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    assert!(
        maps.lines()
            .any(|l| l.starts_with(&format!("{:x}-", region.start))),
        "the region is still mapped:\n{maps}"
    );

    // The context resumes in the patch's code, still there, and finishes.
    running.drain();
    poke(&running, "step v2 resumes");
    running.wait_for(5, |l| l == "coroutine done");
    running.wait_for(5, |l| l.starts_with("tick "));
    assert!(running.alive(), "the process survived the context's return");

    // The next coroutine runs the original code.
    poke(&running, "step begins");
    running.wait_for(5, |l| l == "suspended");
    poke(&running, "step resumes");
    running.wait_for(5, |l| l == "coroutine done");
    assert!(running.alive());
}

#[test]
fn a_context_saved_on_a_threads_own_stack_blocks_the_apply_too() {
    // The coroutine's stack is an array in main's frame and its context a local copy: the
    // only trace of it is on the main thread's own stack, which the scan reads for saved
    // `ucontext_t`s only.
    let dir = tempfile::tempdir().unwrap();
    let (mut running, _exe) = start_coroutines(dir.path(), &["onstack"]);
    poke(&running, "step begins");
    running.wait_for(5, |l| l == "suspended");
    let patch = compile_patch(
        dir.path(),
        "coro_patch_step.c",
        &manifest("pc", "step", "v1", "v2"),
    );
    let err = apply_patch(running.pid(), patch.clone(), &options(300)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ContextBusy { .. }), "{text}");
    assert!(text.contains("[stack] (a saved ucontext_t)"), "{text}");
    running.drain();
    poke(&running, "step resumes");
    running.wait_for(5, |l| l == "coroutine done");
    apply_patch(running.pid(), patch, &options(3000)).unwrap();
    poke(&running, "step v2 begins");
    running.wait_for(5, |l| l == "suspended");
    poke(&running, "step v2 resumes");
    running.wait_for(5, |l| l == "coroutine done");
    assert!(running.alive());
}

#[test]
fn the_stack_glibc_keeps_after_a_thread_exited_does_not_block_the_apply() {
    // The exited thread's stack still holds a return address into `outer`, but nothing will
    // ever return there: both commits must go through at once rather than wait for the
    // stack to be reused.
    for threadwise in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let src = c_dir().join("exited_thread_target.c");
        let exe = build_program_at(dir.path(), &src, "exited", "-O0");
        let running = start(&exe, &[]);
        let pid = running.pid();
        let joined = running.wait_for(5, |l| l.starts_with("joined "));
        let value = |name: &str| -> u64 { tick_field(&joined, name).try_into().expect(&joined) };
        let (descriptor, stale) = (value("descriptor"), value("return"));
        running.wait_for(5, |l| l == "now=11");
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let stack = maps
            .lines()
            .filter_map(|l| {
                let (range, _) = l.split_once(' ')?;
                let (a, b) = range.split_once('-')?;
                Some(u64::from_str_radix(a, 16).ok()?..u64::from_str_radix(b, 16).ok()?)
            })
            .find(|r| r.contains(&descriptor))
            .expect("the exited thread's stack is still mapped");
        let words = read_mem(pid, stack.start, (stack.end - stack.start) as usize);
        assert!(
            words
                .chunks_exact(8)
                .any(|w| u64::from_le_bytes(w.try_into().unwrap()) == stale),
            "the stale return address 0x{stale:x} is in the cached stack"
        );
        let functions = ["outer".to_string(), "inner".to_string()];
        let patch = compile_patch(
            dir.path(),
            "threadwise_patch.c",
            &manifest_many("exited", &functions),
        );
        let options = ApplyOptions {
            threadwise,
            ..options(3000)
        };
        let report = apply_patch(pid, patch, &options).unwrap();
        assert_eq!(
            report.commit.strategy,
            if threadwise { "threadwise" } else { "stop-all" }
        );
        running.wait_for(5, |l| l == "now=22");
    }
}
