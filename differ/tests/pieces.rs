//! Large files are parsed in pieces cut after a top-level function's closing brace; the pieces'
//! items must be exactly those of a parse of the whole file, and a cut that is not such a place
//! must be noticed (the file is then parsed whole).

use std::path::Path;

use hotpatch_differ::index::Index;

/// Checks that parsing `old` and `new` in pieces of `piece_bytes` gives the whole-file indexes,
/// and says whether the pieces were used (`false`: a piece declined, the caller parses whole).
fn pieces_agree(old: &str, new: &str, piece_bytes: usize) -> bool {
    let Some((a, b)) = Index::parse_pair_in_pieces(old, new, piece_bytes) else {
        assert_eq!(Index::parse_pair(old, new).1, Index::parse_whole(new));
        return false;
    };
    assert_eq!(
        a,
        Index::parse_whole(old),
        "old side differs in pieces of {piece_bytes}"
    );
    assert_eq!(
        b,
        Index::parse_whole(new),
        "new side differs in pieces of {piece_bytes}"
    );
    true
}

/// A file of `n` functions with statics, macros, types and prototypes between them; function
/// `i` returns `values(i)`.
fn generated(n: usize, values: impl Fn(usize) -> String) -> String {
    let mut text = String::from("#include <stdio.h>\nstatic int helper(int);\n");
    for i in 0..n {
        if i % 7 == 0 {
            text.push_str(&format!(
                "#define M{i}(x) ((x) + {i})\nstruct s{i} {{ int a; }};\n"
            ));
        }
        text.push_str(&format!(
            "/* f{i} */\nint f{i}(int x)\n{{\n    static int calls;\n    calls++;\n    return {};\n}}\n",
            values(i)
        ));
        if i % 5 == 0 {
            text.push('\n');
        }
    }
    text.push_str("static int helper(int x)\n{\n    return x;\n}\n");
    text
}

#[test]
fn pieces_give_the_whole_files_items_for_every_cut_and_change() {
    let old = generated(60, |i| format!("x + {i}"));
    let changes = [
        generated(60, |i| {
            if i % 13 == 4 {
                format!("x * {i}")
            } else {
                format!("x + {i}")
            }
        }),
        // a function inserted, one removed, the first and the last changed
        generated(61, |i| format!("x + {i}")),
        generated(59, |i| format!("x + {i}")),
        generated(60, |i| {
            if i == 0 || i == 59 {
                "0".into()
            } else {
                format!("x + {i}")
            }
        }),
        old.clone(),
        old.replace("static int helper(int);\n", ""),
    ];
    for new in &changes {
        for piece in [1, 200, 1_000, 4_000, 1 << 20] {
            let used = pieces_agree(&old, new, piece) & pieces_agree(new, &old, piece);
            // A clean file always offers pieces when it is cut at every closing brace.
            assert!(
                used || piece > 4_000,
                "no pieces for a clean file at {piece} bytes"
            );
        }
    }
}

#[test]
fn a_brace_that_closes_no_top_level_function_is_never_a_cut() {
    // Each `}` alone on a line here closes something else: the piece before it fails its check
    // and the file is parsed whole, with the same items.
    let tails = [
        // a block inside a function
        "int f(int x)\n{\n    if (x) {\n}\n    return x;\n}\nint g(void) { return 1; }\n",
        // a function inside a conditional
        "#ifdef X\nint f(void)\n{\n    return 1;\n}\n#endif\nint g(void) { return 2; }\n",
        // a comment
        "/* a comment\n}\nstill the comment */\nint g(void) { return 2; }\n",
        // an initializer, and a struct whose declaration goes on
        "int t[] = {\n    1,\n}\n;\nstruct s {\n    int a;\n}\nvalue;\n",
        // a block that parses cleanly on its own but is no function definition: only a
        // function's closing brace is accepted as a cut
        "extern \"C\" {\nint f(void);\n}\nint g(void) { return 2; }\n",
        // a string continued over lines
        "const char *s = \"a\\\n}\n\";\nint g(void) { return 2; }\n",
    ];
    for tail in tails {
        let text = format!("int first(void)\n{{\n    return 0;\n}}\n{tail}");
        let used = pieces_agree(&text, &text, 1);
        let whole = Index::parse_whole(&text);
        assert_eq!(Index::parse(&text), whole);
        // The first function's brace is a true cut; the second piece must decline.
        assert!(!used, "pieces accepted a cut inside: {tail:?}");
    }
}

#[test]
fn a_damaged_file_is_parsed_whole() {
    let text = "int f(void)\n{\n    return 1 +;\n}\nint g(void)\n{\n    return 2;\n}\n";
    assert!(!pieces_agree(text, text, 1));
    assert!(Index::parse(text).has_error);
}

#[test]
fn every_c_file_of_the_corpus_parses_the_same_in_pieces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "c" || e == "h") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 50, "corpus not found: {} files", files.len());
    let mut cut = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if pieces_agree(&text, &text, 1) {
            cut += 1;
        }
    }
    // Most of the corpus is clean C with more than one function.
    assert!(
        cut * 2 > files.len(),
        "only {cut} of {} files were cut",
        files.len()
    );
}

#[test]
fn a_large_file_is_indexed_in_pieces_as_if_whole() {
    // Over half a megabyte: `parse` and `parse_pair` take the pieces.
    let old = generated(12_000, |i| format!("x + {i}"));
    assert!(old.len() > 512 * 1024);
    let new = generated(12_000, |i| {
        if i % 997 == 3 {
            "x".into()
        } else {
            format!("x + {i}")
        }
    });
    assert!(Index::parse_pair_in_pieces(&old, &new, 128 * 1024).is_some());
    let whole = Index::parse_whole(&old);
    assert_eq!(Index::parse(&old), whole);
    assert_eq!(
        Index::parse_pair(&old, &new),
        (whole, Index::parse_whole(&new))
    );
}
