//! upscaled: turns images too small for their job into platform-ready files.
//!
//! The data's path is the module list: `config` (rules) → `pipeline` (decode,
//! crop, route, upscale, resize, encode, write), with `presets` as data and
//! `fetch` for getting models and samples from the package registries.

pub mod cluster;
pub mod config;
pub mod daemon;
pub mod deadline;
pub mod durable;
pub mod error;
pub mod fetch;
pub mod models;
pub mod pipeline;
pub mod presets;
pub mod raster;
pub mod smart;
