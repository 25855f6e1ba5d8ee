//! `upscaled check-config`: every error of a config file, with its line
//! and key; exit 1 when there is one.

use std::path::Path;
use std::process::ExitCode;

use upscaled::config::Config;

pub fn run(file: &Path) -> ExitCode {
    let checked = Config::load(file).and_then(|config| {
        // Model names are checked against the catalog of the models folder
        // the file uses (built-in models plus the user's own).
        match super::common::catalog_for(&config) {
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
