//! What several subcommands share: reading one input, the model library
//! they inspect with, and the catalog a config file sees.

use std::path::{Path, PathBuf};

use upscaled::config::Config;
use upscaled::error::JobError;
use upscaled::models::drawing::DrawingClassifier;
use upscaled::models::text_regions::TextDetector;
use upscaled::models::tiled::TileSettings;
use upscaled::models::{self, Catalog, models_dir};
use upscaled::pipeline::decode::{DecodeLimits, Decoded};
use upscaled::smart::ModelLibrary;
use upscaled::smart::QualityLevel;

/// An input of `classify`, `explain` or `compare`, read and decoded within
/// the default limits (a FIFO, a folder or a giant is refused before
/// reading); the error names the file and the stage.
pub fn read_input(file: &Path) -> Result<(Vec<u8>, Decoded), JobError> {
    use upscaled::pipeline::{decode, source};
    let limits = DecodeLimits::default();
    let fail = |e| JobError::from_stage(file, e);
    let bytes = source::open_and_read(file, source::max_bytes(&limits)).map_err(fail)?;
    let decoded = decode::decode(&bytes, &limits).map_err(fail)?;
    Ok((bytes, decoded))
}

/// Both paths name one file (a hard link or another spelling included).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// clap's parser for `--level`.
pub fn parse_level(text: &str) -> Result<QualityLevel, String> {
    QualityLevel::parse(text)
}

/// The models `explain` and `compare` look at: built-in and the user's own,
/// default tiling, no forced model, and all cores (the classification
/// networks run there too).
pub fn inspection_library() -> anyhow::Result<ModelLibrary> {
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
pub fn classification_networks() -> (Option<TextDetector>, Option<DrawingClassifier>) {
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

/// The catalog a config file sees (built-in models plus the user's own in
/// its models folder), and that folder.
pub fn catalog_for(config: &Config) -> anyhow::Result<(Catalog, PathBuf)> {
    let dir = config.models_dir.clone().unwrap_or_else(models_dir);
    Ok((Catalog::builtin()?.with_user_models(&dir)?, dir))
}

/// The catalog's models whose weights are in `dir`.
pub fn installed(catalog: &Catalog, dir: &Path) -> Vec<String> {
    models::list(catalog, dir)
        .into_iter()
        .filter(|m| m.installed_bytes.is_some())
        .map(|m| m.name.to_string())
        .collect()
}
