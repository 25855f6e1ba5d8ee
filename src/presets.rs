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
    /// The platform's name as its users know it (in errors and `presets`).
    pub platform: String,
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
    pub background: String,
    #[serde(default)]
    pub fill: Option<f64>,
    /// What a folder with this preset writes when it names no formats.
    pub formats: Vec<OutputFormat>,
    /// Every format upscaled writes that the platform takes.
    pub accepts: Vec<OutputFormat>,
    /// The encoder quality the platform asks for (eBay: JPEG 90 or more).
    #[serde(default)]
    pub quality: Option<u8>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub min_source_side: Option<u32>,
    pub rules: Rules,
    pub source: Source,
}

/// What the platform publishes about its images.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub aspect: Option<String>,
    /// Long side, in pixels, the platform asks for at least / allows at most.
    #[serde(default)]
    pub min_side: Option<u32>,
    #[serde(default)]
    pub max_side: Option<u32>,
    pub colour: String,
    pub background: String,
    /// The picture must sit on RGB 255,255,255 (checked on every file).
    #[serde(default)]
    pub pure_white: bool,
    /// Formats the platform takes that upscaled does not write.
    #[serde(default)]
    pub also_accepts: Vec<String>,
}

/// Where the rules come from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub title: String,
    #[serde(default)]
    pub url: Option<String>,
    /// The date the page itself shows.
    #[serde(default)]
    pub date: Option<String>,
    /// When a session of this project last read it.
    #[serde(default)]
    pub checked: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

impl Preset {
    pub fn target(&self) -> Target {
        Target {
            width: Some(self.width),
            height: Some(self.height),
            fit: self.fit,
            background: parse_colour(&self.background).expect("presets are validated by tests"),
            fill: self.fill,
            white_required: self.rules.pure_white,
            whiten: false,
        }
    }

    /// An error naming the platform when it does not take `format`.
    pub fn refuses(&self, name: &str, format: OutputFormat) -> Option<String> {
        if self.accepts.contains(&format) {
            return None;
        }
        let accepted: Vec<String> = self.accepts.iter().map(|f| f.to_string()).collect();
        Some(format!(
            "{} does not accept {format} uploads (preset {name} takes {}); to write it \
             anyway, set allow_other_formats: true (command line: --allow-other-formats)",
            self.platform,
            accepted.join(", ")
        ))
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
        match crate::error::did_you_mean(name, &names) {
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
        assert!(presets.len() >= 16);
        for (name, p) in &presets {
            assert!(!p.formats.is_empty(), "{name}");
            for f in &p.formats {
                assert!(p.accepts.contains(f), "{name}: default {f} is not accepted");
            }
            assert!(parse_colour(&p.background).is_ok(), "{name}");
            assert!(p.width > 0 && p.height > 0, "{name}");
            assert!(!p.source.title.is_empty(), "{name}");
            // A platform page is cited with the date it was read.
            if p.source.url.is_some() {
                assert!(p.source.checked.is_some(), "{name}");
            }
        }
    }

    #[test]
    fn marketplaces_get_formats_they_accept() {
        for name in [
            "amazon-main",
            "amazon-additional",
            "walmart",
            "mercado-libre",
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
        assert!(amazon.target().white_required);
        assert_eq!(get("ebay").unwrap().quality, Some(90));
    }

    #[test]
    fn a_refused_format_names_the_platform() {
        let amazon = get("amazon-main").unwrap();
        let e = amazon.refuses("amazon-main", OutputFormat::Webp).unwrap();
        assert!(
            e.contains("Amazon") && e.contains("webp") && e.contains("jpeg"),
            "{e}"
        );
        assert!(e.contains("allow_other_formats"), "{e}");
        assert_eq!(amazon.refuses("amazon-main", OutputFormat::Png), None);
        let walmart = get("walmart").unwrap();
        assert!(
            walmart
                .refuses("walmart", OutputFormat::Avif)
                .unwrap()
                .contains("Walmart")
        );
    }

    #[test]
    fn unknown_preset_suggests_a_close_name() {
        let e = get("shopfy").unwrap_err();
        assert!(e.contains("shopify"), "{e}");
    }
}
