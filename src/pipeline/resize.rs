//! Stage 4: resize to the target box, in linear light with premultiplied alpha.
//!
//! Averaging sRGB code values darkens fine detail and edges; averaging
//! unpremultiplied colour drags invisible colour into visible edges (dark halos).
//! Both are avoided here. Lanczos3 via `fast_image_resize`, which uses SIMD.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::{Fit, Target};
use crate::error::{Stage, StageError};
use crate::raster::{Raster, linear_to_srgb_lut, srgb_to_linear_lut};

/// The pixel size that `target` asks of an image of `width`x`height`, and the part
/// of the source to keep (for `cover`, a centred crop with the box's aspect).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// Size of the resized content.
    pub content: (u32, u32),
    /// Size of the final canvas (equals `content` except in `pad` mode).
    pub canvas: (u32, u32),
    /// Source crop (left, top, width, height) for `cover`.
    pub crop: Option<(f64, f64, f64, f64)>,
}

/// Factor by which the source must grow to meet the target (≤ 1: shrink only).
pub fn needed_scale(width: u32, height: u32, target: &Target) -> f64 {
    let (sx, sy) = axis_scales(width, height, target);
    match target.fit {
        Fit::Cover => sx.max(sy),
        Fit::Contain | Fit::Pad => sx.min(sy),
    }
}

fn axis_scales(width: u32, height: u32, target: &Target) -> (f64, f64) {
    let fill = target.fill_share();
    let sx = target.width.map(|w| w as f64 * fill / width as f64);
    let sy = target.height.map(|h| h as f64 * fill / height as f64);
    match (sx, sy) {
        (Some(x), Some(y)) => (x, y),
        (Some(x), None) => (x, x),
        (None, Some(y)) => (y, y),
        (None, None) => (1.0, 1.0),
    }
}

pub fn placement(width: u32, height: u32, target: &Target) -> Placement {
    let scale = needed_scale(width, height, target);
    let scaled = |v: u32| ((v as f64 * scale).round() as u32).max(1);
    match target.fit {
        Fit::Contain => {
            let content = (scaled(width), scaled(height));
            Placement {
                content,
                canvas: content,
                crop: None,
            }
        }
        Fit::Pad => {
            let content = (scaled(width), scaled(height));
            let canvas = (
                target.width.unwrap_or(content.0).max(content.0),
                target.height.unwrap_or(content.1).max(content.1),
            );
            Placement {
                content,
                canvas,
                crop: None,
            }
        }
        Fit::Cover => {
            let box_w = target.width.unwrap_or_else(|| scaled(width));
            let box_h = target.height.unwrap_or_else(|| scaled(height));
            let crop_w = (box_w as f64 / scale).min(width as f64);
            let crop_h = (box_h as f64 / scale).min(height as f64);
            Placement {
                content: (box_w, box_h),
                canvas: (box_w, box_h),
                crop: Some((
                    (width as f64 - crop_w) / 2.0,
                    (height as f64 - crop_h) / 2.0,
                    crop_w,
                    crop_h,
                )),
            }
        }
    }
}

/// Resizes and places `raster` as `target` asks.
pub fn fit_to_target(raster: &Raster, target: &Target) -> Result<Raster, StageError> {
    let place = placement(raster.width, raster.height, target);
    let content = resize(raster, place.content.0, place.content.1, place.crop)?;
    if place.canvas == place.content {
        return Ok(content);
    }
    Ok(pad(&content, place.canvas, target.background))
}

/// Lanczos3 resize of the whole raster (or a crop of it) to `width`x`height`.
pub fn resize(
    raster: &Raster,
    width: u32,
    height: u32,
    crop: Option<(f64, f64, f64, f64)>,
) -> Result<Raster, StageError> {
    if crop.is_none() && (width, height) == (raster.width, raster.height) {
        return Ok(raster.clone());
    }
    let to_linear = srgb_to_linear_lut();
    let mut src: Vec<u16> = raster.data.iter().map(|&v| to_linear[v as usize]).collect();
    let pixel_type = if raster.has_alpha {
        PixelType::U16x4
    } else {
        PixelType::U16x3
    };
    let err = |e: &dyn std::fmt::Display| StageError::new(Stage::Resize, e.to_string());
    let src_image = Image::from_slice_u8(
        raster.width,
        raster.height,
        bytemuck::cast_slice_mut(&mut src),
        pixel_type,
    )
    .map_err(|e| err(&e))?;
    let mut out = Raster::new(width, height, raster.has_alpha);
    let mut dst_image = Image::from_slice_u8(
        width,
        height,
        bytemuck::cast_slice_mut(&mut out.data),
        pixel_type,
    )
    .map_err(|e| err(&e))?;
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if let Some((left, top, w, h)) = crop {
        options = options.crop(left, top, w, h);
    }
    Resizer::new()
        .resize(&src_image, &mut dst_image, &options)
        .map_err(|e| err(&e))?;
    drop(dst_image);
    let to_srgb = linear_to_srgb_lut();
    for v in out.data.iter_mut() {
        *v = to_srgb[*v as usize];
    }
    Ok(out)
}

/// Centres `content` on a canvas of the background colour (opaque).
pub fn pad(content: &Raster, canvas: (u32, u32), background: [u8; 3]) -> Raster {
    let mut out = Raster::new(canvas.0, canvas.1, content.has_alpha);
    let c = out.channels();
    for px in out.data.chunks_exact_mut(c) {
        for (i, v) in background.iter().enumerate() {
            px[i] = *v as u16 * 257;
        }
        if c == 4 {
            px[3] = u16::MAX;
        }
    }
    let flat;
    // Transparent content over an opaque pad would show a hard edge: composite it.
    let content = if content.has_alpha {
        flat = content.flatten_onto(background);
        &flat
    } else {
        content
    };
    let (x0, y0) = (
        (canvas.0 - content.width) as usize / 2,
        (canvas.1 - content.height) as usize / 2,
    );
    let cc = content.channels();
    for y in 0..content.height as usize {
        for x in 0..content.width as usize {
            let s = (y * content.width as usize + x) * cc;
            let d = ((y + y0) * canvas.0 as usize + x + x0) * c;
            out.data[d..d + 3].copy_from_slice(&content.data[s..s + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(w: u32, h: u32, fit: Fit) -> Target {
        Target {
            width: Some(w),
            height: Some(h),
            fit,
            ..Target::default()
        }
    }

    #[test]
    fn contain_keeps_aspect_inside_box() {
        let p = placement(400, 200, &target(1000, 1000, Fit::Contain));
        assert_eq!(p.content, (1000, 500));
        assert_eq!(p.canvas, (1000, 500));
    }

    #[test]
    fn pad_fills_the_exact_box_and_fill_share_shrinks_content() {
        let mut t = target(1000, 1000, Fit::Pad);
        t.fill = Some(0.85);
        let p = placement(400, 200, &t);
        assert_eq!(p.canvas, (1000, 1000));
        assert_eq!(p.content, (850, 425));
    }

    #[test]
    fn cover_crops_to_box_aspect() {
        let p = placement(400, 200, &target(100, 100, Fit::Cover));
        assert_eq!(p.content, (100, 100));
        let (l, t, w, h) = p.crop.unwrap();
        assert_eq!((l, t, w, h), (100.0, 0.0, 200.0, 200.0));
    }

    #[test]
    fn resize_of_flat_colour_stays_flat() {
        let mut r = Raster::new(50, 30, false);
        r.data.iter_mut().for_each(|v| *v = 40000);
        let out = resize(&r, 17, 11, None).unwrap();
        assert!(out.data.iter().all(|&v| v.abs_diff(40000) <= 1));
    }

    #[test]
    fn no_dark_halo_at_transparent_edge() {
        // White opaque left half, fully transparent *black* right half.
        let mut r = Raster::new(64, 8, true);
        for (i, px) in r.data.chunks_exact_mut(4).enumerate() {
            if (i % 64) < 32 {
                px.copy_from_slice(&[65535, 65535, 65535, 65535]);
            }
        }
        let out = resize(&r, 20, 4, None).unwrap();
        for px in out.data.chunks_exact(4) {
            if px[3] > 1000 {
                assert!(px[0] > 64000, "halo: {px:?}");
            }
        }
    }
}
