//! `hotpatch watch`: new processes get the fix. A patched service that starts new processes
//! (pre-forking servers that exec their workers, restarts, cron jobs) would run them unpatched;
//! the watcher looks at `/proc` every `--interval-ms` (20 ms) and applies the patches recorded for
//! a new process's executable (by GNU build id, see [`crate::state`]) to it, oldest first, each
//! one it does not have yet. "New" is relative to each patch: a process (or an exec) that began
//! after the apply listed its processes. Older processes are left as the operator left them (one
//! patched with `--pid` alone does not patch its siblings). A process that exec's is new again,
//! even into the same executable (its stack moved). A forked child of a patched process inherits
//! its patches and is left alone.
//!
//! Latency: a process is seen within one interval of its exec, then attached and patched (each
//! patch takes the usual pause); each line it prints says how long after the process started.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Args;
use hotpatch_applier::{installed_patches, ApplyOptions, PatchObject, Target};

use crate::state;

/// Arguments of `hotpatch watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch only the processes of this executable (repeatable; default: every executable that
    /// has patches recorded).
    #[arg(long, value_name = "PATH")]
    pub exe: Vec<PathBuf>,
    /// The state directory (default: $HOTPATCH_STATE_DIR, else /var/lib/hotpatch).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How often to look for new processes, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// Seconds to keep retrying while a thread of a new process is inside a function being
    /// replaced.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = crate::cli::seconds)]
    pub timeout: f64,
}

/// How much later than `/proc` says a process may have started.
const CLOCK_SLACK: Duration = Duration::from_millis(50);

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on Linux x86-64).
const TICKS_PER_SECOND: u64 = 100;

/// How long one attempt at a new process may wait for its threads; a failed attempt is tried
/// again at the next poll (see `Watcher::poll`).
const ATTEMPT: Duration = Duration::from_millis(100);

/// Runs `hotpatch watch` until it is stopped.
pub fn run(args: &WatchArgs) -> Result<()> {
    let state = args.state_dir.clone().unwrap_or_else(state::dir);
    let only = args
        .exe
        .iter()
        .map(|exe| {
            std::fs::canonicalize(exe).with_context(|| format!("cannot find {}", exe.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut watcher = Watcher {
        state,
        only,
        options: ApplyOptions {
            timeout: Duration::from_secs_f64(args.timeout),
            wait_return: false,
            threadwise: false,
        },
        seen: HashMap::new(),
        build_ids: HashMap::new(),
        me: std::process::id() as i32,
    };
    let interval = Duration::from_millis(args.interval_ms);
    let which = if watcher.only.is_empty() {
        "every executable with recorded patches".to_string()
    } else {
        let names: Vec<String> = watcher
            .only
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        names.join(", ")
    };
    println!(
        "watching for new processes of {which} every {} ms; patches recorded in {}",
        args.interval_ms,
        watcher.state.display()
    );
    loop {
        let started = Instant::now();
        watcher.poll()?;
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
}

/// What the watcher knows of a process: the image it runs.
struct Seen {
    /// Its executable.
    exe: PathBuf,
    /// The executable's build id.
    build_id: Option<String>,
    /// Where its stack started: an exec moves it, even into the same executable.
    start_stack: Option<u64>,
    /// When this image began: the process's start, or the exec the watcher saw.
    born: SystemTime,
    /// The recorded patches already considered for it (applied, present, or older than it).
    considered: HashSet<String>,
}

struct Watcher {
    state: PathBuf,
    only: Vec<PathBuf>,
    options: ApplyOptions,
    seen: HashMap<i32, Seen>,
    /// Build ids by executable file (device, inode, modification time).
    build_ids: HashMap<(u64, u64, i64), Option<String>>,
    me: i32,
}

impl Watcher {
    /// One look at every process: each image (a new process, or an exec) of an executable with
    /// recorded patches gets every patch recorded after the apply chose its processes (the patch's
    /// `as_of`) and before the image began — those the apply could not have patched.
    fn poll(&mut self) -> Result<()> {
        let records = self.records();
        let entries = std::fs::read_dir("/proc").context("cannot list /proc")?;
        let mut alive = HashSet::new();
        let mut due = Vec::new();
        for pid in entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if pid == self.me {
                continue;
            }
            alive.insert(pid);
            // Kernel threads and processes that just exited have no executable to read.
            let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
                continue;
            };
            let recorded_for = |seen: &Seen| seen.build_id.as_ref().and_then(|id| records.get(id));
            let exec_seen = match self.seen.get(&pid) {
                None => false,
                Some(seen) if seen.exe != exe => true,
                Some(seen) => match recorded_for(seen) {
                    None => continue,
                    // Only a watched executable's stack is looked at: an exec into itself.
                    Some(_) => start_stack(pid) != seen.start_stack,
                },
            };
            if !self.seen.contains_key(&pid) || exec_seen {
                let wanted = self.only.is_empty() || self.only.contains(&exe);
                let build_id = if wanted { self.build_id(pid) } else { None };
                let born = if exec_seen {
                    SystemTime::now()
                } else {
                    // Start times have a 10 ms resolution: err towards "new" (a process the
                    // apply patched already is skipped as such).
                    started_at(pid).map_or_else(SystemTime::now, |t| t + CLOCK_SLACK)
                };
                let image = Seen {
                    exe: exe.clone(),
                    build_id,
                    start_stack: start_stack(pid),
                    born,
                    considered: HashSet::new(),
                };
                self.seen.insert(pid, image);
            }
            let Some(seen) = self.seen.get_mut(&pid) else {
                continue;
            };
            let Some(recorded) = recorded_for(seen) else {
                continue;
            };
            let fresh: Vec<&state::Recorded> = recorded
                .iter()
                .filter(|r| seen.considered.insert(r.patch_id.clone()))
                .filter(|r| r.as_of <= seen.born)
                .collect();
            if !fresh.is_empty() {
                due.push((pid, exe, fresh.into_iter().cloned().collect::<Vec<_>>()));
            }
        }
        self.seen.retain(|pid, _| alive.contains(pid));
        // A process seen just after its exec may still be loading its libraries (its code there
        // has no unwind tables yet, or no module to resolve against): each attempt is short,
        // and a failed one is tried again at the next poll with a fresh look at the process,
        // until the process is older than the timeout; only then is the error said.
        let attempt = ApplyOptions {
            timeout: self.options.timeout.min(ATTEMPT),
            ..self.options.clone()
        };
        for (pid, exe, patches) in due {
            let Err(error) = patch(pid, &patches, &attempt) else {
                continue;
            };
            let young = age_ms(pid).is_some_and(|ms| ms < self.options.timeout.as_millis() as u64);
            match self.seen.get_mut(&pid) {
                Some(seen) if young => {
                    for recorded in &patches {
                        seen.considered.remove(&recorded.patch_id);
                    }
                }
                _ => eprintln!(
                    "hotpatch watch: pid {pid} ({}): {}",
                    exe.display(),
                    crate::render::error_text(&error)
                ),
            }
        }
        Ok(())
    }

    /// The recorded patches of every build id that has some, oldest first.
    fn records(&self) -> HashMap<String, Vec<state::Recorded>> {
        let Ok(entries) = std::fs::read_dir(&self.state) else {
            return HashMap::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|id| {
                let recorded = state::recorded(&self.state, &id).ok()?;
                (!recorded.is_empty()).then_some((id, recorded))
            })
            .collect()
    }

    /// The build id of `pid`'s executable, read once per executable file.
    fn build_id(&mut self, pid: i32) -> Option<String> {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let meta = std::fs::metadata(&exe).ok()?;
        let key = (meta.dev(), meta.ino(), meta.mtime());
        if let Some(id) = self.build_ids.get(&key) {
            return id.clone();
        }
        let id = state::file_build_id(&exe).ok().flatten();
        self.build_ids.insert(key, id.clone());
        id
    }
}

/// Applies `patches` (recorded for `pid`'s executable, oldest first) that `pid` does not have;
/// stops at the first that fails (the later ones were made on top of it). Says what it did on
/// standard output, what failed on standard error.
/// Applies to `pid` each of `patches` it does not have yet, saying each one done.
fn patch(pid: i32, patches: &[state::Recorded], options: &ApplyOptions) -> Result<()> {
    let installed: HashSet<String> = installed_patches(pid)
        .with_context(|| format!("cannot read the patches of pid {pid}"))?
        .into_iter()
        .filter(|p| p.is_live())
        .map(|p| p.patch_id)
        .collect();
    for patch in patches.iter().filter(|r| !installed.contains(&r.patch_id)) {
        let bytes = std::fs::read(&patch.path)
            .with_context(|| format!("cannot read {}", patch.path.display()))?;
        let object = PatchObject::parse(bytes)
            .with_context(|| format!("cannot load {}", patch.path.display()))?;
        let target = Target::inspect(pid)?;
        // The same proofs as `apply` (type layouts included); nothing forced is recorded, so
        // a patch applied elsewhere with --force is refused here, with the reason.
        let plan = crate::build_flags::plan(
            &target,
            &object,
            &format!("cannot apply patch {}", patch.patch_id),
            &[],
        )?;
        let report = hotpatch_applier::apply(&target, &plan, options)
            .with_context(|| format!("cannot apply patch {}", patch.patch_id))?;
        let age = age_ms(pid)
            .map(|ms| format!(", {ms} ms after it started"))
            .unwrap_or_default();
        println!(
            "patched new pid {pid} ({}) with patch {} in {} µs{age}",
            target.exe_path().display(),
            report.patch_id,
            report.pause_us
        );
    }
    Ok(())
}

/// Field `n` (1-based, as `proc(5)` numbers them) of `/proc/PID/stat`.
fn stat_field(pid: i32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// Where the stack of `pid` started (`startstack`, field 28).
fn start_stack(pid: i32) -> Option<u64> {
    stat_field(pid, 28)
}

/// When `pid` started, on the wall clock.
fn started_at(pid: i32) -> Option<SystemTime> {
    SystemTime::now().checked_sub(Duration::from_millis(age_ms(pid)?))
}

/// Milliseconds since `pid` started (`starttime`, field 22, against `/proc/uptime`); 10 ms
/// resolution.
fn age_ms(pid: i32) -> Option<u64> {
    let started = stat_field(pid, 22)? * 1000 / TICKS_PER_SECOND;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let now: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    Some(((now * 1000.0) as u64).saturating_sub(started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_stat() {
        let me = std::process::id() as i32;
        assert!(start_stack(me).is_some_and(|s| s > 0));
        assert!(age_ms(me).is_some());
        assert_eq!(stat_field(me, 2), None);
    }
}
