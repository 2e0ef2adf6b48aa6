//! A snapshot: every file of one revision, held in memory.

use std::collections::BTreeMap;
use std::path::Path;

/// All files of one revision of a code base, keyed by repository-relative path (with `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Human-readable name of the revision, e.g. `v1 (1a2b3c4d)` or a directory path.
    pub label: String,
    /// Contents of every regular file (no submodules, no symlinks).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Full commit id (40 hex digits) when the snapshot was read from git; `None` for
    /// directories and single files.
    pub commit: Option<String>,
}

impl Snapshot {
    /// Writes every file below `dir`, creating directories as needed.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for (path, bytes) in &self.files {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(target, bytes)?;
        }
        Ok(())
    }

    /// The file at `path` as UTF-8 text; `None` when absent or not valid UTF-8.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.files
            .get(path)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// Reads a plain directory tree (skipping `.git` and symlinks) into a snapshot labelled `label`.
    pub fn from_dir(dir: &Path, label: &str) -> std::io::Result<Snapshot> {
        let mut files = BTreeMap::new();
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((abs, rel)) = pending.pop() {
            for entry in std::fs::read_dir(&abs)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == ".git" {
                    continue;
                }
                let rel_path = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push((entry.path(), rel_path));
                } else if kind.is_file() {
                    files.insert(rel_path, std::fs::read(entry.path())?);
                }
            }
        }
        Ok(Snapshot {
            label: label.to_string(),
            files,
            commit: None,
        })
    }
}
