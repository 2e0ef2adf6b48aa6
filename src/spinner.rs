//! A spinner on a terminal while hotpatch waits: on the compiler (the patch, and the old and new
//! files for the object-level confirmation), and on the target (threads leaving the code being
//! replaced, a safe point being reached). The waiting itself happens on the calling thread —
//! ptrace requests must come from the thread that attached — so the spinner runs on its own
//! thread and only appears when the wait lasts longer than a moment; on a pipe or with `--json`
//! it never does.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

use hotpatch_differ::ChangeSet;
use indicatif::ProgressBar;

/// How long a wait goes unannounced: most commits take microseconds and must not flicker.
const SHOW_AFTER: Duration = Duration::from_millis(200);

/// Runs `work`, showing `message` with a spinner on standard error if it is a terminal, `quiet`
/// is false, and `work` takes longer than [`SHOW_AFTER`].
pub fn while_waiting<T>(message: &str, quiet: bool, work: impl FnOnce() -> T) -> T {
    if quiet || !std::io::stderr().is_terminal() {
        return work();
    }
    let (done, finished) = mpsc::channel::<()>();
    let message = message.to_string();
    let spinner = std::thread::spawn(move || {
        if finished.recv_timeout(SHOW_AFTER) != Err(mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        let _ = finished.recv();
        bar.finish_and_clear();
    });
    let result = work();
    drop(done);
    let _ = spinner.join();
    result
}

/// The message while the patch for `changes` compiles: which files, from which revision.
pub fn compiling(changes: &ChangeSet) -> String {
    let files = crate::pipeline::patched_files(changes);
    format!(
        "compiling the patch for {} ({} → {}) and confirming it against the old code",
        files.join(", "),
        changes.old_label,
        changes.new_label
    )
}
