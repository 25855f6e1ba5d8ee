//! Stage 5: the one lossy encode, from the final pixels.
//!
//! Every output is encoded straight from the 16-bit raster; nothing is ever
//! re-encoded from a lossy file. `max_bytes` searches the encoder quality on the
//! same pixels (still one generation of loss).

use serde::{Deserialize, Serialize};

use crate::error::{Stage, StageError, catch_panic};
use crate::raster::Raster;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Avif,
    Webp,
    Png,
    Jpeg,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Avif => "avif",
            OutputFormat::Webp => "webp",
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
        }
    }

    pub fn is_lossless(self) -> bool {
        self == OutputFormat::Png
    }

    pub fn supports_alpha(self) -> bool {
        self != OutputFormat::Jpeg
    }

    /// Quality used when none is configured: chosen so that the lossy formats land
    /// at about the same perceptual quality (SSIMULACRA2 ≈ 75, "high"); see
    /// docs/benchmarks.md.
    pub fn default_quality(self) -> u8 {
        match self {
            OutputFormat::Avif => DEFAULT_AVIF_QUALITY,
            OutputFormat::Webp => 82,
            OutputFormat::Jpeg => 85,
            OutputFormat::Png => 100,
        }
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputFormat::Avif => "avif",
            OutputFormat::Webp => "webp",
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpeg",
        })
    }
}

/// Encoder settings shared by all formats of one job.
#[derive(Clone, Debug)]
pub struct EncodeSettings {
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    /// sRGB colour that replaces transparency in formats without alpha.
    pub background: [u8; 3],
    /// Keep 16 bits in PNG output (the source had them).
    pub high_bit_depth: bool,
    /// EXIF to embed (already filtered by the metadata policy).
    pub exif: Option<Vec<u8>>,
    /// XMP packet to embed (provenance: which network edited the pixels).
    pub xmp: Option<Vec<u8>>,
    /// ICC profile to embed (`metadata: keep`; PNG says sRGB with its chunk).
    pub icc: Option<Vec<u8>>,
    /// AVIF encoder speed, 1 (slow, small) ..= 10 (fast).
    pub avif_speed: u8,
    pub threads: usize,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            quality: None,
            max_bytes: None,
            background: [255, 255, 255],
            high_bit_depth: false,
            exif: None,
            xmp: None,
            icc: None,
            avif_speed: DEFAULT_AVIF_SPEED,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// libaom speed 6 (avifenc's default), or rav1e speed 8 in a build without
/// the `aom` feature: see docs/benchmarks.md for the trade-offs measured here.
#[cfg(feature = "aom")]
pub const DEFAULT_AVIF_SPEED: u8 = crate::pipeline::avif_aom::DEFAULT_SPEED;
#[cfg(not(feature = "aom"))]
pub const DEFAULT_AVIF_SPEED: u8 = 8;

/// libavif's quality scale is linear in libaom's quantizer (quality q is
/// quantizer (100 − q) × 63 / 100, as `avifenc -q`); ravif's is its own curve.
/// 56 is quantizer 28, where avifenc matched the SSIMULACRA2 of ravif's
/// default q72 (docs/benchmarks.md), so the default output looks the same.
#[cfg(feature = "aom")]
const DEFAULT_AVIF_QUALITY: u8 = 56;
#[cfg(not(feature = "aom"))]
const DEFAULT_AVIF_QUALITY: u8 = 72;

#[derive(Clone, Debug)]
pub struct Encoded {
    pub format: OutputFormat,
    pub bytes: Vec<u8>,
    /// The quality used (for lossy formats).
    pub quality: Option<u8>,
    /// How many encodes it took (more than one only with `max_bytes`).
    pub trials: u32,
}

pub fn encode(
    raster: &Raster,
    format: OutputFormat,
    settings: &EncodeSettings,
) -> Result<Encoded, StageError> {
    let flat;
    let raster = if raster.has_alpha && (!format.supports_alpha() || !raster.uses_alpha()) {
        flat = if raster.uses_alpha() {
            raster.flatten_onto(settings.background)
        } else {
            raster.without_alpha()
        };
        &flat
    } else {
        raster
    };
    if format.is_lossless() {
        let bytes = catch_panic(Stage::Encode, || encode_png(raster, settings))?;
        if let Some(limit) = settings.max_bytes
            && bytes.len() as u64 > limit
        {
            return Err(StageError::new(
                Stage::Encode,
                format!(
                    "PNG is lossless and needs {} bytes, over max_bytes {limit}; choose a lossy format or a smaller target",
                    bytes.len()
                ),
            ));
        }
        return Ok(Encoded {
            format,
            bytes,
            quality: None,
            trials: 1,
        });
    }
    let top = settings
        .quality
        .unwrap_or(format.default_quality())
        .clamp(1, 100);
    let pixels = raster.to_u8();
    let run = |q: u8| {
        catch_panic(Stage::Encode, || {
            encode_lossy(raster, &pixels, format, q, settings)
        })
    };
    let Some(limit) = settings.max_bytes else {
        return Ok(Encoded {
            format,
            bytes: run(top)?,
            quality: Some(top),
            trials: 1,
        });
    };
    search_quality(format, top, limit, run)
}

/// Finds the highest quality in 1..=top whose output fits in `limit` bytes, by
/// bisection (at most 8 encodes for the 1..=100 range).
fn search_quality(
    format: OutputFormat,
    top: u8,
    limit: u64,
    mut run: impl FnMut(u8) -> Result<Vec<u8>, StageError>,
) -> Result<Encoded, StageError> {
    let mut trials = 1;
    let first = run(top)?;
    if first.len() as u64 <= limit {
        return Ok(Encoded {
            format,
            bytes: first,
            quality: Some(top),
            trials,
        });
    }
    let (mut lo, mut hi) = (1u8, top - 1);
    let mut best: Option<(u8, Vec<u8>)> = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let bytes = run(mid)?;
        trials += 1;
        if bytes.len() as u64 <= limit {
            best = Some((mid, bytes));
            lo = mid + 1;
        } else if mid == 1 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    match best {
        Some((q, bytes)) => Ok(Encoded {
            format,
            bytes,
            quality: Some(q),
            trials,
        }),
        None => Err(StageError::new(
            Stage::Encode,
            format!(
                "{format} does not fit in max_bytes {limit} even at quality 1; use a smaller target size"
            ),
        )),
    }
}

fn encode_lossy(
    raster: &Raster,
    pixels: &[u8],
    format: OutputFormat,
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, StageError> {
    match format {
        OutputFormat::Avif => encode_avif(raster, pixels, quality, settings),
        OutputFormat::Webp => encode_webp(raster, pixels, quality, settings),
        OutputFormat::Jpeg => encode_jpeg(raster, pixels, quality, settings),
        OutputFormat::Png => unreachable!("PNG is lossless"),
    }
}

/// libavif + libaom: 4:4:4 at `avif_speed`, the XMP as libavif's own item.
#[cfg(feature = "aom")]
fn encode_avif(
    raster: &Raster,
    pixels: &[u8],
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, StageError> {
    use crate::pipeline::avif_aom;
    avif_aom::encode(raster, pixels, quality, settings, avif_aom::ENCODE_DEPTH)
}

/// ravif (rav1e), the pure-Rust fallback; its writer has no XMP, so the
/// packet is added to the finished file (avif_xmp).
#[cfg(not(feature = "aom"))]
fn encode_avif(
    raster: &Raster,
    pixels: &[u8],
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, StageError> {
    let mut encoder = ravif::Encoder::new()
        .with_quality(quality as f32)
        .with_alpha_quality(quality as f32)
        .with_speed(settings.avif_speed)
        .with_num_threads(Some(settings.threads))
        .with_alpha_color_mode(ravif::AlphaColorMode::UnassociatedClean);
    if let Some(exif) = &settings.exif {
        encoder = encoder.with_exif(exif.as_slice());
    }
    let (w, h) = (raster.width as usize, raster.height as usize);
    let result = if raster.has_alpha {
        let px: &[rgb::RGBA8] = bytemuck::cast_slice(pixels);
        encoder.encode_rgba(ravif::Img::new(px, w, h))
    } else {
        let px: &[rgb::RGB8] = bytemuck::cast_slice(pixels);
        encoder.encode_rgb(ravif::Img::new(px, w, h))
    };
    let avif = result
        .map(|e| e.avif_file)
        .map_err(|e| StageError::new(Stage::Encode, format!("AVIF encoder (ravif): {e}")))?;
    match &settings.xmp {
        Some(xmp) => crate::pipeline::avif_xmp::add_xmp(&avif, xmp).map_err(|e| {
            StageError::new(
                Stage::Encode,
                format!("adding the provenance XMP to AVIF: {e}"),
            )
        }),
        None => Ok(avif),
    }
}

fn encode_webp(
    raster: &Raster,
    pixels: &[u8],
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, StageError> {
    if raster.width > 16383 || raster.height > 16383 {
        return Err(StageError::new(
            Stage::Encode,
            format!(
                "WebP cannot hold {}x{} (16383 px a side at most)",
                raster.width, raster.height
            ),
        ));
    }
    let mut config = webp::WebPConfig::new()
        .map_err(|_| StageError::new(Stage::Encode, "libwebp config init failed"))?;
    config.quality = quality as f32;
    config.method = 5;
    config.use_sharp_yuv = 1;
    config.thread_level = i32::from(settings.threads > 1);
    config.alpha_compression = 1;
    let bytes = crate::pipeline::webp_bands::encode(
        pixels,
        raster.width,
        raster.height,
        raster.has_alpha,
        &config,
        settings.threads,
    )
    .map_err(|e| StageError::new(Stage::Encode, e))?;
    let metadata = WebpMetadata {
        icc: settings.icc.as_deref(),
        exif: settings.exif.as_deref(),
        xmp: settings.xmp.as_deref(),
    };
    Ok(if metadata.is_empty() {
        bytes
    } else {
        webp_with_metadata(&bytes, &metadata, raster)
    })
}

struct WebpMetadata<'a> {
    icc: Option<&'a [u8]>,
    exif: Option<&'a [u8]>,
    xmp: Option<&'a [u8]>,
}

impl WebpMetadata<'_> {
    fn is_empty(&self) -> bool {
        self.icc.is_none() && self.exif.is_none() && self.xmp.is_none()
    }
}

fn push_riff_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

/// Rewraps libwebp's output into the extended (VP8X) container with ICC, EXIF
/// and XMP chunks in the order the container specifies (ICCP right after
/// VP8X, EXIF and XMP after the image); libwebp's encoder API has no muxer.
fn webp_with_metadata(webp: &[u8], metadata: &WebpMetadata, raster: &Raster) -> Vec<u8> {
    let body = &webp[12..];
    let mut flags = 0u8;
    if metadata.icc.is_some() {
        flags |= 0x20;
    }
    if metadata.exif.is_some() {
        flags |= 0x08;
    }
    if metadata.xmp.is_some() {
        flags |= 0x04;
    }
    // libwebp writes VP8X itself only for alpha: keep its flags, add ours.
    let (mut vp8x, image) = if &body[..4] == b"VP8X" {
        (body[8..18].to_vec(), &body[18..])
    } else {
        let mut v = vec![0u8, 0, 0, 0];
        v.extend_from_slice(&(raster.width - 1).to_le_bytes()[..3]);
        v.extend_from_slice(&(raster.height - 1).to_le_bytes()[..3]);
        if raster.has_alpha {
            v[0] |= 0x10;
        }
        (v, body)
    };
    vp8x[0] |= flags;
    let mut chunks = Vec::new();
    push_riff_chunk(&mut chunks, b"VP8X", &vp8x);
    if let Some(icc) = metadata.icc {
        push_riff_chunk(&mut chunks, b"ICCP", icc);
    }
    chunks.extend_from_slice(image);
    if let Some(exif) = metadata.exif {
        push_riff_chunk(&mut chunks, b"EXIF", exif);
    }
    if let Some(xmp) = metadata.xmp {
        push_riff_chunk(&mut chunks, b"XMP ", xmp);
    }
    let mut out = Vec::with_capacity(chunks.len() + 12);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(chunks.len() as u32 + 4).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&chunks);
    out
}

/// mozjpeg: ~10% smaller than libjpeg-turbo at equal quality thanks to trellis
/// quantisation and optimised progressive scans, and every marketplace reads it.
fn encode_jpeg(
    raster: &Raster,
    pixels: &[u8],
    quality: u8,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, StageError> {
    debug_assert!(!raster.has_alpha, "flattened before");
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    compress.set_size(raster.width as usize, raster.height as usize);
    compress.set_quality(quality as f32);
    let mut started = compress
        .start_compress(Vec::new())
        .map_err(|e| StageError::new(Stage::Encode, format!("JPEG encoder: {e}")))?;
    if let Some(exif) = &settings.exif {
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(exif);
        if app1.len() < 65533 {
            started.write_marker(mozjpeg::Marker::APP(1), &app1);
        }
    }
    if let Some(xmp) = &settings.xmp {
        let mut app1 = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
        app1.extend_from_slice(xmp);
        if app1.len() < 65533 {
            started.write_marker(mozjpeg::Marker::APP(1), &app1);
        }
    }
    // One APP2 segment holds up to 65519 profile bytes; sRGB needs one.
    if let Some(icc) = settings.icc.as_deref().filter(|p| p.len() <= 65519) {
        let mut app2 = b"ICC_PROFILE\0\x01\x01".to_vec();
        app2.extend_from_slice(icc);
        started.write_marker(mozjpeg::Marker::APP(2), &app2);
    }
    started
        .write_scanlines(pixels)
        .and_then(|_| started.finish())
        .map_err(|e| StageError::new(Stage::Encode, format!("JPEG encoder: {e}")))
}

fn encode_png(raster: &Raster, settings: &EncodeSettings) -> Result<Vec<u8>, StageError> {
    let sixteen = settings.high_bit_depth && !raster.is_8bit_exact();
    let data: Vec<u8> = if sixteen {
        raster.data.iter().flat_map(|v| v.to_be_bytes()).collect()
    } else {
        raster.to_u8()
    };
    let color = if raster.has_alpha {
        oxipng::ColorType::RGBA
    } else {
        oxipng::ColorType::RGB {
            transparent_color: None,
        }
    };
    let depth = if sixteen {
        oxipng::BitDepth::Sixteen
    } else {
        oxipng::BitDepth::Eight
    };
    let err = |e: oxipng::PngError| StageError::new(Stage::Encode, format!("PNG encoder: {e}"));
    let mut image =
        oxipng::RawImage::new(raster.width, raster.height, color, depth, data).map_err(err)?;
    image.add_png_chunk(*b"sRGB", vec![0]); // perceptual intent
    if let Some(exif) = &settings.exif {
        image.add_png_chunk(*b"eXIf", exif.clone());
    }
    if let Some(xmp) = &settings.xmp {
        // iTXt: keyword, NUL, not compressed, method, empty language and
        // translated keyword, then the packet.
        let mut itxt = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
        itxt.extend_from_slice(xmp);
        image.add_png_chunk(*b"iTXt", itxt);
    }
    // Preset 2 tries more filters; past 4 MP it took 20 s for a 4096² output on
    // 2 cores, so large images get preset 1 (a few % larger, several times faster).
    let preset = if raster.pixel_count() > 4_000_000 {
        1
    } else {
        2
    };
    let options = oxipng::Options::from_preset(preset);
    image.create_optimized_png(&options).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32, alpha: bool) -> Raster {
        let mut r = Raster::new(w, h, alpha);
        let c = r.channels();
        for (i, px) in r.data.chunks_exact_mut(c).enumerate() {
            let (x, y) = ((i as u32 % w) as u16, (i as u32 / w) as u16);
            px[0] = x * 600;
            px[1] = y * 600;
            px[2] = (x ^ y) * 300;
            if alpha {
                px[3] = if x < 5 { 0 } else { 65535 };
            }
        }
        r
    }

    #[test]
    fn max_bytes_picks_a_fitting_quality_in_few_trials() {
        let r = gradient(96, 96, false);
        let full = encode(&r, OutputFormat::Jpeg, &EncodeSettings::default()).unwrap();
        let settings = EncodeSettings {
            max_bytes: Some(full.bytes.len() as u64 * 6 / 10),
            ..EncodeSettings::default()
        };
        let fitted = encode(&r, OutputFormat::Jpeg, &settings).unwrap();
        assert!(fitted.bytes.len() as u64 <= settings.max_bytes.unwrap());
        assert!(fitted.quality.unwrap() < 85);
        assert!(fitted.trials <= 8, "{} trials", fitted.trials);
    }

    #[test]
    fn png_round_trips_16_bit_exactly() {
        let r = gradient(40, 30, true);
        let settings = EncodeSettings {
            high_bit_depth: true,
            ..EncodeSettings::default()
        };
        let png = encode(&r, OutputFormat::Png, &settings).unwrap();
        let back = image::load_from_memory(&png.bytes).unwrap().into_rgba16();
        assert_eq!(back.into_raw(), r.data);
    }

    #[test]
    fn webp_with_exif_is_still_decodable() {
        let r = gradient(33, 17, false);
        let settings = EncodeSettings {
            exif: crate::pipeline::metadata::output_exif(None, Default::default())
                .or(Some(vec![0x4d, 0x4d, 0, 42, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0])),
            ..EncodeSettings::default()
        };
        let out = encode(&r, OutputFormat::Webp, &settings).unwrap();
        let back = image::load_from_memory(&out.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (33, 17));
    }

    #[test]
    fn jpeg_flattens_transparency_onto_background() {
        let r = gradient(16, 16, true);
        let out = encode(&r, OutputFormat::Jpeg, &EncodeSettings::default()).unwrap();
        let back = image::load_from_memory(&out.bytes).unwrap().into_rgb8();
        // x < 5 was transparent: white background shows through.
        assert!(back.get_pixel(1, 8).0.iter().all(|&v| v > 240));
    }
}
