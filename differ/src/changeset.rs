//! The differ's output: which functions changed between two revisions.

use serde::Serialize;

use crate::{ItemChange, Refusal};

/// Everything that changed between two snapshots, function by function.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeSet {
    /// Label of the old revision.
    pub old_label: String,
    /// Label of the new revision.
    pub new_label: String,
    /// `.c` files whose bytes differ (including added and removed files), sorted.
    pub changed_files: Vec<String>,
    /// Changed, added and removed functions, ordered by file then line.
    pub functions: Vec<FunctionChange>,
    /// Things the operator should know (parse damage, new globals, ...).
    pub warnings: Vec<String>,
    /// Macros, types, variables and declarations of changed files that were added, changed or
    /// removed, ordered by file then line.
    pub items: Vec<ItemChange>,
    /// Changes the source shows cannot be applied live (DESIGN §3), in file then line order.
    pub refusals: Vec<Refusal>,
    /// Changed `.c` files the running program was not built from (see
    /// [`crate::DiffOptions::program`]), ignored.
    pub outside_program: Vec<String>,
    /// The preprocessed units the files were judged on ([`crate::DiffOptions::units`]), for
    /// the patch units to be made from the same text.
    #[serde(skip)]
    pub units: std::collections::BTreeMap<String, crate::UnitTexts>,
}

/// One function that was added, changed or removed.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionChange {
    /// The function's name.
    pub name: String,
    /// Repository-relative path of its `.c` file.
    pub file: String,
    /// How it changed.
    pub change: Change,
    /// Declared `static` (identified within its file).
    pub is_static: bool,
    /// 1-based line of the definition: new side, old side when removed.
    pub line: u32,
    /// Unified diff of the function's text, old to new.
    pub diff: String,
    /// Why it is in the change set, e.g. `changed`, ``uses macro `X` (changed in foo.h)``.
    pub reasons: Vec<String>,
}

/// How a function changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the new revision.
    Added,
    /// In both, with different tokens, or using a macro, type or inline function that changed.
    Changed,
    /// Only in the old revision (it stays in the running binary).
    Removed,
}
