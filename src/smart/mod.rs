//! Smart mode, in one place: what is in the picture ([`classify`]), how much
//! to enlarge it and with which model ([`route`]), which regions a generative
//! model must leave to a fidelity one ([`protect`]), and the installed models
//! seen through those decisions ([`library`]). The engines themselves live in
//! `crate::models`, which knows nothing of pipelines or configs.

pub mod classify;
pub mod library;
pub mod protect;
pub mod route;

pub use library::ModelLibrary;
pub use route::QualityLevel;
