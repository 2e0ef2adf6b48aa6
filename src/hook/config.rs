//! Deploy configuration: which branch deploys, which processes run it, how to build patches.
//!
//! Read from `[deploy]` in `hotpatch.toml` of the pushed revision, then overridden key by key by
//! the deploy repository's git config (`hotpatch.branch`, `hotpatch.pid`, `hotpatch.pidfile`,
//! `hotpatch.exe`, `hotpatch.timeout`, `hotpatch.waitReturn`, `hotpatch.cflags`,
//! `hotpatch.buildDir`): the repository carries the project's
//! defaults, the server's own config says where the service runs on that server.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The branch that deploys when nothing names one.
pub const DEFAULT_BRANCH: &str = "main";

/// Where the running service is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// One process id.
    Pid(i32),
    /// A file holding the process id (as daemons write to `/run/NAME.pid`).
    PidFile(PathBuf),
    /// Every process whose executable is this file (a forking server's workers).
    Exe(PathBuf),
}

/// The deploy settings in force for one push.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployConfig {
    /// Pushes to `refs/heads/<branch>` deploy; other refs are accepted untouched.
    pub branch: String,
    /// The processes to patch; `None` when nothing was configured.
    pub target: Option<TargetSpec>,
    /// Seconds to wait for threads to leave code being replaced.
    pub timeout: f64,
    /// Whether a thread inside code being replaced is waited for at the return of its frame
    /// (`--wait-return`) rather than by looking again until `timeout`.
    pub wait_return: bool,
    /// Build flags, overriding `[build] cflags`.
    pub cflags: Option<String>,
    /// The tree where the running service was built: its build model gives each file's flags.
    pub build_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    deploy: DeploySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploySection {
    branch: Option<String>,
    pid: Option<i32>,
    pidfile: Option<PathBuf>,
    exe: Option<PathBuf>,
    timeout: Option<f64>,
    wait_return: Option<bool>,
    build_dir: Option<PathBuf>,
}

/// Keys the deploy repository's git config may set, as gix reads them.
#[derive(Debug, Default, Clone)]
pub struct GitConfig {
    /// `hotpatch.branch`
    pub branch: Option<String>,
    /// `hotpatch.pid`
    pub pid: Option<String>,
    /// `hotpatch.pidfile`
    pub pidfile: Option<String>,
    /// `hotpatch.exe`
    pub exe: Option<String>,
    /// `hotpatch.timeout`
    pub timeout: Option<String>,
    /// `hotpatch.waitReturn`, read as git reads a boolean.
    pub wait_return: Option<bool>,
    /// `hotpatch.cflags`
    pub cflags: Option<String>,
    /// `hotpatch.buildDir`
    pub build_dir: Option<String>,
}

impl GitConfig {
    /// Reads the `hotpatch.*` keys of the repository at `git_dir`.
    pub fn read(git_dir: &Path) -> Result<GitConfig> {
        let repo = gix::open(git_dir)
            .with_context(|| format!("not a git repository: {}", git_dir.display()))?;
        let config = repo.config_snapshot();
        let get = |key: &str| config.string(key).map(|v| v.to_string());
        Ok(GitConfig {
            branch: get("hotpatch.branch"),
            pid: get("hotpatch.pid"),
            pidfile: get("hotpatch.pidfile"),
            exe: get("hotpatch.exe"),
            timeout: get("hotpatch.timeout"),
            wait_return: config
                .try_boolean("hotpatch.waitReturn")
                .with_context(|| "git config hotpatch.waitReturn is not a boolean")?,
            cflags: get("hotpatch.cflags"),
            build_dir: get("hotpatch.buildDir"),
        })
    }
}

impl DeployConfig {
    /// Combines `hotpatch.toml` of the pushed revision (if any) with the deploy repository's git
    /// config, which wins key by key. A target named in git config replaces the file's target.
    pub fn resolve(hotpatch_toml: Option<&str>, git: &GitConfig) -> Result<DeployConfig> {
        let file: File = match hotpatch_toml {
            Some(text) => toml::from_str(text).map_err(|e| {
                anyhow::anyhow!("hotpatch.toml of the pushed revision: {}", e.message())
            })?,
            None => File::default(),
        };
        let deploy = file.deploy;
        let mut target = match (deploy.pid, deploy.pidfile, deploy.exe) {
            (None, None, None) => None,
            (Some(pid), None, None) => Some(TargetSpec::Pid(pid)),
            (None, Some(path), None) => Some(TargetSpec::PidFile(path)),
            (None, None, Some(path)) => Some(TargetSpec::Exe(path)),
            _ => bail!("hotpatch.toml [deploy]: set only one of `pid`, `pidfile` and `exe`"),
        };
        let git_target = match (&git.pid, &git.pidfile, &git.exe) {
            (None, None, None) => None,
            (Some(pid), None, None) => {
                Some(TargetSpec::Pid(pid.trim().parse().with_context(|| {
                    format!("git config hotpatch.pid = `{pid}` is not a pid")
                })?))
            }
            (None, Some(path), None) => Some(TargetSpec::PidFile(path.into())),
            (None, None, Some(path)) => Some(TargetSpec::Exe(path.into())),
            _ => {
                bail!("git config: set only one of hotpatch.pid, hotpatch.pidfile and hotpatch.exe")
            }
        };
        if git_target.is_some() {
            target = git_target;
        }
        let timeout = match &git.timeout {
            Some(text) => text.trim().parse().with_context(|| {
                format!("git config hotpatch.timeout = `{text}` is not a number of seconds")
            })?,
            None => deploy.timeout.unwrap_or(3.0),
        };
        if !(timeout.is_finite() && timeout >= 0.0) {
            bail!("the deploy timeout must be a number of seconds >= 0, not {timeout}");
        }
        let wait_return = git.wait_return.or(deploy.wait_return).unwrap_or(false);
        Ok(DeployConfig {
            branch: git
                .branch
                .clone()
                .or(deploy.branch)
                .unwrap_or_else(|| DEFAULT_BRANCH.to_string()),
            target,
            timeout,
            wait_return,
            cflags: git.cflags.clone(),
            build_dir: git
                .build_dir
                .as_ref()
                .map(PathBuf::from)
                .or(deploy.build_dir),
        })
    }
}

/// `pid` and its descendants running the same executable (a pre-forking server's workers): the
/// service is all of them. A pid that does not exist is kept, for the apply to say so.
fn family(pid: i32) -> Vec<i32> {
    hotpatch_applier::family_of(pid).unwrap_or_else(|_| vec![pid])
}

/// The process ids a target specification names right now (a pid's family with it).
pub fn find_processes(spec: &TargetSpec) -> Result<Vec<i32>> {
    match spec {
        TargetSpec::Pid(pid) => Ok(family(*pid)),
        TargetSpec::PidFile(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the pidfile {}", path.display()))?;
            let pid = text.trim().parse().with_context(|| {
                format!(
                    "the pidfile {} does not hold a pid: `{}`",
                    path.display(),
                    text.trim()
                )
            })?;
            Ok(family(pid))
        }
        TargetSpec::Exe(exe) => hotpatch_applier::pids_of_exe(exe)
            .with_context(|| format!("cannot list the processes running {}", exe.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_config_overrides_the_repository_file_key_by_key() {
        let toml = "[deploy]\nbranch = \"release\"\npidfile = \"/run/a.pid\"\ntimeout = 5\n";
        let config = DeployConfig::resolve(Some(toml), &GitConfig::default()).unwrap();
        assert_eq!(config.branch, "release");
        assert_eq!(
            config.target,
            Some(TargetSpec::PidFile("/run/a.pid".into()))
        );
        assert_eq!(config.timeout, 5.0);
        let git = GitConfig {
            pid: Some("42".into()),
            ..GitConfig::default()
        };
        let config = DeployConfig::resolve(Some(toml), &git).unwrap();
        assert_eq!(
            (config.branch.as_str(), config.target),
            ("release", Some(TargetSpec::Pid(42)))
        );
    }

    #[test]
    fn build_dir_from_the_file_overridden_by_git_config() {
        let toml = "[deploy]\nbuild_dir = \"/srv/app\"\n";
        let config = DeployConfig::resolve(Some(toml), &GitConfig::default()).unwrap();
        assert_eq!(config.build_dir, Some(PathBuf::from("/srv/app")));
        let git = GitConfig {
            build_dir: Some("/srv/other".into()),
            ..GitConfig::default()
        };
        let config = DeployConfig::resolve(Some(toml), &git).unwrap();
        assert_eq!(config.build_dir, Some(PathBuf::from("/srv/other")));
    }

    #[test]
    fn wait_return_from_the_file_overridden_by_git_config() {
        let toml = "[deploy]\nwait_return = true\n";
        let config = DeployConfig::resolve(Some(toml), &GitConfig::default()).unwrap();
        assert!(config.wait_return);
        let git = GitConfig {
            wait_return: Some(false),
            ..GitConfig::default()
        };
        assert!(!DeployConfig::resolve(Some(toml), &git).unwrap().wait_return);
        assert!(
            !DeployConfig::resolve(None, &GitConfig::default())
                .unwrap()
                .wait_return
        );
    }

    #[test]
    fn defaults_and_errors() {
        let config = DeployConfig::resolve(None, &GitConfig::default()).unwrap();
        assert_eq!(
            (config.branch.as_str(), config.target, config.timeout),
            ("main", None, 3.0)
        );
        let err = DeployConfig::resolve(
            Some("[deploy]\npid = 1\nexe = \"/x\"\n"),
            &GitConfig::default(),
        );
        assert!(err.unwrap_err().to_string().contains("only one of"));
        let err = DeployConfig::resolve(Some("[deploy]\npidd = 1\n"), &GitConfig::default());
        assert!(err.unwrap_err().to_string().contains("hotpatch.toml"));
        let git = GitConfig {
            pid: Some("abc".into()),
            ..GitConfig::default()
        };
        assert!(DeployConfig::resolve(None, &git)
            .unwrap_err()
            .to_string()
            .contains("not a pid"));
    }

    #[test]
    fn pidfiles_name_running_processes() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("svc.pid");
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(
            find_processes(&TargetSpec::PidFile(pidfile.clone())).unwrap(),
            [std::process::id() as i32]
        );
        std::fs::write(&pidfile, "nonsense").unwrap();
        assert!(find_processes(&TargetSpec::PidFile(pidfile))
            .unwrap_err()
            .to_string()
            .contains("does not hold a pid"));
    }
}
