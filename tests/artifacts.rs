//! Patch objects as files and the checks that bind a patch to the binary it was made for:
//! `hotpatch build` / `hotpatch apply` (user_object), the build id (buildid_mismatch) and the
//! pre-image of every replaced function (preimage_mismatch), and `build` without `--pid`, where v1
//! compiled with the original flags says which statics the binary kept (build_without_pid). Every
//! started process is killed on every path (TargetProcess kills on drop).

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
        Setup::with_libs(LIB_V1, &lib_v2())
    }

    /// A repository whose tags v1 and v2 hold the driver with `v1` and `v2` as `lib.c`.
    fn with_libs(v1: &str, v2: &str) -> Setup {
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        git_repo_with_revisions(&repo, &files(v1), &files(v2));
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
    assert_failed_with(&output, "the running `value` does not match v1 (");
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

/// An unchanged `static` helper gcc inlines into its only caller at -O2: the v1 binary has no
/// `bonus` symbol, so a patch of `value` must bring its own copy of it.
const INLINED_HELPER_V1: &str = r#"static int calls;
static int bonus(int n)
{
    return n > 0;
}
int state(void)
{
    return calls;
}
int value(void)
{
    calls++;
    return 41 + bonus(calls);
}
"#;

fn inlined_helper_v2() -> String {
    INLINED_HELPER_V1.replace("41 +", "42 +")
}

fn folded_variable_v2() -> String {
    FOLDED_VARIABLE_V1.replace("base + 1", "base + 2")
}

/// A `static` variable that is never written: gcc folds it into its readers at -O2 and the v1
/// binary has no storage for it, so a patch of `value` must bring a copy with its initializer.
const FOLDED_VARIABLE_V1: &str = r#"static int calls;
static int base = 41;
int state(void)
{
    return calls;
}
int value(void)
{
    calls++;
    return base + 1;
}
"#;

/// Builds v1..v2 with `hotpatch build` and no `--pid` (v1 running, built `-O2 -g`), applies the
/// object with `hotpatch apply`, and checks the new value, the counter and that v1 lives.
/// Returns the `--json` reports of the build and of the apply.
fn build_without_pid_then_apply(v1: &str, v2: &str) -> (serde_json::Value, serde_json::Value) {
    let setup = Setup::with_libs(v1, v2);
    let binary = setup.binary("v1", v1, "-O2 -g");
    let mut target = setup.start(&binary);
    let object = setup.dir.join("fix.hp.o");
    let object = object.to_str().unwrap();
    let output = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        setup.repo(),
        "-o",
        object,
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let build: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert!(build["target_build_id"].is_null(), "{build:#}");
    let pid = target.pid().to_string();
    let output = hotpatch(&["apply", object, "--pid", &pid, "--json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let apply: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    target.wait_for("value=43");
    target.read_lines(2);
    assert!(target.seen.last().unwrap().contains("value=43"));
    assert_counts_up_by_one(&target.seen, "state");
    assert!(target.is_alive());
    (build, apply)
}

/// The names of the bindings of a `build --json` report.
fn bound_names(report: &serde_json::Value) -> Vec<String> {
    report["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["symbol"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn build_without_pid_copies_a_static_helper_the_binary_inlined_away() {
    let (build, apply) = build_without_pid_then_apply(INLINED_HELPER_V1, &inlined_helper_v2());
    let bound = bound_names(&build);
    assert!(!bound.iter().any(|b| b.ends_with(":bonus")), "{build:#}");
    assert!(bound.iter().any(|b| b.ends_with(":calls")), "{build:#}");
    assert_eq!(apply["functions"][0]["name"], "value", "{apply:#}");
}

#[test]
fn build_without_pid_copies_a_static_variable_the_binary_folded_away() {
    let (build, _) = build_without_pid_then_apply(FOLDED_VARIABLE_V1, &folded_variable_v2());
    let bound = bound_names(&build);
    assert!(!bound.iter().any(|b| b.ends_with(":base")), "{build:#}");
    assert!(bound.iter().any(|b| b.ends_with(":calls")), "{build:#}");
}

#[test]
fn build_without_pid_installs_what_diff_apply_would() {
    assert_build_without_pid_matches_diff(INLINED_HELPER_V1, &inlined_helper_v2());
    assert_build_without_pid_matches_diff(FOLDED_VARIABLE_V1, &folded_variable_v2());
}

/// With v1 (built `-O2 -g`) running: the object `build` writes without `--pid` has the
/// functions and bindings of the one it writes with `--pid`, and the applier would install from
/// it the functions, at the same addresses, that `diff --dry-run --pid` plans.
fn assert_build_without_pid_matches_diff(v1: &str, v2: &str) {
    let setup = Setup::with_libs(v1, v2);
    let binary = setup.binary("v1", v1, "-O2 -g");
    let target = setup.start(&binary);
    let pid = target.pid().to_string();
    let build = |extra: &[&str], name: &str| -> (String, serde_json::Value) {
        let object = setup.dir.join(name).to_str().unwrap().to_string();
        let mut args = vec![
            "build",
            "v1..v2",
            "--repo",
            setup.repo(),
            "-o",
            &object,
            "--json",
        ];
        args.extend(extra);
        let output = hotpatch(&args);
        assert!(output.status.success(), "{}", stderr_of(&output));
        (object, serde_json::from_str(&stdout_of(&output)).unwrap())
    };
    let (object, without_pid) = build(&[], "fix.hp.o");
    let (_, with_pid) = build(&["--pid", &pid], "fix-pid.hp.o");
    // The same functions, reasons, pre-images and bindings: only the build id differs.
    assert_eq!(without_pid["functions"], with_pid["functions"]);
    assert_eq!(without_pid["bindings"], with_pid["bindings"]);
    assert!(with_pid["target_build_id"].is_string(), "{with_pid:#}");

    // What the applier would install from the object is what `diff --apply` would install.
    let planned = |args: &[&str], path: &str| -> Vec<(String, String, u64)> {
        let output = hotpatch(args);
        assert!(output.status.success(), "{}", stderr_of(&output));
        let report: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        let functions = report.pointer(path).and_then(|f| f.as_array()).unwrap();
        functions
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["action"].as_str().unwrap().to_string(),
                    f["old_address"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let from_object = planned(
        &["apply", &object, "--pid", &pid, "--dry-run", "--json"],
        "/functions",
    );
    let from_diff = planned(
        &[
            "diff",
            "v1..v2",
            "--repo",
            setup.repo(),
            "--dry-run",
            "--pid",
            &pid,
            "--json",
        ],
        "/plan/functions",
    );
    assert_eq!(from_object, from_diff);
    assert!(!from_object.is_empty());
    drop(target);
}
