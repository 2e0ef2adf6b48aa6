//! The externalizer: turns a [`ChangeSet`] into patch translation units.
//!
//! A patch unit is the new source of one changed `.c` file, edited as text so that includes,
//! macros, types and `#if` blocks stay intact: the functions to patch keep their definitions,
//! every other function becomes a declaration, and file-scope variables become `extern`
//! declarations bound to the running process's storage. Line numbers match the original file.

mod edits;
mod error;
mod plan;
mod static_locals;
mod types;
mod unit;

use hotpatch_differ::{Change, ChangeSet, Snapshot};

pub use error::ExternalizeError;
pub use static_locals::label as static_local_label;
pub use types::{
    Action, LocalFunctionProbe, Options, PatchFunction, PatchUnit, StaticLocalBinding,
};

/// Makes one patch unit per changed `.c` file that has changed or added functions.
///
/// `old` is the old revision (to tell variables that are new in `new`, which get fresh storage).
pub fn externalize(
    changes: &ChangeSet,
    old: &Snapshot,
    new: &Snapshot,
    options: &Options,
) -> Result<Vec<PatchUnit>, ExternalizeError> {
    let mut units = Vec::new();
    for file in &changes.changed_files {
        let relevant: Vec<_> = changes
            .functions
            .iter()
            .filter(|f| &f.file == file && f.change != Change::Removed)
            .collect();
        let Some(first) = relevant.first() else {
            continue;
        };
        let Some(source) = new.text(file) else {
            return Err(ExternalizeError::MissingSource {
                function: first.name.clone(),
                file: file.clone(),
                line: first.line,
            });
        };
        let old_source = old
            .files
            .get(file)
            .map(|b| String::from_utf8_lossy(b))
            .unwrap_or_default();
        units.push(unit::make_unit(
            file,
            &old_source,
            source,
            &relevant,
            options,
        )?);
    }
    Ok(units)
}
