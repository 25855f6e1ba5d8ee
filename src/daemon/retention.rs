//! What the daemon wrote or moved, remembered in its private folder, so that
//! retention deletes only those files (never a file it did not put there, and
//! never an unprocessed source), and `keep` never takes a kept source twice.
//!
//! `<hot>/.upscaled/written`: one line per file, `secs dev ino hex(path)`.
//! `<hot>/.upscaled/kept`: one line per kept source, its key.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{Mode, OFlags};

use super::state;
use crate::config::FolderRule;
use crate::durable::FileId;

const WRITTEN: &str = "written";
const KEPT: &str = "kept";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Appends lines to one of the private ledgers (O_APPEND: several daemons
/// on one folder do not interleave inside a line).
fn append(rule: &FolderRule, ledger: &str, text: &str) {
    let result = state::open_state(rule).and_then(|dir| {
        let fd = rustix::fs::openat(
            dir.as_fd(),
            ledger,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = result {
        tracing::warn!(folder = %rule.path.display(), "cannot update the {ledger} ledger: {e}");
    }
}

fn read_ledger(rule: &FolderRule, ledger: &str) -> String {
    let mut text = String::new();
    if let Ok(dir) = state::open_state(rule)
        && let Ok(mut f) = dir.open_file(OsStr::new(ledger))
    {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// Remembers files this daemon just put in place (outputs, done sources).
pub fn record(rule: &FolderRule, files: &[(PathBuf, FileId)]) {
    if rule.retention.is_none() || files.is_empty() {
        return;
    }
    let secs = now_secs();
    let text: String = files
        .iter()
        .map(|(p, id)| {
            format!(
                "{secs} {} {} {}\n",
                id.dev,
                id.ino,
                hex(p.as_os_str().as_bytes())
            )
        })
        .collect();
    append(rule, WRITTEN, &text);
}

pub fn remember_kept(rule: &FolderRule, key: &str) {
    append(rule, KEPT, &format!("{key}\n"));
}

pub fn load_kept(rule: &FolderRule) -> HashSet<String> {
    read_ledger(rule, KEPT)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Deletes the recorded files older than `keep` that are still the files
/// this daemon wrote (same device and inode); the rest of the ledger stays.
pub fn sweep(rule: &FolderRule, keep: Duration, hot_folders: &[PathBuf]) {
    let text = read_ledger(rule, WRITTEN);
    if text.is_empty() {
        return;
    }
    let cutoff = now_secs().saturating_sub(keep.as_secs());
    let mut left = String::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let parsed = match parts.as_slice() {
            [secs, dev, ino, path] => (|| {
                Some((
                    secs.parse::<u64>().ok()?,
                    FileId {
                        dev: dev.parse().ok()?,
                        ino: ino.parse().ok()?,
                    },
                    PathBuf::from(OsString::from_vec(unhex(path)?)),
                ))
            })(),
            _ => None,
        };
        let Some((secs, id, path)) = parsed else {
            continue;
        };
        if secs > cutoff {
            left.push_str(line);
            left.push('\n');
            continue;
        }
        delete_if_ours(&path, id, hot_folders);
    }
    if let Ok(dir) = state::open_state(rule) {
        let _ = dir.write_replace(OsStr::new(WRITTEN), left.as_bytes(), "ledger");
    }
}

fn delete_if_ours(path: &Path, id: FileId, hot_folders: &[PathBuf]) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let Ok(dir) = state::open_root_existing(parent, hot_folders) else {
        return;
    };
    if dir.file_id(name) == Some(id) && dir.remove(name).is_ok() {
        tracing::info!(file = %path.display(), "retention: deleted");
    }
}
