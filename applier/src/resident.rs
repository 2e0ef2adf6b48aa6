//! Which pages of a process hold data, from `/proc/PID/pagemap`: a page of a private mapping
//! that is neither present nor swapped out was never written (it reads as zeros, or as its
//! file's bytes), so no pointer the process stored can be in it. A memory scan reads only the
//! other pages: its cost follows the memory a process uses, not the address space it reserved
//! (thread stacks, allocator arenas and heaps reserve far more than they touch).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// Bytes per page.
const PAGE: u64 = 4096;
/// `pagemap` entry bits: page present in memory, page swapped out.
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
/// Pages whose entries are read at once.
const ENTRIES_AT_ONCE: u64 = 4096;

/// A process's page map.
pub(crate) struct Pagemap {
    file: File,
}

impl Pagemap {
    /// The page map of `pid`, when it can be read (it can wherever the process can be traced).
    pub(crate) fn open(pid: i32) -> Option<Pagemap> {
        File::open(format!("/proc/{pid}/pagemap"))
            .ok()
            .map(|file| Pagemap { file })
    }

    /// The parts of `range` (of a private mapping) on pages that are present or swapped out,
    /// clipped to `range`. A part of the page map that cannot be read counts as holding data.
    pub(crate) fn written(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        let mut keep = |start: u64, end: u64| {
            let (start, end) = (start.max(range.start), end.min(range.end));
            match out.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ if start < end => out.push(start..end),
                _ => {}
            }
        };
        let mut page = range.start / PAGE;
        let last = range.end.div_ceil(PAGE);
        let mut buf = Vec::new();
        while page < last {
            let count = ENTRIES_AT_ONCE.min(last - page);
            buf.resize(count as usize * 8, 0);
            if self.file.read_exact_at(&mut buf, page * 8).is_err() {
                keep(page * PAGE, (page + count) * PAGE);
            } else {
                for (i, entry) in buf.chunks_exact(8).enumerate() {
                    let entry = u64::from_le_bytes(entry.try_into().unwrap_or_default());
                    if entry & (PRESENT | SWAPPED) != 0 {
                        let at = (page + i as u64) * PAGE;
                        keep(at, at + PAGE);
                    }
                }
            }
            page += count;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
    use std::num::NonZeroUsize;

    /// An anonymous mapping of which only the pages written are reported, merged into runs.
    #[test]
    fn only_written_pages_of_an_anonymous_mapping() {
        let len = 16 * PAGE as usize;
        // SAFETY: a fresh private anonymous mapping, written only inside it, unmapped below.
        let base = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(len).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .expect("an anonymous mapping");
        let start = base.as_ptr() as u64;
        for page in [2u64, 3, 9] {
            // SAFETY: inside the mapping.
            unsafe { *((start + page * PAGE) as *mut u8) = 1 };
        }
        let map = Pagemap::open(std::process::id() as i32).expect("our own pagemap");
        let written = map.written(start + 100..start + len as u64);
        // SAFETY: the mapping made above, no longer used.
        unsafe { munmap(base, len) }.unwrap();
        assert_eq!(
            written,
            [
                start + 2 * PAGE..start + 4 * PAGE,
                start + 9 * PAGE..start + 10 * PAGE
            ]
        );
    }
}
