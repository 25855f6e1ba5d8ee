//! The image statistics: cheap counts on a point-sampled copy whose long
//! side is at most 512 px (flat fills, ramps, edges, colours, rows of ink,
//! thin outlines), so the cost does not grow with the source.

use super::Features;
use crate::raster::Raster;

/// Luma (0..255) of a copy whose long side is at most `max_side`.
pub(super) fn small_luma_rgb(raster: &Raster, max_side: u32) -> (u32, u32, Vec<[u8; 3]>) {
    let step = raster.width.max(raster.height).div_ceil(max_side).max(1);
    let (w, h) = (raster.width.div_ceil(step), raster.height.div_ceil(step));
    let c = raster.channels();
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            // Point sampling keeps noise and flat fills as they are; averaging
            // would make photos look flat.
            let (sx, sy) = (
                (x * step).min(raster.width - 1),
                (y * step).min(raster.height - 1),
            );
            let i = (sy as usize * raster.width as usize + sx as usize) * c;
            let p = &raster.data[i..i + 3];
            let a = if raster.has_alpha {
                raster.data[i + 3] as u32
            } else {
                65535
            };
            // Transparent areas count as white (how they are usually shown).
            let blend = |v: u16| ((v as u32 * a + 65535 * (65535 - a)) / 65535 / 257) as u8;
            out.push([blend(p[0]), blend(p[1]), blend(p[2])]);
        }
    }
    (w, h, out)
}

pub(super) fn luma(p: [u8; 3]) -> i32 {
    (p[0] as i32 * 77 + p[1] as i32 * 150 + p[2] as i32 * 29) >> 8
}

/// The image statistics; the detectors' fields are left empty for
/// `classify` to fill.
pub fn statistics(raster: &Raster) -> Features {
    let (w, h, px) = small_luma_rgb(raster, 512);
    let (w, h) = (w as usize, h as usize);
    let mut flat = 0u64;
    let mut edges = 0u64;
    let mut ramps = 0u64;
    let mut pairs = 0u64;
    for y in 0..h {
        for x in 0..w {
            let here = px[y * w + x];
            let mut pair = |other: [u8; 3]| {
                let d = (0..3)
                    .map(|c| (here[c] as i32 - other[c] as i32).abs())
                    .max()
                    .unwrap_or(0);
                pairs += 1;
                if d <= 1 {
                    flat += 1;
                }
                if d >= 48 {
                    edges += 1;
                }
                if (2..=32).contains(&d) {
                    ramps += 1;
                }
            };
            if x + 1 < w {
                pair(px[y * w + x + 1]);
            }
            if y + 1 < h {
                pair(px[(y + 1) * w + x]);
            }
        }
    }
    let mut histogram = vec![0u32; 1 << 15];
    let mut saturation = 0.0;
    let mut extremes = 0u64;
    for p in &px {
        let key = ((p[0] as usize >> 3) << 10) | ((p[1] as usize >> 3) << 5) | (p[2] as usize >> 3);
        histogram[key] += 1;
        let (max, min) = (*p.iter().max().unwrap(), *p.iter().min().unwrap());
        if max > 0 {
            saturation += (max - min) as f64 / max as f64;
        }
        let l = luma(*p);
        if !(24..=232).contains(&l) {
            extremes += 1;
        }
    }
    let top_key = (0..histogram.len())
        .max_by_key(|&k| histogram[k])
        .unwrap_or(0);
    let bg_luma = luma([
        ((top_key >> 10) as u8) << 3 | 4,
        (((top_key >> 5) & 31) as u8) << 3 | 4,
        ((top_key & 31) as u8) << 3 | 4,
    ]);
    let mut lines = 0u64;
    for y in 2..h.saturating_sub(2) {
        for x in 2..w.saturating_sub(2) {
            let l = luma(px[y * w + x]);
            let horizontal = luma(px[y * w + x - 2]).min(luma(px[y * w + x + 2]));
            let vertical = luma(px[(y - 2) * w + x]).min(luma(px[(y + 2) * w + x]));
            if l + 40 < horizontal || l + 40 < vertical {
                lines += 1;
            }
        }
    }
    // Rows with ink (far from the background) against blank rows.
    let mut transitions = 0u32;
    let mut inked_pixels = 0u64;
    let mut previous = false;
    for y in 0..h {
        let inked_here = px[y * w..(y + 1) * w]
            .iter()
            .filter(|&&p| (luma(p) - bg_luma).abs() > 64)
            .count();
        inked_pixels += inked_here as u64;
        let inked = inked_here * 100 > w;
        if y > 0 && inked != previous {
            transitions += 1;
        }
        previous = inked;
    }
    histogram.sort_unstable_by(|a, b| b.cmp(a));
    let n = px.len().max(1) as f64;
    Features {
        flat: flat as f64 / pairs.max(1) as f64,
        edges: edges as f64 / pairs.max(1) as f64,
        top_colours: histogram[..8].iter().map(|&c| c as f64).sum::<f64>() / n,
        background: histogram[0] as f64 / n,
        saturation: saturation / n,
        extremes: extremes as f64 / n,
        ramps: ramps as f64 / pairs.max(1) as f64,
        row_transitions: transitions as f64 * 100.0 / h.max(1) as f64,
        ink: inked_pixels as f64 / n,
        lines: lines as f64 / n,
        face_share: 0.0,
        text_lines: None,
        text_share: None,
        close_text_lines: None,
        drawn: None,
    }
}
