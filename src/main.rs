//! `hotpatch`: live-patch a running C program from a source diff.
//!
//! The binary is a thin layer over the stage crates: it parses the command line, runs the
//! pipeline (differ → externalizer → builder → applier) and prints what happened, for people or
//! as JSON. Exit status: 0 success (including "nothing to patch"), 1 any error, 2 usage error, 3 a
//! change that cannot be applied live was refused (see [`refusal`]).

mod apply_command;
mod build_command;
mod build_flags;
mod child_output;
mod cli;
mod demo;
mod diff_command;
mod docs_command;
mod dwarf_cache;
mod hook;
mod list_command;
mod lto;
mod outcome;
mod pipeline;
mod prepare_command;
mod processes;
mod proof;
mod refusal;
mod register_contract;
mod render;
mod revert_command;
mod spinner;
mod state;
mod units;
mod watch;

use clap::Parser;

fn main() {
    // Before any file is opened: the descriptors make passed down are still its own.
    hotpatch_builder::connect_jobserver();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = match cli::Cli::try_parse_from(&argv) {
        Ok(args) => args,
        Err(error) => outcome::fail_usage(error, outcome::json_requested(&argv)),
    };
    let json = args.command.json();
    let result = match args.command {
        cli::Command::Diff(diff) => diff_command::run(&diff),
        cli::Command::Demo(demo) => demo::run(&demo),
        cli::Command::List(list) => list_command::run(&list),
        cli::Command::Revert(revert) => revert_command::run(&revert),
        cli::Command::Build(build) => build_command::run(&build),
        cli::Command::Apply(apply) => apply_command::run(&apply),
        cli::Command::Prepare(prepare) => prepare_command::run(&prepare),
        cli::Command::Hook(hook) => hook::run(&hook),
        cli::Command::Watch(watch) => watch::run(&watch),
        cli::Command::Completions { shell } => docs_command::completions(shell),
        cli::Command::Man { subcommand } => docs_command::man(subcommand.as_deref()),
    };
    if let Err(error) = result {
        outcome::fail(&error, json);
    }
}
