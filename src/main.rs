//! `hotpatch`: live-patch a running C program from a source diff.
//!
//! The binary is a thin layer over the stage crates: it parses the command line, runs the
//! pipeline (differ → externalizer → builder → applier) and prints what happened, for people or
//! as JSON. Exit status: 0 success (including "nothing to patch"), 1 any error, 2 usage error.

mod cli;
mod demo;
mod diff_command;
mod hook;
mod pipeline;
mod render;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Diff(diff) => diff_command::run(&diff),
        cli::Command::Demo(demo) => demo::run(&demo),
        cli::Command::Hook(hook) => hook::run(&hook),
    };
    if let Err(error) = result {
        eprintln!("error: {}", render::error_text(&error));
        std::process::exit(1);
    }
}
