//! Pause benchmark: applies and reverts a patch many times on a running multi-threaded target and
//! reports the longest single stop (`pause_us`) of each apply and revert as p50/p99.
//!
//! `cargo bench -p hotpatch-applier` (release build; needs gcc and ptrace rights). Scenarios:
//! one function on 1, 4, 32 and 256 threads and 20 functions on 32 threads, each applied with
//! the threadwise commit (threads switched one at a time) and beside it the stop-all commit:
//! the longest stop of any single thread, and how long every thread was stopped together.
//! `HOTPATCH_BENCH_ITERATIONS` changes the count (default 100).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::*;
use hotpatch_applier::{apply, plan, revert, ApplyOptions, PatchObject, Target};

/// Writes a target with `functions` small functions called in a loop by `threads` threads.
fn generated_target(functions: usize, threads: usize) -> String {
    let mut c = String::from(
        "#include <pthread.h>\n#include <stdio.h>\n#include <unistd.h>\nint counter;\n",
    );
    for k in 0..functions {
        let _ = writeln!(
            c,
            "__attribute__((noinline)) int f{k}(int x) {{ counter++; __asm__ volatile(\"\" ::\"r\"(x)); return x + {k}; }}"
        );
    }
    c.push_str("static void *loop(void *arg) {\n  (void)arg;\n  for (;;) {\n    int s = 0;\n");
    for k in 0..functions {
        let _ = writeln!(c, "    s += f{k}(1);");
    }
    let _ = write!(
        c,
        "    if (s < 0) printf(\"%d\\n\", s);\n    usleep(10000);\n  }}\n  return 0;\n}}\n\
         int main(void) {{\n  pthread_t t;\n  for (int i = 1; i < {threads}; i++) pthread_create(&t, 0, loop, 0);\n\
         printf(\"ready\\n\");\n  fflush(stdout);\n  loop(0);\n}}\n"
    );
    c
}

/// The patch replacing every `fK`.
fn generated_patch(functions: usize) -> String {
    let mut c = String::from("extern int counter;\n");
    for k in 0..functions {
        let _ = writeln!(
            c,
            "int f{k}(int x) {{ counter++; __asm__ volatile(\"\" ::\"r\"(x)); return x + {}; }}",
            1000 + k
        );
    }
    c.push_str("#ifdef HP_MANIFEST\n#include HP_MANIFEST\n#endif\n");
    c
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    let at = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or(0)
}

fn scenario(functions: usize, threads: usize, iterations: usize, stop_all: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("bench_target.c");
    std::fs::write(&src, generated_target(functions, threads)).expect("write target");
    let exe = build_program(dir.path(), &src, "bench_target");
    let patch_src = dir.path().join("bench_patch.c");
    std::fs::write(&patch_src, generated_patch(functions)).expect("write patch");
    let names: Vec<String> = (0..functions).map(|k| format!("f{k}")).collect();
    let object = compile_patch_file(dir.path(), &patch_src, &manifest_many("bench", &names));

    let running = start(&exe, &[]);
    running.wait_for(5, |l| l == "ready");
    let target = Target::inspect(running.pid()).expect("inspect");
    let plan = plan(&target, &PatchObject::parse(object).expect("parse")).expect("plan");
    let options = ApplyOptions {
        timeout: Duration::from_secs(3),
        wait_return: false,
        threadwise: !stop_all,
    };
    let (mut applies, mut reverts, mut stopped) = (Vec::new(), Vec::new(), 0usize);
    let mut together = Vec::new();
    let mut strategy = String::new();
    for _ in 0..iterations {
        let report = apply(&target, &plan, &options).expect("apply");
        stopped = report.threads;
        applies.push(report.commit.max_thread_stop_us);
        together.push(report.commit.all_stopped_us);
        strategy = report.commit.strategy.clone();
        let report = revert(running.pid(), None, &options).expect("revert");
        reverts.push(report.pause_us);
    }
    applies.sort_unstable();
    reverts.sort_unstable();
    together.sort_unstable();
    println!(
        "{functions} function(s), {stopped} threads, {iterations} iterations, {strategy}: \
         apply longest thread stop p50 {} us p99 {} us, all stopped p50 {} us p99 {} us; \
         revert pause p50 {} us p99 {} us",
        percentile(&applies, 50),
        percentile(&applies, 99),
        percentile(&together, 50),
        percentile(&together, 99),
        percentile(&reverts, 50),
        percentile(&reverts, 99),
    );
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let iterations = std::env::var("HOTPATCH_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 100 } else { 3 });
    for (functions, threads) in [(1, 1), (1, 4), (1, 32), (1, 256), (20, 32)] {
        for stop_all in [false, true] {
            scenario(functions, threads, iterations, stop_all);
        }
    }
}
