//! Helpers of the applier's unit tests: real gcc output to read, real processes to inspect.

/// `source` compiled by gcc into an `-O2 -g` shared object: its bytes, and a look-up of a
/// symbol's link-time address by name (panics when absent).
pub(crate) fn gcc_shared_object(source: &str) -> (Vec<u8>, impl Fn(&str) -> u64) {
    use object::{Object as _, ObjectSymbol as _};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("lib.c");
    std::fs::write(&src, source).unwrap();
    let out = dir.path().join("lib.so");
    let status = std::process::Command::new("gcc")
        .args(["-O2", "-g", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed on {source}");
    let bytes = std::fs::read(&out).unwrap();
    let symbols: Vec<(String, u64)> = object::File::parse(bytes.as_slice())
        .unwrap()
        .symbols()
        .filter_map(|s| Some((s.name().ok()?.to_string(), s.address())))
        .collect();
    let address = move |name: &str| {
        symbols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no symbol {name}"))
    };
    (bytes, address)
}

/// A C program run as a child that the test talks to: it prints lines and waits for a byte on
/// its stdin between steps. Killed and reaped when dropped, so a failing test leaves none behind.
pub(crate) struct Conversation {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Conversation {
    /// Compiles `source` with gcc (`-O1`) and starts it.
    pub(crate) fn start(source: &str) -> Conversation {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("program.c");
        std::fs::write(&src, source).unwrap();
        let program = dir.path().join("program");
        let status = Command::new("gcc")
            .args(["-O1", "-o"])
            .arg(&program)
            .arg(&src)
            .status()
            .unwrap();
        assert!(status.success(), "gcc failed on {source}");
        let mut child = Command::new(&program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Conversation {
            child,
            out,
            _dir: dir,
        }
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next line it prints, without its newline.
    pub(crate) fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Lets it go on to its next step.
    pub(crate) fn go_on(&mut self) {
        use std::io::Write;
        self.child.stdin.as_mut().unwrap().write_all(b"g").unwrap();
    }

    /// Lets it finish, and checks that it exits with status 0.
    pub(crate) fn finish(mut self) {
        self.go_on();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
