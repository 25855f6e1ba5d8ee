//! Smart mode on real images: classes of the scikit-image photos and scans,
//! the labelled development set (when ../shared is there), routing, and the
//! face blend.

mod common;

use std::collections::BTreeMap;

use common::*;
use upscaled::models::drawing::DrawingClassifier;
use upscaled::models::text_regions::TextDetector;
use upscaled::models::tiled::TileSettings;
use upscaled::models::{Catalog, models_dir};
use upscaled::pipeline::decode::{DecodeLimits, decode};
use upscaled::pipeline::upscale::Upscaler;
use upscaled::raster::Raster;
use upscaled::smart::ModelLibrary;
use upscaled::smart::QualityLevel;
use upscaled::smart::classify::{Class, Networks, classify};
use upscaled::smart::protect::{Protected, RegionSafe};
use upscaled::smart::route::{RouteOverrides, Routes};

/// The text detector and the drawing classifier, loaded once (the models
/// are fetched by then).
fn networks() -> Networks<'static> {
    static TEXT: std::sync::OnceLock<TextDetector> = std::sync::OnceLock::new();
    static DRAWING: std::sync::OnceLock<DrawingClassifier> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| {
        models(&[]);
        TextDetector::load(&models_dir(), 2).unwrap()
    });
    let drawing = DRAWING.get_or_init(|| DrawingClassifier::load(&models_dir(), 2).unwrap());
    Networks {
        text: Some(text),
        drawing: Some(drawing),
    }
}

/// The installed models with the default tiling, on 2 threads.
fn library() -> ModelLibrary {
    ModelLibrary::new(
        Catalog::builtin().unwrap(),
        models_dir(),
        2,
        TileSettings::default(),
        None,
    )
    .unwrap()
}

fn class_of(path: &std::path::Path) -> upscaled::smart::classify::Classification {
    let bytes = std::fs::read(path).unwrap();
    let decoded = decode(&bytes, &DecodeLimits::default()).unwrap();
    classify(&decoded.raster, &bytes, networks())
}

/// The routes scikit-image's pictures (never used for training or tuning)
/// take. `text` (handwritten formulas on ruled paper) is the known miss:
/// the head reads no text in it (docs/smart-mode.md), but it must never go
/// to a drawing-only model.
#[test]
fn scikit_image_samples_get_their_classes() {
    let dir = samples();
    for (name, class) in [
        ("astronaut.png", Class::Face),
        ("page.png", Class::Text),
        ("coffee.png", Class::Photo),
        ("chelsea.png", Class::Photo),
    ] {
        let c = class_of(&dir.join(name));
        assert_eq!(c.class, class, "{name}: {c:?}");
        assert_eq!(c.likely(), class, "{name}: {c:?}");
    }
    assert_eq!(class_of(&dir.join("astronaut.png")).faces.len(), 1);
    let logo = class_of(&dir.join("logo.png"));
    assert_eq!(logo.likely(), Class::Illustration, "{logo:?}");
    assert_ne!(class_of(&dir.join("text.png")).class, Class::Illustration);
}

/// Grey textures have few grey levels, rows and thin strokes, which the
/// image statistics alone take for a page; the head does not take them for
/// text, and they never go to a drawing-only model (`cell`, most likely a
/// drawing to the head, takes a fidelity route).
#[test]
fn textures_without_type_are_not_text() {
    let dir = samples();
    for name in ["brick.png", "grass.png", "gravel.png", "cell.png"] {
        let c = class_of(&dir.join(name));
        assert_ne!(c.class, Class::Illustration, "{name}: {c:?}");
        assert_ne!(c.likely(), Class::Text, "{name}: {c:?}");
    }
}

/// A product photographed on white (here: scikit-image's coffee cup, cut
/// out by its own colour against a white field) is classified as what
/// stands on the white, not as the white: a photo, never routed to a
/// drawing-only model.
#[test]
fn a_photo_on_white_is_looked_at_without_the_white() {
    let photo = load_rgb(&samples().join("coffee.png"));
    let (w, h) = (photo.width() * 2, photo.height() * 2);
    let mut shot = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut shot, &photo, (w / 4) as i64, (h / 4) as i64);
    let r = Raster::from_u8(w, h, false, shot.as_raw());
    let c = classify(&r, &[], networks());
    let subject = c.subject.expect("the white backdrop is found");
    assert!(
        subject.width <= photo.width() + 12 && subject.height <= photo.height() + 12,
        "{subject:?}"
    );
    assert_ne!(c.class, Class::Illustration, "{c:?}");
    assert_eq!(c.likely(), Class::Photo, "{c:?}");
}

/// A cartoon made from a photo (smoothed, four levels a channel, black
/// outlines) reads as drawn and becomes an illustration; the photo does not.
/// The converted network's five outputs are probabilities.
#[test]
fn a_cartoon_of_a_photo_is_drawn() {
    let drawing = networks().drawing.unwrap();
    let photo = load_rgb(&samples().join("chelsea.png"));
    let smooth = image::imageops::blur(&photo, 3.0);
    let luma = image::imageops::grayscale(&smooth);
    let mut cartoon = smooth.clone();
    for (x, y, px) in cartoon.enumerate_pixels_mut() {
        let l = |dx: i64, dy: i64| {
            let (cx, cy) = (x as i64 + dx, y as i64 + dy);
            let cx = cx.clamp(0, luma.width() as i64 - 1) as u32;
            let cy = cy.clamp(0, luma.height() as i64 - 1) as u32;
            luma.get_pixel(cx, cy)[0] as i32
        };
        let edge = (l(1, 0) - l(-1, 0)).abs() + (l(0, 1) - l(0, -1)).abs();
        for v in px.0.iter_mut() {
            *v = if edge > 24 { 0 } else { *v / 64 * 64 + 32 };
        }
    }
    let as_raster =
        |img: &image::RgbImage| Raster::from_u8(img.width(), img.height(), false, img.as_raw());
    let look = drawing.look(&as_raster(&photo)).unwrap();
    let p = look.classes;
    assert_eq!(
        look.embedding.len(),
        upscaled::models::drawing::EMBEDDING_WIDTH
    );
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-3, "{p:?}");
    let (photo_drawn, cartoon_drawn) = (
        drawing.drawn(&as_raster(&photo)).unwrap(),
        drawing.drawn(&as_raster(&cartoon)).unwrap(),
    );
    eprintln!("drawn: photo {photo_drawn:.3}, cartoon {cartoon_drawn:.3}");
    assert!(photo_drawn < 0.1, "{photo_drawn}");
    assert!(cartoon_drawn > 0.9, "{cartoon_drawn}");
    let c = classify(&as_raster(&cartoon), &[], networks());
    assert_eq!(c.likely(), Class::Illustration, "{c:?}");
}

/// Accuracy on ../shared/data/classify (the development set, never used for
/// training), printed as a confusion matrix of the most likely class. The
/// floors are a little under what the head reaches today (docs/smart-mode.md);
/// no natural picture there may take the drawing-only route.
#[test]
fn development_set_accuracy() {
    let Some(root) = shared_data("classify") else {
        return;
    };
    let classes = ["photo", "face", "text", "illustration"];
    let mut matrix: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let (mut right, mut total) = (0, 0);
    let mut worst_recall = 1.0f64;
    for label in classes {
        let (mut class_right, mut class_total) = (0, 0);
        for entry in std::fs::read_dir(root.join(label)).unwrap().flatten() {
            let c = class_of(&entry.path());
            if matches!(label, "photo" | "face") {
                assert_ne!(
                    c.class,
                    Class::Illustration,
                    "{}: {c:?}",
                    entry.path().display()
                );
            }
            let got = c.likely().to_string();
            *matrix.entry((label, got.clone())).or_default() += 1;
            class_right += usize::from(got == label);
            class_total += 1;
        }
        worst_recall = worst_recall.min(class_right as f64 / class_total as f64);
        right += class_right;
        total += class_total;
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
    eprintln!("lowest class recall {:.1}%", worst_recall * 100.0);
    assert!(accuracy >= 0.78, "accuracy fell to {accuracy:.3}");
    assert!(worst_recall >= 0.4, "a class fell to {worst_recall:.3}");
}

#[test]
fn routing_table_follows_the_product_rules() {
    let catalog = Catalog::builtin().unwrap();
    let routes = Routes::builtin(&catalog).unwrap();
    let none = RouteOverrides::new();
    let dir = samples();
    let face = class_of(&dir.join("astronaut.png"));
    let photo = class_of(&dir.join("coffee.png"));
    // The table's illustration row, whatever route the logo's probabilities
    // take (docs/smart-mode.md, "The cost of a mistake").
    let mut drawing = class_of(&dir.join("logo.png"));
    drawing.class = Class::Illustration;
    // Without probabilities the route is the class as set (the cost rule
    // would otherwise weigh the logo's own).
    drawing.probabilities = None;
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
    let damaged = classify(&decoded.raster, &out, networks());
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
    let config = upscaled::config::Config::parse_routes(file, text).unwrap();
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
    let e = upscaled::config::Config::parse_routes(file, bad)
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
    let config = upscaled::config::Config::parse_routes(file, wrong_models).unwrap();
    let e = config.check_models(file, &catalog).unwrap_err().to_string();
    assert!(
        e.contains(
            "routes.yaml:4:7: routes.face.2.fast: spanx4_ch48 is a 4x model, this route is 2x"
        ),
        "{e}"
    );
    assert!(e.contains("routes.yaml:5:7: routes.face.2.best: unknown model 'spanx2_ch84' (did you mean 'spanx2_ch48'?)"), "{e}");
}

/// The face region of a RegionSafe result is (nearly) the fidelity model's,
/// not the generative model's.
#[test]
fn faces_come_from_the_fidelity_model() {
    models(&["spanx4_ch48", "realesrgan-x4plus"]);
    let photo = load_rgb(&samples().join("astronaut.png"));
    let small = image::imageops::resize(&photo, 192, 192, image::imageops::CatmullRom);
    let raster = Raster::from_u8(192, 192, false, small.as_raw());
    let c = classify(&raster, &[], networks());
    assert!(!c.faces.is_empty(), "no face found in the small astronaut");
    let lib = library();
    let (main, fidelity) = (
        lib.load("realesrgan-x4plus").unwrap(),
        lib.load("spanx4_ch48").unwrap(),
    );
    let generative = main.upscale(&raster, 4, None).unwrap();
    let faithful = fidelity.upscale(&raster, 4, None).unwrap();
    let safe = RegionSafe {
        main,
        fidelity,
        regions: c.faces.iter().map(Protected::face).collect(),
    }
    .upscale(&raster, 4, None)
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

/// A photo with a label on it: three lines of a scanned page pasted onto
/// the cat (scikit-image's `chelsea` and `page`), at a known place.
fn photo_with_label() -> (Raster, (u32, u32, u32, u32)) {
    let dir = samples();
    let mut photo = load_rgb(&dir.join("chelsea.png"));
    let page = load_rgb(&dir.join("page.png"));
    let label = image::imageops::crop_imm(&page, 20, 20, 300, 62).to_image();
    let at = (100, 200);
    image::imageops::replace(&mut photo, &label, at.0 as i64, at.1 as i64);
    let r = Raster::from_u8(photo.width(), photo.height(), false, photo.as_raw());
    (r, (at.0, at.1, label.width(), label.height()))
}

/// The detector finds the pasted label (and nothing on the plain photo), and
/// the label comes out of Smart mode's `best` photo route as the fidelity
/// model drew it, not as the generative model reinvented it.
#[test]
fn text_in_a_photo_comes_from_the_fidelity_model() {
    models(&["spanx4_ch48", "realesrgan-x4plus"]);
    let detector = TextDetector::load(&models_dir(), 2).unwrap();
    let plain = class_of(&samples().join("chelsea.png"));
    assert_eq!(plain.class, Class::Photo);
    let cat = load_rgb(&samples().join("chelsea.png"));
    let cat = Raster::from_u8(cat.width(), cat.height(), false, cat.as_raw());
    assert_eq!(
        detector.detect(&cat).unwrap(),
        vec![],
        "text found on the plain photo"
    );

    let (photo, (lx, ly, lw, lh)) = photo_with_label();
    let lines = detector.detect(&photo).unwrap();
    let covered = |x: u32, y: u32| {
        lines
            .iter()
            .any(|b| x >= b.x && x < b.x + b.width && y >= b.y && y < b.y + b.height)
    };
    let inside: Vec<(u32, u32)> = (0..lh)
        .step_by(2)
        .flat_map(|y| (0..lw).step_by(4).map(move |x| (lx + x, ly + y)))
        .collect();
    let share = inside.iter().filter(|&&(x, y)| covered(x, y)).count() as f64 / inside.len() as f64;
    let outside = lines
        .iter()
        .filter(|b| b.x + b.width < lx || b.x > lx + lw || b.y + b.height < ly || b.y > ly + lh)
        .count();
    eprintln!(
        "{} lines; {:.0}% of the label covered; {outside} outside it",
        lines.len(),
        share * 100.0
    );
    assert!(lines.len() >= 3, "{lines:?}");
    assert!(share >= 0.7, "{lines:?}");
    assert_eq!(outside, 0, "{lines:?}");

    // Smart mode end to end at `best`: a photo goes to Real-ESRGAN, the
    // label to SPAN. A 4x of a 190x70 shrunk crop around the label keeps it quick.
    let crop = |r: &Raster, x: u32, y: u32, w: u32, h: u32| {
        let img = image::RgbImage::from_raw(r.width, r.height, r.to_u8()).unwrap();
        image::imageops::crop_imm(&img, x, y, w, h).to_image()
    };
    let small = crop(&photo, lx - 40, ly - 40, 380, 140);
    let small = image::imageops::resize(&small, 190, 70, image::imageops::CatmullRom);
    let raster = Raster::from_u8(190, 70, false, small.as_raw());
    let lib = library();
    let spec = upscaled::pipeline::JobSpec {
        level: QualityLevel::Best,
        ..Default::default()
    };
    let mut c = classify(&raster, &[], networks());
    // The crop is mostly label; the photo route is the point here, so the
    // class is set and the probabilities that would weigh it dropped.
    c.class = Class::Photo;
    c.probabilities = None;
    use upscaled::pipeline::upscale::UpscalerSource;
    let safe = lib.for_scale(&raster, 4, &spec, &c).unwrap();
    assert!(safe.name().contains("text lines"), "{}", safe.name());
    let out = safe.upscale(&raster, 4, None).unwrap();
    let generative = lib
        .load("realesrgan-x4plus")
        .unwrap()
        .upscale(&raster, 4, None)
        .unwrap();
    let faithful = lib
        .load("spanx4_ch48")
        .unwrap()
        .upscale(&raster, 4, None)
        .unwrap();
    // The label in the small crop: 20..170 x 20..51.
    let label = |r: &Raster| crop(r, 24 * 4, 24 * 4, 140 * 4, 24 * 4);
    let to_fidelity = psnr_rgb(&label(&out), &label(&faithful));
    let to_generative = psnr_rgb(&label(&out), &label(&generative));
    eprintln!("label: {to_fidelity:.1} dB to fidelity, {to_generative:.1} dB to generative");
    assert!(to_fidelity > to_generative + 10.0);
}

#[test]
fn compare_renders_a_labelled_sheet() {
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
        "--level",
        "best",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let legend = String::from_utf8_lossy(&out.stdout);
    let columns = legend.lines().filter(|l| l.starts_with("column")).count() as u32;
    for want in [
        "column 1: full frame",
        "column 2: original pixels",
        "column 3: bicubic",
        "best pick",
    ] {
        assert!(legend.contains(want), "{want:?} missing:\n{legend}");
    }
    assert!(columns >= 4, "{legend}");
    // 40 px at 4x: 160 px cells, 8 px apart, a 24 px label strip below.
    let img = image::open(&sheet).unwrap().to_rgb8();
    assert_eq!(
        (img.width(), img.height()),
        (columns * (160 + 8) - 8, 160 + 24)
    );
    for c in 0..columns {
        let x0 = c * 168;
        let ink = (x0..x0 + 160)
            .flat_map(|x| (160..184).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
            .count();
        assert!(
            ink > 30,
            "column {} has no label ({ink} dark pixels)",
            c + 1
        );
    }
    // The full frame marks the crop in red.
    let red = (0..160)
        .flat_map(|x| (0..160).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0 == [230, 20, 20])
        .count();
    assert!(red >= 8, "no crop box in the full frame ({red} red pixels)");
}

#[test]
fn the_route_is_weighed_with_the_models_of_the_jobs_level() {
    let catalog = Catalog::builtin().unwrap();
    let routes = Routes::builtin(&catalog).unwrap();
    let none = RouteOverrides::new();
    let mut c = class_of(&samples().join("coffee.png"));
    // A photo with a one-in-five chance of type and no line found to
    // protect (docs/smart-mode.md, "The cost of a mistake").
    c.probabilities = Some(upscaled::smart::classify::cost::Probabilities {
        photo: 0.8,
        face: 0.0,
        text: 0.2,
        illustration: 0.0,
    });
    c.features.text_lines = Some(0);
    c.jpeg_quality_estimate = None;
    c.blockiness = 1.0;
    let decide = |level| routes.decide(&none, &c, 4, level).unwrap().route;
    // At `balanced` photo and text both run SPAN: it stays a photo.
    assert_eq!(decide(QualityLevel::Balanced), Class::Photo);
    // At `best` the photo route is generative: unprotected type is not
    // worth the chance, and the fidelity model runs.
    assert_eq!(decide(QualityLevel::Best), Class::Text);
    let model = routes.pick(&none, &c, 4, QualityLevel::Best).unwrap();
    let kind = catalog.get(model).unwrap().kind;
    assert_eq!(
        kind,
        upscaled::models::catalog::ModelKind::Fidelity,
        "{model}"
    );
    // A sure photo keeps the generative model at `best`.
    c.probabilities = Some(upscaled::smart::classify::cost::Probabilities {
        photo: 0.99,
        face: 0.0,
        text: 0.01,
        illustration: 0.0,
    });
    let model = routes.pick(&none, &c, 4, QualityLevel::Best).unwrap();
    let kind = catalog.get(model).unwrap().kind;
    assert_eq!(
        kind,
        upscaled::models::catalog::ModelKind::Generative,
        "{model}"
    );
}
