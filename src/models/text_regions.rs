//! Text inside a picture (a product label, a price tag, a sign, a caption),
//! found by the PP-OCRv4 text detector: a DBNet that the `rapidocr-onnxruntime`
//! wheel ships as ONNX (Apache-2.0). Smart mode keeps these regions from a
//! fidelity model when the picture goes to a generative one, so letters are not
//! reinvented.
//!
//! The network gives a per-pixel "inside a line of text" probability at the
//! input size; each connected blob above 0.3 whose mean is at least 0.5 is a
//! line. DBNet draws its blobs shrunk, so each box is grown back as in the DB
//! paper (offset = area x 1.6 / perimeter).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::Serialize;

use super::runtime::{self, ModelSession};
use crate::raster::Raster;

/// Where `models fetch` installs the detector, inside the models folder.
pub const DETECTOR_FILE: &str = "detectors/ppocr-v4-det.onnx";

/// Pixel threshold and the mean score a blob needs (PaddleOCR's defaults).
const PIXEL_THRESHOLD: f32 = 0.3;
const BOX_THRESHOLD: f32 = 0.5;
/// DB's unclip ratio: how far a shrunk blob is grown back.
const UNCLIP_RATIO: f64 = 1.6;

/// One line of text, in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TextBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub score: f64,
}

pub fn detector_path(models_dir: &Path) -> PathBuf {
    models_dir.join(DETECTOR_FILE)
}

pub struct TextDetector {
    session: Arc<ModelSession>,
}

impl TextDetector {
    pub fn load(models_dir: &Path, threads: usize) -> Result<Self> {
        let path = detector_path(models_dir);
        Ok(Self {
            session: runtime::helper_session(models_dir, &path, "text detector", threads)?,
        })
    }

    /// Lines of text in `raster`, for protecting them. The picture is scaled
    /// so its long side is between 640 and 960 pixels: small sources are
    /// enlarged so small type is still several pixels high, big ones are
    /// capped to bound the cost.
    pub fn detect(&self, raster: &Raster) -> Result<Vec<TextBox>> {
        let long = raster.width.max(raster.height).max(1);
        self.detect_at(raster, long.clamp(640, 960))
    }

    /// Lines of text at a long side of 352 px, for classification: the lines
    /// of a page, a screenshot or a slide are found at that size, in about
    /// 20 ms (docs/benchmarks.md). Returns the count and the share of the
    /// frame the lines cover.
    pub fn text_lines(&self, raster: &Raster) -> Result<(usize, f64)> {
        let lines = self.detect_at(raster, 352)?;
        // A fold from +0.0: an empty f64 sum is -0.0, which would print as "-0".
        let area = lines
            .iter()
            .fold(0.0, |a, b| a + b.width as f64 * b.height as f64);
        let frame = raster.width as f64 * raster.height as f64;
        Ok((lines.len(), (area / frame.max(1.0)).min(1.0)))
    }

    fn detect_at(&self, raster: &Raster, long_side: u32) -> Result<Vec<TextBox>> {
        let long = raster.width.max(raster.height).max(1);
        let k = long_side as f64 / long as f64;
        let round32 = |v: u32| ((v as f64 * k / 32.0).round() as usize).max(1) * 32;
        let (w, h) = (round32(raster.width), round32(raster.height));
        let input = network_input(raster, w, h);
        let (shape, map) = self.session.run([1, 3, h, w], &input)?;
        if shape[2..] != [h, w] {
            bail!("text detector output is {shape:?}, expected 1x1x{h}x{w}");
        }
        let (sx, sy) = (
            raster.width as f64 / w as f64,
            raster.height as f64 / h as f64,
        );
        Ok(lines(&map, w, h)
            .into_iter()
            .filter_map(|b| b.to_source(sx, sy, raster.width, raster.height))
            .collect())
    }
}

/// NCHW floats in BGR order scaled to -1..1 (how the detector was trained),
/// bilinearly resampled to `w` x `h`; transparent areas count as white.
fn network_input(raster: &Raster, w: usize, h: usize) -> Vec<f32> {
    let rgb = raster.planar_rgb(w, h);
    let plane = w * h;
    // Channel 0 is blue: the network was trained on BGR.
    [2, 1, 0]
        .iter()
        .flat_map(|&k| &rgb[k * plane..(k + 1) * plane])
        .map(|v| (v - 0.5) / 0.5)
        .collect()
}

/// A blob of the probability map: its bounding box in map pixels.
#[derive(Debug, Clone, Copy)]
struct Blob {
    score: f32,
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

impl Blob {
    /// Grown back by DB's unclip offset, then scaled to the source.
    fn to_source(self, sx: f64, sy: f64, width: u32, height: u32) -> Option<TextBox> {
        let (bw, bh) = ((self.x1 - self.x0) as f64, (self.y1 - self.y0) as f64);
        let offset = bw * bh * UNCLIP_RATIO / (2.0 * (bw + bh));
        let x0 = ((self.x0 as f64 - offset) * sx).max(0.0);
        let y0 = ((self.y0 as f64 - offset) * sy).max(0.0);
        let x1 = ((self.x1 as f64 + offset) * sx).min(width as f64);
        let y1 = ((self.y1 as f64 + offset) * sy).min(height as f64);
        (x1 > x0 && y1 > y0).then(|| TextBox {
            x: x0 as u32,
            y: y0 as u32,
            width: (x1 - x0).ceil() as u32,
            height: (y1 - y0).ceil() as u32,
            score: self.score as f64,
        })
    }
}

/// The line-shaped blobs of the probability map (8-connected).
fn lines(map: &[f32], w: usize, h: usize) -> Vec<Blob> {
    let mut seen = vec![false; map.len()];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for start in 0..map.len() {
        if seen[start] || map[start] <= PIXEL_THRESHOLD {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        let (mut pixels, mut sum) = (0usize, 0f32);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            pixels += 1;
            sum += map[i];
            for ny in y.saturating_sub(1)..(y + 2).min(h) {
                for nx in x.saturating_sub(1)..(x + 2).min(w) {
                    let j = ny * w + nx;
                    if !seen[j] && map[j] > PIXEL_THRESHOLD {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let score = sum / pixels as f32;
        let blob = Blob {
            score,
            x0,
            y0,
            x1,
            y1,
        };
        if score >= BOX_THRESHOLD && is_line(&blob, pixels, w.min(h)) {
            found.push(blob);
        }
    }
    found
}

/// A line of type is at least 3 pixels high, not taller than wide, mostly
/// filled, and at most 15% of the picture's short side high. The detector
/// also fires on some large round textures (a cup of coffee, a herd of
/// horses); those blobs fail this shape test.
fn is_line(b: &Blob, pixels: usize, short_side: usize) -> bool {
    let (bw, bh) = (b.x1 - b.x0, b.y1 - b.y0);
    bh >= 3 && bw * 5 >= bh * 4 && pixels * 2 >= bw * bh && bh as f64 <= 0.15 * short_side as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two lines, a square blob, a blob too faint and a speck.
    #[test]
    fn blobs_become_lines_only_when_they_look_like_lines() {
        let (w, h) = (100, 100);
        let mut map = vec![0f32; w * h];
        let mut fill = |x0: usize, y0: usize, x1: usize, y1: usize, v: f32| {
            for y in y0..y1 {
                for x in x0..x1 {
                    map[y * w + x] = v;
                }
            }
        };
        fill(10, 10, 60, 16, 0.9); // a line
        fill(10, 30, 40, 35, 0.8); // another
        fill(50, 50, 90, 90, 0.95); // a large square: texture
        fill(10, 70, 40, 75, 0.4); // above the pixel threshold, mean too low
        fill(80, 10, 81, 11, 0.9); // a speck
        let found = lines(&map, w, h);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].x0, found[0].y0, found[0].x1, found[0].y1),
            (10, 10, 60, 16)
        );
        // Grown back by area x 1.6 / perimeter = 50*6*1.6/112 = 4.3 map pixels.
        let b = found[0].to_source(2.0, 2.0, 200, 200).unwrap();
        assert_eq!((b.x, b.y), (11, 11));
        assert_eq!((b.width, b.height), (118, 30));
    }
}
