//! `--json` on every outcome: each command prints exactly one JSON document on standard output,
//! for a result, a refusal (`"refused": true`) or an error (`{"error": {"kind", "message"}}`),
//! with the exit status it has without `--json`; one vocabulary and one unit across commands;
//! patch ids shortened to a unique prefix.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::*;

/// The one JSON document on standard output (panics on none, several, or trailing text).
fn one_document(output: &Output) -> Value {
    let documents: Vec<Value> = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\nstderr: {}",
                stdout_of(output),
                stderr_of(output)
            )
        });
    assert_eq!(
        documents.len(),
        1,
        "{}\nstderr: {}",
        stdout_of(output),
        stderr_of(output)
    );
    documents.into_iter().next().unwrap()
}

/// The error document of a failed command, checked to exit with `code`.
fn error_document(output: &Output, code: i32) -> Value {
    assert_eq!(output.status.code(), Some(code), "{}", stderr_of(output));
    assert!(
        stderr_of(output).starts_with("error: ") || code == 2,
        "{}",
        stderr_of(output)
    );
    let document = one_document(output);
    assert!(
        document["error"]["message"].as_str().is_some(),
        "{document:#}"
    );
    document["error"].clone()
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn errors_are_one_json_document_with_the_same_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let repo = path(&dir.path().join("repo"));
    let gone = "4194305"; // above the kernel's largest pid (2^22): never a process

    let error = error_document(
        &hotpatch(&["diff", "v1..nope", "--repo", &repo, "--json"]),
        1,
    );
    assert_eq!(error["kind"], "unknown_revision");
    assert_eq!(error["revision"], "nope");

    let error = error_document(&hotpatch(&["diff", "v1", "--repo", &repo, "--json"]), 2);
    assert_eq!(error["kind"], "usage");

    let error = error_document(
        &hotpatch(&[
            "diff", "v1..v2", "--repo", &repo, "--apply", "--pid", gone, "--json",
        ]),
        1,
    );
    assert_eq!(error["kind"], "no_such_process", "{error:#}");
    assert_eq!(error["pid"], 4194305);

    let error = error_document(&hotpatch(&["list", "--pid", gone, "--json"]), 1);
    assert_eq!(error["kind"], "no_such_process", "{error:#}");

    let error = error_document(&hotpatch(&["revert", "--pid", gone, "--json"]), 1);
    assert!(
        error["message"].as_str().unwrap().contains(gone),
        "{error:#}"
    );

    let missing = path(&dir.path().join("missing.o"));
    let error = error_document(&hotpatch(&["apply", &missing, "--pid", gone, "--json"]), 1);
    assert!(
        error["message"].as_str().unwrap().contains("missing.o"),
        "{error:#}"
    );

    // Arguments clap rejects: still one document, kind `usage`, exit 2.
    let error = error_document(&hotpatch(&["list", "--json"]), 2);
    assert_eq!(error["kind"], "usage");
    let error = error_document(
        &hotpatch(&["revert", "--pid", gone, "--timeout", "-1", "--json"]),
        2,
    );
    assert_eq!(error["kind"], "usage");
}

#[test]
fn a_refusal_says_refused_from_plain_diff_as_from_apply_and_build() {
    let dir = tempfile::tempdir().unwrap();
    case_with_driver(dir.path(), "global_initializer_changed", "-O2 -g");
    let repo = path(&dir.path().join("repo"));
    let object = path(&dir.path().join("fix.o"));
    let runs: [&[&str]; 3] = [
        &["diff", "v1..v2", "--repo", &repo, "--json"],
        // Refused before any process is looked at: the pid is never used.
        &[
            "diff", "v1..v2", "--repo", &repo, "--apply", "--pid", "4194305", "--json",
        ],
        &["build", "v1..v2", "--repo", &repo, "-o", &object, "--json"],
    ];
    for args in runs {
        let output = hotpatch(args);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr_of(&output)
        );
        let document = one_document(&output);
        assert_eq!(document["refused"], true, "{args:?}: {document:#}");
        assert_eq!(document["refusals"][0]["item"], "limit", "{document:#}");
        assert_eq!(document["refusals"][0]["kind"], "global_initializer");
    }
    assert!(!Path::new(&object).exists());
    // Not refused: plain diff says so too.
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        &path(&dir.path().join("repo")),
        "--json",
    ]);
    assert_eq!(one_document(&output)["refused"], false);
}

#[test]
fn apply_and_revert_speak_as_diff_apply_does() {
    let dir = tempfile::tempdir().unwrap();
    let binary = simplest_case(dir.path());
    let repo = path(&dir.path().join("repo"));
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=1");
    let pid = target.pid().to_string();

    // The manifest names the file of global functions too.
    let object = path(&dir.path().join("fix.o"));
    let output = hotpatch(&["build", "v1..v2", "--repo", &repo, "-o", &object, "--json"]);
    let built = one_document(&output);
    assert_eq!(built["functions"][0]["name"], "value");
    assert_eq!(built["functions"][0]["file"], "lib.c", "{built:#}");

    let output = hotpatch(&["apply", &object, "--pid", &pid]);
    let text = stdout_of(&output);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(text.contains("µs (1 thread stopped"), "{text}");
    assert!(
        text.contains("  replaced  value (lib.c): changed"),
        "{text}"
    );
    assert!(!text.contains("Replace"), "{text}");
    target.wait_for("value=2");

    let output = hotpatch(&["revert", "--pid", &pid]);
    let text = stdout_of(&output);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(text.contains(" µs ("), "{text}");
    assert!(!text.contains(" us"), "{text}");
    target.wait_for("value=1");

    // apply --json and diff --apply --json report the same fields.
    let applied = one_document(&hotpatch(&["apply", &object, "--pid", &pid, "--json"]));
    assert_eq!(applied["functions"][0]["file"], "lib.c", "{applied:#}");
    let listed = one_document(&hotpatch(&["list", "--pid", &pid, "--json"]));
    let newest = listed["patches"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(newest["functions"][0]["file"], "lib.c", "{listed:#}");
    let reverted = one_document(&hotpatch(&["revert", "--pid", &pid, "--json"]));
    assert_eq!(reverted["patch_id"], applied["patch_id"]);
    let output = hotpatch(&[
        "diff", "v1..v2", "--repo", &repo, "--apply", "--pid", &pid, "--json",
    ]);
    let diffed = one_document(&output);
    for key in [
        "patch_id",
        "pause_us",
        "threads",
        "total_stopped_us",
        "stops",
        "sequence",
    ] {
        assert!(applied.get(key).is_some(), "apply lacks {key}: {applied:#}");
        assert!(
            diffed.get(key).is_some(),
            "diff --apply lacks {key}: {diffed:#}"
        );
    }
    let function = &diffed["functions"][0];
    assert_eq!(function["name"], "value");
    assert_eq!(function["file"], "lib.c", "{diffed:#}");
    assert_eq!(function["action"], applied["functions"][0]["action"]);
    assert_eq!(function["action"], "replace");
}

#[test]
fn revert_takes_a_unique_id_prefix_and_names_the_candidates_of_an_ambiguous_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = project_root().join("testdata");
    let main = std::fs::read_to_string(root.join("common/main.c")).unwrap();
    let v1 = std::fs::read_to_string(root.join("cases/simplest/v1/lib.c")).unwrap();
    let tree = |lib: String| {
        vec![
            ("lib.c".to_string(), lib),
            ("main.c".to_string(), main.clone()),
        ]
    };
    let (t1, t2, t3) = (
        tree(v1.clone()),
        tree(v1.replace("return 1;", "return 2;")),
        tree(v1.replace("return 1;", "return 3;")),
    );
    let repo = dir.path().join("repo");
    git_repo_with_tags(&repo, &[("v1", &t1), ("v2", &t2), ("v3", &t3)]);
    write_tree(&dir.path().join("build"), &t1);
    let binary = dir.path().join("target-v1");
    compile_program(
        &dir.path().join("build"),
        &["main.c".into(), "lib.c".into()],
        "-O2 -g",
        &binary,
    );
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=1");
    let pid = target.pid().to_string();
    let repo = path(&repo);
    let apply = |range: &str| {
        let output = hotpatch(&[
            "diff", range, "--repo", &repo, "--apply", "--pid", &pid, "--json",
        ]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        one_document(&output)["patch_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = apply("v1..v2");
    let second = apply("v2..v3");
    target.wait_for("value=3");

    let common: String = first
        .chars()
        .zip(second.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    let output = hotpatch(&["revert", "--pid", &pid, &common]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("is ambiguous") && stderr.contains(&first) && stderr.contains(&second),
        "{stderr}"
    );
    let error = error_document(&hotpatch(&["revert", "--pid", &pid, &common, "--json"]), 1);
    assert!(
        error["message"].as_str().unwrap().contains(&second),
        "{error:#}"
    );

    let short = &second[..common.len() + 1];
    let output = hotpatch(&["revert", "--pid", &pid, short, "--json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(one_document(&output)["patch_id"], second.as_str());
    target.wait_for("value=2");
}

#[test]
fn list_says_a_function_inlined_everywhere_was_patched_through_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let binary = case_with_driver(dir.path(), "inlined_static", "-O2 -g");
    let repo = path(&dir.path().join("repo"));
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=44");
    let pid = target.pid().to_string();
    let output = hotpatch(&["diff", "v1..v2", "--repo", &repo, "--apply", "--pid", &pid]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    target.wait_for("value=66");
    let output = hotpatch(&["list", "--pid", &pid]);
    let text = stdout_of(&output);
    let scale = text
        .lines()
        .find(|l| l.trim_start().starts_with("scale"))
        .unwrap_or_else(|| panic!("no line for scale in {text}"));
    assert!(scale.contains("inlined everywhere"), "{text}");
    assert!(!scale.contains("added"), "{text}");
}
