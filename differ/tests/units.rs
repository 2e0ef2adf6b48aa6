//! Diffs judged on preprocessed units, as the compiler sees the files: each test writes both
//! revisions to disk, runs the real `gcc -E` on the analysed files, and hands the units to the
//! differ the way the CLI does.

use std::collections::BTreeMap;
use std::process::Command;

use hotpatch_differ::{
    diff_snapshots_with, files_to_analyse, Change, ChangeSet, DiffOptions, RefusalKind, Snapshot,
    UnitTexts,
};

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

/// `gcc -E` of `file` inside a copy of `snapshot`, run from the copy's root so that the line
/// markers name repository-relative paths.
fn preprocess(snapshot: &Snapshot, file: &str, flags: &[&str]) -> Option<String> {
    snapshot.files.get(file)?;
    let dir = tempfile::tempdir().expect("tempdir");
    snapshot.write_to(dir.path()).expect("write snapshot");
    let output = Command::new("gcc")
        .args(flags)
        .args(["-E", file])
        .current_dir(dir.path())
        .output()
        .expect("run gcc -E");
    assert!(
        output.status.success(),
        "gcc -E {file}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("utf-8"))
}

/// The diff with every analysed file preprocessed with `flags`.
fn diff(old: &[(&str, &str)], new: &[(&str, &str)], flags: &[&str]) -> ChangeSet {
    let (old, new) = (snap(old), snap(new));
    let mut options = DiffOptions::from_flags(flags);
    let units: BTreeMap<String, UnitTexts> = files_to_analyse(&old, &new, &options)
        .into_iter()
        .map(|file| {
            let texts = UnitTexts {
                old: preprocess(&old, &file, flags),
                new: preprocess(&new, &file, flags),
            };
            (file, texts)
        })
        .collect();
    options.units = units;
    diff_snapshots_with(&old, &new, &options)
}

fn changed(cs: &ChangeSet) -> Vec<(&str, Change)> {
    cs.functions
        .iter()
        .map(|f| (f.name.as_str(), f.change))
        .collect()
}

#[test]
fn storage_class_from_a_macro_is_seen() {
    let h = "#define l_sinline static inline\n#define LOCAL static\n";
    let c1 = "#include \"defs.h\"\nl_sinline int twice(int v) { return 2 * v; }\nLOCAL int step(int v) { return twice(v) + 1; }\nint api(int v) { return step(v); }\n";
    let c2 = c1.replace("+ 1;", "+ 2;");
    let cs = diff(
        &[("defs.h", h), ("vm.c", c1)],
        &[("defs.h", h), ("vm.c", &c2)],
        &[],
    );
    assert_eq!(changed(&cs), [("step", Change::Changed)]);
    assert!(cs.functions[0].is_static, "{:#?}", cs.functions[0]);
    assert_eq!(cs.functions[0].line, 3);
    // The diff is of the source as written, not of the expansion.
    assert!(
        cs.functions[0]
            .diff
            .contains("-LOCAL int step(int v) { return twice(v) + 1; }"),
        "{}",
        cs.functions[0].diff
    );
    assert!(cs.warnings.is_empty(), "{:#?}", cs.warnings);
}

#[test]
fn alternative_static_locals_under_ifdef_are_one_static_local() {
    let c1 = "#define HAVE_X 1\nint counter(void)\n{\n#ifdef HAVE_X\n    static int x = 1;\n#else\n    static int x = 0;\n#endif\n    return x++;\n}\n";
    let c2 = c1.replace("return x++;", "return x += 2;");
    let cs = diff(&[("c.c", c1)], &[("c.c", &c2)], &[]);
    assert!(cs.refusals.is_empty(), "{:#?}", cs.refusals);
    assert_eq!(changed(&cs), [("counter", Change::Changed)]);
}

#[test]
fn code_disabled_by_if_is_not_compared() {
    let c1 = "int live(void) { return 1; }\n#if 0\nint dead(void) { return 1; }\nstruct gone { int a; };\nint uses(struct gone *g) { return g->a; }\n#endif\n";
    let c2 = "int live(void) { return 1; }\n#if 0\nint dead(void) { return 2; }\nstruct gone { int b; int a; };\nint uses(struct gone *g) { return g->a; }\n#endif\n";
    let cs = diff(&[("d.c", c1)], &[("d.c", c2)], &[]);
    assert!(cs.functions.is_empty(), "{:#?}", cs.functions);
    assert!(cs.refusals.is_empty(), "{:#?}", cs.refusals);
}

#[test]
fn a_macro_change_reaches_exactly_the_functions_whose_expansion_changed() {
    let h1 =
        "#define A 1\n#define B 2\n#ifdef FAST\n#define MODE 1\n#else\n#define MODE 0\n#endif\n";
    let h2 =
        "#define A 3\n#define B 2\n#ifdef FAST\n#define MODE 1\n#else\n#define MODE 5\n#endif\n";
    let c = "#include \"cfg.h\"\nint a(void) { return A; }\nint b(void) { return B; }\nint m(void) { return MODE; }\n";
    // Built with -DFAST: the `#else` branch that changed is not compiled, so `m` is unchanged.
    let cs = diff(
        &[("cfg.h", h1), ("x.c", c)],
        &[("cfg.h", h2), ("x.c", c)],
        &["-DFAST"],
    );
    assert_eq!(changed(&cs), [("a", Change::Changed)]);
    // The reason names the macro as the source writes it.
    assert_eq!(
        cs.functions[0].reasons,
        ["uses macro `A` (changed in cfg.h)"]
    );
}

#[test]
fn moved_lines_change_no_function_and_say_so() {
    let c1 = "#include <assert.h>\nint check(int v)\n{\n    assert(v > 0);\n    return v;\n}\nint other(void) { return 1; }\n";
    let c2 = "#include <assert.h>\n/* three\n   new\n   lines */\nint check(int v)\n{\n    assert(v > 0);\n    return v;\n}\nint other(void) { return 2; }\n";
    let cs = diff(&[("a.c", c1)], &[("a.c", c2)], &[]);
    assert_eq!(changed(&cs), [("other", Change::Changed)]);
    assert!(
        cs.warnings
            .iter()
            .any(|w| w.starts_with("a.c:5: `check` differs only in the line numbers")),
        "{:#?}",
        cs.warnings
    );
}

#[test]
fn an_edited_literal_equal_to_its_new_line_number_is_a_change() {
    // `return 2;` on line 2 becomes `return 3;` on line 3: the number is the line, but the
    // operator wrote it, so it is a change.
    let c1 = "int x(void) { return 0; }\nint f(void) { return 2; }\n";
    let c2 = "int x(void) { return 0; }\n\nint f(void) { return 3; }\n";
    let cs = diff(&[("a.c", c1)], &[("a.c", c2)], &[]);
    assert_eq!(changed(&cs), [("f", Change::Changed)]);
}

#[test]
fn header_struct_layout_refused_once_at_its_definition_for_every_unit() {
    let h1 = "struct conn;\nstruct conn { int fd; };\n";
    let h2 = "struct conn;\nstruct conn { int id; int fd; };\n";
    let a = "#include \"conn.h\"\nint fa(struct conn *c) { return c->fd; }\n";
    let b = "#include \"conn.h\"\nint fb(struct conn *c) { return c->fd + 1; }\n";
    let cs = diff(
        &[("conn.h", h1), ("a.c", a), ("b.c", b)],
        &[("conn.h", h2), ("a.c", a), ("b.c", b)],
        &[],
    );
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    let r = &cs.refusals[0];
    assert_eq!(
        (r.item.as_str(), r.kind, r.file.as_str(), r.line),
        ("struct conn", RefusalKind::TypeLayout, "conn.h", 2)
    );
}

#[test]
fn macro_heavy_code_parses_after_preprocessing_without_warnings() {
    // Raw, tree-sitter cannot parse these definitions; preprocessed, they are plain C.
    let c1 = "#define DEF(name, body) int name(void) { return body; }\n#define API __attribute__((visibility(\"default\")))\nDEF(one, 1)\nAPI int two(void) { return 2; }\n";
    let c2 = c1.replace("DEF(one, 1)", "DEF(one, 11)");
    let cs = diff(&[("m.c", c1)], &[("m.c", &c2)], &[]);
    assert_eq!(changed(&cs), [("one", Change::Changed)]);
    assert!(cs.warnings.is_empty(), "{:#?}", cs.warnings);
    assert_eq!(cs.functions[0].line, 3);
}

#[test]
fn units_are_optional_per_file() {
    // Without units, the same change is judged on the source as written.
    let old = snap(&[("a.c", "int f(void) { return 1; }\n")]);
    let new = snap(&[("a.c", "int f(void) { return 2; }\n")]);
    assert_eq!(
        files_to_analyse(&old, &new, &DiffOptions::default()),
        ["a.c"]
    );
    let cs = diff_snapshots_with(&old, &new, &DiffOptions::default());
    assert_eq!(changed(&cs), [("f", Change::Changed)]);
}
