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
use crate::pipeline::write::{Collision, write_atomic};
use crate::raster::Raster;

/// Where `models fetch` installs the converted classifier.
pub const CLASSIFIER_FILE: &str = "detectors/nsfwjs-mobilenet-v2.onnx";

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
    let onnx = tfjs::keras_to_onnx(&model["modelTopology"], &weights, "nsfwjs-mobilenet-v2")?;
    std::fs::create_dir_all(dest.parent().unwrap_or(models))?;
    write_atomic(&dest, &onnx, Collision::Replace).map_err(|e| anyhow::anyhow!("{e}"))?;
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

    /// The five class probabilities, in [`CLASSES`] order.
    pub fn probabilities(&self, raster: &Raster) -> Result<[f64; 5]> {
        // The whole frame squashed to a square, as in training. Reductions
        // average areas: the network's answer swings with aliasing (a photo
        // of thin towers reads as drawn after a plain bilinear step).
        let input = if raster.width.min(raster.height) >= SIDE as u32 {
            raster.planar_rgb_area(SIDE, SIDE)
        } else {
            raster.planar_rgb(SIDE, SIDE)
        };
        let (shape, out) = self.session.run([1, 3, SIDE, SIDE], &input)?;
        ensure!(
            out.len() == CLASSES.len(),
            "drawing classifier output is {shape:?}, expected {} classes",
            CLASSES.len()
        );
        Ok(std::array::from_fn(|i| out[i] as f64))
    }

    /// The chance that the picture is drawn (Drawing + Hentai).
    pub fn drawn(&self, raster: &Raster) -> Result<f64> {
        let p = self.probabilities(raster)?;
        Ok(p[0] + p[1])
    }
}
