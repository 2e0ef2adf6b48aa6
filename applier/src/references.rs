//! Conservative search of a stopped process's memory for code addresses: what decides that a
//! reverted patch's region may be unmapped, and finds contexts suspended inside a function being
//! replaced (a `swapcontext` coroutine is on no thread's stack, so no stack walk sees it).
//!
//! The proof is a scan, as of a moment when every thread is stopped, of every aligned 8-byte word
//! of every writable mapping (stacks, heap, `.data`/`.bss`, anonymous and shared memory; of a
//! private mapping, the pages ever written, see `resident`) and of every general-purpose register
//! of every thread. Most of it can be read before that stop ([`scan_ahead`], with the writes
//! tracked by `written`): the stop then reads only what was written since. Each word is also
//! tried demangled with glibc's pointer guard (`PTR_MANGLE`: `setjmp` buffers, `atexit`
//! handlers).
//!
//! The threads' own stacks (the main stack, and mappings right above a guard page, as
//! `pthread_create` makes them) are full of stale return addresses: a function that returned
//! leaves those of its own calls below the stack pointer, and frames called later leave old
//! values in their padding and unwritten locals, above it; the stacks glibc keeps for reuse
//! after their threads exited (known by the thread descriptor at their top, which no live
//! thread's `fs_base` points at) hold nothing else. So cached stacks are never scanned, nor the
//! part below each stack pointer (red zone included: a context switch that pops a saved address
//! holds it in a register until it jumps, and registers are scanned), and for an apply, where a false hit
//! would refuse the patch, a thread's own stack is searched only for words shaped like the saved
//! pc of a glibc `ucontext_t`: its frames are the stack walk's. Coroutine stacks (on the heap, or
//! mapped without a thread in them) are scanned whole. Memory a thread cannot reach through a
//! plain pointer (kernel state such as `sigaction` handlers, pointers stored with other encodings
//! or computed by arithmetic) is not seen, and saved contexts are not unwound: only the return
//! addresses they and their stacks hold are.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use iced_x86::{Decoder, DecoderOptions, FlowControl};

use crate::commit::Site;
use crate::error::ApplyError;
use crate::maps::{read_maps, Mapping};
use crate::ptrace::{read_memory, read_word, thread_pointer, StoppedThread};
use crate::resident::Pagemap;
use crate::written::WriteTracking;

/// Bytes read from the process at once.
const CHUNK: u64 = 1 << 20;
/// Where glibc keeps the pointer guard in the thread control block (`tcbhead_t`).
const POINTER_GUARD_OFFSET: u64 = 0x30;

/// One word found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    /// Where it is: a mapping's name (`[heap]`, `[stack]`, a path, `anonymous memory`), or
    /// `a register of thread N`.
    pub(crate) place: String,
    /// Its address (0 for a register).
    pub(crate) at: u64,
    /// The code address it holds (demangled when `mangled`).
    pub(crate) value: u64,
    /// Whether it was stored mangled with the pointer guard.
    pub(crate) mangled: bool,
}

impl Hit {
    /// `a word in [heap] at 0x...` / `a register of thread N`, for messages.
    pub(crate) fn location(&self) -> String {
        let mangled = if self.mangled {
            ", mangled with the pointer guard"
        } else {
            ""
        };
        if self.at == 0 {
            format!("{}{mangled}", self.place)
        } else {
            format!("a word in {} at 0x{:x}{mangled}", self.place, self.at)
        }
    }
}

/// What of a process a [`scan`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parts {
    /// Its writable memory and the registers of the threads given.
    All,
    /// Its writable memory only.
    Memory,
    /// The registers of the threads given only.
    Registers,
}

/// What a [`scan`] found and how much it read.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    /// The words found, in the order scanned (registers first).
    pub(crate) hits: Vec<Hit>,
    /// Bytes of memory read.
    pub(crate) read: u64,
    /// Bytes read beforehand by the [`Ahead`] scan it completed, if it completed one.
    pub(crate) read_ahead: Option<u64>,
}

impl Scanned {
    /// `21.3 MiB read while the process ran, 0.1 MiB written since then read at the stop`, or
    /// `21.3 MiB read at the stop` and why it was not read ahead.
    pub(crate) fn describe(&self, ahead: &Result<Ahead, String>) -> String {
        let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64);
        match (ahead, self.read_ahead) {
            (Ok(_), Some(read_ahead)) => format!(
                "{} read while the process ran, {} written since then read at the stop",
                mib(read_ahead),
                mib(self.read)
            ),
            (Ok(_), None) => format!(
                "{} read at the stop (the pointer guard changed since the scan ahead)",
                mib(self.read)
            ),
            (Err(why), _) => format!(
                "{} read at the stop (writes could not be tracked: {why})",
                mib(self.read)
            ),
        }
    }
}

/// A scan of a process's memory made while it runs, with writes tracked from before it read a
/// page: a [`scan`] at a stop that is given it reads only the pages written since (and what
/// was not tracked) and keeps the words found in the rest, which still hold them. Only the
/// time to read what changed is spent in the stop, not the time to read all memory.
pub(crate) struct Ahead {
    tracking: WriteTracking,
    /// The pointer guard the words were demangled with; a stop that finds another one reads
    /// everything itself.
    guard: Option<u64>,
    /// The words found, in address order.
    hits: Vec<Hit>,
    /// Bytes read.
    read: u64,
}

/// The part of a [`scan`] of `pid` (running) that can be made ahead of the stop, for the same
/// `skip`, `within` and `counts`; or why it cannot be made (see `written`).
pub(crate) fn scan_ahead(
    pid: i32,
    skip: &[Range<u64>],
    within: Range<u64>,
    counts: impl Fn(u64) -> bool,
) -> Result<Ahead, String> {
    let maps = read_maps(pid).map_err(|e| e.to_string())?;
    // Stack-shaped mappings are left to the stop, which reads only their live part (their dead
    // part may be large: a thread's stack on huge pages is present far below its pointer).
    let candidates: Vec<Mapping> = (0..maps.len())
        .filter(|&i| !stack_shaped(&maps, i))
        .map(|i| maps[i].clone())
        .filter(|m| scanned(m) && !skip.iter().any(|r| r.start < m.end && m.start < r.end))
        .collect();
    let tracking = WriteTracking::start(pid, &candidates)?;
    let guard = thread_pointer(pid)
        .ok()
        .and_then(|tp| read_word(pid, tp.checked_add(POINTER_GUARD_OFFSET)?));
    let mem = open_mem(pid).map_err(|e| e.to_string())?;
    let pagemap = Pagemap::open(pid);
    let matches = matcher(&within, &counts, guard);
    let mut hits = Vec::new();
    let mut read = 0;
    for mapping in &candidates {
        if !tracking.tracks(&(mapping.start..mapping.end)) {
            continue;
        }
        let place = place_of(mapping);
        let whole = std::iter::once(mapping.start..mapping.end).collect();
        for range in holding_data(&pagemap, mapping, whole) {
            read += scan_range(&mem, range, &mut |at, word| {
                if let Some((value, mangled)) = matches(word) {
                    hits.push(Hit {
                        place: place.clone(),
                        at,
                        value,
                        mangled,
                    });
                }
            });
        }
    }
    Ok(Ahead {
        tracking,
        guard,
        hits,
        read,
    })
}

/// Whether a word is sought: it lies in `within` and `counts` holds, plain or demangled with
/// `guard`; returns the address it holds and whether it was mangled.
fn matcher<'a>(
    within: &'a Range<u64>,
    counts: &'a impl Fn(u64) -> bool,
    guard: Option<u64>,
) -> impl Fn(u64) -> Option<(u64, bool)> + 'a {
    move |word: u64| {
        if within.contains(&word) && counts(word) {
            return Some((word, false));
        }
        let plain = guard.map(|g| word.rotate_right(0x11) ^ g)?;
        (within.contains(&plain) && counts(plain)).then_some((plain, true))
    }
}

/// Every word of writable memory and every register of `threads` (all of `pid`, stopped) that
/// lies in `within` and for which `counts` holds, outside `skip` and the threads' stacks as
/// `stacks` says; of those, the `parts` asked for. With `ahead` (made with the same `skip`,
/// `within` and `counts`), the memory it read and that was not written since is not read again.
pub(crate) fn scan(
    pid: i32,
    (threads, parts): (&[StoppedThread], Parts),
    skip: &[Range<u64>],
    stacks: Stacks,
    (within, counts): (Range<u64>, impl Fn(u64) -> bool),
    ahead: Option<&Ahead>,
) -> Result<Scanned, ApplyError> {
    let maps = read_maps(pid)?;
    let guard = pointer_guard(pid, threads);
    let ahead = ahead.filter(|a| a.guard == guard);
    let matches = matcher(&within, &counts, guard);
    let mut found = Scanned {
        read_ahead: ahead.map(|a| a.read),
        ..Scanned::default()
    };
    for thread in threads.iter().filter(|_| parts != Parts::Memory) {
        for &register in &thread.registers {
            if let Some((value, mangled)) = matches(register) {
                found.hits.push(Hit {
                    place: format!("a register of thread {}", thread.tid),
                    at: 0,
                    value,
                    mangled,
                });
            }
        }
    }
    if parts == Parts::Registers {
        return Ok(found);
    }
    let mem = open_mem(pid)?;
    let own_stacks = excluded_stacks(&maps, threads, stacks);
    let mut excluded: Vec<Range<u64>> = skip.to_vec();
    excluded.extend(own_stacks.iter().cloned());
    excluded.extend(exited_thread_stacks(&maps, threads, |m| {
        thread_descriptor(&mem, m)
    }));
    let pagemap = Pagemap::open(pid);
    for mapping in maps.iter().filter(|m| scanned(m)) {
        let place = place_of(mapping);
        let pieces = subtract(mapping.start..mapping.end, &excluded);
        let written =
            ahead.and_then(|a| Some((a, a.tracking.written(mapping.start..mapping.end)?)));
        let to_read = match &written {
            Some((ahead, written)) => {
                found.hits.extend(still_held(&ahead.hits, &pieces, written));
                intersect(&pieces, written)
            }
            None => holding_data(&pagemap, mapping, pieces),
        };
        for range in to_read {
            found.read += scan_range(&mem, range, &mut |at, word| {
                if let Some((value, mangled)) = matches(word) {
                    found.hits.push(Hit {
                        place: place.clone(),
                        at,
                        value,
                        mangled,
                    });
                }
            });
        }
        if stacks != Stacks::Walked {
            continue;
        }
        // A thread's own stack may still hold a saved context (a `ucontext_t` local of a
        // running frame, the context a thread left to run a coroutine): only words with that
        // shape count there, above the stack pointer of the thread on it (all of it while its
        // thread runs elsewhere, on a coroutine's stack).
        let inside = |r: &&Range<u64>| mapping.start <= r.start && r.end <= mapping.end;
        for stack in own_stacks.iter().filter(inside) {
            let live = threads
                .iter()
                .map(|t| t.sp)
                .find(|sp| stack.contains(sp))
                .unwrap_or(stack.start);
            for range in holding_data(&pagemap, mapping, subtract(live..stack.end, skip)) {
                found.read += scan_range(&mem, range, &mut |at, word| {
                    if within.contains(&word)
                        && counts(word)
                        && saved_context(&mem, &maps, at, word)
                    {
                        found.hits.push(Hit {
                            place: format!("{place} (a saved ucontext_t)"),
                            at,
                            value: word,
                            mangled: false,
                        });
                    }
                });
            }
        }
    }
    Ok(found)
}

/// The hits of a scan ahead (in address order) that lie in `pieces` and on no page of
/// `written` (in address order): their words hold the same value still.
fn still_held<'a>(
    hits: &'a [Hit],
    pieces: &'a [Range<u64>],
    written: &'a [Range<u64>],
) -> impl Iterator<Item = Hit> + 'a {
    pieces.iter().flat_map(move |piece| {
        let from = hits.partition_point(|h| h.at < piece.start);
        let to = hits.partition_point(|h| h.at < piece.end);
        hits[from..to]
            .iter()
            .filter(|h| {
                let i = written.partition_point(|w| w.end <= h.at);
                written.get(i).is_none_or(|w| h.at < w.start)
            })
            .cloned()
    })
}

/// The parts of `ranges` (of `mapping`) to read: of a private mapping, only pages ever written.
fn holding_data(
    pagemap: &Option<Pagemap>,
    mapping: &Mapping,
    ranges: Vec<Range<u64>>,
) -> Vec<Range<u64>> {
    match pagemap {
        Some(map) if mapping.perms.as_bytes().get(3) == Some(&b'p') => {
            ranges.into_iter().flat_map(|r| map.written(r)).collect()
        }
        _ => ranges,
    }
}

/// The parts of `pieces` inside `written` (both in address order).
fn intersect(pieces: &[Range<u64>], written: &[Range<u64>]) -> Vec<Range<u64>> {
    pieces
        .iter()
        .flat_map(|p| {
            written
                .iter()
                .map(|w| w.start.max(p.start)..w.end.min(p.end))
                .filter(|r| r.start < r.end)
        })
        .collect()
}

/// `/proc/PID/mem`, to read a process's memory without stopping it.
fn open_mem(pid: i32) -> Result<File, ApplyError> {
    File::open(format!("/proc/{pid}/mem")).map_err(|e| ApplyError::ProcRead {
        pid,
        what: format!("/proc/{pid}/mem"),
        detail: e.to_string(),
    })
}

/// `2 words in [heap] and 1 in [stack] point into it (the first: a word in [heap] at 0x... holds
/// 0x...)`.
pub(crate) fn summary(hits: &[Hit]) -> String {
    let mut places: Vec<(&str, usize)> = Vec::new();
    for hit in hits {
        match places.iter_mut().find(|(p, _)| *p == hit.place) {
            Some((_, n)) => *n += 1,
            None => places.push((&hit.place, 1)),
        }
    }
    let parts: Vec<String> = places
        .iter()
        .enumerate()
        .map(|(i, (place, n))| {
            let noun = match (i, *n) {
                (0, 1) => "word ",
                (0, _) => "words ",
                _ => "",
            };
            format!("{n} {noun}in {place}")
        })
        .collect();
    let first = hits
        .first()
        .map(|h| format!(" (the first: {} holds 0x{:x})", h.location(), h.value))
        .unwrap_or_default();
    format!("{} point into it{first}", parts.join(" and "))
}

/// Whether a mapping is scanned: readable and writable, not the kernel's own pages.
fn scanned(mapping: &Mapping) -> bool {
    let perms = mapping.perms.as_bytes();
    perms.first() == Some(&b'r')
        && perms.get(1) == Some(&b'w')
        && !matches!(
            mapping.path.as_deref(),
            Some("[vvar]" | "[vsyscall]" | "[vvar_vclock]")
        )
}

fn place_of(mapping: &Mapping) -> String {
    mapping
        .path
        .clone()
        .unwrap_or_else(|| "anonymous memory".into())
}

/// How a scan treats the stacks of the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stacks {
    /// Scanned above each thread's stack pointer: a running frame's local may hold a pointer
    /// (a revert, where a false hit only keeps a region mapped).
    Live,
    /// Not scanned: a thread's frames are its stack walk's, and anything else there is data of
    /// running frames or stale (an apply, where a false hit would refuse it).
    Walked,
}

/// What a scan leaves out of the threads' own stacks (`[stack]`, and anonymous mappings right
/// above a `---p` guard page, as `pthread_create` makes them): with [`Stacks::Live`], the dead
/// part below each stack pointer; with [`Stacks::Walked`], `[stack]` and each such mapping that
/// holds a thread's stack pointer or thread control block (glibc puts it at the top of the
/// thread's stack).
fn excluded_stacks(maps: &[Mapping], threads: &[StoppedThread], stacks: Stacks) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for (i, mapping) in maps.iter().enumerate() {
        if !stack_shaped(maps, i) {
            continue;
        }
        let main = mapping.path.as_deref() == Some("[stack]");
        let inside = |a: u64| mapping.start <= a && a < mapping.end;
        let sp = threads.iter().map(|t| t.sp).find(|&sp| inside(sp));
        let tcb = threads.iter().any(|t| inside(t.fs_base));
        match (stacks, sp) {
            (Stacks::Live, Some(sp)) => out.push(mapping.start..sp),
            (Stacks::Walked, _) if main || tcb || sp.is_some() => {
                out.push(mapping.start..mapping.end)
            }
            _ => {}
        }
    }
    out
}

/// Whether `maps[i]` has the shape of a thread's stack: `[stack]`, or an anonymous mapping right
/// above a `---p` guard page, as `pthread_create` makes them.
fn stack_shaped(maps: &[Mapping], i: usize) -> bool {
    let mapping = &maps[i];
    let guarded = i
        .checked_sub(1)
        .map(|j| &maps[j])
        .is_some_and(|below| below.end == mapping.start && below.perms.starts_with("---"));
    mapping.path.as_deref() == Some("[stack]") || (mapping.path.is_none() && guarded)
}

/// The stacks glibc keeps for reuse after their threads exited: anonymous mappings right above a
/// guard page whose top holds a thread descriptor (`struct pthread`, found by `descriptor_of`)
/// that is no thread's (no `fs_base` points at it). Nothing runs on such a stack until
/// `pthread_create` hands it to a new thread, which starts it afresh, so the return addresses
/// its dead frames left are never returned into; scanned, they would block an apply for as long
/// as the stack stays unused (seconds, when threads come and go).
fn exited_thread_stacks(
    maps: &[Mapping],
    threads: &[StoppedThread],
    descriptor_of: impl Fn(&Mapping) -> Option<u64>,
) -> Vec<Range<u64>> {
    maps.windows(2)
        .filter(|pair| {
            let (below, mapping) = (&pair[0], &pair[1]);
            below.end == mapping.start && below.perms.starts_with("---") && mapping.path.is_none()
        })
        .map(|pair| &pair[1])
        .filter(|mapping| {
            descriptor_of(mapping).is_some_and(|pd| threads.iter().all(|t| t.fs_base != pd))
        })
        .map(|mapping| mapping.start..mapping.end)
        .collect()
}

/// How far below a thread stack's top glibc's thread descriptor can lie: the descriptor itself
/// (2.3 KiB in glibc 2.36) and its alignment, with room for larger ones.
const DESCRIPTOR_SEARCH: u64 = 16 << 10;

/// The address of the glibc thread descriptor at the top of `mapping`, if it holds one:
/// `pthread_create` places the `struct pthread` of the thread at the top of its stack, and the
/// descriptor starts with `tcbhead_t`, whose `tcb` (offset 0) and `self` (offset 16) both
/// point at the descriptor itself.
fn thread_descriptor(mem: &File, mapping: &Mapping) -> Option<u64> {
    let start = mapping
        .end
        .saturating_sub(DESCRIPTOR_SEARCH)
        .max(mapping.start);
    let mut top = vec![0u8; (mapping.end - start) as usize];
    mem.read_exact_at(&mut top, start).ok()?;
    let word = |offset: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            top.get(offset..offset + 8)?.try_into().ok()?,
        ))
    };
    (0..top.len()).step_by(8).rev().find_map(|offset| {
        let at = start + offset as u64;
        (word(offset)? == at && word(offset + 16)? == at).then_some(at)
    })
}

/// `range` without every range of `excluded`.
fn subtract(range: Range<u64>, excluded: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut pieces = vec![range];
    for cut in excluded.iter().filter(|c| !c.is_empty()) {
        pieces = pieces
            .into_iter()
            .flat_map(|p| {
                if cut.end <= p.start || p.end <= cut.start {
                    return vec![p];
                }
                let mut left = Vec::new();
                if p.start < cut.start {
                    left.push(p.start..cut.start);
                }
                if cut.end < p.end {
                    left.push(cut.end..p.end);
                }
                left
            })
            .collect();
    }
    pieces
}

/// Calls `each(address, word)` for every aligned word of `range` that can be read; returns the
/// bytes read.
fn scan_range(mem: &File, range: Range<u64>, each: &mut impl FnMut(u64, u64)) -> u64 {
    let mut at = range.start.next_multiple_of(8);
    let mut buf = Vec::new();
    let mut read = 0;
    while at + 8 <= range.end {
        let len = CHUNK.min((range.end - at) & !7);
        buf.resize(len as usize, 0);
        if mem.read_exact_at(&mut buf, at).is_ok() {
            read += len;
            for (i, word) in buf.chunks_exact(8).enumerate() {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(word);
                each(at + 8 * i as u64, u64::from_le_bytes(bytes));
            }
        }
        at += len;
    }
    read
}

/// Whether the word `rip` at `at` is the saved pc of a glibc `ucontext_t` as `getcontext` and
/// `swapcontext` write it: the saved stack pointer `rsp` comes right before it
/// (`gregs[REG_RSP]`, `gregs[REG_RIP]`), points into writable memory, and the return address the
/// call pushed is still right below it.
fn saved_context(mem: &File, maps: &[Mapping], at: u64, rip: u64) -> bool {
    let word = |address: u64| {
        let mut bytes = [0u8; 8];
        mem.read_exact_at(&mut bytes, address)
            .ok()
            .map(|()| u64::from_le_bytes(bytes))
    };
    let Some(rsp) = at.checked_sub(8).and_then(word) else {
        return false;
    };
    let writable = maps
        .iter()
        .any(|m| scanned(m) && m.start <= rsp && rsp < m.end);
    writable && rsp.checked_sub(8).and_then(word) == Some(rip)
}

/// glibc's pointer guard, read from the thread control block of the first thread.
fn pointer_guard(pid: i32, threads: &[StoppedThread]) -> Option<u64> {
    let tcb = threads.iter().map(|t| t.fs_base).find(|&b| b != 0)?;
    read_word(pid, tcb.checked_add(POINTER_GUARD_OFFSET)?)
}

/// The functions being replaced, with their code, to recognise return addresses into them.
pub(crate) struct ReturnTargets {
    /// (entry, code, name), the code read from the process before the stop.
    functions: Vec<(u64, Vec<u8>, String)>,
    /// The search of memory for them made ahead of a stop, if [`ReturnTargets::scan_ahead`]
    /// made it.
    ahead: Option<Ahead>,
}

impl ReturnTargets {
    /// The old functions of `sites`, read from `pid`. A function that cannot be read is left
    /// out.
    pub(crate) fn for_sites(pid: i32, sites: &[Site]) -> ReturnTargets {
        let functions = sites
            .iter()
            .filter_map(|s| {
                let len = usize::try_from(s.function.1.checked_sub(s.function.0)?).ok()?;
                let code = read_memory(pid, s.function.0, len).ok()?;
                Some((s.function.0, code, s.name.clone()))
            })
            .collect();
        ReturnTargets {
            functions,
            ahead: None,
        }
    }

    /// Searches `pid`'s memory for return addresses into the functions while it runs (see
    /// [`scan_ahead`]), so that the search at each later stop reads only what was written
    /// since. Without write tracking, nothing changes: each stop reads everything.
    pub(crate) fn scan_ahead(&mut self, pid: i32) {
        let ahead = scan_ahead(pid, &[], self.bounds(), |w| self.function_of(w).is_some());
        self.ahead = ahead.ok();
    }

    /// The search made ahead of the stop, if any.
    pub(crate) fn ahead(&self) -> Option<&Ahead> {
        self.ahead.as_ref()
    }

    /// From the lowest entry to the highest end: no return address into them lies outside.
    pub(crate) fn bounds(&self) -> Range<u64> {
        let start = self.functions.iter().map(|f| f.0).min().unwrap_or(0);
        let end = self
            .functions
            .iter()
            .map(|f| f.0.saturating_add(f.1.len() as u64 + 1))
            .max()
            .unwrap_or(0);
        start..end
    }

    /// The function `word` is a return address into: strictly after its entry, at the end of a
    /// call instruction of its body (a function pointer holds an entry, which is no return
    /// address).
    pub(crate) fn function_of(&self, word: u64) -> Option<&str> {
        self.functions.iter().find_map(|(entry, code, name)| {
            let offset = usize::try_from(word.checked_sub(*entry)?).ok()?;
            (offset > 0 && offset <= code.len() && follows_call(code, *entry, offset))
                .then_some(name.as_str())
        })
    }
}

/// Whether an instruction of `code` (at `ip`) that is a call ends exactly at `offset`.
fn follows_call(code: &[u8], ip: u64, offset: usize) -> bool {
    (2..=15.min(offset)).any(|len| {
        let start = offset - len;
        let mut decoder = Decoder::with_ip(
            64,
            &code[start..offset],
            ip + start as u64,
            DecoderOptions::NONE,
        );
        let instruction = decoder.decode();
        !instruction.is_invalid()
            && instruction.len() == len
            && matches!(
                instruction.flow_control(),
                FlowControl::Call | FlowControl::IndirectCall
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(start: u64, end: u64, perms: &str, path: Option<&str>) -> Mapping {
        Mapping {
            start,
            end,
            perms: perms.into(),
            offset: 0,
            path: path.map(str::to_string),
        }
    }

    fn thread(sp: u64) -> StoppedThread {
        StoppedThread {
            tid: 7,
            pc: 0,
            sp,
            bp: 0,
            registers: vec![],
            fs_base: 0,
        }
    }

    #[test]
    fn return_addresses_follow_calls_and_entries_do_not_count() {
        // push rbp; call rel32; mov eax,1; call rax; pop rbp; ret
        let code = [
            0x55, 0xe8, 0, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0xff, 0xd0, 0x5d, 0xc3,
        ];
        let targets = ReturnTargets {
            functions: vec![(0x1000, code.to_vec(), "f".into())],
            ahead: None,
        };
        assert_eq!(targets.function_of(0x1000), None, "the entry");
        assert_eq!(targets.function_of(0x1006), Some("f"), "after call rel32");
        assert_eq!(targets.function_of(0x100d), Some("f"), "after call rax");
        assert_eq!(targets.function_of(0x100b), None, "after a mov");
        assert_eq!(targets.function_of(0x1001), None, "after push");
        assert_eq!(targets.function_of(0x2000), None, "outside");
    }

    #[test]
    fn thread_stacks_are_scanned_above_the_stack_pointer_or_not_at_all() {
        let maps = [
            mapping(0x1000, 0x2000, "---p", None),
            mapping(0x2000, 0x9000, "rw-p", None),
            mapping(0x9000, 0xa000, "---p", None),
            mapping(0xa000, 0xc000, "rw-p", None),
            mapping(0x10000, 0x20000, "rw-p", Some("[heap]")),
            mapping(0x30000, 0x40000, "rw-p", Some("[stack]")),
        ];
        // A pthread on its stack, one running a coroutine on the heap, its own stack's TCB at
        // 0xbf00; the main thread.
        let mut on_coroutine = thread(0x18000);
        on_coroutine.fs_base = 0xbf00;
        let threads = [thread(0x8000), on_coroutine, thread(0x3f000)];
        assert_eq!(
            excluded_stacks(&maps, &threads, Stacks::Live),
            vec![0x2000..0x8000, 0x30000..0x3f000]
        );
        assert_eq!(
            excluded_stacks(&maps, &threads, Stacks::Walked),
            vec![0x2000..0x9000, 0xa000..0xc000, 0x30000..0x40000]
        );
        assert_eq!(
            subtract(0x0..0x100, &[0x10..0x20, 0x80..0x200]),
            vec![0x0..0x10, 0x20..0x80]
        );
    }

    #[test]
    fn a_guarded_stack_whose_descriptor_is_no_threads_is_left_out() {
        let maps = [
            mapping(0x1000, 0x2000, "---p", None),
            mapping(0x2000, 0x9000, "rw-p", None),
            mapping(0x9000, 0xa000, "---p", None),
            mapping(0xa000, 0xc000, "rw-p", None),
            mapping(0xc000, 0xd000, "rw-p", None),
        ];
        // Each guarded mapping has a descriptor at its top; the second's is a live thread's;
        // the unguarded one is never asked.
        let descriptor_of = |m: &Mapping| {
            assert_ne!(m.start, 0xc000);
            Some(m.end - 0x900)
        };
        let mut live = thread(0xb000);
        live.fs_base = 0xc000 - 0x900;
        assert_eq!(
            exited_thread_stacks(&maps, &[live], descriptor_of),
            vec![0x2000..0x9000]
        );
        assert_eq!(exited_thread_stacks(&maps, &[], |_| None), vec![]);
    }

    #[test]
    fn summary_names_places_and_the_first_word() {
        let hit = |place: &str, at| Hit {
            place: place.into(),
            at,
            value: 0x5000,
            mangled: false,
        };
        let text = summary(&[
            hit("[heap]", 0x10),
            hit("[heap]", 0x18),
            hit("[stack]", 0x20),
        ]);
        assert_eq!(
            text,
            "2 words in [heap] and 1 in [stack] point into it (the first: a word in [heap] at \
             0x10 holds 0x5000)"
        );
    }

    #[test]
    fn scans_this_process_for_a_word_it_holds() {
        let pid = std::process::id() as i32;
        let marker: Box<u64> = Box::new(0x5eed_0000_1234_5678);
        let hits = scan(
            pid,
            (&[], Parts::All),
            &[],
            Stacks::Live,
            (0..u64::MAX, |w| w == 0x5eed_0000_1234_5678),
            None,
        )
        .unwrap()
        .hits;
        assert!(
            hits.iter().any(|h| h.at == &*marker as *const u64 as u64),
            "{hits:?}"
        );
    }

    /// A word that moves, after the scan ahead, from a page it read into one it read already
    /// is found where it is at the stop, and not where it was: the page it left was written
    /// too, so it is read again.
    #[test]
    fn a_scan_completing_one_ahead_sees_a_word_moved_meanwhile() {
        use crate::ptrace::StoppedProcess;
        use crate::test_support::Conversation;

        const MARKER: u64 = 0x5eed_0000_8765_4321;
        let mut child = Conversation::start(
            r#"#include <stdio.h>
               #include <stdlib.h>
               #include <unistd.h>
               int main(void) {
                   unsigned long *low = aligned_alloc(4096, 4096);
                   unsigned long *high = aligned_alloc(4096, 4096);
                   char c;
                   low[0] = 0;
                   high[0] = 0x5eed000087654321UL;
                   printf("%lx %lx\n", (unsigned long)low, (unsigned long)high);
                   fflush(stdout);
                   if (read(0, &c, 1) != 1) return 1;
                   *(volatile unsigned long *)&low[0] = high[0];
                   *(volatile unsigned long *)&high[0] = 0;
                   printf("moved\n");
                   fflush(stdout);
                   return read(0, &c, 1) != 1;
               }"#,
        );
        let pid = child.pid();
        let words: Vec<u64> = child
            .line()
            .split_whitespace()
            .map(|w| u64::from_str_radix(w, 16).unwrap())
            .collect();
        let (low, high) = (words[0], words[1]);
        let sought = || (MARKER..MARKER + 1, |_: u64| true);
        let (within, counts) = sought();
        let ahead = scan_ahead(pid, &[], within, counts).unwrap_or_else(|why| panic!("{why}"));
        let at: Vec<u64> = ahead.hits.iter().map(|h| h.at).collect();
        assert_eq!(at, vec![high], "the scan ahead finds it where it is first");

        child.go_on();
        assert_eq!(child.line(), "moved");
        let stopped = StoppedProcess::stop_all(pid).unwrap();
        let scanned = scan(
            pid,
            (stopped.threads(), Parts::Memory),
            &[],
            Stacks::Live,
            sought(),
            Some(&ahead),
        )
        .unwrap();
        stopped.resume().unwrap();
        let at: Vec<u64> = scanned.hits.iter().map(|h| h.at).collect();
        assert_eq!(at, vec![low], "{scanned:?}");
        assert_eq!(scanned.read_ahead, Some(ahead.read));
        assert!(
            scanned.read < ahead.read,
            "the stop reads less than the scan ahead: {scanned:?}"
        );
        child.finish();
    }
}
