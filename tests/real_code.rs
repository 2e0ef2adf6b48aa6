//! The real-code tier: Debian's source packages of real C servers, each built by its own build
//! system (autotools, its own configure, CMake), started, and patched live with a function edit
//! of our own through `hotpatch diff v1..v2 --apply --pid N` with no flag option. Each test
//! checks the server's answer changed and its state survived.
//!
//! The sources come from `apt-get source --download-only`; the test setup writes a `deb-src`
//! entry for Debian's archive when the machine has none (and runs `apt-get update`). Downloads
//! are kept under the cargo target directory between runs. The build tools and `-dev` packages
//! are installed by `.ci/run`.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use support::*;

/// Where `apt-get source` downloads go, kept between runs.
fn download_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debian-sources")
}

/// The `deb-src` entry the setup writes when the machine has none.
const DEB_SRC_ENTRY: &str = "/etc/apt/sources.list.d/hotpatch-deb-src.sources";

/// One download (and `apt-get update`) at a time: apt's lists are shared.
static APT: Mutex<()> = Mutex::new(());

/// Whether any apt source list of the machine has a `deb-src` entry.
fn has_deb_src() -> bool {
    let mut lists = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        lists.extend(entries.flatten().map(|e| e.path()));
    }
    lists.iter().any(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|line| {
                let line = line.trim();
                line.starts_with("deb-src ")
                    || (line.starts_with("Types:") && line.contains("deb-src"))
            })
        })
    })
}

/// Writes a `deb-src` entry for the suites of the machine's Debian release and updates apt's
/// lists.
fn add_deb_src() {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .expect("VERSION_CODENAME in /etc/os-release: the real-code tier needs a Debian machine");
    std::fs::write(
        DEB_SRC_ENTRY,
        format!(
            "Types: deb-src\nURIs: http://deb.debian.org/debian\n\
             Suites: {codename} {codename}-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    .unwrap_or_else(|e| panic!("writing {DEB_SRC_ENTRY}: {e}"));
    run_ok(Command::new("apt-get").args(["update", "-q"]));
}

/// The `.dsc` of Debian's source package `package`, downloaded once.
fn debian_source(package: &str) -> PathBuf {
    let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = download_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let find = || {
        std::fs::read_dir(&dir).unwrap().flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(&format!("{package}_")) && name.ends_with(".dsc")).then(|| e.path())
        })
    };
    if let Some(dsc) = find() {
        return dsc;
    }
    if !has_deb_src() {
        add_deb_src();
    }
    run_ok(
        Command::new("apt-get")
            .args(["source", "--download-only", "-q", package])
            .current_dir(&dir),
    );
    find().unwrap_or_else(|| panic!("apt-get source {package} left no .dsc in {}", dir.display()))
}

/// Unpacks `package` (Debian's patches applied) into `dir/src` and makes it a git repository
/// whose tag `v1` holds the tree as unpacked; returns the work tree.
fn unpack(package: &str, dir: &Path) -> PathBuf {
    let tree = dir.join("src");
    run_ok(
        Command::new("dpkg-source")
            .args(["--no-check", "-x"])
            .arg(debian_source(package))
            .arg(&tree),
    );
    git(&tree, &["init", "-q", "-b", "main"]);
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-q", "-m", "v1"]);
    git(&tree, &["tag", "v1"]);
    tree
}

fn git(tree: &Path, args: &[&str]) {
    run_ok(
        Command::new("git")
            .args(["-c", "user.name=hotpatch-test"])
            .args(["-c", "user.email=test@example.invalid"])
            .args(args)
            .current_dir(tree),
    );
}

/// Replaces `from` (which must occur exactly once) by `to` in `file` of `tree`, and commits the
/// result as `tag`.
fn edit_and_commit(tree: &Path, file: &str, from: &str, to: &str, tag: &str) {
    let path = tree.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "`{from}` in {file}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    git(tree, &["commit", "-q", "-a", "-m", tag]);
    git(tree, &["tag", tag]);
}

/// [`unpack`], then `build` run in the work tree through the shell (the project's own build).
fn unpack_and_build(package: &str, dir: &Path, build: &str) -> PathBuf {
    let tree = unpack(package, dir);
    run_ok(Command::new("sh").args(["-c", build]).current_dir(&tree));
    tree
}

/// A TCP port of the loopback nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Sends `request` to the server on `port` and returns everything it answers until it closes
/// the connection. Retries the connection until the server listens ([`DEADLINE`]).
fn ask(port: u16, request: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("nothing listens on port {port} after {DEADLINE:?}: {e}"),
        }
    };
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("reading the answer to {request:?}: {e}"));
    answer
}

/// `hotpatch diff RANGE --apply --pid PID` in `tree`, with no flag option; panics unless it
/// succeeded. Returns its standard output.
fn patch(tree: &Path, range: &str, target: &TargetProcess) -> String {
    let pid = target.pid().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_hotpatch"))
        .args(["diff", range, "--apply", "--pid", &pid])
        .env("NO_COLOR", "1")
        // The object cache of this test's own (the tree's parent is the test's directory).
        .env("XDG_CACHE_HOME", tree.with_file_name("cache"))
        .current_dir(tree)
        .output()
        .expect("running hotpatch");
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert!(output.status.success(), "{range}:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("default flags"), "{stderr}");
    stdout
}

/// The number after `key` in `text` (`Total Accesses: 3`, ` 3 3 3`).
fn number_after(text: &str, key: &str) -> u64 {
    let rest = &text[text
        .find(key)
        .unwrap_or_else(|| panic!("`{key}` in {text}"))
        + key.len()..];
    rest.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("a number after `{key}` in {text}"))
}

/// memcached: autotools (`./configure && make`, `config.h` generated), ten threads, every file
/// compiled twice (the server and its `-debug` twin). The changed function is inlined into the
/// command dispatcher's partial-inlining clone; two patches stack on it, and the stored item
/// survives both.
#[test]
fn memcached_built_by_autotools_is_patched_twice() {
    let dir = tempfile::tempdir().unwrap();
    let tree = unpack_and_build(
        "memcached",
        dir.path(),
        "./configure -q && make -j2 memcached",
    );
    let port = free_port();
    let port_arg = port.to_string();
    let target = TargetProcess::start_with(
        &tree.join("memcached"),
        &["-u", "root", "-l", "127.0.0.1", "-p", &port_arg, "-U", "0"],
    );
    let version = "version\r\nquit\r\n";
    assert_eq!(
        ask(port, "set kept 0 0 5\r\nstate\r\nquit\r\n"),
        "STORED\r\n"
    );
    let before = ask(port, version);
    assert!(before.starts_with("VERSION 1."), "{before}");

    let file = "proto_text.c";
    let original = "out_string(c, \"VERSION \" VERSION);";
    edit_and_commit(
        &tree,
        file,
        original,
        "out_string(c, \"VERSION \" VERSION \"-p1\");",
        "v2",
    );
    let report = patch(&tree, "v1..v2", &target);
    assert!(report.contains("from make dry run in"), "{report}");
    assert_eq!(ask(port, version), before.replace("\r\n", "-p1\r\n"));

    edit_and_commit(&tree, file, "\"-p1\"", "\"-p2\"", "v3");
    let report = patch(&tree, "v2..v3", &target);
    assert!(report.contains("because its v2 ("), "{report}");
    assert_eq!(ask(port, version), before.replace("\r\n", "-p2\r\n"));
    assert_eq!(
        ask(port, "get kept\r\nquit\r\n"),
        "VALUE kept 0 5\r\nstate\r\nEND\r\n"
    );
    untraced_and_running(target.pid()).unwrap();
}

/// nginx: its own `configure` (not autoconf), compiles from the top directory with `-I src/...`
/// and generated headers in `objs/`. The stub_status handler's text changes; the request
/// counters it prints survive; the revert brings the old text back.
#[test]
fn nginx_built_by_its_own_configure_is_patched_and_reverted() {
    let dir = tempfile::tempdir().unwrap();
    let tree = unpack_and_build(
        "nginx",
        dir.path(),
        "./configure --with-http_stub_status_module --without-http_rewrite_module \
         --without-http_gzip_module >/dev/null && make -j2 >/dev/null",
    );
    let port = free_port();
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::write(
        prefix.join("nginx.conf"),
        format!(
            "daemon off; master_process off; user root; error_log stderr; pid nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port};\n\
             location /status {{ stub_status; }} }} }}\n"
        ),
    )
    .unwrap();
    let target = TargetProcess::start_with(
        &tree.join("objs/nginx"),
        &["-p", prefix.to_str().unwrap(), "-c", "nginx.conf"],
    );
    let status = "GET /status HTTP/1.0\r\n\r\n";
    let before = ask(port, status);
    assert!(before.contains("Active connections: 1"), "{before}");

    edit_and_commit(
        &tree,
        "src/http/modules/ngx_http_stub_status_module.c",
        "\"Active connections: %uA \\n\"",
        "\"Live connections: %uA \\n\"",
        "v2",
    );
    let report = patch(&tree, "v1..v2", &target);
    assert!(
        report.contains("replaced  ngx_http_stub_status_handler"),
        "{report}"
    );
    assert!(report.contains("-I src/core"), "{report}");
    let after = ask(port, status);
    assert!(after.contains("Live connections: 1"), "{after}");
    // Requests counted before the patch are still counted: the state survived.
    assert!(
        number_after(&after, "requests\n") > number_after(&before, "requests\n"),
        "{before}\n{after}"
    );

    let pid = target.pid().to_string();
    let output = hotpatch(&["revert", "--pid", &pid]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(ask(port, status).contains("Active connections: 1"));
    untraced_and_running(target.pid()).unwrap();
}

/// lighttpd: CMake in a `build/` directory of the work tree (its compile commands exported by
/// CMake itself), modules as shared objects. The built-in error page changes; the server's
/// access counter survives.
#[test]
fn lighttpd_built_by_cmake_is_patched() {
    let dir = tempfile::tempdir().unwrap();
    let tree = unpack_and_build(
        "lighttpd",
        dir.path(),
        "cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWITH_PCRE2=OFF -DWITH_ZLIB=OFF \
         -DWITH_BZIP=OFF >/dev/null && make -C build -j2 >/dev/null",
    );
    let port = free_port();
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    let config = dir.path().join("lighttpd.conf");
    std::fs::write(
        &config,
        format!(
            "server.document-root = \"{}\"\nserver.bind = \"127.0.0.1\"\nserver.port = {port}\n\
             server.modules = ( \"mod_status\" )\nstatus.status-url = \"/server-status\"\n",
            root.display()
        ),
    )
    .unwrap();
    let modules = tree.join("build/build");
    let target = TargetProcess::start_with(
        &modules.join("lighttpd"),
        &[
            "-D",
            "-f",
            config.to_str().unwrap(),
            "-m",
            modules.to_str().unwrap(),
        ],
    );
    let missing = "GET /missing HTTP/1.0\r\n\r\n";
    assert!(ask(port, missing).contains("<h1>404 Not Found</h1>"));
    let accesses = || {
        number_after(
            &ask(port, "GET /server-status?auto HTTP/1.0\r\n\r\n"),
            "Total Accesses:",
        )
    };
    let before = accesses();

    edit_and_commit(
        &tree,
        "src/response.c",
        "\"  <h1>\"));",
        "\"  <h1>patched \"));",
        "v2",
    );
    let report = patch(&tree, "v1..v2", &target);
    assert!(
        report.contains("replaced  http_response_static_errdoc"),
        "{report}"
    );
    assert!(report.contains("compile_commands.json at"), "{report}");
    assert!(ask(port, missing).contains("<h1>patched 404 Not Found</h1>"));
    assert!(accesses() > before);
    untraced_and_running(target.pid()).unwrap();
}
