//! Large files parsed in pieces, on every core, and the new revision parsed only where it changed.
//!
//! A file is cut at lines that follow a line holding only `}` (the closing brace of a top-level
//! function, when the piece before it says so), the pieces are parsed on their own, and their
//! items are moved to their place in the file. Cutting there is exact: the parser reads left to
//! right, and a function definition ends at its closing brace whatever follows (no C production
//! continues a function body), so the parse of the whole file reaches each cut in the state it
//! starts a file in, having built the same items as the piece before it. Each piece is checked to
//! prove its cut was such a place: it parses without an error and, but for the last one, its last
//! top-level node is a function definition that ends at its final `}`. A brace inside a comment,
//! a string, an unfinished `#if` or a nested block fails that check; then the file is parsed in
//! one piece, so a damaged file keeps the whole-file error recovery.
//!
//! For two revisions, the cuts are placed in the lines the line diff shows equal, next to each
//! change: a piece without a change is identical text on both sides, so its new-side items are
//! the old ones moved (not parsed again), and only the small pieces holding a change are parsed on
//! the new side. Trees are dropped piece by piece, so memory stays near the size of the index.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use similar::DiffTag;
use tree_sitter::{Parser, Tree};

use crate::incremental::{line_diff, line_starts};
use crate::index::{c_parser, Index, Item};

/// Files from this many bytes on are parsed in pieces.
pub(crate) const PIECES_FROM: usize = 512 * 1024;

/// Roughly how many bytes of unchanged text one piece holds.
pub(crate) const PIECE_BYTES: usize = 128 * 1024;

/// One piece of the file: where it is on each side and whether its text changed.
struct Piece {
    /// Byte range in the old text.
    old: Range<usize>,
    /// 0-based row of its first line in the old text.
    old_row: usize,
    /// Byte range in the new text.
    new: Range<usize>,
    /// 0-based row of its first line in the new text.
    new_row: usize,
}

/// A line the file may be cut before: its number on each side (0-based).
#[derive(Clone, Copy)]
struct Cut {
    old_line: usize,
    new_line: usize,
}

/// Indexes `source` in pieces of about `piece_bytes` bytes; `None` when a piece fails the check
/// (see the module doc) or the file offers fewer than two pieces: the caller then parses it whole.
pub(crate) fn parse(source: &str, piece_bytes: usize) -> Option<Index> {
    let lines: Vec<&str> = source.split_inclusive('\n').collect();
    let all = (DiffTag::Equal, 0..lines.len(), 0..lines.len());
    let pieces = pieces(&lines, &lines, &[all], piece_bytes)?;
    Some(index_pieces(source, None, &pieces)?.0)
}

/// Indexes `old` and `new` in pieces of about `piece_bytes` unchanged bytes, cut next to each
/// change the line diff shows; `None` as for [`parse`].
pub(crate) fn parse_pair(old: &str, new: &str, piece_bytes: usize) -> Option<(Index, Index)> {
    let diff = line_diff(old, new);
    let old_lines: Vec<&str> = diff.iter_old_slices().collect();
    let new_lines: Vec<&str> = diff.iter_new_slices().collect();
    let ops: Vec<(DiffTag, Range<usize>, Range<usize>)> =
        diff.ops().iter().map(|op| op.as_tag_tuple()).collect();
    let pieces = pieces(&old_lines, &new_lines, &ops, piece_bytes)?;
    match index_pieces(old, Some(new), &pieces)? {
        (old, Some(new)) => Some((old, new)),
        (_, None) => None,
    }
}

/// The pieces of a file whose lines changed as `ops` (the line diff's) say: cut after lines
/// holding only `}` in its equal runs, next to the changes and every `piece_bytes` between;
/// `None` when there is no cut.
fn pieces(
    old_lines: &[&str],
    new_lines: &[&str],
    ops: &[(DiffTag, Range<usize>, Range<usize>)],
    piece_bytes: usize,
) -> Option<Vec<Piece>> {
    let (old_at, new_at) = (line_starts(old_lines), line_starts(new_lines));
    let mut cuts: Vec<Cut> = Vec::new();
    for (i, (tag, o, n)) in ops.iter().enumerate() {
        if *tag != DiffTag::Equal {
            continue;
        }
        // Lines `l` whose previous line, in this equal run, holds only `}`.
        let candidates: Vec<Cut> = (o.start + 1..=o.end)
            .filter(|&l| l < old_lines.len() && is_closing_brace(old_lines[l - 1]))
            .map(|l| Cut {
                old_line: l,
                new_line: n.start + (l - o.start),
            })
            .collect();
        let (Some(&first), Some(&last)) = (candidates.first(), candidates.last()) else {
            continue;
        };
        // Next to the changes on either side, then every `piece_bytes` in between.
        if i > 0 {
            cuts.push(first);
        }
        for &cut in &candidates {
            let since = cuts.last().map_or(0, |c| old_at[c.old_line]);
            if old_at[cut.old_line] - since >= piece_bytes {
                cuts.push(cut);
            }
        }
        if i + 1 < ops.len() {
            cuts.push(last);
        }
    }
    cuts.dedup_by_key(|c| c.old_line);
    if cuts.is_empty() {
        return None;
    }
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut from = Cut {
        old_line: 0,
        new_line: 0,
    };
    let ends = Cut {
        old_line: old_lines.len(),
        new_line: new_lines.len(),
    };
    for to in cuts.into_iter().chain([ends]) {
        pieces.push(Piece {
            old: old_at[from.old_line]..old_at[to.old_line],
            old_row: from.old_line,
            new: new_at[from.new_line]..new_at[to.new_line],
            new_row: from.new_line,
        });
        from = to;
    }
    Some(pieces)
}

/// The items of one piece on each side, in the file's coordinates (the new side `None` when
/// only one revision is indexed).
type PieceItems = (Vec<Item>, Option<Vec<Item>>);

/// Indexes every piece of `old` (and of `new`, when given) on every core; `None` when one fails
/// its check.
fn index_pieces(old: &str, new: Option<&str>, pieces: &[Piece]) -> Option<(Index, Option<Index>)> {
    let next = AtomicUsize::new(0);
    let both_sides = |parser: &mut Parser, i: usize| -> Option<PieceItems> {
        let piece = &pieces[i];
        let last = i + 1 == pieces.len();
        let old_text = old.get(piece.old.clone())?;
        let old_items = index_piece(parser, old_text, last, None)?;
        let new_items = match new {
            None => None,
            Some(new) => {
                let new_text = new.get(piece.new.clone())?;
                Some(if old_text == new_text {
                    moved(&old_items, piece.new.start, piece.new_row)
                } else {
                    let items = index_piece(parser, new_text, last, Some((&old_items, old_text)))?;
                    moved(&items, piece.new.start, piece.new_row)
                })
            }
        };
        Some((moved(&old_items, piece.old.start, piece.old_row), new_items))
    };
    let work = || -> Option<Vec<(usize, PieceItems)>> {
        let mut parser = c_parser()?;
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= pieces.len() {
                return Some(done);
            }
            let Some(items) = both_sides(&mut parser, i) else {
                // One failed check decides: the others stop taking pieces.
                next.store(usize::MAX / 2, Ordering::Relaxed);
                return None;
            };
            done.push((i, items));
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, pieces.len());
    let mut results: Vec<(usize, PieceItems)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        for helper in helpers {
            match (helper.join().ok().flatten(), all.as_mut()) {
                (Some(part), Some(all)) => all.extend(part),
                _ => all = None,
            }
        }
        all
    })?;
    if results.len() != pieces.len() {
        return None;
    }
    results.sort_by_key(|r| r.0);
    let (mut old_items, mut new_items) = (Vec::new(), new.map(|_| Vec::new()));
    for (_, (o, n)) in results {
        old_items.extend(o);
        if let (Some(all), Some(n)) = (new_items.as_mut(), n) {
            all.extend(n);
        }
    }
    Some((
        Index::from_items(old_items),
        new_items.map(Index::from_items),
    ))
}

/// Parses one piece and indexes its items (in the piece's own coordinates), or `None` when the
/// piece does not prove its cut (module doc); `previous` is the old side of a changed piece,
/// whose unchanged items are reused.
fn index_piece(
    parser: &mut Parser,
    text: &str,
    last: bool,
    previous: Option<(&[Item], &str)>,
) -> Option<Vec<Item>> {
    let tree = parser.parse(text, None)?;
    proves_its_cut(&tree, text, last).then(|| Index::items_of_tree(&tree, text, previous))
}

/// The piece parsed without an error and, unless it ends the file, its last top-level node is a
/// function definition followed by nothing but the line break.
fn proves_its_cut(tree: &Tree, text: &str, last: bool) -> bool {
    let root = tree.root_node();
    if root.has_error() {
        return false;
    }
    if last {
        return true;
    }
    let Some(final_node) = root.child(root.child_count().wrapping_sub(1)) else {
        return false;
    };
    final_node.kind() == "function_definition"
        && text
            .get(final_node.end_byte()..)
            .is_some_and(|rest| rest.trim().is_empty())
}

/// The items moved from a piece's own coordinates to where the piece starts (`start` bytes,
/// `row` lines into the file).
fn moved(items: &[Item], start: usize, row: usize) -> Vec<Item> {
    let rows = u32::try_from(row).unwrap_or(u32::MAX);
    items
        .iter()
        .map(|item| {
            crate::index::relocated(
                item,
                item.range.start + start,
                item.line.saturating_add(rows),
            )
        })
        .collect()
}

/// A line holding only a closing brace (and its line break).
fn is_closing_brace(line: &str) -> bool {
    line.trim_end_matches(['\n', '\r']) == "}"
}
