//! Call-cost benchmark: calls per second through a patched function against the same function
//! unpatched. `cargo bench --bench call_cost` (release build; needs gcc and ptrace rights).
//!
//! The target calls a small `noipa` function `f` in a tight loop and prints how many calls per
//! second each round of 10 million made. The patch is a plain relocatable object holding the same
//! `f`: once applied, every call enters the old `f`, takes the `jmp` written over its entry and
//! runs the new copy. To cancel out the load of the machine drifting, the bench alternates
//! unpatched and patched phases (apply, then revert) and reads `ROUNDS` rounds in each, dropping
//! the round during which the state changed. It prints the median and 10th-90th percentiles of
//! each state, and the difference in nanoseconds per call.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use hotpatch_applier::{apply, plan, revert, ApplyOptions, PatchObject, Target};

const PHASES: usize = 5;
const ROUNDS: usize = 10;

const FUNCTION: &str = "__attribute__((noipa)) long f(long x)\n{\n    return x * 3 + 1;\n}\n";

const DRIVER: &str = r#"#include <stdio.h>
#include <time.h>

long f(long x);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void)
{
    printf("ready\n");
    fflush(stdout);
    for (int round = 0; round < 100000; round++) {
        long acc = 0;
        double start = now();
        for (long i = 0; i < 10000000; i++)
            acc += f(i);
        printf("rate=%.0f acc=%ld\n", 10000000 / (now() - start), acc);
        fflush(stdout);
    }
    return 0;
}
"#;

/// A running target, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gcc(dir: &Path, args: &[&str]) {
    let status = Command::new("gcc")
        .current_dir(dir)
        .args(args)
        .status()
        .expect("gcc");
    assert!(status.success(), "gcc {args:?}");
}

/// Reads `count` rounds and returns their calls per second.
fn rounds(lines: &mut Lines<BufReader<ChildStdout>>, count: usize) -> Vec<f64> {
    (0..count)
        .map(|_| {
            let line = lines.next().expect("a round").expect("read");
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("rate="))
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("bad line {line:?}"))
        })
        .collect()
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100]
}

fn describe(mut rates: Vec<f64>) -> (f64, String) {
    rates.sort_by(f64::total_cmp);
    let median = percentile(&rates, 50);
    (
        median,
        format!(
            "{:.0} M calls/s (p10–p90 {:.0}–{:.0}), {:.2} ns/call",
            median / 1e6,
            percentile(&rates, 10) / 1e6,
            percentile(&rates, 90) / 1e6,
            1e9 / median
        ),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes benches this way
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.c"), FUNCTION).unwrap();
    std::fs::write(dir.path().join("main.c"), DRIVER).unwrap();
    gcc(dir.path(), &["-O2", "-g", "main.c", "f.c", "-o", "target"]);
    gcc(
        dir.path(),
        &[
            "-O2",
            "-fPIC",
            "-ffunction-sections",
            "-c",
            "f.c",
            "-o",
            "patch.o",
        ],
    );
    let mut child = Command::new(dir.path().join("target"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start target");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let running = Running(child);
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = running.0.id() as i32;
    let target = Target::inspect(pid).expect("inspect");
    let patch = PatchObject::parse(std::fs::read(dir.path().join("patch.o")).unwrap()).unwrap();
    let plan = plan(&target, &patch).expect("plan");
    let options = ApplyOptions {
        timeout: Duration::from_secs(5),
        wait_return: false,
        threadwise: false,
    };

    rounds(&mut lines, 3); // warm-up
    let (mut unpatched, mut patched) = (Vec::new(), Vec::new());
    for _ in 0..PHASES {
        unpatched.extend(rounds(&mut lines, ROUNDS));
        apply(&target, &plan, &options).expect("apply");
        rounds(&mut lines, 1); // the round the jump landed in
        patched.extend(rounds(&mut lines, ROUNDS));
        revert(pid, None, &options).expect("revert");
        rounds(&mut lines, 1);
    }
    let (before, before_text) = describe(unpatched);
    let (after, after_text) = describe(patched);
    println!(
        "call cost, {} rounds of 10 million calls in each state over {PHASES} alternating phases:",
        PHASES * ROUNDS
    );
    println!("  unpatched f: {before_text}");
    println!("  patched f:   {after_text}");
    println!(
        "  through the jump: {:+.2} ns/call ({:+.1} % calls/s, medians)",
        1e9 / after - 1e9 / before,
        (after / before - 1.0) * 100.0
    );
}
