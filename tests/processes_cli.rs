//! The lifecycle through the command line on the `simplest` case: `diff --apply --exe` patches
//! every process of the executable (CASES.md §E multi_process), `diff --dry-run --pid` attaches,
//! checks and detaches (dry_run_live), `list` reads the patches back and `revert` undoes them
//! (list_from_process, revert), each from a fresh tool process. Every target is killed on drop.

mod support;

use support::*;

#[test]
fn exe_patches_every_process_then_list_and_revert_each() {
    let dir = tempfile::tempdir().unwrap();
    let binary = simplest_case(dir.path());
    let repo = dir.path().join("repo").display().to_string();
    let mut a = TargetProcess::start(&binary);
    let mut b = TargetProcess::start(&binary);
    a.wait_for("value=1");
    b.wait_for("value=1");

    // A live dry run attaches, checks and detaches.
    let pid_a = a.pid().to_string();
    let out = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        &repo,
        "--dry-run",
        "--pid",
        &pid_a,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(json["check"]["threads"], 1, "{json}");
    assert!(json["check"]["pause_us"].as_u64().unwrap() > 0);
    a.wait_for("value=1");

    let exe = binary.display().to_string();
    let out = hotpatch(&[
        "diff", "v1..v2", "--repo", &repo, "--apply", "--exe", &exe, "--json",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(json["processes"].as_array().unwrap().len(), 2, "{json}");
    a.wait_for("value=2");
    b.wait_for("value=2");

    for target in [&a, &b] {
        let pid = target.pid().to_string();
        let out = hotpatch(&["list", "--pid", &pid]);
        let text = stdout_of(&out);
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(text.contains("applied") && text.contains("value"), "{text}");
    }
    let out = hotpatch(&["revert", "--exe", &exe]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).matches("reverted patch").count(), 2);
    for target in [&mut a, &mut b] {
        target.wait_for("value=1");
        target.read_lines(2);
        assert_counts_up_by_one(&target.seen, "state");
        assert!(target.is_alive());
    }
}

#[test]
fn at_applies_at_the_safe_point() {
    let dir = tempfile::tempdir().unwrap();
    let binary = simplest_case(dir.path());
    let repo = dir.path().join("repo").display().to_string();
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=1");
    let pid = target.pid().to_string();
    let out = hotpatch(&[
        "diff", "v1..v2", "--repo", &repo, "--apply", "--pid", &pid, "--at", "nosuch",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("nosuch"), "{}", stderr_of(&out));
    let out = hotpatch(&[
        "diff", "v1..v2", "--repo", &repo, "--apply", "--pid", &pid, "--at", "state",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    target.wait_for("value=2");
    target.read_lines(2);
    assert_counts_up_by_one(&target.seen, "state");
    assert!(target.is_alive());
}
