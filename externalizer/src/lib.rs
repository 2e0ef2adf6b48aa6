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
        let preprocessed = options
            .units
            .and_then(|u| u.get(file))
            .and_then(|t| Some((t.old.as_deref().unwrap_or(""), t.new.as_deref()?)));
        let text = match preprocessed {
            Some((old_unit, new_unit)) => Some(unit::Text::preprocessed(old_unit, new_unit)),
            None => new.text(file).map(|source| {
                let old_source = old
                    .files
                    .get(file)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                unit::Text::source(old_source, source)
            }),
        };
        let Some(text) = text else {
            return Err(ExternalizeError::MissingSource {
                function: first.name.clone(),
                file: file.clone(),
                line: first.line,
            });
        };
        units.push(unit::make_unit(file, &text, &relevant, options)?);
    }
    Ok(units)
}
