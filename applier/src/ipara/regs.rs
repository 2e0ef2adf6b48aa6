//! The registers the x86-64 System V ABI lets a callee clobber, as a bit set, and what one
//! decoded instruction does to them: which it reads, which it certainly overwrites whole (a
//! *kill*, for liveness), and which it may change at all (for clobber sets).

use iced_x86::{EncodingKind, Instruction, InstructionInfoFactory, OpAccess, Register};

/// The call-clobbered general registers, in bit order.
const GPRS: [(Register, &str); 9] = [
    (Register::RAX, "rax"),
    (Register::RCX, "rcx"),
    (Register::RDX, "rdx"),
    (Register::RSI, "rsi"),
    (Register::RDI, "rdi"),
    (Register::R8, "r8"),
    (Register::R9, "r9"),
    (Register::R10, "r10"),
    (Register::R11, "r11"),
];
/// First bit of the low 128 bits of vector register N (`xmmN`).
const LOW: u32 = 16;
/// First bit of the bits above 128 of vector register N (the upper part of `ymmN`/`zmmN`).
const HIGH: u32 = 48;
/// First bit of mask register N (`kN`).
const MASK: u32 = 80;

/// A set of call-clobbered registers: `rax rcx rdx rsi rdi r8-r11`, each vector register in two
/// parts (its low 128 bits, `xmmN`, and the rest, which legacy SSE code leaves alone) and the
/// AVX-512 mask registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RegSet(u128);

impl RegSet {
    /// No register.
    pub const EMPTY: RegSet = RegSet(0);

    /// Every call-clobbered register.
    pub fn all() -> RegSet {
        let gprs = (1u128 << GPRS.len()) - 1;
        let vectors = ((1u128 << 32) - 1) << LOW | ((1u128 << 32) - 1) << HIGH;
        RegSet(gprs | vectors | 0xffu128 << MASK)
    }

    /// The registers that carry arguments into a call: `rdi rsi rdx rcx r8 r9`, `rax` (`al`
    /// counts the vector registers of a variadic call), `r10` (the static chain) and `xmm0-7`.
    pub fn arguments() -> RegSet {
        let gprs = [
            Register::RAX,
            Register::RCX,
            Register::RDX,
            Register::RSI,
            Register::RDI,
            Register::R8,
            Register::R9,
            Register::R10,
        ];
        let mut set = gprs.iter().fold(RegSet::EMPTY, |s, &r| s | gpr(r));
        for n in 0..8 {
            set = set | RegSet(1 << (LOW + n));
        }
        set
    }

    /// Whether no register is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The registers of this set not in `other`.
    pub fn minus(self, other: RegSet) -> RegSet {
        RegSet(self.0 & !other.0)
    }

    /// The general registers of the set, in bit order.
    pub fn gprs(self) -> impl Iterator<Item = Register> {
        GPRS.iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, &(reg, _))| reg)
    }

    /// The vector registers whose low 128 bits are in the set.
    pub fn xmm_numbers(self) -> impl Iterator<Item = u32> {
        (0..32).filter(move |n| self.0 & (1 << (LOW + n)) != 0)
    }

    /// The part of the set a save/restore thunk cannot preserve with `push`/`pop` and SSE2
    /// `movdqu`: upper halves of vector registers, `xmm16-31` and mask registers.
    pub fn beyond_sse2(self) -> RegSet {
        let sse2 = RegSet::all().0 & (((1u128 << GPRS.len()) - 1) | (0xffffu128 << LOW));
        RegSet(self.0 & !sse2)
    }

    /// The register names, in bit order: `rcx`, `xmm3`, `ymm3 (upper half)`, `k1`.
    pub fn names(self) -> Vec<String> {
        let mut out = Vec::new();
        for (bit, (_, name)) in GPRS.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                out.push((*name).to_string());
            }
        }
        for n in 0..32 {
            if self.0 & (1 << (LOW + n)) != 0 {
                out.push(format!("xmm{n}"));
            }
        }
        for n in 0..32 {
            if self.0 & (1 << (HIGH + n)) != 0 {
                out.push(format!("ymm{n} (upper half)"));
            }
        }
        for n in 0..8 {
            if self.0 & (1 << (MASK + n)) != 0 {
                out.push(format!("k{n}"));
            }
        }
        out
    }
}

impl std::ops::BitOr for RegSet {
    type Output = RegSet;
    fn bitor(self, other: RegSet) -> RegSet {
        RegSet(self.0 | other.0)
    }
}

impl std::ops::BitAnd for RegSet {
    type Output = RegSet;
    fn bitand(self, other: RegSet) -> RegSet {
        RegSet(self.0 & other.0)
    }
}

impl std::fmt::Display for RegSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names().join(", "))
    }
}

/// The bit of a call-clobbered general register (any width), or nothing.
fn gpr(reg: Register) -> RegSet {
    let full = reg.full_register();
    GPRS.iter()
        .position(|&(r, _)| r == full)
        .map_or(RegSet::EMPTY, |bit| RegSet(1 << bit))
}

/// What one instruction does to the call-clobbered registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effects {
    /// Registers whose value it may read (also for addresses).
    pub reads: RegSet,
    /// Registers it certainly overwrites whole, whatever they held.
    pub kills: RegSet,
    /// Registers it may change at all.
    pub writes: RegSet,
}

/// Decodes instruction effects; keeps iced's scratch buffers between instructions.
pub struct EffectReader {
    factory: InstructionInfoFactory,
}

impl Default for EffectReader {
    fn default() -> Self {
        EffectReader {
            factory: InstructionInfoFactory::new(),
        }
    }
}

impl std::fmt::Debug for EffectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EffectReader")
    }
}

impl EffectReader {
    /// What `instruction` does to the call-clobbered registers.
    pub fn effects(&mut self, instruction: &Instruction) -> Effects {
        let vex = matches!(
            instruction.encoding(),
            EncodingKind::VEX | EncodingKind::EVEX | EncodingKind::XOP
        );
        let mut out = Effects::default();
        if zeroing_idiom(instruction) {
            let reg = register_bits(instruction.op0_register(), vex);
            out.kills = reg.whole;
            out.writes = reg.touched;
            return out;
        }
        if matches!(
            instruction.mnemonic(),
            iced_x86::Mnemonic::Vzeroupper | iced_x86::Mnemonic::Vzeroall
        ) {
            out.writes = RegSet(0xffffu128 << LOW | 0xffffu128 << HIGH);
            return out;
        }
        if instruction.mnemonic() == iced_x86::Mnemonic::Syscall {
            // The kernel's convention: number and arguments in, result and rcx/r11 out.
            let args = [
                Register::RAX,
                Register::RDI,
                Register::RSI,
                Register::RDX,
                Register::R10,
                Register::R8,
                Register::R9,
            ];
            out.reads = args.iter().fold(RegSet::EMPTY, |s, &r| s | gpr(r));
            out.kills = gpr(Register::RAX) | gpr(Register::RCX) | gpr(Register::R11);
            out.writes = out.kills;
            return out;
        }
        let info = self.factory.info(instruction);
        for used in info.used_registers() {
            let bits = register_bits(used.register(), vex);
            let access = used.access();
            if matches!(
                access,
                OpAccess::Read | OpAccess::CondRead | OpAccess::ReadWrite | OpAccess::ReadCondWrite
            ) {
                out.reads = out.reads | bits.read;
            }
            if matches!(
                access,
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            ) {
                out.writes = out.writes | bits.touched;
            }
            if access == OpAccess::Write {
                out.kills = out.kills | bits.whole;
            }
        }
        out
    }
}

/// The bits one register operand stands for.
struct Bits {
    /// Read through it.
    read: RegSet,
    /// Changed by writing it.
    touched: RegSet,
    /// Certainly overwritten whole by a plain write of it.
    whole: RegSet,
}

fn register_bits(reg: Register, vex: bool) -> Bits {
    let none = Bits {
        read: RegSet::EMPTY,
        touched: RegSet::EMPTY,
        whole: RegSet::EMPTY,
    };
    if reg.is_gpr() {
        let bit = gpr(reg);
        // A 32-bit write zero-extends; 8- and 16-bit writes keep the rest.
        let whole = if reg.size() >= 4 { bit } else { RegSet::EMPTY };
        return Bits {
            read: bit,
            touched: bit,
            whole,
        };
    }
    if reg.is_xmm() || reg.is_ymm() || reg.is_zmm() {
        let n = reg.number() as u32;
        let low = RegSet(1 << (LOW + n));
        let high = RegSet(1 << (HIGH + n));
        let wide = !reg.is_xmm();
        // VEX/EVEX writes zero the bits above the operand; legacy SSE leaves them.
        let touched = if wide || vex { low | high } else { low };
        return Bits {
            read: if wide { low | high } else { low },
            touched,
            whole: touched,
        };
    }
    if reg.is_k() {
        let bit = RegSet(1 << (MASK + reg.number() as u32));
        return Bits {
            read: bit,
            touched: bit,
            whole: bit,
        };
    }
    none
}

/// `xor r,r`, `sub r,r`, `pxor x,x`, `xorps x,x` and their VEX forms: they read nothing.
fn zeroing_idiom(instruction: &Instruction) -> bool {
    use iced_x86::{Mnemonic, OpKind};
    let zeroing = matches!(
        instruction.mnemonic(),
        Mnemonic::Xor
            | Mnemonic::Sub
            | Mnemonic::Pxor
            | Mnemonic::Xorps
            | Mnemonic::Xorpd
            | Mnemonic::Vpxor
            | Mnemonic::Vxorps
            | Mnemonic::Vxorpd
    );
    if !zeroing {
        return false;
    }
    let count = instruction.op_count();
    let regs: Vec<Register> = (0..count)
        .map(|i| match instruction.op_kind(i) {
            OpKind::Register => Some(instruction.op_register(i)),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    regs.len() == count as usize && count >= 2 && regs.windows(2).all(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn effects(bytes: &[u8]) -> Effects {
        let mut decoder = Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE);
        let instruction = decoder.decode();
        assert!(!instruction.is_invalid());
        EffectReader::default().effects(&instruction)
    }

    fn contains(a: RegSet, b: RegSet) -> bool {
        a & b == b
    }

    fn set(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gpr_writes() {
        // mov ecx, edx: reads rdx, kills rcx (32-bit writes zero-extend)
        let e = effects(&[0x89, 0xd1]);
        assert_eq!(e.reads.names(), set(&["rdx"]));
        assert_eq!(e.kills.names(), set(&["rcx"]));
        // mov cl, dl: changes rcx but does not kill it
        let e = effects(&[0x88, 0xd1]);
        assert_eq!(e.writes.names(), set(&["rcx"]));
        assert!(e.kills.is_empty());
        // add rcx, rax: reads both, writes rcx, kills nothing
        let e = effects(&[0x48, 0x01, 0xc1]);
        assert_eq!(e.reads.names(), set(&["rax", "rcx"]));
        assert!(e.kills.is_empty());
        // xor ecx, ecx: a pure write
        let e = effects(&[0x31, 0xc9]);
        assert!(e.reads.is_empty());
        assert_eq!(e.kills.names(), set(&["rcx"]));
        // push rbx touches nothing tracked
        assert_eq!(effects(&[0x53]), Effects::default());
    }

    #[test]
    fn implicit_registers() {
        // syscall writes rcx and r11, reads rax
        let e = effects(&[0x0f, 0x05]);
        assert!(contains(e.writes, gpr(Register::RCX) | gpr(Register::R11)));
        assert!(contains(e.reads, gpr(Register::RAX)));
        // cltq (cdqe): reads and writes rax
        let e = effects(&[0x48, 0x98]);
        assert_eq!(e.reads.names(), set(&["rax"]));
        assert_eq!(e.writes.names(), set(&["rax"]));
    }

    #[test]
    fn vector_parts() {
        // movaps xmm1, xmm2 (legacy): the upper half of ymm1 stays
        let e = effects(&[0x0f, 0x28, 0xca]);
        assert_eq!(e.reads.names(), set(&["xmm2"]));
        assert_eq!(e.writes.names(), set(&["xmm1"]));
        // vmovaps xmm1, xmm2 (VEX): zeroes the upper half too
        let e = effects(&[0xc5, 0xf8, 0x28, 0xca]);
        assert_eq!(e.writes.names(), set(&["xmm1", "ymm1 (upper half)"]));
        // vzeroupper changes every vector register
        let e = effects(&[0xc5, 0xf8, 0x77]);
        assert!(contains(e.writes, RegSet(1 << HIGH)));
        assert!(e.kills.is_empty());
        // pxor xmm0, xmm0 reads nothing
        assert!(effects(&[0x66, 0x0f, 0xef, 0xc0]).reads.is_empty());
    }

    #[test]
    fn sets() {
        assert!(contains(RegSet::all(), RegSet::arguments()));
        assert_eq!(RegSet::arguments().beyond_sse2(), RegSet::EMPTY);
        assert_eq!(
            RegSet(1 << HIGH).beyond_sse2().names(),
            set(&["ymm0 (upper half)"])
        );
        assert_eq!(RegSet::all().gprs().count(), 9);
        assert_eq!(RegSet::all().xmm_numbers().count(), 32);
    }
}
