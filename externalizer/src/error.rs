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
