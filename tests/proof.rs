//! Proof where bytes cannot be compared (issue 12.3): the types the patch uses are laid out as
//! in the running binary's DWARF, each replaced function is where the old revision has it, and
//! a register contract no thunk can keep is a refusal `--force` can name. Real gcc builds
//! (`-flto` and plain `-O2`), real processes, through the command line.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// The header: a struct whose layout three `-D`s change (a name in front, packing, an
/// enumerator's value).
const CONN_H: &str = "#ifndef LEVEL_HIGH\n#define LEVEL_HIGH 5\n#endif\n\
enum level { LOW = 1, HIGH = LEVEL_HIGH };\n\
#ifdef PACKED\n#pragma pack(push, 1)\n#endif\n\
struct conn {\n#ifdef WITH_NAME\n  char name[16];\n#endif\n  char tag;\n  int id;\n  int flags;\n  enum level level;\n};\n\
#ifdef PACKED\n#pragma pack(pop)\n#endif\n";

/// The changed function, `factor` times the id (2 at v1, 3 at v2).
fn lib_c(factor: u32, lines_before: usize) -> String {
    format!(
        "#include \"conn.h\"\n{}\nint\n__attribute__((noinline, noclone))\nscore(struct conn *c)\n{{\n  return c->id * {factor} + c->flags + (c->level == HIGH);\n}}\n",
        "/* moved */\n".repeat(lines_before)
    )
}

/// The driver: `n` counts up by one per line (the state that must survive).
const MAIN_C: &str = "#include <stdio.h>\n#include <unistd.h>\n#include \"conn.h\"\n\
int score(struct conn *c);\n\
int main(void) {\n  static struct conn c;\n  c.id = 7; c.flags = 1; c.level = LOW;\n  long n = 0;\n\
  for (;;) {\n    printf(\"score=%d n=%ld\\n\", score(&c), ++n);\n    fflush(stdout);\n    usleep(20000);\n  }\n}\n";

fn tree(factor: u32, lines_before: usize) -> Vec<(String, String)> {
    vec![
        ("conn.h".into(), CONN_H.into()),
        ("lib.c".into(), lib_c(factor, lines_before)),
        ("main.c".into(), MAIN_C.into()),
    ]
}

/// Writes `files` into `work/build`, compiles `sources` there with `cflags` and starts the
/// program, waiting for `ready` in its output.
fn build_and_start(
    work: &Path,
    files: &[(String, String)],
    sources: [&str; 2],
    cflags: &str,
    ready: &str,
) -> TargetProcess {
    let build = work.join("build");
    write_tree(&build, files);
    let binary = work.join("prog");
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    compile_program(&build, &sources, cflags, &binary);
    let mut target = TargetProcess::start(&binary);
    target.wait_for(ready);
    target
}

/// A repository with v1 and v2, and a running binary built with `cflags` from v1, or from v1
/// with `score` moved down by `moved` lines (a binary not rebuilt from the revision v1 names).
fn start(work: &Path, cflags: &str, moved: usize) -> (PathBuf, TargetProcess) {
    let repo = work.join("repo");
    git_repo_with_revisions(&repo, &tree(2, 0), &tree(3, 0));
    let target = build_and_start(
        work,
        &tree(2, moved),
        ["main.c", "lib.c"],
        cflags,
        "score=15",
    );
    (repo, target)
}

/// `hotpatch diff v1..v2 MODE --pid PID --cflags CFLAGS` plus `extra`.
fn diff(
    repo: &Path,
    target: &TargetProcess,
    mode: &str,
    cflags: &str,
    extra: &[&str],
) -> std::process::Output {
    let pid = target.pid().to_string();
    let mut args = vec![
        "diff",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        mode,
        "--pid",
        &pid,
        "--cflags",
        cflags,
    ];
    args.extend_from_slice(extra);
    hotpatch(&args)
}

/// Runs a refused `--apply` and checks the refusal's item and reason, and that the process
/// was not touched.
fn assert_refused(repo: &Path, target: &mut TargetProcess, cflags: &str, item: &str, reason: &str) {
    let output = diff(repo, target, "--apply", cflags, &[]);
    let err = stderr_of(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{err}\n{}",
        stdout_of(&output)
    );
    assert!(err.contains(&format!("refused: {item} (")), "{err}");
    assert!(err.contains(reason), "{err}");
    assert!(err.contains("no process was touched"), "{err}");
    // Still v1, still counting.
    let line = target.wait_for("score=");
    assert!(line.contains("score=15"), "{line}");
}

#[test]
fn a_define_missing_from_the_flags_that_moves_a_member_is_refused_under_lto() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mut target) = start(work.path(), "-O2 -g -flto -DWITH_NAME", 0);
    assert_refused(
        &repo,
        &mut target,
        "-O2 -g -flto",
        "struct conn",
        "`struct conn`: member `tag` at offset 0 in the patch, offset 16 in the running binary",
    );
    // Forced by name, the dry run goes on (and says it was forced).
    let output = diff(
        &repo,
        &target,
        "--dry-run",
        "-O2 -g -flto",
        &["--force", "struct conn"],
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("FORCED: struct conn"),
        "{}",
        stderr_of(&output)
    );
    assert!(target.is_alive());
}

#[test]
fn packing_the_flags_miss_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mut target) = start(work.path(), "-O2 -g -flto -DPACKED", 0);
    assert_refused(
        &repo,
        &mut target,
        "-O2 -g -flto",
        "struct conn",
        "`struct conn`: member `id` at offset 4 in the patch, offset 1 in the running binary",
    );
}

#[test]
fn an_enumerator_value_the_flags_change_is_refused_without_lto_too() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mut target) = start(work.path(), "-O2 -g -DLEVEL_HIGH=9", 0);
    assert_refused(
        &repo,
        &mut target,
        "-O2 -g",
        "enum level",
        "`enum level`: `HIGH` is 5 in the patch, 9 in the running binary",
    );
}

#[test]
fn agreeing_layouts_apply_and_the_state_survives() {
    let work = tempfile::tempdir().unwrap();
    let flags = "-O2 -g -flto -DWITH_NAME";
    let (repo, mut target) = start(work.path(), flags, 0);
    let output = diff(&repo, &target, "--apply", flags, &[]);
    assert!(
        output.status.success(),
        "{}\n{}",
        stderr_of(&output),
        stdout_of(&output)
    );
    let before = target.seen.last().and_then(|l| field(l, "n")).unwrap();
    let line = target.wait_for("score=22");
    assert!(field(&line, "n").unwrap() > before, "{line}");
    target.read_lines(2);
    assert_counts_up_by_one(&target.seen[target.seen.len() - 3..], "n");
}

#[test]
fn a_binary_not_built_from_v1_is_refused_naming_both_locations() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mut target) = start(work.path(), "-O2 -g -flto", 3);
    assert_refused(
        &repo,
        &mut target,
        "-O2 -g -flto",
        "score",
        "the running binary's debug information declares `score` at lib.c:8, but v1",
    );
    let output = diff(&repo, &target, "--dry-run", "-O2 -g -flto", &[]);
    assert!(
        stderr_of(&output).contains("has it at lib.c:5"),
        "{}",
        stderr_of(&output)
    );
}

/// `tick7` (tick.c) takes a seventh argument on the stack and, under LTO, its caller
/// `advance` (main.c) keeps r10 and r11 live across the call: v2 writes them, and no thunk can
/// save them without shifting that argument. (Without LTO the object-level confirmation
/// would patch the same-file caller too, whose code changes with its callee's registers.)
fn stack_tree(v2: bool) -> Vec<(String, String)> {
    let c = project_root().join("applier/tests/c/ipara_stack_target.c");
    let text = std::fs::read_to_string(c)
        .unwrap()
        .replace("counter %ld", "counter=%ld")
        .replace(
            "((noinline)) long tick7",
            "((noinline, noclone)) long tick7",
        );
    let (tick, rest) = text.split_at(text.find("__attribute__((noinline)) long advance").unwrap());
    let mut tick = tick.to_string();
    if v2 {
        tick = tick.replace(
            "    return (a ^ b",
            "    __asm__ volatile(\"mov $1, %%r10d\\n\\tmov $2, %%r11d\" ::: \"r10\", \"r11\");\n    return (a ^ b",
        );
    }
    let main = format!(
        "#include <stdio.h>\n#include <unistd.h>\nlong tick7(long, long, long, long, long, long, long);\n{rest}"
    );
    vec![("tick.c".to_string(), tick), ("main.c".to_string(), main)]
}

#[test]
fn a_register_contract_no_thunk_keeps_is_a_refusal_force_can_name() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    git_repo_with_revisions(&repo, &stack_tree(false), &stack_tree(true));
    let mut target = build_and_start(
        work.path(),
        &stack_tree(false),
        ["main.c", "tick.c"],
        "-O2 -g -flto",
        "counter=2",
    );
    let output = diff(&repo, &target, "--apply", "-O2 -g -flto", &[]);
    let err = stderr_of(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{err}\n{}",
        stdout_of(&output)
    );
    assert!(
        err.contains("refused: advance->tick7 (register contract"),
        "{err}"
    );
    assert!(err.contains("would shift stack arguments"), "{err}");
    assert!(err.contains("--force 'advance->tick7'"), "{err}");
    let output = diff(
        &repo,
        &target,
        "--dry-run",
        "-O2 -g -flto",
        &["--force", "advance->tick7"],
    );
    let (out, err) = (stdout_of(&output), stderr_of(&output));
    assert!(output.status.success(), "{err}\n{out}");
    assert!(err.contains("FORCED: advance->tick7"), "{err}");
    assert!(out.contains("left unprotected"), "{out}");
    // Nothing was written: it counts on by one.
    target.read_lines(3);
    assert_counts_up_by_one(&target.seen[target.seen.len() - 3..], "counter");
}

#[test]
fn a_built_patch_whose_types_disagree_is_refused_by_apply_too() {
    let work = tempfile::tempdir().unwrap();
    let (repo, mut target) = start(work.path(), "-O2 -g -flto -DWITH_NAME", 0);
    let object = work.path().join("fix.hp.o");
    let output = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "--cflags",
        "-O2 -g -flto",
        "-o",
        object.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let pid = target.pid().to_string();
    let output = hotpatch(&["apply", object.to_str().unwrap(), "--pid", &pid]);
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("struct conn: `struct conn`: member `tag` at offset 0 in the patch, offset 16 in the running binary"),
        "{err}"
    );
    let line = target.wait_for("score=");
    assert!(line.contains("score=15"), "{line}");
}

#[test]
fn a_binary_whose_function_is_in_another_file_is_refused_naming_both() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    git_repo_with_revisions(&repo, &tree(2, 0), &tree(3, 0));
    // The running binary has `score` in main.c (appended there), lib.c holds nothing of it.
    let mut moved = tree(2, 0);
    let body = lib_c(2, 0).replace("#include \"conn.h\"\n", "");
    moved[2].1.push_str(&body);
    moved[1].1 = "#include \"conn.h\"\nint unused_lib(void) { return 0; }\n".into();
    let mut target = build_and_start(
        work.path(),
        &moved,
        ["main.c", "lib.c"],
        "-O2 -g -flto",
        "score=15",
    );
    // The inline map finds no `score` in lib.c and refuses `main` first (its caller, always
    // active); forced, the location proof still refuses.
    let output = diff(
        &repo,
        &target,
        "--apply",
        "-O2 -g -flto",
        &["--force", "main"],
    );
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refused: score (function elsewhere in the running binary)"),
        "{err}"
    );
    assert!(err.contains("/build/main.c:"), "{err}");
    assert!(err.contains("has it at lib.c:5"), "{err}");
    let line = target.wait_for("score=");
    assert!(line.contains("score=15"), "{line}");
}
