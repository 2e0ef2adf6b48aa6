//! Refusals on the command line: compiler-style diagnostics (snapshot files under
//! `tests/snapshots/`), exit status 3, `--force`, and revisions given as directories or files.
//! Set `UPDATE_SNAPSHOTS=1` to rewrite the snapshot files after a deliberate change.

mod support;

use std::path::PathBuf;

use support::*;

fn side(case: &str, version: &str) -> String {
    let path: PathBuf = project_root()
        .join("testdata/cases")
        .join(case)
        .join(version);
    path.to_string_lossy().into_owned()
}

fn diff_dirs(case: &str, extra: &[&str]) -> std::process::Output {
    let (old, new) = (side(case, "v1"), side(case, "v2"));
    let mut args = vec!["diff", "--old", &old, "--new", &new, "--color", "never"];
    args.extend_from_slice(extra);
    hotpatch(&args)
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout_of(output)).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}):\n{}\n{}",
            stdout_of(output),
            stderr_of(output)
        )
    })
}

/// The human output of a refusal, compared with `tests/snapshots/<case>.txt`.
fn snapshot(case: &str) {
    let output = diff_dirs(case, &[]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    let file = project_root()
        .join("tests/snapshots")
        .join(format!("{case}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&file, &stderr).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(stderr, expected, "snapshot {} differs", file.display());
}

#[test]
fn snapshot_struct_layout_changed() {
    snapshot("struct_layout_changed");
}

#[test]
fn snapshot_signature_changed() {
    snapshot("signature_changed");
}

#[test]
fn snapshot_static_local_changed() {
    snapshot("static_local_changed");
}

#[test]
fn refusal_stops_a_dry_run_before_compiling() {
    let output = diff_dirs("global_initializer_changed", &["--dry-run"]);
    assert_eq!(output.status.code(), Some(3));
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert!(!stdout.contains("compiled with"), "{stdout}");
    assert!(
        stderr.contains("refused: limit (global initializer changed)"),
        "{stderr}"
    );
    assert!(stderr.contains("--> lib.c:1"), "{stderr}");
    assert!(stderr.contains("no process was touched"), "{stderr}");
}

#[test]
fn force_accepts_one_named_refusal_loudly() {
    let output = diff_dirs("struct_layout_changed", &["--force", "struct conn"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("warning: FORCED: struct conn (lib.c:1) accepted by --force"),
        "{stderr}"
    );
    let output = diff_dirs(
        "struct_layout_changed",
        &["--force", "struct conn", "--force", "nothing", "--json"],
    );
    assert!(output.status.success());
    let report = json_of(&output);
    assert_eq!(report["refusals"], serde_json::json!([]));
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("FORCED: struct conn"), "{warnings}");
    assert!(
        warnings.contains("--force `nothing` matches no refusal"),
        "{warnings}"
    );
    // Forcing another item leaves this refusal in place.
    let output = diff_dirs("struct_layout_changed", &["--force", "limit", "--json"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(json_of(&output)["refusals"][0]["item"], "struct conn");
}

#[test]
fn json_carries_functions_refusals_and_warnings() {
    let output = diff_dirs("signature_changed", &["--json"]);
    assert_eq!(output.status.code(), Some(3));
    let report = json_of(&output);
    let refusal = &report["refusals"][0];
    assert_eq!(refusal["kind"], "signature");
    assert_eq!(refusal["file"], "lib.c");
    assert_eq!(refusal["line"], 1);
    assert!(refusal["reason"]
        .as_str()
        .unwrap_or("")
        .contains("not static"));
    let functions = report["functions"].as_array().expect("functions");
    assert!(functions
        .iter()
        .any(|f| f["name"] == "add" && f["reasons"][0] == "changed"));
    // Non-function items are classified too.
    let output = diff_dirs("new_global", &["--json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report = json_of(&output);
    assert_eq!(report["items"][0]["name"], "extra");
    assert_eq!(report["items"][0]["change"], "added");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("new global `extra` starts from its initializer"),
        "{warnings}"
    );
}

#[test]
fn header_changes_propagate_from_directories() {
    let output = diff_dirs("header_macro", &["--json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report = json_of(&output);
    assert_eq!(report["functions"][0]["name"], "value");
    assert_eq!(
        report["functions"][0]["reasons"][0],
        "uses macro `FACTOR` (changed in lib.h)"
    );
}

#[test]
fn two_single_files_compare_like_revisions() {
    let old = format!("{}/lib.c", side("global_initializer_changed", "v1"));
    let new = format!("{}/lib.c", side("global_initializer_changed", "v2"));
    let output = hotpatch(&["diff", "--old", &old, "--new", &new, "--json"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let report = json_of(&output);
    assert_eq!(report["refusals"][0]["item"], "limit");
    assert_eq!(report["refusals"][0]["file"], "lib.c");
    let dir = side("header_macro", "v1");
    // Bad usage: exit 2.
    let output = hotpatch(&["diff", "--old", &old, "--new", &dir]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("must both be directories or both be files"));
    let output = hotpatch(&["diff", "--old", &old]);
    assert_eq!(output.status.code(), Some(2));
}
