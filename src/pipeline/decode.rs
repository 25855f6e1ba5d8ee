//! Stage 1: bytes → sRGB `Raster`.
//!
//! The format is sniffed from the bytes (never the extension), resource limits are
//! checked before any pixel is allocated, EXIF orientation is applied, and embedded
//! ICC profiles (Display P3, Adobe RGB, CMYK) are converted to sRGB with lcms2.
//! JPEG XL, HEIC and AVIF go to `decode_modern`.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use serde::{Deserialize, Serialize};

use crate::error::{Stage, StageError, catch_panic};
use crate::raster::Raster;

/// Resource limits for one input file. Defaults are documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest accepted pixel count, in megapixels.
    pub max_megapixels: f64,
    /// Most memory the decoder may allocate, in MiB.
    pub max_alloc_mib: u64,
    /// Largest accepted input file, in MiB.
    pub max_file_mib: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: 16384,
            max_megapixels: 100.0,
            max_alloc_mib: 512,
            max_file_mib: 256,
        }
    }
}

/// What decoding learnt about the source besides its pixels.
#[derive(Clone, Debug, Default)]
pub struct SourceInfo {
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    /// 8 or 16: the precision worth keeping in a lossless output.
    pub bit_depth: u8,
    /// Raw EXIF (TIFF structure), if the file had any.
    pub exif: Option<Vec<u8>>,
    /// Things worth a warning in the log (animated input, unusable profile...).
    pub notes: Vec<String>,
}

pub struct Decoded {
    pub raster: Raster,
    pub info: SourceInfo,
}

pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, StageError> {
    if bytes.is_empty() {
        return Err(StageError::new(
            Stage::Decode,
            "the file is empty (0 bytes)",
        ));
    }
    if bytes.len() as u64 > limits.max_file_mib * 1024 * 1024 {
        return Err(StageError::new(
            Stage::Decode,
            format!(
                "the file is {} MiB, over the limit of {} MiB (limits.max_file_mib)",
                bytes.len() / (1024 * 1024),
                limits.max_file_mib
            ),
        ));
    }
    if let Some(kind) = sniff_modern(bytes) {
        return catch_panic(Stage::Decode, || {
            super::decode_modern::decode(bytes, kind, limits)
        });
    }
    let format = image::guess_format(bytes).map_err(|_| {
        StageError::new(
            Stage::Decode,
            format!(
                "not a supported image: the file starts with {}",
                describe_magic(bytes)
            ),
        )
    })?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Tiff
            | ImageFormat::Bmp
    ) {
        return Err(StageError::new(
            Stage::Decode,
            format!("{format:?} images are not supported"),
        ));
    }
    catch_panic(Stage::Decode, || decode_format(bytes, format, limits))
}

fn decode_format(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<Decoded, StageError> {
    let err = |e: image::ImageError| StageError::new(Stage::Decode, describe_image_error(e));
    if format == ImageFormat::WebP {
        webp_chunks_fit(bytes).map_err(|cause| StageError::new(Stage::Decode, cause))?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // Width and height are checked below from the header, with a clearer message;
    // the allocation cap also stops bombs hidden in ancillary data.
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc_mib * 1024 * 1024);
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(err)?;

    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;

    let mut info = SourceInfo {
        format: format_name(format),
        width,
        height,
        ..SourceInfo::default()
    };
    // A damaged EXIF block must not cost the image: warn and carry on upright.
    let orientation = decoder.orientation().unwrap_or_else(|e| {
        info.notes.push(format!(
            "EXIF orientation unreadable ({e}); image used as stored"
        ));
        image::metadata::Orientation::NoTransforms
    });
    info.exif = decoder.exif_metadata().ok().flatten();
    let icc = decoder.icc_profile().ok().flatten();
    if format == ImageFormat::WebP && is_animated_webp(bytes) {
        info.notes
            .push("animated WebP: only the first frame is used".into());
    }
    if format == ImageFormat::Gif {
        info.notes.push("GIF: only the first frame is used".into());
    }
    if format == ImageFormat::Png
        && let Some(frames) = apng_frames(bytes)
    {
        info.notes.push(format!(
            "animated PNG (APNG, {frames} frames): only the first frame is used"
        ));
    }
    if format == ImageFormat::Tiff {
        let pages = tiff_pages(bytes);
        if pages > 1 {
            info.notes.push(format!(
                "multi-page TIFF ({pages} pages): only the first page is used"
            ));
        }
    }

    let raster = if format == ImageFormat::Jpeg && jpeg_is_cmyk(bytes) {
        info.bit_depth = 8;
        decode_cmyk_jpeg(bytes, icc.as_deref(), &mut info)?
    } else {
        let image = DynamicImage::from_decoder(decoder).map_err(err)?;
        info.bit_depth = if image.color().bytes_per_pixel() / image.color().channel_count() > 1 {
            16
        } else {
            8
        };
        let mut raster = raster_from_dynamic(image);
        if let Some(profile) = icc {
            convert_rgb_profile_to_srgb(&mut raster, &profile, &mut info);
        }
        raster
    };
    let raster = apply_orientation(raster, orientation);
    info.width = raster.width;
    info.height = raster.height;
    Ok(Decoded { raster, info })
}

pub(crate) fn check_dimensions(
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<(), StageError> {
    if width == 0 || height == 0 {
        return Err(StageError::new(
            Stage::Decode,
            "the image has no pixels (0 width or height)",
        ));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(StageError::new(
            Stage::Decode,
            format!(
                "{width}x{height} exceeds the limit of {} px a side (limits.max_side)",
                limits.max_side
            ),
        ));
    }
    let megapixels = width as f64 * height as f64 / 1e6;
    if megapixels > limits.max_megapixels {
        return Err(StageError::new(
            Stage::Decode,
            format!(
                "{width}x{height} is {megapixels:.1} MP, over the limit of {} MP (limits.max_megapixels)",
                limits.max_megapixels
            ),
        ));
    }
    Ok(())
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Tiff => "tiff",
        ImageFormat::Bmp => "bmp",
        _ => "other",
    }
}

fn describe_magic(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?} (text, not image data)", String::from_utf8_lossy(head))
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
        format!("bytes {}", hex.join(" "))
    }
}

fn describe_image_error(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(l) => format!(
            "the image exceeds a resource limit ({l}); raise limits.max_alloc_mib if it is legitimate"
        ),
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file is truncated (unexpected end of data)".into()
        }
        other => format!("the data is corrupt or unsupported: {other}"),
    }
}

/// Widens any decoded colour type to 16-bit RGB or RGBA.
fn raster_from_dynamic(image: DynamicImage) -> Raster {
    let (width, height) = (image.width(), image.height());
    if image.color().has_alpha() {
        let rgba = image.into_rgba16();
        Raster {
            width,
            height,
            has_alpha: true,
            data: rgba.into_raw(),
        }
    } else {
        let rgb = image.into_rgb16();
        Raster {
            width,
            height,
            has_alpha: false,
            data: rgb.into_raw(),
        }
    }
}

/// The JPEG's frame header says 4 components: CMYK or YCCK.
fn jpeg_is_cmyk(bytes: &[u8]) -> bool {
    let mut decoder = zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(bytes));
    decoder.decode_headers().is_ok()
        && matches!(
            decoder.input_colorspace(),
            Some(zune_core::colorspace::ColorSpace::CMYK | zune_core::colorspace::ColorSpace::YCCK)
        )
}

fn decode_cmyk_jpeg(
    bytes: &[u8],
    icc: Option<&[u8]>,
    info: &mut SourceInfo,
) -> Result<Raster, StageError> {
    use zune_core::colorspace::ColorSpace;
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(false)
        .jpeg_set_out_colorspace(ColorSpace::CMYK);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    let cmyk = decoder
        .decode()
        .map_err(|e| StageError::new(Stage::Decode, format!("CMYK JPEG: {e}")))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| StageError::new(Stage::Decode, "CMYK JPEG without dimensions"))?;
    // Photoshop (the Adobe APP14 marker) stores CMYK inverted: 255 means no ink.
    let inverted = contains(bytes, b"\xff\xee\x00\x0eAdobe") || contains(bytes, b"Adobe\x00");
    let mut rgb8 = vec![0u8; width * height * 3];
    let profile = icc.and_then(|p| lcms2::Profile::new_icc(p).ok());
    let converted = profile.as_ref().and_then(|src| {
        if src.color_space() != lcms2::ColorSpaceSignature::CmykData {
            return None;
        }
        let format = if inverted {
            lcms2::PixelFormat::CMYK_8_REV
        } else {
            lcms2::PixelFormat::CMYK_8
        };
        let srgb = lcms2::Profile::new_srgb();
        let t = lcms2::Transform::<[u8; 4], [u8; 3]>::new(
            src,
            format,
            &srgb,
            lcms2::PixelFormat::RGB_8,
            lcms2::Intent::Perceptual,
        )
        .ok()?;
        let src_px: &[[u8; 4]] = bytemuck::cast_slice(&cmyk);
        let dst_px: &mut [[u8; 3]] = bytemuck::cast_slice_mut(&mut rgb8);
        t.transform_pixels(src_px, dst_px);
        Some(())
    });
    if converted.is_none() {
        info.notes.push(
            "CMYK JPEG without a usable CMYK profile: converted with the naive formula".into(),
        );
        for (src, dst) in cmyk.chunks_exact(4).zip(rgb8.chunks_exact_mut(3)) {
            let ink = |v: u8| if inverted { 255 - v } else { v } as u32;
            let k = ink(src[3]);
            for c in 0..3 {
                dst[c] = ((255 - ink(src[c])) * (255 - k) / 255) as u8;
            }
        }
    }
    Ok(Raster::from_u8(width as u32, height as u32, false, &rgb8))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Converts RGB pixels tagged with a non-sRGB profile to sRGB in place.
pub(crate) fn convert_rgb_profile_to_srgb(raster: &mut Raster, icc: &[u8], info: &mut SourceInfo) {
    let Ok(source) = lcms2::Profile::new_icc(icc) else {
        info.notes
            .push("embedded ICC profile is unreadable; pixels used as sRGB".into());
        return;
    };
    if source.color_space() != lcms2::ColorSpaceSignature::RgbData || is_srgb(&source) {
        return;
    }
    let srgb = lcms2::Profile::new_srgb();
    let format = if raster.has_alpha {
        lcms2::PixelFormat::RGBA_16
    } else {
        lcms2::PixelFormat::RGB_16
    };
    let channels = raster.channels();
    let result = if channels == 4 {
        lcms2::Transform::<[u16; 4], [u16; 4]>::new(
            &source,
            format,
            &srgb,
            format,
            lcms2::Intent::Perceptual,
        )
        .map(|t| t.transform_in_place(bytemuck::cast_slice_mut(&mut raster.data)))
    } else {
        lcms2::Transform::<[u16; 3], [u16; 3]>::new(
            &source,
            format,
            &srgb,
            format,
            lcms2::Intent::Perceptual,
        )
        .map(|t| t.transform_in_place(bytemuck::cast_slice_mut(&mut raster.data)))
    };
    if let Err(e) = result {
        info.notes
            .push(format!("ICC conversion failed ({e}); pixels used as sRGB"));
    }
}

fn is_srgb(profile: &lcms2::Profile) -> bool {
    profile
        .info(lcms2::InfoType::Description, lcms2::Locale::none())
        .is_some_and(|d| d.to_ascii_lowercase().contains("srgb"))
}

/// Image formats recognised by their signature but not decoded (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modern {
    /// HEIC/HEIF: an ISO-BMFF `ftyp` box with a HEIF brand.
    Heif,
    /// AVIF: an ISO-BMFF `ftyp` box with an AVIF brand.
    Avif,
    /// JPEG XL: a bare codestream or the ISO-BMFF container.
    JpegXl,
}

impl Modern {
    /// What a user knows the format as.
    pub fn name(self) -> &'static str {
        match self {
            Modern::Heif => "HEIC/HEIF (e.g. iPhone photos)",
            Modern::Avif => "AVIF",
            Modern::JpegXl => "JPEG XL",
        }
    }
}

/// The format of `bytes` when it is one of the modern ones `image` does not
/// read (decode_modern does); None for everything else (which
/// `image::guess_format` then looks at).
pub fn sniff_modern(bytes: &[u8]) -> Option<Modern> {
    if bytes.starts_with(&[0xff, 0x0a]) || bytes.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Some(Modern::JpegXl);
    }
    // ISO-BMFF: size(4) "ftyp" major(4) minor_version(4) compatible brands(4 each).
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = size.clamp(12, bytes.len().min(4096));
    let compatible = bytes.get(16..end).unwrap_or_default().chunks_exact(4);
    let brands: Vec<&[u8]> = std::iter::once(&bytes[8..12]).chain(compatible).collect();
    let any = |set: &[&[u8; 4]]| brands.iter().any(|b| set.iter().any(|s| b == s));
    // AVIF files list mif1 too: AVIF is decided first.
    if any(&[b"avif", b"avis"]) {
        Some(Modern::Avif)
    } else if any(&[
        b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc", b"hevx",
    ]) {
        Some(Modern::Heif)
    } else {
        None
    }
}

/// The frame count of an animated PNG: an `acTL` chunk before the first `IDAT`.
fn apng_frames(bytes: &[u8]) -> Option<u32> {
    let mut at = 8; // after the signature
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        match &head[4..8] {
            b"IDAT" => return None,
            b"acTL" => {
                let n = bytes.get(at + 8..at + 12)?;
                return Some(u32::from_be_bytes([n[0], n[1], n[2], n[3]]));
            }
            _ => at = at.checked_add(12)?.checked_add(len)?,
        }
    }
    None
}

/// How many pages (top-level IFDs) a TIFF chains; 1 when unsure.
fn tiff_pages(bytes: &[u8]) -> usize {
    let little = match bytes.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return 1,
    };
    let read = |at: usize, n: usize| -> Option<u64> {
        let b = bytes.get(at..at.checked_add(n)?)?;
        let fold = |acc: u64, &x: &u8| acc << 8 | x as u64;
        Some(if little {
            b.iter().rev().fold(0, fold)
        } else {
            b.iter().fold(0, fold)
        })
    };
    // Classic TIFF: 4-byte offsets, 2-byte counts, 12-byte entries; BigTIFF: 8, 8, 20.
    let (first, off, count, entry) = match read(2, 2) {
        Some(42) => (read(4, 4), 4, 2, 12),
        Some(43) => (read(8, 8), 8, 8, 20),
        _ => return 1,
    };
    let mut next = first.unwrap_or(0) as usize;
    let mut seen = std::collections::HashSet::new();
    while next != 0 && seen.len() < 100_000 && seen.insert(next) {
        let Some(entries) = read(next, count) else {
            break;
        };
        let link = (entries as usize)
            .checked_mul(entry)
            .and_then(|n| n.checked_add(next + count));
        next = link.and_then(|at| read(at, off)).unwrap_or(0) as usize;
    }
    seen.len().max(1)
}

/// image-webp allocates the size a chunk header declares before reading it (up
/// to 4 GiB from a 1 KiB file), and image's allocation cap does not reach its
/// ICC and EXIF reads: every chunk, and every chunk inside an animation frame,
/// must fit in the file. Found by the decode_webp fuzz target.
fn webp_chunks_fit(bytes: &[u8]) -> Result<(), String> {
    fn walk(bytes: &[u8], mut at: usize, end: usize, nested: bool) -> Result<(), String> {
        while at + 8 <= end {
            let head = &bytes[at..at + 8];
            let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let body = at + 8;
            let room = bytes.len() - body;
            if size > room {
                return Err(format!(
                    "the WebP data is corrupt: its \"{}\" chunk declares {size} bytes, the file has {room} after it",
                    head[..4].escape_ascii()
                ));
            }
            if !nested && &head[..4] == b"ANMF" && size > 16 {
                walk(bytes, body + 16, body + size, true)?;
            }
            at = body + size + (size & 1);
        }
        Ok(())
    }
    // The chunks follow "RIFF", its size and "WEBP"; bytes after the size it
    // declares are not read.
    let riff = bytes
        .get(4..8)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    walk(bytes, 12, bytes.len().min(8 + riff as usize), false)
}

fn is_animated_webp(bytes: &[u8]) -> bool {
    bytes.len() > 30 && &bytes[12..16] == b"VP8X" && bytes[20] & 0x02 != 0
}

fn apply_orientation(raster: Raster, orientation: image::metadata::Orientation) -> Raster {
    use image::metadata::Orientation::NoTransforms;
    if orientation == NoTransforms {
        return raster;
    }
    let (w, h, alpha) = (raster.width, raster.height, raster.has_alpha);
    let mut image = if alpha {
        DynamicImage::ImageRgba16(image::ImageBuffer::from_raw(w, h, raster.data).expect("sized"))
    } else {
        DynamicImage::ImageRgb16(image::ImageBuffer::from_raw(w, h, raster.data).expect("sized"))
    };
    image.apply_orientation(orientation);
    raster_from_dynamic(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(image: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn empty_file_is_a_clear_error() {
        let e = decode(&[], &DecodeLimits::default()).err().unwrap();
        assert_eq!(e.stage, Stage::Decode);
        assert!(e.cause.contains("empty"), "{}", e.cause);
    }

    #[test]
    fn text_named_jpg_says_it_is_text() {
        let e = decode(b"hello, this is a note", &DecodeLimits::default())
            .err()
            .unwrap();
        assert!(e.cause.contains("text"), "{}", e.cause);
    }

    #[test]
    fn grey_16_bit_with_alpha_keeps_precision() {
        let img = image::ImageBuffer::<image::LumaA<u16>, _>::from_fn(4, 2, |x, _| {
            image::LumaA([x as u16 * 1000 + 1, 30000])
        });
        let d = decode(
            &png_bytes(DynamicImage::ImageLumaA16(img)),
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(d.info.bit_depth, 16);
        assert!(d.raster.has_alpha);
        assert_eq!(d.raster.pixel(3, 1), &[3001, 3001, 3001, 30000]);
    }

    #[test]
    fn modern_formats_are_sniffed_by_their_signatures() {
        let ftyp = |brands: &[&[u8; 4]]| {
            let mut b = ((12 + 4 * brands.len()) as u32).to_be_bytes().to_vec();
            b.extend(b"ftyp");
            b.extend(brands[0]);
            b.extend([0, 0, 0, 0]);
            for c in &brands[1..] {
                b.extend(*c);
            }
            b
        };
        let heif = Some(Modern::Heif);
        assert_eq!(sniff_modern(&ftyp(&[b"heic", b"mif1"])), heif);
        assert_eq!(sniff_modern(&ftyp(&[b"mif1", b"heic"])), heif);
        assert_eq!(sniff_modern(&ftyp(&[b"msf1", b"hevc"])), heif);
        let avif = Some(Modern::Avif);
        assert_eq!(sniff_modern(&ftyp(&[b"avif", b"mif1", b"miaf"])), avif);
        assert_eq!(sniff_modern(&ftyp(&[b"mif1", b"avif"])), avif);
        assert_eq!(sniff_modern(&ftyp(&[b"isom", b"mp42"])), None);
        assert_eq!(sniff_modern(&[0xff, 0x0a, 0, 0]), Some(Modern::JpegXl));
        assert_eq!(
            sniff_modern(b"\0\0\0\x0cJXL \r\n\x87\n\0\0"),
            Some(Modern::JpegXl)
        );
        assert_eq!(sniff_modern(b"\xff\xd8\xff\xe0"), None);
        // The message a user sees.
        let e = decode(&ftyp(&[b"heic"]), &DecodeLimits::default())
            .err()
            .unwrap();
        assert!(
            e.cause.starts_with("HEIC/HEIF (e.g. iPhone photos)"),
            "{}",
            e.cause
        );
    }

    #[test]
    fn page_and_frame_counts_survive_hostile_headers() {
        // A TIFF whose IFD points at itself is one page, not a loop.
        let mut t = b"II*\0\x08\0\0\0".to_vec();
        t.extend([0, 0]); // no entries
        t.extend(8u32.to_le_bytes()); // next IFD: itself
        assert_eq!(tiff_pages(&t), 1);
        assert_eq!(tiff_pages(b"II*\0\xff\xff\xff\xff"), 1);
        assert_eq!(tiff_pages(b"MM"), 1);
        // A chunk length that runs past the end stops the PNG walk.
        let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
        p.extend(u32::MAX.to_be_bytes());
        p.extend(b"IHDR");
        assert_eq!(apng_frames(&p), None);
        // A plain PNG is no animation.
        let still = png_bytes(DynamicImage::new_rgb8(2, 2));
        assert_eq!(apng_frames(&still), None);
    }

    #[test]
    fn oversized_dimensions_are_refused_before_decoding() {
        let limits = DecodeLimits {
            max_side: 64,
            ..DecodeLimits::default()
        };
        let img = DynamicImage::new_rgb8(65, 10);
        let e = decode(&png_bytes(img), &limits).err().unwrap();
        assert!(e.cause.contains("max_side"), "{}", e.cause);
    }
}
