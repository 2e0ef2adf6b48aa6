//! Preprocessed translation units: the text the compiler really sees (what `cc -E` prints, with
//! its line markers), and for every line of it the source file and line it came from, so items
//! found in the unit are reported at their place in the source.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::index::{Index, Item};
use crate::tokens::tokens;

/// The two revisions of one `.c` file's translation unit as the preprocessor printed them, line
/// markers (`# 12 "src/a.h" 2`) included. File names in the markers are repository-relative for
/// the repository's own files (the builder writes them so); others (system headers) stay as the
/// compiler wrote them. `None` for a side where the file does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitTexts {
    /// The old revision's unit.
    pub old: Option<String>,
    /// The new revision's unit.
    pub new: Option<String>,
}

/// One preprocessed unit, ready to index.
#[derive(Debug)]
pub struct Unit {
    /// The unit's text with every line marker blanked out (same length, same line numbers), so
    /// byte ranges and lines of the index refer to the text the preprocessor printed.
    pub text: String,
    /// For each line (0-based): index into `files` and the 1-based source line.
    lines: Vec<(usize, u32)>,
    /// The file names the markers name, normalised (`a/../b` → `b`, no leading `./`).
    files: Vec<String>,
    /// Byte offset where each line starts, for finding the line of an offset quickly.
    starts: Vec<usize>,
}

impl Unit {
    /// Reads a preprocessed text: its line markers give each following line its origin.
    pub fn read(raw: &str) -> Unit {
        let mut text = String::with_capacity(raw.len());
        let mut lines = Vec::new();
        let mut files: Vec<String> = Vec::new();
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        let (mut file, mut line) = (usize::MAX, 1u32);
        for raw_line in raw.split_inclusive('\n') {
            if let Some((number, name)) = line_marker(raw_line) {
                let name = normalise(&name);
                file = *ids.entry(name.clone()).or_insert_with(|| {
                    files.push(name);
                    files.len() - 1
                });
                line = number;
                // Blank it: a newline stays a newline, everything else becomes a space.
                text.extend(raw_line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
                lines.push((usize::MAX, 0));
                continue;
            }
            text.push_str(raw_line);
            lines.push((file, line));
            line = line.saturating_add(1);
        }
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Unit {
            text,
            lines,
            files,
            starts,
        }
    }

    /// Where 1-based unit line `line` came from: (file, 1-based source line).
    pub fn origin(&self, line: u32) -> Option<(&str, u32)> {
        let (file, source_line) = *self.lines.get(line.checked_sub(1)? as usize)?;
        Some((self.files.get(file)?.as_str(), source_line))
    }

    /// 1-based unit line of byte offset `at`.
    fn line_at(&self, at: usize) -> u32 {
        let line = self.starts.partition_point(|&start| start <= at);
        u32::try_from(line.max(1)).unwrap_or(u32::MAX)
    }

    /// The source lines (file, first, last) an item's byte range came from, when its first and
    /// last line come from the same file.
    pub(crate) fn source_span(&self, range: &Range<usize>) -> Option<(&str, u32, u32)> {
        let (file, first) = self.origin(self.line_at(range.start))?;
        let end = range.end.saturating_sub(1).max(range.start);
        let (end_file, last) = self.origin(self.line_at(end))?;
        (file == end_file).then_some((file, first, last.max(first)))
    }

    /// The unit's items split by the file they came from, each item's `line` (and its static
    /// locals' lines) now the source line. Items whose origin is unknown are dropped.
    pub(crate) fn by_file(&self, index: &Index) -> BTreeMap<String, Index> {
        let mut out: BTreeMap<String, Index> = BTreeMap::new();
        for item in &index.items {
            let Some((file, line)) = self.origin(item.line) else {
                continue;
            };
            let mut item: Item = item.clone();
            let shift =
                |unit_line: u32| -> u32 { self.origin(unit_line).map_or(unit_line, |(_, l)| l) };
            for local in &mut item.static_locals {
                local.line = shift(local.line);
            }
            item.line = line;
            let piece = out.entry(file.to_string()).or_default();
            piece.has_error |= item.has_error;
            piece.items.push(item);
        }
        out
    }

    /// Whether two versions of a function differ only in integer literals that are the source
    /// line numbers of their own lines on each side: what `__LINE__` (and `assert`) expand to
    /// after lines moved. `old` and `new` are the function's byte ranges in each unit.
    pub(crate) fn only_line_numbers_differ(
        old: (&Unit, &Range<usize>),
        new: (&Unit, &Range<usize>),
    ) -> bool {
        let spans = |unit: &Unit, range: &Range<usize>| -> Vec<(usize, String)> {
            let text = unit.text.get(range.clone()).unwrap_or("");
            let base = text.as_ptr() as usize;
            tokens(text)
                .into_iter()
                .map(|t| (range.start + (t.as_ptr() as usize - base), t.to_string()))
                .collect()
        };
        let (a, b) = (spans(old.0, old.1), spans(new.0, new.1));
        if a.len() != b.len() {
            return false;
        }
        let mut differs = false;
        for ((at_a, ta), (at_b, tb)) in a.iter().zip(&b) {
            if ta == tb {
                continue;
            }
            differs = true;
            let is_line = |unit: &Unit, at: usize, token: &str| {
                let line = unit.origin(unit.line_at(at)).map(|(_, l)| l);
                token.parse::<u32>().ok().is_some_and(|n| Some(n) == line)
            };
            if !(is_line(old.0, *at_a, ta) && is_line(new.0, *at_b, tb)) {
                return false;
            }
        }
        differs
    }
}

/// Whether `line` is a line marker (`# 12 "file" flags`, `#line 12 "file"`): the lines that must
/// survive any edit of a preprocessed text, or the lines after them lose their source lines.
pub fn is_line_marker(line: &str) -> bool {
    line_marker(line).is_some()
}

/// `(line, file)` of a line marker: `# 12 "file" flags` or `#line 12 "file"`.
fn line_marker(line: &str) -> Option<(u32, String)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.strip_prefix("line").unwrap_or(rest).trim_start();
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number: u32 = rest[..digits].parse().ok()?;
    let rest = rest[digits..].trim_start().strip_prefix('"')?;
    // The name is a C string literal: `\\` and `\"` are escapes.
    let mut name = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some((number, name)),
            '\\' => name.extend(chars.next()),
            c => name.push(c),
        }
    }
    None
}

/// `path` with `.` and `..` components resolved (a `..` at the start is kept) and no leading `./`.
fn normalise(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "# 0 \"src/a.c\"\n# 1 \"src/../include/a.h\" 1\nstruct s { int x; };\n# 2 \"src/a.c\" 2\n\nint f(void) { return 4; }\n";

    #[test]
    fn markers_give_each_line_its_origin() {
        let unit = Unit::read(UNIT);
        assert_eq!(unit.text.len(), UNIT.len());
        assert_eq!(unit.origin(3), Some(("include/a.h", 1)));
        assert_eq!(unit.origin(6), Some(("src/a.c", 3)));
        assert_eq!(unit.origin(1), None);
        let index = Index::parse(&unit.text);
        let pieces = unit.by_file(&index);
        let names = |f: &str| -> Vec<(String, u32)> {
            pieces[f]
                .items
                .iter()
                .map(|i| (i.names.join(","), i.line))
                .collect()
        };
        assert_eq!(names("include/a.h"), [("s".to_string(), 1)]);
        assert_eq!(names("src/a.c"), [("f".to_string(), 3)]);
    }

    #[test]
    fn line_numbers_of_moved_lines_are_recognised() {
        let old = Unit::read("# 1 \"a.c\"\nint f(void) { return 1; }\n");
        let new = Unit::read("# 1 \"a.c\"\n\n\nint f(void) { return 3; }\n");
        let range = |u: &Unit| {
            let start = u.text.find("int").unwrap();
            start..u.text.len() - 1
        };
        assert!(Unit::only_line_numbers_differ(
            (&old, &range(&old)),
            (&new, &range(&new))
        ));
        // A literal that is not its own line number is a real change.
        let other = Unit::read("# 1 \"a.c\"\n\n\nint f(void) { return 4; }\n");
        assert!(!Unit::only_line_numbers_differ(
            (&old, &range(&old)),
            (&other, &range(&other))
        ));
    }

    #[test]
    fn marker_forms_and_paths() {
        assert_eq!(
            line_marker("# 7 \"a b.h\" 1 3\n"),
            Some((7, "a b.h".into()))
        );
        assert_eq!(
            line_marker("#line 9 \"x\\\\y.c\"\n"),
            Some((9, "x\\y.c".into()))
        );
        assert_eq!(line_marker("#pragma once\n"), None);
        assert_eq!(line_marker("#define X 1\n"), None);
        assert_eq!(normalise("./src/../inc/./a.h"), "inc/a.h");
        assert_eq!(normalise("/usr/include/stdio.h"), "/usr/include/stdio.h");
        assert_eq!(normalise("../up.h"), "../up.h");
    }
}
