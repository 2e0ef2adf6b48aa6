//! Pause benchmark: applies and reverts a patch many times on a running multi-threaded target and
//! reports the longest single stop (`pause_us`) of each apply and revert as p50/p99.
//!
//! `cargo bench -p hotpatch-applier` (release build; needs gcc and ptrace rights). Scenarios:
//! one function on 1, 4, 32 and 256 threads and 20 functions on 32 threads, each applied with
//! the threadwise commit (threads switched one at a time) and beside it the stop-all commit:
//! the longest stop of any single thread, and how long every thread was stopped together.
//! `HOTPATCH_BENCH_ITERATIONS` changes the count (default 100). Beside what the tool reports,
//! the target times itself: the longest round of calls any thread made, and the latest any
//! thread woke from its 10 ms sleep, in a window with no patch and in the window of each apply
//! and each revert (see `generated_target`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;
use hotpatch_applier::{apply, plan, revert, ApplyOptions, PatchObject, Target};

/// Writes a target with `functions` small functions called in a loop by `threads` threads, each
/// round of calls followed by a 10 ms sleep. Each thread times, on its own clock, every round of
/// calls (`worst_ns`: how much longer a call of a patched function took) and every turn of its
/// loop beyond the 10 ms (`late_ns`: a thread stopped while it sleeps wakes late); at a
/// `SIGUSR1` the main thread prints `worst CALLS LATE` (nanoseconds, the longest of each since
/// the last report) and starts a new window: the pause as the target saw it, independent of
/// what the tool reports.
fn generated_target(functions: usize, threads: usize) -> String {
    let mut c = String::from(
        "#include <pthread.h>\n#include <signal.h>\n#include <stdio.h>\n#include <time.h>\n\
         #include <unistd.h>\nint counter;\nstatic long worst_ns, late_ns;\n\
         static volatile sig_atomic_t report;\nstatic void on_usr1(int s) { (void)s; report = 1; }\n\
         static long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);\n\
         return t.tv_sec * 1000000000L + t.tv_nsec; }\n\
         static void keep_longest(long *at, long took) { long seen = __atomic_load_n(at, __ATOMIC_RELAXED);\n\
         while (took > seen && !__atomic_compare_exchange_n(at, &seen, took, 0, __ATOMIC_RELAXED, \
         __ATOMIC_RELAXED)) {} }\n",
    );
    for k in 0..functions {
        let _ = writeln!(
            c,
            "__attribute__((noinline)) int f{k}(int x) {{ counter++; __asm__ volatile(\"\" ::\"r\"(x)); return x + {k}; }}"
        );
    }
    c.push_str(
        "static void *loop(void *arg) {\n  long turn = now_ns();\n  for (;;) {\n    int s = 0;\n    long began = now_ns();\n",
    );
    for k in 0..functions {
        let _ = writeln!(c, "    s += f{k}(1);");
    }
    let _ = write!(
        c,
        "    keep_longest(&worst_ns, now_ns() - began);\n\
         if (arg && report) {{ report = 0; long calls = __atomic_exchange_n(&worst_ns, 0, __ATOMIC_RELAXED);\n\
         printf(\"worst %ld %ld\\n\", calls, __atomic_exchange_n(&late_ns, 0, __ATOMIC_RELAXED));\n\
         fflush(stdout); }}\n\
         if (s < 0) printf(\"%d\\n\", s);\n    usleep(10000);\n\
         long now = now_ns();\n    keep_longest(&late_ns, now - turn - 10000000L);\n    turn = now;\n  }}\n  return 0;\n}}\n\
         int main(void) {{\n  pthread_t t;\n  signal(SIGUSR1, on_usr1);\n\
         for (int i = 1; i < {threads}; i++) pthread_create(&t, 0, loop, 0);\n\
         printf(\"ready\\n\");\n  fflush(stdout);\n  loop(&t);\n}}\n"
    );
    c
}

/// What the target timed itself in one window (see `generated_target`), in microseconds.
#[derive(Clone, Copy)]
struct Seen {
    /// The longest round of calls of the patched functions.
    calls: u64,
    /// The longest a thread woke late from its sleep.
    late: u64,
}

/// What the threads of `running` timed since the last call.
fn target_seen(running: &Running) -> Seen {
    // SAFETY: kill(2) on the target's pid, which the guard keeps alive.
    unsafe { nix::libc::kill(running.pid(), nix::libc::SIGUSR1) };
    let line = running.wait_for(30, |l| l.starts_with("worst "));
    let mut fields = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<i64>().expect("worst CALLS LATE").max(0) as u64 / 1000);
    Seen {
        calls: fields.next().expect("CALLS"),
        late: fields.next().expect("LATE"),
    }
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
    let (mut idle, mut seen_apply, mut seen_revert) = (Vec::new(), Vec::new(), Vec::new());
    let mut strategy = String::new();
    target_seen(&running);
    for _ in 0..iterations {
        let began = Instant::now();
        let report = apply(&target, &plan, &options).expect("apply");
        seen_apply.push(target_seen(&running));
        let window = began.elapsed();
        stopped = report.threads;
        applies.push(report.commit.max_thread_stop_us);
        together.push(report.commit.all_stopped_us);
        strategy = report.commit.strategy.clone();
        let report = revert(running.pid(), None, &options).expect("revert");
        reverts.push(report.pause_us);
        seen_revert.push(target_seen(&running));
        // A window as long as the apply's, with no patch work: what the target sees anyway.
        std::thread::sleep(window);
        idle.push(target_seen(&running));
    }
    for samples in [&mut applies, &mut reverts, &mut together] {
        samples.sort_unstable();
    }
    let seen = |windows: &[Seen], pick: fn(&Seen) -> u64| {
        let mut v: Vec<u64> = windows.iter().map(pick).collect();
        v.sort_unstable();
        format!(
            "p50 {} us p99 {} us",
            percentile(&v, 50),
            percentile(&v, 99)
        )
    };
    println!(
        "{functions} function(s), {stopped} threads, {iterations} iterations, {strategy}: \
         apply longest thread stop p50 {} us p99 {} us, all stopped p50 {} us p99 {} us; \
         revert pause p50 {} us p99 {} us; the target timed: longest round of calls with no \
         patch {}, across the apply {}, across the revert {}; latest wake-up with no patch {}, \
         across the apply {}, across the revert {}",
        percentile(&applies, 50),
        percentile(&applies, 99),
        percentile(&together, 50),
        percentile(&together, 99),
        percentile(&reverts, 50),
        percentile(&reverts, 99),
        seen(&idle, |s| s.calls),
        seen(&seen_apply, |s| s.calls),
        seen(&seen_revert, |s| s.calls),
        seen(&idle, |s| s.late),
        seen(&seen_apply, |s| s.late),
        seen(&seen_revert, |s| s.late),
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
