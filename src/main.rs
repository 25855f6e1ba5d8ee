//! The `upscaled` command line: its flags, and which subcommand runs.
//! Each subcommand lives in `src/cli/`; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use upscaled::config::{Config, LogFormat};
use upscaled::fetch;
use upscaled::smart::QualityLevel;

use cli::common::parse_level;

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
    Process(cli::process::ProcessArgs),
    /// Say what each image is (photo, face, text, illustration), one JSON line each.
    Classify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// JSON lines (the default; kept for scripts that pass it).
        #[arg(long)]
        json: bool,
        /// Also print the head's input vector for each file (what
        /// scripts/train_head.py trains on).
        #[arg(long)]
        inputs: bool,
    },
    /// Print Smart mode's decision for a file and why, without processing it.
    Explain(cli::explain::ExplainArgs),
    /// Render a labelled side-by-side sheet of one crop: the full frame, the
    /// original pixels, bicubic, then the model Smart mode picks and its
    /// alternatives.
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
    /// List the built-in platform presets: what they write, the platform's
    /// rules and their sources.
    Presets,
    /// Validate a config file; exits non-zero and lists every error.
    CheckConfig { file: PathBuf },
    /// Install and inspect super-resolution models.
    #[command(subcommand)]
    Models(cli::models::ModelsCommand),
    /// Take jobs of a cluster's coordinator from NATS and run them until
    /// SIGTERM (docs/cluster.md). Needs no access to the hot folders.
    Worker(cli::worker::WorkerArgs),
    /// Look at a cluster: its workers and queue.
    #[command(subcommand)]
    Cluster(cli::worker::ClusterCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (upscaled.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// Fetch the scikit-image sample photos into the cache (for tests and demos).
    #[command(hide = true)]
    FetchSamples,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = match &cli.command {
        Command::Run { config, .. } => Config::load(config)
            .map(|c| c.log_format == LogFormat::Json)
            .unwrap_or(false),
        _ => false,
    };
    cli::logging::init(json_logs);
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
        Command::Run { config, workers } => cli::daemon::run(config, workers),
        Command::Process(args) => cli::process::run(args),
        Command::Classify {
            files,
            json: _,
            inputs,
        } => Ok(cli::classify::run(&files, inputs)),
        Command::Explain(args) => cli::explain::run(&args),
        Command::Compare {
            file,
            output,
            scale,
            crop,
            level,
        } => cli::compare::run(&file, &output, scale, crop, level),
        Command::Presets => Ok(cli::presets::run()),
        Command::CheckConfig { file } => Ok(cli::check_config::run(&file)),
        Command::Models(command) => cli::models::run(command),
        Command::Worker(args) => cli::worker::run(args),
        Command::Cluster(command) => cli::worker::status(command),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "upscaled",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => write_manpages(&dir),
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

/// `upscaled.1`, and `upscaled-<sub>.1` for each visible subcommand (and
/// theirs), generated from the same clap definitions as `--help`.
fn write_manpages(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    Ok(ExitCode::SUCCESS)
}
