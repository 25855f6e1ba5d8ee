//! Stage: enlarge by the routed factor.
//!
//! This is the place where the super-resolution models plug in (see the models
//! issue): an `Upscaler` turns a raster into one exactly `scale` times larger.
//! Until a model engine is installed, `Interpolation` stands in: Lanczos3 in
//! linear light, and the job's log says that no model was used.

use std::sync::Arc;

use crate::deadline::Deadline;
use crate::error::{Stage, StageError};
pub use crate::models::Upscaler;
use crate::pipeline::JobSpec;
use crate::pipeline::resize::resize;
use crate::raster::Raster;
use crate::smart::classify::{Classification, Networks};

/// Hands the pipeline the upscaler for a routed scale (the model library, or
/// one fixed upscaler in tests and benchmarks).
pub trait UpscalerSource: Send + Sync {
    /// `spec.model` names a model the job insists on; otherwise the source
    /// decides, from the classification where it has one.
    fn for_scale(
        &self,
        raster: &Raster,
        scale: u32,
        spec: &JobSpec,
        classification: &Classification,
    ) -> Result<Arc<dyn Upscaler>, StageError>;

    /// The networks classification consults, where the source has them
    /// installed (lines of text, drawn or photographed).
    fn networks(&self) -> Networks<'_> {
        Networks::default()
    }

    /// Settles the route of `classification` for the job's scale and level,
    /// where the source has a routing table that weighs it (the route a
    /// report names is then the one that picks the model).
    fn settle_route(&self, _classification: &mut Classification, _scale: u32, _spec: &JobSpec) {}

    /// The name of the model `for_scale` would pick, without loading it
    /// (a cluster job names its model before any worker takes it).
    fn model_name(
        &self,
        raster: &Raster,
        scale: u32,
        spec: &JobSpec,
        classification: &Classification,
    ) -> Result<String, StageError> {
        self.for_scale(raster, scale, spec, classification)
            .map(|u| u.name())
    }
}

/// Always the same upscaler.
pub struct Fixed(pub Arc<dyn Upscaler>);

impl UpscalerSource for Fixed {
    fn for_scale(
        &self,
        _: &Raster,
        _: u32,
        _: &JobSpec,
        _: &Classification,
    ) -> Result<Arc<dyn Upscaler>, StageError> {
        Ok(self.0.clone())
    }
}

pub struct Interpolation;

impl Upscaler for Interpolation {
    fn name(&self) -> String {
        "lanczos3".into()
    }

    fn is_model(&self) -> bool {
        false
    }

    fn upscale(
        &self,
        raster: &Raster,
        scale: u32,
        _: Option<&Deadline>,
    ) -> Result<Raster, StageError> {
        resize(raster, raster.width * scale, raster.height * scale, None)
    }
}

/// Passes the image through when no enlargement is needed; never copies then.
/// A model's output that is flat where the input was not fails (see
/// [`check_not_flat`]); NaN is refused by the model runner itself.
pub fn upscale(
    upscaler: &dyn Upscaler,
    raster: Raster,
    scale: u32,
    deadline: Option<&Deadline>,
) -> Result<Raster, StageError> {
    if scale <= 1 {
        return Ok(raster);
    }
    let out = upscaler.upscale(&raster, scale, deadline)?;
    if upscaler.is_model() {
        check_not_flat(&raster, &out, &upscaler.name())?;
    }
    Ok(out)
}

/// Input detail, in 8-bit levels of standard deviation, above which an
/// output must show some too: a photo or drawing has tens of levels, noise on a
/// flat background a few.
const INPUT_DETAIL: f64 = 3.0;
/// Output detail, in 8-bit levels, under which it counts as one colour.
const FLAT_OUTPUT: f64 = 0.25;

/// A model with broken weights (zeros, or a constant bias) turns any picture
/// into one colour: that is an error naming the model, not a result.
pub fn check_not_flat(input: &Raster, output: &Raster, model: &str) -> Result<(), StageError> {
    let before = colour_spread(input);
    if before < INPUT_DETAIL {
        return Ok(());
    }
    let after = colour_spread(output);
    if after < FLAT_OUTPUT {
        return Err(StageError::new(
            Stage::Upscale,
            format!(
                "model {model} produced a constant image (spread {after:.2} levels from an \
                 input of {before:.1}); its weights may be corrupt"
            ),
        ));
    }
    Ok(())
}

/// The largest per-channel standard deviation of the colour, in 8-bit
/// levels, over at most about a million evenly spread pixels (one pass).
fn colour_spread(raster: &Raster) -> f64 {
    let channels = raster.channels();
    let pixels = raster.data.len() / channels.max(1);
    let step = (pixels / 1_000_000).max(1);
    let mut sum = [0f64; 3];
    let mut squares = [0f64; 3];
    let mut n = 0f64;
    for p in raster.data.chunks_exact(channels).step_by(step) {
        for c in 0..3 {
            let v = p[c] as f64;
            sum[c] += v;
            squares[c] += v * v;
        }
        n += 1.0;
    }
    if n == 0.0 {
        return 0.0;
    }
    (0..3)
        .map(|c| {
            let mean = sum[c] / n;
            (squares[c] / n - mean * mean).max(0.0).sqrt() / 257.0
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for a model whose weights were zeroed.
    struct Flat;

    impl Upscaler for Flat {
        fn name(&self) -> String {
            "flat".into()
        }
        fn is_model(&self) -> bool {
            true
        }
        fn upscale(&self, r: &Raster, s: u32, _: Option<&Deadline>) -> Result<Raster, StageError> {
            Ok(Raster::new(r.width * s, r.height * s, r.has_alpha))
        }
    }

    fn stripes() -> Raster {
        let mut r = Raster::new(16, 16, false);
        for (i, v) in r.data.iter_mut().enumerate() {
            *v = if (i / 3) % 2 == 0 { 60000 } else { 3000 };
        }
        r
    }

    #[test]
    fn a_model_that_flattens_a_picture_fails() {
        let e = upscale(&Flat, stripes(), 2, None).unwrap_err();
        assert_eq!(e.stage, Stage::Upscale);
        assert!(
            e.cause.contains("model flat produced a constant image"),
            "{}",
            e.cause
        );
        // A flat input may well come out flat.
        let out = upscale(&Flat, Raster::new(16, 16, false), 2, None).unwrap();
        assert_eq!(out.width, 32);
        // A faithful enlargement keeps the detail and passes.
        let up = upscale(&Interpolation, stripes(), 2, None).unwrap();
        check_not_flat(&stripes(), &up, "lanczos3").unwrap();
    }

    #[test]
    fn output_is_exactly_scale_times_input() {
        let r = Raster::new(13, 7, true);
        let out = upscale(&Interpolation, r.clone(), 4, None).unwrap();
        assert_eq!((out.width, out.height), (52, 28));
        let same = upscale(&Interpolation, r.clone(), 1, None).unwrap();
        assert_eq!(same, r);
    }
}
