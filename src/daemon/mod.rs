//! `upscaled run`: watches the hot folders and runs every settled file through
//! the pipeline, on a bounded queue, until SIGTERM.
//!
//! One loop, driven by one event type: file-system events, signals and
//! finished jobs arrive on one channel, and the loop sleeps until the next of
//! them or the next timer (a file settling, a poll, the minute sweep, the
//! watchdog). An idle daemon makes no system calls but that wait.
//!
//! Threads: the loop (scans, claims, bookkeeping), a few workers (decode and
//! encode overlap; the model runs one inference at a time on all cores), the
//! notify watcher, a signal thread, and optionally the metrics server.

pub mod claim;
pub mod inbox;
pub mod job;
pub mod metrics;
pub mod plan;
pub mod retention;
pub mod state;
pub mod systemd;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::cluster::coordinator::Coordinator;
use crate::config::{Config, FolderRule, WatchMode};
use crate::pipeline::{JobSpec, Pipeline};
use claim::{Claimed, WorkArea};
use inbox::Settler;
use job::{Context, Outcome};
use metrics::Metrics;

/// How long SIGTERM waits for files in progress before leaving them to the
/// next start (they stay claimed in the work folder and are re-run).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Events close together (a copy of 300 files) cause one scan, not 300.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A file that failed for a reason not its own (a full disk) waits this long
/// before it is tried again, doubling each time up to `RETRY_MAX`.
const RETRY_AFTER: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(600);

/// Orphans of daemons that died while we run, and retention, are checked this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Options that come from the command line, not the config.
pub struct RunOptions {
    pub config_path: PathBuf,
    /// Worker threads; decode/encode of one file overlaps the model of another.
    pub workers: usize,
    /// The models a reloaded config may name (the running one was checked
    /// before start).
    pub catalog: crate::models::catalog::Catalog,
    /// The models installed here (what in-process cluster workers serve).
    pub installed_models: Vec<String>,
}

/// Everything the loop reacts to.
enum Event {
    Fs(notify::Result<notify::Event>),
    Signal(i32),
    Finished(Job, Outcome),
}

#[derive(Clone)]
struct Job {
    rule: Arc<FolderRule>,
    claimed: Claimed,
    since: Instant,
    /// Tries that ended deferred (not the file's fault).
    deferrals: u32,
}

struct Folder {
    rule: Arc<FolderRule>,
    own: Arc<WorkArea>,
    adopted: Vec<Arc<WorkArea>>,
    settler: Settler,
    kept: HashSet<String>,
    /// Paths already reported as impossible to take (each is said once).
    warned: HashSet<PathBuf>,
    /// Files whose claim failed, not looked at again before the instant.
    claim_later: HashMap<PathBuf, Instant>,
    /// An event or a start asked for a scan, not before this instant.
    scan_at: Option<Instant>,
    last_scan: Instant,
    next_poll: Instant,
    events: bool,
}

fn open_folder(rule: FolderRule, hot_folders: &[PathBuf]) -> Result<Folder> {
    // A root inside the hot folder that users replaced (done/ as a symlink)
    // fails each file with the reason; it does not stop the daemon.
    for dir in [&rule.output, &rule.done, &rule.failed] {
        if let Err(e) = state::open_root(dir, hot_folders) {
            tracing::error!(folder = %dir.display(), "cannot open: {e}");
        }
    }
    let own = WorkArea::open(&rule)
        .with_context(|| format!("opening the work folder of {}", rule.path.display()))?;
    for dir in [&rule.output, &rule.done, &rule.failed] {
        if let Ok(d) = state::open_root(dir, hot_folders) {
            let removed = state::sweep_stale_temps(&d, 16);
            if removed > 0 {
                tracing::info!(folder = %dir.display(), removed, "removed temporary files of a stopped run");
            }
        }
    }
    let kept = retention::load_kept(&rule);
    let now = Instant::now();
    Ok(Folder {
        rule: Arc::new(rule),
        own,
        adopted: Vec::new(),
        settler: Settler::default(),
        kept,
        warned: HashSet::new(),
        claim_later: HashMap::new(),
        scan_at: Some(now),
        last_scan: now,
        next_poll: now,
        events: false,
    })
}

/// The safety rescan interval: the poll interval when polling, else a slower
/// sweep that catches anything the events missed.
fn poll_every(rule: &FolderRule, events: bool) -> Duration {
    if events && rule.watch != WatchMode::Auto {
        rule.poll_interval.max(Duration::from_secs(60))
    } else if events {
        rule.poll_interval.max(Duration::from_secs(5))
    } else {
        rule.poll_interval
    }
}

fn hot_folders(config: &Config) -> Arc<Vec<PathBuf>> {
    Arc::new(config.folders.iter().map(|f| f.path.clone()).collect())
}

fn context(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    remote: Option<Arc<Coordinator>>,
) -> Arc<Context> {
    Arc::new(Context {
        pipeline: pipeline.clone(),
        base: base_spec(config),
        hot_folders: hot_folders(config),
        remote,
    })
}

/// The daemon's state between events.
struct Daemon {
    folders: Vec<Folder>,
    ctx: Arc<Context>,
    /// Claimed files waiting for a worker, oldest first.
    backlog: VecDeque<Job>,
    /// Every claimed file not yet finished (backlog, retry or in a worker).
    known: HashSet<claim::JobKey>,
    /// Files that wait to be tried again, and when.
    retry: Vec<(Instant, Job)>,
    busy: usize,
    workers: usize,
    job_tx: Sender<(Job, Arc<Context>)>,
    metrics: Arc<Metrics>,
}

pub fn run(config: Config, options: RunOptions, pipeline: Pipeline) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Event>();
    let signals = [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ];
    let mut sig = signal_hook::iterator::Signals::new(signals)?;
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for s in sig.forever() {
                    if tx.send(Event::Signal(s)).is_err() {
                        return;
                    }
                }
            })?;
    }

    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.metrics {
        metrics::serve(addr, metrics.clone())
            .with_context(|| format!("serving metrics on {addr}"))?;
        tracing::info!(%addr, "metrics on /metrics and /healthz");
    }

    let pipeline = Arc::new(pipeline);
    let mut config = config;
    // Cluster mode: jobs run on workers; a worker thread here only waits
    // for one, so there are as many as jobs may be in flight.
    let remote = match &config.cluster {
        Some(settings) => {
            let models = options.catalog.models.keys().cloned().collect();
            let c = Coordinator::start(settings.clone(), models)
                .context("starting cluster mode (see docs/cluster.md)")?;
            let c2 = c.clone();
            metrics.add_source(Box::new(move || c2.metrics()));
            Some(c)
        }
        None => None,
    };
    let ctx = context(&config, &pipeline, remote.clone());
    let mut folders = Vec::new();
    for rule in config.folders.clone() {
        folders.push(open_folder(rule, &ctx.hot_folders)?);
    }
    let fs_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |e| {
        let _ = fs_tx.send(Event::Fs(e));
    })
    .context("starting the file watcher")?;
    watch_all(&mut watcher, &mut folders);

    let workers = match &config.cluster {
        Some(c) => c.max_in_flight,
        None => options.workers.max(1),
    };
    let (job_tx, job_rx) = mpsc::channel::<(Job, Arc<Context>)>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    for i in 0..workers {
        let (rx, tx, metrics) = (job_rx.clone(), tx.clone(), metrics.clone());
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(rx, tx, metrics))?;
    }
    drop(tx);

    let mut d = Daemon {
        folders,
        ctx,
        backlog: VecDeque::new(),
        known: HashSet::new(),
        retry: Vec::new(),
        busy: 0,
        workers,
        job_tx,
        metrics: metrics.clone(),
    };
    // Files left by dead daemons (or by our own crash) go first; they are
    // queued, not run, before READY, so a big backlog does not delay it.
    for i in 0..d.folders.len() {
        d.adopt(i);
    }
    if let (Some(c), Some(settings)) = (&remote, &config.cluster) {
        c.listen();
        let mut served = options.installed_models.clone();
        served.push(crate::cluster::NO_MODEL.to_string());
        c.spawn_local_workers(settings.workers, pipeline.clone(), served, config.threads);
    }

    let watchdog = systemd::watchdog_interval();
    let mut last_ping = Instant::now();
    let mut last_status = String::new();
    // The first sweep (retention, orphans of others) runs at once.
    let mut next_sweep = Instant::now();
    systemd::notify("READY=1");
    tracing::info!(
        folders = d.folders.len(),
        workers,
        "watching {}",
        d.folders
            .iter()
            .map(|f| f.rule.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut stopping = false;
    while !stopping {
        d.dispatch();
        let now = Instant::now();
        let mut wake = next_sweep;
        if let Some(every) = watchdog {
            wake = wake.min(last_ping + every);
        }
        for f in &d.folders {
            wake = wake.min(f.next_poll);
            if let Some(at) = f.scan_at {
                wake = wake.min(at);
            }
            // Files held back by a full queue wait for a job to finish instead.
            if d.known.len() < d.capacity()
                && let Some(at) = f.settler.next_due(f.rule.settle)
            {
                wake = wake.min(at);
            }
        }
        for (at, _) in &d.retry {
            wake = wake.min(*at);
        }
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(event) => {
                let mut next = Some(event);
                // Take everything that is already waiting before scanning.
                while let Some(event) = next {
                    match event {
                        Event::Fs(e) => d.mark_from_event(e),
                        Event::Finished(job, outcome) => d.finished(job, outcome),
                        Event::Signal(signal_hook::consts::SIGHUP) => {
                            config = d.reload(config, &options, &pipeline, &mut watcher);
                        }
                        Event::Signal(_) => stopping = true,
                    }
                    next = rx.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stopping {
            break;
        }
        let now = Instant::now();
        let due: Vec<(Instant, Job)> = d.retry.extract_if(.., |(at, _)| *at <= now).collect();
        for (_, job) in due {
            d.backlog.push_back(job);
        }
        for i in 0..d.folders.len() {
            d.scan_if_due(i, now);
        }
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY;
            for i in 0..d.folders.len() {
                d.adopt(i);
                let f = &d.folders[i];
                if let Some(keep) = f.rule.retention {
                    retention::sweep(&f.rule, keep, &d.ctx.hot_folders);
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
            d.known.len(),
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
        in_flight = d.busy,
        left_claimed = d.backlog.len() + d.retry.len(),
        "stopping: no new files; finishing the ones in progress, the rest stay claimed for the next start"
    );
    d.backlog.clear();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while d.busy > 0 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Finished(job, outcome)) => d.finished(job, outcome),
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    in_flight = d.busy,
                    "shutdown grace over: unfinished files stay claimed and are re-run at the next start"
                );
                break;
            }
        }
    }
    if d.busy == 0 {
        for i in 0..d.folders.len() {
            d.drop_drained_areas(i);
        }
    }
    drop(d);
    drop(config);
    Ok(())
}

impl Daemon {
    /// At most this many files are claimed at once (back-pressure).
    fn capacity(&self) -> usize {
        self.workers * 2
    }

    /// Hands backlog jobs to free workers.
    fn dispatch(&mut self) {
        while self.busy < self.workers
            && let Some(job) = self.backlog.pop_front()
        {
            self.busy += 1;
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
            if self.job_tx.send((job, self.ctx.clone())).is_err() {
                tracing::error!("workers are gone; claimed files are re-run at the next start");
                self.busy -= 1;
                return;
            }
        }
    }

    fn queue(&mut self, rule: &Arc<FolderRule>, claimed: Claimed) {
        if self.known.insert(claimed.key()) {
            if let Some(c) = &self.ctx.remote {
                c.hold(&job::job_id(&claimed));
            }
            self.metrics.queued.fetch_add(1, Ordering::Relaxed);
            self.backlog.push_back(Job {
                rule: rule.clone(),
                claimed,
                since: Instant::now(),
                deferrals: 0,
            });
        }
    }

    /// Takes over work areas of daemons that died, and queues their jobs.
    fn adopt(&mut self, i: usize) {
        let rule = self.folders[i].rule.clone();
        let mut held = vec![self.folders[i].own.clone()];
        held.extend(self.folders[i].adopted.iter().cloned());
        let new = WorkArea::adopt_orphans(&rule, &held);
        let mut jobs = Vec::new();
        for area in &new {
            for n in area.jobs() {
                jobs.push(area.job(n));
            }
        }
        if !jobs.is_empty() {
            tracing::warn!(folder = %rule.path.display(), files = jobs.len(), "re-running files left claimed by a stopped daemon");
        }
        self.folders[i].adopted.extend(new);
        for job in jobs {
            self.queue(&rule, job);
        }
        self.drop_drained_areas(i);
    }

    /// Adopted areas whose jobs are all finished go away, with their lock and
    /// any temp file the dead daemon left (not only at the next sweep: a
    /// daemon stopped before then would leave them behind).
    fn drop_drained_areas(&mut self, i: usize) {
        let rule = self.folders[i].rule.clone();
        let known = &self.known;
        self.folders[i].adopted.retain(|area| {
            let busy = known
                .iter()
                .any(|(folder, owner, _)| folder == &area.folder && owner == &area.owner);
            busy || !area.remove_if_drained(&rule)
        });
    }

    fn finished(&mut self, job: Job, outcome: Outcome) {
        self.busy = self.busy.saturating_sub(1);
        if let Some(c) = &self.ctx.remote
            && !matches!(outcome, Outcome::Deferred { .. })
        {
            c.release(&job::job_id(&job.claimed));
        }
        if let Outcome::Vanished { what } = &outcome {
            tracing::warn!(folder = %job.rule.path.display(), "a claimed file ({what}) was removed from the state folder by someone else; nothing left to do for it");
            self.known.remove(&job.claimed.key());
            return;
        }
        if let Outcome::Deferred { error } = &outcome {
            let mut job = job;
            let wait = RETRY_AFTER
                .saturating_mul(1 << job.deferrals.min(16))
                .min(RETRY_MAX);
            job.deferrals += 1;
            tracing::error!(
                folder = %job.rule.path.display(),
                file = %crate::error::printable(&error.file),
                stage = %error.stage,
                "{error}; not the file's fault: it stays claimed and is tried again in {}s",
                wait.as_secs()
            );
            self.metrics.queued.fetch_add(1, Ordering::Relaxed);
            self.retry.push((Instant::now() + wait, job));
            return;
        }
        self.known.remove(&job.claimed.key());
        if let Some(i) = self
            .folders
            .iter()
            .position(|f| f.rule.path == job.rule.path && f.own.owner != job.claimed.area.owner)
        {
            self.drop_drained_areas(i);
        }
        if let Outcome::Done {
            kept: Some(key), ..
        } = &outcome
            && let Some(f) = self
                .folders
                .iter_mut()
                .find(|f| f.rule.path == job.rule.path)
        {
            f.kept.insert(key.clone());
        }
        log_outcome(&job, outcome, &self.metrics);
    }

    fn mark_from_event(&mut self, event: notify::Result<notify::Event>) {
        let now = Instant::now();
        match event {
            Ok(event) if !event.need_rescan() => {
                // Our own scans open and read folders: those events are not news.
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                for f in self.folders.iter_mut() {
                    let news = event
                        .paths
                        .iter()
                        .any(|p| p.starts_with(&f.rule.path) && !inbox::is_own_path(&f.rule, p));
                    if news && f.scan_at.is_none() {
                        f.scan_at = Some(now.max(f.last_scan + DEBOUNCE));
                    }
                }
            }
            // Lost events (queue overflow) or watcher errors: look everywhere.
            Ok(_) | Err(_) => {
                for f in self.folders.iter_mut() {
                    f.scan_at.get_or_insert(now);
                }
            }
        }
    }

    fn scan_if_due(&mut self, i: usize, now: Instant) {
        let has_room = self.known.len() < self.capacity();
        let f = &mut self.folders[i];
        let poll_due = now >= f.next_poll;
        let scan_due = f.scan_at.is_some_and(|at| now >= at);
        let settle_due = has_room
            && f.settler
                .next_due(f.rule.settle)
                .is_some_and(|at| now >= at);
        if !(poll_due || scan_due || settle_due) {
            return;
        }
        f.scan_at = None;
        f.last_scan = now;
        if poll_due {
            f.next_poll = now + poll_every(&f.rule, f.events);
        }
        if !f.own.is_intact(&f.rule) {
            tracing::error!(folder = %f.rule.path.display(), "the state folder .upscaled was removed; making it again");
            match WorkArea::open(&f.rule) {
                Ok(area) => f.own = area,
                Err(e) => {
                    tracing::error!(folder = %f.rule.path.display(), "cannot make the state folder again: {e}");
                    return;
                }
            }
        }
        f.claim_later.retain(|_, at| *at > now);
        let scan: Vec<_> = inbox::scan(&f.rule, &mut f.warned)
            .into_iter()
            .filter(|c| !f.claim_later.contains_key(&c.rel))
            .filter(|c| {
                f.kept.is_empty()
                    || !f
                        .kept
                        .contains(&job::kept_key(&c.rel, c.id, c.size, c.mtime))
            })
            .map(|c| (c.rel, c.size, c.mtime))
            .collect();
        let ready = f.settler.update(scan, f.rule.settle, now);
        let capacity = self.capacity();
        let mut cannot_take = 0usize;
        for rel in ready {
            // Back-pressure: leave files in the inbox while enough are claimed.
            if self.known.len() >= capacity {
                break; // looked at again when a job finishes
            }
            let f = &mut self.folders[i];
            match f.own.claim(&f.rule, &rel) {
                Ok(Some(claimed)) => {
                    f.settler.forget(&rel);
                    let rule = f.rule.clone();
                    self.queue(&rule, claimed);
                }
                Ok(None) => f.settler.forget(&rel),
                Err(e) => {
                    // Left where it is; looked at again later, said once.
                    let path = f.rule.path.join(&rel);
                    f.settler.forget(&rel);
                    f.claim_later.insert(rel, now + RETRY_AFTER);
                    if f.warned.insert(path.clone()) {
                        if cannot_take == 0 {
                            tracing::warn!(file = %crate::error::printable(&path), "cannot take this file: {e}; it is left where it is and tried again later (said once)");
                        }
                        cannot_take += 1;
                    }
                }
            }
        }
        if cannot_take > 1 {
            tracing::warn!(folder = %self.folders[i].rule.path.display(), "{} more files cannot be taken for now (said once each)", cannot_take - 1);
        }
    }

    fn reload(
        &mut self,
        config: Config,
        options: &RunOptions,
        pipeline: &Arc<Pipeline>,
        watcher: &mut notify::RecommendedWatcher,
    ) -> Config {
        systemd::notify("RELOADING=1");
        let loaded = Config::load(&options.config_path).and_then(|new| {
            new.check_models(&options.config_path, &options.catalog)?;
            Ok(new)
        });
        let config = match loaded {
            Ok(new) if new.cluster != config.cluster => {
                tracing::error!(
                    "reload refused: the cluster: section changed; restart the daemon for that"
                );
                let _ = new;
                config
            }
            Ok(new) => {
                let ctx = context(&new, pipeline, self.ctx.remote.clone());
                let old = std::mem::take(&mut self.folders);
                self.folders = reload_folders(old, &new, &ctx.hot_folders);
                watch_all(watcher, &mut self.folders);
                self.ctx = ctx;
                tracing::info!(folders = self.folders.len(), "configuration reloaded");
                new
            }
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration:\n{e}");
                config
            }
        };
        systemd::notify("READY=1");
        config
    }
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

/// A worker: runs jobs until the channel closes. A panic fails only its file,
/// labelled with the stage it happened in, and the worker goes on.
/// What workers take jobs from: each job with the context it runs under.
type WorkQueue = Arc<Mutex<Receiver<(Job, Arc<Context>)>>>;

fn worker(rx: WorkQueue, tx: Sender<Event>, metrics: Arc<Metrics>) {
    loop {
        let (job, ctx) = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(item) => item,
                Err(_) => return,
            }
        };
        metrics.in_progress.fetch_add(1, Ordering::Relaxed);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job::process(&ctx, &job.rule, &job.claimed)
        }));
        let outcome = match run {
            Ok(outcome) => outcome,
            Err(payload) => {
                let stage = crate::error::current_stage();
                let what = crate::error::panic_text(payload.as_ref());
                tracing::error!(file = ?job.claimed.key(), %stage, "worker panicked: {what}");
                job::panicked(&ctx, &job.rule, &job.claimed, stage, what)
            }
        };
        metrics.in_progress.fetch_sub(1, Ordering::Relaxed);
        if tx.send(Event::Finished(job, outcome)).is_err() {
            return;
        }
    }
}

/// The one log line per finished file.
fn log_outcome(job: &Job, outcome: Outcome, metrics: &Metrics) {
    let folder = job.rule.path.display().to_string();
    let secs = job.since.elapsed().as_secs_f64();
    match outcome {
        Outcome::Done {
            report, source_to, ..
        } => {
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
                .map(|o| format!("{} ({} B)", crate::error::printable(&o.path), o.bytes))
                .collect();
            let stages: Vec<String> = first
                .stage_ms
                .iter()
                .map(|(s, ms)| format!("{s}={ms:.0}ms"))
                .collect();
            let worker = first
                .worker
                .as_deref()
                .map(|w| format!(" on worker {}", crate::error::printable(Path::new(w))))
                .unwrap_or_default();
            tracing::info!(
                folder,
                file = %crate::error::printable(&first.input),
                model = %first.upscaler,
                scale = first.model_scale,
                seconds = secs,
                "done {}x{} -> {}x{} via {} {}x{worker}: {}; {}; source -> {}",
                first.source_size.0,
                first.source_size.1,
                first.output_size.0,
                first.output_size.1,
                first.upscaler,
                first.model_scale,
                outputs.join(", "),
                stages.join(" "),
                source_to.map_or("deleted".into(), |p| crate::error::printable(&p))
            );
        }
        Outcome::Failed { error, source_to } => {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                folder,
                file = %crate::error::printable(&error.file),
                stage = %error.stage,
                "{error}; moved to {}",
                crate::error::printable(&source_to)
            );
        }
        Outcome::Deferred { .. } | Outcome::Vanished { .. } => {}
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

fn reload_folders(old: Vec<Folder>, new: &Config, hot_folders: &[PathBuf]) -> Vec<Folder> {
    let mut by_path: HashMap<PathBuf, Folder> =
        old.into_iter().map(|f| (f.rule.path.clone(), f)).collect();
    let mut folders = Vec::new();
    for rule in &new.folders {
        match by_path.remove(&rule.path) {
            // Same hot folder: keep its work areas (and locks), take the new rules.
            Some(mut f) => {
                f.rule = Arc::new(rule.clone());
                f.scan_at = Some(Instant::now());
                folders.push(f);
            }
            None => match open_folder(rule.clone(), hot_folders) {
                Ok(f) => folders.push(f),
                Err(e) => tracing::error!(folder = %rule.path.display(), "cannot open: {e:#}"),
            },
        }
    }
    folders
}
