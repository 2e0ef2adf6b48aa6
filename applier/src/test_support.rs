//! Helpers of the applier's unit tests: real gcc output to read.

/// `source` compiled by gcc into an `-O2 -g` shared object: its bytes, and a look-up of a
/// symbol's link-time address by name (panics when absent).
pub(crate) fn gcc_shared_object(source: &str) -> (Vec<u8>, impl Fn(&str) -> u64) {
    use object::{Object as _, ObjectSymbol as _};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("lib.c");
    std::fs::write(&src, source).unwrap();
    let out = dir.path().join("lib.so");
    let status = std::process::Command::new("gcc")
        .args(["-O2", "-g", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed on {source}");
    let bytes = std::fs::read(&out).unwrap();
    let symbols: Vec<(String, u64)> = object::File::parse(bytes.as_slice())
        .unwrap()
        .symbols()
        .filter_map(|s| Some((s.name().ok()?.to_string(), s.address())))
        .collect();
    let address = move |name: &str| {
        symbols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no symbol {name}"))
    };
    (bytes, address)
}
