//! Shared helpers of the end-to-end tests: git repositories of two revisions, C targets built and
//! started for real (killed on every path), and running the hotpatch binary.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

#[path = "../../src/child_output.rs"]
mod child_output;

use child_output::ChildOutput;

/// How long a target may take to print the line a test waits for. Targets print every 20-300 ms;
/// the rest is room for a machine whose every core is busy (CI under load, parallel builds).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Root of the repository (where `testdata/` lives).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command and panics with its output if it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Writes `files` (relative path, contents) under `dir`.
pub fn write_tree(dir: &Path, files: &[(String, String)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Creates a git repository in `dir` whose tags `v1` and `v2` hold the two trees.
pub fn git_repo_with_revisions(dir: &Path, v1: &[(String, String)], v2: &[(String, String)]) {
    git_repo_with_tags(dir, &[("v1", v1), ("v2", v2)]);
}

/// Creates a git repository in `dir` with one commit per `(tag, tree)`, in order, each tagged.
pub fn git_repo_with_tags(dir: &Path, revisions: &[(&str, &[(String, String)])]) {
    std::fs::create_dir_all(dir).unwrap();
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=hotpatch-test",
                    "-c",
                    "user.email=test@example.invalid",
                ])
                .args(args)
                .current_dir(dir),
        )
    };
    git(&["init", "-q", "-b", "main"]);
    let mut previous: &[(String, String)] = &[];
    for &(tag, tree) in revisions {
        for (path, _) in previous {
            std::fs::remove_file(dir.join(path)).unwrap();
        }
        write_tree(dir, tree);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", tag]);
        git(&["tag", tag]);
        previous = tree;
    }
}

/// Compiles `sources` in `dir` with `cflags` into `output`.
pub fn compile_program(dir: &Path, sources: &[String], cflags: &str, output: &Path) {
    run_ok(
        Command::new("gcc")
            .current_dir(dir)
            .args(cflags.split_whitespace())
            .args(sources)
            .arg("-o")
            .arg(output),
    );
}

/// A running target process. Dropping it kills and reaps the process, so no test leaks one.
pub struct TargetProcess {
    child: Child,
    output: ChildOutput,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl TargetProcess {
    /// Starts `binary` with its standard output captured line by line.
    pub fn start(binary: &Path) -> TargetProcess {
        Self::start_with(binary, &["hotpatch-case"])
    }

    /// Starts `binary` with `args`, its standard output captured line by line.
    pub fn start_with(binary: &Path, args: &[&str]) -> TargetProcess {
        let mut command = Command::new(binary);
        command.args(args);
        let output = ChildOutput::capture(&mut command).expect("a socket pair for the output");
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        TargetProcess {
            child,
            output,
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads lines until one contains `needle`; panics after [`DEADLINE`].
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self
                .output
                .next_line(deadline)
                .expect("reading the target's output")
            {
                Some(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                None => panic!(
                    "no line containing `{needle}` within {DEADLINE:?}; last lines: {:?}",
                    &self.seen[self.seen.len().saturating_sub(5)..]
                ),
            }
        }
    }

    /// Reads `count` lines the process finishes printing after this call (what it printed
    /// before goes to `seen` first), so they show its behaviour from now on, not a backlog.
    pub fn read_lines(&mut self, count: usize) {
        self.drain();
        for _ in 0..count {
            self.wait_for("");
        }
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended (`signal: 5 (SIGTRAP)`, `exit status: 1`), or `running`: for the
    /// message of a test that finds it dead.
    pub fn how_it_ended(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => "running".into(),
            Err(e) => format!("unknown ({e})"),
        }
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=N` in an output line.
pub fn field(line: &str, key: &str) -> Option<i64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Asserts that `key` goes up by exactly one from each line to the next: the state it counts
/// survived the patch (not reset, nothing lost).
pub fn assert_counts_up_by_one(lines: &[String], key: &str) {
    let values: Vec<i64> = lines.iter().filter_map(|l| field(l, key)).collect();
    assert!(values.len() >= 2, "too few `{key}=` values in {lines:?}");
    for pair in values.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "`{key}` did not go up by one: {values:?}"
        );
    }
}

/// Runs the hotpatch binary with `args` and returns its output. Its object cache is a fresh
/// directory of this run alone, so no test sees another's results.
pub fn hotpatch(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().expect("a cache directory");
    Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("running hotpatch")
}

/// Standard output as text.
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `simplest` case in `dir`: a git repository `repo/` with tags v1 and v2, and v1 built with
/// `-O2 -g` from `build/` as the returned binary. The shared driver prints `value=1` at v1.
pub fn simplest_case(dir: &Path) -> PathBuf {
    case_with_driver(dir, "simplest", "-O2 -g")
}

/// The case `testdata/cases/NAME` (its `lib.c` with the shared driver) in `dir`: a git repository
/// `repo/` with tags v1 and v2, and v1 built with `cflags` from `build/` as the returned binary.
pub fn case_with_driver(dir: &Path, name: &str, cflags: &str) -> PathBuf {
    let case = project_root().join("testdata/cases").join(name);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let main = read(&project_root().join("testdata/common/main.c"));
    let v1 = vec![
        ("lib.c".to_string(), read(&case.join("v1/lib.c"))),
        ("main.c".into(), main.clone()),
    ];
    let v2 = vec![
        ("lib.c".to_string(), read(&case.join("v2/lib.c"))),
        ("main.c".into(), main),
    ];
    git_repo_with_revisions(&dir.join("repo"), &v1, &v2);
    write_tree(&dir.join("build"), &v1);
    let binary = dir.join("target-v1");
    compile_program(
        &dir.join("build"),
        &["main.c".into(), "lib.c".into()],
        cflags,
        &binary,
    );
    binary
}

impl TargetProcess {
    /// Moves every line the process has finished printing into `seen` without waiting.
    pub fn drain(&mut self) {
        let lines = self.output.drain().expect("reading the target's output");
        self.seen.extend(lines);
    }
}

/// The value of `key` (`State:`, `TracerPid:`) in the text of a `/proc/.../status` file; empty
/// when it has none.
pub fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Whether every thread of `pid` is untraced (`TracerPid: 0`) and not stopped (`t`/`T`);
/// `Err` names the first thread that is not.
pub fn untraced_and_running(pid: i32) -> Result<(), String> {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("pid {pid}: {e}"))?;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let tracer = status_field(&status, "TracerPid:");
        let state = status_field(&status, "State:");
        if tracer != "0" || state.starts_with('t') || state.starts_with('T') {
            return Err(format!(
                "thread {:?} of pid {pid}: TracerPid {tracer}, State {state}",
                task.file_name()
            ));
        }
    }
    Ok(())
}

/// The tree of the pre-forking family server (`tests/c/family_server.c` as `main.c`) at
/// `version`: its `lib.c`'s `value` returns the version, holding in `hold_here` when asked.
pub fn family_server_files(version: u32) -> Vec<(String, String)> {
    let server = std::fs::read_to_string(project_root().join("tests/c/family_server.c"))
        .expect("the server's source");
    let lib = format!(
        "void hold_here(void);\n\nstatic int calls;\n\nint state(void)\n{{\n    return calls;\n}}\n\n\
         int value(void)\n{{\n    calls++;\n    hold_here();\n    return {version};\n}}\n"
    );
    vec![("lib.c".to_string(), lib), ("main.c".to_string(), server)]
}
