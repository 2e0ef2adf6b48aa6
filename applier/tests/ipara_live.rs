//! The register contract with unpatched callers (`-fipa-ra`), on real gcc builds and real
//! processes: a caller keeps its loop state in call-clobbered registers across its call of a
//! small leaf (same file at -O2, across files under -flto); the replacement writes those
//! registers (also through a function that tail-calls it). The patch must keep the caller's
//! state (a save/restore thunk), or be refused naming the caller, the call site and the
//! registers when no thunk can do it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{c_dir, compile_patch, manifest, start, Running};
use hotpatch_applier::{apply, plan, ApplyError, ApplyOptions, PatchObject, Target};

fn gcc(dir: &Path, args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `sources` (from tests/c) into `dir/name` with `-O2 -g` and `extra` flags.
fn build(dir: &Path, sources: &[&str], extra: &[&str], name: &str) -> PathBuf {
    let exe = dir.join(name);
    let mut args: Vec<String> = ["-O2", "-g"].iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(
        sources
            .iter()
            .map(|s| c_dir().join(s).display().to_string()),
    );
    args.extend(["-o".to_string(), exe.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    gcc(dir, &refs);
    exe
}

/// The disassembly of `function` in `exe` (AT&T, no raw bytes).
fn disassembly(exe: &Path, function: &str) -> Vec<String> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(exe)
        .output()
        .expect("objdump runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let header = format!("<{function}>:");
    text.lines()
        .skip_while(|l| !l.ends_with(&header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks the premise of the test: the compiled caller really keeps `registers` across its
/// call of `callee`: it reads each after the call, and saves nothing on its stack (no
/// callee-saved register could hold the value instead).
fn assert_keeps_across_call(exe: &Path, caller: &str, callee: &str, registers: &[&str]) {
    let code = disassembly(exe, caller);
    assert!(!code.is_empty(), "no `{caller}` in {}", exe.display());
    let call = code
        .iter()
        .position(|l| l.contains("call") && l.contains(&format!("<{callee}>")))
        .unwrap_or_else(|| panic!("`{caller}` does not call `{callee}`:\n{}", code.join("\n")));
    assert!(
        !code
            .iter()
            .any(|l| l.contains("push") && l.contains("%rbx")),
        "`{caller}` uses a callee-saved register:\n{}",
        code.join("\n")
    );
    for register in registers {
        assert!(
            code[call + 1..].iter().any(|l| l.contains(register)),
            "`{caller}` does not use {register} after calling `{callee}`:\n{}",
            code.join("\n")
        );
    }
}

/// The counter of the next `counter N` line.
fn next_counter(running: &Running) -> i64 {
    let line = running.wait_for(10, |l| l.starts_with("counter "));
    line["counter ".len()..].trim().parse().expect("a number")
}

/// Asserts the counter goes on by exactly one per line for `lines` lines.
fn assert_counts_by_one(running: &Running, lines: usize) {
    let mut last = next_counter(running);
    for _ in 0..lines {
        let next = next_counter(running);
        assert_eq!(next, last + 1, "the caller's state was corrupted");
        last = next;
    }
}

/// Patches `tick` of the running `exe` with `ipara_tick_patch.c` and checks the caller's
/// state survives, through a thunk saving the registers it keeps; `caller` is the checked call
/// site found in `tick`'s contract (a tail call when `tail`).
fn tick_patch_keeps_state(dir: &Path, exe: &Path, caller: &str, tail: bool) {
    let kept = ["rcx", "rdx", "rsi"];
    patch_keeps_state(dir, exe, "ipara_tick_patch.c", (caller, tail), &kept);
}

/// Patches `tick` of the running `exe` with `source` and checks that `caller`'s call site (a
/// tail call when the flag says so) keeps `kept` live, that a thunk saves them, and that the
/// caller's counter goes on by one.
fn patch_keeps_state(dir: &Path, exe: &Path, source: &str, site: (&str, bool), kept: &[&str]) {
    let (caller, tail) = site;
    let mut running = start(exe, &[]);
    assert_counts_by_one(&running, 3);
    let patch = compile_patch(dir, source, &manifest("ipara-1", "tick", "v1", "v2"));
    let target = Target::inspect(running.pid()).unwrap();
    let object = PatchObject::parse(patch).unwrap();
    let plan = plan(&target, &object).unwrap();
    let contract = plan
        .register_contracts
        .iter()
        .find(|c| c.function == "tick")
        .expect("tick's contract is checked");
    let call = contract
        .callers
        .iter()
        .find(|c| c.caller == caller)
        .unwrap_or_else(|| panic!("{caller} is a checked caller: {contract:?}"));
    assert_eq!(call.tail_call, tail, "{contract:?}");
    for register in kept {
        assert!(call.live.contains(&register.to_string()), "{contract:?}");
        assert!(call.at_risk.contains(&register.to_string()), "{contract:?}");
        assert!(
            contract.saved.contains(&register.to_string()),
            "{contract:?}"
        );
    }
    // rax is tick's result and rdi its argument: the old code writes both.
    assert!(!contract.saved.contains(&"rax".to_string()), "{contract:?}");
    assert_eq!(contract.action, "thunk");
    let report = apply(&target, &plan, &ApplyOptions::default()).unwrap();
    assert_eq!(report.register_contracts, plan.register_contracts);
    running.drain();
    assert_counts_by_one(&running, 20);
    assert!(running.alive());
}

#[test]
fn same_file_caller_keeps_its_registers_at_o2() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), &["ipara_target.c"], &[], "ipara");
    assert_keeps_across_call(&exe, "advance", "tick", &["%rcx", "%rdx", "%rsi"]);
    tick_patch_keeps_state(dir.path(), &exe, "advance", false);
}

#[test]
fn vector_registers_are_kept_too() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), &["ipara_float_target.c"], &[], "ipara-float");
    // xmm2 (the constant 1.5) is read at the top of the loop, before the call in the text.
    assert_keeps_across_call(&exe, "advance", "tick", &["%xmm0", "%xmm1"]);
    let kept = ["xmm0", "xmm1", "xmm2"];
    patch_keeps_state(
        dir.path(),
        &exe,
        "ipara_float_patch.c",
        ("advance", false),
        &kept,
    );
}

#[test]
fn callers_of_a_function_that_tail_calls_keep_their_registers() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), &["ipara_tail_target.c"], &[], "ipara-tail");
    let wrap = disassembly(&exe, "wrap");
    assert!(
        wrap.iter()
            .any(|l| l.contains("jmp") && l.contains("<tick>")),
        "wrap does not tail-call tick:\n{}",
        wrap.join("\n")
    );
    assert_keeps_across_call(&exe, "advance", "wrap", &["%rcx", "%rdx", "%rsi"]);
    tick_patch_keeps_state(dir.path(), &exe, "wrap", true);
}

#[test]
fn caller_in_another_file_keeps_its_registers_under_lto() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(
        dir.path(),
        &["ipara_lto_tick.c", "ipara_lto_main.c"],
        &["-flto"],
        "ipara-lto",
    );
    assert_keeps_across_call(&exe, "advance", "tick", &["%rcx", "%rdx", "%rsi"]);
    tick_patch_keeps_state(dir.path(), &exe, "advance", false);
}

#[test]
fn stack_arguments_leave_no_thunk_and_are_refused_naming_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), &["ipara_stack_target.c"], &[], "ipara-stack");
    assert_keeps_across_call(&exe, "advance", "tick7", &["%r10", "%r11"]);
    let running = start(&exe, &[]);
    assert_counts_by_one(&running, 2);
    let patch = compile_patch(
        dir.path(),
        "ipara_stack_patch.c",
        &manifest("ipara-2", "tick7", "v1", "v2"),
    );
    let target = Target::inspect(running.pid()).unwrap();
    let object = PatchObject::parse(patch).unwrap();
    let err = plan(&target, &object).unwrap_err();
    let ApplyError::RegisterContract {
        function,
        caller,
        site,
        registers,
        ..
    } = &err
    else {
        panic!("not a register contract refusal: {err}");
    };
    assert_eq!((function.as_str(), caller.as_str()), ("tick7", "advance"));
    assert!(
        registers.contains("r10") && registers.contains("r11"),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("0x{site:x}")), "{text}");
    assert!(text.contains("would shift stack arguments"), "{text}");
    // Nothing was written: the program counts on.
    assert_counts_by_one(&running, 3);
}

#[test]
fn a_stripped_binary_without_debug_information_is_refused_naming_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    // -rdynamic keeps `tick` findable in .dynsym once .symtab and DWARF are stripped.
    let exe = build(
        dir.path(),
        &["ipara_target.c"],
        &["-rdynamic"],
        "ipara-stripped",
    );
    let status = Command::new("strip")
        .arg(&exe)
        .status()
        .expect("strip runs");
    assert!(status.success());
    let running = start(&exe, &[]);
    assert_counts_by_one(&running, 2);
    let patch = compile_patch(
        dir.path(),
        "ipara_tick_patch.c",
        &manifest("ipara-3", "tick", "v1", "v2"),
    );
    let target = Target::inspect(running.pid()).unwrap();
    let object = PatchObject::parse(patch).unwrap();
    let err = plan(&target, &object).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::RegisterContract { .. }), "{text}");
    // The caller is still found (its dynamic symbol), but nothing proves a thunk safe.
    assert!(
        text.contains("`advance` keeps rcx, rdx, rsi live"),
        "{text}"
    );
    assert!(text.contains("no debug information"), "{text}");
    assert_counts_by_one(&running, 3);
}
