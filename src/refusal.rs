//! Refusals on the command line: `--force` accepting named ones, rendering the rest like compiler
//! diagnostics, and the exit status that says "refused" (3), distinct from errors (1) and usage
//! mistakes (2).

use std::fmt::Write as _;

use hotpatch_builder::BuiltPatch;
use hotpatch_differ::{ChangeSet, Refusal};
use serde_json::json;

/// Exit status when the change contains something that cannot be applied live.
pub const EXIT_REFUSED: i32 = 3;

/// The error `hotpatch diff` returns when unforced refusals remain; `main` exits with
/// [`EXIT_REFUSED`] for it.
#[derive(Debug)]
pub struct Refused {
    /// How many refusals remain.
    pub count: usize,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused: {} change{} cannot be applied to a running process (see above); no process was touched. `--force ITEM` accepts one named refusal",
            self.count,
            if self.count == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Refused {}

/// Applies `--force ITEM` to `changes`: every refusal named by `forced` is removed from
/// `changes.refusals` and recorded as a loud `FORCED:` warning; a name that matches no refusal
/// gets a warning too. It runs again after the build (whose object-level evidence can refuse
/// more, see [`accept_built`]): a name that matches only then loses its "matches no refusal".
pub fn apply_forces(changes: &mut ChangeSet, forced: &[String]) {
    let mut kept = Vec::new();
    for refusal in std::mem::take(&mut changes.refusals) {
        if forced.contains(&refusal.item) {
            changes.warnings.push(format!(
                "FORCED: {} ({}:{}) accepted by --force although {}: {}",
                refusal.item,
                refusal.file,
                refusal.line,
                refusal.kind.title(),
                refusal.reason
            ));
        } else {
            kept.push(refusal);
        }
    }
    changes.refusals = kept;
    for name in forced {
        let unmatched = format!("--force `{name}` matches no refusal; nothing was forced");
        let was_forced = changes
            .warnings
            .iter()
            .any(|w| w.starts_with(&format!("FORCED: {name} (")));
        if was_forced {
            changes.warnings.retain(|w| *w != unmatched);
        } else if !changes.warnings.contains(&unmatched) {
            changes.warnings.push(unmatched);
        }
    }
}

/// Adds what the build refused on object-level evidence (an always-active function whose code
/// changed) to `changes`, with `--force` applied to it; the caller then checks the refusals
/// again, before any process is touched.
pub fn accept_built(changes: &mut ChangeSet, built: &BuiltPatch, forced: &[String]) {
    changes.refusals.extend(built.refusals.iter().cloned());
    apply_forces(changes, forced);
}

/// One refusal as a compiler-style diagnostic: the item and rule, `file:line`, the numbered
/// source lines, the reason, and how to force it.
pub fn diagnostic(refusal: &Refusal, color: bool) -> String {
    let paint = |style: &str, text: &str| {
        if color {
            format!("{style}{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}: {} ({})",
        paint("\x1b[1;31m", "refused"),
        paint("\x1b[1m", &refusal.item),
        refusal.kind.title()
    );
    let last = refusal.line as usize + refusal.snippet.lines().count();
    let width = last.to_string().len();
    let pad = " ".repeat(width);
    let _ = writeln!(text, "{pad}--> {}:{}", refusal.file, refusal.line);
    let _ = writeln!(text, "{pad} |");
    for (i, line) in refusal.snippet.lines().enumerate() {
        if line == "…" {
            let _ = writeln!(text, "{pad} | …");
        } else {
            let _ = writeln!(text, "{:>width$} | {line}", refusal.line as usize + i);
        }
    }
    let _ = writeln!(text, "{pad} |");
    let _ = writeln!(text, "{pad} = {}", refusal.reason);
    let _ = writeln!(
        text,
        "{pad} = help: to accept this one anyway, re-run with --force '{}'",
        refusal.item
    );
    text
}

/// After the change listing of `hotpatch diff` (which already carries the refusals in JSON and
/// printed the warnings): prints each remaining refusal as a diagnostic on stderr (not with
/// `json`) and returns the [`Refused`] error; `Ok` when nothing is refused.
pub fn report(changes: &ChangeSet, json: bool, color: bool) -> anyhow::Result<()> {
    if changes.refusals.is_empty() {
        return Ok(());
    }
    if !json {
        for refusal in &changes.refusals {
            eprintln!("{}", diagnostic(refusal, color));
        }
    }
    Err(Refused {
        count: changes.refusals.len(),
    }
    .into())
}

/// Prints every remaining refusal on stderr (or, with `json`, the change set with its refusals
/// on stdout; the warnings too unless `warnings_shown`) and returns the [`Refused`] error; `Ok`
/// when nothing is refused.
pub fn check(
    changes: &ChangeSet,
    json: bool,
    color: bool,
    warnings_shown: bool,
) -> anyhow::Result<()> {
    if changes.refusals.is_empty() {
        return Ok(());
    }
    if json {
        let value = json!({
            "old": changes.old_label,
            "new": changes.new_label,
            "refused": true,
            "functions": changes.functions.iter().map(|f| json!({
                "name": f.name,
                "file": f.file,
                "change": f.change,
                "line": f.line,
                "reasons": f.reasons,
            })).collect::<Vec<_>>(),
            "refusals": changes.refusals.iter().map(|r| json!({
                "item": r.item,
                "kind": r.kind,
                "file": r.file,
                "line": r.line,
                "reason": r.reason,
            })).collect::<Vec<_>>(),
            "items": changes.items,
            "warnings": changes.warnings,
        });
        crate::outcome::print_json(&value)?;
    } else if !warnings_shown {
        for warning in &changes.warnings {
            eprintln!("warning: {warning}");
        }
    }
    if !json {
        for refusal in &changes.refusals {
            eprintln!("{}", diagnostic(refusal, color));
        }
    }
    Err(Refused {
        count: changes.refusals.len(),
    }
    .into())
}
