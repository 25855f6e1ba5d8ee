//! `make bench` (cargo bench): encoders against cwebp/avifenc at matched
//! SSIMULACRA2, model speed per family and size, what the pipeline adds to
//! raw inference, what Smart mode's analysis costs, and what Smart routing
//! saves over "always 4x".
//! Figures go to docs/benchmarks.md by hand, with this command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use upscaled::models::tiled::TileSettings;
use upscaled::models::{Catalog, models_dir};
use upscaled::pipeline::encode::{EncodeSettings, OutputFormat, encode};
use upscaled::pipeline::resize::resize;
use upscaled::pipeline::{JobSpec, Pipeline, Target, decode};
use upscaled::raster::Raster;
use upscaled::smart::ModelLibrary;
use upscaled::smart::QualityLevel;
use upscaled::smart::route::ScaleChoice;

fn samples() -> PathBuf {
    upscaled::fetch::samples(&upscaled::fetch::cache_dir()).expect("samples")
}

fn load(path: &Path) -> Raster {
    let bytes = std::fs::read(path).unwrap();
    decode::decode(&bytes, &decode::DecodeLimits::default())
        .unwrap()
        .raster
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed().as_secs_f64())
}

fn ssimulacra2(a: &Raster, b: &Raster) -> f64 {
    use ssimulacra2::{ColorPrimaries, Rgb, TransferCharacteristic, compute_frame_ssimulacra2};
    let frame = |r: &Raster| {
        let data: Vec<[f32; 3]> = r
            .without_alpha()
            .data
            .chunks_exact(3)
            .map(|p| {
                [
                    p[0] as f32 / 65535.0,
                    p[1] as f32 / 65535.0,
                    p[2] as f32 / 65535.0,
                ]
            })
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

fn decode_file(path: &Path) -> Raster {
    load(path)
}

fn decode_file_opt(path: &Path) -> Option<Raster> {
    let bytes = std::fs::read(path).ok()?;
    decode::decode(&bytes, &decode::DecodeLimits::default())
        .ok()
        .map(|d| d.raster)
}

/// Runs a command-line encoder and returns (seconds, bytes, score).
fn external(
    reference: &Raster,
    out: &Path,
    args: &[String],
    tool: &str,
    decoder: &dyn Fn(&Path) -> Option<Raster>,
) -> Option<(f64, u64, f64)> {
    let (status, secs) = timed(|| Command::new(tool).args(args).output());
    let status = status.ok()?;
    if !status.status.success() {
        eprintln!("{tool} failed: {}", String::from_utf8_lossy(&status.stderr));
        return None;
    }
    let bytes = std::fs::metadata(out).ok()?.len();
    let decoded = decoder(out)?;
    Some((secs, bytes, ssimulacra2(reference, &decoded)))
}

fn encoders(dir: &Path, source: &Raster) {
    println!(
        "\n## Encoders on a {}x{} upscaled photo",
        source.width, source.height
    );
    let settings = EncodeSettings {
        threads: 2,
        ..EncodeSettings::default()
    };
    let png_path = dir.join("source.png");
    let png = encode(source, OutputFormat::Png, &settings).unwrap();
    std::fs::write(&png_path, &png.bytes).unwrap();
    let (_, decode_s) = timed(|| decode_file(&png_path));
    let jpeg = encode(source, OutputFormat::Jpeg, &settings).unwrap();
    let (_, jpeg_decode_s) =
        timed(|| decode::decode(&jpeg.bytes, &decode::DecodeLimits::default()).unwrap());
    println!("decode JPEG: {jpeg_decode_s:.3} s");
    let (_, resize_s) =
        timed(|| resize(source, source.width / 2, source.height / 2, None).unwrap());
    println!(
        "decode PNG: {decode_s:.3} s; resize to half (Lanczos3, linear light): {resize_s:.3} s"
    );
    println!("| encoder | settings | time | bytes | SSIMULACRA2 |\n|---|---|---|---|---|");
    let mut ours = Vec::new();
    // AVIF is read back with avifdec: a decoder independent of our encoder.
    let read_back = |format: OutputFormat, bytes: &[u8]| -> Option<Raster> {
        let path = dir.join(format!("ours.{}", format.extension()));
        std::fs::write(&path, bytes).ok()?;
        let path = if format == OutputFormat::Avif {
            let png = dir.join("ours-avif.png");
            Command::new("avifdec").arg(&path).arg(&png).output().ok()?;
            png
        } else {
            path
        };
        decode_file_opt(&path)
    };
    for format in [
        OutputFormat::Avif,
        OutputFormat::Webp,
        OutputFormat::Jpeg,
        OutputFormat::Png,
    ] {
        let (e, secs) = timed(|| encode(source, format, &settings).unwrap());
        let score = read_back(format, &e.bytes).map_or(f64::NAN, |b| ssimulacra2(source, &b));
        println!(
            "| upscaled {format} | default (q{}) | {secs:.2} s | {} | {score:.1} |",
            e.quality.map_or("-".into(), |q| q.to_string()),
            e.bytes.len()
        );
        ours.push((format, e.bytes.len(), score, secs));
    }
    // AVIF is read back with avifdec: a decoder independent of our encoder.
    let decoder = |p: &Path| -> Option<Raster> {
        let path = if p.extension().is_some_and(|e| e == "avif") {
            let png = p.with_extension("back.png");
            Command::new("avifdec").arg(p).arg(&png).output().ok()?;
            png
        } else {
            p.to_path_buf()
        };
        let bytes = std::fs::read(path).ok()?;
        decode::decode(&bytes, &decode::DecodeLimits::default())
            .ok()
            .map(|d| d.raster)
    };
    // cwebp at the lowest quality that matches our WebP's score.
    if let Some(&(_, _, target, _)) = ours.iter().find(|o| o.0 == OutputFormat::Webp) {
        let out = dir.join("cwebp.webp");
        let mut best = None;
        for q in (50..=100).step_by(2) {
            let args: Vec<String> = ["-q", &q.to_string(), "-m", "4", "-mt"]
                .iter()
                .map(|s| s.to_string())
                .chain([
                    png_path.display().to_string(),
                    "-o".into(),
                    out.display().to_string(),
                    "-quiet".into(),
                ])
                .collect();
            match external(source, &out, &args, "cwebp", &decoder) {
                Some(r) if r.2 >= target => {
                    best = Some((q, r));
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        match best {
            Some((q, (s, b, sc))) => {
                println!("| cwebp | -q {q} -m 4 -mt (matched) | {s:.2} s | {b} | {sc:.1} |")
            }
            None => println!("| cwebp | not installed or no match | | | |"),
        }
    }
    // avifenc -s 6 at the highest quantizer that matches our AVIF's score.
    if let Some(&(_, _, target, _)) = ours.iter().find(|o| o.0 == OutputFormat::Avif) {
        let out = dir.join("avifenc.avif");
        let mut best = None;
        for q in (10..=50).rev().step_by(2) {
            let args: Vec<String> = vec![
                "-s".into(),
                "6".into(),
                "-j".into(),
                "2".into(),
                "--min".into(),
                q.to_string(),
                "--max".into(),
                q.to_string(),
                png_path.display().to_string(),
                out.display().to_string(),
            ];
            match external(source, &out, &args, "avifenc", &decoder) {
                Some(r) if r.2 >= target => {
                    best = Some((q, r));
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        match best {
            Some((q, (s, b, sc))) => println!(
                "| avifenc (libaom) | -s 6 quantizer {q} (matched) | {s:.2} s | {b} | {sc:.1} |"
            ),
            None => println!("| avifenc | not installed, or AVIF not decodable here | | | |"),
        }
    }
}

fn photo_of(side: u32) -> Raster {
    let base = load(&samples().join("coffee.png"));
    // Crops of a real photo; 1024 is the photo enlarged (no real 1024 photo ships).
    let square = base.height.min(base.width);
    let crop = {
        let mut r = Raster::new(square, square, false);
        for y in 0..square {
            let src = &base.data[(y * base.width) as usize * 3..][..square as usize * 3];
            r.data[(y * square) as usize * 3..][..square as usize * 3].copy_from_slice(src);
        }
        r
    };
    resize(&crop, side, side, None).unwrap()
}

fn models(quick: bool) {
    println!("\n## Model inference, ONNX Runtime on the CPU, seconds per input megapixel");
    let catalog = Catalog::builtin().unwrap();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let lib = ModelLibrary::new(
        catalog,
        models_dir(),
        threads,
        TileSettings::default(),
        None,
    )
    .unwrap();
    println!("| model | 256² | 512² | 1024² |\n|---|---|---|---|");
    let families = [
        ("spanx2_ch48", 1024),
        ("spanx4_ch48", 1024),
        ("realesr-animevideov3-x4", 1024),
        ("waifu2x-upconv7-photo-2x", 1024),
        ("realcugan-se-2x-conservative", 512),
        ("waifu2x-cunet-2x", 512),
        ("realesrgan-x4plus", 256),
    ];
    for (name, largest) in families {
        let Ok(model) = lib.load(name) else {
            println!("| {name} | not installed | | |");
            continue;
        };
        let mut cells = Vec::new();
        for side in [256u32, 512, 1024] {
            if side > largest || (quick && side > 256) {
                cells.push("—".to_string());
                continue;
            }
            let r = photo_of(side);
            let (_, secs) = timed(|| model.run_colour(&r).unwrap());
            cells.push(format!("{:.2}", secs / (side as f64 * side as f64 / 1e6)));
        }
        println!("| {name} | {} |", cells.join(" | "));
    }
}

/// The main job: an 800 px supplier photo to a Shopify 2048² WebP at
/// `balanced`, Smart mode choosing the model. Its stage times against the
/// chosen model run on the same 800² pixels in one piece (raw inference),
/// and tiled under the budget with the whole result kept.
fn main_job(threads: usize) {
    let library = |tiles| {
        ModelLibrary::new(
            Catalog::builtin().unwrap(),
            models_dir(),
            threads,
            tiles,
            None,
        )
        .unwrap()
    };
    let photo = photo_of(800);
    let png = encode(&photo, OutputFormat::Png, &EncodeSettings::default())
        .unwrap()
        .bytes;
    let target = upscaled::config::command_line_target(upscaled::config::raw::RawTarget {
        preset: Some("shopify".into()),
        formats: Some(vec!["webp".into()]),
        ..Default::default()
    })
    .unwrap();
    let spec = target.apply_to(JobSpec {
        level: QualityLevel::Balanced,
        ..JobSpec::default()
    });
    let pipeline = Pipeline::with_source(Box::new(library(TileSettings::default())));
    // Once to load the models and warm the runtime, then timed.
    pipeline
        .render(Path::new("supplier.png"), &png, &spec)
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let ((rendered, write_s), total) = timed(|| {
        let rendered = pipeline
            .render(Path::new("supplier.png"), &png, &spec)
            .unwrap();
        let (_, write_s) = timed(|| {
            upscaled::pipeline::write::write_atomic(
                &out.path().join("supplier.webp"),
                &rendered.encoded[0].bytes,
                upscaled::pipeline::write::Collision::Replace,
            )
            .unwrap()
        });
        (rendered, write_s)
    });
    let report = &rendered.report;
    let model = report.upscaler.clone();
    let untiled = library(TileSettings {
        tile: 0,
        memory_mib: 1 << 20,
        ..TileSettings::default()
    });
    let raw_model = untiled.load(&model).unwrap();
    raw_model.run_colour(&photo).unwrap();
    let (_, raw) = timed(|| raw_model.run_colour(&photo).unwrap());
    let tiled_model = library(TileSettings::default()).load(&model).unwrap();
    let (_, tiled) = timed(|| tiled_model.run_colour(&photo).unwrap());
    let ms = |stage: &str| {
        report
            .stage_ms
            .iter()
            .filter(|(s, _)| s == stage)
            .map(|(_, ms)| ms)
            .sum::<f64>()
    };
    let beyond = ["decode", "crop", "classify", "route", "resize", "encode"]
        .iter()
        .map(|stage| ms(stage))
        .sum::<f64>()
        + write_s * 1e3;
    println!(
        "\n## The main job: 800² supplier photo → Shopify 2048² WebP, balanced ({model}, {}x{} → {}x{})\n\n\
         | decode | crop | classify | route | upscale | resize | encode | write | whole job |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {total:.2} s |\n\n\
         Raw inference of {model} on the same 800² pixels: {raw:.2} s in one piece (over the \
         memory budget); {tiled:.2} s tiled with the whole result kept (the budget then picks \
         smaller tiles than the streamed job's). Everything but the model (decode, crop, \
         classify, route, resize, encode, write): {beyond:.0} ms, {:.1}% of raw inference in \
         one piece. The whole job: {:+.0}% over it.",
        report.source_size.0,
        report.source_size.1,
        report.output_size.0,
        report.output_size.1,
        ms("decode"),
        ms("crop"),
        ms("classify"),
        ms("route"),
        ms("upscale"),
        ms("resize"),
        ms("encode"),
        write_s * 1e3,
        beyond / raw / 10.0,
        (total / raw - 1.0) * 100.0,
    );
}

/// What Smart mode's analysis costs: classification (statistics and the
/// face detector) and the text detector, median of 5 runs.
fn smart_analysis() {
    println!("\n## Smart mode's analysis (median of 5)");
    let median = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        format!("{:.0} ms", v[v.len() / 2] * 1000.0)
    };
    let five = |f: &dyn Fn()| median((0..5).map(|_| timed(f).1).collect());
    let text = upscaled::models::text_regions::TextDetector::load(&models_dir(), 2);
    let drawing = upscaled::models::drawing::DrawingClassifier::load(&models_dir(), 2);
    let networks = upscaled::smart::classify::Networks {
        text: text.as_ref().ok(),
        drawing: drawing.as_ref().ok(),
    };
    let missing = |e: &anyhow::Error| format!("not installed: {e}");
    println!(
        "| source | classify (all) | faces | text lines (352 px) | drawn? (224 px) | text detector (protection) |\n|---|---|---|---|---|---|"
    );
    for side in [256u32, 512, 1024] {
        let photo = photo_of(side);
        let classify = five(&|| {
            upscaled::smart::classify::classify(&photo, &[], networks);
        });
        let faces = five(&|| {
            upscaled::smart::classify::detect_faces(&photo);
        });
        let (lines, protection) = match &text {
            Ok(d) => (
                five(&|| {
                    d.text_lines(&photo).unwrap();
                }),
                five(&|| {
                    d.detect(&photo).unwrap();
                }),
            ),
            Err(e) => (missing(e), missing(e)),
        };
        let drawn = match &drawing {
            Ok(d) => five(&|| {
                d.drawn(&photo).unwrap();
            }),
            Err(e) => missing(e),
        };
        println!("| {side}² photo | {classify} | {faces} | {lines} | {drawn} | {protection} |");
    }
    // A grey texture the statistics take for type: the text detector takes
    // its closer look (about the cost of the protection column) before the
    // picture is called a photo.
    let brick = load(&samples().join("brick.png"));
    let classify = five(&|| {
        upscaled::smart::classify::classify(&brick, &[], networks);
    });
    println!("| 512² grey texture (brick, closer look) | {classify} | | | | |");
}

fn smart_savings() {
    println!("\n## Smart routing vs always 4x: a mixed folder, 1024x1024 WebP target");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pipeline = Pipeline::with_source(Box::new(
        ModelLibrary::new(
            Catalog::builtin().unwrap(),
            models_dir(),
            threads,
            TileSettings::default(),
            None,
        )
        .unwrap(),
    ));
    // Two already large enough, two needing ~2x, two tiny.
    let files: Vec<Vec<u8>> = [1200u32, 1100, 600, 520, 250, 200]
        .iter()
        .map(|&side| {
            encode(
                &photo_of(side),
                OutputFormat::Png,
                &EncodeSettings::default(),
            )
            .unwrap()
            .bytes
        })
        .collect();
    let target = Target {
        width: Some(1024),
        height: Some(1024),
        ..Target::default()
    };
    for (label, scale) in [
        ("smart (auto)", ScaleChoice::Auto),
        ("always 4x", ScaleChoice::X4),
    ] {
        let spec = JobSpec {
            target: Some(target.clone()),
            scale,
            level: QualityLevel::Balanced,
            formats: vec![OutputFormat::Webp],
            ..JobSpec::default()
        };
        let (_, secs) = timed(|| {
            for bytes in &files {
                pipeline
                    .render(Path::new("mixed.png"), bytes, &spec)
                    .unwrap();
            }
        });
        println!("{label}: {secs:.1} s for 6 files");
    }
}

fn main() {
    // `cargo bench` passes --bench; BENCH_QUICK=1 keeps it short.
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    // BENCH_ONLY=encoders|models|main|smart|formats runs one section.
    let only = std::env::var("BENCH_ONLY").ok();
    let wants = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "# upscaled benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // The input of the memory measurement in `make bench`.
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&bench_dir).unwrap();
    let big = encode(
        &photo_of(1024),
        OutputFormat::Png,
        &EncodeSettings::default(),
    )
    .unwrap();
    std::fs::write(bench_dir.join("photo-1024.png"), big.bytes).unwrap();
    if wants("encoders") {
        let catalog = Catalog::builtin().unwrap();
        let lib =
            ModelLibrary::new(catalog, models_dir(), 2, TileSettings::default(), None).unwrap();
        let astronaut = load(&samples().join("astronaut.png"));
        let source = match lib.load("spanx4_ch48") {
            Ok(m) => m.run_colour(&astronaut).unwrap(),
            Err(_) => resize(&astronaut, 2048, 2048, None).unwrap(),
        };
        encoders(dir.path(), &source);
    }
    if wants("models") {
        models(quick);
    }
    if wants("main") {
        main_job(std::thread::available_parallelism().map_or(2, |n| n.get()));
    }
    if wants("smart") {
        smart_analysis();
        smart_savings();
    }
    if wants("formats") {
        formats_at_once();
    }
}

/// One output in WebP and AVIF: each encoder alone, one after the other,
/// against the pipeline's encode stage, which runs them at once.
fn formats_at_once() {
    let raster = photo_of(2048);
    let settings = EncodeSettings::default();
    let png = encode(&raster, OutputFormat::Png, &settings).unwrap().bytes;
    let pipeline = Pipeline::new(Box::new(upscaled::pipeline::upscale::Interpolation));
    let spec = JobSpec {
        formats: vec![OutputFormat::Webp, OutputFormat::Avif],
        ..JobSpec::default()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let runs = 3;
    let alone = |format| {
        median(
            (0..runs)
                .map(|_| timed(|| encode(&raster, format, &settings).unwrap()).1)
                .collect(),
        )
    };
    let (webp, avif) = (alone(OutputFormat::Webp), alone(OutputFormat::Avif));
    let together = median(
        (0..runs)
            .map(|_| {
                let rendered = pipeline
                    .render(Path::new("photo.png"), &png, &spec)
                    .unwrap();
                rendered
                    .report
                    .stage_ms
                    .iter()
                    .find(|(stage, _)| stage == "encode")
                    .map(|(_, ms)| ms / 1e3)
                    .unwrap()
            })
            .collect(),
    );
    println!(
        "\n## WebP + AVIF of one 2048x2048 output ({} threads, median of {runs})\n\n\
         | webp alone | avif alone | one after the other | at once (encode stage) |\n|---|---|---|---|\n\
         | {webp:.2} s | {avif:.2} s | {:.2} s | {together:.2} s |",
        settings.threads,
        webp + avif,
    );
}
