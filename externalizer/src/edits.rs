//! Line-preserving text edits on a source file.

use std::ops::Range;

/// A set of non-overlapping edits to one source text.
#[derive(Debug, Default)]
pub struct Edits {
    edits: Vec<(Range<usize>, String)>,
}

use hotpatch_differ::unit::is_line_marker;

/// As many newlines as `text` has: what replaces removed text so line numbers stay put. Line
/// markers (`# 12 "a.c"`, in preprocessed text) are kept, or the lines after them would be
/// attributed to the wrong source line.
pub fn newlines_of(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if is_line_marker(line) {
                out.push_str(line);
            }
        }
    }
    out
}

impl Edits {
    /// Replaces `range` by `replacement`.
    pub fn replace(&mut self, range: Range<usize>, replacement: impl Into<String>) {
        self.edits.push((range, replacement.into()));
    }

    /// Inserts `text` at byte `at`.
    pub fn insert(&mut self, at: usize, text: impl Into<String>) {
        self.edits.push((at..at, text.into()));
    }

    /// Removes `range`, keeping its newlines.
    pub fn blank(&mut self, source: &str, range: Range<usize>) {
        let kept = newlines_of(source.get(range.clone()).unwrap_or(""));
        self.replace(range, kept);
    }

    /// Applies the edits; an edit overlapping an earlier one or out of bounds is skipped.
    pub fn apply(mut self, source: &str) -> String {
        self.edits.sort_by_key(|(r, _)| (r.start, r.end));
        let mut out = String::with_capacity(source.len() + 256);
        let mut pos = 0;
        for (range, text) in self.edits {
            if range.start < pos || range.end > source.len() || range.start > range.end {
                continue;
            }
            let (Some(before), true) = (
                source.get(pos..range.start),
                source.is_char_boundary(range.end),
            ) else {
                continue;
            };
            out.push_str(before);
            out.push_str(&text);
            pos = range.end;
        }
        out.push_str(source.get(pos..).unwrap_or(""));
        out
    }
}
