//! DWARF index benchmark (issue 12, performance): how long reading the inline map of a binary
//! with about 10 MB of debug information takes, reading it back from the bytes a previous run
//! stored (the cache's path: the file read, the table decoded, and what a patch asks of it —
//! one function's patch set and declared lines), and the type layouts of one of its files (the
//! proof's per-file read).
//!
//! `cargo bench -p hotpatch-applier --bench dwarf_index` (release build; needs gcc). It
//! generates a C program of `HOTPATCH_BENCH_FUNCTIONS` (default 24,000) functions over 8 files,
//! each with its own struct and an inlined helper, builds it with `-O2 -g`, and reads it
//! `HOTPATCH_BENCH_ITERATIONS` (default 15) times (`HOTPATCH_BENCH_EXE` reads that binary instead).

use std::fmt::Write as _;
use std::time::Instant;

use hotpatch_applier::type_layout::unit_layouts;
use hotpatch_applier::InlineMap;
use object::{Object, ObjectSection};

const FILES: usize = 8;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One file of the program: `count` functions starting at `first`.
fn file(first: usize, count: usize) -> String {
    let mut c = String::from("int sink(int);\n");
    for k in first..first + count {
        let _ = writeln!(
            c,
            "struct s{k} {{ int a; long b; char name[8]; unsigned flag : 1; }};\n\
             static inline int h{k}(struct s{k} *p, int x) {{ return p->a * x + (int)p->b + p->flag; }}\n\
             __attribute__((noinline)) int f{k}(struct s{k} *p, int x) {{ int r = h{k}(p, x); if (r > 3) r += sink(x); return r; }}"
        );
    }
    c
}

fn median(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// Generates and builds the program in `dir`; returns the executable's path.
fn build(dir: &std::path::Path, functions: usize) -> std::path::PathBuf {
    let per_file = functions.div_ceil(FILES);
    let mut sources = Vec::new();
    for i in 0..FILES {
        let name = format!("part{i}.c");
        std::fs::write(dir.join(&name), file(i * per_file, per_file)).unwrap();
        sources.push(name);
    }
    std::fs::write(
        dir.join("main.c"),
        "int sink(int x) { return x; }\nint main(void) { return 0; }\n",
    )
    .unwrap();
    sources.push("main.c".into());
    let exe = dir.join("big");
    let status = std::process::Command::new("gcc")
        .args(["-O2", "-g", "-o"])
        .arg(&exe)
        .args(&sources)
        .current_dir(dir)
        .status()
        .expect("gcc runs");
    assert!(status.success());
    exe
}

fn main() {
    let functions = env("HOTPATCH_BENCH_FUNCTIONS", 24_000);
    let iterations = env("HOTPATCH_BENCH_ITERATIONS", 15).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    // `HOTPATCH_BENCH_EXE`: read that binary instead of building one (a profile, a real program).
    let exe = match std::env::var_os("HOTPATCH_BENCH_EXE") {
        Some(path) => std::path::PathBuf::from(path),
        None => build(dir.path(), functions),
    };
    let bytes = std::fs::read(&exe).unwrap();
    let debug: u64 = object::File::parse(&*bytes)
        .unwrap()
        .sections()
        .filter(|s| s.name().is_ok_and(|n| n.starts_with(".debug_")))
        .map(|s| s.size())
        .sum();
    let mut index = Vec::new();
    let mut cached = Vec::new();
    let mut layouts = Vec::new();
    let mut entries = 0;
    let mut types = 0;
    for _ in 0..iterations {
        let start = Instant::now();
        let map = InlineMap::from_elf(&bytes).expect("debug information");
        index.push(start.elapsed().as_secs_f64() * 1000.0);
        // Dropping it is not building it (a map lives as long as its process).
        entries = map.len();
        // The cached path: the bytes a previous run stored, read back and decoded.
        let file = dir.path().join("map");
        std::fs::write(&file, map.to_bytes()).unwrap();
        let name = format!("f{}", 3 * functions.div_ceil(FILES) + 1);
        drop(map);
        let start = Instant::now();
        let again = InlineMap::from_bytes(std::fs::read(&file).unwrap()).expect("decodes");
        // What a patch asks: the patch set of one changed function, and its declared lines.
        let set = again.patch_set(&[(name.clone(), "part3.c".into())]);
        let lines = again.decl_lines(&name, "part3.c");
        cached.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(again.len(), entries);
        assert!(!set.is_empty() && !lines.is_empty(), "{name}: {set:?}");
        drop(again);
        let start = Instant::now();
        let units = unit_layouts(&bytes, Some("part3.c")).expect("debug information");
        layouts.push(start.elapsed().as_secs_f64() * 1000.0);
        types = units.iter().map(Vec::len).sum();
    }
    let (p50, p10, p90) = median(&mut index);
    println!(
        "inline map of {}, {:.1} MB of debug information: {entries} entries, median {p50:.0} ms ({p10:.0}-{p90:.0}) over {iterations} reads",
        exe.display(),
        debug as f64 / 1e6
    );
    let (p50, p10, p90) = median(&mut cached);
    println!(
        "the same map read back from the bytes a previous run stored: median {p50:.1} ms ({p10:.1}-{p90:.1})"
    );
    let (p50, p10, p90) = median(&mut layouts);
    println!(
        "type layouts of one of its {FILES} files: {types} types, median {p50:.1} ms ({p10:.1}-{p90:.1})"
    );
}
