//! CASES.md §E dry_run_live: a live dry run ([`hotpatch_applier::check`]) attaches, resolves,
//! checks safety and detaches, and the process memory is byte-for-byte unchanged.
//!
//! The target sits in `pause()` (mode `quiet`), so nothing in it changes by itself: the test
//! compares `/proc/PID/maps` and the contents of every readable mapping (executable, libraries,
//! heap, stack, anonymous memory) before and after. Only the kernel's `[vvar]` pages (the clock)
//! are left out, and glibc's rseq area (which the kernel rewrites on a CPU migration) is off.

mod common;

use std::time::Duration;

use common::*;

/// `pause(2)`, where the quiet target waits after printing `ready`.
const SYS_PAUSE: u64 = 34;
use hotpatch_applier::{check, plan, ApplyOptions, PatchObject, Target};

#[test]
fn dry_run_live_leaves_the_process_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    // glibc registers an rseq area in the thread control block, and the kernel writes the
    // current CPU into it whenever the thread resumes on another core (after the dry run's stop,
    // on a busy machine): the kernel's write, not ours, so rseq is turned off here.
    let mut running = start_with_env(
        &exe,
        &["quiet"],
        &[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")],
    );
    running.wait_for(30, |l| l == "ready");
    wait_until_in_syscall(running.pid(), SYS_PAUSE);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );

    let before = snapshot(running.pid());
    let target = Target::inspect(running.pid()).unwrap();
    let plan = plan(&target, &PatchObject::parse(patch).unwrap()).unwrap();
    let options = ApplyOptions {
        timeout: Duration::from_secs(2),
        wait_return: false,
        threadwise: false,
    };
    let report = check(&target, &plan, &options).unwrap();
    let after = snapshot(running.pid());

    assert_eq!(report.threads, 1);
    assert_eq!(report.stops, 1);
    assert!(report.pause_us > 0);
    assert_same_memory(&before, &after);
    assert!(running.alive());
}
