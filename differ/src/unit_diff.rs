//! Comparing a `.c` file on its preprocessed units: the items the compiler sees (macros expanded,
//! `#if` decided, storage classes from macros visible), each reported at its place in the source.

use std::collections::{BTreeMap, HashSet};

use crate::compare::{FileDiff, Output, Side, Written};
use crate::defs::{changed_defs, close_over};
use crate::index::Index;
use crate::parse::{parse_all, Job, Pair};
use crate::rules::FileRules;
use crate::unit::Unit;
use crate::{DiffOptions, Snapshot};

/// Both revisions of one file's unit, read and indexed.
pub(crate) struct UnitPair {
    old: Option<Unit>,
    new: Option<Unit>,
    /// The units' indexes (over their blanked texts).
    pub parsed: Pair,
}

/// Reads and indexes the units the caller gave for the analysed files (all on every core).
pub(crate) fn read_units<'p>(
    analysed: &BTreeMap<&'p str, impl Sized>,
    options: &DiffOptions,
) -> BTreeMap<&'p str, UnitPair> {
    let read: Vec<(&str, Option<Unit>, Option<Unit>)> = analysed
        .keys()
        .filter_map(|path| {
            let texts = options.units.get(*path)?;
            Some((
                *path,
                texts.old.as_deref().map(Unit::read),
                texts.new.as_deref().map(Unit::read),
            ))
        })
        .collect();
    let jobs: Vec<Job<'_>> = read
        .iter()
        .map(|(path, old, new)| Job {
            path,
            old: old.as_ref().map(|u| u.text.as_bytes()),
            new: new.as_ref().map(|u| u.text.as_bytes()),
        })
        .collect();
    let mut parsed = parse_all(&jobs);
    read.into_iter()
        .map(|(path, old, new)| {
            let pair = parsed.remove(path).unwrap_or_default();
            (
                path,
                UnitPair {
                    old,
                    new,
                    parsed: pair,
                },
            )
        })
        .collect()
}

impl UnitPair {
    /// Compares the functions `path` defines in its units and applies the rules to every type
    /// and variable of the repository's files the units hold; `raw` is the file's old and new
    /// source as written (for the per-function diffs), `written` its new source's index with the
    /// definitions that changed (to name them in reasons).
    pub fn compare(
        &self,
        path: &str,
        raw: (&str, &str),
        written: Written<'_>,
        (old, new): (&Snapshot, &Snapshot),
        used_names: &HashSet<String>,
        out: &mut Output,
    ) {
        let empty = Index::default();
        let old_src = self.parsed.old.as_ref().map_or("", |p| p.src.as_str());
        let new_src = self.parsed.new.as_ref().map_or("", |p| p.src.as_str());
        let pieces = |unit: &Option<Unit>, side: &Option<std::rc::Rc<crate::parse::Parsed>>| match (
            unit, side,
        ) {
            (Some(unit), Some(parsed)) => unit.by_file(&parsed.index),
            _ => BTreeMap::new(),
        };
        let (before, after) = (
            pieces(&self.old, &self.parsed.old),
            pieces(&self.new, &self.parsed.new),
        );
        // Definitions that changed anywhere in the unit, named by the file they are in.
        let mut dirty = BTreeMap::new();
        let is_repo_file = |f: &str| old.files.contains_key(f) || new.files.contains_key(f);
        let files: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        for file in files {
            let (b, a) = (
                before.get(file).unwrap_or(&empty),
                after.get(file).unwrap_or(&empty),
            );
            dirty.extend(changed_defs(file, b, a));
            if !is_repo_file(file) || self.old.is_none() || self.new.is_none() {
                continue;
            }
            let rules = FileRules {
                path: file,
                old_src,
                new_src,
                used_names,
            };
            rules.types(b, a, &mut out.refusals, &mut out.warnings);
            rules.globals(b, a, &mut out.refusals, &mut out.warnings);
        }
        if let Some(parsed) = &self.parsed.new {
            close_over(&mut dirty, &[&parsed.index]);
        }
        let mut file = FileDiff {
            path,
            old: Side {
                src: old_src,
                index: before.get(path).unwrap_or(&empty),
                unit: self.old.as_ref(),
                raw: raw.0,
            },
            new: Side {
                src: new_src,
                index: after.get(path).unwrap_or(&empty),
                unit: self.new.as_ref(),
                raw: raw.1,
            },
            dirty: &dirty,
            written: Some(written),
            damaged: Vec::new(),
            out,
            used_names,
        };
        file.compare();
    }
}
