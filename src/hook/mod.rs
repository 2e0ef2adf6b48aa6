//! The git deploy hook: `git push deploy main` live-patches the running service, or the push is
//! rejected and nothing stays applied. The deployed branch never disagrees with what runs.

mod config;
mod install;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hotpatch_applier::{apply_all, ApplyOptions, Target};
use hotpatch_differ::{read_git_revision, Snapshot};

use crate::cli::{HookArgs, HookCommand};
use crate::pipeline::{self, Timings};
use crate::refusal;

use config::{find_processes, DeployConfig, GitConfig};

/// git's name for "no object": the old side of a new ref, the new side of a deletion.
const ZERO: &str = "0000000000000000000000000000000000000000";

/// Runs `hotpatch hook ...`.
pub fn run(args: &HookArgs) -> Result<()> {
    match &args.command {
        HookCommand::Install { git_dir, force } => {
            let hook = install::install(git_dir, *force)?;
            println!(
                "installed {}: pushes to the deploy branch now live-patch the service",
                hook.display()
            );
            Ok(())
        }
        HookCommand::PreReceive { dry_run } => {
            let git_dir = std::env::var_os("GIT_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            let stdin = std::io::stdin();
            let mut rejected = false;
            for line in stdin.lock().lines() {
                let line = line.context("reading the pushed refs from standard input")?;
                let Some(update) = RefUpdate::parse(&line) else {
                    if line.trim().is_empty() {
                        continue;
                    }
                    bail!("unexpected pre-receive input line: `{line}`");
                };
                match deploy(&git_dir, &update, *dry_run) {
                    Ok(message) => say(&format!("{}: {message}", update.name)),
                    Err(error) => {
                        rejected = true;
                        for line in crate::render::error_text(&error).lines() {
                            eprintln!("hotpatch: {line}");
                        }
                        eprintln!(
                            "hotpatch: {}: push rejected; the running service was not changed",
                            update.name
                        );
                    }
                }
            }
            if rejected {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn say(message: &str) {
    for line in message.lines() {
        println!("hotpatch: {line}");
    }
}

/// The refusals the pusher accepted with `git push -o force=ITEM` (git hands push options to the
/// hook as `GIT_PUSH_OPTION_COUNT` and `GIT_PUSH_OPTION_<i>`).
fn forced_by_push_options() -> Vec<String> {
    let count: usize = std::env::var("GIT_PUSH_OPTION_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (0..count)
        .filter_map(|i| std::env::var(format!("GIT_PUSH_OPTION_{i}")).ok())
        .filter_map(|option| option.strip_prefix("force=").map(str::to_string))
        .collect()
}

/// One line of pre-receive input: `OLD NEW REFNAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefUpdate {
    old: String,
    new: String,
    name: String,
}

impl RefUpdate {
    fn parse(line: &str) -> Option<RefUpdate> {
        let mut words = line.split_whitespace();
        let (old, new, name) = (words.next()?, words.next()?, words.next()?);
        if words.next().is_some() {
            return None;
        }
        Some(RefUpdate {
            old: old.to_string(),
            new: new.to_string(),
            name: name.to_string(),
        })
    }
}

/// Handles one ref update: accepted untouched, deployed, or an error that rejects the push.
fn deploy(git_dir: &Path, update: &RefUpdate, dry_run: bool) -> Result<String> {
    let git_config = GitConfig::read(git_dir)?;
    let config_rev = if update.new == ZERO {
        &update.old
    } else {
        &update.new
    };
    let config_snapshot = read_git_revision(git_dir, config_rev)?;
    let config = DeployConfig::resolve(config_snapshot.text("hotpatch.toml"), &git_config)?;
    if update.name != format!("refs/heads/{}", config.branch) {
        return Ok(format!(
            "not the deploy branch `{}`: accepted without patching",
            config.branch
        ));
    }
    if update.old == ZERO {
        return Ok(
            "first push of the deploy branch: nothing runs from it yet, accepted without patching"
                .into(),
        );
    }
    if update.new == ZERO {
        bail!(
            "refusing to delete the deploy branch `{}`: the running service is built from it",
            config.branch
        );
    }
    let spec = config.target.clone().context(
        "no deploy target is configured: set `pid`, `pidfile` or `exe` under [deploy] in hotpatch.toml, \
         or `git config hotpatch.pidfile PATH` (or hotpatch.pid / hotpatch.exe) in the deploy repository",
    )?;
    // Processes started after this moment are new to `hotpatch watch` (see `crate::state`).
    let listed_at = std::time::SystemTime::now();
    let pids = find_processes(&spec)?;
    if pids.is_empty() {
        bail!("no running process matches the deploy target {spec:?}");
    }
    let old = read_git_revision(git_dir, &update.old)?;
    // A deploy repository is bare: the build directory is only what the config names.
    let settings = crate::build_flags::BuildSettings::for_repo(
        None,
        config.cflags.as_deref(),
        config.build_dir.as_deref(),
        None,
    )?;
    let model = crate::build_flags::discover_model(&settings, &config_snapshot)?;
    // The program of the first process decides which files are part of it (all run one binary).
    let program = pids
        .first()
        .and_then(|&pid| Target::inspect(pid).ok())
        .and_then(|t| pipeline::program_of(&t, &old, &config_snapshot));
    // The cache keeps the new side's preprocessing: the old side of the next push.
    let cache = hotpatch_builder::Cache::from_env(false)?;
    let mut changes = pipeline::classify(
        (&old, &config_snapshot),
        config.cflags.as_deref(),
        (Some(&model), &cache),
        program,
    );
    refusal::apply_forces(&mut changes, &forced_by_push_options());
    for warning in &changes.warnings {
        say(&format!("warning: {warning}"));
    }
    if !changes.refusals.is_empty() {
        return Err(rejection(&changes));
    }
    for &pid in &pids {
        check_runs_old_side(git_dir, pid, &old, config.cflags.as_deref())?;
    }
    if !pipeline::has_patchable_changes(&changes) {
        return Ok(format!(
            "no function changed between {} and {}: nothing to patch, accepted",
            changes.old_label, changes.new_label
        ));
    }
    deploy_to(
        (&pids, listed_at),
        (&old, &config_snapshot, git_dir),
        &changes,
        &config,
        &model,
        dry_run,
    )
}

/// The push's rejection for the refusals left in `changes`, as the pusher sees it.
fn rejection(changes: &hotpatch_differ::ChangeSet) -> anyhow::Error {
    let diagnostics: Vec<String> = changes
        .refusals
        .iter()
        .map(|r| refusal::diagnostic(r, false))
        .collect();
    anyhow::anyhow!(
        "{}\n{} change{} cannot be applied to the running service \
         (to accept one anyway: git push -o force='ITEM' ..., with receive.advertisePushOptions \
         enabled in the deploy repository)",
        diagnostics.join("\n"),
        changes.refusals.len(),
        if changes.refusals.len() == 1 { "" } else { "s" }
    )
}

/// Refuses to patch a process that runs something other than the push's old side. The ledger in
/// the process names the commit its newest live patch brought; a process without patches runs
/// what the deploy branch held when it was started. A recorded commit whose C code equals the old
/// side (the branch moved on by changes that needed no patch) is accepted.
fn check_runs_old_side(
    git_dir: &Path,
    pid: i32,
    old: &Snapshot,
    cflags: Option<&str>,
) -> Result<()> {
    let installed = hotpatch_applier::installed_patches(pid)
        .with_context(|| format!("cannot read the patches installed in pid {pid}"))?;
    let newest = installed
        .iter()
        .rev()
        .find(|p| p.state == hotpatch_applier::LedgerState::Applied);
    let Some(commit) = newest.and_then(|p| p.record.manifest.as_ref()?.new_commit.clone()) else {
        return Ok(());
    };
    if Some(&commit) == old.commit.as_ref() {
        return Ok(());
    }
    let running = read_git_revision(git_dir, &commit).with_context(|| {
        format!("pid {pid} runs commit {commit}, which the deploy repository lacks")
    })?;
    let drift = pipeline::classify(
        (&running, old),
        cflags,
        (None, &hotpatch_builder::Cache::default()),
        None,
    );
    if drift.functions.is_empty() && drift.refusals.is_empty() {
        return Ok(());
    }
    bail!(
        "pid {pid} runs {} but this push moves the branch from {}: refusing to patch a process \
         that runs something else",
        running.label,
        old.label
    )
}

/// Patches every process, all or nothing: when one fails, those already patched are reverted.
/// The patch is recorded for `hotpatch watch` (as of `listed_at`, when the processes were
/// listed), so the service's new processes get it too.
fn deploy_to(
    (pids, listed_at): (&[i32], std::time::SystemTime),
    (old, new, git_dir): (&Snapshot, &Snapshot, &Path),
    changes: &hotpatch_differ::ChangeSet,
    config: &DeployConfig,
    model: &hotpatch_builder::BuildModel,
    dry_run: bool,
) -> Result<String> {
    let mut targets = Vec::new();
    let mut plans = Vec::new();
    let mut objects = Vec::new();
    // One build per executable: the processes of a family run the same one.
    let mut built: Option<(Option<String>, pipeline::BuiltUnits)> = None;
    for &pid in pids {
        let target = Target::inspect(pid).with_context(|| format!("cannot inspect pid {pid}"))?;
        let exe = crate::state::exe_build_id(pid).ok().flatten();
        let reuse = matches!(&built, Some((id, _)) if id.is_some() && *id == exe);
        let (_, patch) = match &mut built {
            Some(same) if reuse => same,
            slot => {
                let mut timings = Timings::default();
                // The cache keeps the new side's compiles: the old side of the next push.
                let cache = hotpatch_builder::Cache::from_env(false)?;
                let patch = pipeline::build_patch(
                    changes,
                    (old, new),
                    Some(&target),
                    (model, &cache),
                    &mut timings,
                )?;
                for warning in &patch.warnings {
                    say(&format!("warning: {warning}"));
                }
                slot.insert((exe, patch))
            }
        };
        let mut accepted = changes.clone();
        let forced = forced_by_push_options();
        refusal::accept_built(&mut accepted, &patch.built, &forced);
        let plan = match accepted.refusals.is_empty() {
            true => crate::proof::prove(
                &target,
                &patch.object,
                (old, new, Some(git_dir)),
                &mut accepted,
                &forced,
                &format!("cannot patch pid {pid}"),
            )?,
            false => None,
        };
        let Some(plan) = plan.filter(|_| accepted.refusals.is_empty()) else {
            return Err(rejection(&accepted));
        };
        targets.push(target);
        plans.push(plan);
        objects.push(patch.built.object.clone());
    }
    let names = |plan: &hotpatch_applier::Plan| {
        plan.functions
            .iter()
            .map(|f| f.target.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if dry_run {
        let lines: Vec<String> = targets
            .iter()
            .zip(&plans)
            .map(|(target, plan)| {
                format!("dry run: would patch pid {}: {}", target.pid(), names(plan))
            })
            .collect();
        return Ok(lines.join("\n"));
    }
    let options = ApplyOptions {
        timeout: Duration::from_secs_f64(config.timeout),
        wait_return: config.wait_return,
        threadwise: false,
    };
    let jobs: Vec<(&Target, &hotpatch_applier::Plan)> = targets.iter().zip(&plans).collect();
    let reports =
        apply_all(&jobs, &options).context("cannot patch every process of the service")?;
    for ((target, report), object) in targets.iter().zip(&reports).zip(&objects) {
        crate::state::after_apply(&[target.pid()], &report.patch_id, object, listed_at);
    }
    let lines: Vec<String> = targets
        .iter()
        .zip(&plans)
        .zip(&reports)
        .map(|((target, plan), report)| {
            format!(
                "patched pid {} to {} in {} µs (patch {}): {}",
                target.pid(),
                changes.new_label,
                report.pause_us,
                report.patch_id,
                names(plan)
            )
        })
        .collect();
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_receive_lines_parse() {
        let update = RefUpdate::parse(&format!("{ZERO} abc refs/heads/main")).unwrap();
        assert_eq!(
            (
                update.old.as_str(),
                update.new.as_str(),
                update.name.as_str()
            ),
            (ZERO, "abc", "refs/heads/main")
        );
        assert!(RefUpdate::parse("only two").is_none());
        assert!(RefUpdate::parse("a b c d").is_none());
    }
}
