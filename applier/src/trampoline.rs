//! The jumps written at the entry of replaced functions, and the checks that the entry can hold
//! them: whole instructions covering the jump must lie within the function.

use iced_x86::{Decoder, DecoderOptions, FlowControl, OpKind};

use crate::error::ApplyError;

/// Length of `jmp rel32`.
pub(crate) const REL32_LEN: usize = 5;
/// Length of `jmp *[rip+0]; .quad target`.
pub(crate) const ABS_LEN: usize = 14;
/// The breakpoint instruction (`int3`), written over entries while a threadwise commit runs.
pub(crate) const INT3: u8 = 0xcc;

fn rel32(from: u64, to: u64) -> Option<i32> {
    let next = from.checked_add(REL32_LEN as u64)?;
    i32::try_from(to.wrapping_sub(next) as i64).ok()
}

/// The bytes of the shortest jump from `from` to `to`.
pub(crate) fn jump_bytes(from: u64, to: u64) -> Vec<u8> {
    match rel32(from, to) {
        Some(disp) => {
            let mut out = vec![0xe9];
            out.extend_from_slice(&disp.to_le_bytes());
            out
        }
        None => absolute_jump(to).to_vec(),
    }
}

/// `jmp *[rip+0]` followed by the 8-byte target: position-independent, reaches anywhere.
pub(crate) fn absolute_jump(to: u64) -> [u8; ABS_LEN] {
    let mut out = [0u8; ABS_LEN];
    out[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    out[6..].copy_from_slice(&to.to_le_bytes());
    out
}

/// Whether `code` (at address `ip`) is all alignment padding: NOP instructions (any length) and
/// `int3`.
pub(crate) fn is_padding(code: &[u8], ip: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid()
            || !matches!(
                instruction.mnemonic(),
                iced_x86::Mnemonic::Nop | iced_x86::Mnemonic::Int3
            )
        {
            return false;
        }
    }
    true
}

/// Checks that whole instructions of `code` (the function's first bytes, at address `ip`, of
/// `size` bytes in all) cover `jump_len` bytes without leaving the function; returns the covered
/// length.
pub(crate) fn covered_length(
    name: &str,
    code: &[u8],
    ip: u64,
    size: u64,
    jump_len: usize,
) -> Result<usize, ApplyError> {
    let too_short = |why: String| ApplyError::FunctionTooShort {
        name: name.into(),
        size,
        jump: jump_len,
        why,
    };
    let ends_inside = |covered: usize| {
        format!("its whole instructions reach {covered} bytes in before covering the jump, past its end")
    };
    if size < jump_len as u64 {
        return Err(too_short(format!(
            "it has no room for the jump: {size} bytes from its entry to its end"
        )));
    }
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut covered = 0usize;
    while covered < jump_len {
        if !decoder.can_decode() {
            return Err(too_short(ends_inside(covered)));
        }
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            let address = ip.wrapping_add(covered as u64);
            if code.len() as u64 >= size && covered + 15 > code.len() {
                return Err(too_short(ends_inside(covered)));
            }
            return Err(ApplyError::Undecodable {
                name: name.into(),
                address,
            });
        }
        covered += instruction.len();
    }
    if covered as u64 > size {
        return Err(too_short(ends_inside(covered)));
    }
    Ok(covered)
}

/// Whether any near jump or call inside `code` (at `ip`) targets an address strictly inside
/// `(lo, hi)`: then a thread still running the old body could jump into the overwritten bytes.
pub(crate) fn branches_into(code: &[u8], ip: u64, lo: u64, hi: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return true;
        }
        let branch = matches!(
            instruction.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
        );
        if branch && matches!(instruction.op0_kind(), OpKind::NearBranch64) {
            let target = instruction.near_branch_target();
            if lo < target && target < hi {
                return true;
            }
        }
    }
    false
}

/// Where a `jmp rel32` or the 14-byte absolute jump at `at` goes.
pub(crate) fn jump_target(at: u64, bytes: &[u8]) -> Option<u64> {
    match bytes {
        [0xe9, d @ ..] if d.len() >= 4 => {
            let disp = i32::from_le_bytes(d[..4].try_into().ok()?);
            Some(at.wrapping_add(5).wrapping_add(disp as i64 as u64))
        }
        [0xff, 0x25, 0, 0, 0, 0, t @ ..] if t.len() >= 8 => {
            Some(u64::from_le_bytes(t[..8].try_into().ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_of_each_jump_form_is_read_back() {
        let jump = jump_bytes(0x1000, 0x2000);
        assert_eq!(jump_target(0x1000, &jump), Some(0x2000));
        let far = jump_bytes(0x1000, 0x7f00_0000_0000);
        assert_eq!(jump_target(0x1000, &far), Some(0x7f00_0000_0000));
        assert_eq!(jump_target(0x1000, &[0x55, 0x48]), None);
    }

    #[test]
    fn padding_is_nops_and_int3_only() {
        assert!(is_padding(
            &[0x90, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xcc],
            0x1000
        ));
        assert!(is_padding(&[], 0x1000));
        assert!(!is_padding(&[0x90, 0xc3], 0x1000));
        assert!(!is_padding(&[0x00, 0x00], 0x1000));
        assert!(!is_padding(&[0x0f], 0x1000));
    }

    #[test]
    fn near_jumps_use_rel32() {
        assert_eq!(jump_bytes(0x1000, 0x1005), vec![0xe9, 0, 0, 0, 0]);
        assert_eq!(
            jump_bytes(0x1000, 0x1000),
            vec![0xe9, 0xfb, 0xff, 0xff, 0xff]
        );
        assert_eq!(jump_bytes(0x1000, 0x1000 + 0x7fff_0000).len(), REL32_LEN);
    }

    #[test]
    fn far_jumps_are_absolute() {
        let bytes = jump_bytes(0x1000, 0x7f00_0000_0000);
        assert_eq!(bytes.len(), ABS_LEN);
        assert_eq!(&bytes[..6], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(
            u64::from_le_bytes(bytes[6..].try_into().unwrap()),
            0x7f00_0000_0000
        );
    }

    #[test]
    fn short_functions_are_refused() {
        // xor eax,eax; ret
        let err = covered_length("tiny", &[0x31, 0xc0, 0xc3], 0x1000, 3, 5).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("`tiny` is 3 bytes, shorter than the 5-byte jump: it has no room"),
            "{text}"
        );
        assert!(text.contains("-falign-functions=16"), "{text}");
        // push rbp; mov rbp,rsp; xor eax,eax; pop rbp; ret (6 bytes): covers 5 with 3+... ok
        let code = [0x55, 0x48, 0x89, 0xe5, 0x31, 0xc0, 0x5d, 0xc3];
        assert_eq!(covered_length("f", &code, 0x1000, 8, 5).unwrap(), 6);
        // an instruction crossing the end of the function
        assert!(covered_length("g", &code[..5], 0x1000, 5, 5).is_err());
    }

    #[test]
    fn branch_into_the_entry_is_seen() {
        // 0x1000: nop; nop; nop; jmp 0x1001 (eb f8 at 0x1003 -> 0x1005 - 8 + ... )
        let code = [0x90, 0x90, 0x90, 0xeb, 0xfc];
        assert!(branches_into(&code, 0x1000, 0x1000, 0x1005));
        assert!(!branches_into(&[0x90, 0xc3], 0x1000, 0x1000, 0x1005));
    }
}
