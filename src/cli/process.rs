//! `upscaled process`: the pipeline on files named on the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use upscaled::models::tiled::TileSettings;
use upscaled::models::{Catalog, models_dir};
use upscaled::pipeline::encode::{DEFAULT_AVIF_SPEED, OutputFormat};
use upscaled::pipeline::metadata::MetadataMode;
use upscaled::pipeline::write::Collision;
use upscaled::pipeline::{JobReport, JobSpec, Pipeline};
use upscaled::smart::ModelLibrary;
use upscaled::smart::QualityLevel;
use upscaled::smart::route::{ModelChoice, NO_MODEL_HAS_NO_SCALE, ScaleChoice};

use super::common::parse_level;
use super::target::TargetArgs;

#[derive(Args)]
pub struct ProcessArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output folder.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// auto, a model name from the catalog, or none (no neural network at
    /// all: interpolation to the target at any scale).
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// auto, 1, 2 or 4.
    #[arg(long, default_value = "auto")]
    pub scale: ScaleChoice,
    /// Smart mode's trade-off: fast, balanced or best (generative models).
    #[arg(long, default_value = "balanced", value_parser = parse_level)]
    pub level: QualityLevel,
    /// Trim uniform borders before upscaling.
    #[arg(long)]
    pub trim: bool,
    /// strip (keep only Artist/Copyright) or keep (EXIF minus orientation/thumbnail).
    #[arg(long, value_enum, default_value = "strip")]
    pub metadata: MetadataMode,
    /// AVIF encoder speed 1..=10.
    #[arg(long, default_value_t = DEFAULT_AVIF_SPEED, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub avif_speed: u8,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model tile size in input pixels (0: whole image at once).
    #[arg(long, default_value_t = TileSettings::default().tile)]
    pub tile: u32,
    /// Peak memory for one image's upscale in MiB: tiles shrink to fit it.
    #[arg(long, default_value_t = TileSettings::default().memory_mib, value_parser = clap::value_parser!(u32).range(1..))]
    pub memory_mib: u32,
    /// Print one JSON report per file on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The job of every file: the target as a folder's YAML would build it,
/// then the Smart mode and encoder flags.
fn job_spec(args: &ProcessArgs) -> anyhow::Result<JobSpec> {
    let target = args.target.output_target()?;
    let mut spec = target.apply_to(JobSpec {
        scale: args.scale,
        level: args.level,
        trim: args.trim,
        metadata: args.metadata,
        avif_speed: args.avif_speed,
        ..JobSpec::default()
    });
    if let Some(t) = args.threads {
        spec.threads = t.max(1);
    }
    Ok(spec)
}

pub fn run(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let mut spec = job_spec(&args)?;
    let catalog = Catalog::builtin()?.with_user_models(&models_dir())?;
    let choice = ModelChoice::parse(&args.model);
    if choice == ModelChoice::NoModel {
        if spec.scale != ScaleChoice::Auto {
            anyhow::bail!("--scale: with --model none {NO_MODEL_HAS_NO_SCALE}; leave --scale out");
        }
        spec.model = ModelChoice::NoModel;
    }
    let forced = choice.named().map(str::to_string);
    if let Some(name) = &forced {
        // A forced model sets the scale; an explicit different scale is a mistake.
        let model_scale = catalog.get(name)?.scale;
        match (spec.scale, model_scale) {
            (ScaleChoice::Auto, 2) => spec.scale = ScaleChoice::X2,
            (ScaleChoice::Auto, 4) => spec.scale = ScaleChoice::X4,
            (ScaleChoice::X2, 2) | (ScaleChoice::X4, 4) => {}
            (choice, s) => anyhow::bail!(
                "model {name} enlarges {s}x, which does not match --scale {choice:?} (only 2x and 4x models can be forced)"
            ),
        }
    }
    let tiles = TileSettings {
        tile: args.tile,
        memory_mib: args.memory_mib,
        ..TileSettings::default()
    };
    let library = ModelLibrary::new(catalog, models_dir(), spec.threads, tiles, forced)?;
    let pipeline = Pipeline::with_source(Box::new(library));
    let progress = super::progress::files_bar(args.files.len());
    let mut failures = 0;
    for input in &args.files {
        let stem = input
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("output")
            .to_string();
        let out_dir = args.output.clone();
        let name = move |f: OutputFormat| out_dir.join(format!("{stem}.{}", f.extension()));
        // Rename: a file that exists (the input itself, an earlier run's
        // output, another input's of the same stem) is never replaced; the
        // report and the log name the path actually written.
        match pipeline.process_file(input, &spec, &name, Collision::Rename) {
            Ok(report) => {
                log_report(&report);
                if args.json {
                    println!("{}", serde_json::to_string(&report)?);
                }
            }
            Err(e) => {
                failures += 1;
                tracing::error!(file = %e.file.display(), stage = %e.stage, "{e}");
            }
        }
        if let Some(bar) = &progress {
            bar.inc(1);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if failures > 0 {
        tracing::error!("{failures} of {} files failed", args.files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per file: sizes, model, outputs and time per stage.
fn log_report(r: &JobReport) {
    for w in &r.warnings {
        tracing::warn!(file = %r.input.display(), "{w}");
    }
    let outputs: Vec<String> = r
        .outputs
        .iter()
        .map(|o| match o.quality {
            Some(q) => format!("{} ({} B, q{q})", o.path.display(), o.bytes),
            None => format!("{} ({} B)", o.path.display(), o.bytes),
        })
        .collect();
    let stages: Vec<String> = r
        .stage_ms
        .iter()
        .map(|(s, ms)| format!("{s}={ms:.0}ms"))
        .collect();
    tracing::info!(
        file = %r.input.display(),
        "done {}x{} -> {}x{}, upscale {}x ({}), {}; {}",
        r.source_size.0,
        r.source_size.1,
        r.output_size.0,
        r.output_size.1,
        r.model_scale,
        r.upscaler,
        outputs.join(", "),
        stages.join(" ")
    );
}
