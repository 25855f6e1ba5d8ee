//! `upscaled worker`: takes tasks for the models it has, runs the pipeline
//! on the source from the object store, puts the outputs there and reports.
//! It never sees the hot folders; a task it cannot read is answered, not
//! guessed at.
//!
//! One task at a time. Idle, it sleeps until a job is published (a plain
//! subscription to the jobs subjects wakes it) or a few seconds pass (for
//! tasks sent again after another worker died), then asks each of its
//! models' consumers for one task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream::{self, AckKind};
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncReadExt;

use super::Names;
use super::wire::{self, DoneTarget, Outcome, Report, Task, WireOutput};
use crate::error::{Stage, StageError};
use crate::pipeline::{Pipeline, Rendered};

/// Faults a test can ask a worker to commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// Random bytes instead of each output.
    Garbage,
    /// Sleep this long inside each task (so a kill lands mid-task).
    Slow(Duration),
}

impl std::str::FromStr for Inject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "garbage" {
            return Ok(Inject::Garbage);
        }
        if let Some(ms) = s.strip_prefix("slow:")
            && let Ok(ms) = ms.parse::<u64>()
        {
            return Ok(Inject::Slow(Duration::from_millis(ms)));
        }
        Err(format!("--inject takes garbage or slow:MS, not {s:?}"))
    }
}

#[derive(Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub failed: AtomicU64,
}

pub struct WorkerContext {
    pub name: String,
    pub pipeline: Arc<Pipeline>,
    /// Models it serves, `none` included when it takes files that need none.
    pub models: Vec<String>,
    pub threads: usize,
    pub inject: Option<Inject>,
    pub names: Names,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub counters: Counters,
}

/// The execution provider this build runs models on.
pub fn provider() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "tensorrt") {
        "tensorrt"
    } else if cfg!(feature = "coreml") {
        "coreml"
    } else if cfg!(feature = "directml") {
        "directml"
    } else {
        "cpu"
    }
}

/// Runs until `stop` turns true (after the task in hand).
pub async fn serve(
    ctx: Arc<WorkerContext>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut wake = ctx
        .client
        .subscribe(format!("{}.jobs.>", ctx.names.stream))
        .await
        .map_err(|e| anyhow::anyhow!("subscribing to the jobs subjects: {e}"))?;
    let busy: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let beat = tokio::spawn(heartbeat(ctx.clone(), busy.clone()));
    let mut consumers: Vec<(String, Option<jetstream::consumer::PullConsumer>)> =
        ctx.models.iter().map(|m| (m.clone(), None)).collect();
    let mut start = 0usize;
    tracing::info!(worker = %ctx.name, models = %ctx.models.join(","), provider = provider(), "cluster worker: taking jobs");
    while !*stop.borrow() {
        let mut got = None;
        for k in 0..consumers.len() {
            let i = (start + k) % consumers.len();
            if let Some(msg) = take_one(&ctx, &mut consumers[i]).await {
                start = i + 1;
                got = Some(msg);
                break;
            }
        }
        if let Some(msg) = got {
            handle(&ctx, msg, &busy).await;
            continue;
        }
        tokio::select! {
            _ = wake.next() => {
                // A burst of publishes is one wake-up.
                while let Some(Some(_)) = wake.next().now_or_never() {}
            }
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => {}
        }
    }
    beat.abort();
    if let Ok(kv) = super::workers_registry(&ctx.js, &ctx.names).await {
        let _ = kv.delete(super::token(&ctx.name)).await;
    }
    Ok(())
}

/// One task from one model's consumer, if it has one waiting.
async fn take_one(
    ctx: &WorkerContext,
    slot: &mut (String, Option<jetstream::consumer::PullConsumer>),
) -> Option<jetstream::Message> {
    if slot.1.is_none() {
        let stream = ctx.js.get_stream(ctx.names.jobs_stream()).await.ok()?;
        slot.1 = stream
            .get_consumer(&ctx.names.job_consumer(&slot.0))
            .await
            .ok();
    }
    let consumer = slot.1.as_ref()?;
    match consumer.fetch().max_messages(1).messages().await {
        Ok(mut batch) => match batch.next().await {
            Some(Ok(msg)) => Some(msg),
            Some(Err(e)) => {
                tracing::debug!("cluster worker: fetch: {e}");
                None
            }
            None => None,
        },
        Err(e) => {
            tracing::debug!("cluster worker: fetch from {}: {e}", slot.0);
            // Looked up again next time (the server may have restarted).
            slot.1 = None;
            None
        }
    }
}

/// Says every few seconds that this worker lives, what it has and does.
async fn heartbeat(ctx: Arc<WorkerContext>, busy: Arc<std::sync::Mutex<Option<String>>>) {
    loop {
        if let Ok(kv) = super::workers_registry(&ctx.js, &ctx.names).await {
            let info = super::WorkerInfo {
                name: ctx.name.clone(),
                host: super::host_name(),
                pid: std::process::id(),
                models: ctx.models.clone(),
                provider: provider().to_string(),
                threads: ctx.threads,
                done: ctx.counters.done.load(Ordering::Relaxed),
                failed: ctx.counters.failed.load(Ordering::Relaxed),
                busy: busy.lock().ok().and_then(|b| b.clone()),
            };
            let json = serde_json::to_vec(&info).unwrap_or_default();
            if let Err(e) = kv.put(super::token(&ctx.name), json.into()).await {
                tracing::debug!("cluster worker: registry: {e}");
            }
        }
        tokio::time::sleep(super::WORKER_BEAT).await;
    }
}

async fn handle(
    ctx: &Arc<WorkerContext>,
    msg: jetstream::Message,
    busy: &std::sync::Mutex<Option<String>>,
) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).max(1) as u64;
    let task: Task = match serde_json::from_slice(&msg.payload) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cluster worker: dropped a job that is not a task: {e}");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let say = |outcome: Outcome| Report {
        version: wire::VERSION,
        job: task.job.clone(),
        task: task.task,
        attempt: task.attempt.clone(),
        worker: ctx.name.clone(),
        outcome,
    };
    if !task
        .reply
        .starts_with(&format!("{}.results.", ctx.names.stream))
    {
        tracing::warn!(reply = %task.reply, "cluster worker: dropped a task whose results go outside this stream");
        let _ = msg.ack_with(AckKind::Term).await;
        return;
    }
    if task.version != wire::VERSION {
        let cause = format!(
            "worker {} speaks version {} of the job format, this job is version {}: run the same upscaled version on both",
            ctx.name,
            wire::VERSION,
            task.version
        );
        report(
            ctx,
            &task,
            say(Outcome::Failed {
                stage: Stage::Read,
                cause,
            }),
        )
        .await;
        let _ = msg.ack().await;
        return;
    }
    if delivered > u64::from(task.max_deliver) {
        report(
            ctx,
            &task,
            say(Outcome::GaveUp {
                deliveries: delivered - 1,
            }),
        )
        .await;
        let _ = msg.ack().await;
        return;
    }
    if let Ok(mut b) = busy.lock() {
        *b = Some(task.job.clone());
    }
    report(
        ctx,
        &task,
        say(Outcome::Started {
            delivery: delivered,
        }),
    )
    .await;
    let msg = Arc::new(msg);
    let keep_alive = {
        let msg = msg.clone();
        let every = Duration::from_millis(task.ack_wait_ms / 3).max(Duration::from_millis(300));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        })
    };
    let outcome = run_task(ctx, &task, delivered).await;
    keep_alive.abort();
    if let Ok(mut b) = busy.lock() {
        *b = None;
    }
    match outcome {
        Ran::Report(outcome) => {
            match &outcome {
                Outcome::Done { .. } => ctx.counters.done.fetch_add(1, Ordering::Relaxed),
                _ => ctx.counters.failed.fetch_add(1, Ordering::Relaxed),
            };
            // The report is stored before the task is let go: a crash in
            // between repeats the task, and the coordinator takes one.
            if report(ctx, &task, say(outcome)).await {
                let _ = msg.double_ack().await;
            } else {
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
        Ran::Gone => {
            tracing::debug!(job = %task.job, "cluster worker: the job's source is gone (finished elsewhere)");
            let _ = msg.ack().await;
        }
        Ran::Later(why) => {
            tracing::warn!(job = %task.job, "cluster worker: {why}; the task goes back to the queue");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                .await;
        }
    }
}

enum Ran {
    Report(Outcome),
    /// The coordinator has finished the job already.
    Gone,
    /// Not the file's fault (NATS trouble): the task goes back.
    Later(String),
}

async fn run_task(ctx: &Arc<WorkerContext>, task: &Task, delivered: u64) -> Ran {
    let started = Instant::now();
    let store = match ctx.js.get_object_store(&task.bucket).await {
        Ok(s) => s,
        Err(e) => return Ran::Later(format!("cannot open bucket {}: {e}", task.bucket)),
    };
    let mut object = match store.get(&task.source).await {
        Ok(o) => o,
        Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => return Ran::Gone,
        Err(e) => return Ran::Later(format!("cannot fetch the source: {e}")),
    };
    let mut bytes = Vec::with_capacity(task.source_bytes.min(1 << 30) as usize);
    if let Err(e) = object.read_to_end(&mut bytes).await {
        return Ran::Later(format!("cannot read the source: {e}"));
    }
    if wire::sha256_hex(&bytes) != task.source_sha256 {
        return Ran::Later("the source's bytes do not match the job's hash".into());
    }
    let job_ctx = ctx.clone();
    let job = task.clone();
    let rendered = tokio::task::spawn_blocking(move || render_all(&job_ctx, &job, &bytes)).await;
    let rendered = match rendered {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Ran::Report(Outcome::Failed {
                stage: e.stage,
                cause: e.cause,
            });
        }
        Err(join) => {
            let what = if join.is_panic() {
                crate::error::panic_text(join.into_panic().as_ref())
            } else {
                "cancelled".into()
            };
            return Ran::Report(Outcome::Failed {
                stage: crate::error::Stage::Upscale,
                cause: format!("internal error: {what}"),
            });
        }
    };
    let prefix = task.source.strip_suffix("/src").unwrap_or(&task.source);
    let mut targets = Vec::new();
    for (index, r) in rendered {
        let mut outputs = Vec::new();
        for (f, out) in r.encoded.iter().enumerate() {
            let name = format!(
                "{prefix}/{}/{}-{delivered}/{index}.{f}.{}",
                task.attempt,
                super::token(&ctx.name),
                out.format.extension()
            );
            let mut reader = out.bytes.as_slice();
            if let Err(e) = store.put(name.as_str(), &mut reader).await {
                return Ran::Later(format!("cannot store an output: {e}"));
            }
            outputs.push(WireOutput {
                format: out.format,
                object: name,
                sha256: wire::sha256_hex(&out.bytes),
                bytes: out.bytes.len() as u64,
                quality: out.quality,
                trials: out.trials,
            });
        }
        targets.push(DoneTarget {
            index,
            report: r.report,
            outputs,
        });
    }
    Ran::Report(Outcome::Done {
        targets,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every target of the task, through the same pipeline as local mode.
fn render_all(
    ctx: &WorkerContext,
    task: &Task,
    bytes: &[u8],
) -> Result<Vec<(u32, Rendered)>, StageError> {
    if let Some(Inject::Slow(d)) = ctx.inject {
        std::thread::sleep(d);
    }
    let shared = task.targets.len() > 1;
    let deadline = task
        .targets
        .first()
        .and_then(|t| t.spec.time_limit_ms)
        .map(|ms| crate::deadline::Deadline::after(Duration::from_millis(ms)));
    let input = std::path::PathBuf::from(&task.input);
    let mut out = Vec::new();
    for t in &task.targets {
        let spec = crate::pipeline::JobSpec {
            reuse_upscale: shared,
            deadline: deadline.clone(),
            ..t.spec.to_spec(task.model.clone(), ctx.threads)
        };
        let mut rendered = ctx.pipeline.render(&input, bytes, &spec)?;
        if ctx.inject == Some(Inject::Garbage) {
            for e in &mut rendered.encoded {
                let mut x = 0x9e37_79b9_u32;
                for b in e.bytes.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x as u8;
                }
            }
        }
        rendered.report.worker = Some(ctx.name.clone());
        out.push((t.index, rendered));
    }
    if shared {
        ctx.pipeline.forget(bytes);
    }
    Ok(out)
}

/// Publishes a report to the coordinator; false when NATS did not take it.
async fn report(ctx: &WorkerContext, task: &Task, report: Report) -> bool {
    let payload = serde_json::to_vec(&report).expect("a report serialises");
    let sent = async {
        ctx.js
            .publish(task.reply.clone(), payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    match sent.await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(job = %task.job, "cluster worker: cannot report: {e}");
            false
        }
    }
}

/// What `upscaled worker` is started with.
pub struct WorkerOptions {
    pub login: crate::config::NatsLogin,
    pub stream: String,
    pub name: String,
    pub threads: usize,
    pub models: Vec<String>,
    pub inject: Option<Inject>,
}

/// `upscaled worker`: serves until SIGTERM or SIGINT, finishing the task in
/// hand first (a task cut off is sent to another worker after `ack_wait`).
pub fn run(options: WorkerOptions, pipeline: Pipeline) -> Result<()> {
    if !crate::config::is_nats_token(&options.stream) {
        anyhow::bail!(
            "--stream {:?} must be letters, digits, - or _",
            options.stream
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("worker")
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client =
            super::connect(&options.login, &format!("upscaled worker {}", options.name)).await?;
        let js = jetstream::new(client.clone());
        let ctx = Arc::new(WorkerContext {
            name: options.name,
            pipeline: Arc::new(pipeline),
            models: options.models,
            threads: options.threads,
            inject: options.inject,
            names: Names::new(&options.stream),
            client,
            js,
            counters: Counters::default(),
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("cluster worker: stopping after the task in hand");
            let _ = tx.send(true);
        });
        serve(ctx, rx).await
    })
}
