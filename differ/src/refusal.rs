//! Refusals: changes the source shows cannot be applied to a running process (DESIGN §3).

use serde::Serialize;

/// Which safety rule a refusal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// A struct, union, enum or typedef that existing data or unpatched code uses changed layout.
    TypeLayout,
    /// An existing global or file-scope static changed type.
    GlobalType,
    /// An existing global, file-scope static or const table changed initializer.
    GlobalInitializer,
    /// A static local of a patched function was added, removed or changed.
    StaticLocal,
    /// A function that unpatched code may call changed signature.
    Signature,
    /// A function that is always active (`main`, an endless loop) changed: a prediction.
    AlwaysActive,
    /// A type the patch uses is laid out differently in the running binary's debug information
    /// (the patch's flags are not the build's: a `-D`, a `-m` switch, packing).
    BinaryTypeLayout,
    /// A replaced function is not where the old revision has it, by the running binary's debug
    /// information (the binary was not built from that revision).
    SourceLocation,
    /// An unpatched caller keeps a register live across its call of a replaced function that
    /// the replacement may write, and no save/restore thunk can keep it.
    RegisterContract,
}

impl RefusalKind {
    /// A short operator-facing name of the rule, e.g. `struct layout changed`.
    pub fn title(self) -> &'static str {
        match self {
            RefusalKind::TypeLayout => "type layout changed",
            RefusalKind::GlobalType => "global type changed",
            RefusalKind::GlobalInitializer => "global initializer changed",
            RefusalKind::StaticLocal => "static local changed",
            RefusalKind::Signature => "signature changed",
            RefusalKind::AlwaysActive => "function always active",
            RefusalKind::BinaryTypeLayout => "type laid out otherwise in the running binary",
            RefusalKind::SourceLocation => "function elsewhere in the running binary",
            RefusalKind::RegisterContract => "register contract of an unpatched caller",
        }
    }
}

/// One change that cannot be applied live, with where it is and why, in operator words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The item, as `--force` names it: `struct conn`, `limit`, `count::calls`, `main`.
    pub item: String,
    /// The rule.
    pub kind: RefusalKind,
    /// Repository-relative path of the file that holds the item (new side; old when removed).
    pub file: String,
    /// 1-based line of the item in that file.
    pub line: u32,
    /// Why, in plain words.
    pub reason: String,
    /// The source lines of the item starting at `line` (a few at most).
    pub snippet: String,
}

/// At most `max_lines` lines of `source` starting at 1-based `line`, with `…` when cut.
pub fn snippet(source: &str, line: u32, max_lines: usize) -> String {
    let start = usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX);
    let lines: Vec<&str> = source.lines().skip(start).take(max_lines + 1).collect();
    let mut out = lines
        .iter()
        .take(max_lines)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    if lines.len() > max_lines {
        out.push_str("\n…");
    }
    out
}

/// The snippet of the item whose text is `text` starting at 1-based `line`: its own lines, cut
/// after `max_lines`.
pub fn item_snippet(text: &str, max_lines: usize) -> String {
    snippet(text, 1, max_lines)
}
