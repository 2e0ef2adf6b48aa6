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
use iced_x86::{Decoder, DecoderOptions, Mnemonic, Register};

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

/// Where the canonical frame address is, from the stack pointer, after each instruction of the
/// thunk for `saves` that moves it: (offset of the next instruction, CFA offset).
fn cfa_steps(saves: RegSet) -> Vec<(u64, u64)> {
    let Some(code) = thunk_code(0, 0, saves) else {
        return Vec::new();
    };
    let mut decoder = Decoder::with_ip(64, &code, 0, DecoderOptions::NONE);
    let mut cfa = 8u64;
    let mut out = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        let moved = match instruction.mnemonic() {
            Mnemonic::Push => Some(cfa + 8),
            Mnemonic::Pop => Some(cfa.saturating_sub(8)),
            Mnemonic::Sub => Some(cfa + u64::from(instruction.immediate32())),
            Mnemonic::Add => Some(cfa.saturating_sub(u64::from(instruction.immediate32()))),
            _ => None,
        };
        if let Some(next) = moved {
            cfa = next;
            out.push((instruction.next_ip(), cfa));
        }
    }
    out
}

/// `.eh_frame` records (one CIE, an FDE per thunk) for thunks at the given text-zone offsets,
/// to be placed at text-zone offset `at` right after the patch's own records, so that stacks
/// are walked through a thunk's frame like through any other code.
pub(crate) fn cfi(thunks: &[(u64, RegSet)], at: u64) -> Vec<u8> {
    let mut out = Vec::new();
    // CIE: version 1, "zR", code alignment 1, data alignment -8, return address r16,
    // pc-relative signed 4-byte pointers; CFA = rsp + 8, return address at CFA - 8.
    let cie_body = [
        0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b, 0x0c, 7, 8, 0x90, 1,
    ];
    push_record(&mut out, &cie_body);
    for &(offset, saves) in thunks {
        let record = out.len() as u64;
        let len = thunk_len(saves);
        // The CIE pointer counts back from its own field; pc_begin is relative to its field.
        let cie_pointer = (record + 4) as u32;
        let pc_field = at + record + 8;
        let pc_begin = offset.wrapping_sub(pc_field) as u32;
        let mut body = Vec::new();
        body.extend_from_slice(&cie_pointer.to_le_bytes());
        body.extend_from_slice(&pc_begin.to_le_bytes());
        body.extend_from_slice(&(len as u32).to_le_bytes());
        body.push(0);
        let mut here = 0u64;
        for (next, cfa) in cfa_steps(saves) {
            advance(&mut body, next - here);
            here = next;
            body.push(0x0e);
            uleb(&mut body, cfa);
        }
        push_record(&mut out, &body);
    }
    out
}

/// Appends a length-prefixed record, padded with `DW_CFA_nop` to a multiple of 8.
fn push_record(out: &mut Vec<u8>, body: &[u8]) {
    let padded = (4 + body.len()).next_multiple_of(8) - 4;
    out.extend_from_slice(&(padded as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
}

/// `DW_CFA_advance_loc` in its shortest form.
fn advance(out: &mut Vec<u8>, delta: u64) {
    match delta {
        0..=63 => out.push(0x40 | delta as u8),
        64..=255 => out.extend_from_slice(&[0x02, delta as u8]),
        _ => {
            out.push(0x03);
            out.extend_from_slice(&(delta.min(u64::from(u16::MAX)) as u16).to_le_bytes());
        }
    }
}

fn uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Formatter, IntelFormatter};

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

    #[test]
    fn frame_records_follow_the_stack_pointer() {
        let saves = set(&[Register::RCX, Register::RSI], &[3]);
        assert_eq!(
            cfa_steps(saves),
            [(1, 16), (2, 24), (9, 48), (39, 24), (40, 16), (41, 8)]
        );
        let records = cfi(&[(0x100, saves), (0x140, saves)], 0x40);
        assert_eq!(records.len() % 8, 0);
        // CIE, then two FDEs pointing back at it and at their thunks.
        let cie_len = u32::from_le_bytes(records[0..4].try_into().unwrap()) as usize + 4;
        let fde = &records[cie_len..];
        let cie_pointer = u32::from_le_bytes(fde[4..8].try_into().unwrap()) as usize;
        assert_eq!(cie_pointer, cie_len + 4);
        let pc_begin = i32::from_le_bytes(fde[8..12].try_into().unwrap()) as i64;
        assert_eq!(0x40 + cie_len as i64 + 8 + pc_begin, 0x100);
        assert_eq!(
            u32::from_le_bytes(fde[12..16].try_into().unwrap()) as u64,
            thunk_len(saves)
        );
    }
}
