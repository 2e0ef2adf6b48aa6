//! Why a patch translation unit cannot be made.

/// A refusal or failure of the externalizer; each names the function, file and line.
#[derive(Debug, thiserror::Error)]
pub enum ExternalizeError {
    /// A function to emit declares a `static` local that cannot be bound to the running storage.
    #[error("static local `{local}` in `{function}` ({file}:{line}) cannot be bound to the running process's storage: {why}; patching would reset it")]
    StaticLocal {
        /// The static local variable.
        local: String,
        /// The function declaring it.
        function: String,
        /// Its file.
        file: String,
        /// Line of the local's declaration.
        line: u32,
        /// Why it cannot be bound.
        why: String,
    },
    /// One declaration declares both an existing variable and a new one.
    #[error("{file}:{line}: the declaration of {names} mixes existing variables with new ones ({new}): existing ones must stay bound to the running process, new ones need fresh storage; split the declaration")]
    MixedDeclaration {
        /// All declared names, formatted for the operator.
        names: String,
        /// The new ones among them.
        new: String,
        /// Its file.
        file: String,
        /// Line of the declaration.
        line: u32,
    },
    /// A function the differ reports as changed has no definition in the text the patch unit
    /// is made from.
    #[error("{file}:{line}: `{function}` changed, but its definition cannot be found in the new revision's text, so it cannot be compiled into a patch")]
    MissingDefinition {
        /// The function.
        function: String,
        /// Its file.
        file: String,
        /// The line the differ reported.
        line: u32,
    },
    /// The new revision of a changed file is missing or not UTF-8 text.
    #[error("{file}: the new revision of this file is missing or not UTF-8 text, so `{function}` (line {line}) cannot be compiled into a patch")]
    MissingSource {
        /// A function of the file that needed patching.
        function: String,
        /// The file.
        file: String,
        /// The function's line.
        line: u32,
    },
}

impl ExternalizeError {
    /// The same error with its line translated by `source_line` (from a preprocessed unit's
    /// line to the source line it came from).
    pub(crate) fn at_source_lines(mut self, source_line: impl Fn(u32) -> u32) -> Self {
        match &mut self {
            ExternalizeError::StaticLocal { line, .. }
            | ExternalizeError::MixedDeclaration { line, .. } => *line = source_line(*line),
            ExternalizeError::MissingSource { .. } | ExternalizeError::MissingDefinition { .. } => {
            }
        }
        self
    }
}
