//! `cargo bench -p hotpatch-differ`: diffs two revisions of a generated C file of more than 8 MB
//! with more than 5,000 functions, a few dozen of them changed, and prints the median time of the
//! whole diff (both sides parsed, in parallel) and of indexing one side.

use std::time::{Duration, Instant};

use hotpatch_differ::index::Index;
use hotpatch_differ::{diff_snapshots, Snapshot};

const FUNCTIONS: usize = 6_000;
const CHANGED: usize = 40;
const RUNS: usize = 7;

/// One generated function: loops, a switch, calls, a static local, comments.
fn function(i: usize, changed: bool) -> String {
    let mut body = String::new();
    body.push_str(&format!(
        "/* function {i}: generated for the benchmark */\nint work_{i}(struct item *items, int count, const char *name)\n{{\n    static int calls_{i};\n    int total = 0;\n    calls_{i}++;\n"
    ));
    for j in 0..6 {
        body.push_str(&format!(
            "    for (int k = 0; k < count; k++) {{\n        switch (items[k].kind) {{\n        case {j}: total += items[k].value * {j} + helper_{j}(name, k); break;\n        default: total -= LIMIT(items[k].value, {j}); /* clamp */\n        }}\n    }}\n"
        ));
    }
    let tail = if changed { "total + 1" } else { "total" };
    body.push_str(&format!("    return {tail};\n}}\n\n"));
    body
}

fn source(changed: &[usize]) -> String {
    let mut text = String::from(
        "#include <string.h>\n#define LIMIT(v, n) ((v) > (n) ? (n) : (v))\nstruct item { int kind; int value; };\n",
    );
    for j in 0..12 {
        text.push_str(&format!("int helper_{j}(const char *name, int k);\n"));
    }
    for i in 0..FUNCTIONS {
        text.push_str(&function(i, changed.contains(&i)));
    }
    text
}

/// Resident memory figures of this process from `/proc/self/status` (`VmRSS` or `VmHWM`), in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .map_or(0, |kb: u64| kb * 1024)
}

/// How much the peak resident memory rose while `run` ran: the kernel's high-water mark is reset
/// first (`5` to `/proc/self/clear_refs`), so the figure is this run's own.
fn peak_rise(run: impl FnOnce()) -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_bytes("VmRSS:");
    run();
    status_bytes("VmHWM:").saturating_sub(before)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let changed: Vec<usize> = (0..CHANGED).map(|i| i * (FUNCTIONS / CHANGED)).collect();
    let (old_src, new_src) = (source(&[]), source(&changed));
    let snapshot = |label: &str, text: &str| Snapshot {
        label: label.to_string(),
        files: [("big.c".to_string(), text.as_bytes().to_vec())].into(),
        commit: None,
    };
    let (old, new) = (snapshot("old", &old_src), snapshot("new", &new_src));
    println!(
        "input: {:.1} MB per side, {FUNCTIONS} functions, {CHANGED} changed",
        new_src.len() as f64 / 1e6
    );
    // First, while nothing has been allocated and freed yet, so the heap holds no reused memory.
    let input = (old_src.len() + new_src.len()) as f64;
    let rise = peak_rise(|| {
        let changes = diff_snapshots(&old, &new);
        assert_eq!(changes.functions.len(), CHANGED);
    }) as f64;
    println!(
        "peak memory of one diff: {:.0} MB above the start, {:.1}x both sides' input ({:.1}x one side)",
        rise / 1e6,
        rise / input,
        rise * 2.0 / input
    );
    // The piecewise parse (new side parsed only where it changed) indexes exactly like a
    // parse of each whole file.
    let (old_index, new_index) = Index::parse_pair(&old_src, &new_src);
    assert!(old_index == Index::parse_whole(&old_src));
    assert!(new_index == Index::parse_whole(&new_src));
    let mut diffs = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let changes = diff_snapshots(&old, &new);
        diffs.push(start.elapsed());
        assert_eq!(changes.functions.len(), CHANGED);
    }
    let mut one_side = Vec::new();
    for _ in 0..RUNS.min(3) {
        let start = Instant::now();
        let index = Index::parse(&new_src);
        one_side.push(start.elapsed());
        assert!(index.items.len() > FUNCTIONS);
    }
    let mut whole = Vec::new();
    for _ in 0..RUNS.min(3) {
        let start = Instant::now();
        let index = Index::parse_whole(&new_src);
        whole.push(start.elapsed());
        assert!(index.items.len() > FUNCTIONS);
    }
    let mut parse_only = Vec::new();
    for _ in 0..RUNS.min(3) {
        let mut parser = tree_sitter::Parser::new();
        let loaded = parser.set_language(&tree_sitter_c::LANGUAGE.into());
        let start = Instant::now();
        let tree = loaded.ok().and_then(|_| parser.parse(&new_src, None));
        parse_only.push(start.elapsed());
        assert!(tree.is_some());
    }
    println!(
        "tree-sitter parse alone, one side: median {:.0} ms",
        median(parse_only).as_secs_f64() * 1e3
    );
    println!(
        "whole diff of both sides (old side in pieces on every core, new side parsed only where it changed): median {:.0} ms over {RUNS} runs",
        median(diffs).as_secs_f64() * 1e3
    );
    println!(
        "index one side (in pieces, on every core): median {:.0} ms",
        median(one_side).as_secs_f64() * 1e3
    );
    println!(
        "index one side parsed whole: median {:.0} ms",
        median(whole).as_secs_f64() * 1e3
    );
}
