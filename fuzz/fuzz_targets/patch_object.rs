//! Fuzzes the patch-object reader: any bytes handed to `hotpatch apply` (a vendor's `.o`, a
//! truncated download) must give a patch object or an error, never a panic.
#![no_main]

use hotpatch_applier::artifact::Manifest;
use hotpatch_applier::PatchObject;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = PatchObject::parse(data.to_vec()) {
        let _ = object.manifest();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Manifest::from_json(text);
    }
});
