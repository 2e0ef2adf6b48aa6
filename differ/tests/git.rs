//! The differ against real git repositories built in temporary directories.

use std::path::Path;
use std::process::Command;

use hotpatch_differ::{
    diff_snapshots, parse_range, read_git_revision, Change, ChangeSet, DifferError, Snapshot,
};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(status.status.success(), "git {args:?}: {status:?}");
}

fn commit(dir: &Path, files: &[(&str, &str)], tag: &str) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", tag]);
    git(dir, &["tag", tag]);
}

const V1_MAIN: &str = "#include \"util.h\"\n\nint add(int a, int b)\n{\n    return a + b;\n}\n\nint gone(void) { return 7; }\n\nint same(int x)\n{\n    return x * 2; /* double */\n}\n\n#ifdef FEATURE\nint feature(void) { return 1; }\n#endif\n\nint main(void) { return add(1, 2); }\n";
const V2_MAIN: &str = "#include \"util.h\"\n\nint add(int a, int b)\n{\n    return a + b + 1;\n}\n\nint same(int x)\n{\n    // twice\n    return x*2;\n}\n\nint fresh(void) { return 3; }\n\n#ifdef FEATURE\nint feature(void) { return 2; }\n#endif\n\nint main(void) { return add(1, 2); }\n";
const V1_A: &str = "static int helper(void) { return 1; }\nint a(void) { return helper(); }\n";
const V2_A: &str = "static int helper(void) { return 2; }\nint a(void) { return helper(); }\n";
const B: &str = "static int helper(void) { return 10; }\nint b(void) { return helper(); }\n";

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q"]);
    commit(
        dir.path(),
        &[
            ("src/main.c", V1_MAIN),
            ("src/a.c", V1_A),
            ("src/b.c", B),
            ("util.h", "int x;\n"),
            ("README", "hi\n"),
        ],
        "v1",
    );
    commit(
        dir.path(),
        &[
            ("src/main.c", V2_MAIN),
            ("src/a.c", V2_A),
            ("util.h", "int y;\n"),
        ],
        "v2",
    );
    dir
}

fn summary(cs: &ChangeSet) -> Vec<(String, String, Change, u32)> {
    cs.functions
        .iter()
        .map(|f| (f.file.clone(), f.name.clone(), f.change, f.line))
        .collect()
}

#[test]
fn tags_give_changed_added_removed() {
    let dir = repo();
    let v1 = read_git_revision(dir.path(), "v1").expect("v1");
    let v2 = read_git_revision(dir.path(), "v2").expect("v2");
    assert!(v1.label.starts_with("v1 (") && v1.label.len() == "v1 (12345678)".len());
    assert_eq!(v1.text("src/b.c"), Some(B));
    assert!(v1.files.contains_key("README"));
    let cs = diff_snapshots(&v1, &v2);
    assert_eq!(cs.changed_files, ["src/a.c", "src/main.c"]);
    let s = |f: &str, n: &str, c, l| (f.to_string(), n.to_string(), c, l);
    assert_eq!(
        summary(&cs),
        [
            s("src/a.c", "helper", Change::Changed, 1),
            s("src/main.c", "add", Change::Changed, 3),
            s("src/main.c", "gone", Change::Removed, 8),
            s("src/main.c", "fresh", Change::Added, 14),
            s("src/main.c", "feature", Change::Changed, 17),
        ]
    );
    assert!(cs.functions[0].is_static);
    assert!(
        cs.functions[1].diff.contains("+    return a + b + 1;"),
        "{}",
        cs.functions[1].diff
    );
    assert!(cs.functions[1].diff.contains("-    return a + b;"));
    // util.h is not found from src/ without an include directory; a header that nothing
    // includes changes no function and refuses nothing.
    assert!(cs.refusals.is_empty(), "{:?}", cs.refusals);
    assert_eq!(v2.commit.as_deref().map(str::len), Some(40));
    assert!(v2.label.contains(&v2.commit.as_deref().unwrap_or("")[..8]));
}

#[test]
fn other_revspecs_and_errors() {
    let dir = repo();
    git(dir.path(), &["branch", "feature-x", "v1"]);
    let head1 = read_git_revision(dir.path(), "HEAD~1").expect("HEAD~1");
    let branch = read_git_revision(dir.path(), "feature-x").expect("branch");
    let v1 = read_git_revision(dir.path(), "v1").expect("v1");
    assert_eq!(head1.files, v1.files);
    assert_eq!(branch.files, v1.files);
    assert!(head1.label.starts_with("HEAD~1 ("));
    let short = &v1.label[4..12];
    let by_id = read_git_revision(dir.path(), short).expect("short id");
    assert_eq!(by_id.files, v1.files);

    let err = read_git_revision(dir.path(), "nope").expect_err("unknown");
    assert!(matches!(err, DifferError::UnknownRevision { .. }));
    assert!(
        err.to_string().starts_with("unknown revision `nope`: "),
        "{err}"
    );

    let plain = tempfile::tempdir().expect("tempdir");
    let err = read_git_revision(plain.path(), "v1").expect_err("not a repo");
    assert!(matches!(err, DifferError::NotARepository { .. }));
    assert_eq!(
        err.to_string(),
        format!("not a git repository: {}", plain.path().display())
    );
}

#[test]
fn reads_objects_not_the_work_tree() {
    let dir = repo();
    std::fs::write(dir.path().join("src/a.c"), "garbage").expect("write");
    let v2 = read_git_revision(dir.path(), "v2").expect("v2");
    assert_eq!(v2.text("src/a.c"), Some(V2_A));
}

#[test]
fn ranges() {
    assert_eq!(
        parse_range("v1..v2").expect("ok"),
        ("v1".into(), "v2".into())
    );
    assert_eq!(
        parse_range("HEAD~1..HEAD").expect("ok"),
        ("HEAD~1".into(), "HEAD".into())
    );
    for bad in ["v1", "..v2", "v1..", "v1...v2", ""] {
        let err = parse_range(bad).expect_err(bad);
        assert_eq!(
            err.to_string(),
            format!("bad revision range `{bad}`: expected OLD..NEW")
        );
    }
}

#[test]
fn parse_damage_warns_and_keeps_the_function() {
    let old = snap(&[(
        "x.c",
        "int ok(void) { return 1; }\nint bad(void) { return 1 +; }\n",
    )]);
    let new = snap(&[(
        "x.c",
        "int ok(void) { return 1; }\nint bad(void) { return 2 +; }\n",
    )]);
    let cs = diff_snapshots(&old, &new);
    assert_eq!(
        summary(&cs),
        [("x.c".into(), "bad".into(), Change::Changed, 2)]
    );
    assert!(
        cs.warnings.iter().any(|w| w.starts_with(
            "x.c: parse errors in `bad` (line 2): compared as whitespace-normalised text"
        )),
        "{:?}",
        cs.warnings
    );
    // whitespace-only edit in a damaged function is still no change
    let new2 = snap(&[(
        "x.c",
        "int ok(void) { return 1; }\nint bad(void)\n{ return 1 +;\n}\n",
    )]);
    assert!(diff_snapshots(&old, &new2).functions.is_empty());
}

#[test]
fn whole_files_added_and_removed() {
    let old = snap(&[("gone.c", "int g(void) { return 1; }\n")]);
    let new = snap(&[("new.c", "static int n(void) { return 1; }\n")]);
    let cs = diff_snapshots(&old, &new);
    assert_eq!(cs.changed_files, ["gone.c", "new.c"]);
    assert_eq!(
        summary(&cs),
        [
            ("gone.c".into(), "g".into(), Change::Removed, 1),
            ("new.c".into(), "n".into(), Change::Added, 1)
        ]
    );
}

#[test]
fn snapshot_round_trip_through_a_directory() {
    let s = snap(&[("a/b/c.c", "int x;\n"), ("top.h", "")]);
    let dir = tempfile::tempdir().expect("tempdir");
    s.write_to(dir.path()).expect("write");
    std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
    std::fs::write(dir.path().join(".git/HEAD"), "x").expect("write");
    let back = Snapshot::from_dir(dir.path(), "dir").expect("read");
    assert_eq!(back.files, s.files);
    assert_eq!(back.label, "dir");
    assert_eq!(
        Snapshot {
            label: String::new(),
            files: [("b".to_string(), vec![0xff])].into(),
            commit: None,
        }
        .text("b"),
        None
    );
}

fn snap(files: &[(&str, &str)]) -> Snapshot {
    Snapshot {
        label: "t".into(),
        files: files
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect(),
        commit: None,
    }
}
