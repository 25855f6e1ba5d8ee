//! Running a model over an image of any size in tiles, without visible seams.
//!
//! Each tile is read with extra context around it (cropped away after the
//! model), plus the model's own edge padding; neighbouring tiles overlap and
//! are blended with a linear ramp, so no tile border shows in the result.
//! Memory is bounded by the tile size plus the output accumulators, and the
//! tile size follows a memory budget ([`TileSettings::tile_for`]); the rows of
//! the result can be handed on as they are finished ([`ModelUpscaler::run_colour_rows`]),
//! so that a caller that shrinks them never holds the whole enlarged image.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::Upscaler;
use super::catalog::ModelEntry;
use super::runtime::{self, ModelSession};
use crate::deadline::{self, Deadline};
use crate::error::{Stage, StageError};
use crate::raster::Raster;

/// One inference at a time in the process (each uses every core).
pub(crate) static INFERENCE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSettings {
    /// Input pixels per tile side. 0 = the whole image in one pass.
    pub tile: u32,
    /// Input pixels two neighbouring tiles share, blended with a ramp.
    pub overlap: u32,
    /// Extra input pixels read around each tile and cropped after the model.
    pub context: u32,
    /// Peak memory the process may use for one image, in MiB: tiles shrink
    /// below `tile` until the model's working set fits (`limits.memory_mib`).
    pub memory_mib: u32,
}

impl Default for TileSettings {
    /// 384 px tiles: within a few % of the speed of 512 px tiles on a 2-core
    /// CPU with a third less memory (docs/benchmarks.md).
    fn default() -> Self {
        Self {
            tile: 384,
            overlap: 16,
            context: 16,
            memory_mib: DEFAULT_MEMORY_MIB,
        }
    }
}

/// The default memory budget: a 4x job of any model fits in 1 GiB.
pub const DEFAULT_MEMORY_MIB: u32 = 1024;
/// What the process holds whatever the model: the runtime library, the
/// helper networks, the allocator's slack.
const RESERVED_BYTES: u64 = 256 << 20;
/// A model's weights are held about four times over (the file's copy, the
/// session's, prepacked for the kernels): measured 140–434 MiB of RSS before
/// the first tile against 256 MiB plus four times the file (docs/benchmarks.md).
const WEIGHT_COPIES: u64 = 4;
/// Working bytes per tile pixel for a model the catalog has no figure for:
/// twice the largest measured (realesrgan-x4plus).
pub const UNKNOWN_MODEL_BYTES_PER_PIXEL: u64 = 16_000;

/// What a model costs in memory: its working bytes per tile pixel (the
/// tile with its context) and the size of its weights file.
#[derive(Clone, Copy, Debug)]
pub struct ModelMemory {
    pub bytes_per_pixel: u64,
    pub file_bytes: u64,
    /// Edge pixels the model eats, added around every tile.
    pub pad: u32,
}
/// The smallest tile worth running: below it, context and overlap dominate.
const SMALLEST_TILE: u32 = 64;

/// What one image's upscale holds besides the model's working set.
#[derive(Clone, Copy, Debug)]
pub struct ImageBytes {
    /// The source raster (and its copy as the model's input, per tile).
    pub input: u64,
    /// The enlarged result, where it is kept whole (0 when streamed on).
    pub output: u64,
    /// Enlarged rows held per row of tiles by whoever takes them (bytes per
    /// output pixel of a band: the streamed resize keeps its own copy).
    pub row_copy_bytes_per_pixel: u64,
}

impl TileSettings {
    /// The largest tile, at most `self.tile`, whose working set fits the
    /// budget: the model's bytes per tile pixel over the tile with its
    /// context, the float accumulators of a band of output rows, and what the
    /// image itself holds. Never under 64 px: a budget too small for that is
    /// exceeded rather than the job refused.
    pub fn tile_for(
        &self,
        (width, height): (u32, u32),
        scale: u32,
        model: ModelMemory,
        image: ImageBytes,
    ) -> u32 {
        let largest = if self.tile == 0 {
            width.max(height)
        } else {
            self.tile
        };
        let budget = self.memory_mib as u64 * (1 << 20);
        let fixed = RESERVED_BYTES + WEIGHT_COPIES * model.file_bytes + image.input + image.output;
        let out_width = width as u64 * scale as u64;
        let fits = |t: u32| {
            let side = (t.min(width.max(height)) + 2 * self.context + 2 * model.pad) as u64;
            let working = model.bytes_per_pixel * side * side;
            // 3 colour sums and a weight per output pixel, for the rows of
            // one tile row plus the overlap carried into the next.
            let band_rows = (t.min(height) + self.overlap) as u64 * scale as u64;
            let band = out_width * band_rows * (16 + image.row_copy_bytes_per_pixel);
            fixed + working + band <= budget
        };
        let mut t = largest;
        while t > SMALLEST_TILE && !fits(t) {
            t = t.saturating_sub(16).max(SMALLEST_TILE);
        }
        t
    }
}

pub struct ModelUpscaler {
    name: String,
    entry: ModelEntry,
    session: Arc<ModelSession>,
    /// The size of the weights file, for the memory budget.
    file_bytes: u64,
    pub tiles: TileSettings,
}

impl ModelUpscaler {
    pub fn load(name: &str, entry: &ModelEntry, models_dir: &Path, threads: usize) -> Result<Self> {
        let path = super::onnx_path(models_dir, name);
        if !path.is_file() {
            bail!(
                "model {name} is not installed ({} is missing); run `upscaled models fetch {name}`",
                path.display()
            );
        }
        let session = runtime::session(models_dir, &path, threads)?;
        Ok(Self {
            name: name.to_string(),
            entry: entry.clone(),
            session,
            file_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
            tiles: TileSettings::default(),
        })
    }

    pub fn scale(&self) -> u32 {
        self.entry.scale
    }

    /// Upscales the colour of `raster` (alpha ignored) by the model's scale.
    pub fn run_colour(&self, raster: &Raster) -> Result<Raster> {
        self.run_colour_until(raster, None)
    }

    /// `run_colour`, stopping between rows of tiles once `deadline` passes.
    pub fn run_colour_until(&self, raster: &Raster, deadline: Option<&Deadline>) -> Result<Raster> {
        let s = self.entry.scale;
        let mut out = Raster::new(raster.width * s, raster.height * s, false);
        let row = out.width as usize * 3;
        self.run_colour_rows(raster, deadline, 0, &mut |first, rows| {
            out.data[first as usize * row..][..rows.data.len()].copy_from_slice(&rows.data);
            Ok(())
        })?;
        Ok(out)
    }

    /// The tile size for `raster` under the memory budget, where the caller
    /// keeps `row_copy` bytes per output pixel of each band it is handed
    /// (0: the whole result is kept, which counts against the budget).
    pub fn tile_size(&self, raster: &Raster, row_copy: u64) -> TileSettings {
        let t = runtime::device_tiles(self.tiles, self.entry.scale);
        if runtime::device() != super::gpu::Device::Cpu {
            return t; // GPU memory is not the process's RSS
        }
        let s = self.entry.scale as u64;
        let pixels = raster.width as u64 * raster.height as u64;
        let image = ImageBytes {
            input: pixels * raster.channels() as u64 * 2,
            // Kept whole: the 16-bit raster, then the encoder's 8-bit copy
            // and its own buffers (a PNG of 4096² measured ~8 bytes a pixel).
            output: if row_copy == 0 {
                pixels * s * s * 14
            } else {
                0
            },
            row_copy_bytes_per_pixel: row_copy,
        };
        let model = ModelMemory {
            bytes_per_pixel: self
                .entry
                .tile_bytes_per_pixel
                .unwrap_or(UNKNOWN_MODEL_BYTES_PER_PIXEL),
            file_bytes: self.file_bytes,
            pad: self.entry.pad,
        };
        TileSettings {
            tile: t.tile_for(
                (raster.width, raster.height),
                self.entry.scale,
                model,
                image,
            ),
            ..t
        }
    }

    /// Upscales the colour of `raster`, handing `sink` each band of finished
    /// output rows (its first row, then the rows as an RGB raster) as soon as
    /// its row of tiles is done; the whole result never exists here.
    /// `row_copy` is what the sink keeps per pixel of a band (see [`Self::tile_size`]).
    pub fn run_colour_rows(
        &self,
        raster: &Raster,
        deadline: Option<&Deadline>,
        row_copy: u64,
        sink: &mut dyn FnMut(u32, &Raster) -> Result<()>,
    ) -> Result<()> {
        // One inference at a time: each already uses every core, and two at
        // once would only double the memory.
        let queued = Instant::now();
        let _turn = INFERENCE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = deadline {
            d.credit(queued.elapsed());
        }
        let s = self.entry.scale as usize;
        let (w, h) = (raster.width, raster.height);
        let (ow, oh) = (w as usize * s, h as usize * s);
        let t = self.tile_size(raster, row_copy);
        let tile = if t.tile == 0 { w.max(h) } else { t.tile };
        let overlap = t.overlap.min(tile / 2);
        tracing::debug!(
            model = self.name.as_str(),
            tile,
            memory_mib = t.memory_mib,
            "tile size"
        );
        // Float accumulators for one band of tile rows (plus the overlap with
        // the next band) at a time: memory follows the tile size, not the image.
        let mut band = Band {
            first_row: 0,
            width: ow,
            acc: Vec::new(),
            weight: Vec::new(),
        };
        let rows = spans(h, tile, overlap);
        let columns = spans(w, tile, overlap);
        for (r, &(y0, y1)) in rows.iter().enumerate() {
            if let Err(e) = deadline::check(deadline, Stage::Upscale) {
                bail!(e.cause); // the caller names the stage
            }
            band.grow_to(y1 as usize * s);
            for (c, &(x0, x1)) in columns.iter().enumerate() {
                let last = r + 1 == rows.len() && c + 1 == columns.len();
                self.run_tile(
                    raster,
                    [x0, x1, y0, y1],
                    t.context,
                    overlap,
                    last,
                    &mut band,
                )?;
                // For the terminal's progress bar (src/cli/progress.rs).
                tracing::trace!(
                    target: "upscaled::tiles",
                    model = self.name.as_str(),
                    done = (r * columns.len() + c + 1) as u64,
                    total = (rows.len() * columns.len()) as u64,
                );
            }
            let done_until = rows.get(r + 1).map_or(oh, |next| next.0 as usize * s);
            let first = band.first_row as u32;
            let finished = band.flush(done_until);
            sink(first, &finished)?;
        }
        Ok(())
    }

    fn run_tile(
        &self,
        raster: &Raster,
        [x0, x1, y0, y1]: [u32; 4],
        context: u32,
        overlap: u32,
        last: bool,
        band: &mut Band,
    ) -> Result<()> {
        let s = self.entry.scale as usize;
        let (w, h) = (raster.width as i64, raster.height as i64);
        let ctx = context as i64;
        let pad = self.entry.pad as i64;
        let align = self.entry.align.max(1) as i64;
        // Region of real pixels the tile sees, then the model's edge padding.
        let (cx0, cx1) = ((x0 as i64 - ctx).max(0), (x1 as i64 + ctx).min(w));
        let (cy0, cy1) = ((y0 as i64 - ctx).max(0), (y1 as i64 + ctx).min(h));
        let round_up = |v: i64| (v + align - 1) / align * align;
        let tw = round_up(cx1 - cx0 + 2 * pad);
        let th = round_up(cy1 - cy0 + 2 * pad);
        let (ix0, iy0) = (cx0 - pad, cy0 - pad);
        let plane = (tw * th) as usize;
        let mut input = vec![0.0f32; plane * 3];
        let channels = raster.channels();
        for ty in 0..th {
            let sy = (iy0 + ty).clamp(0, h - 1) as usize;
            for tx in 0..tw {
                let sx = (ix0 + tx).clamp(0, w - 1) as usize;
                let p = &raster.data[(sy * w as usize + sx) * channels..];
                let i = (ty * tw + tx) as usize;
                for c in 0..3 {
                    input[c * plane + i] = p[c] as f32 / 65535.0;
                }
            }
        }
        let shape = [1, 3, th as usize, tw as usize];
        let ran = if last {
            self.session.run_and_release(shape, &input)
        } else {
            self.session.run(shape, &input)
        };
        let ([_, oc, out_h, out_w], out) =
            ran.with_context(|| format!("model {} on a {tw}x{th} tile", self.name))?;
        ensure!(oc == 3, "model {} returned {oc} channels", self.name);
        // Corrupt weights give NaN, which the conversion to 16 bits would
        // silently turn into black: refuse it while it is still a float.
        ensure!(
            out.iter().all(|v| v.is_finite()),
            "model {} produced NaN or infinite output (its weights may be corrupt)",
            self.name
        );
        // Where input pixel (cx0, cy0) landed in the output: models with
        // "same" padding return scale x the padded tile, "valid" ones less.
        let inner_w = (tw - 2 * pad) as usize * s;
        let inner_h = (th - 2 * pad) as usize * s;
        ensure!(
            out_w >= inner_w && out_h >= inner_h && (out_w - inner_w).is_multiple_of(2),
            "model {} returned {out_w}x{out_h} for a {tw}x{th} tile; expected {inner_w}x{inner_h} \
             plus an even border (check its pad/align in the catalog)",
            self.name
        );
        let (off_x, off_y) = ((out_w - inner_w) / 2, (out_h - inner_h) / 2);
        let out_plane = out_w * out_h;
        let ramp = (overlap as usize * s).max(1) as f32;
        // Ramps only on sides shared with another tile.
        let ramp_weight = |o: usize, lo: usize, hi: usize, has_lo: bool, has_hi: bool| {
            let mut wgt = 1.0f32;
            if has_lo {
                wgt = wgt.min(((o - lo) as f32 + 0.5) / ramp);
            }
            if has_hi {
                wgt = wgt.min(((hi - o) as f32 - 0.5) / ramp);
            }
            wgt.max(1e-4)
        };
        let (ox0, ox1, oy0, oy1) = (
            x0 as usize * s,
            x1 as usize * s,
            y0 as usize * s,
            y1 as usize * s,
        );
        let (left, right) = (x0 > 0, x1 < raster.width);
        let (top, bottom) = (y0 > 0, y1 < raster.height);
        for oy in oy0..oy1 {
            let wy = ramp_weight(oy, oy0, oy1, top, bottom);
            let my = off_y + oy - cy0 as usize * s;
            for ox in ox0..ox1 {
                let wx = ramp_weight(ox, ox0, ox1, left, right);
                let wgt = wx * wy;
                let mx = off_x + ox - cx0 as usize * s;
                let m = my * out_w + mx;
                let o = (oy - band.first_row) * band.width + ox;
                for c in 0..3 {
                    band.acc[o * 3 + c] += out[c * out_plane + m] * wgt;
                }
                band.weight[o] += wgt;
            }
        }
        Ok(())
    }
}

/// Output rows being accumulated: rows `first_row..first_row + len`.
struct Band {
    first_row: usize,
    width: usize,
    acc: Vec<f32>,
    weight: Vec<f32>,
}

impl Band {
    /// Makes room for output rows up to `end`.
    fn grow_to(&mut self, end: usize) {
        let len = (end - self.first_row) * self.width;
        self.acc.resize(len * 3, 0.0);
        self.weight.resize(len, 0.0);
    }

    /// Rows before `end` have all their tiles: normalise them, hand them
    /// back as 16-bit RGB, forget their sums.
    fn flush(&mut self, end: usize) -> Raster {
        let n = (end - self.first_row) * self.width;
        let mut out = Raster::new(self.width as u32, (end - self.first_row) as u32, false);
        for ((px, acc), wsum) in out
            .data
            .chunks_exact_mut(3)
            .zip(self.acc.chunks_exact(3))
            .zip(&self.weight)
        {
            for (channel, sum) in px.iter_mut().zip(acc) {
                *channel = ((sum / wsum).clamp(0.0, 1.0) * 65535.0).round() as u16;
            }
        }
        self.acc.drain(..n * 3);
        self.weight.drain(..n);
        self.first_row = end;
        out
    }
}

/// Start/end pairs covering `0..len`: as few tiles as `tile` allows, of
/// equal size, each pair sharing `overlap` pixels around their boundary.
fn spans(len: u32, tile: u32, overlap: u32) -> Vec<(u32, u32)> {
    if len <= tile {
        return vec![(0, len)];
    }
    let count = len.div_ceil(tile.max(1));
    let boundary = |i: u32| (i as u64 * len as u64 / count as u64) as u32;
    let (before, after) = (overlap / 2, overlap - overlap / 2);
    (0..count)
        .map(|i| {
            let start = if i == 0 { 0 } else { boundary(i) - before };
            let end = if i + 1 == count {
                len
            } else {
                boundary(i + 1) + after
            };
            (start, end)
        })
        .collect()
}

/// Alpha is not a colour: it is upscaled on its own with Lanczos3 on the
/// straight values (no gamma), then recombined with the model's colour.
fn upscale_alpha(raster: &Raster, width: u32, height: u32) -> Result<Vec<u16>> {
    let alpha: Vec<u8> = raster
        .data
        .chunks_exact(4)
        .flat_map(|p| p[3].to_ne_bytes())
        .collect();
    let src = Image::from_vec_u8(raster.width, raster.height, alpha, PixelType::U16)?;
    let mut dst = Image::new(width, height, PixelType::U16);
    Resizer::new().resize(
        &src,
        &mut dst,
        &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
    )?;
    Ok(dst
        .buffer()
        .chunks_exact(2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .collect())
}

impl Upscaler for ModelUpscaler {
    fn name(&self) -> String {
        self.name.clone()
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
        let err = |e: anyhow::Error| StageError::new(Stage::Upscale, format!("{e:#}"));
        if scale != self.entry.scale {
            return Err(StageError::new(
                Stage::Upscale,
                format!(
                    "model {} enlarges {}x, not {scale}x",
                    self.name, self.entry.scale
                ),
            ));
        }
        let colour = self.run_colour_until(raster, deadline).map_err(err)?;
        if !raster.has_alpha {
            return Ok(colour);
        }
        let alpha = upscale_alpha(raster, colour.width, colour.height).map_err(err)?;
        let mut out = Raster::new(colour.width, colour.height, true);
        for ((dst, rgb), a) in out
            .data
            .chunks_exact_mut(4)
            .zip(colour.data.chunks_exact(3))
            .zip(alpha)
        {
            dst[..3].copy_from_slice(rgb);
            dst[3] = a;
        }
        Ok(out)
    }

    /// Opaque images stream: each row of tiles goes to `sink` when done.
    /// (Alpha is enlarged over the whole image, so those take the default.)
    fn upscale_rows(
        &self,
        raster: &Raster,
        scale: u32,
        deadline: Option<&Deadline>,
        row_copy: u64,
        sink: &mut dyn FnMut(u32, &Raster) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        if raster.has_alpha || scale != self.entry.scale {
            return super::whole_as_rows(self, raster, scale, deadline, sink);
        }
        // The sink's own errors pass through with their stage; the model's
        // are the upscale's.
        let mut sink_error = None;
        let result = self.run_colour_rows(raster, deadline, row_copy, &mut |first, rows| {
            sink(first, rows).map_err(|e| {
                sink_error = Some(e);
                anyhow::anyhow!("stopped by the next stage")
            })
        });
        if let Some(e) = sink_error {
            return Err(e);
        }
        result.map_err(|e| StageError::new(Stage::Upscale, format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_everything_with_the_overlap() {
        for len in [1, 100, 256, 257, 500, 1024, 1031] {
            let s = spans(len, 256, 16);
            assert_eq!(s[0].0, 0);
            assert_eq!(s.last().unwrap().1, len);
            for pair in s.windows(2) {
                assert!(pair[1].0 < pair[0].1, "gap in {s:?}");
                assert!(pair[0].1 - pair[1].0 >= 16, "overlap too small in {s:?}");
            }
        }
    }

    fn opaque(width: u32, height: u32, scale: u64, streamed: bool) -> ImageBytes {
        let pixels = width as u64 * height as u64;
        ImageBytes {
            input: pixels * 6,
            output: if streamed {
                0
            } else {
                pixels * scale * scale * 6
            },
            row_copy_bytes_per_pixel: if streamed { 6 } else { 0 },
        }
    }

    fn model(bytes_per_pixel: u64) -> ModelMemory {
        ModelMemory {
            bytes_per_pixel,
            file_bytes: 20 << 20,
            pad: 0,
        }
    }

    /// The working set `tile_for` charges a tile, as it charges it.
    fn charged(
        t: TileSettings,
        tile: u32,
        size: (u32, u32),
        scale: u32,
        bpp: u64,
        image: ImageBytes,
    ) -> u64 {
        let side = (tile.min(size.0.max(size.1)) + 2 * t.context) as u64;
        let band =
            size.0 as u64 * scale as u64 * (tile.min(size.1) + t.overlap) as u64 * scale as u64;
        RESERVED_BYTES
            + WEIGHT_COPIES * (20 << 20)
            + image.input
            + image.output
            + bpp * side * side
            + band * (16 + image.row_copy_bytes_per_pixel)
    }

    #[test]
    fn a_4x_jobs_tiles_are_chosen_from_the_memory_budget() {
        let t = TileSettings::default();
        let budget = t.memory_mib as u64 * (1 << 20);
        // realesrgan-x4plus (15,500 bytes per tile pixel) on a 512² photo
        // cannot keep the 384 px tile in 1 GiB; a small model can.
        let image = opaque(512, 512, 4, false);
        let heavy = t.tile_for((512, 512), 4, model(15_500), image);
        assert!((64..384).contains(&heavy), "{heavy}");
        assert!(charged(t, heavy, (512, 512), 4, 15_500, image) <= budget);
        assert!(
            charged(t, heavy + 16, (512, 512), 4, 15_500, image) > budget,
            "the largest that fits"
        );
        assert_eq!(t.tile_for((512, 512), 4, model(2_000), image), 384);
        // A larger budget gives larger tiles, never more than asked.
        let roomy = TileSettings {
            memory_mib: 4096,
            ..t
        };
        assert_eq!(roomy.tile_for((512, 512), 4, model(15_500), image), 384);
        // The whole enlarged image counts when it is kept: a 2048² source
        // kept whole at 4x (384 MiB) leaves less room than one streamed on.
        let kept = t.tile_for((2048, 2048), 4, model(3_300), opaque(2048, 2048, 4, false));
        let streamed = t.tile_for((2048, 2048), 4, model(3_300), opaque(2048, 2048, 4, true));
        assert!(kept < streamed, "kept {kept}, streamed {streamed}");
        // A budget nothing fits in still runs, at the smallest tile.
        let tiny = TileSettings {
            memory_mib: 64,
            ..t
        };
        assert_eq!(tiny.tile_for((512, 512), 4, model(15_500), image), 64);
        // A model of unknown cost is charged as the costliest known.
        assert!(t.tile_for((512, 512), 4, model(UNKNOWN_MODEL_BYTES_PER_PIXEL), image) <= heavy);
    }
}
