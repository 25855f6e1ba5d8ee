//! `upscaled classify`: what each image is, one JSON line per file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::collections::BTreeMap;

use serde::Serialize;
use upscaled::models::catalog::Catalog;
use upscaled::smart::QualityLevel;
use upscaled::smart::classify::{self, Class, Classification, Features, Networks, Probabilities};
use upscaled::smart::route::{ROUTED_SCALES, Routes};

/// One line of output. The field names are a public format: scripts
/// (scripts/eval_unseen.py, scripts/train_head.py and users' own) read them.
#[derive(Serialize)]
struct Line<'a> {
    file: &'a Path,
    /// The route Smart mode takes at 4x `balanced` (the least expected
    /// cost).
    class: Class,
    /// The probability of `class`, two decimals.
    confidence: f64,
    /// The most probable class; it differs from `class` where a mistake
    /// would cost too much to take the chance.
    likely: Class,
    /// The head's calibrated probabilities, three decimals; null without
    /// the drawing network (the rule tree decides then).
    probabilities: Option<Probabilities>,
    /// The route at each level and scale (`routes.best["4"]`): a detour
    /// through the same model costs nothing, so the route can differ by
    /// level. Absent with the rule tree.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    routes: BTreeMap<&'static str, BTreeMap<String, Class>>,
    faces: usize,
    jpeg_quality_estimate: Option<u8>,
    jpeg_damaged: bool,
    features: FeaturesOut<'a>,
    /// The head's input vector, with `--inputs` (for scripts/train_head.py).
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<&'a [f64]>,
    /// The names of those inputs, in order, with `--inputs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    input_names: Option<Vec<String>>,
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
    fn new(file: &'a Path, c: &'a Classification, ms: f64, inputs: bool, table: &Routes) -> Self {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        let mut routes = BTreeMap::new();
        for level in [
            QualityLevel::Fast,
            QualityLevel::Balanced,
            QualityLevel::Best,
        ] {
            let by_scale: BTreeMap<String, Class> = ROUTED_SCALES
                .iter()
                .filter_map(|&scale| {
                    let d = table.decide(&Default::default(), c, scale, level)?;
                    Some((scale.to_string(), d.route))
                })
                .collect();
            if !by_scale.is_empty() {
                routes.insert(level.name(), by_scale);
            }
        }
        let class = routes
            .get(QualityLevel::Balanced.name())
            .and_then(|r| r.get("4"))
            .copied()
            .unwrap_or(c.class);
        Line {
            file,
            class,
            routes,
            confidence: (c.probabilities.map_or(c.confidence, |p| p.of(class)) * 100.0).round()
                / 100.0,
            likely: c.likely(),
            probabilities: c.probabilities.map(|p| Probabilities {
                photo: round(p.photo),
                face: round(p.face),
                text: round(p.text),
                illustration: round(p.illustration),
            }),
            inputs: c.head_inputs.as_deref().filter(|_| inputs),
            input_names: (inputs && c.head_inputs.is_some()).then(classify::head::input_names),
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

pub fn run(files: &[PathBuf], inputs: bool) -> ExitCode {
    let table = match Catalog::builtin().and_then(|catalog| Routes::builtin(&catalog)) {
        Ok(table) => table,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
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
                serde_json::to_string(&Line::new(file, &c, ms, inputs, &table))
                    .map_err(|e| e.to_string())
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
