//! The C item index on realistic snippets.

use hotpatch_differ::index::{Index, ItemKind};

const SRC: &str = r#"#include <stdio.h>
#define TWICE(x) (helper(x) * 2)
struct point { int x, y; };
typedef struct point point_t;
static int counter = 0;
int total, *ptr = &total;
static const int table[] = { 1, 2, 3 };
static const char *names[] = { "a", "b" };
static const char *const fixed[] = { "a" };
int (*hook)(int) = 0;
static int helper(int x);
extern int shared;
static int helper(int x)
{
    static int calls;
    calls++;
    return x + counter;
}
static inline int sq(int x) { return x * x; }
#ifdef FEATURE
int feature(void) { return TWICE(3); }
#else
int feature(void) { return 0; }
#endif
int *make(void) { return &total; }
int main(void) { return helper(sq(2)) + feature(); }
"#;

#[test]
fn indexes_every_kind_of_item() {
    let index = Index::parse(SRC);
    assert!(!index.has_error);
    let find = |name: &str, kind: ItemKind| {
        index
            .items
            .iter()
            .find(|i| i.kind == kind && i.names.iter().any(|n| n == name))
            .unwrap_or_else(|| panic!("no {kind:?} {name}: {:#?}", index.items))
    };
    let twice = find("TWICE", ItemKind::Macro);
    assert!(twice.references.contains("helper"));
    find("point", ItemKind::Type);
    find("point_t", ItemKind::Type);
    let counter = find("counter", ItemKind::Declaration);
    assert!(counter.is_static && !counter.read_only);
    let kw = counter.static_keyword.clone().expect("static keyword");
    assert_eq!(&SRC[kw], "static");
    let init = counter.declarators[0].initializer.clone().expect("init");
    assert_eq!(&SRC[init], "= 0");
    let total = find("ptr", ItemKind::Declaration);
    assert_eq!(total.names, ["total", "ptr"]);
    assert!(total.references.contains("total"));
    assert!(find("table", ItemKind::Declaration).read_only);
    assert!(!find("names", ItemKind::Declaration).read_only);
    assert!(find("fixed", ItemKind::Declaration).read_only);
    let hook = find("hook", ItemKind::Declaration);
    assert!(
        !hook.declarators[0].is_function,
        "function pointer is a variable"
    );
    let protos: Vec<_> = index
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Declaration && i.names == ["helper"])
        .collect();
    assert_eq!(protos.len(), 1);
    assert!(protos[0].declarators[0].is_function);
    assert!(find("shared", ItemKind::Declaration).is_extern);

    let helper = find("helper", ItemKind::Function);
    assert!(helper.is_static && !helper.is_inline);
    assert_eq!(helper.line, 13);
    assert_eq!(helper.static_locals.len(), 1);
    assert_eq!(helper.static_locals[0].name, "calls");
    assert_eq!(helper.static_locals[0].line, 15);
    assert!(helper.references.contains("counter"));
    let body = helper.body.clone().expect("body");
    assert!(SRC[body].starts_with('{'));
    assert!(find("sq", ItemKind::Function).is_inline);
    let features: Vec<_> = index
        .functions()
        .filter(|i| i.names == ["feature"])
        .collect();
    assert_eq!(features.len(), 2, "both #ifdef branches are indexed");
    assert!(features[0].references.contains("TWICE"));
    find("make", ItemKind::Function);
    let main = find("main", ItemKind::Function);
    assert!(main.references.contains("helper") && main.references.contains("sq"));
}

#[test]
fn tokens_ignore_whitespace_and_comments() {
    let a = Index::parse("int f(int x) { return x+1; }\n");
    let b = Index::parse("int f(int x)\n{\n    /* one more */\n    return x + 1; // !\n}\n");
    let c = Index::parse("int f(int x) { return x+2; }\n");
    assert_eq!(a.items[0].token_hash, b.items[0].token_hash);
    assert_ne!(a.items[0].token_hash, c.items[0].token_hash);
}

#[test]
fn damage_is_reported_not_dropped() {
    let index = Index::parse("int ok(void) { return 1; }\nint bad(void) { return 1 +; }\n");
    assert!(index.has_error);
    let bad = index
        .functions()
        .find(|i| i.names == ["bad"])
        .expect("bad kept");
    assert!(bad.has_error);
}

#[test]
fn garbage_does_not_panic() {
    for src in [
        "",
        "}}}{{{",
        "int",
        "#if\n",
        "static static (((",
        "\u{0}\u{1}",
        "int f(",
        "a = = ;",
    ] {
        let _ = Index::parse(src);
    }
}

#[test]
fn large_file_indexes_quickly() {
    let mut src = String::new();
    let mut i = 0;
    while src.len() < 8 << 20 {
        src.push_str(&format!(
            "static int f{i}(int a, int b)\n{{\n    int s = 0;\n    for (int k = a; k < b; k++)\n        s += k * {i};\n    return s + g{i}(a);\n}}\n"
        ));
        i += 1;
    }
    let start = std::time::Instant::now();
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_c::LANGUAGE.into())
        .expect("language");
    drop(parser.parse(&src, None));
    let parse_only = start.elapsed();
    let start = std::time::Instant::now();
    let index = Index::parse(&src);
    let took = start.elapsed();
    assert_eq!(index.items.len(), i);
    eprintln!("8 MB: parse alone {parse_only:?}, index {took:?}");
    if !cfg!(debug_assertions) {
        // one parse and one cheap traversal: indexing costs little more than parsing
        assert!(
            took < parse_only * 2,
            "parse {parse_only:?}, index {took:?}"
        );
    }
}

#[test]
fn incremental_reparse_gives_the_same_index_as_a_fresh_parse() {
    let old = "#define A 1\nstruct s { int a; };\nint f(void)\n{\n    return A;\n}\n\nstatic int g(int x) { return x; }\nint h(void) { return 3; }";
    let with_state = "int x = 1, y;\nstatic int count(void)\n{\n    static int calls = 0;\n    return ++calls;\n}\n";
    let moved = format!("/* header */\n\n{with_state}int z;\n");
    let (_, b) = Index::parse_pair(with_state, &moved);
    assert_eq!(b, Index::parse(&moved));
    let news = [
        "#define A 2\nstruct s { int a; long b; };\nint f(void)\n{\n    return A + 1;\n}\n\nint g2(int x) { return x; }\nint h(void) { return 3; }",
        "int h(void) { return 3; }\n",
        "",
        "#define A 1\nstruct s { int a; };\nint f(void)\n{\n    return A;\n}\n\nstatic int g(int x) { return x; }\nint h(void) { return 3; }\nint k(void) { return 4; }\n",
        "// moved\n\n#define A 1\nstruct s { int a; };\nint f(void)\n{\n    return A;\n}\n\nstatic int g(int x) { return x; }\nint h(void) { return 3; }",
        "/* new first line */\n#define A 1\nstruct s { int a; };\nint f(void)\n{\n    return A;\n// broken\n",
    ];
    for new in news {
        let (a, b) = Index::parse_pair(old, new);
        assert_eq!(a, Index::parse(old));
        assert_eq!(b, Index::parse(new), "incremental differs for {new:?}");
        let (a, b) = Index::parse_pair(new, old);
        assert_eq!(a, Index::parse(new));
        assert_eq!(
            b,
            Index::parse(old),
            "incremental differs back from {new:?}"
        );
    }
}

#[test]
fn large_files_index_in_source_order_on_every_core() {
    let source: String = (0..3_000)
        .map(|i| format!("int f{i}(void)\n{{\n    return {i};\n}}\n"))
        .collect();
    let index = Index::parse(&source);
    assert_eq!(index.items.len(), 3_000);
    for (i, item) in index.items.iter().enumerate() {
        assert_eq!(item.name(), Some(format!("f{i}").as_str()));
        assert_eq!(item.line as usize, 4 * i + 1);
    }
    let small = Index::parse("int f0(void)\n{\n    return 0;\n}\n");
    assert_eq!(small.items[0].token_hash, index.items[0].token_hash);
}
