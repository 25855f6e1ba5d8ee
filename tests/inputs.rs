//! HEIC, AVIF and JPEG XL inputs, made at test time by the platform's own
//! encoders (Debian: heif-enc, avifenc, cjxl; `make setup` installs them):
//! each decodes to the right size, upright, and in sRGB.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {name} is not installed (make setup installs it as root)");
    }
    found
}

fn heif_built() -> bool {
    let on = cfg!(feature = "heif");
    if !on {
        eprintln!("SKIPPED: built without the `heif` feature (needs libheif-dev)");
    }
    on
}

fn encode(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 90x60, blue, with a red 30x20 block in the top-left corner.
fn marked(dir: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(90, 60, |x, y| {
        if x < 30 && y < 20 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let path = dir.join("marked.png");
    img.save(&path).unwrap();
    path
}

/// Decodes through the binary (PNG out, no resize) and reads the result.
fn decode(input: &Path, out: &Path) -> image::RgbImage {
    let o = run(&[
        "process",
        "--scale",
        "1",
        "--format",
        "png",
        "-o",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}: {}", input.display(), stderr(&o));
    let stem = input.file_stem().unwrap().to_str().unwrap();
    load_rgb(&out.join(format!("{stem}.png")))
}

/// Where the red block ended up: its bounding box (x0, y0, x1, y1).
fn red_box(img: &image::RgbImage) -> (u32, u32, u32, u32) {
    let mut b = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p[0] > 160 && p[2] < 100 {
            b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
        }
    }
    b
}

fn near(a: (u32, u32, u32, u32), b: (u32, u32, u32, u32)) -> bool {
    // Lossy chroma blurs the block's edge by a pixel or two.
    let d = |p: u32, q: u32| p.abs_diff(q) <= 3;
    d(a.0, b.0) && d(a.1, b.1) && d(a.2, b.2) && d(a.3, b.3)
}

#[test]
fn heic_decodes_at_its_size() {
    if !heif_built() || !tool("heif-enc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let heic = dir.path().join("photo.heic");
    let src = samples().join("coffee.png");
    encode(
        "heif-enc",
        &[
            "-q",
            "90",
            src.to_str().unwrap(),
            "-o",
            heic.to_str().unwrap(),
        ],
    );
    let back = decode(&heic, &dir.path().join("out"));
    let original = load_rgb(&src);
    assert_eq!(back.dimensions(), original.dimensions());
    let psnr = psnr_rgb(&back, &original);
    assert!(psnr > 30.0, "HEIC decode is {psnr:.1} dB from the source");
    let marked_heic = dir.path().join("marked.heic");
    encode(
        "heif-enc",
        &[
            "-q",
            "95",
            marked(dir.path()).to_str().unwrap(),
            "-o",
            marked_heic.to_str().unwrap(),
        ],
    );
    let m = decode(&marked_heic, &dir.path().join("out2"));
    assert!(near(red_box(&m), (0, 0, 30, 20)), "{:?}", red_box(&m));
}

#[test]
fn avif_decodes_upright_with_its_rotation_applied() {
    if !heif_built() || !tool("avifenc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = marked(dir.path());
    let avif = dir.path().join("turned.avif");
    // irot 1: shown turned 90 degrees anti-clockwise.
    encode(
        "avifenc",
        &[
            "-s",
            "8",
            "--irot",
            "1",
            src.to_str().unwrap(),
            avif.to_str().unwrap(),
        ],
    );
    let m = decode(&avif, &dir.path().join("out"));
    assert_eq!(m.dimensions(), (60, 90));
    assert!(near(red_box(&m), (0, 60, 20, 90)), "{:?}", red_box(&m));
}

#[test]
fn jpeg_xl_decodes_upright_from_its_orientation() {
    if !tool("cjxl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = marked(dir.path());
    // A JPEG with EXIF orientation 6 (turn 90 degrees clockwise to view),
    // transcoded by cjxl, which moves the orientation into the codestream.
    let o = run(&[
        "process",
        "--scale",
        "1",
        "--format",
        "jpeg",
        "--quality",
        "95",
        "-o",
        dir.path().join("j").to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let jpeg = dir.path().join("j/marked.jpg");
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, with_orientation(&bytes, 6)).unwrap();
    let jxl = dir.path().join("turned.jxl");
    encode("cjxl", &[jpeg.to_str().unwrap(), jxl.to_str().unwrap()]);
    let m = decode(&jxl, &dir.path().join("out"));
    assert_eq!(m.dimensions(), (60, 90));
    assert!(near(red_box(&m), (40, 0, 60, 30)), "{:?}", red_box(&m));
    // A lossy JPEG XL of a real photo comes back close to it.
    let photo = samples().join("coffee.png");
    let lossy = dir.path().join("coffee.jxl");
    encode(
        "cjxl",
        &["-d", "1", photo.to_str().unwrap(), lossy.to_str().unwrap()],
    );
    let back = decode(&lossy, &dir.path().join("out2"));
    let psnr = psnr_rgb(&back, &load_rgb(&photo));
    assert!(
        psnr > 30.0,
        "JPEG XL decode is {psnr:.1} dB from the source"
    );
}

/// A JPEG with an APP1 EXIF segment holding only Orientation, after SOI.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xff, 0xe1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(&app1);
    out.extend(&jpeg[2..]);
    out
}

/// Grey 128 tagged with a linear-light profile is brighter in sRGB (about 188):
/// the embedded profile was applied, not ignored.
#[test]
fn embedded_profiles_are_converted_to_srgb() {
    let dir = tempfile::tempdir().unwrap();
    let linear = lcms2::Profile::new_rgb(
        &lcms2::CIExyY {
            x: 0.3127,
            y: 0.3290,
            Y: 1.0,
        },
        &lcms2::CIExyYTRIPLE {
            Red: lcms2::CIExyY {
                x: 0.64,
                y: 0.33,
                Y: 1.0,
            },
            Green: lcms2::CIExyY {
                x: 0.30,
                y: 0.60,
                Y: 1.0,
            },
            Blue: lcms2::CIExyY {
                x: 0.15,
                y: 0.06,
                Y: 1.0,
            },
        },
        &[
            &lcms2::ToneCurve::new(1.0),
            &lcms2::ToneCurve::new(1.0),
            &lcms2::ToneCurve::new(1.0),
        ],
    )
    .unwrap();
    let icc_path = dir.path().join("linear.icc");
    std::fs::write(&icc_path, linear.icc().unwrap()).unwrap();
    let grey = dir.path().join("grey.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([128, 128, 128]))
        .save(&grey)
        .unwrap();
    let mut made = Vec::new();
    if heif_built() && tool("avifenc") {
        let f = dir.path().join("grey.avif");
        encode(
            "avifenc",
            &[
                "-l",
                "--icc",
                icc_path.to_str().unwrap(),
                grey.to_str().unwrap(),
                f.to_str().unwrap(),
            ],
        );
        made.push(f);
    }
    if tool("cjxl") {
        // cjxl takes the profile from a PNG's iCCP chunk.
        let tagged = dir.path().join("tagged.png");
        let mut png = Vec::new();
        let mut enc = image::codecs::png::PngEncoder::new(&mut png);
        use image::ImageEncoder;
        enc.set_icc_profile(linear.icc().unwrap()).unwrap();
        enc.write_image(
            &[128u8; 64 * 64 * 3],
            64,
            64,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        std::fs::write(&tagged, png).unwrap();
        let f = dir.path().join("grey.jxl");
        encode(
            "cjxl",
            &["-d", "0", tagged.to_str().unwrap(), f.to_str().unwrap()],
        );
        made.push(f);
    }
    for (i, f) in made.iter().enumerate() {
        let back = decode(f, &dir.path().join(format!("out{i}")));
        let v = back.get_pixel(32, 32)[1];
        assert!(
            (180..=196).contains(&v),
            "{}: grey came back as {v}, not ~188",
            f.display()
        );
    }
}
