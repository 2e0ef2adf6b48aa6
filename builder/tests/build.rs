//! The builder against the real C compiler: two units merged into one object whose symbols,
//! relocations and manifest are what the applier will read.

use hotpatch_applier::artifact::{FunctionAction, Manifest, SymbolRef, MANIFEST_SECTION};
use std::collections::BTreeMap;
use std::path::Path;

use hotpatch_builder::{
    build, file_local_symbol, BuildError, BuiltPatch, CompileCommand, FlagSource, PatchOrigin,
};
use hotpatch_externalizer::{Action, PatchFunction, PatchUnit};
use object::{Object, ObjectSection, ObjectSymbol};

fn unit(
    file: &str,
    source: &str,
    functions: &[(&str, bool, Action)],
    bindings: &[&str],
) -> PatchUnit {
    PatchUnit {
        file: file.to_string(),
        source: source.to_string(),
        preprocessed: false,
        functions: functions
            .iter()
            .map(|&(name, is_static, action)| PatchFunction {
                name: name.to_string(),
                is_static,
                action,
                reason: "changed".to_string(),
                line: 1,
                always_active: false,
            })
            .collect(),
        bindings: bindings.iter().map(|s| s.to_string()).collect(),
        copied: vec![],
        new_data: vec![],
        static_locals: vec![],
    }
}

/// Builds `units` with `-O2 -g` for every file, as `--cflags` gives them, compiled from the
/// revision's root.
fn build_o2(
    root: &Path,
    units: Vec<PatchUnit>,
    origin: &PatchOrigin,
) -> Result<BuiltPatch, BuildError> {
    let flags = ["-O2".to_string(), "-g".to_string()];
    let commands: BTreeMap<String, CompileCommand> = units
        .iter()
        .map(|u| {
            let command =
                CompileCommand::from_flags(&u.file, &flags, FlagSource::CommandLine, Path::new(""));
            (u.file.clone(), command)
        })
        .collect();
    build(root, &units, &commands, origin)
}

#[test]
fn units_merge_into_one_object_with_bindings_and_manifest() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("src")).unwrap();
    std::fs::write(root.path().join("src/common.h"), "#define STEP 3\n").unwrap();
    // Both files reference their own `static int count`; b.c defines a new global that a.c calls;
    // both define a static `helper` (names clash inside the merged object).
    let a = unit(
        "src/a.c",
        "#include \"common.h\"\nextern int count;\nint fresh(int);\n\
         static __attribute__((used,noinline)) int helper(int x) { return x + STEP; }\n\
         int fa(void) { count += STEP; return helper(fresh(count)); }\n",
        &[
            ("fa", false, Action::Replace),
            ("helper", true, Action::Replace),
        ],
        &["count"],
    );
    let b = unit(
        "src/b.c",
        "extern int count;\n\
         static __attribute__((used,noinline)) int helper(int x) { return x * 2; }\n\
         int fresh(int x) { return helper(x) + count; }\n",
        &[
            ("fresh", false, Action::Add),
            ("helper", true, Action::InlinedOnly),
        ],
        &["count"],
    );
    let origin = PatchOrigin {
        old_revision: Some("v1".into()),
        new_revision: Some("v2".into()),
        old_commit: None,
        new_commit: None,
        old_root: None,
        target_build_id: Some("00ff".into()),
        ..PatchOrigin::default()
    };
    let built = build_o2(root.path(), vec![a, b], &origin).unwrap();

    let object = object::File::parse(&*built.object).unwrap();
    let section = object
        .section_by_name(MANIFEST_SECTION)
        .expect("manifest section");
    let manifest =
        Manifest::from_json(std::str::from_utf8(section.data().unwrap()).unwrap()).unwrap();
    assert_eq!(manifest, built.manifest);
    assert_eq!(manifest.old_revision.as_deref(), Some("v1"));
    assert!(manifest.cflags.contains(&"-fPIC".to_string()));

    // Each file's `count` is its own binding.
    let targets: Vec<_> = manifest
        .bindings
        .iter()
        .map(|b| (b.symbol.clone(), b.target.clone()))
        .collect();
    for file in ["src/a.c", "src/b.c"] {
        let symbol = file_local_symbol(file, "count");
        let target = SymbolRef::FileLocal {
            name: "count".into(),
            file: file.into(),
        };
        assert!(targets.contains(&(symbol.clone(), target)), "{targets:?}");
        let sym = object
            .symbol_by_name(&symbol)
            .expect("renamed binding symbol");
        assert!(sym.is_undefined());
    }
    // `fresh` is defined once (by b.c) and a.c's call refers to that definition.
    let fresh: Vec<_> = object
        .symbols()
        .filter(|s| s.name() == Ok("fresh"))
        .collect();
    assert_eq!(fresh.len(), 1);
    assert!(!fresh[0].is_undefined());
    // The two `helper`s stay distinct, and the manifest names each by its symbol.
    let helpers: Vec<_> = manifest
        .functions
        .iter()
        .filter(|f| f.target.name() == "helper")
        .collect();
    assert_eq!(helpers.len(), 2);
    assert_ne!(helpers[0].symbol, helpers[1].symbol);
    for helper in helpers {
        let sym = object
            .symbol_by_name(&helper.symbol)
            .expect("helper symbol");
        assert!(sym.is_local() && !sym.is_undefined());
    }
    let actions: Vec<_> = manifest
        .functions
        .iter()
        .map(|f| (f.target.name().to_string(), f.action))
        .collect();
    assert!(actions.contains(&("fresh".into(), FunctionAction::Add)));
    assert!(actions.contains(&("helper".into(), FunctionAction::InlinedOnly)));
    // Debug sections are not loaded, so they are not carried.
    assert!(object.section_by_name(".debug_info").is_none());
    assert!(object.section_by_name(".text.fa").is_some());
}

#[test]
fn a_unit_that_does_not_compile_reports_the_compiler_diagnostics_at_the_original_line() {
    let root = tempfile::tempdir().unwrap();
    let broken = unit(
        "lib.c",
        "#line 1 \"lib.c\"\nint f(void)\n{\n    return 1 +;\n}\n",
        &[("f", false, Action::Replace)],
        &[],
    );
    let err = build_o2(root.path(), vec![broken], &PatchOrigin::default()).unwrap_err();
    match &err {
        BuildError::Compile { file, diagnostics } => {
            assert_eq!(file, "lib.c");
            assert!(diagnostics.contains("lib.c:3"), "{diagnostics}");
        }
        other => panic!("expected a compile error, got {other}"),
    }
    assert!(err
        .to_string()
        .starts_with("the patch for lib.c does not compile"));
}

#[test]
fn a_function_the_compiler_dropped_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    // A static function without `used` and without callers is discarded by gcc.
    let unit = unit(
        "lib.c",
        "static int gone(void) { return 1; }\n",
        &[("gone", true, Action::Replace)],
        &[],
    );
    let err = build_o2(root.path(), vec![unit], &PatchOrigin::default()).unwrap_err();
    assert!(err.to_string().contains("has no code for `gone`"), "{err}");
}

#[test]
fn replaced_functions_carry_the_preimage_of_their_old_code() {
    let old = tempfile::tempdir().unwrap();
    std::fs::write(
        old.path().join("lib.c"),
        "int total;\nint add(int x)\n{\n    total += x;\n    return total;\n}\n",
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let new_unit = unit(
        "lib.c",
        "extern int total;\nint add(int x)\n{\n    total += 2 * x;\n    return total;\n}\n",
        &[("add", false, Action::Replace)],
        &[],
    );
    let origin = PatchOrigin {
        old_root: Some(old.path().to_path_buf()),
        ..PatchOrigin::default()
    };
    let built = build_o2(root.path(), vec![new_unit], &origin).unwrap();
    let preimage = built.manifest.functions[0]
        .preimage
        .as_ref()
        .expect("a preimage");
    assert!(preimage.size > 0);
    // `total` is reached through a relocation: its site is masked.
    assert!(!preimage.masked.is_empty(), "{preimage:?}");
    assert_eq!(preimage.code.len() as u64, preimage.size * 2);

    // An old revision that does not compile is an error that says what was being checked.
    std::fs::write(
        old.path().join("lib.c"),
        "int add(int x) { return x + ; }\n",
    )
    .unwrap();
    let new_unit = unit(
        "lib.c",
        "int add(int x) { return x + 1; }\n",
        &[("add", false, Action::Replace)],
        &[],
    );
    let err = build_o2(root.path(), vec![new_unit], &origin).unwrap_err();
    assert!(err.to_string().contains("old revision of lib.c"), "{err}");
}

#[test]
fn the_postimage_of_one_patch_is_the_preimage_of_the_next() {
    let source = |factor: u32| {
        format!(
            "int total;\nint add(int x)\n{{\n    total += {factor} * x;\n    return total;\n}}\n"
        )
    };
    let trees: Vec<tempfile::TempDir> = (1..=3)
        .map(|factor| {
            let tree = tempfile::tempdir().unwrap();
            std::fs::write(tree.path().join("lib.c"), source(factor)).unwrap();
            tree
        })
        .collect();
    // Patch `from`→`to`: the new revision materialised as the root, the old one beside it.
    let patch = |from: usize, to: usize| {
        let unit = unit(
            "lib.c",
            &source(to as u32 + 1).replace("int total;", "extern int total;"),
            &[("add", false, Action::Replace)],
            &[],
        );
        let origin = PatchOrigin {
            old_root: Some(trees[from].path().to_path_buf()),
            ..PatchOrigin::default()
        };
        let built = build_o2(trees[to].path(), vec![unit], &origin).unwrap();
        built.manifest.functions[0].clone()
    };
    let first = patch(0, 1);
    let second = patch(1, 2);
    let postimage = first.postimage.expect("a postimage");
    assert!(!postimage.masked.is_empty(), "{postimage:?}");
    assert_ne!(
        first.preimage.as_ref(),
        Some(&postimage),
        "v1 and v2 differ"
    );
    assert_eq!(
        second.preimage,
        Some(postimage),
        "v2 compiles the same both times"
    );
}
