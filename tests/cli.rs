//! The command line as an operator meets it: the diff listing, dry runs, and every error the
//! walking skeleton promises — each a one-line message naming the thing, a non-zero exit, and the
//! process untouched.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// A repository with the `simplest` case at v1 and v2, and v1 built as a binary.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(v2_lib: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let case = project_root().join("testdata/cases/simplest");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let main = read(&project_root().join("testdata/common/main.c"));
        let v1 = vec![
            ("lib.c".to_string(), read(&case.join("v1/lib.c"))),
            ("main.c".into(), main.clone()),
        ];
        let v2_lib = v2_lib
            .map(str::to_string)
            .unwrap_or_else(|| read(&case.join("v2/lib.c")));
        let v2 = vec![("lib.c".to_string(), v2_lib), ("main.c".into(), main)];
        git_repo_with_revisions(&dir.path().join("repo"), &v1, &v2);
        write_tree(&dir.path().join("build"), &v1);
        Fixture { dir }
    }

    /// Runs `hotpatch diff v1..v2 --apply --pid PID` on this repository.
    fn apply(&self, pid: &str) -> std::process::Output {
        hotpatch(&[
            "diff",
            "v1..v2",
            "--repo",
            &self.repo(),
            "--apply",
            "--pid",
            pid,
        ])
    }

    fn repo(&self) -> String {
        self.dir.path().join("repo").to_string_lossy().into_owned()
    }

    /// Builds v1 with `main` as its driver and starts it.
    fn start(&self, main: Option<&Path>) -> TargetProcess {
        let build = self.dir.path().join("build");
        if let Some(main) = main {
            std::fs::copy(main, build.join("main.c")).unwrap();
        }
        let binary = self.dir.path().join("target-v1");
        compile_program(
            &build,
            &["main.c".into(), "lib.c".into()],
            "-O2 -g",
            &binary,
        );
        let mut target = TargetProcess::start(&binary);
        target.wait_for("value=1");
        target
    }
}

fn assert_error(output: &std::process::Output, needle: &str) {
    let stderr = stderr_of(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}\nstderr: {stderr}",
        stdout_of(output)
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

/// The target keeps printing its v1 value: nothing was written to it.
fn assert_untouched(target: &mut TargetProcess) {
    target.read_lines(3);
    assert!(
        target.seen.last().unwrap().contains("value=1"),
        "{:?}",
        target.seen
    );
    assert_counts_up_by_one(&target.seen, "state");
    assert!(target.is_alive());
}

#[test]
fn diff_lists_changed_functions_with_their_diff() {
    let fixture = Fixture::new(None);
    let output = hotpatch(&["diff", "v1..v2", "--repo", &fixture.repo()]);
    let text = stdout_of(&output);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(text.contains("changed value lib.c:"), "{text}");
    assert!(
        text.contains("-    return 1;") && text.contains("+    return 2;"),
        "{text}"
    );

    let output = hotpatch(&["diff", "v1..v2", "--repo", &fixture.repo(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["functions"][0]["name"], "value");
    assert_eq!(json["functions"][0]["file"], "lib.c");
    assert_eq!(json["functions"][0]["change"], "changed");
}

#[test]
fn revisions_are_read_from_git_objects_with_any_revspec() {
    let fixture = Fixture::new(None);
    // The work tree is at v2; HEAD~1..main is the same range as v1..v2.
    let output = hotpatch(&["diff", "HEAD~1..main", "--repo", &fixture.repo(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["functions"][0]["name"],
        "value",
        "{}",
        stderr_of(&output)
    );
    std::fs::write(
        Path::new(&fixture.repo()).join("lib.c"),
        "garbage that is not C",
    )
    .unwrap();
    let output = hotpatch(&["diff", "v1..v2", "--repo", &fixture.repo(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["functions"].as_array().unwrap().len(),
        1,
        "the work tree was read: {json}"
    );
}

#[test]
fn dry_run_without_a_process_compiles_and_shows_the_source() {
    let fixture = Fixture::new(None);
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        &fixture.repo(),
        "--dry-run",
        "--show-source",
    ]);
    let text = stdout_of(&output);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(text.contains("patch unit for lib.c"), "{text}");
    assert!(text.contains("compiled with"), "{text}");
    assert!(text.contains("#line 1 \"lib.c\""), "{text}");
    assert!(
        text.contains("nothing was written to any process"),
        "{text}"
    );
}

#[test]
fn dry_run_against_a_process_resolves_and_writes_nothing() {
    let fixture = Fixture::new(None);
    let mut target = fixture.start(None);
    let pid = target.pid().to_string();
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        &fixture.repo(),
        "--dry-run",
        "--pid",
        &pid,
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["plan"]["functions"][0]["name"], "value", "{json:#}");
    assert!(
        json["plan"]["functions"][0]["old_address"]
            .as_u64()
            .is_some(),
        "{json:#}"
    );
    assert_untouched(&mut target);
}

#[test]
fn not_a_git_repository() {
    let dir = tempfile::tempdir().unwrap();
    let output = hotpatch(&["diff", "v1..v2", "--repo", dir.path().to_str().unwrap()]);
    assert_error(&output, "not a git repository");
}

#[test]
fn unknown_revision_and_bad_range() {
    let fixture = Fixture::new(None);
    assert_error(
        &hotpatch(&["diff", "v1..nope", "--repo", &fixture.repo()]),
        "unknown revision `nope`",
    );
    // A malformed range is bad usage: exit 2, as clap's own usage errors.
    let output = hotpatch(&["diff", "v1", "--repo", &fixture.repo()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("error: bad revision range `v1`"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn apply_needs_a_pid() {
    let fixture = Fixture::new(None);
    let output = hotpatch(&["diff", "v1..v2", "--repo", &fixture.repo(), "--apply"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("--pid"));
}

#[test]
fn no_such_pid() {
    let fixture = Fixture::new(None);
    // A pid above the kernel's largest possible pid (2^22) never exists.
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        &fixture.repo(),
        "--apply",
        "--pid",
        "4194305",
    ]);
    assert_error(&output, "4194305");
    assert!(
        stderr_of(&output).contains("no process"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn a_process_we_may_not_trace_is_refused_and_untouched() {
    let fixture = Fixture::new(None);
    let driver = project_root().join("tests/c/traced_main.c");
    let mut target = fixture.start(Some(&driver));
    let pid = target.pid().to_string();
    let output = fixture.apply(&pid);
    assert_error(&output, "not permitted to trace");
    assert_untouched(&mut target);
}

#[test]
fn a_patch_that_does_not_compile_shows_the_diagnostics_and_touches_nothing() {
    let broken = "static int calls;\n\nint state(void)\n{\n    return calls;\n}\n\nint value(void)\n{\n    calls++;\n    return 2 +;\n}\n";
    let fixture = Fixture::new(Some(broken));
    let mut target = fixture.start(None);
    let pid = target.pid().to_string();
    let output = fixture.apply(&pid);
    assert_error(&output, "the patch for lib.c does not compile");
    // The compiler's own diagnostic, pointing at the original file and line.
    assert!(
        stderr_of(&output).contains("lib.c:11"),
        "{}",
        stderr_of(&output)
    );
    assert_untouched(&mut target);
}

#[test]
fn a_symbol_the_running_binary_lacks_is_refused() {
    let fixture = Fixture::new(None);
    // A process of another program: it has no function `value`.
    let other = PathBuf::from("/bin/sleep");
    let sleeper = TargetProcess::start_with(&other, &["30"]);
    let pid = sleeper.pid().to_string();
    let output = fixture.apply(&pid);
    assert_error(&output, "`value`");
}

#[test]
fn a_long_wait_shows_a_spinner_on_a_terminal() {
    // value() keeps its caller inside it for 700 ms per call, so the commit has to wait for the
    // short moments between calls; on a terminal the wait is announced with a spinner.
    let slow = "#include <unistd.h>\n\nstatic int calls;\n\nint state(void)\n{\n    return calls;\n}\n\nint value(void)\n{\n    calls++;\n    usleep(700000);\n    return 1;\n}\n";
    let fixed = slow.replace("return 1;", "return 2;");
    let dir = tempfile::tempdir().unwrap();
    let main = std::fs::read_to_string(project_root().join("testdata/common/main.c")).unwrap();
    let files = |lib: &str| {
        vec![
            ("lib.c".to_string(), lib.to_string()),
            ("main.c".to_string(), main.clone()),
        ]
    };
    git_repo_with_revisions(&dir.path().join("repo"), &files(slow), &files(&fixed));
    write_tree(&dir.path().join("build"), &files(slow));
    let binary = dir.path().join("slow");
    compile_program(
        &dir.path().join("build"),
        &["main.c".into(), "lib.c".into()],
        "-O2 -g",
        &binary,
    );
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=1");
    let command = format!(
        "{} diff v1..v2 --repo {} --apply --pid {} --timeout 10",
        env!("CARGO_BIN_EXE_hotpatch"),
        dir.path().join("repo").display(),
        target.pid()
    );
    // `script` gives hotpatch a pseudo-terminal, as an operator's shell would.
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOTPATCH_CACHE", "off") // no test shares a cache with another
        .output()
        .expect("running script");
    let text = stdout_of(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("to leave the code being replaced"),
        "no spinner in: {text}"
    );
    assert!(text.contains("patched"), "{text}");
    target.wait_for("value=2");
}

#[test]
fn the_demo_live_patches_its_service() {
    let output = hotpatch(&["demo", "--color", "never"]);
    let text = stdout_of(&output);
    assert!(output.status.success(), "{text}\n{}", stderr_of(&output));
    let after = text
        .split("5. The same process")
        .nth(1)
        .expect("the demo reached step 5");
    // Only requests that began after the commit are shown: every one of them is v2.
    let requests: Vec<&str> = after
        .lines()
        .filter(|l| l.trim_start().starts_with("request #"))
        .collect();
    assert_eq!(requests.len(), 4, "{text}");
    assert!(
        requests.iter().all(|l| l.contains("(bulk discount)"))
            && requests
                .iter()
                .any(|l| l.contains("3 widgets cost 24 credits")),
        "{text}"
    );
    assert!(text.contains("Its state carried on"), "{text}");
}
