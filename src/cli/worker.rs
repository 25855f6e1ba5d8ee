//! `upscaled worker` and `upscaled cluster status`: the cluster's side of
//! the command line (docs/cluster.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use upscaled::models::tiled::TileSettings;
use upscaled::models::{Catalog, models_dir};
use upscaled::pipeline::Pipeline;
use upscaled::smart::ModelLibrary;

/// Where NATS is and how to log in.
#[derive(Args)]
pub struct NatsArgs {
    /// The NATS server, e.g. nats://nas.local:4222 (several: comma-separated).
    #[arg(long)]
    pub nats: String,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, conflicts_with = "token_file")]
    pub credentials: Option<PathBuf>,
    /// A file holding the NATS token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// CA certificate to trust for TLS.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The coordinator's `cluster.stream`.
    #[arg(long, default_value = "UPSCALED")]
    pub stream: String,
}

impl NatsArgs {
    pub fn login(&self) -> upscaled::config::NatsLogin {
        upscaled::config::NatsLogin {
            url: self.nats.clone(),
            credentials: self.credentials.clone(),
            token_file: self.token_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// This worker's name in `cluster status` and in failure reasons
    /// (default: host-pid).
    #[arg(long)]
    pub name: Option<String>,
    /// Inference threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Serve only these models (comma-separated; `none` is the route of
    /// files that need no model). Default: every installed model and none.
    #[arg(long, value_delimiter = ',')]
    pub only_models: Vec<String>,
    /// Fault injection for tests: garbage, or slow:MS.
    #[arg(long, hide = true)]
    pub inject: Option<upscaled::cluster::worker::Inject>,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Print the live workers (models, provider, what they run) and the queue.
    Status {
        #[command(flatten)]
        nats: NatsArgs,
        /// The coordinator's `cluster.bucket`.
        #[arg(long, default_value = "upscaled")]
        bucket: String,
    },
}

pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let dir = models_dir();
    let catalog = Catalog::builtin()?.with_user_models(&dir)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let mut serves = super::common::installed(&catalog, &dir);
    serves.push(upscaled::cluster::NO_MODEL.to_string());
    if !args.only_models.is_empty() {
        if let Some(missing) = args.only_models.iter().find(|m| !serves.contains(m)) {
            anyhow::bail!(
                "--only-models names {missing:?}, which is not installed in {} (installed: {})",
                dir.display(),
                serves.join(", ")
            );
        }
        serves.retain(|m| args.only_models.contains(m));
    }
    let library = ModelLibrary::new(catalog, dir, threads, TileSettings::default(), None)?;
    let name = args
        .name
        .unwrap_or_else(|| format!("{}-{}", upscaled::cluster::host_name(), std::process::id()));
    upscaled::cluster::worker::run(
        upscaled::cluster::worker::WorkerOptions {
            login: args.nats.login(),
            stream: args.nats.stream,
            name,
            threads,
            models: serves,
            inject: args.inject,
        },
        Pipeline::with_source(Box::new(library)),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn status(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Status { nats, bucket } => {
            upscaled::cluster::status::print(&nats.login(), &nats.stream, &bucket)
                .map(|_| ExitCode::SUCCESS)
        }
    }
}
