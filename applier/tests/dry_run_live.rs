//! CASES.md §E dry_run_live: a live dry run ([`hotpatch_applier::check`]) attaches, resolves,
//! checks safety and detaches, and the process memory is byte-for-byte unchanged.
//!
//! The target sits in `pause()` (mode `quiet`), so nothing in it changes by itself: the test
//! compares `/proc/PID/maps` and the contents of every readable mapping (executable, libraries,
//! heap, stack, anonymous memory) before and after. Only the kernel's `[vvar]` pages (the clock)
//! are left out.

mod common;

use std::time::Duration;

use common::*;
use hotpatch_applier::{check, plan, ApplyOptions, PatchObject, Target};

/// `/proc/PID/maps` and the bytes of every readable mapping.
fn snapshot(pid: i32) -> (String, Vec<(String, Vec<u8>)>) {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut contents = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields.get(5).copied().unwrap_or("");
        if !fields[1].starts_with('r') || name.starts_with("[vvar") || name == "[vsyscall]" {
            continue;
        }
        let (lo, hi) = fields[0].split_once('-').unwrap();
        let lo = u64::from_str_radix(lo, 16).unwrap();
        let hi = u64::from_str_radix(hi, 16).unwrap();
        let mut buf = vec![0u8; (hi - lo) as usize];
        mem.read_exact_at(&mut buf, lo)
            .unwrap_or_else(|e| panic!("reading {line}: {e}"));
        contents.push((line.to_string(), buf));
    }
    (maps, contents)
}

#[test]
fn dry_run_live_leaves_the_process_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path());
    let mut running = start(&exe, &["quiet"]);
    running.wait_for(5, |l| l == "ready");
    std::thread::sleep(Duration::from_millis(100));
    let patch = compile_patch(
        dir.path(),
        "life_patch_v2.c",
        &manifest("p2", "value", "v1", "v2"),
    );

    let before = snapshot(running.pid());
    let target = Target::inspect(running.pid()).unwrap();
    let plan = plan(&target, &PatchObject::parse(patch).unwrap()).unwrap();
    let options = ApplyOptions {
        timeout: Duration::from_secs(2),
        wait_return: false,
    };
    let report = check(&target, &plan, &options).unwrap();
    let after = snapshot(running.pid());

    assert_eq!(report.threads, 1);
    assert_eq!(report.stops, 1);
    assert!(report.pause_us > 0);
    assert_eq!(before.0, after.0, "the mappings changed");
    assert_eq!(before.1.len(), after.1.len());
    for ((line, a), (_, b)) in before.1.iter().zip(&after.1) {
        if a != b {
            let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
            panic!("{line}: the bytes changed at offset 0x{at:x}");
        }
    }
    assert!(running.alive());
}
