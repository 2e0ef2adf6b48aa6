//! Patch objects as files and the checks that bind a patch to the binary it was made for:
//! `hotpatch build` / `hotpatch apply` (user_object), the build id (buildid_mismatch) and the
//! pre-image of every replaced function (preimage_mismatch). Every started process is killed on
//! every path (TargetProcess kills on drop).

mod support;

use std::path::{Path, PathBuf};

use support::*;

const DRIVER: &str = r#"#include <stdio.h>
#include <unistd.h>
int state(void);
int value(void);
int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned tick = 0;; tick++) {
        int v = value();
        printf("tick=%u state=%d value=%d\n", tick, state(), v);
        usleep(20000);
    }
}
"#;

const LIB_V1: &str = r#"static int calls;
int state(void)
{
    return calls;
}
int value(void)
{
    calls++;
    return calls % 3 == 7 ? -1 : 42;
}
"#;

fn lib_v2() -> String {
    LIB_V1.replace("? -1 : 42", "? -1 : 43")
}

fn files(lib: &str) -> Vec<(String, String)> {
    vec![
        ("main.c".to_string(), DRIVER.to_string()),
        ("lib.c".to_string(), lib.to_string()),
    ]
}

/// A repository with v1 and v2 and a v1 binary built with `cflags`, from `lib` (v1 by default).
struct Setup {
    _work: tempfile::TempDir,
    repo: PathBuf,
    dir: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        git_repo_with_revisions(&repo, &files(LIB_V1), &files(&lib_v2()));
        let dir = work.path().to_path_buf();
        Setup {
            _work: work,
            repo,
            dir,
        }
    }

    fn binary(&self, name: &str, lib: &str, cflags: &str) -> PathBuf {
        let build = self.dir.join(format!("build-{name}"));
        write_tree(&build, &files(lib));
        let binary = self.dir.join(name);
        compile_program(
            &build,
            &["main.c".to_string(), "lib.c".to_string()],
            cflags,
            &binary,
        );
        binary
    }

    fn start(&self, binary: &Path) -> TargetProcess {
        let mut target = TargetProcess::start(binary);
        target.wait_for("value=42");
        target
    }

    fn repo(&self) -> &str {
        self.repo.to_str().unwrap()
    }
}

fn assert_failed_with(output: &std::process::Output, needle: &str) {
    let (stdout, stderr) = (stdout_of(output), stderr_of(output));
    assert!(!output.status.success(), "succeeded:\n{stdout}\n{stderr}");
    assert!(stderr.contains(needle), "no `{needle}` in:\n{stderr}");
}

#[test]
fn built_patch_object_applies_with_apply() {
    let setup = Setup::new();
    let binary = setup.binary("v1", LIB_V1, "-O2 -g");
    let mut target = setup.start(&binary);
    let pid = target.pid().to_string();
    let object = setup.dir.join("fix.hp.o");
    let output = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        setup.repo(),
        "--pid",
        &pid,
        "-o",
        object.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert!(report["target_build_id"].as_str().is_some(), "{report:#}");
    assert_eq!(report["functions"][0]["preimage"], true, "{report:#}");

    let dry = hotpatch(&[
        "apply",
        object.to_str().unwrap(),
        "--pid",
        &pid,
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    target.read_lines(2);
    assert!(target.seen.last().unwrap().contains("value=42"));

    let output = hotpatch(&["apply", object.to_str().unwrap(), "--pid", &pid, "--json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    target.wait_for("value=43");
    target.read_lines(2);
    assert_counts_up_by_one(&target.seen, "state");
    assert!(target.is_alive());
}

#[test]
fn user_object_without_manifest_replaces_the_function_of_its_name() {
    let setup = Setup::new();
    let binary = setup.binary("v1", LIB_V1, "-O2 -g");
    let mut target = setup.start(&binary);
    let source = setup.dir.join("vendor.c");
    std::fs::write(&source, "int value(void) { return 77; }\n").unwrap();
    let object = setup.dir.join("vendor.o");
    run_ok(
        std::process::Command::new("gcc")
            .args(["-O2", "-fPIC", "-c"])
            .arg(&source)
            .arg("-o")
            .arg(&object),
    );
    let pid = target.pid().to_string();
    let output = hotpatch(&["apply", object.to_str().unwrap(), "--pid", &pid]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stdout_of(&output).contains("value"),
        "{}",
        stdout_of(&output)
    );
    target.wait_for("value=77");
    assert!(target.is_alive());
}

#[test]
fn user_object_with_an_ambiguous_name_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let lib = "static int helper(void) { return 1; }\nint state(void) { return helper(); }\n";
    let other = "static int helper(void) { return 2; }\nint value(void) { return 40 + helper() + (state() ? 0 : 1); }\n";
    let tree = vec![
        ("main.c".to_string(), DRIVER.to_string()),
        ("lib.c".to_string(), lib.to_string()),
        ("other.c".to_string(), other.replace("40 +", "40 + 0 *")),
    ];
    write_tree(work.path(), &tree);
    let binary = work.path().join("target");
    compile_program(
        work.path(),
        &["main.c".into(), "lib.c".into(), "other.c".into()],
        "-O0 -g",
        &binary,
    );
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=");
    let source = work.path().join("vendor.c");
    std::fs::write(&source, "int helper(void) { return 5; }\n").unwrap();
    let object = work.path().join("vendor.o");
    run_ok(
        std::process::Command::new("gcc")
            .args(["-O2", "-fPIC", "-c"])
            .arg(&source)
            .arg("-o")
            .arg(&object),
    );
    let pid = target.pid().to_string();
    let output = hotpatch(&["apply", object.to_str().unwrap(), "--pid", &pid]);
    assert_failed_with(&output, "matches several functions");
    assert_failed_with(&output, "static in lib.c");
    assert_failed_with(&output, "static in other.c");
    assert!(target.is_alive());
}

#[test]
fn buildid_mismatch_is_refused_before_anything_is_written() {
    let setup = Setup::new();
    let built_for = setup.binary("v1", LIB_V1, "-O2 -g");
    let other = setup.binary("v1-other", LIB_V1, "-O2 -g -fno-omit-frame-pointer");
    let first = setup.start(&built_for);
    let mut second = setup.start(&other);
    let object = setup.dir.join("fix.hp.o");
    let output = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        setup.repo(),
        "--pid",
        &first.pid().to_string(),
        "-o",
        object.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let output = hotpatch(&[
        "apply",
        object.to_str().unwrap(),
        "--pid",
        &second.pid().to_string(),
    ]);
    assert_failed_with(&output, "build id");
    assert_failed_with(&output, "refusing to patch another binary");
    second.read_lines(3);
    assert!(second.seen.last().unwrap().contains("value=42"));
    assert!(second.is_alive());
    drop(first);
}

/// Runs v1 built from `lib` with `cflags`, applies v1..v2 compiled with `-O2 -g`, and expects the
/// pre-image check to refuse with the process untouched.
fn assert_preimage_refused(name: &str, lib: &str, cflags: &str) {
    let setup = Setup::new();
    let binary = setup.binary(name, lib, cflags);
    let mut target = setup.start(&binary);
    let pid = target.pid().to_string();
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        setup.repo(),
        "--apply",
        "--pid",
        &pid,
        "--cflags",
        "-O2 -g",
    ]);
    assert_failed_with(
        &output,
        "the running `value` does not match v1 built with these flags",
    );
    target.read_lines(3);
    assert!(target.seen.last().unwrap().contains("value=42"));
    assert!(target.is_alive());
}

#[test]
fn preimage_mismatch_other_flags_is_refused() {
    assert_preimage_refused("v1-O0", LIB_V1, "-O0 -g");
}

#[test]
fn preimage_mismatch_other_source_is_refused() {
    assert_preimage_refused("v0", &LIB_V1.replace("calls++;", "calls += 2;"), "-O2 -g");
}

#[test]
fn build_refuses_what_diff_refuses_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let with_struct =
        |fields: &str| format!("{LIB_V1}\nstruct pair\n{{\n{fields}}};\n\nstruct pair shared;\n");
    git_repo_with_revisions(
        &repo,
        &files(&with_struct("    int a;\n    long b;\n")),
        &files(&with_struct("    long b;\n    int a;\n")),
    );
    let output_path = work.path().join("fix.hp.o");
    let output = output_path.to_str().unwrap();
    let result = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "-o",
        output,
    ]);
    assert_eq!(result.status.code(), Some(3), "{}", stderr_of(&result));
    assert!(
        stderr_of(&result).contains("struct pair"),
        "{}",
        stderr_of(&result)
    );
    assert!(!output_path.exists(), "a refused build wrote {output}");
    // Forced by name, the build goes on (and finds nothing to patch: no function changed).
    let result = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "-o",
        output,
        "--force",
        "struct pair",
    ]);
    assert!(
        stderr_of(&result).contains("FORCED: struct pair"),
        "{}",
        stderr_of(&result)
    );
}
