//! End-to-end benchmark: `hotpatch diff v1..v2 --apply --pid N --json` on a generated project of
//! `FILES` C files (one function changed in one file), by stage (the `timings` of the JSON: diff,
//! externalize, compile, confirm, apply) and wall clock, beside a full rebuild of the same project
//! (`gcc -c` of every file, then the link), run one file at a time and on every core.
//! `cargo bench --bench end_to_end` (release build of the tool; needs gcc, git and ptrace rights).
//!
//! Each sample applies the patch to the running v1 process with the release binary and reverts it
//! with `hotpatch revert`, so every sample does the same work; each has an empty object cache of
//! its own (cold).
//!
//! Then the ratio of issue 14: for one generated file of about 500, 3,000 and 10,000 lines (and a
//! `main.c`), the wall clock of `hotpatch diff v1..v2 --apply` over one plain `gcc -O2 -g -c` of
//! that file, cold (an empty cache) and warm (`hotpatch prepare v1` run before, untimed, into the
//! sample's own cache). `HOTPATCH_BENCH_PART=ratio` runs only this part, `project` only the first.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const FILES: usize = 36;
/// Lines of the generated files of the ratio part (about: each function takes 16).
const RATIO_LINES: [usize; 3] = [500, 3_000, 10_000];
const RATIO_SAMPLES: usize = 5;
const FUNCTIONS_PER_FILE: usize = 24;
const SAMPLES: usize = 10;
const REBUILD_SAMPLES: usize = 5;
/// The file and function that v2 changes.
const CHANGED_FILE: usize = 7;
const CHANGED_FUNCTION: usize = 3;

/// A running target, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const HEADER: &str = "#ifndef COMMON_H\n#define COMMON_H\n#include <stddef.h>\n\
struct rec { long key; long value; char name[32]; };\n\
#define MIX(a, b) (((a) * 31 + (b)) ^ ((a) >> 3))\n#endif\n";

/// One source file: `functions` functions of loops and switches, and an entry point; at version
/// 2, function `CHANGED_FUNCTION` of file `CHANGED_FILE` has another constant.
fn module(file: usize, functions: usize, version: u32) -> String {
    let mut c = String::from("#include <stdio.h>\n#include <string.h>\n#include \"common.h\"\n\n");
    let _ = writeln!(c, "static struct rec table{file}[64];\n");
    for k in 0..functions {
        let constant = if file == CHANGED_FILE && k == CHANGED_FUNCTION && version == 2 {
            1000 + k
        } else {
            k + 1
        };
        let _ = write!(
            c,
            "__attribute__((noinline)) long m{file}_f{k}(long x)\n{{\n\
             \x20   long acc = {constant};\n\
             \x20   for (int i = 0; i < 64; i++) {{\n\
             \x20       struct rec *r = &table{file}[(x + i) & 63];\n\
             \x20       switch ((x + i) % 5) {{\n\
             \x20       case 0: acc = MIX(acc, r->key); break;\n\
             \x20       case 1: acc += r->value * {k}; break;\n\
             \x20       case 2: acc ^= (long)strlen(r->name); break;\n\
             \x20       case 3: r->value = acc & 1023; break;\n\
             \x20       default: snprintf(r->name, sizeof r->name, \"%ld\", acc & 255); break;\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   return acc;\n}}\n\n"
        );
    }
    let _ = writeln!(c, "long m{file}_entry(long x)\n{{\n    long s = 0;");
    for k in 0..functions {
        let _ = writeln!(c, "    s += m{file}_f{k}(x + {k});");
    }
    c.push_str("    return s;\n}\n");
    c
}

/// A `main.c` calling the entry points of modules `files`.
fn main_source(files: std::ops::Range<usize>) -> String {
    let mut c = String::from("#include <stdio.h>\n#include <unistd.h>\n");
    for file in files.clone() {
        let _ = writeln!(c, "long m{file}_entry(long x);");
    }
    c.push_str("int main(void)\n{\n    printf(\"ready\\n\");\n    fflush(stdout);\n    for (long n = 0;; n++) {\n        long s = 0;\n");
    for file in files {
        let _ = writeln!(c, "        s += m{file}_entry(n);");
    }
    c.push_str("        if (s == 42)\n            printf(\"%ld\\n\", s);\n        usleep(10000);\n    }\n}\n");
    c
}

/// The project at `version`: modules `files` of `functions` functions each.
fn project(files: std::ops::Range<usize>, functions: usize, version: u32) -> Vec<(String, String)> {
    let mut out = vec![
        ("common.h".to_string(), HEADER.to_string()),
        ("main.c".to_string(), main_source(files.clone())),
        (
            "hotpatch.toml".to_string(),
            "[build]\ncflags = \"-O2 -g\"\n".to_string(),
        ),
    ];
    for file in files {
        out.push((format!("m{file}.c"), module(file, functions, version)));
    }
    out
}

fn write_tree(dir: &Path, files: &[(String, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (path, text) in files {
        std::fs::write(dir.join(path), text).unwrap();
    }
}

fn run(command: &mut Command) -> std::process::Output {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A repository in `dir` with the project of `make(1)` tagged v1 and of `make(2)` tagged v2.
fn git_repo(dir: &Path, make: impl Fn(u32) -> Vec<(String, String)>) {
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args([
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@example.invalid",
            ])
            .args(args)
            .current_dir(dir))
    };
    write_tree(dir, &make(1));
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "v1"]);
    git(&["tag", "v1"]);
    write_tree(dir, &make(2));
    git(&["commit", "-q", "-a", "-m", "v2"]);
    git(&["tag", "v2"]);
}

fn sources() -> Vec<String> {
    std::iter::once("main.c".to_string())
        .chain((0..FILES).map(|f| format!("m{f}.c")))
        .collect()
}

/// A full rebuild of v1 in `dir` on `jobs` parallel compilers: every `.c` to `.o`, then the link.
/// Returns milliseconds.
fn full_rebuild(dir: &Path, jobs: usize) -> f64 {
    let started = Instant::now();
    let files = sources();
    let chunks: Vec<Vec<String>> = files
        .chunks(files.len().div_ceil(jobs))
        .map(|c| c.to_vec())
        .collect();
    std::thread::scope(|scope| {
        for chunk in &chunks {
            scope.spawn(move || {
                for file in chunk {
                    let object = file.replace(".c", ".o");
                    run(Command::new("gcc")
                        .current_dir(dir)
                        .args(["-O2", "-g", "-c", file, "-o", &object]));
                }
            });
        }
    });
    let objects: Vec<String> = files.iter().map(|f| f.replace(".c", ".o")).collect();
    run(Command::new("gcc")
        .current_dir(dir)
        .args(&objects)
        .args(["-o", "program"]));
    started.elapsed().as_secs_f64() * 1000.0
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100]
}

fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "{:.0} ({:.0}–{:.0})",
        percentile(&values, 50),
        percentile(&values, 10),
        percentile(&values, 90)
    )
}

/// Starts the program built in `build`, waiting for its first line.
fn start(build: &Path) -> Running {
    let mut child = Command::new(build.join("program"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start v1");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Running(child)
}

/// `hotpatch diff v1..v2 --apply` on `pid` from `repo` with its cache in `cache` (then the
/// revert): the wall clock in milliseconds and the JSON document.
fn apply_and_revert(repo: &Path, pid: &str, cache: &Path) -> (f64, serde_json::Value) {
    let tool = env!("CARGO_BIN_EXE_hotpatch");
    let started = Instant::now();
    let output = run(Command::new(tool)
        .current_dir(repo)
        .env("XDG_CACHE_HOME", cache)
        .args(["diff", "v1..v2", "--apply", "--pid", pid, "--json"]));
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    let json = serde_json::from_slice(&output.stdout).expect("JSON");
    run(Command::new(tool)
        .current_dir(repo)
        .args(["revert", "--pid", pid]));
    (wall, json)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches this way
    }
    let part = std::env::var("HOTPATCH_BENCH_PART").unwrap_or_default();
    if part != "ratio" {
        whole_project();
    }
    if part != "project" {
        ratios();
    }
}

/// The 37-file project: stages, wall clock, full rebuilds.
fn whole_project() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let build = dir.path().join("build");
    git_repo(&repo, |version| {
        project(0..FILES, FUNCTIONS_PER_FILE, version)
    });
    write_tree(&build, &project(0..FILES, FUNCTIONS_PER_FILE, 1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let serial: Vec<f64> = (0..REBUILD_SAMPLES)
        .map(|_| full_rebuild(&build, 1))
        .collect();
    let parallel: Vec<f64> = (0..REBUILD_SAMPLES)
        .map(|_| full_rebuild(&build, cores))
        .collect();

    let running = start(&build);
    let pid = running.0.id().to_string();

    let stages = [
        "diff_ms",
        "externalize_ms",
        "compile_ms",
        "confirm_ms",
        "apply_ms",
    ];
    let mut by_stage: Vec<Vec<f64>> = vec![Vec::new(); stages.len()];
    let (mut walls, mut pauses, mut functions) = (Vec::new(), Vec::new(), 0);
    for _ in 0..SAMPLES {
        let cache = tempfile::tempdir().unwrap();
        let (wall, json) = apply_and_revert(&repo, &pid, cache.path());
        walls.push(wall);
        for (stage, values) in stages.iter().zip(&mut by_stage) {
            values.push(json["timings"][stage].as_f64().unwrap_or(f64::NAN));
        }
        pauses.push(json["pause_us"].as_f64().unwrap_or(f64::NAN));
        functions = json["functions"].as_array().map_or(0, |f| f.len());
    }

    println!(
        "end to end: {} files ({} functions each), 1 function changed, {functions} patched; \
         {SAMPLES} samples, medians (p10–p90), ms",
        FILES + 1,
        FUNCTIONS_PER_FILE
    );
    println!("| stage | ms |");
    println!("|---|---:|");
    for (stage, values) in stages.iter().zip(by_stage) {
        println!(
            "| {} | {} |",
            stage.trim_end_matches("_ms"),
            summary(values)
        );
    }
    println!(
        "| wall clock of `hotpatch diff --apply` | {} |",
        summary(walls)
    );
    println!("| pause_us (µs) | {} |", summary(pauses));
    println!(
        "| full rebuild, 1 job ({} × gcc -c + link) | {} |",
        FILES + 1,
        summary(serial)
    );
    println!("| full rebuild, {cores} jobs | {} |", summary(parallel));
}

/// End to end over one plain compile of the changed file, cold and warm, per file size.
fn ratios() {
    let tool = env!("CARGO_BIN_EXE_hotpatch");
    println!(
        "\nend to end / one plain `gcc -O2 -g -c` of the changed file; {RATIO_SAMPLES} samples, \
         medians (p10–p90), ms"
    );
    println!("| lines | plain compile | cold | cold ratio | warm | warm ratio | compile jobs cold / warm | load average |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for lines in RATIO_LINES {
        // One module: CHANGED_FILE, so its function CHANGED_FUNCTION changes.
        let functions = lines / 16;
        let files = CHANGED_FILE..CHANGED_FILE + 1;
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let build = dir.path().join("build");
        git_repo(&repo, |version| project(files.clone(), functions, version));
        write_tree(&build, &project(files.clone(), functions, 1));
        let changed = format!("m{CHANGED_FILE}.c");
        let actual = std::fs::read_to_string(build.join(&changed))
            .unwrap()
            .lines()
            .count();
        let plain_compile = || {
            let started = Instant::now();
            run(Command::new("gcc").current_dir(&build).args([
                "-O2",
                "-g",
                "-c",
                &changed,
                "-o",
                "changed.o",
            ]));
            started.elapsed().as_secs_f64() * 1000.0
        };
        run(Command::new("gcc")
            .current_dir(&build)
            .args(["-O2", "-g", "main.c", &changed, "-o", "program"]));
        let running = start(&build);
        let pid = running.0.id().to_string();
        let sample = |warm: bool| {
            let cache = tempfile::tempdir().unwrap();
            if warm {
                run(Command::new(tool)
                    .current_dir(&repo)
                    .env("XDG_CACHE_HOME", cache.path())
                    .args(["prepare", "v1"]));
            }
            let (wall, json) = apply_and_revert(&repo, &pid, cache.path());
            (wall, json["timings"]["compile_jobs"].as_u64().unwrap_or(0))
        };
        // Round by round, so a change in the machine's load weighs on all three alike.
        let load_before = load_average();
        let (mut plain, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RATIO_SAMPLES {
            plain.push(plain_compile());
            cold.push(sample(false));
            warm.push(sample(true));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            percentile(&v, 50)
        };
        let plain_ms = median(plain.clone());
        let walls = |v: &[(f64, u64)]| v.iter().map(|s| s.0).collect::<Vec<f64>>();
        println!(
            "| {actual} | {} | {} | {:.2} | {} | {:.2} | {} / {} | {load_before}–{} |",
            summary(plain),
            summary(walls(&cold)),
            median(walls(&cold)) / plain_ms,
            summary(walls(&warm)),
            median(walls(&warm)) / plain_ms,
            cold[0].1,
            warm[0].1,
            load_average(),
        );
    }
}

/// The one-minute load average, as `/proc/loadavg` says it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}
