//! Stacking through the command line: patches of a function that an earlier patch already
//! replaced. Each one is checked against the code of the patch in effect (its old side must be
//! that patch's new side), a chain v1→v2→v3→v4 lands and reverts last-in first-out, and a patch
//! made from another revision than the one running is refused with the process untouched. A
//! function new at v2 is replaced by the patches after the one that added it, in that patch's
//! region, and the patch that added it cannot be reverted before them. Real repositories, a
//! real running C process (killed on every path), real ptrace.

mod support;

use std::path::PathBuf;
use std::process::Output;

use support::*;

/// `value` of the `simplest` case at v1..v4: each revision returns its own number, and v3 is
/// longer code than the others (the compare stays: `calls` may be negative). `calls` is global,
/// so that a plain object can count it too.
fn lib(version: u32) -> String {
    let v1 =
        std::fs::read_to_string(project_root().join("testdata/cases/simplest/v1/lib.c")).unwrap();
    let body = match version {
        3 => "return 3 + (calls < 0);".to_string(),
        n => format!("return {n};"),
    };
    v1.replace("return 1;", &body)
        .replace("static int calls;", "int calls;")
}

/// `lib.c` at v1..v4 when v2 adds the function `bonus` (`storage` is how it is declared: `static`
/// or not, inlined or not) and v3 and v4 change only it: `value` returns `bonus(1)`, the
/// revision's number. `bonus` reads `calls` so that its code is not a constant.
fn lib_with_bonus(storage: &str, version: u32) -> String {
    if version == 1 {
        return lib(1);
    }
    let v1 = lib(1);
    let bonus =
        format!("{storage} int bonus(int x)\n{{\n    return x * {version} + (calls < 0);\n}}\n\n");
    v1.replace("int value(void)", &format!("{bonus}int value(void)"))
        .replace("return 1;", "return bonus(1);")
}

/// A repository with tags v1..v4 and the running v1.
struct Chain {
    dir: tempfile::TempDir,
    target: TargetProcess,
}

impl Chain {
    fn start() -> Chain {
        Chain::start_with(lib)
    }

    /// A chain whose `lib.c` at revision n is `lib_at(n)`.
    fn start_with(lib_at: impl Fn(u32) -> String) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let main = std::fs::read_to_string(project_root().join("testdata/common/main.c")).unwrap();
        let trees: Vec<Vec<(String, String)>> = (1..=4)
            .map(|n| vec![("lib.c".into(), lib_at(n)), ("main.c".into(), main.clone())])
            .collect();
        let tags = ["v1", "v2", "v3", "v4"];
        let revisions: Vec<(&str, &[(String, String)])> = tags
            .iter()
            .zip(&trees)
            .map(|(tag, tree)| (*tag, tree.as_slice()))
            .collect();
        git_repo_with_tags(&dir.path().join("repo"), &revisions);
        write_tree(&dir.path().join("build"), &trees[0]);
        let binary = dir.path().join("target-v1");
        compile_program(
            &dir.path().join("build"),
            &["main.c".into(), "lib.c".into()],
            "-O2 -g",
            &binary,
        );
        let mut target = TargetProcess::start(&binary);
        target.wait_for("value=1");
        Chain { dir, target }
    }

    fn repo(&self) -> String {
        self.dir.path().join("repo").to_string_lossy().into_owned()
    }

    fn pid(&self) -> String {
        self.target.pid().to_string()
    }

    /// Patches the running process from `from..to` the way `route` says.
    fn patch(&self, route: Route, from: &str, to: &str) -> Output {
        let range = format!("{from}..{to}");
        let pid = self.pid();
        match route {
            Route::Diff => hotpatch(&[
                "diff",
                &range,
                "--repo",
                &self.repo(),
                "--apply",
                "--pid",
                &pid,
            ]),
            Route::BuildThenApply => {
                let object = self.object(from, to);
                let object = object.to_str().unwrap();
                let built = hotpatch(&["build", &range, "--repo", &self.repo(), "-o", object]);
                assert!(built.status.success(), "{}", stderr_of(&built));
                hotpatch(&["apply", object, "--pid", &pid])
            }
        }
    }

    fn object(&self, from: &str, to: &str) -> PathBuf {
        self.dir.path().join(format!("{from}-{to}.hp.o"))
    }

    /// `hotpatch list --pid N --json`.
    fn list(&self) -> serde_json::Value {
        let output = hotpatch(&["list", "--pid", &self.pid(), "--json"]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The revision the ledger says runs (`None`: no applied patch).
    fn running_revision(&self) -> Option<String> {
        self.list()["running_revision"].as_str().map(str::to_string)
    }

    /// The target is alive, untraced and running, and its state counted up by one on every line
    /// through every patch and revert.
    fn assert_state_survived(&mut self) {
        assert!(self.target.is_alive());
        untraced_and_running(self.target.pid()).unwrap();
        assert_counts_up_by_one(&self.target.seen, "state");
    }
}

/// How a patch reaches the process.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// `hotpatch diff OLD..NEW --apply --pid N`.
    Diff,
    /// `hotpatch build OLD..NEW -o FILE`, then `hotpatch apply FILE --pid N`.
    BuildThenApply,
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        stdout_of(output),
        stderr_of(output)
    );
}

/// v1→v2→v3→v4 on `value`, each patch checked against the one before it, then reverted back
/// through v3, v2 and v1.
fn chain_then_revert(route: Route) {
    let mut chain = Chain::start();
    for (from, to, value) in [("v1", "v2", 2), ("v2", "v3", 3), ("v3", "v4", 4)] {
        assert_ok(&chain.patch(route, from, to));
        chain.target.wait_for(&format!("value={value}"));
        let running = chain.running_revision().unwrap();
        assert!(running.starts_with(&format!("{to} (")), "{running}");
    }
    let listed = chain.list();
    let patches = listed["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 3, "{listed}");
    let active: Vec<bool> = patches
        .iter()
        .map(|p| p["functions"][0]["active"].as_bool().unwrap())
        .collect();
    assert_eq!(
        active,
        [false, false, true],
        "only the newest jump is in effect"
    );

    for (revision, value) in [(Some("v3 ("), 3), (Some("v2 ("), 2), (None, 1)] {
        let output = hotpatch(&["revert", "--pid", &chain.pid()]);
        assert_ok(&output);
        chain.target.wait_for(&format!("value={value}"));
        let running = chain.running_revision();
        match revision {
            Some(prefix) => assert!(
                running.as_deref().unwrap().starts_with(prefix),
                "{running:?}"
            ),
            None => assert_eq!(running, None),
        }
    }
    chain.target.read_lines(2);
    assert!(chain.target.seen.last().unwrap().contains("value=1"));
    chain.assert_state_survived();
}

#[test]
fn a_chain_of_diff_applies_stacks_and_reverts_last_in_first_out() {
    chain_then_revert(Route::Diff);
}

#[test]
fn a_chain_of_built_objects_stacks_and_reverts_last_in_first_out() {
    chain_then_revert(Route::BuildThenApply);
}

/// The process keeps printing `value=expected`: the refused patch wrote nothing.
fn assert_untouched(chain: &mut Chain, expected: u32, patches: usize) {
    chain.target.read_lines(3);
    let last = chain.target.seen.last().unwrap();
    assert!(last.contains(&format!("value={expected}")), "{last}");
    assert_eq!(
        chain.list()["patches"].as_array().unwrap().len(),
        patches,
        "a refused patch left a region"
    );
    chain.assert_state_survived();
}

fn assert_refused(output: &Output, needles: &[&str]) {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    }
}

#[test]
fn a_patch_whose_old_side_is_not_what_runs_is_refused() {
    let mut chain = Chain::start();
    // Nothing applied yet: a patch made from v2 is compared with the binary, and the message
    // names v2, the revision really compared.
    for route in [Route::Diff, Route::BuildThenApply] {
        assert_refused(
            &chain.patch(route, "v2", "v3"),
            &[
                "the running `value` does not match v2 (",
                "built with these flags",
            ],
        );
    }
    assert_untouched(&mut chain, 1, 0);

    assert_ok(&chain.patch(Route::Diff, "v1", "v2"));
    chain.target.wait_for("value=2");
    let v2_patch = chain.list()["patches"][0]["patch_id"]
        .as_str()
        .unwrap()
        .to_string();
    // v2 runs (through patch v2_patch); a patch made from v1 is refused, naming the patch in
    // effect and what it brought, whether built now or before v2 was applied.
    let in_effect = format!("the running `value` is the code of patch {v2_patch} (v2 (");
    let needles = [
        in_effect.as_str(),
        "which does not match v1 (",
        "build the patch from v2 (",
    ];
    assert_refused(&chain.patch(Route::Diff, "v1", "v3"), &needles);
    assert_refused(&chain.patch(Route::BuildThenApply, "v1", "v3"), &needles);
    // The very patch in effect, again: refused as what it is.
    assert_refused(
        &chain.patch(Route::Diff, "v1", "v2"),
        &[&format!("patch {v2_patch} is already applied to pid")],
    );
    assert_untouched(&mut chain, 2, 1);
}

#[test]
fn a_patch_over_code_without_a_fingerprint_is_refused_until_it_is_reverted() {
    let mut chain = Chain::start();
    // A plain object (no manifest) replaces `value`: nothing records what its code is.
    let vendor = chain.dir.path().join("vendor.c");
    let code = "extern int calls;\n\nint value(void)\n{\n    calls++;\n    return 7;\n}\n";
    std::fs::write(&vendor, code).unwrap();
    let object = chain.dir.path().join("vendor.o");
    run_ok(
        std::process::Command::new("gcc")
            .args(["-c", "-fPIC", "-O2"])
            .arg(&vendor)
            .arg("-o")
            .arg(&object),
    );
    assert_ok(&hotpatch(&[
        "apply",
        object.to_str().unwrap(),
        "--pid",
        &chain.pid(),
    ]));
    chain.target.wait_for("value=7");
    let vendor_patch = chain.list()["patches"][0]["patch_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_refused(
        &chain.patch(Route::Diff, "v1", "v2"),
        &[
            &format!("the running `value` is the code of patch {vendor_patch}"),
            "records no fingerprint of its code",
            "cannot be checked against v1 (",
        ],
    );
    assert_untouched(&mut chain, 7, 1);
    // Reverted, the binary's own code is in effect again and is what the patch is checked
    // against.
    assert_ok(&hotpatch(&["revert", "--pid", &chain.pid()]));
    chain.target.wait_for("value=1");
    assert_ok(&chain.patch(Route::Diff, "v1", "v2"));
    chain.target.wait_for("value=2");
    chain.assert_state_survived();
}

/// v1→v2 adds `bonus`, v2→v3 and v3→v4 change it: each later patch replaces the code in effect
/// (the region of the patch that added it, then the one after), checked against that patch's
/// fingerprint of it; the first patch cannot be reverted while a later one replaces what it
/// added; reverted in order, v1 runs again.
fn added_then_replaced(storage: &str, route: Route) {
    let mut chain = Chain::start_with(|n| lib_with_bonus(storage, n));
    for (from, to, value) in [("v1", "v2", 2), ("v2", "v3", 3), ("v3", "v4", 4)] {
        assert_ok(&chain.patch(route, from, to));
        chain.target.wait_for(&format!("value={value}"));
    }
    let listed = chain.list();
    let patches = listed["patches"].as_array().unwrap();
    let id = |n: usize| patches[n]["patch_id"].as_str().unwrap().to_string();
    let bonus = |n: usize| {
        patches[n]["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "bonus")
            .cloned()
            .unwrap()
    };
    assert_eq!(bonus(0)["action"], "add", "{listed}");
    let added_at = bonus(0)["new_address"].as_u64().unwrap();
    for n in [1, 2] {
        assert_eq!(bonus(n)["action"], "replace", "{listed}");
        assert_eq!(
            bonus(n)["old_address"].as_u64(),
            Some(added_at),
            "patch {n} replaces `bonus` where the first patch put it: {listed}"
        );
    }
    let first = hotpatch(&["revert", "--pid", &chain.pid(), &id(0)]);
    assert_refused(
        &first,
        &[&format!(
            "cannot revert patch {}: patch {} was applied after it",
            id(0),
            id(1)
        )],
    );
    for value in [3, 2, 1] {
        assert_ok(&hotpatch(&["revert", "--pid", &chain.pid()]));
        chain.target.wait_for(&format!("value={value}"));
    }
    chain.target.read_lines(2);
    assert!(chain.target.seen.last().unwrap().contains("value=1"));
    chain.assert_state_survived();
}

#[test]
fn a_global_function_a_patch_added_is_replaced_by_the_built_objects_after_it() {
    added_then_replaced("__attribute__((noinline))", Route::BuildThenApply);
}

#[test]
fn a_static_function_a_patch_added_is_replaced_by_the_diffs_after_it() {
    added_then_replaced("static __attribute__((noinline))", Route::Diff);
}

#[test]
fn a_static_function_a_patch_added_and_inlined_is_replaced_with_its_caller() {
    added_then_replaced("static", Route::Diff);
}
