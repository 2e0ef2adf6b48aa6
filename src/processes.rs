//! The processes a command works on: every `--pid` with its family (the descendants running the
//! same executable: a pre-forking server's workers, unless `--no-children`), and with `--exe`
//! every process running that executable. Several processes are patched as one: every one is
//! checked before anything is written to any, and if one fails after others were patched, those
//! are reverted. A process that has the patch already is skipped, with a note.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use hotpatch_applier::{
    applied_sequence, apply_all, family_of, pids_of_exe, roll_back, ApplyError, ApplyOptions,
    ApplyReport, CheckReport, PatchObject, Plan, Target,
};
use serde_json::{json, Value};

/// The processes chosen, in groups: each `--pid` (or process of `--exe` not already in a group)
/// with the descendants of its family, the named process first.
#[derive(Debug, Default)]
pub struct Selection {
    /// The groups; no pid is in two.
    pub groups: Vec<Vec<i32>>,
    /// The pids found rather than named (family members, processes of `--exe`): one that exits
    /// before it is patched is dropped with a note, not an error.
    pub found: Vec<i32>,
    /// What was decided about families, for the operator: a family taken as one.
    pub notes: Vec<String>,
    /// Descendants of the same executable left out (`--no-children`): they keep their code.
    pub warnings: Vec<String>,
    /// The pids whose families are taken (every `--pid` unless `--no-children`): listed again
    /// after the apply, for processes they forked meanwhile.
    pub families: Vec<i32>,
}

impl Selection {
    /// Every pid, group by group.
    pub fn pids(&self) -> Vec<i32> {
        self.groups.iter().flatten().copied().collect()
    }

    /// Prints the notes on standard error, and the warnings unless `warned` (they are in the
    /// command's own warnings); with `--json` both are in the document instead.
    pub fn print_notes(&self, json: bool, warned: bool) {
        if json {
            return;
        }
        for note in &self.notes {
            eprintln!("note: {note}");
        }
        if !warned {
            for warning in &self.warnings {
                eprintln!("warning: {warning}");
            }
        }
    }
}

/// Every `--pid` in order, each with its family when `children`, then the processes running
/// `exe`, without repeats. A pid that does not exist is kept as given: inspecting it says so.
pub fn resolve(pids: &[i32], exe: Option<&Path>, children: bool) -> Result<Selection> {
    let mut selection = Selection::default();
    for &pid in pids {
        if selection.pids().contains(&pid) {
            continue;
        }
        if children {
            selection.families.push(pid);
        }
        let members = family_of(pid).unwrap_or_else(|_| vec![pid]);
        let new: Vec<i32> = members
            .into_iter()
            .filter(|p| !selection.pids().contains(p))
            .collect();
        let descendants: Vec<i32> = new.iter().copied().filter(|&p| p != pid).collect();
        if descendants.is_empty() {
            selection.groups.push(vec![pid]);
        } else if children {
            selection.notes.push(format!(
                "pid {pid} has {} descendant{} running the same executable ({}): the family \
                 is taken as one (--no-children: pid {pid} alone)",
                descendants.len(),
                crate::render::plural(descendants.len()),
                list(&descendants)
            ));
            selection.found.extend(&descendants);
            selection.groups.push(new);
        } else {
            selection.warnings.push(format!(
                "pid {pid} has {} descendant{} running the same executable ({}), left \
                 out (--no-children): they keep the code they run",
                descendants.len(),
                crate::render::plural(descendants.len()),
                list(&descendants)
            ));
            selection.groups.push(vec![pid]);
        }
    }
    if let Some(exe) = exe {
        let found = pids_of_exe(exe)
            .with_context(|| format!("cannot list the processes running {}", exe.display()))?;
        if found.is_empty() {
            bail!("no process runs {}", exe.display());
        }
        for pid in found {
            if !selection.pids().contains(&pid) {
                selection.found.push(pid);
                selection.groups.push(vec![pid]);
            }
        }
    }
    Ok(selection)
}

/// The pids as `1, 2, 3`.
pub fn list(pids: &[i32]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What became of one process of a group.
enum Outcome {
    /// Patched now.
    Patched(ApplyReport),
    /// It has the patch already (as this sequence number): skipped.
    Skipped(u64),
    /// Forked during the apply, after its parent's commit: it has the patch (as this sequence
    /// number) from its parent.
    Inherited(u64),
    /// It exited before it was patched (a process found, not named).
    Exited,
}

/// The patch object and when its processes were listed, for the record `hotpatch watch` reads.
pub struct Record<'a> {
    /// The patch object's bytes.
    pub object: &'a [u8],
    /// When the processes were listed.
    pub listed_at: SystemTime,
}

/// Patches every process of `selection` with `object` as one (`first`: the first process,
/// inspected already), and prints one line per process (or one JSON document): patched,
/// skipped because it has the patch already, or exited meanwhile. Records the patch for
/// `hotpatch watch`.
pub fn apply_group(
    selection: &Selection,
    first: Option<(Target, Option<Plan>)>,
    object: &PatchObject,
    options: &ApplyOptions,
    record: Record<'_>,
    (json, forced): (bool, &[String]),
) -> Result<()> {
    let pids = selection.pids();
    let patch_id = object.patch_id();
    let mut first = first;
    let mut outcomes: Vec<(i32, Option<Outcome>)> = Vec::new();
    let mut jobs: Vec<(Target, Plan)> = Vec::new();
    for &pid in &pids {
        let inspected = first.take_if(|(t, _)| t.pid() == pid);
        match prepare(pid, inspected, object, &patch_id, forced) {
            Ok(Prepared::Job(job)) => {
                jobs.push(*job);
                outcomes.push((pid, None));
            }
            Ok(Prepared::Skip(sequence)) => outcomes.push((pid, Some(Outcome::Skipped(sequence)))),
            Err(Unprepared::Gone(_)) if selection.found.contains(&pid) => {
                outcomes.push((pid, Some(Outcome::Exited)))
            }
            Err(Unprepared::Gone(e) | Unprepared::Failed(e)) => {
                return Err(e.context(format!(
                    "nothing was written to any of the {} processes",
                    pids.len()
                )))
            }
        }
    }
    let reports = if jobs.is_empty() {
        Vec::new()
    } else {
        let refs: Vec<(&Target, &Plan)> = jobs.iter().map(|(t, p)| (t, p)).collect();
        crate::spinner::while_waiting(
            "waiting for the threads of every process to leave the code being replaced",
            json,
            || apply_all(&refs, options),
        )
        .context("cannot patch every process")?
    };
    let mut reports = reports.into_iter();
    for (_, outcome) in &mut outcomes {
        if outcome.is_none() {
            *outcome = reports.next().map(Outcome::Patched);
        }
    }
    let mut outcomes: Vec<(i32, Outcome)> = outcomes
        .into_iter()
        .filter_map(|(pid, o)| Some((pid, o?)))
        .collect();
    let mut notes = selection.notes.clone();
    patch_latecomers(
        selection,
        (object, forced),
        options,
        &mut outcomes,
        &mut notes,
    )?;
    let with_patch: Vec<i32> = outcomes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Exited))
        .map(|(pid, _)| *pid)
        .collect();
    crate::state::after_apply(&with_patch, &patch_id, record.object, record.listed_at);
    print(selection, &notes, &patch_id, &outcomes, json)
}

/// How many times the families are listed again after an apply: each listing finds the
/// processes forked before the commits of the round before it, so a round finds none once
/// nobody forks during the commits.
const LATE_ROUNDS: usize = 8;

/// Lists the families of `selection` again after their apply, and patches the processes they
/// forked meanwhile: one forked after its parent's commit has the patch (an
/// [`Outcome::Inherited`]), one forked before it, after the listing, runs the old code and is
/// patched now. When one of those cannot be patched, every process this apply patched is
/// rolled back (all or none) and the error names it. A family that still forks new processes
/// after [`LATE_ROUNDS`] rounds is reported in a note naming them (`hotpatch watch` patches
/// them). `forced` as for the first listing.
fn patch_latecomers(
    selection: &Selection,
    (object, forced): (&PatchObject, &[String]),
    options: &ApplyOptions,
    outcomes: &mut Vec<(i32, Outcome)>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let patch_id = object.patch_id();
    let mut known: Vec<i32> = selection.pids();
    for _ in 0..LATE_ROUNDS {
        let late = unknown_members(selection, &known);
        if late.is_empty() {
            return Ok(());
        }
        known.extend(&late);
        notes.push(format!(
            "{} forked during the apply, after the family was listed: checked too",
            pids_phrase(&late)
        ));
        let mut jobs: Vec<(i32, Target, Plan)> = Vec::new();
        let mut failure = None;
        for &pid in &late {
            match prepare(pid, None, object, &patch_id, forced) {
                Ok(Prepared::Job(job)) => jobs.push((pid, job.0, job.1)),
                Ok(Prepared::Skip(sequence)) => outcomes.push((pid, Outcome::Inherited(sequence))),
                Err(Unprepared::Gone(_)) => outcomes.push((pid, Outcome::Exited)),
                Err(Unprepared::Failed(e)) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && !jobs.is_empty() {
            let refs: Vec<(&Target, &Plan)> = jobs.iter().map(|(_, t, p)| (t, p)).collect();
            match apply_all(&refs, options) {
                Ok(reports) => {
                    let patched = jobs.iter().map(|(pid, _, _)| *pid).zip(reports);
                    outcomes.extend(patched.map(|(pid, r)| (pid, Outcome::Patched(r))));
                }
                Err(e) => failure = Some(anyhow::Error::new(e)),
            }
        }
        if let Some(error) = failure {
            let done: Vec<(i32, &str)> = outcomes
                .iter()
                .filter(|(_, o)| matches!(o, Outcome::Patched(_)))
                .map(|(pid, _)| (*pid, patch_id.as_str()))
                .collect();
            let (rolled_back, not_rolled_back) = roll_back(&done, options);
            return Err(error.context(format!(
                "{} forked during the apply cannot be patched: rolled back the processes                  patched: {rolled_back}{not_rolled_back}",
                pids_phrase(&late)
            )));
        }
    }
    let still = unknown_members(selection, &known);
    if !still.is_empty() {
        notes.push(format!(
            "the family still forks: {} not checked after {LATE_ROUNDS} listings (a process              forked after its parent's commit has the patch; `hotpatch watch` patches the others)",
            pids_phrase(&still)
        ));
    }
    Ok(())
}

/// The members of the families of `selection` now, except `known`.
fn unknown_members(selection: &Selection, known: &[i32]) -> Vec<i32> {
    selection
        .families
        .iter()
        .flat_map(|&root| family_of(root).unwrap_or_default())
        .filter(|pid| !known.contains(pid))
        .collect()
}

/// `pid 7` or `pids 7, 8`.
pub fn pids_phrase(pids: &[i32]) -> String {
    match pids {
        [one] => format!("pid {one}"),
        _ => format!("pids {}", list(pids)),
    }
}

/// How another process of a group fared in a dry run.
#[derive(Debug, serde::Serialize)]
pub struct OtherCheck {
    /// Its pid.
    pub pid: i32,
    /// `checked`, `skipped` (it has the patch already) or `exited`.
    pub status: &'static str,
    /// The live check, when it was checked.
    pub check: Option<CheckReport>,
}

impl OtherCheck {
    /// Why it was not checked, in words (when it was not).
    pub fn why(&self) -> &'static str {
        match self.status {
            "skipped" => "skipped, it has the patch already",
            "exited" => "exited before it was checked",
            _ => "checked",
        }
    }
}

/// A dry run of every process of `selection` after the first (which the caller checks with its
/// own report): each is planned and checked as the apply would, or found to have the patch
/// already. The first that fails is the error, naming its pid; nothing is written to any.
pub fn check_others(
    selection: &Selection,
    object: &PatchObject,
    options: &ApplyOptions,
) -> Result<Vec<OtherCheck>> {
    let pids = selection.pids();
    let mut out = Vec::new();
    for &pid in pids.iter().skip(1) {
        let (status, check) = match prepare(pid, None, object, &object.patch_id(), &[]) {
            Ok(Prepared::Job(job)) => {
                let check = hotpatch_applier::check(&job.0, &job.1, options)
                    .with_context(|| format!("cannot patch pid {pid}"))?;
                ("checked", Some(check))
            }
            Ok(Prepared::Skip(_)) => ("skipped", None),
            Err(Unprepared::Gone(_)) if selection.found.contains(&pid) => ("exited", None),
            Err(Unprepared::Gone(e) | Unprepared::Failed(e)) => return Err(e),
        };
        out.push(OtherCheck { pid, status, check });
    }
    Ok(out)
}

/// One process made ready for the group's apply.
enum Prepared {
    /// Inspected and planned.
    Job(Box<(Target, Plan)>),
    /// It has the patch already, as this sequence number.
    Skip(u64),
}

/// Why a process could not be made ready.
enum Unprepared {
    /// It does not exist (any more).
    Gone(anyhow::Error),
    /// Anything else.
    Failed(anyhow::Error),
}

/// Inspects and plans `pid` for `object` (unless `inspected` has it done: the first process,
/// planned with the proofs of `crate::proof`, which hold for every process of one executable),
/// or says it has the patch already.
fn prepare(
    pid: i32,
    inspected: Option<(Target, Option<Plan>)>,
    object: &PatchObject,
    patch_id: &str,
    forced: &[String],
) -> Result<Prepared, Unprepared> {
    let classify = |e: ApplyError| {
        let gone = is_gone(&e);
        let e = anyhow::Error::new(e).context(format!("cannot inspect pid {pid}"));
        if gone {
            Unprepared::Gone(e)
        } else {
            Unprepared::Failed(e)
        }
    };
    if let Some(sequence) = applied_sequence(pid, patch_id).map_err(classify)? {
        return Ok(Prepared::Skip(sequence));
    }
    let (target, plan) = match inspected {
        Some(done) => done,
        None => (Target::inspect(pid).map_err(classify)?, None),
    };
    let plan = match plan {
        Some(plan) => plan,
        None => {
            crate::build_flags::plan(&target, object, &format!("cannot patch pid {pid}"), forced)
                .map_err(Unprepared::Failed)?
        }
    };
    Ok(Prepared::Job(Box::new((target, plan))))
}

/// Whether `pid` has the patch `patch_id` applied already (a process whose ledger cannot be
/// read does not).
pub fn has_patch(pid: i32, patch_id: &str) -> bool {
    matches!(applied_sequence(pid, patch_id), Ok(Some(_)))
}

/// Whether process `pid` has exited: no such process, or a zombie its parent has not reaped.
pub fn has_exited(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some(s) if s != 'Z' && s != 'X')
}

/// Whether `error` says the process is gone.
fn is_gone(error: &ApplyError) -> bool {
    matches!(
        error,
        ApplyError::NoSuchProcess(_)
            | ApplyError::Ptrace(hotpatch_applier::PtraceError::NoSuchProcess(_))
    )
}

fn print(
    selection: &Selection,
    notes: &[String],
    patch_id: &str,
    outcomes: &[(i32, Outcome)],
    json: bool,
) -> Result<()> {
    if json {
        let processes: Vec<Value> = outcomes
            .iter()
            .map(|(pid, outcome)| match outcome {
                Outcome::Patched(r) => {
                    let mut value = crate::render::report_json(r);
                    value["pid"] = json!(pid);
                    value["status"] = json!("patched");
                    value
                }
                Outcome::Skipped(sequence) | Outcome::Inherited(sequence) => {
                    let (status, reason) = match outcome {
                        Outcome::Skipped(_) => ("skipped", "it has patch {id} already"),
                        _ => (
                            "inherited",
                            "forked during the apply, it has patch {id} from its parent",
                        ),
                    };
                    json!({
                        "pid": pid,
                        "status": status,
                        "patch_id": patch_id,
                        "sequence": sequence,
                        "reason": format!("{} (as #{sequence})", reason.replace("{id}", patch_id)),
                    })
                }
                Outcome::Exited => json!({
                    "pid": pid,
                    "status": "exited",
                    "patch_id": patch_id,
                    "reason": "it exited before it was patched",
                }),
            })
            .collect();
        return crate::outcome::print_json(&json!({
            "patch_id": patch_id,
            "processes": processes,
            "notes": notes,
            "warnings": selection.warnings,
        }));
    }
    for note in notes.iter().skip(selection.notes.len()) {
        eprintln!("note: {note}");
    }
    let patched = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Patched(_)))
        .count();
    println!(
        "patched {patched} of {} processes (all or none) with patch {patch_id}:",
        outcomes.len()
    );
    for (pid, outcome) in outcomes {
        match outcome {
            Outcome::Patched(r) => {
                let names: Vec<&str> = r.functions.iter().map(|f| f.name.as_str()).collect();
                println!(
                    "  pid {pid}: patched in {} µs ({} thread{} stopped): {}",
                    r.pause_us,
                    r.threads,
                    crate::render::plural(r.threads),
                    names.join(", ")
                );
                for line in crate::register_contract::lines(&r.register_contracts, false) {
                    println!("  {line}");
                }
            }
            Outcome::Skipped(sequence) => {
                println!("  pid {pid}: skipped, it has the patch already (as #{sequence})")
            }
            Outcome::Inherited(sequence) => println!(
                "  pid {pid}: forked during the apply, it has the patch from its parent (as #{sequence})"
            ),
            Outcome::Exited => println!("  pid {pid}: exited before it was patched"),
        }
    }
    Ok(())
}
