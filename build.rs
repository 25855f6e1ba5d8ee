//! Finds the face-detector model that the `rustface` crate ships in its
//! package, so the binary can embed it (no download at run time).

use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "model/seeta_fd_frontal_v1.0.bin";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = rustface_dir().expect(
        "cannot find the rustface crate's sources (needed for its face model); run `cargo fetch`",
    );
    let model = dir.join(MODEL);
    assert!(model.is_file(), "{} is missing", model.display());
    println!("cargo:rustc-env=RUSTFACE_MODEL={}", model.display());
}

fn rustface_dir() -> Option<PathBuf> {
    // The usual place: the registry source cache.
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    if let Ok(registries) = std::fs::read_dir(home.join("registry/src")) {
        for registry in registries.flatten() {
            let candidate = registry.path().join("rustface-0.1.7");
            if candidate.join(MODEL).is_file() {
                return Some(candidate);
            }
        }
    }
    // Vendored or elsewhere: ask cargo.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .output()
        .ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    meta["packages"].as_array()?.iter().find_map(|p| {
        (p["name"] == "rustface").then(|| {
            Path::new(p["manifest_path"].as_str()?)
                .parent()
                .map(Path::to_path_buf)
        })?
    })
}
