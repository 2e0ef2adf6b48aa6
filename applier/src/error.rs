//! The one error type of the applier: every failure names the thing it is about (symbol, file,
//! function, pid) and why, in one line.

use crate::artifact::{ManifestError, SymbolRef};
use crate::ptrace::PtraceError;

/// Why a patch could not be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The patch bytes are not an ELF file at all.
    #[error("the patch is not an ELF object file (bad magic)")]
    NotElf,
    /// The patch is ELF, but not the kind the applier loads.
    #[error("the patch is {found}; expected an ELF64 x86-64 relocatable object (gcc -c)")]
    WrongObjectKind {
        /// What the file is instead (class, machine or type).
        found: String,
    },
    /// The patch object is ELF64 x86-64 ET_REL but damaged.
    #[error("the patch object is malformed: {0}")]
    MalformedObject(String),
    /// The manifest section could not be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest names a function the object does not define.
    #[error("the manifest lists function `{symbol}`, but the patch object does not define it")]
    ManifestSymbolMissing {
        /// The defining symbol the manifest names.
        symbol: String,
    },
    /// The target process does not exist.
    #[error("no process with pid {0} (it does not exist or has exited)")]
    NoSuchProcess(i32),
    /// Reading something under `/proc/PID` failed.
    #[error("cannot read {what} of pid {pid}: {detail}")]
    ProcRead {
        /// The pid.
        pid: i32,
        /// What we tried to read (e.g. "/proc/42/maps").
        what: String,
        /// The OS error.
        detail: String,
    },
    /// A module mapped by the process could not be read or parsed from disk.
    #[error("cannot read module {path}: {detail}")]
    ModuleRead {
        /// Path of the module.
        path: String,
        /// Why.
        detail: String,
    },
    /// A function the patch replaces does not exist in the process.
    #[error("the running binary has no symbol for {0}")]
    MissingFunction(SymbolRef),
    /// An undefined symbol of the patch has no definition in the process.
    #[error(
        "undefined symbol `{symbol}` of the patch (meaning {target}) is not defined in the process"
    )]
    UnresolvedSymbol {
        /// The undefined symbol in the object.
        symbol: String,
        /// The target symbol it was bound to.
        target: SymbolRef,
    },
    /// A file-local symbol matches in several source files.
    #[error(
        "{target} is ambiguous: it matches static symbols in {files}; name the file more precisely"
    )]
    AmbiguousFileLocal {
        /// The symbol looked up.
        target: SymbolRef,
        /// The candidate files, comma separated.
        files: String,
    },
    /// A function of a plain object (no manifest) matches several functions of the target.
    #[error(
        "function `{name}` of the patch matches several functions of the running binary ({candidates}); \
         ship a manifest naming the file (target: {{kind: file_local, name, file}})"
    )]
    AmbiguousFunction {
        /// The function name.
        name: String,
        /// Where it was found (files, or "global").
        candidates: String,
    },
    /// A plain object replaces nothing.
    #[error("no function of the patch object matches a function of the running binary {exe}")]
    NothingToReplace {
        /// The executable path.
        exe: String,
    },
    /// Symbols of `.symtab` (statics, non-exported functions) were needed but the executable is
    /// stripped.
    #[error("{module} has no symbol table (it is stripped), so {target} cannot be found")]
    NoSymbolTable {
        /// The module path.
        module: String,
        /// The file-local symbol that was needed.
        target: SymbolRef,
    },
    /// An IFUNC symbol whose implementation is not known yet.
    #[error("cannot resolve the IFUNC `{name}`: {detail}; refusing to guess which implementation the process would use")]
    UnresolvedIfunc {
        /// The IFUNC's name.
        name: String,
        /// Why its resolver gave no usable answer.
        detail: String,
    },
    /// The patch was built for another binary.
    #[error("the patch was built for the binary with build id {expected}, but pid {pid} runs {exe} with build id {found}: refusing to patch another binary")]
    BuildIdMismatch {
        /// The build id the manifest names.
        expected: String,
        /// The pid.
        pid: i32,
        /// The running module the patch is for (the executable, or the library its replaced
        /// functions live in).
        exe: String,
        /// Its build id (or "none").
        found: String,
    },
    /// The code of a function to replace is not the code the patch was made against.
    #[error("the running `{name}` does not match {revision} built with these flags ({detail}): the process does not run the revision the patch was made from, or was built with other flags")]
    PreimageMismatch {
        /// The function.
        name: String,
        /// The revision the patch was made from (its old side), as the manifest names it.
        revision: String,
        /// What differs (size or bytes), with the address.
        detail: String,
    },
    /// A function an earlier patch redirected runs that patch's code, and it is not the code this
    /// patch was made against: its old side is not the revision the patch in effect brought.
    #[error("the running `{name}` is the code of patch {patch_id} ({running}), which does not match {revision} built with these flags ({detail}): a function already patched can only be patched from the revision the patch in effect brought; build the patch from {running}, or revert patch {patch_id} first")]
    StackedPreimageMismatch {
        /// The function.
        name: String,
        /// The revision this patch was made from.
        revision: String,
        /// The patch whose code the function runs.
        patch_id: String,
        /// The revision that patch brought, as its manifest names it.
        running: String,
        /// What differs (size or bytes).
        detail: String,
    },
    /// A function an earlier patch redirected runs code of which that patch records no
    /// fingerprint, so the new patch's pre-image cannot be checked against it.
    #[error("the running `{name}` is the code of patch {patch_id} ({running}), which records no fingerprint of its code (a plain object, an LTO build, or a patch of an older hotpatch), so it cannot be checked against {revision}: revert patch {patch_id} first")]
    UnfingerprintedPatch {
        /// The function.
        name: String,
        /// The revision this patch was made from.
        revision: String,
        /// The patch whose code the function runs.
        patch_id: String,
        /// The revision that patch brought, as its manifest names it.
        running: String,
    },
    /// A static local of a patched function cannot be bound to the running storage.
    #[error("cannot find the storage of {target}: {detail}")]
    StaticLocal {
        /// The static local.
        target: SymbolRef,
        /// Why, naming the module.
        detail: String,
    },
    /// Code of two modules in one patch refers to one name that the dynamic linker binds
    /// differently for each of them.
    #[error("`{symbol}` reaches one definition from the code of {first} and another from the code of {second}; one patch cannot bind it for both: make one patch per module")]
    ConflictingBinding {
        /// The name.
        symbol: String,
        /// One module whose functions the patch replaces.
        first: String,
        /// Another.
        second: String,
    },
    /// A thread-local variable of a library whose offset from the thread pointer cannot be
    /// proven the same in every thread.
    #[error("cannot link the thread-local variable `{name}` of {module}: {detail}")]
    LibraryTls {
        /// The variable.
        name: String,
        /// The library defining it.
        module: String,
        /// Why.
        detail: String,
    },
    /// A symbol is thread-local; TLS is not supported yet.
    #[error("symbol `{0}` is thread-local (TLS), which the applier does not support yet")]
    ThreadLocal(String),
    /// An unpatched caller keeps a register live across its call of a replaced function (the
    /// compiler saw the old code leave it alone), the replacement may write it, and no
    /// save/restore thunk can preserve it.
    #[error(
        "`{caller}` keeps {registers} live across its call of `{function}` at 0x{site:x} (the old `{function}` leaves them alone; the replacement may write them), and no save/restore thunk can keep them ({detail}); patch `{caller}` too, or keep the replacement off those registers"
    )]
    RegisterContract {
        /// The replaced function.
        function: String,
        /// The unpatched caller.
        caller: String,
        /// Address of the call site.
        site: u64,
        /// The registers at risk.
        registers: String,
        /// Why no thunk preserves them.
        detail: String,
    },
    /// The function is too short to hold the redirecting jump.
    #[error("`{name}` is {size} bytes, shorter than the {jump}-byte jump{}: {why}; rebuild the program with `-falign-functions=16` (functions then end in padding the jump can use), or change the callers of `{name}` instead so that the patch replaces them", if *jump > 5 { " (the patch is out of reach of a 5-byte jump)" } else { "" })]
    FunctionTooShort {
        /// Function name.
        name: String,
        /// Its size (st_size) or the bytes covered by whole instructions.
        size: u64,
        /// The jump length.
        jump: usize,
        /// Why the jump does not fit, e.g. "no padding after it: 3 bytes until the next symbol".
        why: String,
    },
    /// The function's first instructions could not be decoded.
    #[error("cannot decode the instructions at the entry of `{name}` (0x{address:x})")]
    Undecodable {
        /// Function name.
        name: String,
        /// Address of the undecodable instruction.
        address: u64,
    },
    /// A relocation type the applier does not handle.
    #[error("unsupported relocation {kind} against `{symbol}` in section {section}")]
    UnsupportedRelocation {
        /// Relocation type name (e.g. `R_X86_64_TPOFF32`).
        kind: String,
        /// Symbol name.
        symbol: String,
        /// Section holding the relocation.
        section: String,
    },
    /// A relocation's value does not fit its field.
    #[error("relocation {kind} against `{symbol}` at {section}+0x{offset:x} overflows (value 0x{value:x})")]
    RelocationOverflow {
        /// Relocation type name.
        kind: String,
        /// Symbol name.
        symbol: String,
        /// Section holding the relocation.
        section: String,
        /// Offset in the section.
        offset: u64,
        /// The computed value, as two's complement.
        value: u64,
    },
    /// A relocation refers to something the loaded image does not contain.
    #[error("relocation {kind} at {section}+0x{offset:x}: {detail}")]
    BadRelocation {
        /// Relocation type name.
        kind: String,
        /// Section holding the relocation.
        section: String,
        /// Offset in the section.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// No free address range near the executable.
    #[error("no free {size}-byte range within 2 GiB of the executable of pid {pid}")]
    NoRegion {
        /// The pid.
        pid: i32,
        /// Bytes needed.
        size: u64,
    },
    /// A system call run in the target failed.
    #[error("{call} in pid {pid} failed: {detail}")]
    RemoteCall {
        /// The pid.
        pid: i32,
        /// The call (e.g. "mmap(0x..., 8192)").
        call: String,
        /// errno or other detail.
        detail: String,
    },
    /// The code of a function changed between planning and applying.
    #[error("the entry of `{name}` at 0x{address:x} changed since the plan was made")]
    CodeChanged {
        /// Function name.
        name: String,
        /// Its entry.
        address: u64,
    },
    /// Threads kept executing inside (or had frames in) code being replaced or retired.
    #[error("gave up after {waited_ms} ms: {detail}")]
    ThreadBusy {
        /// The first blocking thread.
        tid: i32,
        /// Its pc.
        pc: u64,
        /// What it is in (e.g. "`spin`, which is being replaced").
        function: String,
        /// Every blocking thread with its frames.
        detail: String,
        /// How long we retried.
        waited_ms: u64,
    },
    /// A context saved in memory (a suspended coroutine: a `ucontext_t`, a coroutine's stack)
    /// holds a return address into a function being replaced, at every stop until the timeout.
    #[error("gave up after {waited_ms} ms: {location} holds the return address {address} inside `{function}`, which is being replaced, and is no frame of a running thread: a suspended context (a coroutine) would return into the old code; let it finish first")]
    ContextBusy {
        /// Where the word is (mapping and address).
        location: String,
        /// The return address, symbolized.
        address: String,
        /// The function it returns into.
        function: String,
        /// How long we retried.
        waited_ms: u64,
    },
    /// A revert that would break last-in first-out order, or that names no installed patch.
    #[error("{0}")]
    Revert(String),
    /// No thread reached the `--at` safe point in time.
    #[error("no thread reached `{function}` (the --at safe point) within {waited_ms} ms")]
    SafePointNotReached {
        /// The function.
        function: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// A wait for the process's threads (`--at`, `--wait-return`) asked of a process stopped by
    /// a stop signal: its threads would have to run to get there.
    #[error("pid {pid} is stopped (by a stop signal such as SIGSTOP): {option} waits for its threads to run, so it would have to continue the process; send it SIGCONT first, or apply without {option} (a stopped process is committed at one stop and stays stopped)")]
    ProcessStopped {
        /// The process.
        pid: i32,
        /// The option that waits.
        option: String,
    },
    /// The patch is already applied to the process.
    #[error("patch {patch_id} is already applied to pid {pid} (as #{sequence}); revert it first to apply it again")]
    AlreadyApplied {
        /// The patch id.
        patch_id: String,
        /// The pid.
        pid: i32,
        /// Its sequence number in the process.
        sequence: u64,
    },
    /// Patching one process of a group failed; the others were rolled back.
    #[error("pid {pid}: {source}; rolled back the processes already patched: {rolled_back}{not_rolled_back}")]
    Group {
        /// The process that failed.
        pid: i32,
        /// Why.
        source: Box<ApplyError>,
        /// The pids reverted, comma separated ("none" if none).
        rolled_back: String,
        /// Empty, or "; could NOT roll back ..." naming each pid whose revert failed.
        not_rolled_back: String,
    },
    /// The check of one process of a group failed before anything was written to any of them.
    #[error("pid {pid}: {source}; nothing was written to any of the {processes} processes")]
    GroupCheck {
        /// The process whose check failed.
        pid: i32,
        /// Why.
        source: Box<ApplyError>,
        /// How many processes the group has.
        processes: usize,
    },
    /// The helper process that ran a commit ended without saying how it went (it was killed):
    /// the patch region is left in place, since jumps may lead into it.
    #[error("{what} on pid {pid}: its helper process {helper} ended without an answer, so what it wrote is unknown; the patch region is left in place: `hotpatch list --pid {pid}` shows the state and `hotpatch revert --pid {pid}` settles it")]
    CommitUnknown {
        /// The process.
        pid: i32,
        /// The commit.
        what: String,
        /// The helper's pid (0 when it answered something unreadable).
        helper: i32,
    },
    /// A ledger header in a region could not be read.
    #[error("cannot read the patch ledger: {0}")]
    Ledger(String),
    /// A ptrace operation failed.
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
}

impl ApplyError {
    /// The item `--force` names to accept this refusal, for the refusals an operator may
    /// accept: `caller->function` for a register contract no thunk can keep.
    pub fn refusal_item(&self) -> Option<String> {
        match self {
            ApplyError::RegisterContract {
                function, caller, ..
            } => Some(format!("{caller}->{function}")),
            _ => None,
        }
    }
}
