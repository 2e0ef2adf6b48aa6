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
    // The executable is not built -fPIC: it reads `stdout` from its own copy.
    let (lib, exe) = build_app(work.path(), &build, "-O2 -g");
    Setup {
        work,
        repo,
        exe,
        lib,
    }
}

/// Builds `build`'s lib.c into `work/libcase.so` (with [`CFLAGS`]) and main.c into `work/app`
/// (with `exe_flags`) linked against it; returns both paths.
fn build_app(work: &Path, build: &Path, exe_flags: &str) -> (PathBuf, PathBuf) {
    let lib = work.join("libcase.so");
    let shared = format!("{CFLAGS} -shared");
    compile_program(build, &["lib.c".to_string()], &shared, &lib);
    let exe = work.join("app");
    let link = format!("{exe_flags} -L{dir} -Wl,-rpath,{dir}", dir = work.display());
    compile_program(
        build,
        &["main.c".to_string(), "-lcase".to_string()],
        &link,
        &exe,
    );
    (lib, exe)
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

/// The executable's own function of the two-module case: 13 bytes too at -O2.
const MAIN_V1: &str = r#"#include <stdio.h>
#include <unistd.h>
int value(void);
__attribute__((noinline)) int label(int v)
{
    return v * 10 + 1;
}
int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned tick = 0;; tick++) {
        printf("tick=%u value=%d label=%d\n", tick, value(), label(tick));
        usleep(20000);
    }
}
"#;

/// The mappings of `pid` that contain `address`.
fn mapped(pid: i32, address: u64) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines().any(|line| {
        let range = line.split_whitespace().next().unwrap_or_default();
        let (start, end) = range.split_once('-').unwrap_or_default();
        let start = u64::from_str_radix(start, 16).unwrap_or(u64::MAX);
        let end = u64::from_str_radix(end, 16).unwrap_or(0);
        (start..end).contains(&address)
    })
}

#[test]
fn one_patch_of_the_executable_and_a_far_library_gives_the_library_a_jump_island() {
    // `value` (library, 13 bytes, no padding) and `label` (executable) change at once; the
    // library is mapped terabytes from the executable, out of reach of one region.
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let tree = |main: &str, lib: &str| {
        vec![
            ("main.c".to_string(), main.to_string()),
            ("lib.c".to_string(), lib.to_string()),
        ]
    };
    let main_v2 = MAIN_V1.replace("v * 10 + 1", "v * 10 + 2");
    let lib_v2 = LIB_V1.replace("return 42;", "return 43;");
    let lib_v3 = LIB_V1.replace("return 42;", "return 44;");
    let revisions = [
        tree(MAIN_V1, LIB_V1),
        tree(&main_v2, &lib_v2),
        tree(&main_v2, &lib_v3),
    ];
    let tags: Vec<(&str, &[(String, String)])> = ["v1", "v2", "v3"]
        .into_iter()
        .zip(revisions.iter().map(Vec::as_slice))
        .collect();
    git_repo_with_tags(&repo, &tags);
    let build = work.path().join("build");
    write_tree(&build, &tree(MAIN_V1, LIB_V1));
    let (_, exe) = build_app(work.path(), &build, CFLAGS);
    let mut target = TargetProcess::start(&exe);
    target.wait_for("value=42");
    let pid = target.pid();
    let pid_text = pid.to_string();

    let apply = |range: &str| {
        let output = hotpatch(&[
            "diff",
            range,
            "--repo",
            repo.to_str().unwrap(),
            "--apply",
            "--pid",
            &pid_text,
            "--cflags",
            CFLAGS,
        ]);
        assert!(output.status.success(), "{}", stderr_of(&output));
    };
    apply("v1..v2");
    let line = target.wait_for("value=43");
    let tick = field(&line, "tick").unwrap();
    assert_eq!(field(&line, "label"), Some(tick * 10 + 2), "{line}");

    let list = hotpatch(&["list", "--pid", &pid_text, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let functions = json["patches"][0]["functions"].as_array().unwrap().clone();
    let via = |name: &str| {
        functions
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"))["via"]
            .as_u64()
    };
    assert_eq!(via("label"), None, "{json}");
    let island = via("value").unwrap_or_else(|| panic!("value has no island: {json}"));
    assert!(mapped(pid, island));
    let entry = functions.iter().find(|f| f["name"] == "value").unwrap()["old_address"]
        .as_u64()
        .unwrap();
    assert!(
        entry.abs_diff(island) < 1 << 31,
        "{entry:#x} -> {island:#x}"
    );

    // Stacked on the library function (its entry jumps to the island): v3 goes over it, and
    // reverting v3 gives the island its entry back.
    apply("v2..v3");
    target.wait_for("value=44");
    let revert = || {
        let output = hotpatch(&["revert", "--pid", &pid_text]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        assert!(
            stdout_of(&output).contains("region unmapped"),
            "{}",
            stdout_of(&output)
        );
    };
    revert();
    target.wait_for("value=43");
    assert!(mapped(pid, island));
    revert();
    let line = target.wait_for("value=42");
    let tick = field(&line, "tick").unwrap();
    assert_eq!(field(&line, "label"), Some(tick * 10 + 1), "{line}");
    assert!(!mapped(pid, island), "the island outlived its region");
    assert!(target.is_alive());
}

/// A driver that `dlopen`s the library argv[1] (so its TLS is dynamic): threads 0-2 set their
/// own `count` to 1000000 * i, and once the file argv[2] exists thread 3 starts from 0; each
/// prints `tick t=I count=N` every 10 ms.
const DLOPEN_DRIVER: &str = r#"#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void (*start_at)(int);
static int (*next)(void);
static void *run(void *arg)
{
    int i = (int)(long)arg;
    if (i < 3)
        start_at(1000000 * i);
    for (;;) {
        printf("tick t=%d count=%d\n", i, next());
        usleep(10000);
    }
    return NULL;
}
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *lib = dlopen(argv[1], RTLD_NOW);
    start_at = lib ? (void (*)(int))dlsym(lib, "start_at") : NULL;
    next = lib ? (int (*)(void))dlsym(lib, "next") : NULL;
    if (!start_at || !next)
        return 1;
    pthread_t threads[4];
    for (long i = 0; i < 3; i++)
        pthread_create(&threads[i], NULL, run, (void *)i);
    while (access(argv[2], F_OK) != 0)
        usleep(1000);
    pthread_create(&threads[3], NULL, run, (void *)3L);
    pthread_join(threads[0], NULL);
    return 0;
}
"#;

/// The `dlopen`ed library: a `__thread` counter per thread.
const TLS_LIB_V1: &str = "__thread int count;\n\
void start_at(int base)\n{\n    count = base;\n}\n\
int next(void)\n{\n    return ++count;\n}\n";

/// v2 counts by 1000.
const TLS_LIB_V2: &str = "__thread int count;\n\
void start_at(int base)\n{\n    count = base;\n}\n\
int next(void)\n{\n    count += 1000;\n    return count;\n}\n";

/// The `count` of thread `thread`'s next tick.
fn count_of(target: &mut TargetProcess, thread: i64) -> i64 {
    let line = target.wait_for(&format!("tick t={thread} "));
    field(&line, "count").unwrap_or_else(|| panic!("no count in {line}"))
}

#[test]
fn a_dlopened_librarys_thread_local_through_the_cli() {
    // `diff --apply` on a function of a dlopened library that counts in a `__thread` variable:
    // flags from compile_commands.json in the work tree, the patch compiled -fPIC reaches the
    // variable through __tls_get_addr, and every thread goes on with its own value.
    let work = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(work.path()).unwrap().join("repo");
    let with = |lib: &str| {
        vec![
            ("main.c".to_string(), DLOPEN_DRIVER.to_string()),
            ("lib.c".to_string(), lib.to_string()),
        ]
    };
    git_repo_with_revisions(&repo, &with(TLS_LIB_V1), &with(TLS_LIB_V2));
    let build = work.path().join("build");
    write_tree(&build, &with(TLS_LIB_V1));
    let lib = work.path().join("libtls.so");
    compile_program(
        &build,
        &["lib.c".to_string()],
        &format!("{CFLAGS} -shared"),
        &lib,
    );
    let exe = work.path().join("app");
    compile_program(
        &build,
        &["main.c".to_string()],
        "-O2 -g -pthread -ldl",
        &exe,
    );
    let database = serde_json::json!([{
        "directory": repo,
        "file": "lib.c",
        "arguments": ["gcc", "-O2", "-g", "-fPIC", "-falign-functions=1", "-c", "lib.c", "-o", "lib.o"],
    }]);
    std::fs::write(repo.join("compile_commands.json"), database.to_string()).unwrap();

    let go = work.path().join("go");
    let args = [lib.to_str().unwrap(), go.to_str().unwrap()];
    let mut target = TargetProcess::start_with(&exe, &args);
    let before: Vec<i64> = (0..3).map(|t| count_of(&mut target, t)).collect();
    let pid = target.pid().to_string();
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--apply",
        "--repo",
        repo.to_str().unwrap(),
        "--pid",
        &pid,
        "--json",
    ]);
    let stdout = stdout_of(&output);
    assert!(output.status.success(), "{stdout}\n{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["flags"][0]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("compile_commands.json")),
        "{report}"
    );
    for (thread, &was) in (0i64..).zip(&before) {
        let own = 1_000_000 * thread;
        let mut first = count_of(&mut target, thread);
        while first < was + 1000 {
            first = count_of(&mut target, thread);
        }
        let second = count_of(&mut target, thread);
        assert_eq!(
            second - first,
            1000,
            "thread {thread}: {was}, {first}, {second}"
        );
        assert!(
            own < first && first < own + 1_000_000,
            "thread {thread}: {first}"
        );
    }
    std::fs::write(&go, b"").unwrap();
    assert_eq!(count_of(&mut target, 3), 1000);
    assert_eq!(count_of(&mut target, 3), 2000);
    assert!(target.is_alive());
}
