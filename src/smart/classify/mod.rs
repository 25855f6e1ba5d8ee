//! Stage: what is in the picture (photo, face, text, illustration) and how
//! damaged it is by JPEG. Image statistics, the SeetaFace detector that
//! ships inside the `rustface` crate, the text detector and the drawing
//! network's embedding go into a small trained head ([`head`]) whose
//! probabilities decide the route by its expected cost ([`cost`]). Without
//! the drawing network, a hand-written rule tree ([`decide`]) stands in.
//!
//! Everything is measured on copies of fixed size, so the cost does not grow
//! with the source.

pub mod cost;
mod faces;
pub mod head;
mod jpeg;
mod rules;
mod statistics;
pub mod subject;

use serde::Serialize;

pub use self::cost::{Decision, Probabilities};
pub use self::faces::{FACE_CLASSIFY_SIDE, FACE_PROTECT_SIDE, detect_faces, detect_faces_at};
pub use self::jpeg::{blockiness, jpeg_quality};
pub use self::rules::{DRAWN, decide};
pub use self::statistics::statistics;
use crate::models::drawing::{DrawingClassifier, DrawingLook};
use crate::models::text_regions::{TextBox, TextDetector};
use crate::raster::Raster;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Photo,
    Face,
    Text,
    Illustration,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Photo => "photo",
            Class::Face => "face",
            Class::Text => "text",
            Class::Illustration => "illustration",
        })
    }
}

/// A face box in source pixels.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub score: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Features {
    /// Share of neighbouring pixel pairs with (almost) no difference: flat
    /// fills of graphics, pages and screens; sensor noise keeps photos low.
    pub flat: f64,
    /// Share of pixel pairs that differ strongly: strokes and outlines.
    pub edges: f64,
    /// Share of pixels in the 8 most common colours (5 bits per channel).
    pub top_colours: f64,
    /// Share of the single most common colour: a page or screen background.
    pub background: f64,
    /// Mean saturation, 0..1.
    pub saturation: f64,
    /// Share of pixels that are very light or very dark (ink on paper).
    pub extremes: f64,
    /// Share of pixel pairs with small or medium steps (2..32): the smooth
    /// gradients of photographs, rare in flat-shaded drawings.
    pub ramps: f64,
    /// Blank/inked alternations of rows per 100 rows: lines of type.
    pub row_transitions: f64,
    /// Share of pixels far from the background colour.
    pub ink: f64,
    /// Share of pixels on a thin dark line (darker by 40+ than the pixels two
    /// steps away on both sides): the outlines of drawings.
    pub lines: f64,
    /// Largest face's share of the frame.
    pub face_share: f64,
    /// Lines of text the PP-OCRv4 detector finds at 352 px; None when the
    /// detector is not installed.
    pub text_lines: Option<usize>,
    /// The share of the frame those lines cover.
    pub text_share: Option<f64>,
    /// Lines of text found on a closer look (640 to 960 px), taken only when
    /// the statistics call a picture text but the quick look found too few
    /// lines: small UI type and handwriting are missed at 352 px. None when
    /// no closer look was taken.
    pub close_text_lines: Option<usize>,
    /// The drawing classifier's chance that the picture is drawn; None when
    /// it is not installed.
    pub drawn: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Classification {
    /// The route Smart mode takes: the class with the least expected cost
    /// (with the rule tree: the class it says).
    pub class: Class,
    /// The head's probability of `class` (with the rule tree: its rough
    /// confidence).
    pub confidence: f64,
    /// The head's calibrated probabilities; None when the rule tree decided
    /// (no drawing network installed).
    pub probabilities: Option<Probabilities>,
    /// The cost-weighted decision behind `class`, with the head.
    pub decision: Option<Decision>,
    pub faces: Vec<FaceBox>,
    /// IJG-style quality of the JPEG's luminance table, when it is a JPEG.
    pub jpeg_quality_estimate: Option<u8>,
    /// Edge strength on the 8x8 grid over elsewhere (1.0: no blocking).
    pub blockiness: f64,
    pub features: Features,
    /// The lines found on the text detector's closer look, when it was
    /// taken: the same look that protection takes, so it is not taken twice.
    #[serde(skip)]
    pub close_text_boxes: Option<Vec<TextBox>>,
    /// The subject's box when the picture stands on a plain backdrop: what
    /// classification looked at.
    #[serde(skip)]
    pub subject: Option<subject::Region>,
    /// What the head read (for `classify --inputs` and training).
    #[serde(skip)]
    pub head_inputs: Option<Vec<f64>>,
}

impl Classification {
    /// The most probable class (with the rule tree: `class`).
    pub fn likely(&self) -> Class {
        self.probabilities.map_or(self.class, |p| p.likely())
    }

    /// Takes the route of `decision` (made for a job's scale and level).
    pub fn settle(&mut self, decision: cost::Decision) {
        if let Some(p) = self.probabilities {
            self.class = decision.route;
            self.confidence = p.of(decision.route);
            self.decision = Some(decision);
        }
    }

    /// Visible JPEG damage: a low quality table or a visible 8x8 grid. Such
    /// sources get a model that removes artefacts instead of sharpening them.
    pub fn jpeg_damaged(&self) -> bool {
        self.jpeg_quality_estimate.is_some_and(|q| q < 70) || self.blockiness > 1.35
    }
}

/// The networks classification consults. Each is optional: without the text
/// detector the lines-of-type rule falls back to statistics, and without the
/// drawing classifier shaded drawings are told by their outlines alone.
#[derive(Clone, Copy, Default)]
pub struct Networks<'a> {
    pub text: Option<&'a TextDetector>,
    pub drawing: Option<&'a DrawingClassifier>,
}

/// Classifies `raster` (`source`: the file's bytes, for the JPEG tables).
pub fn classify(raster: &Raster, source: &[u8], networks: Networks) -> Classification {
    // A subject on a plain backdrop is looked at without the backdrop.
    let subject = subject::subject_region(raster);
    let cropped = subject.map(|region| subject::crop(raster, region));
    let seen = cropped.as_ref().unwrap_or(raster);
    // Two lanes of about equal length on two cores: the text detector, and
    // the face detector, the drawing classifier and the statistics.
    let (text_lines, mut faces, look, mut features, blocking) = std::thread::scope(|scope| {
        let lines = scope.spawn(|| {
            networks.text.and_then(|d| {
                d.text_lines(seen)
                    .inspect_err(|e| tracing::warn!("text detection failed: {e:#}"))
                    .ok()
            })
        });
        let faces = detect_faces(seen);
        let look = networks.drawing.and_then(|d| {
            d.look(seen)
                .inspect_err(|e| tracing::warn!("drawing classification failed: {e:#}"))
                .ok()
        });
        // The 8x8 grid is the whole file's: blockiness reads the source.
        let (features, blocking) = (statistics(seen), blockiness(raster));
        let lines = lines.join().ok().flatten();
        (lines, faces, look, features, blocking)
    });
    let area = (seen.width as f64 * seen.height as f64).max(1.0);
    features.face_share = faces
        .iter()
        .map(|f| f.width as f64 * f.height as f64 / area)
        .fold(0.0, f64::max);
    // Face boxes in source pixels, for protection.
    if let Some(region) = subject {
        for face in &mut faces {
            face.x += region.x;
            face.y += region.y;
        }
    }
    features.text_lines = text_lines.map(|t| t.0);
    features.text_share = text_lines.map(|t| t.1);
    features.drawn = look.as_ref().map(DrawingLook::drawn);
    let jpeg_quality_estimate = jpeg_quality(source);
    // What the head reads; computed whenever the drawing network looked, so
    // that scripts/train_head.py can train a head where none is yet.
    let head_inputs = look.as_ref().map(|look| {
        head::inputs(&head::Evidence {
            features: &features,
            look,
            faces: faces.len(),
            jpeg_quality: jpeg_quality_estimate,
            blockiness: blocking,
            has_alpha: raster.has_alpha,
        })
    });
    if let (Some(inputs), Some(head)) = (&head_inputs, head::Head::builtin()) {
        let probabilities = split_natural(head.families(inputs), &features, faces.len());
        let decision = cost::decide(&probabilities, features.text_lines.is_some_and(|n| n > 0));
        return Classification {
            class: decision.route,
            confidence: probabilities.of(decision.route),
            probabilities: Some(probabilities),
            decision: Some(decision),
            faces,
            jpeg_quality_estimate,
            blockiness: blocking,
            features,
            close_text_boxes: None,
            head_inputs,
            subject,
        };
    }
    let (mut class, mut confidence) = decide(&features, faces.len());
    let mut close_text_boxes = None;
    // Text by statistics alone: let the detector look again at a size where
    // small type is several pixels high, and decide with what it saw.
    if class == Class::Text
        && features.text_lines.is_some_and(|n| n < 3)
        && let Some(detector) = networks.text
    {
        match detector.detect(raster) {
            Ok(lines) => {
                features.close_text_lines = Some(lines.len());
                (class, confidence) = decide(&features, faces.len());
                close_text_boxes = Some(lines);
            }
            Err(e) => tracing::warn!("text detection failed: {e:#}"),
        }
    }
    Classification {
        class,
        confidence,
        probabilities: None,
        decision: None,
        faces,
        jpeg_quality_estimate,
        blockiness: blocking,
        features,
        close_text_boxes,
        head_inputs,
        subject,
    }
}

/// The share of the frame from which a detected face makes a natural
/// picture a portrait (a face that is the subject, not a crowd's).
pub const FACE_SHARE: f64 = 0.03;

/// Four class probabilities from the head's three families: a natural
/// picture is a face when the detector found one that fills a real share of
/// the frame, else a photo.
fn split_natural(families: [f64; 3], f: &Features, faces: usize) -> Probabilities {
    let [natural, text, drawing] = families;
    let portrait = faces > 0 && f.face_share >= FACE_SHARE;
    Probabilities {
        photo: if portrait { 0.0 } else { natural },
        face: if portrait { natural } else { 0.0 },
        text,
        illustration: drawing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_graphic_is_not_a_photo() {
        let mut r = Raster::new(200, 100, false);
        for (i, p) in r.data.chunks_exact_mut(3).enumerate() {
            let v = if (i % 200) < 100 { 65535 } else { 0 };
            p.copy_from_slice(&[v, v / 2, 0]);
        }
        let c = classify(&r, &[], Networks::default());
        assert_ne!(c.class, Class::Photo, "{c:?}");
        assert_eq!(c.jpeg_quality_estimate, None);
    }
}
