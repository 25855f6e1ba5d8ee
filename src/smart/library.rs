//! The installed models as Smart mode uses them: the model for a routed
//! scale (the job's, the command line's, or the routing table's pick for the
//! classification), with faces and text protected when it is generative.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::classify::{self, Classification, FaceBox, Networks};
use super::protect::{self, Protected};
use super::route::Routes;
use crate::error::{Stage, StageError};
use crate::models::{Catalog, drawing, text_regions, tiled};
use crate::pipeline::JobSpec;
use crate::pipeline::upscale::{Upscaler, UpscalerSource};
use crate::raster::Raster;

/// The installed models as the pipeline sees them: picks the model for a
/// routed scale, loading each once.
pub struct ModelLibrary {
    catalog: Catalog,
    dir: PathBuf,
    threads: usize,
    tiles: tiled::TileSettings,
    /// The folder's or the command line's model; None = choose by scale.
    forced: Option<String>,
    routes: Routes,
    /// Loaded on first need; None when it is not installed (then only faces
    /// are protected, with a warning).
    text_detector: std::sync::OnceLock<Option<text_regions::TextDetector>>,
    drawing: std::sync::OnceLock<Option<drawing::DrawingClassifier>>,
    loaded: std::sync::Mutex<std::collections::HashMap<String, Arc<tiled::ModelUpscaler>>>,
}

/// Intersection over union of two face boxes.
fn overlap(a: &FaceBox, b: &FaceBox) -> f64 {
    let x = (a.x + a.width)
        .min(b.x + b.width)
        .saturating_sub(a.x.max(b.x)) as f64;
    let y = (a.y + a.height)
        .min(b.y + b.height)
        .saturating_sub(a.y.max(b.y)) as f64;
    let union = (a.width * a.height + b.width * b.height) as f64 - x * y;
    x * y / union.max(1.0)
}

/// Fidelity models for photos: reproduce, never invent.
pub const DEFAULT_2X: &str = "spanx2_ch48";
pub const DEFAULT_4X: &str = "spanx4_ch48";

impl ModelLibrary {
    pub fn new(
        catalog: Catalog,
        dir: PathBuf,
        threads: usize,
        tiles: tiled::TileSettings,
        forced: Option<String>,
    ) -> Result<Self> {
        if let Some(name) = &forced {
            catalog.get(name)?;
        }
        let routes = Routes::builtin(&catalog)?;
        Ok(Self {
            routes,
            catalog,
            dir,
            threads,
            tiles,
            forced,
            text_detector: Default::default(),
            drawing: Default::default(),
            loaded: Default::default(),
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Loads (once) the named model.
    pub fn load(&self, name: &str) -> Result<Arc<tiled::ModelUpscaler>> {
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| anyhow::anyhow!("model cache poisoned"))?;
        if let Some(found) = loaded.get(name) {
            return Ok(found.clone());
        }
        let entry = self.catalog.get(name)?;
        let mut upscaler = tiled::ModelUpscaler::load(name, entry, &self.dir, self.threads)?;
        upscaler.tiles = self.tiles;
        let upscaler = Arc::new(upscaler);
        loaded.insert(name.to_string(), upscaler.clone());
        Ok(upscaler)
    }

    /// The text detector, loaded on first use; None (with one warning) when
    /// it is not installed.
    pub fn detector(&self) -> Option<&text_regions::TextDetector> {
        self.text_detector
            .get_or_init(|| {
                text_regions::TextDetector::load(&self.dir, self.threads)
                    .inspect_err(|e| {
                        tracing::warn!("no text detection (classes and protection): {e:#}")
                    })
                    .ok()
            })
            .as_ref()
    }

    /// The networks classification consults, loaded on first use; a missing
    /// one is left out with one warning.
    pub fn networks(&self) -> Networks<'_> {
        let drawing = self
            .drawing
            .get_or_init(|| {
                drawing::DrawingClassifier::load(&self.dir, self.threads)
                    .inspect_err(|e| tracing::warn!("no drawing classifier: {e:#}"))
                    .ok()
            })
            .as_ref();
        Networks {
            text: self.detector(),
            drawing,
        }
    }

    /// The regions a generative model must not reinvent: the faces found at
    /// classification or at the finer protection size (small faces), and the
    /// lines of text the detector finds.
    pub fn protected_regions(
        &self,
        raster: &Raster,
        classification: &Classification,
    ) -> Vec<Protected> {
        let mut regions: Vec<Protected> =
            classification.faces.iter().map(Protected::face).collect();
        let finer = classify::detect_faces_at(raster, classify::FACE_PROTECT_SIDE);
        for face in finer {
            let known = classification.faces.iter().any(|f| overlap(f, &face) > 0.3);
            if !known {
                regions.push(Protected::face(&face));
            }
        }
        if let Some(lines) = &classification.close_text_boxes {
            regions.extend(lines.iter().map(Protected::text));
        } else if let Some(detector) = self.detector() {
            let _turn = tiled::INFERENCE.lock().unwrap_or_else(|p| p.into_inner());
            match detector.detect(raster) {
                Ok(lines) => regions.extend(lines.iter().map(Protected::text)),
                Err(e) => tracing::warn!("text detection failed, text not protected: {e:#}"),
            }
        }
        regions
    }

    /// The model used for `scale` when none is forced.
    pub fn default_for_scale(scale: u32) -> &'static str {
        if scale >= 4 { DEFAULT_4X } else { DEFAULT_2X }
    }
}

impl ModelLibrary {
    /// The model Smart mode (or the job, or the command line) picks.
    pub fn choose(&self, scale: u32, spec: &JobSpec, classification: &Classification) -> String {
        spec.model
            .named()
            .map(str::to_string)
            .or_else(|| self.forced.clone())
            .or_else(|| {
                self.routes
                    .pick(&spec.routes, classification, scale, spec.level)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| Self::default_for_scale(scale).to_string())
    }
}

impl UpscalerSource for ModelLibrary {
    fn settle_route(&self, c: &mut Classification, scale: u32, spec: &JobSpec) {
        if let Some(d) = self.routes.decide(&spec.routes, c, scale, spec.level) {
            c.settle(d);
        }
    }

    fn for_scale(
        &self,
        raster: &Raster,
        scale: u32,
        spec: &JobSpec,
        classification: &Classification,
    ) -> std::result::Result<Arc<dyn Upscaler>, StageError> {
        use std::sync::Arc;
        let err = |e: anyhow::Error| StageError::new(Stage::Upscale, format!("{e:#}"));
        let name = self.choose(scale, spec, classification);
        let main = self.load(&name).map_err(err)?;
        if !protect::is_generative(&self.catalog, &name) {
            return Ok(main);
        }
        // Faces and text come from a fidelity model, blended into the
        // generative result.
        let regions = self.protected_regions(raster, classification);
        if regions.is_empty() {
            return Ok(main);
        }
        let fidelity = self.load(Self::default_for_scale(scale)).map_err(err)?;
        if fidelity.scale() != main.scale() {
            return Ok(main);
        }
        Ok(Arc::new(protect::RegionSafe {
            main,
            fidelity,
            regions,
        }))
    }

    fn networks(&self) -> Networks<'_> {
        ModelLibrary::networks(self)
    }

    fn model_name(
        &self,
        _: &Raster,
        scale: u32,
        spec: &JobSpec,
        classification: &Classification,
    ) -> std::result::Result<String, StageError> {
        Ok(self.choose(scale, spec, classification))
    }
}
