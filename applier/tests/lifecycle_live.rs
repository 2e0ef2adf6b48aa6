//! Lifecycle of patches in real processes (CASES.md §D and §E): the ledger read back from the
//! process, revert, stacking, waiting for threads found inside replaced code by unwinding their
//! stacks, and refusals. The target is `tests/c/life_target.c`; every process a test starts is
//! killed and reaped on every path (`common::Running`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hotpatch_applier::{
    installed_patches, reinstate, release_reverted, revert, revert_keeping_region,
    running_revision, ApplyError, ApplyOptions, LedgerState,
};

fn options(ms: u64) -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_millis(ms),
        wait_return: false,
        threadwise: false,
    }
}

#[test]
fn list_from_process_then_revert_restores_v1() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "2"]);
    assert_eq!(next_tick_value(&running), 1);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let report = apply_patch(running.pid(), patch, &options(3000)).unwrap();
    assert_eq!(report.threads, 3);
    assert!(report.pause_us <= report.total_stopped_us);
    assert_eq!(report.incomplete_stacks, 0, "{report:?}");
    let entry = report.functions[0].old_address.unwrap();
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 2
    });

    // A fresh read of the process alone (as after a restart of the tool) finds the patch.
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed.len(), 1, "{installed:?}");
    let p = &installed[0];
    assert_eq!(p.patch_id, "p2");
    assert_eq!(p.state, LedgerState::Applied);
    assert_eq!(p.header_state, LedgerState::Applied);
    assert_eq!(p.old_revision.as_deref(), Some("v1"));
    assert_eq!(p.new_revision.as_deref(), Some("v2"));
    assert_eq!(p.functions[0].name, "value");
    assert!(p.functions[0].active);
    assert!(p.applied_at_unix > 1_600_000_000);
    assert_eq!(
        running_revision(running.pid()).unwrap().as_deref(),
        Some("v2")
    );
    let counter_before = tick_field(&running.wait_for(30, |l| l.starts_with("tick ")), "counter");

    let reverted = revert(running.pid(), None, &options(3000)).unwrap();
    assert_eq!(reverted.patch_id, "p2");
    assert_eq!(reverted.restored.len(), 1);
    assert!(reverted.unmapped, "{reverted:?}");
    // The kernel tracked writes: most of memory was searched before the stop.
    let scan = reverted.reference_scan.as_deref().unwrap_or_default();
    assert!(
        scan.contains(" read while the process ran, ") && scan.ends_with(" read at the stop"),
        "{scan}"
    );
    assert_eq!(
        read_mem(running.pid(), entry, 1),
        vec![0x83],
        "value starts with addl again"
    );
    running.drain();
    let line = running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 1
    });
    // State carried on across patch and revert.
    assert!(tick_field(&line, "counter") > counter_before);
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    assert_eq!(running_revision(running.pid()).unwrap(), None);
    let err = revert(running.pid(), None, &options(100)).unwrap_err();
    assert!(err.to_string().contains("no applied patch"), "{err}");
    assert!(running.alive());
}

/// A revert that keeps the region (a family's) can be undone: the patch is back, its state
/// survived; only a reverted patch can be put back; once released, the region is gone.
#[test]
fn a_revert_keeping_the_region_is_put_back_and_then_released() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "2"]);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("back", "value", "v1", "v2"),
    );
    apply_patch(running.pid(), patch, &options(3000)).unwrap();
    let pid = running.pid();
    let value_now = |running: &mut Running, want: i64| {
        running.drain();
        running.wait_for(30, |l| {
            l.starts_with("tick ") && tick_field(l, "value") == want
        })
    };
    value_now(&mut running, 2);

    let kept = revert_keeping_region(pid, None, &options(3000), None).unwrap();
    assert!(!kept.unmapped && kept.kept_because.is_none(), "{kept:?}");
    assert_eq!(
        installed_patches(pid).unwrap()[0].state,
        LedgerState::Reverted
    );
    let before = tick_field(&value_now(&mut running, 1), "counter");

    reinstate(pid, "back", &options(3000)).unwrap();
    assert_eq!(
        installed_patches(pid).unwrap()[0].state,
        LedgerState::Applied
    );
    let line = value_now(&mut running, 2);
    assert!(tick_field(&line, "counter") > before);
    let err = reinstate(pid, "back", &options(100)).unwrap_err();
    assert!(
        err.to_string().contains("it is not reverted there"),
        "{err}"
    );

    let mut kept = revert_keeping_region(pid, None, &options(3000), None).unwrap();
    release_reverted(pid, &mut kept).unwrap();
    assert!(kept.unmapped, "{kept:?}");
    assert!(installed_patches(pid).unwrap().is_empty());
    value_now(&mut running, 1);
    let err = reinstate(pid, "back", &options(100)).unwrap_err();
    assert!(
        err.to_string().contains("it is not reverted there"),
        "{err}"
    );
    assert!(running.alive());
}

#[test]
fn stack_three_reverts_last_in_first_out() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "1"]);
    assert_eq!(next_tick_value(&running), 1);
    let v2 = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let v3 = compile_patch(
        dir.path(),
        "life_patch_v3.c",
        &manifest("p3", "value", "v2", "v3"),
    );
    let r2 = apply_patch(running.pid(), v2.clone(), &options(3000)).unwrap();
    // The same patch twice is refused.
    let again = apply_patch(running.pid(), v2, &options(3000)).unwrap_err();
    assert!(
        matches!(again, ApplyError::AlreadyApplied { sequence: 1, .. }),
        "{again}"
    );
    let r3 = apply_patch(running.pid(), v3, &options(3000)).unwrap();
    assert!(r3.sequence > r2.sequence);
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 3
    });

    let installed = installed_patches(running.pid()).unwrap();
    let ids: Vec<&str> = installed.iter().map(|p| p.patch_id.as_str()).collect();
    assert_eq!(ids, ["p2", "p3"]);
    assert!(!installed[0].functions[0].active, "v2 is superseded");
    assert!(installed[1].functions[0].active);
    // v3 recorded the bytes that were there: v2's jump.
    let recorded = &installed[1].record.functions[0].overwritten;
    assert!(recorded.as_ref().unwrap().original_hex.starts_with("e9"));
    assert_eq!(
        running_revision(running.pid()).unwrap().as_deref(),
        Some("v3")
    );

    // v2 cannot go first: v3 replaced the same function after it.
    let err = revert(running.pid(), Some("p2"), &options(100)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("p3") && text.contains("`value`"), "{text}");

    let first = revert(running.pid(), None, &options(3000)).unwrap();
    assert_eq!(first.patch_id, "p3");
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 2
    });
    assert_eq!(
        running_revision(running.pid()).unwrap().as_deref(),
        Some("v2")
    );
    let second = revert(running.pid(), Some("p2"), &options(3000)).unwrap();
    assert_eq!(second.patch_id, "p2");
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 1
    });
    assert!(running.alive());
}

#[test]
fn threads_all_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "8"]);
    running.wait_for(30, |l| l.starts_with("w 7 "));
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let report = apply_patch(running.pid(), patch, &options(3000)).unwrap();
    assert_eq!(report.threads, 9);
    running.drain();
    let mut seen = [false; 8];
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.iter().any(|s| !s) && Instant::now() < deadline {
        let line = running.wait_for(30, |l| l.starts_with("w "));
        let who = tick_field(&line, "w") as usize;
        // A thread may print one v1 value computed just before the stop.
        if tick_field(&line, "value") == 2 {
            seen[who] = true;
        }
    }
    assert!(
        seen.iter().all(|s| *s),
        "threads that never ran v2: {seen:?}"
    );
    assert!(running.alive());
}

#[test]
fn wait_for_leave_patches_right_after_the_thread_returns() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["slow"]);
    let patch = compile_patch(
        dir.path(),
        "life_patch_slow.c",
        &manifest("ps", "slow", "v1", "v2"),
    );
    running.wait_for(30, |l| l == "enter");
    // The worker now sleeps inside slow() for 1 s: its pc is in libc, only its stack shows it.
    // (The apply searches memory for suspended contexts before its first stop: 0.1 s of it, in
    // a debug build on a loaded machine, is spent before it sees the worker.)
    let started = Instant::now();
    let report = apply_patch(running.pid(), patch, &options(3000)).unwrap();
    let waited = started.elapsed();
    assert!(report.stops > 1, "{report:?}");
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    eprintln!(
        "waited {waited:?}, {} stops, longest {} us, total {} us",
        report.stops, report.pause_us, report.total_stopped_us
    );
    running.wait_for(30, |l| l == "left");
    assert!(running.alive());
}

#[test]
fn busy_forever_is_refused_naming_the_thread_and_frame() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["busy"]);
    next_tick_value(&running);
    let patch = compile_patch(
        dir.path(),
        "life_patch_busy.c",
        &manifest("pb", "busy", "v1", "v2"),
    );
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    let started = Instant::now();
    let err = apply_patch(running.pid(), patch, &options(400)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ThreadBusy { .. }), "{text}");
    assert!(
        text.contains("thread ") && text.contains("busy+0x"),
        "{text}"
    );
    assert!(text.contains("`busy`, which is being replaced"), "{text}");
    // Nothing was left behind.
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    assert_eq!(maps_before, maps_after);
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    next_tick_value(&running);
    assert!(running.alive());
}

#[test]
fn revert_busy_waits_then_refuses_and_keeps_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["stay"]);
    next_tick_value(&running);
    let patch = compile_patch(
        dir.path(),
        "life_patch_stay.c",
        &manifest("pst", "stay", "v1", "v2"),
    );
    let report = apply_patch(running.pid(), patch, &options(3000)).unwrap();
    let entry = report.functions[0].old_address.unwrap();
    // The worker enters the new stay() at its next call and never leaves it.
    running.wait_for(30, |l| l == "in the patched stay");
    let err = revert(running.pid(), None, &options(300)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ThreadBusy { .. }), "{text}");
    assert!(
        text.contains("being reverted") && text.contains("stay [patch pst]"),
        "{text}"
    );
    // Still applied, code still mapped.
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].state, LedgerState::Applied);
    assert_eq!(read_mem(running.pid(), entry, 1), vec![0xe9]);
    next_tick_value(&running);
    assert!(running.alive());
}

/// Writes `bytes` into the target at `addr` (as a tool killed mid-way would have left it).
fn poke(pid: i32, addr: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .unwrap();
    file.write_all_at(bytes, addr).unwrap();
}

#[test]
fn a_commit_interrupted_after_the_jumps_is_listed_applied_and_reverts() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "1"]);
    next_tick_value(&running);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let report = apply_patch(running.pid(), patch, &options(3000)).unwrap();
    // The tool died between writing the jumps and the state word: the header says prepared.
    poke(
        running.pid(),
        report.region_address + 16,
        &0u32.to_le_bytes(),
    );
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed[0].header_state, LedgerState::Prepared);
    assert_eq!(installed[0].state, LedgerState::Applied);
    assert!(installed[0].functions[0].active);
    revert(running.pid(), None, &options(3000)).unwrap();
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 1
    });
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    assert!(running.alive());
}

#[test]
fn a_region_prepared_but_never_committed_is_listed_and_revert_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "1"]);
    next_tick_value(&running);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let entry_bytes = {
        let target = hotpatch_applier::Target::inspect(running.pid()).unwrap();
        let object = hotpatch_applier::PatchObject::parse(patch.clone()).unwrap();
        let plan = hotpatch_applier::plan(&target, &object).unwrap();
        let entry = plan.functions[0].old_address.unwrap();
        (entry, read_mem(running.pid(), entry, 5))
    };
    let report = apply_patch(running.pid(), patch, &options(3000)).unwrap();
    // As if the tool died before the commit: no jump, header prepared.
    poke(running.pid(), entry_bytes.0, &entry_bytes.1);
    poke(
        running.pid(),
        report.region_address + 16,
        &0u32.to_le_bytes(),
    );
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed[0].state, LedgerState::Prepared);
    assert!(!installed[0].functions[0].active);
    assert_eq!(running_revision(running.pid()).unwrap(), None);
    let settled = revert(running.pid(), None, &options(3000)).unwrap();
    assert!(
        settled.restored.is_empty() && settled.unmapped,
        "{settled:?}"
    );
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    // Lines printed while the jump was still in place are queued: drop them, and one that may
    // have been in flight, before reading what the restored code prints.
    running.drain();
    next_tick_value(&running);
    assert_eq!(next_tick_value(&running), 1);
    assert!(running.alive());
}

#[test]
fn thread_churn_during_apply_and_revert_leaves_nothing_traced() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["churn"]);
    next_tick_value(&running);
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    apply_patch(running.pid(), patch, &options(3000)).unwrap();
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 2
    });
    revert(running.pid(), None, &options(3000)).unwrap();
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 1
    });
    assert!(running.alive());
}

#[test]
fn safe_point_applies_when_a_thread_reaches_the_function() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["stay"]);
    next_tick_value(&running);
    let bytes = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let target = hotpatch_applier::Target::inspect(running.pid()).unwrap();
    let object = hotpatch_applier::PatchObject::parse(bytes).unwrap();
    let plan = hotpatch_applier::plan(&target, &object).unwrap();
    let report = hotpatch_applier::apply_at(&target, &plan, &options(3000), "stay").unwrap();
    assert_eq!(report.threads, 2);
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 2
    });
    assert!(running.alive());
}

#[test]
fn safe_point_never_reached_gives_up_and_leaves_no_breakpoint() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "2"]);
    next_tick_value(&running);
    let bytes = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let target = hotpatch_applier::Target::inspect(running.pid()).unwrap();
    let object = hotpatch_applier::PatchObject::parse(bytes).unwrap();
    let plan = hotpatch_applier::plan(&target, &object).unwrap();
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    let err = hotpatch_applier::apply_at(&target, &plan, &options(300), "slow").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ApplyError::SafePointNotReached { .. }) && text.contains("`slow`"),
        "{text}"
    );
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    assert_eq!(maps_before, maps_after);
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    assert!(installed_patches(running.pid()).unwrap().is_empty());
    // `slow` starts with its own first byte again, not the breakpoint.
    let slow = runtime_address(running.pid(), &exe, "slow");
    let file = std::fs::read(&exe).unwrap();
    let on_disk = {
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
        let elf = object::File::parse(&*file).unwrap();
        let sym = elf.symbols().find(|s| s.name() == Ok("slow")).unwrap();
        let text = elf.section_by_name(".text").unwrap();
        let data = text.data().unwrap();
        data[(sym.address() - text.address()) as usize]
    };
    assert_eq!(read_mem(running.pid(), slow, 1), vec![on_disk]);
    let err = hotpatch_applier::apply_at(&target, &plan, &options(100), "nosuchfn").unwrap_err();
    assert!(err.to_string().contains("nosuchfn"), "{err}");
    running.drain();
    assert_eq!(next_tick_value(&running), 1);
    assert!(running.alive());
}

/// Runtime address of the `.symtab` function `name` of the PIE executable `exe` in `pid`.
fn runtime_address(pid: i32, exe: &std::path::Path, name: &str) -> u64 {
    use object::{Object as _, ObjectSymbol as _};
    let file = std::fs::read(exe).unwrap();
    let elf = object::File::parse(&*file).unwrap();
    let sym = elf.symbols().find(|s| s.name() == Ok(name)).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let exe = std::fs::canonicalize(exe).unwrap();
    let base = maps
        .lines()
        .find(|l| {
            l.ends_with(&*exe.to_string_lossy()) && l.split_whitespace().nth(2) == Some("00000000")
        })
        .and_then(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
        .unwrap();
    base + sym.address()
}

#[test]
fn a_reverted_patch_that_added_a_function_stays_mapped_and_listed_reverted() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "1"]);
    next_tick_value(&running);
    let mut m = manifest("p4", "value", "v1", "v4");
    let mut add = m.functions[0].clone();
    add.symbol = "added_four".into();
    add.target = hotpatch_applier::SymbolRef::Global {
        name: "added_four".into(),
    };
    add.action = hotpatch_applier::FunctionAction::Add;
    m.functions.push(add);
    let patch = compile_patch(dir.path(), "life_patch_add.c", &m);
    apply_patch(running.pid(), patch, &options(3000)).unwrap();
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 4
    });
    let report = revert(running.pid(), None, &options(3000)).unwrap();
    assert!(!report.unmapped);
    let why = report.kept_because.unwrap();
    assert!(why.contains("`added_four`"), "{why}");
    let installed = installed_patches(running.pid()).unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].state, LedgerState::Reverted);
    assert!(installed[0].functions.iter().all(|f| !f.active));
    assert_eq!(running_revision(running.pid()).unwrap(), None);
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 1
    });
    let err = revert(running.pid(), None, &options(100)).unwrap_err();
    assert!(err.to_string().contains("no applied patch"), "{err}");
    assert!(running.alive());
}

#[test]
fn a_breakpoint_left_by_a_killed_threadwise_commit_is_listed_and_revert_settles_it() {
    // The states a threadwise commit leaves when its helper is killed right after the `int3`
    // or after the jump's tail: the header `prepared`, the entry `int3` and the rest. Made by
    // hand in a process whose threads never call `value`, so nothing reaches the breakpoint.
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    for tail_written in [false, true] {
        let mut running = start(&exe, &["quiet"]);
        running.wait_for(30, |l| l == "ready");
        let pid = running.pid();
        let patch = compile_patch(
            dir.path(),
            "life_patch_v2.c",
            &manifest("int3", "value", "v1", "v2"),
        );
        let threadwise = ApplyOptions {
            threadwise: true,
            ..options(3000)
        };
        let target = hotpatch_applier::Target::inspect(pid).unwrap();
        let object = hotpatch_applier::PatchObject::parse(patch).unwrap();
        let plan = hotpatch_applier::plan(&target, &object).unwrap();
        let entry = plan.functions[0].old_address.unwrap();
        let original = read_mem(pid, entry, 5);
        let report = hotpatch_applier::apply(&target, &plan, &threadwise).unwrap();
        assert_eq!(report.commit.strategy, "threadwise");
        let jump = read_mem(pid, entry, 5);
        assert_eq!(jump[0], 0xe9);
        let rest = if tail_written {
            &jump[1..]
        } else {
            &original[1..]
        };
        poke(pid, entry + 1, rest);
        poke(pid, entry, &[0xcc]);
        poke(
            pid,
            report.region_address + 16, // the state word (DESIGN §5)
            &LedgerState::Prepared.word().to_le_bytes(),
        );

        let installed = installed_patches(pid).unwrap();
        assert_eq!(installed[0].state, LedgerState::Prepared);
        assert!(installed[0].functions[0].breakpoint, "{installed:?}");
        assert!(!installed[0].functions[0].active);

        let reverted = revert(pid, None, &options(3000)).unwrap();
        assert_eq!(reverted.restored.len(), 1, "{reverted:?}");
        assert_eq!(
            read_mem(pid, entry, 5),
            original,
            "tail written: {tail_written}"
        );
        assert!(installed_patches(pid)
            .unwrap()
            .iter()
            .all(|p| p.state == LedgerState::Reverted));
        assert!(running.alive());
    }
}
