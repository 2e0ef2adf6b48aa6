//! Pause benchmark: how long the target's threads are stopped to commit a patch of 1, 5 and 20
//! functions on targets with 1, 4 and 32 threads, beside the floor — a bare stop-all/resume of
//! the same process that writes nothing. Run with `cargo bench --bench pause_matrix`; it prints a
//! Markdown table of medians with the 10th-90th percentile spread.
//!
//! Each sample starts a fresh target (so patches never stack), applies a plain relocatable object
//! that replaces every function through the applier library, and records the reported `pause_us`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use hotpatch_applier::ptrace::StoppedProcess;
use hotpatch_applier::{apply, plan, ApplyOptions, PatchObject, Target};

const SAMPLES: usize = 15;

/// A running target, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn functions_source(count: usize, version: u32) -> String {
    let mut text = String::from("volatile int sink;\n");
    for i in 0..count {
        text.push_str(&format!(
            "__attribute__((noinline, noclone)) int f{i}(int x)\n{{\n    sink += x;\n    return x * {i} + {version};\n}}\n"
        ));
    }
    text
}

fn driver_source(count: usize, threads: usize) -> String {
    let declarations: String = (0..count).map(|i| format!("int f{i}(int);\n")).collect();
    let calls: String = (0..count)
        .map(|i| format!("        total += f{i}(n);\n"))
        .collect();
    format!(
        r#"#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
{declarations}
static void *work(void *arg)
{{
    long total = 0;
    struct timespec pause = {{0, 1000000}};
    for (int n = 0;; n++) {{
{calls}        nanosleep(&pause, NULL);
    }}
    return (void *)total;
}}

int main(void)
{{
    pthread_t id;
    for (int i = 1; i < {threads}; i++)
        pthread_create(&id, NULL, work, NULL);
    printf("ready\n");
    fflush(stdout);
    work(NULL);
}}
"#
    )
}

fn gcc(dir: &Path, args: &[&str]) {
    let status = Command::new("gcc")
        .current_dir(dir)
        .args(args)
        .status()
        .expect("gcc");
    assert!(status.success(), "gcc {args:?}");
}

/// Builds the target executable and the patch object for one configuration.
fn build(dir: &Path, functions: usize, threads: usize) -> (PathBuf, Vec<u8>) {
    std::fs::write(dir.join("functions.c"), functions_source(functions, 1)).unwrap();
    std::fs::write(dir.join("main.c"), driver_source(functions, threads)).unwrap();
    std::fs::write(
        dir.join("patch.c"),
        functions_source(functions, 2).replace("volatile int sink;", "extern volatile int sink;"),
    )
    .unwrap();
    gcc(
        dir,
        &[
            "-O2",
            "-g",
            "-pthread",
            "main.c",
            "functions.c",
            "-o",
            "target",
        ],
    );
    gcc(
        dir,
        &[
            "-O2",
            "-fPIC",
            "-ffunction-sections",
            "-fdata-sections",
            "-c",
            "patch.c",
            "-o",
            "patch.o",
        ],
    );
    (
        dir.join("target"),
        std::fs::read(dir.join("patch.o")).unwrap(),
    )
}

fn start(binary: &Path, threads: usize) -> Running {
    let mut child = Command::new(binary)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start target");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let running = Running(child);
    // Wait until every thread exists, so each sample stops the same number of threads.
    let tasks = format!("/proc/{}/task", running.0.id());
    while std::fs::read_dir(&tasks).map(|d| d.count()).unwrap_or(0) < threads {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    running
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() - 1) * p / 100]
}

fn summary(mut values: Vec<u64>) -> String {
    values.sort_unstable();
    format!(
        "{} ({}–{})",
        percentile(&values, 50),
        percentile(&values, 10),
        percentile(&values, 90)
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches this way
    }
    println!("| functions | threads | pause_us median (p10–p90) | floor: stop-all + resume, µs | samples |");
    println!("|---:|---:|---:|---:|---:|");
    for functions in [1usize, 5, 20] {
        for threads in [1usize, 4, 32] {
            let dir = tempfile::tempdir().unwrap();
            let (binary, object) = build(dir.path(), functions, threads);
            let mut pauses = Vec::new();
            let mut floors = Vec::new();
            for _ in 0..SAMPLES {
                let running = start(&binary, threads);
                let pid = running.0.id() as i32;
                let started = Instant::now();
                let stopped = StoppedProcess::stop_all(pid).expect("stop all");
                stopped.resume().expect("resume");
                floors.push(started.elapsed().as_micros() as u64);
                let target = Target::inspect(pid).expect("inspect");
                let patch = PatchObject::parse(object.clone()).expect("parse");
                let plan = plan(&target, &patch).expect("plan");
                let stop_all = ApplyOptions {
                    threadwise: false,
                    ..ApplyOptions::default()
                };
                let report = apply(&target, &plan, &stop_all).expect("apply");
                assert_eq!(report.threads, threads);
                pauses.push(report.pause_us);
            }
            println!(
                "| {functions} | {threads} | {} | {} | {SAMPLES} |",
                summary(pauses),
                summary(floors)
            );
        }
    }
}
