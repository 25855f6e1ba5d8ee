//! The subject of a picture that stands on a plain backdrop: a product shot
//! on white, a cut-out, a clip-art figure. Classification looks at the
//! subject, not at the backdrop: a wide white field is flat, bright and
//! colourless, which reads as a drawing or a page whatever stands on it, and
//! sent real product photos to the anime model.

use super::statistics::small_luma_rgb;
use crate::raster::Raster;

/// The side of the copy the backdrop is looked for on.
const SIDE: u32 = 256;
/// Most of the border must be one colour, within this step (8-bit).
const BACKDROP_TOLERANCE: i32 = 10;
const BACKDROP_SHARE: f64 = 0.85;
/// A pixel this far from the backdrop belongs to the subject.
const SUBJECT_STEP: i32 = 24;
/// Crop only when it takes away a real share of the frame.
const MAX_SUBJECT_SHARE: f64 = 0.85;

/// A region of the source, in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The box around everything that differs from a plain backdrop, when the
/// picture has one and the box leaves a real share of the frame out.
pub fn subject_region(raster: &Raster) -> Option<Region> {
    let (w, h, px) = small_luma_rgb(raster, SIDE);
    if w < 8 || h < 8 {
        return None;
    }
    let at = |x: u32, y: u32| px[(y * w + x) as usize];
    let border: Vec<[u8; 3]> = (0..w)
        .flat_map(|x| [at(x, 0), at(x, h - 1)])
        .chain((1..h - 1).flat_map(|y| [at(0, y), at(w - 1, y)]))
        .collect();
    // The backdrop: the border's per-channel median.
    let backdrop: [i32; 3] = std::array::from_fn(|c| {
        let mut v: Vec<u8> = border.iter().map(|p| p[c]).collect();
        v.sort_unstable();
        v[v.len() / 2] as i32
    });
    let step = |p: [u8; 3]| {
        (0..3)
            .map(|c| (p[c] as i32 - backdrop[c]).abs())
            .max()
            .unwrap_or(0)
    };
    let plain = border
        .iter()
        .filter(|&&p| step(p) <= BACKDROP_TOLERANCE)
        .count();
    if (plain as f64) < BACKDROP_SHARE * border.len() as f64 {
        return None;
    }
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if step(at(x, y)) > SUBJECT_STEP {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    if x0 > x1 || y0 > y1 {
        return None; // nothing but backdrop
    }
    // Back to source pixels (the copy is point-sampled every `scale` px),
    // with a margin of one sample.
    let scale = raster.width.max(raster.height).div_ceil(SIDE).max(1);
    let left = x0.saturating_sub(1) * scale;
    let top = y0.saturating_sub(1) * scale;
    let right = ((x1 + 2) * scale).min(raster.width);
    let bottom = ((y1 + 2) * scale).min(raster.height);
    let region = Region {
        x: left,
        y: top,
        width: right - left,
        height: bottom - top,
    };
    let share = (region.width as f64 * region.height as f64) / raster.pixel_count() as f64;
    (share <= MAX_SUBJECT_SHARE && region.width >= 16 && region.height >= 16).then_some(region)
}

/// The pixels of `region`.
pub fn crop(raster: &Raster, region: Region) -> Raster {
    let c = raster.channels();
    let mut out = Raster::new(region.width, region.height, raster.has_alpha);
    let row = region.width as usize * c;
    for y in 0..region.height as usize {
        let from = ((region.y as usize + y) * raster.width as usize + region.x as usize) * c;
        out.data[y * row..(y + 1) * row].copy_from_slice(&raster.data[from..from + row]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_white(w: u32, h: u32, object: (u32, u32, u32, u32)) -> Raster {
        let mut r = Raster::new(w, h, false);
        r.data.fill(u16::MAX);
        let (ox, oy, ow, oh) = object;
        for y in oy..oy + oh {
            for x in ox..ox + ow {
                let i = ((y * w + x) * 3) as usize;
                // Texture, as a photographed object has.
                let v = (20_000 + (x * 7919 + y * 104_729) % 20_000) as u16;
                r.data[i..i + 3].copy_from_slice(&[v, v / 2, v / 3]);
            }
        }
        r
    }

    #[test]
    fn an_object_on_white_is_found_and_cropped() {
        let r = on_white(800, 600, (300, 200, 200, 150));
        let region = subject_region(&r).expect("a subject");
        // The box holds the object, with at most a few samples of margin.
        assert!(region.x <= 300 && region.y <= 200, "{region:?}");
        assert!(region.x + region.width >= 500 && region.y + region.height >= 350);
        assert!(region.width <= 220 && region.height <= 170, "{region:?}");
        let sub = crop(&r, region);
        assert_eq!((sub.width, sub.height), (region.width, region.height));
        assert_eq!(sub.pixel(300 - region.x, 200 - region.y), r.pixel(300, 200));
    }

    #[test]
    fn a_full_frame_or_a_busy_border_is_left_alone() {
        // The subject fills the frame.
        assert_eq!(
            subject_region(&on_white(400, 300, (10, 10, 380, 280))),
            None
        );
        // No plain backdrop at all.
        assert_eq!(subject_region(&on_white(400, 300, (0, 0, 400, 300))), None);
        // Only backdrop.
        assert_eq!(subject_region(&on_white(400, 300, (0, 0, 0, 0))), None);
    }
}
