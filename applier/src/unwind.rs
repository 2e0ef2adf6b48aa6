//! Stack unwinding of stopped threads through CFI: framehop over the `.eh_frame` of every module
//! of the target (and the vDSO), with stack memory read through `/proc/PID/mem`.
//!
//! The code of installed patches is unwound through the `.eh_frame` records each patch carries
//! in its region (recorded in its ledger, read from the process: [`StackUnwinder::add_patches`]),
//! the patch being applied through the records of its linked image.
//!
//! The tables are built before any thread is stopped ([`StackUnwinder::for_target`]); at the stop
//! only the stacks are read. A frame in code without CFI (a patch without records, JIT code,
//! anything not backed by a module) ends the walk, and the stack is reported incomplete: callers
//! treat what they could not see conservatively.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use object::{Object, ObjectSection};

use crate::installed::InstalledPatch;
use crate::ledger::UnwindRecord;
use crate::maps::read_maps;
use crate::ptrace::StoppedThread;
use crate::target::Target;

/// Frames walked per thread at most (a guard against loops in corrupt stacks).
const MAX_FRAMES: usize = 256;

/// Unwind tables of one process, ready for use at the stop.
pub(crate) struct StackUnwinder {
    unwinder: UnwinderX86_64<Vec<u8>>,
    /// Address ranges of the modules that have CFI.
    covered: Vec<Range<u64>>,
    /// Function symbols of every module at runtime addresses, sorted: (start, end, name).
    names: Vec<(u64, u64, String)>,
}

/// The call stack of one stopped thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThreadStack {
    /// Thread id.
    pub(crate) tid: i32,
    /// The pc, then every return address found, innermost first.
    pub(crate) frames: Vec<u64>,
    /// Why the walk stopped before the outermost frame, if it did.
    pub(crate) incomplete: Option<String>,
}

impl StackUnwinder {
    /// Reads the `.eh_frame` of every module of `target` from disk and the vDSO from memory.
    /// Modules that cannot be read are left out (their frames end walks as "no CFI").
    pub(crate) fn for_target(target: &Target) -> StackUnwinder {
        let pid = target.pid();
        let mut unwinder = UnwinderX86_64::new();
        let mut covered = Vec::new();
        let mut names = Vec::new();
        for module in &target.modules {
            let symbols = &module.symbols;
            let tables = [&symbols.symtab_globals, &symbols.dynsym]
                .into_iter()
                .chain(symbols.files.iter().map(|g| &g.locals));
            for table in tables {
                for symbol in table.values().flatten().filter(|s| s.is_function()) {
                    let start = module.address_of(symbol);
                    names.push((start, start + symbol.size.max(1), symbol.name.clone()));
                }
            }
            let path = if module.is_exe {
                format!("/proc/{pid}/exe")
            } else {
                module.path.clone()
            };
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let lo = module.ranges.iter().map(|r| r.0).min().unwrap_or(0);
            let hi = module.ranges.iter().map(|r| r.1).max().unwrap_or(0);
            if let Some(m) = module_from_elf(&module.path, &bytes, lo..hi, module.bias) {
                unwinder.add_module(m);
                covered.push(lo..hi);
            }
        }
        if let Some((range, bytes)) = read_vdso(pid) {
            if let Some(m) = module_from_elf("[vdso]", &bytes, range.clone(), range.start) {
                unwinder.add_module(m);
                covered.push(range);
            }
        }
        names.sort();
        names.dedup_by_key(|n| n.0);
        StackUnwinder {
            unwinder,
            covered,
            names,
        }
    }

    /// [`StackUnwinder::for_target`] with the code and the names of the patches `installed`
    /// in `pid` ([`StackUnwinder::add_patches`]): what a stop's safety check walks with.
    pub(crate) fn for_process(
        target: &Target,
        pid: i32,
        installed: &[InstalledPatch],
    ) -> StackUnwinder {
        let mut unwinder = StackUnwinder::for_target(target);
        unwinder.add_patches(pid, installed);
        unwinder.add_names(crate::revert::patch_names(installed));
        unwinder
    }

    /// Adds the code of every patch region still mapped in `pid` (applied, prepared, and
    /// reverted ones kept mapped, whose code threads may still run), with the `.eh_frame`
    /// records its ledger points to, read from the process. Patches without records (older
    /// versions) stay uncovered: frames in them end walks as before.
    pub(crate) fn add_patches(&mut self, pid: i32, installed: &[InstalledPatch]) {
        for patch in installed {
            let Some(unwind) = patch.record.unwind else {
                continue;
            };
            let Ok(size) = usize::try_from(unwind.eh_frame_size) else {
                continue;
            };
            let Ok(eh_frame) = crate::ptrace::read_memory(pid, unwind.eh_frame_address, size)
            else {
                continue;
            };
            self.add_patch_code(&format!("[patch {}]", patch.patch_id), &unwind, eh_frame);
        }
    }

    /// Adds code at `unwind.text_*` described by the `.eh_frame` records `eh_frame`, which live
    /// at `unwind.eh_frame_address`.
    pub(crate) fn add_patch_code(&mut self, name: &str, unwind: &UnwindRecord, eh_frame: Vec<u8>) {
        let text = unwind.text_address..unwind.text_address.saturating_add(unwind.text_size);
        let eh_range = unwind.eh_frame_address
            ..unwind
                .eh_frame_address
                .saturating_add(eh_frame.len() as u64);
        if text.is_empty() || !well_formed_records(&eh_frame) {
            return;
        }
        let info = ExplicitModuleSectionInfo {
            base_svma: text.start,
            text_svma: Some(text.clone()),
            eh_frame_svma: Some(eh_range),
            eh_frame: Some(eh_frame),
            ..Default::default()
        };
        self.unwinder.add_module(Module::new(
            name.to_string(),
            text.clone(),
            text.start,
            info,
        ));
        self.covered.push(text);
    }

    /// Adds names for code outside the modules (the functions of installed patches).
    pub(crate) fn add_names(&mut self, extra: impl IntoIterator<Item = (u64, u64, String)>) {
        self.names.extend(extra);
        self.names.sort();
    }

    /// Whether `address` is in code with unwind information (a module or a patch).
    pub(crate) fn covers(&self, address: u64) -> bool {
        self.covered.iter().any(|r| r.contains(&address))
    }

    /// `name+0xoff` for an address in a known function, else the bare address.
    pub(crate) fn symbolize(&self, address: u64) -> String {
        let at = self.names.partition_point(|n| n.0 <= address);
        match at.checked_sub(1).map(|i| &self.names[i]) {
            Some((start, end, name)) if address < *end => {
                format!("{name}+0x{:x} (0x{address:x})", address - start)
            }
            _ => format!("0x{address:x}"),
        }
    }

    /// Walks the stacks of stopped threads of `pid`, reading its memory through one open file
    /// and sharing one rule cache.
    pub(crate) fn unwind_all(&self, pid: i32, threads: &[StoppedThread]) -> Vec<ThreadStack> {
        let mem = File::open(format!("/proc/{pid}/mem"));
        let mut cache = CacheX86_64::<_>::new();
        threads
            .iter()
            .map(|thread| match &mem {
                Ok(mem) => self.unwind_one(mem, &mut cache, thread),
                Err(e) => ThreadStack {
                    tid: thread.tid,
                    frames: vec![thread.pc],
                    incomplete: Some(format!("cannot read its stack: {e}")),
                },
            })
            .collect()
    }

    fn unwind_one(
        &self,
        mem: &File,
        cache: &mut CacheX86_64,
        thread: &StoppedThread,
    ) -> ThreadStack {
        let mut stack = ThreadStack {
            tid: thread.tid,
            frames: Vec::new(),
            incomplete: None,
        };
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let mut word = [0u8; 8];
            mem.read_exact_at(&mut word, addr).map_err(|_| ())?;
            Ok(u64::from_le_bytes(word))
        };
        let regs = UnwindRegsX86_64::new(thread.pc, thread.sp, thread.bp);
        let mut frames = self
            .unwinder
            .iter_frames(thread.pc, regs, cache, &mut read_stack);
        loop {
            if stack.frames.len() >= MAX_FRAMES {
                stack.incomplete = Some(format!("more than {MAX_FRAMES} frames"));
                break;
            }
            match frames.next() {
                Ok(Some(frame)) => {
                    let address = match frame {
                        FrameAddress::InstructionPointer(pc) => pc,
                        FrameAddress::ReturnAddress(ra) => ra.get(),
                    };
                    stack.frames.push(address);
                    // framehop falls back to frame pointers where it has no CFI; with code built
                    // without them that guess is unreliable, so stop and say so.
                    let lookup = match frame {
                        FrameAddress::InstructionPointer(pc) => pc,
                        FrameAddress::ReturnAddress(_) => address.saturating_sub(1),
                    };
                    if !self.covered.iter().any(|r| r.contains(&lookup)) {
                        stack.incomplete =
                            Some(format!("no unwind information for code at 0x{address:x}"));
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    stack.incomplete = Some(e.to_string());
                    break;
                }
            }
        }
        stack
    }
}

/// Whether `data` is a non-empty sequence of CIE/FDE records that exactly fills it (32-bit
/// lengths only): what the applier writes. Anything else is left out, so its frames end walks
/// instead of being guessed through.
fn well_formed_records(data: &[u8]) -> bool {
    let mut at = 0usize;
    while at < data.len() {
        let Some(len) = data
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
        else {
            return false;
        };
        if len == 0 || len == u32::MAX {
            return false;
        }
        at = match at.checked_add(4 + len as usize) {
            Some(next) if next <= data.len() => next,
            _ => return false,
        };
    }
    at > 0
}

/// A framehop module for an ELF image mapped at `avma` with load bias `bias`.
fn module_from_elf(
    name: &str,
    bytes: &[u8],
    avma: Range<u64>,
    bias: u64,
) -> Option<Module<Vec<u8>>> {
    let file = object::File::parse(bytes).ok()?;
    let section = |name: &str| {
        let s = file.section_by_name(name)?;
        let data = s.data().ok()?.to_vec();
        Some((s.address()..s.address() + s.size(), data))
    };
    let eh_frame = section(".eh_frame")?;
    let eh_frame_hdr = section(".eh_frame_hdr");
    let text = section(".text");
    let got = file
        .section_by_name(".got")
        .map(|s| s.address()..s.address() + s.size());
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: text.as_ref().map(|t| t.0.clone()),
        text: text.map(|t| t.1),
        got_svma: got,
        eh_frame_svma: Some(eh_frame.0),
        eh_frame: Some(eh_frame.1),
        eh_frame_hdr_svma: eh_frame_hdr.as_ref().map(|h| h.0.clone()),
        eh_frame_hdr: eh_frame_hdr.map(|h| h.1),
        ..Default::default()
    };
    Some(Module::new(name.to_string(), avma, bias, info))
}

/// The vDSO's address range and image, read from the target's memory.
fn read_vdso(pid: i32) -> Option<(Range<u64>, Vec<u8>)> {
    let maps = read_maps(pid).ok()?;
    let vdso = maps.iter().find(|m| m.path.as_deref() == Some("[vdso]"))?;
    let bytes =
        crate::ptrace::read_memory(pid, vdso.start, (vdso.end - vdso.start) as usize).ok()?;
    Some((vdso.start..vdso.end, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwinds_this_test_thread_through_its_own_modules() {
        // Our own process is a fine target for reading: the walk starts from this function's
        // registers as a stopped thread would report them.
        let target = Target::inspect(std::process::id() as i32).unwrap();
        let unwinder = StackUnwinder::for_target(&target);
        assert!(!unwinder.covered.is_empty());
        let bogus = StoppedThread {
            tid: 1,
            pc: 0x10,
            sp: 0,
            bp: 0,
            registers: vec![],
            fs_base: 0,
        };
        let stack = unwinder
            .unwind_all(std::process::id() as i32, &[bogus])
            .remove(0);
        assert_eq!(stack.frames, vec![0x10]);
        assert!(stack.incomplete.is_some());
    }

    #[test]
    fn patch_code_needs_well_formed_records() {
        assert!(well_formed_records(&[4, 0, 0, 0, 1, 2, 3, 4]));
        assert!(!well_formed_records(&[]));
        assert!(!well_formed_records(&[4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]));
        assert!(!well_formed_records(&[8, 0, 0, 0, 1, 2, 3, 4]));
        let target = Target::inspect(std::process::id() as i32).unwrap();
        let mut unwinder = StackUnwinder::for_target(&target);
        let before = unwinder.covered.len();
        let unwind = UnwindRecord {
            eh_frame_address: 0x2000,
            eh_frame_size: 4,
            text_address: 0x1000,
            text_size: 0x100,
        };
        unwinder.add_patch_code("[patch x]", &unwind, vec![0, 0, 0, 0]);
        assert_eq!(
            unwinder.covered.len(),
            before,
            "a terminator alone is not CFI"
        );
    }
}
