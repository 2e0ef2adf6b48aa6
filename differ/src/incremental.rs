//! The edits that turn one text into another, as tree-sitter needs them to re-parse
//! incrementally: whole-line replacements found by a line diff, in order, each in the
//! coordinates of the text with the earlier edits already applied.

use std::time::Duration;

use similar::{Algorithm, DiffTag, TextDiff};
use tree_sitter::{InputEdit, Point};

/// Byte offset where each line starts, plus the total length at the end.
pub(crate) fn line_starts(lines: &[&str]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lines.len() + 1);
    let mut at = 0;
    out.push(0);
    for line in lines {
        at += line.len();
        out.push(at);
    }
    out
}

/// The point where line `line` of `lines` starts; past the last line of a text without a final
/// newline, the end of that last line.
fn point(lines: &[&str], line: usize) -> Point {
    match lines.last() {
        Some(last) if line == lines.len() && !last.ends_with('\n') => {
            Point::new(line - 1, last.len())
        }
        _ => Point::new(line, 0),
    }
}

/// The line diff from `old` to `new` (Myers, giving up on optimality after two seconds).
pub(crate) fn line_diff<'t>(old: &'t str, new: &'t str) -> TextDiff<'t, 't, str> {
    TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(Duration::from_secs(2))
        .diff_lines(old, new)
}

/// The line edits from `old` to `new`, in order.
pub(crate) fn line_edits(old: &str, new: &str) -> Vec<InputEdit> {
    let diff = line_diff(old, new);
    let old_lines: Vec<&str> = diff.iter_old_slices().collect();
    let new_lines: Vec<&str> = diff.iter_new_slices().collect();
    let (old_lines, new_lines) = (old_lines.as_slice(), new_lines.as_slice());
    let (old_at, new_at) = (line_starts(old_lines), line_starts(new_lines));
    let mut edits = Vec::new();
    for op in diff.ops() {
        let (tag, o, n) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            continue;
        }
        let start_byte = new_at[n.start];
        let old_len = old_at[o.end] - old_at[o.start];
        // The end of the old range, in rows of the text with the earlier edits applied: the
        // range now starts at row `n.start` instead of `o.start`.
        let old_end = point(old_lines, o.end);
        let old_end = Point::new(
            (old_end.row + n.start).saturating_sub(o.start),
            old_end.column,
        );
        edits.push(InputEdit {
            start_byte,
            old_end_byte: start_byte + old_len,
            new_end_byte: new_at[n.end],
            start_position: Point::new(n.start, 0),
            old_end_position: old_end,
            new_end_position: point(new_lines, n.end),
        });
    }
    edits
}
