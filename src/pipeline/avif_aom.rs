//! AVIF through libavif with libaom (the `aom` feature): the encoder behind
//! `formats: [avif]` and the decoder for AVIF inputs. libaom at speed 6 writes
//! files as small as `avifenc -s 6` in about its time, where ravif (rav1e) took
//! 2–4x longer for the same bytes (docs/benchmarks.md, "AVIF: libaom vs
//! avifenc"). libavif is C: every object it hands out is owned by a guard
//! below that frees it on every path, and every call's result is checked.

use std::ffi::CStr;

use libavif_sys as sys;

use super::decode::{DecodeLimits, Decoded, SourceInfo, check_dimensions};
use super::encode::EncodeSettings;
use crate::error::{Stage, StageError};
use crate::raster::Raster;

/// Bits per sample of what we write. 8-bit 4:4:4 at speed 6 matched
/// avifenc's bytes in less time on four photos; 10-bit was 0.87–1.04x the
/// bytes at up to 1.9x the time (docs/benchmarks.md, "AVIF: libaom vs avifenc").
pub const ENCODE_DEPTH: u32 = 8;

/// libaom's speed for the default `avif_speed` (0 slowest ..= 10 fastest).
pub const DEFAULT_SPEED: u8 = 6;

/// An `avifResult` with libavif's own words and, when it left one, the
/// diagnostic that says where in the file it stopped.
fn describe(result: sys::avifResult, diag: Option<&sys::avifDiagnostics>) -> String {
    // SAFETY: avifResultToString returns a static NUL-terminated string.
    let what = unsafe { CStr::from_ptr(sys::avifResultToString(result)) }.to_string_lossy();
    let detail = diag
        .map(|d| {
            // libavif NUL-terminates the message (the buffer starts zeroed).
            let bytes: Vec<u8> = d.error.iter().map(|&c| c as u8).collect();
            CStr::from_bytes_until_nul(&bytes)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    if detail.is_empty() {
        what.into_owned()
    } else {
        format!("{what} ({detail})")
    }
}

struct Image(*mut sys::avifImage);

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: created by avifImageCreate, destroyed once.
        unsafe { sys::avifImageDestroy(self.0) }
    }
}

struct Encoder(*mut sys::avifEncoder);

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by avifEncoderCreate, destroyed once.
        unsafe { sys::avifEncoderDestroy(self.0) }
    }
}

struct Decoder(*mut sys::avifDecoder);

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by avifDecoderCreate, destroyed once (it frees its image and IO).
        unsafe { sys::avifDecoderDestroy(self.0) }
    }
}

struct Output(sys::avifRWData);

impl Drop for Output {
    fn drop(&mut self) {
        // SAFETY: filled by libavif (or still empty, which avifRWDataFree accepts).
        unsafe { sys::avifRWDataFree(&mut self.0) }
    }
}

/// Encodes the final raster. `pixels8` is the raster rounded to 8 bits (what
/// an 8-bit encode reads); a deeper encode reads the 16-bit samples.
pub fn encode(
    raster: &Raster,
    pixels8: &[u8],
    quality: u8,
    settings: &EncodeSettings,
    depth: u32,
) -> Result<Vec<u8>, StageError> {
    let failed = |what: &str, cause: String| {
        StageError::new(
            Stage::Encode,
            format!("AVIF encoder (libaom): {what}: {cause}"),
        )
    };
    let (w, h) = (raster.width, raster.height);
    let channels = raster.channels() as u32;
    // SAFETY: every pointer below is either checked for null or owned by a
    // guard; the RGB image borrows `pixels8`/`raster.data`, which outlive it.
    unsafe {
        let image = Image(sys::avifImageCreate(
            w,
            h,
            depth,
            sys::AVIF_PIXEL_FORMAT_YUV444,
        ));
        if image.0.is_null() {
            return Err(failed("image", format!("cannot create a {w}x{h} image")));
        }
        let img = image.0;
        // The pixels are sRGB; say so in the colour box (nclx) as avifenc does
        // for PNG input: BT.709 primaries, sRGB transfer, BT.601 matrix, full range.
        (*img).yuvRange = sys::AVIF_RANGE_FULL;
        (*img).colorPrimaries = sys::AVIF_COLOR_PRIMARIES_BT709 as u16;
        (*img).transferCharacteristics = sys::AVIF_TRANSFER_CHARACTERISTICS_SRGB as u16;
        (*img).matrixCoefficients = sys::AVIF_MATRIX_COEFFICIENTS_BT601 as u16;

        let mut rgb = sys::avifRGBImage::default();
        sys::avifRGBImageSetDefaults(&mut rgb, image.0);
        rgb.format = if raster.has_alpha {
            sys::AVIF_RGB_FORMAT_RGBA
        } else {
            sys::AVIF_RGB_FORMAT_RGB
        };
        rgb.maxThreads = settings.threads.max(1) as i32;
        if depth > 8 {
            rgb.depth = 16;
            rgb.pixels = raster.data.as_ptr() as *mut u8;
            rgb.rowBytes = w * channels * 2;
        } else {
            rgb.depth = 8;
            rgb.pixels = pixels8.as_ptr() as *mut u8;
            rgb.rowBytes = w * channels;
        }
        // Reads the RGB image only (and allocates the alpha plane for RGBA).
        let r = sys::avifImageRGBToYUV(image.0, &rgb);
        if r != sys::AVIF_RESULT_OK {
            return Err(failed("RGB to YUV", describe(r, None)));
        }
        if let Some(exif) = &settings.exif {
            let r = sys::avifImageSetMetadataExif(image.0, exif.as_ptr(), exif.len());
            if r != sys::AVIF_RESULT_OK {
                return Err(failed("EXIF", describe(r, None)));
            }
            // libavif copies an EXIF orientation into irot/imir; our pixels are
            // already upright, so no transform may be written.
            (*img).transformFlags = sys::AVIF_TRANSFORM_NONE;
        }
        if let Some(xmp) = &settings.xmp {
            let r = sys::avifImageSetMetadataXMP(image.0, xmp.as_ptr(), xmp.len());
            if r != sys::AVIF_RESULT_OK {
                return Err(failed("XMP", describe(r, None)));
            }
        }

        let encoder = Encoder(sys::avifEncoderCreate());
        if encoder.0.is_null() {
            return Err(failed("encoder", "cannot create it".into()));
        }
        let enc = encoder.0;
        (*enc).codecChoice = sys::AVIF_CODEC_CHOICE_AOM;
        (*enc).maxThreads = settings.threads.max(1) as i32;
        (*enc).speed = i32::from(settings.avif_speed.min(10));
        (*enc).quality = i32::from(quality.min(100));
        (*enc).qualityAlpha = i32::from(quality.min(100));
        let mut out = Output(sys::avifRWData::default());
        let r = sys::avifEncoderWrite(enc, img, &mut out.0);
        if r != sys::AVIF_RESULT_OK {
            return Err(failed("encode", describe(r, Some(&(*enc).diag))));
        }
        Ok(std::slice::from_raw_parts(out.0.data, out.0.size).to_vec())
    }
}

/// Decodes an AVIF's primary image upright (clean aperture, rotation and
/// mirror boxes applied, as libheif does), deep files to 16 bits.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, StageError> {
    let failed =
        |what: &str, cause: String| StageError::new(Stage::Decode, format!("AVIF {what}: {cause}"));
    // SAFETY: the decoder is owned by its guard and reads `bytes`, which
    // outlive it; its image is valid between parse and destroy, and the RGB
    // buffer we hand libavif is sized from that image's own width and height.
    unsafe {
        let decoder = Decoder(sys::avifDecoderCreate());
        if decoder.0.is_null() {
            return Err(failed("decoder", "cannot create it".into()));
        }
        let dec = decoder.0;
        (*dec).maxThreads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        (*dec).ignoreXMP = sys::AVIF_TRUE as i32;
        // Our own limits, enforced by libavif while parsing as well (the
        // pixel limit includes grids), so nothing is allocated past them.
        let max_pixels = (limits.max_megapixels * 1e6).min(u32::MAX as f64) as u32;
        (*dec).imageSizeLimit = max_pixels.clamp(1, sys::AVIF_DEFAULT_IMAGE_SIZE_LIMIT);
        (*dec).imageDimensionLimit = limits.max_side.max(1);
        // Conformance checks (a missing pixi box, say) are not safety checks:
        // be as lenient as libheif, which reads such files.
        (*dec).strictFlags = sys::AVIF_STRICT_DISABLED;
        let r = sys::avifDecoderSetIOMemory(dec, bytes.as_ptr(), bytes.len());
        if r != sys::AVIF_RESULT_OK {
            return Err(failed("input", describe(r, None)));
        }
        let r = sys::avifDecoderParse(dec);
        if r != sys::AVIF_RESULT_OK {
            return Err(failed("header", describe(r, Some(&(*dec).diag))));
        }
        let img = &*(*dec).image;
        let rotated = img.transformFlags & sys::AVIF_TRANSFORM_IROT != 0 && img.irot.angle % 2 == 1;
        let (width, height) = if rotated {
            (img.height, img.width)
        } else {
            (img.width, img.height)
        };
        check_dimensions(width, height, limits)?;
        let deep = img.depth > 8;
        let mut info = SourceInfo {
            format: "avif",
            width,
            height,
            bit_depth: if deep { 16 } else { 8 },
            ..SourceInfo::default()
        };
        let frames = (*dec).imageCount;
        if frames > 1 {
            info.notes.push(format!(
                "AVIF sequence ({frames} frames): only the first frame is used"
            ));
        }
        let r = sys::avifDecoderNextImage(dec);
        if r != sys::AVIF_RESULT_OK {
            return Err(failed("pixels", describe(r, Some(&(*dec).diag))));
        }
        // Decoding may replace the image: read everything from it anew.
        let img = &*(*dec).image;
        let (w, h) = (img.width, img.height);
        check_dimensions(w, h, limits)?;
        let alpha = !img.alphaPlane.is_null();
        let mut rgb = sys::avifRGBImage::default();
        sys::avifRGBImageSetDefaults(&mut rgb, img);
        rgb.format = if alpha {
            sys::AVIF_RGB_FORMAT_RGBA
        } else {
            sys::AVIF_RGB_FORMAT_RGB
        };
        rgb.maxThreads = (*dec).maxThreads;
        let mut raster = Raster::new(w, h, alpha);
        let channels = raster.channels() as u32;
        // libavif scales any depth to the RGB depth asked for: 16 for deep
        // files, 8 (widened below) for 8-bit ones.
        let mut narrow = Vec::new();
        if deep {
            rgb.depth = 16;
            rgb.pixels = raster.data.as_mut_ptr() as *mut u8;
            rgb.rowBytes = w * channels * 2;
        } else {
            narrow = vec![0u8; w as usize * h as usize * channels as usize];
            rgb.depth = 8;
            rgb.pixels = narrow.as_mut_ptr();
            rgb.rowBytes = w * channels;
        }
        let r = sys::avifImageYUVToRGB(img, &mut rgb);
        if r != sys::AVIF_RESULT_OK {
            return Err(failed("YUV to RGB", describe(r, None)));
        }
        if !deep {
            for (dst, &src) in raster.data.iter_mut().zip(&narrow) {
                *dst = u16::from(src) * 257;
            }
        }
        if img.transformFlags & sys::AVIF_TRANSFORM_CLAP != 0 {
            let mut rect = sys::avifCropRect::default();
            let mut diag = sys::avifDiagnostics::default();
            if sys::avifCropRectConvertCleanApertureBox(
                &mut rect,
                &img.clap,
                w,
                h,
                img.yuvFormat,
                &mut diag,
            ) != 0
            {
                raster = crop(&raster, rect.x, rect.y, rect.width, rect.height);
            } else {
                info.notes.push(format!(
                    "AVIF clean aperture ignored: {}",
                    describe(sys::AVIF_RESULT_INVALID_ARGUMENT, Some(&diag))
                ));
            }
        }
        if img.transformFlags & sys::AVIF_TRANSFORM_IROT != 0 {
            raster = rotate_ccw(&raster, img.irot.angle % 4);
        }
        if img.transformFlags & sys::AVIF_TRANSFORM_IMIR != 0 {
            raster = mirror(&raster, img.imir.axis);
        }
        if img.icc.size > 0 {
            let icc = std::slice::from_raw_parts(img.icc.data, img.icc.size);
            super::decode::convert_rgb_profile_to_srgb(&mut raster, icc, &mut info);
        }
        if img.exif.size > 0 {
            let exif = std::slice::from_raw_parts(img.exif.data, img.exif.size);
            let mut offset = 0usize;
            if sys::avifGetExifTiffHeaderOffset(exif.as_ptr(), exif.len(), &mut offset)
                == sys::AVIF_RESULT_OK
            {
                info.exif = exif.get(offset..).map(<[u8]>::to_vec);
            }
        }
        info.width = raster.width;
        info.height = raster.height;
        Ok(Decoded { raster, info })
    }
}

/// A new raster of `w`x`h` whose pixel (x, y) is `source(x, y)` of `r`.
fn remap(r: &Raster, w: u32, h: u32, source: impl Fn(u32, u32) -> (u32, u32)) -> Raster {
    let mut out = Raster::new(w, h, r.has_alpha);
    let c = r.channels();
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = source(x, y);
            let from = (sy as usize * r.width as usize + sx as usize) * c;
            let to = (y as usize * w as usize + x as usize) * c;
            out.data[to..to + c].copy_from_slice(&r.data[from..from + c]);
        }
    }
    out
}

fn crop(r: &Raster, x0: u32, y0: u32, w: u32, h: u32) -> Raster {
    remap(r, w, h, |x, y| (x0 + x, y0 + y))
}

/// `irot`: `quarters` × 90° anti-clockwise.
fn rotate_ccw(r: &Raster, quarters: u8) -> Raster {
    let (w, h) = (r.width, r.height);
    match quarters {
        1 => remap(r, h, w, |x, y| (w - 1 - y, x)),
        2 => remap(r, w, h, |x, y| (w - 1 - x, h - 1 - y)),
        3 => remap(r, h, w, |x, y| (y, h - 1 - x)),
        _ => r.clone(),
    }
}

/// `imir`: axis 0 exchanges top and bottom, axis 1 left and right.
fn mirror(r: &Raster, axis: u8) -> Raster {
    let (w, h) = (r.width, r.height);
    if axis == 0 {
        remap(r, w, h, |x, y| (x, h - 1 - y))
    } else {
        remap(r, w, h, |x, y| (w - 1 - x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::decode;
    use crate::pipeline::encode::{OutputFormat, encode as encode_output};

    /// Smooth colours, with a transparent band on the left when `alpha`.
    fn photo_like(w: u32, h: u32, alpha: bool) -> Raster {
        let mut r = Raster::new(w, h, alpha);
        let c = r.channels();
        for (i, px) in r.data.chunks_exact_mut(c).enumerate() {
            let (x, y) = (i as u32 % w, i as u32 / w);
            px[0] = (x * 65535 / w) as u16;
            px[1] = (y * 65535 / h) as u16;
            px[2] = ((x + y) * 65535 / (w + h)) as u16;
            if alpha {
                px[3] = if x < w / 4 { 0 } else { 65535 };
            }
        }
        r
    }

    fn read(bytes: &[u8]) -> Result<decode::Decoded, StageError> {
        decode::decode(bytes, &DecodeLimits::default())
    }

    #[test]
    fn encode_then_decode_keeps_size_pixels_and_alpha() {
        let source = photo_like(96, 64, true);
        let settings = EncodeSettings {
            quality: Some(80),
            ..EncodeSettings::default()
        };
        let avif = encode_output(&source, OutputFormat::Avif, &settings).unwrap();
        assert_eq!(&avif.bytes[4..12], b"ftypavif");
        let back = read(&avif.bytes).unwrap();
        assert_eq!(back.info.format, "avif");
        let r = back.raster;
        assert_eq!((r.width, r.height, r.has_alpha), (96, 64, true));
        for (x, y) in [(0, 0), (30, 10), (60, 40), (95, 63)] {
            let (a, b) = (source.pixel(x, y), r.pixel(x, y));
            assert!(
                b[3].abs_diff(a[3]) < 1024,
                "alpha at {x},{y}: {b:?} vs {a:?}"
            );
            if a[3] > 0 {
                for ch in 0..3 {
                    // Within 4% of full scale on a smooth image at quality 80.
                    assert!(b[ch].abs_diff(a[ch]) < 2600, "{x},{y}: {b:?} vs {a:?}");
                }
            }
        }
    }

    #[test]
    fn ten_bit_encode_decodes_to_16_bit_samples() {
        let source = photo_like(40, 30, false);
        let pixels = source.to_u8();
        let settings = EncodeSettings::default();
        let avif = encode(&source, &pixels, 80, &settings, 10).unwrap();
        let back = read(&avif).unwrap();
        assert_eq!(back.info.bit_depth, 16);
        let (a, b) = (source.pixel(20, 15), back.raster.pixel(20, 15));
        assert!(b[0].abs_diff(a[0]) < 2600, "{b:?} vs {a:?}");
    }

    #[test]
    fn the_provenance_xmp_is_an_item_libavif_reads_back() {
        let packet = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>upscaled test packet</x:xmpmeta>";
        let settings = EncodeSettings {
            xmp: Some(packet.to_vec()),
            ..EncodeSettings::default()
        };
        let avif = encode_output(&photo_like(32, 32, false), OutputFormat::Avif, &settings)
            .unwrap()
            .bytes;
        // SAFETY: as in `decode`: a guarded decoder over bytes that outlive it.
        let xmp = unsafe {
            let decoder = Decoder(sys::avifDecoderCreate());
            let image = Image(sys::avifImageCreateEmpty());
            let r = sys::avifDecoderReadMemory(decoder.0, image.0, avif.as_ptr(), avif.len());
            assert_eq!(r, sys::AVIF_RESULT_OK);
            let xmp = (*image.0).xmp;
            assert!(!xmp.data.is_null());
            std::slice::from_raw_parts(xmp.data, xmp.size).to_vec()
        };
        assert_eq!(xmp, packet);
        assert!(
            avif.windows(20).any(|w| w == b"application/rdf+xml\0"),
            "the XMP item has its MIME content type"
        );
    }

    #[test]
    fn corrupt_avif_is_a_decode_error_naming_the_format() {
        let good = encode_output(
            &photo_like(48, 48, false),
            OutputFormat::Avif,
            &EncodeSettings::default(),
        )
        .unwrap()
        .bytes;
        let mut huge = good.clone();
        // The ispe box's width, made 1e9: over every limit, refused unallocated.
        let at = huge.windows(4).position(|w| w == b"ispe").unwrap() + 8;
        huge[at..at + 4].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        for bad in [&good[..good.len() / 2], &good[..40], &huge[..]] {
            let err = read(bad).err().expect("a corrupt AVIF must not decode");
            assert_eq!(err.stage, Stage::Decode);
            assert!(err.cause.contains("AVIF"), "{}", err.cause);
        }
    }

    fn numbered(w: u32, h: u32) -> Raster {
        let mut r = Raster::new(w, h, false);
        for (i, px) in r.data.chunks_exact_mut(3).enumerate() {
            px.fill(i as u16);
        }
        r
    }

    #[test]
    fn quarter_turns_and_mirrors_move_corners_where_heif_says() {
        // 3x2:  0 1 2
        //       3 4 5
        let r = numbered(3, 2);
        let ccw = rotate_ccw(&r, 1);
        assert_eq!((ccw.width, ccw.height), (2, 3));
        // Anti-clockwise: the top-right corner comes to the top-left.
        assert_eq!(ccw.pixel(0, 0)[0], 2);
        assert_eq!(ccw.pixel(1, 2)[0], 3);
        let cw = rotate_ccw(&r, 3);
        assert_eq!(cw.pixel(0, 0)[0], 3);
        assert_eq!(rotate_ccw(&r, 2).pixel(0, 0)[0], 5);
        assert_eq!(mirror(&r, 0).pixel(0, 0)[0], 3);
        assert_eq!(mirror(&r, 1).pixel(0, 0)[0], 2);
        assert_eq!(crop(&r, 1, 1, 2, 1).pixel(0, 0)[0], 4);
    }
}
