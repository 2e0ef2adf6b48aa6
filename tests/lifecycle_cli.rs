//! `hotpatch list` and `hotpatch revert` from a fresh tool process (CASES.md §E list_from_process,
//! revert): a patch is applied to a running target by the library, then separate `hotpatch`
//! processes read it back from the target's memory alone and undo it. The target is killed on
//! every path.

#[path = "../applier/tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use hotpatch_applier::ApplyOptions;

fn hotpatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(args)
        .output()
        .expect("hotpatch runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn list_and_revert_work_from_the_process_alone() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["threads", "2"]);
    assert_eq!(next_tick_value(&running), 1);
    let pid = running.pid().to_string();

    let (code, stdout, _) = hotpatch(&["list", "--pid", &pid]);
    assert_eq!(code, 0);
    assert!(stdout.contains("has no patches"), "{stdout}");

    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );
    let options = ApplyOptions {
        timeout: Duration::from_secs(3),
        wait_return: false,
        threadwise: false,
    };
    apply_patch(running.pid(), patch, &options).unwrap();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 2
    });

    let (code, stdout, stderr) = hotpatch(&["list", "--pid", &pid, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["running_revision"], "v2");
    assert_eq!(json["patches"][0]["patch_id"], "p2");
    assert_eq!(json["patches"][0]["state"], "applied");
    assert_eq!(json["patches"][0]["old_revision"], "v1");
    assert_eq!(json["patches"][0]["functions"][0]["name"], "value");
    assert_eq!(json["patches"][0]["functions"][0]["active"], true);
    assert!(json["patches"][0]["applied_at"]
        .as_str()
        .unwrap()
        .ends_with("UTC"));

    let (code, stdout, _) = hotpatch(&["list", "--pid", &pid]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("#1 p2  applied") && stdout.contains("v1..v2") && stdout.contains("value"),
        "{stdout}"
    );

    let (code, stdout, stderr) = hotpatch(&["revert", "--pid", &pid]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("reverted patch p2") && stdout.contains("value restored"),
        "{stdout}"
    );
    running.drain();
    running.wait_for(30, |l| {
        l.starts_with("tick ") && tick_field(l, "value") == 1
    });

    let (code, _, stderr) = hotpatch(&["revert", "--pid", &pid]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no applied patch"),
        "{stderr}"
    );
    assert!(running.alive());
}

/// Writes the patch compiled from `tests/c/<source>` (replacing `function`) to `dir`.
fn patch_file(dir: &std::path::Path, source: &str, function: &str) -> String {
    let bytes = compile_patch(dir, source, &manifest("pw", function, "v1", "v2"));
    let path = dir.join(format!("{function}.hp.o"));
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn wait_return_and_revert_at_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let patch = patch_file(dir.path(), "life_patch_linger.c", "linger");
    let mut running = start(&exe, &["linger", "800"]);
    let pid = running.pid().to_string();

    // The worker is inside `linger`: the apply waits for that frame to return.
    running.wait_for(5, |l| l == "enter");
    let (code, stdout, stderr) = hotpatch(&[
        "apply",
        &patch,
        "--pid",
        &pid,
        "--wait-return",
        "--timeout",
        "10",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    running.wait_for(5, |l| l == "left");

    // The worker is inside the patch's `linger`: so does the revert, and the region goes.
    running.wait_for(5, |l| l == "enter");
    let (code, stdout, stderr) = hotpatch(&[
        "revert",
        "--pid",
        &pid,
        "--wait-return",
        "--timeout",
        "10",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["region"], "unmapped", "{stdout}");
    assert_eq!(json["stops"], 2, "{stdout}");

    // Applied again, reverted when the worker next calls `linger`.
    let (code, stdout, stderr) = hotpatch(&["apply", &patch, "--pid", &pid, "--wait-return"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = hotpatch(&["revert", "--pid", &pid, "--at", "linger"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("reverted patch pw") && stdout.contains("linger restored"),
        "{stdout}"
    );
    assert_eq!(code_differences(running.pid(), &exe), Vec::<u64>::new());
    assert_eq!(traced_threads(running.pid()), Vec::<String>::new());
    running.wait_for(5, |l| l == "left");
    assert!(running.alive());
}

#[test]
fn revert_says_why_a_region_a_suspended_coroutine_returns_into_stays_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), &c_dir().join("coro_target.c"), "coro");
    let patch = patch_file(dir.path(), "coro_patch_step.c", "step");
    let mut running = start(&exe, &[]);
    running.wait_for(5, |l| l == "ready");
    let pid = running.pid().to_string();
    let (code, stdout, stderr) = hotpatch(&["apply", &patch, "--pid", &pid]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    send(running.pid(), "USR1");
    running.wait_for(5, |l| l == "step v2 begins");
    running.wait_for(5, |l| l == "suspended");

    let (code, stdout, stderr) = hotpatch(&["revert", "--pid", &pid]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("region kept mapped: ") && stdout.contains(" point into it"),
        "{stdout}"
    );
    let (_, stdout, _) = hotpatch(&["list", "--pid", &pid, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["patches"][0]["state"], "reverted", "{stdout}");

    send(running.pid(), "USR1");
    running.wait_for(5, |l| l == "step v2 resumes");
    running.wait_for(5, |l| l == "coroutine done");
    running.wait_for(5, |l| l.starts_with("tick "));
    assert!(running.alive());
}
