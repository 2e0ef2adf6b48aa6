//! Which functions a change reaches in the running binary's code, from the binary itself: its
//! DWARF inline map (see `hotpatch_applier::InlineMap`). Under link-time optimisation this is
//! the patch set (per-file compiles say nothing about the linked code, and LTO inlines across
//! files); for other builds it is reported beside the object-level confirmation, which decides.
//! An LTO binary without debug information gets the whole-program source call graph instead:
//! every caller of a changed function in any file, loudly.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use hotpatch_applier::inline_map::OutOfLineCopy;
use hotpatch_applier::{InlineMap, PatchMember, SourceFunction, Target};
use hotpatch_differ::index::{Index, ItemKind};
use hotpatch_differ::{Change, ChangeSet, FunctionChange, Snapshot};
use hotpatch_externalizer::{Action, PatchUnit};
use serde::Serialize;

/// Where a patch set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The running binary's DWARF.
    Dwarf,
    /// The new revision's call graph across all files (an LTO binary without debug information).
    SourceCallGraph,
}

/// One function of the patch set.
#[derive(Debug, Clone, Serialize)]
pub struct Selected {
    /// Its name.
    pub name: String,
    /// Its repository path.
    pub file: String,
    /// Why it is patched.
    pub reason: String,
    /// Its out-of-line copies in the binary, as the DWARF says (empty from the call graph).
    pub copies: Vec<OutOfLineCopy>,
}

/// One entry of the inline map the selection used.
#[derive(Debug, Clone, Serialize)]
pub struct MapEntry {
    /// The function's name.
    pub name: String,
    /// The file the DWARF says declares it.
    pub file: String,
    /// Its out-of-line copies.
    pub copies: Vec<OutOfLineCopy>,
    /// The functions holding inlined copies of it, as ``value` (lib.c) at 0x1130`.
    pub inlined_into: Vec<String>,
}

/// The patch set of a change as the binary shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    /// Where it came from.
    pub from: Evidence,
    /// It decides the patch (an LTO build); otherwise it is reported only.
    pub decides: bool,
    /// How many functions it holds.
    pub count: usize,
    /// The functions, changed ones first, each with why.
    pub functions: Vec<Selected>,
    /// The inline map entries it was read from.
    pub entries: Vec<MapEntry>,
    /// Said loudly: the binary could not say (LTO without `-g`), or code the change reaches is
    /// in no file of the revision.
    #[serde(skip)]
    pub warning: Option<String>,
}

/// The patch set of `changes` in `target`'s code: from its inline map when it has debug
/// information, else (only for an `lto` build) from the source call graph of `new`. `None`
/// when the binary says nothing and the build is not LTO (confirmation decides alone).
pub fn select(
    changes: &ChangeSet,
    new: &Snapshot,
    target: &Target,
    lto: bool,
) -> Option<Selection> {
    let changed: Vec<(String, String)> = changes
        .functions
        .iter()
        .filter(|f| f.change == Change::Changed && f.file.ends_with(".c"))
        .map(|f| (f.name.clone(), f.file.clone()))
        .collect();
    let graph = CallGraph::of(new);
    let selection = match target.inline_map() {
        Some(map) => from_dwarf(&map, &changed, &graph, new),
        None if lto => from_call_graph(&changed, &graph),
        None => return None,
    };
    Some(Selection {
        decides: lto,
        ..selection
    })
}

impl Selection {
    /// `changes` with every selected function it lacks added as changed (for the externalizer to
    /// make its file's unit), so a caller in another file gets its own patch unit.
    pub fn widen(&self, changes: &ChangeSet) -> ChangeSet {
        let mut out = changes.clone();
        for selected in &self.functions {
            let known = out
                .functions
                .iter()
                .any(|f| f.name == selected.name && f.file == selected.file);
            if known {
                continue;
            }
            out.functions.push(FunctionChange {
                name: selected.name.clone(),
                file: selected.file.clone(),
                change: Change::Changed,
                is_static: false,
                line: 0,
                diff: String::new(),
                reasons: vec![selected.reason.clone()],
            });
            if !out.changed_files.contains(&selected.file) {
                out.changed_files.push(selected.file.clone());
            }
        }
        out.changed_files.sort();
        out
    }

    /// Replaces each unit's source-level candidates by the selection: a function it does not
    /// hold is left alone (new functions stay), one it holds gets its reason, and one without an
    /// out-of-line copy at its own symbol (inlined everywhere, only clones, or not known: no
    /// debug information) is replaced where the applier finds it and otherwise patched through
    /// the functions that hold its code. From the call graph, the source-level candidates stay,
    /// widened only.
    pub fn restrict(&self, units: &mut [PatchUnit]) {
        for unit in units {
            unit.functions.retain_mut(|function| {
                let found = self
                    .functions
                    .iter()
                    .find(|s| s.name == function.name && s.file == unit.file);
                match found {
                    Some(selected) => {
                        function.reason = selected.reason.clone();
                        if function.action == Action::Replace
                            && !has_own_copy(&selected.name, &selected.copies)
                        {
                            function.action = Action::InlinedOnly;
                        }
                        true
                    }
                    None => function.action == Action::Add || self.from != Evidence::Dwarf,
                }
            });
        }
    }
}

/// Whether one of `copies` is `name`'s own symbol (`name`, or LTO's `name.lto_priv.N`), which
/// the patch can replace; a clone (`name.constprop.0`, `name.isra.0`) cannot be.
fn has_own_copy(name: &str, copies: &[OutOfLineCopy]) -> bool {
    let lto_priv = format!("{name}.lto_priv.");
    copies.iter().any(|c| {
        c.symbol
            .as_deref()
            .is_some_and(|s| s == name || s.starts_with(&lto_priv))
    })
}

/// The DWARF's patch set: the changed functions and the functions holding their inlined copies
/// (see `InlineMap::patch_set`), checked against the source call graph: a function that refers
/// to a member in the source must either call its replaced out-of-line copy (a
/// `DW_TAG_call_site` says so) or hold its inlined copy; otherwise it joins the set. That
/// catches the callers of a function the binary has only clones of (`mix.constprop.0`, which
/// the patch cannot replace) and callers where the inlined code was folded away entirely (the
/// DWARF then records no inlined copy at all).
fn from_dwarf(
    map: &InlineMap,
    changed: &[(String, String)],
    graph: &CallGraph<'_>,
    new: &Snapshot,
) -> Selection {
    let mut seeds = changed.to_vec();
    let mut reasons: BTreeMap<(String, String), String> = BTreeMap::new();
    let members = loop {
        let members = map.patch_set(&seeds);
        let mut grew = false;
        for member in &members {
            let Some(file) = repo_file(&member.function, &seeds, new) else {
                continue;
            };
            for caller in graph.callers(&member.function.name, &file) {
                let known = seeds.contains(&caller)
                    || members
                        .iter()
                        .any(|m| m.function.name == caller.0 && m.function.is_in(&caller.1));
                if known {
                    continue;
                }
                let global = !graph.is_static(&member.function.name, &file);
                if let Some(why) = caller_reason(map, member, global, &caller) {
                    reasons.insert(caller.clone(), why);
                    seeds.push(caller);
                    grew = true;
                }
            }
        }
        if !grew {
            break members;
        }
    };
    let mut functions = Vec::new();
    let mut entries = Vec::new();
    let mut outside = Vec::new();
    for member in &members {
        let Some(file) = repo_file(&member.function, &seeds, new) else {
            if !member.copies.is_empty() {
                outside.push(format!("{} ({})", member.function, member.reason));
            }
            continue;
        };
        let key = (member.function.name.clone(), file.clone());
        let reason = reasons
            .get(&key)
            .cloned()
            .unwrap_or_else(|| member.reason.clone());
        functions.push(Selected {
            name: member.function.name.clone(),
            file,
            reason,
            copies: member.copies.clone(),
        });
        for (function, entry) in map.lookup(&member.function.name, &member.function.file) {
            entries.push(MapEntry {
                name: function.name.clone(),
                file: function.file.clone(),
                copies: entry.copies.clone(),
                inlined_into: entry
                    .inlined_into
                    .iter()
                    .map(|(holder, at)| format!("{holder} at {at:#x}"))
                    .collect(),
            });
        }
    }
    Selection {
        from: Evidence::Dwarf,
        decides: false,
        count: functions.len(),
        functions,
        entries,
        warning: (!outside.is_empty()).then(|| {
            format!(
                "the running binary's code of {} reaches the change, but no `.c` file of {} defines it: it is not patched and keeps its old code",
                outside.join(", "),
                new.label
            )
        }),
    }
}

/// Why `caller` (`(name, file)`), which refers to `member` in the source, must be patched too;
/// `None` when the DWARF shows it calls `member`'s replaced copy. `global`: `member` is not
/// `static` (a call site may then name it through a declaration in the caller's own file).
fn caller_reason(
    map: &InlineMap,
    member: &PatchMember,
    global: bool,
    caller: &(String, String),
) -> Option<String> {
    let callee = &member.function;
    let entries: Vec<_> = map.lookup(&caller.0, &caller.1).collect();
    if entries.is_empty() {
        // A file the DWARF describes without this function: it is not in the binary at all.
        return (!map.knows_file(&caller.1)).then(|| {
            format!("refers to {callee} in the source, and the DWARF knows nothing of it")
        });
    }
    if entries
        .iter()
        .all(|(_, e)| e.copies.is_empty() && e.inlined_into.is_empty())
    {
        // Described, but no code of it is anywhere in the binary (unused, removed).
        return None;
    }
    if member.copies.is_empty() {
        return Some(format!(
            "refers to {callee}, which has no out-of-line copy: its code was folded into this one (the DWARF records no call or inlined copy left)"
        ));
    }
    if !has_own_copy(&callee.name, &member.copies) {
        let clones: Vec<&str> = member
            .copies
            .iter()
            .filter_map(|c| c.symbol.as_deref())
            .collect();
        return Some(format!(
            "calls `{}`, a clone of {callee} the patch cannot replace",
            clones.join("`, `")
        ));
    }
    // Without `DW_AT_call_all_calls` (`-O0`, no call sites recorded) silence proves nothing,
    // and nothing is inlined there either.
    let calls = entries.iter().any(|(_, e)| {
        !e.all_calls
            || e.calls
                .iter()
                .any(|f| f.name == callee.name && (global || f == callee))
    });
    (!calls).then(|| {
        format!(
            "refers to {callee} in the source, but the DWARF records neither a call nor an inlined copy there: its code may be folded into this one"
        )
    })
}

/// The repository path of a function the DWARF names: a changed function's own, else the one
/// `.c` file of `new` its declaring file matches (a function declared in a header, or in no file
/// of the revision, is none: the functions holding its copies stand for it).
fn repo_file(
    function: &SourceFunction,
    changed: &[(String, String)],
    new: &Snapshot,
) -> Option<String> {
    if let Some((_, file)) = changed
        .iter()
        .find(|(n, f)| *n == function.name && function.is_in(f))
    {
        return Some(file.clone());
    }
    let mut matching = new
        .files
        .keys()
        .filter(|f| f.ends_with(".c") && function.is_in(f));
    match (matching.next(), matching.next()) {
        (Some(only), None) => Some(only.clone()),
        _ => None,
    }
}

/// Without debug information: every function that calls a changed one, in any file, and their
/// callers in turn (LTO may have inlined any of them anywhere).
fn from_call_graph(changed: &[(String, String)], graph: &CallGraph<'_>) -> Selection {
    let mut functions: Vec<Selected> = changed
        .iter()
        .map(|(name, file)| Selected {
            name: name.clone(),
            file: file.clone(),
            reason: "changed".to_string(),
            copies: Vec::new(),
        })
        .collect();
    let mut next = 0;
    while let Some(callee) = functions.get(next).cloned() {
        next += 1;
        for (name, file) in graph.callers(&callee.name, &callee.file) {
            if functions.iter().any(|s| s.name == name && s.file == file) {
                continue;
            }
            functions.push(Selected {
                reason: format!(
                    "calls `{}` ({}): link-time optimisation may have inlined it there, and the binary has no debug information to say",
                    callee.name, callee.file
                ),
                name,
                file,
                copies: Vec::new(),
            });
        }
    }
    let names: Vec<String> = changed
        .iter()
        .map(|(n, f)| format!("`{n}` ({f})"))
        .collect();
    Selection {
        from: Evidence::SourceCallGraph,
        decides: false,
        count: functions.len(),
        warning: Some(format!(
            "the running binary was built with link-time optimisation and has no debug information (no -g): \
             nothing says where the code of {} went, so every function that calls it in any file is patched \
             ({} functions, from the source call graph); build with -g for the exact set",
            names.join(", "),
            functions.len()
        )),
        functions,
        entries: Vec::new(),
    }
}

/// The function definitions of the `.c` files of a revision, with what they reference: a file is
/// parsed only when its text names a function asked about, so a large program is not indexed
/// whole for one change.
struct CallGraph<'a> {
    snapshot: &'a Snapshot,
    /// By file, parsed on demand: (name, is static, names it references) of each definition.
    parsed: RefCell<BTreeMap<String, Rc<Definitions>>>,
}

/// (name, is static, names it references) of each function definition of one file.
type Definitions = Vec<(String, bool, BTreeSet<String>)>;

impl<'a> CallGraph<'a> {
    /// The call graph of `snapshot`'s `.c` files (nothing is parsed yet).
    fn of(snapshot: &'a Snapshot) -> CallGraph<'a> {
        CallGraph {
            snapshot,
            parsed: RefCell::new(BTreeMap::new()),
        }
    }

    /// The definitions of `file`, parsed the first time.
    fn definitions(&self, file: &str) -> Rc<Definitions> {
        if let Some(known) = self.parsed.borrow().get(file) {
            return known.clone();
        }
        let definitions: Definitions = self
            .snapshot
            .text(file)
            .map(|text| {
                Index::parse(text)
                    .items
                    .into_iter()
                    .filter(|item| item.kind == ItemKind::Function)
                    .filter_map(|item| {
                        let name = item.name()?.to_string();
                        Some((name, item.is_static, item.references))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let definitions = Rc::new(definitions);
        self.parsed
            .borrow_mut()
            .insert(file.to_string(), definitions.clone());
        definitions
    }

    /// Whether `name` is a `static` function of `file`.
    fn is_static(&self, name: &str, file: &str) -> bool {
        self.definitions(file)
            .iter()
            .any(|(n, is_static, _)| n == name && *is_static)
    }

    /// The functions referring to `name` of `file`: in its own file, and in any other file when
    /// it is not `static` there (as `(name, file)`).
    fn callers(&self, name: &str, file: &str) -> Vec<(String, String)> {
        // Another file reaches it only when it is global there and that file has no `static`
        // function of the same name of its own.
        let reaches =
            |f: &str| f == file || !(self.is_static(name, file) || self.is_static(name, f));
        let mut out = Vec::new();
        for candidate in self.snapshot.files.keys() {
            let names_it = self
                .snapshot
                .text(candidate)
                .is_some_and(|text| text.contains(name));
            if !candidate.ends_with(".c") || !names_it || !reaches(candidate) {
                continue;
            }
            for (caller, _, refs) in self.definitions(candidate).iter() {
                if caller != name && refs.contains(name) {
                    out.push((caller.clone(), candidate.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            label: "test".into(),
            files: files
                .iter()
                .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
                .collect(),
            commit: None,
        }
    }

    #[test]
    fn callers_cross_files_only_to_globals_and_not_into_a_same_named_static() {
        let new = snapshot(&[
            (
                "rate.c",
                "int rate(int x) { return x; }\nstatic int helper(void) { return 1; }\n",
            ),
            (
                "lib.c",
                "int rate(int);\nint value(void) { return rate(2); }\n",
            ),
            (
                "own.c",
                "static int rate(int x) { return -x; }\nint other(void) { return rate(3); }\n",
            ),
            (
                "far.c",
                "int helper(void);\nint far(void) { return helper(); }\n",
            ),
        ]);
        let graph = CallGraph::of(&new);
        assert_eq!(
            graph.callers("rate", "rate.c"),
            [("value".to_string(), "lib.c".to_string())]
        );
        assert!(graph.callers("helper", "rate.c").is_empty());
        assert_eq!(
            graph.callers("rate", "own.c"),
            [("other".to_string(), "own.c".to_string())]
        );
    }

    #[test]
    fn without_debug_information_every_caller_in_any_file_transitively_and_loudly() {
        let new = snapshot(&[
            ("rate.c", "int rate(int x) { return x; }\n"),
            (
                "lib.c",
                "int rate(int);\nint value(void) { return rate(2); }\n",
            ),
            (
                "main.c",
                "int value(void);\nint main(void) { return value(); }\n",
            ),
        ]);
        let graph = CallGraph::of(&new);
        let selection = from_call_graph(&[("rate".into(), "rate.c".into())], &graph);
        let got: Vec<&str> = selection
            .functions
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(got, ["rate", "value", "main"]);
        assert_eq!(selection.count, 3);
        assert!(selection
            .warning
            .unwrap()
            .contains("no debug information (no -g)"));
    }
}
