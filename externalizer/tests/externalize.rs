//! The externalizer on real C files; every translation unit is checked with gcc.

use std::path::Path;
use std::process::Command;

use hotpatch_differ::{diff_snapshots, Snapshot};
use hotpatch_externalizer::{externalize, Action, ExternalizeError, Options, PatchUnit};

fn snap(label: &str, files: &[(&str, &str)]) -> Snapshot {
    Snapshot {
        label: label.into(),
        files: files
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect(),
        commit: None,
    }
}

fn run(old: &str, new: &str, options: &Options) -> Result<Vec<PatchUnit>, ExternalizeError> {
    let (old, new) = (
        snap("v1", &[("src/lib.c", old)]),
        snap("v2", &[("src/lib.c", new)]),
    );
    externalize(&diff_snapshots(&old, &new), &old, &new, options)
}

fn one(old: &str, new: &str, options: &Options) -> PatchUnit {
    let mut units = run(old, new, options).expect("externalize");
    assert_eq!(units.len(), 1);
    units.remove(0)
}

/// Compiles the unit with `gcc <flags>`; returns (success, stderr, object path holder).
fn gcc(unit: &PatchUnit, flags: &[&str]) -> (bool, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("patch.c");
    std::fs::write(&src, &unit.source).expect("write");
    let out = Command::new("gcc")
        .args(flags)
        .arg("-x")
        .arg("c")
        .arg(&src)
        .arg("-o")
        .arg(dir.path().join("patch.o"))
        .output()
        .expect("gcc runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    )
}

fn symbols(object: &Path) -> Vec<(String, String)> {
    let out = Command::new("nm").arg(object).output().expect("nm runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace().rev();
            let name = parts.next()?;
            let kind = parts.next()?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect()
}

const V1: &str = r#"#include <stdio.h>

#define SCALE(v) (scale_of(v) * 2)

struct acc { int sum; };
typedef struct acc acc_t;

static int counter = 0;
static const int table[] = { 1, 2, 3 };
static const char *labels[] = { "a", "b" };
int global_total = 7;
extern int elsewhere;
static int helper(int x);
static int tiny(int x);

static int helper(int x)
{
    return x + 1;
}

static int tiny(int x) { return x * 3; }

static int scale_of(int v) { return v + table[2]; }

static inline int wrap(int x) { return helper(x) + counter; }

int compute(int v)
{
    counter++;
    global_total += v;
    return helper(v) * table[1] + tiny(v);
}

int via_inline(void) { return wrap(2); }

int via_macro(int v) { return SCALE(v); }

int untouched(acc_t *a)
{
    a->sum += counter;
    return printf("%s %d\n", labels[0], a->sum);
}
"#;

fn v2() -> String {
    V1.replace("return x + 1;", "return x + 2;")
        .replace(
            "static int scale_of(int v) { return v + table[2]; }",
            "static int scale_of(int v) { return v - table[2]; }",
        )
        .replace(
            "int global_total = 7;",
            "int global_total = 7;\nstatic int fresh = 5;\nint fresh_global;",
        )
        + "\nint added(void) { static int calls; return ++calls + fresh + fresh_global; }\n"
}

#[test]
fn changed_static_helper_and_its_callers() {
    let unit = one(V1, &v2(), &Options::default());
    let got: Vec<(&str, Action, &str)> = unit
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.action, f.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("helper", Action::Replace, "changed"),
            ("scale_of", Action::Replace, "changed"),
            ("compute", Action::Replace, "may inline `helper`"),
            ("via_inline", Action::Replace, "may inline `helper`"),
            ("via_macro", Action::Replace, "may inline `scale_of`"),
            ("added", Action::Add, "new"),
        ]
    );
    assert!(unit.functions[0].is_static && !unit.functions[2].is_static);
    assert_eq!(unit.bindings, ["counter", "labels", "tiny"]);
    assert_eq!(unit.new_data, ["fresh", "fresh_global"]);
    assert!(unit.copied.is_empty());
    let s = &unit.source;
    assert!(s.starts_with("#line 1 \"src/lib.c\"\n"));
    assert!(s.contains("extern int counter ;"), "{s}");
    assert!(s.contains("static const int table[] = { 1, 2, 3 };"));
    assert!(s.contains("extern const char *labels[] ;"));
    assert!(s.contains("extern int global_total ;"));
    assert!(s.contains("static int fresh = 5;"));
    assert!(
        s.contains("extern int tiny(int x);"),
        "prototype follows the definition"
    );
    assert!(s.contains("extern int tiny(int x) ;"));
    assert!(s.contains("__attribute__((used)) static int helper(int x)\n{"));
    assert!(
        s.contains("static int helper(int x);"),
        "prototype of an emitted static stays"
    );
    assert!(s.contains("static inline int wrap(int x) { return helper(x) + counter; }"));
    assert!(s.contains("int untouched(acc_t *a)\n;\n\n\n"), "{s}");
    // line numbers are those of the original file
    assert_eq!(s.lines().count(), v2().lines().count() + 1);
    for (a, b) in s.lines().skip(1).zip(v2().lines()) {
        if b.starts_with("int compute") {
            assert_eq!(a, b);
        }
        // What the patch adds, a later patch may replace where this one puts it: no caller in
        // the patch inlines it, clones it or relies on its registers.
        if b.starts_with("int added") {
            assert_eq!(a, format!("__attribute__((used, noipa)) {b}"));
        }
    }

    let (ok, err, dir) = gcc(&unit, &["-c", "-O2", "-fPIC", "-Wall", "-Werror"]);
    assert!(ok, "{err}\n{}", unit.source);
    let syms = symbols(&dir.path().join("patch.o"));
    let kind = |n: &str| syms.iter().find(|(s, _)| s == n).map(|(_, k)| k.as_str());
    assert_eq!(kind("helper"), Some("t"));
    assert_eq!(kind("compute"), Some("T"));
    assert_eq!(kind("added"), Some("T"));
    assert_eq!(kind("counter"), Some("U"));
    assert_eq!(kind("global_total"), Some("U"));
    assert_eq!(kind("tiny"), Some("U"));
    assert_eq!(kind("untouched"), None);
}

#[test]
fn absent_functions_become_inlined_only_or_copies() {
    let absent = |_file: &str, name: &str| !matches!(name, "helper" | "tiny");
    let options = Options {
        target_has_local_function: Some(&absent),
        ..Options::default()
    };
    let unit = one(V1, &v2(), &options);
    let helper = unit
        .functions
        .iter()
        .find(|f| f.name == "helper")
        .expect("helper");
    assert_eq!(helper.action, Action::InlinedOnly);
    assert_eq!(unit.copied, ["tiny"]);
    assert!(!unit.bindings.contains(&"tiny".to_string()));
    assert!(unit
        .source
        .contains("static int tiny(int x) { return x * 3; }"));
    let (ok, err, dir) = gcc(&unit, &["-c", "-O2", "-fPIC", "-Wall"]);
    assert!(ok, "{err}");
    let syms = symbols(&dir.path().join("patch.o"));
    assert!(!syms.iter().any(|(s, k)| s == "tiny" && k == "U"));
}

#[test]
fn main_is_a_candidate_marked_always_active() {
    // Whether `main` really changed is for its compiled code to say (the builder); here it is
    // only a candidate, marked so that a changed `main` is refused rather than replaced.
    let old = "static int step(int x) { return x + 1; }\nint main(void) { return step(1); }\n";
    let new = old.replace("x + 1", "x + 2");
    let unit = one(old, &new, &Options::default());
    let got: Vec<(&str, &str, bool)> = unit
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.reason.as_str(), f.always_active))
        .collect();
    assert_eq!(
        got,
        [
            ("step", "changed", false),
            ("main", "may inline `step`", true)
        ]
    );
    let looping =
        "static int step(int x) { return x + 1; }\nvoid serve(void) { for (;;) step(1); }\n";
    let unit = one(
        looping,
        &looping.replace("x + 1", "x + 2"),
        &Options::default(),
    );
    assert!(unit
        .functions
        .iter()
        .any(|f| f.name == "serve" && f.always_active));
}

#[test]
fn static_local_binds_to_running_storage_unless_new() {
    let old = "int count(void)\n{\n    static int n;\n    return ++n;\n}\n";
    let new = old.replace("++n", "n += 2");
    let unit = one(old, &new, &Options::default());
    assert!(
        unit.source
            .contains("extern int n __asm__(\"__hp_static.count.n\");"),
        "{}",
        unit.source
    );
    assert_eq!(unit.static_locals.len(), 1);
    assert_eq!(
        (
            unit.static_locals[0].function.as_str(),
            unit.static_locals[0].name.as_str()
        ),
        ("count", "n")
    );
    // two locals of one name in one function cannot be told apart
    let old = "int count(int i)\n{\n    if (i) { static int n; return n++; }\n    { static int n; return n--; }\n}\n";
    let new = old.replace("n--", "n -= 2");
    let err = run(old, &new, &Options::default()).expect_err("refused");
    assert!(
        err.to_string()
            .contains("static local `n` in `count` (src/lib.c:"),
        "{err}"
    );
    // in a new function, fresh storage is right
    let unit = one(V1, &v2(), &Options::default());
    assert!(unit.functions.iter().any(|f| f.name == "added"));
}

#[test]
fn line_directive_keeps_error_lines() {
    let new = v2().replace("return x + 2;", "return x + ;");
    let unit = one(V1, &new, &Options::default());
    let line = new
        .lines()
        .position(|l| l.contains("return x + ;"))
        .expect("line")
        + 1;
    let (ok, err, _dir) = gcc(&unit, &["-fsyntax-only"]);
    assert!(!ok);
    assert!(err.contains(&format!("src/lib.c:{line}:")), "{err}");
}

#[test]
fn ifdef_blocks_and_removed_functions() {
    let old = "#include <stdlib.h>\n#ifdef __GNUC__\nstatic int pick(void) { return 1; }\n#else\nstatic int pick(void) { return 2; }\n#endif\nint use(void) { return pick(); }\nint gone(void) { return 0; }\n";
    let new = old
        .replace("return 1;", "return 3;")
        .replace("int gone(void) { return 0; }\n", "");
    let unit = one(old, &new, &Options::default());
    let names: Vec<&str> = unit.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["pick", "use"]);
    let (ok, err, _dir) = gcc(&unit, &["-c", "-O2", "-fPIC"]);
    assert!(ok, "{err}\n{}", unit.source);
    // only a removal: nothing to emit
    let new = old.replace("int gone(void) { return 0; }\n", "");
    assert!(run(old, &new, &Options::default()).expect("ok").is_empty());
}

#[test]
fn a_static_variable_the_binary_folded_away_gets_a_private_copy() {
    let old = "static int scale = 3;\nstatic int used;\nint f(void)\n{\n    used++;\n    return scale;\n}\n";
    let new = old.replace("return scale;", "return scale + 1;");
    let folded = |_file: &str, name: &str| name != "scale";
    let options = Options {
        target_has_local_variable: Some(&folded),
        ..Options::default()
    };
    let unit = one(old, &new, &options);
    assert!(
        unit.source.contains("static int scale = 3;"),
        "{}",
        unit.source
    );
    assert!(unit.source.contains("extern int used;"), "{}", unit.source);
    assert_eq!(unit.bindings, ["used"]);
}

#[test]
fn a_callee_static_by_its_prototype_is_bound_to_the_file_local_symbol() {
    let old = "static int base(void);\nint base(void) { return 40; }\nint value(void) { return base() + 1; }\n";
    let new = "static int base(void);\nint base(void) { return 40; }\nint value(void) { return base() + 2; }\n";
    let unit = one(old, new, &Options::default());
    assert_eq!(unit.bindings, ["base"], "{}", unit.source);
    assert!(
        unit.source.contains("extern int base(void);"),
        "{}",
        unit.source
    );
    let (ok, err, dir) = gcc(&unit, &["-c", "-O2", "-fPIC", "-Wall", "-Werror"]);
    assert!(ok, "{err}\n{}", unit.source);
    let syms = symbols(&dir.path().join("patch.o"));
    assert!(
        syms.contains(&("base".to_string(), "U".to_string())),
        "{syms:?}"
    );
}

#[test]
fn arrays_sized_by_their_initializer_keep_their_complete_type() {
    // `sizeof` needs the complete type: the extern declaration must keep the length the
    // initializer gave, though the initializer itself stays in the running process.
    let old = "static char proto[] = \"HTTP/1.0\";\nstatic const int steps[] = {\n    1, 2, /* three */ 3,\n};\nint value(void) { return (int)sizeof(proto) + (int)(sizeof(steps) / sizeof(steps[0])); }\n";
    let new = old.replace("return (int)", "return 100 + (int)");
    let unit = one(old, &new, &Options::default());
    assert_eq!(unit.source.lines().count(), new.lines().count() + 1);
    let (ok, err, dir) = gcc(&unit, &["-c", "-O2", "-fPIC", "-Wall", "-Werror"]);
    assert!(ok, "{err}\n{}", unit.source);
    // The sizes are compiled in as constants: 100 + 9 + 3.
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(dir.path().join("patch.o"))
        .output()
        .expect("objdump runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("$0x70"), "{text}\n{}", unit.source);
}

/// `gcc -E src/lib.c` of `text` in a scratch tree, as the CLI preprocesses a unit.
fn preprocessed(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(dir.path().join("src/lib.c"), text).expect("write");
    let out = Command::new("gcc")
        .args(["-E", "src/lib.c"])
        .current_dir(dir.path())
        .output()
        .expect("gcc -E runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The patch unit of `src/lib.c` made from its preprocessed units, as the CLI does.
fn one_preprocessed(old: &str, new: &str, options: &Options) -> PatchUnit {
    let (old_snap, new_snap) = (
        snap("v1", &[("src/lib.c", old)]),
        snap("v2", &[("src/lib.c", new)]),
    );
    let units: std::collections::BTreeMap<String, hotpatch_differ::UnitTexts> = [(
        "src/lib.c".to_string(),
        hotpatch_differ::UnitTexts {
            old: Some(preprocessed(old)),
            new: Some(preprocessed(new)),
        },
    )]
    .into();
    let diff_options = hotpatch_differ::DiffOptions {
        units: units.clone(),
        ..Default::default()
    };
    let changes = hotpatch_differ::diff_snapshots_with(&old_snap, &new_snap, &diff_options);
    let options = Options {
        units: Some(&units),
        ..*options
    };
    let mut made = externalize(&changes, &old_snap, &new_snap, &options).expect("externalize");
    assert_eq!(made.len(), 1);
    made.remove(0)
}

#[test]
fn preprocessed_units_see_macro_storage_classes_and_macro_made_functions() {
    let old = "#define l_sinline static inline\n#define DEF(name, v) int name(void) { return v; }\nl_sinline int twice(int v) { return 2 * v; }\nDEF(one, 1)\nint api(int v)\n{\n    return twice(v) + one();\n}\n";
    let new = old
        .replace("DEF(one, 1)", "DEF(one, 11)")
        .replace("twice(v) + one();", "twice(v) + one() + 1;");
    // The binary has no `twice` (inlined everywhere): the unit must compile it in, never bind it.
    let absent = |_file: &str, name: &str| name != "twice";
    let options = Options {
        target_has_local_function: Some(&absent),
        ..Options::default()
    };
    let unit = one_preprocessed(old, &new, &options);
    assert!(unit.preprocessed);
    let got: Vec<(&str, Action, u32)> = unit
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.action, f.line))
        .collect();
    assert_eq!(
        got,
        [("one", Action::Replace, 4), ("api", Action::Replace, 5)]
    );
    assert!(unit.bindings.is_empty(), "{:?}", unit.bindings);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("patch.i");
    std::fs::write(&src, &unit.source).expect("write");
    let out = Command::new("gcc")
        .args(["-c", "-O2", "-fPIC", "-Wall", "-Werror", "-fpreprocessed"])
        .arg(&src)
        .arg("-o")
        .arg(dir.path().join("patch.o"))
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        unit.source
    );
    let syms = symbols(&dir.path().join("patch.o"));
    let kind = |n: &str| syms.iter().find(|(s, _)| s == n).map(|(_, k)| k.as_str());
    assert_eq!(kind("one"), Some("T"), "{syms:?}");
    assert_eq!(kind("api"), Some("T"), "{syms:?}");
    assert_ne!(kind("twice"), Some("U"), "{syms:?}");
}
