//! Times catalog models as the importer writes them by default (blocked
//! layout; with `--padded`, channel padding too) against a plain import (no
//! graph rewrites), and checks that both give the same output.
//!
//! `cargo run --release --example bench_models -- [--side N] [--repeat N]
//! [--threads N] [--padded] IMAGE MODEL...` imports each MODEL both ways from its cached
//! wheel, runs both on the same SIDE² crop of IMAGE (default 256, whole
//! model, no tiling) REPEAT times each, alternating (default 5), and prints a
//! Markdown row per model: the fastest run of each as seconds per input
//! megapixel, the speed-up, and the largest difference between the two
//! outputs in 8-bit steps (out of 255). Needs `upscaled models fetch` once
//! (the runtime and the cached wheels).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use upscaled::models::import::ImportOptions;
use upscaled::models::{self, Catalog, models_dir, runtime};

struct Args {
    side: u32,
    repeat: usize,
    threads: usize,
    /// Compare against the padded import instead of the default one.
    padded: bool,
    image: String,
    models: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        side: 256,
        repeat: 5,
        threads: 2,
        padded: false,
        image: String::new(),
        models: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{what} needs a number"))
        };
        match a.as_str() {
            "--side" => args.side = number("--side")? as u32,
            "--repeat" => args.repeat = number("--repeat")?.max(1),
            "--threads" => args.threads = number("--threads")?.max(1),
            "--padded" => args.padded = true,
            _ if args.image.is_empty() => args.image = a,
            _ => args.models.push(a),
        }
    }
    if args.image.is_empty() || args.models.is_empty() {
        bail!(
            "usage: bench_models [--side N] [--repeat N] [--threads N] [--padded] IMAGE MODEL...\n\
             (MODEL: a catalog model imported from an ncnn wheel, e.g. spanx4_ch52)"
        );
    }
    Ok(args)
}

/// The centre `side`² of the image (scaled up first if it is smaller), as
/// NCHW floats in 0..1.
fn crop(path: &str, side: u32) -> Result<Vec<f32>> {
    let mut img = image::open(path)
        .with_context(|| format!("opening {path}"))?
        .to_rgb8();
    if img.width() < side || img.height() < side {
        img = image::imageops::resize(&img, side, side, image::imageops::FilterType::Lanczos3);
    }
    let (x0, y0) = ((img.width() - side) / 2, (img.height() - side) / 2);
    let img = image::imageops::crop_imm(&img, x0, y0, side, side).to_image();
    let plane = (side * side) as usize;
    let mut out = vec![0.0; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(p[c]) / 255.0;
        }
    }
    Ok(out)
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let catalog = Catalog::builtin()?;
    let cache = upscaled::fetch::cache_dir();
    let dir = models_dir();
    let tmp = tempfile::tempdir()?;
    let input = crop(&args.image, args.side)?;
    let shape = [1, 3, args.side as usize, args.side as usize];
    let megapixels = f64::from(args.side * args.side) / 1e6;
    println!(
        "| model | plain import (s/MP) | {} import (s/MP) | speed-up | max abs diff (of 255) |",
        if args.padded { "padded" } else { "default" }
    );
    println!("|---|---|---|---|---|");
    for name in &args.models {
        let entry = catalog.get(name)?;
        let plain: ImportOptions = models::import_options(entry).plain();
        // The default import (blocked layout), or with channels padded too.
        let default = models::import_options(entry);
        let today = if args.padded {
            default.padded()
        } else {
            default
        };
        let mut sessions = Vec::new();
        for (label, options) in [("plain", plain), ("today", today)] {
            let onnx = models::import_from_wheel(&catalog, name, &cache, options)?;
            let path = tmp.path().join(format!("{name}-{label}.onnx"));
            std::fs::write(&path, onnx)?;
            sessions.push(runtime::session(&dir, &path, args.threads)?);
        }
        let mut best = [f64::MAX; 2];
        let mut outputs = [Vec::new(), Vec::new()];
        // A warm-up run each, then alternate so that other load on the
        // machine falls on both alike.
        for round in 0..=args.repeat {
            for (i, session) in sessions.iter().enumerate() {
                let start = Instant::now();
                let (_, out) = session.run(shape, &input)?;
                let took = start.elapsed().as_secs_f64();
                if round > 0 {
                    best[i] = best[i].min(took);
                }
                outputs[i] = out;
            }
        }
        // Compared as the pipeline writes them: clamped to 0..1.
        let diff = outputs[0]
            .iter()
            .zip(&outputs[1])
            .map(|(a, b)| (a.clamp(0.0, 1.0) - b.clamp(0.0, 1.0)).abs())
            .fold(0.0f32, f32::max);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2}x | {:.4} |",
            best[0] / megapixels,
            best[1] / megapixels,
            best[0] / best[1],
            diff * 255.0
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_models: {e:#}");
            ExitCode::FAILURE
        }
    }
}
