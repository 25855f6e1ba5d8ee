//! `upscaled run`: the daemon on a config file, until SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use upscaled::config::Config;
use upscaled::models::tiled::TileSettings;
use upscaled::pipeline::Pipeline;
use upscaled::smart::ModelLibrary;

pub fn run(config_path: PathBuf, workers: usize) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let (catalog, dir) = super::common::catalog_for(&config)?;
    let installed_models = super::common::installed(&catalog, &dir);
    // Every model the file names must exist before we say READY.
    if let Err(e) = config.check_models(&config_path, &catalog) {
        eprint!("{e}");
        return Ok(ExitCode::from(1));
    }
    let library = ModelLibrary::new(
        catalog.clone(),
        dir,
        config.threads,
        TileSettings {
            memory_mib: config.memory_mib,
            ..TileSettings::default()
        },
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
