//! The YAML as written: serde structs that mirror the file and nothing more.
//! Unknown keys are collected (not rejected one at a time) so that validation can
//! report all of them at once, each with a "did you mean".

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use crate::pipeline::decode::DecodeLimits;

pub type Unknown = BTreeMap<String, Value>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub models: Option<String>,
    pub threads: Option<usize>,
    pub limits: Option<RawLimits>,
    pub log_format: Option<String>,
    pub metrics: Option<String>,
    #[serde(default)]
    pub folders: Vec<RawFolder>,
    /// route → scale → levels, over config/routes.yaml.
    pub routes: Option<BTreeMap<String, BTreeMap<u32, RawLevels>>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLevels {
    pub fast: Option<String>,
    pub balanced: Option<String>,
    pub best: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub max_side: Option<u32>,
    pub max_megapixels: Option<f64>,
    pub max_alloc_mib: Option<u64>,
    pub max_file_mib: Option<u64>,
    pub seconds_per_file: Option<u64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

impl RawLimits {
    pub fn decode_limits(&self) -> DecodeLimits {
        let d = DecodeLimits::default();
        DecodeLimits {
            max_side: self.max_side.unwrap_or(d.max_side),
            max_megapixels: self.max_megapixels.unwrap_or(d.max_megapixels),
            max_alloc_mib: self.max_alloc_mib.unwrap_or(d.max_alloc_mib),
            max_file_mib: self.max_file_mib.unwrap_or(d.max_file_mib),
        }
    }
}

/// A target box: inline in a folder, or one item of its `targets` list.
#[derive(Debug, Default, Deserialize)]
pub struct RawTarget {
    pub preset: Option<String>,
    pub name: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Option<String>,
    pub background: Option<String>,
    pub fill: Option<f64>,
    pub formats: Option<Vec<String>>,
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSmart {
    pub scale: Option<Value>,
    pub model: Option<String>,
    pub quality: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawFolder {
    pub path: Option<String>,
    pub recursive: Option<bool>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub output: Option<String>,
    pub targets: Option<Vec<RawTarget>>,
    // The single-target short form, straight in the folder.
    pub preset: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Option<String>,
    pub background: Option<String>,
    pub fill: Option<f64>,
    pub formats: Option<Vec<String>>,
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    pub smart: Option<RawSmart>,
    pub trim: Option<bool>,
    pub metadata: Option<String>,
    pub name: Option<String>,
    pub on_success: Option<String>,
    pub done: Option<String>,
    pub failed: Option<String>,
    pub settle: Option<String>,
    pub watch: Option<String>,
    pub poll_interval: Option<String>,
    pub retention: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub const TOP_KEYS: &[&str] = &[
    "models",
    "threads",
    "limits",
    "log_format",
    "metrics",
    "folders",
    "routes",
];
pub const LEVEL_KEYS: &[&str] = &["fast", "balanced", "best"];
pub const LIMIT_KEYS: &[&str] = &[
    "max_side",
    "max_megapixels",
    "max_alloc_mib",
    "max_file_mib",
    "seconds_per_file",
];
pub const TARGET_KEYS: &[&str] = &[
    "preset",
    "name",
    "width",
    "height",
    "fit",
    "background",
    "fill",
    "formats",
    "quality",
    "max_bytes",
];
pub const SMART_KEYS: &[&str] = &["scale", "model", "quality"];
pub const FOLDER_KEYS: &[&str] = &[
    "path",
    "recursive",
    "include",
    "exclude",
    "output",
    "targets",
    "preset",
    "width",
    "height",
    "fit",
    "background",
    "fill",
    "formats",
    "quality",
    "max_bytes",
    "smart",
    "trim",
    "metadata",
    "name",
    "on_success",
    "done",
    "failed",
    "settle",
    "watch",
    "poll_interval",
    "retention",
];
