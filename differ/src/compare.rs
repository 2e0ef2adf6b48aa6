//! Comparing two snapshots: which files to analyse, then functions matched by (file, name) on
//! tokens, changes propagated from macros, types and inline functions, and the refusals.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::defs::{changed_defs, close_over, uses};
use crate::includes::headers_of;
use crate::index::{Index, Item, ItemKind};
use crate::items::classify;
use crate::parse::{parse_all, Job, Pair, Parsed};
use crate::rules::FileRules;
use crate::tokens::tokens;
use crate::unit::Unit;
use crate::unit_diff::read_units;
use crate::{Change, ChangeSet, DiffOptions, FunctionChange, ItemChange, Refusal, Snapshot};

/// Compares two snapshots with default options (no include directories).
pub fn diff_snapshots(old: &Snapshot, new: &Snapshot) -> ChangeSet {
    diff_snapshots_with(old, new, &DiffOptions::default())
}

fn is_source(path: &str) -> bool {
    path.ends_with(".c") || path.ends_with(".h")
}

/// The files a diff looks at.
struct Scope<'s> {
    /// Every path of either snapshot.
    paths: BTreeSet<&'s String>,
    /// `.c` and `.h` files whose bytes differ.
    changed: BTreeSet<&'s str>,
    /// The changed headers.
    changed_headers: BTreeSet<&'s str>,
    /// `.c` files to analyse, with the changed headers each includes (on either side).
    analysed: BTreeMap<&'s str, BTreeSet<String>>,
    /// Changed `.c` files (or ones including a changed header) the running program was not
    /// built from ([`DiffOptions::program`]): ignored.
    outside: BTreeSet<&'s str>,
}

fn scope<'s>(old: &'s Snapshot, new: &'s Snapshot, options: &DiffOptions) -> Scope<'s> {
    let paths: BTreeSet<&String> = old.files.keys().chain(new.files.keys()).collect();
    let changed: BTreeSet<&str> = paths
        .iter()
        .filter(|p| is_source(p) && old.files.get(**p) != new.files.get(**p))
        .map(|p| p.as_str())
        .collect();
    let changed_headers: BTreeSet<&str> = changed
        .iter()
        .copied()
        .filter(|p| p.ends_with(".h"))
        .collect();
    let mut analysed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for path in paths.iter().filter(|p| p.ends_with(".c")) {
        let mut headers = BTreeSet::new();
        if !changed_headers.is_empty() {
            for snapshot in [old, new] {
                headers.extend(
                    headers_of(snapshot, path, options)
                        .into_iter()
                        .filter(|h| changed_headers.contains(h.as_str())),
                );
            }
        }
        if changed.contains(path.as_str()) || !headers.is_empty() {
            analysed.insert(path.as_str(), headers);
        }
    }
    let mut changed = changed;
    let mut outside = BTreeSet::new();
    if let Some(program) = &options.program {
        // Files the running program was not built from, and headers only they include.
        let (kept, left): (BTreeMap<_, _>, BTreeMap<_, _>) = analysed
            .into_iter()
            .partition(|(path, _)| program.files.contains(*path));
        let used_by = |files: &BTreeMap<&str, BTreeSet<String>>, header: &str| {
            files.values().any(|headers| headers.contains(header))
        };
        changed.retain(|path| {
            if path.ends_with(".c") {
                !left.contains_key(path)
            } else {
                used_by(&kept, path) || !used_by(&left, path)
            }
        });
        outside = left.into_keys().collect();
        analysed = kept;
    }
    Scope {
        paths,
        changed,
        changed_headers,
        analysed,
        outside,
    }
}

/// The `.c` files a diff of `old` and `new` analyses: those that changed and those that include
/// a changed header. A caller that can preprocess gives their units in [`DiffOptions::units`].
pub fn files_to_analyse(old: &Snapshot, new: &Snapshot, options: &DiffOptions) -> Vec<String> {
    scope(old, new, options)
        .analysed
        .keys()
        .map(|p| p.to_string())
        .collect()
}

/// Compares two snapshots: classifies every function of every `.c` file that changed or that
/// includes a changed header, and lists what cannot be applied live. A file whose preprocessed
/// units [`DiffOptions::units`] holds is judged on them: on what the compiler sees.
pub fn diff_snapshots_with(old: &Snapshot, new: &Snapshot, options: &DiffOptions) -> ChangeSet {
    let Scope {
        paths,
        changed,
        changed_headers,
        analysed,
        outside,
    } = scope(old, new, options);
    let jobs: Vec<Job<'_>> = paths
        .iter()
        .filter(|p| changed_headers.contains(p.as_str()) || analysed.contains_key(p.as_str()))
        .map(|p| Job {
            path: p,
            old: old.files.get(*p).map(Vec::as_slice),
            new: new.files.get(*p).map(Vec::as_slice),
        })
        .collect();
    let mut parsed = parse_all(&jobs);
    // Code often names a changed type only through a typedef of a header that did not change
    // (`typedef struct req_s req_t;`): when a type definition changed, those headers are read
    // too, so the typedef leads to the definition, both for refusals and for propagation.
    let mut alias_headers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    if parsed
        .iter()
        .any(|(path, pair)| changed.contains(path.as_str()) && changes_a_type(pair))
    {
        for path in analysed.keys() {
            let mut headers = BTreeSet::new();
            for snapshot in [old, new] {
                headers.extend(headers_of(snapshot, path, options));
            }
            alias_headers.insert(path, headers);
        }
        let unread: BTreeSet<&String> = alias_headers
            .values()
            .flatten()
            .filter(|h| !parsed.contains_key(h.as_str()))
            .collect();
        let jobs: Vec<Job<'_>> = unread
            .iter()
            .map(|p| Job {
                path: p,
                old: old.files.get(*p).map(Vec::as_slice),
                new: new.files.get(*p).map(Vec::as_slice),
            })
            .collect();
        parsed.extend(parse_all(&jobs));
    }

    let units = read_units(&analysed, options);
    // Files the preprocessor did not cover are judged on their source, as written.
    let source_rules = analysed.keys().any(|p| !units.contains_key(p));

    let mut out = Output::default();
    if let Some(program) = &options.program {
        out.warnings.extend(
            outside
                .iter()
                .map(|path| format!("{path}: not part of {}: ignored", program.name)),
        );
    }
    let used_names = used_names(parsed.values().chain(units.values().map(|u| &u.parsed)));
    let sides = |pair: &Pair| -> (std::rc::Rc<Parsed>, std::rc::Rc<Parsed>) {
        let blank = || {
            std::rc::Rc::new(Parsed {
                src: String::new(),
                index: Index::default(),
            })
        };
        (
            pair.old.clone().unwrap_or_else(blank),
            pair.new.clone().unwrap_or_else(blank),
        )
    };
    // Definitions that changed, per changed file; and the refusals of every changed file.
    let mut defs_of: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for (path, pair) in &parsed {
        if !changed.contains(path.as_str()) {
            continue;
        }
        let (o, n) = sides(pair);
        defs_of.insert(path.as_str(), changed_defs(path, &o.index, &n.index));
        out.items.extend(classify(path, &o.index, &n.index));
        let rules = FileRules {
            path,
            old_src: &o.src,
            new_src: &n.src,
            used_names: &used_names,
        };
        if source_rules && pair.old.is_some() && pair.new.is_some() {
            rules.types(&o.index, &n.index, &mut out.refusals, &mut out.warnings);
            rules.globals(&o.index, &n.index, &mut out.refusals, &mut out.warnings);
        }
    }
    for (path, headers) in &analysed {
        let Some(pair) = parsed.get(*path) else {
            continue;
        };
        let (o, n) = sides(pair);
        let mut dirty = defs_of.get(path).cloned().unwrap_or_default();
        let mut scope: Vec<&Index> = vec![&n.index];
        for header in headers {
            dirty.extend(defs_of.get(header.as_str()).cloned().unwrap_or_default());
        }
        let visible = alias_headers.get(path).unwrap_or(headers);
        for header in visible {
            if let Some(h) = parsed.get(header).and_then(|p| p.new.as_ref()) {
                scope.push(&h.index);
            }
        }
        close_over(&mut dirty, &scope);
        let written = Written {
            index: &n.index,
            dirty: &dirty,
        };
        if let Some(unit) = units.get(path) {
            let raw = (o.src.as_str(), n.src.as_str());
            unit.compare(path, raw, written, (old, new), &used_names, &mut out);
            continue;
        }
        let mut file = FileDiff {
            path,
            old: Side::source(&o),
            new: Side::source(&n),
            dirty: &dirty,
            written: None,
            damaged: Vec::new(),
            out: &mut out,
            used_names: &used_names,
        };
        file.compare();
    }
    out.functions
        .sort_by(|a, b| (&a.file, a.line, &a.name).cmp(&(&b.file, b.line, &b.name)));
    out.items
        .sort_by(|a, b| (&a.file, a.line, &a.name).cmp(&(&b.file, b.line, &b.name)));
    out.refusals
        .sort_by(|a, b| (&a.file, a.line, &a.item).cmp(&(&b.file, b.line, &b.item)));
    // Several units share a header: one refusal per item and place.
    out.refusals
        .dedup_by(|a, b| (&a.file, a.line, &a.item, a.kind) == (&b.file, b.line, &b.item, b.kind));
    let mut seen = HashSet::new();
    out.warnings.retain(|w| seen.insert(w.clone()));
    let mut changed_files: Vec<String> = changed
        .iter()
        .filter(|p| p.ends_with(".c"))
        .map(|p| p.to_string())
        .collect();
    for function in &out.functions {
        if !changed_files.contains(&function.file) {
            changed_files.push(function.file.clone());
        }
    }
    changed_files.sort();
    ChangeSet {
        old_label: old.label.clone(),
        new_label: new.label.clone(),
        changed_files,
        functions: out.functions,
        warnings: out.warnings,
        items: out.items,
        refusals: out.refusals,
        units: options.units.clone(),
        outside_program: outside.iter().map(|p| p.to_string()).collect(),
    }
}

/// What the comparison collects.
#[derive(Default)]
pub(crate) struct Output {
    pub functions: Vec<FunctionChange>,
    pub items: Vec<ItemChange>,
    pub warnings: Vec<String>,
    pub refusals: Vec<Refusal>,
}

/// Every name some old-side item uses (other than to define itself), and every type a used
/// type's definition names (a typedef leads to its struct, a struct to the types of its fields),
/// so a type used only through a typedef counts as used.
fn used_names<'p>(pairs: impl Iterator<Item = &'p Pair>) -> HashSet<String> {
    let mut used = HashSet::new();
    let mut type_defs: Vec<&Item> = Vec::new();
    for pair in pairs {
        let Some(old) = &pair.old else { continue };
        for item in &old.index.items {
            for name in item.references.iter().chain(item.type_references.iter()) {
                if !item.names.contains(name) {
                    used.insert(name.clone());
                }
            }
            if item.kind == ItemKind::Type && !item.is_forward_declaration {
                type_defs.push(item);
            }
        }
    }
    // Each round adds at least one name, so this ends.
    loop {
        let mut added = false;
        for item in &type_defs {
            if item.names.iter().any(|n| used.contains(n)) {
                for name in &item.type_references {
                    added |= used.insert(name.clone());
                }
            }
        }
        if !added {
            return used;
        }
    }
}

/// Whether a file's type definitions differ between its revisions.
fn changes_a_type(pair: &Pair) -> bool {
    let hashes = |side: &Option<std::rc::Rc<Parsed>>| -> Vec<u64> {
        side.iter()
            .flat_map(|p| p.index.items.iter())
            .filter(|i| i.kind == ItemKind::Type)
            .map(|i| i.token_hash)
            .collect()
    };
    hashes(&pair.old) != hashes(&pair.new)
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

/// One revision of a file as a comparison sees it: the text its index was made from, and, for a
/// preprocessed unit, the unit (for line numbers) and the file's own source (for diffs).
#[derive(Clone, Copy)]
pub(crate) struct Side<'a> {
    /// The text the index's byte ranges refer to.
    pub src: &'a str,
    /// The items compared.
    pub index: &'a Index,
    /// The preprocessed unit `src` is the text of, if it is one.
    pub unit: Option<&'a Unit>,
    /// The file's source as written.
    pub raw: &'a str,
}

impl<'a> Side<'a> {
    /// A file judged on its source as written.
    pub fn source(parsed: &'a Parsed) -> Side<'a> {
        Side {
            src: &parsed.src,
            index: &parsed.index,
            unit: None,
            raw: &parsed.src,
        }
    }

    /// An item's text as the operator wrote it: for a unit, the source lines it came from.
    fn written(&self, item: &Item) -> &'a str {
        let Some(unit) = self.unit else {
            return item.text(self.src);
        };
        let Some((_, first, last)) = unit.source_span(&item.range) else {
            return item.text(self.src);
        };
        source_lines(self.raw, first, last)
    }
}

/// Lines `first..=last` (1-based) of `text`, without the final newline.
fn source_lines(text: &str, first: u32, last: u32) -> &str {
    let mut starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1));
    let skip = first.saturating_sub(1) as usize;
    let Some(start) = starts.nth(skip) else {
        return "";
    };
    let count = (last.saturating_sub(first)) as usize;
    let end = text[start..]
        .match_indices('\n')
        .nth(count)
        .map_or(text.len(), |(i, _)| start + i);
    &text[start..end]
}

/// A file's new source as written, with the macros, types and inline functions that changed as
/// it names them: what explains, in the operator's words, why a function of a preprocessed unit
/// expands differently.
#[derive(Clone, Copy)]
pub(crate) struct Written<'a> {
    /// The index of the file's new source.
    pub index: &'a Index,
    /// Changed definitions visible in it, with why.
    pub dirty: &'a BTreeMap<String, String>,
}

pub(crate) struct FileDiff<'a> {
    pub path: &'a str,
    pub old: Side<'a>,
    pub new: Side<'a>,
    /// Macros, types and inline functions visible here that changed, with why.
    pub dirty: &'a BTreeMap<String, String>,
    /// For a preprocessed unit: the source as written, to say which macro made a difference.
    pub written: Option<Written<'a>>,
    /// Functions that do not parse, with their lines: said once for the file.
    pub damaged: Vec<(String, u32)>,
    pub out: &'a mut Output,
    pub used_names: &'a HashSet<String>,
}

impl FileDiff<'_> {
    /// Compares the file's functions and collects the changes, refusals and warnings.
    pub fn compare(&mut self) {
        let (old_fns, new_fns) = (by_name(self.old.index), by_name(self.new.index));
        let names: BTreeSet<&str> = old_fns.keys().chain(new_fns.keys()).copied().collect();
        for name in names {
            let before = old_fns.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let after = new_fns.get(name).map(Vec::as_slice).unwrap_or(&[]);
            for i in 0..before.len().max(after.len()) {
                self.compare_one(name, before.get(i).copied(), after.get(i).copied());
            }
        }
        self.compare_unattributed();
        self.note_always_active_callers();
        self.note_damaged();
    }

    /// One line for the file's functions that do not parse (macro-heavy code judged as
    /// written): compared on their whitespace-normalised text, their extent perhaps guessed.
    fn note_damaged(&mut self) {
        if self.damaged.is_empty() {
            return;
        }
        let shown: Vec<String> = self
            .damaged
            .iter()
            .take(5)
            .map(|(name, line)| format!("`{name}` (line {line})"))
            .collect();
        let more = match self.damaged.len().saturating_sub(shown.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        self.out.warnings.push(format!(
            "{}: parse errors in {}{more}: compared as whitespace-normalised text, extents may be guessed",
            self.path,
            shown.join(", ")
        ));
    }

    /// An always-active function (`main`, an endless loop) that is not changed itself but calls
    /// or names a changed function of its file may have inlined it: only its compiled code can
    /// say, so plain `diff` says that `--dry-run`/`--apply` will decide.
    fn note_always_active_callers(&mut self) {
        let changed: Vec<&str> = self
            .out
            .functions
            .iter()
            .filter(|f| f.file == self.path && f.change == Change::Changed)
            .map(|f| f.name.as_str())
            .collect();
        let mut notes = Vec::new();
        for item in self.new.index.functions() {
            let Some(name) = item.name() else { continue };
            if !(name == "main" || item.never_returns) || changed.contains(&name) {
                continue;
            }
            if let Some(callee) = changed.iter().find(|c| item.references.contains(**c)) {
                notes.push(format!(
                    "{}:{}: `{name}` is always active and uses the changed `{callee}`: if its compiled code inlines it, `{name}` is refused (decided from the compiled code by --dry-run and --apply)",
                    self.path, item.line
                ));
            }
        }
        self.out.warnings.extend(notes);
    }

    /// Why a function of a preprocessed unit whose source as written did not change expands
    /// differently: the changed macros (types, inline functions) its source names, or else a
    /// plain statement that some macro or `#if` it depends on changed.
    fn written_reasons(&self, name: &str) -> Vec<String> {
        let named: Vec<String> = self
            .written
            .and_then(|w| {
                let item = w.index.functions().find(|f| f.name() == Some(name))?;
                Some(
                    uses(item, w.dirty)
                        .into_iter()
                        .map(|(_, why)| format!("uses {why}"))
                        .collect(),
                )
            })
            .unwrap_or_default();
        if named.is_empty() {
            vec![
                "expands differently: a macro or `#if` condition it depends on changed".to_string(),
            ]
        } else {
            named
        }
    }

    /// Whether a function present on both sides changed its own tokens. In a preprocessed unit,
    /// a change of nothing but the line numbers `__LINE__` expands to is no change (noted).
    fn own_change(&mut self, name: &str, b: &Item, a: &Item) -> bool {
        if b.has_error || a.has_error {
            let damaged = if a.has_error { a } else { b };
            self.damaged.push((name.to_string(), damaged.line));
            return normalised(b.text(self.old.src)) != normalised(a.text(self.new.src));
        }
        if b.token_hash == a.token_hash {
            return false;
        }
        if let (Some(old), Some(new)) = (self.old.unit, self.new.unit) {
            // The source as written must be the same too: a literal the operator edited that
            // happens to equal its new line number is a change.
            let written_same = tokens(self.old.written(b)) == tokens(self.new.written(a));
            if written_same && Unit::only_line_numbers_differ((old, &b.range), (new, &a.range)) {
                self.out.warnings.push(format!(
                    "{}:{}: `{name}` differs only in the line numbers `__LINE__` gives after lines moved (as in `assert`): not a change, so it is not patched, and its messages keep the old line numbers",
                    self.path, a.line
                ));
                return false;
            }
        }
        true
    }

    fn compare_one(&mut self, name: &str, before: Option<&Item>, after: Option<&Item>) {
        // Equal tokens, no error, no changed definition used: nothing to say (the common case,
        // decided before any text is looked at).
        if let (Some(b), Some(a)) = (before, after) {
            if b.token_hash == a.token_hash
                && !b.has_error
                && !a.has_error
                && uses(a, self.dirty).is_empty()
            {
                return;
            }
        }
        let old_text = before.map(|i| self.old.written(i)).unwrap_or("");
        let new_text = after.map(|i| self.new.written(i)).unwrap_or("");
        let (change, item, reasons) = match (before, after) {
            (None, Some(a)) => (Change::Added, a, vec!["new function".to_string()]),
            (Some(b), None) => (
                Change::Removed,
                b,
                vec!["removed: its old code stays in the running process".to_string()],
            ),
            (Some(b), Some(a)) => {
                let own = self.own_change(name, b, a);
                let mut reasons: Vec<String> = Vec::new();
                if own && self.new.unit.is_some() && tokens(old_text) == tokens(new_text) {
                    reasons.extend(self.written_reasons(name));
                } else if own {
                    reasons.push("changed".to_string());
                }
                reasons.extend(
                    uses(a, self.dirty)
                        .into_iter()
                        .map(|(_, why)| format!("uses {why}")),
                );
                if reasons.is_empty() {
                    return;
                }
                let rules = FileRules {
                    path: self.path,
                    old_src: self.old.src,
                    new_src: self.new.src,
                    used_names: self.used_names,
                };
                if own {
                    rules.static_locals(name, b, a, &mut self.out.refusals);
                    rules.signature(name, b, a, self.new.index, &mut self.out.refusals);
                }
                rules.always_active(name, a, &mut self.out.refusals);
                (Change::Changed, a, reasons)
            }
            (None, None) => return,
        };
        if change != Change::Changed && item.has_error {
            self.damaged.push((name.to_string(), item.line));
        }
        let diff = similar::TextDiff::from_lines(old_text, new_text)
            .unified_diff()
            // A function's text ends at its closing brace, not at a newline: no hint for that.
            .missing_newline_hint(false)
            .header(&format!("a/{}", self.path), &format!("b/{}", self.path))
            .to_string();
        self.out.functions.push(FunctionChange {
            name: name.to_string(),
            file: self.path.to_string(),
            change,
            is_static: item.is_static,
            line: item.line,
            diff,
            reasons,
        });
    }

    /// Damaged regions with no recognisable function: compare them in order, warn on change.
    fn compare_unattributed(&mut self) {
        let damaged = |index: &Index| -> Vec<Item> {
            index
                .items
                .iter()
                .filter(|i| i.has_error && i.kind == ItemKind::Other)
                .cloned()
                .collect()
        };
        let (before, after) = (damaged(self.old.index), damaged(self.new.index));
        for i in 0..before.len().max(after.len()) {
            let old_text = before.get(i).map(|it| normalised(it.text(self.old.src)));
            let new_text = after.get(i).map(|it| normalised(it.text(self.new.src)));
            if old_text != new_text {
                let line = after
                    .get(i)
                    .or(before.get(i))
                    .map(|it| it.line)
                    .unwrap_or(0);
                self.out.warnings.push(format!(
                    "{}:{line}: a region that does not parse changed; it could not be attributed to a function, so any function in it is not patched",
                    self.path
                ));
            }
        }
    }
}
