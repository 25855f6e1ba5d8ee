//! The learned part of classification: a multinomial logistic regression
//! over what the shipped networks and the statistics saw, giving calibrated
//! probabilities of three families (natural, text, drawing).
//!
//! The weights are `models/smart-head.json`, written by
//! `scripts/train_head.py` from whole folders of Debian packages (training,
//! validation and test split by package). Standardisation and the
//! calibration temperature are folded into them, so applying the head is one
//! matrix product and a softmax.

use serde::Deserialize;

use super::Features;
use crate::models::drawing::{DrawingLook, EMBEDDING_WIDTH};

/// The head as trained; compiled in, so it can never be missing or stale.
pub const HEAD_JSON: &str = include_str!("../../../models/smart-head.json");

/// The families the head tells apart. A face is a natural picture with a
/// face in it, which the face detector decides (see [`super::Probabilities`]).
pub const FAMILIES: [&str; 3] = ["natural", "text", "drawing"];

/// The statistics and detector readings the head reads after the
/// embedding and the drawing network's five classes, in order.
const SCALAR_INPUTS: [&str; 18] = [
    "flat",
    "edges",
    "top_colours",
    "background",
    "saturation",
    "extremes",
    "ramps",
    "row_transitions",
    "ink",
    "lines",
    "face_share",
    "faces",
    "text_lines",
    "text_share",
    "jpeg",
    "jpeg_quality",
    "blockiness",
    "alpha",
];

/// The names of the head's inputs, in the order [`inputs`] writes them.
pub fn input_names() -> Vec<String> {
    (0..EMBEDDING_WIDTH)
        .map(|i| format!("embedding.{i}"))
        .chain(
            ["drawing", "hentai", "neutral", "porn", "sexy"]
                .iter()
                .map(|c| format!("nsfw.{c}")),
        )
        .chain(SCALAR_INPUTS.iter().map(|s| s.to_string()))
        .collect()
}

/// What one picture gives the head besides the features.
pub struct Evidence<'a> {
    pub features: &'a Features,
    pub look: &'a DrawingLook,
    pub faces: usize,
    pub jpeg_quality: Option<u8>,
    pub blockiness: f64,
    pub has_alpha: bool,
}

/// The head's input vector. Counts are log-compressed and the step-like
/// readings clipped, so that no single odd picture dominates a weight.
pub fn inputs(e: &Evidence) -> Vec<f64> {
    let f = e.features;
    let log = |v: f64| (1.0 + v.max(0.0)).ln();
    let mut v: Vec<f64> = e.look.embedding.iter().map(|&x| x as f64).collect();
    v.extend(e.look.classes);
    v.extend([
        f.flat,
        f.edges,
        f.top_colours,
        f.background,
        f.saturation,
        f.extremes,
        f.ramps,
        log(f.row_transitions),
        f.ink,
        f.lines,
        f.face_share,
        log(e.faces as f64),
        log(f.text_lines.unwrap_or(0) as f64),
        f.text_share.unwrap_or(0.0),
        f64::from(u8::from(e.jpeg_quality.is_some())),
        e.jpeg_quality.map_or(1.0, |q| q as f64 / 100.0),
        e.blockiness.clamp(0.5, 3.0),
        f64::from(u8::from(e.has_alpha)),
    ]);
    v
}

#[derive(Deserialize)]
struct HeadFile {
    inputs: Vec<String>,
    families: Vec<String>,
    /// One row of input weights per family.
    weights: Vec<Vec<f64>>,
    bias: Vec<f64>,
    /// What scripts/train_head.py recorded; absent in an untrained file.
    training: Option<serde_json::Value>,
}

/// A loaded head.
pub struct Head {
    /// Where each input it reads sits in the vector [`inputs`] writes.
    columns: Vec<usize>,
    weights: Vec<Vec<f64>>,
    bias: Vec<f64>,
}

impl Head {
    /// Parses a head file and checks that this build computes every input
    /// it reads (found by name: a head may read a subset).
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let file: HeadFile = serde_json::from_str(json)?;
        let known = input_names();
        let columns = file
            .inputs
            .iter()
            .map(|name| {
                known.iter().position(|k| k == name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "the head reads `{name}`, which this build does not compute: retrain it"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<usize>>>()?;
        anyhow::ensure!(
            file.families == FAMILIES
                && file.weights.len() == FAMILIES.len()
                && file.bias.len() == FAMILIES.len()
                && file.weights.iter().all(|w| w.len() == file.inputs.len()),
            "the head's families or weight shapes are not {FAMILIES:?} x {}",
            file.inputs.len()
        );
        anyhow::ensure!(
            file.training.is_some(),
            "the head was never trained (run `make train-head`)"
        );
        Ok(Self {
            columns,
            weights: file.weights,
            bias: file.bias,
        })
    }

    /// The head compiled into this build.
    pub fn builtin() -> Option<&'static Head> {
        static HEAD: std::sync::OnceLock<Option<Head>> = std::sync::OnceLock::new();
        HEAD.get_or_init(|| {
            Head::parse(HEAD_JSON)
                .inspect_err(|e| tracing::warn!("models/smart-head.json: {e:#}"))
                .ok()
        })
        .as_ref()
    }

    /// Probabilities of [`FAMILIES`] for one input vector.
    pub fn families(&self, inputs: &[f64]) -> [f64; 3] {
        let logits: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| {
                b + w
                    .iter()
                    .zip(&self.columns)
                    .map(|(w, &i)| w * inputs[i])
                    .sum::<f64>()
            })
            .collect();
        let top = logits.iter().cloned().fold(f64::MIN, f64::max);
        let exp: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let sum: f64 = exp.iter().sum();
        std::array::from_fn(|i| exp[i] / sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Check {
        accuracy: f64,
        samples: Vec<Sample>,
    }

    #[derive(Deserialize)]
    struct Sample {
        file: String,
        family: String,
        inputs: Vec<f64>,
        probabilities: Vec<f64>,
    }

    /// Validation pictures' inputs, with the probabilities
    /// scripts/train_head.py computed for them when it wrote the head.
    const CHECK_JSON: &str = include_str!("../../../models/smart-head-check.json");

    #[test]
    fn the_head_gives_the_training_scripts_answers() {
        let head = Head::parse(HEAD_JSON).expect("models/smart-head.json loads");
        let check: Check = serde_json::from_str(CHECK_JSON).unwrap();
        assert!(check.samples.len() >= 20, "{}", check.samples.len());
        let mut right = 0;
        for s in &check.samples {
            let p = head.families(&s.inputs);
            for (ours, theirs) in p.iter().zip(&s.probabilities) {
                assert!(
                    (ours - theirs).abs() < 1e-9,
                    "{}: {p:?} vs {:?}",
                    s.file,
                    s.probabilities
                );
            }
            let top = (0..FAMILIES.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap();
            right += usize::from(FAMILIES[top] == s.family);
        }
        let accuracy = right as f64 / check.samples.len() as f64;
        assert!(
            (accuracy - check.accuracy).abs() < 1e-12,
            "{accuracy} vs {}",
            check.accuracy
        );
    }

    #[test]
    fn an_untrained_or_mismatched_head_is_refused() {
        let mut file: serde_json::Value = serde_json::from_str(HEAD_JSON).unwrap();
        file.as_object_mut().unwrap().remove("training");
        let e = Head::parse(&file.to_string()).err().unwrap().to_string();
        assert!(e.contains("never trained"), "{e}");

        let mut file: serde_json::Value = serde_json::from_str(HEAD_JSON).unwrap();
        file["inputs"][0] = "no such input".into();
        let e = Head::parse(&file.to_string()).err().unwrap().to_string();
        assert!(e.contains("retrain"), "{e}");
    }
}
