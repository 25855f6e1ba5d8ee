//! `upscaled explain`: Smart mode's decision for one file and the evidence
//! behind it, without processing it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use upscaled::config::Config;
use upscaled::pipeline::JobSpec;
use upscaled::pipeline::upscale::UpscalerSource;
use upscaled::smart::ModelLibrary;
use upscaled::smart::QualityLevel;
use upscaled::smart::route::{ModelChoice, ScaleChoice};

use super::common::parse_level;
use super::target::BoxArgs;

#[derive(Args)]
pub struct ExplainArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub boxed: BoxArgs,
    #[arg(long, default_value = "auto")]
    pub scale: ScaleChoice,
    #[arg(long, default_value = "balanced", value_parser = parse_level)]
    pub level: QualityLevel,
    /// auto, or none (the no-invention mode: what interpolation alone does).
    #[arg(long, default_value = "auto", value_parser = ["auto", "none"])]
    pub model: String,
    /// Use this config file's `routes:` (as the daemon would).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    use upscaled::smart::{classify, route};
    let (bytes, decoded) = super::common::read_input(&args.file)?;
    let raster = &decoded.raster;
    let target = args.boxed.output_target()?.target;
    let model = ModelChoice::parse(&args.model);
    let r = route::route(
        raster.width,
        raster.height,
        target.as_ref(),
        args.scale,
        &model,
    );
    println!("file:       {}", args.file.display());
    println!(
        "source:     {}x{} {}",
        raster.width, raster.height, decoded.info.format
    );
    if r.no_model {
        // As in the pipeline: not even the classifiers run.
        println!("class:      not classified (--model none runs no network)");
        print_target(target.as_ref(), r.needed);
        println!(
            "decision:   no model (--model none): Lanczos3 in linear light does all {:.2}x; \
             no pixel is invented, and the output carries no AI label",
            r.needed
        );
        return Ok(ExitCode::SUCCESS);
    }
    let library = super::common::inspection_library()?;
    let mut c = classify::classify(raster, &bytes, library.networks());
    let routes = match &args.config {
        Some(file) => {
            let config = Config::load_routes(file).map_err(|e| anyhow::anyhow!("{e}"))?;
            config
                .check_models(file, library.catalog())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            config.routes
        }
        None => Default::default(),
    };
    let spec = JobSpec {
        level: args.level,
        routes,
        ..JobSpec::default()
    };
    // The route for this job's scale and level, as the pipeline settles it.
    if r.model_scale > 1 {
        library.settle_route(&mut c, r.model_scale, &spec);
    }
    println!(
        "class:      {} (confidence {:.2}); {} face(s); JPEG quality {}{}",
        c.class,
        c.confidence,
        c.faces.len(),
        c.jpeg_quality_estimate
            .map_or("n/a".into(), |q| q.to_string()),
        if c.jpeg_damaged() {
            ", damaged: a denoising model is used"
        } else {
            ""
        }
    );
    match (&c.probabilities, &c.decision) {
        (Some(p), Some(d)) => {
            println!(
                "probabilities: photo {:.3}, face {:.3}, text {:.3}, illustration {:.3} \
                 (most likely {})",
                p.photo,
                p.face,
                p.text,
                p.illustration,
                c.likely()
            );
            let costs: Vec<String> = classify::cost::CLASSES
                .iter()
                .zip(d.expected_costs)
                .map(|(class, cost)| format!("{class} {cost:.2}"))
                .collect();
            println!(
                "route:      {} by least expected cost at {}x {} ({}; routes that run the same \
                 model cost nothing between them; docs/smart-mode.md, \"Cost\"){}",
                d.route,
                r.model_scale,
                args.level.name(),
                costs.join(", "),
                if d.route != c.likely() {
                    ", not the most likely class: that mistake would cost more"
                } else {
                    ""
                }
            );
        }
        _ => println!(
            "route:      {} by the rule tree (no drawing network installed)",
            c.class
        ),
    }
    if let Some(s) = c.subject {
        println!(
            "subject:    {}x{} at ({}, {}) on a plain backdrop: classified without the backdrop",
            s.width, s.height, s.x, s.y
        );
    }
    let f = &c.features;
    println!(
        "evidence:   largest face {:.0}% of the frame; {}; {}",
        f.face_share * 100.0,
        match (f.text_lines, f.text_share, f.close_text_lines) {
            (Some(n), Some(share), close) => format!(
                "{n} line(s) of type over {:.0}% of the frame{}",
                share * 100.0,
                close.map_or(String::new(), |c| format!(", {c} on a closer look"))
            ),
            _ => "no text detector".into(),
        },
        f.drawn.map_or("no drawing classifier".into(), |d| format!(
            "drawn {d:.2} (the drawing network's Drawing + Hentai)"
        )),
    );
    print_target(target.as_ref(), r.needed);
    if r.model_scale <= 1 {
        println!("decision:   no upscale: the source already covers the target; resize only");
        return Ok(ExitCode::SUCCESS);
    }
    let model = library.choose(r.model_scale, &spec, &c);
    let entry = library.catalog().get(&model)?;
    println!(
        "decision:   {}x with {model} ({:?}, {})",
        r.model_scale, entry.kind, entry.licence,
    );
    let generative = entry.kind == upscaled::models::catalog::ModelKind::Generative;
    if generative {
        use upscaled::smart::protect::RegionKind;
        let regions = library.protected_regions(raster, &c);
        let count = |k| regions.iter().filter(|r| r.kind == k).count();
        println!(
            "protected:  {} face(s), {} line(s) of text: taken from {}, blended in",
            count(RegionKind::Face),
            count(RegionKind::Text),
            ModelLibrary::default_for_scale(r.model_scale)
        );
    }
    if let Some(w) = &r.warning {
        println!("warning:    {w}");
    }
    let megapixels = raster.width as f64 * raster.height as f64 / 1e6;
    let rate = |m: &str| upscaled::models::seconds_per_megapixel(m);
    // A protected picture also goes through the fidelity model.
    let fidelity = generative.then(|| ModelLibrary::default_for_scale(r.model_scale));
    match rate(&model) {
        Some(s) => {
            let extra = fidelity.and_then(rate).unwrap_or(0.0);
            println!(
                "estimate:   ~{:.1} s of inference on 2 CPU cores ({s} s per input megapixel{})",
                (s + extra) * megapixels,
                if extra > 0.0 {
                    ", plus the fidelity pass"
                } else {
                    ""
                }
            )
        }
        None => println!("estimate:   no measured speed for this model"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_target(target: Option<&upscaled::pipeline::Target>, needed: f64) {
    match target {
        Some(t) => println!(
            "target:     {}x{} {:?}: needs {needed:.2}x",
            t.width.map_or("auto".into(), |w| w.to_string()),
            t.height.map_or("auto".into(), |h| h.to_string()),
            t.fit,
        ),
        None => println!("target:     none (scale only)"),
    }
}
