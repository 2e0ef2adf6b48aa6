//! Unwinding through patch code in a real process: a worker thread sits for good inside a
//! patched `f` (its pc in libc's `nanosleep`, return addresses in the patch region). Because each
//! patch carries its `.eh_frame` records into its region, the stack is walked through that code:
//! a second patch replacing another function, and its revert, go ahead at once, while the revert
//! of the patch the thread is inside is still refused. The target is `tests/c/unwind_target.c`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hotpatch_applier::{installed_patches, revert, ApplyError, ApplyOptions, LedgerState};

fn options(ms: u64) -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_millis(ms),
        wait_return: false,
        threadwise: false,
    }
}

#[test]
fn a_thread_inside_patched_code_does_not_block_other_patches() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), &c_dir().join("unwind_target.c"), "unwind");
    let mut running = start(&exe, &["x"]);
    running.wait_for(30, |l| l.starts_with("tick ") && tick_field(l, "g") == 1);

    let pf = compile_patch(
        dir.path(),
        "unwind_patch_f.c",
        &manifest("pf", "f", "v1", "v2"),
    );
    let first = apply_patch(running.pid(), pf, &options(3000)).unwrap();
    let region = first.region_address..first.region_address + first.region_size;
    // The worker enters the new f() at its next call (within 5 ms) and never leaves it.
    running.drain();
    running.wait_for(30, |l| l.starts_with("tick ") && tick_field(l, "f") == 2);
    let installed = installed_patches(running.pid()).unwrap();
    let unwind = installed[0]
        .record
        .unwind
        .expect("the ledger records the CFI");
    assert!(region.contains(&unwind.eh_frame_address), "{unwind:?}");
    assert!(region.contains(&unwind.text_address), "{unwind:?}");
    assert!(
        unwind.eh_frame_size > 0 && unwind.text_size > 0,
        "{unwind:?}"
    );

    // Another function, while the worker stays inside the first patch: no waiting.
    let pg = compile_patch(
        dir.path(),
        "unwind_patch_g.c",
        &manifest("pg", "g", "v1", "v2"),
    );
    let started = Instant::now();
    let second = apply_patch(running.pid(), pg, &options(2000)).unwrap();
    let waited = started.elapsed();
    assert_eq!(second.threads, 2, "{second:?}");
    assert_eq!(second.incomplete_stacks, 0, "{second:?}");
    assert!(second.stops <= 2, "{second:?}");
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    running.drain();
    running.wait_for(30, |l| l.starts_with("tick ") && tick_field(l, "g") == 2);

    // Its revert too.
    let started = Instant::now();
    let reverted = revert(running.pid(), Some("pg"), &options(2000)).unwrap();
    assert!(reverted.stops <= 2, "{reverted:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(reverted.unmapped, "{reverted:?}");
    running.drain();
    let line = running.wait_for(30, |l| l.starts_with("tick ") && tick_field(l, "g") == 1);
    assert_eq!(
        tick_field(&line, "f"),
        2,
        "the worker is still in the new f: {line}"
    );

    // The patch the worker is inside cannot be retired: its frames are in that code.
    let err = revert(running.pid(), Some("pf"), &options(300)).unwrap_err();
    assert!(matches!(err, ApplyError::ThreadBusy { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("being reverted") && text.contains("[patch pf]"),
        "{text}"
    );
    assert!(!text.contains("could not be unwound"), "{text}");
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed.len(), 1, "{installed:?}");
    assert_eq!(installed[0].state, LedgerState::Applied);
    assert!(running.alive());
}
