//! The pipeline, callable without the daemon. A file goes through these stages, in
//! this order and never another:
//!
//! decode → crop (trim) → route → upscale → resize → encode (once per format) → write
//!
//! Each stage is its own module; this one holds the job description and the loop.

#[cfg(feature = "aom")]
pub mod avif_aom;
pub mod avif_xmp;
pub mod background;
pub mod crop;
pub mod decode;
mod decode_modern;
pub mod encode;
pub mod metadata;
pub mod resize;
pub mod source;
pub mod upscale;
pub mod webp_bands;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::deadline;
use crate::error::{JobError, Stage, StageError};
use crate::raster::Raster;
use crate::smart::classify;
use crate::smart::route::{self, ModelChoice, Route, ScaleChoice};
use decode::DecodeLimits;
use encode::{EncodeSettings, OutputFormat};
use metadata::MetadataMode;
use upscale::{Fixed, Upscaler, UpscalerSource};
use write::Collision;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// The whole image inside the box.
    #[default]
    Contain,
    /// Fill the box, cropping the centre.
    Cover,
    /// Contain, then pad to the exact box with the background colour.
    Pad,
}

impl Fit {
    /// The name in a config file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fit::Contain => "contain",
            Fit::Cover => "cover",
            Fit::Pad => "pad",
        }
    }
}

/// The box an output must fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Fit,
    pub background: [u8; 3],
    /// In `pad` mode, the share of the box the subject fills (Amazon: 0.85).
    pub fill: Option<f64>,
    /// The platform wants the picture on pure white (checked; warns when not).
    #[serde(default)]
    pub white_required: bool,
    /// `background: whiten`: near-white background touching the border
    /// becomes pure white.
    #[serde(default)]
    pub whiten: bool,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            width: None,
            height: None,
            fit: Fit::Contain,
            background: [255, 255, 255],
            fill: None,
            white_required: false,
            whiten: false,
        }
    }
}

impl Target {
    pub fn fill_share(&self) -> f64 {
        match (self.fit, self.fill) {
            (Fit::Pad, Some(f)) => f.clamp(0.05, 1.0),
            _ => 1.0,
        }
    }
}

/// Parses `#RRGGBB` (or `RRGGBB`).
pub fn parse_colour(text: &str) -> Result<[u8; 3], String> {
    let hex = text.trim().trim_start_matches('#');
    let valid = hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit());
    if !valid {
        return Err(format!("colour must look like #RRGGBB, not {text:?}"));
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("checked hex");
    Ok([byte(0), byte(2), byte(4)])
}

/// Everything the pipeline needs to know to turn one input into its outputs.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub target: Option<Target>,
    pub formats: Vec<OutputFormat>,
    pub quality: Option<u8>,
    pub max_bytes: Option<u64>,
    pub scale: ScaleChoice,
    /// Auto, a model the job insists on, or none at all (the folder's
    /// `smart.model`, `--model`).
    pub model: ModelChoice,
    /// Smart mode's speed/quality trade-off (the folder's `smart.quality`).
    pub level: crate::smart::QualityLevel,
    /// The config file's `routes:` over the built-in routing table.
    pub routes: std::sync::Arc<crate::smart::route::RouteOverrides>,
    /// Keep the upscaled image for the next target of the same file (the
    /// caller then calls `Pipeline::forget` when the file is done).
    pub reuse_upscale: bool,
    pub trim: bool,
    pub metadata: MetadataMode,
    pub limits: DecodeLimits,
    /// Below this long side a warning says the source is too small for the job.
    pub min_source_side: Option<u32>,
    pub avif_speed: u8,
    pub threads: usize,
    /// The config's `limits.seconds_per_file` (None: no limit).
    pub time_limit: Option<std::time::Duration>,
    /// When this file's time is up; set per file from `time_limit`.
    pub deadline: Option<deadline::Deadline>,
}

impl Default for JobSpec {
    fn default() -> Self {
        let encode = EncodeSettings::default();
        JobSpec {
            target: None,
            formats: vec![OutputFormat::Webp],
            quality: None,
            max_bytes: None,
            scale: ScaleChoice::Auto,
            model: ModelChoice::Auto,
            level: crate::smart::QualityLevel::Balanced,
            routes: Default::default(),
            reuse_upscale: false,
            trim: false,
            metadata: MetadataMode::Strip,
            limits: DecodeLimits::default(),
            min_source_side: None,
            avif_speed: encode.avif_speed,
            threads: encode.threads,
            time_limit: None,
            deadline: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputReport {
    pub path: PathBuf,
    pub format: OutputFormat,
    pub bytes: u64,
    pub quality: Option<u8>,
    pub trials: u32,
}

/// What happened to one file: the basis of the one log line per file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobReport {
    pub input: PathBuf,
    pub source_format: String,
    pub source_size: (u32, u32),
    pub output_size: (u32, u32),
    pub needed_scale: f64,
    pub model_scale: u32,
    /// None: not classified, because no model was going to run.
    pub class: Option<classify::Class>,
    pub class_confidence: Option<f64>,
    pub faces: Option<usize>,
    pub jpeg_damaged: Option<bool>,
    pub upscaler: String,
    pub outputs: Vec<OutputReport>,
    /// Milliseconds per stage, in pipeline order.
    pub stage_ms: Vec<(String, f64)>,
    pub warnings: Vec<String>,
    /// The cluster worker that rendered it (None: this process).
    #[serde(default)]
    pub worker: Option<String>,
}

/// What `Pipeline::choose` decided for one file and target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub model: Option<String>,
    pub model_scale: u32,
    /// The size the route saw (after trim) and how much it must grow.
    pub routed_size: (u32, u32),
    pub needed: f64,
    /// `model: none`: interpolation alone reaches the target.
    #[serde(default)]
    pub no_model: bool,
}

/// A file decoded, cropped, classified and routed.
struct Prepared {
    info: decode::SourceInfo,
    raster: Raster,
    source_size: (u32, u32),
    /// None when no model will run: nothing would read it.
    classification: Option<classify::Classification>,
    route: Route,
    warnings: Vec<String>,
}

/// Encoded outputs in memory, before the write stage.
pub struct Rendered {
    pub report: JobReport,
    pub encoded: Vec<encode::Encoded>,
}

/// The last upscale results, keyed by (upscaler, scale, trim, SHA-256 of the
/// source): a folder with several targets upscales each file once.
type UpscaleCache = Mutex<Vec<((String, u32, bool, [u8; 32]), Raster)>>;

pub struct Pipeline {
    upscalers: Box<dyn UpscalerSource>,
    last_upscale: UpscaleCache,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

impl Pipeline {
    /// Drops the kept upscale results of a file (see `JobSpec::reuse_upscale`).
    pub fn forget(&self, bytes: &[u8]) {
        let d = digest(bytes);
        if let Ok(mut c) = self.last_upscale.lock() {
            c.retain(|(k, _)| k.3 != d);
        }
    }

    /// A pipeline that always uses `upscaler`.
    pub fn new(upscaler: Box<dyn Upscaler>) -> Self {
        Pipeline {
            upscalers: Box::new(Fixed(Arc::from(upscaler))),
            last_upscale: Mutex::new(Vec::new()),
        }
    }

    /// A pipeline that asks `upscalers` for the model of each routed scale.
    pub fn with_source(upscalers: Box<dyn UpscalerSource>) -> Self {
        Pipeline {
            upscalers,
            last_upscale: Mutex::new(Vec::new()),
        }
    }

    /// Decode, crop, classify and route: what both `render` and `choose` need.
    fn prepare(
        &self,
        bytes: &[u8],
        spec: &JobSpec,
        timer: &mut StageTimer,
    ) -> Result<Prepared, StageError> {
        let decoded = decode::decode(bytes, &spec.limits)?;
        timer.lap(Stage::Decode);
        let mut warnings = decoded.info.notes.clone();
        let source_size = (decoded.raster.width, decoded.raster.height);
        if let Some(min) = spec.min_source_side
            && source_size.0.max(source_size.1) < min
        {
            warnings.push(format!(
                "source is {}x{}, under the {min} px the target platform recommends",
                source_size.0, source_size.1
            ));
        }

        let mut raster = decoded.raster;
        if spec.trim
            && let Some(trimmed) = crop::trim_uniform_border(&raster)
        {
            raster = trimmed;
        }
        if let Some(t) = spec.target.as_ref().filter(|t| t.white_required) {
            let border = background::border(&raster);
            warnings.extend(background::white_rule_warning(border, t.whiten));
        }
        timer.lap(Stage::Crop);

        let route = route::route(
            raster.width,
            raster.height,
            spec.target.as_ref(),
            spec.scale,
            &spec.model,
        );
        warnings.extend(route.warning.clone());

        // Classification only serves the choice of a model: a file no model
        // touches (covered already, or `model: none`) skips it, and with it
        // every network it would run.
        deadline::check(spec.deadline.as_ref(), Stage::Classify)?;
        let classification = (route.model_scale > 1).then(|| {
            let mut c = classify::classify(&raster, bytes, self.upscalers.networks());
            self.upscalers.settle_route(&mut c, route.model_scale, spec);
            c
        });
        timer.lap(Stage::Classify);
        Ok(Prepared {
            info: decoded.info,
            raster,
            source_size,
            classification,
            route,
            warnings,
        })
    }

    /// The model a file's job needs (None: no model runs) and the scale it
    /// runs at, decided exactly as `render` decides it.
    pub fn choose(&self, bytes: &[u8], spec: &JobSpec) -> Result<Choice, StageError> {
        let mut timer = StageTimer::start();
        let p = self.prepare(bytes, spec, &mut timer)?;
        let model_scale = p.route.model_scale;
        let model = match &p.classification {
            Some(c) => Some(self.upscalers.model_name(&p.raster, model_scale, spec, c)?),
            None => None,
        };
        Ok(Choice {
            model,
            model_scale,
            routed_size: (p.raster.width, p.raster.height),
            needed: p.route.needed,
            no_model: p.route.no_model,
        })
    }

    /// Runs every stage except the write: decode to encoded bytes.
    pub fn render(
        &self,
        input: &Path,
        bytes: &[u8],
        spec: &JobSpec,
    ) -> Result<Rendered, StageError> {
        let mut timer = StageTimer::start();
        let Prepared {
            info,
            raster,
            source_size,
            classification,
            route:
                Route {
                    needed,
                    model_scale,
                    no_model,
                    ..
                },
            mut warnings,
        } = self.prepare(bytes, spec, &mut timer)?;
        let upscaler = if let Some(c) = &classification {
            let chosen = self.upscalers.for_scale(&raster, model_scale, spec, c)?;
            if !chosen.is_model() {
                warnings.push(format!(
                    "no super-resolution model installed: enlarged {model_scale}x by {} interpolation",
                    chosen.name()
                ));
            }
            Some(chosen)
        } else {
            None
        };
        timer.lap(Stage::Route);

        let residual = needed / model_scale as f64;
        let limit = route::interpolation_limit(no_model);
        // After the resize, so that what the model and resampler left near
        // white at the edge goes too; the pad, already white, carries the fill.
        let whiten = |mut r: Raster| {
            if spec.target.as_ref().is_some_and(|t| t.whiten) {
                background::whiten(&mut r);
            }
            r
        };
        let raster = match (&upscaler, &spec.target) {
            // One target and nothing kept for another: the model's rows flow
            // into the resize, and the enlarged image never exists whole.
            (Some(u), Some(target)) if !spec.reuse_upscale => {
                let (content, resize_ms) = fit_streamed(
                    u.as_ref(),
                    &raster,
                    model_scale,
                    spec.deadline.as_ref(),
                    target,
                    residual,
                    limit,
                )?;
                let started = Instant::now();
                let content = whiten(content);
                let resize_ms = resize_ms + started.elapsed().as_secs_f64() * 1e3;
                timer.lap_split(Stage::Upscale, Stage::Resize, resize_ms);
                content
            }
            // No model, or the enlarged image kept for the file's next
            // target: resized whole.
            (upscaler, target) => {
                let enlarged = match upscaler {
                    Some(u) => self.upscale_whole(u.as_ref(), raster, model_scale, spec, bytes)?,
                    None => raster,
                };
                timer.lap(Stage::Upscale);
                deadline::check(spec.deadline.as_ref(), Stage::Resize)?;
                let out = match target {
                    Some(target) => {
                        fit_within_interpolation_limit(&enlarged, target, residual, limit)?
                    }
                    None => enlarged,
                };
                let out = whiten(out);
                timer.lap(Stage::Resize);
                out
            }
        };

        let settings = EncodeSettings {
            quality: spec.quality,
            max_bytes: spec.max_bytes,
            background: spec
                .target
                .as_ref()
                .map_or([255, 255, 255], |t| t.background),
            high_bit_depth: info.bit_depth > 8,
            exif: metadata::output_exif(info.exif.as_deref(), spec.metadata),
            // Only a network's pixels need the AI label; interpolation is not one.
            xmp: upscaler.as_ref().filter(|u| u.is_model()).map(|u| {
                metadata::provenance_xmp(&metadata::Provenance {
                    model: u.name(),
                    scale: model_scale,
                })
            }),
            icc: (spec.metadata == MetadataMode::Keep).then(metadata::srgb_icc),
            avif_speed: spec.avif_speed,
            threads: spec.threads,
        };
        deadline::check(spec.deadline.as_ref(), Stage::Encode)?;
        let encoded = encode_all(&raster, &dedup(&spec.formats), &settings)?;
        timer.lap(Stage::Encode);

        Ok(Rendered {
            report: JobReport {
                input: input.to_path_buf(),
                source_format: info.format.to_string(),
                source_size,
                output_size: (raster.width, raster.height),
                needed_scale: needed,
                model_scale,
                class: classification.as_ref().map(|c| c.class),
                class_confidence: classification.as_ref().map(|c| c.confidence),
                faces: classification.as_ref().map(|c| c.faces.len()),
                jpeg_damaged: classification.as_ref().map(|c| c.jpeg_damaged()),
                upscaler: match upscaler {
                    Some(u) => u.name(),
                    None if no_model => NO_MODEL_UPSCALER.into(),
                    None => "none".into(),
                },
                outputs: Vec::new(),
                stage_ms: timer.laps,
                warnings,
                worker: None,
            },
            encoded,
        })
    }

    /// The whole enlarged image, shared through the kept results when the
    /// job keeps them for the file's other targets.
    fn upscale_whole(
        &self,
        u: &dyn Upscaler,
        raster: Raster,
        model_scale: u32,
        spec: &JobSpec,
        bytes: &[u8],
    ) -> Result<Raster, StageError> {
        // Several targets of one file share one inference.
        let key = (u.name(), model_scale, spec.trim, digest(bytes));
        let kept = || {
            spec.reuse_upscale
                .then(|| self.last_upscale.lock().ok())
                .flatten()
        };
        if let Some(hit) =
            kept().and_then(|c| c.iter().find(|(k, _)| *k == key).map(|(_, r)| r.clone()))
        {
            return Ok(hit);
        }
        let out = upscale::upscale(u, raster, model_scale, spec.deadline.as_ref())?;
        if let Some(mut c) = kept() {
            // One entry per worker is enough; keep two.
            if c.len() >= 2 {
                c.remove(0);
            }
            c.push((key, out.clone()));
        }
        Ok(out)
    }

    /// Runs the whole pipeline on one file; `output_path` names each format's output.
    pub fn process_file(
        &self,
        input: &Path,
        spec: &JobSpec,
        output_path: &dyn Fn(OutputFormat) -> PathBuf,
        collision: Collision,
    ) -> Result<JobReport, JobError> {
        let fail = |e: StageError| JobError::from_stage(input, e);
        let bytes = source::open_and_read(input, source::max_bytes(&spec.limits)).map_err(fail)?;
        let Rendered {
            mut report,
            encoded,
        } = self.render(input, &bytes, spec).map_err(fail)?;
        let started = Instant::now();
        for out in encoded {
            let path = write::write_atomic(&output_path(out.format), &out.bytes, collision)
                .map_err(fail)?;
            report.outputs.push(OutputReport {
                path,
                format: out.format,
                bytes: out.bytes.len() as u64,
                quality: out.quality,
                trials: out.trials,
            });
        }
        report.stage_ms.push((
            Stage::Write.to_string(),
            started.elapsed().as_secs_f64() * 1e3,
        ));
        Ok(report)
    }
}

/// What the report names as the upscaler of a `model: none` job.
pub const NO_MODEL_UPSCALER: &str = "model: none, Lanczos3 in linear light";

/// The resize never enlarges by more than `limit` (the interpolation limit)
/// after the model: past that, the content is kept smaller than the box
/// (route warns about it).
fn fit_within_interpolation_limit(
    raster: &Raster,
    target: &Target,
    residual: f64,
    limit: Option<f64>,
) -> Result<Raster, StageError> {
    let content_target = reachable_target(target, residual, limit);
    let content = resize::fit_to_target(raster, content_target.as_ref().unwrap_or(target))?;
    Ok(pad_reduced(content, target, content_target.is_some()))
}

/// A content made smaller than a `pad` box still goes on the whole box.
fn pad_reduced(content: Raster, target: &Target, reduced: bool) -> Raster {
    if !reduced || target.fit != Fit::Pad {
        return content;
    }
    let canvas = padded_canvas(target, (content.width, content.height));
    resize::pad(&content, canvas, target.background)
}

/// [`fit_within_interpolation_limit`] of the image `upscaler` enlarges, its
/// rows resized as the model finishes them. Returns the result and the
/// milliseconds spent resizing.
fn fit_streamed(
    upscaler: &dyn Upscaler,
    raster: &Raster,
    scale: u32,
    deadline: Option<&deadline::Deadline>,
    target: &Target,
    residual: f64,
    limit: Option<f64>,
) -> Result<(Raster, f64), StageError> {
    let (up_w, up_h) = (raster.width * scale, raster.height * scale);
    let content_target = reachable_target(target, residual, limit);
    let place = resize::placement(up_w, up_h, content_target.as_ref().unwrap_or(target));
    let mut resizer =
        resize::StreamedResize::new((up_w, up_h), raster.has_alpha, place.content, place.crop);
    let mut resize_ms = 0.0;
    let row_copy = resize::StreamedResize::bytes_per_source_pixel(raster.has_alpha);
    upscaler.upscale_rows(raster, scale, deadline, row_copy, &mut |first, rows| {
        let started = Instant::now();
        let pushed = resizer.push(first, rows);
        resize_ms += started.elapsed().as_secs_f64() * 1e3;
        pushed
    })?;
    let started = Instant::now();
    let mut content = resizer.finish()?;
    if upscaler.is_model() {
        // The flat-output check on what the model's rows became.
        upscale::check_not_flat(raster, &content, &upscaler.name())?;
    }
    if place.canvas != place.content {
        content = resize::pad(&content, place.canvas, target.background);
    }
    let out = pad_reduced(content, target, content_target.is_some());
    resize_ms += started.elapsed().as_secs_f64() * 1e3;
    Ok((out, resize_ms))
}

/// The smaller box the content gets when the target is out of the
/// interpolation limit's reach (None: the target as asked).
fn reachable_target(target: &Target, residual: f64, limit: Option<f64>) -> Option<Target> {
    let limit = limit?;
    if residual <= limit + 1e-6 {
        return None;
    }
    let shrink = limit / residual * target.fill_share();
    let scaled = |v: Option<u32>| v.map(|v| ((v as f64 * shrink).round() as u32).max(1));
    Some(Target {
        width: scaled(target.width),
        height: scaled(target.height),
        fit: if target.fit == Fit::Pad {
            Fit::Contain
        } else {
            target.fit
        },
        fill: None,
        ..target.clone()
    })
}

/// Pad still delivers the exact box the platform asked for.
fn padded_canvas(target: &Target, content: (u32, u32)) -> (u32, u32) {
    (
        target.width.unwrap_or(content.0).max(content.0),
        target.height.unwrap_or(content.1).max(content.1),
    )
}

/// The size `render` gives the file `choice` describes: what a worker's
/// output must measure.
pub fn expected_size(choice: &Choice, target: Option<&Target>) -> (u32, u32) {
    let (w, h) = choice.routed_size;
    let up = (w * choice.model_scale.max(1), h * choice.model_scale.max(1));
    let Some(target) = target else {
        return up;
    };
    let residual = choice.needed / choice.model_scale.max(1) as f64;
    match reachable_target(
        target,
        residual,
        route::interpolation_limit(choice.no_model),
    ) {
        None => resize::placement(up.0, up.1, target).canvas,
        Some(reduced) => {
            let content = resize::placement(up.0, up.1, &reduced).canvas;
            if target.fit == Fit::Pad {
                padded_canvas(target, content)
            } else {
                content
            }
        }
    }
}

/// Every format of one output, in the order asked. With several formats
/// and more than one thread they are encoded at once: WebP, PNG and JPEG
/// encoders use one core each, so AVIF's threads and theirs share the box
/// instead of taking turns.
fn encode_all(
    raster: &Raster,
    formats: &[OutputFormat],
    settings: &EncodeSettings,
) -> Result<Vec<encode::Encoded>, StageError> {
    if formats.len() < 2 || settings.threads < 2 {
        return formats
            .iter()
            .map(|&f| encode::encode(raster, f, settings))
            .collect();
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = formats
            .iter()
            .map(|&format| {
                scope.spawn(move || {
                    crate::error::set_stage(Stage::Encode);
                    encode::encode(raster, format, settings)
                })
            })
            .collect();
        // Joined in order, so the outputs (and the first error) are in the
        // order of `formats`, and a panic goes on up as it does when they
        // are encoded one by one.
        running
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

pub fn dedup(formats: &[OutputFormat]) -> Vec<OutputFormat> {
    let mut seen = Vec::new();
    for f in formats {
        if !seen.contains(f) {
            seen.push(*f);
        }
    }
    seen
}

struct StageTimer {
    last: Instant,
    laps: Vec<(String, f64)>,
}

impl StageTimer {
    fn start() -> Self {
        crate::error::set_stage(Stage::Decode);
        StageTimer {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    /// A lap in which `inner` took `inner_ms` of `stage`'s time (the
    /// streamed resize runs between the model's rows of tiles).
    fn lap_split(&mut self, stage: Stage, inner: Stage, inner_ms: f64) {
        let now = Instant::now();
        let total = (now - self.last).as_secs_f64() * 1e3;
        self.laps
            .push((stage.to_string(), (total - inner_ms).max(0.0)));
        self.laps.push((inner.to_string(), inner_ms));
        self.last = now;
        if let Some(next) = inner.next() {
            crate::error::set_stage(next);
        }
    }

    fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        self.laps
            .push((stage.to_string(), (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
        if let Some(next) = stage.next() {
            crate::error::set_stage(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadline::Deadline;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Interpolation that counts its calls.
    struct Counting(Arc<AtomicUsize>);

    impl Upscaler for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        fn is_model(&self) -> bool {
            true
        }
        fn upscale(
            &self,
            raster: &Raster,
            scale: u32,
            _: Option<&Deadline>,
        ) -> Result<Raster, StageError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            upscale::Interpolation.upscale(raster, scale, None)
        }
    }

    /// A source whose every network panics: a job that consults none passes.
    struct NoNetworkAllowed;

    impl UpscalerSource for NoNetworkAllowed {
        fn for_scale(
            &self,
            _: &Raster,
            _: u32,
            _: &JobSpec,
            _: &classify::Classification,
        ) -> Result<Arc<dyn Upscaler>, StageError> {
            panic!("an upscaler was asked for")
        }
        fn networks(&self) -> classify::Networks<'_> {
            panic!("the classification networks were asked for")
        }
    }

    fn small_png() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    fn square(side: u32) -> Option<Target> {
        Some(Target {
            width: Some(side),
            height: Some(side),
            ..Target::default()
        })
    }

    #[test]
    fn model_none_runs_no_network_and_interpolates_to_any_scale() {
        let pipeline = Pipeline::with_source(Box::new(NoNetworkAllowed));
        let png = small_png();
        // 40x30 into 400x400: 10x, five times what interpolation may do
        // after a model; a forced scale does not bring a model back.
        let spec = JobSpec {
            target: square(400),
            scale: ScaleChoice::X4,
            model: ModelChoice::NoModel,
            formats: vec![OutputFormat::Png],
            ..JobSpec::default()
        };
        let rendered = pipeline.render(Path::new("x.png"), &png, &spec).unwrap();
        let report = &rendered.report;
        assert_eq!(report.output_size, (400, 300));
        assert_eq!((report.model_scale, report.class), (1, None));
        assert_eq!(report.upscaler, NO_MODEL_UPSCALER);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // The plan a cluster worker's output is checked against agrees.
        let choice = pipeline.choose(&png, &spec).unwrap();
        assert_eq!((choice.model.as_deref(), choice.no_model), (None, true));
        assert_eq!(expected_size(&choice, spec.target.as_ref()), (400, 300));
        // The same job with models allowed stops at 4x + 2x.
        let capped = JobSpec {
            model: ModelChoice::Auto,
            ..spec.clone()
        };
        let plan = Pipeline::new(Box::new(upscale::Interpolation))
            .choose(&png, &capped)
            .unwrap();
        assert_eq!(expected_size(&plan, capped.target.as_ref()), (320, 240));
    }

    #[test]
    fn a_source_that_covers_its_target_is_not_classified() {
        let pipeline = Pipeline::with_source(Box::new(NoNetworkAllowed));
        let spec = JobSpec {
            target: square(20),
            formats: vec![OutputFormat::Png],
            ..JobSpec::default()
        };
        let rendered = pipeline
            .render(Path::new("x.png"), &small_png(), &spec)
            .unwrap();
        assert_eq!(rendered.report.output_size, (20, 15));
        assert_eq!(rendered.report.class, None);
        assert_eq!(rendered.report.upscaler, "none");
    }

    #[test]
    fn formats_encoded_at_once_are_the_bytes_encoded_one_by_one() {
        let raster = decode::decode(&small_png(), &DecodeLimits::default())
            .unwrap()
            .raster;
        let settings = EncodeSettings {
            threads: 2,
            ..EncodeSettings::default()
        };
        let formats = [OutputFormat::Webp, OutputFormat::Png, OutputFormat::Jpeg];
        let together = encode_all(&raster, &formats, &settings).unwrap();
        assert_eq!(together.len(), formats.len());
        for (out, &format) in together.iter().zip(&formats) {
            let alone = encode::encode(&raster, format, &settings).unwrap();
            assert_eq!(out.format, format, "in the order asked");
            assert!(
                out.bytes == alone.bytes,
                "{format:?} differs when encoded beside others"
            );
        }
    }

    #[test]
    fn targets_of_one_file_share_one_upscale() {
        let calls = Arc::new(AtomicUsize::new(0));
        let pipeline = Pipeline::new(Box::new(Counting(calls.clone())));
        let png = small_png();
        let spec = |w: u32, reuse: bool| JobSpec {
            target: square(w),
            scale: ScaleChoice::X2,
            formats: vec![OutputFormat::Png],
            reuse_upscale: reuse,
            ..JobSpec::default()
        };
        let input = Path::new("x.png");
        pipeline.render(input, &png, &spec(60, true)).unwrap();
        pipeline.render(input, &png, &spec(70, true)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        pipeline.forget(&png);
        pipeline.render(input, &png, &spec(60, true)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        pipeline.render(input, &png, &spec(60, false)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
