//! One file's life in the daemon: claimed by an atomic rename into this
//! daemon's work folder, planned (output paths fixed once, in a plan file),
//! processed, and only then moved to `done/` or `failed/`.
//!
//! Crash safety: the work folder is `<hot>/.upscaled/work/<owner>/`, and the
//! owner holds an exclusive lock on `<owner>/lock` for its whole life. The lock
//! dies with the process (even on SIGKILL), so any daemon that can take a dead
//! owner's lock adopts its files. A file re-run after a crash reuses its plan,
//! so it rewrites the same outputs instead of adding `-1` copies.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};

use super::inbox::state_dir;
use crate::config::{FolderRule, OnSuccess};
use crate::error::{JobError, Stage, StageError};
use crate::pipeline::deadline::Deadline;
use crate::pipeline::write::{Collision, write_atomic};
use crate::pipeline::{JobReport, JobSpec, Pipeline};

/// This daemon's claim on a hot folder's work area.
pub struct WorkArea {
    pub dir: PathBuf,
    _lock: File,
}

fn work_root(rule: &FolderRule) -> PathBuf {
    state_dir(rule).join("work")
}

impl WorkArea {
    pub fn open(rule: &FolderRule, owner: &str) -> Result<Self> {
        let dir = work_root(rule).join(owner);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock = File::create(dir.join("lock"))?;
        lock.try_lock()
            .map_err(|e| anyhow::anyhow!("locking {}: {e}", dir.display()))?;
        Ok(Self { dir, _lock: lock })
    }

    /// Adopts the files of owners that died (their lock is free); returns how many.
    pub fn adopt_orphans(&self, rule: &FolderRule) -> usize {
        let mut adopted = 0;
        let Ok(owners) = fs::read_dir(work_root(rule)) else {
            return 0;
        };
        for owner in owners.flatten() {
            let dir = owner.path();
            if dir == self.dir || !dir.is_dir() {
                continue;
            }
            let Ok(lock) = File::options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join("lock"))
            else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue; // alive
            }
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                if !name.to_str().is_some_and(is_job_name) {
                    // The lock, or a temp file the dead daemon was writing.
                    let _ = fs::remove_file(entry.path());
                    continue;
                }
                if fs::rename(entry.path(), self.dir.join(&name)).is_ok() && !is_plan(&name) {
                    adopted += 1;
                }
            }
            let _ = fs::remove_dir(&dir);
        }
        adopted
    }

    /// Jobs already in this work area (adopted, or left by a crash).
    pub fn pending(&self) -> Vec<PathBuf> {
        let mut jobs: Vec<PathBuf> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default();
                name.to_str().is_some_and(is_job_name) && !is_plan(name)
            })
            .collect();
        jobs.sort();
        // Plans whose job is gone (finished just before a crash) are stale.
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if is_plan(&entry.file_name()) && !path.with_extension("").exists() {
                let _ = fs::remove_file(path);
            }
        }
        jobs
    }

    /// Claims `source` (a path in the hot folder) by renaming it into the work
    /// area. None when another daemon was faster or the file vanished.
    pub fn claim(&self, rule: &FolderRule, source: &Path, seq: u64) -> Option<PathBuf> {
        let rel = source.strip_prefix(&rule.path).ok()?;
        let name = format!("{seq:012}~{}", encode_rel(rel));
        let dest = self.dir.join(name);
        match fs::rename(source, &dest) {
            Ok(()) => Some(dest),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(file = %source.display(), "cannot claim: {e}");
                None
            }
        }
    }
}

fn is_plan(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.ends_with(".plan") && is_job_name(n))
}

/// Claimed files are named `<12-digit sequence>~<encoded path>`; anything else
/// in a work folder (temp files being written, the lock) is not a job.
fn is_job_name(name: &str) -> bool {
    name.len() > 13 && name.as_bytes()[12] == b'~' && name[..12].bytes().all(|b| b.is_ascii_digit())
}

/// The original relative path, kept in the work file's name: `/` → `%2F`.
fn encode_rel(rel: &Path) -> String {
    rel.to_string_lossy()
        .replace('%', "%25")
        .replace('/', "%2F")
}

fn decode_rel(encoded: &str) -> PathBuf {
    PathBuf::from(encoded.replace("%2F", "/").replace("%25", "%"))
}

/// The original path of a work file, relative to its hot folder.
pub fn original_rel(work_file: &Path) -> PathBuf {
    let name = work_file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let encoded = name.split_once('~').map_or(name, |(_, rest)| rest);
    decode_rel(encoded)
}

/// What happened to a job, for the log, metrics and tests.
pub enum Outcome {
    Done {
        report: Vec<JobReport>,
        source_to: Option<PathBuf>,
    },
    Failed {
        error: JobError,
        source_to: PathBuf,
    },
}

/// The output paths of a job, fixed before anything is written.
fn plan_path(work_file: &Path) -> PathBuf {
    let mut name = work_file.file_name().unwrap_or_default().to_os_string();
    name.push(".plan");
    work_file.with_file_name(name)
}

fn render_name(template: &str, stem: &str, preset: &str, ext: &str) -> String {
    template
        .replace("{stem}", stem)
        .replace("{preset}", preset)
        .replace("{ext}", ext)
}

/// Picks output paths that do not collide with existing files (an existing
/// output of another source is never overwritten), or reads the saved plan.
fn plan(rule: &FolderRule, work_file: &Path, rel: &Path) -> Result<Vec<Vec<PathBuf>>> {
    let saved = plan_path(work_file);
    if let Ok(text) = fs::read_to_string(&saved)
        && let Ok(paths) = serde_json::from_str::<Vec<Vec<PathBuf>>>(&text)
    {
        return Ok(paths);
    }
    let stem = rel
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image")
        .to_string();
    let dir = rule.output.join(rel.parent().unwrap_or(Path::new("")));
    let template = if rule.targets.len() > 1 && !rule.name_template.contains("{preset}") {
        "{stem}-{preset}.{ext}".to_string()
    } else {
        rule.name_template.clone()
    };
    let mut taken: Vec<PathBuf> = Vec::new();
    let mut plan = Vec::new();
    for target in &rule.targets {
        let mut paths = Vec::new();
        for format in &target.formats {
            let name = render_name(&template, &stem, &target.name, format.extension());
            let mut path = dir.join(&name);
            let mut n = 1;
            while path.exists() || taken.contains(&path) {
                let (base, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
                path = dir.join(format!("{base}-{n}.{ext}"));
                n += 1;
            }
            taken.push(path.clone());
            paths.push(path);
        }
        plan.push(paths);
    }
    let json = serde_json::to_vec(&plan)?;
    write_atomic(&saved, &json, Collision::Replace).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(plan)
}

/// Moves `src` to `dest` without ever replacing an existing file: a taken
/// name gets `-1`, `-2`... Returns where it went.
pub fn move_no_clobber(src: &Path, dest: &Path) -> std::io::Result<PathBuf> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    for n in 0..10_000 {
        let candidate = numbered(dest, n);
        // A hard link fails if the name exists: no window where we replace it.
        match fs::hard_link(src, &candidate) {
            Ok(()) => {
                fs::remove_file(src)?;
                sync_dir(candidate.parent());
                sync_dir(src.parent());
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // Shares without hard links: rename when the name is free.
            Err(_) if !candidate.exists() => {
                fs::rename(src, &candidate)?;
                sync_dir(candidate.parent());
                return Ok(candidate);
            }
            Err(_) => continue,
        }
    }
    Err(std::io::Error::other(format!(
        "no free name for {}",
        dest.display()
    )))
}

/// `dest` itself for 0, else `stem-n.ext`.
fn numbered(dest: &Path, n: usize) -> PathBuf {
    let stem = dest.file_stem().and_then(|s| s.to_str()).unwrap_or("file");
    match (n, dest.extension().and_then(|s| s.to_str())) {
        (0, _) => dest.to_path_buf(),
        (n, Some(ext)) => dest.with_file_name(format!("{stem}-{n}.{ext}")),
        (n, None) => dest.with_file_name(format!("{stem}-{n}")),
    }
}

fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// The spec of one target of a folder.
pub fn spec_for(
    rule: &FolderRule,
    target: &crate::config::OutputTarget,
    base: &JobSpec,
) -> JobSpec {
    JobSpec {
        target: target.target.clone(),
        formats: target.formats.clone(),
        quality: target.quality,
        max_bytes: target.max_bytes,
        min_source_side: target.min_source_side,
        scale: rule.smart.scale,
        model: rule.smart.model.clone(),
        level: rule.smart.quality,
        trim: rule.trim,
        metadata: rule.metadata,
        ..base.clone()
    }
}

/// Drops the file's kept upscale when its targets are done (or failed).
struct Forget<'a>(&'a Pipeline, &'a [u8], bool);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.2 {
            self.0.forget(self.1);
        }
    }
}

/// Runs one claimed file to its end state.
pub fn process(
    pipeline: &Pipeline,
    rule: &Arc<FolderRule>,
    base: &JobSpec,
    work_file: &Path,
) -> Outcome {
    let rel = original_rel(work_file);
    let shown = rule.path.join(&rel);
    let started = Instant::now();
    let result = (|| -> Result<Vec<JobReport>, JobError> {
        let fail = |e: StageError| JobError::from_stage(&shown, e);
        let plan = plan(rule, work_file, &rel)
            .map_err(|e| fail(StageError::new(Stage::Write, format!("{e:#}"))))?;
        let bytes = fs::read(work_file).map_err(|e| {
            fail(StageError::new(
                Stage::Read,
                format!("cannot read the file: {e}"),
            ))
        })?;
        let mut reports = Vec::new();
        let shared = rule.targets.len() > 1;
        // One limit for the whole file, all its targets together.
        let deadline = base.time_limit.map(Deadline::after);
        let _forget = Forget(pipeline, &bytes, shared);
        for (target, paths) in rule.targets.iter().zip(&plan) {
            let spec = JobSpec {
                reuse_upscale: shared,
                deadline: deadline.clone(),
                ..spec_for(rule, target, base)
            };
            let rendered = pipeline.render(&shown, &bytes, &spec).map_err(fail)?;
            let mut report = rendered.report;
            for (out, path) in rendered.encoded.into_iter().zip(paths) {
                write_atomic(path, &out.bytes, Collision::Replace).map_err(fail)?;
                report.outputs.push(crate::pipeline::OutputReport {
                    path: path.clone(),
                    format: out.format,
                    bytes: out.bytes.len() as u64,
                    quality: out.quality,
                    trials: out.trials,
                });
            }
            reports.push(report);
        }
        Ok(reports)
    })();
    let outcome = match result {
        Ok(report) => {
            // Outputs are durable (write_atomic fsyncs); now the source may go.
            let source_to = match rule.on_success {
                OnSuccess::Move => move_no_clobber(work_file, &rule.done.join(&rel)).map(Some),
                OnSuccess::Delete => fs::remove_file(work_file).map(|_| None),
                OnSuccess::Keep => return_kept(rule, work_file, &rel).map(Some),
            };
            match source_to {
                Ok(source_to) => {
                    if let Some(done) = &source_to {
                        touch(done);
                    }
                    Outcome::Done { report, source_to }
                }
                Err(e) => failed(
                    rule,
                    work_file,
                    &rel,
                    JobError::from_stage(
                        &shown,
                        StageError::new(Stage::Write, format!("cannot move the source away: {e}")),
                    ),
                ),
            }
        }
        Err(error) => {
            // A failed file leaves no outputs behind.
            if let Ok(text) = fs::read_to_string(plan_path(work_file))
                && let Ok(paths) = serde_json::from_str::<Vec<Vec<PathBuf>>>(&text)
            {
                for p in paths.iter().flatten() {
                    let _ = fs::remove_file(p);
                }
            }
            failed(rule, work_file, &rel, error)
        }
    };
    let _ = fs::remove_file(plan_path(work_file));
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "job finished"
    );
    outcome
}

fn failed(rule: &FolderRule, work_file: &Path, rel: &Path, error: JobError) -> Outcome {
    let text = format!(
        "file: {}\nstage: {}\nreason: {}\ntime: {}\n",
        error.file.display(),
        error.stage,
        error.cause,
        unix_time_now()
    );
    // The reason is written before the file moves: a crash in between leaves
    // a reason without its file (replaced when the file fails again after
    // the restart), never a failed file without its reason.
    let wanted = rule.failed.join(rel);
    let free = (0..10_000)
        .map(|n| numbered(&wanted, n))
        .find(|p| !p.exists())
        .unwrap_or(wanted);
    if let Some(parent) = free.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let _ = write_atomic(&reason_path(&free), text.as_bytes(), Collision::Replace);
    let dest = match move_no_clobber(work_file, &free) {
        Ok(dest) => dest,
        Err(e) => {
            tracing::error!(file = %work_file.display(), "cannot move to failed/: {e}; it stays in the work folder");
            work_file.to_path_buf()
        }
    };
    if dest != free {
        // Another file took the name meanwhile, or the move failed.
        let _ = fs::rename(reason_path(&free), reason_path(&dest));
    }
    Outcome::Failed {
        error,
        source_to: dest,
    }
}

fn reason_path(failed_file: &Path) -> PathBuf {
    let mut path = failed_file.as_os_str().to_os_string();
    path.push(".error.txt");
    PathBuf::from(path)
}

/// `keep`: the source goes back where it was, and the ledger remembers it so
/// it is not taken again.
fn return_kept(rule: &FolderRule, work_file: &Path, rel: &Path) -> std::io::Result<PathBuf> {
    let back = move_no_clobber(work_file, &rule.path.join(rel))?;
    let meta = fs::metadata(&back)?;
    let mut ledger = File::options()
        .create(true)
        .append(true)
        .open(state_dir(rule).join("kept"))?;
    writeln!(ledger, "{}", ledger_key(&back, &meta))?;
    ledger.sync_all()?;
    Ok(back)
}

pub fn ledger_key(path: &Path, meta: &fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}\t{}\t{mtime}", path.display(), meta.len())
}

/// Done files carry the time they finished, which retention counts from.
fn touch(path: &Path) {
    if let Ok(f) = File::options().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn unix_time_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{secs} (unix seconds)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_claimed_files_are_jobs() {
        assert!(is_job_name("000000000042~photo.jpg"));
        assert!(!is_job_name("lock"));
        assert!(!is_job_name(
            ".upscaled-host-12-000000000042~photo.jpg.plan.tmp"
        ));
        assert!(is_plan(std::ffi::OsStr::new("000000000042~photo.jpg.plan")));
    }

    #[test]
    fn relative_paths_survive_the_work_file_name() {
        for rel in ["a.jpg", "sub/dir/b 100%.png", "x%2Fy.jpg"] {
            let name = format!("000000000001~{}", encode_rel(Path::new(rel)));
            assert_eq!(original_rel(Path::new(&name)), PathBuf::from(rel));
        }
    }

    #[test]
    fn move_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("done/a.jpg");
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, b"old").unwrap();
        let src = dir.path().join("a.jpg");
        fs::write(&src, b"new").unwrap();
        let went = move_no_clobber(&src, &dest).unwrap();
        assert_eq!(went, dir.path().join("done/a-1.jpg"));
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(fs::read(&went).unwrap(), b"new");
        assert!(!src.exists());
    }
}
