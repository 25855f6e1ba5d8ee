//! `upscaled run`: watches the hot folders and runs every settled file through
//! the pipeline, on a bounded queue, until SIGTERM.
//!
//! Threads: this one (events, scans, claims, signals), a few workers (decode
//! and encode overlap; the model runs one inference at a time on all cores),
//! the notify watcher, and optionally the metrics server.

pub mod inbox;
pub mod jobs;
pub mod metrics;
pub mod systemd;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

use crate::config::{Config, FolderRule, WatchMode};
use crate::pipeline::{JobSpec, Pipeline};
use inbox::Settler;
use jobs::{Outcome, WorkArea};
use metrics::Metrics;

/// How long SIGTERM waits for files in progress before leaving them to the
/// next start (they stay claimed in the work folder and are re-run).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Options that come from the command line, not the config.
pub struct RunOptions {
    pub config_path: PathBuf,
    /// Worker threads; decode/encode of one file overlaps the model of another.
    pub workers: usize,
    /// The models a reloaded config may name (the running one was checked
    /// before start).
    pub catalog: crate::models::catalog::Catalog,
}

struct Job {
    rule: Arc<FolderRule>,
    work_file: PathBuf,
    claimed: Instant,
}

struct Folder {
    rule: Arc<FolderRule>,
    work: WorkArea,
    settler: Settler,
    kept: HashSet<String>,
    /// Something happened (event, start, reload): scan now.
    dirty: bool,
    next_poll: Instant,
    events: bool,
}

fn owner_id() -> String {
    format!(
        "{}-{}",
        crate::pipeline::write::host_name(),
        std::process::id()
    )
}

fn load_kept(rule: &FolderRule) -> HashSet<String> {
    std::fs::read_to_string(inbox::state_dir(rule).join("kept"))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn open_folder(rule: FolderRule, owner: &str) -> Result<Folder> {
    for dir in [&rule.path, &rule.output, &rule.done, &rule.failed] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for dir in [
        &rule.output,
        &rule.done,
        &rule.failed,
        &inbox::state_dir(&rule),
    ] {
        let removed = crate::pipeline::write::sweep_stale_temps(dir);
        if removed > 0 {
            tracing::info!(folder = %dir.display(), removed, "removed temporary files of a stopped run");
        }
    }
    let work = WorkArea::open(&rule, owner)?;
    let kept = load_kept(&rule);
    Ok(Folder {
        rule: Arc::new(rule),
        work,
        settler: Settler::default(),
        kept,
        dirty: true,
        next_poll: Instant::now(),
        events: false,
    })
}

/// The safety rescan interval: the poll interval when polling, else a slower
/// sweep that catches anything the events missed.
fn poll_every(rule: &FolderRule, events: bool) -> Duration {
    if events && rule.watch != WatchMode::Auto {
        rule.poll_interval.max(Duration::from_secs(60))
    } else {
        rule.poll_interval
    }
}

pub fn run(config: Config, options: RunOptions, pipeline: Pipeline) -> Result<()> {
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.metrics {
        metrics::serve(addr, metrics.clone())
            .with_context(|| format!("serving metrics on {addr}"))?;
        tracing::info!(%addr, "metrics on /metrics and /healthz");
    }

    let owner = owner_id();
    let mut config = config;
    let mut folders: Vec<Folder> = Vec::new();
    for rule in config.folders.clone() {
        folders.push(open_folder(rule, &owner)?);
    }

    let (event_tx, event_rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(event_tx).context("starting the file watcher")?;
    watch_all(&mut watcher, &mut folders);

    let pipeline = Arc::new(pipeline);
    let base = Arc::new(Mutex::new(base_spec(&config)));
    let workers = options.workers.max(1);
    let capacity = workers * 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(capacity);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<(Job, Outcome)>();
    let mut handles = Vec::new();
    for i in 0..workers {
        let (rx, tx) = (job_rx.clone(), done_tx.clone());
        let (pipeline, base, metrics) = (pipeline.clone(), base.clone(), metrics.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(rx, tx, pipeline, base, metrics))?,
        );
    }
    drop(done_tx);

    let mut seq: u64 = 0;
    // Claimed files not yet finished (queued or in a worker).
    let mut active: HashSet<PathBuf> = HashSet::new();
    // Files left by dead daemons (or by our own crash) go first.
    for f in &folders {
        adopt(f, &mut active, &job_tx, &metrics);
    }

    let watchdog = systemd::watchdog_interval();
    let mut last_ping = Instant::now();
    let mut last_status = String::new();
    let mut next_sweep = Instant::now();
    systemd::notify("READY=1");
    tracing::info!(
        folders = folders.len(),
        workers,
        "watching {}",
        folders
            .iter()
            .map(|f| f.rule.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    while !term.load(Ordering::Relaxed) {
        // Events only mark folders for a scan: the directory is the truth.
        match event_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => {
                mark_from_event(&mut folders, event);
                while let Ok(event) = event_rx.try_recv() {
                    mark_from_event(&mut folders, event);
                }
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        while let Ok((job, outcome)) = done_rx.try_recv() {
            active.remove(&job.work_file);
            finish(&job, outcome, &metrics);
        }
        if hup.swap(false, Ordering::Relaxed) {
            systemd::notify("RELOADING=1");
            let loaded = Config::load(&options.config_path).and_then(|new| {
                new.check_models(&options.config_path, &options.catalog)?;
                Ok(new)
            });
            match loaded {
                Ok(new) => {
                    folders = reload(folders, &new, &owner);
                    watch_all(&mut watcher, &mut folders);
                    *base.lock().unwrap_or_else(|p| p.into_inner()) = base_spec(&new);
                    config = new;
                    tracing::info!(folders = folders.len(), "configuration reloaded");
                }
                Err(e) => {
                    tracing::error!("reload refused, keeping the running configuration:\n{e}")
                }
            }
            systemd::notify("READY=1");
        }

        let now = Instant::now();
        for f in &mut folders {
            let poll_due = now >= f.next_poll;
            let settling = f.settler.pending() > 0;
            if !(f.dirty || poll_due || settling) {
                continue;
            }
            f.dirty = false;
            if poll_due {
                f.next_poll = now + poll_every(&f.rule, f.events);
            }
            let scan: Vec<_> = inbox::scan(&f.rule)
                .into_iter()
                .filter(|(p, _, _)| {
                    f.kept.is_empty()
                        || std::fs::metadata(p)
                            .is_ok_and(|m| !f.kept.contains(&jobs::ledger_key(p, &m)))
                })
                .collect();
            for path in f.settler.update(scan, f.rule.settle, now) {
                // Back-pressure: leave files in the inbox while the queue is full.
                if active.len() >= capacity {
                    break;
                }
                seq += 1;
                if let Some(work_file) = f.work.claim(&f.rule, &path, seq) {
                    f.settler.forget(&path);
                    active.insert(work_file.clone());
                    submit(&job_tx, &f.rule, work_file, &metrics);
                }
            }
        }

        if now >= next_sweep {
            next_sweep = now + Duration::from_secs(60);
            for f in &folders {
                // Orphans of daemons that died while we run (shared folders).
                adopt(f, &mut active, &job_tx, &metrics);
                if let Some(keep) = f.rule.retention {
                    sweep_retention(&f.rule, keep);
                }
            }
        }
        if let Some(every) = watchdog
            && last_ping.elapsed() >= every
        {
            systemd::notify("WATCHDOG=1");
            last_ping = Instant::now();
        }
        let status = format!(
            "STATUS={} in progress or queued, {} done, {} failed",
            active.len(),
            metrics.done.load(Ordering::Relaxed),
            metrics.failed.load(Ordering::Relaxed)
        );
        if status != last_status {
            systemd::notify(&status);
            last_status = status;
        }
    }

    systemd::notify("STOPPING=1");
    tracing::info!(
        in_flight = active.len(),
        "stopping: no new files; finishing the ones in progress"
    );
    drop(job_tx);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !active.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok((job, outcome)) => {
                active.remove(&job.work_file);
                finish(&job, outcome, &metrics);
            }
            Err(_) => {
                tracing::warn!(
                    in_flight = active.len(),
                    "shutdown grace over: unfinished files stay claimed and are re-run at the next start"
                );
                break;
            }
        }
    }
    drop(config);
    Ok(())
}

fn base_spec(config: &Config) -> JobSpec {
    JobSpec {
        limits: config.limits,
        threads: config.threads,
        routes: config.routes.clone(),
        // 0 turns the limit off.
        time_limit: (config.seconds_per_file > 0)
            .then(|| std::time::Duration::from_secs(config.seconds_per_file)),
        ..JobSpec::default()
    }
}

/// Takes over files claimed by daemons that died, and queues every file in
/// our work area that is not already queued.
fn adopt(f: &Folder, active: &mut HashSet<PathBuf>, tx: &SyncSender<Job>, metrics: &Metrics) {
    let adopted = f.work.adopt_orphans(&f.rule);
    if adopted > 0 {
        tracing::warn!(folder = %f.rule.path.display(), adopted, "re-running files left claimed by a stopped daemon");
    }
    for work_file in f.work.pending() {
        if active.insert(work_file.clone()) {
            submit(tx, &f.rule, work_file, metrics);
        }
    }
}

fn submit(tx: &SyncSender<Job>, rule: &Arc<FolderRule>, work_file: PathBuf, metrics: &Metrics) {
    metrics.queued.fetch_add(1, Ordering::Relaxed);
    let job = Job {
        rule: rule.clone(),
        work_file,
        claimed: Instant::now(),
    };
    // The loop never claims more than the queue holds, so this does not block long.
    if tx.send(job).is_err() {
        tracing::error!("workers are gone; the claimed file is re-run at the next start");
    }
}

fn worker(
    rx: Arc<Mutex<Receiver<Job>>>,
    tx: mpsc::Sender<(Job, Outcome)>,
    pipeline: Arc<Pipeline>,
    base: Arc<Mutex<JobSpec>>,
    metrics: Arc<Metrics>,
) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        metrics.queued.fetch_sub(1, Ordering::Relaxed);
        metrics.in_progress.fetch_add(1, Ordering::Relaxed);
        let base = base.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let outcome = crate::error::catch_panic(crate::error::Stage::Upscale, || {
            Ok::<_, crate::error::StageError>(jobs::process(
                &pipeline,
                &job.rule,
                &base,
                &job.work_file,
            ))
        });
        metrics.in_progress.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(outcome) => {
                if tx.send((job, outcome)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(file = %job.work_file.display(), "worker crashed: {e}"),
        }
    }
}

/// The one log line per finished file.
fn finish(job: &Job, outcome: Outcome, metrics: &Metrics) {
    let folder = job.rule.path.display().to_string();
    let secs = job.claimed.elapsed().as_secs_f64();
    match outcome {
        Outcome::Done { report, source_to } => {
            metrics.done.fetch_add(1, Ordering::Relaxed);
            for r in &report {
                metrics.record_stages(&r.stage_ms);
                for w in &r.warnings {
                    tracing::warn!(folder, file = %r.input.display(), "{w}");
                }
            }
            let Some(first) = report.first() else { return };
            let outputs: Vec<String> = report
                .iter()
                .flat_map(|r| &r.outputs)
                .map(|o| format!("{} ({} B)", o.path.display(), o.bytes))
                .collect();
            let stages: Vec<String> = first
                .stage_ms
                .iter()
                .map(|(s, ms)| format!("{s}={ms:.0}ms"))
                .collect();
            tracing::info!(
                folder,
                file = %first.input.display(),
                model = %first.upscaler,
                scale = first.model_scale,
                seconds = secs,
                "done {}x{} -> {}x{} via {} {}x: {}; {}; source -> {}",
                first.source_size.0,
                first.source_size.1,
                first.output_size.0,
                first.output_size.1,
                first.upscaler,
                first.model_scale,
                outputs.join(", "),
                stages.join(" "),
                source_to.map_or("deleted".into(), |p| p.display().to_string())
            );
        }
        Outcome::Failed { error, source_to } => {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                folder,
                file = %error.file.display(),
                stage = %error.stage,
                "{error}; moved to {}",
                source_to.display()
            );
        }
    }
}

fn watch_all(watcher: &mut notify::RecommendedWatcher, folders: &mut [Folder]) {
    for f in folders {
        if f.events || f.rule.watch == WatchMode::Poll {
            continue;
        }
        let mode = if f.rule.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        match watcher.watch(&f.rule.path, mode) {
            Ok(()) => f.events = true,
            Err(e) => tracing::warn!(
                folder = %f.rule.path.display(),
                "no file events ({e}); polling every {:?} instead",
                f.rule.poll_interval
            ),
        }
    }
}

fn mark_from_event(folders: &mut [Folder], event: notify::Result<notify::Event>) {
    match event {
        Ok(event) if !event.need_rescan() => {
            for f in folders.iter_mut() {
                if event.paths.iter().any(|p| p.starts_with(&f.rule.path)) {
                    f.dirty = true;
                }
            }
        }
        // Lost events (queue overflow) or watcher errors: look everywhere.
        Ok(_) | Err(_) => {
            for f in folders.iter_mut() {
                f.dirty = true;
            }
        }
    }
}

fn reload(old: Vec<Folder>, new: &Config, owner: &str) -> Vec<Folder> {
    let mut by_path: HashMap<PathBuf, Folder> =
        old.into_iter().map(|f| (f.rule.path.clone(), f)).collect();
    let mut folders = Vec::new();
    for rule in &new.folders {
        match by_path.remove(&rule.path) {
            // Same hot folder: keep its work area (and lock), take the new rules.
            Some(mut f) => {
                f.rule = Arc::new(rule.clone());
                f.dirty = true;
                folders.push(f);
            }
            None => match open_folder(rule.clone(), owner) {
                Ok(f) => folders.push(f),
                Err(e) => tracing::error!(folder = %rule.path.display(), "cannot open: {e:#}"),
            },
        }
    }
    folders
}

/// Privacy retention: sources in done/ and outputs older than `keep` go.
fn sweep_retention(rule: &FolderRule, keep: Duration) {
    let cutoff = SystemTime::now() - keep;
    for root in [&rule.done, &rule.output] {
        remove_older(root, cutoff);
    }
}

fn remove_older(dir: &Path, cutoff: SystemTime) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            remove_older(&path, cutoff);
        } else if meta.modified().is_ok_and(|m| m < cutoff) && std::fs::remove_file(&path).is_ok() {
            tracing::info!(file = %path.display(), "retention: deleted");
        }
    }
}
