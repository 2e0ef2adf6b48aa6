//! Messages an operator acts on: which directory is not a repository, bad usage exits 2, and why
//! a function is too short for its jump and what to do about it.

mod support;

use std::process::Command;

use support::*;

#[test]
fn not_a_git_repository_names_the_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    // `--repo` defaults to `.`: the message must say which directory that was.
    let output = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(["diff", "v1..v2"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let absolute = dir.path().canonicalize().unwrap();
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!("not a git repository: {}", dir.path().display()))
            || stderr.contains(&format!("not a git repository: {}", absolute.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("repository: .\n"), "{stderr}");
}

#[test]
fn a_malformed_range_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    for range in ["v1", "v1...v2", "..v2"] {
        let output = hotpatch(&["diff", range, "--repo", repo]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{range}: {}",
            stderr_of(&output)
        );
        let output = hotpatch(&["build", range, "--repo", repo, "-o", "/dev/null"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{range}: {}",
            stderr_of(&output)
        );
        assert!(stderr_of(&output).contains("expected OLD..NEW"));
    }
}

#[test]
fn a_function_too_short_for_its_jump_says_why_and_what_to_do() {
    // `value` is 3 bytes (xor eax,eax; ret); with -falign-functions=1 `state` follows at once,
    // so there is no padding for the 5-byte jump to use.
    let dir = tempfile::tempdir().unwrap();
    let flags = "-O2 -g -falign-functions=1";
    let binary = case_with_driver(dir.path(), "tiny_function", flags);
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=0");
    let pid = target.pid().to_string();
    let repo = dir.path().join("repo");
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "--apply",
        "--pid",
        &pid,
        "--cflags",
        flags,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout_of(&output));
    let stderr = stderr_of(&output);
    for needle in [
        "`value` is 3 bytes, shorter than the 5-byte jump",
        "no padding before the next symbol: 3 bytes until the next symbol",
        "the jump needs 5",
        "rebuild the program with `-falign-functions=16`",
        "change the callers of `value`",
    ] {
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    }
    target.read_lines(2);
    assert!(
        target.seen.last().unwrap().contains("value=0"),
        "{:?}",
        target.seen
    );
}
