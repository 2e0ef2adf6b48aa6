//! Proof that the patch matches what runs, where bytes cannot be compared (link-time
//! optimisation) and beside the pre-image where they can: before anything is written, every
//! type the patch uses must be laid out as in the running binary's debug information, every
//! replaced function must be where the old revision has it, and the register contract of the
//! unpatched callers must hold. Each disagreement is a refusal `--force` can name.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use hotpatch_applier::type_layout::{difference, TypeLayout};
use hotpatch_applier::{
    ApplyError, FunctionAction, Manifest, PatchObject, Plan, SymbolRef, Target,
};
use hotpatch_differ::index::{Index, ItemKind};
use hotpatch_differ::{read_git_revision, snippet, ChangeSet, Refusal, RefusalKind, Snapshot};

/// Adds to `changes` what the running binary contradicts in the patch (with `--force`
/// `forced` applied), and plans the patch when nothing is left refused: `None` then means a
/// refusal remains for the caller to report. `what` begins an error (`cannot patch pid N`).
/// `repo` holds the revisions: with patches in effect, the one the binary was built from is
/// read from it.
pub fn prove(
    target: &Target,
    object: &PatchObject,
    (old, new, repo): (&Snapshot, &Snapshot, Option<&Path>),
    changes: &mut ChangeSet,
    forced: &[String],
    what: &str,
) -> Result<Option<Plan>> {
    if let Some(manifest) = object.manifest() {
        changes
            .refusals
            .extend(layout_refusals(target, manifest, new));
        let running = RunningCode::of(target.pid(), repo, old);
        changes
            .refusals
            .extend(location_refusals(target, manifest, old, &running));
        crate::refusal::apply_forces(changes, forced);
        if !changes.refusals.is_empty() {
            return Ok(None);
        }
    }
    match crate::build_flags::plan(target, object, what, forced) {
        Ok(plan) => {
            // A contract left unprotected by `--force` is said like every forced refusal.
            changes
                .refusals
                .extend(forced_contracts(&plan, object.manifest()));
            crate::refusal::apply_forces(changes, forced);
            Ok(Some(plan))
        }
        Err(error) => {
            let Some(refused @ ApplyError::RegisterContract { function, .. }) =
                error.downcast_ref::<ApplyError>()
            else {
                return Err(error);
            };
            let file = manifest_file(object.manifest(), function);
            changes.refusals.push(Refusal {
                item: refused.refusal_item().unwrap_or_default(),
                kind: RefusalKind::RegisterContract,
                line: 0,
                snippet: String::new(),
                reason: refused.to_string(),
                file,
            });
            crate::refusal::apply_forces(changes, forced);
            Ok(None)
        }
    }
}

/// The register contracts `--force` left unprotected in `plan`, as the refusals they were.
fn forced_contracts(plan: &Plan, manifest: Option<&Manifest>) -> Vec<Refusal> {
    plan.register_contracts
        .iter()
        .filter(|c| c.action.starts_with("forced:"))
        .flat_map(|contract| {
            contract
                .callers
                .iter()
                .filter(|call| !call.at_risk.is_empty())
                .map(move |call| Refusal {
                    item: format!("{}->{}", call.caller, contract.function),
                    kind: RefusalKind::RegisterContract,
                    file: manifest_file(manifest, &contract.function),
                    line: 0,
                    reason: format!(
                        "`{}` keeps {} live across its call of `{}` at {:#x} and no save/restore thunk can keep them: they are left unprotected",
                        call.caller,
                        call.at_risk.join(", "),
                        contract.function,
                        call.site
                    ),
                    snippet: String::new(),
                })
        })
        .collect()
}

/// The layout refusals of `manifest` (see [`layout_disagreements`]), each placed at the type's
/// definition in `new` where it is found.
fn layout_refusals(target: &Target, manifest: &Manifest, new: &Snapshot) -> Vec<Refusal> {
    layout_disagreements(target, manifest)
        .into_iter()
        .map(|(file, name, reason)| {
            let (file, line) = definition(new, &name).unwrap_or((file, 0));
            let snippet = new
                .text(&file)
                .filter(|_| line > 0)
                .map(|text| snippet(text, line, 4))
                .unwrap_or_default();
            Refusal {
                item: name,
                kind: RefusalKind::BinaryTypeLayout,
                file,
                line,
                reason,
                snippet,
            }
        })
        .collect()
}

/// Every type of a patched file whose layout in the patch disagrees with the same-named type
/// of the running binary's units of that file, as `(file, type, reason)`. A type the binary's
/// units do not describe (new, or unused by the old code) is not compared.
pub fn layout_disagreements(target: &Target, manifest: &Manifest) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for flags in manifest.flags.iter().filter(|f| !f.types.is_empty()) {
        let units = target.type_layouts(&flags.file);
        for patch in &flags.types {
            let same: Vec<&TypeLayout> = units
                .iter()
                .filter_map(|unit| unit.iter().find(|t| t.name == patch.name))
                .collect();
            let differences: Vec<String> = same
                .iter()
                .filter_map(|binary| difference(patch, binary))
                .collect();
            if same.is_empty() || differences.len() < same.len() {
                continue;
            }
            out.push((
                flags.file.clone(),
                patch.name.clone(),
                format!(
                    "{} ({} compiled with `{}` from {}; a -D, -m or packing flag missing from them, or one the build did not use?); no process was touched",
                    differences[0],
                    flags.file,
                    flags.arguments.join(" "),
                    flags.source
                ),
            ));
        }
    }
    out
}

/// Where `name` (`struct conn`, `typedef conn_t`, `enum state`) is defined in `snapshot`: the
/// first `.c` or `.h` file with an item of that name and keyword.
fn definition(snapshot: &Snapshot, name: &str) -> Option<(String, u32)> {
    let (keyword, bare) = name.split_once(' ')?;
    for (file, _) in snapshot
        .files
        .iter()
        .filter(|(f, _)| f.ends_with(".h") || f.ends_with(".c"))
    {
        let text = snapshot.text(file)?;
        if !text.contains(bare) {
            continue;
        }
        let found = Index::parse(text).items.into_iter().find(|item| {
            item.kind != ItemKind::Function
                && item.names.iter().any(|n| n == bare)
                && item.text(text).contains(keyword)
        });
        if let Some(item) = found {
            return Some((file.clone(), item.line));
        }
    }
    None
}

/// The code of a process as its live patches left it.
struct RunningCode {
    /// The functions (name, file) whose code in effect is a patch's: the applier checks them
    /// against that patch's fingerprints, the binary's debug information does not describe them.
    patched: BTreeSet<(String, Option<String>)>,
    /// The revision the binary was built from, when live patches brought the process from it to
    /// the old side of this patch (read from `repo`); `None` without live patches, or when the
    /// repository lacks it.
    base: Option<Snapshot>,
}

impl RunningCode {
    /// Reads the ledgers of process `pid` (none read: no patches).
    fn of(pid: i32, repo: Option<&Path>, old: &Snapshot) -> RunningCode {
        let installed = hotpatch_applier::installed_patches(pid).unwrap_or_default();
        let live: Vec<_> = installed.iter().filter(|p| p.is_live()).collect();
        let patched = live
            .iter()
            .flat_map(|p| &p.functions)
            .map(|f| (f.name.clone(), f.file.clone()))
            .collect();
        let first = live.iter().min_by_key(|p| p.sequence);
        let base = first
            .and_then(|p| p.record.manifest.as_ref())
            .and_then(|m| Some((m.old_commit.clone()?, m.old_revision.clone())))
            .filter(|(commit, _)| old.commit.as_ref() != Some(commit))
            .and_then(|(commit, label)| {
                let mut snapshot = read_git_revision(repo?, &commit).ok()?;
                snapshot.label = label.unwrap_or(snapshot.label);
                Some(snapshot)
            });
        RunningCode { patched, base }
    }

    /// Whether `name` of `file` runs a patch's code.
    fn is_patched(&self, name: &str, file: &str) -> bool {
        self.patched
            .iter()
            .any(|(n, f)| n == name && f.as_deref().is_none_or(|f| f == file))
    }
}

/// Each replaced function the running binary's debug information declares at another line of
/// its file than the revision it was built from has it (`old`, the revision the patch is made
/// against, unless live patches brought the process there: then their base): the binary was
/// not built from that revision, so neither the patch's view of the code around it nor the
/// inline map's answer can be trusted. A function whose code is a live patch's is left to the
/// applier's check against that patch.
fn location_refusals(
    target: &Target,
    manifest: &Manifest,
    old: &Snapshot,
    running: &RunningCode,
) -> Vec<Refusal> {
    let Some(map) = target.inline_map() else {
        return Vec::new();
    };
    let old = running.base.as_ref().unwrap_or(old);
    let mut out = Vec::new();
    for function in manifest.functions.iter().filter(|f| {
        matches!(
            f.action,
            FunctionAction::Replace | FunctionAction::InlinedOnly
        )
    }) {
        let (Some(file), name) = (&function.file, function.target.name()) else {
            continue;
        };
        if running.is_patched(name, file) {
            continue;
        }
        let lines = old
            .text(file)
            .map(|text| name_lines(text, name))
            .unwrap_or_default();
        let Some(&line) = lines.first() else {
            continue;
        };
        let recorded: Vec<String> = match map.decl_lines(name, file) {
            here if here.is_empty() => match &function.target {
                // A global name is one function: declared (with code) only in another file,
                // it is not where v1 has it. A `static` one elsewhere is another function.
                SymbolRef::Global { .. } => elsewhere(&map, name, file),
                _ => Vec::new(),
            },
            here if lines.iter().any(|l| here.contains(&u64::from(*l))) => Vec::new(),
            here => here.iter().map(|l| format!("{file}:{l}")).collect(),
        };
        if recorded.is_empty() {
            continue;
        }
        let lines = recorded;
        out.push(Refusal {
            item: name.to_string(),
            kind: RefusalKind::SourceLocation,
            file: file.clone(),
            line,
            reason: format!(
                "the running binary's debug information declares `{name}` at {}, but {} has it at {file}:{line}: the binary was not built from {}; give the revision it was built from as the old side, or rebuild and restart it",
                lines.join(", "),
                old.label,
                old.label
            ),
            snippet: old
                .text(file)
                .map(|text| snippet(text, line, 3))
                .unwrap_or_default(),
        });
    }
    out
}

/// Where the debug information declares the function `name` with code when it is not in
/// `file` at all (`other.c:12`); empty when it is in `file` or nowhere.
fn elsewhere(map: &hotpatch_applier::InlineMap, name: &str, file: &str) -> Vec<String> {
    if map.lookup(name, file).next().is_some() {
        return Vec::new();
    }
    map.everywhere(name)
        .filter(|(_, e)| !e.copies.is_empty())
        .flat_map(|(f, _)| {
            let lines = map.decl_lines(name, &f.file);
            lines
                .into_iter()
                .map(|l| format!("{}:{l}", f.file))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The lines gcc may record as the `DW_AT_decl_line` of function `name`: for each definition
/// of it in `text` (one per `#if` branch), the line of its name in the declarator
/// (`static int\nfoo(void)` is at the line of `foo`).
fn name_lines(text: &str, name: &str) -> Vec<u32> {
    Index::parse(text)
        .items
        .iter()
        .filter(|item| item.is_function_definition() && item.name() == Some(name))
        .filter_map(|item| name_line(text, item, name))
        .collect()
}

/// The line of `name` in the declarator of the definition `item` of `text`.
fn name_line(text: &str, item: &hotpatch_differ::index::Item, name: &str) -> Option<u32> {
    let head_end = item.body.as_ref().map_or(item.range.end, |b| b.start);
    let head = text.get(item.range.start..head_end)?;
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let at = head.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before = head[..i].chars().next_back();
        let after = head[i + name.len()..].trim_start().chars().next();
        !before.is_some_and(is_ident) && after == Some('(')
    })?;
    let absolute = item.range.start + at;
    let newlines = text[..absolute].matches('\n').count();
    u32::try_from(newlines + 1).ok()
}

/// The file of the manifest's function `name` (empty when it does not say).
fn manifest_file(manifest: Option<&Manifest>, name: &str) -> String {
    manifest
        .and_then(|m| m.functions.iter().find(|f| f.target.name() == name))
        .and_then(|f| f.file.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_lines_are_where_the_name_is_in_each_definition() {
        let text = "#include <stdio.h>\nstatic int twice(int);\n\nstatic int\n__attribute__((noinline))\ntwice(int x)\n{\n  return 2 * x;\n}\nint (*pick(void))(int) { return twice; }\n";
        assert_eq!(name_lines(text, "twice"), [6]);
        assert_eq!(name_lines(text, "pick"), [10]);
        assert!(name_lines(text, "absent").is_empty());
        let branches = "#ifdef FAST
int f(void) { return 1; }
#else
int
f(void) { return 2; }
#endif
";
        assert_eq!(name_lines(branches, "f"), [2, 5]);
    }
}
