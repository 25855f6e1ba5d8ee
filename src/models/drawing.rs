//! Drawn or photographed? A MobileNetV2 trained on about 60,000 images in five
//! classes (Drawing, Hentai, Neutral, Porn, Sexy) by the nsfwjs project (MIT),
//! shipped in its npm package as a TensorFlow.js model. Classification reads
//! Drawing + Hentai as the chance that the picture is drawn: anime frames,
//! cartoons and comics, which image statistics confuse with photographs when
//! they are shaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};

use super::catalog::Catalog;
use super::runtime::{self, ModelSession};
use super::tfjs;
use crate::raster::Raster;

/// Where `models fetch` installs the converted classifier.
/// (`-embedding`: with the penultimate layer as a second output, which Smart
/// mode's head reads; a file converted before that has only the classes.)
pub const CLASSIFIER_FILE: &str = "detectors/nsfwjs-mobilenet-v2-embedding.onnx";
/// The hidden layer whose activations are the picture's embedding: the
/// 128-unit dense layer before the five-class output.
const EMBEDDING_LAYER: &str = "dense_2";
/// Its width.
pub const EMBEDDING_WIDTH: usize = 128;

/// The network's fixed input side.
const SIDE: usize = 224;
/// Output order of the nsfwjs classes; the first two are drawn.
const CLASSES: [&str; 5] = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"];

pub fn classifier_path(models_dir: &Path) -> PathBuf {
    models_dir.join(CLASSIFIER_FILE)
}

/// Fetches the pinned npm package (once) and converts its MobileNetV2 to ONNX.
pub fn fetch(catalog: &Catalog, models: &Path, cache: &Path) -> Result<PathBuf> {
    let dest = classifier_path(models);
    if dest.is_file() {
        return Ok(dest);
    }
    let entry = &catalog.drawing_classifier;
    let tgz = crate::fetch::npm_package(&entry.npm, &entry.version, &entry.sha256, cache)?;
    let read_module = |member: &str| -> Result<serde_json::Value> {
        let js = crate::fetch::read_tgz_member(&tgz, member)?;
        tfjs::module_export(&String::from_utf8_lossy(&js))
            .with_context(|| format!("reading {member} of {}", tgz.display()))
    };
    let model = read_module(&entry.topology)?;
    let shards = entry
        .weights
        .iter()
        .map(|m| {
            read_module(m)?
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("{m} does not export a base64 string"))
        })
        .collect::<Result<Vec<_>>>()?;
    let weights = tfjs::Weights::decode(&model["weightsManifest"], &shards)?;
    let onnx = tfjs::keras_to_onnx(
        &model["modelTopology"],
        &weights,
        "nsfwjs-mobilenet-v2",
        &[EMBEDDING_LAYER],
    )?;
    std::fs::create_dir_all(dest.parent().unwrap_or(models))?;
    crate::durable::replace_file(&dest, &onnx)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    tracing::info!(path = %dest.display(), "installed the drawing classifier");
    Ok(dest)
}

pub struct DrawingClassifier {
    session: Arc<ModelSession>,
}

impl DrawingClassifier {
    pub fn load(models_dir: &Path, threads: usize) -> Result<Self> {
        let path = classifier_path(models_dir);
        Ok(Self {
            session: runtime::helper_session(models_dir, &path, "drawing classifier", threads)?,
        })
    }

    /// What the network sees: its five class probabilities and the
    /// embedding it computes them from.
    pub fn look(&self, raster: &Raster) -> Result<DrawingLook> {
        // The whole frame squashed to a square, as in training. Reductions
        // average areas: the network's answer swings with aliasing (a photo
        // of thin towers reads as drawn after a plain bilinear step).
        let input = if raster.width.min(raster.height) >= SIDE as u32 {
            raster.planar_rgb_area(SIDE, SIDE)
        } else {
            raster.planar_rgb(SIDE, SIDE)
        };
        let outputs = self.session.run_all([1, 3, SIDE, SIDE], &input)?;
        let [(shape, classes), (_, embedding)] = &outputs[..] else {
            anyhow::bail!(
                "the drawing classifier has {} outputs, expected the classes and the embedding \
                 (an old conversion: delete {CLASSIFIER_FILE} and run `upscaled models fetch`)",
                outputs.len()
            );
        };
        ensure!(
            classes.len() == CLASSES.len() && embedding.len() == EMBEDDING_WIDTH,
            "drawing classifier outputs are {shape:?} and {} wide, expected {} classes and {EMBEDDING_WIDTH}",
            embedding.len(),
            CLASSES.len()
        );
        Ok(DrawingLook {
            classes: std::array::from_fn(|i| classes[i] as f64),
            embedding: embedding.clone(),
        })
    }

    /// The chance that the picture is drawn (Drawing + Hentai).
    pub fn drawn(&self, raster: &Raster) -> Result<f64> {
        Ok(self.look(raster)?.drawn())
    }
}

/// The drawing classifier's answer for one picture.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawingLook {
    /// Probabilities of Drawing, Hentai, Neutral, Porn, Sexy.
    pub classes: [f64; 5],
    /// The 128 activations of the layer before the output.
    pub embedding: Vec<f32>,
}

impl DrawingLook {
    /// Drawing + Hentai: the chance that the picture is drawn.
    pub fn drawn(&self) -> f64 {
        self.classes[0] + self.classes[1]
    }
}
