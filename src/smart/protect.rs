//! Protection: the faces and lines of text found in an image sent to a
//! generative model are taken from a fidelity model instead, blended in with
//! a feathered mask, so identities, skin and letters are not invented.

use std::sync::Arc;

use crate::deadline::Deadline;
use crate::error::{Stage, StageError};
use crate::models::Upscaler;
use crate::models::catalog::{Catalog, ModelKind};
use crate::models::text_regions::TextBox;
use crate::raster::Raster;
use crate::smart::classify::FaceBox;
use serde::Serialize;

/// What a protected region holds; it sets how far the region is grown and
/// feathered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionKind {
    Face,
    Text,
}

/// A region of the source that a generative model must not reinvent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Protected {
    pub kind: RegionKind,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Protected {
    pub fn face(f: &FaceBox) -> Self {
        Self {
            kind: RegionKind::Face,
            x: f.x,
            y: f.y,
            width: f.width,
            height: f.height,
        }
    }

    pub fn text(t: &TextBox) -> Self {
        Self {
            kind: RegionKind::Text,
            x: t.x,
            y: t.y,
            width: t.width,
            height: t.height,
        }
    }

    /// Margin added on each side (x, y) and the feather, as shares of the
    /// box. A face box covers eyes to mouth, so it grows by 30% to take in
    /// hair line and chin; a text box is already the whole line, so it grows
    /// by a little of the line's height.
    fn margins(&self) -> (f64, f64, f64) {
        let (w, h) = (self.width as f64, self.height as f64);
        match self.kind {
            RegionKind::Face => (0.3 * w, 0.3 * h, 0.25 * w.max(h)),
            RegionKind::Text => (0.15 * h, 0.15 * h, 0.4 * h),
        }
    }
}

/// A generative model's result with faces and text taken from a fidelity
/// model.
pub struct RegionSafe {
    pub main: Arc<dyn Upscaler>,
    pub fidelity: Arc<dyn Upscaler>,
    pub regions: Vec<Protected>,
}

impl Upscaler for RegionSafe {
    fn name(&self) -> String {
        let count = |k| self.regions.iter().filter(|r| r.kind == k).count();
        format!(
            "{} ({} faces, {} text lines: {})",
            self.main.name(),
            count(RegionKind::Face),
            count(RegionKind::Text),
            self.fidelity.name()
        )
    }

    fn is_model(&self) -> bool {
        true
    }

    fn upscale(
        &self,
        raster: &Raster,
        scale: u32,
        deadline: Option<&Deadline>,
    ) -> Result<Raster, StageError> {
        let mut out = self.main.upscale(raster, scale, deadline)?;
        let faithful = self.fidelity.upscale(raster, scale, deadline)?;
        if (faithful.width, faithful.height) != (out.width, out.height) {
            return Err(StageError::new(
                Stage::Upscale,
                "fidelity model output size differs",
            ));
        }
        blend_regions(&mut out, &faithful, &self.regions, scale);
        Ok(out)
    }
}

/// Replaces each region (grown by its margins) in `out` with `faithful`,
/// feathered with a smooth step so no edge shows.
pub fn blend_regions(out: &mut Raster, faithful: &Raster, regions: &[Protected], scale: u32) {
    let c = out.channels();
    let (w, h) = (out.width as f64, out.height as f64);
    let s = scale as f64;
    for region in regions {
        let (mx, my, feather) = region.margins();
        let (rw, rh) = (region.width as f64 * s, region.height as f64 * s);
        let (cx, cy) = (
            region.x as f64 * s + rw / 2.0,
            region.y as f64 * s + rh / 2.0,
        );
        let (half_w, half_h) = (rw / 2.0 + mx * s, rh / 2.0 + my * s);
        let feather = (feather * s).max(2.0);
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
