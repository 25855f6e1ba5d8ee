//! Stage 2: trim uniform borders before the upscale, so the model spends its time
//! on the subject (a product shot on white with too much margin).
//!
//! The border colour is read from the four corners; a border is trimmed only when
//! all four agree, so a photo whose corners differ is never cropped.

use crate::raster::Raster;

/// How far (in 8-bit steps) a pixel may differ from the border colour and still
/// count as border: absorbs JPEG noise on a "white" background.
const TOLERANCE_8BIT: u16 = 10;

/// Returns the trimmed raster, or `None` when there is no uniform border to trim.
pub fn trim_uniform_border(raster: &Raster) -> Option<Raster> {
    let (w, h) = (raster.width, raster.height);
    let corners = [
        raster.pixel(0, 0),
        raster.pixel(w - 1, 0),
        raster.pixel(0, h - 1),
        raster.pixel(w - 1, h - 1),
    ];
    let border = corners[0].to_vec();
    let tol = TOLERANCE_8BIT * 257;
    let is_border = |px: &[u16]| -> bool {
        if raster.has_alpha && px[3] < tol && border[3] < tol {
            return true; // transparent on transparent, whatever the hidden colour
        }
        px.iter().zip(&border).all(|(a, b)| a.abs_diff(*b) <= tol)
    };
    if !corners.iter().all(|c| is_border(c)) {
        return None;
    }
    let (mut left, mut right, mut top, mut bottom) = (w, 0, h, 0);
    for y in 0..h {
        for x in 0..w {
            if !is_border(raster.pixel(x, y)) {
                left = left.min(x);
                right = right.max(x);
                top = top.min(y);
                bottom = bottom.max(y);
            }
        }
    }
    if left > right {
        return None; // the whole image is border colour: nothing to keep apart
    }
    let (cw, ch) = (right - left + 1, bottom - top + 1);
    if (cw, ch) == (w, h) {
        return None;
    }
    let c = raster.channels();
    let mut out = Raster::new(cw, ch, raster.has_alpha);
    for y in 0..ch as usize {
        let src = ((top as usize + y) * w as usize + left as usize) * c;
        let dst = y * cw as usize * c;
        out.data[dst..dst + cw as usize * c]
            .copy_from_slice(&raster.data[src..src + cw as usize * c]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_white_margin_around_subject() {
        let mut r = Raster::new(100, 80, false);
        r.data.iter_mut().for_each(|v| *v = 65535);
        for y in 20..50 {
            for x in 30..60 {
                let i = (y * 100 + x) * 3;
                r.data[i..i + 3].copy_from_slice(&[1000, 20000, 3000]);
            }
        }
        let t = trim_uniform_border(&r).unwrap();
        assert_eq!((t.width, t.height), (30, 30));
        assert_eq!(t.pixel(0, 0), &[1000, 20000, 3000]);
    }

    #[test]
    fn leaves_images_with_different_corners_alone() {
        let mut r = Raster::new(10, 10, false);
        for (i, v) in r.data.iter_mut().enumerate() {
            *v = (i * 600) as u16;
        }
        assert!(trim_uniform_border(&r).is_none());
    }
}
