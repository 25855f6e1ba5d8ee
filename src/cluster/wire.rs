//! What travels through NATS, as JSON: a task (part of a job: the targets
//! of one file that use one model) and what a worker says about it.

use serde::{Deserialize, Serialize};

use crate::error::Stage;
use crate::pipeline::decode::DecodeLimits;
use crate::pipeline::encode::OutputFormat;
use crate::pipeline::metadata::MetadataMode;
use crate::pipeline::{JobReport, JobSpec, Target};
use crate::smart::QualityLevel;
use crate::smart::route::{ModelChoice, ScaleChoice};

/// Bumped when a field changes meaning; a worker refuses other versions.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    pub version: u32,
    /// The claim's id: stable across restarts of the coordinator.
    pub job: String,
    /// Which task of the job (one per model).
    pub task: u32,
    /// Unique per publish: outputs of two attempts never share a name.
    pub attempt: String,
    /// Where results go (the coordinator's subject) and bytes live.
    pub reply: String,
    pub bucket: String,
    pub source: String,
    pub source_sha256: String,
    pub source_bytes: u64,
    /// The file's path in its hot folder, for messages.
    pub input: String,
    /// The model every target of this task uses (None: no model).
    pub model: Option<String>,
    pub targets: Vec<TaskTarget>,
    /// The consumer's settings, so the worker heartbeats in time and knows
    /// when to give up.
    pub ack_wait_ms: u64,
    pub max_deliver: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskTarget {
    /// The target's index in the folder's rule.
    pub index: u32,
    pub spec: WireSpec,
}

/// The part of a `JobSpec` a worker needs (the model is the task's).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireSpec {
    pub target: Option<Target>,
    pub formats: Vec<OutputFormat>,
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    pub scale: ScaleChoice,
    pub level: QualityLevel,
    pub trim: bool,
    pub metadata: MetadataMode,
    pub limits: DecodeLimits,
    pub min_source_side: Option<u32>,
    pub avif_speed: u8,
    pub time_limit_ms: Option<u64>,
    /// `model: none`: the worker interpolates, without the model limit.
    #[serde(default)]
    pub no_model: bool,
}

impl WireSpec {
    pub fn from_spec(spec: &JobSpec) -> Self {
        WireSpec {
            target: spec.target.clone(),
            formats: spec.formats.clone(),
            quality: spec.quality,
            max_bytes: spec.max_bytes,
            scale: spec.scale,
            level: spec.level,
            trim: spec.trim,
            metadata: spec.metadata,
            limits: spec.limits,
            min_source_side: spec.min_source_side,
            avif_speed: spec.avif_speed,
            time_limit_ms: spec.time_limit.map(|d| d.as_millis() as u64),
            no_model: spec.model == ModelChoice::NoModel,
        }
    }

    /// The spec a worker runs, with the task's model and its own threads.
    pub fn to_spec(&self, model: Option<String>, threads: usize) -> JobSpec {
        JobSpec {
            target: self.target.clone(),
            formats: self.formats.clone(),
            quality: self.quality,
            max_bytes: self.max_bytes,
            scale: self.scale,
            model: match model {
                _ if self.no_model => ModelChoice::NoModel,
                Some(name) => ModelChoice::Named(name),
                None => ModelChoice::Auto,
            },
            level: self.level,
            trim: self.trim,
            metadata: self.metadata,
            limits: self.limits,
            min_source_side: self.min_source_side,
            avif_speed: self.avif_speed,
            threads,
            time_limit: self.time_limit_ms.map(std::time::Duration::from_millis),
            ..JobSpec::default()
        }
    }
}

/// A worker's word about one delivery of a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub job: String,
    pub task: u32,
    pub attempt: String,
    pub worker: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// The worker took the task (the list of who tried comes from these).
    Started { delivery: u64 },
    /// The outputs are in the object store.
    Done {
        targets: Vec<DoneTarget>,
        seconds: f64,
    },
    /// The pipeline refused the file: its fault, as in local mode.
    Failed { stage: Stage, cause: String },
    /// Every attempt ended without a word (workers killed or stuck).
    GaveUp { deliveries: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DoneTarget {
    pub index: u32,
    pub report: JobReport,
    pub outputs: Vec<WireOutput>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireOutput {
    pub format: OutputFormat,
    pub object: String,
    pub sha256: String,
    pub bytes: u64,
    pub quality: Option<u8>,
    pub trials: u32,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
