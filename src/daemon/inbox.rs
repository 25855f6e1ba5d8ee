//! What in a hot folder is ready to take: a scan of the directory (events
//! only say when to look), names that are never input, and the settle rule
//! (size and mtime unchanged for `settle`).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::config::FolderRule;
use crate::durable::FileId;

/// Hidden, partial and system files that are never input.
pub fn is_ignored_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with("~$")
        || lower == "thumbs.db"
        || lower == "desktop.ini"
        || [
            ".part",
            ".crdownload",
            ".tmp",
            ".partial",
            ".download",
            ".error.txt",
        ]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Folders inside the hot folder that hold our own files, never input.
fn own_folders(rule: &FolderRule) -> Vec<PathBuf> {
    vec![
        rule.done.clone(),
        rule.failed.clone(),
        rule.output.clone(),
        rule.path.join(super::state::STATE_NAME),
    ]
}

/// Is `path` one of our own folders (or inside one)? Events there are not news.
pub fn is_own_path(rule: &FolderRule, path: &Path) -> bool {
    own_folders(rule).iter().any(|o| path.starts_with(o))
}

/// A file in the hot folder that may be input.
pub struct Candidate {
    /// Relative to the hot folder; any bytes (names are not always UTF-8).
    pub rel: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
    pub id: FileId,
}

/// Files in the hot folder that may be input. Things that can never be taken
/// (a folder on another file system, which a rename cannot claim from) are
/// reported once, through `warned`, not on every scan.
pub fn scan(rule: &FolderRule, warned: &mut HashSet<PathBuf>) -> Vec<Candidate> {
    // Bounded memory for a folder that keeps producing odd names.
    if warned.len() > 10_000 {
        warned.clear();
    }
    let own = own_folders(rule);
    let mut found = Vec::new();
    let Ok(root_dev) = std::fs::metadata(&rule.path).map(|m| m.dev()) else {
        return found;
    };
    let mut stack = vec![rule.path.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if is_ignored_name(&name.to_string_lossy()) {
                continue;
            }
            // Not followed: a symlink is neither a file nor a folder here.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if !rule.recursive || own.iter().any(|o| o == &path) {
                    continue;
                }
                if meta.dev() != root_dev {
                    if warned.insert(path.clone()) {
                        tracing::warn!(folder = %path.display(), "a folder on another file system: files there cannot be claimed atomically, so it is not read (said once)");
                    }
                    continue;
                }
                stack.push(path);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let rel = path.strip_prefix(&rule.path).unwrap_or(&path).to_path_buf();
            if !wanted(rule, &rel) {
                continue;
            }
            found.push(Candidate {
                rel,
                size: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                id: FileId {
                    dev: meta.dev(),
                    ino: meta.ino(),
                },
            });
        }
    }
    found
}

fn wanted(rule: &FolderRule, rel: &Path) -> bool {
    let name = rel.file_name().map(Path::new).unwrap_or(rel);
    let matches = |set: &globset::GlobSet| set.is_match(rel) || set.is_match(name);
    rule.include.as_ref().is_none_or(matches) && !rule.exclude.as_ref().is_some_and(matches)
}

/// Tracks candidates across scans until they have been still for `settle`.
#[derive(Default)]
pub struct Settler {
    seen: HashMap<PathBuf, (u64, SystemTime, Instant)>,
}

impl Settler {
    /// Feeds one scan; returns the files that are ready, oldest first.
    pub fn update(
        &mut self,
        scan: Vec<(PathBuf, u64, SystemTime)>,
        settle: std::time::Duration,
        now: Instant,
    ) -> Vec<PathBuf> {
        let mut next = HashMap::with_capacity(scan.len());
        let mut ready = Vec::new();
        for (path, size, mtime) in scan {
            let since = match self.seen.get(&path) {
                Some(&(s, m, since)) if s == size && m == mtime => since,
                _ => now,
            };
            // Stillness is measured on our clock, so skewed mtimes on a share do no harm.
            if now.duration_since(since) >= settle {
                ready.push((since, path.clone()));
            }
            next.insert(path, (size, mtime, since));
        }
        self.seen = next;
        ready.sort();
        ready.into_iter().map(|(_, p)| p).collect()
    }

    /// When the next file seen will have been still for `settle`, if it stays so.
    pub fn next_due(&self, settle: std::time::Duration) -> Option<Instant> {
        self.seen
            .values()
            .map(|&(_, _, since)| since + settle)
            .min()
    }

    pub fn forget(&mut self, path: &Path) {
        self.seen.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn temporary_and_hidden_names_are_ignored() {
        for name in [
            ".hidden.jpg",
            "photo.jpg.part",
            "x.crdownload",
            "a.tmp",
            "~$doc.png",
            "Thumbs.db",
            ".DS_Store",
            "._photo.jpg",
        ] {
            assert!(is_ignored_name(name), "{name}");
        }
        for name in ["photo.jpg", "scan.tmp.png", "my~$.png"] {
            assert!(!is_ignored_name(name), "{name}");
        }
    }

    #[test]
    fn a_file_is_ready_only_after_it_is_still_for_settle() {
        let mut s = Settler::default();
        let t0 = Instant::now();
        let settle = Duration::from_secs(1);
        let p = PathBuf::from("/x/a.jpg");
        let m = SystemTime::UNIX_EPOCH;
        assert!(s.update(vec![(p.clone(), 10, m)], settle, t0).is_empty());
        // It grew: the clock restarts.
        let t1 = t0 + Duration::from_millis(900);
        assert!(s.update(vec![(p.clone(), 20, m)], settle, t1).is_empty());
        let t2 = t1 + Duration::from_millis(900);
        assert!(s.update(vec![(p.clone(), 20, m)], settle, t2).is_empty());
        let t3 = t1 + Duration::from_millis(1000);
        assert_eq!(s.update(vec![(p.clone(), 20, m)], settle, t3), vec![p]);
    }
}
