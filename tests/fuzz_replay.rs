//! Replays the fuzzing seed corpus (`fuzz/corpus/`) through the same entry points the fuzz targets
//! use, in the normal test command and on stable Rust: every input must parse or be refused with
//! an error, never panic. Inputs the fuzzer once crashed on stay here, so the fixes stay fixed.

use std::path::PathBuf;

use hotpatch_applier::artifact::Manifest;
use hotpatch_applier::PatchObject;
use hotpatch_differ::index::Index;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "the {target} corpus is nearly empty");
    inputs
}

#[test]
fn patch_object_corpus_parses_or_errors() {
    let mut parsed = 0;
    for (path, bytes) in corpus("patch_object") {
        if let Ok(object) = PatchObject::parse(bytes.clone()) {
            parsed += 1;
            let _ = object.manifest();
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = Manifest::from_json(text);
        }
        let _ = path;
    }
    // The real objects among the seeds must still be readable.
    assert!(parsed >= 3, "only {parsed} seed objects parsed");
}

#[test]
fn c_index_corpus_indexes() {
    let mut functions = 0;
    for (_, bytes) in corpus("c_index") {
        let index = Index::parse(&String::from_utf8_lossy(&bytes));
        functions += index.functions().count();
    }
    assert!(
        functions > 20,
        "the seed sources hold real functions, found {functions}"
    );
}
