//! Making the patch translation unit of one file by text edits on its new source.

use std::collections::BTreeSet;

use hotpatch_differ::index::{Index, Item, ItemKind};
use hotpatch_differ::tokens::tokens;
use hotpatch_differ::unit::Unit;
use hotpatch_differ::FunctionChange;

use crate::edits::{newlines_of, Edits};
use crate::plan::{plan, Lookup};
use crate::static_locals;
use crate::{Action, ExternalizeError, Options, PatchFunction, PatchUnit};

/// What happens to a file-scope variable declaration.
enum VarFate {
    /// Not a variable definition: left as it is.
    Untouched,
    /// Kept as a definition (new variables, or a private read-only copy).
    Keep,
    /// Turned into an `extern` declaration bound to the running process's storage.
    Demote,
}

/// The text a patch unit is made from: a file's source as written, or its preprocessed unit.
pub struct Text {
    /// The new side, as it is edited (a unit keeps its line markers).
    source: String,
    /// What is indexed: `source`, with a unit's line markers blanked (same byte offsets).
    indexed: String,
    /// The old side, indexed the same way (to tell variables that are new).
    old_indexed: String,
    /// For a unit: where each of its lines came from.
    unit: Option<Unit>,
}

impl Text {
    /// A file's source as written, both revisions.
    pub fn source(old: String, new: &str) -> Text {
        Text {
            source: new.to_string(),
            indexed: new.to_string(),
            old_indexed: old,
            unit: None,
        }
    }

    /// A file's preprocessed units (`cc -E` output with line markers), both revisions.
    pub fn preprocessed(old: &str, new: &str) -> Text {
        let unit = Unit::read(new);
        Text {
            source: new.to_string(),
            indexed: unit.text.clone(),
            old_indexed: Unit::read(old).text,
            unit: Some(unit),
        }
    }

    /// The source line of line `line` of the indexed text.
    fn source_line(&self, line: u32) -> u32 {
        self.unit
            .as_ref()
            .and_then(|u| u.origin(line))
            .map_or(line, |(_, l)| l)
    }
}

/// Builds the patch unit of `file` from its new text, the old one (to tell new variables) and
/// its changed/added functions.
pub fn make_unit(
    file: &str,
    text: &Text,
    changes: &[&FunctionChange],
    options: &Options<'_>,
) -> Result<PatchUnit, ExternalizeError> {
    let source = text.source.as_str();
    let index = Index::parse(&text.indexed);
    let old_vars = variable_names(&Index::parse(&text.old_indexed));
    let mut new_data = Vec::new();
    let mut fates = Vec::with_capacity(index.items.len());
    for item in &index.items {
        let fate = match var_fate(file, item, &old_vars)
            .map_err(|e| e.at_source_lines(|l| text.source_line(l)))?
        {
            VarFate::Demote if item.is_static && folded_away(file, item, options) => VarFate::Keep,
            fate => fate,
        };
        if matches!(fate, VarFate::Keep) {
            new_data.extend(
                variables(item)
                    .filter(|n| !old_vars.contains(*n))
                    .map(str::to_string),
            );
        }
        fates.push(fate);
    }
    let kept_data: Vec<&Item> = index
        .items
        .iter()
        .zip(&fates)
        .filter(|(_, f)| matches!(f, VarFate::Keep))
        .map(|(i, _)| i)
        .collect();
    let lookup = Lookup::new(&index);
    let plan = plan(file, changes, &lookup, &kept_data, options)?;

    let mut edits = Edits::default();
    let mut bindings = BTreeSet::new();
    let mut demoted = BTreeSet::new();
    let mut static_locals = Vec::new();
    for item in index.items.iter().filter(|i| i.kind == ItemKind::Function) {
        let Some(name) = item.name() else { continue };
        if let Some(member) = plan.members.get(name) {
            // Every patch function keeps its code in the object, even one the compiler inlines
            // into all its callers in the patch: the manifest names it and the builder checks it.
            // A function the patch adds is where a later patch replaces it: no caller in this
            // patch may inline it, call a clone of it or rely on the registers it leaves alone
            // (gcc's `noipa`), or that later patch would not reach them.
            let adds = member.action == Action::Add && !item.is_inline;
            match (adds, item.is_static) {
                (true, _) => edits.insert(item.range.start, "__attribute__((used, noipa)) "),
                (false, true) => edits.insert(item.range.start, "__attribute__((used)) "),
                (false, false) => {}
            }
            if member.action != Action::Add {
                static_locals.extend(
                    static_locals::bind(file, source, item, &mut edits)
                        .map_err(|e| e.at_source_lines(|l| text.source_line(l)))?,
                );
            }
        } else if item.is_inline || plan.copied.contains(name) {
            // Kept as it is, but its static locals are the running ones (a bound local that no
            // emitted code uses leaves no undefined symbol, and so no binding).
            static_locals.extend(
                static_locals::bind(file, source, item, &mut edits)
                    .map_err(|e| e.at_source_lines(|l| text.source_line(l)))?,
            );
        } else if let Some(body) = item.body.clone() {
            let replacement = format!(";{}", newlines_of(source.get(body.clone()).unwrap_or("")));
            edits.replace(body, replacement);
            // Static by its own keyword or by an earlier `static` prototype (whose keyword the
            // declaration pass turns into `extern` for every demoted name).
            if item.is_static {
                if let Some(kw) = item.static_keyword.clone() {
                    edits.replace(kw, "extern");
                }
                demoted.insert(name.to_string());
                bindings.insert(name.to_string());
            }
        } else {
            edits.blank(source, item.range.clone());
        }
    }
    for (item, fate) in index.items.iter().zip(&fates) {
        if item.kind != ItemKind::Declaration {
            continue;
        }
        match fate {
            VarFate::Demote => {
                if let Some(kw) = item.static_keyword.clone() {
                    edits.replace(kw, "extern");
                    bindings.extend(variables(item).map(str::to_string));
                } else {
                    edits.insert(item.range.start, "extern ");
                }
                let mut completions = String::new();
                let mut before = item.range.start;
                for (declarator, init) in item
                    .declarators
                    .iter()
                    .filter_map(|d| Some((d, d.initializer.clone()?)))
                {
                    let head = source.get(before..init.start).unwrap_or("");
                    let value = source.get(init.clone()).unwrap_or("");
                    completions.extend(completed_array(&declarator.name, head, value));
                    before = init.end;
                    edits.blank(source, init);
                }
                // On the declaration's last line, so every line keeps its number.
                edits.insert(item.range.end, completions);
            }
            VarFate::Keep => {}
            VarFate::Untouched => {
                let names_demoted = item.names.iter().any(|n| demoted.contains(n));
                if names_demoted {
                    if let Some(kw) = item.static_keyword.clone() {
                        edits.replace(kw, "extern");
                    }
                }
            }
        }
    }
    let mut functions: Vec<PatchFunction> = plan
        .members
        .iter()
        .map(|(name, member)| PatchFunction {
            name: name.clone(),
            is_static: lookup
                .defs
                .get(name.as_str())
                .is_some_and(|d| d.iter().any(|i| i.is_static)),
            action: member.action,
            reason: member.reason.clone(),
            line: text.source_line(first_line(&lookup, name)),
            always_active: member.action == Action::Replace && is_always_active(&lookup, name),
        })
        .collect();
    functions.sort_by(|a, b| (a.line, &a.name).cmp(&(b.line, &b.name)));
    let escaped = file.replace('\\', "\\\\").replace('"', "\\\"");
    let edited = edits.apply(source);
    Ok(PatchUnit {
        file: file.to_string(),
        // A unit's own line markers say where its lines came from.
        source: match text.unit {
            Some(_) => edited,
            None => format!("#line 1 \"{escaped}\"\n{edited}"),
        },
        preprocessed: text.unit.is_some(),
        functions,
        bindings: bindings.into_iter().collect(),
        copied: plan.copied.into_iter().collect(),
        new_data,
        static_locals,
    })
}

/// `main`, or a function with an endless loop and no way out: once running, its call never
/// returns, so a thread is always inside it.
fn is_always_active(lookup: &Lookup<'_>, name: &str) -> bool {
    name == "main"
        || lookup
            .defs
            .get(name)
            .is_some_and(|d| d.iter().any(|i| i.never_returns))
}

fn first_line(lookup: &Lookup<'_>, name: &str) -> u32 {
    lookup
        .defs
        .get(name)
        .and_then(|d| d.iter().map(|i| i.line).min())
        .unwrap_or(0)
}

/// For an array whose length only its initializer gives (`static char v[] = "HTTP/1.0";`), the
/// declaration that completes its `extern` type with that length, so `sizeof` still works in
/// the patch: `extern __typeof__(v[0]) v[sizeof((__typeof__(v[0])[]){"HTTP/1.0"}) / sizeof(v[0])];`.
/// `head` is the declarator's text before its `=`, `value` the initializer from the `=` on. `None`
/// for anything else, or for an initializer with preprocessor lines (it cannot go on one line).
fn completed_array(name: &str, head: &str, value: &str) -> Option<String> {
    let brackets: String = tokens(head).into_iter().rev().take(2).collect();
    let value = value.trim_start().strip_prefix('=')?;
    if brackets != "][" || value.lines().any(|l| l.trim_start().starts_with('#')) {
        return None;
    }
    let words = tokens(value).join(" ");
    let list = if words.starts_with('{') {
        words
    } else {
        format!("{{ {words} }}")
    };
    Some(format!(
        " extern __typeof__({name}[0]) {name}[sizeof((__typeof__({name}[0])[]){list}) / sizeof({name}[0])];"
    ))
}

/// Names of the variables (not prototypes) a declaration declares.
fn variables(item: &Item) -> impl Iterator<Item = &str> {
    item.declarators
        .iter()
        .filter(|d| !d.is_function)
        .map(|d| d.name.as_str())
}

/// Every file-scope variable name declared in `index`.
fn variable_names(index: &Index) -> BTreeSet<String> {
    index
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Declaration)
        .flat_map(|i| variables(i).map(str::to_string))
        .collect()
}

/// Whether the running binary has no storage for any of the `static` variables `item` declares:
/// the compiler removed them (never written, so their value is still the initializer).
fn folded_away(file: &str, item: &Item, options: &Options<'_>) -> bool {
    options
        .target_has_local_variable
        .is_some_and(|present| variables(item).all(|name| !present(file, name)))
}

fn var_fate(
    file: &str,
    item: &Item,
    old_vars: &BTreeSet<String>,
) -> Result<VarFate, ExternalizeError> {
    if !item.declares_variable() || item.is_extern {
        return Ok(VarFate::Untouched);
    }
    let all: Vec<&str> = variables(item).collect();
    let new: Vec<&str> = all
        .iter()
        .copied()
        .filter(|n| !old_vars.contains(*n))
        .collect();
    if new.len() == all.len() {
        return Ok(VarFate::Keep);
    }
    if !new.is_empty() {
        let quote = |v: &[&str]| {
            v.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(ExternalizeError::MixedDeclaration {
            names: quote(&all),
            new: quote(&new),
            file: file.to_string(),
            line: item.line,
        });
    }
    if item.is_static && item.read_only {
        return Ok(VarFate::Keep);
    }
    Ok(VarFate::Demote)
}
