//! Routing: how much a model must enlarge the image (the scale) and which
//! model does it (the table of `config/routes.yaml`: class x scale x level).
//!
//! Smart mode's scale rule (DESIGN.md): no model when the source already covers
//! the target, 2x for a moderate boost, 4x only for tiny sources. 4x on an
//! already-large image invents grain, and chaining two 4x models invents worse,
//! so above 4x the model does 4x and a final Lanczos does at most 2x more.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::classify::{Class, Classification, cost};
use crate::models::catalog::Catalog;
use crate::pipeline::Target;
use crate::pipeline::resize::needed_scale;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QualityLevel {
    Fast,
    Balanced,
    Best,
}

impl QualityLevel {
    const ALL: [QualityLevel; 3] = [
        QualityLevel::Fast,
        QualityLevel::Balanced,
        QualityLevel::Best,
    ];

    /// The name used in configs, on the command line and in output.
    pub fn name(self) -> &'static str {
        match self {
            QualityLevel::Fast => "fast",
            QualityLevel::Balanced => "balanced",
            QualityLevel::Best => "best",
        }
    }

    /// The level called `text`, or the error both config and CLI give.
    pub fn parse(text: &str) -> Result<QualityLevel, String> {
        QualityLevel::ALL
            .into_iter()
            .find(|l| l.name() == text)
            .ok_or_else(|| format!("must be fast, balanced or best, not {text:?}"))
    }
}

pub const ROUTES_YAML: &str = include_str!("../../config/routes.yaml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    pub fast: String,
    pub balanced: String,
    pub best: String,
}

/// route name (class, or `jpeg-damaged-<class>`) → scale → levels.
#[derive(Clone, Debug)]
pub struct Routes(BTreeMap<String, BTreeMap<u32, Levels>>);

/// The routes a table may name, and the scales Smart mode routes.
pub const ROUTE_NAMES: &[&str] = &[
    "photo",
    "face",
    "text",
    "illustration",
    "jpeg-damaged-photo",
    "jpeg-damaged-illustration",
];
pub const ROUTED_SCALES: &[u32] = &[2, 4];

/// A user's `routes:` entry for one route and scale: each level it names
/// replaces the built-in model; the others stay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelOverrides {
    pub fast: Option<String>,
    pub balanced: Option<String>,
    pub best: Option<String>,
}

impl LevelOverrides {
    fn get(&self, level: QualityLevel) -> Option<&str> {
        match level {
            QualityLevel::Fast => self.fast.as_deref(),
            QualityLevel::Balanced => self.balanced.as_deref(),
            QualityLevel::Best => self.best.as_deref(),
        }
    }
}

/// The config file's `routes:` (route → scale → levels), laid over the
/// built-in table.
pub type RouteOverrides = BTreeMap<String, BTreeMap<u32, LevelOverrides>>;

impl Routes {
    pub fn builtin(catalog: &Catalog) -> Result<Self> {
        let table: BTreeMap<String, BTreeMap<u32, Levels>> =
            serde_yaml::from_str(ROUTES_YAML).context("config/routes.yaml is malformed")?;
        for (route, scales) in &table {
            for (scale, levels) in scales {
                for name in [&levels.fast, &levels.balanced, &levels.best] {
                    let entry = catalog.get(name)?;
                    if entry.scale != *scale || !entry.default_route {
                        bail!(
                            "routes: {route} {scale}x names {name}, which is {}x or not licensed for default routes",
                            entry.scale
                        );
                    }
                }
            }
        }
        Ok(Self(table))
    }

    /// The model for a classified image at `scale` and `level`: the user's
    /// override when there is one, else the built-in table. The route is
    /// the one [`Routes::decide`] settles on where the head gave
    /// probabilities, else the class.
    pub fn pick<'a>(
        &'a self,
        overrides: &'a RouteOverrides,
        c: &Classification,
        scale: u32,
        level: QualityLevel,
    ) -> Option<&'a str> {
        let route = self
            .decide(overrides, c, scale, level)
            .map_or(c.class, |d| d.route);
        self.model_for(overrides, route, c.jpeg_damaged(), scale, level)
    }

    /// The route for a classified image at `scale` and `level`, weighed by
    /// what each mistake costs with the models these routes run there
    /// (docs/smart-mode.md, "Cost"). None without the head's probabilities.
    pub fn decide(
        &self,
        overrides: &RouteOverrides,
        c: &Classification,
        scale: u32,
        level: QualityLevel,
    ) -> Option<cost::Decision> {
        let p = c.probabilities?;
        let lines = c.features.text_lines.is_some_and(|n| n > 0);
        let model = |class| self.model_for(overrides, class, c.jpeg_damaged(), scale, level);
        Some(cost::decide_with(&p, lines, |truth, route| {
            model(truth).is_some() && model(truth) == model(route)
        }))
    }

    /// The model the route of `class` runs.
    fn model_for<'a>(
        &'a self,
        overrides: &'a RouteOverrides,
        class: Class,
        jpeg_damaged: bool,
        scale: u32,
        level: QualityLevel,
    ) -> Option<&'a str> {
        // Faces and text keep their fidelity models even when damaged.
        let route = match class {
            Class::Photo if jpeg_damaged => "jpeg-damaged-photo".to_string(),
            Class::Illustration if jpeg_damaged => "jpeg-damaged-illustration".to_string(),
            _ => class.to_string(),
        };
        let chosen = overrides
            .get(&route)
            .and_then(|scales| scales.get(&scale))
            .and_then(|levels| levels.get(level));
        if chosen.is_some() {
            return chosen;
        }
        let levels = self.0.get(&route)?.get(&scale)?;
        Some(match level {
            QualityLevel::Fast => &levels.fast,
            QualityLevel::Balanced => &levels.balanced,
            QualityLevel::Best => &levels.best,
        })
    }
}

/// The user's scale choice (`--scale`, or the folder's `scale:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleChoice {
    #[default]
    Auto,
    #[serde(rename = "1")]
    X1,
    #[serde(rename = "2")]
    X2,
    #[serde(rename = "4")]
    X4,
}

impl std::str::FromStr for ScaleChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().trim_end_matches(['x', 'X']) {
            "auto" => Ok(ScaleChoice::Auto),
            "1" => Ok(ScaleChoice::X1),
            "2" => Ok(ScaleChoice::X2),
            "4" => Ok(ScaleChoice::X4),
            _ => Err(format!("scale must be auto, 1, 2 or 4, not {s:?}")),
        }
    }
}

/// Which upscaler a job may use (`--model`, the folder's `smart.model`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ModelChoice {
    /// Smart mode picks, from the classification and the routing table.
    #[default]
    Auto,
    /// This model, whatever the content.
    Named(String),
    /// `none`, the no-invention mode for forensic, medical or legal images:
    /// no neural network runs, not even to classify; Lanczos in linear light
    /// takes the image to the target at any scale.
    NoModel,
}

impl ModelChoice {
    /// `auto`, `none` or a model's name, as config and CLI spell it.
    pub fn parse(text: &str) -> ModelChoice {
        match text.trim() {
            "auto" => ModelChoice::Auto,
            "none" => ModelChoice::NoModel,
            name => ModelChoice::Named(name.to_string()),
        }
    }

    /// The model the job insists on, if any.
    pub fn named(&self) -> Option<&str> {
        match self {
            ModelChoice::Named(name) => Some(name),
            _ => None,
        }
    }
}

/// Why `model: none` takes no scale: config and CLI say it alike.
pub const NO_MODEL_HAS_NO_SCALE: &str = "no model runs, so there is no model scale to set \
     (interpolation alone reaches the target)";

/// Largest enlargement left to the final interpolation after the model.
pub const MAX_INTERPOLATED_SCALE: f64 = 2.0;

/// How far interpolation alone may enlarge (None: no limit). Past the limit
/// a model should do the work; with `model: none` none may, so the user's
/// choice of interpolation stands at any scale.
pub fn interpolation_limit(no_model: bool) -> Option<f64> {
    (!no_model).then_some(MAX_INTERPOLATED_SCALE)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// How much larger the target needs the image (1.0 without a target).
    pub needed: f64,
    /// 1 (no model), 2 or 4.
    pub model_scale: u32,
    /// Set when even model + ≤2x interpolation cannot reach the target.
    pub warning: Option<String>,
    /// Set when the job forbids models (`model: none`).
    pub no_model: bool,
}

pub fn route(
    width: u32,
    height: u32,
    target: Option<&Target>,
    choice: ScaleChoice,
    model: &ModelChoice,
) -> Route {
    let needed = target.map_or(1.0, |t| needed_scale(width, height, t));
    if *model == ModelChoice::NoModel {
        return Route {
            needed,
            model_scale: 1,
            warning: None,
            no_model: true,
        };
    }
    let model_scale = match choice {
        ScaleChoice::X1 => 1,
        ScaleChoice::X2 => 2,
        ScaleChoice::X4 => 4,
        // A hair of tolerance: 1000 px for a 1000 px box after rounding is "covered".
        ScaleChoice::Auto if needed <= 1.0 + 1e-6 => 1,
        ScaleChoice::Auto if needed <= 2.0 + 1e-6 => 2,
        ScaleChoice::Auto => 4,
    };
    let reach = model_scale as f64 * MAX_INTERPOLATED_SCALE;
    let warning = (needed > reach + 1e-6).then(|| {
        format!(
            "the target needs {needed:.1}x but the model gives {model_scale}x and interpolation at most {MAX_INTERPOLATED_SCALE}x more: \
             the output is smaller than the target box (a larger source would serve better)"
        )
    });
    Route {
        needed,
        model_scale,
        warning,
        no_model: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Fit;

    fn square(side: u32) -> Target {
        Target {
            width: Some(side),
            height: Some(side),
            fit: Fit::Contain,
            ..Target::default()
        }
    }

    #[test]
    fn scale_grid() {
        // (source side, target side, expected model scale, warns)
        let grid = [
            (2000, 1000, 1, false),
            (1000, 1000, 1, false),
            (800, 1000, 2, false),
            (500, 1000, 2, false),
            (499, 1000, 4, false),
            (250, 1000, 4, false),
            (125, 1000, 4, false),
            (100, 1000, 4, true),
        ];
        for (src, dst, scale, warns) in grid {
            let r = route(
                src,
                src,
                Some(&square(dst)),
                ScaleChoice::Auto,
                &ModelChoice::Auto,
            );
            assert_eq!(r.model_scale, scale, "{src} -> {dst}");
            assert_eq!(r.warning.is_some(), warns, "{src} -> {dst}");
        }
    }

    #[test]
    fn no_target_means_no_model_unless_forced() {
        assert_eq!(
            route(64, 64, None, ScaleChoice::Auto, &ModelChoice::Auto).model_scale,
            1
        );
        assert_eq!(
            route(64, 64, None, ScaleChoice::X4, &ModelChoice::Auto).model_scale,
            4
        );
    }

    #[test]
    fn cover_uses_the_larger_axis() {
        let t = Target {
            width: Some(1000),
            height: Some(250),
            fit: Fit::Cover,
            ..Target::default()
        };
        // 1000x1000 source: contain would shrink, cover needs width 1000 -> 1x.
        assert_eq!(
            route(500, 500, Some(&t), ScaleChoice::Auto, &ModelChoice::Auto).model_scale,
            2
        );
    }

    #[test]
    fn no_model_never_routes_to_a_model_and_has_no_interpolation_limit() {
        for choice in [ScaleChoice::Auto, ScaleChoice::X2, ScaleChoice::X4] {
            let r = route(100, 100, Some(&square(1000)), choice, &ModelChoice::NoModel);
            assert_eq!(
                (r.model_scale, r.warning.is_some()),
                (1, false),
                "{choice:?}"
            );
            assert!(r.no_model);
        }
        assert_eq!(interpolation_limit(true), None);
        assert_eq!(interpolation_limit(false), Some(MAX_INTERPOLATED_SCALE));
    }

    #[test]
    fn model_choice_parses() {
        assert_eq!(ModelChoice::parse("auto"), ModelChoice::Auto);
        assert_eq!(ModelChoice::parse(" none "), ModelChoice::NoModel);
        assert_eq!(
            ModelChoice::parse("spanx4_ch48").named(),
            Some("spanx4_ch48")
        );
    }

    #[test]
    fn scale_choice_parses() {
        assert_eq!("4x".parse::<ScaleChoice>().unwrap(), ScaleChoice::X4);
        assert!("3".parse::<ScaleChoice>().is_err());
    }
}
