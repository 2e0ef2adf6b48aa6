//! A process family: a process and its descendants that run the same executable file (a
//! pre-forking server's master and its workers, and their own forked children). They run the
//! same code, so a patch for one is a patch for all. A descendant that runs another executable
//! (it called `exec`) is not part of it, nor is anything below it; nor is a child that shares
//! its parent's memory (made by `vfork`, `posix_spawn` or `system`, before its `exec`): the
//! parent's patch is its patch already, and it is gone or another program a moment later.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use crate::error::ApplyError;

/// `root` and every descendant running the same executable file as `root` (the same device and
/// inode behind `/proc/PID/exe`, so a binary replaced on disk since is still told apart) in
/// memory of its own, parents before their children (`root` first). Processes that cannot be
/// inspected (another user's, or gone meanwhile) are left out with everything below them.
pub fn family_of(root: i32) -> Result<Vec<i32>, ApplyError> {
    let exe = executable(root).ok_or(ApplyError::NoSuchProcess(root))?;
    let children = children_by_parent()?;
    let mut family = vec![root];
    let mut next = 0;
    while let Some(&pid) = family.get(next) {
        next += 1;
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            // Without `kcmp` (a kernel built without it) a child counts as having its own.
            let own_memory = crate::ptrace::shares_memory(pid, child) != Some(true);
            if executable(child) == Some(exe) && own_memory && !family.contains(&child) {
                family.push(child);
            }
        }
    }
    Ok(family)
}

/// Device and inode of the file process `pid` executes.
fn executable(pid: i32) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The parent pid of `pid`, from `/proc/PID/stat` (the field after the command name, which may
/// itself hold spaces and parentheses: it ends at the last `)`).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every process's children, by parent pid, sorted.
fn children_by_parent() -> Result<BTreeMap<i32, Vec<i32>>, ApplyError> {
    let entries = std::fs::read_dir("/proc").map_err(|e| ApplyError::ProcRead {
        pid: 0,
        what: "/proc".into(),
        detail: e.to_string(),
    })?;
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for pid in entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if let Some(parent) = parent_of(pid) {
            children.entry(parent).or_default().push(pid);
        }
    }
    for list in children.values_mut() {
        list.sort_unstable();
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Kills the child on every path.
    struct Guard(std::process::Child);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_child_running_another_executable_is_not_family() {
        // The shell forks a `sleep` (another executable) and waits for it.
        let shell = Command::new("/bin/sh")
            .args(["-c", "sleep 30; :"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let guard = Guard(shell);
        let pid = guard.0.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Until the fork has exec'd `sleep` (a moment after the fork it still runs the shell).
        let sh = executable(pid).unwrap();
        let exec_d = |children: &BTreeMap<i32, Vec<i32>>| {
            children
                .get(&pid)
                .is_some_and(|c| c.iter().all(|&c| executable(c).is_some_and(|e| e != sh)))
        };
        while !exec_d(&children_by_parent().unwrap()) {
            assert!(std::time::Instant::now() < deadline, "sh never ran sleep");
            std::thread::yield_now();
        }
        assert_eq!(family_of(pid).unwrap(), [pid]);
    }

    #[test]
    fn a_process_that_does_not_exist_has_no_family() {
        assert!(matches!(
            family_of(i32::MAX),
            Err(ApplyError::NoSuchProcess(_))
        ));
    }
}
