//! The patch region: choosing a free page-aligned range within ±2 GiB of the patched module, and
//! allocating, protecting and releasing it with system calls run in the target.

use crate::error::ApplyError;
use crate::layout::PAGE;
use crate::maps::Mapping;
use crate::ptrace::remote_syscall;

/// Unmapped pages kept between the region and its neighbours.
const GUARD: u64 = PAGE;
/// Largest span (executable plus region) that `rel32` can cross in both directions.
const MAX_SPAN: u64 = 0x7fff_0000;
/// Highest user address considered.
const USER_TOP: u64 = 0x7fff_ffff_f000;

const SYS_MMAP: i64 = 9;
const SYS_MPROTECT: i64 = 10;
const SYS_MUNMAP: i64 = 11;
/// `PROT_READ`.
pub(crate) const PROT_READ: u64 = 1;
/// `PROT_WRITE`.
pub(crate) const PROT_WRITE: u64 = 2;
/// `PROT_EXEC`.
pub(crate) const PROT_EXEC: u64 = 4;
const MAP_PRIVATE: u64 = 0x02;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

/// The lowest address `mmap` may use (`/proc/sys/vm/mmap_min_addr`, default 64 KiB).
pub(crate) fn mmap_min_addr() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0x10000)
        .max(PAGE)
}

/// Chooses the start of a free `size`-byte range within `rel32` reach of all of the patched
/// module (`near` = lowest and highest address of its mappings: the executable or a library),
/// keeping a guard page to each neighbour. It prefers the range just below the module, and never
/// takes the space right after the executable (`exe`, its span) or the heap, where `brk` grows,
/// nor right below the stack.
pub(crate) fn choose(
    maps: &[Mapping],
    near: (u64, u64),
    exe: (u64, u64),
    size: u64,
    min_addr: u64,
) -> Option<u64> {
    let mut sorted: Vec<&Mapping> = maps.iter().collect();
    sorted.sort_by_key(|m| m.start);
    let mut candidates = Vec::new();
    let mut prev_end = min_addr;
    let mut prev_grows = false;
    for next in sorted.iter().map(Some).chain(std::iter::once(None)) {
        let gap_end = next.map_or(USER_TOP, |m| m.start);
        let next_is_stack = next.is_some_and(|m| m.path.as_deref() == Some("[stack]"));
        if gap_end > prev_end {
            // Highest fit in the gap.
            if !next_is_stack {
                if let Some(top) = gap_end.checked_sub(GUARD + size).map(|a| a & !(PAGE - 1)) {
                    if top >= prev_end.saturating_add(GUARD) && top >= min_addr {
                        candidates.push(top);
                    }
                }
            }
            // Lowest fit in the gap.
            if !prev_grows {
                let bottom = (prev_end + GUARD).next_multiple_of(PAGE);
                if bottom.saturating_add(size + GUARD) <= gap_end {
                    candidates.push(bottom);
                }
            }
        }
        if let Some(m) = next {
            // brk grows after the heap, or after the executable (and its anonymous bss tail).
            let bss_tail = prev_grows && m.path.is_none() && m.start == prev_end;
            prev_grows = m.path.as_deref() == Some("[heap]") || m.end == exe.1 || bss_tail;
            prev_end = prev_end.max(m.end);
        }
    }
    let distance = |c: u64| {
        if c + size <= near.0 {
            near.0 - (c + size)
        } else {
            c.saturating_sub(near.1)
        }
    };
    candidates
        .into_iter()
        .filter(|&c| near.1.max(c + size) - near.0.min(c) <= MAX_SPAN)
        .min_by_key(|&c| distance(c))
}

/// `EPERM (Operation not permitted)` for the raw result `-1` of an injected system call.
pub(crate) fn errno_text(result: i64) -> String {
    let errno = nix::errno::Errno::from_raw(i32::try_from(-result).unwrap_or(0));
    format!("{errno:?} ({})", errno.desc())
}

/// Maps `size` bytes of anonymous read-write memory at exactly `hint` in the target.
pub(crate) fn allocate(pid: i32, hint: u64, size: u64) -> Result<(), ApplyError> {
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
    let args = [hint, size, PROT_READ | PROT_WRITE, flags, u64::MAX, 0];
    let result = remote_syscall(pid, SYS_MMAP, args)?;
    let call = format!("mmap(0x{hint:x}, {size})");
    if (-4095..0).contains(&result) {
        return Err(ApplyError::RemoteCall {
            pid,
            call,
            detail: errno_text(result),
        });
    }
    if result as u64 != hint {
        release(pid, result as u64, size);
        return Err(ApplyError::RemoteCall {
            pid,
            call,
            detail: format!(
                "the kernel placed it at 0x{result:x} (no MAP_FIXED_NOREPLACE support?)"
            ),
        });
    }
    Ok(())
}

/// Changes the protection of `[addr, addr+size)` in the target.
pub(crate) fn protect(pid: i32, addr: u64, size: u64, prot: u64) -> Result<(), ApplyError> {
    if size == 0 {
        return Ok(());
    }
    let result = remote_syscall(pid, SYS_MPROTECT, [addr, size, prot, 0, 0, 0])?;
    if result < 0 {
        return Err(ApplyError::RemoteCall {
            pid,
            call: format!("mprotect(0x{addr:x}, {size}, {prot})"),
            detail: errno_text(result),
        });
    }
    Ok(())
}

/// Unmaps a region after a failure (best effort: the error that led here is the one to report).
pub(crate) fn release(pid: i32, addr: u64, size: u64) {
    let _ = remote_syscall(pid, SYS_MUNMAP, [addr, size, 0, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::parse_maps;

    #[test]
    fn pie_region_goes_just_below_the_executable() {
        let maps = parse_maps(
            "55d000000000-55d000001000 r--p 00000000 08:01 1 /bin/x
55d000001000-55d000002000 r-xp 00001000 08:01 1 /bin/x
55d000003000-55d000004000 rw-p 00003000 08:01 1 /bin/x
55d001000000-55d001021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 08:01 2 /lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
",
        );
        let exe = (0x55d0_0000_0000, 0x55d0_0000_4000);
        let at = choose(&maps, exe, exe, 0x3000, 0x10000).unwrap();
        assert_eq!(at, 0x55d0_0000_0000 - PAGE - 0x3000);
    }

    #[test]
    fn non_pie_region_fits_below_0x400000() {
        let maps = parse_maps(
            "00400000-00401000 r--p 00000000 08:01 1 /bin/x
00401000-00402000 r-xp 00001000 08:01 1 /bin/x
00403000-00404000 rw-p 00003000 08:01 1 /bin/x
01000000-01021000 rw-p 00000000 00:00 0 [heap]
",
        );
        let exe = (0x40_0000, 0x40_4000);
        let at = choose(&maps, exe, exe, 0x2000, 0x10000).unwrap();
        assert_eq!(at, 0x40_0000 - PAGE - 0x2000);
        assert!(choose(&maps, exe, exe, 0x8000_0000, 0x10000).is_none());
    }

    #[test]
    fn library_region_goes_just_below_the_library() {
        let maps = parse_maps(
            "55d000000000-55d000004000 r-xp 00000000 08:01 1 /bin/x
7f0000000000-7f0000100000 r-xp 00000000 08:01 2 /lib/libc.so.6
7f0000200000-7f0000204000 r-xp 00000000 08:01 3 /lib/libcase.so
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
",
        );
        let exe = (0x55d0_0000_0000, 0x55d0_0000_4000);
        let lib = (0x7f00_0020_0000, 0x7f00_0020_4000);
        let at = choose(&maps, lib, exe, 0x3000, 0x10000).unwrap();
        assert_eq!(at, 0x7f00_0020_0000 - PAGE - 0x3000);
    }
}
