//! The preprocessing cache: the differ's `gcc -E` of a file, kept between runs, so that the old
//! side of a diff (the new side of the one before, or what `hotpatch prepare` made) is not
//! preprocessed again.
//!
//! The key holds what decides the output besides the files read: the compiler's identity, the
//! placed arguments and working directory (the tree's path replaced by a placeholder), the
//! file's path and contents, the paths of every file of the revision (a header added where the
//! include path would find it first changes them) and the environment the preprocessor reads.
//! The entry holds, beside the text, every file its line markers name with the SHA-1 of its
//! contents: files of the revision are checked against the revision, others (system headers,
//! generated headers of a build tree) against the disk. A mismatch, an unreadable file or a
//! damaged entry is a miss. A unit whose files mention `__DATE__`, `__TIME__` or
//! `__TIMESTAMP__`, or whose text names the temporary tree, is not stored.

use std::path::Path;

use hotpatch_differ::Snapshot;

use crate::cache::{cacheable, content_id, without_tree, Cache, KeyBuilder};
use crate::preprocess::{Invocation, Preprocessed};
use crate::{BuildError, CompileCommand};

/// The kind of the cache's records of preprocessed texts (names their format).
const KIND: &str = "preprocessed-1";

/// Environment variables the preprocessor reads besides the compiler's own (`GCC_*`,
/// `COMPILER_PATH`: part of its identity): include paths, the date it expands.
const ENVIRONMENT: [&str; 3] = ["CPATH", "C_INCLUDE_PATH", "SOURCE_DATE_EPOCH"];

/// Macros whose expansion changes with the clock or a file's time: a text using one is not
/// stored.
const VOLATILE: [&str; 3] = ["__DATE__", "__TIME__", "__TIMESTAMP__"];

/// The preprocessed text of `command`'s file of `revision` (written to `tree`), as
/// [`crate::preprocess`] makes it, from `cache` when an entry's files all still match, else
/// made and stored. Counted in the cache's `preprocess_hits` and `preprocess_misses`.
pub fn preprocess_cached(
    command: &CompileCommand,
    revision: &Snapshot,
    tree: &Path,
    cache: &Cache,
) -> Result<String, BuildError> {
    let invocation = Invocation::new(command, tree)?;
    let key = key(&invocation, command, revision, tree, cache);
    if let Some(key) = &key {
        let found = cache
            .get_record(KIND, key)
            .and_then(|entry| verified(&entry, revision));
        cache.count_preprocess(found.is_some());
        if let Some(text) = found {
            return Ok(text);
        }
    }
    let made = invocation.run()?;
    if let Some((key, entry)) = key.zip(entry(&made, revision, tree)) {
        cache.put_record(KIND, &key, &entry);
    }
    Ok(made.text)
}

/// The key of `invocation` (hex); `None`: the cache is off, the arguments read files the text
/// does not show, or the revision does not have the file.
fn key(
    invocation: &Invocation,
    command: &CompileCommand,
    revision: &Snapshot,
    tree: &Path,
    cache: &Cache,
) -> Option<String> {
    let placed = &invocation.placed;
    if !cache.enabled() || !cacheable(&placed.arguments) {
        return None;
    }
    let contents = revision.files.get(&command.file)?;
    let paths: Vec<&str> = revision.files.keys().map(String::as_str).collect();
    let environment: Vec<String> = ENVIRONMENT
        .iter()
        .map(|name| format!("{name}={}", std::env::var(name).unwrap_or_default()))
        .collect();
    KeyBuilder::new(KIND)
        .compiler(invocation.compiler.path())
        .field(
            "cwd",
            without_tree(&placed.cwd.to_string_lossy(), tree).as_bytes(),
        )
        .field(
            "arguments",
            without_tree(&placed.arguments.join("\0"), tree).as_bytes(),
        )
        .field("source", command.file.as_bytes())
        .field("contents", contents)
        .field("files", paths.join("\0").as_bytes())
        .field("environment", environment.join("\0").as_bytes())
        .finish()
        .map(|key| key.hex())
}

/// The entry for `made`: one line of JSON, the files its markers name with the SHA-1 of each
/// (repository-relative paths for files of `revision`, written under `tree`; absolute ones for
/// the rest), then the text. `None`: not to be stored (see the module documentation).
fn entry(made: &Preprocessed, revision: &Snapshot, tree: &Path) -> Option<Vec<u8>> {
    if made
        .text
        .contains(tree.to_string_lossy().trim_end_matches('/'))
    {
        return None;
    }
    let mut files = Vec::new();
    for path in made.named.as_ref()? {
        let (name, contents) = match path.strip_prefix(tree) {
            Ok(relative) => {
                let name = relative.to_str()?.to_string();
                let contents = revision.files.get(&name)?.clone();
                (name, contents)
            }
            Err(_) => (path.to_str()?.to_string(), std::fs::read(path).ok()?),
        };
        let text = String::from_utf8_lossy(&contents);
        if VOLATILE.iter().any(|m| text.contains(m)) {
            return None;
        }
        files.push((name, content_id(&contents)?));
    }
    let mut entry = serde_json::to_vec(&files).ok()?;
    entry.push(b'\n');
    entry.extend_from_slice(made.text.as_bytes());
    Some(entry)
}

/// The text of `entry` when every file it names still has the contents it had: a relative
/// path in `revision`, an absolute one on disk.
fn verified(entry: &[u8], revision: &Snapshot) -> Option<String> {
    let line = entry.iter().position(|&b| b == b'\n')?;
    let files: Vec<(String, String)> = serde_json::from_slice(&entry[..line]).ok()?;
    for (name, id) in &files {
        let contents = match Path::new(name).is_absolute() {
            true => std::borrow::Cow::Owned(std::fs::read(name).ok()?),
            false => std::borrow::Cow::Borrowed(revision.files.get(name)?),
        };
        if content_id(&contents)? != *id {
            return None;
        }
    }
    String::from_utf8(entry[line + 1..].to_vec()).ok()
}
