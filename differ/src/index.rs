//! The C item index: one tree-sitter parse and one traversal give every top-level item of a file
//! (including items nested in preprocessor conditionals) with the byte ranges and facts the later
//! stages need.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::OnceLock;

use tree_sitter::{Node, Parser, TreeCursor};

/// What a top-level item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A function definition (with a body), or a region with parse errors that looks like one.
    Function,
    /// A declaration: variables and/or function prototypes (see [`Item::declarators`]).
    Declaration,
    /// A `typedef`, or a struct/union/enum definition standing alone.
    Type,
    /// A `#define` (object-like or function-like).
    Macro,
    /// Anything else (includes, pragmas, damaged regions without a recognisable function, ...).
    Other,
}

/// One declarator of a declaration, e.g. `x = 1` in `static int x = 1, y;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declarator {
    /// The declared name.
    pub name: String,
    /// True when the name is declared as a function (a prototype), not a variable.
    pub is_function: bool,
    /// Byte range from the `=` to the end of the initializer value, if there is one.
    pub initializer: Option<Range<usize>>,
    /// True for a read-only variable: const-qualified with no non-const pointer level.
    pub read_only: bool,
}

/// A `static` variable declared inside a function body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticLocal {
    /// Name of the variable.
    pub name: String,
    /// 1-based line of its declaration.
    pub line: u32,
    /// Hash of the declaration's tokens (type and initializer; comments excluded).
    pub token_hash: u64,
    /// Byte range of the whole declaration.
    pub range: Range<usize>,
}

/// One top-level item of a C file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What the item is.
    pub kind: ItemKind,
    /// Declared names (function name, variable names, typedef names, macro name, struct tag).
    pub names: Vec<String>,
    /// Has the `static` storage class.
    pub is_static: bool,
    /// Has an `inline` specifier (`inline`, `__inline`, `__inline__`, `__forceinline`).
    pub is_inline: bool,
    /// Has the `extern` storage class.
    pub is_extern: bool,
    /// Byte range of the whole item.
    pub range: Range<usize>,
    /// Byte range of the `static` keyword, if any.
    pub static_keyword: Option<Range<usize>>,
    /// For function definitions: byte range of the body (the compound statement).
    pub body: Option<Range<usize>>,
    /// For declarations: every declarator in order.
    pub declarators: Vec<Declarator>,
    /// 1-based line where the item starts.
    pub line: u32,
    /// For declarations: every declarator is a read-only variable (see [`Declarator::read_only`]).
    pub read_only: bool,
    /// Identifiers used in the function body, the initializers, or the macro value (for call graphs).
    pub references: BTreeSet<String>,
    /// Static locals declared in the function body.
    pub static_locals: Vec<StaticLocal>,
    /// Type names used anywhere in the item (typedef names and struct/union/enum tags).
    pub type_references: BTreeSet<String>,
    /// For function definitions: hash of the tokens before the body, parameter names excluded
    /// (equal hashes: same return type, name, storage class and parameter types).
    pub signature_hash: u64,
    /// For function definitions: the body has a loop with no exit condition (`for (;;)`,
    /// `while (1)`) and no `return` or `break` anywhere, so once entered it never returns.
    pub never_returns: bool,
    /// Hash of the item's token texts (comments and whitespace excluded): equal tokens, equal hash.
    pub token_hash: u64,
    /// Tree-sitter reported a parse error inside this item.
    pub has_error: bool,
    /// A struct, union or enum named without a body (`struct client;`): it declares the tag and
    /// defines no layout, so the type's definition elsewhere decides its layout.
    pub is_forward_declaration: bool,
}

impl Item {
    /// The first declared name, if any.
    pub fn name(&self) -> Option<&str> {
        self.names.first().map(String::as_str)
    }

    /// True for a function definition with a known name.
    pub fn is_function_definition(&self) -> bool {
        self.kind == ItemKind::Function && !self.names.is_empty()
    }

    /// True for a declaration that declares at least one variable.
    pub fn declares_variable(&self) -> bool {
        self.kind == ItemKind::Declaration && self.declarators.iter().any(|d| !d.is_function)
    }

    /// The item's source text (empty if the range does not fit `source`).
    pub fn text<'s>(&self, source: &'s str) -> &'s str {
        source.get(self.range.clone()).unwrap_or("")
    }
}

/// Every top-level item of one C file, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// The items in source order.
    pub items: Vec<Item>,
    /// The parse reported at least one error somewhere in the file.
    pub has_error: bool,
}

impl Index {
    /// Parses `source` as C and indexes its top-level items. Never fails: a file tree-sitter
    /// cannot parse at all yields an empty index marked `has_error`. A large file is parsed in
    /// pieces on every core (exact: see [`Index::parse_pair_in_pieces`]).
    pub fn parse(source: &str) -> Index {
        if source.len() >= crate::pieces::PIECES_FROM {
            if let Some(index) = crate::pieces::parse(source, PIECE_BYTES) {
                return index;
            }
        }
        Index::parse_whole(source)
    }

    /// Parses `source` in one piece: what [`Index::parse`] does for files under half a
    /// megabyte, and the reference the piecewise parse of larger files is tested against.
    pub fn parse_whole(source: &str) -> Index {
        match c_parser().and_then(|mut parser| parser.parse(source, None)) {
            Some(tree) => Index::from_tree(&tree, source),
            None => Index::unparsable(),
        }
    }

    /// Indexes two revisions of one file. Gives the same indexes as two calls of
    /// [`Index::parse_whole`]. A large file is parsed in pieces on every core, and its new side
    /// only where the line diff shows a change ([`Index::parse_pair_in_pieces`]); otherwise the
    /// old side is parsed and the new one re-parsed incrementally from the old tree after the
    /// line edits between them, so the cost of the new side follows the size of the change.
    pub fn parse_pair(old: &str, new: &str) -> (Index, Index) {
        if old.len().max(new.len()) >= crate::pieces::PIECES_FROM {
            if let Some(pair) = crate::pieces::parse_pair(old, new, PIECE_BYTES) {
                return pair;
            }
        }
        Index::parse_pair_whole(old, new)
    }

    /// [`Index::parse_pair`] in pieces of about `piece_bytes` unchanged bytes, whatever the file's
    /// size (the size is a parameter so tests can cut small files into many pieces). The file is
    /// cut after lines holding only `}`, next to each change; each piece must prove its cut (it
    /// parses cleanly and, but for the last, ends with a function definition's closing brace),
    /// else `None`: the caller parses the file whole.
    pub fn parse_pair_in_pieces(
        old: &str,
        new: &str,
        piece_bytes: usize,
    ) -> Option<(Index, Index)> {
        crate::pieces::parse_pair(old, new, piece_bytes.max(1))
    }

    /// Both revisions parsed whole, the new one incrementally from the old tree; the old side
    /// is indexed on another thread meanwhile.
    fn parse_pair_whole(old: &str, new: &str) -> (Index, Index) {
        let Some(mut parser) = c_parser() else {
            return (Index::unparsable(), Index::unparsable());
        };
        // The line diff needs no tree: it runs while the old side is parsed.
        let (old_tree, edits) = std::thread::scope(|scope| {
            let edits = scope.spawn(|| crate::incremental::line_edits(old, new));
            let tree = parser.parse(old, None);
            (tree, edits.join().ok())
        });
        let (Some(old_tree), Some(edits)) = (old_tree, edits) else {
            return (Index::parse_whole(old), Index::parse_whole(new));
        };
        let mut edited = old_tree.clone();
        // Index the old side while the new one is re-parsed, then index the new side reusing
        // every old item whose text did not change.
        let (old_index, new_tree) = std::thread::scope(|scope| {
            let old_index = scope.spawn(|| Index::from_tree(&old_tree, old));
            for edit in &edits {
                edited.edit(edit);
            }
            let new_tree = parser.parse(new, Some(&edited));
            let old_index = old_index.join().unwrap_or_else(|_| Index::parse_whole(old));
            (old_index, new_tree)
        });
        let new_index = match new_tree {
            Some(tree) => Index::from_items_and_errors(
                Index::items_of_tree(&tree, new, Some((&old_index.items, old))),
                tree.root_node().has_error(),
            ),
            None => Index::parse_whole(new),
        };
        (old_index, new_index)
    }

    fn unparsable() -> Index {
        Index {
            items: Vec::new(),
            has_error: true,
        }
    }

    /// Indexes the items of a parsed tree of `source`.
    fn from_tree(tree: &tree_sitter::Tree, source: &str) -> Index {
        Index::from_items_and_errors(
            Index::items_of_tree(tree, source, None),
            tree.root_node().has_error(),
        )
    }

    /// The index of a file whose pieces parsed without an error, from their items in order.
    pub(crate) fn from_items(items: Vec<Item>) -> Index {
        Index::from_items_and_errors(items, false)
    }

    /// The index of a file's items in source order, applying the rules that span items.
    fn from_items_and_errors(mut items: Vec<Item>, has_error: bool) -> Index {
        link_static_by_earlier_declarations(&mut items);
        Index { items, has_error }
    }

    /// The top-level items of a parsed tree of `source`, each on its own (rules spanning items
    /// are applied by [`Index::from_items`]); with `previous` (the items of an earlier revision
    /// and its text), an item whose text and parse state are unchanged is copied from it and
    /// moved to its new place instead of being walked again.
    pub(crate) fn items_of_tree(
        tree: &tree_sitter::Tree,
        source: &str,
        previous: Option<(&[Item], &str)>,
    ) -> Vec<Item> {
        let reusable: HashMap<&str, &Item> = previous
            .map(|(items, text)| {
                items
                    .iter()
                    .filter(|i| i.kind != ItemKind::Other || !i.has_error)
                    .map(|i| (i.text(text), i))
                    .collect()
            })
            .unwrap_or_default();
        let root = tree.root_node();
        let src = source.as_bytes();
        // The top-level nodes to index, in source order (`true`: a damaged region).
        let mut work: Vec<(Node, bool)> = Vec::new();
        let mut pending: Vec<Node> = named_children_rev(root);
        while let Some(node) = pending.pop() {
            match node.kind() {
                "preproc_if"
                | "preproc_ifdef"
                | "preproc_else"
                | "preproc_elif"
                | "preproc_elifdef"
                | "linkage_specification"
                | "declaration_list" => {
                    pending.extend(block_children_rev(node));
                }
                "ERROR" => {
                    let inner = block_children_rev(node);
                    if inner.iter().any(|n| is_item_kind(n.kind())) {
                        pending.extend(inner);
                    } else {
                        work.push((node, true));
                    }
                }
                "comment" => {}
                _ => work.push((node, false)),
            }
        }
        let index_one = |&(node, damaged): &(Node, bool)| -> Item {
            if damaged {
                return damaged_item(node, src);
            }
            let reused = reusable.get(text(node, src)).filter(|old| {
                old.kind == kind_of(node.kind()) && old.has_error == node.has_error()
            });
            match reused {
                Some(old) => moved(old, node),
                None => index_item(node, src),
            }
        };
        // Large files: walk the items on every core, each thread a contiguous share.
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let items: Vec<Item> = if threads > 1 && work.len() >= PARALLEL_ITEMS {
            let share = work.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = work
                    .chunks(share)
                    .map(|chunk| scope.spawn(|| chunk.iter().map(index_one).collect::<Vec<_>>()))
                    .collect();
                let mut items = Vec::with_capacity(work.len());
                for (handle, chunk) in handles.into_iter().zip(work.chunks(share)) {
                    // A thread that failed is redone here rather than losing its items.
                    match handle.join() {
                        Ok(part) => items.extend(part),
                        Err(_) => items.extend(chunk.iter().map(index_one)),
                    }
                }
                items
            })
        } else {
            work.iter().map(index_one).collect()
        };
        items
    }

    /// The function definitions (with names), in source order.
    pub fn functions(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.is_function_definition())
    }
}

/// C's rule for linkage: a function first declared `static` keeps internal linkage even when
/// its definition later omits the keyword (`static void f(int);` ... `void f(int x) {...}`), so
/// such a definition is marked static.
fn link_static_by_earlier_declarations(items: &mut [Item]) {
    let mut declared_static: HashSet<String> = HashSet::new();
    for item in items.iter_mut() {
        match item.kind {
            ItemKind::Declaration if item.is_static => {
                declared_static.extend(
                    item.declarators
                        .iter()
                        .filter(|d| d.is_function)
                        .map(|d| d.name.clone()),
                );
            }
            ItemKind::Function if !item.is_static => {
                item.is_static = item.names.iter().any(|n| declared_static.contains(n));
            }
            _ => {}
        }
    }
}

/// Roughly how many bytes of unchanged text one piece of a large file holds.
const PIECE_BYTES: usize = crate::pieces::PIECE_BYTES;

/// From this many top-level items on, a file's items are indexed on several threads.
const PARALLEL_ITEMS: usize = 2_000;

/// The item kind [`index_item`] gives a top-level node of this kind.
fn kind_of(node_kind: &str) -> ItemKind {
    match node_kind {
        "function_definition" => ItemKind::Function,
        "declaration" => ItemKind::Declaration,
        "type_definition" | "struct_specifier" | "union_specifier" | "enum_specifier" => {
            ItemKind::Type
        }
        "preproc_def" | "preproc_function_def" => ItemKind::Macro,
        _ => ItemKind::Other,
    }
}

/// A copy of `item` (same text) moved to where `node` is: every byte range and line shifted.
fn moved(item: &Item, node: Node) -> Item {
    relocated(item, node.start_byte(), line_of(node))
}

/// A copy of `item` (same text) moved to start at byte `to` on 1-based line `line`: every byte
/// range and line shifted.
pub(crate) fn relocated(item: &Item, to: usize, line: u32) -> Item {
    let from = item.range.start;
    let shift =
        |r: &Range<usize>| (r.start.saturating_sub(from) + to)..(r.end.saturating_sub(from) + to);
    let shift_line = |l: u32| l.saturating_sub(item.line).saturating_add(line);
    let mut out = item.clone();
    out.range = shift(&item.range);
    out.static_keyword = item.static_keyword.as_ref().map(shift);
    out.body = item.body.as_ref().map(shift);
    for d in &mut out.declarators {
        d.initializer = d.initializer.as_ref().map(shift);
    }
    for local in &mut out.static_locals {
        local.range = shift(&local.range);
        local.line = shift_line(local.line);
    }
    out.line = line;
    out
}

/// A parser for C, or `None` if the grammar does not load.
pub(crate) fn c_parser() -> Option<Parser> {
    let mut parser = Parser::new();
    parser.set_language(&tree_sitter_c::LANGUAGE.into()).ok()?;
    Some(parser)
}

fn is_item_kind(kind: &str) -> bool {
    matches!(
        kind,
        "function_definition"
            | "declaration"
            | "type_definition"
            | "preproc_def"
            | "preproc_function_def"
    )
}

pub(crate) fn text<'s>(node: Node, src: &'s [u8]) -> &'s str {
    src.get(node.byte_range())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

fn line_of(node: Node) -> u32 {
    u32::try_from(node.start_position().row + 1).unwrap_or(u32::MAX)
}

/// Named children, reversed (for a stack that pops them in source order).
fn named_children_rev(node: Node) -> Vec<Node> {
    let mut cursor = node.walk();
    let mut out: Vec<Node> = node.named_children(&mut cursor).collect();
    out.reverse();
    out
}

/// Children of a preprocessor block that are items (not its name or condition), reversed.
fn block_children_rev(node: Node) -> Vec<Node> {
    let mut out = Vec::new();
    let mut cursor = node.walk();
    if cursor.goto_first_child() {
        loop {
            let child = cursor.node();
            let field = cursor.field_name();
            if child.is_named() && !matches!(field, Some("name" | "condition")) {
                out.push(child);
            }
            if !cursor.goto_next_sibling() {
                break;
            }
        }
    }
    out.reverse();
    out
}

/// Visits every node of the subtree rooted at `node` (pre-order), without recursion.
fn walk(node: Node, mut visit: impl FnMut(Node)) {
    let mut cursor: TreeCursor = node.walk();
    loop {
        visit(cursor.node());
        if cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.node() == node {
                return;
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// Node kind ids the hot loop compares (comparing ids avoids string conversions).
struct Kinds {
    comment: u16,
    identifier: u16,
    type_identifier: u16,
    preproc_arg: u16,
    declaration: u16,
    return_statement: u16,
    break_statement: u16,
    for_statement: u16,
    while_statement: u16,
    do_statement: u16,
}

fn kinds() -> &'static Kinds {
    static KINDS: OnceLock<Kinds> = OnceLock::new();
    KINDS.get_or_init(|| {
        let language = tree_sitter::Language::new(tree_sitter_c::LANGUAGE);
        Kinds {
            comment: language.id_for_node_kind("comment", true),
            identifier: language.id_for_node_kind("identifier", true),
            type_identifier: language.id_for_node_kind("type_identifier", true),
            return_statement: language.id_for_node_kind("return_statement", true),
            break_statement: language.id_for_node_kind("break_statement", true),
            for_statement: language.id_for_node_kind("for_statement", true),
            while_statement: language.id_for_node_kind("while_statement", true),
            do_statement: language.id_for_node_kind("do_statement", true),
            preproc_arg: language.id_for_node_kind("preproc_arg", true),
            declaration: language.id_for_node_kind("declaration", true),
        }
    })
}

/// A fast, deterministic hash of a token sequence (not for adversarial use: equal tokens give
/// equal hashes, which is all the comparison needs).
struct TokenHasher(u64);

impl TokenHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }

    fn token(&mut self, bytes: &[u8]) {
        self.add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word));
    }
}

/// Facts gathered in the single walk over an item.
#[derive(Default)]
struct Walked {
    hash: u64,
    references: BTreeSet<String>,
    type_references: BTreeSet<String>,
    static_locals: Vec<StaticLocal>,
    has_return: bool,
    has_endless_loop: bool,
}

/// Walks `node` once: hashes leaf tokens (no comments), collects identifiers inside the byte
/// ranges `ref_ranges`, and static locals inside `body`.
fn walk_item(
    node: Node,
    src: &[u8],
    ref_ranges: &[Range<usize>],
    body: Option<&Range<usize>>,
) -> Walked {
    let k = kinds();
    let mut hasher = TokenHasher(0);
    let mut idents: HashSet<&str> = HashSet::new();
    let mut types: HashSet<&str> = HashSet::new();
    let mut static_locals = Vec::new();
    let (mut has_return, mut has_endless_loop) = (false, false);
    walk(node, |n| {
        let kind = n.kind_id();
        if kind == k.comment {
            return;
        }
        let range = n.byte_range();
        if n.child_count() == 0 {
            hasher.token(src.get(range.clone()).unwrap_or(&[]));
        }
        let start = range.start;
        if kind == k.type_identifier {
            types.insert(text(n, src));
        } else if kind == k.return_statement || kind == k.break_statement {
            has_return = true;
        } else if kind == k.for_statement || kind == k.while_statement || kind == k.do_statement {
            has_endless_loop |= is_endless_loop(n, src);
        }
        if kind == k.identifier {
            if ref_ranges.iter().any(|r| r.contains(&start)) {
                idents.insert(text(n, src));
            }
        } else if kind == k.preproc_arg {
            if ref_ranges.iter().any(|r| r.contains(&start)) {
                idents.extend(scan_identifiers(text(n, src)));
            }
        } else if kind == k.declaration && body.is_some_and(|b| b.contains(&start)) {
            let specs = specifiers(n, src);
            if specs.static_keyword.is_some() {
                for d in declarators(n, src) {
                    static_locals.push(StaticLocal {
                        name: d.name,
                        line: line_of(n),
                        token_hash: hash_tokens(n, src, &[]),
                        range: n.byte_range(),
                    });
                }
            }
        }
    });
    Walked {
        hash: hasher.0,
        references: idents
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        type_references: types
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        static_locals,
        has_return,
        has_endless_loop,
    }
}

/// A loop statement whose condition is missing or a non-zero constant.
fn is_endless_loop(node: Node, src: &[u8]) -> bool {
    match node.child_by_field_name("condition") {
        None => node.kind() == "for_statement",
        Some(cond) => {
            let words: String = text(cond, src)
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
                .collect();
            matches!(words.as_str(), "1" | "true" | "1u" | "1U")
        }
    }
}

/// Hash of the leaf tokens of `node` (comments excluded), skipping tokens that start inside any
/// of the byte ranges `skip`.
fn hash_tokens(node: Node, src: &[u8], skip: &[Range<usize>]) -> u64 {
    let k = kinds();
    let mut hasher = TokenHasher(0);
    walk(node, |n| {
        if n.kind_id() == k.comment || n.child_count() != 0 {
            return;
        }
        let range = n.byte_range();
        if skip.iter().any(|r| r.contains(&range.start)) {
            return;
        }
        hasher.token(src.get(range).unwrap_or(&[]));
    });
    hasher.0
}

/// Crude identifier scan of unparsed text (macro values).
fn scan_identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        })
}

/// Storage class and qualifiers found among an item's direct children.
#[derive(Default)]
struct Specifiers {
    static_keyword: Option<Range<usize>>,
    is_inline: bool,
    is_extern: bool,
    is_const: bool,
}

fn specifiers(node: Node, src: &[u8]) -> Specifiers {
    let mut specs = Specifiers::default();
    let mut cursor = node.walk();
    for child in node.named_children(&mut cursor) {
        match child.kind() {
            "storage_class_specifier" => match text(child, src) {
                "static" => specs.static_keyword = Some(child.byte_range()),
                "extern" => specs.is_extern = true,
                "inline" | "__inline" | "__inline__" | "__forceinline" => specs.is_inline = true,
                _ => {}
            },
            "type_qualifier" if text(child, src) == "const" => specs.is_const = true,
            _ => {}
        }
    }
    specs
}

/// Result of following a declarator chain down to its name.
pub(crate) struct Chain {
    pub(crate) name: Option<String>,
    /// Byte range of the name.
    name_range: Option<Range<usize>>,
    /// The derivation nearest the name is a function.
    is_function: bool,
    /// Some pointer level lacks `const`.
    nonconst_pointer: bool,
}

pub(crate) fn follow_declarator(start: Node, src: &[u8]) -> Chain {
    let mut node = start;
    let mut nearest_is_function = false;
    let mut nonconst_pointer = false;
    let mut name = None;
    let mut name_range = None;
    // Bounded: a declarator chain is shorter than the file.
    for _ in 0..10_000 {
        let next = match node.kind() {
            "identifier" | "type_identifier" | "field_identifier" | "primitive_type" => {
                name = Some(text(node, src).to_string());
                name_range = Some(node.byte_range());
                None
            }
            "pointer_declarator" | "abstract_pointer_declarator" => {
                nearest_is_function = false;
                let mut cursor = node.walk();
                let has_const = node
                    .named_children(&mut cursor)
                    .any(|c| c.kind() == "type_qualifier" && text(c, src) == "const");
                if !has_const {
                    nonconst_pointer = true;
                }
                node.child_by_field_name("declarator")
            }
            "function_declarator" => {
                nearest_is_function = true;
                node.child_by_field_name("declarator")
            }
            "array_declarator" => {
                nearest_is_function = false;
                node.child_by_field_name("declarator")
            }
            "init_declarator" => node.child_by_field_name("declarator"),
            "parenthesized_declarator" | "attributed_declarator" => {
                let mut cursor = node.walk();
                let inner = node.named_children(&mut cursor).find(|c| {
                    !matches!(
                        c.kind(),
                        "ms_call_modifier" | "attribute_declaration" | "attribute_specifier"
                    )
                });
                inner
            }
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    Chain {
        name,
        name_range,
        is_function: nearest_is_function,
        nonconst_pointer,
    }
}

fn declarators(node: Node, src: &[u8]) -> Vec<Declarator> {
    let base_const = specifiers(node, src).is_const;
    let mut cursor = node.walk();
    let mut out = Vec::new();
    for d in node.children_by_field_name("declarator", &mut cursor) {
        let chain = follow_declarator(d, src);
        let Some(name) = chain.name else { continue };
        let initializer = if d.kind() == "init_declarator" {
            let mut c2 = d.walk();
            let eq = d.children(&mut c2).find(|c| c.kind() == "=");
            match (eq, d.child_by_field_name("value")) {
                (Some(eq), Some(value)) => Some(eq.start_byte()..value.end_byte()),
                (Some(eq), None) => Some(eq.start_byte()..d.end_byte()),
                _ => None,
            }
        } else {
            None
        };
        out.push(Declarator {
            name,
            is_function: chain.is_function,
            initializer,
            read_only: !chain.is_function && base_const && !chain.nonconst_pointer,
        });
    }
    out
}

fn base_item(node: Node, kind: ItemKind) -> Item {
    Item {
        kind,
        names: Vec::new(),
        is_static: false,
        is_inline: false,
        is_extern: false,
        range: node.byte_range(),
        static_keyword: None,
        body: None,
        declarators: Vec::new(),
        line: line_of(node),
        read_only: false,
        references: BTreeSet::new(),
        static_locals: Vec::new(),
        type_references: BTreeSet::new(),
        signature_hash: 0,
        never_returns: false,
        token_hash: 0,
        has_error: node.has_error(),
        is_forward_declaration: false,
    }
}

fn index_item(node: Node, src: &[u8]) -> Item {
    match node.kind() {
        "function_definition" => function_item(node, src),
        "declaration" => declaration_item(node, src),
        "type_definition" => {
            let mut item = base_item(node, ItemKind::Type);
            let mut cursor = node.walk();
            item.names = node
                .children_by_field_name("declarator", &mut cursor)
                .filter_map(|d| follow_declarator(d, src).name)
                .collect();
            // `typedef struct conn { ... } conn_t;` defines the tag `conn` as well.
            let defined_tag = node
                .child_by_field_name("type")
                .filter(|t| t.child_by_field_name("body").is_some())
                .and_then(|t| t.child_by_field_name("name"));
            if let Some(tag) = defined_tag {
                let tag = text(tag, src).to_string();
                if !item.names.contains(&tag) {
                    item.names.push(tag);
                }
            }
            let walked = walk_item(node, src, &[], None);
            item.token_hash = walked.hash;
            item.type_references = walked.type_references;
            item
        }
        "struct_specifier" | "union_specifier" | "enum_specifier" => {
            let mut item = base_item(node, ItemKind::Type);
            if let Some(name) = node.child_by_field_name("name") {
                item.names.push(text(name, src).to_string());
            }
            item.is_forward_declaration = node.child_by_field_name("body").is_none();
            let walked = walk_item(node, src, &[], None);
            item.token_hash = walked.hash;
            item.type_references = walked.type_references;
            item
        }
        "preproc_def" | "preproc_function_def" => {
            let mut item = base_item(node, ItemKind::Macro);
            if let Some(name) = node.child_by_field_name("name") {
                item.names.push(text(name, src).to_string());
            }
            let value = node.child_by_field_name("value").map(|v| v.byte_range());
            let ranges: Vec<Range<usize>> = value.into_iter().collect();
            let walked = walk_item(node, src, &ranges, None);
            item.token_hash = walked.hash;
            item.references = walked.references;
            item
        }
        _ => {
            let mut item = base_item(node, ItemKind::Other);
            item.token_hash = walk_item(node, src, &[], None).hash;
            item
        }
    }
}

fn function_item(node: Node, src: &[u8]) -> Item {
    let mut item = base_item(node, ItemKind::Function);
    let specs = specifiers(node, src);
    item.is_static = specs.static_keyword.is_some();
    item.static_keyword = specs.static_keyword;
    item.is_inline = specs.is_inline;
    item.is_extern = specs.is_extern;
    if let Some(decl) = node.child_by_field_name("declarator") {
        item.names.extend(follow_declarator(decl, src).name);
    }
    item.body = node.child_by_field_name("body").map(|b| b.byte_range());
    let ranges: Vec<Range<usize>> = item.body.iter().cloned().collect();
    let walked = walk_item(node, src, &ranges, item.body.as_ref());
    item.token_hash = walked.hash;
    item.references = walked.references;
    item.type_references = walked.type_references;
    item.static_locals = walked.static_locals;
    item.never_returns = walked.has_endless_loop && !walked.has_return;
    item.signature_hash = signature_hash(node, src);
    item
}

/// Hash of a function definition's tokens before its body, without parameter names.
fn signature_hash(node: Node, src: &[u8]) -> u64 {
    let mut skip: Vec<Range<usize>> = node
        .child_by_field_name("body")
        .map(|b| b.byte_range())
        .into_iter()
        .collect();
    let mut pending: Vec<Node> = node.child_by_field_name("declarator").into_iter().collect();
    // Find the parameter lists of the declarator chain; bounded by the chain's length.
    while let Some(d) = pending.pop() {
        if let Some(params) = d.child_by_field_name("parameters") {
            let mut cursor = params.walk();
            for param in params.named_children(&mut cursor) {
                if let Some(decl) = param.child_by_field_name("declarator") {
                    skip.extend(follow_declarator(decl, src).name_range);
                }
            }
        }
        pending.extend(d.child_by_field_name("declarator"));
    }
    // Only the children before the body: the body itself is never walked again.
    let mut hasher = TokenHasher(0);
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        if child.kind() == "compound_statement" {
            break;
        }
        hasher.add(hash_tokens(child, src, &skip));
    }
    hasher.0
}

fn declaration_item(node: Node, src: &[u8]) -> Item {
    let mut item = base_item(node, ItemKind::Declaration);
    let specs = specifiers(node, src);
    item.is_static = specs.static_keyword.is_some();
    item.static_keyword = specs.static_keyword;
    item.is_inline = specs.is_inline;
    item.is_extern = specs.is_extern;
    item.declarators = declarators(node, src);
    item.names = item.declarators.iter().map(|d| d.name.clone()).collect();
    item.read_only = !item.declarators.is_empty() && item.declarators.iter().all(|d| d.read_only);
    let ranges: Vec<Range<usize>> = item
        .declarators
        .iter()
        .filter_map(|d| d.initializer.clone())
        .collect();
    let walked = walk_item(node, src, &ranges, None);
    item.token_hash = walked.hash;
    item.references = walked.references;
    item.type_references = walked.type_references;
    item
}

/// A top-level region tree-sitter could not parse into items: guess the function it holds.
fn damaged_item(node: Node, src: &[u8]) -> Item {
    let mut guess: Option<String> = None;
    walk(node, |n| {
        if guess.is_none() && n.kind() == "function_declarator" {
            guess = follow_declarator(n, src).name;
        }
    });
    let kind = if guess.is_some() {
        ItemKind::Function
    } else {
        ItemKind::Other
    };
    let mut item = base_item(node, kind);
    item.has_error = true;
    item.names.extend(guess);
    let whole = [node.byte_range()];
    let walked = walk_item(node, src, &whole, None);
    item.token_hash = walked.hash;
    item.references = walked.references;
    item
}
