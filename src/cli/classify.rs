//! `upscaled classify`: what each image is, one JSON line per file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use upscaled::pipeline::classify::{self, Class, Classification, Features, Networks};

/// One line of output. The field names are a public format: scripts
/// (scripts/unseen_summary.py and users' own) read them.
#[derive(Serialize)]
struct Line<'a> {
    file: &'a Path,
    class: Class,
    /// Two decimals: more digits would claim a precision the rules lack.
    confidence: f64,
    faces: usize,
    jpeg_quality_estimate: Option<u8>,
    jpeg_damaged: bool,
    features: FeaturesOut<'a>,
    /// Classification time, to a tenth of a millisecond.
    ms: f64,
}

#[derive(Serialize)]
struct FeaturesOut<'a> {
    #[serde(flatten)]
    features: &'a Features,
    blockiness: f64,
}

impl<'a> Line<'a> {
    fn new(file: &'a Path, c: &'a Classification, ms: f64) -> Self {
        Line {
            file,
            class: c.class,
            confidence: (c.confidence * 100.0).round() / 100.0,
            faces: c.faces.len(),
            jpeg_quality_estimate: c.jpeg_quality_estimate,
            jpeg_damaged: c.jpeg_damaged(),
            features: FeaturesOut {
                features: &c.features,
                blockiness: c.blockiness,
            },
            ms: (ms * 10.0).round() / 10.0,
        }
    }
}

pub fn run(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    let (text, drawing) = super::common::classification_networks();
    let networks = Networks {
        text: text.as_ref(),
        drawing: drawing.as_ref(),
    };
    for file in files {
        let line = super::common::read_input(file)
            .map_err(|e| e.to_string())
            .and_then(|(bytes, decoded)| {
                let started = std::time::Instant::now();
                let c = classify::classify(&decoded.raster, &bytes, networks);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                serde_json::to_string(&Line::new(file, &c, ms)).map_err(|e| e.to_string())
            });
        match line {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
