//! The models through the real binary and ONNX Runtime: imports reproduce the
//! published figures, every catalog model runs, tiling leaves no seams,
//! alpha/grey/16-bit inputs survive.

mod common;

use std::path::Path;

use common::*;
use upscaled::models::tiled::TileSettings;
use upscaled::models::{Catalog, models_dir};
use upscaled::raster::Raster;
use upscaled::smart::ModelLibrary;

fn library(tile: u32) -> ModelLibrary {
    let tiles = TileSettings {
        tile,
        ..TileSettings::default()
    };
    ModelLibrary::new(Catalog::builtin().unwrap(), models_dir(), 2, tiles, None).unwrap()
}

fn to_raster(img: &image::RgbImage) -> Raster {
    Raster::from_u8(img.width(), img.height(), false, img.as_raw())
}

fn to_rgb(r: &Raster) -> image::RgbImage {
    image::RgbImage::from_raw(r.width, r.height, r.without_alpha().to_u8()).unwrap()
}

#[test]
fn set5_through_process_matches_the_published_figures() {
    let Some(sr) = shared_data("sr") else { return };
    models(&["spanx2_ch48", "spanx4_ch48", "spanx2_ch52", "spanx4_ch52"]);
    let names = ["baby", "bird", "butterfly", "head", "woman"];
    // ../shared/data/sr/README.md: PSNR-Y averaged over Set5.
    for (model, scale, expected) in [
        ("spanx2_ch48", 2, 38.07),
        ("spanx4_ch48", 4, 32.20),
        ("spanx2_ch52", 2, 38.09),
        ("spanx4_ch52", 4, 32.20),
    ] {
        let out = tempfile::tempdir().unwrap();
        let inputs: Vec<String> = names
            .iter()
            .map(|n| {
                sr.join(format!("Set5/LR_bicubic/X{scale}/{n}x{scale}.png"))
                    .display()
                    .to_string()
            })
            .collect();
        let mut args = vec!["process", "--model", model, "--format", "png", "-o"];
        let out_dir = out.path().display().to_string();
        args.push(&out_dir);
        args.extend(inputs.iter().map(String::as_str));
        let run = run(&args);
        assert!(run.status.success(), "{model}: {}", stderr(&run));
        let mut total = 0.0;
        for n in names {
            let lr = load_rgb(&sr.join(format!("Set5/LR_bicubic/X{scale}/{n}x{scale}.png")));
            let sr_img = load_rgb(&out.path().join(format!("{n}x{scale}.png")));
            assert_eq!(
                sr_img.dimensions(),
                (lr.width() * scale, lr.height() * scale),
                "output must be exactly {scale}x the input"
            );
            let hr = load_rgb(&sr.join(format!("Set5/{n}.png")));
            total += psnr_y(&sr_img, &hr, scale);
        }
        let mean = total / names.len() as f64;
        eprintln!("Set5 x{scale} {model}: {mean:.3} dB PSNR-Y (published here: {expected})");
        assert!(
            (mean - expected).abs() <= 0.05,
            "{model}: {mean:.3} dB, expected {expected} ± 0.05"
        );
    }
}

/// The DESIGN.md sanity figure: astronaut shrunk 4x, brought back by the model,
/// must beat bicubic by a wide margin (a broken import scores at or below it).
#[test]
fn fidelity_models_beat_bicubic_on_a_real_photo() {
    models(&["spanx4_ch48", "spanx2_ch48", "waifu2x-upconv7-photo-2x"]);
    let original = load_rgb(&samples().join("astronaut.png"));
    let lib = library(TileSettings::default().tile);
    for (model, scale, margin) in [
        ("spanx4_ch48", 4, 2.5),
        ("spanx2_ch48", 2, 2.5),
        ("waifu2x-upconv7-photo-2x", 2, 1.0),
    ] {
        let (w, h) = (original.width() / scale, original.height() / scale);
        let small = image::imageops::resize(&original, w, h, image::imageops::CatmullRom);
        let bicubic = image::imageops::resize(
            &small,
            original.width(),
            original.height(),
            image::imageops::CatmullRom,
        );
        let up = lib
            .load(model)
            .unwrap()
            .run_colour(&to_raster(&small))
            .unwrap();
        let (p_model, p_bicubic) = (
            psnr_rgb(&to_rgb(&up), &original),
            psnr_rgb(&bicubic, &original),
        );
        eprintln!("astronaut /{scale} {model}: {p_model:.2} dB, bicubic {p_bicubic:.2} dB");
        assert!(
            p_model > p_bicubic + margin,
            "{model}: {p_model:.2} dB is not clearly above bicubic {p_bicubic:.2} dB"
        );
    }
}

/// Channel padding (on by default in the importer) changes how the SPAN ch52
/// models are laid out, not what they compute: padded and plain imports of
/// the real weights agree within one 8-bit step on a real photo.
#[test]
fn channel_padding_keeps_the_real_models_outputs() {
    models(&["spanx4_ch52", "spanx2_ch52"]);
    let photo = load_rgb(&samples().join("coffee.png"));
    let crop = image::imageops::crop_imm(&photo, 240, 90, 96, 80).to_image();
    let plane = 96 * 80;
    let mut input = vec![0.0f32; 3 * plane];
    for (i, p) in crop.pixels().enumerate() {
        for c in 0..3 {
            input[c * plane + i] = f32::from(p[c]) / 255.0;
        }
    }
    let catalog = Catalog::builtin().unwrap();
    let cache = upscaled::fetch::cache_dir();
    let dir = tempfile::tempdir().unwrap();
    for name in ["spanx4_ch52", "spanx2_ch52"] {
        let padded_options = upscaled::models::import_options(catalog.get(name).unwrap()).padded();
        let mut outputs = Vec::new();
        for (label, options) in [
            ("padded", padded_options),
            ("plain", padded_options.plain()),
        ] {
            let onnx =
                upscaled::models::import_from_wheel(&catalog, name, &cache, options).unwrap();
            let path = dir.path().join(format!("{name}-{label}.onnx"));
            std::fs::write(&path, &onnx).unwrap();
            let session = upscaled::models::runtime::session(&models_dir(), &path, 2).unwrap();
            outputs.push((onnx.len(), session.run([1, 3, 80, 96], &input).unwrap()));
        }
        let ((padded_len, (shape, padded)), (plain_len, (plain_shape, plain))) =
            (&outputs[0], &outputs[1]);
        assert!(padded_len > plain_len, "{name}: nothing was padded");
        assert_eq!(shape, plain_shape);
        let diff = padded
            .iter()
            .zip(plain)
            .map(|(a, b)| (a.clamp(0.0, 1.0) - b.clamp(0.0, 1.0)).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "{name}: padded vs plain, max abs difference {:.4}/255",
            diff * 255.0
        );
        assert!(diff <= 1.0 / 255.0, "{name}: {:.3}/255", diff * 255.0);
    }
}

/// Every catalog model imports, loads and returns exactly scale x its input,
/// on an odd-sized crop (padding and alignment are the model's business).
#[test]
fn every_catalog_model_runs() {
    models(&[]);
    let photo = load_rgb(&samples().join("coffee.png"));
    let crop = image::imageops::crop_imm(&photo, 200, 100, 67, 49).to_image();
    let raster = to_raster(&crop);
    let lib = library(TileSettings::default().tile);
    let catalog = Catalog::builtin().unwrap();
    for (name, entry) in &catalog.models {
        let up = lib
            .load(name)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"))
            .run_colour(&raster)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            (up.width, up.height),
            (67 * entry.scale, 49 * entry.scale),
            "{name}"
        );
        // Shrunk back, the output must be the input again: catches wrong
        // colour order or range, shifted crops and broken layers alike.
        let back = image::imageops::resize(&to_rgb(&up), 67, 49, image::imageops::Triangle);
        let psnr = psnr_rgb(&back, &crop);
        eprintln!("{name}: shrunk back {psnr:.1} dB");
        // Community models (never routed automatically) are allowed to wander more.
        let floor = if entry.default_route { 33.0 } else { 24.0 };
        assert!(
            psnr > floor,
            "{name}: shrunk back to the input it scores {psnr:.1} dB"
        );
    }
}

#[test]
fn tiles_blend_without_seams() {
    models(&["spanx2_ch48"]);
    let photo = load_rgb(&samples().join("chelsea.png"));
    let raster = to_raster(&image::imageops::crop_imm(&photo, 0, 0, 300, 250).to_image());
    let whole = library(0)
        .load("spanx2_ch48")
        .unwrap()
        .run_colour(&raster)
        .unwrap();
    let tiled = library(96)
        .load("spanx2_ch48")
        .unwrap()
        .run_colour(&raster)
        .unwrap();
    // The same tiles with no context and no blending: the seams this prevents.
    let mut naive = upscaled::smart::ModelLibrary::new(
        Catalog::builtin().unwrap(),
        models_dir(),
        2,
        TileSettings {
            tile: 96,
            overlap: 0,
            context: 0,
            ..TileSettings::default()
        },
        None,
    )
    .unwrap()
    .load("spanx2_ch48")
    .unwrap();
    let naive = std::sync::Arc::get_mut(&mut naive)
        .unwrap()
        .run_colour(&raster)
        .unwrap();
    let max_diff = |a: &Raster, b: &Raster| {
        let (a, b) = (to_rgb(a), to_rgb(b));
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap()
    };
    let naive_diff = max_diff(&whole, &naive);
    eprintln!("naive tiles vs whole: worst pixel off by {naive_diff}/255");
    assert!(
        naive_diff > 3,
        "the test image must show seams when tiles are naive"
    );
    assert!(
        max_diff(&whole, &tiled) <= 2,
        "blended tiles must match the whole image"
    );
    let (a, b) = (to_rgb(&whole), to_rgb(&tiled));
    let psnr = psnr_rgb(&a, &b);
    let close = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .filter(|(x, y)| x.abs_diff(**y) <= 1)
        .count() as f64
        / a.as_raw().len() as f64;
    eprintln!(
        "tiled vs whole: {psnr:.1} dB, {:.2}% within 1/255",
        close * 100.0
    );
    assert!(psnr > 45.0, "{psnr:.1} dB");
    assert!(close > 0.99, "{close}");
}

fn write_png(path: &Path, img: image::DynamicImage) {
    img.save(path).unwrap();
}

#[test]
fn alpha_grey_and_16_bit_inputs_survive_the_model() {
    models(&["spanx2_ch48"]);
    let dir = tempfile::tempdir().unwrap();
    // A transparent PNG: a real photo inside a transparent border.
    let photo = load_rgb(&samples().join("astronaut.png"));
    let small = image::imageops::resize(&photo, 64, 64, image::imageops::Triangle);
    let mut rgba = image::RgbaImage::new(80, 80);
    image::imageops::overlay(
        &mut image::DynamicImage::ImageRgb8(small.clone()).to_rgba8(),
        &rgba.clone(),
        0,
        0,
    );
    for (x, y, p) in rgba.enumerate_pixels_mut() {
        let inside = (8..72).contains(&x) && (8..72).contains(&y);
        *p = if inside {
            let s = small.get_pixel(x - 8, y - 8);
            image::Rgba([s[0], s[1], s[2], 255])
        } else {
            image::Rgba([0, 0, 0, 0])
        };
    }
    write_png(&dir.path().join("cutout.png"), rgba.into());
    // Grey, and 16-bit grey with a smooth ramp (more than 256 levels).
    let grey = image::DynamicImage::ImageRgb8(small).to_luma8();
    write_png(&dir.path().join("grey.png"), grey.into());
    let ramp =
        image::ImageBuffer::from_fn(64, 48, |x, y| image::Luma([((x * 48 + y) * 21) as u16]));
    write_png(
        &dir.path().join("deep.png"),
        image::DynamicImage::ImageLuma16(ramp),
    );

    let out = dir.path().join("out");
    let run = run(&[
        "process",
        "--model",
        "spanx2_ch48",
        "--format",
        "png",
        "-o",
        out.to_str().unwrap(),
        dir.path().join("cutout.png").to_str().unwrap(),
        dir.path().join("grey.png").to_str().unwrap(),
        dir.path().join("deep.png").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));

    let cutout = image::open(out.join("cutout.png")).unwrap().to_rgba8();
    assert_eq!(cutout.dimensions(), (160, 160));
    assert_eq!(cutout.get_pixel(2, 2)[3], 0, "corner must stay transparent");
    assert_eq!(cutout.get_pixel(80, 80)[3], 255, "centre must stay opaque");

    let grey = image::open(out.join("grey.png")).unwrap();
    assert_eq!((grey.width(), grey.height()), (128, 128));

    let deep = image::open(out.join("deep.png")).unwrap();
    assert!(
        matches!(
            deep.color(),
            image::ColorType::L16 | image::ColorType::Rgb16
        ),
        "16-bit input must give 16-bit output, got {:?}",
        deep.color()
    );
    let levels: std::collections::HashSet<u16> =
        deep.to_luma16().as_raw().iter().copied().collect();
    assert!(levels.len() > 256, "only {} levels survived", levels.len());
}

/// After set-up, the binary finds the models fetched into the checkout from
/// any working directory, and `models list` says where it looked.
#[test]
fn the_binary_finds_the_checkouts_models_from_any_folder() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_upscaled"))
        .args(["models", "list"])
        .current_dir(elsewhere.path())
        .env_remove("UPSCALED_MODELS")
        .env("HOME", elsewhere.path())
        .env_remove("XDG_DATA_HOME")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let checkout = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/models")).unwrap();
    let chosen = text
        .lines()
        .find(|l| l.trim_start().starts_with('→'))
        .unwrap_or_else(|| panic!("no chosen folder in:\n{text}"));
    assert!(
        chosen.contains(&checkout.display().to_string())
            && chosen.contains("the checkout the binary was built in"),
        "{text}"
    );
    assert!(text.contains("./models (a checkout)"), "{text}");
    assert!(text.contains("ONNX Runtime installed"), "{text}");
}

/// A job with one target streams the model's rows into the resize; a job that
/// keeps the enlarged image for a file's other targets resizes it whole. The
/// two give the same pixels (within 1/255), with a downscale after the model,
/// a cover crop, and tiles small enough that several rows of them stream.
#[test]
fn a_streamed_job_gives_the_pixels_of_a_whole_one() {
    use upscaled::pipeline::encode::OutputFormat;
    use upscaled::pipeline::{Fit, JobSpec, Pipeline, Target};
    use upscaled::smart::route::ScaleChoice;
    models(&["spanx2_ch48"]);
    let photo = load_rgb(&samples().join("astronaut.png"));
    let small = image::imageops::resize(&photo, 180, 140, image::imageops::CatmullRom);
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(small)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    let tiles = TileSettings {
        tile: 64,
        ..TileSettings::default()
    };
    let lib = ModelLibrary::new(
        Catalog::builtin().unwrap(),
        models_dir(),
        2,
        tiles,
        Some("spanx2_ch48".into()),
    )
    .unwrap();
    let pipeline = Pipeline::with_source(Box::new(lib));
    for fit in [Fit::Contain, Fit::Cover] {
        let render = |reuse_upscale: bool| {
            let spec = JobSpec {
                target: Some(Target {
                    width: Some(300),
                    height: Some(200),
                    fit,
                    ..Target::default()
                }),
                formats: vec![OutputFormat::Png],
                scale: ScaleChoice::X2,
                reuse_upscale,
                ..JobSpec::default()
            };
            let out = pipeline
                .render(Path::new("astronaut.png"), &bytes, &spec)
                .unwrap();
            assert!(
                out.report.upscaler.starts_with("spanx2_ch48"),
                "{}",
                out.report.upscaler
            );
            image::load_from_memory(&out.encoded[0].bytes)
                .unwrap()
                .to_rgb8()
        };
        let (streamed, whole) = (render(false), render(true));
        pipeline.forget(&bytes);
        assert_eq!(streamed.dimensions(), whole.dimensions(), "{fit:?}");
        let worst = streamed
            .as_raw()
            .iter()
            .zip(whole.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(
            worst <= 1,
            "{fit:?}: streamed and whole differ by {worst}/255"
        );
    }
}
