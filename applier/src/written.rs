//! Which pages of a running process were written since a moment, so that a memory scan made
//! while the process runs can be completed at a stop by reading only those pages.
//!
//! The kernel's userfaultfd write-protection in asynchronous mode (`UFFD_FEATURE_WP_ASYNC`,
//! Linux 6.7) does the tracking: every page of the tracked mappings is write-protected, the
//! first write to a page takes a minor fault that the kernel resolves itself (the writer never
//! waits for anyone), and `PAGEMAP_SCAN` on `/proc/PID/pagemap` reports the pages whose
//! protection is gone (`PAGE_IS_WRITTEN`). Unpopulated pages count as protected
//! (`UFFD_FEATURE_WP_UNPOPULATED`), so a page first touched later is seen too. Kernel writes
//! into user memory (`read(2)` into a buffer) fault the same way.
//!
//! The userfaultfd is created inside the target (one injected system call; a tracer cannot
//! create one for another process), taken over with `pidfd_getfd` and closed in the target, so
//! the tool holds the only copy: when the tool exits, however it exits, the kernel unregisters
//! everything. Only private mappings are tracked (a shared one may be written by another
//! process); a mapping that cannot be registered (one the process tracks with its own
//! userfaultfd), or that appears after tracking began, is not tracked and its caller reads it
//! whole. What is not seen: memory the kernel or a device writes through a page pinned before
//! tracking began (RDMA, io_uring rings placed in user memory), and a process that tracks the
//! same memory with its own asynchronous userfaultfd.

use std::fs::File;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::maps::Mapping;
use crate::ptrace::remote_syscall;

/// `userfaultfd(2)` flag: faults from user mode only (needs no privilege).
const UFFD_USER_MODE_ONLY: u64 = 1;
/// The userfaultfd API version.
const UFFD_API: u64 = 0xAA;
/// Write faults on protected pages are resolved by the kernel, nobody waits.
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// Unpopulated pages count as write-protected.
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// `UFFDIO_REGISTER` mode: write-protection tracking.
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_WRITEPROTECT` mode: protect (0: unprotect).
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// `PAGEMAP_SCAN` category: the page is not write-protected any more.
const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// `PAGEMAP_SCAN` flag: fail unless every mapping of the range is under asynchronous tracking.
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
/// Page regions `PAGEMAP_SCAN` returns at once.
const REGIONS_AT_ONCE: usize = 512;
/// `close(2)`.
const SYS_CLOSE: i64 = 3;

/// `struct uffdio_range`.
#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// `struct uffdio_api`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

/// `struct uffdio_writeprotect`.
#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

nix::ioctl_readwrite!(uffdio_api, 0xAA, 0x3F, UffdioApi);
nix::ioctl_readwrite!(uffdio_register, 0xAA, 0x00, UffdioRegister);
nix::ioctl_read!(uffdio_unregister, 0xAA, 0x01, UffdioRange);
nix::ioctl_readwrite!(uffdio_writeprotect, 0xAA, 0x06, UffdioWriteprotect);
nix::ioctl_readwrite!(pagemap_scan, b'f', 16, PmScanArg);

/// Writes to the private mappings of a process, tracked since [`WriteTracking::start`].
pub(crate) struct WriteTracking {
    /// The tool's (only) copy of the process's userfaultfd.
    uffd: OwnedFd,
    /// `/proc/PID/pagemap`, for `PAGEMAP_SCAN`.
    pagemap: File,
    /// The mappings registered and protected.
    tracked: Vec<Range<u64>>,
}

impl WriteTracking {
    /// Starts tracking writes to those of `mappings` (of `pid`, running) that are private, or
    /// says why it cannot (the kernel lacks asynchronous write-protection, the process may not
    /// create a userfaultfd, ...). Stops one thread of the process for two injected system
    /// calls, as placing a patch's region does.
    pub(crate) fn start(pid: i32, mappings: &[Mapping]) -> Result<WriteTracking, String> {
        let pagemap = File::open(format!("/proc/{pid}/pagemap"))
            .map_err(|e| format!("/proc/{pid}/pagemap cannot be read ({e})"))?;
        let uffd = userfaultfd_of(pid)?;
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        // SAFETY: `api` is a valid `struct uffdio_api` the kernel reads and writes.
        unsafe { uffdio_api(uffd.as_raw_fd(), &mut api) }.map_err(|e| {
            format!("the kernel has no asynchronous userfaultfd write-protection ({e})")
        })?;
        let mut tracking = WriteTracking {
            uffd,
            pagemap,
            tracked: Vec::new(),
        };
        for mapping in mappings.iter().filter(|m| m.perms.ends_with('p')) {
            if tracking.protect(mapping.start..mapping.end) {
                tracking.tracked.push(mapping.start..mapping.end);
            }
        }
        Ok(tracking)
    }

    /// Registers `range` (one mapping) and write-protects it; false when the kernel refuses.
    fn protect(&self, range: Range<u64>) -> bool {
        let fd = self.uffd.as_raw_fd();
        let uffd_range = || UffdioRange {
            start: range.start,
            len: range.end - range.start,
        };
        let mut register = UffdioRegister {
            range: uffd_range(),
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: valid `struct uffdio_register`; it names memory of the target, not ours.
        if unsafe { uffdio_register(fd, &mut register) }.is_err() {
            return false;
        }
        let mut protect = UffdioWriteprotect {
            range: uffd_range(),
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        // SAFETY: valid `struct uffdio_writeprotect`, for the range just registered.
        if unsafe { uffdio_writeprotect(fd, &mut protect) }.is_ok() {
            return true;
        }
        let mut unregister = uffd_range();
        // SAFETY: valid `struct uffdio_range`, registered above.
        let _ = unsafe { uffdio_unregister(fd, &mut unregister) };
        false
    }

    /// Whether `range` lies in a mapping registered by [`WriteTracking::start`].
    pub(crate) fn tracks(&self, range: &Range<u64>) -> bool {
        self.tracked
            .iter()
            .any(|t| t.start <= range.start && range.end <= t.end)
    }

    /// The parts of `range` written since tracking began, in address order; `None` when part
    /// of `range` is not tracked (never was, or its mapping was replaced since), so that all
    /// of it must be read.
    pub(crate) fn written(&self, range: Range<u64>) -> Option<Vec<Range<u64>>> {
        if !self.tracks(&range) {
            return None;
        }
        let mut regions = vec![PageRegion::default(); REGIONS_AT_ONCE];
        let mut out = Vec::new();
        let mut from = range.start;
        while from < range.end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_CHECK_WPASYNC,
                start: from,
                end: range.end,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                category_mask: PAGE_IS_WRITTEN,
                return_mask: PAGE_IS_WRITTEN,
                ..PmScanArg::default()
            };
            // SAFETY: `arg` is a valid `struct pm_scan_arg` whose `vec` points at `regions`,
            // `vec_len` entries long, which the kernel fills.
            let found = unsafe { pagemap_scan(self.pagemap.as_raw_fd(), &mut arg) }.ok()?;
            let found = usize::try_from(found).ok()?.min(regions.len());
            out.extend(regions[..found].iter().map(|r| r.start..r.end));
            if arg.walk_end <= from {
                return None;
            }
            from = arg.walk_end;
        }
        Some(out)
    }
}

impl Drop for WriteTracking {
    /// Unregisters every mapping (its pages writable again without a fault), so that a copy of
    /// the userfaultfd the process made meanwhile (a `fork` between its creation and its
    /// `close`) tracks nothing; closing the last copy would unregister them too.
    fn drop(&mut self) {
        for range in &self.tracked {
            let mut unregister = UffdioRange {
                start: range.start,
                len: range.end - range.start,
            };
            // SAFETY: valid `struct uffdio_range` of a range registered by `start`.
            let _ = unsafe { uffdio_unregister(self.uffd.as_raw_fd(), &mut unregister) };
        }
    }
}

/// A userfaultfd of `pid`'s memory, held by the tool alone: created in the target by an
/// injected `userfaultfd(2)`, copied with `pidfd_getfd(2)`, then closed in the target.
fn userfaultfd_of(pid: i32) -> Result<OwnedFd, String> {
    let flags = (nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK) as u64 | UFFD_USER_MODE_ONLY;
    let fd = remote_syscall(pid, nix::libc::SYS_userfaultfd, [flags, 0, 0, 0, 0, 0])
        .map_err(|e| format!("userfaultfd() could not be run in the process ({e})"))?;
    if fd < 0 {
        return Err(format!(
            "userfaultfd() failed in the process: {}",
            crate::region::errno_text(fd)
        ));
    }
    let copy = copy_fd(pid, fd);
    let closed = remote_syscall(pid, SYS_CLOSE, [fd as u64, 0, 0, 0, 0, 0]);
    match closed {
        Ok(0) => copy,
        Ok(e) => Err(format!(
            "close() of its userfaultfd failed in the process: {e}"
        )),
        Err(e) => Err(format!(
            "close() of its userfaultfd could not be run in the process ({e})"
        )),
    }
}

/// A copy of descriptor `fd` of process `pid` (`pidfd_open` and `pidfd_getfd`).
fn copy_fd(pid: i32, fd: i64) -> Result<OwnedFd, String> {
    // SAFETY: plain system calls on integers; each returned descriptor is owned below.
    let pidfd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", nix::errno::Errno::last()));
    }
    // SAFETY: `pidfd` is a descriptor just opened, owned from here on.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: as above.
    let copy = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if copy < 0 {
        return Err(format!("pidfd_getfd: {}", nix::errno::Errno::last()));
    }
    // SAFETY: `copy` is a descriptor just made for this process, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(copy as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::maps::read_maps;
    use crate::test_support::Conversation;

    /// A real process writes one page of a buffer it filled before tracking began: that page,
    /// and no other of the buffer, reads as written.
    #[test]
    fn a_page_written_after_the_start_is_reported() {
        let mut child = Conversation::start(
            r#"#include <stdio.h>
               #include <stdlib.h>
               #include <unistd.h>
               int main(void) {
                   char *buf = aligned_alloc(4096, 64 * 4096), c;
                   for (int i = 0; i < 64 * 4096; i++) buf[i] = 1;
                   printf("%lx\n", (unsigned long)buf);
                   fflush(stdout);
                   if (read(0, &c, 1) != 1) return 1;
                   buf[10 * 4096 + 8] = 2;
                   printf("written\n");
                   fflush(stdout);
                   return read(0, &c, 1) != 1;
               }"#,
        );
        let pid = child.pid();
        let buf = u64::from_str_radix(&child.line(), 16).unwrap();
        let buffer = buf..buf + 64 * 4096;
        let maps = read_maps(pid).unwrap();
        let mapping = maps.iter().find(|m| m.start <= buf && buf < m.end).unwrap();
        let whole = mapping.start..mapping.end;
        let tracking = WriteTracking::start(pid, &maps).unwrap_or_else(|why| panic!("{why}"));
        let overlapping = |written: &[Range<u64>]| -> Vec<Range<u64>> {
            written
                .iter()
                .filter(|w| w.start < buffer.end && buffer.start < w.end)
                .cloned()
                .collect()
        };
        let before = tracking.written(whole.clone()).unwrap();
        assert_eq!(overlapping(&before), vec![], "{before:x?}");

        child.go_on();
        assert_eq!(child.line(), "written");
        let after = tracking.written(whole).unwrap();
        let page = buf + 10 * 4096;
        assert_eq!(overlapping(&after), vec![page..page + 4096], "{after:x?}");
        assert_eq!(tracking.written(0x1000..0x2000), None, "never tracked");
        let tracked_mappings = || {
            std::fs::read_to_string(format!("/proc/{pid}/smaps"))
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw"))
                .count()
        };
        assert!(tracked_mappings() > 0);
        drop(tracking);
        assert_eq!(tracked_mappings(), 0, "unregistered when dropped");
        child.finish();
    }
}
