//! Built-in platform presets, shipped as data in `config/presets.yaml`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::pipeline::encode::OutputFormat;
use crate::pipeline::{Fit, Target, parse_colour};

const PRESETS_YAML: &str = include_str!("../config/presets.yaml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub description: String,
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
    pub background: String,
    #[serde(default)]
    pub fill: Option<f64>,
    pub formats: Vec<OutputFormat>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub min_source_side: Option<u32>,
}

impl Preset {
    pub fn target(&self) -> Target {
        Target {
            width: Some(self.width),
            height: Some(self.height),
            fit: self.fit,
            background: parse_colour(&self.background).expect("presets are validated by tests"),
            fill: self.fill,
        }
    }
}

pub fn all() -> &'static BTreeMap<String, Preset> {
    static PRESETS: OnceLock<BTreeMap<String, Preset>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        serde_yaml::from_str(PRESETS_YAML).expect("config/presets.yaml is valid (tested)")
    })
}

pub fn get(name: &str) -> Result<&'static Preset, String> {
    all().get(name).ok_or_else(|| {
        let names: Vec<&str> = all().keys().map(String::as_str).collect();
        match crate::config::did_you_mean(name, &names) {
            Some(close) => format!("unknown preset {name:?}; did you mean {close:?}?"),
            None => format!("unknown preset {name:?}; run `upscaled presets` for the list"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        let presets: BTreeMap<String, Preset> = serde_yaml::from_str(PRESETS_YAML).unwrap();
        assert!(presets.len() >= 14);
        for (name, p) in &presets {
            assert!(!p.formats.is_empty(), "{name}");
            assert!(parse_colour(&p.background).is_ok(), "{name}");
            assert!(p.width > 0 && p.height > 0, "{name}");
        }
    }

    #[test]
    fn marketplaces_get_formats_they_accept() {
        for name in [
            "amazon-main",
            "amazon-additional",
            "etsy",
            "ebay",
            "instagram-square",
        ] {
            let p = get(name).unwrap();
            assert!(
                !p.formats
                    .iter()
                    .any(|f| matches!(f, OutputFormat::Avif | OutputFormat::Webp)),
                "{name} does not take AVIF/WebP uploads"
            );
        }
        let amazon = get("amazon-main").unwrap();
        assert_eq!(amazon.fill, Some(0.85));
        assert_eq!(amazon.background, "#FFFFFF");
    }

    #[test]
    fn unknown_preset_suggests_a_close_name() {
        let e = get("shopfy").unwrap_err();
        assert!(e.contains("shopify"), "{e}");
    }
}
