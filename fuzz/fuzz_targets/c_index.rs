//! Fuzzes the C item indexer: any source text (macro soup, binary junk, half a file) must be
//! indexed without a panic.
#![no_main]

use hotpatch_differ::index::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let index = Index::parse(&text);
    let _ = index.functions().count();
});
