//! Smart mode's model choice: the routing table (`config/routes.yaml`) maps
//! content class x scale x quality level to a model, and faces found in an
//! image sent to a generative model are taken from a fidelity model instead,
//! blended in with a feathered mask, so identities and skin are not invented.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::catalog::{Catalog, ModelKind};
use crate::config::QualityLevel;
use crate::error::{Stage, StageError};
use crate::pipeline::classify::{Class, Classification, FaceBox};
use crate::pipeline::upscale::Upscaler;
use crate::raster::Raster;

pub const ROUTES_YAML: &str = include_str!("../../config/routes.yaml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    pub fast: String,
    pub balanced: String,
    pub best: String,
}

/// route name (class, or `jpeg-damaged-<class>`) → scale → levels.
#[derive(Clone, Debug)]
pub struct Routes(BTreeMap<String, BTreeMap<u32, Levels>>);

/// The routes a table may name, and the scales Smart mode routes.
pub const ROUTE_NAMES: &[&str] = &[
    "photo",
    "face",
    "text",
    "illustration",
    "jpeg-damaged-photo",
    "jpeg-damaged-illustration",
];
pub const ROUTED_SCALES: &[u32] = &[2, 4];

/// A user's `routes:` entry for one route and scale: each level it names
/// replaces the built-in model; the others stay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelOverrides {
    pub fast: Option<String>,
    pub balanced: Option<String>,
    pub best: Option<String>,
}

impl LevelOverrides {
    fn get(&self, level: QualityLevel) -> Option<&str> {
        match level {
            QualityLevel::Fast => self.fast.as_deref(),
            QualityLevel::Balanced => self.balanced.as_deref(),
            QualityLevel::Best => self.best.as_deref(),
        }
    }
}

/// The config file's `routes:` (route → scale → levels), laid over the
/// built-in table.
pub type RouteOverrides = BTreeMap<String, BTreeMap<u32, LevelOverrides>>;

impl Routes {
    pub fn builtin(catalog: &Catalog) -> Result<Self> {
        let table: BTreeMap<String, BTreeMap<u32, Levels>> =
            serde_yaml::from_str(ROUTES_YAML).context("config/routes.yaml is malformed")?;
        for (route, scales) in &table {
            for (scale, levels) in scales {
                for name in [&levels.fast, &levels.balanced, &levels.best] {
                    let entry = catalog.get(name)?;
                    if entry.scale != *scale || !entry.default_route {
                        bail!(
                            "routes: {route} {scale}x names {name}, which is {}x or not licensed for default routes",
                            entry.scale
                        );
                    }
                }
            }
        }
        Ok(Self(table))
    }

    /// The model for a classified image at `scale` and `level`: the user's
    /// override when there is one, else the built-in table.
    pub fn pick<'a>(
        &'a self,
        overrides: &'a RouteOverrides,
        c: &Classification,
        scale: u32,
        level: QualityLevel,
    ) -> Option<&'a str> {
        let class = c.class.to_string();
        let damaged = match c.class {
            Class::Illustration => "jpeg-damaged-illustration",
            _ => "jpeg-damaged-photo",
        };
        // Faces and text keep their fidelity models even when damaged.
        let route = if c.jpeg_damaged() && matches!(c.class, Class::Photo | Class::Illustration) {
            damaged.to_string()
        } else {
            class
        };
        let chosen = overrides
            .get(&route)
            .and_then(|scales| scales.get(&scale))
            .and_then(|levels| levels.get(level));
        if chosen.is_some() {
            return chosen;
        }
        let levels = self.0.get(&route)?.get(&scale)?;
        Some(match level {
            QualityLevel::Fast => &levels.fast,
            QualityLevel::Balanced => &levels.balanced,
            QualityLevel::Best => &levels.best,
        })
    }
}

/// A generative model's result with the faces taken from a fidelity model.
pub struct FaceSafe {
    pub main: Arc<dyn Upscaler>,
    pub fidelity: Arc<dyn Upscaler>,
    pub faces: Vec<FaceBox>,
}

impl Upscaler for FaceSafe {
    fn name(&self) -> String {
        format!("{} (faces: {})", self.main.name(), self.fidelity.name())
    }

    fn is_model(&self) -> bool {
        true
    }

    fn upscale(&self, raster: &Raster, scale: u32) -> Result<Raster, StageError> {
        let mut out = self.main.upscale(raster, scale)?;
        let faithful = self.fidelity.upscale(raster, scale)?;
        if (faithful.width, faithful.height) != (out.width, out.height) {
            return Err(StageError::new(
                Stage::Upscale,
                "face model output size differs",
            ));
        }
        blend_faces(&mut out, &faithful, &self.faces, scale);
        Ok(out)
    }
}

/// Replaces each face box (grown by 30% each side) in `out` with `faithful`,
/// feathered over a quarter of the box so no edge shows.
pub fn blend_faces(out: &mut Raster, faithful: &Raster, faces: &[FaceBox], scale: u32) {
    let c = out.channels();
    let (w, h) = (out.width as f64, out.height as f64);
    for face in faces {
        let s = scale as f64;
        let (fw, fh) = (face.width as f64 * s, face.height as f64 * s);
        let (cx, cy) = (face.x as f64 * s + fw / 2.0, face.y as f64 * s + fh / 2.0);
        let (half_w, half_h) = (fw * 0.8, fh * 0.8);
        let feather = (fw.max(fh) * 0.25).max(2.0);
        let x0 = (cx - half_w - feather).max(0.0) as u32;
        let x1 = (cx + half_w + feather).min(w) as u32;
        let y0 = (cy - half_h - feather).max(0.0) as u32;
        let y1 = (cy + half_h + feather).min(h) as u32;
        for y in y0..y1 {
            let dy = ((y as f64 + 0.5 - cy).abs() - half_h).max(0.0);
            for x in x0..x1 {
                let dx = ((x as f64 + 0.5 - cx).abs() - half_w).max(0.0);
                // 1 inside the grown box, fading to 0 across the feather.
                let t = 1.0 - ((dx * dx + dy * dy).sqrt() / feather).min(1.0);
                let weight = t * t * (3.0 - 2.0 * t);
                if weight <= 0.0 {
                    continue;
                }
                let i = (y as usize * out.width as usize + x as usize) * c;
                for k in 0..3 {
                    let (a, b) = (out.data[i + k] as f64, faithful.data[i + k] as f64);
                    out.data[i + k] = (a + (b - a) * weight).round() as u16;
                }
            }
        }
    }
}

/// Whether a model invents detail (and so needs its faces protected).
pub fn is_generative(catalog: &Catalog, name: &str) -> bool {
    catalog
        .get(name)
        .is_ok_and(|e| e.kind == ModelKind::Generative)
}

/// Measured inference cost on 2 CPU cores (ONNX Runtime), seconds per input
/// megapixel: DESIGN.md's figures and docs/benchmarks.md.
pub fn seconds_per_megapixel(model: &str) -> Option<f64> {
    Some(match model {
        m if m.starts_with("spanx4") => 2.2,
        m if m.starts_with("spanx2") => 3.5,
        m if m.starts_with("realesr-animevideov3") => 4.4,
        m if m.starts_with("waifu2x-upconv7") => 4.7,
        "realesrgan-x4plus" | "realesrgan-x4plus-anime" => 104.0,
        _ => return None,
    })
}
