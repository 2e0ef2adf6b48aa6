//! Comparing two snapshots: changed files, then functions matched by (file, name) on tokens.

use std::collections::{BTreeMap, BTreeSet};

use crate::index::{Index, Item, ItemKind};
use crate::{Change, ChangeSet, FunctionChange, Snapshot};

/// Compares two snapshots and classifies every function of every changed `.c` file.
pub fn diff_snapshots(old: &Snapshot, new: &Snapshot) -> ChangeSet {
    let mut changed_files = Vec::new();
    let mut functions = Vec::new();
    let mut warnings = Vec::new();
    let paths: BTreeSet<&String> = old.files.keys().chain(new.files.keys()).collect();
    for path in paths {
        let (before, after) = (old.files.get(path), new.files.get(path));
        if before == after {
            continue;
        }
        if path.ends_with(".h") {
            warnings.push(format!(
                "header {path} changed: header analysis is not implemented yet, functions that use its macros, inline functions or types are not detected"
            ));
        } else if path.ends_with(".c") {
            changed_files.push(path.clone());
            let old_src = String::from_utf8_lossy(before.map(Vec::as_slice).unwrap_or(&[]));
            let new_src = String::from_utf8_lossy(after.map(Vec::as_slice).unwrap_or(&[]));
            let mut file = FileDiff {
                path,
                old_src: &old_src,
                new_src: &new_src,
                functions: &mut functions,
                warnings: &mut warnings,
            };
            file.compare(&Index::parse(&old_src), &Index::parse(&new_src));
        }
    }
    functions.sort_by(|a, b| (&a.file, a.line, &a.name).cmp(&(&b.file, b.line, &b.name)));
    ChangeSet {
        old_label: old.label.clone(),
        new_label: new.label.clone(),
        changed_files,
        functions,
        warnings,
    }
}

/// Whitespace-normalised text: runs of whitespace become one space.
fn normalised(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Function definitions grouped by name, each group in source order.
fn by_name(index: &Index) -> BTreeMap<&str, Vec<&Item>> {
    let mut map: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for item in index.functions() {
        if let Some(name) = item.name() {
            map.entry(name).or_default().push(item);
        }
    }
    map
}

struct FileDiff<'a> {
    path: &'a str,
    old_src: &'a str,
    new_src: &'a str,
    functions: &'a mut Vec<FunctionChange>,
    warnings: &'a mut Vec<String>,
}

impl FileDiff<'_> {
    fn compare(&mut self, old: &Index, new: &Index) {
        let (old_fns, new_fns) = (by_name(old), by_name(new));
        let names: BTreeSet<&str> = old_fns.keys().chain(new_fns.keys()).copied().collect();
        for name in names {
            let before = old_fns.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let after = new_fns.get(name).map(Vec::as_slice).unwrap_or(&[]);
            for i in 0..before.len().max(after.len()) {
                self.compare_one(name, before.get(i).copied(), after.get(i).copied());
            }
        }
        self.compare_unattributed(old, new);
    }

    fn compare_one(&mut self, name: &str, before: Option<&Item>, after: Option<&Item>) {
        let old_text = before.map(|i| i.text(self.old_src)).unwrap_or("");
        let new_text = after.map(|i| i.text(self.new_src)).unwrap_or("");
        let (change, item) = match (before, after) {
            (None, Some(a)) => (Change::Added, a),
            (Some(b), None) => (Change::Removed, b),
            (Some(b), Some(a)) => {
                let differs = if b.has_error || a.has_error {
                    let damaged = if a.has_error { a } else { b };
                    self.warnings.push(format!(
                        "{}:{}: `{name}` has parse errors: compared its whitespace-normalised text instead of its tokens",
                        self.path, damaged.line
                    ));
                    normalised(old_text) != normalised(new_text)
                } else {
                    b.token_hash != a.token_hash
                };
                if !differs {
                    return;
                }
                (Change::Changed, a)
            }
            (None, None) => return,
        };
        if change != Change::Changed && item.has_error {
            self.warnings.push(format!(
                "{}:{}: `{name}` has parse errors: its extent may be guessed",
                self.path, item.line
            ));
        }
        let diff = similar::TextDiff::from_lines(old_text, new_text)
            .unified_diff()
            // A function's text ends at its closing brace, not at a newline: no hint for that.
            .missing_newline_hint(false)
            .header(&format!("a/{}", self.path), &format!("b/{}", self.path))
            .to_string();
        self.functions.push(FunctionChange {
            name: name.to_string(),
            file: self.path.to_string(),
            change,
            is_static: item.is_static,
            line: item.line,
            diff,
        });
    }

    /// Damaged regions with no recognisable function: compare them in order, warn on change.
    fn compare_unattributed(&mut self, old: &Index, new: &Index) {
        let damaged = |index: &Index| -> Vec<Item> {
            index
                .items
                .iter()
                .filter(|i| i.has_error && i.kind == ItemKind::Other)
                .cloned()
                .collect()
        };
        let (before, after) = (damaged(old), damaged(new));
        for i in 0..before.len().max(after.len()) {
            let old_text = before.get(i).map(|it| normalised(it.text(self.old_src)));
            let new_text = after.get(i).map(|it| normalised(it.text(self.new_src)));
            if old_text != new_text {
                let line = after
                    .get(i)
                    .or(before.get(i))
                    .map(|it| it.line)
                    .unwrap_or(0);
                self.warnings.push(format!(
                    "{}:{line}: a region that does not parse changed; it could not be attributed to a function, so any function in it is not patched",
                    self.path
                ));
            }
        }
    }
}
