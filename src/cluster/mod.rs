//! Cluster mode (docs/cluster.md): the daemon that owns the hot folders, the
//! coordinator, claims and plans files as in local mode, then publishes each
//! job to a NATS JetStream work queue instead of running it. Workers on any
//! host pull jobs, run the same pipeline and publish the encoded outputs
//! back. Only the coordinator touches the folders, and it checks every
//! result against its own plan before writing it.
//!
//! On the server, per `stream` (default `UPSCALED`):
//! - stream `<stream>` (work queue), subjects `<stream>.jobs.<model>`, one
//!   durable pull consumer `jobs-<model>` per model, shared by the workers
//!   that have that model (`none`: files that need no model);
//! - stream `<stream>_RESULTS` (work queue), subjects
//!   `<stream>.results.<coordinator>`, consumer `results-<coordinator>`;
//! - key-value bucket `<stream>_WORKERS`: each live worker's name, models
//!   and provider, refreshed every few seconds;
//! - object store `<bucket>`: sources and outputs, under `<coordinator>/<job>/`.

pub mod coordinator;
pub mod status;
pub mod verify;
pub mod wire;
pub mod worker;

use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream;

use crate::config::NatsLogin;

/// How often a worker says it is alive; the registry forgets it after
/// `WORKER_TTL` without a word.
pub const WORKER_BEAT: Duration = Duration::from_secs(5);
pub const WORKER_TTL: Duration = Duration::from_secs(20);

/// The subject and consumer token of a job that runs no model.
pub const NO_MODEL: &str = "none";

/// The names one stream setting makes.
#[derive(Clone, Debug)]
pub struct Names {
    pub stream: String,
}

impl Names {
    pub fn new(stream: &str) -> Self {
        Names {
            stream: stream.to_string(),
        }
    }
    pub fn jobs_stream(&self) -> String {
        self.stream.clone()
    }
    pub fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.stream)
    }
    pub fn workers_bucket(&self) -> String {
        format!("{}_WORKERS", self.stream)
    }
    pub fn job_subject(&self, model: &str) -> String {
        format!("{}.jobs.{}", self.stream, token(model))
    }
    pub fn job_consumer(&self, model: &str) -> String {
        format!("jobs-{}", token(model))
    }
    pub fn result_subject(&self, coordinator: &str) -> String {
        format!("{}.results.{}", self.stream, token(coordinator))
    }
    pub fn result_consumer(&self, coordinator: &str) -> String {
        format!("results-{}", token(coordinator))
    }
}

/// A name as one NATS token: kept when it is letters, digits, `-` and `_`,
/// else hex with an `x` in front (a model name with a dot, say).
pub fn token(name: &str) -> String {
    if crate::config::is_nats_token(name) {
        name.to_string()
    } else {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("x{}", &hex[..hex.len().min(60)])
    }
}

/// Connects with the login's credentials and TLS; reconnects forever.
pub async fn connect(login: &NatsLogin, client_name: &str) -> Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS: disconnected; reconnecting")
                }
                async_nats::Event::Connected => tracing::info!("NATS: connected"),
                other => tracing::debug!("NATS: {other}"),
            }
        });
    if let Some(path) = &login.credentials {
        options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("reading NATS credentials {}", path.display()))?;
    }
    if let Some(path) = &login.token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading the NATS token file {}", path.display()))?;
        options = options.token(token.trim().to_string());
    }
    if let Some(ca) = &login.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&login.tls_cert, &login.tls_key) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    options
        .connect(login.url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", login.url))
}

/// The jobs and results streams, made when missing.
pub async fn ensure_streams(js: &jetstream::Context, names: &Names) -> Result<()> {
    use jetstream::stream::{Config, RetentionPolicy, StorageType};
    for (name, subjects) in [
        (names.jobs_stream(), format!("{}.jobs.>", names.stream)),
        (
            names.results_stream(),
            format!("{}.results.>", names.stream),
        ),
    ] {
        js.get_or_create_stream(Config {
            name: name.clone(),
            subjects: vec![subjects],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("making stream {name}: {e}"))?;
    }
    Ok(())
}

/// The registry of live workers (entries expire when a worker goes quiet).
pub async fn workers_registry(
    js: &jetstream::Context,
    names: &Names,
) -> Result<jetstream::kv::Store> {
    let bucket = names.workers_bucket();
    if let Ok(kv) = js.get_key_value(&bucket).await {
        return Ok(kv);
    }
    // The bucket's stream is made by hand: the client's own `create_key_value`
    // asks for account details that servers before 2.10 (Debian's 2.9)
    // answer in a shape it cannot read. These are the settings it would use.
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: WORKER_TTL,
        storage: jetstream::stream::StorageType::Memory,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("making the worker registry {bucket}: {e}"))?;
    js.get_key_value(&bucket)
        .await
        .map_err(|e| anyhow::anyhow!("opening the worker registry {bucket}: {e}"))
}

/// The bucket for sources and outputs.
pub async fn object_store(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<jetstream::object_store::ObjectStore> {
    if let Ok(store) = js.get_object_store(bucket).await {
        return Ok(store);
    }
    js.create_object_store(jetstream::object_store::Config {
        bucket: bucket.to_string(),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("making the object store {bucket}: {e}"))
}

/// The job consumer of one model, made by the coordinator (workers only
/// look it up: its ack wait and attempts are the coordinator's settings).
pub async fn ensure_job_consumer(
    js: &jetstream::Context,
    names: &Names,
    model: &str,
    ack_wait: Duration,
    max_deliver: u32,
) -> Result<()> {
    use jetstream::consumer::{AckPolicy, pull};
    let stream = js
        .get_stream(names.jobs_stream())
        .await
        .map_err(|e| anyhow::anyhow!("opening stream {}: {e}", names.jobs_stream()))?;
    let name = names.job_consumer(model);
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: names.job_subject(model),
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                // One more than the attempts: the delivery past them is
                // answered "gave up" by whichever worker gets it.
                max_deliver: i64::from(max_deliver) + 1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("making consumer {name}: {e}"))?;
    Ok(())
}

/// What a worker says about itself in the registry.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub models: Vec<String>,
    pub provider: String,
    pub threads: usize,
    pub done: u64,
    pub failed: u64,
    /// The job it is running, if any.
    pub busy: Option<String>,
}

pub use crate::config::host_name;

/// The live workers in the registry.
pub async fn live_workers(kv: &jetstream::kv::Store) -> Vec<WorkerInfo> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let Ok(mut keys) = kv.keys().await else {
        return out;
    };
    while let Some(Ok(key)) = keys.next().await {
        if let Ok(Some(v)) = kv.get(&key).await
            && let Ok(info) = serde_json::from_slice::<WorkerInfo>(&v)
        {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
