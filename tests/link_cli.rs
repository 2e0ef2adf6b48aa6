//! A function of a shared library, through the command line: `--dry-run --pid` says how each
//! symbol binds and why, `build --pid` records the library's own build id, and the library's
//! 13-byte function (no padding after it) is patched with `jmp rel32`. Every started process is
//! killed on every path (TargetProcess kills on drop).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const DRIVER: &str = r#"#include <stdio.h>
#include <unistd.h>
int value(void);
int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned tick = 0;; tick++) {
        printf("tick=%u value=%d\n", tick, value());
        usleep(20000);
    }
}
"#;

/// `value` is 13 bytes at -O2 (`addl $1, calls(%rip); mov $42, %eax; ret`).
const LIB_V1: &str = r#"#include <stdio.h>
static int calls;
int value(void)
{
    calls++;
    return 42;
}
"#;

/// v2 flushes `stdout`: a library variable the executable holds a copy of.
const LIB_V2: &str = r#"#include <stdio.h>
static int calls;
int value(void)
{
    calls++;
    fflush(stdout);
    return 43;
}
"#;

const CFLAGS: &str = "-O2 -g -fPIC -falign-functions=1";

fn files(lib: &str) -> Vec<(String, String)> {
    vec![
        ("main.c".to_string(), DRIVER.to_string()),
        ("lib.c".to_string(), lib.to_string()),
    ]
}

/// The repository (tags v1, v2), the v1 library and the executable linked against it.
struct Setup {
    work: tempfile::TempDir,
    repo: PathBuf,
    exe: PathBuf,
    lib: PathBuf,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    git_repo_with_revisions(&repo, &files(LIB_V1), &files(LIB_V2));
    let build = work.path().join("build");
    write_tree(&build, &files(LIB_V1));
    let lib = work.path().join("libcase.so");
    let shared = format!("{CFLAGS} -shared");
    compile_program(&build, &["lib.c".to_string()], &shared, &lib);
    let exe = work.path().join("app");
    // The executable is not built -fPIC: it reads `stdout` from its own copy.
    let link = format!(
        "-O2 -g -L{dir} -Wl,-rpath,{dir}",
        dir = work.path().display()
    );
    compile_program(
        &build,
        &["main.c".to_string(), "-lcase".to_string()],
        &link,
        &exe,
    );
    Setup {
        work,
        repo,
        exe,
        lib,
    }
}

/// The GNU build id of `file`, as `readelf -n` prints it.
fn build_id(file: &Path) -> String {
    let output = run_ok(Command::new("readelf").arg("-n").arg(file));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build id in {}", file.display()))
        .to_string()
}

#[test]
fn a_library_function_through_the_cli() {
    let setup = setup();
    let mut target = TargetProcess::start(&setup.exe);
    target.wait_for("value=42");
    let pid = target.pid().to_string();
    let repo = setup.repo.to_str().unwrap();
    let common = ["--repo", repo, "--pid", &pid, "--cflags", CFLAGS];

    let mut dry = vec!["diff", "v1..v2", "--dry-run"];
    dry.extend(common);
    let output = hotpatch(&dry);
    let stdout = stdout_of(&output);
    assert!(output.status.success(), "{stdout}\n{}", stderr_of(&output));
    let stdout_binding = stdout
        .lines()
        .find(|l| l.contains("binds") && l.contains("stdout"))
        .unwrap_or_else(|| panic!("no binding of stdout in:\n{stdout}"));
    assert!(
        stdout_binding.contains(setup.exe.to_str().unwrap())
            && stdout_binding.contains("copy relocation"),
        "{stdout_binding}"
    );

    let object = setup.work.path().join("fix.hp.o");
    let mut build = vec!["build", "v1..v2", "-o", object.to_str().unwrap(), "--json"];
    build.extend(common);
    let output = hotpatch(&build);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(
        report["target_build_id"].as_str(),
        Some(build_id(&setup.lib).as_str()),
        "the library's build id (the executable's is {})",
        build_id(&setup.exe)
    );

    let output = hotpatch(&["apply", object.to_str().unwrap(), "--pid", &pid]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    target.wait_for("value=43");
    assert!(target.is_alive());
}

#[test]
fn a_library_patch_is_refused_for_another_build_of_the_library() {
    let setup = setup();
    let mut target = TargetProcess::start(&setup.exe);
    target.wait_for("value=42");
    let pid = target.pid().to_string();
    let object = setup.work.path().join("fix.hp.o");
    let repo = setup.repo.to_str().unwrap();
    let output = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        repo,
        "--pid",
        &pid,
        "--cflags",
        CFLAGS,
        "-o",
        object.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    drop(target);

    // The same code, another build id: the library the patch was built for is not running.
    let build = setup.work.path().join("build");
    let shared = format!("{CFLAGS} -shared -Wl,--build-id=0x0123456789abcdef");
    compile_program(&build, &["lib.c".to_string()], &shared, &setup.lib);
    let mut target = TargetProcess::start(&setup.exe);
    target.wait_for("value=42");
    let pid = target.pid().to_string();
    let output = hotpatch(&["apply", object.to_str().unwrap(), "--pid", &pid]);
    let stderr = stderr_of(&output);
    assert!(!output.status.success(), "applied: {}", stdout_of(&output));
    assert!(
        stderr.contains(setup.lib.to_str().unwrap()) && stderr.contains("0123456789abcdef"),
        "{stderr}"
    );
    target.wait_for("value=42");
    assert!(target.is_alive());
}
