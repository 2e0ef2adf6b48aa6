//! The code analyses behind the register contract, over a [`CodeSpace`] (the running module's
//! code, or the linked patch): where a function is called from, which call-clobbered registers
//! the code after a call site reads before writing them (a bounded backward liveness over the
//! caller's control flow), and which registers a function — with everything it calls — may
//! write.
//!
//! Every bound and every unknown errs on the safe side: a liveness that cannot finish counts
//! each register not yet written as read, a clobber set that must not be too small ("what the
//! new code may write") becomes every register, and one that must not be too large ("what the
//! compiler knew the old code writes", which excuses a caller from relying on a register) just
//! stops growing.

use std::collections::{BTreeMap, HashMap};

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};

use super::regs::{EffectReader, Effects, RegSet};

/// Most instructions one liveness walk explores before it assumes the rest reads everything.
const MAX_WALK: usize = 4096;
/// Most functions a clobber set follows through calls.
const MAX_CALLEES: usize = 256;
/// How many callers up a liveness follows returns and tail calls.
const MAX_DEPTH: usize = 6;

/// One function of a code space: `[start, end)` and its symbol name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Func {
    /// Entry address.
    pub(crate) start: u64,
    /// One past its last byte.
    pub(crate) end: u64,
    /// Symbol name.
    pub(crate) name: String,
}

/// Code at run-time addresses and the function ranges over it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeSpace {
    funcs: Vec<Func>,
    chunks: BTreeMap<u64, Vec<u8>>,
    /// Code ranges of the compile units, sorted: (start, end, unit).
    units: Vec<(u64, u64, usize)>,
    /// Code no compiler saw as a callee (PLT entries): calls there follow the ABI.
    opaque: Vec<(u64, u64)>,
}

/// A direct branch to a function's entry from another function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Site {
    /// Address of the branch instruction.
    pub(crate) at: u64,
    /// Address after it (the return address of a call).
    pub(crate) next: u64,
    /// Index of the function holding it.
    pub(crate) func: usize,
    /// A `jmp`/`jcc` (tail call) rather than a `call`.
    pub(crate) tail: bool,
}

impl CodeSpace {
    /// A code space of `chunks` (start address, bytes) and `funcs`; functions with no bytes or
    /// overlapping an earlier one at the same entry are dropped.
    pub(crate) fn new(mut funcs: Vec<Func>, chunks: Vec<(u64, Vec<u8>)>) -> CodeSpace {
        funcs.retain(|f| f.end > f.start);
        funcs.sort_by(|a, b| (a.start, b.end).cmp(&(b.start, a.end)));
        funcs.dedup_by_key(|f| f.start);
        CodeSpace {
            funcs,
            chunks: chunks.into_iter().collect(),
            units: Vec::new(),
            opaque: Vec::new(),
        }
    }

    /// The same space, knowing the ranges (PLT entries) a call to which follows the ABI.
    pub(crate) fn with_opaque(mut self, opaque: Vec<(u64, u64)>) -> CodeSpace {
        self.opaque = opaque;
        self
    }

    /// Whether `address` is in code a call to which follows the ABI (a PLT entry).
    fn is_opaque(&self, address: u64) -> bool {
        self.opaque
            .iter()
            .any(|&(lo, hi)| lo <= address && address < hi)
    }

    /// The same space, knowing which compile unit holds which code (start, end, unit).
    pub(crate) fn with_units(mut self, mut units: Vec<(u64, u64, usize)>) -> CodeSpace {
        units.sort_unstable();
        self.units = units;
        self
    }

    fn unit_of(&self, address: u64) -> Option<usize> {
        let index = self.units.partition_point(|u| u.0 <= address);
        let &(_, end, unit) = self.units.get(index.checked_sub(1)?)?;
        (address < end).then_some(unit)
    }

    /// Whether the code at `a` and at `b` is known to come from different compilations: then
    /// the compiler saw neither from the other and held to the ABI between them.
    pub(crate) fn separately_compiled(&self, a: u64, b: u64) -> bool {
        matches!((self.unit_of(a), self.unit_of(b)), (Some(x), Some(y)) if x != y)
    }

    /// The functions, by entry.
    pub(crate) fn funcs(&self) -> &[Func] {
        &self.funcs
    }

    /// The bytes from `address` to `end` (or to the end of its chunk).
    fn bytes(&self, address: u64, end: u64) -> &[u8] {
        let Some((&start, bytes)) = self.chunks.range(..=address).next_back() else {
            return &[];
        };
        let from = usize::try_from(address - start).unwrap_or(usize::MAX);
        let to = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        bytes.get(from..to.min(bytes.len())).unwrap_or_default()
    }

    /// The function whose range holds `address`.
    pub(crate) fn containing(&self, address: u64) -> Option<usize> {
        let index = self.funcs.partition_point(|f| f.start <= address);
        let candidate = index.checked_sub(1)?;
        (address < self.funcs[candidate].end).then_some(candidate)
    }

    /// The function whose entry is `address`.
    pub(crate) fn at_entry(&self, address: u64) -> Option<usize> {
        self.containing(address)
            .filter(|&i| self.funcs[i].start == address)
    }

    /// Every instruction of function `index`, in address order (stops at undecodable bytes,
    /// returning `false` as the second value).
    fn sweep(&self, index: usize) -> (Vec<Instruction>, bool) {
        let func = &self.funcs[index];
        let code = self.bytes(func.start, func.end);
        let mut decoder = Decoder::with_ip(64, code, func.start, DecoderOptions::NONE);
        let mut out = Vec::new();
        while decoder.can_decode() {
            let instruction = decoder.decode();
            if instruction.is_invalid() {
                return (out, false);
            }
            out.push(instruction);
        }
        let complete = code.len() as u64 == func.end - func.start;
        (out, complete)
    }

    /// The instruction at `address`, if it decodes within function `index`.
    fn decode(&self, index: usize, address: u64) -> Option<Instruction> {
        let code = self.bytes(address, self.funcs[index].end);
        let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
        let instruction = decoder.decode();
        (!instruction.is_invalid()).then_some(instruction)
    }

    /// The parent of a `.cold` part (`f.cold`, `f.cold.1`), or the function itself.
    fn owner(&self, index: usize) -> usize {
        let name = &self.funcs[index].name;
        let parent = name
            .find(".cold")
            .map(|at| &name[..at])
            .filter(|p| !p.is_empty());
        parent
            .and_then(|p| self.funcs.iter().position(|f| f.name == p))
            .unwrap_or(index)
    }

    /// Whether functions `a` and `b` are one function of the source (a function and its cold
    /// parts).
    fn same_function(&self, a: usize, b: usize) -> bool {
        self.owner(a) == self.owner(b)
    }

    /// Every direct call, `jmp` and `jcc` from one function to the entry of another, and the
    /// registers any instruction of any function reads.
    pub(crate) fn sites(&self) -> Calls {
        let mut out: HashMap<u64, Vec<Site>> = HashMap::new();
        for index in 0..self.funcs.len() {
            for instruction in self.sweep(index).0 {
                let Some(target) = direct_target(&instruction) else {
                    continue;
                };
                let Some(callee) = self.at_entry(target) else {
                    continue;
                };
                let tail = instruction.flow_control() != FlowControl::Call;
                if tail && self.same_function(callee, index) {
                    continue;
                }
                out.entry(target).or_default().push(Site {
                    at: instruction.ip(),
                    next: instruction.next_ip(),
                    func: index,
                    tail,
                });
            }
        }
        Calls {
            by_target: out,
            read: self.read_anywhere(),
        }
    }

    /// The registers any instruction of the space reads: every chunk decoded from its start,
    /// code without symbols included (compilers put no data in code sections).
    fn read_anywhere(&self) -> RegSet {
        let mut reader = EffectReader::default();
        let mut read = RegSet::EMPTY;
        for (&start, bytes) in &self.chunks {
            let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
            let mut instruction = Instruction::default();
            while decoder.can_decode() {
                decoder.decode_out(&mut instruction);
                if !instruction.is_invalid() {
                    read = read | reader.effects(&instruction).reads;
                }
            }
        }
        read
    }
}

/// The direct calls of a code space, and what its code reads at all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Calls {
    /// Call sites and tail calls by the entry they target.
    by_target: HashMap<u64, Vec<Site>>,
    /// Registers some instruction reads: no caller can rely on a register no code reads (in
    /// code built without AVX, say, the upper halves of the vector registers), except as an
    /// argument of a call.
    read: RegSet,
}

impl Calls {
    /// The registers a caller may rely on at all: those some code reads, and the arguments.
    pub(crate) fn readable(&self) -> RegSet {
        self.read | RegSet::arguments()
    }
}

/// The target of a direct near call or jump.
fn direct_target(instruction: &Instruction) -> Option<u64> {
    let branch = matches!(
        instruction.flow_control(),
        FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
    );
    (branch && instruction.op0_kind() == OpKind::NearBranch64)
        .then(|| instruction.near_branch_target())
}

/// Which way a clobber set may be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// At least what the code may write (the new code: anything unknown writes everything).
    Upper,
    /// At most what the compiler counted as written (the old code: what cannot be followed adds
    /// nothing, since the compiler's own count can only be larger).
    Lower,
}

/// Registers `entry` (and everything it calls or jumps to) may write, bounded as asked.
pub(crate) fn clobbers(space: &CodeSpace, entry: u64, bound: Bound) -> RegSet {
    let Some(first) = space.containing(entry) else {
        return RegSet::all();
    };
    let mut reader = EffectReader::default();
    let mut seen = vec![first];
    let mut next = 0;
    let mut out = RegSet::EMPTY;
    while let Some(&index) = seen.get(next) {
        next += 1;
        let (instructions, complete) = space.sweep(index);
        if !complete && bound == Bound::Upper {
            return RegSet::all();
        }
        for instruction in &instructions {
            out = out | reader.effects(instruction).writes;
            let unknown = match instruction.flow_control() {
                FlowControl::IndirectCall => true,
                FlowControl::IndirectBranch => bound == Bound::Upper,
                _ => false,
            };
            if unknown {
                return RegSet::all();
            }
            let Some(target) = direct_target(instruction) else {
                continue;
            };
            if space.containing(target) == Some(index) {
                continue;
            }
            match space.containing(target) {
                // A PLT entry, or compiled apart: the compiler did not see the callee either.
                None if space.is_opaque(target) => return RegSet::all(),
                // Code outside every known function (a call stub of the patch, code without
                // a symbol): it may write anything, but the compiler's count is unknown.
                None if bound == Bound::Upper => return RegSet::all(),
                None => {}
                Some(_) if space.separately_compiled(instruction.ip(), target) => {
                    return RegSet::all()
                }
                Some(callee) if !seen.contains(&callee) => {
                    if seen.len() >= MAX_CALLEES {
                        return match bound {
                            Bound::Upper => RegSet::all(),
                            Bound::Lower => out,
                        };
                    }
                    seen.push(callee);
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// What flows out of one explored instruction besides its successors.
#[derive(Debug, Clone)]
struct Node {
    effects: Effects,
    succs: Vec<u64>,
    /// Registers read after it along paths the walk does not follow (returns, tail calls,
    /// unknowns).
    exit: RegSet,
}

/// Liveness after call sites, with the callers' own reliance followed up to [`MAX_DEPTH`].
pub(crate) struct Liveness<'a> {
    space: &'a CodeSpace,
    calls: &'a Calls,
    /// Ranges whose code will not run again (functions the patch replaces): their call sites
    /// do not count.
    excluded: &'a [(u64, u64)],
    reader: EffectReader,
    relied: HashMap<u64, RegSet>,
    /// Functions whose callers' reliance is being computed (a cycle assumes everything).
    relying: Vec<u64>,
    /// Functions whose entry liveness is being computed (a cycle assumes every argument).
    entering: Vec<u64>,
    lower: HashMap<u64, RegSet>,
    entry_live: HashMap<u64, RegSet>,
}

impl<'a> Liveness<'a> {
    /// Liveness over `space` with its `calls`, ignoring call sites inside `excluded`.
    pub(crate) fn new(
        space: &'a CodeSpace,
        calls: &'a Calls,
        excluded: &'a [(u64, u64)],
    ) -> Liveness<'a> {
        Liveness {
            space,
            calls,
            excluded,
            reader: EffectReader::default(),
            relied: HashMap::new(),
            relying: Vec::new(),
            entering: Vec::new(),
            lower: HashMap::new(),
            entry_live: HashMap::new(),
        }
    }

    /// The direct call sites and tail calls of the function at `entry` that still run.
    pub(crate) fn sites_of(&self, entry: u64) -> Vec<Site> {
        self.calls
            .by_target
            .get(&entry)
            .into_iter()
            .flatten()
            .filter(|s| {
                !self
                    .excluded
                    .iter()
                    .any(|&(lo, hi)| lo <= s.at && s.at < hi)
            })
            .filter(|s| !self.space.separately_compiled(s.at, entry))
            .copied()
            .collect()
    }

    /// The registers the caller may read after `site` before writing them: for a call, what
    /// its code reads after the return; for a tail call, what the callers of the function
    /// holding it rely on.
    pub(crate) fn live_at(&mut self, site: &Site) -> RegSet {
        let live = if site.tail {
            let owner = self.space.funcs[self.space.owner(site.func)].start;
            self.relied(owner, 1)
        } else {
            self.live_from(site.func, site.next, 0, true)
        };
        live & self.calls.readable()
    }

    /// What the callers of the function at `entry` read after it returns without writing.
    fn relied(&mut self, entry: u64, depth: usize) -> RegSet {
        if depth > MAX_DEPTH || self.relying.contains(&entry) {
            return RegSet::all();
        }
        if let Some(&known) = self.relied.get(&entry) {
            return known;
        }
        self.relying.push(entry);
        let mut out = RegSet::EMPTY;
        for site in self.sites_of(entry) {
            out = out
                | if site.tail {
                    let owner = self.space.funcs[self.space.owner(site.func)].start;
                    self.relied(owner, depth + 1)
                } else {
                    self.live_from(site.func, site.next, depth, true)
                };
        }
        self.relying.pop();
        self.relied.insert(entry, out);
        out
    }

    /// The registers a function reads at its entry before writing them (arguments only: the
    /// ABI passes nothing else).
    fn entry_live(&mut self, entry: u64, depth: usize) -> RegSet {
        if depth > MAX_DEPTH || self.entering.contains(&entry) {
            return RegSet::arguments();
        }
        if let Some(&known) = self.entry_live.get(&entry) {
            return known;
        }
        let Some(func) = self.space.at_entry(entry) else {
            return RegSet::arguments();
        };
        self.entering.push(entry);
        let live = self.live_from(func, entry, depth, false) & RegSet::arguments();
        self.entering.pop();
        self.entry_live.insert(entry, live);
        live
    }

    /// The registers of the old code at `entry` the compiler counted as written (a lower bound).
    fn written(&mut self, entry: u64) -> RegSet {
        if let Some(&known) = self.lower.get(&entry) {
            return known;
        }
        let set = clobbers(self.space, entry, Bound::Lower);
        self.lower.insert(entry, set);
        set
    }

    /// Backward liveness from `start` in function `func` (and its cold parts). At a return,
    /// what the function's callers rely on (`through_return`) or nothing (a callee's entry
    /// liveness, whose return continues in the walk that asked).
    fn live_from(&mut self, func: usize, start: u64, depth: usize, through_return: bool) -> RegSet {
        let owner = self.space.owner(func);
        let owner_entry = self.space.funcs[owner].start;
        let mut nodes: HashMap<u64, Node> = HashMap::new();
        let mut todo = vec![start];
        let mut returns = Vec::new();
        while let Some(address) = todo.pop() {
            if nodes.contains_key(&address) {
                continue;
            }
            if nodes.len() >= MAX_WALK {
                nodes.insert(address, self.unknown());
                continue;
            }
            let here = self
                .space
                .containing(address)
                .filter(|&i| self.space.same_function(i, func));
            let Some(instruction) = here.and_then(|i| self.space.decode(i, address)) else {
                // Fell off the function, or bytes that do not decode.
                nodes.insert(address, self.unknown());
                continue;
            };
            let node = self.node(&instruction, func, depth, &mut returns);
            todo.extend(node.succs.iter().copied());
            nodes.insert(address, node);
        }
        if !returns.is_empty() {
            let at_return = if through_return {
                self.relied(owner_entry, depth + 1)
            } else {
                RegSet::EMPTY
            };
            for (address, clobbered) in returns {
                if let Some(node) = nodes.get_mut(&address) {
                    node.exit = node.exit | at_return.minus(clobbered);
                }
            }
        }
        solve(&nodes, start)
    }

    /// A node for code the walk cannot see: everything is read there.
    fn unknown(&self) -> Node {
        Node {
            effects: Effects::default(),
            succs: Vec::new(),
            exit: RegSet::all(),
        }
    }

    /// One instruction's node. A return or a tail call is noted in `returns` with what the
    /// code run before the callers resume may clobber, to receive the callers' reliance.
    fn node(
        &mut self,
        instruction: &Instruction,
        func: usize,
        depth: usize,
        returns: &mut Vec<(u64, RegSet)>,
    ) -> Node {
        let effects = self.reader.effects(instruction);
        let next = instruction.next_ip();
        let mut node = Node {
            effects,
            succs: Vec::new(),
            exit: RegSet::EMPTY,
        };
        let inside = |target: u64| {
            self.space
                .containing(target)
                .is_some_and(|i| self.space.same_function(i, func))
        };
        match instruction.flow_control() {
            FlowControl::Next => node.succs.push(next),
            FlowControl::XbeginXabortXend => {
                node.succs.push(next);
                // xbegin also continues at its abort handler.
                if instruction.op0_kind() == OpKind::NearBranch64 {
                    match instruction.near_branch_target() {
                        target if inside(target) => node.succs.push(target),
                        _ => node.exit = RegSet::all(),
                    }
                }
            }
            FlowControl::Interrupt | FlowControl::Exception => {
                if !matches!(instruction.mnemonic(), Mnemonic::Int3 | Mnemonic::Ud2) {
                    node.succs.push(next);
                }
            }
            FlowControl::Return => returns.push((instruction.ip(), RegSet::EMPTY)),
            FlowControl::Call => match direct_target(instruction) {
                Some(target) => {
                    let (reads, kills) = self.call_effects(instruction.ip(), target, depth);
                    node.effects.reads = node.effects.reads | reads;
                    node.effects.kills = kills;
                    node.succs.push(next);
                }
                // syscall, far calls: their effects are the instruction's own.
                None => node.succs.push(next),
            },
            FlowControl::IndirectCall => {
                node.effects.reads = node.effects.reads | RegSet::arguments();
                node.effects.kills = RegSet::all();
                node.succs.push(next);
            }
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                if instruction.flow_control() == FlowControl::ConditionalBranch {
                    node.succs.push(next);
                }
                match direct_target(instruction) {
                    Some(target) if inside(target) => node.succs.push(target),
                    Some(target) => match self.space.at_entry(target) {
                        Some(_) => {
                            let (reads, clobbered) =
                                self.call_effects(instruction.ip(), target, depth);
                            node.exit = reads;
                            returns.push((instruction.ip(), clobbered));
                        }
                        None if self.space.is_opaque(target) => {
                            // A tail call through the PLT: arguments, and nothing survives.
                            node.exit = RegSet::arguments();
                        }
                        None => node.exit = RegSet::all(),
                    },
                    None => node.exit = RegSet::all(),
                }
            }
            FlowControl::IndirectBranch => node.exit = RegSet::all(),
        }
        node
    }

    /// What a direct call at `from` to `target` reads and what the caller may assume it
    /// overwrote.
    fn call_effects(&mut self, from: u64, target: u64, depth: usize) -> (RegSet, RegSet) {
        if self.space.separately_compiled(from, target) {
            return (RegSet::arguments(), RegSet::all());
        }
        match self.space.at_entry(target) {
            Some(_) => (self.entry_live(target, depth + 1), self.written(target)),
            None if self.space.is_opaque(target) => (RegSet::arguments(), RegSet::all()),
            // Into the middle of a function, or code without a symbol: nothing is known.
            None => (RegSet::all(), RegSet::EMPTY),
        }
    }
}

/// Solves `live_in(n) = reads(n) ∪ ((exit(n) ∪ ⋃ live_in(succ)) ∖ kills(n))` to its least fixed
/// point and returns `live_in(start)`.
fn solve(nodes: &HashMap<u64, Node>, start: u64) -> RegSet {
    let mut live: HashMap<u64, RegSet> = nodes.keys().map(|&a| (a, RegSet::EMPTY)).collect();
    let mut order: Vec<u64> = nodes.keys().copied().collect();
    // Later addresses first: most edges go forward, so this converges in few rounds.
    order.sort_unstable_by(|a, b| b.cmp(a));
    loop {
        let mut changed = false;
        for address in &order {
            let node = &nodes[address];
            let mut out = node.exit;
            for succ in &node.succs {
                out = out | live.get(succ).copied().unwrap_or_else(RegSet::all);
            }
            let value = node.effects.reads | out.minus(node.effects.kills);
            let slot = live.entry(*address).or_default();
            if *slot != value {
                *slot = value;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    live.get(&start).copied().unwrap_or_else(RegSet::all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A code space of functions given as (entry, bytes, name), gaps filled with `int3`.
    fn space(functions: &[(u64, &[u8], &str)]) -> CodeSpace {
        let lo = functions.iter().map(|f| f.0).min().unwrap();
        let hi = functions
            .iter()
            .map(|f| f.0 + f.1.len() as u64)
            .max()
            .unwrap();
        let mut bytes = vec![0xcc; (hi - lo) as usize];
        let mut funcs = Vec::new();
        for &(start, code, name) in functions {
            let at = (start - lo) as usize;
            bytes[at..at + code.len()].copy_from_slice(code);
            funcs.push(Func {
                start,
                end: start + code.len() as u64,
                name: name.into(),
            });
        }
        CodeSpace::new(funcs, vec![(lo, bytes)])
    }

    fn names(set: RegSet) -> Vec<String> {
        set.names()
    }

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const TICK: &[u8] = &[
        0x83, 0xf7, 0x5a, // xor edi, 0x5a
        0x40, 0x0f, 0xb6, 0xc7, // movzx eax, dil
        0xc3, // ret
    ];

    /// gcc -O2's `advance` keeping its loop state in rcx, rdx and rsi across `call tick`.
    const ADVANCE: &[u8] = &[
        0x48, 0x89, 0xfe, // 1010 mov rsi, rdi
        0x31, 0xd2, // 1013 xor edx, edx
        0x31, 0xc9, // 1015 xor ecx, ecx
        0x89, 0xd7, // 1017 mov edi, edx
        0x83, 0xc2, 0x01, // 1019 add edx, 1
        0xe8, 0xdf, 0xff, 0xff, 0xff, // 101c call 1000 <tick>
        0x48, 0x98, // 1021 cdqe
        0x48, 0x01, 0xc1, // 1023 add rcx, rax
        0x83, 0xfa, 0x08, // 1026 cmp edx, 8
        0x75, 0xec, // 1029 jne 1017
        0x48, 0x89, 0xc8, // 102b mov rax, rcx
        0x48, 0x01, 0xf0, // 102e add rax, rsi
        0xc3, // 1031 ret
    ];

    const MAIN: &[u8] = &[
        0xe8, 0xcb, 0xff, 0xff, 0xff, // 1040 call 1010 <advance>
        0x89, 0xc7, // 1045 mov edi, eax
        0xeb, 0xf7, // 1047 jmp 1040
    ];

    fn program() -> CodeSpace {
        space(&[
            (0x1000, TICK, "tick"),
            (0x1010, ADVANCE, "advance"),
            (0x1040, MAIN, "main"),
        ])
    }

    #[test]
    fn finds_registers_kept_across_a_call() {
        let space = program();
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        let calls = liveness.sites_of(0x1000);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].at, calls[0].next, calls[0].tail),
            (0x101c, 0x1021, false)
        );
        let live = liveness.live_at(&calls[0]);
        // rax is tick's result; rcx, rdx and rsi are the caller's loop state.
        assert_eq!(names(live), list(&["rax", "rcx", "rdx", "rsi"]));
        let old = clobbers(&space, 0x1000, Bound::Lower);
        assert_eq!(names(old), list(&["rax", "rdi"]));
        assert_eq!(names(live.minus(old)), list(&["rcx", "rdx", "rsi"]));
        // What main relies on across advance: only its result.
        let advance = liveness.sites_of(0x1010);
        assert_eq!(names(liveness.live_at(&advance[0])), list(&["rax"]));
    }

    #[test]
    fn replaced_callers_do_not_count() {
        let space = program();
        let sites = space.sites();
        let excluded = [(0x1010, 0x1032)];
        let liveness = Liveness::new(&space, &sites, &excluded);
        assert!(liveness.sites_of(0x1000).is_empty());
    }

    #[test]
    fn unknown_code_after_a_call_counts_as_reading_everything_not_written() {
        let caller: &[u8] = &[
            0xe8, 0, 0, 0, 0, // 1100 call tick (displacement set below)
            0x31, 0xc9, // xor ecx, ecx
            0xff, 0xe0, // jmp rax
        ];
        let mut code = caller.to_vec();
        // call 0x1000 from 0x1100: 0x1000 - 0x1105
        code[1..5].copy_from_slice(&(0x1000i32 - 0x1105).to_le_bytes());
        let space = space(&[(0x1000, TICK, "tick"), (0x1100, &code, "dispatch")]);
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        let live = liveness.live_at(&liveness.sites_of(0x1000)[0]);
        // Everything not written... that some code reads at all, or that may be an argument:
        // no instruction here touches r11, xmm8 or the upper halves of ymm registers.
        assert_eq!(live, RegSet::arguments().minus(rcx()));
    }

    fn rcx() -> RegSet {
        let mut reader = EffectReader::default();
        let instruction = Decoder::with_ip(64, &[0x31, 0xc9], 0, DecoderOptions::NONE).decode();
        reader.effects(&instruction).kills
    }

    #[test]
    fn an_external_call_reads_arguments_and_clobbers_everything() {
        let mut code = vec![
            0xe8, 0, 0, 0, 0, // 1100 call tick
            0xbf, 0x01, 0, 0, 0, // 1105 mov edi, 1
            0xe8, 0, 0, 0, 0, // 110a call 0x9000 (outside every function: a PLT entry)
            0x48, 0x89, 0xd8, // 110f mov rax, rbx (rbx is callee-saved: not tracked)
            0xc3, // 1112 ret
        ];
        code[1..5].copy_from_slice(&(0x1000i32 - 0x1105).to_le_bytes());
        code[11..15].copy_from_slice(&(0x9000i32 - 0x110f).to_le_bytes());
        let space = space(&[(0x1000, TICK, "tick"), (0x1100, &code, "log")])
            .with_opaque(vec![(0x9000, 0x9010)]);
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        let live = liveness.live_at(&liveness.sites_of(0x1000)[0]);
        assert_eq!(
            live,
            RegSet::arguments().minus(names_set(&[0xbf, 1, 0, 0, 0]))
        );
        // The PLT callee was not seen: everything may be written, in either bound.
        assert_eq!(clobbers(&space, 0x1100, Bound::Lower), RegSet::all());
        assert_eq!(clobbers(&space, 0x1100, Bound::Upper), RegSet::all());
    }

    fn names_set(instruction: &[u8]) -> RegSet {
        let mut reader = EffectReader::default();
        let decoded = Decoder::with_ip(64, instruction, 0, DecoderOptions::NONE).decode();
        reader.effects(&decoded).kills
    }

    #[test]
    fn tail_calls_pass_on_what_the_callers_keep() {
        // wrap: jmp tick; user: xor ecx,ecx; call wrap; mov rax, rcx; ret; top: call user; ...
        let mut wrap = vec![0xe9, 0, 0, 0, 0];
        wrap[1..5].copy_from_slice(&(0x1000i32 - 0x1205).to_le_bytes());
        let mut user = vec![
            0x31, 0xc9, // 1300 xor ecx, ecx
            0xe8, 0, 0, 0, 0, // 1302 call wrap
            0x48, 0x89, 0xc8, // 1307 mov rax, rcx
            0xc3, // 130a ret
        ];
        user[3..7].copy_from_slice(&(0x1200i32 - 0x1307).to_le_bytes());
        let space = space(&[
            (0x1000, TICK, "tick"),
            (0x1200, &wrap, "wrap"),
            (0x1300, &user, "user"),
        ]);
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        let tail = liveness.sites_of(0x1000);
        assert_eq!(tail.len(), 1);
        assert!(tail[0].tail);
        assert_eq!(names(liveness.live_at(&tail[0])), list(&["rcx"]));
        // Clobbers follow the tail call.
        assert_eq!(
            names(clobbers(&space, 0x1200, Bound::Upper)),
            list(&["rax", "rdi"])
        );
    }

    #[test]
    fn the_walk_is_bounded_and_sound_on_garbage() {
        // A function of undecodable bytes, a call into the middle of a function, a function
        // missing from the space.
        let garbage: &[u8] = &[0x0f, 0xff, 0xff, 0xff];
        let space = space(&[(0x1000, TICK, "tick"), (0x1100, garbage, "junk")]);
        assert_eq!(clobbers(&space, 0x1100, Bound::Upper), RegSet::all());
        assert_eq!(clobbers(&space, 0x5000, Bound::Upper), RegSet::all());
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        let site = Site {
            at: 0x1100,
            next: 0x1100,
            func: 1,
            tail: false,
        };
        assert_eq!(liveness.live_at(&site), RegSet::arguments());
        // A loop with no exit but a cap: terminates.
        let spin: &[u8] = &[0xeb, 0xfe];
        let space2 = space_of(spin);
        let sites2 = space2.sites();
        let mut l2 = Liveness::new(&space2, &sites2, &[]);
        let site = Site {
            at: 0x2000,
            next: 0x2000,
            func: 0,
            tail: false,
        };
        assert_eq!(l2.live_at(&site), RegSet::EMPTY);
    }

    fn space_of(code: &[u8]) -> CodeSpace {
        space(&[(0x2000, code, "spin")])
    }

    #[test]
    fn callers_compiled_apart_rely_on_nothing() {
        let units = vec![(0x1000, 0x1010, 0), (0x1010, 0x1050, 1)];
        let space = program().with_units(units);
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        // advance was compiled in another unit than tick: it held to the ABI.
        assert!(liveness.sites_of(0x1000).is_empty());
        // main and advance share a unit: main's reliance on advance stays (its result, and
        // the argument registers advance may pass on unwritten to code compiled apart), and
        // advance's clobbers now include everything.
        let main = names(liveness.live_at(&liveness.sites_of(0x1010)[0]));
        assert!(main.contains(&"rax".to_string()), "{main:?}");
        assert!(!main.contains(&"rcx".to_string()), "{main:?}");
        assert_eq!(clobbers(&space, 0x1010, Bound::Lower), RegSet::all());
        assert!(space.separately_compiled(0x1000, 0x1020));
        assert!(!space.separately_compiled(0x1000, 0x9000));
    }

    #[test]
    fn calls_to_code_without_a_symbol_are_unknown() {
        // log2: call tick; call 0x9000 (no symbol, not a PLT entry); ret
        let mut code = vec![0xe8, 0, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xc3];
        code[1..5].copy_from_slice(&(0x1000i32 - 0x1105).to_le_bytes());
        code[6..10].copy_from_slice(&(0x9000i32 - 0x110a).to_le_bytes());
        let space = space(&[(0x1000, TICK, "tick"), (0x1100, &code, "log2")]);
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        // It may read anything, and kills nothing the compiler could count on.
        let live = liveness.live_at(&liveness.sites_of(0x1000)[0]);
        assert_eq!(live, RegSet::arguments());
        // Its writes are unknown: all for the new code, nothing known for the old.
        assert_eq!(clobbers(&space, 0x1100, Bound::Upper), RegSet::all());
        assert_eq!(
            names(clobbers(&space, 0x1100, Bound::Lower)),
            list(&["rax", "rdi"])
        );
    }

    #[test]
    fn recursion_terminates_and_stays_conservative() {
        // rec: call tick; call rec; ret — its reliance on tick goes through itself.
        let mut code = vec![0xe8, 0, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xc3];
        code[1..5].copy_from_slice(&(0x1000i32 - 0x1105).to_le_bytes());
        code[6..10].copy_from_slice(&(0x1100i32 - 0x110a).to_le_bytes());
        let space = space(&[(0x1000, TICK, "tick"), (0x1100, &code, "rec")]);
        let sites = space.sites();
        let mut liveness = Liveness::new(&space, &sites, &[]);
        let live = liveness.live_at(&liveness.sites_of(0x1000)[0]);
        // The cycle assumes everything its code may read, but rax: the recursive call
        // overwrites it (rec writes it through tick), as the compiler knew.
        let expected: Vec<String> = names(sites.readable())
            .into_iter()
            .filter(|r| r != "rax")
            .collect();
        assert_eq!(names(live), expected);
        assert_eq!(
            names(clobbers(&space, 0x1100, Bound::Lower)),
            list(&["rax", "rdi"])
        );
    }
}
