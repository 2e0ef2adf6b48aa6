//! Binding and shared libraries against real processes: a patch's references reach the definition
//! the original code reaches (an `LD_PRELOAD` interposer, symbol versions, a copy relocation, a
//! `-Bsymbolic` library, a `dlopen`ed library's own symbol, an IFUNC nobody called yet), and
//! library functions are patched with `jmp rel32` (a 13-byte one, stacked patches).

mod common;

use std::path::{Path, PathBuf};

use common::{
    apply_patch, assert_same_memory, c_dir, compile_patch, compile_patch_file,
    compile_patch_file_with, gcc, manifest, manifest_many, snapshot, start, start_with_env,
    tick_field, Running,
};
use hotpatch_applier::{plan, ApplyOptions, PatchObject, Resolution, Target};

/// The binding tests' programs, built in one temporary directory.
struct Programs {
    dir: tempfile::TempDir,
    exe: PathBuf,
}

impl Programs {
    /// Builds libl.so (with `-Bsymbolic` when `symbolic`), the plugin, the preload library and
    /// the target linked against libl.so.
    fn build(symbolic: bool) -> Programs {
        let dir = tempfile::tempdir().unwrap();
        let c = c_dir();
        let src = |name: &str| c.join(name).display().to_string();
        let lib = dir.path().join("libl.so").display().to_string();
        let script = format!("-Wl,--version-script={}", src("link_lib.map"));
        let mut lib_args = vec!["-O2", "-g", "-fPIC", "-shared", "-falign-functions=1"];
        if symbolic {
            lib_args.push("-Wl,-Bsymbolic");
        }
        let lib_src = src("link_lib.c");
        lib_args.extend([script.as_str(), lib_src.as_str(), "-o", lib.as_str()]);
        gcc(&lib_args, dir.path());
        let libraries = [
            ("link_plugin.c", "libplug.so"),
            ("link_preload.c", "libpre.so"),
            ("link_dep.c", "libdep.so"),
        ];
        for (source, name) in libraries {
            let out = dir.path().join(name).display().to_string();
            gcc(
                &["-O2", "-g", "-fPIC", "-shared", &src(source), "-o", &out],
                dir.path(),
            );
        }
        let plugin2 = dir.path().join("libplug2.so").display().to_string();
        let dep_dir = format!("-L{}", dir.path().display());
        let dep_rpath = format!("-Wl,-rpath,{}", dir.path().display());
        gcc(
            &[
                "-O2",
                "-g",
                "-fPIC",
                "-shared",
                &src("link_plugin2.c"),
                &dep_dir,
                "-ldep",
                &dep_rpath,
                "-o",
                &plugin2,
            ],
            dir.path(),
        );
        let exe = dir.path().join("target");
        let rpath = format!("-Wl,-rpath,{}", dir.path().display());
        let lib_dir = format!("-L{}", dir.path().display());
        gcc(
            &[
                "-O2",
                "-g",
                &src("link_target.c"),
                &lib_dir,
                "-Wl,--export-dynamic-symbol=prot_fn",
                "-ll",
                "-ldl",
                &rpath,
                "-o",
                &exe.display().to_string(),
            ],
            dir.path(),
        );
        Programs { dir, exe }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Starts the target (dlopening both plugins), with `LD_PRELOAD` of the interposer when
    /// `preload`; waits for its first tick.
    fn start(&self, preload: bool) -> Running {
        let plugins = [self.path("libplug.so"), self.path("libplug2.so")];
        let args = [plugins[0].as_str(), plugins[1].as_str()];
        let running = if preload {
            let pre = self.path("libpre.so");
            start_with_env(&self.exe, &args, &[("LD_PRELOAD", &pre)])
        } else {
            start(&self.exe, &args)
        };
        running.wait_for(5, |l| l.starts_with("tick "));
        running
    }

    /// Compiles `tests/c/<source>` replacing the global `function`.
    fn patch(&self, id: &str, source: &str, function: &str) -> Vec<u8> {
        compile_patch(self.dir.path(), source, &manifest(id, function, "v1", id))
    }
}

/// The next tick line's `field` once `pred` holds for it.
fn field_once(running: &Running, field: &str, pred: impl Fn(i64) -> bool) -> i64 {
    let line = running.wait_for(5, |l| l.starts_with("tick ") && pred(tick_field(l, field)));
    tick_field(&line, field)
}

/// How `symbol` of `patch` would bind in `running` (from the plan, as `--dry-run --pid` shows).
fn resolution(running: &Running, patch: &[u8], symbol: &str) -> Resolution {
    let target = Target::inspect(running.pid()).unwrap();
    let object = PatchObject::parse(patch.to_vec()).unwrap();
    let plan = plan(&target, &object).unwrap();
    plan.resolutions
        .into_iter()
        .find(|r| r.symbol == symbol)
        .unwrap_or_else(|| panic!("{symbol} is not resolved"))
}

fn apply(running: &Running, patch: Vec<u8>) -> hotpatch_applier::ApplyReport {
    apply_patch(running.pid(), patch, &ApplyOptions::default()).expect("the patch applies")
}

#[test]
fn a_call_reaches_the_ld_preload_interposer() {
    let programs = Programs::build(false);
    let mut running = programs.start(true);
    let patch = programs.patch("preload", "link_patch_sleep.c", "value");
    let sleep = resolution(&running, &patch, "sleep");
    assert!(
        sleep.module.ends_with("libpre.so"),
        "sleep bound in {} ({})",
        sleep.module,
        sleep.rule
    );
    apply(&running, patch);
    // The interposer's sleep(0) returns 42; libc's would return 0.
    assert_eq!(field_once(&running, "value", |v| v != 1), 142);
    assert!(running.alive());
}

#[test]
fn without_a_got_slot_the_link_map_order_decides() {
    // `who` is defined by the preload library and by libl.so, mapped below it, and called by
    // nobody: no GOT slot says anything, the link map's order does.
    let programs = Programs::build(false);
    let mut running = programs.start(true);
    let patch = programs.patch("who", "link_patch_who.c", "value");
    let who = resolution(&running, &patch, "who");
    assert!(
        who.module.ends_with("libpre.so") && who.rule.contains("link map"),
        "{who:?}"
    );
    apply(&running, patch);
    assert_eq!(field_once(&running, "value", |v| v != 1), 401);
    assert!(running.alive());
}

#[test]
fn symbol_versions_bind_as_asked_and_default_otherwise() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("versions", "link_patch_vget.c", "value");
    // The executable itself calls vget@VER_1 (its GOT slot): a plain `vget` in the patch is the
    // default version all the same.
    let plain = resolution(&running, &patch, "vget");
    assert!(!plain.rule.contains("GOT"), "{plain:?}");
    apply(&running, patch);
    assert_eq!(field_once(&running, "value", |v| v != 1), 200 + 10 + 2);
    assert!(running.alive());
}

#[test]
fn a_library_variable_binds_to_the_executables_copy() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("copy", "link_patch_get.c", "lib_get");
    let counter = resolution(&running, &patch, "lib_counter");
    assert!(
        counter.module == programs.exe.display().to_string() && counter.rule.contains("copy"),
        "{counter:?}"
    );
    apply(&running, patch);
    // The executable increments its copy every tick: the patched library function sees it.
    let first = field_once(&running, "get", |g| g >= 1000);
    let second = field_once(&running, "get", |g| g != first);
    assert_eq!(second - first, 1000, "{first} then {second}");
    assert!(running.alive());
}

#[test]
fn a_bsymbolic_library_binds_its_own_variable() {
    let programs = Programs::build(true);
    let mut running = programs.start(false);
    let patch = programs.patch("symbolic", "link_patch_get.c", "lib_get");
    let counter = resolution(&running, &patch, "lib_counter");
    assert!(
        counter.module.ends_with("libl.so") && counter.rule.contains("-Bsymbolic"),
        "{counter:?}"
    );
    apply(&running, patch);
    // The library's own `lib_counter` stays 5 (the executable increments its copy).
    assert_eq!(field_once(&running, "get", |g| g >= 1000), 5000);
    assert!(running.alive());
}

#[test]
fn a_dlopened_library_is_patched_and_reaches_its_own_symbols() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("plugin", "link_patch_plugin.c", "plugin_value");
    let helper = resolution(&running, &patch, "helper");
    assert!(helper.module.ends_with("libplug.so"), "{helper:?}");
    apply(&running, patch);
    // The plugin's helper returns 70; the executable's (not exported) 7.
    assert_eq!(field_once(&running, "plugin", |p| p != 71), 72);
    assert!(running.alive());
}

#[test]
fn a_dlopened_library_reaches_its_own_dependency_not_an_earlier_plugin() {
    // Both plugins are dlopened (RTLD_LOCAL); the first, loaded earlier, defines `shared_dep2`
    // too, but the second's lookups go through the global scope, then its own local scope
    // (libdep.so). It never called `shared_dep2`: no GOT slot says anything.
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("plugin2", "link_patch_plugin2.c", "plugin2_value");
    let dep = resolution(&running, &patch, "shared_dep2");
    assert!(
        dep.module.ends_with("libdep.so") && dep.rule.contains("local scope"),
        "{dep:?}"
    );
    apply(&running, patch);
    assert_eq!(field_once(&running, "plugin2", |p| p != 12), 220);
    assert!(running.alive());
}

#[test]
fn a_short_library_function_takes_a_rel32_jump() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("short", "link_patch_short.c", "lib_short");
    let report = apply(&running, patch);
    let entry = report.functions[0].old_address.unwrap();
    assert_eq!(common::read_mem(running.pid(), entry, 1), [0xe9]);
    assert_eq!(field_once(&running, "short", |s| s != 10), 11);
    assert!(running.alive());
}

#[test]
fn one_patch_over_two_libraries_takes_rel32_jumps_in_both() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let functions = ["lib_short".to_string(), "plugin_value".to_string()];
    let patch = compile_patch(
        programs.dir.path(),
        "link_patch_two_libs.c",
        &manifest_many("two-libs", &functions),
    );
    let report = apply(&running, patch);
    for function in &report.functions {
        let entry = function.old_address.unwrap();
        assert_eq!(
            common::read_mem(running.pid(), entry, 1),
            [0xe9],
            "{function:?}"
        );
    }
    assert_eq!(field_once(&running, "short", |s| s != 10), 11);
    assert_eq!(field_once(&running, "plugin", |p| p != 71), 72);
    assert!(running.alive());
}

/// Writes `dir/stack_N.c`: `lib_long` returning `n`.
fn stacked_source(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("stack_{n}.c"));
    let text = format!(
        "int lib_long(int x) {{ (void)x; return {n}; }}\n#ifdef HP_MANIFEST\n#include HP_MANIFEST\n#endif\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn stacking_on_a_library_function_fifty_times() {
    // Ten stacked patches in each of five processes (each loads the library elsewhere). Each
    // patch's entry holds the previous patch's jump, which must not be decoded as code (an
    // absolute jump's address bytes decode differently for every address).
    const PROCESSES: usize = 5;
    const STACK: usize = 10;
    let programs = Programs::build(false);
    let patches: Vec<Vec<u8>> = (1..=STACK)
        .map(|n| {
            let source = stacked_source(programs.dir.path(), n);
            let id = format!("stack{n}");
            compile_patch_file(
                programs.dir.path(),
                &source,
                &manifest(&id, "lib_long", "v", "v"),
            )
        })
        .collect();
    for _ in 0..PROCESSES {
        let mut running = programs.start(false);
        for (n, patch) in (1..=STACK).zip(&patches) {
            apply(&running, patch.clone());
            let n = n as i64;
            assert_eq!(field_once(&running, "long", |l| l == n || l > 100), n);
        }
        assert!(running.alive());
    }
}

#[test]
fn an_ifunc_nobody_called_is_resolved_by_its_resolver() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("ifunc", "link_patch_pick.c", "value");
    let pick = resolution(&running, &patch, "pick");
    assert!(pick.rule.contains("resolver"), "{pick:?}");
    apply(&running, patch);
    assert_eq!(field_once(&running, "value", |v| v != 1), 322);
    assert!(running.alive());
}

#[test]
fn an_ifunc_whose_resolver_answers_with_data_is_refused() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("bad-ifunc", "link_patch_bad_pick.c", "value");
    let target = Target::inspect(running.pid()).unwrap();
    let object = PatchObject::parse(patch).unwrap();
    let error = plan(&target, &object).unwrap_err().to_string();
    assert!(
        error.contains("bad_pick") && error.contains("not code of"),
        "{error}"
    );
    // The resolver ran and left the process as it was: it still ticks.
    assert_eq!(field_once(&running, "value", |_| true), 1);
    assert!(running.alive());
}

#[test]
fn a_thread_local_variable_of_a_library_is_the_running_one() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let before = field_once(&running, "tls", |_| true);
    let patch = programs.patch("tls", "link_patch_tls.c", "lib_tls_next");
    apply(&running, patch);
    // The same variable carries on: +1 per tick before, +1000 per tick after.
    let first = field_once(&running, "tls", |t| t >= before + 1000);
    let second = field_once(&running, "tls", |t| t != first);
    assert_eq!(second - first, 1000, "{before}, then {first}, {second}");
    assert!(first < before + 1000 + 1000 * 100, "{before}, then {first}");
    assert!(running.alive());
}

#[test]
fn a_librarys_protected_and_hidden_functions_are_its_own() {
    let programs = Programs::build(false);
    let mut running = programs.start(false);
    let patch = programs.patch("visibility", "link_patch_prot.c", "lib_prot_user");
    for symbol in ["prot_fn", "hid_fn"] {
        let bound = resolution(&running, &patch, symbol);
        assert!(bound.module.ends_with("libl.so"), "{bound:?}");
    }
    apply(&running, patch);
    // libl.so's prot_fn returns 5 and hid_fn 3; the executable's 50 and 30.
    assert_eq!(field_once(&running, "prot", |p| p != 53), 5 * 100 + 3);
    assert!(running.alive());
}

/// Waits (up to 5 s) until `pid`'s main thread sits in the `pause` system call.
fn wait_in_pause(pid: i32) {
    const SYS_PAUSE: &str = "34";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if syscall.split_whitespace().next() == Some(SYS_PAUSE) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} never paused: {syscall}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn running_a_resolver_and_reading_a_thread_pointer_leave_memory_unchanged() {
    // A plan runs `pick`'s resolver and reads the thread pointer for `lib_tls` in the target; a
    // target that only sleeps shows every readable byte as it was.
    // The resolver runs the thread, so the kernel rewrites the CPU number in the thread's rseq
    // area when it runs elsewhere than before: glibc is told not to register one.
    let programs = Programs::build(false);
    let no_rseq = [("GLIBC_TUNABLES", "glibc.pthread.rseq=0")];
    let mut running = start_with_env(&programs.exe, &["quiet"], &no_rseq);
    running.wait_for(5, |l| l == "ready");
    wait_in_pause(running.pid());
    let ifunc = programs.patch("quiet-ifunc", "link_patch_pick.c", "value");
    let tls = programs.patch("quiet-tls", "link_patch_tls.c", "lib_tls_next");
    let before = snapshot(running.pid());
    for patch in [ifunc, tls] {
        let target = Target::inspect(running.pid()).unwrap();
        plan(&target, &PatchObject::parse(patch).unwrap()).unwrap();
    }
    wait_in_pause(running.pid());
    let after = snapshot(running.pid());
    assert_same_memory(&before, &after);
    assert!(running.alive());
}

/// The dynamic TLS cases' programs: the library built from `tests/c/<lib_source>` as
/// libdyntls.so, and the target that dlopens it.
struct DynTls {
    dir: tempfile::TempDir,
    exe: PathBuf,
    lib: String,
}

impl DynTls {
    fn build(lib_source: &str) -> DynTls {
        let dir = tempfile::tempdir().unwrap();
        let c = c_dir();
        let src = |name: &str| c.join(name).display().to_string();
        let lib = dir.path().join("libdyntls.so").display().to_string();
        gcc(
            &[
                "-O2",
                "-g",
                "-fPIC",
                "-shared",
                &src(lib_source),
                "-o",
                &lib,
            ],
            dir.path(),
        );
        let exe = dir.path().join("dyn-tls-target");
        let exe_text = exe.display().to_string();
        gcc(
            &[
                "-O2",
                "-g",
                "-pthread",
                &src("dyn_tls_target.c"),
                "-ldl",
                "-o",
                &exe_text,
            ],
            dir.path(),
        );
        DynTls { dir, exe, lib }
    }

    /// The file whose creation makes the target start its fourth thread.
    fn go(&self) -> PathBuf {
        self.dir.path().join("go")
    }

    /// Starts the target; waits until each of its first three threads ticked.
    fn start(&self) -> Running {
        let go = self.go().display().to_string();
        let running = start(&self.exe, &[&self.lib, &go]);
        for thread in 0..3 {
            thread_tls(&running, thread, |_| true);
        }
        running
    }

    /// Plans the patch `tests/c/<source>` replacing `dyn_tls_next`; the error, in words.
    fn refusal(&self, running: &Running, source: &str) -> String {
        let patch = self.patch(source);
        let target = Target::inspect(running.pid()).unwrap();
        plan(&target, &PatchObject::parse(patch).unwrap())
            .unwrap_err()
            .to_string()
    }

    fn patch(&self, source: &str) -> Vec<u8> {
        let id = source.trim_end_matches(".c");
        compile_patch(
            self.dir.path(),
            source,
            &manifest(id, "dyn_tls_next", "v1", "v2"),
        )
    }
}

/// The `tls` value of thread `thread`'s next tick for which `pred` holds.
fn thread_tls(running: &Running, thread: i64, pred: impl Fn(i64) -> bool) -> i64 {
    let line = running.wait_for(5, |l| {
        l.starts_with("tick ") && tick_field(l, "t") == thread && pred(tick_field(l, "tls"))
    });
    tick_field(&line, "tls")
}

#[test]
fn a_dlopened_librarys_dynamic_tls_is_reached_through_tls_get_addr_in_every_thread() {
    // glibc gives a library dlopened after start a TLS block per thread, allocated on first use:
    // the patch, compiled -fPIC, reaches the variable the general-dynamic way (a tls_index pair
    // in the region, __tls_get_addr of ld.so), so every thread keeps counting its own value,
    // and a thread started after the patch gets its block from the patch's first call.
    let programs = DynTls::build("dyn_tls_lib.c");
    let mut running = programs.start();
    let patch = programs.patch("dyn_tls_gd_patch.c");
    let target = Target::inspect(running.pid()).unwrap();
    let object = PatchObject::parse(patch.clone()).unwrap();
    let planned = plan(&target, &object).unwrap();
    let tls = planned
        .resolutions
        .iter()
        .find(|r| r.symbol == "dyn_tls")
        .unwrap();
    assert!(
        tls.module.ends_with("libdyntls.so") && tls.rule.contains("__tls_get_addr"),
        "{tls:?}"
    );
    let tls_get_addr = planned
        .resolutions
        .iter()
        .find(|r| r.symbol == "__tls_get_addr")
        .unwrap();
    assert!(tls_get_addr.module.contains("ld-linux"), "{tls_get_addr:?}");
    let before: Vec<i64> = (0..3).map(|t| thread_tls(&running, t, |_| true)).collect();
    apply(&running, patch);
    for (thread, &was) in (0i64..).zip(&before) {
        // Its own value goes on, +1 per tick before, +1000 per tick after.
        let own = 1_000_000 * thread;
        let first = thread_tls(&running, thread, |v| v >= was + 1000);
        let second = thread_tls(&running, thread, |v| v != first);
        assert_eq!(
            second - first,
            1000,
            "thread {thread}: {was}, {first}, {second}"
        );
        assert!(
            own < first && first < own + 1_000_000,
            "thread {thread}: {was}, then {first}"
        );
    }
    std::fs::write(programs.go(), b"").unwrap();
    // The new thread's block starts at 0: 1000, 2000, ... from the patch's code.
    assert_eq!(thread_tls(&running, 3, |_| true), 1000);
    assert_eq!(thread_tls(&running, 3, |_| true), 2000);
    assert!(thread_tls(&running, 0, |_| true) > before[0] + 1000);
    assert!(running.alive());
}

#[test]
fn a_dlopened_librarys_dynamic_tls_reached_with_initial_exec_is_refused_with_the_reason() {
    // A precompiled object reaching the variable with initial-exec (GOTTPOFF): no offset from
    // the thread pointer is the same in every thread. Refused, untouched.
    let programs = DynTls::build("dyn_tls_lib.c");
    let mut running = programs.start();
    let before = thread_tls(&running, 1, |_| true);
    let error = programs.refusal(&running, "dyn_tls_patch.c");
    assert!(
        error.contains("`dyn_tls`")
            && error.contains("libdyntls.so")
            && error.contains("its TLS is dynamic")
            && error.contains("compile the patch with -fPIC / -ftls-model=global-dynamic"),
        "{error}"
    );
    // Nothing was written: it counts on by one.
    let after = thread_tls(&running, 1, |t| t > before);
    assert!(after - before < 1000, "{before} then {after}");
    assert!(running.alive());
}

#[test]
fn a_library_tls_without_a_module_id_slot_is_refused_with_the_reason() {
    // The library never reaches its own `__thread` variable: no DTPMOD64 slot of it says its
    // module id, and nothing else is trusted to. Refused, untouched.
    let programs = DynTls::build("dyn_tls_noid_lib.c");
    let mut running = programs.start();
    let error = programs.refusal(&running, "dyn_tls_gd_patch.c");
    assert!(
        error.contains("`dyn_tls`")
            && error.contains("libdyntls.so")
            && error.contains("its TLS module id is in no GOT slot"),
        "{error}"
    );
    // Nothing was written: the library's code still answers 1.
    assert_eq!(thread_tls(&running, 2, |_| true), 1);
    assert!(running.alive());
}

#[test]
fn an_fno_plt_object_reaches_dynamic_tls_through_a_got_slot() {
    // `gcc -c -fPIC -fno-plt` calls `*__tls_get_addr@GOTPCREL(%rip)` (GOTPCRELX): a GOT slot in
    // the region holds ld.so's function.
    let programs = DynTls::build("dyn_tls_lib.c");
    let mut running = programs.start();
    let bytes = compile_patch_file_with(
        programs.dir.path(),
        &c_dir().join("dyn_tls_gd_patch.c"),
        &manifest("fno-plt", "dyn_tls_next", "v1", "v2"),
        &["-fno-plt"],
    );
    let object = programs.dir.path().join("fno-plt-dyn_tls_gd_patch.c.o");
    let relocations = std::process::Command::new("readelf")
        .arg("-rW")
        .arg(&object)
        .output()
        .unwrap();
    let relocations = String::from_utf8_lossy(&relocations.stdout);
    assert!(
        relocations
            .lines()
            .any(|l| l.contains("R_X86_64_GOTPCRELX") && l.contains("__tls_get_addr")),
        "{relocations}"
    );
    let before = thread_tls(&running, 2, |_| true);
    apply(&running, bytes);
    let first = thread_tls(&running, 2, |v| v >= before + 1000);
    let second = thread_tls(&running, 2, |v| v != first);
    assert_eq!(second - first, 1000, "{before}, {first}, {second}");
    assert!(2_000_000 < first && first < 3_000_000, "{first}");
    assert!(running.alive());
}

#[test]
fn a_tlsgd_reference_to_a_symbol_that_is_not_thread_local_is_refused() {
    let programs = DynTls::build("dyn_tls_lib.c");
    let mut running = programs.start();
    let error = programs.refusal(&running, "dyn_tls_not_tls_patch.c");
    assert!(
        error.contains("`dyn_tls_start`")
            && error.contains("libdyntls.so")
            && error.contains("the definition there is not thread-local"),
        "{error}"
    );
    assert!(running.alive());
}
