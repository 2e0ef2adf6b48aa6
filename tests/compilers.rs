//! The compilers of a run are bounded: never more at once than there are cores, and under make
//! no more than make's jobserver gives tokens for (one besides the token make gave hotpatch).
//! The compiler is a real gcc behind a wrapper script (given as `CC`) that records, at each
//! start, how many wrappers are running; it holds each compiler a moment so that unbounded
//! runs overlap. The bound's checks hold whatever the timing: a wrapper never counts more
//! compilers than run at once.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{run_ok, simplest_case, stderr_of};

/// A compiler wrapper in `dir`, and what it recorded.
struct Wrapper {
    dir: PathBuf,
}

impl Wrapper {
    fn new(dir: &Path) -> Wrapper {
        let gcc = run_ok(Command::new("sh").args(["-c", "command -v gcc"]));
        let gcc = String::from_utf8_lossy(&gcc.stdout).trim().to_string();
        let dir = dir.join("wrapper");
        std::fs::create_dir_all(dir.join("running")).unwrap();
        let d = dir.display();
        let script = format!(
            "#!/bin/sh\nmkdir \"{d}/running/$$\"\nls \"{d}/running\" | wc -l >> \"{d}/starts\"\n\
             sleep 0.2\n\"{gcc}\" \"$@\"\nstatus=$?\nrmdir \"{d}/running/$$\"\nexit $status\n"
        );
        // Named `gcc`: the compiler's name is how a command's compiler is recognised.
        let path = dir.join("gcc");
        std::fs::write(&path, script).unwrap();
        run_ok(Command::new("chmod").arg("+x").arg(&path));
        Wrapper { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("gcc")
    }

    /// How many compilers ran at each start of one.
    fn starts(&self) -> Vec<usize> {
        std::fs::read_to_string(self.dir.join("starts"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }
}

/// `hotpatch build v1..v2` of the `simplest` case in `dir` with `--no-cache` (every compile
/// runs) and explicit flags (the differ preprocesses too), as a command to run.
fn build_command(dir: &Path, wrapper: &Wrapper) -> Command {
    let repo = dir.join("repo");
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotpatch"));
    command
        .args(["build", "v1..v2", "--repo"])
        .arg(&repo)
        .arg("-o")
        .arg(dir.join("patch.o"))
        .args(["--json", "--no-cache", "--cflags", "-O2 -g"])
        .env("CC", wrapper.path())
        .env("NO_COLOR", "1")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    command
}

/// The JSON document of a successful run.
fn document(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).expect("one JSON document")
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[test]
fn a_run_starts_no_more_compilers_at_once_than_there_are_cores() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let wrapper = Wrapper::new(dir.path());
    let built = document(&build_command(dir.path(), &wrapper).output().unwrap());
    let starts = wrapper.starts();
    let jobs = built["timings"]["compile_jobs"].as_u64().unwrap() as usize;
    // Preprocessing of both sides, the patch, old and new files, the switches (and the `cc`
    // crate's two probes of the compiler, not counted as jobs).
    assert!(jobs >= 5, "{built:#}");
    assert!(starts.len() >= jobs, "{starts:?} for {jobs} jobs");
    let most = starts.iter().copied().max().unwrap_or(0);
    assert!(
        most <= cores(),
        "{most} compilers at once on {} cores: {starts:?}",
        cores()
    );
}

#[test]
fn an_empty_jobserver_runs_one_compiler_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let wrapper = Wrapper::new(dir.path());
    // make's jobserver of `-j1` in all but name: no token in the pipe, so only the token make
    // gave hotpatch itself.
    let fifo = dir.path().join("jobserver");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let _open = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let mut command = build_command(dir.path(), &wrapper);
    command.env(
        "MAKEFLAGS",
        format!(" -j2 --jobserver-auth=fifo:{}", fifo.display()),
    );
    let built = document(&command.output().unwrap());
    assert!(
        !built["functions"].as_array().unwrap().is_empty(),
        "{built:#}"
    );
    let starts = wrapper.starts();
    assert!(starts.len() >= 5, "{starts:?}");
    assert!(starts.iter().all(|&n| n == 1), "{starts:?}");
}

#[test]
fn under_make_j2_the_run_takes_tokens_and_gives_them_back() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let wrapper = Wrapper::new(dir.path());
    let command = build_command(dir.path(), &wrapper);
    let quoted = |word: &std::ffi::OsStr| format!("'{}'", word.to_string_lossy());
    let words: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(quoted)
        .collect();
    // `+`: make hands the jobserver to the recipe (as to a sub-make).
    let makefile = format!(
        "all:\n\t+CC='{}' {} > doc.json\n",
        wrapper.path().display(),
        words.join(" ")
    );
    std::fs::write(dir.path().join("Makefile"), makefile).unwrap();
    let made = Command::new("make")
        .arg("-j2")
        .current_dir(dir.path())
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .output()
        .unwrap();
    // make says so when a job kept a token or gave back more than it took.
    assert!(made.status.success(), "{}", stderr_of(&made));
    assert!(
        !stderr_of(&made).contains("jobserver"),
        "{}",
        stderr_of(&made)
    );
    let built: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("doc.json")).unwrap()).unwrap();
    assert!(
        !built["functions"].as_array().unwrap().is_empty(),
        "{built:#}"
    );
    let starts = wrapper.starts();
    assert!(starts.len() >= 5, "{starts:?}");
    assert!(starts.iter().all(|&n| n <= 2), "{starts:?}");
}
