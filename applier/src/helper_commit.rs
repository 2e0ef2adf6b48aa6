//! Commits that must finish whatever happens to the tool run in a helper process
//! (`ptrace::in_child`, in a session of its own), and their results cross back here.
//!
//! A commit that leaves a breakpoint (`int3`) in the target while its threads run (the
//! threadwise commit; `--wait-return` and `--at`, which wait at a breakpoint) would kill the
//! target if its tracer died then: a thread reaching the breakpoint untraced dies of `SIGTRAP`.
//! The helper outlives a SIGKILL of the tool (or of its process group) and takes its
//! breakpoints back before it exits. When the helper itself ends without an answer, what it
//! did is unknown: the caller must leave the patch region in place (`hotpatch list` shows the
//! state, `hotpatch revert` settles it) rather than unmap code the jumps may lead to.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;
use crate::ptrace::{in_child, Forked, PtraceError};

/// A result as it crosses from the helper: the value, or the errors callers tell apart, else
/// the error's text.
#[derive(Debug, Serialize, Deserialize)]
enum Outcome<T> {
    Done(T),
    ThreadBusy {
        tid: i32,
        pc: u64,
        function: String,
        detail: String,
        waited_ms: u64,
    },
    ContextBusy {
        location: String,
        address: String,
        function: String,
        waited_ms: u64,
    },
    SafePointNotReached {
        function: String,
        waited_ms: u64,
    },
    CodeChanged {
        name: String,
        address: u64,
    },
    Gone(i32),
    Failed(String),
}

impl<T> From<Result<T, ApplyError>> for Outcome<T> {
    fn from(result: Result<T, ApplyError>) -> Self {
        match result {
            Ok(value) => Outcome::Done(value),
            Err(ApplyError::ThreadBusy {
                tid,
                pc,
                function,
                detail,
                waited_ms,
            }) => Outcome::ThreadBusy {
                tid,
                pc,
                function,
                detail,
                waited_ms,
            },
            Err(ApplyError::ContextBusy {
                location,
                address,
                function,
                waited_ms,
            }) => Outcome::ContextBusy {
                location,
                address,
                function,
                waited_ms,
            },
            Err(ApplyError::SafePointNotReached {
                function,
                waited_ms,
            }) => Outcome::SafePointNotReached {
                function,
                waited_ms,
            },
            Err(ApplyError::CodeChanged { name, address }) => {
                Outcome::CodeChanged { name, address }
            }
            Err(ApplyError::Ptrace(PtraceError::NoSuchProcess(pid))) => Outcome::Gone(pid),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

impl<T> Outcome<T> {
    fn into_result(self, pid: i32, what: &str) -> Result<T, ApplyError> {
        match self {
            Outcome::Done(value) => Ok(value),
            Outcome::ThreadBusy {
                tid,
                pc,
                function,
                detail,
                waited_ms,
            } => Err(ApplyError::ThreadBusy {
                tid,
                pc,
                function,
                detail,
                waited_ms,
            }),
            Outcome::ContextBusy {
                location,
                address,
                function,
                waited_ms,
            } => Err(ApplyError::ContextBusy {
                location,
                address,
                function,
                waited_ms,
            }),
            Outcome::SafePointNotReached {
                function,
                waited_ms,
            } => Err(ApplyError::SafePointNotReached {
                function,
                waited_ms,
            }),
            Outcome::CodeChanged { name, address } => {
                Err(ApplyError::CodeChanged { name, address })
            }
            Outcome::Gone(pid) => Err(PtraceError::NoSuchProcess(pid).into()),
            Outcome::Failed(detail) => Err(PtraceError::Failed {
                pid,
                op: what.into(),
                detail,
            }
            .into()),
        }
    }
}

/// Runs `commit` (`what` names it in messages) on process `pid` in a helper process and
/// returns its result. [`ApplyError::CommitUnknown`] when the helper ended without one.
pub(crate) fn in_helper<T: Serialize + DeserializeOwned>(
    pid: i32,
    what: &str,
    commit: impl FnOnce() -> Result<T, ApplyError>,
) -> Result<T, ApplyError> {
    let run = || serde_json::to_vec(&Outcome::from(commit())).unwrap_or_default();
    let bytes = match in_child(pid, run) {
        Forked::Returned(bytes) => bytes,
        Forked::Vanished(helper) => {
            return Err(ApplyError::CommitUnknown {
                pid,
                what: what.into(),
                helper,
            })
        }
        Forked::NoChild(_) => {
            return Err(PtraceError::Failed {
                pid,
                op: what.into(),
                detail: "no helper process could be forked".into(),
            }
            .into())
        }
    };
    match serde_json::from_slice::<Outcome<T>>(&bytes) {
        Ok(outcome) => outcome.into_result(pid, what),
        Err(e) => Err(ApplyError::CommitUnknown {
            pid,
            what: format!("{what} (its answer is unreadable: {e})"),
            helper: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_back_and_a_helper_gone_silent_is_unknown_not_failed() {
        let busy = in_helper::<u32>(1, "the commit", || {
            Err(ApplyError::SafePointNotReached {
                function: "poll".into(),
                waited_ms: 7,
            })
        });
        assert!(matches!(
            busy,
            Err(ApplyError::SafePointNotReached { waited_ms: 7, .. })
        ));
        assert_eq!(in_helper(1, "the commit", || Ok(5u32)).unwrap(), 5);
        let other = in_helper::<u32>(1, "the commit", || Err(ApplyError::Ledger("x".into())));
        assert!(other
            .unwrap_err()
            .to_string()
            .contains("cannot read the patch ledger: x"));
        // A helper killed before it answered (here it ends itself).
        let silent = in_helper::<u32>(1, "the commit", || {
            // SAFETY: ends the helper process at once, as a SIGKILL would.
            unsafe { nix::libc::_exit(0) }
        });
        let text = silent.unwrap_err().to_string();
        assert!(
            text.contains("ended without an answer") && text.contains("hotpatch revert --pid 1"),
            "{text}"
        );
    }
}
