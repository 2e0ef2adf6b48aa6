//! CASES.md §E multi_process: every process running one executable is patched, or none: a failed
//! check of one means nothing is written to any, and a commit that fails after others were
//! committed rolls those back. A family is a process and its forked children, not a child that
//! shares its memory (vfork). Every started process is killed on every path.

mod common;

use std::time::Duration;

use common::*;
use hotpatch_applier::{
    apply_all, family_of, installed_patches, pids_of_exe, plan, ApplyError, ApplyOptions,
    PatchObject, Target,
};

fn options(ms: u64) -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_millis(ms),
        wait_return: false,
        threadwise: false,
    }
}

/// An idle process and one that never leaves `busy`, both planned for a patch of `busy`.
struct IdleAndStuck {
    idle: Running,
    stuck: Running,
    targets: [Target; 2],
    plans: Vec<hotpatch_applier::Plan>,
}

fn idle_and_stuck(dir: &std::path::Path) -> IdleAndStuck {
    let exe = build_target(dir);
    // `busy` is idle in the first process and never left in the second.
    let idle = start(&exe, &["threads", "1"]);
    let stuck = start(&exe, &["busy"]);
    next_tick_value(&idle);
    next_tick_value(&stuck);
    let bytes = compile_patch(
        dir,
        "life_patch_busy.c",
        &manifest("pb", "busy", "v1", "v2"),
    );
    let targets = [
        Target::inspect(idle.pid()).unwrap(),
        Target::inspect(stuck.pid()).unwrap(),
    ];
    let plans: Vec<_> = targets
        .iter()
        .map(|t| plan(t, &PatchObject::parse(bytes.clone()).unwrap()).unwrap())
        .collect();
    IdleAndStuck {
        idle,
        stuck,
        targets,
        plans,
    }
}

#[test]
fn every_process_of_the_executable_is_patched() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut a = start(&exe, &["threads", "1"]);
    let mut b = start(&exe, &["threads", "2"]);
    next_tick_value(&a);
    next_tick_value(&b);
    let mut pids = pids_of_exe(&exe).unwrap();
    pids.sort_unstable();
    let mut want = vec![a.pid(), b.pid()];
    want.sort_unstable();
    assert_eq!(pids, want);

    let bytes = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let targets: Vec<Target> = pids.iter().map(|&p| Target::inspect(p).unwrap()).collect();
    let plans: Vec<_> = targets
        .iter()
        .map(|t| plan(t, &PatchObject::parse(bytes.clone()).unwrap()).unwrap())
        .collect();
    let jobs: Vec<_> = targets.iter().zip(&plans).collect();
    let reports = apply_all(&jobs, &options(3000)).unwrap();
    assert_eq!(reports.len(), 2);
    for running in [&a, &b] {
        running.drain();
        running.wait_for(30, |l| {
            l.starts_with("tick ") && tick_field(l, "value") == 2
        });
    }
    assert!(a.alive() && b.alive());
}

#[test]
fn a_failed_check_writes_nothing_to_any_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = idle_and_stuck(dir.path());
    let entry = run.plans[0].functions[0].old_address.unwrap();
    let original = read_mem(run.idle.pid(), entry, 5);
    let jobs: Vec<_> = run.targets.iter().zip(&run.plans).collect();
    let err = apply_all(&jobs, &options(300)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::GroupCheck { .. }), "{text}");
    assert!(
        text.contains(&format!("pid {}", run.stuck.pid()))
            && text.contains("nothing was written to any of the 2 processes"),
        "{text}"
    );
    assert_eq!(read_mem(run.idle.pid(), entry, 5), original);
    assert!(installed_patches(run.idle.pid()).unwrap().is_empty());
    assert!(installed_patches(run.stuck.pid()).unwrap().is_empty());
    next_tick_value(&run.idle);
    next_tick_value(&run.stuck);
    assert!(run.idle.alive() && run.stuck.alive());
}

#[test]
fn a_commit_that_fails_after_another_rolls_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = idle_and_stuck(dir.path());
    let entry = run.plans[0].functions[0].old_address.unwrap();
    let original = read_mem(run.idle.pid(), entry, 5);
    let jobs: Vec<_> = run.targets.iter().zip(&run.plans).collect();
    // Waiting for the frame to return lets the check pass the stuck thread; the first process is
    // committed, the second never leaves `busy` and times out.
    let waiting = ApplyOptions {
        wait_return: true,
        threadwise: false,
        ..options(300)
    };
    let err = apply_all(&jobs, &waiting).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::Group { .. }), "{text}");
    assert!(
        text.contains(&format!("pid {}", run.stuck.pid()))
            && text.contains(&format!(
                "rolled back the processes already patched: {}",
                run.idle.pid()
            )),
        "{text}"
    );
    assert_eq!(read_mem(run.idle.pid(), entry, 5), original);
    assert!(installed_patches(run.idle.pid())
        .unwrap()
        .iter()
        .all(|p| !p.is_live()));
    assert!(installed_patches(run.stuck.pid()).unwrap().is_empty());
    next_tick_value(&run.idle);
    next_tick_value(&run.stuck);
    assert!(run.idle.alive() && run.stuck.alive());
}

/// A child made by `vfork` (as `posix_spawn` makes them) runs in its parent's memory until its
/// `exec`: it is no member of the family (it took the parent's patch with the memory, and is
/// gone or another program a moment later; as a member it failed applies and reverts when it
/// exited: found on GNU make), while a forked child is.
#[test]
fn a_vfork_child_is_not_of_the_family_and_a_forked_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program_at(
        dir.path(),
        &c_dir().join("vfork_family.c"),
        "vfork_family",
        "-O1",
    );
    let running = start(&exe, &[]);
    let pid = running.pid();
    let line = running.wait_for(30, |l| l.starts_with("forked="));
    let member: i32 = line["forked=".len()..].trim().parse().unwrap();
    let children =
        || std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while children().split_whitespace().count() < 2 {
        assert!(std::time::Instant::now() < deadline, "no vfork child");
        std::thread::yield_now();
    }
    assert_eq!(
        family_of(pid).unwrap(),
        [pid, member],
        "children: {}",
        children()
    );
}
