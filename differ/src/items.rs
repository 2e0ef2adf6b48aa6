//! Classification of the items that are not functions — macros, types, variables and
//! declarations — of a changed file: which were added, changed or removed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::index::{Index, Item, ItemKind};
use crate::Change;

/// A top-level item other than a function definition that was added, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemChange {
    /// Its name (macro, type, variable or declared function name).
    pub name: String,
    /// `macro`, `type`, `variable` or `declaration` (prototypes and `extern` declarations).
    pub kind: &'static str,
    /// Repository-relative path of its file.
    pub file: String,
    /// How it changed (token comparison: comments and whitespace never count).
    pub change: Change,
    /// 1-based line: new side, old side when removed.
    pub line: u32,
}

fn kind_word(item: &Item) -> Option<&'static str> {
    match item.kind {
        ItemKind::Macro => Some("macro"),
        ItemKind::Type => Some("type"),
        ItemKind::Declaration if item.declares_variable() && !item.is_extern => Some("variable"),
        ItemKind::Declaration => Some("declaration"),
        _ => None,
    }
}

/// Items by (kind, name), each with its token hashes in source order and its first line.
fn grouped(index: &Index) -> BTreeMap<(&'static str, &str), (Vec<u64>, u32)> {
    let mut map: BTreeMap<(&'static str, &str), (Vec<u64>, u32)> = BTreeMap::new();
    for item in &index.items {
        let Some(kind) = kind_word(item) else {
            continue;
        };
        for name in &item.names {
            let entry = map.entry((kind, name)).or_insert((Vec::new(), item.line));
            entry.0.push(item.token_hash);
        }
    }
    map
}

/// The non-function items of the file at `path` that differ between `old` and `new`.
pub(crate) fn classify(path: &str, old: &Index, new: &Index) -> Vec<ItemChange> {
    let (before, after) = (grouped(old), grouped(new));
    let keys: BTreeSet<&(&'static str, &str)> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (change, line) = match (before.get(key), after.get(key)) {
            (Some(b), Some(a)) if b.0 != a.0 => (Change::Changed, a.1),
            (None, Some(a)) => (Change::Added, a.1),
            (Some(b), None) => (Change::Removed, b.1),
            _ => continue,
        };
        out.push(ItemChange {
            name: key.1.to_string(),
            kind: key.0,
            file: path.to_string(),
            change,
            line,
        });
    }
    out
}
