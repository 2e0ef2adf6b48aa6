//! Definitions other code expands or inlines — macros, types and inline functions — and which of
//! them changed, so that every function using one is treated as changed too.

use std::collections::{BTreeMap, BTreeSet};

use crate::index::{Index, Item, ItemKind};

/// What sort of definition a name has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefKind {
    /// `#define`.
    Macro,
    /// struct, union, enum or typedef.
    Type,
    /// An `inline` function (compiled into each caller).
    Inline,
}

impl DefKind {
    fn word(self) -> &'static str {
        match self {
            DefKind::Macro => "macro",
            DefKind::Type => "type",
            DefKind::Inline => "inline function",
        }
    }

    fn of(item: &Item) -> Option<DefKind> {
        match item.kind {
            ItemKind::Macro => Some(DefKind::Macro),
            ItemKind::Type => Some(DefKind::Type),
            ItemKind::Function if item.is_inline => Some(DefKind::Inline),
            _ => None,
        }
    }
}

/// Definitions by name, each with the token hashes of its definitions in source order.
fn defs(index: &Index) -> BTreeMap<&str, (DefKind, Vec<u64>)> {
    let mut map: BTreeMap<&str, (DefKind, Vec<u64>)> = BTreeMap::new();
    for item in &index.items {
        if let Some(kind) = DefKind::of(item) {
            for name in &item.names {
                map.entry(name)
                    .or_insert((kind, Vec::new()))
                    .1
                    .push(item.token_hash);
            }
        }
    }
    map
}

/// The definitions of one file that differ between its revisions (changed, added or removed),
/// as name → why-description such as ``macro `LIMIT` (changed in config.h)``.
pub(crate) fn changed_defs(path: &str, old: &Index, new: &Index) -> BTreeMap<String, String> {
    let (before, after) = (defs(old), defs(new));
    let names: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    let mut out = BTreeMap::new();
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        if b.map(|d| &d.1) == a.map(|d| &d.1) {
            continue;
        }
        let (kind, verb) = match (b, a) {
            (Some(_), Some(a)) => (a.0, "changed"),
            (None, Some(a)) => (a.0, "added"),
            (Some(b), None) => (b.0, "removed"),
            (None, None) => continue,
        };
        out.insert(
            name.to_string(),
            format!("{} `{name}` ({verb} in {path})", kind.word()),
        );
    }
    out
}

/// Adds to `dirty` every definition among `indexes` that uses a dirty name (a macro expanding
/// another, a typedef of a changed struct, an inline function using a changed macro), until
/// nothing more changes.
pub(crate) fn close_over(dirty: &mut BTreeMap<String, String>, indexes: &[&Index]) {
    let candidates: Vec<&Item> = indexes
        .iter()
        .flat_map(|index| index.items.iter())
        .filter(|item| DefKind::of(item).is_some())
        .collect();
    // Each round adds at least one name, so this ends; the bound guards against surprises.
    for _ in 0..=candidates.len() {
        let mut added = false;
        for item in &candidates {
            if item.names.iter().all(|n| dirty.contains_key(n)) {
                continue;
            }
            let Some(kind) = DefKind::of(item) else {
                continue;
            };
            let used = uses(item, dirty).into_iter().next();
            if let Some((_, why)) = used {
                let why = why.to_string();
                for name in &item.names {
                    if !dirty.contains_key(name) {
                        dirty.insert(
                            name.clone(),
                            format!("{} `{name}`, which uses {why}", kind.word()),
                        );
                        added = true;
                    }
                }
            }
        }
        if !added {
            break;
        }
    }
}

/// The dirty names `item` uses (its own names excluded), with their descriptions.
pub(crate) fn uses<'d>(
    item: &Item,
    dirty: &'d BTreeMap<String, String>,
) -> Vec<(&'d str, &'d str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for name in item.references.iter().chain(item.type_references.iter()) {
        if item.names.contains(name) {
            continue;
        }
        if let Some((key, why)) = dirty.get_key_value(name) {
            if !out.iter().any(|(k, _)| *k == key.as_str()) {
                out.push((key.as_str(), why.as_str()));
            }
        }
    }
    out
}
