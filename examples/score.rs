//! Scores upscaled images against their high-resolution originals.
//!
//! `cargo run --release --example score -- [--shave N] REF TEST [REF TEST ...]`
//! prints one JSON line per pair: `{"psnr_y": .., "ssimulacra2": ..}`, or
//! `{"error": ".."}` for a pair that cannot be scored (the exit status is then 1).
//!
//! PSNR-Y follows the super-resolution papers (BasicSR): BT.601 luma
//! `Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255` on 0..255 values, kept
//! as float, and `10 log10(255² / MSE)`. SSIMULACRA2 (perceptual; 100 is
//! identical, 90 visually lossless, 50 medium, below 0 poor) compares the RGB
//! images. `--shave N` drops N pixels at every border of both images first, as
//! the papers do (the scale factor). Images must have the same size.

use image::RgbImage;
use ssimulacra2::{ColorPrimaries, Rgb, TransferCharacteristic, compute_frame_ssimulacra2};
use std::process::ExitCode;

fn load(path: &str, shave: u32) -> Result<RgbImage, String> {
    let img = image::open(path)
        .map_err(|e| format!("{path}: {e}"))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    if w <= 2 * shave + 8 || h <= 2 * shave + 8 {
        return Err(format!("{path}: {w}x{h} is too small to shave {shave}"));
    }
    Ok(image::imageops::crop_imm(&img, shave, shave, w - 2 * shave, h - 2 * shave).to_image())
}

fn luma(p: &image::Rgb<u8>) -> f64 {
    let [r, g, b] = p.0.map(f64::from);
    16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
}

fn psnr_y(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: f64 = a
        .pixels()
        .zip(b.pixels())
        .map(|(p, q)| (luma(p) - luma(q)).powi(2))
        .sum();
    let mse = sum / f64::from(a.width() * a.height());
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

fn ssimulacra2(a: &RgbImage, b: &RgbImage) -> Result<f64, String> {
    let frame = |img: &RgbImage| {
        let data = img
            .pixels()
            .map(|p| p.0.map(|c| f32::from(c) / 255.0))
            .collect();
        Rgb::new(
            data,
            img.width() as usize,
            img.height() as usize,
            TransferCharacteristic::SRGB,
            ColorPrimaries::BT709,
        )
    };
    let (fa, fb) = (frame(a), frame(b));
    compute_frame_ssimulacra2(
        fa.map_err(|e| e.to_string())?,
        fb.map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())
}

fn score(reference: &str, test: &str, shave: u32) -> Result<String, String> {
    let (a, b) = (load(reference, shave)?, load(test, shave)?);
    if a.dimensions() != b.dimensions() {
        return Err(format!(
            "{test} is {:?}, {reference} is {:?} (after shaving {shave})",
            b.dimensions(),
            a.dimensions()
        ));
    }
    let psnr = psnr_y(&a, &b);
    // JSON has no infinity: identical images report 100 dB.
    let psnr = if psnr.is_finite() { psnr } else { 100.0 };
    let ssim2 = ssimulacra2(&a, &b)?;
    Ok(format!(
        r#"{{"psnr_y": {psnr:.4}, "ssimulacra2": {ssim2:.4}}}"#
    ))
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut shave = 0;
    if args.first().is_some_and(|a| a == "--shave") && args.len() > 1 {
        let Ok(n) = args[1].parse() else {
            eprintln!("--shave wants a number of pixels, not {}", args[1]);
            return ExitCode::from(2);
        };
        shave = n;
        args.drain(..2);
    }
    if args.is_empty() || !args.len().is_multiple_of(2) {
        eprintln!("usage: score [--shave N] REF TEST [REF TEST ...]");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for pair in args.chunks_exact(2) {
        match score(&pair[0], &pair[1], shave) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                // One line per pair, so that callers can pair lines with inputs.
                println!(r#"{{"error": {e:?}}}"#);
                eprintln!("score: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
