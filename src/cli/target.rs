//! The target flags of `process` and `explain`, turned into a job target by
//! the config's own target code (`config::command_line_target`), so the
//! command line and a folder's YAML have one set of defaults and errors.

use clap::Args;
use upscaled::config::OutputTarget;
use upscaled::config::raw::RawTarget;
use upscaled::pipeline::Fit;
use upscaled::pipeline::encode::OutputFormat;

/// The box: a preset, or explicit sides (both may be given: the sides
/// override the preset's).
#[derive(Args)]
pub struct BoxArgs {
    /// A platform preset (see `upscaled presets`).
    #[arg(long)]
    pub preset: Option<String>,
    #[arg(long)]
    pub width: Option<u32>,
    #[arg(long)]
    pub height: Option<u32>,
    #[arg(long, value_enum)]
    pub fit: Option<Fit>,
}

/// The box and what to write for it.
#[derive(Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub boxed: BoxArgs,
    /// Pad colour, and what replaces transparency in JPEG: '#RRGGBB'; or
    /// 'whiten': white, with near-white borders made pure white.
    #[arg(long)]
    pub background: Option<String>,
    /// Share of the box the subject fills in pad mode (0.05..1).
    #[arg(long)]
    pub fill: Option<f64>,
    /// Output format; repeat for several outputs from one decode.
    #[arg(long = "format", value_enum)]
    pub formats: Vec<OutputFormat>,
    /// Write formats the preset's platform does not accept.
    #[arg(long)]
    pub allow_other_formats: bool,
    /// 1..=100 (default: the preset's, else each format's own).
    #[arg(long)]
    pub quality: Option<u8>,
    /// Largest output in bytes: the highest quality that fits is searched.
    #[arg(long)]
    pub max_bytes: Option<u64>,
}

impl BoxArgs {
    fn raw(&self) -> RawTarget {
        RawTarget {
            preset: self.preset.clone(),
            width: self.width,
            height: self.height,
            fit: self.fit.map(|f| f.name().to_string()),
            ..RawTarget::default()
        }
    }

    pub fn output_target(&self) -> anyhow::Result<OutputTarget> {
        upscaled::config::command_line_target(self.raw()).map_err(anyhow::Error::msg)
    }
}

impl TargetArgs {
    pub fn output_target(&self) -> anyhow::Result<OutputTarget> {
        let raw = RawTarget {
            background: self.background.clone(),
            fill: self.fill,
            formats: (!self.formats.is_empty())
                .then(|| self.formats.iter().map(|f| f.to_string()).collect()),
            quality: self.quality,
            max_bytes: self.max_bytes,
            allow_other_formats: Some(self.allow_other_formats),
            ..self.boxed.raw()
        };
        upscaled::config::command_line_target(raw).map_err(anyhow::Error::msg)
    }
}
