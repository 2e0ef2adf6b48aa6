//! Turning a symbol found in the target into the address code should use: plain symbols are their
//! address; an IFUNC's address is its resolver, so the implementation is read from a GOT slot the
//! dynamic linker already filled, or, when none is, asked from the resolver itself, run in the
//! process as the dynamic linker would run it; a thread-local variable of the executable is its
//! offset from the thread pointer, found for a library through the thread vector; reached with
//! the general-dynamic model, it is its offset in its module's TLS block, and the module id
//! comes from the module's own `DTPMOD64` GOT slot.

use std::time::Duration;

use object::elf;

use crate::bind::filled_slot;
use crate::error::ApplyError;
use crate::ptrace::read_word;
use crate::target::{Found, Target};

/// How the patch's code reaches a thread-local variable, which decides what its address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsModel {
    /// Through a GOT slot holding its offset from the thread pointer (`R_X86_64_GOTTPOFF`):
    /// only for TLS in the static TLS area, at one offset in every thread.
    InitialExec,
    /// Through a `tls_index {module id, offset}` pair handed to `__tls_get_addr`
    /// (`R_X86_64_TLSGD`): any TLS block, static or allocated per thread on first use.
    GeneralDynamic,
}

/// How long an IFUNC resolver may run in the target.
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);

/// The address of `found` that code of the patch should call or read, and a note on how it was
/// obtained when that is more than reading a symbol (for `--dry-run --pid`; empty otherwise).
/// A thread-local variable reached as `tls` says is its offset from the thread pointer
/// (initial-exec) or its offset in its module's TLS block (general-dynamic).
pub(crate) fn runtime_address(
    target: &Target,
    name: &str,
    found: &Found,
    tls: TlsModel,
) -> Result<(u64, &'static str), ApplyError> {
    if tls == TlsModel::GeneralDynamic && found.symbol.st_type != elf::STT_TLS {
        return Err(library_tls_error(
            target,
            name,
            found.module,
            "the patch reaches it as thread-local (R_X86_64_TLSGD), but the definition there is not thread-local",
        ));
    }
    match found.symbol.st_type {
        elf::STT_TLS if tls == TlsModel::GeneralDynamic => Ok((
            found.symbol.value,
            "; thread-local: its module id and offset, for __tls_get_addr",
        )),
        elf::STT_TLS => Ok((
            thread_pointer_offset(target, name, found)?,
            "; thread-local: its offset from the thread pointer",
        )),
        elf::STT_GNU_IFUNC => match resolved_ifunc(target, name, found.address) {
            Some(address) => Ok((address, "; an IFUNC: the implementation ld.so chose")),
            None => Ok((
                run_resolver(target, name, found)?,
                "; an IFUNC nothing had resolved: its resolver was run in the process",
            )),
        },
        _ => Ok((found.address, "")),
    }
}

/// Runs the resolver of the IFUNC `found` in the target (one thread, as the dynamic linker runs
/// it, its registers, stack and signals restored) and checks the answer is code of the module
/// that defines the IFUNC.
fn run_resolver(target: &Target, name: &str, found: &Found) -> Result<u64, ApplyError> {
    let refuse = |detail: String| ApplyError::UnresolvedIfunc {
        name: name.to_string(),
        detail,
    };
    let module = &target.modules[found.module];
    let value = crate::ptrace::remote_call(target.pid(), found.address, RESOLVER_TIMEOUT)
        .map_err(|e| refuse(format!("running its resolver failed: {e}")))?;
    let in_module_code = target.maps.iter().any(|m| {
        m.perms.contains('x')
            && m.start <= value
            && value < m.end
            && module
                .ranges
                .iter()
                .any(|&(lo, hi)| lo <= m.start && m.end <= hi)
    });
    if in_module_code {
        Ok(value)
    } else {
        Err(refuse(format!(
            "its resolver returned 0x{value:x}, which is not code of {}",
            module.path
        )))
    }
}

/// The offset from the thread pointer (`%fs:0`) of a `__thread` variable: code reaches it
/// through a GOT slot holding this offset (`R_X86_64_GOTTPOFF`, the initial-exec model the
/// patch is built with), the same in every thread for a module with static TLS.
///
/// The executable's block sits right below the thread pointer (x86-64 TLS variant II), at the
/// offset glibc gives the first module. A library's block is where the dynamic thread vector of
/// a thread says: `dtv[id]` (the DTV at `%fs:8`, `id` from [`tls_module_id`]) is its block in
/// that thread. That block must be in the static TLS area right below the thread pointer
/// (libraries loaded at start, and `dlopen`ed ones that got static TLS); a block allocated for
/// one thread only (dynamic TLS) is refused: such a variable is reached with the
/// general-dynamic model.
fn thread_pointer_offset(target: &Target, name: &str, found: &Found) -> Result<u64, ApplyError> {
    let module = &target.modules[found.module];
    let refuse = |why: &str| library_tls_error(target, name, found.module, why);
    let Some((vaddr, memsz, align)) = module.symbols.tls_segment else {
        return Err(refuse("the module has no TLS segment"));
    };
    if module.is_exe {
        return Ok(found
            .symbol
            .value
            .wrapping_sub(exe_block_below_tp((vaddr, memsz, align))));
    }
    let pid = target.pid();
    let module_id = tls_module_id(target, name, found.module)?;
    let tp = crate::ptrace::thread_pointer(pid)?;
    let dtv = read_word(pid, tp.wrapping_add(8));
    // glibc keeps the vector's length just before it (`dtv[-1].counter`): an id past it has no
    // entry yet in this thread, and the words there are not one.
    let length = dtv.and_then(|d| read_word(pid, d.wrapping_sub(16)));
    if length.is_some_and(|n| module_id > n) {
        return Err(refuse(DYNAMIC_WITH_IE_NEW));
    }
    let entry = dtv.and_then(|d| module_id.checked_mul(16)?.checked_add(d));
    let block = entry.and_then(|e| read_word(pid, e));
    let to_free = entry.and_then(|e| read_word(pid, e.wrapping_add(8)));
    match (block, to_free) {
        (Some(block), Some(0)) if block < tp && tp - block <= MAX_STATIC_TLS => {
            Ok(found.symbol.value.wrapping_add(block).wrapping_sub(tp))
        }
        (Some(_), Some(_)) => Err(refuse(DYNAMIC_WITH_IE)),
        _ => Err(refuse("the thread's dynamic thread vector cannot be read")),
    }
}

/// How far below the thread pointer the executable's TLS block (segment `vaddr, memsz, align`)
/// starts: glibc gives the first module the first block of the static area, right below it.
fn exe_block_below_tp((vaddr, memsz, align): (u64, u64, u64)) -> u64 {
    let align = align.max(1);
    let first_byte = vaddr.wrapping_neg() & (align - 1);
    memsz
        .saturating_sub(first_byte)
        .div_ceil(align)
        .saturating_mul(align)
        .saturating_add(first_byte)
}

/// The executable's TLS module id, 1 (glibc gives the main program's block the first id),
/// proven in the target: a thread's `dtv[1]` must point at the executable's block right below
/// the thread pointer.
fn exe_module_id(target: &Target, name: &str, index: usize) -> Result<u64, ApplyError> {
    let refuse = |why: &str| library_tls_error(target, name, index, why);
    let Some(segment) = target.modules[index].symbols.tls_segment else {
        return Err(refuse("the module has no TLS segment"));
    };
    let pid = target.pid();
    let tp = crate::ptrace::thread_pointer(pid)?;
    let dtv_1 = read_word(pid, tp.wrapping_add(8)).and_then(|d| read_word(pid, d.wrapping_add(16)));
    if dtv_1 == Some(tp.wrapping_sub(exe_block_below_tp(segment))) {
        Ok(1)
    } else {
        Err(refuse(
            "its TLS module id cannot be proven: the thread's dtv[1] is not the executable's block below the thread pointer",
        ))
    }
}

/// Why an initial-exec reference to dynamic TLS is refused, when this thread has no block yet.
const DYNAMIC_WITH_IE_NEW: &str = "its TLS is dynamic (this thread has no block of it yet: its module id is past the thread's vector) and the patch reaches it with the initial-exec model (R_X86_64_GOTTPOFF); compile the patch with -fPIC / -ftls-model=global-dynamic";
/// Why an initial-exec reference to dynamic TLS is refused.
const DYNAMIC_WITH_IE: &str = "its TLS is dynamic (a block per thread, not in the static TLS area) and the patch reaches it with the initial-exec model (R_X86_64_GOTTPOFF); compile the patch with -fPIC / -ftls-model=global-dynamic";

/// The refusal of the thread-local `name` of module `index`, saying why.
fn library_tls_error(target: &Target, name: &str, index: usize, why: &str) -> ApplyError {
    ApplyError::LibraryTls {
        name: name.to_string(),
        module: target.modules[index].path.clone(),
        detail: why.to_string(),
    }
}

/// The TLS module id of module `index` (for the thread-local `name`, in messages): for a
/// library what `ld.so` wrote into one of its own `DTPMOD64` GOT slots, the id its own code
/// hands `__tls_get_addr`; a library without such a slot (it never reaches its own TLS
/// dynamically) is refused. The executable's is proven from the thread vector.
pub(crate) fn tls_module_id(target: &Target, name: &str, index: usize) -> Result<u64, ApplyError> {
    let module = &target.modules[index];
    if module.is_exe {
        return exe_module_id(target, name, index);
    }
    let pid = target.pid();
    module
        .symbols
        .tls_module_slots
        .iter()
        .find_map(|&slot| {
            let id = read_word(pid, module.address_of_value(slot))?;
            (id != 0).then_some(id)
        })
        .ok_or_else(|| {
            library_tls_error(
                target,
                name,
                index,
                "its TLS module id is in no GOT slot of it (the library never uses its own TLS)",
            )
        })
}

/// Largest distance below the thread pointer a static TLS block is accepted at.
const MAX_STATIC_TLS: u64 = 1 << 20;

/// Reads the implementation an IFUNC was resolved to from a GOT slot the dynamic linker filled:
/// any module's `JUMP_SLOT`/`GLOB_DAT` slot for `name`, or an `IRELATIVE` slot of the module that
/// defines it whose resolver is the same (glibc resolves its own internal calls that way at start,
/// so a libc IFUNC the program never called is still found). A slot still pointing into its
/// module's PLT (lazy binding), at the resolver, or at zero is not resolved.
fn resolved_ifunc(target: &Target, name: &str, resolver: u64) -> Option<u64> {
    for (index, module) in target.modules.iter().enumerate() {
        let by_name = module.symbols.got_slots.get(name).into_iter().flatten();
        let by_resolver = module
            .symbols
            .irelative_slots
            .get(&resolver.wrapping_sub(module.bias))
            .into_iter()
            .flatten();
        for &slot in by_name.chain(by_resolver) {
            match filled_slot(target, index, module.address_of_value(slot)) {
                Some(value) if value != resolver => return Some(value),
                _ => {}
            }
        }
    }
    None
}
