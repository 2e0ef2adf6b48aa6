//! The safety rules of DESIGN §3 that the source decides: each turns a change into a
//! [`Refusal`] with the item, where it is, and why, in operator words.

use std::collections::{BTreeMap, HashSet};

use crate::index::{Declarator, Index, Item, ItemKind};
use crate::layout;
use crate::refusal::{item_snippet, snippet, Refusal, RefusalKind};
use crate::tokens::{compact, tokens};

const SNIPPET_LINES: usize = 6;

/// Where the refusals of one file go, with the file's path and texts.
pub(crate) struct FileRules<'a> {
    /// Repository-relative path.
    pub path: &'a str,
    /// Old source text.
    pub old_src: &'a str,
    /// New source text.
    pub new_src: &'a str,
    /// Names some old-side code or data uses (to tell whether a changed type matters).
    pub used_names: &'a HashSet<String>,
}

impl FileRules<'_> {
    fn refusal(
        &self,
        item: String,
        kind: RefusalKind,
        line: u32,
        reason: String,
        snippet: String,
    ) -> Refusal {
        Refusal {
            item,
            kind,
            file: self.path.to_string(),
            line,
            reason,
            snippet,
        }
    }

    /// Rule 1: changed struct/union/enum/typedef definitions that something uses. An enum that
    /// only gains enumerators, every old one keeping its value, is allowed with a note.
    pub fn types(
        &self,
        old: &Index,
        new: &Index,
        out: &mut Vec<Refusal>,
        warnings: &mut Vec<String>,
    ) {
        let (before, after) = (types(old), types(new));
        // A definition with several names (`typedef struct conn {...} conn_t;`) is judged once.
        let mut judged: HashSet<usize> = HashSet::new();
        for (name, new_items) in &after {
            let Some(old_items) = before.get(name) else {
                continue; // a new type: no existing data has it
            };
            let (Some(b), Some(a)) = (old_items.first(), new_items.first()) else {
                continue;
            };
            if b.token_hash == a.token_hash
                || !a.names.iter().any(|n| self.used_names.contains(n))
                || !judged.insert(a.range.start)
            {
                continue;
            }
            let shown = a.name().unwrap_or(name);
            let new_text = a.text(self.new_src);
            let what = match tokens(new_text).first().copied() {
                Some(k @ ("struct" | "union" | "enum")) => format!("{k} {shown}"),
                _ => format!("typedef {shown}"),
            };
            let old_text = b.text(self.old_src);
            if let Some(note) = layout::compatible_enum_growth(&what, old_text, new_text) {
                warnings.push(format!("{}:{}: {note}", self.path, a.line));
                continue;
            }
            let reason = layout::describe(&what, old_text, new_text);
            let snip = item_snippet(new_text, SNIPPET_LINES);
            out.push(self.refusal(what, RefusalKind::TypeLayout, a.line, reason, snip));
        }
    }

    /// Rule 2: changed type or initializer of an existing global, file-scope static or const
    /// table. `extern` declarations and prototypes are not definitions and are skipped.
    pub fn globals(
        &self,
        old: &Index,
        new: &Index,
        out: &mut Vec<Refusal>,
        warnings: &mut Vec<String>,
    ) {
        let (before, after) = (variables(old, self.old_src), variables(new, self.new_src));
        for (name, var) in &after {
            let Some(was) = before.get(name) else {
                warnings.push(format!(
                    "{}:{}: new {} `{name}` starts from its initializer in the patch",
                    self.path,
                    var.item.line,
                    var.noun()
                ));
                continue;
            };
            let snip = item_snippet(var.item.text(self.new_src), SNIPPET_LINES);
            if was.type_text != var.type_text {
                let reason = format!(
                    "{} `{name}` changes type from `{}` to `{}`: the running process keeps `{name}` in its old storage with the old type, and unpatched code still uses it that way",
                    var.noun(),
                    was.type_text,
                    var.type_text
                );
                out.push(self.refusal(
                    name.clone(),
                    RefusalKind::GlobalType,
                    var.item.line,
                    reason,
                    snip,
                ));
            } else if was.init_text != var.init_text {
                let show = |t: &str| {
                    if t.is_empty() {
                        "none".to_string()
                    } else {
                        format!("`{t}`")
                    }
                };
                let consequence = if var.declarator.read_only {
                    "the running process keeps the old table, and unpatched code still reads it"
                } else {
                    "the running process keeps its current value (a patch replaces code, not data), so the new initial value would never be used"
                };
                let reason = format!(
                    "{} `{name}` changes its initializer from {} to {}: {consequence}",
                    var.noun(),
                    show(&was.init_text),
                    show(&var.init_text)
                );
                out.push(self.refusal(
                    name.clone(),
                    RefusalKind::GlobalInitializer,
                    var.item.line,
                    reason,
                    snip,
                ));
            }
        }
    }

    /// Rule 3: static locals added, removed or changed in a function whose code changed.
    pub fn static_locals(&self, name: &str, old: &Item, new: &Item, out: &mut Vec<Refusal>) {
        for local in &new.static_locals {
            let decl = self.new_src.get(local.range.clone()).unwrap_or("");
            let snip = item_snippet(decl, SNIPPET_LINES);
            let item = format!("{name}::{}", local.name);
            match old.static_locals.iter().find(|l| l.name == local.name) {
                None => out.push(self.refusal(
                    item,
                    RefusalKind::StaticLocal,
                    local.line,
                    format!(
                        "`{name}` gains static local `{}`: the running `{name}` has no such state, so the patched code would start it from its initializer while the rest of the process's state has moved on",
                        local.name
                    ),
                    snip,
                )),
                Some(was) if was.token_hash != local.token_hash => {
                    let old_decl = self.old_src.get(was.range.clone()).unwrap_or("");
                    out.push(self.refusal(
                        item,
                        RefusalKind::StaticLocal,
                        local.line,
                        format!(
                            "static local `{}` of `{name}` changes from `{}` to `{}`: the running process keeps its current value with the old declaration",
                            local.name,
                            compact(old_decl.trim_end_matches(';')),
                            compact(decl.trim_end_matches(';'))
                        ),
                        snip,
                    ));
                }
                Some(_) => {}
            }
        }
        for local in &old.static_locals {
            if !new.static_locals.iter().any(|l| l.name == local.name) {
                out.push(self.refusal(
                    format!("{name}::{}", local.name),
                    RefusalKind::StaticLocal,
                    new.line,
                    format!(
                        "`{name}` loses static local `{}`: the state it holds in the running process would be dropped",
                        local.name
                    ),
                    snippet(self.new_src, new.line, 1),
                ));
            }
        }
    }

    /// Rule 4: a changed signature of a function that code outside the patch may call: any
    /// non-static function, or a static one whose address is stored in file-scope data.
    pub fn signature(
        &self,
        name: &str,
        old: &Item,
        new: &Item,
        new_index: &Index,
        out: &mut Vec<Refusal>,
    ) {
        if old.signature_hash == new.signature_hash {
            return;
        }
        let why = if !new.is_static {
            "it is not static, so code outside the patch (other files, function pointers) may still call it the old way".to_string()
        } else if let Some(data) = new_index
            .items
            .iter()
            .find(|i| i.declares_variable() && i.references.contains(name))
        {
            format!(
                "its address is stored in `{}` (line {}), so unpatched code may still call it the old way",
                data.name().unwrap_or("data"),
                data.line
            )
        } else {
            return; // every caller is in this file and is patched with it
        };
        let reason = format!(
            "`{name}` changes its signature from `{}` to `{}`: {why}",
            head(old, self.old_src),
            head(new, self.new_src)
        );
        let snip = head_snippet(new, self.new_src);
        out.push(self.refusal(
            name.to_string(),
            RefusalKind::Signature,
            new.line,
            reason,
            snip,
        ));
    }

    /// Rule 5 (a prediction): a changed function that is always on some thread's stack.
    pub fn always_active(&self, name: &str, new: &Item, out: &mut Vec<Refusal>) {
        let why = if name == "main" {
            "`main` is always active: the main thread runs it for the life of the process, so its old code keeps running and the new code would never be entered"
        } else if new.never_returns {
            "it never returns (an endless loop with no `return` or `break`): a thread inside it stays in the old code forever"
        } else {
            return;
        };
        let reason = format!("{why} (a prediction from the source; the applier will confirm)");
        let snip = head_snippet(new, self.new_src);
        out.push(self.refusal(
            name.to_string(),
            RefusalKind::AlwaysActive,
            new.line,
            reason,
            snip,
        ));
    }
}

/// Type definitions by name, in source order. Forward declarations (`struct client;`) define no
/// layout and are left out: the definition decides.
fn types(index: &Index) -> BTreeMap<String, Vec<&Item>> {
    let mut map: BTreeMap<String, Vec<&Item>> = BTreeMap::new();
    for item in index
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Type && !i.is_forward_declaration)
    {
        for name in &item.names {
            map.entry(name.clone()).or_default().push(item);
        }
    }
    map
}

/// The source lines of a function definition before its body.
fn head_snippet(item: &Item, src: &str) -> String {
    let end = item.body.as_ref().map_or(item.range.end, |b| b.start);
    let head = src.get(item.range.start..end).unwrap_or("").trim_end();
    item_snippet(head, SNIPPET_LINES)
}

/// A function definition's text before its body, compacted.
fn head(item: &Item, src: &str) -> String {
    let end = item.body.as_ref().map_or(item.range.end, |b| b.start);
    compact(src.get(item.range.start..end).unwrap_or(""))
}

/// One file-scope variable definition.
struct Variable<'a> {
    item: &'a Item,
    declarator: &'a Declarator,
    /// The declaration without initializers, compacted (equal tokens, equal text).
    type_text: String,
    /// The initializer value, compacted; empty when there is none.
    init_text: String,
}

impl Variable<'_> {
    fn noun(&self) -> &'static str {
        if self.declarator.read_only {
            "const table"
        } else if self.item.is_static {
            "file-scope static"
        } else {
            "global"
        }
    }
}

/// The variables a file defines (not `extern`), by name; the first definition wins.
fn variables<'a>(index: &'a Index, src: &'a str) -> BTreeMap<String, Variable<'a>> {
    let mut out = BTreeMap::new();
    for item in index
        .items
        .iter()
        .filter(|i| i.declares_variable() && !i.is_extern)
    {
        // The declaration without any initializer: its type part.
        let mut type_part = String::new();
        let mut at = item.range.start;
        for init in item
            .declarators
            .iter()
            .filter_map(|d| d.initializer.as_ref())
        {
            type_part.push_str(src.get(at..init.start).unwrap_or(""));
            at = init.end.max(at);
        }
        type_part.push_str(src.get(at..item.range.end).unwrap_or(""));
        let type_text = compact(type_part.trim_end().trim_end_matches(';'));
        for declarator in item.declarators.iter().filter(|d| !d.is_function) {
            let init = declarator
                .initializer
                .as_ref()
                .and_then(|r| src.get(r.clone()))
                .unwrap_or("")
                .trim_start_matches('=');
            out.entry(declarator.name.clone())
                .or_insert_with(|| Variable {
                    item,
                    declarator,
                    type_text: type_text.clone(),
                    init_text: compact(init),
                });
        }
    }
    out
}
