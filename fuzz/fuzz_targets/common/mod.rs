//! Shared by the fuzz targets: the decode call every image target makes, the
//! panic policy, and the format magics.
//!
//! Panic policy. `pipeline::decode::decode` runs the codecs under `catch_panic`,
//! so a panic inside a third-party decoder costs one file (it fails with a
//! reason), not the daemon. Such panics are printed once per location and
//! tolerated. Every other panic aborts, which libFuzzer records as a crash: a
//! panic in our own code (even one `catch_panic` would have caught), and a
//! panic anywhere outside `decode` (EXIF rewriting, config parsing) where
//! nothing catches it. `FUZZ_STRICT_PANICS=1` makes every panic a crash.

#![allow(dead_code)]

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Mutex, Once};

use upscaled::pipeline::decode::{self, DecodeLimits, Decoded};
use upscaled::pipeline::metadata::{self, MetadataMode};

thread_local! {
    static IN_DECODE: Cell<bool> = const { Cell::new(false) };
}

/// Installs the panic policy above; call from each target's `init:`.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let strict = std::env::var_os("FUZZ_STRICT_PANICS").is_some();
        // libfuzzer-sys's hook: prints the panic, then aborts.
        let abort_hook = std::panic::take_hook();
        let seen = Mutex::new(HashSet::<String>::new());
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let tolerated = !strict && IN_DECODE.get() && is_third_party(&location);
            if !tolerated {
                abort_hook(info);
                std::process::abort();
            }
            if seen.lock().map(|mut s| s.insert(location.clone())).unwrap_or(false) {
                eprintln!("note: third-party panic inside decode (caught by catch_panic): {info}");
            }
        }));
    });
}

/// Source files of crates from a registry or a git checkout, not ours or std's.
fn is_third_party(location: &str) -> bool {
    location.contains("/registry/src/") || location.contains("/git/checkouts/")
}

/// The daemon's own decode, with the limits a config without `limits:` gets.
pub fn decode(bytes: &[u8]) -> Option<Decoded> {
    IN_DECODE.set(true);
    let result = decode::decode(bytes, &DecodeLimits::default());
    IN_DECODE.set(false);
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        match &result {
            Ok(d) => eprintln!(
                "decoded {} {}x{} {}-bit alpha={} notes={:?} exif={}",
                d.info.format,
                d.raster.width,
                d.raster.height,
                d.info.bit_depth,
                d.raster.has_alpha,
                d.info.notes,
                d.info.exif.as_ref().map_or(0, |e| e.len())
            ),
            Err(e) => eprintln!("refused: {e}"),
        }
    }
    match result {
        Ok(decoded) => {
            check(&decoded);
            Some(decoded)
        }
        Err(e) => {
            // Every refusal names its stage and says something.
            assert!(!e.cause.is_empty(), "empty decode error");
            None
        }
    }
}

/// What the rest of the pipeline relies on in a decoded image.
fn check(d: &Decoded) {
    let r = &d.raster;
    let limits = DecodeLimits::default();
    assert!(r.width > 0 && r.height > 0, "decoded {}x{}", r.width, r.height);
    assert!(r.width <= limits.max_side && r.height <= limits.max_side);
    let channels = if r.has_alpha { 4 } else { 3 };
    assert_eq!(
        r.data.len(),
        r.width as usize * r.height as usize * channels,
        "raster buffer does not match {}x{}x{channels}",
        r.width,
        r.height
    );
    assert_eq!((d.info.width, d.info.height), (r.width, r.height));
    assert!(matches!(d.info.bit_depth, 8 | 16), "bit depth {}", d.info.bit_depth);
}

/// Decodes, then does what the encode stage does with the source's EXIF.
pub fn decode_and_rewrite_exif(bytes: &[u8]) {
    if let Some(decoded) = decode(bytes) {
        rewrite_exif(decoded.info.exif.as_deref());
    }
}

/// Both metadata modes and the tag reader on an untrusted EXIF blob.
pub fn rewrite_exif(exif: Option<&[u8]>) {
    for mode in [MetadataMode::Strip, MetadataMode::Keep] {
        if let Some(out) = metadata::output_exif(exif, mode) {
            // What we write must read back.
            let _ = metadata::ascii_tag(&out, exif::Tag::Artist);
        }
    }
    if let Some(blob) = exif {
        let _ = metadata::ascii_tag(blob, exif::Tag::Copyright);
    }
}

#[derive(Clone, Copy)]
pub enum Format {
    Png,
    Jpeg,
    WebP,
    Gif,
    Tiff,
    Bmp,
}

/// The input with `format`'s signature written over its first bytes, so every
/// run reaches that format's decoder (mutations of the magic are wasted runs).
pub fn with_magic(data: &[u8], format: Format) -> Cow<'_, [u8]> {
    let patches: Vec<(usize, &[u8])> = match format {
        Format::Png => vec![(0, b"\x89PNG\r\n\x1a\n")],
        Format::Jpeg => vec![(0, b"\xff\xd8\xff")],
        Format::WebP => vec![(0, b"RIFF"), (8, b"WEBP")],
        Format::Gif => vec![(0, if data.get(4) == Some(&b'7') { b"GIF87a" } else { b"GIF89a" })],
        Format::Tiff => vec![(0, if data.first() == Some(&b'M') { b"MM\0*" } else { b"II*\0" })],
        Format::Bmp => vec![(0, b"BM")],
    };
    if patches.iter().all(|(at, magic)| data.get(*at..at + magic.len()) == Some(*magic)) {
        return Cow::Borrowed(data);
    }
    let end = patches.iter().map(|(at, m)| at + m.len()).max().unwrap_or(0);
    let mut out = data.to_vec();
    if out.len() < end {
        out.resize(end, 0);
    }
    for (at, magic) in patches {
        out[at..at + magic.len()].copy_from_slice(magic);
    }
    Cow::Owned(out)
}

/// A small picture (not square, so every EXIF orientation changes it).
const W: u32 = 5;
const H: u32 = 3;

fn rgb8_pixels(channels: usize) -> Vec<u8> {
    (0..W * H)
        .flat_map(|i| {
            let v = (i * 17) as u8;
            [v, 255 - v, v / 2, 200][..channels].to_vec()
        })
        .collect()
}

/// A PNG (8 or 16 bits, RGB or RGBA) with `chunks` written before its pixels.
pub fn png_with_chunks(sixteen: bool, alpha: bool, chunks: &[(png::chunk::ChunkType, &[u8])]) -> Vec<u8> {
    let channels = if alpha { 4 } else { 3 };
    let mut pixels = rgb8_pixels(channels);
    if sixteen {
        pixels = pixels.iter().flat_map(|&v| [v, v ^ 0x5a]).collect();
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, W, H);
    encoder.set_color(if alpha { png::ColorType::Rgba } else { png::ColorType::Rgb });
    encoder.set_depth(if sixteen { png::BitDepth::Sixteen } else { png::BitDepth::Eight });
    let mut writer = encoder.write_header().expect("png header");
    for (kind, data) in chunks {
        writer.write_chunk(*kind, data).expect("png chunk");
    }
    writer.write_image_data(&pixels).expect("png pixels");
    writer.finish().expect("png end");
    out
}

/// A baseline RGB JPEG of the small picture.
pub fn rgb_jpeg() -> &'static [u8] {
    static JPEG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    JPEG.get_or_init(|| {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode(&rgb8_pixels(3), W, H, image::ExtendedColorType::Rgb8)
            .expect("jpeg");
        out
    })
}

/// A CMYK JPEG of the small picture, with libjpeg's Adobe marker (inverted
/// ink, as Photoshop writes it) or without it (plain ink).
pub fn cmyk_jpeg(adobe: bool) -> &'static [u8] {
    static JPEGS: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    &JPEGS.get_or_init(|| [make_cmyk_jpeg(false), make_cmyk_jpeg(true)])[adobe as usize]
}

fn make_cmyk_jpeg(adobe: bool) -> Vec<u8> {
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    compress.set_size(W as usize, H as usize);
    compress.set_quality(90.0);
    let mut started = compress.start_compress(Vec::new()).expect("cmyk jpeg");
    started.write_scanlines(&rgb8_pixels(4)).expect("cmyk rows");
    let jpeg = started.finish().expect("cmyk end");
    if adobe {
        jpeg
    } else {
        without_segment(&jpeg, 0xee)
    }
}

/// The JPEG with every marker segment of `kind` (before the frame) removed.
fn without_segment(jpeg: &[u8], kind: u8) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xff && (0xe0..=0xef).contains(&jpeg[at + 1]) {
        let len = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
        if jpeg[at + 1] != kind {
            out.extend_from_slice(&jpeg[at..at + 2 + len]);
        }
        at += 2 + len;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// The JPEG with APPn segments inserted right after its start marker; each
/// payload is cut to what one segment holds.
pub fn jpeg_with_segments(jpeg: &[u8], segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for (marker, payload) in segments {
        let payload = &payload[..payload.len().min(65533)];
        out.extend_from_slice(&[0xff, *marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}
