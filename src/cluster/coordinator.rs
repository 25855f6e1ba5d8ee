//! The coordinator's side: publishes a claimed file's tasks, waits for the
//! workers' reports, checks every output against the plan and hands the
//! bytes to the daemon's usual write path. Results are acknowledged only
//! after the outputs are written and the source moved, so a crash at any
//! point leaves them to be taken again by the next start.
//!
//! The daemon's worker threads call [`Coordinator::render`], which blocks
//! on this module's tokio runtime; a listener task sorts incoming reports
//! by job: to the thread waiting for it, to a stash when the job is claimed
//! but not running yet (after a restart), or away (a job already finished).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::wire::{self, Outcome, Report, Task, TaskTarget, WireSpec};
use super::{Names, token};
use crate::config::ClusterSettings;
use crate::error::{Stage, StageError};
use crate::pipeline::encode::{Encoded, OutputFormat};
use crate::pipeline::{JobSpec, Rendered};

/// The targets of one file that use one model, with the size each output
/// must have.
pub struct PlannedTask {
    pub model: Option<String>,
    pub targets: Vec<PlannedTarget>,
}

pub struct PlannedTarget {
    pub index: usize,
    pub spec: JobSpec,
    pub expected: (u32, u32),
}

/// Why a remote job did not come back.
pub enum RemoteError {
    /// The file's fault (the pipeline refused it) or no worker could do it.
    File(StageError),
    /// NATS is not reachable now: try again later.
    Transient(StageError),
}

/// One report with the message to acknowledge once it is dealt with.
struct Delivery {
    report: Report,
    msg: jetstream::Message,
}

#[derive(Default)]
struct Routing {
    /// Jobs the daemon holds claimed (queued, waiting or running).
    live: HashSet<String>,
    waiters: HashMap<String, mpsc::UnboundedSender<Delivery>>,
    stash: HashMap<String, Vec<Delivery>>,
}

#[derive(Default)]
struct Stats {
    published: AtomicU64,
    in_flight: AtomicU64,
    refused: AtomicU64,
    queue_depth: AtomicU64,
    at_workers: AtomicU64,
    waiting_for_model: AtomicU64,
    /// Per worker: tasks done and their seconds.
    by_worker: Mutex<BTreeMap<String, (u64, f64)>>,
}

pub struct Coordinator {
    rt: tokio::runtime::Runtime,
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClusterSettings,
    names: Names,
    client: async_nats::Client,
    js: jetstream::Context,
    store: jetstream::object_store::ObjectStore,
    registry: jetstream::kv::Store,
    /// Unique per start: a task published again after a restart is a new
    /// message, never one the server drops as a duplicate of the old one.
    incarnation: String,
    models: Vec<String>,
    routing: Mutex<Routing>,
    stats: Stats,
}

impl Coordinator {
    /// Connects and makes the streams, the registry, the bucket and a job
    /// consumer for every model in `models` (and for `none`).
    pub fn start(settings: ClusterSettings, models: Vec<String>) -> Result<Arc<Coordinator>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cluster")
            .enable_all()
            .build()?;
        let names = Names::new(&settings.stream);
        let inner = rt.block_on(async {
            let client = super::connect(
                &settings.login,
                &format!("upscaled coordinator {}", settings.name),
            )
            .await?;
            let js = jetstream::new(client.clone());
            super::ensure_streams(&js, &names).await?;
            let registry = super::workers_registry(&js, &names).await?;
            let store = super::object_store(&js, &settings.bucket).await?;
            let mut all = models.clone();
            all.push(super::NO_MODEL.to_string());
            for model in &all {
                super::ensure_job_consumer(
                    &js,
                    &names,
                    model,
                    settings.ack_wait,
                    settings.max_deliver,
                )
                .await?;
            }
            let results = js
                .get_stream(names.results_stream())
                .await
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", names.results_stream()))?;
            let consumer = names.result_consumer(&settings.name);
            results
                .get_or_create_consumer(
                    &consumer,
                    jetstream::consumer::pull::Config {
                        durable_name: Some(consumer.clone()),
                        filter_subject: names.result_subject(&settings.name),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        // Held until written; a stashed one is not resent soon.
                        ack_wait: Duration::from_secs(600),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("making consumer {consumer}: {e}"))?;
            anyhow::Ok(Inner {
                incarnation: format!(
                    "{}{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis())
                ),
                settings,
                names,
                client,
                js,
                store,
                registry,
                models: all,
                routing: Mutex::new(Routing::default()),
                stats: Stats::default(),
            })
        })?;
        tracing::info!(
            nats = %inner.settings.login.url,
            coordinator = %inner.settings.name,
            stream = %inner.names.stream,
            "cluster: coordinating workers through NATS JetStream"
        );
        Ok(Arc::new(Coordinator {
            rt,
            inner: Arc::new(inner),
        }))
    }

    /// Starts taking reports (after the daemon has queued the files that
    /// earlier runs left claimed, so their reports find them live).
    pub fn listen(&self) {
        let inner = self.inner.clone();
        self.rt.spawn(async move { inner.listen().await });
        let inner = self.inner.clone();
        self.rt.spawn(async move { inner.watch_queue().await });
    }

    /// Workers inside this process, taking jobs like any other.
    pub fn spawn_local_workers(
        &self,
        n: usize,
        pipeline: Arc<crate::pipeline::Pipeline>,
        models: Vec<String>,
        threads: usize,
    ) {
        for i in 0..n {
            let ctx = super::worker::WorkerContext {
                name: format!("{}-local{}", self.inner.settings.name, i + 1),
                pipeline: pipeline.clone(),
                models: models.clone(),
                threads,
                inject: None,
                names: self.inner.names.clone(),
                client: self.inner.client.clone(),
                js: self.inner.js.clone(),
                counters: Default::default(),
            };
            self.rt.spawn(async move {
                let (_keep, stop) = tokio::sync::watch::channel(false);
                if let Err(e) = super::worker::serve(Arc::new(ctx), stop).await {
                    tracing::error!("local cluster worker stopped: {e:#}");
                }
                drop(_keep);
            });
        }
    }

    /// A claimed file: its reports are kept for it until it runs.
    pub fn hold(&self, job: &str) {
        lock(&self.inner.routing).live.insert(job.to_string());
    }

    /// The file is done or failed: reports still kept for it go.
    pub fn release(&self, job: &str) {
        let stale = {
            let mut r = lock(&self.inner.routing);
            r.live.remove(job);
            r.stash.remove(job).unwrap_or_default()
        };
        if !stale.is_empty() {
            let inner = self.inner.clone();
            self.rt.spawn(async move {
                for d in stale {
                    inner.drop_report(d).await;
                }
            });
        }
    }

    /// Runs a file's tasks on the workers; blocks until every task reported.
    pub fn render(
        &self,
        job: &str,
        input: &Path,
        bytes: &[u8],
        tasks: Vec<PlannedTask>,
    ) -> Result<(Vec<(usize, Rendered)>, Receipt), RemoteError> {
        self.inner.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let out = self
            .rt
            .block_on(self.inner.clone().render(job, input, bytes, tasks));
        self.inner.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        out.map(|(rendered, held, objects)| {
            (
                rendered,
                Receipt {
                    coordinator: Some((self.rt.handle().clone(), self.inner.clone())),
                    job: job.to_string(),
                    held,
                    objects,
                },
            )
        })
    }

    /// Prometheus lines for `/metrics`.
    pub fn metrics(&self) -> String {
        self.inner.metrics()
    }
}

/// The reports and objects behind a finished render: acknowledged and
/// deleted once the outputs are written (`settle`); handed back to the
/// stash when the write is to be tried again later (dropped unsettled).
pub struct Receipt {
    coordinator: Option<(tokio::runtime::Handle, Arc<Inner>)>,
    job: String,
    held: Vec<Delivery>,
    objects: Vec<String>,
}

impl Receipt {
    pub fn settle(mut self) {
        let Some((rt, inner)) = self.coordinator.take() else {
            return;
        };
        let held = std::mem::take(&mut self.held);
        let objects = std::mem::take(&mut self.objects);
        rt.block_on(async {
            for d in held {
                ack(&d.msg, AckKind::Ack).await;
            }
            for name in objects {
                let _ = inner.store.delete(&name).await;
            }
        });
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some((_, inner)) = self.coordinator.take() {
            let held = std::mem::take(&mut self.held);
            lock(&inner.routing)
                .stash
                .entry(self.job.clone())
                .or_default()
                .extend(held);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn ack(msg: &jetstream::Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::debug!("cluster: acknowledging a report: {e}");
    }
}

/// An accepted result: the rendered targets, the report to acknowledge
/// after the write, and the objects to delete then.
type Accepted = (Vec<(usize, Rendered)>, Delivery, Vec<String>);

/// One task's progress inside `render`.
struct TaskState {
    planned: PlannedTask,
    tries: u32,
    refused: u32,
    /// Workers that took it or answered for it, in order.
    tried: Vec<String>,
    done: Option<Accepted>,
    published: Instant,
    said_no_worker: bool,
}

enum Step {
    Go,
    Fail(StageError),
}

impl Inner {
    fn prefix(&self, job: &str) -> String {
        format!("{}/{}", token(&self.settings.name), job)
    }

    async fn render(
        self: Arc<Self>,
        job: &str,
        input: &Path,
        bytes: &[u8],
        planned: Vec<PlannedTask>,
    ) -> Result<(Vec<(usize, Rendered)>, Vec<Delivery>, Vec<String>), RemoteError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stashed = {
            let mut r = lock(&self.routing);
            r.live.insert(job.to_string());
            r.waiters.insert(job.to_string(), tx);
            r.stash.remove(job).unwrap_or_default()
        };
        let _unregister = Unregister(&self.routing, job.to_string());
        let source = format!("{}/src", self.prefix(job));
        let mut tasks: Vec<TaskState> = planned
            .into_iter()
            .map(|p| TaskState {
                planned: p,
                tries: 0,
                refused: 0,
                tried: Vec::new(),
                done: None,
                published: Instant::now(),
                said_no_worker: false,
            })
            .collect();
        // Reports of an earlier run (or an earlier try) count first.
        for d in stashed {
            if let Step::Fail(e) = self.take_report(&mut tasks, d, input).await {
                self.clean_up(job, &mut tasks).await;
                return Err(RemoteError::File(e));
            }
        }
        if tasks.iter().any(|t| t.done.is_none()) {
            self.put_source(&source, bytes).await?;
            for (i, t) in tasks.iter_mut().enumerate() {
                if t.done.is_none() {
                    self.publish(job, i, t, &source, bytes, input).await?;
                }
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        while tasks.iter().any(|t| t.done.is_none()) {
            tokio::select! {
                d = rx.recv() => {
                    let Some(d) = d else { break };
                    match self.take_report(&mut tasks, d, input).await {
                        Step::Go => {}
                        Step::Fail(e) => {
                            self.clean_up(job, &mut tasks).await;
                            return Err(RemoteError::File(e));
                        }
                    }
                    for (i, t) in tasks.iter_mut().enumerate() {
                        if t.done.is_none() && t.tries <= t.refused {
                            self.publish(job, i, t, &source, bytes, input).await?;
                        }
                    }
                }
                _ = tick.tick() => self.say_if_nobody_serves(&mut tasks, input).await,
            }
        }
        let mut rendered = Vec::new();
        let mut held = Vec::new();
        let mut objects = vec![source];
        for t in tasks {
            if let Some((r, d, o)) = t.done {
                let w = d.report.worker.clone();
                let secs = match &d.report.outcome {
                    Outcome::Done { seconds, .. } => *seconds,
                    _ => 0.0,
                };
                let mut by = lock(&self.stats.by_worker);
                let e = by.entry(w).or_default();
                e.0 += 1;
                e.1 += secs;
                drop(by);
                rendered.extend(r);
                held.push(d);
                objects.extend(o);
            }
        }
        rendered.sort_by_key(|(i, _)| *i);
        Ok((rendered, held, objects))
    }

    async fn put_source(&self, name: &str, bytes: &[u8]) -> Result<(), RemoteError> {
        if let Ok(info) = self.store.info(name).await
            && info.size == bytes.len()
        {
            return Ok(());
        }
        let mut reader = bytes;
        self.store
            .put(name, &mut reader)
            .await
            .map(|_| ())
            .map_err(|e| {
                transient(format!(
                    "cannot store the source in the NATS object store: {e}"
                ))
            })
    }

    async fn publish(
        &self,
        job: &str,
        i: usize,
        t: &mut TaskState,
        source: &str,
        bytes: &[u8],
        input: &Path,
    ) -> Result<(), RemoteError> {
        t.tries += 1;
        let model = t.planned.model.clone();
        let task = Task {
            version: wire::VERSION,
            job: job.to_string(),
            task: i as u32,
            attempt: format!("{}-{}", self.incarnation, t.tries),
            reply: self.names.result_subject(&self.settings.name),
            bucket: self.settings.bucket.clone(),
            source: source.to_string(),
            source_sha256: wire::sha256_hex(bytes),
            source_bytes: bytes.len() as u64,
            input: crate::error::printable(input),
            model: model.clone(),
            targets: t
                .planned
                .targets
                .iter()
                .map(|p| TaskTarget {
                    index: p.index as u32,
                    spec: WireSpec::from_spec(&p.spec),
                })
                .collect(),
            ack_wait_ms: self.settings.ack_wait.as_millis() as u64,
            max_deliver: self.settings.max_deliver,
        };
        let payload = serde_json::to_vec(&task).expect("a task serialises");
        let subject = self
            .names
            .job_subject(model.as_deref().unwrap_or(super::NO_MODEL));
        if let Some(m) = &model
            && !self.models.contains(m)
        {
            // A model of a reloaded config: its consumer is made now.
            super::ensure_job_consumer(
                &self.js,
                &self.names,
                m,
                self.settings.ack_wait,
                self.settings.max_deliver,
            )
            .await
            .map_err(|e| transient(format!("{e:#}")))?;
        }
        let sent = async {
            self.js
                .publish(subject, payload.into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        sent.await
            .map_err(|e| transient(format!("cannot publish the job to NATS: {e}")))?;
        t.published = Instant::now();
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies one report to the job's tasks.
    async fn take_report(&self, tasks: &mut [TaskState], d: Delivery, input: &Path) -> Step {
        let i = d.report.task as usize;
        let Some(t) = tasks.get_mut(i) else {
            self.drop_report(d).await;
            return Step::Go;
        };
        let worker = d.report.worker.clone();
        let note = |t: &mut TaskState| {
            if !t.tried.contains(&worker) {
                t.tried.push(worker.clone());
            }
        };
        match &d.report.outcome {
            Outcome::Started { .. } => {
                note(t);
                ack(&d.msg, AckKind::Ack).await;
                Step::Go
            }
            Outcome::Failed { stage, cause } => {
                note(t);
                ack(&d.msg, AckKind::Ack).await;
                Step::Fail(StageError::new(
                    *stage,
                    format!("{cause} (on worker {worker})"),
                ))
            }
            Outcome::GaveUp { deliveries } => {
                ack(&d.msg, AckKind::Ack).await;
                Step::Fail(StageError::new(
                    Stage::Upscale,
                    format!(
                        "no worker finished it in {deliveries} deliveries (each was stopped, killed or went quiet for {}s); tried by: {}",
                        self.settings.ack_wait.as_secs(),
                        tried_list(&t.tried)
                    ),
                ))
            }
            Outcome::Done { targets, .. } => {
                note(t);
                if t.done.is_some() {
                    // A second delivery's result (a worker died after
                    // reporting): the first one counts.
                    self.drop_report(d).await;
                    return Step::Go;
                }
                let objects: Vec<String> = targets
                    .iter()
                    .flat_map(|x| x.outputs.iter().map(|o| o.object.clone()))
                    .filter(|o| self.owns(&d.report.job, o))
                    .collect();
                match self.accept(&t.planned, targets, input).await {
                    Ok(rendered) => {
                        t.done = Some((rendered, d, objects));
                        Step::Go
                    }
                    Err(why) => {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        t.refused += 1;
                        tracing::warn!(
                            file = %crate::error::printable(input),
                            %worker,
                            "cluster: refused a worker's result: {why}"
                        );
                        self.drop_report(d).await;
                        if t.refused >= self.settings.max_deliver {
                            return Step::Fail(StageError::new(
                                Stage::Write,
                                format!(
                                    "refused {} results that did not match the plan (last: {why}); tried by: {}",
                                    t.refused,
                                    tried_list(&t.tried)
                                ),
                            ));
                        }
                        Step::Go
                    }
                }
            }
        }
    }

    /// A report's outputs, fetched and checked against the plan.
    async fn accept(
        &self,
        planned: &PlannedTask,
        targets: &[wire::DoneTarget],
        input: &Path,
    ) -> Result<Vec<(usize, Rendered)>, String> {
        let mut got: Vec<usize> = targets.iter().map(|t| t.index as usize).collect();
        let mut want: Vec<usize> = planned.targets.iter().map(|t| t.index).collect();
        got.sort_unstable();
        want.sort_unstable();
        if got != want {
            return Err(format!("targets {got:?} where the plan has {want:?}"));
        }
        let mut out = Vec::new();
        for done in targets {
            let plan = planned
                .targets
                .iter()
                .find(|p| p.index == done.index as usize)
                .expect("checked above");
            let formats: Vec<OutputFormat> = crate::pipeline::dedup(&plan.spec.formats);
            let reported: Vec<OutputFormat> = done.outputs.iter().map(|o| o.format).collect();
            if formats != reported {
                return Err(format!(
                    "formats {reported:?} where the plan has {formats:?}"
                ));
            }
            let mut encoded = Vec::new();
            for o in &done.outputs {
                if !self.owns_any(&o.object) || o.bytes > 1 << 31 {
                    return Err(format!("an output object outside its job: {:?}", o.object));
                }
                let bytes = self.fetch(&o.object).await?;
                super::verify::check(
                    &bytes,
                    o.format,
                    &o.sha256,
                    plan.expected,
                    plan.spec.max_bytes,
                )
                .map_err(|e| format!("{} output: {e}", o.format.extension()))?;
                encoded.push(Encoded {
                    format: o.format,
                    bytes,
                    quality: o.quality,
                    trials: o.trials,
                });
            }
            let mut report = done.report.clone();
            report.input = input.to_path_buf();
            report.outputs.clear();
            out.push((done.index as usize, Rendered { report, encoded }));
        }
        Ok(out)
    }

    async fn fetch(&self, name: &str) -> Result<Vec<u8>, String> {
        use tokio::io::AsyncReadExt;
        let mut object = self
            .store
            .get(name)
            .await
            .map_err(|e| format!("output {name} cannot be fetched: {e}"))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("output {name} cannot be read: {e}"))?;
        Ok(bytes)
    }

    fn owns(&self, job: &str, object: &str) -> bool {
        object.starts_with(&format!("{}/", self.prefix(job)))
    }

    fn owns_any(&self, object: &str) -> bool {
        object.starts_with(&format!("{}/", token(&self.settings.name))) && !object.contains("..")
    }

    /// A report no job waits for: its outputs go (only objects under its
    /// own job's prefix: a forged report cannot delete anything else).
    async fn drop_report(&self, d: Delivery) {
        if let Outcome::Done { targets, .. } = &d.report.outcome {
            for o in targets.iter().flat_map(|t| &t.outputs) {
                if self.owns(&d.report.job, &o.object) {
                    let _ = self.store.delete(&o.object).await;
                }
            }
        }
        ack(&d.msg, AckKind::Ack).await;
    }

    /// A failed job's held reports and objects go.
    async fn clean_up(&self, job: &str, tasks: &mut [TaskState]) {
        for t in tasks.iter_mut() {
            if let Some((_, d, objects)) = t.done.take() {
                for o in objects {
                    let _ = self.store.delete(&o).await;
                }
                ack(&d.msg, AckKind::Ack).await;
            }
        }
        let _ = self.store.delete(format!("{}/src", self.prefix(job))).await;
    }

    /// A task nobody took for a while, whose model no live worker has, is
    /// said once (it waits; it is never sent to another model).
    async fn say_if_nobody_serves(&self, tasks: &mut [TaskState], input: &Path) {
        let waiting: Vec<usize> = (0..tasks.len())
            .filter(|&i| {
                let t = &tasks[i];
                t.done.is_none()
                    && t.tried.is_empty()
                    && !t.said_no_worker
                    && t.published.elapsed() >= Duration::from_secs(5)
            })
            .collect();
        if waiting.is_empty() {
            return;
        }
        let workers = super::live_workers(&self.registry).await;
        for i in waiting {
            let t = &mut tasks[i];
            let model = t
                .planned
                .model
                .clone()
                .unwrap_or_else(|| super::NO_MODEL.into());
            if !workers.iter().any(|w| w.models.contains(&model)) {
                t.said_no_worker = true;
                self.stats.waiting_for_model.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    file = %crate::error::printable(input),
                    %model,
                    "cluster: the job waits: no worker serves model {model} (live workers: {}); start one that has it",
                    if workers.is_empty() {
                        "none".to_string()
                    } else {
                        workers.iter().map(|w| w.name.clone()).collect::<Vec<_>>().join(", ")
                    }
                );
            }
        }
    }

    /// Sorts reports to their jobs, for as long as the process runs.
    async fn listen(self: Arc<Self>) {
        loop {
            let consumer: Result<jetstream::consumer::PullConsumer, _> = async {
                self.js
                    .get_stream(self.names.results_stream())
                    .await
                    .map_err(|e| e.to_string())?
                    .get_consumer(&self.names.result_consumer(&self.settings.name))
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            let mut messages = match consumer {
                Ok(c) => match c.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("cluster: cannot read results: {e}; trying again");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!("cluster: cannot open the results consumer: {e}; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            while let Some(item) = messages.next().await {
                match item {
                    Ok(msg) => self.route(msg).await,
                    Err(e) => {
                        tracing::debug!("cluster: results: {e}");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn route(&self, msg: jetstream::Message) {
        let report = match serde_json::from_slice::<Report>(&msg.payload) {
            Ok(r) if r.version == wire::VERSION => r,
            _ => {
                tracing::warn!("cluster: dropped a result that is not a report of this version");
                ack(&msg, AckKind::Term).await;
                return;
            }
        };
        let job = report.job.clone();
        let mut d = Delivery { report, msg };
        {
            let mut r = lock(&self.routing);
            if let Some(tx) = r.waiters.get(&job) {
                match tx.send(d) {
                    Ok(()) => return,
                    Err(back) => d = back.0,
                }
            }
            if r.live.contains(&job) {
                r.stash.entry(job).or_default().push(d);
                return;
            }
        }
        self.drop_report(d).await;
    }

    /// Queue depth for the metrics, from the job consumers.
    async fn watch_queue(self: Arc<Self>) {
        loop {
            let mut pending = 0u64;
            let mut at_workers = 0u64;
            if let Ok(stream) = self.js.get_stream(self.names.jobs_stream()).await {
                for model in &self.models {
                    if let Ok(info) = stream.consumer_info(self.names.job_consumer(model)).await {
                        pending += info.num_pending;
                        at_workers += info.num_ack_pending as u64;
                    }
                }
            }
            self.stats.queue_depth.store(pending, Ordering::Relaxed);
            self.stats.at_workers.store(at_workers, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    fn metrics(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        for (name, help, kind, v) in [
            (
                "upscaled_cluster_queue_depth",
                "Tasks in the NATS queue no worker has taken yet.",
                "gauge",
                s.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "upscaled_cluster_at_workers",
                "Tasks a worker has taken and not finished.",
                "gauge",
                s.at_workers.load(Ordering::Relaxed),
            ),
            (
                "upscaled_cluster_in_flight",
                "Files of this coordinator waiting for workers.",
                "gauge",
                s.in_flight.load(Ordering::Relaxed),
            ),
            (
                "upscaled_cluster_published_total",
                "Tasks published.",
                "counter",
                s.published.load(Ordering::Relaxed),
            ),
            (
                "upscaled_cluster_refused_total",
                "Worker results refused by the plan check.",
                "counter",
                s.refused.load(Ordering::Relaxed),
            ),
            (
                "upscaled_cluster_waiting_for_model_total",
                "Tasks found waiting for a model no live worker has.",
                "counter",
                s.waiting_for_model.load(Ordering::Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        out.push_str("# HELP upscaled_cluster_worker_tasks_total Tasks done, per worker.\n# TYPE upscaled_cluster_worker_tasks_total counter\n");
        let by = lock(&s.by_worker);
        for (w, (n, _)) in by.iter() {
            out.push_str(&format!(
                "upscaled_cluster_worker_tasks_total{{worker=\"{}\"}} {n}\n",
                label(w)
            ));
        }
        out.push_str("# HELP upscaled_cluster_worker_seconds_total Seconds workers spent on this coordinator's tasks.\n# TYPE upscaled_cluster_worker_seconds_total counter\n");
        for (w, (_, secs)) in by.iter() {
            out.push_str(&format!(
                "upscaled_cluster_worker_seconds_total{{worker=\"{}\"}} {secs:.3}\n",
                label(w)
            ));
        }
        out
    }
}

/// A worker name as a Prometheus label value (names come from the network).
fn label(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' || c == '\\' { '_' } else { c })
        .take(64)
        .collect()
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        "no worker reported taking it".into()
    } else {
        tried.join(", ")
    }
}

fn transient(cause: String) -> RemoteError {
    RemoteError::Transient(StageError::new(Stage::Upscale, cause))
}

/// Takes a job's waiter away when `render` returns, however it returns.
struct Unregister<'a>(&'a Mutex<Routing>, String);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        lock(self.0).waiters.remove(&self.1);
    }
}
