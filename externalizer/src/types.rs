//! What the externalizer produces, and how it can be steered.

use serde::Serialize;

pub use crate::static_locals::StaticLocalBinding;

/// Answers whether the running binary still has a local function: `(file, name) -> present`.
pub type LocalFunctionProbe<'a> = &'a dyn Fn(&str, &str) -> bool;

/// Knowledge about the running binary that changes what a patch must contain.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Answers whether the running binary still has a local (static) function `name` of source
    /// file `file`. `None`: assume every function is present.
    pub target_has_local_function: Option<LocalFunctionProbe<'a>>,
    /// Answers whether the running binary still has storage for a file-scope `static` variable
    /// `name` of `file`. A variable the compiler folded away (never written) gets a private copy
    /// with its initializer instead of a binding. `None`: assume every variable is present.
    pub target_has_local_variable: Option<LocalFunctionProbe<'a>>,
    /// Preprocessed units by `.c` path (the ones the differ judged the files on): a file with a
    /// new-side unit gets its patch unit made from it, so macro-made definitions, storage
    /// classes from macros and `#if` branches are exactly what the compiler saw.
    pub units: Option<&'a std::collections::BTreeMap<String, hotpatch_differ::UnitTexts>>,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field(
                "target_has_local_function",
                &self.target_has_local_function.map(|_| "<fn>"),
            )
            .field(
                "target_has_local_variable",
                &self.target_has_local_variable.map(|_| "<fn>"),
            )
            .field("units", &self.units.map(|u| u.keys().collect::<Vec<_>>()))
            .finish()
    }
}

/// One patch translation unit: the C source to compile for one changed `.c` file.
#[derive(Debug, Clone, Serialize)]
pub struct PatchUnit {
    /// Repository-relative path of the `.c` file.
    pub file: String,
    /// C source of the patch translation unit (line numbers match the original file; for a
    /// preprocessed unit, its line markers say where each line came from).
    pub source: String,
    /// `source` is preprocessed text (compile it as such: no second preprocessing).
    pub preprocessed: bool,
    /// The functions the unit defines for the patch, in source order.
    pub functions: Vec<PatchFunction>,
    /// Undefined names in this unit that mean a `static` symbol of `file` in the running binary.
    pub bindings: Vec<String>,
    /// Unchanged static functions compiled in as private copies (absent from the running binary).
    pub copied: Vec<String>,
    /// Variables new in the new revision, kept as definitions (fresh storage).
    pub new_data: Vec<String>,
    /// `static` locals of emitted functions, bound to the running process's storage.
    pub static_locals: Vec<StaticLocalBinding>,
}

/// A function the patch defines.
#[derive(Debug, Clone, Serialize)]
pub struct PatchFunction {
    /// Its name.
    pub name: String,
    /// Declared `static` (a local symbol of its file).
    pub is_static: bool,
    /// What the applier does with it.
    pub action: Action,
    /// Why it is in the patch: `changed`, `new`, or ``may inline `X` ``.
    pub reason: String,
    /// 1-based line of its definition in the new revision.
    pub line: u32,
    /// Always on some thread's stack (`main`, an endless loop): replacing it cannot take effect,
    /// so it is a candidate only until its compiled code proves unchanged; the builder refuses
    /// it when its code changed (or cannot be compared).
    pub always_active: bool,
}

/// What the applier does with a patch function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Redirect the running function to the new code.
    Replace,
    /// Load a function the running binary does not have.
    Add,
    /// The running binary has no copy of it (inlined everywhere): only its callers are patched.
    InlinedOnly,
}
