//! The object cache: the results of the compiles a patch needs besides the patch unit itself
//! (the old and new files compiled with the original flags, for pre-images, post-images and the
//! object-level confirmation, and the switches the compiler records), kept between runs so that
//! the next diff whose old side is this diff's new side does not compile it again. Records of
//! other kinds ride along ([`Cache::get_record`]): a binary's inline map, the differ's
//! preprocessed texts (see `preprocessed`).
//!
//! Entries are content-addressed: the key is a SHA-1 over everything the compiler's output
//! depends on — the preprocessed text of the file (what the compiler really reads, headers
//! included), the exact arguments, the directory and source path (with the temporary tree's
//! path replaced by a placeholder: `-ffile-prefix-map` takes it out of the object too), the
//! compiler's identity (its resolved path, size and modification time) and the `GCC_*`
//! environment. Arguments that make the compiler read files the preprocessed text does not
//! show (profiles, plugins, response files, spec files) are never cached.
//!
//! Under `$XDG_CACHE_HOME/hotpatch` (else `~/.cache/hotpatch`); `HOTPATCH_CACHE=off` or
//! `--no-cache` turns it off, `HOTPATCH_CACHE_SIZE` (bytes, or with `K`, `M`, `G`) caps it
//! (default [`DEFAULT_CAP`]), checked when a run first uses the cache and whenever its own writes
//! pass the cap; the least recently used entries go first. Safe under concurrent
//! runs: an entry is written to a temporary file and renamed into place, and a reader checks
//! the entry's own SHA-1 of its contents, so a torn or corrupt entry is a miss (and is replaced).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use hotpatch_differ::UnitTexts;
use serde::Serialize;

use crate::preimage::Side;
use crate::BuildError;

/// The cap on the cache's size when `HOTPATCH_CACHE_SIZE` does not set one: 512 MiB.
pub const DEFAULT_CAP: u64 = 512 << 20;

/// What a compile's entry starts with: the format, then the SHA-1 of the rest.
const MAGIC: &[u8; 16] = b"hotpatch-cache1\n";

/// What a record's entry starts with ([`Cache::get_record`]): the format, then the CRC-32 of
/// the rest (4 bytes, then 16 zero bytes: the header is as long as a compile's).
const MAGIC_CRC: &[u8; 16] = b"hotpatch-cache2\n";

/// How an entry's contents are checked when it is read.
#[derive(Clone, Copy)]
enum Check {
    /// The SHA-1 of the contents (compiles: small entries, looked up once per run).
    Sha1,
    /// Their CRC-32 (large records that must load in a few milliseconds: a SHA-1 of megabytes
    /// takes ten). Entries are renamed into place whole, so the check is against damage, not
    /// torn writes.
    Crc32,
}

impl Check {
    /// The entry's header for `contents`.
    fn header(self, contents: &[u8]) -> Option<Vec<u8>> {
        let mut header = Vec::with_capacity(MAGIC.len() + 20);
        match self {
            Check::Sha1 => {
                header.extend_from_slice(MAGIC);
                header.extend_from_slice(&sha1(&[contents])?.0);
            }
            Check::Crc32 => {
                header.extend_from_slice(MAGIC_CRC);
                header.extend_from_slice(&crc32fast::hash(contents).to_le_bytes());
                header.extend_from_slice(&[0; 16]);
            }
        }
        Some(header)
    }

    /// Whether `entry` is a whole entry of this kind.
    fn intact(self, entry: &[u8]) -> bool {
        let payload = MAGIC.len() + 20;
        entry.len() >= payload
            && self
                .header(&entry[payload..])
                .is_some_and(|header| entry[..payload] == header[..])
    }
}

/// Temporary files of writers that died are removed after this long.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// A handle on the object cache of one run (cheap to clone; a disabled cache stores nothing).
#[derive(Clone, Default)]
pub struct Cache {
    store: Option<Arc<Store>>,
    counts: Arc<Counters>,
    units: Arc<BTreeMap<String, UnitTexts>>,
    /// Preprocessed texts made here for files the differ did not preprocess, by file and side:
    /// each made once however many compiles of it need a key.
    made: Arc<Mutex<HashMap<(String, bool), Made>>>,
    /// Compiles of this run by key, so that one started ahead (see `compile_new_side`) is
    /// waited for rather than run again.
    compiling: Arc<Mutex<HashMap<Key, Compiling>>>,
}

/// A compile's object or error, made once by the first to ask.
type Compiling = Arc<OnceLock<Result<Vec<u8>, BuildError>>>;

/// A preprocessed text made once, on first use (`None`: the file did not preprocess).
type Made = Arc<OnceLock<Option<String>>>;

/// Where the entries are and how much they may take.
struct Store {
    dir: PathBuf,
    cap: u64,
    /// Set once the entries were brought under the cap at the first lookup (the cap may have
    /// been lowered since the last run).
    checked: std::sync::Once,
    /// The entries' total size as last counted, plus what this run stored since: the entries
    /// are listed again only when it passes the cap.
    total: AtomicU64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicUsize,
    misses: AtomicUsize,
    preprocess_hits: AtomicUsize,
    preprocess_misses: AtomicUsize,
}

/// Lookups of one run, reported in `--json` `timings.cache`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheCounts {
    /// Results found in the cache (a compile saved each).
    pub hits: usize,
    /// Results not found (compiled, then stored).
    pub misses: usize,
    /// Preprocessed texts for the differ found with every file they read unchanged (a
    /// `gcc -E` saved each; see `preprocess_cached`).
    pub preprocess_hits: usize,
    /// Preprocessed texts not found, or found with a file changed (preprocessed, then stored).
    pub preprocess_misses: usize,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.dir())
            .field("counts", &self.counts())
            .finish()
    }
}

impl Cache {
    /// The cache the environment asks for: off when `disabled` (`--no-cache`) or
    /// `HOTPATCH_CACHE` is `off`, `0`, `no` or `false`, or when neither `XDG_CACHE_HOME` nor
    /// `HOME` names a directory; capped by `HOTPATCH_CACHE_SIZE`. A size that is not one is an
    /// error, not silently the default.
    pub fn from_env(disabled: bool) -> Result<Cache, BuildError> {
        let off = std::env::var("HOTPATCH_CACHE")
            .is_ok_and(|v| matches!(v.trim(), "off" | "0" | "no" | "false"));
        let cap = match std::env::var("HOTPATCH_CACHE_SIZE") {
            Ok(text) => parse_size(&text).ok_or_else(|| {
                BuildError::Config(format!(
                    "HOTPATCH_CACHE_SIZE={text}: not a size (bytes, or a number with K, M or G, e.g. 512M)"
                ))
            })?,
            Err(_) => DEFAULT_CAP,
        };
        if disabled || off {
            return Ok(Cache::default());
        }
        let absolute = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let dir = absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|h| h.join(".cache")));
        Ok(match dir {
            Some(dir) => Cache::at(&dir.join("hotpatch"), cap),
            None => Cache::default(),
        })
    }

    /// A cache in `dir`, holding at most `cap` bytes.
    pub fn at(dir: &Path, cap: u64) -> Cache {
        Cache {
            store: Some(Arc::new(Store {
                dir: dir.to_path_buf(),
                cap,
                checked: std::sync::Once::new(),
                total: AtomicU64::new(0),
            })),
            ..Cache::default()
        }
    }

    /// The same cache, knowing the preprocessed units of both revisions (the differ's): the
    /// keys of their files' compiles, so they need not be preprocessed again.
    pub fn with_units(mut self, units: &BTreeMap<String, UnitTexts>) -> Cache {
        self.units = Arc::new(units.clone());
        self
    }

    /// The directory of the entries (`None`: the cache is off).
    pub fn dir(&self) -> Option<&Path> {
        self.store.as_ref().map(|s| s.dir.as_path())
    }

    /// The lookups so far.
    pub fn counts(&self) -> CacheCounts {
        let count = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
        CacheCounts {
            hits: count(&self.counts.hits),
            misses: count(&self.counts.misses),
            preprocess_hits: count(&self.counts.preprocess_hits),
            preprocess_misses: count(&self.counts.preprocess_misses),
        }
    }

    /// Counts one lookup of a preprocessed text: a hit is an entry whose files all matched.
    pub(crate) fn count_preprocess(&self, hit: bool) {
        let counter = match hit {
            true => &self.counts.preprocess_hits,
            false => &self.counts.preprocess_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `with` applied to the preprocessed text of the `side` revision of `file`: the differ's,
    /// else the one `make` makes (once per file and side in a run). `None`: no text.
    pub(crate) fn with_unit_text<R>(
        &self,
        (file, side): (&str, Side),
        make: impl FnOnce() -> Option<String>,
        with: impl FnOnce(&str) -> R,
    ) -> Option<R> {
        let known = self.units.get(file).and_then(|texts| match side {
            Side::Old => texts.old.as_deref(),
            Side::New => texts.new.as_deref(),
        });
        if let Some(text) = known {
            return Some(with(text));
        }
        let slot = {
            let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
            made.entry((file.to_string(), side == Side::New))
                .or_default()
                .clone()
        };
        slot.get_or_init(make).as_deref().map(with)
    }

    /// The object under `key`: made by `compile` (which looks in the cache first) by the first
    /// caller of this run, waited for by the others, who get its result (or error) too.
    pub(crate) fn compile_once(
        &self,
        key: &Key,
        compile: impl FnOnce() -> Result<Vec<u8>, BuildError>,
    ) -> Result<Vec<u8>, BuildError> {
        let slot = {
            let mut compiling = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
            compiling.entry(*key).or_default().clone()
        };
        slot.get_or_init(compile).clone()
    }

    /// Whether entries are stored at all.
    pub(crate) fn enabled(&self) -> bool {
        self.store.is_some()
    }

    /// The entry under `key`, counted as a hit or a miss. A corrupt entry is a miss (it is
    /// replaced when the result is stored).
    pub(crate) fn get(&self, key: &Key) -> Option<Vec<u8>> {
        let store = self.store.as_ref()?;
        store.checked.call_once(|| store.evict());
        let found = store.read(key, Check::Sha1);
        let counter = match found {
            Some(_) => &self.counts.hits,
            None => &self.counts.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `bytes` under `key`, then evicts the least recently used entries beyond the cap.
    /// A cache that cannot be written is no error: the run goes on without it.
    pub(crate) fn put(&self, key: &Key, bytes: &[u8]) {
        if let Some(store) = &self.store {
            store.keep(key, bytes, Check::Sha1);
        }
    }
}

impl Cache {
    /// The record of `kind` about `id` an earlier run stored ([`Cache::put_record`]), e.g. the
    /// inline map read from the DWARF of the binary with build id `id`; `None` when there is
    /// none, it is damaged, or the cache is off. Records are not counted in [`Cache::counts`]
    /// (those count compiles).
    pub fn get_record(&self, kind: &str, id: &str) -> Option<Vec<u8>> {
        let store = self.store.as_ref()?;
        store.checked.call_once(|| store.evict());
        store.read(&record_key(kind, id)?, Check::Crc32)
    }

    /// Keeps `bytes` as the record of `kind` about `id` (`kind` names the record's format, so a
    /// new format is a new kind), evicted like the compiles; a cache that cannot be written is
    /// no error.
    pub fn put_record(&self, kind: &str, id: &str, bytes: &[u8]) {
        if let (Some(store), Some(key)) = (&self.store, record_key(kind, id)) {
            store.keep(&key, bytes, Check::Crc32);
        }
    }
}

/// The key of the record of `kind` about `id`.
fn record_key(kind: &str, id: &str) -> Option<Key> {
    KeyBuilder::new(kind).field("id", id.as_bytes()).finish()
}

impl Store {
    /// Writes the entry, then evicts the least recently used entries beyond the cap (a write
    /// that fails is no error: the run goes on without it).
    fn keep(&self, key: &Key, bytes: &[u8], check: Check) {
        self.checked.call_once(|| self.evict());
        if self.write(key, bytes, check).is_ok() {
            let stored = (MAGIC.len() + 20 + bytes.len()) as u64;
            if self.total.fetch_add(stored, Ordering::Relaxed) + stored > self.cap {
                self.evict();
            }
        }
    }

    fn objects(&self) -> PathBuf {
        self.dir.join("objects")
    }

    fn path(&self, key: &Key) -> PathBuf {
        let hex = key.hex();
        self.objects().join(&hex[..2]).join(&hex[2..])
    }

    fn read(&self, key: &Key, check: Check) -> Option<Vec<u8>> {
        let path = self.path(key);
        let mut bytes = std::fs::read(&path).ok()?;
        let payload = MAGIC.len() + 20;
        if !check.intact(&bytes) {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // Recently used: evicted last.
        let _ = std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        Some(bytes.split_off(payload))
    }

    fn write(&self, key: &Key, bytes: &[u8], check: Check) -> std::io::Result<()> {
        let header = check
            .header(bytes)
            .ok_or_else(|| std::io::Error::other("SHA-1 collision"))?;
        let path = self.path(key);
        let parent = path.parent().unwrap_or(&self.dir);
        let temporary = self.dir.join("tmp");
        std::fs::create_dir_all(parent)?;
        std::fs::create_dir_all(&temporary)?;
        let mut file = tempfile::NamedTempFile::new_in(&temporary)?;
        file.write_all(&header)?;
        file.write_all(bytes)?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Removes the least recently used entries until the rest fit under the cap, and
    /// temporary files writers left behind long ago.
    fn evict(&self) {
        let now = SystemTime::now();
        if let Ok(temporaries) = std::fs::read_dir(self.dir.join("tmp")) {
            for entry in temporaries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMPORARY);
                if old {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for shard in std::fs::read_dir(self.objects())
            .into_iter()
            .flatten()
            .flatten()
        {
            for entry in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(meta) = entry.metadata() {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    entries.push((used, meta.len(), entry.path()));
                }
            }
        }
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, size, path) in entries {
            if total <= self.cap {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
        self.total.store(total, Ordering::Relaxed);
    }
}

/// `512M`, `2G`, `64K` or plain bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        _ => (text, 0),
    };
    number.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A cache key: the SHA-1 of everything a result depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key([u8; 20]);

impl Key {
    /// The key in hexadecimal (also a record's id, see [`Cache::get_record`]).
    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The SHA-1 of `parts` one after the other (`None` on a detected collision attack).
fn sha1(parts: &[&[u8]]) -> Option<Key> {
    let mut hasher = sha1dc::Hasher::default();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().ok().map(|d| Key(d.into()))
}

/// The SHA-1 of `contents` in hexadecimal, to tell whether a file is still what it was
/// (`None` on a detected collision attack).
pub(crate) fn content_id(contents: &[u8]) -> Option<String> {
    sha1(&[contents]).map(|id| id.hex())
}

/// Builds a [`Key`] from named fields, each length-prefixed so no two field lists collide.
pub(crate) struct KeyBuilder {
    fields: Vec<Vec<u8>>,
}

impl KeyBuilder {
    /// A key for results of `kind` (which includes the format of the result).
    pub(crate) fn new(kind: &str) -> KeyBuilder {
        let mut builder = KeyBuilder { fields: Vec::new() };
        builder.field("kind", kind.as_bytes());
        builder
    }

    /// Adds the field `name` with the value `value`.
    pub(crate) fn field(&mut self, name: &str, value: &[u8]) -> &mut KeyBuilder {
        let mut field = Vec::with_capacity(name.len() + value.len() + 16);
        field.extend_from_slice(&(name.len() as u64).to_le_bytes());
        field.extend_from_slice(name.as_bytes());
        field.extend_from_slice(&(value.len() as u64).to_le_bytes());
        self.fields.push(field);
        self.fields.push(value.to_vec());
        self
    }

    /// Adds the compiler's identity: its resolved path, size and modification time, and the
    /// `GCC_*` and `COMPILER_PATH` environment it runs with.
    pub(crate) fn compiler(&mut self, compiler: &Path) -> &mut KeyBuilder {
        let resolved = crate::compile::resolve(&compiler.to_string_lossy(), Path::new(""))
            .and_then(|p| std::fs::canonicalize(p).ok())
            .unwrap_or_else(|| compiler.to_path_buf());
        let meta = std::fs::metadata(&resolved).ok();
        let modified = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let identity = format!(
            "{}\0{}\0{modified}",
            resolved.display(),
            meta.map_or(0, |m| m.len())
        );
        self.field("compiler", identity.as_bytes());
        let mut environment: Vec<String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("GCC_") || k == "COMPILER_PATH")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        environment.sort();
        self.field("environment", environment.join("\0").as_bytes())
    }

    /// The key (`None` on a detected SHA-1 collision attack: then nothing is cached).
    pub(crate) fn finish(&self) -> Option<Key> {
        let parts: Vec<&[u8]> = self.fields.iter().map(Vec::as_slice).collect();
        sha1(&parts)
    }
}

/// Whether a compile with `arguments` depends only on what a key holds: not when an argument
/// makes the compiler read a file the preprocessed text does not show (a profile, a plugin, a
/// response or spec file, another compiler directory), or puts the output's own path into the
/// code (coverage counters name their `.gcda` file after it).
pub(crate) fn cacheable(arguments: &[String]) -> bool {
    const UNCACHEABLE: [&str; 11] = [
        "-fprofile-use",
        "-fauto-profile",
        "-fplugin",
        "-specs",
        "--specs",
        "-B",
        "-fprofile-sample-use",
        "-wrapper",
        "-fprofile-arcs",
        "-ftest-coverage",
        "--coverage",
    ];
    !arguments
        .iter()
        .any(|a| a.starts_with('@') || UNCACHEABLE.iter().any(|r| a.starts_with(r)))
}

/// `text` with the path of the temporary tree `tree` replaced by a placeholder, for keys that
/// must not depend on where the revision was materialised.
pub(crate) fn without_tree(text: &str, tree: &Path) -> String {
    let tree = tree.to_string_lossy();
    let tree = tree.trim_end_matches('/');
    if tree.is_empty() {
        return text.to_string();
    }
    text.replace(tree, "\u{1}TREE")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        KeyBuilder::new("test")
            .field("text", text.as_bytes())
            .finish()
            .unwrap()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size(" 4096 "), Some(4096));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        for bad in ["", "M", "x", "-1", "1.5G", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn fields_are_delimited() {
        let a = KeyBuilder::new("k").field("a", b"bc").finish();
        let b = KeyBuilder::new("k").field("ab", b"c").finish();
        assert_ne!(a, b);
        assert_eq!(key("x"), key("x"));
    }

    #[test]
    fn hit_miss_corruption_and_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 10_000);
        assert_eq!(cache.get(&key("a")), None);
        cache.put(&key("a"), b"object a");
        assert_eq!(cache.get(&key("a")).as_deref(), Some(&b"object a"[..]));
        assert_eq!((cache.counts().hits, cache.counts().misses), (1, 1));
        // A flipped byte: a miss, and the entry is gone until stored again.
        let path = cache.store.as_ref().unwrap().path(&key("a"));
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get(&key("a")), None);
        assert!(!path.exists());
        // A truncated entry too.
        cache.put(&key("a"), b"object a");
        std::fs::write(&path, &MAGIC[..4]).unwrap();
        assert_eq!(cache.get(&key("a")), None);
        // Beyond the cap, the least recently used entry goes first.
        let big = vec![7u8; 4_000];
        cache.put(&key("1"), &big);
        cache.put(&key("2"), &big);
        let old = SystemTime::now() - Duration::from_secs(100);
        let first = cache.store.as_ref().unwrap().path(&key("1"));
        std::fs::File::options()
            .write(true)
            .open(&first)
            .unwrap()
            .set_modified(old)
            .unwrap();
        cache.put(&key("3"), &big);
        assert!(!first.exists());
        assert!(cache.get(&key("2")).is_some() && cache.get(&key("3")).is_some());
    }

    #[test]
    fn a_compile_runs_once_per_key_in_a_run() {
        let cache = Cache::default();
        let calls = AtomicUsize::new(0);
        let compile = |result: Result<Vec<u8>, BuildError>| {
            calls.fetch_add(1, Ordering::Relaxed);
            result
        };
        let first = cache.compile_once(&key("a"), || compile(Ok(b"object".to_vec())));
        let again = cache.compile_once(&key("a"), || compile(Ok(b"other".to_vec())));
        assert_eq!(
            (first.unwrap(), again.unwrap()),
            (b"object".to_vec(), b"object".to_vec())
        );
        // A failure is shared too: its caller and the waiters get the same error.
        let failed = || compile(Err(BuildError::Object("no".to_string())));
        assert!(cache.compile_once(&key("b"), failed).is_err());
        assert!(cache
            .compile_once(&key("b"), || compile(Ok(Vec::new())))
            .is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_cache_that_cannot_be_written_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let cache = Cache::at(&file, DEFAULT_CAP);
        cache.put(&key("a"), b"x");
        assert_eq!(cache.get(&key("a")), None);
    }

    #[test]
    fn file_reading_arguments_are_not_cacheable() {
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(cacheable(&words("-O2 -g -Iinclude -DX=1")));
        assert!(!cacheable(&words("-O2 -fprofile-use=prof")));
        assert!(!cacheable(&words("-O2 @args")));
        assert!(!cacheable(&words("-fplugin=x.so")));
        assert!(!cacheable(&words("-O2 --coverage")));
    }

    #[test]
    fn the_tree_is_replaced() {
        let tree = Path::new("/tmp/hotpatch-build-x/");
        assert_eq!(
            without_tree(
                "-I/tmp/hotpatch-build-x/inc -ffile-prefix-map=/tmp/hotpatch-build-x=.",
                tree
            ),
            "-I\u{1}TREE/inc -ffile-prefix-map=\u{1}TREE=."
        );
    }
}
