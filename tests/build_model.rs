//! The build model against real build systems and real processes: v1 is built by the project's
//! own build in its work tree, started, and `hotpatch diff v1..v2 --apply --pid N` with no flag
//! option patches it, with the flags, directory and generated headers of that build.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

/// The C sources shared by every build system's project: `src/value.c` compiles from `src/`
/// with `-I../include`, needs `-DEXTRA=3` from the build, the tracked `include/lib.h` (changed
/// in v2) and the generated, untracked `include/config.h` (CONFIG_BASE 7, written by the
/// configure-style script `gen-config`).
/// v1 prints value=20 (1*10+7+3); v2 value=31 (2*10+7+3+1); v2's code with v1's header: 21.
/// "Version 3" changes only the header: value=30, with no function's text changed.
fn sources(version: u32) -> Vec<(String, String)> {
    let step = if version == 1 { 1 } else { 2 };
    let extra = if version == 2 { " + 1" } else { "" };
    vec![
        (
            "src/main.c".to_string(),
            std::fs::read_to_string(project_root().join("testdata/common/main.c")).unwrap(),
        ),
        (
            "src/value.c".to_string(),
            format!(
                "#include \"config.h\"\n#include \"lib.h\"\n\nstatic int calls;\n\n\
                 int state(void)\n{{\n    return calls;\n}}\n\n\
                 int value(void)\n{{\n    calls++;\n    return STEP * 10 + CONFIG_BASE + EXTRA{extra};\n}}\n"
            ),
        ),
        (
            "include/lib.h".to_string(),
            format!("#define STEP {step}\n"),
        ),
        (
            "gen-config".to_string(),
            "#!/bin/sh\necho '#define CONFIG_BASE 7' > include/config.h\n".to_string(),
        ),
        (
            ".gitignore".to_string(),
            "config.h\n*.o\napp\nbuild/\n.ninja_*\n".to_string(),
        ),
    ]
}

/// A repository whose v1 and v2 hold `sources` plus `build_files`, with its work tree checked
/// out at v1 and configured by `gen-config` (`include/config.h` generated, untracked).
fn project(dir: &Path, build_files: &[(&str, &str)]) -> PathBuf {
    configured_project(dir, build_files, 2)
}

/// [`project`] whose v2 is `sources(v2)`.
fn configured_project(dir: &Path, build_files: &[(&str, &str)], v2: u32) -> PathBuf {
    let repo = unconfigured_project(dir, build_files, v2);
    run_ok(Command::new("sh").arg("gen-config").current_dir(&repo));
    repo
}

/// [`project`] without running `gen-config` (the build system generates `config.h` itself).
fn unconfigured_project(dir: &Path, build_files: &[(&str, &str)], v2: u32) -> PathBuf {
    let repo = dir.join("repo");
    let with_build = |version| {
        let mut files = sources(version);
        files.extend(
            build_files
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string())),
        );
        files
    };
    git_repo_with_revisions(&repo, &with_build(1), &with_build(v2));
    run_ok(
        Command::new("git")
            .args(["checkout", "-q", "v1"])
            .current_dir(&repo),
    );
    run_ok(Command::new("sh").arg("gen-config").current_dir(&repo));
    repo
}

/// Starts `binary` and waits for its v1 output.
fn start_v1(binary: &Path) -> TargetProcess {
    let mut target = TargetProcess::start(binary);
    target.wait_for("value=20");
    target
}

/// Applies v1..v2 to `target` with `extra` options and checks the patch took (value=31) with
/// state kept; returns the JSON report.
fn apply_and_check(repo: &Path, target: &mut TargetProcess, extra: &[&str]) -> Value {
    apply_and_expect(repo, target, extra, "value=31")
}

/// [`apply_and_check`], the patched process printing `after`.
fn apply_and_expect(repo: &Path, target: &mut TargetProcess, extra: &[&str], after: &str) -> Value {
    let pid = target.pid().to_string();
    let mut args = vec![
        "diff",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "--apply",
        "--pid",
        &pid,
        "--json",
    ];
    args.extend_from_slice(extra);
    let output = hotpatch(&args);
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        stdout_of(&output),
        stderr_of(&output)
    );
    assert!(
        !stderr_of(&output).contains("default"),
        "{}",
        stderr_of(&output)
    );
    target.wait_for(after);
    target.read_lines(2);
    assert_counts_up_by_one(&target.seen, "state");
    assert!(target.is_alive());
    serde_json::from_str(&stdout_of(&output)).unwrap()
}

/// The one entry of the JSON `flags` report (for src/value.c).
fn value_flags(report: &Value) -> &Value {
    let flags = report["flags"].as_array().expect("a flags array");
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0]["file"], "src/value.c");
    &flags[0]
}

fn arguments(flags: &Value) -> Vec<&str> {
    flags["arguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

const SUB_MAKE: &str = "\
CFLAGS = -O2 -g -I../include -DEXTRA=3
app: main.o value.o
\t$(CC) -o $@ main.o value.o
%.o: %.c
\t$(CC) $(CFLAGS) -c $< -o $@
";

#[test]
fn make_from_a_subdirectory_with_a_generated_header_needs_no_flag_option() {
    let dir = tempfile::tempdir().unwrap();
    let repo = project(
        dir.path(),
        &[
            ("Makefile", "all:\n\t$(MAKE) -C src\n"),
            ("src/Makefile", SUB_MAKE),
        ],
    );
    run_ok(Command::new("make").arg("-s").current_dir(&repo));
    let mut target = start_v1(&repo.join("src/app"));
    let repo_arg = repo.to_str().unwrap();
    // The dry run and the patch object's manifest say the same as the apply.
    let dry = hotpatch(&["diff", "v1..v2", "--repo", repo_arg, "--dry-run", "--json"]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    let dry: Value = serde_json::from_str(&stdout_of(&dry)).unwrap();
    let object = dir.path().join("fix.hp.o");
    let object = object.to_str().unwrap();
    let built = hotpatch(&[
        "build", "v1..v2", "--repo", repo_arg, "-o", object, "--json",
    ]);
    assert!(built.status.success(), "{}", stderr_of(&built));
    let built: Value = serde_json::from_str(&stdout_of(&built)).unwrap();
    let report = apply_and_check(&repo, &mut target, &[]);
    let flags = value_flags(&report);
    assert_eq!(value_flags(&dry), flags);
    assert_eq!(value_flags(&built), flags);
    let repo = std::fs::canonicalize(&repo).unwrap();
    assert_eq!(
        flags["source"],
        format!("make dry run in {}", repo.display())
    );
    assert_eq!(flags["directory"], repo.join("src").to_str().unwrap());
    let arguments = arguments(flags);
    assert!(
        arguments.contains(&"-DEXTRA=3") && arguments.contains(&"-I../include"),
        "{arguments:?}"
    );
}

const CMAKE_LISTS: &str = "\
cmake_minimum_required(VERSION 3.13)
project(app C)
set(BASE 7)
configure_file(config.h.in ${CMAKE_BINARY_DIR}/generated/config.h)
add_executable(app src/main.c src/value.c)
target_include_directories(app PRIVATE include ${CMAKE_BINARY_DIR}/generated)
target_compile_definitions(app PRIVATE EXTRA=3)
";

#[test]
fn cmake_build_dir_without_an_exported_database() {
    let dir = tempfile::tempdir().unwrap();
    let repo = unconfigured_project(
        dir.path(),
        &[
            ("CMakeLists.txt", CMAKE_LISTS),
            ("config.h.in", "#define CONFIG_BASE @BASE@\n"),
        ],
        2,
    );
    let repo = std::fs::canonicalize(repo).unwrap();
    run_ok(
        Command::new("cmake")
            .args([
                "-S",
                ".",
                "-B",
                "build",
                "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            ])
            .current_dir(&repo),
    );
    run_ok(
        Command::new("cmake")
            .args(["--build", "build"])
            .current_dir(&repo),
    );
    assert!(!repo.join("build/compile_commands.json").exists());
    let mut target = start_v1(&repo.join("build/app"));
    let report = apply_and_check(&repo, &mut target, &[]);
    let flags = value_flags(&report);
    let database = repo.join("build/compile_commands.json");
    assert_eq!(
        flags["source"],
        format!(
            "CMake export (compile_commands.json at {})",
            database.display()
        )
    );
    assert_eq!(flags["directory"], repo.join("build").to_str().unwrap());
    let arguments = arguments(flags);
    assert!(
        arguments.contains(&"-DEXTRA=3") && arguments.contains(&"-DNDEBUG"),
        "{arguments:?}"
    );
}

const CONFIGURE_AC: &str = "\
AC_INIT([app], [1.0])
AC_CONFIG_SRCDIR([src/value.c])
AC_CONFIG_HEADERS([config.h])
AM_INIT_AUTOMAKE([foreign subdir-objects])
AC_PROG_CC
AC_DEFINE([CONFIG_BASE], [7], [the base])
AC_CONFIG_FILES([Makefile])
AC_OUTPUT
";

const MAKEFILE_AM: &str = "\
bin_PROGRAMS = app
app_SOURCES = src/main.c src/value.c
app_CPPFLAGS = -I$(srcdir)/include -DEXTRA=3
";

#[test]
fn autotools_configure_and_make() {
    let dir = tempfile::tempdir().unwrap();
    let repo = unconfigured_project(
        dir.path(),
        &[("configure.ac", CONFIGURE_AC), ("Makefile.am", MAKEFILE_AM)],
        2,
    );
    let repo = std::fs::canonicalize(repo).unwrap();
    run_ok(Command::new("autoreconf").arg("-i").current_dir(&repo));
    run_ok(Command::new("./configure").arg("-q").current_dir(&repo));
    run_ok(Command::new("make").arg("-s").current_dir(&repo));
    let generated = [
        "configure",
        "Makefile.in",
        "Makefile",
        "config.status",
        "aclocal.m4",
    ];
    let modified = || -> Vec<std::time::SystemTime> {
        generated
            .iter()
            .map(|f| std::fs::metadata(repo.join(f)).unwrap().modified().unwrap())
            .collect()
    };
    let before = modified();
    let mut target = start_v1(&repo.join("app"));
    let report = apply_and_check(&repo, &mut target, &[]);
    let flags = value_flags(&report);
    assert_eq!(
        flags["source"],
        format!("make dry run in {}", repo.display())
    );
    let arguments = arguments(flags);
    assert!(
        arguments.contains(&"-DHAVE_CONFIG_H") && arguments.contains(&"-DEXTRA=3"),
        "{arguments:?}"
    );
    // The dry run re-made nothing: no autotools re-run, no makefile or configure regenerated.
    assert_eq!(modified(), before, "{generated:?}");
}

const MESON_BUILD: &str = "\
project('app', 'c')
conf = configuration_data()
conf.set('CONFIG_BASE', 7)
configure_file(output : 'config.h', configuration : conf)
executable('app', 'src/main.c', 'src/value.c',
  include_directories : include_directories('include'),
  c_args : ['-DEXTRA=3'])
";

#[test]
fn meson_build_dir_with_its_own_database() {
    let dir = tempfile::tempdir().unwrap();
    let repo = unconfigured_project(dir.path(), &[("meson.build", MESON_BUILD)], 2);
    let repo = std::fs::canonicalize(repo).unwrap();
    run_ok(
        Command::new("meson")
            .args(["setup", "build", "--buildtype=debugoptimized"])
            .current_dir(&repo),
    );
    run_ok(
        Command::new("ninja")
            .args(["-C", "build"])
            .current_dir(&repo),
    );
    let mut target = start_v1(&repo.join("build/app"));
    let report = apply_and_check(&repo, &mut target, &[]);
    let flags = value_flags(&report);
    assert_eq!(
        flags["source"],
        format!(
            "compile_commands.json at {}",
            repo.join("build/compile_commands.json").display()
        )
    );
    assert_eq!(flags["directory"], repo.join("build").to_str().unwrap());
    assert!(arguments(flags).contains(&"-DEXTRA=3"), "{flags}");
}

const BUILD_NINJA: &str = "\
cflags = -O2 -g -Iinclude -DEXTRA=3
rule cc
  command = cc $cflags -c $in -o $out
rule link
  command = cc -o $out $in
build src/main.o: cc src/main.c
build src/value.o: cc src/value.c
build app: link src/main.o src/value.o
";

#[test]
fn ninja_build_from_its_compdb() {
    let dir = tempfile::tempdir().unwrap();
    let repo = project(dir.path(), &[("build.ninja", BUILD_NINJA)]);
    let repo = std::fs::canonicalize(repo).unwrap();
    run_ok(Command::new("ninja").arg("-v").current_dir(&repo));
    let mut target = start_v1(&repo.join("app"));
    let report = apply_and_check(&repo, &mut target, &[]);
    let flags = value_flags(&report);
    assert_eq!(
        flags["source"],
        format!("ninja -t compdb in {}", repo.display())
    );
    assert!(arguments(flags).contains(&"-Iinclude"), "{flags}");
}

/// An out-of-tree build directory `out/` of the project at `repo`.
struct OutOfTree {
    repo: PathBuf,
    build: PathBuf,
}

impl OutOfTree {
    fn new(dir: &Path) -> OutOfTree {
        let repo = std::fs::canonicalize(project(dir, &[])).unwrap();
        let build = dir.join("out");
        std::fs::create_dir_all(&build).unwrap();
        let build = std::fs::canonicalize(&build).unwrap();
        OutOfTree { repo, build }
    }

    /// The command line compiling `src/FILE` from the build directory with `flags`.
    fn command(&self, file: &str, flags: &[&str]) -> Vec<String> {
        self.command_with("cc", file, flags)
    }

    /// [`OutOfTree::command`] with the compiler `compiler`.
    fn command_with(&self, compiler: &str, file: &str, flags: &[&str]) -> Vec<String> {
        let mut words = vec![compiler.to_string()];
        words.extend(flags.iter().map(|f| f.to_string()));
        words.push(format!("-I{}", self.repo.join("include").display()));
        words.extend([
            "-c".to_string(),
            self.repo.join("src").join(file).display().to_string(),
            "-o".to_string(),
            format!("{file}.o"),
        ]);
        words
    }

    /// Writes `compile_commands.json` with `commands` (file, command line) into the build dir.
    fn write_database(&self, commands: &[(&str, Vec<String>)]) -> PathBuf {
        let entries: Vec<Value> = commands
            .iter()
            .map(|(file, arguments)| {
                serde_json::json!({
                    "directory": self.build,
                    "file": self.repo.join("src").join(file),
                    "arguments": arguments,
                })
            })
            .collect();
        let path = self.build.join("compile_commands.json");
        std::fs::write(&path, serde_json::to_string_pretty(&entries).unwrap()).unwrap();
        path
    }

    /// Runs `commands` in the build directory and links `app`.
    fn build(&self, commands: &[Vec<String>]) -> PathBuf {
        for args in commands {
            run_ok(
                Command::new(&args[0])
                    .args(&args[1..])
                    .current_dir(&self.build),
            );
        }
        run_ok(
            Command::new("cc")
                .args(["-o", "app", "main.c.o", "value.c.o"])
                .current_dir(&self.build),
        );
        self.build.join("app")
    }
}

const BUILD_FLAGS: [&str; 3] = ["-O2", "-g", "-DEXTRA=3"];
const DEBUG_TWIN_FLAGS: [&str; 3] = ["-O0", "-g", "-DEXTRA=3"];

#[test]
fn a_header_only_change_is_found_through_the_build_s_include_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let repo = configured_project(
        dir.path(),
        &[
            ("Makefile", "all:\n\t$(MAKE) -C src\n"),
            ("src/Makefile", SUB_MAKE),
        ],
        3,
    );
    run_ok(Command::new("make").arg("-s").current_dir(&repo));
    let mut target = start_v1(&repo.join("src/app"));
    let report = apply_and_expect(&repo, &mut target, &[], "value=30");
    let changed = report["changes"].as_array().unwrap();
    let value = changed.iter().find(|c| c["name"] == "value").unwrap();
    assert!(value.to_string().contains("lib.h"), "{value}");
}

#[test]
fn an_untracked_compile_commands_json_in_an_out_of_tree_build_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = OutOfTree::new(dir.path());
    let main = out.command("main.c", &BUILD_FLAGS);
    let value = out.command("value.c", &BUILD_FLAGS);
    let database = out.write_database(&[("main.c", main.clone()), ("value.c", value.clone())]);
    let mut target = start_v1(&out.build(&[main, value]));
    let build_dir = out.build.to_str().unwrap();
    let report = apply_and_check(&out.repo, &mut target, &["--build-dir", build_dir]);
    let flags = value_flags(&report);
    assert_eq!(
        flags["source"],
        format!("compile_commands.json at {}", database.display())
    );
    assert_eq!(flags["directory"], build_dir);
    // The code-generation switches gcc records for these flags, as compared with the binary's.
    let switches = flags["switches"].as_array().unwrap();
    assert_eq!(switches[0], "-O2", "{switches:?}");
    assert!(
        switches.iter().any(|s| s == "-march=x86-64"),
        "{switches:?}"
    );
    let include = format!("-I{}", out.repo.join("include").display());
    assert_eq!(
        arguments(flags),
        [
            "-O2",
            "-g",
            "-DEXTRA=3",
            &include,
            "-fPIC",
            "-ffunction-sections",
            "-fdata-sections",
            "-Wno-redundant-decls",
            "-Wno-unused-function",
            "-Wno-unused-variable",
            "-Wno-unused-const-variable",
            "-Wno-implicit-fallthrough"
        ]
    );
}

#[test]
fn of_two_commands_for_one_file_the_one_reproducing_the_running_code_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let out = OutOfTree::new(dir.path());
    let main = out.command("main.c", &BUILD_FLAGS);
    let value = out.command("value.c", &BUILD_FLAGS);
    // The program's own command first, its -O0 debug twin last (where "the last wins" would
    // take the wrong one).
    let twin = out.command("value.c", &DEBUG_TWIN_FLAGS);
    out.write_database(&[
        ("main.c", main.clone()),
        ("value.c", value.clone()),
        ("value.c", twin),
    ]);
    let mut target = start_v1(&out.build(&[main, value]));
    let build_dir = out.build.to_str().unwrap();
    let pid = target.pid().to_string();

    // Without a process to compare with there is no evidence: refused, naming both.
    let repo = out.repo.to_str().unwrap();
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        repo,
        "--dry-run",
        "--build-dir",
        build_dir,
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: src/value.c has 2 compile commands in compile_commands.json at")
            && stderr.contains("#1 in ")
            && stderr.contains("#2 in ")
            && stderr.contains("-O0")
            && stderr.contains("give --pid"),
        "{stderr}"
    );
    target.read_lines(2);
    assert!(target.seen.last().unwrap().contains("value=20"));

    let report = apply_and_check(&out.repo, &mut target, &["--build-dir", build_dir]);
    assert!(arguments(value_flags(&report)).contains(&"-O2"));
    let choices = report["flag_choices"].as_array().unwrap();
    let choice = choices[0].as_str().unwrap();
    assert!(
        choice.contains("chose #1")
            && choice.contains(&format!("reproduces the code running in pid {pid}"))
            && choice.contains("#2: the running `value` differs"),
        "{choice}"
    );

    // A second patch on the same function: the code in effect is the first patch's, compared
    // with each candidate's compile of v2; the debug twin's mismatch does not stop the choice.
    let v3 = sources(3);
    write_tree(&out.repo, &v3);
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .current_dir(&out.repo),
        )
    };
    git(&["commit", "-qam", "v3"]);
    git(&["tag", "v3"]);
    let output = hotpatch(&[
        "diff",
        "v2..v3",
        "--repo",
        repo,
        "--apply",
        "--pid",
        &pid,
        "--build-dir",
        build_dir,
        "--json",
    ]);
    let stdout = stdout_of(&output);
    assert!(output.status.success(), "{stdout}{}", stderr_of(&output));
    target.wait_for("value=30");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let choice = report["flag_choices"][0].as_str().unwrap();
    assert!(
        choice.contains("chose #1") && choice.contains("because its v2 ("),
        "{choice}"
    );
}

#[test]
fn the_build_model_s_errors_name_the_file_and_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = OutOfTree::new(dir.path());
    let main = out.command("main.c", &BUILD_FLAGS);
    let value = out.command("value.c", &BUILD_FLAGS);
    let database = out.write_database(&[("main.c", main.clone())]);
    let mut target = start_v1(&out.build(&[main, value]));
    let (repo, build_dir) = (out.repo.to_str().unwrap(), out.build.to_str().unwrap());
    let pid = target.pid().to_string();
    let apply = |extra: &[&str]| {
        let mut args = vec!["diff", "v1..v2", "--repo", repo, "--apply", "--pid", &pid];
        args.extend_from_slice(extra);
        hotpatch(&args)
    };
    let expect = |output: std::process::Output, needle: &str| {
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "expected `{needle}` in {stderr}"
        );
    };
    expect(
        apply(&["--build-dir", build_dir]),
        &format!(
            "no compile command for src/value.c in compile_commands.json at {} (1 entry)",
            database.display()
        ),
    );
    expect(
        apply(&["--compile-commands", "/nonexistent/cc.json"]),
        "--compile-commands /nonexistent/cc.json",
    );
    expect(
        apply(&["--build-dir", "/nonexistent/build"]),
        "--build-dir /nonexistent/build",
    );
    // A Makefile whose dry run fails.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("Makefile"),
        "$(error this tree is not configured)
",
    )
    .unwrap();
    let broken = std::fs::canonicalize(&broken).unwrap();
    expect(
        apply(&["--build-dir", broken.to_str().unwrap()]),
        &format!(
            "make -n in {} failed (exit status: 2): Makefile:1: *** this tree is not configured.  Stop.",
            broken.display()
        ),
    );
    // No database any more: explicit flags that are not the build's. The pre-image refuses,
    // saying which flags were used, from where, and what to try.
    std::fs::remove_file(&database).unwrap();
    expect(
        apply(&[
            "--build-dir",
            build_dir,
            "--cflags",
            "-O0 -g -DEXTRA=3 -Iinclude",
        ]),
        "does not match v1 (",
    );
    let output = apply(&[
        "--build-dir",
        build_dir,
        "--cflags",
        "-O0 -g -DEXTRA=3 -Iinclude",
    ]);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("v1 was compiled as src/value.c with `-O0 -g -DEXTRA=3 -Iinclude -fPIC")
            && stderr.contains("from --cflags")
            && stderr.contains("give --build-dir DIR"),
        "{stderr}"
    );
    // Nothing at all: the default flags, said loudly under the error they lead to.
    let output = apply(&["--build-dir", build_dir]);
    let stderr = stderr_of(&output);
    expect(output, "config.h: No such file or directory");
    assert!(
        stderr.contains("\nwarning: no build flags found for src/value.c")
            && stderr.contains(&format!(
                "no compile_commands.json, CMakeCache.txt, build.ninja or Makefile in {build_dir}"
            )),
        "{stderr}"
    );
    target.read_lines(2);
    assert!(
        target.seen.last().unwrap().contains("value=20"),
        "{:?}",
        target.seen
    );
    assert_counts_up_by_one(&target.seen, "state");
}

#[test]
fn switches_the_binary_records_must_be_the_patch_s() {
    let dir = tempfile::tempdir().unwrap();
    let out = OutOfTree::new(dir.path());
    // The binary was built with a switch that does not change `value`'s code; the database
    // given to hotpatch lacks it: the pre-image matches, the DWARF producer does not.
    let built_with = ["-O2", "-g", "-DEXTRA=3", "-fno-strict-aliasing"];
    let main = out.command("main.c", &built_with);
    let value = out.command("value.c", &built_with);
    let binary = out.build(&[main.clone(), value]);
    out.write_database(&[
        ("main.c", main),
        ("value.c", out.command("value.c", &BUILD_FLAGS)),
    ]);
    let mut target = start_v1(&binary);
    let pid = target.pid().to_string();
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        out.repo.to_str().unwrap(),
        "--apply",
        "--pid",
        &pid,
        "--build-dir",
        out.build.to_str().unwrap(),
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot patch pid {pid}: the running binary's DWARF says src/value.c was \
             compiled with `-fno-strict-aliasing` that the patch's flags (from compile_commands.json at"
        )) && stderr.contains("refusing before anything is written"),
        "{stderr}"
    );
    target.read_lines(2);
    assert!(
        target.seen.last().unwrap().contains("value=20"),
        "{:?}",
        target.seen
    );
    assert_counts_up_by_one(&target.seen, "state");
}

#[test]
fn the_deploy_hook_takes_the_build_dir_from_git_config() {
    let dir = tempfile::tempdir().unwrap();
    let repo = project(
        dir.path(),
        &[
            ("Makefile", "all:\n\t$(MAKE) -C src\n"),
            ("src/Makefile", SUB_MAKE),
        ],
    );
    run_ok(Command::new("make").arg("-s").current_dir(&repo));
    let mut service = start_v1(&repo.join("src/app"));
    let deploy = dir.path().join("deploy.git");
    let git = |dir: &Path, args: &[&str]| {
        run_ok(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=dev",
                    "-c",
                    "user.email=dev@example.invalid",
                ])
                .args(args)
                .current_dir(dir),
        )
    };
    git(dir.path(), &["init", "-q", "--bare", "deploy.git"]);
    let output = hotpatch(&["hook", "install", deploy.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    git(
        &deploy,
        &["config", "hotpatch.pid", &service.pid().to_string()],
    );
    git(
        &deploy,
        &["config", "hotpatch.buildDir", repo.to_str().unwrap()],
    );
    let deploy = deploy.to_str().unwrap();
    git(&repo, &["push", "-q", deploy, "v1:refs/heads/main"]);
    let pushed = git(&repo, &["push", deploy, "v2:refs/heads/main"]);
    let stderr = stderr_of(&pushed);
    assert!(
        stderr.contains(&format!("patched pid {}", service.pid())),
        "{stderr}"
    );
    assert!(!stderr.contains("default"), "{stderr}");
    service.wait_for("value=31");
    service.read_lines(2);
    assert_counts_up_by_one(&service.seen, "state");
    assert!(service.is_alive());
}

#[test]
fn the_build_s_own_compiler_compiles_the_patch() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = OutOfTree::new(dir.path());
    // A compiler of the build's own (a wrapper around gcc that logs each run).
    let wrapper = out.build.join("wrap-gcc");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/wrap.log\"\nexec gcc \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let compiler = wrapper.to_str().unwrap();
    let main = out.command_with(compiler, "main.c", &BUILD_FLAGS);
    let value = out.command_with(compiler, "value.c", &BUILD_FLAGS);
    out.write_database(&[("main.c", main.clone()), ("value.c", value.clone())]);
    let mut target = start_v1(&out.build(&[main, value]));
    let log = out.build.join("wrap.log");
    std::fs::remove_file(&log).unwrap();
    let build_dir = out.build.to_str().unwrap();
    let report = apply_and_check(&out.repo, &mut target, &["--build-dir", build_dir]);
    assert_eq!(value_flags(&report)["compiler"], compiler);
    let runs = std::fs::read_to_string(&log).unwrap();
    assert!(runs.contains("value.hotpatch."), "{runs}");
}
