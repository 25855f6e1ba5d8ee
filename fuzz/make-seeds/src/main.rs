//! Writes the seed corpora under fuzz/seeds/<target>/: small valid files of
//! every kind each target takes, so the fuzzer starts deep inside each decoder.
//!
//!     cd fuzz/make-seeds && cargo run --release
//!
//! The output is committed; run this again only to change the seeds.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, ImageEncoder, Rgb, Rgba};

const W: u32 = 24;
const H: u32 = 16;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../seeds");
    let mut seeds = Seeds { root, count: 0 };
    let p3 = p3_profile();
    let adobe = adobe_rgb_profile();
    let cmyk = cmyk_profile();
    let exif = |orientation| exif_block(orientation, false);

    // PNG: colour types, depths, palette with transparency, metadata, APNG.
    seeds.add("decode_png", "rgb8.png", &encode_png(&photo_rgb8(), None, None));
    seeds.add("decode_png", "rgba16.png", &encode_png(&photo_rgba16(), None, None));
    seeds.add("decode_png", "gray8.png", &encode_png(&photo_rgb8().grayscale(), None, None));
    seeds.add("decode_png", "graya16.png", &encode_png(&DynamicImage::ImageLumaA16(photo_rgba16().to_luma_alpha16()), None, None));
    seeds.add("decode_png", "palette-trns.png", &palette_png());
    seeds.add("decode_png", "p3-exif6.png", &encode_png(&photo_rgb8(), Some(&p3), Some(exif(6))));
    seeds.add("decode_png", "apng-2-frames.png", &apng());

    // JPEG: baseline, grey, progressive and 4:2:0 (mozjpeg), EXIF, ICC.
    seeds.add("decode_jpeg", "rgb.jpg", &encode_jpeg(&photo_rgb8(), None, None));
    seeds.add("decode_jpeg", "gray.jpg", &encode_jpeg(&photo_rgb8().grayscale(), None, None));
    seeds.add("decode_jpeg", "exif8-adobergb.jpg", &encode_jpeg(&photo_rgb8(), Some(&adobe), Some(exif(8))));
    seeds.add("decode_jpeg", "progressive-420.jpg", &mozjpeg_rgb(true));
    seeds.add("decode_jpeg", "baseline-420.jpg", &mozjpeg_rgb(false));

    // WebP: lossless (image), lossy with and without alpha (libwebp), metadata.
    seeds.add("decode_webp", "lossless.webp", &encode_webp(&photo_rgb8(), None, None));
    seeds.add("decode_webp", "lossless-rgba-p3-exif3.webp", &encode_webp(&photo_rgba16().to_rgba8().into(), Some(&p3), Some(exif(3))));
    let rgb = photo_rgb8().to_rgb8();
    seeds.add("decode_webp", "lossy.webp", &webp::Encoder::from_rgb(&rgb, W, H).encode(60.0));
    let rgba = photo_rgba16().to_rgba8();
    seeds.add("decode_webp", "lossy-alpha.webp", &webp::Encoder::from_rgba(&rgba, W, H).encode(60.0));

    // GIF: one frame, two frames with transparency.
    seeds.add("decode_gif", "one-frame.gif", &gif(1));
    seeds.add("decode_gif", "two-frames.gif", &gif(2));

    // TIFF: 8 and 16 bit, grey, compressions, ICC, two pages.
    seeds.add("decode_tiff", "rgb8.tif", &encode_tiff(&photo_rgb8(), None));
    seeds.add("decode_tiff", "rgba16-p3.tif", &encode_tiff(&photo_rgba16(), Some(&p3)));
    seeds.add("decode_tiff", "gray8.tif", &encode_tiff(&photo_rgb8().grayscale(), None));
    for (name, compression) in [
        ("lzw.tif", tiff::encoder::Compression::Lzw),
        ("deflate.tif", tiff::encoder::Compression::Deflate(tiff::encoder::DeflateLevel::Fast)),
        ("packbits.tif", tiff::encoder::Compression::Packbits),
    ] {
        seeds.add("decode_tiff", name, &tiff_pages(compression, 1));
    }
    seeds.add("decode_tiff", "two-pages.tif", &tiff_pages(tiff::encoder::Compression::Uncompressed, 2));

    // BMP: 24 bit, 32 bit with alpha, 8-bit grey (a palette).
    seeds.add("decode_bmp", "rgb24.bmp", &encode(&photo_rgb8(), image::ImageFormat::Bmp));
    seeds.add("decode_bmp", "rgba32.bmp", &encode(&photo_rgba16().to_rgba8().into(), image::ImageFormat::Bmp));
    seeds.add("decode_bmp", "gray8.bmp", &encode(&photo_rgb8().grayscale(), image::ImageFormat::Bmp));

    // CMYK and YCCK JPEGs: Adobe-inverted or plain ink, with a CMYK profile.
    seeds.add("decode_cmyk_jpeg", "cmyk-adobe.jpg", &cmyk_jpeg(mozjpeg::ColorSpace::JCS_CMYK, true, None));
    seeds.add("decode_cmyk_jpeg", "cmyk-plain.jpg", &cmyk_jpeg(mozjpeg::ColorSpace::JCS_CMYK, false, None));
    seeds.add("decode_cmyk_jpeg", "cmyk-adobe-icc.jpg", &cmyk_jpeg(mozjpeg::ColorSpace::JCS_CMYK, true, Some(&cmyk)));
    seeds.add("decode_cmyk_jpeg", "ycck-adobe-icc.jpg", &cmyk_jpeg(mozjpeg::ColorSpace::JCS_YCCK, true, Some(&cmyk)));

    // Sniffing: one small file of each format, the refused modern ones, text.
    seeds.add("decode_sniff", "rgb8.png", &encode_png(&photo_rgb8().grayscale(), None, None));
    seeds.add("decode_sniff", "gray.jpg", &encode_jpeg(&photo_rgb8().grayscale(), None, None));
    seeds.add("decode_sniff", "lossless.webp", &encode_webp(&photo_rgb8(), None, None));
    seeds.add("decode_sniff", "one-frame.gif", &gif(1));
    seeds.add("decode_sniff", "gray8.tif", &encode_tiff(&photo_rgb8().grayscale(), None));
    seeds.add("decode_sniff", "gray8.bmp", &encode(&photo_rgb8().grayscale(), image::ImageFormat::Bmp));
    seeds.add("decode_sniff", "iphone.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x08free");
    seeds.add("decode_sniff", "photo.avif", b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf\0\0\0\x08free");
    seeds.add("decode_sniff", "codestream.jxl", b"\xff\x0a\xfa\x7f\x01\x90\x08\x06\x01\x00\x48\x00\x4b");
    seeds.add("decode_sniff", "container.jxl", b"\0\0\0\x0cJXL \r\n\x87\n\0\0\0\x14ftypjxl \0\0\0\0jxl ");
    seeds.add("decode_sniff", "note.txt", b"hello, this is a note, not a photo\n");

    // EXIF: the first byte picks the container (even: JPEG APP1, odd: PNG eXIf).
    for orientation in 1..=8u16 {
        let choice = if orientation % 2 == 0 { 0 } else { 1 };
        seeds.add("exif", &format!("orientation-{orientation}.bin"), &prefixed(choice, &exif(orientation)));
    }
    seeds.add("exif", "big-endian-full.bin", &prefixed(0, &exif_block(6, true)));
    seeds.add("exif", "png-full.bin", &prefixed(3, &exif_block(5, true)));

    // ICC: the first byte picks the picture (0-3: PNG 8/16 bit, RGB/RGBA;
    // 4: CMYK JPEG, plain ink; 5: CMYK JPEG, Adobe-inverted).
    seeds.add("icc", "p3-rgb8.bin", &prefixed(0, &p3));
    seeds.add("icc", "p3-rgba16.bin", &prefixed(3, &p3));
    seeds.add("icc", "adobergb-rgb16.bin", &prefixed(1, &adobe));
    seeds.add("icc", "srgb-rgba8.bin", &prefixed(2, &lcms2::Profile::new_srgb().icc().unwrap()));
    seeds.add("icc", "gray-profile-on-rgb.bin", &prefixed(0, &gray_profile()));
    seeds.add("icc", "cmyk-plain.bin", &prefixed(4, &cmyk));
    seeds.add("icc", "cmyk-adobe.bin", &prefixed(5, &cmyk));
    seeds.add("icc", "p3-on-cmyk.bin", &prefixed(5, &p3));

    // Config: the example, and small files that reach every section.
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    seeds.add("config", "example.yaml", &std::fs::read(config_dir.join("example.yaml")).unwrap());
    for (name, text) in CONFIGS {
        seeds.add("config", name, text.as_bytes());
    }
    println!("{} seeds written under {}", seeds.count, seeds.root.display());
}

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn add(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(bytes.len() < 20 * 1024, "{target}/{name} is {} bytes", bytes.len());
        std::fs::write(dir.join(name), bytes).unwrap();
        self.count += 1;
    }
}

fn prefixed(first: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend_from_slice(rest);
    out
}

/// A smooth picture with some edges, so every codec has something to code.
fn photo_rgb8() -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(W, H, |x, y| {
        let edge = if (x / 6 + y / 4) % 2 == 0 { 40 } else { 0 };
        Rgb([(x * 10) as u8 + edge, (y * 15) as u8, 200 - (x * 4 + y * 3) as u8])
    }))
}

fn photo_rgba16() -> DynamicImage {
    DynamicImage::ImageRgba16(ImageBuffer::from_fn(W, H, |x, y| {
        Rgba([x as u16 * 2700, y as u16 * 4000, 50000 - x as u16 * 900, 65535 - (x + y) as u16 * 1500])
    }))
}

fn with_metadata<E: ImageEncoder>(mut encoder: E, icc: Option<&[u8]>, exif: Option<Vec<u8>>) -> E {
    if let Some(icc) = icc {
        encoder.set_icc_profile(icc.to_vec()).unwrap();
    }
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder
}

fn write_with<E: ImageEncoder>(encoder: E, image: &DynamicImage) {
    encoder
        .write_image(image.as_bytes(), image.width(), image.height(), image.color().into())
        .unwrap();
}

fn encode_png(image: &DynamicImage, icc: Option<&[u8]>, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    write_with(with_metadata(image::codecs::png::PngEncoder::new(&mut out), icc, exif), image);
    out
}

fn encode_jpeg(image: &DynamicImage, icc: Option<&[u8]>, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    write_with(with_metadata(encoder, icc, exif), image);
    out
}

fn encode_webp(image: &DynamicImage, icc: Option<&[u8]>, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
    write_with(with_metadata(encoder, icc, exif), image);
    out
}

fn encode_tiff(image: &DynamicImage, icc: Option<&[u8]>) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    write_with(with_metadata(image::codecs::tiff::TiffEncoder::new(&mut out), icc, None), image);
    out.into_inner()
}

fn encode(image: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn tiff_pages(compression: tiff::encoder::Compression, pages: u32) -> Vec<u8> {
    let rgb = photo_rgb8().to_rgb8();
    let mut out = Cursor::new(Vec::new());
    let mut encoder = tiff::encoder::TiffEncoder::new(&mut out).unwrap().with_compression(compression);
    for _ in 0..pages {
        encoder.write_image::<tiff::encoder::colortype::RGB8>(W, H, &rgb).unwrap();
    }
    out.into_inner()
}

fn palette_png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, W, H);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Four);
    let palette: Vec<u8> = (0..16u8).flat_map(|i| [i * 16, 255 - i * 16, i * 8]).collect();
    encoder.set_palette(palette);
    encoder.set_trns(vec![0u8, 128, 255]);
    let mut writer = encoder.write_header().unwrap();
    let rows: Vec<u8> = (0..H)
        .flat_map(|y| (0..W / 2).map(move |x| ((x + y) % 16) as u8 * 16 | ((x * 3 + y) % 16) as u8))
        .collect();
    writer.write_image_data(&rows).unwrap();
    writer.finish().unwrap();
    out
}

fn apng() -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, W, H);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_animated(2, 0).unwrap();
    let mut writer = encoder.write_header().unwrap();
    let frame = photo_rgb8().to_rgb8();
    writer.write_image_data(&frame).unwrap();
    let inverted: Vec<u8> = frame.iter().map(|v| 255 - v).collect();
    writer.write_image_data(&inverted).unwrap();
    writer.finish().unwrap();
    out
}

fn gif(frames: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        for i in 0..frames {
            let mut rgba = photo_rgb8().to_rgba8();
            rgba.get_pixel_mut(i, i).0[3] = 0;
            encoder.encode_frame(image::Frame::new(rgba)).unwrap();
        }
    }
    out
}

fn mozjpeg_rgb(progressive: bool) -> Vec<u8> {
    let rgb = photo_rgb8().to_rgb8();
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    compress.set_size(W as usize, H as usize);
    compress.set_quality(75.0);
    if progressive {
        compress.set_progressive_mode();
    }
    compress.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
    compress.set_optimize_coding(true);
    let mut started = compress.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&rgb).unwrap();
    started.finish().unwrap()
}

fn cmyk_jpeg(space: mozjpeg::ColorSpace, adobe: bool, icc: Option<&[u8]>) -> Vec<u8> {
    let ink: Vec<u8> = photo_rgb8()
        .to_rgb8()
        .pixels()
        .flat_map(|p| {
            let k = 255 - p.0.iter().max().unwrap();
            let c = |v: u8| 255 - v - k;
            // libjpeg writes the Adobe marker, which says the ink is inverted.
            let store = |v: u8| if adobe { 255 - v } else { v };
            [store(c(p[0])), store(c(p[1])), store(c(p[2])), store(k)]
        })
        .collect();
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    compress.set_color_space(space);
    compress.set_size(W as usize, H as usize);
    compress.set_quality(80.0);
    let mut started = compress.start_compress(Vec::new()).unwrap();
    if let Some(icc) = icc {
        let mut app2 = b"ICC_PROFILE\0\x01\x01".to_vec();
        app2.extend_from_slice(icc);
        started.write_marker(mozjpeg::Marker::APP(2), &app2);
    }
    started.write_scanlines(&ink).unwrap();
    let jpeg = started.finish().unwrap();
    if adobe { jpeg } else { without_app14(&jpeg) }
}

/// Drops the Adobe APP14 segment libjpeg writes for CMYK.
fn without_app14(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while jpeg[at] == 0xff && (0xe0..=0xef).contains(&jpeg[at + 1]) {
        let len = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
        if jpeg[at + 1] != 0xee {
            out.extend_from_slice(&jpeg[at..at + 2 + len]);
        }
        at += 2 + len;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// An EXIF block (TIFF structure) with an orientation, authorship and, when
/// `full`, the sub-directories and values a camera writes.
fn exif_block(orientation: u16, full: bool) -> Vec<u8> {
    use exif::{Field, In, Rational, Tag, Value};
    let field = |tag, value| Field { tag, ifd_num: In::PRIMARY, value };
    let mut fields = vec![
        field(Tag::Orientation, Value::Short(vec![orientation])),
        field(Tag::Artist, Value::Ascii(vec![b"Ada Photographer".to_vec()])),
        field(Tag::Copyright, Value::Ascii(vec![b"(c) Ada".to_vec()])),
    ];
    if full {
        fields.extend([
            field(Tag::Make, Value::Ascii(vec![b"Camera Co".to_vec()])),
            field(Tag::BodySerialNumber, Value::Ascii(vec![b"SN42".to_vec()])),
            field(Tag::XResolution, Value::Rational(vec![Rational { num: 72, denom: 1 }])),
            field(Tag::ExposureTime, Value::Rational(vec![Rational { num: 1, denom: 250 }])),
            field(Tag::PixelXDimension, Value::Long(vec![W])),
            field(Tag::GPSLatitude, Value::Rational(vec![Rational { num: 52, denom: 1 }; 3])),
            field(Tag::MakerNote, Value::Undefined(vec![1, 2, 3, 4, 5, 6, 7, 8], 0)),
        ]);
    }
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut out = Cursor::new(Vec::new());
    writer.write(&mut out, !full).unwrap();
    out.into_inner()
}

fn p3_profile() -> Vec<u8> {
    let d65 = lcms2::CIExyY { x: 0.3127, y: 0.3290, Y: 1.0 };
    let primaries = lcms2::CIExyYTRIPLE {
        Red: lcms2::CIExyY { x: 0.680, y: 0.320, Y: 1.0 },
        Green: lcms2::CIExyY { x: 0.265, y: 0.690, Y: 1.0 },
        Blue: lcms2::CIExyY { x: 0.150, y: 0.060, Y: 1.0 },
    };
    // The sRGB transfer curve (parametric type 4).
    let curve = lcms2::ToneCurve::new_parametric(4, &[2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045]).unwrap();
    lcms2::Profile::new_rgb(&d65, &primaries, &[&curve, &curve, &curve]).unwrap().icc().unwrap()
}

fn adobe_rgb_profile() -> Vec<u8> {
    let d65 = lcms2::CIExyY { x: 0.3127, y: 0.3290, Y: 1.0 };
    let primaries = lcms2::CIExyYTRIPLE {
        Red: lcms2::CIExyY { x: 0.64, y: 0.33, Y: 1.0 },
        Green: lcms2::CIExyY { x: 0.21, y: 0.71, Y: 1.0 },
        Blue: lcms2::CIExyY { x: 0.15, y: 0.06, Y: 1.0 },
    };
    let curve = lcms2::ToneCurve::new(2.2);
    let mut profile = lcms2::Profile::new_rgb(&d65, &primaries, &[&curve, &curve, &curve]).unwrap();
    // A version 2 profile, as many older files carry.
    profile.set_version(2.1);
    profile.icc().unwrap()
}

fn gray_profile() -> Vec<u8> {
    let d65 = lcms2::CIExyY { x: 0.3127, y: 0.3290, Y: 1.0 };
    lcms2::Profile::new_gray(&d65, &lcms2::ToneCurve::new(1.8)).unwrap().icc().unwrap()
}

/// A CMYK output profile whose A2B0 is a 2-point CLUT to Lab (between identity
/// curves): crude, but a
/// real CMYK profile lcms2 accepts as a source.
fn cmyk_profile() -> Vec<u8> {
    use lcms2_sys as ffi;
    use std::ptr::null_mut;
    let mut table = Vec::new();
    for c in 0..2u32 {
        for m in 0..2u32 {
            for y in 0..2u32 {
                for k in 0..2u32 {
                    let ink = (c + m + y) as f64 / 3.0;
                    let lightness = (1.0 - k as f64) * (1.0 - 0.7 * ink);
                    let a = 128.0 + 60.0 * (m as f64 - c as f64 * 0.5);
                    let b = 128.0 + 60.0 * (y as f64 - c as f64 * 0.5);
                    table.push((lightness * 65535.0) as u16);
                    table.push((a * 257.0) as u16);
                    table.push((b * 257.0) as u16);
                }
            }
        }
    }
    // SAFETY: plain lcms2 calls on objects created here; each is checked for
    // null and freed once.
    unsafe {
        let profile = ffi::cmsCreateProfilePlaceholder(null_mut());
        assert!(!profile.is_null());
        ffi::cmsSetProfileVersion(profile, 4.3);
        ffi::cmsSetDeviceClass(profile, ffi::ProfileClassSignature::OutputClass);
        ffi::cmsSetColorSpace(profile, ffi::ColorSpaceSignature::CmykData);
        ffi::cmsSetPCS(profile, ffi::ColorSpaceSignature::LabData);
        let pipeline = ffi::cmsPipelineAlloc(null_mut(), 4, 3);
        let clut = ffi::cmsStageAllocCLut16bit(null_mut(), 2, 4, 3, table.as_ptr());
        assert!(!pipeline.is_null() && !clut.is_null());
        // lutAtoBType wants curves around the CLUT: identity ones.
        let a_curves = ffi::cmsStageAllocToneCurves(null_mut(), 4, std::ptr::null());
        let b_curves = ffi::cmsStageAllocToneCurves(null_mut(), 3, std::ptr::null());
        for stage in [a_curves, clut, b_curves] {
            assert!(!stage.is_null());
            assert!(ffi::cmsPipelineInsertStage(pipeline, ffi::StageLoc::AT_END, stage) != 0);
        }
        assert!(ffi::cmsWriteTag(profile, ffi::TagSignature::AToB0Tag, pipeline.cast()) != 0);
        let mlu = ffi::cmsMLUalloc(null_mut(), 1);
        ffi::cmsMLUsetASCII(mlu, c"en".as_ptr(), c"US".as_ptr(), c"Seed CMYK".as_ptr());
        assert!(ffi::cmsWriteTag(profile, ffi::TagSignature::ProfileDescriptionTag, mlu.cast()) != 0);
        let mut len = 0u32;
        assert!(ffi::cmsSaveProfileToMem(profile, null_mut(), &mut len) != 0);
        let mut out = vec![0u8; len as usize];
        assert!(ffi::cmsSaveProfileToMem(profile, out.as_mut_ptr().cast(), &mut len) != 0);
        ffi::cmsMLUfree(mlu);
        ffi::cmsPipelineFree(pipeline);
        ffi::cmsCloseProfile(profile);
        // lcms2 reads it back as a CMYK profile.
        let check = lcms2::Profile::new_icc(&out).unwrap();
        assert_eq!(check.color_space(), lcms2::ColorSpaceSignature::CmykData);
        out
    }
}

const CONFIGS: &[(&str, &str)] = &[
    ("minimal.yaml", "folders:\n  - path: in\n    output: out\n    preset: shopify\n"),
    (
        "everything.yaml",
        r##"models: ../models
threads: 3
log_format: json
metrics: 127.0.0.1:9464
limits:
  max_side: 8000
  max_megapixels: 40.5
  max_alloc_mib: 256
  max_file_mib: 64
  seconds_per_file: 120
routes:
  photo:
    4: { fast: spanx4_ch48, balanced: spanx4_ch48, best: spanx4_ch52 }
folders:
  - path: /srv/drop/a
    output: /srv/out/a
    recursive: false
    include: ["*.jpg", "*.png"]
    exclude: ["tmp/**"]
    width: 1200
    height: 800
    fit: pad
    background: "#f0f0f0"
    fill: 0.85
    formats: [jpeg, png, webp, avif]
    quality: 90
    max_bytes: 500000
    smart: { scale: auto, quality: best }
    trim: true
    metadata: keep
    name: "{stem}-{width}x{height}.{ext}"
    on_success: delete
    done: /srv/done/a
    failed: /srv/failed/a
    settle: 500ms
    watch: poll
    poll_interval: 30s
    retention: 7d
  - path: /srv/drop/b
    output: /srv/out/b
    smart: { scale: 2, model: spanx2_ch48 }
    targets:
      - { preset: amazon }
      - { name: thumb, width: 200, fit: cover, formats: [webp] }
    on_success: keep
"##,
    ),
    (
        "mistakes.yaml",
        "folder:\n  - paht: in\n    outptu: out\n    fit: squash\n    quality: 300\n    settle: soon\nlimits: { max_side: -1 }\n",
    ),
    ("anchors.yaml", "base: &b { output: out, preset: etsy }\nfolders:\n  - { <<: *b, path: a }\n  - { <<: *b, path: b }\n"),
    ("empty.yaml", ""),
];
