//! `upscaled compare`: one crop of a file through bicubic and the models Smart
//! mode would pick, as a sheet a client can read at a glance. Columns, left to
//! right: the full frame with the crop marked, the original pixels (nearest),
//! bicubic, then each model; under each, its label (what it is, kind, scale).

use std::path::Path;
use std::process::ExitCode;

use upscaled::pipeline::JobSpec;
use upscaled::pipeline::write::Collision;
use upscaled::raster::Raster;
use upscaled::smart::ModelLibrary;
use upscaled::smart::QualityLevel;
use upscaled::smart::classify;

use super::label;

const GAP: u32 = 8;

/// Pixels of the sheet a column's label strip takes below its image.
fn strip_height(size: u32) -> u32 {
    2 * label::line_height(size) + 6
}

pub fn run(
    file: &Path,
    output: &Path,
    scale: Option<u32>,
    side: u32,
    level: QualityLevel,
) -> anyhow::Result<ExitCode> {
    if super::common::same_file(file, output) {
        anyhow::bail!(
            "{} is the input; the sheet must go elsewhere",
            output.display()
        );
    }
    let (bytes, decoded) = super::common::read_input(file)?;
    let raster = decoded.raster.without_alpha();
    let scale = scale.unwrap_or(if raster.width.max(raster.height) <= 512 {
        4
    } else {
        2
    });
    anyhow::ensure!(matches!(scale, 2 | 4), "--scale must be 2 or 4");
    let library = super::common::inspection_library()?;
    let c = classify::classify(&raster, &bytes, library.networks());
    // The crop: around the first face, else the centre.
    let side = side.min(raster.width).min(raster.height).max(1);
    let (cx, cy) = c
        .faces
        .first()
        .map_or((raster.width / 2, raster.height / 2), |f| {
            (f.x + f.width / 2, f.y + f.height / 2)
        });
    let x0 = cx.saturating_sub(side / 2).min(raster.width - side);
    let y0 = cy.saturating_sub(side / 2).min(raster.height - side);
    let mut crop = Raster::new(side, side, false);
    for y in 0..side {
        let src = ((y0 + y) * raster.width + x0) as usize * 3;
        let dst = (y * side) as usize * 3;
        crop.data[dst..dst + side as usize * 3]
            .copy_from_slice(&raster.data[src..src + side as usize * 3]);
    }

    // The chosen level's pick first, then the other levels' and the default.
    let mut levels = vec![level];
    levels.extend(
        [
            QualityLevel::Balanced,
            QualityLevel::Fast,
            QualityLevel::Best,
        ]
        .into_iter()
        .filter(|l| *l != level),
    );
    let mut names = Vec::new();
    for l in levels {
        let spec = JobSpec {
            level: l,
            ..JobSpec::default()
        };
        names.push(library.choose(scale, &spec, &c));
    }
    names.push(ModelLibrary::default_for_scale(scale).to_string());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));

    let out_side = side * scale;
    let size = if out_side >= 320 { 2 } else { 1 };
    let columns = names.len() as u32 + 3;
    let mut sheet = image::RgbImage::from_pixel(
        columns * (out_side + GAP) - GAP,
        out_side + strip_height(size),
        image::Rgb([255, 255, 255]),
    );
    let mut column = 0u32;
    let mut put = |sheet: &mut image::RgbImage, img: &image::RgbImage, title: &str, info: &str| {
        let x = column * (out_side + GAP);
        image::imageops::replace(sheet, img, x as i64, 0);
        let y = out_side + 4;
        label::draw(sheet, x, y, title, size, out_side);
        label::draw(sheet, x, y + label::line_height(size), info, size, out_side);
        println!("column {}: {title} ({info})", column + 1);
        column += 1;
    };
    println!(
        "{}: {} (confidence {:.2}), {} face(s); crop {side}px at ({x0},{y0}), {scale}x",
        file.display(),
        c.class,
        c.confidence,
        c.faces.len()
    );

    let full =
        image::RgbImage::from_raw(raster.width, raster.height, raster.to_u8()).expect("size");
    put(
        &mut sheet,
        &thumbnail_with_box(&full, (x0, y0, side), out_side),
        "full frame",
        &format!("{}x{}", raster.width, raster.height),
    );
    let small = image::RgbImage::from_raw(side, side, crop.to_u8()).expect("crop size");
    let nearest = image::imageops::resize(&small, out_side, out_side, image::imageops::Nearest);
    put(
        &mut sheet,
        &nearest,
        "original pixels",
        &format!("nearest {scale}x"),
    );
    let bicubic = image::imageops::resize(&small, out_side, out_side, image::imageops::CatmullRom);
    put(
        &mut sheet,
        &bicubic,
        "bicubic",
        &format!("interpolation {scale}x"),
    );
    for (i, name) in names.iter().enumerate() {
        let model = library.load(name)?;
        let up = upscaled::pipeline::upscale::upscale(model.as_ref(), crop.clone(), scale, None)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let img =
            image::RgbImage::from_raw(up.width, up.height, up.to_u8()).expect("model output size");
        let kind = library
            .catalog()
            .get(name)
            .map(|e| format!("{:?}", e.kind).to_lowercase())
            .unwrap_or_else(|_| "model".into());
        let pick = if i == 0 {
            format!(", {} pick", level.name())
        } else {
            String::new()
        };
        put(&mut sheet, &img, name, &format!("{kind} {scale}x{pick}"));
    }

    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(sheet)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    upscaled::pipeline::write::write_atomic(output, &png, Collision::Replace)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("wrote {}", output.display());
    Ok(ExitCode::SUCCESS)
}

/// The whole picture fitted into a `side` square, with the crop outlined in red.
fn thumbnail_with_box(
    full: &image::RgbImage,
    (x0, y0, crop): (u32, u32, u32),
    side: u32,
) -> image::RgbImage {
    let k = side as f64 / full.width().max(full.height()) as f64;
    let (w, h) = (
        ((full.width() as f64 * k).round() as u32).clamp(1, side),
        ((full.height() as f64 * k).round() as u32).clamp(1, side),
    );
    let small = image::imageops::resize(full, w, h, image::imageops::Triangle);
    let mut cell = image::RgbImage::from_pixel(side, side, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut cell, &small, 0, 0);
    let at = |v: u32| ((v as f64 * k).round() as u32).min(side - 1);
    let (bx0, by0) = (at(x0), at(y0));
    let (bx1, by1) = (at(x0 + crop).max(bx0 + 2), at(y0 + crop).max(by0 + 2));
    let red = image::Rgb([230, 20, 20]);
    for x in bx0..=bx1.min(side - 1) {
        cell.put_pixel(x, by0, red);
        cell.put_pixel(x, by1.min(side - 1), red);
    }
    for y in by0..=by1.min(side - 1) {
        cell.put_pixel(bx0, y, red);
        cell.put_pixel(bx1.min(side - 1), y, red);
    }
    cell
}
