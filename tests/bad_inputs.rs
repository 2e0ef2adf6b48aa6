//! The bad inputs of the README's table that reach `hotpatch apply` with a patch object: a
//! truncated object, an object for another architecture, and a stripped binary whose statics
//! cannot be found. Each gets one clear error and leaves the process as it was.

mod support;

use std::path::Path;

use support::*;

/// Builds the `simplest` case, starts v1, and writes the v1→v2 patch object with `hotpatch build`.
struct Fixture {
    dir: tempfile::TempDir,
    target: TargetProcess,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let binary = simplest_case(dir.path());
        let mut target = TargetProcess::start(&binary);
        target.wait_for("value=1");
        let fixture = Fixture { dir, target };
        let output = hotpatch(&[
            "build",
            "v1..v2",
            "--repo",
            fixture.path("repo").as_str(),
            "-o",
            fixture.path("fix.hp.o").as_str(),
        ]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        fixture
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Applies the object at `path` and expects one error line containing `needle`.
    fn apply_fails(&mut self, path: &str, needle: &str) -> String {
        let pid = self.target.pid().to_string();
        let output = hotpatch(&["apply", path, "--pid", &pid]);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "no `{needle}` in: {stderr}"
        );
        self.target.read_lines(3);
        assert!(
            self.target.seen.last().unwrap().contains("value=1"),
            "{:?}",
            self.target.seen
        );
        stderr
    }
}

fn write_variant(from: &str, to: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(from).unwrap();
    edit(&mut bytes);
    std::fs::write(to, bytes).unwrap();
}

#[test]
fn a_truncated_object_is_refused() {
    let mut fixture = Fixture::new();
    let truncated = fixture.path("truncated.o");
    write_variant(&fixture.path("fix.hp.o"), &truncated, |b| {
        b.truncate(b.len() / 3)
    });
    fixture.apply_fails(&truncated, "truncated.o");
}

#[test]
fn an_object_for_another_architecture_is_refused() {
    let mut fixture = Fixture::new();
    let foreign = fixture.path("aarch64.o");
    // e_machine (offset 18, little-endian) = EM_AARCH64 (183).
    write_variant(&fixture.path("fix.hp.o"), &foreign, |b| {
        b[18..20].copy_from_slice(&183u16.to_le_bytes())
    });
    fixture.apply_fails(&foreign, "x86-64");
}

#[test]
fn a_stripped_binary_cannot_bind_statics() {
    let dir = tempfile::tempdir().unwrap();
    simplest_case(dir.path());
    let stripped = dir.path().join("stripped");
    compile_program(
        &dir.path().join("build"),
        &["main.c".into(), "lib.c".into()],
        "-O2 -s",
        &stripped,
    );
    let mut target = TargetProcess::start(&stripped);
    target.wait_for("value=1");
    let pid = target.pid().to_string();
    let repo = dir.path().join("repo");
    let output = hotpatch(&[
        "diff",
        "v1..v2",
        "--repo",
        repo.to_str().unwrap(),
        "--apply",
        "--pid",
        &pid,
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("symbol table"),
        "{stderr}"
    );
    let _ = Path::new(&stripped);
    target.read_lines(3);
    assert!(target.seen.last().unwrap().contains("value=1"));
}
