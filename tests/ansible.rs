//! `contrib/ansible/`: the roll-out playbook ships one patch object, applies it batch by batch
//! with `hotpatch apply --json`, stops on the first failure by the JSON result and reverts every
//! host it patched; `rollback.yml` reverts on demand. Run for real against local hosts
//! (`-c local`) on real processes. Needs `ansible-playbook` (`.ci/run` installs ansible-core from
//! PyPI; `$ANSIBLE_PLAYBOOK` names another): without it the test says so and, under CI, fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

/// `ansible-playbook`: `$ANSIBLE_PLAYBOOK`, else the one on PATH.
fn ansible_playbook() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ANSIBLE_PLAYBOOK") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("ansible-playbook"))
        .find(|p| p.is_file())
}

/// Runs `playbook` of contrib/ansible with `inventory` and `-e` variables.
fn play(ansible: &Path, playbook: &str, inventory: &str, vars: &[(&str, String)]) -> Output {
    let mut command = Command::new(ansible);
    command
        .arg("-i")
        .arg(inventory)
        .args(["-c", "local"])
        .arg(project_root().join("contrib/ansible").join(playbook))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_HOST_KEY_CHECKING", "0");
    // The Python that runs ansible-playbook (a virtualenv's) runs its modules too.
    if let Some(python) = ansible
        .parent()
        .map(|d| d.join("python3"))
        .filter(|p| p.exists())
    {
        command
            .arg("-e")
            .arg(format!("ansible_python_interpreter={}", python.display()));
    }
    for (key, value) in vars {
        command.arg("-e").arg(format!("{key}={value}"));
    }
    command.output().expect("running ansible-playbook")
}

fn text(output: &Output) -> String {
    format!("{}{}", stdout_of(output), stderr_of(output))
}

#[test]
fn the_playbook_rolls_out_stops_on_the_first_failure_and_rolls_back() {
    let Some(ansible) = ansible_playbook() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ansible-playbook is missing under CI: .ci/run installs ansible-core"
        );
        eprintln!("SKIPPED: no ansible-playbook on PATH (pip install ansible-core)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let binary = simplest_case(dir.path());
    let repo = dir.path().join("repo");
    let object = dir.path().join("fix.hp.o");
    let output = hotpatch(&[
        "build",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "-o",
        object.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let mut services: Vec<TargetProcess> = (0..3).map(|_| TargetProcess::start(&binary)).collect();
    for (i, service) in services.iter_mut().enumerate() {
        service.wait_for("value=1");
        std::fs::write(
            dir.path().join(format!("h{i}.pid")),
            service.pid().to_string(),
        )
        .unwrap();
    }
    let common = |pidfile: String| {
        vec![
            ("patch_object", object.display().to_string()),
            ("hotpatch", env!("CARGO_BIN_EXE_hotpatch").to_string()),
            (
                "remote_dir",
                dir.path().join("remote").display().to_string(),
            ),
            ("service_pidfile", pidfile),
        ]
    };

    // One host, as the README shows it: patched.
    let h0 = dir.path().join("h0.pid").display().to_string();
    let output = play(&ansible, "rollout.yml", "localhost,", &common(h0.clone()));
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("patched pid"), "{}", text(&output));
    services[0].wait_for("value=2");
    let listed = hotpatch(&["list", "--pid", &services[0].pid().to_string(), "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let patch_id = listed["patches"][0]["patch_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The on-demand rollback reverts it.
    let mut vars = common(h0);
    vars.push(("patch_id", patch_id));
    let output = play(&ansible, "rollback.yml", "localhost,", &vars);
    assert!(output.status.success(), "{}", text(&output));
    services[0].wait_for("value=1");

    // Three hosts one at a time; the second has no such process: the first is patched, the
    // roll-out stops at the second, the third is never touched, the first is reverted.
    let inventory = dir.path().join("hosts");
    let mut hosts = String::new();
    for (i, name) in ["h0", "hx", "h2"].iter().enumerate() {
        let pidfile = dir.path().join(format!("{name}.pid"));
        if *name == "hx" {
            std::fs::write(&pidfile, "4194305").unwrap(); // above the largest pid: no process
        }
        hosts.push_str(&format!(
            "{name} ansible_connection=local service_pidfile={} order={i}\n",
            pidfile.display()
        ));
    }
    std::fs::write(&inventory, hosts).unwrap();
    let mut vars = common(String::new());
    vars.retain(|(key, _)| *key != "service_pidfile");
    let output = play(&ansible, "rollout.yml", inventory.to_str().unwrap(), &vars);
    let log = text(&output);
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("no_such_process"), "{log}");
    assert!(log.contains("roll-out stopped at hx"), "{log}");
    // h0 was patched in the first batch and reverted by the rescue, delegated to it.
    assert!(log.contains("patched pid"), "{log}");
    assert!(log.contains("changed: [hx -> h0] => (item=h0)"), "{log}");
    assert!(!log.contains("-> h2]"), "{log}");
    for service in [&services[0], &services[2]] {
        let listed = hotpatch(&["list", "--pid", &service.pid().to_string(), "--json"]);
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        let live = listed["patches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "applied")
            .count();
        assert_eq!(live, 0, "{listed:#}\n{log}");
    }
    services[0].read_lines(2);
    assert!(
        services[0].seen.last().unwrap().contains("value=1"),
        "{log}"
    );
    // h2 was never patched at all: no patch region, not even a reverted one.
    let listed = hotpatch(&["list", "--pid", &services[2].pid().to_string()]);
    assert!(
        stdout_of(&listed).contains("has no patches"),
        "{}",
        stdout_of(&listed)
    );
}
