//! Load test (CASES.md §G `under_load`): a threaded TCP server (`testdata/load/`) serves client
//! threads on loopback while the test patches and reverts its request handler 100 times. Every
//! reply must be the v1 or the v2 form of its request (never an error, a torn line or a lost
//! reply), the server's request counter must equal the requests sent (state intact), and the
//! server must be alive at the end. Prints the pauses observed under load.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotpatch_applier::{apply, plan, revert, ApplyOptions, PatchObject, Target};
use support::*;

const CLIENTS: usize = 4;
const CYCLES: usize = 100;
/// Upper bounds of the client loop: requests per client thread and seconds.
const MAX_REQUESTS_PER_CLIENT: u64 = 2_000_000;
const MAX_CLIENT_SECONDS: u64 = 50;
/// The bound on the whole test, against a hang (the server's own watchdog ends it at 300 s);
/// a debug build with both cores loaded takes 55-65 s.
const MAX_TEST_SECONDS: u64 = 120;

/// The repository (`repo/`, tags v1 and v2) and v1 of the server built as the returned binary.
fn load_server(dir: &Path) -> std::path::PathBuf {
    // Only the request handler differs between the revisions; the server and its flags are shared.
    let read = |dir: &str, name: &str| {
        let path = project_root().join("testdata/load").join(dir).join(name);
        (name.to_string(), std::fs::read_to_string(path).unwrap())
    };
    let revision = |rev: &str| {
        vec![
            read("", "server.c"),
            read("", "hotpatch.toml"),
            read(rev, "handler.c"),
        ]
    };
    let (v1, v2) = (revision("v1"), revision("v2"));
    git_repo_with_revisions(&dir.join("repo"), &v1, &v2);
    write_tree(&dir.join("build"), &v1);
    let binary = dir.join("server-v1");
    compile_program(
        &dir.join("build"),
        &["server.c".into(), "handler.c".into()],
        "-O2 -g -pthread",
        &binary,
    );
    binary
}

/// One request-reply connection with a bounded wait for each reply.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Sends one line and reads the reply line (without its newline).
    fn call(&mut self, request: &str) -> Result<String, String> {
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .map_err(|e| format!("send `{request}`: {e}"))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(format!("connection closed before the reply to `{request}`")),
            Ok(_) if !line.ends_with('\n') => Err(format!("torn reply to `{request}`: {line:?}")),
            Ok(_) => Ok(line.trim_end_matches('\n').to_string()),
            Err(e) => Err(format!("no reply to `{request}`: {e}")),
        }
    }
}

/// Which version produced `reply` to `REQ id k`, or why it is neither.
fn version_of(reply: &str, id: u64, k: u64) -> Result<u8, String> {
    if reply == format!("OK v1 {id} {}", k * 2) {
        Ok(1)
    } else if reply == format!("OK v2 {id} {}", k * 3 + 1) {
        Ok(2)
    } else {
        Err(format!("bad reply to `REQ {id} {k}`: {reply:?}"))
    }
}

#[derive(Default)]
struct ClientTally {
    sent: u64,
    received: u64,
    v1: u64,
    v2: u64,
    failures: Vec<String>,
}

/// Sends requests until `stop`, the request bound or the time bound, checking every reply;
/// counts itself in `going` once its first request has had its answer (or failed).
fn client_loop(port: u16, thread: u64, stop: &AtomicBool, going: &AtomicUsize) -> ClientTally {
    let mut tally = ClientTally::default();
    let mut client = Client::connect(port);
    let deadline = Instant::now() + Duration::from_secs(MAX_CLIENT_SECONDS);
    for n in 0..MAX_REQUESTS_PER_CLIENT {
        if stop.load(Ordering::Relaxed) || (n % 256 == 0 && Instant::now() > deadline) {
            break;
        }
        let id = thread * 10_000_000 + n;
        let k = n % 1000;
        tally.sent += 1;
        let result = client.call(&format!("REQ {id} {k}"));
        if n == 0 {
            going.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(reply) => {
                tally.received += 1;
                match version_of(&reply, id, k) {
                    Ok(1) => tally.v1 += 1,
                    Ok(_) => tally.v2 += 1,
                    Err(e) => tally.failures.push(e),
                }
            }
            Err(e) => {
                tally.failures.push(e);
                break; // the connection is no longer in step
            }
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[((sorted.len() - 1) * p).div_ceil(100)]
}

#[test]
fn under_load() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let binary = load_server(dir.path());
    let mut server = TargetProcess::start(&binary);
    let port_line = server.wait_for("port=");
    let port = field(&port_line, "port").expect("port") as u16;
    let pid = server.pid();

    // The patch object, built once for this binary.
    let object = dir.path().join("fix.hp.o");
    let repo = dir.path().join("repo");
    let built = hotpatch(&[
        "build",
        "v1..v2",
        "-o",
        object.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--pid",
        &pid.to_string(),
    ]);
    assert!(
        built.status.success(),
        "hotpatch build: {}{}",
        stdout_of(&built),
        stderr_of(&built)
    );
    let target = Target::inspect(pid).expect("inspect the server");
    let patch = PatchObject::parse(std::fs::read(&object).unwrap()).expect("parse the patch");
    let plan = plan(&target, &patch).expect("plan");
    let options = ApplyOptions {
        timeout: Duration::from_secs(5),
        wait_return: false,
        threadwise: false,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let going = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|thread| {
            let (stop, going) = (Arc::clone(&stop), Arc::clone(&going));
            std::thread::spawn(move || client_loop(port, thread + 1, &stop, &going))
        })
        .collect();

    // A checking connection: after each apply a request must get the v2 reply, after each
    // revert the v1 reply.
    let mut checker = Client::connect(port);
    let mut checked = 0u64;
    let mut check = |want: u8, cycle: usize| {
        let k = checked % 1000;
        let reply = checker.call(&format!("REQ {checked} {k}")).unwrap();
        checked += 1;
        assert_eq!(
            version_of(&reply, checked - 1, k),
            Ok(want),
            "cycle {cycle}: {reply:?}"
        );
    };

    // The patching starts once every client has had a reply, so each one runs across it.
    let deadline = Instant::now() + DEADLINE;
    while going.load(Ordering::Relaxed) < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "the clients got no replies within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut apply_pauses, mut revert_pauses) = (Vec::new(), Vec::new());
    for cycle in 0..CYCLES {
        let report = apply(&target, &plan, &options)
            .unwrap_or_else(|e| panic!("apply {cycle} under load: {e}"));
        assert_eq!(report.threads, 10, "main, watchdog and 8 workers");
        apply_pauses.push(report.pause_us);
        check(2, cycle);
        std::thread::sleep(Duration::from_millis(2));
        let report = revert(pid, None, &options)
            .unwrap_or_else(|e| panic!("revert {cycle} under load: {e}"));
        revert_pauses.push(report.pause_us);
        check(1, cycle);
        std::thread::sleep(Duration::from_millis(2));
    }
    let patching = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    let mut total = ClientTally::default();
    for client in clients {
        let tally = client.join().expect("client thread");
        total.sent += tally.sent;
        total.received += tally.received;
        total.v1 += tally.v1;
        total.v2 += tally.v2;
        total.failures.extend(tally.failures);
    }
    let stats = checker.call("STATS").expect("STATS");
    let counter: u64 = stats
        .strip_prefix("STATS ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad STATS reply {stats:?}"));

    apply_pauses.sort_unstable();
    revert_pauses.sort_unstable();
    println!(
        "under load: {CYCLES} apply+revert cycles with {CLIENTS} clients: {} requests ({} v1, {} \
         v2 replies) + {checked} checks in {:.1} s; apply pause p50 {} us p99 {} us; revert \
         pause p50 {} us p99 {} us",
        total.sent,
        total.v1,
        total.v2,
        patching.as_secs_f64(),
        percentile(&apply_pauses, 50),
        percentile(&apply_pauses, 99),
        percentile(&revert_pauses, 50),
        percentile(&revert_pauses, 99),
    );

    assert!(
        total.failures.is_empty(),
        "{} failed requests, first: {:?}",
        total.failures.len(),
        &total.failures[..total.failures.len().min(5)]
    );
    assert_eq!(total.sent, total.received, "lost replies");
    assert!(
        total.v1 > 0 && total.v2 > 0,
        "clients saw both versions: {} v1, {} v2",
        total.v1,
        total.v2
    );
    assert_eq!(
        counter,
        total.sent + checked,
        "the server's request counter (state) against the requests sent"
    );
    assert!(server.is_alive(), "the server died");
    assert!(
        started.elapsed() < Duration::from_secs(MAX_TEST_SECONDS),
        "took {:?}",
        started.elapsed()
    );
}
