//! Hostile and unusual inputs through the real `process` command: each one
//! either works or fails with the file, the stage and the reason, and nothing
//! panics. Fixtures are generated here from real photos or by real encoders.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn process(dir: &Path, file: &Path) -> std::process::Output {
    run(&[
        "process",
        "--format",
        "png",
        "-o",
        dir.join("out").to_str().unwrap(),
        file.to_str().unwrap(),
    ])
}

/// The run failed cleanly: exit 1, the log line names the file, the stage
/// and a reason containing `reason`, and there is no panic and no output.
fn assert_clean_failure(dir: &Path, file: &Path, stage: &str, reason: &str) {
    let out = process(dir, file);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}: {err}", file.display());
    assert!(!err.contains("panicked"), "{err}");
    let name = file.file_name().unwrap().to_str().unwrap();
    let line = err
        .lines()
        .find(|l| l.contains(name) && l.contains("failed"))
        .unwrap_or_else(|| panic!("no failure line naming {name}: {err}"));
    assert!(line.contains(&format!("{stage} failed")), "{line}");
    assert!(
        line.to_lowercase().contains(reason),
        "expected '{reason}' in: {line}"
    );
    assert!(
        !dir.join("out")
            .join(format!(
                "{}.png",
                file.file_stem().unwrap().to_str().unwrap()
            ))
            .exists()
    );
}

fn assert_works(dir: &Path, file: &Path) -> image::DynamicImage {
    let out = process(dir, file);
    let err = stderr(&out);
    assert!(out.status.success(), "{}: {err}", file.display());
    let stem = file.file_stem().unwrap().to_str().unwrap();
    image::open(dir.join("out").join(format!("{stem}.png"))).unwrap()
}

fn photo_png() -> Vec<u8> {
    fs::read(samples().join("coffee.png")).unwrap()
}

/// A streamed 1-bit PNG of any size, written by the png crate (tiny on disk).
fn huge_png(path: &Path, side: u32) {
    let file = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), side, side);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::One);
    let mut writer = enc.write_header().unwrap().into_stream_writer().unwrap();
    let row = vec![0u8; side.div_ceil(8) as usize];
    for _ in 0..side {
        std::io::Write::write_all(&mut writer, &row).unwrap();
    }
    writer.finish().unwrap();
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    (d, p)
}

#[test]
fn empty_truncated_and_impostor_files_fail_cleanly() {
    let (_d, dir) = tmp();
    let empty = dir.join("empty.png");
    fs::write(&empty, b"").unwrap();
    assert_clean_failure(&dir, &empty, "decode", "empty");

    let cut = dir.join("cut.png");
    let png = photo_png();
    fs::write(&cut, &png[..png.len() / 2]).unwrap();
    assert_clean_failure(&dir, &cut, "decode", "");

    let text = dir.join("notes.jpg");
    fs::write(&text, "shopping list: milk, eggs\n").unwrap();
    assert_clean_failure(&dir, &text, "decode", "not a supported image");
}

#[test]
fn oversized_images_are_refused_from_the_header() {
    let (_d, dir) = tmp();
    // 20000x20000: over the 16384 px side limit.
    let big = dir.join("big.png");
    huge_png(&big, 20000);
    assert!(fs::metadata(&big).unwrap().len() < 5_000_000);
    assert_clean_failure(&dir, &big, "decode", "20000");

    // A decompression bomb: 16000x16000 (256 MP) in a few hundred KB.
    let bomb = dir.join("bomb.png");
    huge_png(&bomb, 16000);
    assert_clean_failure(&dir, &bomb, "decode", "megapixel");
}

#[test]
fn cmyk_jpeg_is_converted_to_srgb() {
    let (_d, dir) = tmp();
    let photo = load_rgb(&samples().join("coffee.png"));
    // Naive CMYK from the photo (Adobe-inverted, as Photoshop writes it).
    let cmyk: Vec<u8> = photo
        .pixels()
        .flat_map(|p| {
            let k = 255 - *p.0.iter().max().unwrap();
            let c = |v: u8| {
                if k == 255 {
                    0
                } else {
                    ((255 - v - k) as u32 * 255 / (255 - k) as u32) as u8
                }
            };
            [255 - c(p[0]), 255 - c(p[1]), 255 - c(p[2]), 255 - k]
        })
        .collect();
    let mut comp = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    comp.set_size(photo.width() as usize, photo.height() as usize);
    comp.set_quality(90.0);
    let mut started = comp.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&cmyk).unwrap();
    let bytes = started.finish().unwrap();
    let path = dir.join("cmyk.jpg");
    fs::write(&path, bytes).unwrap();
    let out = assert_works(&dir, &path).to_rgb8();
    assert_eq!(out.dimensions(), photo.dimensions());
    // Colours survive the CMYK round trip roughly (no inverted or black image).
    let psnr = psnr_rgb(&out, &photo);
    assert!(
        psnr > 15.0,
        "CMYK result is far from the photo: {psnr:.1} dB"
    );
}

#[test]
fn corrupt_exif_does_not_stop_the_image() {
    let (_d, dir) = tmp();
    let photo = load_rgb(&samples().join("chelsea.png"));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&photo)
        .unwrap();
    // Splice an APP1 "Exif" segment of garbage after SOI.
    let mut garbage = b"Exif\0\0MM\0\x2a\xff\xff\xff\xf0".to_vec();
    garbage.extend(std::iter::repeat_n(0xAB, 40));
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE1];
    bytes.extend_from_slice(&((garbage.len() + 2) as u16).to_be_bytes());
    bytes.extend_from_slice(&garbage);
    bytes.extend_from_slice(&jpeg[2..]);
    let path = dir.join("badexif.jpg");
    fs::write(&path, bytes).unwrap();
    let out = assert_works(&dir, &path);
    assert_eq!((out.width(), out.height()), photo.dimensions());
}

#[test]
fn sixteen_bit_grey_with_alpha_keeps_depth_and_alpha() {
    let (_d, dir) = tmp();
    let img = image::ImageBuffer::from_fn(120, 80, |x, y| {
        image::LumaA([(x * 500 + y * 7) as u16, if x < 60 { 65535 } else { 20000 }])
    });
    let path = dir.join("grey16a.png");
    image::DynamicImage::ImageLumaA16(img).save(&path).unwrap();
    let out = assert_works(&dir, &path);
    assert!(out.color().has_alpha(), "{:?}", out.color());
    assert_eq!(
        out.color().bytes_per_pixel() / out.color().channel_count(),
        2,
        "{:?}",
        out.color()
    );
    let rgba = out.to_rgba16();
    assert_eq!(rgba.get_pixel(100, 10)[3], 20000);
    assert_eq!(rgba.get_pixel(10, 10)[3], 65535);
}
