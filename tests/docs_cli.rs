//! `hotpatch completions SHELL` and `hotpatch man`: generated from the command line itself, so
//! they name every subcommand.

mod support;

use support::*;

const SUBCOMMANDS: &[&str] = &[
    "diff", "list", "revert", "build", "apply", "prepare", "hook", "demo", "watch",
];

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish"] {
        let output = hotpatch(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr_of(&output));
        let script = stdout_of(&output);
        for name in SUBCOMMANDS {
            assert!(script.contains(name), "{shell} script lacks `{name}`");
        }
        assert!(script.contains("--pid"), "{shell} script lacks `--pid`");
    }
    let output = hotpatch(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
}

#[test]
fn the_bash_completion_script_loads() {
    let output = hotpatch(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hotpatch.bash");
    std::fs::write(&script, &output.stdout).unwrap();
    let check = format!(
        "source {} && complete -p hotpatch",
        script.to_string_lossy()
    );
    let output = run_ok(std::process::Command::new("bash").args(["-c", &check]));
    assert!(
        stdout_of(&output).contains("hotpatch"),
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand() {
    let output = hotpatch(&["man"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let page = stdout_of(&output);
    assert!(page.contains(".TH hotpatch 1"), "{page}");
    for name in SUBCOMMANDS {
        assert!(
            page.contains(&format!("hotpatch\\-{name}(1)")),
            "no {name} in {page}"
        );
    }
    let output = hotpatch(&["man", "diff"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let page = stdout_of(&output);
    assert!(page.contains(".TH hotpatch-diff 1"), "{page}");
    assert!(page.contains("\\-\\-apply"), "{page}");
    let output = hotpatch(&["man", "nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("the subcommands are: diff"),
        "{}",
        stderr_of(&output)
    );
}
