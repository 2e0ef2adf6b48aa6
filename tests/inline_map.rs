//! The binary's DWARF inline map as `--dry-run --pid` shows it, and its cache: a link-time
//! optimised program whose changed `rate` (rate.c) LTO inlined into `value` (lib.c).

mod support;

use std::path::Path;

use support::*;

/// The files of one revision of the `lto_cross_file` case, with the shared driver.
fn revision(version: &str) -> Vec<(String, String)> {
    let case = project_root()
        .join("testdata/cases/lto_cross_file")
        .join(version);
    let mut files: Vec<(String, String)> = ["lib.c", "rate.c"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(case.join(f)).unwrap();
            (f.to_string(), text)
        })
        .collect();
    let driver = project_root().join("testdata/common/main.c");
    files.push(("main.c".into(), std::fs::read_to_string(driver).unwrap()));
    files
}

/// Builds v1 with `-O2 -g -flto` in `work` and starts it.
fn start_v1(work: &Path) -> (std::path::PathBuf, TargetProcess) {
    let repo = work.join("repo");
    git_repo_with_revisions(&repo, &revision("v1"), &revision("v2"));
    let build = work.join("build-v1");
    write_tree(&build, &revision("v1"));
    let binary = work.join("target-v1");
    let sources = ["main.c", "lib.c", "rate.c"].map(String::from);
    compile_program(&build, &sources, "-O2 -g -flto", &binary);
    let mut target = TargetProcess::start(&binary);
    target.wait_for("value=42");
    (repo, target)
}

#[test]
fn dry_run_shows_the_inline_map_entries_it_used() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mut target) = start_v1(work.path());
    let pid = target.pid().to_string();
    let args = [
        "diff",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "--dry-run",
        "--pid",
        &pid,
        "--cflags",
        "-O2 -g -flto",
    ];
    let output = hotpatch(&args);
    let text = stdout_of(&output);
    assert!(output.status.success(), "{text}\n{}", stderr_of(&output));
    assert!(
        text.contains("2 functions from the binary's DWARF inline map, the patch set (link-time optimised build):"),
        "{text}"
    );
    assert!(
        text.contains("value (lib.c): holds an inlined copy of `rate` (rate.c) per DWARF"),
        "{text}"
    );
    let entry = text
        .lines()
        .find(|l| l.contains("inline map: `rate`"))
        .unwrap_or_else(|| panic!("no inline map entry of rate:\n{text}"));
    assert!(
        entry.contains("out of line nowhere; inlined into `value` (lib.c) at 0x"),
        "{entry}"
    );

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let output = hotpatch(&json_args);
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    let map = &report["inline_map"];
    assert_eq!(map["from"], "dwarf", "{report:#}");
    assert_eq!(map["decides"], true, "{report:#}");
    assert_eq!(map["count"], 2, "{report:#}");
    let value = map["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "value")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(value["copies"][0]["symbol"], "value", "{report:#}");
    // The dry run wrote nothing: the process still runs v1.
    target.read_lines(2);
    assert!(target.seen.last().unwrap().contains("value=42"));
    assert!(target.is_alive());
}

#[test]
fn the_inline_map_is_read_once_per_build_id() {
    let work = tempfile::tempdir().unwrap();
    let (_repo, mut first) = start_v1(work.path());
    let mut second = TargetProcess::start(&work.path().join("target-v1"));
    second.wait_for("value=42");
    let a = hotpatch_applier::Target::inspect(first.pid()).unwrap();
    let b = hotpatch_applier::Target::inspect(second.pid()).unwrap();
    assert!(a.build_id().is_some());
    let (map_a, map_b) = (a.inline_map().unwrap(), b.inline_map().unwrap());
    assert!(std::sync::Arc::ptr_eq(&map_a, &map_b));
    assert!(map_a.lookup("rate", "rate.c").next().is_some());
    assert!(first.is_alive() && second.is_alive());
}
