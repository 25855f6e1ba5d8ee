//! Decoding of the formats the `image` crate does not read: JPEG XL (jxl-oxide,
//! pure Rust), HEIC/HEIF (the system libheif, behind the `heif` feature) and
//! AVIF (libavif in `avif_aom` with the `aom` feature, else libheif). Each honours its orientation and colour profile like the others:
//! pixels come out upright and in sRGB.

use crate::error::{Stage, StageError};
use crate::raster::Raster;

use super::decode::{
    DecodeLimits, Decoded, Modern, SourceInfo, check_dimensions, convert_rgb_profile_to_srgb,
};

fn failed(what: &str, e: impl std::fmt::Display) -> StageError {
    StageError::new(Stage::Decode, format!("{what}: {e}"))
}

pub fn decode(bytes: &[u8], kind: Modern, limits: &DecodeLimits) -> Result<Decoded, StageError> {
    match kind {
        Modern::JpegXl => decode_jxl(bytes, limits),
        #[cfg(feature = "aom")]
        Modern::Avif => super::avif_aom::decode(bytes, limits),
        #[cfg(not(feature = "aom"))]
        Modern::Avif => decode_heif(bytes, kind, limits),
        Modern::Heif => decode_heif(bytes, kind, limits),
    }
}

/// Samples in 0..=1 (any channel layout jxl-oxide renders) to a Raster.
fn raster_from_unit(width: u32, height: u32, channels: usize, samples: &[f32]) -> Raster {
    let alpha = channels == 2 || channels == 4;
    let mut raster = Raster::new(width, height, alpha);
    let q = |v: f32| (v.clamp(0.0, 1.0) * 65535.0).round() as u16;
    let out_channels = raster.channels();
    for (dst, src) in raster
        .data
        .chunks_exact_mut(out_channels)
        .zip(samples.chunks_exact(channels))
    {
        match channels {
            1 | 2 => dst[..3].fill(q(src[0])),
            _ => {
                for c in 0..3 {
                    dst[c] = q(src[c]);
                }
            }
        }
        if alpha {
            dst[3] = q(src[channels - 1]);
        }
    }
    raster
}

fn decode_jxl(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, StageError> {
    let budget = (limits.max_alloc_mib * 1024 * 1024) as usize;
    let image = jxl_oxide::JxlImage::builder()
        .alloc_tracker(jxl_oxide::AllocTracker::with_limit(budget))
        .read(std::io::Cursor::new(bytes))
        .map_err(|e| failed("JPEG XL header", e))?;
    // Width and height with the orientation applied, checked before any pixel.
    let (width, height) = (image.width(), image.height());
    check_dimensions(width, height, limits)?;
    let mut info = SourceInfo {
        format: "jpeg-xl",
        width,
        height,
        bit_depth: if image.image_header().metadata.bit_depth.bits_per_sample() > 8 {
            16
        } else {
            8
        },
        ..SourceInfo::default()
    };
    if matches!(
        image.pixel_format(),
        jxl_oxide::PixelFormat::Cmyk | jxl_oxide::PixelFormat::Cmyka
    ) {
        return Err(StageError::new(
            Stage::Decode,
            "CMYK JPEG XL is not supported; export it as RGB",
        ));
    }
    if image.num_loaded_keyframes() > 1 {
        info.notes.push(format!(
            "animated JPEG XL ({} frames): only the first frame is used",
            image.num_loaded_keyframes()
        ));
    }
    let render = image
        .render_frame(0)
        .map_err(|e| failed("JPEG XL frame", e))?;
    let mut stream = render.stream();
    let channels = stream.channels() as usize;
    let mut samples = vec![0f32; width as usize * height as usize * channels];
    stream.write_to_buffer(&mut samples);
    let mut raster = raster_from_unit(width, height, channels, &samples);
    // jxl-oxide renders in the image's own colour space; lcms2 takes it to sRGB.
    let icc = image.rendered_icc();
    if !icc.is_empty() {
        convert_rgb_profile_to_srgb(&mut raster, &icc, &mut info);
    }
    Ok(Decoded { raster, info })
}

#[cfg(not(feature = "heif"))]
fn decode_heif(_: &[u8], kind: Modern, _: &DecodeLimits) -> Result<Decoded, StageError> {
    Err(StageError::new(
        Stage::Decode,
        format!(
            "{} needs the `heif` feature, which this build was made without (it needs \
             libheif: Debian's libheif-dev)",
            kind.name()
        ),
    ))
}

#[cfg(feature = "heif")]
fn decode_heif(bytes: &[u8], kind: Modern, limits: &DecodeLimits) -> Result<Decoded, StageError> {
    use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

    let name = kind.name();
    let ctx = HeifContext::read_from_bytes(bytes).map_err(|e| failed(name, e))?;
    let handle = ctx
        .primary_image_handle()
        .map_err(|e| failed(&format!("{name} primary image"), e))?;
    // libheif applies the file's rotation and mirror boxes (irot/imir), which
    // HEIF makes authoritative over any EXIF orientation; these sizes are upright.
    let (width, height) = (handle.width(), handle.height());
    check_dimensions(width, height, limits)?;
    let deep = handle.luma_bits_per_pixel() > 8;
    let alpha = handle.has_alpha_channel();
    let mut info = SourceInfo {
        format: if kind == Modern::Avif { "avif" } else { "heic" },
        width,
        height,
        bit_depth: if deep { 16 } else { 8 },
        ..SourceInfo::default()
    };
    let images = ctx.number_of_top_level_images();
    if images > 1 {
        info.notes.push(format!(
            "{name} holds {images} images: only the primary one is used"
        ));
    }
    let chroma = match (deep, alpha) {
        (false, false) => RgbChroma::Rgb,
        (false, true) => RgbChroma::Rgba,
        (true, false) => RgbChroma::HdrRgbLe,
        (true, true) => RgbChroma::HdrRgbaLe,
    };
    let image = LibHeif::new()
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(|e| failed(&format!("{name} pixels"), e))?;
    let plane = image
        .planes()
        .interleaved
        .ok_or_else(|| StageError::new(Stage::Decode, format!("{name}: no RGB plane")))?;
    let (pw, ph) = (plane.width, plane.height);
    if (pw, ph) != (width, height) {
        check_dimensions(pw, ph, limits)?;
    }
    let channels = if alpha { 4 } else { 3 };
    let mut raster = Raster::new(pw, ph, alpha);
    let max = ((1u32 << plane.bits_per_pixel.clamp(1, 16)) - 1) as f32;
    for y in 0..ph as usize {
        let row = &plane.data[y * plane.stride..];
        let out = &mut raster.data[y * pw as usize * channels..(y + 1) * pw as usize * channels];
        if deep {
            for (i, v) in out.iter_mut().enumerate() {
                let s = u16::from_le_bytes([row[2 * i], row[2 * i + 1]]) as f32;
                *v = (s / max * 65535.0).round().min(65535.0) as u16;
            }
        } else {
            for (i, v) in out.iter_mut().enumerate() {
                *v = row[i] as u16 * 257;
            }
        }
    }
    if let Some(profile) = handle.color_profile_raw() {
        convert_rgb_profile_to_srgb(&mut raster, &profile.data, &mut info);
    }
    // EXIF items start with the offset of the TIFF header (ISO/IEC 23008-12 A.2).
    let mut ids = [0u32; 1];
    if handle.metadata_block_ids(&mut ids, b"Exif") == 1
        && let Ok(block) = handle.metadata(ids[0])
        && block.len() > 4
    {
        let skip = u32::from_be_bytes([block[0], block[1], block[2], block[3]]) as usize;
        info.exif = block.get(4 + skip..).map(<[u8]>::to_vec);
    }
    info.width = raster.width;
    info.height = raster.height;
    Ok(Decoded { raster, info })
}
