//! The pixel buffer that travels between pipeline stages.
//!
//! One representation for every stage keeps the stages simple: interleaved 16-bit
//! samples, sRGB-encoded, RGB or RGBA. 16 bits carry 16-bit sources through the
//! model and the resize without loss, and give 8-bit sources headroom for the
//! linear-light resize. Grey sources are widened to RGB; the PNG encoder narrows
//! them back losslessly.

use std::sync::OnceLock;

#[derive(Clone, Debug, PartialEq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    /// Interleaved samples, row-major, `channels()` per pixel.
    pub data: Vec<u16>,
}

impl Raster {
    pub fn new(width: u32, height: u32, has_alpha: bool) -> Self {
        let channels = if has_alpha { 4 } else { 3 };
        Raster {
            width,
            height,
            has_alpha,
            data: vec![0; width as usize * height as usize * channels],
        }
    }

    pub fn channels(&self) -> usize {
        if self.has_alpha { 4 } else { 3 }
    }

    pub fn pixel_count(&self) -> u64 {
        self.width as u64 * self.height as u64
    }

    pub fn pixel(&self, x: u32, y: u32) -> &[u16] {
        let c = self.channels();
        let i = (y as usize * self.width as usize + x as usize) * c;
        &self.data[i..i + c]
    }

    /// True when an alpha channel exists and some pixel is not fully opaque.
    pub fn uses_alpha(&self) -> bool {
        self.has_alpha && self.data.chunks_exact(4).any(|p| p[3] != u16::MAX)
    }

    /// Drops the alpha channel (callers composite first when it matters).
    pub fn without_alpha(&self) -> Raster {
        if !self.has_alpha {
            return self.clone();
        }
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Raster {
            width: self.width,
            height: self.height,
            has_alpha: false,
            data,
        }
    }

    /// Composites over an opaque sRGB colour (8-bit), in linear light, for
    /// formats and platforms that cannot carry transparency.
    pub fn flatten_onto(&self, background: [u8; 3]) -> Raster {
        if !self.has_alpha {
            return self.clone();
        }
        let to_lin = srgb_to_linear_lut();
        let bg: Vec<f32> = background
            .iter()
            .map(|&v| to_lin[(v as usize) * 257] as f32)
            .collect();
        let mut out = Raster::new(self.width, self.height, false);
        for (src, dst) in self.data.chunks_exact(4).zip(out.data.chunks_exact_mut(3)) {
            let a = src[3] as f32 / 65535.0;
            for c in 0..3 {
                let fg = to_lin[src[c] as usize] as f32;
                let lin = fg * a + bg[c] * (1.0 - a);
                dst[c] = linear_to_srgb_u16(lin / 65535.0);
            }
        }
        out
    }

    /// 8-bit samples with rounding, as the 8-bit encoders want them.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|&v| u16_to_u8(v)).collect()
    }

    pub fn from_u8(width: u32, height: u32, has_alpha: bool, bytes: &[u8]) -> Raster {
        Raster {
            width,
            height,
            has_alpha,
            data: bytes.iter().map(|&v| v as u16 * 257).collect(),
        }
    }

    /// True when every sample fits 8 bits exactly (an 8-bit source widened).
    pub fn is_8bit_exact(&self) -> bool {
        self.data.iter().all(|&v| v % 257 == 0)
    }

    /// Channel `k` of the pixel whose samples start at `i`, in 0..1 and
    /// composited over white (networks see transparent areas as white).
    fn over_white(&self, i: usize, k: usize) -> f32 {
        let v = self.data[i + k] as f32 / 65535.0;
        if self.has_alpha {
            let a = self.data[i + 3] as f32 / 65535.0;
            v * a + (1.0 - a)
        } else {
            v
        }
    }

    /// A network input: planar RGB in 0..1 (all of R, then G, then B),
    /// bilinearly resampled to `w` x `h`; transparent areas count as white.
    pub fn planar_rgb(&self, w: usize, h: usize) -> Vec<f32> {
        let c = self.channels();
        let (rw, rh) = (self.width as usize, self.height as usize);
        let plane = w * h;
        let mut out = vec![0f32; 3 * plane];
        let sample = |x: usize, y: usize, k: usize| self.over_white((y * rw + x) * c, k);
        for y in 0..h {
            let fy = ((y as f32 + 0.5) * rh as f32 / h as f32 - 0.5).clamp(0.0, (rh - 1) as f32);
            let (y0, ty) = (fy as usize, fy.fract());
            let y1 = (y0 + 1).min(rh - 1);
            for x in 0..w {
                let fx =
                    ((x as f32 + 0.5) * rw as f32 / w as f32 - 0.5).clamp(0.0, (rw - 1) as f32);
                let (x0, tx) = (fx as usize, fx.fract());
                let x1 = (x0 + 1).min(rw - 1);
                for k in 0..3 {
                    let top = sample(x0, y0, k) * (1.0 - tx) + sample(x1, y0, k) * tx;
                    let bottom = sample(x0, y1, k) * (1.0 - tx) + sample(x1, y1, k) * tx;
                    out[k * plane + y * w + x] = top * (1.0 - ty) + bottom * ty;
                }
            }
        }
        out
    }

    /// A network input like [`Raster::planar_rgb`], but each output pixel is
    /// the area average of the source pixels it covers (partial pixels
    /// weighted): the antialiased reduction networks are trained on.
    pub fn planar_rgb_area(&self, w: usize, h: usize) -> Vec<f32> {
        let c = self.channels();
        let (sw, sh) = (self.width as usize, self.height as usize);
        // Each output cell's source pixels and their weights, per axis.
        let spans = |src: usize, dst: usize| -> Vec<Vec<(usize, f32)>> {
            let k = src as f64 / dst as f64;
            (0..dst)
                .map(|i| {
                    let (a, b) = (i as f64 * k, (i + 1) as f64 * k);
                    (a.floor() as usize..(b.ceil() as usize).min(src))
                        .map(|j| {
                            let cover = (b.min(j as f64 + 1.0) - a.max(j as f64)) / k;
                            (j, cover as f32)
                        })
                        .collect()
                })
                .collect()
        };
        let (xs, ys) = (spans(sw, w), spans(sh, h));
        // Rows first (source rows x output columns), then columns.
        let mut rows = vec![0f32; sh * w * 3];
        for y in 0..sh {
            for (x, span) in xs.iter().enumerate() {
                for k in 0..3 {
                    rows[(y * w + x) * 3 + k] = span
                        .iter()
                        .map(|&(j, wt)| wt * self.over_white((y * sw + j) * c, k))
                        .sum();
                }
            }
        }
        let plane = w * h;
        let mut out = vec![0f32; 3 * plane];
        for (y, span) in ys.iter().enumerate() {
            for x in 0..w {
                for k in 0..3 {
                    out[k * plane + y * w + x] = span
                        .iter()
                        .map(|&(j, wt)| wt * rows[(j * w + x) * 3 + k])
                        .sum();
                }
            }
        }
        out
    }
}

pub fn u16_to_u8(v: u16) -> u8 {
    ((v as u32 * 255 + 32767) / 65535) as u8
}

fn srgb_to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb(v: f32) -> f32 {
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

pub fn linear_to_srgb_u16(v: f32) -> u16 {
    (linear_to_srgb(v.clamp(0.0, 1.0)) * 65535.0 + 0.5) as u16
}

/// 16-bit sRGB code value → 16-bit linear value.
pub fn srgb_to_linear_lut() -> &'static [u16] {
    static LUT: OnceLock<Vec<u16>> = OnceLock::new();
    LUT.get_or_init(|| {
        (0..=u16::MAX)
            .map(|v| (srgb_to_linear(v as f32 / 65535.0) * 65535.0 + 0.5) as u16)
            .collect()
    })
}

/// 16-bit linear value → 16-bit sRGB code value.
pub fn linear_to_srgb_lut() -> &'static [u16] {
    static LUT: OnceLock<Vec<u16>> = OnceLock::new();
    LUT.get_or_init(|| {
        (0..=u16::MAX)
            .map(|v| linear_to_srgb_u16(v as f32 / 65535.0))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_reduction_averages_what_each_pixel_covers() {
        // Columns alternate black and white; 4 -> 2 averages pairs, 4 -> 3
        // weights the partly covered middle column.
        let mut r = Raster::new(4, 2, false);
        for (i, px) in r.data.chunks_exact_mut(3).enumerate() {
            px.fill(if i % 2 == 0 { 0 } else { 65535 });
        }
        let half = r.planar_rgb_area(2, 1);
        assert!(half.iter().all(|&v| (v - 0.5).abs() < 1e-6), "{half:?}");
        let third = r.planar_rgb_area(3, 1);
        let expected = [0.25, 0.5, 0.75];
        for (v, e) in third[..3].iter().zip(expected) {
            assert!((v - e).abs() < 1e-6, "{third:?}");
        }
    }

    #[test]
    fn u8_round_trip_is_exact() {
        let bytes: Vec<u8> = (0..=255).flat_map(|v| [v, v, v]).collect();
        let r = Raster::from_u8(256, 1, false, &bytes);
        assert!(r.is_8bit_exact());
        assert_eq!(r.to_u8(), bytes);
    }

    #[test]
    fn srgb_luts_round_trip_8bit_values() {
        let (to_lin, to_srgb) = (srgb_to_linear_lut(), linear_to_srgb_lut());
        for v in 0..=255u16 {
            let back = to_srgb[to_lin[(v * 257) as usize] as usize];
            assert_eq!(u16_to_u8(back), v as u8, "value {v}");
        }
    }

    #[test]
    fn flatten_half_transparent_black_on_white_is_linear_mid_grey() {
        let r = Raster {
            width: 1,
            height: 1,
            has_alpha: true,
            data: vec![0, 0, 0, 32768],
        };
        let flat = r.flatten_onto([255, 255, 255]);
        // 50% coverage in linear light is sRGB ~188, not 128.
        let v = u16_to_u8(flat.data[0]);
        assert!((186..=190).contains(&v), "got {v}");
    }
}
