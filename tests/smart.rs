//! Smart mode on real images: classes of the scikit-image photos and scans,
//! the labelled development set (when ../shared is there), routing, and the
//! face blend.

mod common;

use std::collections::BTreeMap;

use common::*;
use upscaled::config::QualityLevel;
use upscaled::models::smart::{FaceSafe, RouteOverrides, Routes};
use upscaled::models::tiled::TileSettings;
use upscaled::models::{Catalog, ModelLibrary, models_dir};
use upscaled::pipeline::classify::{Class, classify};
use upscaled::pipeline::decode::{DecodeLimits, decode};
use upscaled::pipeline::upscale::Upscaler;
use upscaled::raster::Raster;

fn class_of(path: &std::path::Path) -> upscaled::pipeline::classify::Classification {
    let bytes = std::fs::read(path).unwrap();
    let decoded = decode(&bytes, &DecodeLimits::default()).unwrap();
    classify(&decoded.raster, &bytes)
}

#[test]
fn scikit_image_samples_get_their_classes() {
    let dir = samples();
    for (name, class) in [
        ("astronaut.png", Class::Face),
        ("page.png", Class::Text),
        ("text.png", Class::Text),
        ("coffee.png", Class::Photo),
        ("chelsea.png", Class::Photo),
        ("logo.png", Class::Illustration),
    ] {
        let c = class_of(&dir.join(name));
        assert_eq!(c.class, class, "{name}: {c:?}");
    }
    assert_eq!(class_of(&dir.join("astronaut.png")).faces.len(), 1);
}

/// Accuracy on ../shared/data/classify (the development set), printed as a
/// confusion matrix. The floor is what the rules reach today (see
/// docs/smart-mode.md); it guards against regressions.
#[test]
fn development_set_accuracy() {
    let Some(root) = shared_data("classify") else {
        return;
    };
    let classes = ["photo", "face", "text", "illustration"];
    let mut matrix: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let (mut right, mut total) = (0, 0);
    for label in classes {
        for entry in std::fs::read_dir(root.join(label)).unwrap().flatten() {
            let got = class_of(&entry.path()).class.to_string();
            *matrix.entry((label, got.clone())).or_default() += 1;
            right += usize::from(got == label);
            total += 1;
        }
    }
    eprintln!("truth \\ predicted: photo face text illustration");
    for label in classes {
        let row: Vec<String> = classes
            .iter()
            .map(|p| {
                matrix
                    .get(&(label, p.to_string()))
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            })
            .collect();
        eprintln!("{label:>13}: {}", row.join(" "));
    }
    let accuracy = right as f64 / total as f64;
    eprintln!("accuracy {right}/{total} = {:.1}%", accuracy * 100.0);
    assert!(accuracy >= 0.85, "accuracy fell to {accuracy:.3}");
}

#[test]
fn routing_table_follows_the_product_rules() {
    let catalog = Catalog::builtin().unwrap();
    let routes = Routes::builtin(&catalog).unwrap();
    let none = RouteOverrides::new();
    let dir = samples();
    let face = class_of(&dir.join("astronaut.png"));
    let photo = class_of(&dir.join("coffee.png"));
    let drawing = class_of(&dir.join("logo.png"));
    let kind = |name: &str| catalog.get(name).unwrap().kind;
    use upscaled::models::catalog::ModelKind::*;
    for level in [
        QualityLevel::Fast,
        QualityLevel::Balanced,
        QualityLevel::Best,
    ] {
        for scale in [2, 4] {
            // Faces and text: fidelity only, at every level.
            assert_eq!(
                kind(routes.pick(&none, &face, scale, level).unwrap()),
                Fidelity
            );
            let m = routes.pick(&none, &drawing, scale, level).unwrap();
            assert!(
                catalog
                    .get(m)
                    .unwrap()
                    .good_for
                    .contains(&upscaled::models::catalog::GoodFor::Illustration),
                "{m}"
            );
            assert_eq!(catalog.get(m).unwrap().scale, scale);
        }
    }
    assert_eq!(
        routes.pick(&none, &photo, 4, QualityLevel::Best),
        Some("realesrgan-x4plus")
    );
    assert_eq!(
        kind(routes.pick(&none, &photo, 4, QualityLevel::Fast).unwrap()),
        Fidelity
    );
    // A heavily compressed JPEG goes to a denoising model.
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 25)
        .encode_image(&load_rgb(&dir.join("coffee.png")))
        .unwrap();
    let decoded = decode(&out, &DecodeLimits::default()).unwrap();
    let damaged = classify(&decoded.raster, &out);
    assert!(damaged.jpeg_damaged(), "{damaged:?}");
    assert!(
        routes
            .pick(&none, &damaged, 2, QualityLevel::Balanced)
            .unwrap()
            .contains("noise")
    );
}

/// A config file's `routes:` replaces the levels it names and keeps the
/// rest; bad routes and model names are reported with their lines.
#[test]
fn config_routes_override_the_builtin_table() {
    let catalog = Catalog::builtin().unwrap();
    let routes = Routes::builtin(&catalog).unwrap();
    let photo = class_of(&samples().join("coffee.png"));
    let file = std::path::Path::new("routes.yaml");
    let text = "routes:\n  photo:\n    4:\n      best: spanx4_ch48\n";
    let config = upscaled::config::Config::parse(file, text).unwrap();
    config.check_models(file, &catalog).unwrap();
    let over = &config.routes;
    assert_eq!(
        routes.pick(over, &photo, 4, QualityLevel::Best),
        Some("spanx4_ch48")
    );
    // Levels and scales it does not name keep the built-in model.
    let builtin = RouteOverrides::new();
    for (scale, level) in [(4, QualityLevel::Fast), (2, QualityLevel::Best)] {
        assert_eq!(
            routes.pick(over, &photo, scale, level),
            routes.pick(&builtin, &photo, scale, level)
        );
    }

    let bad = "routes:\n  photos:\n    4: { best: spanx4_ch48 }\n  text:\n    3: { best: spanx4_ch48 }\n    2: { bets: spanx2_ch48 }\n";
    let e = upscaled::config::Config::parse(file, bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("routes.yaml:2:3: routes.photos: unknown route `photos`; did you mean `photo`?"),
        "{e}"
    );
    assert!(
        e.contains("routes.text.3: Smart mode routes 2x and 4x only"),
        "{e}"
    );
    assert!(
        e.contains(
            "routes.yaml:6:10: routes.text.2.bets: unknown key `bets`; did you mean `best`?"
        ),
        "{e}"
    );

    let wrong_models =
        "routes:\n  face:\n    2:\n      fast: spanx4_ch48\n      best: spanx2_ch84\n";
    let config = upscaled::config::Config::parse(file, wrong_models).unwrap();
    let e = config.check_models(file, &catalog).unwrap_err().to_string();
    assert!(
        e.contains(
            "routes.yaml:4:7: routes.face.2.fast: spanx4_ch48 is a 4x model, this route is 2x"
        ),
        "{e}"
    );
    assert!(e.contains("routes.yaml:5:7: routes.face.2.best: unknown model 'spanx2_ch84' (did you mean 'spanx2_ch48'?)"), "{e}");
}

/// The face region of a FaceSafe result is (nearly) the fidelity model's,
/// not the generative model's.
#[test]
fn faces_come_from_the_fidelity_model() {
    models(&["spanx4_ch48", "realesrgan-x4plus"]);
    let photo = load_rgb(&samples().join("astronaut.png"));
    let small = image::imageops::resize(&photo, 192, 192, image::imageops::CatmullRom);
    let raster = Raster::from_u8(192, 192, false, small.as_raw());
    let c = classify(&raster, &[]);
    assert!(!c.faces.is_empty(), "no face found in the small astronaut");
    let lib = ModelLibrary::new(
        Catalog::builtin().unwrap(),
        models_dir(),
        2,
        TileSettings::default(),
        None,
    )
    .unwrap();
    let (main, fidelity) = (
        lib.load("realesrgan-x4plus").unwrap(),
        lib.load("spanx4_ch48").unwrap(),
    );
    let generative = main.upscale(&raster, 4).unwrap();
    let faithful = fidelity.upscale(&raster, 4).unwrap();
    let safe = FaceSafe {
        main,
        fidelity,
        faces: c.faces.clone(),
    }
    .upscale(&raster, 4)
    .unwrap();
    let f = c.faces[0];
    let crop = |r: &Raster| {
        let img = image::RgbImage::from_raw(r.width, r.height, r.to_u8()).unwrap();
        image::imageops::crop_imm(&img, f.x * 4, f.y * 4, f.width * 4, f.height * 4).to_image()
    };
    let to_fidelity = psnr_rgb(&crop(&safe), &crop(&faithful));
    let to_generative = psnr_rgb(&crop(&safe), &crop(&generative));
    eprintln!("face region: {to_fidelity:.1} dB to fidelity, {to_generative:.1} dB to generative");
    assert!(to_fidelity > to_generative + 10.0);
}

#[test]
fn compare_renders_a_sheet_with_a_legend() {
    models(&["spanx4_ch48", "spanx4_ch52"]);
    let dir = tempfile::tempdir().unwrap();
    let sheet = dir.path().join("sheet.png");
    let out = run(&[
        "compare",
        samples().join("astronaut.png").to_str().unwrap(),
        "-o",
        sheet.to_str().unwrap(),
        "--crop",
        "40",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let legend = String::from_utf8_lossy(&out.stdout);
    let columns = legend.lines().filter(|l| l.starts_with("column")).count() as u32;
    assert!(
        legend.contains("column 1: bicubic") && columns >= 2,
        "{legend}"
    );
    let img = image::open(&sheet).unwrap();
    assert_eq!((img.width(), img.height()), (columns * (160 + 8) - 8, 160));
}
