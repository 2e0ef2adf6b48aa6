//! The tool killed with SIGKILL (its whole process group) at points spread over an apply and over a revert (CASES.md §G
//! tool_killed_mid_apply, DESIGN §5 crash consistency). The real `hotpatch` binary patches a
//! running target (`applier/tests/c/fault_kill_target.c`) with a plain object; after each kill the
//! target must still run (its counter `n` goes up by exactly one per line over the whole test),
//! have no thread traced or stopped, and be in one of three states: untouched (old behaviour,
//! nothing live in `hotpatch list`), fully patched (new behaviour, `list` shows it applied), or a
//! state `list` shows and `hotpatch revert` settles (old behaviour afterwards, nothing live).
//! Each test prints how many kills landed in each state (`--nocapture`). One kills the apply to
//! a family (the target forks a child: `--pid` of the parent takes both), settling each process
//! on its own: each is in one of the three states, whatever the other's. Another kills a
//! revert of a patch whose code a suspended coroutine will return into
//! (`applier/tests/c/coro_target.c`): whatever the moment, the region stays mapped and the
//! coroutine finishes in it.

#[path = "../applier/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const POINTS: u32 = 50;

fn c_source(name: &str) -> PathBuf {
    project_root().join("applier/tests/c").join(name)
}

/// The target binary and the patch object (`value` returns 2), built in `dir`.
fn build(dir: &Path) -> (PathBuf, PathBuf) {
    let binary = dir.join("kill-target");
    compile_program(
        dir,
        &[c_source("fault_kill_target.c").display().to_string()],
        "-O2 -g -pthread",
        &binary,
    );
    let object = dir.join("v2.o");
    run_ok(
        Command::new("gcc")
            .args(["-c", "-O2", "-fPIC"])
            .arg(c_source("fault_kill_patch.c"))
            .arg("-o")
            .arg(&object),
    );
    (binary, object)
}

/// Runs hotpatch to completion; panics when it fails.
fn hotpatch_ok(args: &[&str]) -> String {
    let out = hotpatch(args);
    assert!(
        out.status.success(),
        "hotpatch {args:?} failed: {}{}",
        stdout_of(&out),
        stderr_of(&out)
    );
    stdout_of(&out)
}

/// Wall time of one complete `hotpatch ARGS` run.
fn timed(args: &[&str]) -> Duration {
    let started = Instant::now();
    hotpatch_ok(args);
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Starts `hotpatch ARGS` in a process group of its own and SIGKILLs the whole group after
/// `delay` (unless it finished first), as a terminal's Ctrl-C or a service manager would reach
/// it; returns whether it was killed before it exited.
fn run_and_kill(args: &[&str], delay: Duration) -> bool {
    let mut tool = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(args)
        .process_group(0)
        .env("NO_COLOR", "1")
        .env("HOTPATCH_CACHE", "off") // no test shares a cache with another
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting hotpatch");
    std::thread::sleep(delay);
    let finished = matches!(tool.try_wait(), Ok(Some(_)));
    let group = nix::unistd::Pid::from_raw(-(tool.id() as i32));
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    let _ = tool.wait();
    !finished
}

/// The patches `hotpatch list` shows as live (not reverted): (state, header_state, all active).
fn live_patches(pid: &str) -> Vec<(String, String, bool)> {
    let text = hotpatch_ok(&["list", "--pid", pid, "--json"]);
    let value: serde_json::Value = serde_json::from_str(&text).expect("list --json is JSON");
    value["patches"]
        .as_array()
        .expect("patches")
        .iter()
        .filter(|p| p["state"] != "reverted")
        .map(|p| {
            let active = p["functions"]
                .as_array()
                .is_some_and(|f| f.iter().all(|f| f["active"] == true));
            (
                p["state"].as_str().unwrap_or("").to_string(),
                p["header_state"].as_str().unwrap_or("").to_string(),
                active,
            )
        })
        .collect()
}

/// `value` in a line `pid` printed after this call (the second fresh line: computed after it).
fn current_value(target: &mut TargetProcess, pid: i32) -> i64 {
    target.drain();
    let needle = format!("pid={pid} ");
    let mut fresh = 0;
    loop {
        let line = target.wait_for(&needle);
        fresh += 1;
        if fresh == 2 {
            return field(&line, "value").expect("a value= line");
        }
    }
}

/// Process `pid` runs, untraced and unstopped (the kernel detaches a dead tracer's threads when
/// it exits; allowed a moment to get them scheduled), none of its memory is write-tracked any more
/// (the tool's userfaultfd died with it), and so does the target.
fn assert_running_untraced(target: &mut TargetProcess, pid: i32, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match untraced_and_running(pid).and_then(|()| no_write_tracking(pid)) {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(
        target.is_alive(),
        "{what}: the target died ({})",
        target.how_it_ended()
    );
}

/// None of `pid`'s mappings is registered for userfaultfd write-protection (`uw` in the
/// `VmFlags` of `/proc/PID/smaps`).
fn no_write_tracking(pid: i32) -> Result<(), String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| e.to_string())?;
    match smaps
        .lines()
        .filter(|l| l.starts_with("VmFlags:"))
        .find(|l| l.split_whitespace().any(|flag| flag == "uw"))
    {
        Some(line) => Err(format!("pid {pid} still has write-tracked memory: {line}")),
        None => Ok(()),
    }
}

/// Classifies process `pid` of the target after a kill and brings it back to the old code.
fn settle(target: &mut TargetProcess, pid: i32, what: &str) -> &'static str {
    assert_running_untraced(target, pid, what);
    let value = current_value(target, pid);
    let pid_text = pid.to_string();
    // This process alone: the others of its family are settled on their own.
    let revert = ["revert", "--pid", &pid_text, "--no-children"];
    let live = live_patches(&pid_text);
    let state = if live.is_empty() {
        assert_eq!(
            value, 1,
            "{what}: nothing live in list, but value is {value}"
        );
        "old code, nothing live"
    } else if live.len() == 1 && live[0] == ("applied".into(), "applied".into(), true) {
        assert_eq!(
            value, 2,
            "{what}: list shows it applied, but value is {value}"
        );
        hotpatch_ok(&revert);
        "new code, list shows it applied"
    } else {
        // Interrupted mid-commit: list shows it; revert must settle it.
        hotpatch_ok(&revert);
        "interrupted: list showed it, revert settled it"
    };
    assert!(
        live_patches(&pid_text).is_empty(),
        "{what}: still live after settling"
    );
    assert_eq!(
        current_value(target, pid),
        1,
        "{what}: old code after settling"
    );
    assert_running_untraced(target, pid, what);
    state
}

/// The entry bytes of every function `object` replaces in process `pid` alone, read while the
/// old code runs (an apply that reports them, reverted at once, with `flag` when given), and
/// the apply's strategy.
fn old_entries(pid: &str, object: &str, flag: Option<&str>) -> (Vec<(u64, Vec<u8>)>, String) {
    let mut args = vec!["apply", object, "--pid", pid, "--no-children", "--json"];
    args.extend(flag);
    let text = hotpatch_ok(&args);
    let applied = serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find(|v| v.get("functions").is_some())
        .expect("an apply report");
    hotpatch_ok(&["revert", "--pid", pid, "--no-children"]);
    let pid: i32 = pid.parse().unwrap();
    let entries = applied["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["old_address"].as_u64())
        .map(|at| (at, common::read_mem(pid, at, 16)))
        .collect();
    let strategy = applied["commit"]["strategy"].as_str().unwrap_or_default();
    (entries, strategy.to_string())
}

/// The settled process `pid` holds the old bytes at every entry: no breakpoint (`int3`) or
/// half-written jump is left behind.
fn assert_entries(pid: i32, entries: &[(u64, Vec<u8>)], what: &str) {
    for (at, bytes) in entries {
        assert_eq!(
            &common::read_mem(pid, *at, bytes.len()),
            bytes,
            "{what}: entry {at:#x}"
        );
    }
}

/// The pids of the first `count` processes the target's lines name (`pid=`), the target first.
fn printing_pids(target: &mut TargetProcess, count: usize) -> Vec<i32> {
    let mut pids = vec![target.pid()];
    while pids.len() < count {
        let pid = field(&target.wait_for("pid="), "pid").unwrap() as i32;
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Every process's `n` went up by one per line over the whole test.
fn assert_each_counted_up(target: &mut TargetProcess, pids: &[i32]) {
    target.drain();
    for pid in pids {
        let needle = format!("pid={pid} ");
        let lines: Vec<String> = target
            .seen
            .iter()
            .filter(|l| l.contains(&needle))
            .cloned()
            .collect();
        assert_counts_up_by_one(&lines, "n");
    }
}

/// Kills at `POINTS` delays spread evenly over 0..1.2 × `normal` (`at` runs one and returns
/// whether the kill landed before the tool exited); when no kill
/// came after the tool had finished (the machine was slower than when `normal` was measured),
/// sweeps again over a span twice as long, up to three times. Returns the last span and how
/// many of its kills found the tool already exited (asserted to be at least one: the sweep
/// covered the whole operation).
fn sweep(normal: Duration, mut at: impl FnMut(Duration) -> bool) -> (Duration, u32) {
    let mut span = normal.mul_f64(1.2);
    for _ in 0..3 {
        let mut finished = 0;
        for point in 0..POINTS {
            let delay = span.mul_f64(f64::from(point) / f64::from(POINTS - 1));
            if !at(delay) {
                finished += 1;
            }
        }
        if finished > 0 {
            return (span, finished);
        }
        span *= 2;
    }
    panic!("no kill came after the tool had finished, even over 0..{span:?}");
}

fn report(
    name: &str,
    normal: Duration,
    span: Duration,
    counts: &BTreeMap<impl std::fmt::Display, u32>,
    finished: u32,
) {
    let total: u32 = counts.values().sum();
    eprintln!(
        "{name}: a normal run takes {normal:?}; {total} kills, the last {POINTS} at 0..{span:?} \
         ({finished} of them after the tool had already exited):"
    );
    for (state, n) in counts {
        eprintln!("  {n:3}  {state}");
    }
}

/// Kills `hotpatch apply OBJECT` at `POINTS` moments of a run against `binary` started with
/// `args` (a family of `processes` processes when it forks) and settles each process after each
/// kill; `name` heads the report.
fn kill_during_apply(binary: &Path, args: &[&str], processes: usize, object: &Path, name: &str) {
    let mut target = TargetProcess::start_with(binary, args);
    let pids = printing_pids(&mut target, processes);
    let pid = target.pid().to_string();
    let object = object.to_str().unwrap();
    // A name ending in `(--FLAG)` asks for that flag.
    let flag = name
        .strip_suffix(')')
        .and_then(|n| n.rsplit_once("(--"))
        .map(|(_, flag)| format!("--{flag}"));
    let mut apply = vec!["apply", object, "--pid", &pid];
    apply.extend(flag.as_deref());
    let revert = ["revert", "--pid", &pid];
    let (entries, strategy) = old_entries(&pid, object, flag.as_deref());
    println!("{name}: the apply commits {strategy}");
    match flag.as_deref() {
        None if name == "apply" => assert_eq!(strategy, "threadwise"),
        None => {}
        Some(_) => assert_eq!(strategy, "stop-all", "{name}"),
    }

    let normal = median(
        (0..5)
            .map(|_| {
                let took = timed(&apply);
                hotpatch_ok(&revert);
                took
            })
            .collect(),
    );
    let mut counts = BTreeMap::new();
    let (span, finished) = sweep(normal, |delay| {
        let killed = run_and_kill(&apply, delay);
        let what = format!("{name} killed after {delay:?}");
        let states: Vec<&str> = pids
            .iter()
            .map(|&pid| settle(&mut target, pid, &what))
            .collect();
        assert_entries(target.pid(), &entries, &what);
        *counts.entry(states.join(" / ")).or_insert(0) += 1;
        killed
    });
    report(name, normal, span, &counts, finished);
    assert_each_counted_up(&mut target, &pids);
}

/// The default, threadwise commit. It found the threadwise commit's deaths: a thread that had
/// hit an entry's `int3` right before it was interrupted kept the trap pending, and the
/// membarrier injected on it handed that trap on as the target's own `SIGTRAP` (about 1 run in 40
/// killed the target before the fix).
#[test]
fn killed_during_apply_leaves_the_target_running_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, object) = build(dir.path());
    kill_during_apply(&binary, &["hotpatch-case"], 1, &object, "apply");
}

/// The same with `--stop-all`.
#[test]
fn killed_during_a_stop_all_apply_leaves_the_target_running_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, object) = build(dir.path());
    kill_during_apply(
        &binary,
        &["hotpatch-case"],
        1,
        &object,
        "apply (--stop-all)",
    );
}

/// With `--wait-return` while a thread's frame is in `value` for 20 ms at a time: most kills
/// land while the threads run towards the breakpoint at that frame's return address (the
/// wait runs in a helper process, which takes the breakpoint back whatever happens to the tool).
#[test]
fn killed_while_an_apply_waits_for_a_frame_to_return_leaves_the_target_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, object) = build(dir.path());
    kill_during_apply(&binary, &["linger"], 1, &object, "apply (--wait-return)");
}

#[test]
fn killed_during_the_apply_to_a_family_leaves_each_process_running_and_consistent() {
    // The master's pid takes its forked child with it: each is checked, then committed in turn.
    let dir = tempfile::tempdir().unwrap();
    let (binary, object) = build(dir.path());
    kill_during_apply(
        &binary,
        &["fork"],
        2,
        &object,
        "apply to a family (master / child)",
    );
}

/// The kill-tool target linked against `applier/tests/c/kill_lib.c` (as `libkill.so`), built in
/// `dir`, and the plain object compiled from `patch`.
fn build_with_library(dir: &Path, patch: &str) -> (PathBuf, PathBuf) {
    let binary = build_library_target(dir);
    let object = dir.join("v2-lib.o");
    run_ok(
        Command::new("gcc")
            .args(["-c", "-O2", "-fPIC"])
            .arg(c_source(patch))
            .arg("-o")
            .arg(&object),
    );
    (binary, object)
}

/// The kill-tool target linked against `applier/tests/c/kill_lib.c` (as `libkill.so`), built in
/// `dir`.
fn build_library_target(dir: &Path) -> PathBuf {
    let lib = dir.join("libkill.so");
    compile_program(
        dir,
        &[c_source("kill_lib.c").display().to_string()],
        "-O2 -g -fPIC -shared",
        &lib,
    );
    let binary = dir.join("kill-target-lib");
    let link = format!(
        "-O2 -g -pthread -L{dir} -Wl,-rpath,{dir} -Wl,--no-as-needed -lkill",
        dir = dir.display()
    );
    compile_program(
        dir,
        &[c_source("fault_kill_target.c").display().to_string()],
        &link,
        &binary,
    );
    binary
}

#[test]
fn killed_while_an_ifunc_resolver_runs_in_the_target_leaves_it_consistent() {
    // The patch calls an IFUNC nothing resolved and writes a library's `__thread` variable:
    // every apply runs the resolver on a thread of the target and reads a thread pointer, both
    // through the injection helper.
    let dir = tempfile::tempdir().unwrap();
    let (binary, object) = build_with_library(dir.path(), "kill_lib_patch.c");
    kill_during_apply(
        &binary,
        &["hotpatch-case"],
        1,
        &object,
        "apply running a resolver",
    );
}

#[test]
fn killed_during_an_apply_with_a_jump_island_leaves_the_target_consistent() {
    // One patch of the executable's `value` and the library's `far`: a region near the
    // executable and a jump island near the library, each mapped with an injected `mmap`.
    let dir = tempfile::tempdir().unwrap();
    let binary = build_library_target(dir.path());
    let manifest = common::manifest_many("island", &["value".into(), "far".into()]);
    let bytes = common::compile_patch_file(dir.path(), &c_source("kill_island_patch.c"), &manifest);
    let object = dir.path().join("island.hp.o");
    std::fs::write(&object, bytes).unwrap();
    kill_during_apply(
        &binary,
        &["hotpatch-case"],
        1,
        &object,
        "apply with a jump island",
    );
}

#[test]
fn killed_during_revert_leaves_the_target_running_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, object) = build(dir.path());
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=1");
    let target_pid = target.pid();
    let pid = target_pid.to_string();
    let object = object.to_str().unwrap();
    let apply = ["apply", object, "--pid", &pid];
    let revert = ["revert", "--pid", &pid];

    let normal = median(
        (0..5)
            .map(|_| {
                hotpatch_ok(&apply);
                timed(&revert)
            })
            .collect(),
    );
    let mut counts = BTreeMap::new();
    let (span, finished) = sweep(normal, |delay| {
        hotpatch_ok(&apply);
        assert_eq!(current_value(&mut target, target_pid), 2);
        let killed = run_and_kill(&revert, delay);
        let what = format!("revert killed after {delay:?}");
        *counts
            .entry(settle(&mut target, target_pid, &what))
            .or_insert(0) += 1;
        killed
    });
    report("revert", normal, span, &counts, finished);
    assert_each_counted_up(&mut target, &[target_pid]);
}

/// The coroutine target and a plain object replacing its `step` (which suspends inside the
/// patch), built in `dir`.
fn build_coroutines(dir: &Path) -> (PathBuf, PathBuf) {
    let binary = dir.join("coro-target");
    compile_program(
        dir,
        &[c_source("coro_target.c").display().to_string()],
        "-O2 -g",
        &binary,
    );
    let object = dir.join("step.o");
    run_ok(
        Command::new("gcc")
            .args(["-c", "-O2", "-fPIC"])
            .arg(c_source("coro_patch_step.c"))
            .arg("-o")
            .arg(&object),
    );
    (binary, object)
}

/// Every patch `hotpatch list` shows (live or reverted and kept mapped): (state, all active).
fn listed_states(pid: &str) -> Vec<String> {
    let text = hotpatch_ok(&["list", "--pid", pid, "--json"]);
    let value: serde_json::Value = serde_json::from_str(&text).expect("list --json is JSON");
    value["patches"]
        .as_array()
        .expect("patches")
        .iter()
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn killed_during_a_revert_under_a_suspended_coroutine_never_unmaps_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, object) = build_coroutines(dir.path());
    let mut target = TargetProcess::start_with(&binary, &[]);
    target.wait_for("ready");
    let target_pid = target.pid();
    let pid = target_pid.to_string();
    let object = object.to_str().unwrap();
    let apply = ["apply", object, "--pid", &pid];
    let revert = ["revert", "--pid", &pid];
    let mut cycles = 0usize;
    // Applies the patch and suspends a coroutine inside its `step`.
    let suspend = |target: &mut TargetProcess| {
        hotpatch_ok(&apply);
        common::send(target.pid(), "USR1");
        target.wait_for("step v2 begins");
        target.wait_for("suspended");
    };
    // Resumes the coroutine: it must finish in the patch's code, still mapped.
    let finish = |target: &mut TargetProcess, what: &str| {
        common::send(target.pid(), "USR1");
        target.wait_for("step v2 resumes");
        target.wait_for("coroutine done");
        target.wait_for("tick");
        assert!(
            target.is_alive(),
            "{what}: the target died ({})",
            target.how_it_ended()
        );
    };

    let normal = median(
        (0..5)
            .map(|_| {
                suspend(&mut target);
                let took = timed(&revert);
                finish(&mut target, "a normal revert");
                cycles += 1;
                took
            })
            .collect(),
    );
    let mut counts = BTreeMap::new();
    let (span, finished) = sweep(normal, |delay| {
        suspend(&mut target);
        let killed = run_and_kill(&revert, delay);
        let what = format!("revert killed after {delay:?}");
        assert_running_untraced(&mut target, target_pid, &what);
        let state = if live_patches(&pid).is_empty() {
            "the revert had committed"
        } else {
            hotpatch_ok(&revert);
            "list showed it live, revert settled it"
        };
        cycles += 1;
        let states = listed_states(&pid);
        assert_eq!(
            states,
            vec!["reverted".to_string(); cycles],
            "{what}: every region a coroutine was suspended in stays mapped, reverted"
        );
        finish(&mut target, &what);
        assert_running_untraced(&mut target, target_pid, &what);
        *counts.entry(state).or_insert(0) += 1;
        killed
    });
    report("revert under a coroutine", normal, span, &counts, finished);
}
