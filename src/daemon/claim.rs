//! Claiming: a settled file is taken from the hot folder by one atomic,
//! non-replacing rename into this daemon's work area,
//! `<hot>/.upscaled/work/<owner>/`, which the daemon holds an exclusive lock
//! on for its whole life.
//!
//! A job is two files with names this daemon made up: `<n>.job`, the record
//! (the original relative path, then the planned outputs), written first, and
//! `<n>.src`, the source itself. Nothing in them comes from a file name, so a
//! source called `x.plan` or a 255-byte name needs no special case, and the
//! `owner` part (host, pid, start time) makes every claim name unique across
//! restarts and hosts.
//!
//! A daemon that dies (even SIGKILL) releases its lock; whoever takes the lock
//! next adopts the area as it is and runs its jobs again.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::state;
use crate::config::FolderRule;
use crate::durable::{Dir, FileId};

/// This process's name in work folders and temp files: host, pid and start
/// time, so a restarted daemon with a reused pid never meets its old names.
pub fn owner_id() -> String {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER
        .get_or_init(|| {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            format!(
                "{}-{}-{started:x}",
                crate::durable::host_name(),
                std::process::id()
            )
        })
        .clone()
}

/// A locked work folder: our own, or one adopted from a daemon that died.
pub struct WorkArea {
    pub dir: Dir,
    pub owner: String,
    /// The hot folder: one daemon owns an area in each, all with the same
    /// `owner` and numbers from 1, so a job is only named by all three.
    pub folder: PathBuf,
    next: AtomicU64,
    _lock: File,
}

/// One output of a job, relative to the rule's output folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedOutput {
    #[serde(with = "hex_bytes")]
    pub dir: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub name: Vec<u8>,
    /// The name before any `-N` was added: a taken name is numbered from it.
    #[serde(with = "hex_bytes", default)]
    pub base: Vec<u8>,
    /// Every file this job put (or was about to put) at that name: an
    /// existing file there is ours to replace only if it is one of these.
    #[serde(default)]
    pub ids: Vec<FileId>,
}

impl PlannedOutput {
    pub fn dir(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.dir))
    }
    pub fn name(&self) -> &OsStr {
        OsStr::from_bytes(&self.name)
    }
}

/// What the daemon knows about a claimed file; lives in its private folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    /// The source's path relative to the hot folder, as bytes.
    #[serde(with = "hex_bytes")]
    pub rel: Vec<u8>,
    /// Outputs per target and format, fixed before anything is written.
    #[serde(default)]
    pub plan: Vec<Vec<PlannedOutput>>,
}

impl JobRecord {
    pub fn rel(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.rel))
    }
}

/// A job's identity in the daemon: hot folder, owner of the work area, number.
pub type JobKey = (PathBuf, String, u64);

/// A claimed file: its work area and its number there.
#[derive(Clone)]
pub struct Claimed {
    pub area: Arc<WorkArea>,
    pub n: u64,
}

impl Claimed {
    pub fn source_name(&self) -> OsString {
        format!("{}.src", self.n).into()
    }
    pub fn record_name(&self) -> OsString {
        format!("{}.job", self.n).into()
    }
    /// A tag unique to this job, for its temp files.
    pub fn tag(&self) -> String {
        format!("{}-{}", self.area.owner, self.n)
    }
    /// Names the job among every folder's: see [`JobKey`].
    pub fn key(&self) -> JobKey {
        (self.area.folder.clone(), self.area.owner.clone(), self.n)
    }
    pub fn read_record(&self) -> io::Result<JobRecord> {
        let mut text = Vec::new();
        io::Read::read_to_end(
            &mut self.area.dir.open_file(&self.record_name())?,
            &mut text,
        )?;
        serde_json::from_slice(&text).map_err(|e| io::Error::other(format!("job record: {e}")))
    }
    pub fn save_record(&self, record: &JobRecord) -> io::Result<()> {
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        self.area
            .dir
            .write_replace(&self.record_name(), &json, &self.tag())
            .map(|_| ())
    }
    pub fn open_source(&self) -> io::Result<File> {
        self.area.dir.open_file(&self.source_name())
    }
    /// Forgets the job once its source has gone to done/ or failed/.
    pub fn close(&self) {
        let _ = self.area.dir.remove(&self.record_name());
        let _ = self.area.dir.sync();
    }
}

fn work_root(rule: &FolderRule) -> io::Result<Dir> {
    let state = state::open_state(rule)?;
    state::open_private_child(&state, OsStr::new("work"))
}

fn lock_in(dir: &Dir) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir.as_fd(),
        "lock",
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let lock = File::from(fd);
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => {
            io::Error::new(io::ErrorKind::WouldBlock, "held by a running daemon")
        }
        std::fs::TryLockError::Error(e) => e,
    })?;
    Ok(lock)
}

impl WorkArea {
    /// Creates and locks this daemon's own work area.
    pub fn open(rule: &FolderRule) -> io::Result<Arc<WorkArea>> {
        let owner = owner_id();
        let dir = state::open_private_child(&work_root(rule)?, OsStr::new(&owner))?;
        let lock = lock_in(&dir)?;
        Ok(Arc::new(WorkArea {
            dir,
            owner,
            folder: rule.path.clone(),
            next: AtomicU64::new(1),
            _lock: lock,
        }))
    }

    /// Is our folder still there? (`rm -rf hot/.upscaled` while running.)
    pub fn is_intact(&self, rule: &FolderRule) -> bool {
        let here = self.dir.fstat();
        let there = work_root(rule)
            .and_then(|w| w.open_child(OsStr::new(&self.owner), false))
            .and_then(|d| d.fstat());
        matches!((here, there), (Ok(a), Ok(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev)
    }

    /// Locks the work areas of daemons that died (their lock is free).
    pub fn adopt_orphans(rule: &FolderRule, held: &[Arc<WorkArea>]) -> Vec<Arc<WorkArea>> {
        let Ok(root) = work_root(rule) else {
            return Vec::new();
        };
        let mut adopted = Vec::new();
        for name in root.names().unwrap_or_default() {
            let owner = name.to_string_lossy().into_owned();
            if held.iter().any(|a| a.owner == owner) || owner.contains(".untrusted-") {
                continue;
            }
            let Ok(dir) = state::open_private_child(&root, &name) else {
                continue;
            };
            let Ok(lock) = lock_in(&dir) else { continue }; // alive
            let area = WorkArea {
                dir,
                owner,
                folder: rule.path.clone(),
                next: AtomicU64::new(1),
                _lock: lock,
            };
            area.adopt_legacy_layout();
            if area.jobs().is_empty() {
                // Nothing left: the dead daemon's folder goes.
                area.remove_empty(&root);
            } else {
                adopted.push(Arc::new(area));
            }
        }
        adopted
    }

    /// Removes this (adopted, drained) area: its lock and our own leftovers
    /// (temp files, stale records), then itself. Anything else stays, and so
    /// does the folder then: an unknown file is never deleted.
    pub fn remove_empty(&self, root: &Dir) {
        for name in self.dir.names().unwrap_or_default() {
            let text = name.to_string_lossy();
            if text == "lock" || text.ends_with(".tmp") || text.ends_with(".job") {
                let _ = self.dir.remove(&name);
            }
        }
        let _ = root.remove_dir(OsStr::new(&self.owner));
    }

    /// Versions before 0.2 named claimed files `<12 digits>~<path, / as %2F>`
    /// beside a `.plan`; such files left by a stopped daemon become jobs here
    /// (their plan is made again), so an upgrade loses none of them.
    fn adopt_legacy_layout(&self) {
        let names = self.dir.names().unwrap_or_default();
        let mut n = names
            .iter()
            .filter_map(|m| m.to_str()?.split('.').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            .max(1 << 40);
        for name in names {
            let bytes = name.as_bytes();
            let legacy =
                bytes.len() > 13 && bytes[12] == b'~' && bytes[..12].iter().all(u8::is_ascii_digit);
            if !legacy {
                continue;
            }
            if bytes.ends_with(b".plan") {
                let _ = self.dir.remove(&name);
                continue;
            }
            let encoded = String::from_utf8_lossy(&bytes[13..]).into_owned();
            let rel = encoded.replace("%2F", "/").replace("%25", "%");
            n += 1;
            let (record_name, source_name) = (format!("{n}.job"), format!("{n}.src"));
            let record = JobRecord {
                rel: rel.into_bytes(),
                plan: Vec::new(),
            };
            let Ok(json) = serde_json::to_vec(&record) else {
                continue;
            };
            let tag = format!("{}-{n}", self.owner);
            if self
                .dir
                .write_new(OsStr::new(&record_name), &json, &tag)
                .is_ok()
                && self
                    .dir
                    .move_to(&name, &self.dir, OsStr::new(&source_name))
                    .is_err()
            {
                let _ = self.dir.remove(OsStr::new(&record_name));
            }
        }
    }

    pub fn remove_if_drained(&self, rule: &FolderRule) -> bool {
        if !self.jobs().is_empty() {
            return false;
        }
        if let Ok(root) = work_root(rule) {
            self.remove_empty(&root);
        }
        true
    }

    /// The jobs in this area, oldest first. A record whose source is gone
    /// (finished just before a crash, or claimed and then lost the race) is
    /// removed; the source is where the record's job left it.
    pub fn jobs(self: &WorkArea) -> Vec<u64> {
        let names = self.dir.names().unwrap_or_default();
        let mut jobs = Vec::new();
        for name in &names {
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".job"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if names.iter().any(|m| m == OsStr::new(&format!("{n}.src"))) {
                jobs.push(n);
            } else {
                let _ = self.dir.remove(name);
            }
        }
        jobs.sort_unstable();
        jobs
    }

    /// Claims `rel` (a path relative to the hot folder): writes its record,
    /// then renames the file in without replacing anything. None when the
    /// file vanished or another daemon took it first; Err when it cannot be
    /// taken at all (the reason is for the log, once).
    pub fn claim(
        self: &Arc<WorkArea>,
        rule: &FolderRule,
        rel: &Path,
    ) -> io::Result<Option<Claimed>> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(None);
        };
        let from = Dir::open_below(&rule.path, parent, false)?;
        let job = Claimed {
            area: self.clone(),
            n: self.next.fetch_add(1, Ordering::Relaxed),
        };
        let record = JobRecord {
            rel: rel.as_os_str().as_bytes().to_vec(),
            plan: Vec::new(),
        };
        let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
        self.dir.write_new(&job.record_name(), &json, &job.tag())?;
        match from.move_to(name, &self.dir, &job.source_name()) {
            Ok(()) => Ok(Some(job)),
            Err(e) => {
                let _ = self.dir.remove(&job.record_name());
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub fn job(self: &Arc<WorkArea>, n: u64) -> Claimed {
        Claimed {
            area: self.clone(),
            n,
        }
    }
}

/// Where a file was, for messages.
pub fn shown(rule: &FolderRule, record: &JobRecord) -> PathBuf {
    rule.path.join(record.rel())
}

/// Bytes as lowercase hex in JSON: file names are bytes, not always UTF-8.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if !text.len().is_multiple_of(2) {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_any_bytes() {
        let rec = JobRecord {
            rel: b"sub/\xff\xfe name.plan".to_vec(),
            plan: vec![vec![PlannedOutput {
                dir: b"sub".to_vec(),
                name: b"x.png".to_vec(),
                base: b"x.png".to_vec(),
                ids: vec![FileId { dev: 1, ino: 2 }],
            }]],
        };
        let json = serde_json::to_string(&rec).unwrap();
        let back: JobRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.rel, rec.rel);
        assert_eq!(back.plan[0][0].ids, rec.plan[0][0].ids);
    }
}
