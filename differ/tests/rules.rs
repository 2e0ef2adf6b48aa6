//! Classification, propagation and refusals on small snapshots: each rule shows its message.

use hotpatch_differ::{
    diff_snapshots, diff_snapshots_with, Change, ChangeSet, DiffOptions, RefusalKind, Snapshot,
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

fn diff(old: &[(&str, &str)], new: &[(&str, &str)]) -> ChangeSet {
    diff_snapshots(&snap(old), &snap(new))
}

fn reasons_of<'a>(cs: &'a ChangeSet, name: &str) -> &'a [String] {
    cs.functions
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.reasons.as_slice())
        .unwrap_or_else(|| panic!("`{name}` not in {:#?}", cs.functions))
}

#[test]
fn struct_layout_change_is_refused_with_the_field() {
    let old = "struct conn {\n    int fd;\n    char *name;\n};\nint get(struct conn *c) { return c->fd; }\n";
    let new = "struct conn {\n    int flags;\n    int fd;\n    char *name;\n};\nint get(struct conn *c) { return c->fd; }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", new)]);
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    let r = &cs.refusals[0];
    assert_eq!(
        (r.item.as_str(), r.kind, r.file.as_str(), r.line),
        ("struct conn", RefusalKind::TypeLayout, "lib.c", 1)
    );
    assert!(r.reason.starts_with("struct conn gains field `flags` before `fd`: every existing `struct conn` in the running process has the old layout"), "{}", r.reason);
    assert!(
        r.snippet.starts_with("struct conn {\n    int flags;"),
        "{}",
        r.snippet
    );
    assert_eq!(
        reasons_of(&cs, "get"),
        ["uses type `conn` (changed in lib.c)"]
    );
}

#[test]
fn comment_only_struct_edit_is_no_change() {
    let old = "struct conn { int fd; };\nint get(struct conn *c) { return c->fd; }\n";
    let new = "struct conn {\n    int fd; /* the socket */\n};\nint get(struct conn *c) { return c->fd; }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", new)]);
    assert!(cs.refusals.is_empty() && cs.functions.is_empty(), "{cs:#?}");
}

#[test]
fn globals_type_and_initializer_and_new_ones() {
    let old = "int limit = 10;\nstatic int count;\nconst char *const names[] = {\"a\"};\nint f(void) { return limit + count; }\n";
    let new = "long limit = 10;\nstatic int count = 5;\nconst char *const names[] = {\"a\", \"b\"};\nint fresh = 3;\nint f(void) { return limit + count; }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", new)]);
    let by_item = |item: &str| {
        cs.refusals
            .iter()
            .find(|r| r.item == item)
            .unwrap_or_else(|| panic!("{item}: {:#?}", cs.refusals))
    };
    let limit = by_item("limit");
    assert_eq!(limit.kind, RefusalKind::GlobalType);
    assert!(limit.reason.starts_with("global `limit` changes type from `int limit` to `long limit`: the running process keeps"), "{}", limit.reason);
    let count = by_item("count");
    assert_eq!(count.kind, RefusalKind::GlobalInitializer);
    assert!(
        count
            .reason
            .starts_with("file-scope static `count` changes its initializer from none to `5`"),
        "{}",
        count.reason
    );
    let names = by_item("names");
    assert!(
        names.reason.starts_with(
            "const table `names` changes its initializer from `{ \"a\" }` to `{ \"a\", \"b\" }`"
        ),
        "{}",
        names.reason
    );
    assert!(
        cs.warnings
            .iter()
            .any(|w| w == "lib.c:4: new global `fresh` starts from its initializer in the patch"),
        "{:?}",
        cs.warnings
    );
}

#[test]
fn static_locals_signatures_and_always_active() {
    let old = "int count(void) { static int calls; return ++calls; }\nint add(int a) { return a; }\nstatic int sq(int x) { return x * x; }\nint main(void) { for (;;) add(1); }\nvoid loop(void) { for (;;) count(); }\n";
    let new = "int count(void) { static long calls = 1; return ++calls; }\nint add(int a, int b) { return a + b; }\nstatic int sq(int y) { return y * y; }\nint main(void) { for (;;) add(1, 2); }\nvoid loop(void) { for (;;) { count(); count(); } }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", new)]);
    let kinds: Vec<(&str, RefusalKind)> = cs
        .refusals
        .iter()
        .map(|r| (r.item.as_str(), r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("count::calls", RefusalKind::StaticLocal),
            ("add", RefusalKind::Signature),
            ("main", RefusalKind::AlwaysActive),
            ("loop", RefusalKind::AlwaysActive),
        ]
    );
    assert!(
        cs.refusals[0]
            .reason
            .contains("changes from `static int calls` to `static long calls = 1`"),
        "{}",
        cs.refusals[0].reason
    );
    assert!(cs.refusals[1].reason.starts_with("`add` changes its signature from `int add(int a)` to `int add(int a, int b)`: it is not static"), "{}", cs.refusals[1].reason);
    assert!(cs.refusals[2]
        .reason
        .contains("a prediction from the source; the applier will confirm"));
    assert!(
        cs.refusals[3].reason.contains("never returns"),
        "{}",
        cs.refusals[3].reason
    );
    // A renamed parameter of a static function is not a signature change.
    assert_eq!(reasons_of(&cs, "sq"), ["changed"]);
}

#[test]
fn added_and_removed_static_locals() {
    let old = "int f(void) { static int a; return a++; }\n";
    let new = "int f(void) { static int b; return b++; }\nint g(void) { static int fine; return fine++; }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", new)]);
    let reasons: Vec<&str> = cs.refusals.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(reasons
        .iter()
        .any(|r| r.starts_with("`f` gains static local `b`")));
    assert!(reasons
        .iter()
        .any(|r| r.starts_with("`f` loses static local `a`")));
}

#[test]
fn header_macro_inline_and_type_propagate_through_include_dirs() {
    let h1 = "#define LIMIT 10\n#define TWICE_LIMIT (LIMIT * 2)\nstatic inline int clamp(int v) { return v > LIMIT ? LIMIT : v; }\n";
    let h2 = "#define LIMIT 20\n#define TWICE_LIMIT (LIMIT * 2)\nstatic inline int clamp(int v) { return v > LIMIT ? LIMIT : v; }\n";
    let c = "#include <cfg.h>\nint a(void) { return TWICE_LIMIT; }\nint b(int v) { return clamp(v); }\nint c(void) { return 1; }\n";
    let old = [("include/cfg.h", h1), ("src/lib.c", c)];
    let new = [("include/cfg.h", h2), ("src/lib.c", c)];
    // Without the include directory the header is not found: nothing changes.
    assert!(diff(&old, &new).functions.is_empty());
    let options = DiffOptions::from_flags(&["-O2", "-Iinclude"]);
    let cs = diff_snapshots_with(&snap(&old), &snap(&new), &options);
    assert_eq!(cs.changed_files, ["src/lib.c"]);
    let names: Vec<(&str, Change)> = cs
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.change))
        .collect();
    assert_eq!(names, [("a", Change::Changed), ("b", Change::Changed)]);
    assert_eq!(
        reasons_of(&cs, "a"),
        ["uses macro `TWICE_LIMIT`, which uses macro `LIMIT` (changed in include/cfg.h)"]
    );
    assert_eq!(
        reasons_of(&cs, "b"),
        ["uses inline function `clamp`, which uses macro `LIMIT` (changed in include/cfg.h)"]
    );
    assert!(cs.refusals.is_empty(), "{:#?}", cs.refusals);
}

#[test]
fn header_struct_change_is_refused_in_the_header() {
    let h1 = "struct conn { int fd; };\n";
    let h2 = "struct conn { int fd; int flags; };\n";
    let c = "#include \"conn.h\"\nint fd_of(struct conn *c) { return c->fd; }\n";
    let cs = diff(
        &[("conn.h", h1), ("main.c", c)],
        &[("conn.h", h2), ("main.c", c)],
    );
    assert_eq!(cs.refusals.len(), 1);
    assert_eq!(
        (cs.refusals[0].file.as_str(), cs.refusals[0].line),
        ("conn.h", 1)
    );
    assert!(cs.refusals[0]
        .reason
        .starts_with("struct conn gains field `flags` at the end"));
    assert_eq!(
        reasons_of(&cs, "fd_of"),
        ["uses type `conn` (changed in conn.h)"]
    );
}

#[test]
fn line_moves_and_duplicate_statics() {
    let old_a = "#include <assert.h>\nstatic int helper(void) { return 1; }\nint a(int x) { assert(x); return helper(); }\n";
    let new_a = "#include <assert.h>\n\n\n/* moved */\nstatic int helper(void) { return 1; }\nint a(int x) { assert(x); return helper(); }\n";
    let b1 = "static int helper(void) { return 1; }\nint b(void) { return helper(); }\n";
    let b2 = "static int helper(void) { return 2; }\nint b(void) { return helper(); }\n";
    let cs = diff(
        &[("a.c", old_a), ("b.c", b1)],
        &[("a.c", new_a), ("b.c", b2)],
    );
    let found: Vec<(&str, &str)> = cs
        .functions
        .iter()
        .map(|f| (f.file.as_str(), f.name.as_str()))
        .collect();
    assert_eq!(found, [("b.c", "helper")]);
    assert!(cs.functions[0].is_static);
}

#[test]
fn single_files_compare_under_one_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.c"), dir.path().join("b.c"));
    std::fs::write(&a, "int f(void) { return 1; }\n").expect("write");
    std::fs::write(&b, "int f(void) { return 2; }\n").expect("write");
    let old = Snapshot::from_file(&a, "b.c", "a.c").expect("read");
    let new = Snapshot::from_file(&b, "b.c", "b.c").expect("read");
    let cs = diff_snapshots(&old, &new);
    assert_eq!(cs.functions.len(), 1);
    assert_eq!(cs.functions[0].reasons, ["changed"]);
    assert!(Snapshot::from_file(&dir.path().join("missing.c"), "x.c", "x").is_err());
}

#[test]
fn static_signature_refused_only_when_its_address_is_stored() {
    let old = "static int cb(int a) { return a; }\nint (*hook)(int) = cb;\nstatic int sq(int a) { return a; }\nint use(void) { return sq(2); }\n";
    let new = "static int cb(long a) { return a; }\nint (*hook)(int) = cb;\nstatic int sq(long a) { return a; }\nint use(void) { return sq(2); }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", new)]);
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    assert_eq!(cs.refusals[0].item, "cb");
    assert!(
        cs.refusals[0]
            .reason
            .contains("its address is stored in `hook` (line 2)"),
        "{}",
        cs.refusals[0].reason
    );
}

#[test]
fn forward_declaration_before_definition_still_refuses_the_layout_change() {
    // A header that declares `struct client;` near its top, then defines it; a member is
    // inserted mid-struct. The definition decides the layout, not the forward declaration.
    let h1 = "struct client;\nint client_fd(struct client *);\n\nstruct client {\n    int fd;\n    char *name;\n};\n";
    let h2 = "struct client;\nint client_fd(struct client *);\n\nstruct client {\n    int fd;\n    long flags;\n    char *name;\n};\n";
    let c = "#include \"client.h\"\nint client_fd(struct client *c) { return c->fd; }\n";
    let cs = diff(
        &[("client.h", h1), ("client.c", c)],
        &[("client.h", h2), ("client.c", c)],
    );
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    let r = &cs.refusals[0];
    assert_eq!(
        (r.item.as_str(), r.kind, r.file.as_str(), r.line),
        ("struct client", RefusalKind::TypeLayout, "client.h", 4)
    );
    assert!(
        r.reason
            .starts_with("struct client gains field `flags` before `name`"),
        "{}",
        r.reason
    );
}

#[test]
fn struct_named_only_through_a_typedef_of_another_header_is_refused() {
    // `typedef struct req_s req_t;` in one header, the struct in another, and the code names
    // only `req_t`: a bit-field inserted (and one removed) mid-way is still a layout change.
    let types = "typedef struct req_s req_t;\n";
    let r1 = "#include \"types.h\"\nstruct req_s {\n    int fd;\n    unsigned keepalive:1;\n    unsigned chunked:1;\n    char *uri;\n};\n";
    let r2 = "#include \"types.h\"\nstruct req_s {\n    int fd;\n    unsigned pipelined:1;\n    unsigned keepalive:1;\n    char *uri;\n};\n";
    let c = "#include \"types.h\"\n#include \"req.h\"\nint req_fd(req_t *r) { return r->fd; }\n";
    let cs = diff(
        &[("types.h", types), ("req.h", r1), ("http.c", c)],
        &[("types.h", types), ("req.h", r2), ("http.c", c)],
    );
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    let r = &cs.refusals[0];
    assert_eq!(
        (r.item.as_str(), r.kind, r.file.as_str(), r.line),
        ("struct req_s", RefusalKind::TypeLayout, "req.h", 2)
    );
    assert!(r.reason.contains("`pipelined`"), "{}", r.reason);
    assert!(r.reason.contains("`chunked`"), "{}", r.reason);
    // With the refusal forced, the code using the typedef is patched.
    assert_eq!(
        reasons_of(&cs, "req_fd"),
        ["uses type `req_t`, which uses type `req_s` (changed in req.h)"]
    );
}

#[test]
fn opaque_struct_of_a_c_file_and_a_typedef_struct_named_by_its_tag_are_refused() {
    // The opaque pattern: the typedef in an unchanged header, the struct in the .c file.
    let h = "typedef struct pool pool_t;
int pool_size(pool_t *p);
";
    let c1 = "#include \"pool.h\"\nstruct pool { int size; char *base; };\nint pool_size(pool_t *p) { return p->size; }\n";
    let c2 = "#include \"pool.h\"\nstruct pool { int size; int used; char *base; };\nint pool_size(pool_t *p) { return p->size; }\n";
    let cs = diff(
        &[("pool.h", h), ("pool.c", c1)],
        &[("pool.h", h), ("pool.c", c2)],
    );
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    assert_eq!(cs.refusals[0].item, "struct pool");
    // `typedef struct conn {...} conn_t;` used only as `struct conn`.
    let c1 =
        "typedef struct conn { int fd; } conn_t;\nint fd_of(struct conn *c) { return c->fd; }\n";
    let c2 = "typedef struct conn { int id; int fd; } conn_t;\nint fd_of(struct conn *c) { return c->fd; }\n";
    let cs = diff(&[("conn.c", c1)], &[("conn.c", c2)]);
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    let r = &cs.refusals[0];
    assert_eq!(
        (r.item.as_str(), r.kind),
        ("typedef conn_t", RefusalKind::TypeLayout)
    );
    assert!(
        r.reason.contains("gains field `id` before `fd`"),
        "{}",
        r.reason
    );
}

#[test]
fn enumerator_inserted_mid_way_is_refused_and_appended_is_allowed() {
    let old = "enum state { IDLE, BUSY, DONE };\nint is_done(enum state s) { return s == DONE; }\n";
    let inserted = "enum state { IDLE, WAITING, BUSY, DONE };\nint is_done(enum state s) { return s == DONE; }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", inserted)]);
    assert_eq!(cs.refusals.len(), 1, "{:#?}", cs.refusals);
    let r = &cs.refusals[0];
    assert_eq!(
        (r.item.as_str(), r.kind, r.line),
        ("enum state", RefusalKind::TypeLayout, 1)
    );
    assert!(
        r.reason.contains("`BUSY` changes value from 1 to 2")
            && r.reason.contains("`DONE` changes value from 2 to 3"),
        "{}",
        r.reason
    );

    let appended = "enum state { IDLE, BUSY, DONE, FAILED };\nint is_done(enum state s) { return s == DONE; }\n";
    let cs = diff(&[("lib.c", old)], &[("lib.c", appended)]);
    assert!(cs.refusals.is_empty(), "{:#?}", cs.refusals);
    assert!(
        cs.warnings
            .iter()
            .any(|w| w.contains("enum state gains enumerator `FAILED` = 3 after the last")),
        "{:#?}",
        cs.warnings
    );
}

#[test]
fn linkage_comes_from_the_first_declaration() {
    // `static` on the prototype gives the later definition internal linkage (C11 6.2.2p5).
    let old = "struct w;\nstatic void f(struct w *);\nvoid f(struct w *w) { (void)w; }\nint g(void) { f(0); return 1; }\n";
    let new = "struct w;\nstatic void f(struct w *);\nvoid f(struct w *w) { (void)w; (void)0; }\nint g(void) { f(0); return 1; }\n";
    let cs = diff(&[("w.c", old)], &[("w.c", new)]);
    assert_eq!(cs.functions.len(), 1, "{:#?}", cs.functions);
    assert_eq!(cs.functions[0].name, "f");
    assert!(cs.functions[0].is_static, "{:#?}", cs.functions[0]);
}

#[test]
fn main_using_a_changed_function_is_a_note_not_a_refusal() {
    let old = "static int rate(void) { return 1; }\nint main(void) { for (;;) rate(); }\n";
    let new = old.replace("return 1", "return 2");
    let cs = diff(&[("m.c", old)], &[("m.c", &new)]);
    assert!(cs.refusals.is_empty(), "{:#?}", cs.refusals);
    assert_eq!(
        cs.warnings,
        ["m.c:2: `main` is always active and uses the changed `rate`: if its compiled code inlines it, `main` is refused (decided from the compiled code by --dry-run and --apply)"]
    );
}

#[test]
fn files_outside_the_running_program_make_no_refusal_and_no_patch() {
    // tool.c is a separate utility with its own `main`; only it includes tool.h.
    let h1 = "struct opts { int verbose; };\n";
    let h2 = "struct opts { int quiet; int verbose; };\n";
    let tool1 = "#include \"tool.h\"\nint main(void) { struct opts o = {0}; return o.verbose; }\n";
    let tool2 =
        "#include \"tool.h\"\nint main(void) { struct opts o = {0}; return o.verbose + 1; }\n";
    let lib1 = "int value(void) { return 1; }\n";
    let lib2 = "int value(void) { return 2; }\n";
    let old = snap(&[("tool.h", h1), ("tool.c", tool1), ("lib.c", lib1)]);
    let new = snap(&[("tool.h", h2), ("tool.c", tool2), ("lib.c", lib2)]);
    // Without knowing the program, everything counts.
    let cs = diff_snapshots(&old, &new);
    assert_eq!(cs.refusals.len(), 2, "{:#?}", cs.refusals);
    let options = DiffOptions {
        program: Some(hotpatch_differ::Program {
            name: "/srv/app".into(),
            files: ["lib.c".to_string(), "main.c".to_string()].into(),
        }),
        ..DiffOptions::default()
    };
    let cs = diff_snapshots_with(&old, &new, &options);
    assert!(cs.refusals.is_empty(), "{:#?}", cs.refusals);
    let names: Vec<&str> = cs.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["value"]);
    assert_eq!(cs.changed_files, ["lib.c"]);
    assert_eq!(cs.warnings, ["tool.c: not part of /srv/app: ignored"]);
}
