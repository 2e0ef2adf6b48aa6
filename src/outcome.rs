//! How a command ends: its exit status, and with `--json` exactly one JSON document on standard
//! output whatever happened — the result, a refusal (`"refused": true`), or an error
//! (`{"error": {"kind", "message", ...}}`), with the same exit status as without `--json`.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use hotpatch_applier::ApplyError;
use hotpatch_builder::BuildError;
use hotpatch_differ::DifferError;
use serde::Serialize;
use serde_json::{json, Value};

use crate::refusal::{Refused, EXIT_REFUSED};

/// Exit status of an error.
pub const EXIT_ERROR: i32 = 1;

/// Exit status of bad usage (as clap exits for arguments it rejects).
pub const EXIT_USAGE: i32 = 2;

/// Set once a JSON document is on standard output: an error after it must not print a second.
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Bad usage found after clap accepted the arguments (a malformed revision range, a pair of
/// options that do not go together): exits [`EXIT_USAGE`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Prints `value` as the command's one JSON document.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    PRINTED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Ends the process for a failed command: the `error: ...` line on standard error and, with
/// `json` (unless the command already printed its document, as a refusal does), the error as
/// JSON on standard output; then exits with the error's status.
pub fn fail(error: &anyhow::Error, json: bool) -> ! {
    eprintln!("error: {}", crate::render::error_text(error));
    if json && !PRINTED.load(Ordering::SeqCst) {
        // Printing to a closed pipe is all that can fail here; the exit status still tells.
        let _ = print_json(&json!({ "error": error_json(error) }));
    }
    std::process::exit(exit_code(error));
}

/// Ends the process for arguments clap rejected: with `--json` among them the message as a
/// `usage` error document, otherwise clap's own output. Help and version requests print as usual.
pub fn fail_usage(error: clap::Error, json: bool) -> ! {
    use clap::error::ErrorKind;
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if json && !informational {
        // clap's first paragraph is the message (`error: ...` and its lines); usage follows.
        let rendered = error.render().to_string();
        let first = rendered.split("\n\n").next().unwrap_or_default();
        let message: Vec<&str> = first
            .trim_start_matches("error: ")
            .lines()
            .map(str::trim)
            .collect();
        let _ = print_json(&json!({ "error": {
            "kind": "usage",
            "message": message.join(" "),
            "usage": rendered,
        }}));
    }
    error.exit()
}

/// Whether `--json` is among the command-line arguments (before any `--`): for errors found
/// before the arguments are parsed.
pub fn json_requested(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// The exit status for `error`: 3 refused, 2 bad usage, 1 anything else.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error.downcast_ref::<Refused>().is_some() {
        return EXIT_REFUSED;
    }
    let usage = error.chain().any(|cause| {
        cause.is::<UsageError>() || matches!(cause.downcast_ref(), Some(DifferError::BadRange(_)))
    });
    if usage {
        EXIT_USAGE
    } else {
        EXIT_ERROR
    }
}

/// The error as JSON: `kind` (a stable word a program can branch on), `message` (the same line
/// as on standard error), `causes` (the chain, outermost first) and the fields of the kind.
pub fn error_json(error: &anyhow::Error) -> Value {
    let mut value = json!({
        "kind": "error",
        "message": crate::render::error_text(error),
        "causes": error.chain().map(ToString::to_string).collect::<Vec<_>>(),
    });
    match exit_code(error) {
        EXIT_USAGE => value["kind"] = json!("usage"),
        EXIT_REFUSED => {
            value["kind"] = json!("refused");
            value["refused"] = json!(true);
        }
        _ => {}
    }
    if value["kind"] != "error" {
        return value;
    }
    for cause in error.chain() {
        let fields = if let Some(e) = cause.downcast_ref::<ApplyError>() {
            apply_error_fields(e)
        } else if let Some(e) = cause.downcast_ref::<hotpatch_applier::PtraceError>() {
            ptrace_error_fields(e)
        } else if let Some(e) = cause.downcast_ref::<BuildError>() {
            build_error_fields(e)
        } else if let Some(e) = cause.downcast_ref::<DifferError>() {
            differ_error_fields(e)
        } else {
            continue;
        };
        if let (Value::Object(into), Value::Object(from)) = (&mut value, fields) {
            into.extend(from);
        }
        break;
    }
    value
}

fn differ_error_fields(error: &DifferError) -> Value {
    match error {
        DifferError::NotARepository { path } => json!({"kind": "not_a_repository", "path": path}),
        DifferError::UnknownRevision { rev, .. } => {
            json!({"kind": "unknown_revision", "revision": rev})
        }
        DifferError::BadRange(range) => json!({"kind": "usage", "range": range}),
        DifferError::Git(_) => json!({"kind": "git"}),
    }
}

fn build_error_fields(error: &BuildError) -> Value {
    match error {
        BuildError::Config(_) => json!({"kind": "build_config"}),
        BuildError::NoCompiler(_) => json!({"kind": "no_compiler"}),
        BuildError::Compile { file, diagnostics } => {
            json!({"kind": "compile", "file": file, "diagnostics": diagnostics})
        }
        BuildError::Io { path, .. } => json!({"kind": "io", "path": path}),
        BuildError::NoCompileCommand { file, .. } => {
            json!({"kind": "no_compile_command", "file": file})
        }
        BuildError::Object(_) | BuildError::Preimage(_) => json!({"kind": "build"}),
    }
}

fn ptrace_error_fields(error: &hotpatch_applier::PtraceError) -> Value {
    use hotpatch_applier::PtraceError;
    match error {
        PtraceError::NoSuchProcess(pid) => json!({"kind": "no_such_process", "pid": pid}),
        PtraceError::NotPermitted { pid, .. } => json!({"kind": "not_permitted", "pid": pid}),
        PtraceError::Failed { pid, .. } => json!({"kind": "ptrace", "pid": pid}),
    }
}

fn apply_error_fields(error: &ApplyError) -> Value {
    match error {
        ApplyError::Ptrace(e) => ptrace_error_fields(e),
        ApplyError::NoSuchProcess(pid) => json!({"kind": "no_such_process", "pid": pid}),
        ApplyError::Group { pid, source, .. } => {
            let mut value = apply_error_fields(source);
            value["pid"] = json!(pid);
            value["rolled_back"] = json!(true);
            value
        }
        ApplyError::GroupCheck { pid, source, .. } => {
            let mut value = apply_error_fields(source);
            value["pid"] = json!(pid);
            value["nothing_written"] = json!(true);
            value
        }
        ApplyError::NotElf
        | ApplyError::WrongObjectKind { .. }
        | ApplyError::MalformedObject(_)
        | ApplyError::Manifest(_)
        | ApplyError::ManifestSymbolMissing { .. } => json!({"kind": "bad_patch_object"}),
        ApplyError::MissingFunction(target) => {
            json!({"kind": "missing_symbol", "symbol": target.name()})
        }
        ApplyError::UnresolvedSymbol { symbol, .. } => {
            json!({"kind": "missing_symbol", "symbol": symbol})
        }
        ApplyError::AmbiguousFileLocal { .. } | ApplyError::AmbiguousFunction { .. } => {
            json!({"kind": "ambiguous_symbol"})
        }
        ApplyError::BuildIdMismatch {
            expected, found, ..
        } => json!({"kind": "build_id_mismatch", "expected": expected, "found": found}),
        ApplyError::PreimageMismatch { name, .. }
        | ApplyError::StackedPreimageMismatch { name, .. }
        | ApplyError::UnfingerprintedPatch { name, .. } => {
            json!({"kind": "preimage_mismatch", "function": name})
        }
        ApplyError::FunctionTooShort {
            name,
            size,
            jump,
            why,
        } => json!({
            "kind": "function_too_short", "function": name, "size": size, "jump": jump, "why": why,
        }),
        ApplyError::ThreadBusy { tid, waited_ms, .. } => {
            json!({"kind": "busy", "tid": tid, "waited_ms": waited_ms})
        }
        ApplyError::SafePointNotReached {
            function,
            waited_ms,
        } => {
            json!({"kind": "safe_point_not_reached", "function": function, "waited_ms": waited_ms})
        }
        ApplyError::ProcessStopped { pid, option } => {
            json!({"kind": "process_stopped", "pid": pid, "option": option})
        }
        ApplyError::AlreadyApplied {
            patch_id, sequence, ..
        } => json!({"kind": "already_applied", "patch_id": patch_id, "sequence": sequence}),
        ApplyError::Revert(_) => json!({"kind": "revert"}),
        ApplyError::CommitUnknown { pid, .. } => json!({"kind": "commit_unknown", "pid": pid}),
        _ => json!({"kind": "apply"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_exit_codes() {
        let usage = anyhow::Error::new(DifferError::BadRange("v1".into()));
        assert_eq!(exit_code(&usage), EXIT_USAGE);
        assert_eq!(error_json(&usage)["kind"], "usage");
        let gone = anyhow::Error::new(ApplyError::NoSuchProcess(7)).context("cannot inspect pid 7");
        assert_eq!(exit_code(&gone), EXIT_ERROR);
        let value = error_json(&gone);
        assert_eq!(value["kind"], "no_such_process");
        assert_eq!(value["pid"], 7);
        assert_eq!(value["causes"].as_array().map(Vec::len), Some(2));
        let stopped = anyhow::Error::new(ApplyError::ProcessStopped {
            pid: 9,
            option: "--at".into(),
        });
        assert_eq!(error_json(&stopped)["kind"], "process_stopped");
        assert_eq!(error_json(&stopped)["option"], "--at");
        let refused = anyhow::Error::new(Refused { count: 1 });
        assert_eq!(exit_code(&refused), EXIT_REFUSED);
        let other = anyhow::anyhow!("something");
        assert_eq!(error_json(&other)["kind"], "error");
        assert!(json_requested(&["list".into(), "--json".into()]));
        assert!(!json_requested(&["--".into(), "--json".into()]));
    }
}
