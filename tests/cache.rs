//! The object cache through the CLI: a second diff of the same revisions compiles fewer units
//! (seen in `--json` `timings`), selects the same functions and patches a real process; a
//! corrupt entry is a miss and is replaced; two runs writing at once leave a sound cache; the
//! cap evicts; `--no-cache` and `HOTPATCH_CACHE=off` store nothing. Every run has its own
//! `XDG_CACHE_HOME` below the test's temporary directory.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{field, simplest_case, stderr_of, TargetProcess};

/// Runs hotpatch with its cache in `cache` (and `env` besides) and returns its output.
fn hotpatch_cached(cache: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotpatch"));
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env("XDG_CACHE_HOME", cache)
        .env_remove("HOTPATCH_CACHE")
        .env_remove("HOTPATCH_CACHE_SIZE");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running hotpatch")
}

/// The JSON document of a successful run.
fn document(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).expect("one JSON document")
}

/// `(hits, misses, compile_jobs)` of a run's timings.
fn counts(document: &Value) -> (u64, u64, u64) {
    let timings = &document["timings"];
    let number = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{document:#}"));
    (
        number(&timings["cache"]["hits"]),
        number(&timings["cache"]["misses"]),
        number(&timings["compile_jobs"]),
    )
}

/// The functions a run selected, as `name: action` (a dry run has them in its plan).
fn selection(document: &Value) -> Vec<String> {
    let functions = match document.get("plan") {
        Some(plan) => &plan["functions"],
        None => &document["functions"],
    };
    functions
        .as_array()
        .unwrap_or_else(|| panic!("{document:#}"))
        .iter()
        .map(|f| format!("{}: {}", f["name"], f["action"]))
        .collect()
}

/// Every entry file of the cache under `cache`.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let objects = cache.join("hotpatch/objects");
    for shard in std::fs::read_dir(objects).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

/// Whether the entry at `path` is a record (a binary's inline map), not a compile: its format
/// line says so.
fn is_record(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"hotpatch-cache2\n"))
}

/// The entries holding records.
fn records(cache: &Path) -> Vec<PathBuf> {
    entries(cache)
        .into_iter()
        .filter(|p| is_record(p))
        .collect()
}

/// The entries holding compiles.
fn compiles(cache: &Path) -> Vec<PathBuf> {
    entries(cache)
        .into_iter()
        .filter(|p| !is_record(p))
        .collect()
}

/// A target of the `simplest` case in `dir`, started and seen running v1, the cache
/// directory of its runs, and the arguments of a dry run against it.
struct DryRun {
    target: TargetProcess,
    repo: String,
    cache: PathBuf,
    args: Vec<String>,
}

impl DryRun {
    fn start(dir: &Path) -> DryRun {
        let binary = simplest_case(dir);
        let mut target = TargetProcess::start(&binary);
        target.wait_for("value=1");
        let repo = dir.join("repo").display().to_string();
        let pid = target.pid().to_string();
        let args = [
            "diff",
            "v1..v2",
            "--repo",
            &repo,
            "--dry-run",
            "--pid",
            &pid,
            "--json",
        ];
        DryRun {
            target,
            cache: dir.join("cache"),
            args: args.map(String::from).to_vec(),
            repo,
        }
    }

    /// The dry run's document, with `env` and `extra` arguments.
    fn run(&self, env: &[(&str, &str)], extra: &[&str]) -> Output {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(extra);
        hotpatch_cached(&self.cache, env, &args)
    }
}

#[test]
fn a_second_run_hits_selects_the_same_and_patches() {
    let dir = tempfile::tempdir().unwrap();
    let mut case = DryRun::start(dir.path());
    let cache = case.cache.clone();

    let cold = document(&case.run(&[], &[]));
    let (hits, misses, cold_jobs) = counts(&cold);
    assert_eq!(hits, 0, "{cold:#}");
    assert!(
        misses >= 3,
        "old and new (pre-images and confirmation from one compile each) and switches: {cold:#}"
    );
    // One entry per compile, and the record of the binary's inline map.
    assert_eq!(entries(&cache).len() as u64, misses + 1);
    assert_eq!(cold["timings"]["inline_map"], "dwarf", "{cold:#}");
    assert_eq!(records(&cache).len(), 1);

    let warm = document(&case.run(&[], &[]));
    assert_eq!(warm["timings"]["inline_map"], "cache", "{warm:#}");
    let (hits, warm_misses, warm_jobs) = counts(&warm);
    assert_eq!((hits, warm_misses), (misses, 0), "{warm:#}");
    assert!(
        warm_jobs + misses <= cold_jobs,
        "{cold_jobs} then {warm_jobs}"
    );
    assert_eq!(selection(&warm), selection(&cold));
    assert_eq!(warm["units"], cold["units"]);

    // Applied from the warm cache: the behaviour changes, the state survives.
    let before = case.target.wait_for("value=1");
    let pid = case.target.pid().to_string();
    let apply = [
        "diff", "v1..v2", "--repo", &case.repo, "--apply", "--pid", &pid, "--json",
    ];
    let applied = document(&hotpatch_cached(&cache, &[], &apply));
    assert_eq!(counts(&applied).1, 0, "{applied:#}");
    let after = case.target.wait_for("value=2");
    assert!(
        field(&after, "state") > field(&before, "state"),
        "{before} / {after}"
    );
}

#[test]
fn a_damaged_inline_map_record_is_read_again_from_the_dwarf() {
    let dir = tempfile::tempdir().unwrap();
    let case = DryRun::start(dir.path());
    let cold = document(&case.run(&[], &[]));
    let [record] = records(&case.cache).try_into().expect("one record");
    let mut bytes = std::fs::read(&record).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&record, bytes).unwrap();
    assert!(cold["inline_map"].is_object(), "{cold:#}");
    let again = document(&case.run(&[], &[]));
    assert_eq!(again["timings"]["inline_map"], "dwarf", "{again:#}");
    assert_eq!(selection(&again), selection(&cold));
    assert_eq!(again["inline_map"], cold["inline_map"]);
    // Replaced by a sound one: the next run reads it.
    let third = document(&case.run(&[], &[]));
    assert_eq!(third["timings"]["inline_map"], "cache", "{third:#}");
    assert_eq!(third["inline_map"], cold["inline_map"]);
}

#[test]
fn no_cache_and_cache_off_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let case = DryRun::start(dir.path());
    let cache = case.cache.clone();
    let off = document(&case.run(&[], &["--no-cache"]));
    assert_eq!((counts(&off).0, counts(&off).1), (0, 0), "{off:#}");
    let off = document(&case.run(&[("HOTPATCH_CACHE", "off")], &[]));
    assert_eq!((counts(&off).0, counts(&off).1), (0, 0), "{off:#}");
    assert!(entries(&cache).is_empty());
    assert!(!selection(&off).is_empty());
}

#[test]
fn a_corrupt_entry_is_a_miss_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let case = DryRun::start(dir.path());
    let cache = case.cache.clone();
    let cold = document(&case.run(&[], &[]));
    let stored = compiles(&cache);
    // One entry with a flipped byte, one cut short.
    let mut bytes = std::fs::read(&stored[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&stored[0], &bytes).unwrap();
    std::fs::write(&stored[1], b"hotpatch").unwrap();
    let repaired = document(&case.run(&[], &[]));
    let (hits, misses, _) = counts(&repaired);
    assert_eq!(misses, 2, "{repaired:#}");
    assert_eq!(hits + misses, stored.len() as u64, "{repaired:#}");
    assert_eq!(selection(&repaired), selection(&cold));
    let warm = document(&case.run(&[], &[]));
    assert_eq!(counts(&warm).1, 0, "replaced: {warm:#}");
}

#[test]
fn two_runs_writing_at_once_leave_a_sound_cache() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let repo = dir.path().join("repo").display().to_string();
    let cache = dir.path().join("cache");
    // `hotpatch build` without a process (two runs cannot trace one process at once): the old
    // revision is compiled to learn its statics, and both sides for the images.
    let object = |name: &str| dir.path().join(name).display().to_string();
    let (a, b) = (object("a.o"), object("b.o"));
    let build = |output: &str| {
        let args = ["build", "v1..v2", "--repo", &repo, "-o", output, "--json"];
        hotpatch_cached(&cache, &[], &args)
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| build(&a));
        let second = scope.spawn(|| build(&b));
        (first.join().unwrap(), second.join().unwrap())
    });
    let (first, second) = (document(&first), document(&second));
    assert_eq!(selection(&first), selection(&second));
    let warm = document(&build(&object("c.o")));
    let (hits, misses, _) = counts(&warm);
    assert_eq!(misses, 0, "{warm:#}");
    assert!(hits >= 3, "{warm:#}");
    assert_eq!(selection(&warm), selection(&first));
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(object("c.o")).unwrap(),
        "the patch built from the cache is the patch built without it"
    );
    // Nothing half-written is left in place of an entry.
    assert!(std::fs::read_dir(cache.join("hotpatch/tmp"))
        .map(|d| d.count() == 0)
        .unwrap_or(true));
}

#[test]
fn the_cap_evicts_and_a_bad_cap_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let case = DryRun::start(dir.path());
    let cache = case.cache.clone();
    let full = document(&case.run(&[], &[]));
    let sizes: Vec<u64> = entries(&cache)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes.len() >= 3, "{full:#}");
    // Room for the largest entry alone: the others go, least recently used first.
    let cap = *sizes.iter().max().unwrap();
    let capped = [("HOTPATCH_CACHE_SIZE", cap.to_string())];
    let capped: Vec<(&str, &str)> = capped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let small = document(&case.run(&capped, &[]));
    assert_eq!(selection(&small), selection(&full));
    let left: u64 = entries(&cache)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(left <= cap, "{left} bytes left, cap {cap}");
    assert!(entries(&cache).len() < sizes.len());

    let bad = case.run(&[("HOTPATCH_CACHE_SIZE", "lots")], &[]);
    assert!(!bad.status.success());
    let error: Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert!(
        error
            .to_string()
            .contains("HOTPATCH_CACHE_SIZE=lots: not a size"),
        "{error:#}"
    );
}

#[test]
fn prepare_warms_the_old_side_of_the_next_diff() {
    let dir = tempfile::tempdir().unwrap();
    let case = DryRun::start(dir.path());
    let prepare = ["prepare", "v1", "--repo", &case.repo, "--json"];
    let prepared = document(&hotpatch_cached(&case.cache, &[], &prepare));
    assert_eq!(
        prepared["files"],
        serde_json::json!(["lib.c", "main.c"]),
        "{prepared:#}"
    );
    // Per file: the compile with the original flags (pre-images and confirmation); and the
    // switches of the flags both files share (both files may ask at once: one entry all the same).
    assert!(counts(&prepared).1 >= 3, "{prepared:#}");
    assert_eq!(entries(&case.cache).len(), 3, "{prepared:#}");
    let diffed = document(&case.run(&[], &[]));
    let (hits, misses, _) = counts(&diffed);
    // Old side and switches from the cache; the new side compiled (once: post-images and
    // confirmation).
    assert_eq!((hits, misses), (2, 1), "{diffed:#}");
    let again = document(&hotpatch_cached(&case.cache, &[], &prepare));
    assert_eq!(counts(&again).1, 0, "{again:#}");
}

#[test]
fn prepare_names_what_does_not_compile_and_needs_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let main = "int helper(void);\nint main(void) { return helper(); }\n";
    let broken = "int helper(void) { return missing; }\n";
    let files = |helper: &str| {
        vec![
            ("main.c".to_string(), main.to_string()),
            ("helper.c".into(), helper.to_string()),
        ]
    };
    support::git_repo_with_revisions(
        &dir.path().join("repo"),
        &files(broken),
        &files("int helper(void) { return 0; }\n"),
    );
    let repo = dir.path().join("repo").display().to_string();
    let cache = dir.path().join("cache");
    let output = hotpatch_cached(&cache, &[], &["prepare", "v1", "--repo", &repo]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr_of(&output);
    assert!(
        error.contains("1 of 2 file(s) of v1 did not compile"),
        "{error}"
    );
    assert!(
        error.contains("helper.c") && error.contains("missing"),
        "{error}"
    );
    let output = hotpatch_cached(
        &cache,
        &[("HOTPATCH_CACHE", "off")],
        &["prepare", "v1", "--repo", &repo],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("the object cache is off"),
        "{}",
        stderr_of(&output)
    );
}

/// `(preprocess_hits, preprocess_misses)` of a run's timings: the differ's preprocessing.
fn preprocessed(document: &Value) -> (u64, u64) {
    let cache = &document["timings"]["cache"];
    let number = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{document:#}"));
    (
        number(&cache["preprocess_hits"]),
        number(&cache["preprocess_misses"]),
    )
}

/// `hotpatch build RANGE` of the repository `repo` into `dir`, with its cache in `cache` and
/// `extra` arguments.
fn build_range(dir: &Path, cache: &Path, range: &str, extra: &[&str]) -> Value {
    let repo = dir.join("repo").display().to_string();
    let output = dir.join("patch.o").display().to_string();
    let mut args = vec!["build", range, "--repo", &repo, "-o", &output, "--json"];
    args.extend(extra);
    document(&hotpatch_cached(cache, &[], &args))
}

#[test]
fn the_differs_preprocessing_is_cached_and_every_file_it_read_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    // A header outside the repository (as a system header or a build tree's would be).
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("ext.h"), "#define EXT 5\n").unwrap();
    let toml = format!("[build]\ncflags = \"-O2 -g -I{}\"\n", outside.display());
    let lib = |extra: &str| {
        format!(
            "#include \"cfg.h\"\n#include <ext.h>\n\
             int value(int x) {{ return x * STEP + EXT{extra}; }}\n\
             int other(int x) {{ return x + 1; }}\n"
        )
    };
    let files = |lib: String, step: u32| {
        vec![
            ("hotpatch.toml".to_string(), toml.clone()),
            ("cfg.h".to_string(), format!("#define STEP {step}\n")),
            ("lib.c".to_string(), lib),
        ]
    };
    support::git_repo_with_tags(
        &dir.path().join("repo"),
        &[
            ("v1", &files(lib(""), 1)),
            ("v2", &files(lib(" + 1"), 1)),
            // Only the header changes: lib.c is v2's.
            ("v3", &files(lib(" + 1"), 2)),
        ],
    );
    let cache = dir.path().join("cache");

    let cold = build_range(dir.path(), &cache, "v1..v2", &[]);
    assert_eq!(preprocessed(&cold), (0, 2), "{cold:#}");
    let warm = build_range(dir.path(), &cache, "v1..v2", &[]);
    assert_eq!(preprocessed(&warm), (2, 0), "{warm:#}");
    let jobs = |d: &Value| counts(d).2;
    assert!(jobs(&warm) + 2 <= jobs(&cold), "{cold:#}\n{warm:#}");
    assert_eq!(selection(&warm), selection(&cold));
    assert_eq!(selection(&warm), ["\"value\": \"replace\""], "{warm:#}");

    // v2 is the old side now (stored as the new side above); v3's lib.c is v2's, its header
    // is not: a miss, and the change the header made is seen.
    let header = build_range(dir.path(), &cache, "v2..v3", &[]);
    assert_eq!(preprocessed(&header), (1, 1), "{header:#}");
    assert_eq!(selection(&header), ["\"value\": \"replace\""], "{header:#}");
    // Both texts of the one key are kept: the next such diff hits on both sides.
    let again = build_range(dir.path(), &cache, "v2..v3", &[]);
    assert_eq!(preprocessed(&again), (2, 0), "{again:#}");
    assert_eq!(selection(&again), selection(&header));

    // A header on disk, outside the revision, changed: both sides miss.
    std::fs::write(outside.join("ext.h"), "#define EXT 6\n").unwrap();
    let disk = build_range(dir.path(), &cache, "v1..v2", &[]);
    assert_eq!(preprocessed(&disk), (0, 2), "{disk:#}");

    // Other flags: other keys.
    let flags = format!("-O2 -g -I{} -DOTHER", outside.display());
    let other = build_range(dir.path(), &cache, "v1..v2", &["--cflags", &flags]);
    assert_eq!(preprocessed(&other), (0, 2), "{other:#}");
    assert_eq!(selection(&other), selection(&cold));

    // Damaged entries (every record here is a preprocessed text: no process, no inline map)
    // are misses, not errors, and are replaced.
    let stored = records(&cache);
    assert!(stored.len() >= 4, "{stored:?}");
    for path in &stored {
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        std::fs::write(path, bytes).unwrap();
    }
    let damaged = build_range(dir.path(), &cache, "v1..v2", &["--cflags", &flags]);
    assert_eq!(preprocessed(&damaged), (0, 2), "{damaged:#}");
    assert_eq!(selection(&damaged), selection(&cold));
    let repaired = build_range(dir.path(), &cache, "v1..v2", &["--cflags", &flags]);
    assert_eq!(preprocessed(&repaired), (2, 0), "{repaired:#}");
}

/// The files of revision `side` (`v1`, `v2`) of the case `testdata/cases/NAME`, with the shared
/// driver's `main.c`.
fn case_files(name: &str, side: &str) -> Vec<(String, String)> {
    let root = support::project_root();
    let mut files = vec![(
        "main.c".to_string(),
        std::fs::read_to_string(root.join("testdata/common/main.c")).unwrap(),
    )];
    let dir = root.join("testdata/cases").join(name).join(side);
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push((name, std::fs::read_to_string(entry.path()).unwrap()));
    }
    files.sort();
    files
}

#[test]
fn cached_preprocessing_selects_what_fresh_preprocessing_selects() {
    for case in [
        "simplest",
        "header_macro",
        "macro_storage_class",
        "header_inline",
    ] {
        let dir = tempfile::tempdir().unwrap();
        support::git_repo_with_revisions(
            &dir.path().join("repo"),
            &case_files(case, "v1"),
            &case_files(case, "v2"),
        );
        let cache = dir.path().join("cache");
        let flags = ["--cflags", "-O2 -g"];
        let fresh = build_range(
            dir.path(),
            &cache,
            "v1..v2",
            &[&flags[..], &["--no-cache"]].concat(),
        );
        let cold = build_range(dir.path(), &cache, "v1..v2", &flags);
        let warm = build_range(dir.path(), &cache, "v1..v2", &flags);
        assert_eq!(preprocessed(&warm).1, 0, "{case}: {warm:#}");
        assert!(preprocessed(&warm).0 >= 2, "{case}: {warm:#}");
        assert!(!selection(&fresh).is_empty(), "{case}: {fresh:#}");
        for run in [&cold, &warm] {
            assert_eq!(selection(run), selection(&fresh), "{case}");
            assert_eq!(run["changes"], fresh["changes"], "{case}");
        }
    }
}
