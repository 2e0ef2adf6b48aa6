//! `hotpatch demo`: builds the bundled quote service at v1, starts it, live-patches it to v2
//! through the same pipeline as `hotpatch diff --apply`, and shows that its state carried on.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotpatch_applier::{ApplyOptions, Target};
use hotpatch_builder::Compiler;
use hotpatch_differ::{diff_snapshots, Snapshot};

use crate::child_output::ChildOutput;
use crate::cli::DemoArgs;
use crate::pipeline::{self, Timings};
use crate::render::{self, Printer};

const SOURCES: [(&str, &str, &str); 2] = [
    (
        "main.c",
        include_str!("../testdata/demo/v1/main.c"),
        include_str!("../testdata/demo/v2/main.c"),
    ),
    (
        "pricing.c",
        include_str!("../testdata/demo/v1/pricing.c"),
        include_str!("../testdata/demo/v2/pricing.c"),
    ),
];
const CFLAGS: &str = "-O2 -g";
/// How long the service may take to print its next line. It prints every 300 ms; the rest is
/// room for a machine whose every core is busy.
const LINE_DEADLINE: Duration = Duration::from_secs(30);

/// The demo process; killed and reaped when dropped, whatever happened.
struct Service {
    child: Child,
    output: ChildOutput,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn start(binary: &Path) -> Result<Service> {
        let mut command = Command::new(binary);
        command.stderr(Stdio::inherit());
        let output = ChildOutput::capture(&mut command)?;
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Service { child, output })
    }

    fn next_line(&mut self) -> Result<String> {
        self.output
            .next_line(Instant::now() + LINE_DEADLINE)?
            .context("the demo service stopped printing")
    }

    /// The next line of a request numbered `first` or later (earlier ones are skipped).
    fn next_request_from(&mut self, first: u64) -> Result<(u64, String)> {
        loop {
            let line = self.next_line()?;
            match request_number(&line) {
                Some(n) if n >= first => return Ok((n, line)),
                _ => {}
            }
        }
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    let out = Printer::new(args.color.enabled(), false);
    let work = tempfile::Builder::new()
        .prefix("hotpatch-demo-")
        .tempdir()?;
    for (version, index) in [("v1", 1), ("v2", 2)] {
        let dir = work.path().join(version);
        std::fs::create_dir_all(&dir)?;
        for source in SOURCES {
            let text = if index == 1 { source.1 } else { source.2 };
            std::fs::write(dir.join(source.0), text)?;
        }
    }
    let binary = work.path().join("quote-service");
    println!("1. Building the v1 quote service with `cc {CFLAGS}` ...");
    let compiler = Compiler::locate()?;
    let status = Command::new(compiler.path())
        .current_dir(work.path().join("v1"))
        .args(CFLAGS.split_whitespace())
        .args(SOURCES.map(|s| s.0))
        .arg("-o")
        .arg(&binary)
        .status()
        .context("running the C compiler")?;
    if !status.success() {
        bail!("the demo program did not compile");
    }

    let mut service = Service::start(&binary)?;
    let pid = service.child.id() as i32;
    println!("2. Started it as pid {pid}. It answers a request every 300 ms:");
    let mut last_before = String::new();
    for _ in 0..4 {
        last_before = service.next_line()?;
        println!("     {last_before}");
    }

    println!("\n3. The source change from v1 to v2:");
    let old = Snapshot::from_dir(&work.path().join("v1"), "v1")?;
    let new = Snapshot::from_dir(&work.path().join("v2"), "v2")?;
    let changes = diff_snapshots(&old, &new);
    out.changes(&changes)?;

    println!("\n4. Live-patching pid {pid} (the process keeps running):");
    let mut timings = Timings::default();
    let target = Target::inspect(pid)?;
    let model = crate::build_flags::discover_model(
        &crate::build_flags::BuildSettings {
            cflags: Some(CFLAGS.to_string()),
            ..Default::default()
        },
        &new,
    )?;
    let cache = hotpatch_builder::Cache::from_env(false)?;
    let patch = pipeline::build_patch(
        &changes,
        (&old, &new),
        Some(&target),
        (&model, &cache),
        &mut timings,
    )?;
    let plan = crate::build_flags::plan(&target, &patch.object, "cannot patch the demo", &[])?;
    let start = Instant::now();
    let report = hotpatch_applier::apply(&target, &plan, &ApplyOptions::default())?;
    timings.apply_ms = pipeline::elapsed_ms(start);
    // Everything the service finished printing by now, some of it while the patch was built.
    // Request `last_queued + 1` was not finished, so it may have begun before the commit; the
    // one after it began after its line, so after the commit: the first wholly v2 request.
    let before = request_number(&last_before).context("the demo printed no request number")?;
    let last_queued = service
        .output
        .drain()?
        .iter()
        .rev()
        .find_map(|l| request_number(l))
        .unwrap_or(before);
    let first_after = last_queued + 2;
    out.applied(&render::Applied {
        changes: &changes,
        patch: &patch,
        report: &report,
        timings: &timings,
    })?;

    println!(
        "\n5. The same process, same pid, after the patch (requests up to #{} may have begun \
         before the commit, so they are not shown):",
        first_after - 1
    );
    let mut after_lines = Vec::new();
    for next in first_after..first_after + 4 {
        let (n, line) = service.next_request_from(next)?;
        println!("     {line}");
        if n != next {
            bail!(
                "the demo's request counter jumped from #{} to #{n}",
                next - 1
            );
        }
        after_lines.push(line);
    }
    // Both changes must show: the new name in every line, the discount on three or more widgets.
    if !after_lines.iter().all(|l| l.contains("(bulk discount)"))
        || !after_lines
            .iter()
            .any(|l| l.contains("3 widgets cost 24 credits"))
    {
        bail!("the patched demo does not answer with the v2 pricing");
    }
    println!(
        "\nIts state carried on: the request counter went on from #{before} to #{first_after} and \
         beyond, and the revenue total kept growing; prices now use the bulk discount."
    );
    drop(service);
    println!("6. Stopped pid {pid}. That is hotpatch: new code, same process, state intact.");
    Ok(())
}

fn request_number(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("request #")?;
    rest.split(':').next()?.parse().ok()
}
