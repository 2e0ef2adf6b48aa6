//! Deploy by `git push` end to end, with real git: a bare deploy repository with the hook
//! installed, a running service built from the deployed revision, and a clone that pushes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

/// File name of the service executable inside the deployment's directory.
const SERVICE: &str = "service";

/// A deploy repository with the hook installed, a developer's clone, and the running service.
struct Deployment {
    dir: tempfile::TempDir,
    service: Option<TargetProcess>,
}

/// Runs git in `dir`. A push runs the hook, whose object cache is `hotpatch-cache` beside `dir`
/// (pushes run in the work tree: beside it, in this test's own directory), and whose state
/// directory for `hotpatch watch` is `state` beside it (nothing is recorded unless a test
/// creates it).
fn git(dir: &Path, args: &[&str]) -> Output {
    let beside = dir.parent().unwrap_or(dir);
    Command::new("git")
        .env("XDG_CACHE_HOME", beside.join("hotpatch-cache"))
        .env("HOTPATCH_STATE_DIR", beside.join("state"))
        .args([
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running git")
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let output = git(dir, args);
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        stderr_of(&output)
    );
    stdout_of(&output).trim().to_string()
}

impl Deployment {
    /// Pushes the `simplest` case's v1 to a fresh deploy repository and starts the service from it.
    fn new() -> Deployment {
        Deployment::with(&case_files("v1"), "value=1")
    }

    /// Pushes `files` to a fresh deploy repository, starts the service built from them and waits
    /// until it prints `ready`.
    fn with(files: &[(String, String)], ready: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let deploy = dir.path().join("deploy.git");
        git_ok(dir.path(), &["init", "-q", "--bare", "deploy.git"]);
        let output = hotpatch(&["hook", "install", deploy.to_str().unwrap()]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        let pidfile = dir.path().join("service.pid");
        git_ok(
            &deploy,
            &["config", "hotpatch.pidfile", pidfile.to_str().unwrap()],
        );

        let work = dir.path().join("work");
        git_ok(dir.path(), &["init", "-q", "-b", "main", "work"]);
        write_tree(&work, files);
        git_ok(&work, &["add", "-A"]);
        git_ok(&work, &["commit", "-q", "-m", "v1"]);
        git_ok(
            &work,
            &["remote", "add", "deploy", deploy.to_str().unwrap()],
        );
        let first = git(&work, &["push", "deploy", "main"]);
        assert!(first.status.success(), "{}", stderr_of(&first));
        assert!(
            stderr_of(&first).contains("first push of the deploy branch"),
            "{}",
            stderr_of(&first)
        );

        let binary = dir.path().join(SERVICE);
        compile_program(&work, &["main.c".into(), "lib.c".into()], "-O2 -g", &binary);
        let mut service = TargetProcess::start(&binary);
        service.wait_for(ready);
        std::fs::write(&pidfile, service.pid().to_string()).unwrap();
        Deployment {
            dir,
            service: Some(service),
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn deploy(&self) -> PathBuf {
        self.dir.path().join("deploy.git")
    }

    fn service(&mut self) -> &mut TargetProcess {
        self.service.as_mut().unwrap()
    }

    /// Commits `lib` as the new lib.c and pushes it; returns git's output.
    fn push_lib(&self, lib: &str, message: &str) -> Output {
        std::fs::write(self.work().join("lib.c"), lib).unwrap();
        git_ok(&self.work(), &["commit", "-q", "-am", message]);
        git(&self.work(), &["push", "deploy", "main"])
    }

    /// Pushes `lib` (see [`Deployment::push_lib`]) and checks the push was accepted with the
    /// service patched; returns the hook's messages.
    fn push_patching(&mut self, lib: &str, message: &str) -> String {
        let output = self.push_lib(lib, message);
        let messages = stderr_of(&output);
        assert!(output.status.success(), "{messages}");
        let pid = self.service().pid();
        assert!(
            messages.contains(&format!(
                "remote: hotpatch: refs/heads/main: patched pid {pid}"
            )),
            "{messages}"
        );
        messages
    }

    /// The service keeps running, printing `expected`, its state counting up by one per line.
    fn assert_still_prints(&mut self, expected: &str) {
        let service = self.service();
        service.read_lines(3);
        let last = service.seen.last().unwrap();
        assert!(last.contains(expected), "{:?}", service.seen);
        assert_counts_up_by_one(&service.seen, "state");
        assert!(service.is_alive());
    }

    fn deployed_commit(&self) -> String {
        git_ok(&self.deploy(), &["rev-parse", "refs/heads/main"])
    }
}

fn case_files(version: &str) -> Vec<(String, String)> {
    let root = project_root();
    vec![
        (
            "main.c".into(),
            std::fs::read_to_string(root.join("testdata/common/main.c")).unwrap(),
        ),
        (
            "lib.c".into(),
            std::fs::read_to_string(root.join(format!("testdata/cases/simplest/{version}/lib.c")))
                .unwrap(),
        ),
    ]
}

#[test]
fn a_push_live_patches_the_service_and_a_bad_push_is_rejected_untouched() {
    let mut deployment = Deployment::new();
    let v2 = case_files("v2").remove(1).1;
    deployment.push_patching(&v2, "stateless fix: value is 2");
    assert_eq!(
        deployment.deployed_commit(),
        git_ok(&deployment.work(), &["rev-parse", "HEAD"])
    );
    deployment.service().wait_for("value=2");
    deployment.service().read_lines(2);

    // A change that does not compile: the push is rejected with the compiler's words, the
    // deploy branch stays where it was, and the service keeps running the deployed code.
    let before = deployment.deployed_commit();
    let broken = v2.replace("return 2;", "return 3 +;");
    let output = deployment.push_lib(&broken, "broken");
    let messages = stderr_of(&output);
    assert!(!output.status.success(), "{messages}");
    assert!(messages.contains("does not compile"), "{messages}");
    assert!(messages.contains("push rejected"), "{messages}");
    assert_eq!(deployment.deployed_commit(), before);
    deployment.assert_still_prints("value=2");
}

#[test]
fn the_ledger_names_the_deployed_commit_and_layout_changes_are_refused() {
    let mut deployment = Deployment::new();
    let v2 = case_files("v2").remove(1).1;
    assert!(deployment.push_lib(&v2, "v2").status.success());
    let pushed = deployment.deployed_commit();
    deployment.service().wait_for("value=2");
    let pid = deployment.service().pid().to_string();
    let list = hotpatch(&["list", "--pid", &pid]);
    assert!(
        stdout_of(&list).contains(&pushed[..8]),
        "{}",
        stdout_of(&list)
    );

    // A new type and global need no patch: accepted, nothing written.
    let with_struct = format!(
        "{v2}\nstruct stats\n{{\n    int calls;\n    int errors;\n}};\n\nstruct stats totals;\n"
    );
    let output = deployment.push_lib(&with_struct, "add stats");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("nothing to patch"),
        "{}",
        stderr_of(&output)
    );

    // Reordering its fields changes the layout of data the process holds: refused, with the
    // diagnostic shown to the pusher; the branch does not move; the process is untouched.
    let before = deployment.deployed_commit();
    let reordered = with_struct.replace(
        "    int calls;\n    int errors;",
        "    int errors;\n    int calls;",
    );
    let output = deployment.push_lib(&reordered, "reorder stats");
    let messages = stderr_of(&output);
    assert!(!output.status.success(), "{messages}");
    assert!(messages.contains("struct stats"), "{messages}");
    assert!(
        messages.contains("cannot be applied to the running service"),
        "{messages}"
    );
    assert_eq!(deployment.deployed_commit(), before);
    deployment.assert_still_prints("value=2");

    // The pusher may accept that one refusal by name with a push option; the hook says so loudly.
    git_ok(
        &deployment.deploy(),
        &["config", "receive.advertisePushOptions", "true"],
    );
    let output = git(
        &deployment.work(),
        &["push", "-o", "force=struct stats", "deploy", "main"],
    );
    let messages = stderr_of(&output);
    assert!(output.status.success(), "{messages}");
    assert!(
        messages.contains("warning: FORCED: struct stats"),
        "{messages}"
    );
    assert_ne!(deployment.deployed_commit(), before);
}

#[test]
fn two_pushes_that_touch_the_same_function_both_patch_it() {
    let mut deployment = Deployment::new();
    let v2 = case_files("v2").remove(1).1;
    let pid = deployment.service().pid();
    // The second push's old side is the first push's new side: its pre-image of `value` is
    // checked against the first patch's code, which is what runs.
    for value in [2, 3] {
        let lib = v2.replace("return 2;", &format!("return {value};"));
        deployment.push_patching(&lib, &format!("value is {value}"));
        assert_eq!(
            deployment.deployed_commit(),
            git_ok(&deployment.work(), &["rev-parse", "HEAD"])
        );
        deployment.service().wait_for(&format!("value={value}"));
    }
    // The hook kept the compiles of each push's sides in its cache, for the next push.
    let cache = deployment
        .dir
        .path()
        .join("hotpatch-cache/hotpatch/objects");
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|d| d.count() > 0),
        "{cache:?}"
    );
    let list = hotpatch(&["list", "--pid", &pid.to_string(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let patches = json["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 2, "{json}");
    let pushed = deployment.deployed_commit();
    assert!(
        json["running_revision"]
            .as_str()
            .unwrap()
            .contains(&pushed[..8]),
        "{json}"
    );
    deployment.assert_still_prints("value=3");
}

/// A push that changes a function the previous push added (a `static` helper above `value`,
/// which moved `value` down): it is replaced where the first patch put it, and `value`'s place
/// is read against the commit the service was built from, not against the first push.
#[test]
fn a_push_that_changes_a_function_the_previous_push_added_patches_it() {
    let mut deployment = Deployment::new();
    let v1 = case_files("v1").remove(1).1;
    for value in [2, 3] {
        let bonus = format!(
            "static int bonus(int x)\n{{\n    return x * {value} + (calls < 0);\n}}\n\nint value(void)"
        );
        let lib = v1
            .replace("int value(void)", &bonus)
            .replace("return 1;", "return bonus(1);");
        deployment.push_patching(&lib, &format!("bonus gives {value}"));
        deployment.service().wait_for(&format!("value={value}"));
    }
    deployment.assert_still_prints("value=3");
}

/// A push records its patch for `hotpatch watch` as an apply does: a process of the service
/// started after the push is patched by the watcher.
#[test]
fn a_pushed_patch_is_recorded_and_the_watcher_patches_a_new_process_with_it() {
    let mut deployment = Deployment::new();
    let state = deployment.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let v2 = case_files("v2").remove(1).1;
    let output = deployment.push_lib(&v2, "stateless fix: value is 2");
    assert!(output.status.success(), "{}", stderr_of(&output));
    deployment.service().wait_for("value=2");
    let pid = deployment.service().pid().to_string();
    let list = hotpatch(&["list", "--pid", &pid, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let patch_id = json["patches"][0]["patch_id"].as_str().unwrap().to_string();
    let recorded: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .flat_map(|build| std::fs::read_dir(build.path()).unwrap().flatten())
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(recorded, [format!("000001-{patch_id}.hp.o")]);

    let binary = deployment.dir.path().join(SERVICE);
    let mut watch = TargetProcess::start_with(
        Path::new(env!("CARGO_BIN_EXE_hotpatch")),
        &[
            "watch",
            "--exe",
            binary.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    watch.wait_for("watching for new processes of");
    let mut newcomer = TargetProcess::start(&binary);
    newcomer.wait_for("value=2");
    watch.wait_for(&format!("patched new pid {}", newcomer.pid()));
    deployment.assert_still_prints("value=2");
}

/// A service whose one thread is always inside `value` (each call sleeps 300 ms, and the loop
/// calls it again at once): the push is rejected after the timeout, and with
/// `hotpatch.waitReturn` the hook commits right as a call returns.
#[test]
fn wait_return_in_git_config_patches_a_function_its_thread_never_leaves_for_long() {
    let busy = |version: u32| {
        format!(
            "#include <unistd.h>\nstatic int calls;\nint state(void) {{ return calls; }}\n\
             int value(void) {{ calls++; usleep(300000); return {version}; }}\n"
        )
    };
    let main = "#include <stdio.h>\nint state(void);\nint value(void);\n\
                int main(void) { setvbuf(stdout, 0, _IOLBF, 0);\n\
                for (unsigned tick = 0;; tick++) { int v = value();\n\
                printf(\"tick=%u state=%d value=%d\\n\", tick, state(), v); } }\n";
    let files = [
        ("main.c".to_string(), main.to_string()),
        ("lib.c".to_string(), busy(1)),
    ];
    let mut deployment = Deployment::with(&files, "value=1");
    git_ok(&deployment.deploy(), &["config", "hotpatch.timeout", "1"]);
    let output = deployment.push_lib(&busy(2), "value is 2");
    let messages = stderr_of(&output);
    assert!(!output.status.success(), "{messages}");
    assert!(
        messages.contains("gave up after") && messages.contains("`value`"),
        "{messages}"
    );

    git_ok(
        &deployment.deploy(),
        &["config", "hotpatch.waitReturn", "true"],
    );
    let output = git(&deployment.work(), &["push", "deploy", "main"]);
    let messages = stderr_of(&output);
    assert!(output.status.success(), "{messages}");
    assert!(messages.contains("patched pid"), "{messages}");
    deployment.service().wait_for("value=2");
    deployment.assert_still_prints("value=2");
}

#[test]
fn a_process_that_runs_another_revision_is_not_patched() {
    let mut deployment = Deployment::new();
    let v1_commit = deployment.deployed_commit();
    let v2 = case_files("v2").remove(1).1;
    assert!(deployment.push_lib(&v2, "v2").status.success());
    deployment.service().wait_for("value=2");
    // Someone moves the deploy branch back behind the hook's back: the process still runs v2.
    git_ok(
        &deployment.deploy(),
        &["update-ref", "refs/heads/main", &v1_commit],
    );
    git_ok(&deployment.work(), &["reset", "-q", "--hard", &v1_commit]);
    let v3 = v2.replace("return 2;", "return 5;");
    std::fs::write(deployment.work().join("lib.c"), v3).unwrap();
    git_ok(
        &deployment.work(),
        &["commit", "-q", "-am", "v3 on top of v1"],
    );
    let output = git(&deployment.work(), &["push", "--force", "deploy", "main"]);
    let messages = stderr_of(&output);
    assert!(!output.status.success(), "{messages}");
    assert!(
        messages.contains("refusing to patch a process that runs something else"),
        "{messages}"
    );
    assert_eq!(deployment.deployed_commit(), v1_commit);
    deployment.assert_still_prints("value=2");
}

#[test]
fn other_refs_are_accepted_without_patching_and_dry_run_previews() {
    let mut deployment = Deployment::new();
    let work = deployment.work();
    git_ok(&work, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.join("lib.c"), case_files("v2").remove(1).1).unwrap();
    git_ok(&work, &["commit", "-q", "-am", "feature work"]);
    let output = git(&work, &["push", "deploy", "feature"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("not the deploy branch `main`"),
        "{}",
        stderr_of(&output)
    );
    git_ok(&work, &["tag", "v2"]);
    let output = git(&work, &["push", "deploy", "v2"]);
    assert!(output.status.success(), "{}", stderr_of(&output));

    // The hook's dry run, fed the same stdin git would give it: says what it would patch.
    let old = deployment.deployed_commit();
    let new = git_ok(&work, &["rev-parse", "HEAD"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(["hook", "pre-receive", "--dry-run"])
        .env("GIT_DIR", deployment.deploy())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{old} {new} refs/heads/main").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let pid = deployment.service().pid();
    assert!(
        stdout_of(&output).contains(&format!("dry run: would patch pid {pid}: value")),
        "{}",
        stdout_of(&output)
    );
    deployment.assert_still_prints("value=1");
}

#[test]
fn every_process_of_the_service_executable_is_patched() {
    let mut deployment = Deployment::new();
    let binary = deployment.dir.path().join(SERVICE);
    let mut second = TargetProcess::start(&binary);
    second.wait_for("value=1");
    git_ok(
        &deployment.deploy(),
        &["config", "--unset", "hotpatch.pidfile"],
    );
    git_ok(
        &deployment.deploy(),
        &["config", "hotpatch.exe", binary.to_str().unwrap()],
    );
    let output = deployment.push_lib(&case_files("v2").remove(1).1, "v2 for every worker");
    let messages = stderr_of(&output);
    assert!(output.status.success(), "{messages}");
    for pid in [deployment.service().pid(), second.pid()] {
        assert!(
            messages.contains(&format!("patched pid {pid} ")),
            "{messages}"
        );
    }
    deployment.service().wait_for("value=2");
    second.wait_for("value=2");
    assert_counts_up_by_one(&second.seen, "state");
}

#[test]
fn install_refuses_to_replace_a_foreign_hook() {
    let dir = tempfile::tempdir().unwrap();
    git_ok(dir.path(), &["init", "-q", "--bare", "deploy.git"]);
    let hook = dir.path().join("deploy.git/hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    let repo = dir.path().join("deploy.git");
    let output = hotpatch(&["hook", "install", repo.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("was not installed by hotpatch"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
    let output = hotpatch(&["hook", "install", repo.to_str().unwrap(), "--force"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(std::fs::read_to_string(&hook)
        .unwrap()
        .contains("hook pre-receive"));
    // Reinstalling over its own hook needs no --force.
    assert!(hotpatch(&["hook", "install", repo.to_str().unwrap()])
        .status
        .success());
}

#[test]
fn a_push_without_a_configured_target_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    git_ok(dir.path(), &["init", "-q", "--bare", "deploy.git"]);
    let deploy = dir.path().join("deploy.git");
    assert!(hotpatch(&["hook", "install", deploy.to_str().unwrap()])
        .status
        .success());
    let work = dir.path().join("work");
    git_ok(dir.path(), &["init", "-q", "-b", "main", "work"]);
    write_tree(&work, &case_files("v1"));
    git_ok(&work, &["add", "-A"]);
    git_ok(&work, &["commit", "-q", "-m", "v1"]);
    git_ok(
        &work,
        &["remote", "add", "deploy", deploy.to_str().unwrap()],
    );
    assert!(git(&work, &["push", "deploy", "main"]).status.success());
    std::fs::write(work.join("lib.c"), case_files("v2").remove(1).1).unwrap();
    git_ok(&work, &["commit", "-q", "-am", "v2"]);
    let output = git(&work, &["push", "deploy", "main"]);
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("no deploy target is configured"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn a_push_patches_every_process_of_a_pre_forking_service() {
    // The pidfile names the master; its forked workers (and a grandchild) are the service too.
    let mut deployment = Deployment::with(&family_server_files(1), "value=1");
    let v2 = family_server_files(2).remove(0).1;
    let output = deployment.push_lib(&v2, "value is 2");
    let messages = stderr_of(&output);
    assert!(output.status.success(), "{messages}");
    let master = deployment.service().pid();
    assert!(
        messages.contains(&format!("patched pid {master} ")),
        "{messages}"
    );
    assert_eq!(messages.matches("patched pid").count(), 4, "{messages}");
    let mut patched = std::collections::BTreeSet::new();
    while patched.len() < 4 {
        let line = deployment.service().wait_for("value=2");
        patched.insert(field(&line, "pid").unwrap());
    }
}
