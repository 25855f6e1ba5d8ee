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

/// Output rows computed at a time by [`StreamedResize`].
const STREAM_ROWS: u32 = 64;

/// The Lanczos3 resize of [`resize`], fed the source a band of rows at a
/// time from top to bottom: each band of output rows is computed as soon as
/// every source row its filter reaches has arrived, and source rows no
/// later output needs are dropped. It gives `resize`'s pixels (the filter
/// is the same, over the same source rows) while holding only a window of
/// the source, so a model's enlarged rows can flow into the target size
/// without the whole enlarged image ever existing.
pub struct StreamedResize {
    source: (u32, u32),
    /// Source rectangle (left, top, width, height) that fills the output.
    crop: (f64, f64, f64, f64),
    out: Raster,
    /// Linear-light source rows `window_first..received`.
    window: Vec<u16>,
    window_first: u32,
    received: u32,
    /// Output rows before this are done.
    done: u32,
}

impl StreamedResize {
    /// A resize of a `source`-sized image (with alpha or not) to
    /// `width`x`height`, of the crop where one is given.
    pub fn new(
        source: (u32, u32),
        has_alpha: bool,
        (width, height): (u32, u32),
        crop: Option<(f64, f64, f64, f64)>,
    ) -> Self {
        Self {
            source,
            crop: crop.unwrap_or((0.0, 0.0, source.0 as f64, source.1 as f64)),
            out: Raster::new(width, height, has_alpha),
            window: Vec::new(),
            window_first: 0,
            received: 0,
            done: 0,
        }
    }

    fn channels(&self) -> usize {
        self.out.channels()
    }

    /// Source rows that output rows `a..b` reach (the filter's support).
    fn reach(&self, a: u32, b: u32) -> (u32, u32) {
        let (_, top, _, crop_h) = self.crop;
        let step = crop_h / self.out.height as f64;
        let radius = 3.0 * step.max(1.0) + 1.0;
        let lo = (top + a as f64 * step - radius).floor().max(0.0) as u32;
        let hi = (top + b as f64 * step + radius)
            .ceil()
            .min(self.source.1 as f64) as u32;
        (lo.min(self.source.1), hi)
    }

    /// Takes the next source rows (`rows` continues where the last band
    /// ended) and computes every output row they complete.
    pub fn push(&mut self, first_row: u32, rows: &Raster) -> Result<(), StageError> {
        let err = |m: String| StageError::new(Stage::Resize, m);
        if first_row != self.received
            || rows.width != self.source.0
            || rows.has_alpha != self.out.has_alpha
            || self.received + rows.height > self.source.1
        {
            return Err(err(format!(
                "rows {first_row}.. of a {}-wide image came after row {} (expected a band of the {}x{} source, in order)",
                rows.width, self.received, self.source.0, self.source.1
            )));
        }
        let to_linear = srgb_to_linear_lut();
        self.window
            .extend(rows.data.iter().map(|&v| to_linear[v as usize]));
        self.received += rows.height;
        while self.done < self.out.height {
            let end = (self.done + STREAM_ROWS).min(self.out.height);
            if self.reach(self.done, end).1 > self.received {
                break;
            }
            self.resize_rows(self.done, end)?;
            self.done = end;
        }
        // Forget the source rows that no later output row reaches. Once per
        // band pushed, not per band of output: each drain moves the whole
        // window, and the window is never larger than just after the push.
        let keep_from = if self.done < self.out.height {
            self.reach(self.done, (self.done + STREAM_ROWS).min(self.out.height))
                .0
        } else {
            self.received
        }
        .max(self.window_first);
        let drop = (keep_from - self.window_first) as usize * self.source.0 as usize;
        self.window.drain(..drop * self.channels());
        self.window_first = keep_from;
        Ok(())
    }

    /// Output rows `a..b` from the window, as `resize` computes them.
    fn resize_rows(&mut self, a: u32, b: u32) -> Result<(), StageError> {
        let err = |e: &dyn std::fmt::Display| StageError::new(Stage::Resize, e.to_string());
        let (left, top, crop_w, crop_h) = self.crop;
        let step = crop_h / self.out.height as f64;
        let pixel_type = if self.out.has_alpha {
            PixelType::U16x4
        } else {
            PixelType::U16x3
        };
        let c = self.channels();
        let width = self.out.width;
        let src_rows = self.received - self.window_first;
        let src = Image::from_slice_u8(
            self.source.0,
            src_rows,
            bytemuck::cast_slice_mut(&mut self.window),
            pixel_type,
        )
        .map_err(|e| err(&e))?;
        let rows =
            &mut self.out.data[a as usize * width as usize * c..b as usize * width as usize * c];
        let mut dst =
            Image::from_slice_u8(width, b - a, bytemuck::cast_slice_mut(rows), pixel_type)
                .map_err(|e| err(&e))?;
        // Rounding may put the band's edge a hair past the window's rows.
        let band_top = (top + a as f64 * step - self.window_first as f64).max(0.0);
        let band_height = ((b - a) as f64 * step).min(src_rows as f64 - band_top);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(left, band_top, crop_w, band_height);
        Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|e| err(&e))?;
        drop(dst);
        let to_srgb = linear_to_srgb_lut();
        for v in rows.iter_mut() {
            *v = to_srgb[*v as usize];
        }
        Ok(())
    }

    /// The resized image, once every source row has come.
    pub fn finish(self) -> Result<Raster, StageError> {
        if self.done < self.out.height {
            return Err(StageError::new(
                Stage::Resize,
                format!(
                    "only {} of the source's {} rows arrived",
                    self.received, self.source.1
                ),
            ));
        }
        Ok(self.out)
    }

    /// Bytes it keeps per source pixel of a band it is handed: the band's
    /// linear-light copy in its window.
    pub fn bytes_per_source_pixel(has_alpha: bool) -> u64 {
        if has_alpha { 8 } else { 6 }
    }
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

    /// A picture with detail at every scale: gradients, a checker, a ring.
    fn busy(width: u32, height: u32, alpha: bool) -> Raster {
        let mut r = Raster::new(width, height, alpha);
        let c = r.channels();
        for (i, px) in r.data.chunks_exact_mut(c).enumerate() {
            let (x, y) = ((i as u32 % width) as f64, (i as u32 / width) as f64);
            let checker = ((x as u32 / 3 + y as u32 / 5) % 2) as f64;
            let ring = ((x - 40.0).hypot(y - 30.0) / 4.0).sin() * 0.5 + 0.5;
            px[0] = (x / width as f64 * 65535.0) as u16;
            px[1] = (checker * 60000.0) as u16;
            px[2] = (ring * 65535.0) as u16;
            if alpha {
                px[3] = if (x as u32 + y as u32).is_multiple_of(7) {
                    0
                } else {
                    50000
                };
            }
        }
        r
    }

    /// Feeds `source` to a streamed resize in bands of `band` rows.
    fn streamed(
        source: &Raster,
        size: (u32, u32),
        crop: Option<(f64, f64, f64, f64)>,
        band: u32,
    ) -> Raster {
        let mut s =
            StreamedResize::new((source.width, source.height), source.has_alpha, size, crop);
        let row = source.width as usize * source.channels();
        let mut y = 0;
        while y < source.height {
            let n = band.min(source.height - y);
            let mut part = Raster::new(source.width, n, source.has_alpha);
            part.data
                .copy_from_slice(&source.data[y as usize * row..(y + n) as usize * row]);
            s.push(y, &part).unwrap();
            y += n;
        }
        s.finish().unwrap()
    }

    #[test]
    fn streamed_resize_gives_the_pixels_of_the_whole_image_resize() {
        type Case = (u32, u32, bool, (u32, u32), Option<(f64, f64, f64, f64)>);
        let cases: [Case; 5] = [
            (320, 240, false, (80, 60), None),
            (320, 240, false, (101, 77), None),
            (96, 200, true, (40, 83), None),
            (300, 200, false, (100, 100), Some((50.0, 0.0, 200.0, 200.0))),
            (60, 50, false, (150, 125), None),
        ];
        for (w, h, alpha, size, crop) in cases {
            let source = busy(w, h, alpha);
            let whole = resize(&source, size.0, size.1, crop).unwrap();
            for band in [1, 7, 64, 1000] {
                let parts = streamed(&source, size, crop, band);
                let worst = whole
                    .data
                    .iter()
                    .zip(&parts.data)
                    .map(|(a, b)| a.abs_diff(*b))
                    .max()
                    .unwrap();
                assert!(
                    worst <= 257,
                    "{w}x{h} -> {size:?} crop {crop:?} in bands of {band}: {worst}/65535 apart"
                );
            }
        }
    }

    #[test]
    fn a_streamed_resize_keeps_a_window_not_the_image() {
        let source = busy(200, 800, false);
        let mut s = StreamedResize::new((200, 800), false, (50, 200), None);
        let mut most = 0;
        for y in (0..800).step_by(50) {
            let mut part = Raster::new(200, 50, false);
            part.data
                .copy_from_slice(&source.data[y * 600..(y + 50) * 600]);
            s.push(y as u32, &part).unwrap();
            most = most.max(s.window.len() / 600);
        }
        // A band of 64 output rows reaches 256 source rows plus the filter.
        assert!(most < 400, "held {most} of 800 source rows");
        s.finish().unwrap();
    }

    #[test]
    fn a_streamed_resize_refuses_rows_out_of_order_or_missing() {
        let source = busy(40, 40, false);
        let mut s = StreamedResize::new((40, 40), false, (10, 10), None);
        let mut part = Raster::new(40, 10, false);
        part.data.copy_from_slice(&source.data[..40 * 10 * 3]);
        assert!(s.push(10, &part).is_err(), "a band that skips rows");
        s.push(0, &part).unwrap();
        let e = s.finish().unwrap_err();
        assert_eq!(e.stage, Stage::Resize);
        assert!(
            e.cause.contains("10 of the source's 40 rows"),
            "{}",
            e.cause
        );
    }
}
