//! The running binary's inline map kept in the object cache by build id: reading the DWARF of
//! a large binary takes a fifth of a second or more, reading its map back a few milliseconds
//! (BENCHMARKS.md (f)). A build id names the binary's contents, so the map of one build id
//! never changes; the record's kind names the map's format and this hotpatch's version.

use hotpatch_applier::{InlineMap, Target};
use hotpatch_builder::Cache;

/// Gives `target` its inline map from `cache` when an earlier run stored it, else reads it from
/// the DWARF and stores it. Says where the map came from: `cache`, `dwarf`, or `none` (no debug
/// information). A binary without a build id is read every time.
pub fn prime(target: &Target, cache: &Cache) -> &'static str {
    let kind = format!(
        "inline-map {} {}",
        env!("CARGO_PKG_VERSION"),
        InlineMap::FORMAT
    );
    let id = target.build_id().map(str::to_string);
    if let Some(id) = &id {
        if let Some(map) = cache.get_record(&kind, id).and_then(InlineMap::from_bytes) {
            target.offer_inline_map(map);
            return "cache";
        }
    }
    let Some(map) = target.inline_map() else {
        return "none";
    };
    if let Some(id) = &id {
        cache.put_record(&kind, id, map.to_bytes());
    }
    "dwarf"
}
