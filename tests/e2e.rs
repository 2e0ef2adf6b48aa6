//! The end-to-end harness of DESIGN §6: for each case under `testdata/cases/`, commit v1 and v2 to
//! a fresh git repository, build v1, start it, run `hotpatch diff v1..v2 --apply --pid N --json`
//! against it, and check the new behaviour, that state survived and that the process lives.

mod support;

use std::path::Path;

use serde::Deserialize;
use support::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    #[serde(default = "default_sources")]
    sources: Vec<String>,
    #[serde(default = "default_cflags")]
    cflags: String,
    before: String,
    after: Option<String>,
    #[serde(default)]
    counters: Vec<String>,
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    nothing_to_patch: bool,
    /// Build matrix: run the case once per entry, each the `cflags` of the original build.
    #[serde(default)]
    matrix: Vec<String>,
    /// Flags given to hotpatch with `--cflags`, when not `cflags` (the compilation database
    /// must then supply the rest).
    #[serde(default)]
    hotpatch_cflags: Option<String>,
    /// A shell command building the v1 executable `$OUT` with `$CFLAGS`, instead of compiling
    /// `sources` into it.
    #[serde(default)]
    build: Option<String>,
    /// Expected exit status when hotpatch must not patch (3 refused, 1 error); 0 otherwise.
    #[serde(default)]
    exit_code: i32,
    /// The item a refusal case must name in the JSON `refusals`.
    #[serde(default)]
    refused: Option<String>,
    /// Texts hotpatch's output (stdout and stderr) must contain.
    #[serde(default)]
    output_contains: Vec<String>,
    /// Refusals the case accepts with `--force ITEM`.
    #[serde(default)]
    force: Vec<String>,
    /// The number of functions the binary's inline map (or, without debug information, the
    /// source call graph) puts in the patch: the JSON `inline_map.count`, which must also be
    /// the number of functions the apply reports.
    #[serde(default)]
    inline_map_count: Option<usize>,
    /// A build the object-level confirmation decides (no LTO): the binary's DWARF inline map,
    /// reported beside it, must name exactly the functions the confirmation patched.
    #[serde(default)]
    inline_map_agrees: bool,
}

fn default_sources() -> Vec<String> {
    vec!["main.c".into(), "lib.c".into()]
}

fn default_cflags() -> String {
    "-O2 -g".into()
}

/// The files of one revision of a case, with the shared driver when the case has no main.c.
fn revision_files(case_dir: &Path, version: &str) -> Vec<(String, String)> {
    let dir = case_dir.join(version);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    if !files.iter().any(|(name, _)| name == "main.c") {
        let driver = project_root().join("testdata/common/main.c");
        files.push(("main.c".into(), std::fs::read_to_string(driver).unwrap()));
    }
    files.sort();
    files
}

fn run_case(name: &str) {
    let case_dir = project_root().join("testdata/cases").join(name);
    let text = std::fs::read_to_string(case_dir.join("case.toml")).unwrap();
    let case: Case = toml::from_str(&text).unwrap();
    if case.matrix.is_empty() {
        return run_case_with(name, case);
    }
    // The build matrix: the same case once per set of flags of the original build.
    for cflags in &case.matrix {
        let mut one: Case = toml::from_str(&text).unwrap();
        one.cflags = cflags.clone();
        one.description = format!("{} [cflags {cflags}]", one.description);
        run_case_with(name, one);
    }
}

fn run_case_with(name: &str, case: Case) {
    let case_dir = project_root().join("testdata/cases").join(name);
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let (v1, v2) = (
        revision_files(&case_dir, "v1"),
        revision_files(&case_dir, "v2"),
    );
    git_repo_with_revisions(&repo, &v1, &v2);
    let build = work.path().join("build-v1");
    write_tree(&build, &v1);
    let binary = work.path().join("target-v1");
    match &case.build {
        // A case-specific build (shared libraries...): a shell command run in the build
        // directory, with $CFLAGS and $OUT (the executable to write) set.
        Some(command) => {
            run_ok(
                std::process::Command::new("sh")
                    .args(["-c", command])
                    .current_dir(&build)
                    .env("CFLAGS", &case.cflags)
                    .env("OUT", &binary),
            );
        }
        None => compile_program(&build, &case.sources, &case.cflags, &binary),
    }

    let mut target = TargetProcess::start(&binary);
    target.wait_for(&case.before);
    target.read_lines(2);
    let pid = target.pid().to_string();
    let mut args = vec![
        "diff",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "--apply",
        "--pid",
        &pid,
        "--cflags",
        case.hotpatch_cflags.as_deref().unwrap_or(&case.cflags),
        "--json",
    ];
    for item in &case.force {
        args.extend(["--force", item.as_str()]);
    }
    let output = hotpatch(&args);
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    let all = format!("{stdout}\n{stderr}");
    for needle in &case.output_contains {
        assert!(all.contains(needle.as_str()), "`{needle}` not in\n{all}");
    }
    if case.exit_code != 0 {
        check_not_patched(&case, &output, &mut target);
        return;
    }
    assert!(
        output.status.success(),
        "{}: hotpatch failed\n{stdout}\n{stderr}",
        case.description
    );
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("hotpatch --json printed no JSON ({e}):\n{stdout}\n{stderr}"));

    if case.nothing_to_patch {
        assert_eq!(report["nothing_to_patch"], true, "{report:#}");
        target.read_lines(3);
        let last = target.seen.last().unwrap().clone();
        assert!(
            last.contains(&case.before),
            "behaviour changed without a patch: {last}"
        );
    } else {
        let patched: Vec<&str> = report["functions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        for function in &case.patched {
            assert!(
                patched.contains(&function.as_str()),
                "`{function}` not patched: {report:#}"
            );
        }
        if case.inline_map_agrees {
            let map = &report["inline_map"];
            assert_eq!(map["from"], "dwarf", "{report:#}");
            assert_eq!(map["decides"], false, "{report:#}");
            let mut from_map: Vec<&str> = map["functions"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["name"].as_str())
                .collect();
            let mut confirmed = patched.clone();
            from_map.sort_unstable();
            confirmed.sort_unstable();
            assert_eq!(from_map, confirmed, "{report:#}");
        }
        if let Some(count) = case.inline_map_count {
            assert_eq!(report["inline_map"]["count"], count, "{report:#}");
            assert_eq!(patched.len(), count, "{report:#}");
        }
        assert!(
            report["pause_us"].as_u64().is_some(),
            "no pause_us: {report:#}"
        );
        let after = case
            .after
            .as_deref()
            .expect("a patchable case says what it prints after");
        target.wait_for(after);
        target.read_lines(2);
    }
    for counter in &case.counters {
        assert_counts_up_by_one(&target.seen, counter);
    }
    assert!(
        target.is_alive(),
        "the target died after the patch: {:?}",
        target.seen
    );
}

/// A case hotpatch must refuse or fail: the status, the messages, and an untouched process.
fn check_not_patched(case: &Case, output: &std::process::Output, target: &mut TargetProcess) {
    let (stdout, stderr) = (stdout_of(output), stderr_of(output));
    assert_eq!(
        output.status.code(),
        Some(case.exit_code),
        "{}: wrong exit status\n{stdout}\n{stderr}",
        case.description
    );
    let all = format!("{stdout}\n{stderr}");
    if let Some(item) = &case.refused {
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("no JSON refusal ({e}):\n{all}"));
        let items: Vec<&str> = report["refusals"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["item"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            items.contains(&item.as_str()),
            "{item} not refused: {report:#}"
        );
    }
    target.read_lines(3);
    let last = target.seen.last().cloned().unwrap_or_default();
    assert!(
        last.contains(&case.before),
        "the process changed without a patch: {last}"
    );
    for counter in &case.counters {
        assert_counts_up_by_one(&target.seen, counter);
    }
    assert!(target.is_alive(), "the target died: {:?}", target.seen);
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run_case(stringify!($name)); })*
        const CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

cases!(
    simplest,
    werror_build,
    static_function,
    static_by_prototype,
    inlined_into_caller,
    ref_global,
    ref_file_static,
    array_sized_by_initializer,
    ref_libc_new,
    call_unpatched,
    function_pointer,
    multiple_files,
    outside_the_binary,
    only_outside_the_binary,
    whitespace_comment_only,
    header_macro,
    header_inline,
    new_function,
    new_global,
    duplicate_static_names,
    line_only,
    macro_storage_class,
    ifdef_static_local,
    disabled_code,
    struct_comment_only,
    struct_layout_changed,
    struct_forward_declared,
    enum_inserted,
    enum_appended,
    global_type_changed,
    global_initializer_changed,
    static_local_changed,
    signature_changed,
    always_active,
    main_same_file,
    main_inlines_changed,
    main_inlines_forced,
    v2_does_not_compile,
    static_local_kept,
    no_debug_info,
    inlined_static,
    clone_constprop,
    cold_split,
    opt_levels,
    pie_and_no_pie,
    cet_endbr,
    compile_commands,
    tiny_function,
    tls_reference,
    shared_library,
    lto_target,
    ipara_main_forced,
    lto_cross_file,
    lto_clone_cold,
    lto_no_debug,
);

/// Every case directory has a test above, so no case is silently skipped.
#[test]
fn every_case_directory_is_run() {
    let mut on_disk: Vec<String> = std::fs::read_dir(project_root().join("testdata/cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}
