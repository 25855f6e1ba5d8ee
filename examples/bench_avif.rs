//! Our AVIF (libavif + libaom, the `aom` feature) against Debian's
//! `avifenc -s 6` at matched SSIMULACRA2, on real photos brought to 2048 px on
//! the long side. Part of `make bench`; figures in docs/benchmarks.md.
//!
//! `cargo run --release --example bench_avif -- [PHOTO ...]` (default: four
//! scikit-image samples from the cache). Per photo and bit depth: our encode
//! at the default quality (its seconds, bytes and score), then avifenc over
//! quantizers around ours until its scores bracket ours; avifenc's bytes at
//! our score are interpolated (log-linear) between the bracketing quantizers,
//! its time taken from the nearer one. Both use 2 threads; avifenc's time
//! includes reading its PNG (about 0.05 s at this size). Scores come from our
//! own decoder for both files, against the 8-bit source both encoders read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use upscaled::pipeline::avif_aom;
use upscaled::pipeline::decode::{DecodeLimits, decode};
use upscaled::pipeline::encode::{EncodeSettings, OutputFormat, encode};
use upscaled::pipeline::resize::resize;
use upscaled::raster::Raster;

const LONG_SIDE: u32 = 2048;

fn ssimulacra2(a: &Raster, b: &Raster) -> f64 {
    use ssimulacra2::{ColorPrimaries, Rgb, TransferCharacteristic, compute_frame_ssimulacra2};
    let frame = |r: &Raster| {
        let data: Vec<[f32; 3]> = r
            .without_alpha()
            .data
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]].map(|v| v as f32 / 65535.0))
            .collect();
        Rgb::new(
            data,
            r.width as usize,
            r.height as usize,
            TransferCharacteristic::SRGB,
            ColorPrimaries::BT709,
        )
        .unwrap()
    };
    compute_frame_ssimulacra2(frame(a), frame(b)).unwrap()
}

fn read(bytes: &[u8]) -> Raster {
    decode(bytes, &DecodeLimits::default()).unwrap().raster
}

/// A photo at LONG_SIDE px on its long side, rounded to 8 bits (what both
/// encoders are given).
fn source(path: &Path) -> Raster {
    let photo = read(&std::fs::read(path).unwrap()).without_alpha();
    let scale = LONG_SIDE as f64 / photo.width.max(photo.height) as f64;
    let (w, h) = (
        (photo.width as f64 * scale).round() as u32,
        (photo.height as f64 * scale).round() as u32,
    );
    let big = resize(&photo, w, h, None).unwrap();
    Raster::from_u8(w, h, false, &big.to_u8())
}

struct Point {
    quantizer: u32,
    seconds: f64,
    bytes: u64,
    score: f64,
}

fn avifenc(png: &Path, out: &Path, quantizer: u32, reference: &Raster) -> Option<Point> {
    let q = quantizer.to_string();
    let start = Instant::now();
    let run = Command::new("avifenc")
        .args(["-s", "6", "-j", "2", "--min", &q, "--max", &q])
        .arg(png)
        .arg(out)
        .output()
        .ok()?;
    let seconds = start.elapsed().as_secs_f64();
    if !run.status.success() {
        eprintln!("avifenc: {}", String::from_utf8_lossy(&run.stderr));
        return None;
    }
    let bytes = std::fs::read(out).ok()?;
    Some(Point {
        quantizer,
        seconds,
        bytes: bytes.len() as u64,
        score: ssimulacra2(reference, &read(&bytes)),
    })
}

/// avifenc's bytes and seconds at `score`: quantizers walked from `start`
/// until two neighbours bracket the score (scores fall as quantizers rise).
fn avifenc_at(
    png: &Path,
    dir: &Path,
    reference: &Raster,
    start: u32,
    score: f64,
) -> Option<(f64, f64, u32)> {
    let out = dir.join("avifenc.avif");
    let mut points: Vec<Point> = Vec::new();
    let mut q = start;
    loop {
        let p = avifenc(png, &out, q, reference)?;
        let next = if p.score >= score {
            q + 1
        } else {
            q.checked_sub(1)?
        };
        points.push(p);
        if points.iter().any(|p| p.score >= score) && points.iter().any(|p| p.score < score) {
            break;
        }
        if !(1..=62).contains(&next) {
            return None;
        }
        q = next;
    }
    let above = points
        .iter()
        .filter(|p| p.score >= score)
        .max_by_key(|p| p.quantizer)?;
    let below = points
        .iter()
        .filter(|p| p.score < score)
        .min_by_key(|p| p.quantizer)?;
    let t = (score - below.score) / (above.score - below.score);
    let log_bytes =
        (below.bytes as f64).ln() + t * ((above.bytes as f64).ln() - (below.bytes as f64).ln());
    let nearer = if t >= 0.5 { above } else { below };
    Some((log_bytes.exp(), nearer.seconds, nearer.quantizer))
}

fn main() {
    let mut photos: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if photos.is_empty() {
        let samples = upscaled::fetch::samples(&upscaled::fetch::cache_dir()).expect("samples");
        photos = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]
            .iter()
            .map(|n| samples.join(n))
            .collect();
    }
    let dir = std::env::temp_dir().join(format!("upscaled-bench-avif-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = EncodeSettings {
        threads: 2,
        ..EncodeSettings::default()
    };
    let quality = OutputFormat::Avif.default_quality();
    // libavif's quality → libaom quantizer, as avifenc --min/--max take it.
    let quantizer = ((100 - u32::from(quality)) * 63 + 50) / 100;
    println!(
        "\n## AVIF: libaom vs avifenc ({} threads, quality {quality} = quantizer {quantizer}, speed {})\n",
        settings.threads, settings.avif_speed
    );
    println!(
        "| photo | size | depth | ours: s / bytes / SSIMULACRA2 | avifenc -s 6 at our score: s / bytes (quantizer) | bytes ratio | time ratio |\n|---|---|---|---|---|---|---|"
    );
    for photo in &photos {
        let reference = source(photo);
        let png = dir.join("source.png");
        let lossless = encode(&reference, OutputFormat::Png, &settings).unwrap();
        std::fs::write(&png, &lossless.bytes).unwrap();
        let name = photo.file_name().unwrap().to_string_lossy();
        let pixels = reference.to_u8();
        for depth in [8, 10] {
            let start = Instant::now();
            let ours = avif_aom::encode(&reference, &pixels, quality, &settings, depth).unwrap();
            let seconds = start.elapsed().as_secs_f64();
            let score = ssimulacra2(&reference, &read(&ours));
            let Some((bytes, their_s, their_q)) =
                avifenc_at(&png, &dir, &reference, quantizer, score)
            else {
                println!("| {name} | | {depth} | | avifenc missing or no bracket | | |");
                continue;
            };
            println!(
                "| {name} | {}x{} | {depth} | {seconds:.2} s / {} / {score:.1} | {their_s:.2} s / {bytes:.0} (q{their_q}) | {:.3} | {:.2} |",
                reference.width,
                reference.height,
                ours.len(),
                ours.len() as f64 / bytes,
                seconds / their_s
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
