//! The preprocessing cache: the differ's `gcc -E` of a file, kept between runs, so that the old
//! side of a diff (the new side of the one before, or what `hotpatch prepare` made) is not
//! preprocessed again.
//!
//! The key holds what decides the output besides the files read: the compiler's identity, the
//! placed arguments and working directory (the tree's path replaced by a placeholder), the
//! file's path and contents, the paths of every file of the revision (a header added where the
//! include path would find it first changes them) and the environment the preprocessor reads.
//! The entry holds up to [`VARIANTS`] texts (a changed header gives the same key another text),
//! each with every file its line markers name and the SHA-1 of its contents: files of the
//! revision are checked against the revision, others (system headers, generated headers of a
//! build tree) against the disk. No variant matching, an unreadable file or a damaged entry is a
//! miss. A unit whose files mention `__DATE__`, `__TIME__` or `__TIMESTAMP__` (its text changes
//! with the clock), or whose text names the temporary tree, is not stored.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

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
/// [`crate::preprocess`] makes it, from `cache` when a variant's files all still match, else
/// made and stored. Counted in the cache's `preprocess_hits` and `preprocess_misses`.
pub fn preprocess_cached(
    command: &CompileCommand,
    revision: &Snapshot,
    tree: &Path,
    cache: &Cache,
) -> Result<String, BuildError> {
    let invocation = Invocation::new(command, tree)?;
    let key = key(&invocation, command, revision, tree, cache);
    let stored = key.as_ref().and_then(|key| cache.get_record(KIND, key));
    let variants = stored.as_deref().and_then(variants).unwrap_or_default();
    if key.is_some() {
        let found = variants
            .iter()
            .find(|v| v.matches(revision))
            .and_then(|v| std::str::from_utf8(v.text).ok());
        cache.count_preprocess(found.is_some());
        if let Some(text) = found {
            return Ok(text.to_string());
        }
    }
    let made = invocation.run()?;
    if let Some((key, files)) = key.zip(files(&made, revision, tree)) {
        let variant = Variant {
            files,
            text: made.text.as_bytes(),
        };
        store(cache, &key, &variant);
    }
    Ok(made.text)
}

/// Adds `variant` to the entry under `key`, newest first, keeping the [`VARIANTS`] newest.
/// Both sides of a diff may share a key and are stored at once: the entry is read again and
/// written under one lock (between processes, a variant can be lost: a miss later).
fn store(cache: &Cache, key: &str, variant: &Variant) {
    static STORING: Mutex<()> = Mutex::new(());
    let _storing = STORING.lock().unwrap_or_else(|e| e.into_inner());
    let stored = cache.get_record(KIND, key);
    let kept = stored.as_deref().and_then(variants).unwrap_or_default();
    let others = kept.iter().filter(|v| v.files != variant.files);
    let entry: Vec<u8> = std::iter::once(variant)
        .chain(others.take(VARIANTS - 1))
        .flat_map(Variant::encode)
        .collect();
    cache.put_record(KIND, key, &entry);
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

/// How many texts an entry keeps: the same file with the same flags preprocesses to another
/// text when a header changed, and both sides of a diff that changed only a header share the
/// key (each is the old side of some later diff).
const VARIANTS: usize = 4;

/// One text of an entry, with the files it was made from.
struct Variant<'a> {
    /// Every file its line markers name, with the SHA-1 of its contents: repository-relative
    /// paths for files of the revision, absolute ones for the rest.
    files: Vec<(String, String)>,
    text: &'a [u8],
}

impl Variant<'_> {
    /// The variant as stored: one line of JSON (the files and the text's length), the text.
    fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(&(&self.files, self.text.len())).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(self.text);
        out
    }

    /// Whether every file it names still has its contents: a relative path in `revision`, an
    /// absolute one on disk (an unreadable file: no).
    fn matches(&self, revision: &Snapshot) -> bool {
        self.files.iter().all(|(name, id)| {
            let contents = match Path::new(name).is_absolute() {
                true => std::fs::read(name).ok().map(Cow::Owned),
                false => revision.files.get(name).map(Cow::Borrowed),
            };
            contents.and_then(|c| content_id(&c)).as_ref() == Some(id)
        })
    }
}

/// The variants of a stored entry, newest first; `None`: not an entry of this format.
fn variants(mut entry: &[u8]) -> Option<Vec<Variant<'_>>> {
    let mut out = Vec::new();
    while !entry.is_empty() {
        let line = entry.iter().position(|&b| b == b'\n')?;
        let (files, len): (Vec<(String, String)>, usize) =
            serde_json::from_slice(&entry[..line]).ok()?;
        let rest = &entry[line + 1..];
        let text = rest.get(..len)?;
        out.push(Variant { files, text });
        entry = &rest[len..];
    }
    Some(out)
}

/// The files `made` was made from, each with the SHA-1 of its contents (see [`Variant`]);
/// `None`: not to be stored (see the module documentation).
fn files(made: &Preprocessed, revision: &Snapshot, tree: &Path) -> Option<Vec<(String, String)>> {
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
                let name = relative.to_str()?;
                (name, Cow::Borrowed(revision.files.get(name)?))
            }
            Err(_) => (path.to_str()?, Cow::Owned(std::fs::read(path).ok()?)),
        };
        let text = String::from_utf8_lossy(&contents);
        if VOLATILE.iter().any(|m| text.contains(m)) {
            return None;
        }
        files.push((name.to_string(), content_id(&contents)?));
    }
    Some(files)
}
