//! Helpers shared by the integration tests: the built binary, fetched
//! samples and models, image loading and quality measures.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upscaled"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env("RUST_LOG", "info");
    cmd
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("running upscaled")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The scikit-image photos, fetched (once) by the binary itself.
pub fn samples() -> PathBuf {
    let out = run(&["fetch-samples"]);
    assert!(out.status.success(), "fetch-samples: {}", stderr(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Makes sure the named models (and ONNX Runtime) are installed.
pub fn models(names: &[&str]) {
    let mut args = vec!["models", "fetch"];
    args.extend_from_slice(names);
    let out = run(&args);
    assert!(out.status.success(), "models fetch: {}", stderr(&out));
}

/// `../shared/data/<sub>` when it exists (CI has it; a lone clone does not).
pub fn shared_data(sub: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is not there, so this evaluation did not run",
            dir.display()
        );
        None
    }
}

pub fn load_rgb(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
        .to_rgb8()
}

/// PSNR in dB over RGB, no border crop.
pub fn psnr_rgb(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// The super-resolution field's PSNR-Y: BT.601 luma in 16..235, `border`
/// pixels dropped at each side, `reference` cropped to the test image's size.
pub fn psnr_y(test: &image::RgbImage, reference: &image::RgbImage, border: u32) -> f64 {
    let (w, h) = test.dimensions();
    assert!(reference.width() >= w && reference.height() >= h);
    let y = |p: &image::Rgb<u8>| {
        16.0 + (65.481 * p[0] as f64 + 128.553 * p[1] as f64 + 24.966 * p[2] as f64) / 255.0
    };
    let mut sum = 0.0;
    let mut n = 0u64;
    for yy in border..h - border {
        for xx in border..w - border {
            let d = y(test.get_pixel(xx, yy)) - y(reference.get_pixel(xx, yy));
            sum += d * d;
            n += 1;
        }
    }
    10.0 * (255.0f64 * 255.0 / (sum / n as f64)).log10()
}

/// Polls `done` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// Every file under `dir`, sorted; symlinked folders are not followed.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `systemd-analyze security`'s overall exposure of a unit file (lower is
/// tighter), or None where systemd-analyze is not installed.
pub fn systemd_exposure(unit: &Path) -> Option<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no score for {}: {text}{}",
                unit.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable score line: {line}"));
    eprintln!("systemd-analyze security {}: {score}", unit.display());
    Some(score)
}
