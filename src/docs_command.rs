//! `hotpatch completions SHELL` and `hotpatch man`: both generated from the command line's own
//! definition in [`crate::cli`], so they cannot drift from what the binary accepts.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hotpatch", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the completion script")
}

/// Prints a manual page, in roff, on standard output: the main page (every subcommand is in its
/// SUBCOMMANDS section as `hotpatch-NAME(1)`), or with `subcommand` that subcommand's page.
pub fn man(subcommand: Option<&str>) -> Result<()> {
    let mut command = Cli::command();
    // Building names each subcommand `hotpatch-NAME` (its display name) and its usage `hotpatch NAME`.
    command.build();
    let page = match subcommand {
        None => clap_mangen::Man::new(command),
        Some(name) => {
            let Some(sub) = command.find_subcommand(name) else {
                let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
                bail!(
                    "no subcommand `{name}` has a manual page; the subcommands are: {}",
                    names.join(", ")
                );
            };
            clap_mangen::Man::new(sub.clone())
        }
    };
    let mut out = Vec::new();
    page.render(&mut out)
        .context("cannot render the manual page")?;
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the manual page")
}
