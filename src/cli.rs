//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build_flags::BuildSettings;

/// Live-patch a running C program from a source diff.
#[derive(Debug, Parser)]
#[command(name = "hotpatch", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the C functions that changed between two git revisions; with --apply, patch them
    /// into a running process.
    Diff(DiffArgs),
    /// Build a small bundled program, start it, live-patch it and show that its state survived.
    Demo(DemoArgs),
    /// Show the patches installed in a running process (read from the process itself).
    List(crate::list_command::ListArgs),
    /// Undo the newest (or the named) patch of a running process.
    Revert(crate::revert_command::RevertArgs),
    /// Build the patch object for OLD..NEW and write it to a file (for `hotpatch apply`).
    Build(crate::build_command::BuildArgs),
    /// Apply a patch object (from `hotpatch build`, or a plain relocatable .o) to a process.
    Apply(crate::apply_command::ApplyArgs),
    /// Compile a revision's files into the object cache ahead of time (e.g. right after the
    /// service's build), so the next `diff REV..NEW` compiles only the new side and the patch.
    Prepare(crate::prepare_command::PrepareArgs),
    /// Deploy by `git push`: install or run the pre-receive hook of a deploy repository.
    Hook(HookArgs),
    /// Apply the patches recorded for an executable (by build id, in the state directory every
    /// apply writes to) to each new process of it, as it starts: a service (contrib/).
    Watch(crate::watch::WatchArgs),
    /// Print a shell completion script (e.g. `hotpatch completions bash > /etc/bash_completion.d/hotpatch`).
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `hotpatch man | man -l -`), or a subcommand's page
    /// (`hotpatch man diff`: the page hotpatch-diff(1) the main page refers to).
    Man {
        /// The subcommand whose page to print (default: the main page).
        subcommand: Option<String>,
    },
}

impl Command {
    /// Whether the command was asked for JSON (`--json`): then everything it ends with, errors
    /// included, is one JSON document on standard output.
    pub fn json(&self) -> bool {
        match self {
            Command::Diff(args) => args.json,
            Command::List(args) => args.json,
            Command::Revert(args) => args.json,
            Command::Build(args) => args.json,
            Command::Apply(args) => args.json,
            Command::Prepare(args) => args.json,
            Command::Demo(_)
            | Command::Hook(_)
            | Command::Watch(_)
            | Command::Completions { .. }
            | Command::Man { .. } => false,
        }
    }
}

/// Arguments of `hotpatch hook`.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: HookCommand,
}

/// The hook subcommands.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Install the pre-receive hook into a (bare) deploy repository.
    Install {
        /// The repository's git directory.
        git_dir: PathBuf,
        /// Replace a pre-receive hook that hotpatch did not install.
        #[arg(long)]
        force: bool,
    },
    /// Run as git's pre-receive hook: read `OLD NEW REF` lines on standard input and live-patch
    /// the service for a push to the deploy branch; exit non-zero to reject the push.
    PreReceive {
        /// Show what the push would patch; write nothing to any process.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Arguments of `hotpatch diff`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("process").args(["pid", "exe"]).multiple(true)))]
pub struct DiffArgs {
    /// Revision range OLD..NEW (tags, branches, commit ids, HEAD~1 ...), read from git objects.
    #[arg(required_unless_present_all = ["old", "new"], conflicts_with_all = ["old", "new"])]
    pub range: Option<String>,
    /// The old revision as a directory or a single file, instead of git (with --new).
    #[arg(long, value_name = "PATH", requires = "new")]
    pub old: Option<PathBuf>,
    /// The new revision as a directory or a single file, instead of git (with --old).
    #[arg(long, value_name = "PATH", requires = "old")]
    pub new: Option<PathBuf>,
    /// Accept one named refusal (as the refusal names it, e.g. 'struct conn'); repeatable.
    /// Says loudly that it did.
    #[arg(long, value_name = "ITEM")]
    pub force: Vec<String>,
    /// The git repository (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// Patch the changed functions into the running process given by --pid (or --exe).
    #[arg(long, requires = "process")]
    pub apply: bool,
    /// Show everything that would be done, compile the patch, and (with --pid) resolve it against
    /// the running process, without writing anything to any process.
    #[arg(long, conflicts_with = "apply")]
    pub dry_run: bool,
    /// The process to patch (or to check against, with --dry-run), with its descendants that run
    /// the same executable (see --no-children). Repeat it to patch several processes as one:
    /// every one is checked first, then all are patched or, if one fails, the others are rolled
    /// back; one that has the patch already is skipped.
    #[arg(long)]
    pub pid: Vec<i32>,
    /// Patch every process running this executable (a forking server's workers), all or none.
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
    /// Patch each --pid alone: without it, the descendants of a --pid that run the same
    /// executable (a pre-forking server's workers) are patched with it, all or none.
    #[arg(long)]
    pub no_children: bool,
    /// Commit only when a thread reaches this function (a breakpoint safe point, as a debugger
    /// would place it); gives up after --timeout.
    #[arg(long, value_name = "FUNCTION", requires = "apply")]
    pub at: Option<String>,
    /// When a thread is inside a function being replaced, wait (up to --timeout) for that frame
    /// to return: a breakpoint at its return address, the commit at the stop it causes.
    #[arg(long, requires = "apply")]
    pub wait_return: bool,
    /// Commit at one stop of every thread, the older commit, instead of switching the threads
    /// one at a time (the default; `--wait-return`, `--at` and code that cannot be displaced
    /// commit at one stop of every thread anyway).
    #[arg(long, requires = "apply")]
    pub stop_all: bool,
    /// Where the original build's flags are found.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the C source of each patch translation unit.
    #[arg(long)]
    pub show_source: bool,
    /// Compile everything afresh: neither read nor write the object cache (as
    /// `HOTPATCH_CACHE=off`; see `hotpatch prepare`).
    #[arg(long)]
    pub no_cache: bool,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds to keep retrying while a thread executes the bytes a jump would overwrite.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = crate::cli::seconds)]
    pub timeout: f64,
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Where the original build's flags are found (`diff`, `build`, `prepare`): see
/// `build_flags::BuildSettings`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Flags of the original build, for files the build model does not list (default: `[build]
    /// cflags` of hotpatch.toml; with no build model at all, `-O2 -g`).
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    pub cflags: Option<String>,
    /// The tree where the running binary was built (default: the work tree of --repo): its
    /// compile_commands.json, CMake, Ninja or Make build says how each file was compiled.
    #[arg(long, value_name = "DIR")]
    pub build_dir: Option<PathBuf>,
    /// The compilation database (compile_commands.json) of the running binary's build.
    #[arg(long, value_name = "FILE")]
    pub compile_commands: Option<PathBuf>,
}

impl ModelArgs {
    /// The settings these options give for the repository at `repo`.
    pub fn settings(&self, repo: Option<&std::path::Path>) -> anyhow::Result<BuildSettings> {
        BuildSettings::for_repo(
            repo,
            self.cflags.as_deref(),
            self.build_dir.as_deref(),
            self.compile_commands.as_deref(),
        )
    }
}

/// Arguments of `hotpatch demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Parses `--timeout SECONDS`: a finite number of seconds, zero or more.
pub fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(format!("`{text}` is not a number of seconds >= 0")),
    }
}

/// When to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour standard output.
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
            }
        }
    }
}
