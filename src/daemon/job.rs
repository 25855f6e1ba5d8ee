//! One claimed file's life: planned, read, rendered, written, and only then
//! moved to `done/` (or deleted, or put back), or to `failed/` with its
//! reason. A failure that is not the file's fault (a full disk, a folder that
//! cannot be opened now) leaves it claimed, to be tried again later.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::claim::{Claimed, JobRecord};
use super::{plan, retention, state};
use crate::cluster::coordinator::{Coordinator, PlannedTarget, PlannedTask, Receipt, RemoteError};
use crate::config::{FolderRule, OnSuccess};
use crate::deadline::Deadline;
use crate::durable::{self, Dir, FileId};
use crate::error::{JobError, Stage, StageError, printable};
use crate::pipeline::{JobReport, JobSpec, OutputReport, Pipeline, Rendered};

/// What every job needs besides its own file.
pub struct Context {
    pub pipeline: Arc<Pipeline>,
    pub base: JobSpec,
    /// Every configured hot folder: parts of a root inside one are not trusted.
    pub hot_folders: Arc<Vec<PathBuf>>,
    /// Cluster mode: the pipeline runs on workers, reached through this.
    pub remote: Option<Arc<Coordinator>>,
}

/// What happened to a job, for the log, metrics and tests.
pub enum Outcome {
    Done {
        report: Vec<JobReport>,
        source_to: Option<PathBuf>,
        /// `keep`: the key under which the returned source is not taken again.
        kept: Option<String>,
    },
    Failed {
        error: JobError,
        source_to: PathBuf,
    },
    /// Not the file's fault; it stays claimed and is tried again later.
    /// The claimed file is gone from the work folder (someone removed the
    /// state folder): nothing is left to do or to keep.
    Vanished {
        what: String,
    },
    Deferred {
        error: JobError,
    },
}

/// A failure while running a job: the file's fault, or not.
enum Trouble {
    File(StageError),
    Transient(StageError),
}

fn write_error(what: &str, e: &io::Error) -> Trouble {
    let err = StageError::new(Stage::Write, format!("{what}: {e}"));
    if is_transient(e) {
        Trouble::Transient(err)
    } else {
        Trouble::File(err)
    }
}

/// A full disk or quota is the machine's problem, not the file's.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
    )
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
pub fn process(ctx: &Context, rule: &Arc<FolderRule>, job: &Claimed) -> Outcome {
    crate::error::set_stage(Stage::Read);
    if !job.area.dir.exists(&job.source_name()) {
        return Outcome::Vanished {
            what: format!("job {} of {}", job.n, job.area.owner),
        };
    }
    let mut record = match job.read_record() {
        Ok(r) => r,
        Err(e) => {
            // Our own record is unreadable: keep the source, under its job name.
            let rel = PathBuf::from(format!("{}-{}", job.area.owner, job.n));
            let err = StageError::new(Stage::Read, format!("the job record is damaged: {e}"));
            return fail(
                ctx,
                rule,
                job,
                &rel,
                JobError::from_stage(rule.path.join(&rel), err),
            );
        }
    };
    let rel = record.rel().to_path_buf();
    let shown = rule.path.join(&rel);
    match run(ctx, rule, job, &mut record, &shown) {
        Ok((report, receipt)) => {
            let outcome = finish_done(ctx, rule, job, &record, &shown, report);
            // Reports are let go only once the outputs are in place; a
            // deferred write keeps them for the next try.
            if let (Some(receipt), Outcome::Done { .. } | Outcome::Failed { .. }) =
                (receipt, &outcome)
            {
                receipt.settle();
            }
            outcome
        }
        Err(Trouble::Transient(e)) => Outcome::Deferred {
            error: JobError::from_stage(&shown, e),
        },
        Err(Trouble::File(e)) => {
            remove_outputs(ctx, rule, &record);
            fail(ctx, rule, job, &rel, JobError::from_stage(&shown, e))
        }
    }
}

fn run(
    ctx: &Context,
    rule: &Arc<FolderRule>,
    job: &Claimed,
    record: &mut JobRecord,
    shown: &Path,
) -> Result<(Vec<JobReport>, Option<Receipt>), Trouble> {
    let output = state::open_root(&rule.output, &ctx.hot_folders)
        .map_err(|e| write_error("cannot open the output folder", &e))?;
    if record.plan.len() != rule.targets.len() {
        record.plan = plan::plan(rule, record.rel(), &output)
            .map_err(|e| write_error("cannot plan the output names", &e))?;
        job.save_record(record)
            .map_err(|e| write_error("cannot save the job record", &e))?;
    }
    let file = job.open_source().map_err(|e| {
        Trouble::File(StageError::new(
            Stage::Read,
            format!("cannot open the file: {e}"),
        ))
    })?;
    // A hard link planted in the hot folder could publish a file its owner
    // never dropped there (one the dropper could not read themselves).
    let links = file
        .metadata()
        .map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
        .unwrap_or(1);
    if links > 1 {
        return Err(Trouble::File(StageError::new(
            Stage::Read,
            format!(
                "the file has {} other hard links elsewhere; copy it in instead of linking it",
                links - 1
            ),
        )));
    }
    let limit = crate::pipeline::source::max_bytes(&ctx.base.limits);
    let bytes =
        crate::pipeline::source::read_open_file(&file, shown, limit).map_err(Trouble::File)?;
    drop(file);

    let (rendered, receipt) = match &ctx.remote {
        Some(remote) => {
            let (r, receipt) = render_remote(ctx, remote, rule, job, &bytes, shown)?;
            (r, Some(receipt))
        }
        None => (render_here(ctx, rule, &bytes, shown)?, None),
    };
    crate::error::set_stage(Stage::Write);
    let mut reports = Vec::new();
    for (t, rendered) in rendered {
        let mut report = rendered.report;
        for (f, out) in rendered.encoded.into_iter().enumerate() {
            let path = write_output(&output, job, record, t, f, &out.bytes)?;
            report.outputs.push(OutputReport {
                path,
                format: out.format,
                bytes: out.bytes.len() as u64,
                quality: out.quality,
                trials: out.trials,
            });
        }
        reports.push(report);
    }
    Ok((reports, receipt))
}

/// Every target of the file, rendered here.
fn render_here(
    ctx: &Context,
    rule: &FolderRule,
    bytes: &[u8],
    shown: &Path,
) -> Result<Vec<(usize, Rendered)>, Trouble> {
    let shared = rule.targets.len() > 1;
    // One limit for the whole file, all its targets together.
    let deadline = ctx.base.time_limit.map(Deadline::after);
    let _forget = Forget(&ctx.pipeline, bytes, shared);
    let mut out = Vec::new();
    for (t, target) in rule.targets.iter().enumerate() {
        let spec = JobSpec {
            reuse_upscale: shared,
            deadline: deadline.clone(),
            ..spec_for(rule, target, &ctx.base)
        };
        let rendered = ctx
            .pipeline
            .render(shown, bytes, &spec)
            .map_err(Trouble::File)?;
        out.push((t, rendered));
    }
    Ok(out)
}

/// Cluster mode: the route is decided here (so a job names its model and
/// a file that cannot be decoded never leaves), the rest runs on workers.
fn render_remote(
    ctx: &Context,
    remote: &Coordinator,
    rule: &FolderRule,
    job: &Claimed,
    bytes: &[u8],
    shown: &Path,
) -> Result<(Vec<(usize, Rendered)>, Receipt), Trouble> {
    let mut tasks: Vec<PlannedTask> = Vec::new();
    for (t, target) in rule.targets.iter().enumerate() {
        let spec = spec_for(rule, target, &ctx.base);
        let choice = ctx.pipeline.choose(bytes, &spec).map_err(Trouble::File)?;
        let planned = PlannedTarget {
            index: t,
            expected: crate::pipeline::expected_size(&choice, spec.target.as_ref()),
            spec,
        };
        match tasks.iter_mut().find(|p| p.model == choice.model) {
            Some(task) => task.targets.push(planned),
            None => tasks.push(PlannedTask {
                model: choice.model,
                targets: vec![planned],
            }),
        }
    }
    remote
        .render(&job_id(job), shown, bytes, tasks)
        .map_err(|e| match e {
            RemoteError::File(e) => Trouble::File(e),
            RemoteError::Transient(e) => Trouble::Transient(e),
        })
}

/// A claim's id in the cluster: the same across restarts and adoption.
pub fn job_id(job: &Claimed) -> String {
    let (folder, owner, n) = job.key();
    // The folder as a short hash: the id must be one token, and the same
    // owner and number occur in every folder.
    let folder = crate::cluster::wire::sha256_hex(folder.as_os_str().as_encoded_bytes());
    crate::config::safe_token(&format!("{owner}-{}-{n}", &folder[..12]))
}

/// Puts one output in place. The temp file's identity is recorded before it
/// takes its name, so after a crash an existing file at that name is known
/// to be this job's (and is replaced) or someone else's (and is left alone:
/// the output takes the next free name, and the record says so).
fn write_output(
    output: &Dir,
    job: &Claimed,
    record: &mut JobRecord,
    t: usize,
    f: usize,
    bytes: &[u8],
) -> Result<PathBuf, Trouble> {
    let planned = record.plan[t][f].clone();
    let (sub, name) = plan::checked(&planned).map_err(|e| write_error("bad plan", &e))?;
    let dir = output
        .open_path(&sub, true)
        .map_err(|e| write_error("cannot open the output folder", &e))?;
    let temp = dir
        .write_temp(bytes, &job.tag())
        .map_err(|e| write_error("cannot write the output", &e))?;
    let cleanup = |e: io::Error, what: &str| {
        let _ = dir.remove(&temp);
        write_error(what, &e)
    };
    let id = dir
        .file_id(&temp)
        .ok_or_else(|| cleanup(io::Error::other("vanished"), "temp file"))?;
    record.plan[t][f].ids.push(id);
    job.save_record(record)
        .map_err(|e| cleanup(e, "cannot save the job record"))?;
    let ours = |n: &OsStr| {
        dir.file_id(n)
            .is_some_and(|i| record.plan[t][f].ids.contains(&i))
    };
    let placed = if ours(&name) {
        // This job wrote it before a crash: refresh it.
        rustix::fs::renameat(dir.as_fd(), &temp, dir.as_fd(), &name)
            .map(|_| name.clone())
            .map_err(io::Error::from)
    } else {
        // Numbered from the template's name, so a race gives `a-2`, not `a-1-1`.
        let base = if planned.base.is_empty() {
            name.clone()
        } else {
            OsStr::from_bytes(&planned.base).to_os_string()
        };
        durable::first_free(&base, |candidate| {
            if candidate != name && ours(candidate) {
                return rustix::fs::renameat(dir.as_fd(), &temp, dir.as_fd(), candidate)
                    .map_err(io::Error::from);
            }
            dir.move_to(&temp, &dir, candidate)
        })
        .map(|(n, _)| n)
    };
    let placed = placed.map_err(|e| cleanup(e, "cannot put the output in place"))?;
    let _ = dir.sync();
    if placed != name {
        record.plan[t][f].name = placed.as_bytes().to_vec();
        job.save_record(record)
            .map_err(|e| write_error("cannot save the job record", &e))?;
    }
    Ok(dir.path().join(&placed))
}

/// A failed file leaves no outputs behind: only files this job wrote go.
fn remove_outputs(ctx: &Context, rule: &FolderRule, record: &JobRecord) {
    let Ok(output) = state::open_root(&rule.output, &ctx.hot_folders) else {
        return;
    };
    for planned in record.plan.iter().flatten() {
        let Ok((sub, name)) = plan::checked(planned) else {
            continue;
        };
        let Ok(dir) = output.open_path(&sub, false) else {
            continue;
        };
        if dir.file_id(&name).is_some_and(|i| planned.ids.contains(&i)) {
            let _ = dir.remove(&name);
        }
    }
}

fn finish_done(
    ctx: &Context,
    rule: &Arc<FolderRule>,
    job: &Claimed,
    record: &JobRecord,
    shown: &Path,
    report: Vec<JobReport>,
) -> Outcome {
    let rel = record.rel();
    let moved = match rule.on_success {
        OnSuccess::Move => move_source(job, &rule.done, rel, &ctx.hot_folders, true)
            .map(|(p, id)| (Some(p), Some(id))),
        OnSuccess::Delete => job
            .area
            .dir
            .remove(&job.source_name())
            .map(|_| (None, None)),
        OnSuccess::Keep => move_source(job, &rule.path, rel, &ctx.hot_folders, false)
            .map(|(p, id)| (Some(p), Some(id))),
    };
    let (source_to, id) = match moved {
        Ok(v) => v,
        Err(e) if is_transient(&e) => {
            return Outcome::Deferred {
                error: JobError::from_stage(
                    shown,
                    StageError::new(Stage::Write, format!("cannot move the source away: {e}")),
                ),
            };
        }
        Err(e) => {
            // A failed file leaves no outputs, whatever stage it failed in.
            remove_outputs(ctx, rule, record);
            let err = StageError::new(Stage::Write, format!("cannot move the source away: {e}"));
            return fail(ctx, rule, job, rel, JobError::from_stage(shown, err));
        }
    };
    let mut kept = None;
    let mut written: Vec<(PathBuf, FileId)> = Vec::new();
    for planned in record.plan.iter().flatten() {
        if let (Ok((sub, name)), Some(id)) = (plan::checked(planned), planned.ids.last()) {
            written.push((rule.output.join(sub).join(name), *id));
        }
    }
    match (&source_to, id) {
        (Some(path), Some(id)) if rule.on_success == OnSuccess::Keep => {
            let back = path.strip_prefix(&rule.path).unwrap_or(path);
            let meta = std::fs::symlink_metadata(path).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta.and_then(|m| m.modified().ok());
            let key = kept_key(back, id, size, mtime.unwrap_or(SystemTime::UNIX_EPOCH));
            retention::remember_kept(rule, &key);
            kept = Some(key);
        }
        (Some(path), Some(id)) => written.push((path.clone(), id)),
        _ => {}
    }
    retention::record(rule, &written);
    job.close();
    Outcome::Done {
        report,
        source_to,
        kept,
    }
}

/// Moves the source to `root/rel` (a free numbered name if taken) and
/// returns where it went. Done files carry the time they finished (`touch`),
/// which retention counts from.
fn move_source(
    job: &Claimed,
    root: &Path,
    rel: &Path,
    hot: &[PathBuf],
    touch: bool,
) -> io::Result<(PathBuf, FileId)> {
    let sub = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().unwrap_or(OsStr::new("file"));
    let dir = state::open_root(root, hot)?.open_path(sub, true)?;
    let src = job.source_name();
    let (placed, _) = durable::first_free(name, |candidate| {
        job.area.dir.move_to(&src, &dir, candidate)
    })?;
    if touch && let Ok(f) = dir.open_file(&placed) {
        let _ = f.set_modified(SystemTime::now());
    }
    let id = dir
        .file_id(&placed)
        .ok_or_else(|| io::Error::other("the moved file vanished"))?;
    Ok((dir.path().join(placed), id))
}

/// The key under which a kept source is remembered: its place, identity,
/// size and mtime, so the same file is not taken again, but a new one with
/// its name, or the same file rewritten, is.
pub fn kept_key(rel: &Path, id: FileId, size: u64, mtime: SystemTime) -> String {
    let mtime = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hex: String = rel
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex} {} {} {size} {mtime}", id.dev, id.ino)
}

/// The failed file's name: short enough that `<name>.error.txt` fits.
const REASON_SUFFIX: &str = ".error.txt";

fn fail(ctx: &Context, rule: &FolderRule, job: &Claimed, rel: &Path, error: JobError) -> Outcome {
    // A name or a cause can carry newlines: one field per line, whatever the name.
    let text = format!(
        "file: {}\nstage: {}\nreason: {}\ntime: {}\n",
        printable(&error.file),
        error.stage,
        error.cause.escape_debug(),
        unix_time_now()
    );
    match put_in_failed(ctx, rule, job, rel, text.as_bytes()) {
        Ok(dest) => {
            job.close();
            Outcome::Failed {
                error,
                source_to: dest,
            }
        }
        Err(_) if !job.area.dir.exists(&job.source_name()) => {
            job.close();
            Outcome::Vanished {
                what: printable(&error.file),
            }
        }
        Err(e) => {
            // The reason could not be written (a full disk, most often): the
            // file stays claimed, and fails again properly later.
            tracing::error!(file = %error.file.display(), "cannot move to failed/ ({e}); it stays claimed and is tried again later. The failure was: {error}");
            Outcome::Deferred { error }
        }
    }
}

/// The reason is written before the file moves: a crash in between leaves a
/// reason without its file, never a failed file without its reason.
fn put_in_failed(
    ctx: &Context,
    rule: &FolderRule,
    job: &Claimed,
    rel: &Path,
    reason: &[u8],
) -> io::Result<PathBuf> {
    let sub = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().unwrap_or(OsStr::new("file"));
    let dir = state::open_root(&rule.failed, &ctx.hot_folders)?.open_path(sub, true)?;
    let src = job.source_name();
    let room = durable::NAME_MAX - REASON_SUFFIX.len();
    for n in 0..10_000 {
        let candidate = durable::numbered_within(name, n, room);
        let mut reason_name = candidate.clone();
        reason_name.push(REASON_SUFFIX);
        if dir.exists(&candidate) {
            continue;
        }
        match dir.write_new(&reason_name, reason, &job.tag()) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        match job.area.dir.move_to(&src, &dir, &candidate) {
            Ok(()) => return Ok(dir.path().join(candidate)),
            Err(e) => {
                let _ = dir.remove(&reason_name);
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
    }
    Err(io::Error::other("no free name in failed/"))
}

/// Labels a panic with the stage it happened in and fails the file with it.
pub fn panicked(
    ctx: &Context,
    rule: &FolderRule,
    job: &Claimed,
    stage: Stage,
    what: String,
) -> Outcome {
    let rel = job
        .read_record()
        .map(|r| r.rel().to_path_buf())
        .unwrap_or_else(|_| PathBuf::from(format!("{}-{}", job.area.owner, job.n)));
    let err = StageError::new(stage, format!("internal error: {what}"));
    let error = JobError::from_stage(rule.path.join(&rel), err);
    if let Ok(record) = job.read_record() {
        remove_outputs(ctx, rule, &record);
    }
    fail(ctx, rule, job, &rel, error)
}

/// The spec of one target of a folder.
pub fn spec_for(
    rule: &FolderRule,
    target: &crate::config::OutputTarget,
    base: &JobSpec,
) -> JobSpec {
    target.apply_to(JobSpec {
        scale: rule.smart.scale,
        model: rule.smart.model.clone(),
        level: rule.smart.quality,
        trim: rule.trim,
        metadata: rule.metadata,
        ..base.clone()
    })
}

fn unix_time_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{secs} (unix seconds)")
}
