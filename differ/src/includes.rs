//! Which headers a file includes, directly or through other headers, resolved the way the
//! compiler would: quoted includes relative to the including file, then the include directories.

use std::collections::BTreeSet;

use crate::{DiffOptions, Snapshot};

/// One `#include` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The path as written.
    pub path: String,
    /// Written with quotes (`"x.h"`), not angle brackets.
    pub quoted: bool,
}

/// The `#include` directives of `source`, in order (a line scan; conditionals are not evaluated,
/// so every branch counts).
pub fn includes(source: &str) -> Vec<Include> {
    let mut out = Vec::new();
    for line in source.lines() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("include") else {
            continue;
        };
        let rest = rest.trim_start();
        let (close, quoted) = match rest.chars().next() {
            Some('"') => ('"', true),
            Some('<') => ('>', false),
            _ => continue,
        };
        if let Some(end) = rest[1..].find(close) {
            out.push(Include {
                path: rest[1..1 + end].to_string(),
                quoted,
            });
        }
    }
    out
}

/// `dir/path` with `.` and `..` components resolved; `None` when it leaves the root.
fn join(dir: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Resolves one include of the file at `from` to a file of `snapshot`, if it is there.
pub fn resolve(
    snapshot: &Snapshot,
    from: &str,
    include: &Include,
    options: &DiffOptions,
) -> Option<String> {
    let local = include.quoted.then(|| parent(from));
    local
        .into_iter()
        .chain(options.include_dirs.iter().map(String::as_str))
        .filter_map(|dir| join(dir, &include.path))
        .find(|candidate| snapshot.files.contains_key(candidate))
}

/// Every header of `snapshot` that the file at `path` includes, directly or indirectly.
pub fn headers_of(snapshot: &Snapshot, path: &str, options: &DiffOptions) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pending = vec![path.to_string()];
    while let Some(file) = pending.pop() {
        let Some(bytes) = snapshot.files.get(&file) else {
            continue;
        };
        let source = String::from_utf8_lossy(bytes);
        for include in includes(&source) {
            if let Some(found) = resolve(snapshot, &file, &include, options) {
                if found != path && seen.insert(found.clone()) {
                    pending.push(found);
                }
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            files: files
                .iter()
                .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn quoted_relative_then_include_dirs_and_transitive() {
        let s = snap(&[
            (
                "src/a.c",
                "#include \"a.h\"\n# include <b.h>\n#include <stdio.h>\n",
            ),
            ("src/a.h", "#include \"../inc/c.h\"\n"),
            ("include/b.h", ""),
            ("inc/c.h", "#include \"c.h\"\n"),
        ]);
        let options = DiffOptions {
            include_dirs: vec!["include".into()],
            ..DiffOptions::default()
        };
        let found: Vec<String> = headers_of(&s, "src/a.c", &options).into_iter().collect();
        assert_eq!(found, ["inc/c.h", "include/b.h", "src/a.h"]);
        assert!(headers_of(&s, "src/a.c", &DiffOptions::default()).len() == 2);
    }
}
