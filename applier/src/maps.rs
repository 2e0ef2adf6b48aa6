//! `/proc/PID/maps`: the target's address space, read without stopping it.

use crate::error::ApplyError;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// First address.
    pub(crate) start: u64,
    /// One past the last address.
    pub(crate) end: u64,
    /// Permissions, e.g. `r-xp`.
    pub(crate) perms: String,
    /// File offset of `start`.
    pub(crate) offset: u64,
    /// Path or pseudo-name (`[heap]`), if any.
    pub(crate) path: Option<String>,
}

/// Reads and parses `/proc/PID/maps`.
pub(crate) fn read_maps(pid: i32) -> Result<Vec<Mapping>, ApplyError> {
    let path = format!("/proc/{pid}/maps");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_maps(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApplyError::NoSuchProcess(pid)),
        Err(e) => Err(ApplyError::ProcRead {
            pid,
            what: path,
            detail: e.to_string(),
        }),
    }
}

/// Parses the text of a maps file, skipping lines it does not understand.
pub(crate) fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (f, r) = trimmed.split_at(end);
        rest = r;
        f
    };
    let range = field();
    let perms = field().to_string();
    let offset = u64::from_str_radix(field(), 16).ok()?;
    let _dev = field();
    let _inode = field();
    let path = rest.trim_start();
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start {
        return None;
    }
    let path = (!path.is_empty()).then(|| path.to_string());
    Some(Mapping {
        start,
        end,
        perms,
        offset,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_and_without_paths() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234    /usr/bin/my prog
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 1234    /usr/bin/my prog
55d0c1a00000-55d0c1a21000 rw-p 00000000 00:00 0       [heap]
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0
garbage
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[1].offset, 0x1000);
        assert_eq!(maps[1].path.as_deref(), Some("/usr/bin/my prog"));
        assert_eq!(maps[2].path.as_deref(), Some("[heap]"));
        assert_eq!(maps[3].path, None);
    }
}
