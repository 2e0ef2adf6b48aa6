//! `hotpatch list --pid N [--json]`: the patches installed in a running process, read from the
//! ledger headers in the process itself (so it works after any restart of the tool).

use anyhow::{Context, Result};
use clap::Args;
use hotpatch_applier::{installed_patches, FunctionAction, InstalledPatch, LedgerState};
use serde_json::json;

/// Arguments of `hotpatch list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The process whose patches to show.
    #[arg(long)]
    pub pid: i32,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hotpatch list`.
pub fn run(args: &ListArgs) -> Result<()> {
    let patches = installed_patches(args.pid)
        .with_context(|| format!("cannot read the patches of pid {}", args.pid))?;
    if args.json {
        let running = running_revision(&patches);
        let value = json!({
            "pid": args.pid,
            "running_revision": running,
            "patches": patches
                .iter()
                .map(|p| {
                    let mut v = serde_json::to_value(p).unwrap_or_default();
                    v["applied_at"] = json!(utc_time(p.applied_at_unix));
                    v
                })
                .collect::<Vec<_>>(),
        });
        crate::outcome::print_json(&value)?;
        return Ok(());
    }
    print!("{}", text(args.pid, &patches));
    Ok(())
}

/// The newest applied patch's `new_revision`.
fn running_revision(patches: &[InstalledPatch]) -> Option<String> {
    patches
        .iter()
        .rev()
        .find(|p| p.state == LedgerState::Applied)
        .and_then(|p| p.new_revision.clone())
}

/// The text listing: one block per patch, oldest first.
fn text(pid: i32, patches: &[InstalledPatch]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if patches.is_empty() {
        let _ = writeln!(out, "pid {pid} has no patches");
        return out;
    }
    let _ = writeln!(
        out,
        "pid {pid}: {} patch{}",
        patches.len(),
        if patches.len() == 1 { "" } else { "es" }
    );
    for p in patches {
        let revisions = match (&p.old_revision, &p.new_revision) {
            (Some(old), Some(new)) => format!("{old}..{new}"),
            (None, Some(new)) => format!("..{new}"),
            _ => "(no revisions recorded)".to_string(),
        };
        let mut state = p.state.as_str().to_string();
        if p.state != p.header_state {
            state.push_str(" (commit interrupted; revert settles it)");
        } else if p.state == LedgerState::Prepared {
            state.push_str(" (never committed; revert removes it)");
        }
        let _ = writeln!(
            out,
            "  #{} {}  {}  {}  {}  region 0x{:x} ({} bytes)",
            p.sequence,
            p.patch_id,
            state,
            utc_time(p.applied_at_unix),
            revisions,
            p.region_address,
            p.region_size
        );
        for f in &p.functions {
            let place = f
                .file
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            let status = match (f.action, f.old_address, f.active) {
                (FunctionAction::InlinedOnly, ..) => {
                    "inlined everywhere (no symbol of its own): its callers were patched"
                        .to_string()
                }
                (_, None, _) => format!("added at 0x{:x}", f.new_address),
                (_, Some(at), false) if f.breakpoint => format!(
                    "0x{at:x} holds a breakpoint a killed threadwise commit left: a thread \
                     reaching it dies; `hotpatch revert` settles it"
                ),
                (_, Some(at), true) => format!("0x{at:x} -> 0x{:x}", f.new_address),
                (_, Some(at), false) => format!("0x{at:x} (not redirected here now)"),
            };
            let _ = writeln!(out, "      {}{place}  {status}", f.name);
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch.
pub fn utc_time(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_764_073_805), "2025-11-25 12:30:05 UTC");
    }
}
