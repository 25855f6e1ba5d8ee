//! Stage: enlarge by the routed factor.
//!
//! This is the place where the super-resolution models plug in (see the models
//! issue): an `Upscaler` turns a raster into one exactly `scale` times larger.
//! Until a model engine is installed, `Interpolation` stands in: Lanczos3 in
//! linear light, and the job's log says that no model was used.

use std::sync::Arc;

use crate::error::StageError;
use crate::pipeline::JobSpec;
use crate::pipeline::classify::{Classification, Networks};
use crate::pipeline::deadline::Deadline;
use crate::pipeline::resize::resize;
use crate::raster::Raster;

pub trait Upscaler: Send + Sync {
    /// What the log and reports call this upscaler.
    fn name(&self) -> String;
    /// Whether it is a real model (false: interpolation only).
    fn is_model(&self) -> bool;
    /// Returns a raster exactly `scale` times the input's size, or an error
    /// once `deadline` passes (models check it between rows of tiles).
    fn upscale(
        &self,
        raster: &Raster,
        scale: u32,
        deadline: Option<&Deadline>,
    ) -> Result<Raster, StageError>;
}

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
pub fn upscale(
    upscaler: &dyn Upscaler,
    raster: Raster,
    scale: u32,
    deadline: Option<&Deadline>,
) -> Result<Raster, StageError> {
    if scale <= 1 {
        return Ok(raster);
    }
    upscaler.upscale(&raster, scale, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_exactly_scale_times_input() {
        let r = Raster::new(13, 7, true);
        let out = upscale(&Interpolation, r.clone(), 4, None).unwrap();
        assert_eq!((out.width, out.height), (52, 28));
        let same = upscale(&Interpolation, r.clone(), 1, None).unwrap();
        assert_eq!(same, r);
    }
}
