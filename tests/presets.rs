//! Presets hold the platform's rules on the command line: a format the
//! platform refuses is an error naming it, and a main image on a near-white
//! backdrop is warned about, or made pure white with `--background whiten`.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A real photo crop on an off-white (246) studio backdrop, as suppliers send.
fn product_on_off_white(dir: &Path) -> PathBuf {
    let photo = load_rgb(&samples().join("astronaut.png"));
    let product = image::imageops::crop_imm(&photo, 50, 0, 400, 480).to_image();
    // 1000 px: Amazon's 2000 px box is within interpolation's reach (2x).
    let mut canvas = image::RgbImage::from_pixel(1000, 1000, image::Rgb([246, 246, 244]));
    image::imageops::overlay(&mut canvas, &product, 300, 260);
    let path = dir.join("product.png");
    canvas.save(&path).unwrap();
    path
}

fn process(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "process",
        "--json",
        "--scale",
        "1",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(input.to_str().unwrap());
    run(&args)
}

#[test]
fn a_refused_format_fails_with_the_platform_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = product_on_off_white(dir.path());
    let out = dir.path().join("out");
    let refused = process(
        &input,
        &out,
        &["--preset", "amazon-main", "--format", "webp"],
    );
    assert!(!refused.status.success());
    let e = stderr(&refused);
    assert!(e.contains("Amazon does not accept webp"), "{e}");
    assert!(
        files_under(&out).is_empty(),
        "nothing is written after a refusal"
    );
    let allowed = process(
        &input,
        &out,
        &[
            "--preset",
            "amazon-main",
            "--format",
            "webp",
            "--allow-other-formats",
        ],
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(out.join("product.webp").is_file());
}

/// Share of the output's edge ring (2% deep) at exactly 255 in every channel.
fn pure_white_edge(path: &Path) -> f64 {
    let img = load_rgb(path);
    let (w, h) = img.dimensions();
    let d = w.min(h) / 50;
    let ring: Vec<_> = img
        .enumerate_pixels()
        .filter(|(x, y, _)| *x < d || *y < d || *x >= w - d || *y >= h - d)
        .map(|(_, _, p)| p.0 == [255, 255, 255])
        .collect();
    ring.iter().filter(|v| **v).count() as f64 / ring.len() as f64
}

#[test]
fn an_off_white_main_image_is_warned_about_or_whitened() {
    let dir = tempfile::tempdir().unwrap();
    let input = product_on_off_white(dir.path());

    // Fill 1.0 so that the picture's own backdrop reaches the output's edge.
    let plain = dir.path().join("plain");
    let o = process(
        &input,
        &plain,
        &["--preset", "amazon-main", "--fill", "1.0"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("border is not pure white"), "{report}");
    assert!(pure_white_edge(&plain.join("product.jpg")) < 0.5);

    let white = dir.path().join("white");
    let o = process(
        &input,
        &white,
        &[
            "--preset",
            "amazon-main",
            "--fill",
            "1.0",
            "--background",
            "whiten",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains("near-white background set to 255"),
        "{report}"
    );
    let out = white.join("product.jpg");
    assert!(pure_white_edge(&out) > 0.99, "{}", pure_white_edge(&out));
    // The product itself is the same picture as without whitening.
    let crop = |p: &Path| {
        let img = load_rgb(p);
        image::imageops::crop_imm(&img, 700, 600, 600, 800).to_image()
    };
    let same = psnr_rgb(&crop(&out), &crop(&plain.join("product.jpg")));
    assert!(same > 40.0, "product changed by whitening: {same:.1} dB");

    // A photo on a pure white backdrop gets no warning.
    let clean = dir.path().join("clean.png");
    let mut img = load_rgb(&input);
    for p in img.pixels_mut() {
        if p.0 == [246, 246, 244] {
            p.0 = [255, 255, 255];
        }
    }
    img.save(&clean).unwrap();
    let o = process(&clean, &dir.path().join("c"), &["--preset", "amazon-main"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("white"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
