//! The standard output of a started process, read line by line with deadlines, and drained up to
//! "now" without waiting: what the demo and the end-to-end tests need to tell the lines a service
//! printed *before* an apply returned from the lines it printed after.
//!
//! The output goes through a Unix socket pair rather than a pipe with a reader thread: a reader
//! thread may still have lines sitting unread in the pipe, so "everything queued so far" cannot be
//! known; with one non-blocking read until `WouldBlock` it can. Every `write` the process finished
//! before [`ChildOutput::drain`] returned is in what it returns.
//!
//! This file is also compiled into the test harness (`tests/support/mod.rs`, by `#[path]`).

use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Our end of a process's standard output, with the bytes of a line not yet complete.
pub struct ChildOutput {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl ChildOutput {
    /// Makes `command`'s standard output (of the process it spawns next) ours to read.
    pub fn capture(command: &mut Command) -> std::io::Result<ChildOutput> {
        let (ours, theirs) = UnixStream::pair()?;
        command.stdout(Stdio::from(OwnedFd::from(theirs)));
        Ok(ChildOutput {
            stream: ours,
            pending: Vec::new(),
        })
    }

    /// The next complete line, waiting until `deadline`; `None` when the deadline passed or the
    /// process closed its output first.
    pub fn next_line(&mut self, deadline: Instant) -> std::io::Result<Option<String>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Every complete line the process has written so far, without waiting. A line it had not
    /// finished writing when this returned is not among them (it comes from
    /// [`ChildOutput::next_line`]).
    pub fn drain(&mut self) -> std::io::Result<Vec<String>> {
        self.stream.set_nonblocking(true)?;
        let mut chunk = [0u8; 4096];
        let read = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.stream.set_nonblocking(false)?;
        read?;
        Ok(std::iter::from_fn(|| self.take_line()).collect())
    }

    fn take_line(&mut self) -> Option<String> {
        let end = self.pending.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.pending.drain(..=end).collect();
        Some(String::from_utf8_lossy(&line[..end]).into_owned())
    }
}
