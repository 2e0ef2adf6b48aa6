//! End-to-end tests of the applier against real processes: a two-file C target is built with gcc,
//! started, patched while it runs, and its output checked. No mocks.

use object::{Object as _, ObjectSymbol as _};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use hotpatch_applier::artifact::{Binding, ManifestFunction, MANIFEST_FORMAT};
use hotpatch_applier::{
    apply, plan, ApplyError, ApplyOptions, FunctionAction, Manifest, PatchObject, SymbolRef, Target,
};

const C_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c");

/// A started target; killed and reaped on drop whatever happens in the test.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the target stopped printing")
    }

    /// Reads lines until `pred` holds for one, within `secs` seconds.
    fn wait_for(&self, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("no matching line before the deadline");
            if pred(&line) {
                return line;
            }
        }
    }
}

/// One parsed `tick` line of the target.
#[derive(Debug, Clone, Copy)]
struct Tick {
    value: i64,
    ptr: i64,
    counter: i64,
}

fn tick(line: &str) -> Option<Tick> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        let at = words.iter().position(|w| *w == name)?;
        words.get(at + 1)?.parse::<i64>().ok()
    };
    if words.first() != Some(&"tick") {
        return None;
    }
    Some(Tick {
        value: field("value")?,
        ptr: field("ptr")?,
        counter: field("counter")?,
    })
}

fn read_mem(pid: i32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, addr).unwrap();
    buf
}

fn gcc(args: &[&str], cwd: &Path) {
    let status = Command::new("gcc")
        .args(args)
        .current_dir(cwd)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc {args:?} failed");
}

/// Copies the target sources to `dir/src/{main,lib}.c` and builds `dir/target`.
fn build_target(dir: &Path, pie: bool, strip: bool) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::copy(
        Path::new(C_DIR).join("apply_target_main.c"),
        dir.join("src/main.c"),
    )
    .unwrap();
    std::fs::copy(
        Path::new(C_DIR).join("apply_target_lib.c"),
        dir.join("src/lib.c"),
    )
    .unwrap();
    let mut args = vec!["-O2", "-g", "src/main.c", "src/lib.c", "-o", "target"];
    if !pie {
        args.push("-no-pie");
    }
    if strip {
        args.push("-s");
    }
    gcc(&args, dir);
    dir.join("target")
}

fn start(exe: &Path) -> Running {
    let mut child = Command::new(exe)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the target starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running { child, lines: rx }
}

/// Compiles a patch source the way the builder does, optionally embedding `manifest`.
fn compile_patch(dir: &Path, source: &str, manifest: Option<&Manifest>) -> Vec<u8> {
    let src = Path::new(C_DIR).join(source);
    let out = dir.join(format!("{source}.o"));
    let mut args: Vec<String> = [
        "-c",
        "-O2",
        "-fPIC",
        "-ffunction-sections",
        "-fdata-sections",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(manifest) = manifest {
        let escaped: String = manifest
            .to_json()
            .chars()
            .map(|c| match c {
                '"' => "\\\"".to_string(),
                '\\' => "\\\\".to_string(),
                '\n' => "\\n".to_string(),
                c => c.to_string(),
            })
            .collect();
        let inc = dir.join(format!("{source}.manifest.h"));
        let text = format!(
            "__attribute__((section(\".hotpatch.manifest\"), used)) static const char hp_manifest[] = \"{escaped}\";\n"
        );
        std::fs::write(&inc, text).unwrap();
        args.push(format!("-DHP_MANIFEST=\"{}\"", inc.display()));
    }
    args.extend([
        src.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    gcc(&args, dir);
    std::fs::read(out).unwrap()
}

fn manifest(functions: Vec<ManifestFunction>, bindings: Vec<Binding>) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        patch_id: "test-patch-1".into(),
        old_revision: None,
        new_revision: None,
        old_commit: None,
        new_commit: None,
        target_build_id: None,
        cflags: vec![],
        file_cflags: Default::default(),
        flags: Vec::new(),
        functions,
        bindings,
        new_data: vec![],
    }
}

fn replace(symbol: &str, target: SymbolRef) -> ManifestFunction {
    ManifestFunction {
        symbol: symbol.into(),
        target,
        action: FunctionAction::Replace,
        reason: "changed".into(),
        file: None,
        preimage: None,
        postimage: None,
    }
}

fn calls_binding() -> Binding {
    Binding {
        symbol: "hp_calls".into(),
        target: SymbolRef::FileLocal {
            name: "calls".into(),
            file: "src/lib.c".into(),
        },
    }
}

fn global(name: &str) -> SymbolRef {
    SymbolRef::Global { name: name.into() }
}

/// Reads a few lines, applies, and returns the last tick before and the report.
fn apply_to(running: &Running, patch: Vec<u8>) -> (Tick, hotpatch_applier::ApplyReport) {
    let mut before = None;
    for _ in 0..3 {
        before = tick(&running.next_line());
    }
    let target = Target::inspect(running.pid()).unwrap();
    let patch = PatchObject::parse(patch).unwrap();
    let plan = plan(&target, &patch).unwrap();
    // strlen is an IFUNC: the plan must use the implementation, not glibc's resolver.
    if let Some(strlen) = plan.resolutions.iter().find(|r| r.symbol == "strlen") {
        let resolver = dynsym_runtime_address(running.pid(), &strlen.module, "strlen");
        assert!(resolver.is_some(), "{strlen:?}");
        assert_ne!(Some(strlen.address), resolver, "{strlen:?}");
    }
    let report = apply(&target, &plan, &ApplyOptions::default()).unwrap();
    eprintln!("pause_us={} threads={}", report.pause_us, report.threads);
    (before.expect("a tick line"), report)
}

/// Runtime address of the `.dynsym` symbol `name` of the module at `path` in process `pid`
/// (load bias = start of the module's offset-0 mapping; true for glibc, whose first segment is at 0).
fn dynsym_runtime_address(pid: i32, path: &str, name: &str) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let base = maps.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 6 && f[5] == path && f[2] == "00000000")
            .then(|| u64::from_str_radix(f[0].split('-').next()?, 16).ok())?
    })?;
    let bytes = std::fs::read(path).ok()?;
    let file = object::File::parse(bytes.as_slice()).ok()?;
    let found = file.dynamic_symbols().find(|s| s.name() == Ok(name))?;
    Some(base + found.address())
}

fn manifest_patch_works(pie: bool) {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path(), pie, false);
    let m = manifest(
        vec![replace("value", global("value"))],
        vec![calls_binding()],
    );
    let patch = compile_patch(dir.path(), "apply_patch_manifest.c", Some(&m));
    let mut running = start(&exe);
    let (before, report) = apply_to(&running, patch);
    assert_eq!(report.patch_id, "test-patch-1");
    assert_eq!(report.threads, 1);
    let old = report.functions[0].old_address.expect("value was replaced");
    // The region starts with the ledger header recording the overwritten bytes.
    let header = read_mem(running.pid(), report.region_address, 4096);
    let record = hotpatch_applier::ledger::decode(&header).unwrap();
    assert_eq!(record.patch_id, "test-patch-1");
    assert_eq!(record.region_address, report.region_address);
    let range = record.functions[0].overwritten.clone().unwrap();
    assert_eq!(range.address, old);
    assert_eq!(range.original_hex.len(), 10);
    assert_eq!(read_mem(running.pid(), old, 1), vec![0xe9]);
    assert!(record.manifest.is_some());

    let first = running.wait_for(30, |l| tick(l).is_some_and(|t| t.value >= 1_000_000));
    let first = tick(&first).unwrap();
    // The static `calls` of lib.c continued (not reset), and so did the global counter.
    assert!(
        first.value - 1_000_000 > before.value,
        "{before:?} -> {first:?}"
    );
    assert!(first.counter > before.counter, "{before:?} -> {first:?}");
    // A function pointer stored before the patch reaches the new code.
    let next = tick(&running.wait_for(30, |l| tick(l).is_some())).unwrap();
    assert!(next.ptr >= 1_000_000 && next.value >= 1_000_000, "{next:?}");
    assert!(next.counter > first.counter);
    // The new code called printf, snprintf and strlen (an IFUNC) of libc.
    let patched = running.wait_for(30, |l| l.starts_with("patched calls="));
    let words: Vec<&str> = patched.split_whitespace().collect();
    assert_eq!(
        words.get(3).and_then(|w| w.parse::<usize>().ok()),
        Some(words[1].len()),
        "{patched}"
    );
    assert!(running.alive());
}

fn plain_patch_works(pie: bool) {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path(), pie, false);
    let patch = compile_patch(dir.path(), "apply_patch_plain.c", None);
    let mut running = start(&exe);
    let (before, report) = apply_to(&running, patch);
    assert!(report.patch_id.starts_with("plain-"));
    let line = running.wait_for(30, |l| {
        tick(l).is_some_and(|t| t.value >= 2_000_000 && t.ptr >= 2_000_000)
    });
    let after = tick(&line).unwrap();
    assert!(after.counter > before.counter, "{before:?} -> {after:?}");
    assert_eq!(after.ptr - 2_000_000, after.counter);
    assert!(running.alive());
}

#[test]
fn apply_manifest_patch_to_pie_target() {
    manifest_patch_works(true);
}

#[test]
fn apply_manifest_patch_to_non_pie_target() {
    manifest_patch_works(false);
}

#[test]
fn apply_plain_object_to_pie_target() {
    plain_patch_works(true);
}

#[test]
fn apply_plain_object_to_non_pie_target() {
    plain_patch_works(false);
}

fn plan_error(pie: bool, strip: bool, source: &str, manifest: Option<&Manifest>) -> ApplyError {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path(), pie, strip);
    let bytes = compile_patch(dir.path(), source, manifest);
    let running = start(&exe);
    running.next_line();
    let target = Target::inspect(running.pid()).unwrap();
    let patch = PatchObject::parse(bytes).unwrap();
    plan(&target, &patch).expect_err("plan must refuse")
}

#[test]
fn apply_refuses_missing_function() {
    let missing = SymbolRef::FileLocal {
        name: "nosuch".into(),
        file: "lib.c".into(),
    };
    let m = manifest(vec![replace("value", missing)], vec![calls_binding()]);
    let err = plan_error(true, false, "apply_patch_manifest.c", Some(&m));
    assert_eq!(
        err.to_string(),
        "the running binary has no symbol for `nosuch` (static in lib.c)"
    );
}

#[test]
fn apply_refuses_ambiguous_plain_name() {
    let err = plan_error(true, false, "apply_patch_ambiguous.c", None);
    let text = err.to_string();
    assert!(
        matches!(err, ApplyError::AmbiguousFunction { .. }),
        "{text}"
    );
    assert!(
        text.contains("main.c") && text.contains("lib.c") && text.contains("manifest"),
        "{text}"
    );
}

#[test]
fn apply_too_short_function_takes_its_jump_into_the_padding() {
    // `tiny` (3 bytes) is followed by alignment NOPs up to the next function: the jump fits.
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path(), false, false);
    let bytes = compile_patch(dir.path(), "apply_patch_tiny.c", None);
    let running = start(&exe);
    running.next_line();
    let target = Target::inspect(running.pid()).unwrap();
    let patch = PatchObject::parse(bytes).unwrap();
    let plan = plan(&target, &patch).expect("tiny is planned into its padding");
    assert_eq!(plan.functions[0].old_size, Some(3));
}

#[test]
fn apply_stripped_target_has_no_symbol_table_for_statics() {
    let add = ManifestFunction {
        symbol: "value".into(),
        target: global("value_v2"),
        action: FunctionAction::Add,
        reason: "new".into(),
        file: None,
        preimage: None,
        postimage: None,
    };
    let m = manifest(vec![add], vec![calls_binding()]);
    let err = plan_error(true, true, "apply_patch_manifest.c", Some(&m));
    let text = err.to_string();
    assert!(matches!(err, ApplyError::NoSymbolTable { .. }), "{text}");
    assert!(
        text.contains("no symbol table") && text.contains("`calls` (static in src/lib.c)"),
        "{text}"
    );
}

#[test]
fn apply_survives_damaged_objects() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        vec![replace("value", global("value"))],
        vec![calls_binding()],
    );
    let good = compile_patch(dir.path(), "apply_patch_manifest.c", Some(&m));
    let exe = build_target(dir.path(), true, false);
    let running = start(&exe);
    running.next_line();
    let target = Target::inspect(running.pid()).unwrap();
    for len in (0..good.len()).step_by(7) {
        let _ = PatchObject::parse(good[..len].to_vec());
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut bytes = good.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % bytes.len();
            bytes[at] = (seed >> 32) as u8;
        }
        if let Ok(patch) = PatchObject::parse(bytes) {
            let _ = plan(&target, &patch);
        }
    }
}

#[test]
fn apply_refuses_non_elf_and_wrong_objects() {
    assert!(matches!(
        PatchObject::parse(b"#!/bin/sh\n".to_vec()),
        Err(ApplyError::NotElf)
    ));
    let dir = tempfile::tempdir().unwrap();
    let exe = build_target(dir.path(), true, false);
    let err = PatchObject::parse(std::fs::read(exe).unwrap()).unwrap_err();
    assert!(err.to_string().contains("ET_DYN"), "{err}");
    let aarch64 = object::write::Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::Aarch64,
        object::Endianness::Little,
    );
    let err = PatchObject::parse(aarch64.write().unwrap()).unwrap_err();
    assert!(matches!(err, ApplyError::WrongObjectKind { .. }), "{err}");
}

fn build_threads_target(dir: &Path) -> PathBuf {
    let src = Path::new(C_DIR).join("apply_threads_main.c");
    let src = src.display().to_string();
    gcc(&["-O2", "-g", "-pthread", &src, "-o", "threads"], dir);
    dir.join("threads")
}

#[test]
fn apply_stops_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_threads_target(dir.path());
    let patch = compile_patch(dir.path(), "apply_patch_counter.c", None);
    let mut running = start(&exe);
    let (before, report) = apply_to(&running, patch);
    assert_eq!(report.threads, 2);
    let line = running.wait_for(30, |l| tick(l).is_some_and(|t| t.ptr >= 2_000_000));
    assert!(tick(&line).unwrap().counter > before.counter);
    assert!(running.alive());
}

#[test]
fn apply_waits_for_a_thread_inside_the_jump_then_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_threads_target(dir.path());
    let patch = compile_patch(dir.path(), "apply_patch_spin.c", None);
    let mut running = start(&exe);
    running.next_line();
    let target = Target::inspect(running.pid()).unwrap();
    let patch = PatchObject::parse(patch).unwrap();
    let plan = plan(&target, &patch).unwrap();
    let entry = plan.functions[0].old_address.unwrap();
    let before = read_mem(running.pid(), entry, 5);
    let options = ApplyOptions {
        timeout: Duration::from_millis(300),
        wait_return: false,
        threadwise: false,
    };
    let started = Instant::now();
    let err = apply(&target, &plan, &options).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::ThreadBusy { .. }), "{text}");
    assert!(
        text.contains("`spin`") && text.contains("thread "),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nothing was written, the region is gone and the process keeps running.
    assert_eq!(read_mem(running.pid(), entry, 5), before);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    assert!(!maps.contains("rwxp"));
    running.next_line();
    running.next_line();
    assert!(running.alive());
}

#[test]
fn an_ifunc_the_program_never_called_resolves_to_its_implementation() {
    // The threads target never calls strlen itself: the implementation comes from the IRELATIVE
    // slot through which glibc resolved its own calls, not from the resolver's address.
    let dir = tempfile::tempdir().unwrap();
    let exe = build_threads_target(dir.path());
    let bytes = compile_patch(dir.path(), "apply_patch_plain.c", None);
    let running = start(&exe);
    running.next_line();
    let target = Target::inspect(running.pid()).unwrap();
    let plan = plan(&target, &PatchObject::parse(bytes).unwrap()).unwrap();
    let strlen = plan
        .resolutions
        .iter()
        .find(|r| r.symbol == "strlen")
        .expect("strlen resolved");
    let libc = std::fs::read(&strlen.module).unwrap();
    let libc = object::File::parse(&*libc).unwrap();
    let resolver = libc
        .dynamic_symbols()
        .find(|s| s.name() == Ok("strlen"))
        .map(|s| s.address())
        .expect("libc defines strlen");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", running.pid())).unwrap();
    let bias = maps
        .lines()
        .find(|l| l.ends_with(&strlen.module) && l.split_whitespace().nth(2) == Some("00000000"))
        .and_then(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
        .expect("libc is mapped");
    assert_ne!(
        strlen.address,
        bias + resolver,
        "strlen resolved to its IFUNC resolver"
    );
    let executable = maps.lines().any(|l| {
        let mut fields = l.split_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        perms.contains('x') && lo <= strlen.address && strlen.address < hi
    });
    assert!(
        executable,
        "strlen at {:#x} is not in executable memory",
        strlen.address
    );
}
