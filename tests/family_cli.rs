//! Process families (issue 13, item 8): a pre-forking server (`tests/c/family_server.c`: a
//! master, two forked workers, a grandchild forked by the first worker, and a helper that execs
//! `sleep`) patched through its master's pid. The whole family changes behaviour with its state
//! intact, the helper (another executable) is left alone, a worker that cannot be patched stops
//! the apply before anything is written to any process, and `--exe` after the master alone skips
//! the master. Real repository, real processes (the master is killed on every path, and every
//! child dies with its parent), real ptrace.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use support::*;

/// A running family server at v1 and the repository of v1 and v2.
struct Server {
    dir: tempfile::TempDir,
    binary: PathBuf,
    master: TargetProcess,
    /// The family: the master, the workers and the grandchild.
    family: BTreeSet<i32>,
    /// The forked child that runs `sleep`.
    helper: i32,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// The server started with `args` (`spawn-on-release`: see `tests/c/family_server.c`).
    fn start_with(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let tree = family_server_files;
        let revisions = [tree(1), tree(2), tree(3)];
        let tags = [
            ("v1", &revisions[0][..]),
            ("v2", &revisions[1]),
            ("v3", &revisions[2]),
        ];
        git_repo_with_tags(&dir.path().join("repo"), &tags);
        write_tree(&dir.path().join("build"), &tree(1));
        let binary = dir.path().join("family-server-v1");
        compile_program(
            &dir.path().join("build"),
            &["main.c".into(), "lib.c".into()],
            "-O2 -g",
            &binary,
        );
        let mut master = TargetProcess::start_with(&binary, args);
        let helper = field(&master.wait_for("helper="), "helper").unwrap() as i32;
        let mut family = BTreeSet::from([master.pid()]);
        let deadline = Instant::now() + DEADLINE;
        while family.len() < 4 {
            assert!(Instant::now() < deadline, "the family never printed");
            let line = master.wait_for("value=");
            family.insert(field(&line, "pid").unwrap() as i32);
        }
        Server {
            dir,
            binary,
            master,
            family,
            helper,
        }
    }

    fn repo(&self) -> String {
        self.dir.path().join("repo").display().to_string()
    }

    /// `hotpatch diff v1..v2 --repo REPO --apply EXTRA... --json`, parsed.
    fn apply(&self, extra: &[&str]) -> (std::process::Output, Value) {
        let repo = self.repo();
        let mut args = vec!["diff", "v1..v2", "--repo", &repo, "--apply", "--json"];
        args.extend_from_slice(extra);
        let out = hotpatch(&args);
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout_of(&out), stderr_of(&out)));
        (out, json)
    }

    /// Reads lines until every pid of `pids` printed a line with `value=V` (its lines before are
    /// kept in `seen`).
    fn until_values(&mut self, pids: &BTreeSet<i32>, value: i64) {
        let mut missing = pids.clone();
        let deadline = Instant::now() + DEADLINE;
        while !missing.is_empty() {
            assert!(
                Instant::now() < deadline,
                "pids {missing:?} never printed value={value}"
            );
            let line = self.master.wait_for("value=");
            if field(&line, "value") == Some(value) {
                if let Some(pid) = field(&line, "pid") {
                    missing.remove(&(pid as i32));
                }
            }
        }
    }

    /// The last value each pid of `pids` printed after this call (each prints a fresh line).
    fn current_values(&mut self, pids: &BTreeSet<i32>) -> BTreeMap<i32, i64> {
        self.master.drain();
        let mut values = BTreeMap::new();
        let deadline = Instant::now() + DEADLINE;
        while values.len() < pids.len() {
            assert!(
                Instant::now() < deadline,
                "not every pid printed: {values:?}"
            );
            let line = self.master.wait_for("value=");
            let pid = field(&line, "pid").unwrap() as i32;
            if pids.contains(&pid) {
                values.insert(pid, field(&line, "value").unwrap());
            }
        }
        values
    }

    /// Every process's `state` went up by one per line: its state survived.
    fn assert_state_survived(&self) {
        for pid in &self.family {
            let needle = format!("pid={pid} ");
            let lines: Vec<String> = self
                .master
                .seen
                .iter()
                .filter(|l| l.contains(&needle) && l.contains("state="))
                .cloned()
                .collect();
            assert_counts_up_by_one(&lines, "state");
        }
    }

    /// The patches `hotpatch list` shows as applied in `pid`.
    fn applied(&self, pid: i32) -> usize {
        let out = hotpatch(&["list", "--pid", &pid.to_string(), "--json"]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        json["patches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "applied")
            .count()
    }

    fn workers(&self) -> BTreeSet<i32> {
        let mut workers = self.family.clone();
        workers.remove(&self.master.pid());
        workers
    }
}

fn signal(pid: i32, name: &str) {
    run_ok(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]));
}

/// The pids of the JSON document's `processes` with `status`.
fn with_status(json: &Value, status: &str) -> BTreeSet<i32> {
    json["processes"]
        .as_array()
        .unwrap_or_else(|| panic!("no processes in {json}"))
        .iter()
        .filter(|p| p["status"] == status)
        .map(|p| p["pid"].as_i64().unwrap() as i32)
        .collect()
}

#[test]
fn the_masters_pid_patches_and_reverts_the_whole_family() {
    let mut server = Server::start();
    let master = server.master.pid().to_string();
    let (out, json) = server.apply(&["--pid", &master]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(with_status(&json, "patched"), server.family, "{json}");
    assert_eq!(json["processes"].as_array().unwrap().len(), 4, "{json}");
    assert!(
        json["notes"][0]
            .as_str()
            .unwrap()
            .contains("3 descendants running the same executable"),
        "{json}"
    );
    let family = server.family.clone();
    server.until_values(&family, 2);
    assert!(server.current_values(&family).values().all(|&v| v == 2));
    // The helper runs `sleep`: not of the family, untouched.
    assert_eq!(server.applied(server.helper), 0);

    // Reverting through the master's pid reverts the family.
    let out = hotpatch(&["revert", "--pid", &master, "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reverted: BTreeSet<i32> = json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(reverted, family, "{json}");
    server.until_values(&family, 1);
    assert!(server.current_values(&family).values().all(|&v| v == 1));
    server.assert_state_survived();
    assert!(server.master.is_alive());
}

#[test]
fn a_worker_held_in_the_function_stops_the_apply_before_anything_is_written() {
    let mut server = Server::start();
    let master = server.master.pid().to_string();
    let held = *server.workers().iter().next_back().unwrap();
    signal(held, "USR1");
    server.master.wait_for(&format!("held pid={held}"));

    // The dry run checks the workers too, and says which one is in the way.
    let repo = server.repo();
    let args = [
        "diff",
        "v1..v2",
        "--repo",
        &repo,
        "--dry-run",
        "--pid",
        &master,
    ];
    let out = hotpatch(&[&args[..], &["--timeout", "0.5"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("cannot patch pid {held}")),
        "{}",
        stderr_of(&out)
    );

    let (out, json) = server.apply(&["--pid", &master, "--timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["error"]["pid"], held, "{json}");
    assert_eq!(json["error"]["nothing_written"], true, "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("pid {held}"))
            && message.contains("value")
            && message.contains("nothing was written to any of the 4 processes"),
        "{message}"
    );
    for &pid in &server.family {
        assert_eq!(server.applied(pid), 0, "pid {pid} has a patch");
    }
    let others: BTreeSet<i32> = server
        .family
        .iter()
        .copied()
        .filter(|&p| p != held)
        .collect();
    assert!(server.current_values(&others).values().all(|&v| v == 1));

    // Released, the worker leaves `value`: now the dry run checks all four, and the family is
    // patched.
    signal(held, "USR2");
    let out = hotpatch(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", stderr_of(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checked: BTreeSet<i32> = json["other_processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "checked" && p["check"]["threads"] == 1)
        .map(|p| p["pid"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(checked, server.workers(), "{json}");
    let (out, json) = server.apply(&["--pid", &master]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(with_status(&json, "patched"), server.family, "{json}");
    let family = server.family.clone();
    server.until_values(&family, 2);
    server.assert_state_survived();
}

#[test]
fn exe_after_the_master_alone_skips_the_master_and_patches_the_rest() {
    let mut server = Server::start();
    let master = server.master.pid();
    let (out, json) = server.apply(&["--pid", &master.to_string(), "--no-children"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let warnings = json["warnings"].to_string();
    assert!(
        warnings.contains("3 descendants running the same executable")
            && warnings.contains("--no-children"),
        "{json}"
    );
    server.until_values(&BTreeSet::from([master]), 2);
    let workers = server.workers();
    assert!(
        server.current_values(&workers).values().all(|&v| v == 1),
        "{:?}",
        server.master.seen
    );

    let exe = server.binary.display().to_string();
    let (out, json) = server.apply(&["--exe", &exe]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        with_status(&json, "skipped"),
        BTreeSet::from([master]),
        "{json}"
    );
    assert_eq!(with_status(&json, "patched"), workers, "{json}");
    let family = server.family.clone();
    server.until_values(&family, 2);
    for &pid in &family {
        assert_eq!(server.applied(pid), 1, "pid {pid}");
    }
    server.assert_state_survived();
}

#[test]
fn apply_of_a_built_object_patches_the_family_and_skips_who_has_it() {
    let mut server = Server::start();
    let master = server.master.pid().to_string();
    let object = server.dir.path().join("fix.hp.o");
    let out = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        &server.repo(),
        "-o",
        object.to_str().unwrap(),
        "--pid",
        &master,
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let object = object.to_str().unwrap();
    let out = hotpatch(&["apply", object, "--pid", &master, "--dry-run"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert_eq!(text.matches(": checked").count(), 3, "{text}");
    for &pid in &server.family {
        assert_eq!(server.applied(pid), 0, "the dry run wrote to pid {pid}");
    }

    // The first worker alone, then the family: the worker is skipped, the rest patched.
    let worker = *server.workers().iter().next().unwrap();
    let out = hotpatch(&[
        "apply",
        object,
        "--pid",
        &worker.to_string(),
        "--no-children",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("left out (--no-children)"),
        "{}",
        stderr_of(&out)
    );
    let out = hotpatch(&["apply", object, "--pid", &master, "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        with_status(&json, "skipped"),
        BTreeSet::from([worker]),
        "{json}"
    );
    let mut rest = server.family.clone();
    rest.remove(&worker);
    assert_eq!(with_status(&json, "patched"), rest, "{json}");
    let family = server.family.clone();
    server.until_values(&family, 2);
    server.assert_state_survived();
}

/// The master is held inside `value` and the apply waits for that frame to return
/// (`--wait-return`), after it listed the family; released, the master forks a new worker
/// before it returns, so the worker is forked after the listing and before the master's commit,
/// with the breakpoint of the wait in its copy of the code. The apply finds it when it lists the
/// family again and patches it too; the worker survives the breakpoint its parent had.
#[test]
fn a_worker_forked_during_the_apply_is_patched_too() {
    let mut server = Server::start_with(&["spawn-on-release"]);
    let master = server.master.pid();
    signal(master, "USR1");
    server.master.wait_for(&format!("held pid={master}"));
    let cache = tempfile::tempdir().unwrap();
    let repo = server.repo();
    let tool = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(["diff", "v1..v2", "--repo", &repo, "--apply", "--json"])
        .args([
            "--pid",
            &master.to_string(),
            "--wait-return",
            "--timeout",
            "120",
        ])
        .env("XDG_CACHE_HOME", cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut tool = ChildGuard(Some(tool));
    // While the apply waits for the frame to return, the master sleeps traced (not in a
    // tracing stop, as during the check): the family was listed before, and the breakpoint is in.
    until_waited_for(master, "apply");
    signal(master, "USR2");
    let late = field(&server.master.wait_for("late="), "late").unwrap() as i32;
    let out = tool.0.take().unwrap().wait_with_output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout_of(&out), stderr_of(&out)));
    assert!(out.status.success(), "{json}");
    assert!(!server.family.contains(&late));
    let mut everyone = server.family.clone();
    everyone.insert(late);
    assert_eq!(with_status(&json, "patched"), everyone, "{json}");
    assert!(
        json["notes"].to_string().contains(&format!(
            "pid {late} forked during the apply, after the family was listed"
        )),
        "{json}"
    );
    server.until_values(&everyone, 2);
    assert_eq!(server.applied(late), 1);
    server.assert_state_survived();
}

/// Waits until the tool's `what` (apply, revert) waits for `pid`'s blocking frame to return:
/// `pid` sleeps traced, twice 20 ms apart.
fn until_waited_for(pid: i32, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !(sleeping_traced(pid) && {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sleeping_traced(pid)
    }) {
        assert!(
            Instant::now() < deadline,
            "the {what} never waited for pid {pid}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Whether `pid` is traced and sleeping (`TracerPid` not 0, `State: S`): let run by its tracer.
fn sleeping_traced(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !matches!(status_field(&status, "TracerPid:").as_str(), "" | "0")
        && status_field(&status, "State:").starts_with('S')
}

/// Kills the tool if a test fails while it runs.
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A family revert checks every member before it reverts any: one worker has a later patch on
/// the same function (v2..v3, applied to it alone), so reverting v1..v2 through the master's pid
/// is refused for that worker, and nothing is reverted anywhere.
#[test]
fn a_family_revert_that_one_member_refuses_reverts_none() {
    let mut server = Server::start();
    let master = server.master.pid().to_string();
    let (out, json) = server.apply(&["--pid", &master]);
    assert!(out.status.success(), "{json}");
    // The second worker has no children: the later patch reaches it alone.
    let worker = *server
        .workers()
        .iter()
        .find(|&&p| family_of_pid(p).len() == 1)
        .unwrap();
    let repo = server.repo();
    let (w, m) = (worker.to_string(), master.clone());
    let out = hotpatch(&[
        "diff",
        "v2..v3",
        "--repo",
        &repo,
        "--apply",
        "--pid",
        &w,
        "--no-children",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let family = server.family.clone();
    server.until_values(&BTreeSet::from([worker]), 3);

    let out = hotpatch(&["revert", "--pid", &m]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let error = stderr_of(&out);
    assert!(
        error.contains(&format!("cannot revert in pid {worker}"))
            && error.contains("revert")
            && error.contains("first")
            && error.contains("nothing was reverted in any of the 4 processes"),
        "{error}"
    );
    let values = server.current_values(&family);
    for (pid, value) in values {
        assert_eq!(value, if pid == worker { 3 } else { 2 }, "pid {pid}");
    }
    for &pid in &family {
        assert_eq!(
            server.applied(pid),
            if pid == worker { 2 } else { 1 },
            "pid {pid}"
        );
    }
    server.assert_state_survived();
}

/// A family revert that fails at a member (its thread stays in the patch's code past the
/// timeout) puts the patch back in the members reverted before it: all or nothing. The
/// grandchild comes last in the family's order (the master, the workers, then it).
#[test]
fn a_family_revert_that_fails_midway_puts_the_patch_back_where_it_took_it_out() {
    let mut server = Server::start();
    let master = server.master.pid().to_string();
    let (out, json) = server.apply(&["--pid", &master]);
    assert!(out.status.success(), "{json}");
    let family = server.family.clone();
    server.until_values(&family, 2);
    let parent = *server
        .workers()
        .iter()
        .find(|&&w| family_of_pid(w).len() > 1)
        .unwrap();
    let grandchild = *family_of_pid(parent)
        .iter()
        .find(|&&p| p != parent)
        .unwrap();
    signal(grandchild, "USR1");
    server.master.wait_for(&format!("held pid={grandchild}"));

    let out = hotpatch(&["revert", "--pid", &master, "--timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let error = stderr_of(&out);
    assert!(
        error.contains(&format!("cannot revert in pid {grandchild}"))
            && error.contains("is back in pids")
            && error.contains("the family is as it was"),
        "{error}"
    );
    for &pid in &family {
        assert_eq!(server.applied(pid), 1, "pid {pid}");
    }
    let others: BTreeSet<i32> = family
        .iter()
        .copied()
        .filter(|&p| p != grandchild)
        .collect();
    assert!(server.current_values(&others).values().all(|&v| v == 2));

    // Released, the grandchild leaves the patch's code: the revert takes it out everywhere.
    signal(grandchild, "USR2");
    let out = hotpatch(&["revert", "--pid", &master]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    server.until_values(&family, 1);
    for &pid in &family {
        assert_eq!(server.applied(pid), 0, "pid {pid}");
    }
    server.assert_state_survived();
}

/// A worker that exits while the family's revert waits for the master (held in the patch's
/// code, `--wait-return`) has nothing left to revert: it is skipped as exited, and the rest of
/// the family is reverted.
#[test]
fn a_member_that_exits_during_the_family_revert_is_skipped() {
    let mut server = Server::start();
    let master = server.master.pid();
    let (out, json) = server.apply(&["--pid", &master.to_string()]);
    assert!(out.status.success(), "{json}");
    let family = server.family.clone();
    server.until_values(&family, 2);
    let worker = *server
        .workers()
        .iter()
        .find(|&&p| family_of_pid(p).len() == 1)
        .unwrap();
    signal(master, "USR1");
    server.master.wait_for(&format!("held pid={master}"));
    let tool = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(["revert", "--pid", &master.to_string()])
        .args(["--wait-return", "--timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut tool = ChildGuard(Some(tool));
    until_waited_for(master, "revert");
    signal(worker, "KILL");
    let deadline = Instant::now() + DEADLINE;
    while std::path::Path::new(&format!("/proc/{worker}")).exists() {
        assert!(Instant::now() < deadline, "the worker was never reaped");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    signal(master, "USR2");
    let out = tool.0.take().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        stdout_of(&out),
        stderr_of(&out)
    );
    assert!(
        stdout_of(&out).contains(&format!(
            "skipped pid {worker}: it exited before it was reverted"
        )),
        "{}",
        stdout_of(&out)
    );
    let rest: BTreeSet<i32> = family.iter().copied().filter(|&p| p != worker).collect();
    server.until_values(&rest, 1);
    for &pid in &rest {
        assert_eq!(server.applied(pid), 0, "pid {pid}");
    }
    server.assert_state_survived();
}

/// The pids of `pid`'s family as hotpatch lists it (`pid` and its descendants running its
/// executable), read from `/proc` the same way: `pid` and every process whose parent is in it.
fn family_of_pid(pid: i32) -> BTreeSet<i32> {
    let mut family = BTreeSet::from([pid]);
    loop {
        let before = family.len();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if parent.is_some_and(|p| family.contains(&p)) {
                family.insert(child);
            }
        }
        if family.len() == before {
            return family;
        }
    }
}
