//! Helpers shared by the lifecycle tests and the benchmark: build and start the C lifecycle target
//! (killed and reaped on drop, on every path), compile patches with a manifest, apply them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use hotpatch_applier::artifact::{ManifestFunction, MANIFEST_FORMAT};
use hotpatch_applier::{
    apply, plan, ApplyOptions, ApplyReport, FunctionAction, Manifest, PatchObject, SymbolRef,
    Target,
};

/// The C sources of the tests (this file is also used by the workspace root's tests).
pub fn c_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = root.join("tests/c");
    if here.join("life_target.c").exists() {
        here
    } else {
        root.join("applier/tests/c")
    }
}

/// A started target; killed and reaped on drop whatever happens in the test.
pub struct Running {
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
    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Reads lines until `pred` holds for one, within `secs` seconds.
    pub fn wait_for(&self, secs: u64, pred: impl Fn(&str) -> bool) -> String {
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

    /// Drops every line printed so far.
    pub fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }
}

/// Waits until the main thread of `pid` is blocked in system call `number` (x86-64 numbers, as
/// `/proc/PID/syscall` shows them), up to 30 s: the event a test waits for instead of a sleep.
pub fn wait_until_in_syscall(pid: i32, number: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if now.split_whitespace().next() == Some(number.to_string().as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} not blocked in system call {number} within 30 s: {now}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Compiles `tests/c/life_target.c` into `dir/life`.
pub fn build_target(dir: &Path) -> PathBuf {
    build_program(dir, &c_dir().join("life_target.c"), "life")
}

/// Compiles the C program `src` (with `-O2 -g -pthread`) into `dir/name`.
pub fn build_program(dir: &Path, src: &Path, name: &str) -> PathBuf {
    build_program_at(dir, src, name, "-O2")
}

/// [`build_program`] at optimisation level `opt` (`-O0`: every function starts with a frame
/// push, so no branch lies within the bytes a jump covers).
pub fn build_program_at(dir: &Path, src: &Path, name: &str, opt: &str) -> PathBuf {
    let exe = dir.join(name);
    gcc(
        &[
            opt,
            "-g",
            "-pthread",
            &src.display().to_string(),
            "-o",
            &exe.display().to_string(),
        ],
        dir,
    );
    exe
}

/// Starts `exe` with `args`, its stdout read line by line.
pub fn start(exe: &Path, args: &[&str]) -> Running {
    start_with_env(exe, args, &[])
}

/// Starts `exe` with `args` and the extra environment variables `env`, its stdout read line by
/// line.
pub fn start_with_env(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut child = Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the target starts");
    let stdout = child.stdout.take().expect("stdout is piped");
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

/// Runs gcc with `args` in `cwd`; fails the test with gcc's diagnostics if it fails.
pub fn gcc(args: &[&str], cwd: &Path) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A manifest replacing the global `function`, with a patch id and revisions.
pub fn manifest(patch_id: &str, function: &str, old: &str, new: &str) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        patch_id: patch_id.into(),
        old_revision: Some(old.into()),
        new_revision: Some(new.into()),
        old_commit: None,
        new_commit: None,
        target_build_id: None,
        cflags: vec![],
        file_cflags: Default::default(),
        flags: Vec::new(),
        functions: vec![ManifestFunction {
            symbol: function.into(),
            target: SymbolRef::Global {
                name: function.into(),
            },
            action: FunctionAction::Replace,
            reason: "changed".into(),
            file: None,
            preimage: None,
            postimage: None,
        }],
        bindings: vec![],
        new_data: vec![],
    }
}

/// A manifest replacing each global of `functions`.
pub fn manifest_many(patch_id: &str, functions: &[String]) -> Manifest {
    let mut m = manifest(patch_id, "unused", "v1", "v2");
    m.functions = functions
        .iter()
        .map(|name| ManifestFunction {
            symbol: name.clone(),
            target: SymbolRef::Global { name: name.clone() },
            action: FunctionAction::Replace,
            reason: "changed".into(),
            file: None,
            preimage: None,
            postimage: None,
        })
        .collect();
    m
}

/// Compiles `tests/c/<source>` the way the builder does, embedding `manifest`.
pub fn compile_patch(dir: &Path, source: &str, manifest: &Manifest) -> Vec<u8> {
    compile_patch_file(dir, &c_dir().join(source), manifest)
}

/// Compiles the C file `src` the way the builder does, embedding `manifest`.
pub fn compile_patch_file(dir: &Path, src: &Path, manifest: &Manifest) -> Vec<u8> {
    compile_patch_file_with(dir, src, manifest, &[])
}

/// [`compile_patch_file`] with `extra` compiler flags after the builder's.
pub fn compile_patch_file_with(
    dir: &Path,
    src: &Path,
    manifest: &Manifest,
    extra: &[&str],
) -> Vec<u8> {
    let source = src
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let out = dir.join(format!("{}-{source}.o", manifest.patch_id));
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
    let inc = dir.join(format!("{}-{source}.manifest.h", manifest.patch_id));
    let text = format!(
        "__attribute__((section(\".hotpatch.manifest\"), used)) static const char hp_manifest[] = \"{escaped}\";\n"
    );
    std::fs::write(&inc, text).unwrap();
    let define = format!("-DHP_MANIFEST=\"{}\"", inc.display());
    let (src, out_text) = (src.display().to_string(), out.display().to_string());
    let mut args = vec![
        "-c",
        "-O2",
        "-fPIC",
        "-ffunction-sections",
        "-fdata-sections",
    ];
    args.extend(extra);
    args.extend([define.as_str(), src.as_str(), "-o", out_text.as_str()]);
    gcc(&args, dir);
    std::fs::read(out).unwrap()
}

/// Plans and applies `patch` to `pid`.
pub fn apply_patch(
    pid: i32,
    patch: Vec<u8>,
    options: &ApplyOptions,
) -> Result<ApplyReport, hotpatch_applier::ApplyError> {
    let target = Target::inspect(pid)?;
    let object = PatchObject::parse(patch)?;
    let plan = plan(&target, &object)?;
    apply(&target, &plan, options)
}

/// `value` as the main thread's next `tick` line reports it.
pub fn next_tick_value(running: &Running) -> i64 {
    let line = running.wait_for(30, |l| l.starts_with("tick "));
    tick_field(&line, "value")
}

/// The number after `name` in a line.
pub fn tick_field(line: &str, name: &str) -> i64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == name).expect(name);
    words[at + 1].parse().expect("a number")
}

/// Reads `len` bytes of `pid` at `addr`.
pub fn read_mem(pid: i32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, addr).unwrap();
    buf
}

/// `/proc/PID/maps` and the bytes of every readable mapping but the kernel's clock pages.
pub type Snapshot = (String, Vec<(String, Vec<u8>)>);

/// Takes a [`Snapshot`] of `pid`.
pub fn snapshot(pid: i32) -> Snapshot {
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

/// Panics naming the first mapping whose bytes (or the mappings themselves) differ.
pub fn assert_same_memory(before: &Snapshot, after: &Snapshot) {
    assert_eq!(before.0, after.0, "the mappings changed");
    assert_eq!(before.1.len(), after.1.len());
    for ((line, a), (_, b)) in before.1.iter().zip(&after.1) {
        if a != b {
            let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
            panic!("{line}: the bytes changed at offset 0x{at:x}");
        }
    }
}

/// Threads of `pid` that are traced (TracerPid not 0).
pub fn traced_threads(pid: i32) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        if !tracer.is_empty() && tracer != "0" {
            out.push(format!("{:?} traced by {tracer}", task.file_name()));
        }
    }
    out
}

/// Every address of the executable code of `exe` mapped in `pid` whose byte differs from the
/// file (a jump the patch wrote, or a breakpoint left behind).
pub fn code_differences(pid: i32, exe: &Path) -> Vec<u64> {
    let exe = std::fs::canonicalize(exe).unwrap();
    let file = std::fs::read(&exe).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut out = Vec::new();
    for line in maps
        .lines()
        .filter(|l| l.ends_with(&*exe.to_string_lossy()))
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields[1].contains('x') {
            continue;
        }
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let offset = usize::from_str_radix(fields[2], 16).unwrap();
        let len = ((end - start) as usize).min(file.len().saturating_sub(offset));
        let mapped = read_mem(pid, start, len);
        for (i, (a, b)) in mapped.iter().zip(&file[offset..offset + len]).enumerate() {
            if a != b {
                out.push(start + i as u64);
            }
        }
    }
    out
}

/// Sends the signal named `signal` (`USR1`, `KILL`) to `pid` with kill(1).
pub fn send(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -s {signal} {pid} failed");
}
