//! `hotpatch hook install GIT_DIR`: puts the pre-receive hook into a deploy repository.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The line that marks a hook as hotpatch's own, so reinstalling may replace it.
const MARKER: &str = "# installed by hotpatch: live-patches the running service on each push";

/// The hook script: runs this hotpatch binary, which reads the pushed refs on standard input.
fn script(binary: &Path) -> String {
    let quoted = binary.display().to_string().replace('\'', r"'\''");
    format!("#!/bin/sh\n{MARKER}\nexec '{quoted}' hook pre-receive \"$@\"\n")
}

/// Installs the pre-receive hook into the repository at `git_dir` (a bare repository, or the
/// `.git` directory of one with a work tree). A hook that hotpatch did not write is only replaced
/// with `force`. Returns the hook's path.
pub fn install(git_dir: &Path, force: bool) -> Result<std::path::PathBuf> {
    let repo = gix::open(git_dir)
        .with_context(|| format!("not a git repository: {}", git_dir.display()))?;
    let hooks = repo.git_dir().join("hooks");
    let hook = hooks.join("pre-receive");
    if let Ok(existing) = std::fs::read_to_string(&hook) {
        if !existing.contains(MARKER) && !force {
            bail!(
                "{} exists and was not installed by hotpatch: refusing to replace it \
                 (merge it by hand, or pass --force to replace it)",
                hook.display()
            );
        }
    }
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("locating the hotpatch binary")?;
    std::fs::create_dir_all(&hooks).with_context(|| format!("creating {}", hooks.display()))?;
    std::fs::write(&hook, script(&binary))
        .with_context(|| format!("writing {}", hook.display()))?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", hook.display()))?;
    Ok(hook)
}
