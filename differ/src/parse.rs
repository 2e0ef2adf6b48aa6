//! Parsing the files a diff needs, both revisions at once, on every core.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::index::Index;

/// One revision of one file: its text (lossily decoded) and its item index.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The source text.
    pub src: String,
    /// Its items.
    pub index: Index,
}

/// The old and new version of a file; the same `Rc` on both sides when the file did not change.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pair {
    /// The old revision, if the file exists there.
    pub old: Option<Rc<Parsed>>,
    /// The new revision, if the file exists there.
    pub new: Option<Rc<Parsed>>,
}

/// What to parse: a path with its old and new bytes (equal bytes are parsed once).
pub(crate) struct Job<'a> {
    /// Repository-relative path.
    pub path: &'a str,
    /// Old bytes, if any.
    pub old: Option<&'a [u8]>,
    /// New bytes, if any.
    pub new: Option<&'a [u8]>,
}

/// One unit of parsing work: a side of a job, or both sides of a job at once.
#[derive(Clone, Copy)]
enum Task {
    /// One side: the job's number and whether it is the new side.
    Side(usize, bool),
    /// Both sides, the new one re-parsed incrementally from the old tree.
    Both(usize),
}

/// Parses every job's sides, spreading the work over the available cores (largest first). A file
/// present on both sides with different bytes is parsed once and re-parsed incrementally.
pub(crate) fn parse_all(jobs: &[Job<'_>]) -> BTreeMap<String, Pair> {
    let mut tasks: Vec<(usize, Task)> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match (job.old, job.new) {
            (Some(old), Some(new)) if old != new => tasks.push((old.len(), Task::Both(i))),
            (old, new) => {
                if let Some(old) = old {
                    tasks.push((old.len(), Task::Side(i, false)));
                }
                if let Some(new) = new.filter(|n| old != Some(n)) {
                    tasks.push((new.len(), Task::Side(i, true)));
                }
            }
        }
    }
    tasks.sort_by_key(|t| std::cmp::Reverse(t.0));
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, tasks.len().max(1));
    // Greedy balance by size.
    let mut buckets: Vec<(usize, Vec<Task>)> = vec![(0, Vec::new()); workers];
    for (size, task) in tasks {
        if let Some(lightest) = buckets.iter_mut().min_by_key(|b| b.0) {
            lightest.0 += size;
            lightest.1.push(task);
        }
    }
    let text = |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap_or(&[])).into_owned();
    let run = |bucket: &[Task]| -> Vec<(usize, bool, Parsed)> {
        let mut out = Vec::new();
        for task in bucket {
            match *task {
                Task::Side(i, is_new) => {
                    let job = &jobs[i];
                    let src = text(if is_new { job.new } else { job.old });
                    let index = Index::parse(&src);
                    out.push((i, is_new, Parsed { src, index }));
                }
                Task::Both(i) => {
                    let (old, new) = (text(jobs[i].old), text(jobs[i].new));
                    let (old_index, new_index) = Index::parse_pair(&old, &new);
                    out.push((
                        i,
                        false,
                        Parsed {
                            src: old,
                            index: old_index,
                        },
                    ));
                    out.push((
                        i,
                        true,
                        Parsed {
                            src: new,
                            index: new_index,
                        },
                    ));
                }
            }
        }
        out
    };
    let mut results: Vec<(usize, bool, Parsed)> = Vec::new();
    std::thread::scope(|scope| {
        let mut rest = buckets.iter();
        let first = rest.next();
        let handles: Vec<_> = rest.map(|b| scope.spawn(|| run(&b.1))).collect();
        if let Some(first) = first {
            results.extend(run(&first.1));
        }
        for handle in handles {
            match handle.join() {
                Ok(parsed) => results.extend(parsed),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    for (i, is_new, parsed) in results {
        let job = &jobs[i];
        let pair = pairs.entry(job.path.to_string()).or_default();
        let parsed = Rc::new(parsed);
        if is_new {
            pair.new = Some(parsed);
        } else {
            if job.new.is_some() && job.new == job.old {
                pair.new = Some(Rc::clone(&parsed));
            }
            pair.old = Some(parsed);
        }
    }
    pairs
}
