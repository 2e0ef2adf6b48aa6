//! Progress on a terminal: a spinner while the patch compiles (as while threads are waited for),
//! nothing when standard error is not a terminal.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

/// A C compiler that takes a second before doing gcc's work: a compile long enough to announce.
fn slow_compiler(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("slow-cc");
    std::fs::write(&path, "#!/bin/sh\nsleep 1\nexec gcc \"$@\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_long_compile_shows_a_spinner_on_a_terminal_and_nothing_on_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let compiler = slow_compiler(dir.path());
    let repo = dir.path().join("repo");
    let args = [
        "diff",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "--dry-run",
    ];

    // `script` gives hotpatch a pseudo-terminal, as an operator's shell would.
    let command = format!("{} {}", env!("CARGO_BIN_EXE_hotpatch"), args.join(" "));
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CC", &compiler)
        .env("HOTPATCH_CACHE", "off") // no test shares a cache with another
        .output()
        .expect("running script");
    let text = stdout_of(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("compiling the patch for lib.c (v1 (") && text.contains("→ v2 ("),
        "no spinner in: {text}"
    );
    assert!(text.contains("dry run: nothing was written"), "{text}");

    let output = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(args)
        .env("CC", &compiler)
        .env("HOTPATCH_CACHE", "off") // no test shares a cache with another
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        !stderr_of(&output).contains("compiling the")
            && !stdout_of(&output).contains("compiling the"),
        "{}{}",
        stdout_of(&output),
        stderr_of(&output)
    );
}
