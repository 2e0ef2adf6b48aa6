//! `hotpatch watch`: a pre-forking server whose workers are fresh processes (fork + exec) keeps
//! answering with the patched behaviour after `diff --apply --exe`, because the watcher patches
//! each new worker from the record the apply wrote; after `revert` removed it from the record, new
//! workers answer with the old behaviour again.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use support::*;

/// One request: the server's one-line reply.
fn request(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reading a reply");
    reply
}

/// Runs hotpatch with the state directory `state`.
fn hotpatch_with_state(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(args)
        .env("HOTPATCH_STATE_DIR", state)
        .env("NO_COLOR", "1")
        .output()
        .expect("running hotpatch")
}

/// The recorded patch objects under `state`.
fn recorded(state: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(state).unwrap().flatten() {
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            out.push(file.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn new_workers_of_a_patched_pre_forking_server_answer_with_v2() {
    let dir = tempfile::tempdir().unwrap();
    let root = project_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let server = read("tests/c/prefork_server.c");
    let tree = |lib: String| {
        vec![
            ("lib.c".to_string(), lib),
            ("main.c".to_string(), server.clone()),
        ]
    };
    let v1 = tree(read("testdata/cases/simplest/v1/lib.c"));
    let v2 = tree(read("testdata/cases/simplest/v2/lib.c"));
    let repo = dir.path().join("repo");
    git_repo_with_revisions(&repo, &v1, &v2);
    write_tree(&dir.path().join("build"), &v1);
    let binary = dir.path().join("server-v1");
    compile_program(
        &dir.path().join("build"),
        &["main.c".into(), "lib.c".into()],
        "-O2 -g",
        &binary,
    );
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let exe = binary.to_str().unwrap();

    let mut watch = TargetProcess::start_with(
        Path::new(env!("CARGO_BIN_EXE_hotpatch")),
        &[
            "watch",
            "--exe",
            exe,
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    watch.wait_for("watching for new processes of");
    let mut service = TargetProcess::start_with(&binary, &[]);
    let port = field(&service.wait_for("port="), "port").unwrap() as u16;
    assert!(request(port).contains("value=1"));

    let output = hotpatch_with_state(
        &state,
        &[
            "diff",
            "v1..v2",
            "--repo",
            repo.to_str().unwrap(),
            "--apply",
            "--exe",
            exe,
            "--json",
        ],
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    let patch_id = serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
        ["processes"][0]["patch_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(recorded(&state), [format!("000001-{patch_id}.hp.o")]);

    // The workers running at the apply were patched by it; every later one is a new process,
    // which the watcher patches while it initialises.
    let replies: Vec<String> = (0..6).map(|_| request(port)).collect();
    assert!(
        replies.iter().all(|r| r.contains("value=2")),
        "{replies:?}\nwatch: {:?}",
        watch.seen
    );
    let mut latencies = Vec::new();
    while latencies.len() < 6 {
        let line = watch.wait_for("patched new pid");
        let ms = line
            .rsplit_once(", ")
            .and_then(|(_, tail)| tail.strip_suffix(" ms after it started"))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no latency in {line}"));
        latencies.push(ms);
    }
    eprintln!("new workers patched this long after they started (ms): {latencies:?}");
    // Each worker starts serving 300 ms after it starts: it was patched before.
    assert!(latencies.iter().all(|&ms| ms < 300), "{latencies:?}");

    // Reverting removes the patch from the record: workers started after it answer v1.
    let output = hotpatch_with_state(&state, &["revert", "--exe", exe]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(recorded(&state).is_empty(), "{:?}", recorded(&state));
    let replies: Vec<String> = (0..4).map(|_| request(port)).collect();
    assert!(replies.iter().all(|r| r.contains("value=1")), "{replies:?}");
    assert!(service.is_alive() && watch.is_alive());
}
