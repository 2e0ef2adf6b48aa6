//! Deciding which functions of a file the patch defines (the changed ones plus every function
//! that may have inlined them), and which unchanged static functions it must copy.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use hotpatch_differ::index::{Index, Item, ItemKind};
use hotpatch_differ::{Change, FunctionChange};

use crate::{Action, ExternalizeError, Options};

/// One function the patch defines, before ordering.
#[derive(Debug, Clone)]
pub struct Member {
    /// Why it is emitted.
    pub reason: String,
    /// What the applier does with it.
    pub action: Action,
}

/// The emit set of one file and the private copies it needs.
#[derive(Debug, Default)]
pub struct Plan {
    /// Functions to define, by name.
    pub members: BTreeMap<String, Member>,
    /// Unchanged static functions to keep as private copies.
    pub copied: BTreeSet<String>,
}

/// Items of one file looked up by name.
pub struct Lookup<'a> {
    /// Function definitions by name.
    pub defs: HashMap<&'a str, Vec<&'a Item>>,
    /// Macros by name.
    pub macros: HashMap<&'a str, Vec<&'a Item>>,
    /// Functions and macros that reference a name.
    pub referrers: HashMap<&'a str, Vec<&'a Item>>,
}

impl<'a> Lookup<'a> {
    /// Builds the lookup tables for `index`.
    pub fn new(index: &'a Index) -> Self {
        let mut lookup = Lookup {
            defs: HashMap::new(),
            macros: HashMap::new(),
            referrers: HashMap::new(),
        };
        for item in &index.items {
            let Some(name) = item.name() else { continue };
            match item.kind {
                ItemKind::Function => lookup.defs.entry(name).or_default().push(item),
                ItemKind::Macro => lookup.macros.entry(name).or_default().push(item),
                _ => continue,
            }
            for r in &item.references {
                lookup.referrers.entry(r.as_str()).or_default().push(item);
            }
        }
        lookup
    }

    fn is_inline(&self, name: &str) -> bool {
        self.defs
            .get(name)
            .is_some_and(|d| d.iter().any(|i| i.is_inline))
    }

    fn is_static(&self, name: &str) -> bool {
        self.defs
            .get(name)
            .is_some_and(|d| d.iter().any(|i| i.is_static))
    }
}

/// Computes the emit set for `file` from its changes (rule: changed + new + every function that
/// may inline one of them, through inline functions and macros) and the private copies. A
/// changed function without a definition in the text is an error, never silently left out.
pub fn plan(
    file: &str,
    changes: &[&FunctionChange],
    lookup: &Lookup<'_>,
    kept_data: &[&Item],
    options: &Options<'_>,
) -> Result<Plan, ExternalizeError> {
    let mut plan = Plan::default();
    let mut queue: VecDeque<(String, String)> = VecDeque::new();
    for change in changes {
        let (reason, action) = match change.change {
            Change::Changed => ("changed", Action::Replace),
            Change::Added => ("new", Action::Add),
            Change::Removed => continue,
        };
        if !lookup.defs.contains_key(change.name.as_str()) {
            return Err(ExternalizeError::MissingDefinition {
                function: change.name.clone(),
                file: file.to_string(),
                line: change.line,
            });
        }
        plan.members.insert(
            change.name.clone(),
            Member {
                reason: reason.to_string(),
                action,
            },
        );
        queue.push_back((change.name.clone(), change.name.clone()));
    }
    // Callers join the set; inline functions and macros pass the origin on.
    let mut transparent: BTreeSet<String> = BTreeSet::new();
    while let Some((name, origin)) = queue.pop_front() {
        for referrer in lookup.referrers.get(name.as_str()).into_iter().flatten() {
            let Some(rname) = referrer.name() else {
                continue;
            };
            if plan.members.contains_key(rname) {
                continue;
            }
            let passes_on = referrer.kind == ItemKind::Macro || lookup.is_inline(rname);
            if passes_on {
                if transparent.insert(rname.to_string()) {
                    queue.push_back((rname.to_string(), origin.clone()));
                }
            } else {
                plan.members.insert(
                    rname.to_string(),
                    Member {
                        reason: format!("may inline `{origin}`"),
                        action: Action::Replace,
                    },
                );
                queue.push_back((rname.to_string(), rname.to_string()));
            }
        }
    }
    let has = |name: &str| {
        options
            .target_has_local_function
            .is_none_or(|present| present(file, name))
    };
    for (name, member) in plan.members.iter_mut() {
        if member.action == Action::Replace && lookup.is_static(name) && !has(name) {
            member.action = Action::InlinedOnly;
        }
    }
    plan.copied = copies(lookup, &plan, kept_data, &has);
    Ok(plan)
}

/// Unchanged static functions reachable from emitted code that the target no longer has.
fn copies(
    lookup: &Lookup<'_>,
    plan: &Plan,
    kept_data: &[&Item],
    has: &dyn Fn(&str) -> bool,
) -> BTreeSet<String> {
    let mut copied = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut pending: Vec<&str> = Vec::new();
    for name in plan.members.keys() {
        for def in lookup.defs.get(name.as_str()).into_iter().flatten() {
            pending.extend(def.references.iter().map(String::as_str));
        }
    }
    for item in kept_data {
        pending.extend(item.references.iter().map(String::as_str));
    }
    while let Some(name) = pending.pop() {
        if !seen.insert(name) || plan.members.contains_key(name) {
            continue;
        }
        if let Some(defs) = lookup.defs.get(name) {
            let inline = lookup.is_inline(name);
            let copy = !inline && lookup.is_static(name) && !has(name);
            if copy {
                copied.insert(name.to_string());
            }
            if inline || copy {
                for def in defs {
                    pending.extend(def.references.iter().map(String::as_str));
                }
            }
        }
        for mac in lookup.macros.get(name).into_iter().flatten() {
            pending.extend(mac.references.iter().map(String::as_str));
        }
    }
    copied
}
