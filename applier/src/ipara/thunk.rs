//! The save/restore thunk: when the replacement of a function writes call-clobbered registers
//! that unpatched callers keep live across their call (the old code, compiled with sight of
//! its callers, left them alone), the jump at the old entry goes to a few instructions that
//! push those registers, call the replacement and pop them before returning.
//!
//! The thunk's frame sits between the caller's and the replacement's, so it is only used for a
//! function that takes no arguments on the stack (proven from the binary's DWARF); it keeps the
//! stack 16-byte aligned at the call. The caller's red zone is not touched: the call that
//! reached the thunk already wrote below the caller's stack pointer, so nothing lives there.

use super::regs::RegSet;
use iced_x86::Register;

/// Length of the thunk for `saves`, in bytes.
pub(crate) fn thunk_len(saves: RegSet) -> u64 {
    // push + pop per register, sub/add for the vector area, two movdqu per vector register,
    // the call and the return.
    let gprs: u64 = saves.gprs().map(|r| 2 * push_len(r)).sum();
    let xmms = saves.xmm_numbers().count() as u64;
    gprs + 14 + xmms * 2 * 10 + 5 + 1
}

fn push_len(reg: Register) -> u64 {
    if encoding(reg) >= 8 {
        2
    } else {
        1
    }
}

/// The register number used in encodings.
fn encoding(reg: Register) -> u8 {
    match reg {
        Register::RAX => 0,
        Register::RCX => 1,
        Register::RDX => 2,
        Register::RSI => 6,
        Register::RDI => 7,
        Register::R8 => 8,
        Register::R9 => 9,
        Register::R10 => 10,
        _ => 11,
    }
}

/// The code of a thunk at `at` that preserves `saves` (general and `xmm0-15` registers) around
/// a call of `target`; `None` when the call cannot reach it with a 32-bit displacement.
pub(crate) fn thunk_code(at: u64, target: u64, saves: RegSet) -> Option<Vec<u8>> {
    let gprs: Vec<Register> = saves.gprs().collect();
    let xmms: Vec<u32> = saves.xmm_numbers().filter(|&n| n < 16).collect();
    let mut code = Vec::new();
    for &reg in &gprs {
        let n = encoding(reg);
        if n >= 8 {
            code.push(0x41);
        }
        code.push(0x50 + (n & 7));
    }
    // At entry rsp is 8 off 16-byte alignment; after the pushes and this area the call finds
    // it aligned again.
    let pad = if gprs.len().is_multiple_of(2) { 8 } else { 0 };
    let area = u32::try_from(16 * xmms.len() + pad).ok()?;
    if area > 0 {
        code.extend_from_slice(&[0x48, 0x81, 0xec]);
        code.extend_from_slice(&area.to_le_bytes());
    }
    let movdqu = |code: &mut Vec<u8>, op: u8, slot: usize, n: u32| {
        code.push(0xf3);
        if n >= 8 {
            code.push(0x44);
        }
        code.extend_from_slice(&[0x0f, op, 0x84 | ((n as u8 & 7) << 3), 0x24]);
        code.extend_from_slice(&((16 * slot) as u32).to_le_bytes());
    };
    for (slot, &n) in xmms.iter().enumerate() {
        movdqu(&mut code, 0x7f, slot, n);
    }
    let call_end = at.checked_add(code.len() as u64 + 5)?;
    let rel = i32::try_from(target.wrapping_sub(call_end) as i64).ok()?;
    code.push(0xe8);
    code.extend_from_slice(&rel.to_le_bytes());
    for (slot, &n) in xmms.iter().enumerate() {
        movdqu(&mut code, 0x6f, slot, n);
    }
    if area > 0 {
        code.extend_from_slice(&[0x48, 0x81, 0xc4]);
        code.extend_from_slice(&area.to_le_bytes());
    }
    for &reg in gprs.iter().rev() {
        let n = encoding(reg);
        if n >= 8 {
            code.push(0x41);
        }
        code.push(0x58 + (n & 7));
    }
    code.push(0xc3);
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    fn listing(code: &[u8], at: u64) -> Vec<String> {
        let mut decoder = Decoder::with_ip(64, code, at, DecoderOptions::NONE);
        let mut formatter = IntelFormatter::new();
        let mut out = Vec::new();
        while decoder.can_decode() {
            let instruction = decoder.decode();
            let mut text = String::new();
            formatter.format(&instruction, &mut text);
            out.push(text);
        }
        out
    }

    fn set(regs: &[Register], xmms: &[u32]) -> RegSet {
        let mut reader = super::super::regs::EffectReader::default();
        let mut out = RegSet::EMPTY;
        // Build the set from the writes of instructions, the public way in.
        for &r in regs {
            let mut code = vec![];
            let n = encoding(r);
            code.push(if n >= 8 { 0x41 } else { 0x40 });
            code.push(0xb8 + (n & 7));
            code.extend_from_slice(&[0, 0, 0, 0]);
            let instruction = Decoder::with_ip(64, &code, 0, DecoderOptions::NONE).decode();
            out = out | reader.effects(&instruction).writes;
        }
        for &n in xmms {
            let mut code = vec![0x66];
            if n >= 8 {
                code.push(0x44);
            }
            code.extend_from_slice(&[0x0f, 0x6f, 0xc0 | ((n as u8 & 7) << 3)]);
            let instruction = Decoder::with_ip(64, &code, 0, DecoderOptions::NONE).decode();
            out = out | reader.effects(&instruction).writes;
        }
        out
    }

    #[test]
    fn saves_registers_around_the_call_aligned() {
        let saves = set(&[Register::RCX, Register::RSI, Register::R8], &[]);
        let code = thunk_code(0x1000, 0x2000, saves).unwrap();
        assert!(code.len() as u64 <= thunk_len(saves));
        assert_eq!(
            listing(&code, 0x1000),
            [
                "push rcx",
                "push rsi",
                "push r8",
                "call 0000000000002000h",
                "pop r8",
                "pop rsi",
                "pop rcx",
                "ret"
            ]
        );
    }

    #[test]
    fn pads_an_even_number_of_pushes_and_saves_vectors() {
        let saves = set(&[Register::RDX, Register::R11], &[1, 9]);
        let code = thunk_code(0x1000, 0x2000, saves).unwrap();
        assert!(code.len() as u64 <= thunk_len(saves));
        assert_eq!(
            listing(&code, 0x1000),
            [
                "push rdx",
                "push r11",
                "sub rsp,28h",
                "movdqu [rsp],xmm1",
                "movdqu [rsp+10h],xmm9",
                "call 0000000000002000h",
                "movdqu xmm1,[rsp]",
                "movdqu xmm9,[rsp+10h]",
                "add rsp,28h",
                "pop r11",
                "pop rdx",
                "ret"
            ]
        );
        assert!(thunk_code(0x1000, 0x1000 + (1 << 40), saves).is_none());
    }
}
