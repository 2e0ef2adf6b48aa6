//! The ledger header at the start of every patch region: what was applied and which bytes were
//! overwritten, so `list` and `revert` can read it back from the process itself.
//!
//! Layout: `b"HOTPATCH"`, format (u32 LE), JSON length (u32 LE), state (u32 LE, see
//! [`LedgerState`]), 4 reserved bytes, then the JSON of [`LedgerRecord`].
//!
//! The JSON is written once, before the commit, while the region is not reachable. Only the state
//! word changes later, with one aligned 4-byte write at the stop that makes the change (jumps
//! written: `Applied`; original bytes restored: `Reverted`), so a tool killed at any moment leaves
//! a header that is either the old state or the new one, never a torn record.

use serde::{Deserialize, Serialize};

use crate::artifact::{FunctionAction, Manifest};
use crate::error::ApplyError;

/// The 8 bytes every patch region starts with.
pub const LEDGER_MAGIC: &[u8; 8] = b"HOTPATCH";
/// Version of the ledger header format.
pub const LEDGER_FORMAT: u32 = 2;
/// Bytes before the JSON.
pub const LEDGER_PREFIX: usize = 24;
/// Offset of the state word in the header.
pub const STATE_OFFSET: u64 = 16;

/// Where a patch stands, as its header's state word records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    /// Written and linked, jumps not (known to be) committed: the tool stopped before or during
    /// the commit. `list` checks the entries to tell whether the jumps are in place.
    Prepared,
    /// The jumps are committed.
    Applied,
    /// The original bytes were restored; the region stays mapped only while code in it might
    /// still be reachable.
    Reverted,
}

impl LedgerState {
    /// The state word's value.
    pub fn word(self) -> u32 {
        match self {
            LedgerState::Prepared => 0,
            LedgerState::Applied => 1,
            LedgerState::Reverted => 2,
        }
    }

    /// The state a word records (an unknown value reads as `Prepared`, the state that makes
    /// `list` look at the entries themselves).
    pub fn from_word(word: u32) -> LedgerState {
        match word {
            1 => LedgerState::Applied,
            2 => LedgerState::Reverted,
            _ => LedgerState::Prepared,
        }
    }

    /// Lower-case name, as `list` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Prepared => "prepared",
            LedgerState::Applied => "applied",
            LedgerState::Reverted => "reverted",
        }
    }
}

/// What one applied patch records about itself in its region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The patch id.
    pub patch_id: String,
    /// When it was applied (seconds since the Unix epoch).
    pub applied_at_unix: u64,
    /// Order of application in this process: one more than the highest sequence of the patches
    /// already installed when it was prepared.
    #[serde(default)]
    pub sequence: u64,
    /// Start of the region (where this header lives).
    pub region_address: u64,
    /// Size of the region in bytes.
    pub region_size: u64,
    /// The manifest of the patch object, if it had one.
    pub manifest: Option<Manifest>,
    /// Every function of the patch and, for redirected ones, the bytes the jump overwrote.
    pub functions: Vec<LedgerFunction>,
    /// Where the patch's call frame information lives in the region, so stacks with frames in
    /// its code can be walked (absent in records of older versions and for patches without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwind: Option<UnwindRecord>,
    /// The jump islands of the patch: pages near modules out of `rel32` reach of the region,
    /// holding the absolute jumps their functions' entries reach with `jmp rel32` (absent when
    /// there are none, and in records of older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub islands: Vec<Island>,
}

/// A jump island: a mapping of the patch apart from its region, near another module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Island {
    /// Its start.
    pub address: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// The `.eh_frame` of a patch in its region and the code it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwindRecord {
    /// Address of the first CIE/FDE record.
    pub eh_frame_address: u64,
    /// Bytes of records (no terminator).
    pub eh_frame_size: u64,
    /// Start of the code the records cover (the region's text zone).
    pub text_address: u64,
    /// Size of that code.
    pub text_size: u64,
}

/// One function of an applied patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerFunction {
    /// Source name.
    pub name: String,
    /// Source file defining the function (older versions recorded it for `static` functions
    /// only).
    pub file: Option<String>,
    /// What was done.
    pub action: FunctionAction,
    /// Address of the new code.
    pub new_address: u64,
    /// Size (`st_size`) of the new code: where a later patch replacing a function this one
    /// added finds its end (ledgers of older versions do not record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_size: Option<u64>,
    /// The overwritten range, when the function was redirected.
    pub overwritten: Option<OverwrittenRange>,
    /// Where the entry's jump goes when it is not the new code: the function's stub in a jump
    /// island (which jumps on to `new_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<u64>,
}

impl LedgerFunction {
    /// Where the jump at the function's entry goes: its island stub, or the new code.
    pub fn entry_target(&self) -> u64 {
        self.via.unwrap_or(self.new_address)
    }
}

/// Bytes of the target replaced by a jump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverwrittenRange {
    /// First overwritten byte (the old function's entry).
    pub address: u64,
    /// The original bytes, hex encoded (their count is the range length).
    pub original_hex: String,
}

/// Encodes a header in state `Prepared`: prefix and JSON.
pub fn encode(record: &LedgerRecord) -> Vec<u8> {
    let json = serde_json::to_vec(record).unwrap_or_default();
    let mut out = Vec::with_capacity(LEDGER_PREFIX + json.len());
    out.extend_from_slice(LEDGER_MAGIC);
    out.extend_from_slice(&LEDGER_FORMAT.to_le_bytes());
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&LedgerState::Prepared.word().to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&json);
    out
}

/// The state word a header records (`Prepared` if `bytes` is too short to hold one).
pub fn state(bytes: &[u8]) -> LedgerState {
    let word = bytes
        .get(16..20)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    LedgerState::from_word(word)
}

/// The JSON length a header announces, if `prefix` starts like one (to know how much to read).
pub fn announced_length(prefix: &[u8]) -> Option<usize> {
    if prefix.get(..8)? != LEDGER_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(prefix.get(12..16)?.try_into().ok()?);
    usize::try_from(len).ok()
}

/// Decodes a header read from the start of a region.
pub fn decode(bytes: &[u8]) -> Result<LedgerRecord, ApplyError> {
    let bad = |why: &str| ApplyError::Ledger(why.to_string());
    let len = announced_length(bytes).ok_or_else(|| bad("no HOTPATCH header"))?;
    let format = bytes
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| bad("truncated"))?;
    if format != LEDGER_FORMAT {
        return Err(bad(&format!(
            "header format {format}, this hotpatch reads {LEDGER_FORMAT}"
        )));
    }
    let json = bytes
        .get(LEDGER_PREFIX..LEDGER_PREFIX.saturating_add(len))
        .ok_or_else(|| bad("truncated"))?;
    serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let record = LedgerRecord {
            patch_id: "p".into(),
            applied_at_unix: 5,
            sequence: 1,
            region_address: 0x1000,
            region_size: 0x3000,
            manifest: None,
            functions: vec![LedgerFunction {
                name: "f".into(),
                file: Some("lib.c".into()),
                action: FunctionAction::Replace,
                new_address: 0x2000,
                new_size: Some(0x40),
                overwritten: Some(OverwrittenRange {
                    address: 0x400,
                    original_hex: hex(&[1, 0xab]),
                }),
                via: Some(0x7f00_0000_0000),
            }],
            unwind: Some(UnwindRecord {
                eh_frame_address: 0x2400,
                eh_frame_size: 0x58,
                text_address: 0x2000,
                text_size: 0x1000,
            }),
            islands: vec![Island {
                address: 0x7f00_0000_0000,
                size: 0x1000,
            }],
        };
        let bytes = encode(&record);
        assert_eq!(&bytes[..8], LEDGER_MAGIC);
        assert_eq!(decode(&bytes).unwrap(), record);
        assert_eq!(state(&bytes), LedgerState::Prepared);
        let mut applied = bytes.clone();
        applied[16..20].copy_from_slice(&LedgerState::Applied.word().to_le_bytes());
        assert_eq!(state(&applied), LedgerState::Applied);
        assert_eq!(decode(&applied).unwrap(), record);
        assert!(decode(&bytes[..20]).is_err());
        // A record without the optional unwind field (as older versions wrote) still reads.
        let mut old = LedgerRecord {
            unwind: None,
            islands: Vec::new(),
            ..record.clone()
        };
        old.functions[0].via = None;
        let old_bytes = encode(&old);
        let text = String::from_utf8_lossy(&old_bytes);
        assert!(!text.contains("unwind") && !text.contains("islands") && !text.contains("via"));
        assert_eq!(decode(&old_bytes).unwrap(), old);
        assert!(decode(b"nothing here").is_err());
    }
}
