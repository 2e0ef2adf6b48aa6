//! The ledger header at the start of every patch region: what was applied and which bytes were
//! overwritten, so `list` and `revert` can read it back from the process itself.
//!
//! Layout: `b"HOTPATCH"`, format (u32 LE), JSON length (u32 LE), then the JSON of [`LedgerRecord`].

use serde::{Deserialize, Serialize};

use crate::artifact::{FunctionAction, Manifest};
use crate::error::ApplyError;

/// The 8 bytes every patch region starts with.
pub const LEDGER_MAGIC: &[u8; 8] = b"HOTPATCH";
/// Version of the ledger header format.
pub const LEDGER_FORMAT: u32 = 1;
/// Bytes before the JSON.
pub const LEDGER_PREFIX: usize = 16;

/// What one applied patch records about itself in its region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The patch id.
    pub patch_id: String,
    /// When it was applied (seconds since the Unix epoch).
    pub applied_at_unix: u64,
    /// Start of the region (where this header lives).
    pub region_address: u64,
    /// Size of the region in bytes.
    pub region_size: u64,
    /// The manifest of the patch object, if it had one.
    pub manifest: Option<Manifest>,
    /// Every function of the patch and, for redirected ones, the bytes the jump overwrote.
    pub functions: Vec<LedgerFunction>,
}

/// One function of an applied patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerFunction {
    /// Source name.
    pub name: String,
    /// Source file for `static` functions.
    pub file: Option<String>,
    /// What was done.
    pub action: FunctionAction,
    /// Address of the new code.
    pub new_address: u64,
    /// The overwritten range, when the function was redirected.
    pub overwritten: Option<OverwrittenRange>,
}

/// Bytes of the target replaced by a jump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverwrittenRange {
    /// First overwritten byte (the old function's entry).
    pub address: u64,
    /// The original bytes, hex encoded (their count is the range length).
    pub original_hex: String,
}

/// Encodes a header: prefix and JSON.
pub fn encode(record: &LedgerRecord) -> Vec<u8> {
    let json = serde_json::to_vec(record).unwrap_or_default();
    let mut out = Vec::with_capacity(LEDGER_PREFIX + json.len());
    out.extend_from_slice(LEDGER_MAGIC);
    out.extend_from_slice(&LEDGER_FORMAT.to_le_bytes());
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&json);
    out
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
    let format = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| bad("truncated"))?);
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
            region_address: 0x1000,
            region_size: 0x3000,
            manifest: None,
            functions: vec![LedgerFunction {
                name: "f".into(),
                file: Some("lib.c".into()),
                action: FunctionAction::Replace,
                new_address: 0x2000,
                overwritten: Some(OverwrittenRange {
                    address: 0x400,
                    original_hex: hex(&[1, 0xab]),
                }),
            }],
        };
        let bytes = encode(&record);
        assert_eq!(&bytes[..8], LEDGER_MAGIC);
        assert_eq!(decode(&bytes).unwrap(), record);
        assert!(decode(&bytes[..20]).is_err());
        assert!(decode(b"nothing here").is_err());
    }
}
