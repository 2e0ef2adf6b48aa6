//! What hotpatch prints: text for people (coloured on a terminal) or JSON for programs.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use hotpatch_applier::artifact::{FunctionAction, SymbolRef};
use hotpatch_applier::{ApplyReport, Plan};
use hotpatch_differ::{Change, ChangeSet};
use serde::Serialize;
use serde_json::json;

use crate::pipeline::{BuiltUnits, Timings};

/// One line for an error and its causes: `outer: inner: innermost`. Compiler diagnostics keep
/// their own lines.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for (i, cause) in error.chain().enumerate() {
        let cause = cause.to_string();
        if i > 0 {
            if text.contains(&cause) {
                continue;
            }
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Everything a dry run shows.
pub struct DryRun<'a> {
    /// The classified changes.
    pub changes: &'a ChangeSet,
    /// The compiled patch.
    pub patch: &'a BuiltUnits,
    /// The resolution against the running process, with `--pid`.
    pub plan: Option<&'a Plan>,
    /// Whether to print the patch sources.
    pub show_source: bool,
    /// The live check with `--pid`: every thread stopped once, as the commit would, and resumed.
    pub check: Option<&'a hotpatch_applier::CheckReport>,
    /// The other processes of the group (a family's descendants, more `--pid`s), each checked.
    pub others: &'a [crate::processes::OtherCheck],
    /// Stage timings so far.
    pub timings: &'a Timings,
}

/// Everything an apply reports.
pub struct Applied<'a> {
    /// The classified changes.
    pub changes: &'a ChangeSet,
    /// The compiled patch.
    pub patch: &'a BuiltUnits,
    /// What the applier did.
    pub report: &'a ApplyReport,
    /// Stage timings.
    pub timings: &'a Timings,
}

/// Prints results as text or JSON.
pub struct Printer {
    color: bool,
    json: bool,
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

impl Printer {
    /// A printer that colours text when `color` and prints JSON when `json`.
    pub fn new(color: bool, json: bool) -> Printer {
        Printer {
            color: color && !json,
            json,
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    fn print_json(value: &impl Serialize) -> Result<()> {
        crate::outcome::print_json(value)
    }

    fn warnings(&self, changes: &ChangeSet) {
        for warning in &changes.warnings {
            eprintln!("{} {warning}", self.paint(YELLOW, "warning:"));
        }
    }

    /// `hotpatch diff` without `--apply`: the changed functions with their diffs.
    pub fn changes(&self, changes: &ChangeSet) -> Result<()> {
        if self.json {
            return Self::print_json(&json!({
                "old": changes.old_label,
                "new": changes.new_label,
                "refused": !changes.refusals.is_empty(),
                "functions": changes.functions,
                "warnings": changes.warnings,
                "refusals": changes.refusals,
                "items": changes.items,
            }));
        }
        self.warnings(changes);
        print!("{}", self.changes_text(changes));
        Ok(())
    }

    fn changes_text(&self, changes: &ChangeSet) -> String {
        let mut text = String::new();
        let files = changes.changed_files.len();
        let count = changes.functions.len();
        let _ = writeln!(
            text,
            "{} → {}: {count} function{} changed in {files} file{}",
            changes.old_label,
            changes.new_label,
            plural(count),
            plural(files)
        );
        for function in &changes.functions {
            let kind = match function.change {
                Change::Added => self.paint(GREEN, "added  "),
                Change::Changed => self.paint(YELLOW, "changed"),
                Change::Removed => self.paint(RED, "removed"),
            };
            let _ = writeln!(
                text,
                "\n{kind} {} {}",
                self.paint(BOLD, &function.name),
                location(&function.file, function.line)
            );
            for line in function.diff.lines() {
                let styled = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => self.paint(GREEN, line),
                    Some('-') if !line.starts_with("---") => self.paint(RED, line),
                    Some('@') => self.paint(CYAN, line),
                    _ => line.to_string(),
                };
                let _ = writeln!(text, "    {styled}");
            }
        }
        text
    }

    /// `--apply`/`--dry-run` when no function changed: said plainly, nothing done.
    pub fn nothing_to_patch(&self, changes: &ChangeSet) -> Result<()> {
        let message = format!(
            "nothing to patch: no function changed between {} and {} (whitespace, comments and \
             moved lines are not changes); no process was touched",
            changes.old_label, changes.new_label
        );
        if self.json {
            return Self::print_json(&json!({
                "old": changes.old_label,
                "new": changes.new_label,
                "functions": [],
                "changes": changes.functions,
                "warnings": changes.warnings,
                "nothing_to_patch": true,
                "message": message,
            }));
        }
        self.warnings(changes);
        println!("{message}");
        Ok(())
    }

    fn units_text(&self, patch: &BuiltUnits, show_source: bool) -> String {
        let mut text = String::new();
        for unit in &patch.units {
            let _ = writeln!(text, "patch unit for {}:", self.paint(BOLD, &unit.file));
            for function in &unit.functions {
                let _ = writeln!(
                    text,
                    "  {:<12} {:<20} {}",
                    format!("{:?}", function.action).to_lowercase(),
                    function.name,
                    function.reason
                );
            }
            if !unit.bindings.is_empty() {
                let _ = writeln!(
                    text,
                    "  binds to statics of {}: {}",
                    unit.file,
                    unit.bindings.join(", ")
                );
            }
            if !unit.copied.is_empty() {
                let _ = writeln!(
                    text,
                    "  private copies of unchanged statics the binary inlined away: {}",
                    unit.copied.join(", ")
                );
            }
            if !unit.new_data.is_empty() {
                let _ = writeln!(
                    text,
                    "  new variables, starting from their initializers: {}",
                    unit.new_data.join(", ")
                );
            }
            if show_source {
                let _ = writeln!(text, "  --- source of the patch unit ---");
                for line in unit.source.lines() {
                    let _ = writeln!(text, "  | {line}");
                }
            }
        }
        let built = &patch.built;
        let _ = writeln!(
            text,
            "compiled with {}: ok, patch {} ({} bytes)",
            built.compiler.display(),
            built.manifest.patch_id,
            built.object.len()
        );
        text.push_str(&flags_text(patch));
        for (file, warnings) in &built.warnings {
            let _ = writeln!(text, "compiler warnings for {file}:\n{warnings}");
        }
        text
    }

    /// `--dry-run`: everything that would be done; nothing was written.
    pub fn dry_run(&self, dry: &DryRun<'_>) -> Result<()> {
        if self.json {
            let plan = dry.plan.map(|plan| {
                json!({
                    "patch_id": plan.patch_id,
                    "functions": plan.functions.iter().map(|f| json!({
                        "name": f.target.name(),
                        "file": f.file,
                        "action": f.action,
                        "reason": f.reason,
                        "old_address": f.old_address,
                        "old_size": f.old_size,
                    })).collect::<Vec<_>>(),
                    "resolutions": resolutions_json(plan),
                    "register_contracts": plan.register_contracts,
                })
            });
            return Self::print_json(&json!({
                "dry_run": true,
                "old": dry.changes.old_label,
                "new": dry.changes.new_label,
                "changes": dry.changes.functions,
                "warnings": dry.changes.warnings,
                "units": dry.patch.units,
                "patch_id": dry.patch.built.manifest.patch_id,
                "compile": {
                    "compiler": dry.patch.built.compiler,
                    "warnings": dry.patch.built.warnings,
                },
                "flags": dry.patch.built.flags,
                "flag_choices": dry.patch.choices,
                "plan": plan,
                "inline_map": dry.patch.selection,
                "check": dry.check,
                "other_processes": dry.others,
                "timings": dry.timings,
            }));
        }
        self.warnings(dry.changes);
        let mut text = self.changes_text(dry.changes);
        text.push('\n');
        text.push_str(&self.units_text(dry.patch, dry.show_source));
        if let Some(plan) = dry.plan {
            let _ = writeln!(text, "\nagainst the running process:");
            for function in &plan.functions {
                let place = match (function.old_address, function.old_size) {
                    (Some(address), Some(size)) => format!("at {address:#x} ({size} bytes)"),
                    (Some(address), None) => format!("at {address:#x}"),
                    _ => "not in the binary".to_string(),
                };
                let _ = writeln!(
                    text,
                    "  would {} {} {place}",
                    action_verb(function.action),
                    function.target
                );
            }
            text.push_str(&binding_lines(plan));
            for line in crate::register_contract::lines(&plan.register_contracts, true) {
                let _ = writeln!(text, "{line}");
            }
        }
        if let Some(selection) = &dry.patch.selection {
            text.push_str(&selection_text(selection));
        }
        if let Some(check) = dry.check {
            let _ = writeln!(
                text,
                "  safe to apply now: {} thread{} stopped and resumed; predicted pause {} µs",
                check.threads,
                plural(check.threads),
                check.pause_us
            );
        }
        for other in dry.others {
            let _ = match &other.check {
                Some(check) => writeln!(
                    text,
                    "  pid {}: safe to apply now too: {} thread{} stopped and resumed; predicted pause {} µs",
                    other.pid,
                    check.threads,
                    plural(check.threads),
                    check.pause_us
                ),
                None => writeln!(text, "  pid {}: {}", other.pid, other.why()),
            };
        }
        let _ = writeln!(text, "\ndry run: nothing was written to any process");
        print!("{text}");
        Ok(())
    }

    /// `--apply`: what was patched and how long the process was stopped.
    pub fn applied(&self, applied: &Applied<'_>) -> Result<()> {
        let report = applied.report;
        if self.json {
            let mut value = report_json(report);
            value["old"] = json!(applied.changes.old_label);
            value["new"] = json!(applied.changes.new_label);
            value["changes"] = json!(applied.changes.functions);
            value["warnings"] = json!(applied.changes.warnings);
            value["new_data"] = json!(applied.patch.built.manifest.new_data);
            value["flags"] = json!(applied.patch.built.flags);
            value["flag_choices"] = json!(applied.patch.choices);
            value["inline_map"] = json!(applied.patch.selection);
            value["timings"] = json!(applied.timings);
            return Self::print_json(&value);
        }
        self.warnings(applied.changes);
        let subject = format!(
            "{} → {}",
            applied.changes.old_label, applied.changes.new_label
        );
        print!("{}", self.report_text(&subject, report));
        for data in &applied.patch.built.manifest.new_data {
            println!(
                "  new variable {} ({}) starts from its initializer",
                data.name, data.file
            );
        }
        print!("{}", flags_text(applied.patch));
        Ok(())
    }

    /// An apply as text: `patched SUBJECT in N µs (T threads stopped), patch ID:`, then a line
    /// per function: what was done (`replaced`, `added`, `inlined`), its file, and why.
    pub fn report_text(&self, subject: &str, report: &ApplyReport) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} {subject} in {} µs ({} thread{} stopped{}), patch {}:",
            self.paint(GREEN, "patched"),
            report.pause_us,
            report.threads,
            plural(report.threads),
            match report.commit.strategy.as_str() {
                "threadwise" => " one at a time",
                _ => "",
            },
            report.patch_id
        );
        for function in &report.functions {
            let file = function
                .file
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            let detail = match function.action {
                FunctionAction::InlinedOnly => format!(
                    "{}; the binary has no symbol for it (inlined everywhere), its callers were patched",
                    function.reason
                ),
                _ if function.reason.starts_with("may inline") => {
                    format!("patched because it {}", function.reason)
                }
                _ => function.reason.clone(),
            };
            let _ = writeln!(
                text,
                "  {:<9} {}{file}: {detail}",
                action_verb_past(function.action),
                function.name
            );
        }
        for line in crate::register_contract::lines(&report.register_contracts, false) {
            let _ = writeln!(text, "{line}");
        }
        text
    }
}

/// How every file of the patch was compiled and where its flags came from, and how a command
/// was chosen where the build had several for one file.
pub fn flags_text(patch: &BuiltUnits) -> String {
    let mut text = String::new();
    for flags in &patch.built.flags {
        let mut directory = if flags.directory.is_empty() {
            String::new()
        } else {
            format!(", compiled in {}", flags.directory)
        };
        if Path::new(&flags.compiler) != patch.built.compiler {
            directory.push_str(&format!(", by {}", flags.compiler));
        }
        let _ = writeln!(
            text,
            "  flags of {}: {} (from {}{directory})",
            flags.file,
            flags.arguments.join(" "),
            flags.source
        );
    }
    for choice in &patch.choices {
        let _ = writeln!(text, "  {choice}");
    }
    text
}

/// How each undefined symbol of a plan binds, and the rule that decided, as JSON.
pub fn resolutions_json(plan: &Plan) -> Vec<serde_json::Value> {
    plan.resolutions
        .iter()
        .map(|r| {
            json!({
                "symbol": r.symbol,
                "name": r.target.name(),
                "file": file_of(&r.target),
                "address": r.address,
                "module": r.module,
                "rule": r.rule,
            })
        })
        .collect()
}

/// How each undefined symbol of a plan binds, and the rule that decided: one line each.
pub fn binding_lines(plan: &Plan) -> String {
    let mut text = String::new();
    for r in &plan.resolutions {
        let _ = writeln!(
            text,
            "  binds {} → {:#x} in {} ({})",
            r.target, r.address, r.module, r.rule
        );
    }
    text
}

/// An apply as JSON, the same for `diff --apply`, `apply` and each process of a group: the
/// pause (µs), the stops, the region and every function with its action and source file.
pub fn report_json(report: &ApplyReport) -> serde_json::Value {
    json!({
        "patch_id": report.patch_id,
        "pause_us": report.pause_us,
        "threads": report.threads,
        "total_stopped_us": report.total_stopped_us,
        "stops": report.stops,
        "sequence": report.sequence,
        "region_address": report.region_address,
        "region_size": report.region_size,
        "functions": report.functions,
        "register_contracts": report.register_contracts,
        "commit": report.commit,
    })
}

/// `s` unless `n` is one.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn location(file: &str, line: u32) -> String {
    format!("{file}:{line}")
}

fn file_of(target: &SymbolRef) -> Option<&str> {
    target.file()
}

/// What a plan does with a function, as a verb: `replace`, `add`, `patch through its callers`.
pub fn action_verb(action: FunctionAction) -> &'static str {
    match action {
        FunctionAction::Replace => "replace",
        FunctionAction::Add => "add",
        FunctionAction::InlinedOnly => "patch through its callers",
    }
}

fn action_verb_past(action: FunctionAction) -> &'static str {
    match action {
        FunctionAction::Replace => "replaced",
        FunctionAction::Add => "added",
        FunctionAction::InlinedOnly => "inlined",
    }
}

/// The patch set the running binary showed (`--dry-run --pid`): each function with why, and the
/// inline map entries it was read from.
fn selection_text(selection: &crate::lto::Selection) -> String {
    let mut text = String::new();
    let from = match selection.from {
        crate::lto::Evidence::Dwarf => "the binary's DWARF inline map",
        crate::lto::Evidence::SourceCallGraph => "the source call graph (no debug information)",
    };
    let role = if selection.decides {
        "the patch set (link-time optimised build)"
    } else {
        "reported beside the object-level confirmation"
    };
    let _ = writeln!(
        text,
        "  {} function{} from {from}, {role}:",
        selection.count,
        plural(selection.count)
    );
    for function in &selection.functions {
        let _ = writeln!(
            text,
            "    {} ({}): {}",
            function.name, function.file, function.reason
        );
    }
    for entry in &selection.entries {
        let copies: Vec<String> = entry
            .copies
            .iter()
            .map(|c| match &c.symbol {
                Some(symbol) => format!("{symbol} at {:#x}", c.address),
                None => format!("{:#x}", c.address),
            })
            .collect();
        let _ = writeln!(
            text,
            "    inline map: `{}` ({}): out of line {}; inlined into {}",
            entry.name,
            entry.file,
            if copies.is_empty() {
                "nowhere".to_string()
            } else {
                copies.join(", ")
            },
            if entry.inlined_into.is_empty() {
                "nothing".to_string()
            } else {
                entry.inlined_into.join(", ")
            }
        );
    }
    text
}
