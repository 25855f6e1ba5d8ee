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
pub mod head;

use serde::Serialize;

pub use self::cost::{Decision, Probabilities};
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
    /// What the head read (for `classify --inputs` and training).
    #[serde(skip)]
    pub head_inputs: Option<Vec<f64>>,
}

impl Classification {
    /// The most probable class (with the rule tree: `class`).
    pub fn likely(&self) -> Class {
        self.probabilities.map_or(self.class, |p| p.likely())
    }

    /// Visible JPEG damage: a low quality table or a visible 8x8 grid. Such
    /// sources get a model that removes artefacts instead of sharpening them.
    pub fn jpeg_damaged(&self) -> bool {
        self.jpeg_quality_estimate.is_some_and(|q| q < 70) || self.blockiness > 1.35
    }
}

/// Luma (0..255) of a copy whose long side is at most `max_side`.
fn small_luma_rgb(raster: &Raster, max_side: u32) -> (u32, u32, Vec<[u8; 3]>) {
    let step = raster.width.max(raster.height).div_ceil(max_side).max(1);
    let (w, h) = (raster.width.div_ceil(step), raster.height.div_ceil(step));
    let c = raster.channels();
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            // Point sampling keeps noise and flat fills as they are; averaging
            // would make photos look flat.
            let (sx, sy) = (
                (x * step).min(raster.width - 1),
                (y * step).min(raster.height - 1),
            );
            let i = (sy as usize * raster.width as usize + sx as usize) * c;
            let p = &raster.data[i..i + 3];
            let a = if raster.has_alpha {
                raster.data[i + 3] as u32
            } else {
                65535
            };
            // Transparent areas count as white (how they are usually shown).
            let blend = |v: u16| ((v as u32 * a + 65535 * (65535 - a)) / 65535 / 257) as u8;
            out.push([blend(p[0]), blend(p[1]), blend(p[2])]);
        }
    }
    (w, h, out)
}

fn luma(p: [u8; 3]) -> i32 {
    (p[0] as i32 * 77 + p[1] as i32 * 150 + p[2] as i32 * 29) >> 8
}

/// The image statistics; the detectors' fields are left empty for
/// `classify` to fill.
pub fn statistics(raster: &Raster) -> Features {
    let (w, h, px) = small_luma_rgb(raster, 512);
    let (w, h) = (w as usize, h as usize);
    let mut flat = 0u64;
    let mut edges = 0u64;
    let mut ramps = 0u64;
    let mut pairs = 0u64;
    for y in 0..h {
        for x in 0..w {
            let here = px[y * w + x];
            let mut pair = |other: [u8; 3]| {
                let d = (0..3)
                    .map(|c| (here[c] as i32 - other[c] as i32).abs())
                    .max()
                    .unwrap_or(0);
                pairs += 1;
                if d <= 1 {
                    flat += 1;
                }
                if d >= 48 {
                    edges += 1;
                }
                if (2..=32).contains(&d) {
                    ramps += 1;
                }
            };
            if x + 1 < w {
                pair(px[y * w + x + 1]);
            }
            if y + 1 < h {
                pair(px[(y + 1) * w + x]);
            }
        }
    }
    let mut histogram = vec![0u32; 1 << 15];
    let mut saturation = 0.0;
    let mut extremes = 0u64;
    for p in &px {
        let key = ((p[0] as usize >> 3) << 10) | ((p[1] as usize >> 3) << 5) | (p[2] as usize >> 3);
        histogram[key] += 1;
        let (max, min) = (*p.iter().max().unwrap(), *p.iter().min().unwrap());
        if max > 0 {
            saturation += (max - min) as f64 / max as f64;
        }
        let l = luma(*p);
        if !(24..=232).contains(&l) {
            extremes += 1;
        }
    }
    let top_key = (0..histogram.len())
        .max_by_key(|&k| histogram[k])
        .unwrap_or(0);
    let bg_luma = luma([
        ((top_key >> 10) as u8) << 3 | 4,
        (((top_key >> 5) & 31) as u8) << 3 | 4,
        ((top_key & 31) as u8) << 3 | 4,
    ]);
    let mut lines = 0u64;
    for y in 2..h.saturating_sub(2) {
        for x in 2..w.saturating_sub(2) {
            let l = luma(px[y * w + x]);
            let horizontal = luma(px[y * w + x - 2]).min(luma(px[y * w + x + 2]));
            let vertical = luma(px[(y - 2) * w + x]).min(luma(px[(y + 2) * w + x]));
            if l + 40 < horizontal || l + 40 < vertical {
                lines += 1;
            }
        }
    }
    // Rows with ink (far from the background) against blank rows.
    let mut transitions = 0u32;
    let mut inked_pixels = 0u64;
    let mut previous = false;
    for y in 0..h {
        let inked_here = px[y * w..(y + 1) * w]
            .iter()
            .filter(|&&p| (luma(p) - bg_luma).abs() > 64)
            .count();
        inked_pixels += inked_here as u64;
        let inked = inked_here * 100 > w;
        if y > 0 && inked != previous {
            transitions += 1;
        }
        previous = inked;
    }
    histogram.sort_unstable_by(|a, b| b.cmp(a));
    let n = px.len().max(1) as f64;
    Features {
        flat: flat as f64 / pairs.max(1) as f64,
        edges: edges as f64 / pairs.max(1) as f64,
        top_colours: histogram[..8].iter().map(|&c| c as f64).sum::<f64>() / n,
        background: histogram[0] as f64 / n,
        saturation: saturation / n,
        extremes: extremes as f64 / n,
        ramps: ramps as f64 / pairs.max(1) as f64,
        row_transitions: transitions as f64 * 100.0 / h.max(1) as f64,
        ink: inked_pixels as f64 / n,
        lines: lines as f64 / n,
        face_share: 0.0,
        text_lines: None,
        text_share: None,
        close_text_lines: None,
        drawn: None,
    }
}

/// The long side faces are looked for at when classifying. A face that is
/// the subject spans a fifth of the frame or more, which at 320 px is still
/// far above the detector's 20 px minimum; and SeetaFace misses some large,
/// detailed faces at higher resolutions (wrinkles break its cascade).
pub const FACE_CLASSIFY_SIDE: u32 = 320;
/// The long side faces are looked for at when protecting them: small faces
/// (a team photo) matter there.
pub const FACE_PROTECT_SIDE: u32 = 480;

/// Finds the subject's faces (see [`FACE_CLASSIFY_SIDE`]).
pub fn detect_faces(raster: &Raster) -> Vec<FaceBox> {
    detect_faces_at(raster, FACE_CLASSIFY_SIDE)
}

/// Finds frontal faces on a grey copy whose long side is at most `long_side`.
pub fn detect_faces_at(raster: &Raster, long_side: u32) -> Vec<FaceBox> {
    static MODEL: &[u8] = include_bytes!(env!("RUSTFACE_MODEL"));
    let Ok(model) = rustface::read_model(MODEL) else {
        return Vec::new();
    };
    let (w, h, px) = small_luma_rgb(raster, long_side);
    if w < 24 || h < 24 {
        return Vec::new();
    }
    let grey: Vec<u8> = px.iter().map(|&p| luma(p) as u8).collect();
    let scale = raster.width as f64 / w as f64;
    let mut detector = rustface::create_detector_with_model(model);
    detector.set_min_face_size(20);
    detector.set_score_thresh(2.0);
    detector.set_pyramid_scale_factor(0.8);
    detector.set_slide_window_step(4, 4);
    let image = rustface::ImageData::new(&grey, w, h);
    detector
        .detect(&image)
        .into_iter()
        .map(|f| {
            let b = f.bbox();
            let clamp = |v: i32| (v.max(0) as f64 * scale) as u32;
            let x = clamp(b.x()).min(raster.width - 1);
            let y = clamp(b.y()).min(raster.height - 1);
            FaceBox {
                x,
                y,
                width: ((b.width() as f64 * scale) as u32).min(raster.width - x),
                height: ((b.height() as f64 * scale) as u32).min(raster.height - y),
                score: f.score(),
            }
        })
        .collect()
}

/// The drawing classifier's Drawing + Hentai probability from which a
/// picture is an illustration: odds of three to one. The network sees a
/// 224 px thumbnail, and some photos get 0.5 to 0.7 (scikit-image's rocket
/// 0.72); calling a photo drawn sends it to an anime model, the costlier
/// mistake, so only a clear answer counts.
pub const DRAWN: f64 = 0.75;

/// The class from the features: a small, readable rule set (thresholds and
/// their measured accuracy are in docs/smart-mode.md).
pub fn decide(f: &Features, faces: usize) -> (Class, f64) {
    let clamp = |v: f64| v.clamp(0.5, 0.99);
    // A face that fills a real share of a natural image (no outlines).
    if faces > 0 && f.face_share >= FACE_SHARE && f.top_colours < 0.8 && f.lines < 0.03 {
        return (Class::Face, clamp(0.6 + f.face_share));
    }
    // Several lines of type covering a real share of the frame: a page, a
    // screenshot, a slide, a receipt. (Logos and signs have one or two
    // lines, or a few small ones.)
    if let (Some(lines), Some(share)) = (f.text_lines, f.text_share)
        && lines >= 3
        && share >= 0.05
    {
        return (Class::Text, clamp(0.7 + share / 2.0));
    }
    // A picture the network is fairly sure was drawn: anime frames, comics,
    // painted illustrations, whose shading fools the statistics below.
    if let Some(drawn) = f.drawn
        && drawn >= DRAWN
    {
        return (Class::Illustration, clamp(drawn));
    }
    // The statistics below can take textures and flat artwork for type. When
    // the detector looked closely and saw no line of it, they are overruled.
    let type_unseen = f.close_text_lines == Some(0);
    // Drawn or rendered: few colours, or large flat fills without gradients.
    // Grey images have few colours anyway, so they must have fewer still.
    let grey = f.saturation <= 0.03;
    let few_colours = f.top_colours >= if grey { 0.8 } else { 0.6 };
    let flat_fills = f.flat >= 0.6 && f.ramps <= 0.2;
    if few_colours || flat_fills {
        // Lines of type or a grey UI make it text, unless the detector saw
        // no type on its closer look. Rows of ink on a grey page stand even
        // then: the detector reads print, not handwriting.
        let lines_of_type = f.row_transitions >= 3.0;
        let grey_ui = grey && f.extremes < 0.5;
        if (lines_of_type && grey) || ((lines_of_type || grey_ui) && !type_unseen) {
            return (Class::Text, clamp(0.6 + f.row_transitions / 40.0));
        }
        // Otherwise drawn or rendered; but few colours without flat fills
        // or type is a muted or grey photograph (wood grain, a micrograph),
        // judged below.
        if !type_unseen || flat_fills {
            return (Class::Illustration, clamp(0.5 + f.top_colours / 3.0));
        }
    }
    // A scan: grey, shaded paper, many thin dark strokes. Without type in
    // it, a grey texture: grass, gravel, fabric.
    if grey && f.lines >= 0.035 {
        return if type_unseen {
            (Class::Photo, 0.6)
        } else {
            (Class::Text, 0.6)
        };
    }
    // Natural-looking, but drawn with dark outlines: anime frames, comics.
    if f.lines >= 0.035 && f.lines >= 0.5 * f.edges {
        return (Class::Illustration, 0.6);
    }
    (Class::Photo, clamp(0.9 - f.lines * 5.0))
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
    // Two lanes of about equal length on two cores: the text detector, and
    // the face detector, the drawing classifier and the statistics.
    let (text_lines, faces, look, mut features, blocking) = std::thread::scope(|scope| {
        let lines = scope.spawn(|| {
            networks.text.and_then(|d| {
                d.text_lines(raster)
                    .inspect_err(|e| tracing::warn!("text detection failed: {e:#}"))
                    .ok()
            })
        });
        let faces = detect_faces(raster);
        let look = networks.drawing.and_then(|d| {
            d.look(raster)
                .inspect_err(|e| tracing::warn!("drawing classification failed: {e:#}"))
                .ok()
        });
        let (features, blocking) = (statistics(raster), blockiness(raster));
        let lines = lines.join().ok().flatten();
        (lines, faces, look, features, blocking)
    });
    let area = (raster.width as f64 * raster.height as f64).max(1.0);
    features.face_share = faces
        .iter()
        .map(|f| f.width as f64 * f.height as f64 / area)
        .fold(0.0, f64::max);
    features.text_lines = text_lines.map(|t| t.0);
    features.text_share = text_lines.map(|t| t.1);
    features.drawn = look.as_ref().map(DrawingLook::drawn);
    let jpeg_quality_estimate = jpeg_quality(source);
    if let (Some(look), Some(head)) = (&look, head::Head::builtin()) {
        let inputs = head::inputs(&head::Evidence {
            features: &features,
            look,
            faces: faces.len(),
            jpeg_quality: jpeg_quality_estimate,
            blockiness: blocking,
            has_alpha: raster.has_alpha,
        });
        let probabilities = split_natural(head.families(&inputs), &features, faces.len());
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
            head_inputs: Some(inputs),
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
        head_inputs: None,
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

/// The standard luminance quantisation table (JPEG spec, Annex K), in
/// zig-zag order as DQT stores it.
const STD_LUMA_ZIGZAG: [u16; 64] = [
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37,
    29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81,
    87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
];

/// Estimates the IJG quality setting from the first DQT table of a JPEG.
pub fn jpeg_quality(bytes: &[u8]) -> Option<u8> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if marker == 0xDB {
            let table = bytes.get(i + 4..i + 2 + len)?;
            let precision16 = table.first()? >> 4 == 1;
            let values: Vec<u16> = if precision16 {
                table
                    .get(1..129)?
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            } else {
                table.get(1..65)?.iter().map(|&v| v as u16).collect()
            };
            // IJG scales the standard table by S%: S = 5000/q below 50, 200-2q above.
            let ratio: f64 = values
                .iter()
                .zip(STD_LUMA_ZIGZAG)
                .map(|(&q, s)| q as f64 / s as f64)
                .sum::<f64>()
                / 64.0
                * 100.0;
            let quality = if ratio <= 100.0 {
                (200.0 - ratio) / 2.0
            } else {
                5000.0 / ratio
            };
            return Some(quality.round().clamp(1.0, 100.0) as u8);
        }
        if marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// Mean horizontal luma step across 8-pixel block borders over the mean step
/// elsewhere, at full resolution on a band of rows.
pub fn blockiness(raster: &Raster) -> f64 {
    let (w, h) = (raster.width as usize, raster.height as usize);
    if w < 32 || h < 16 {
        return 1.0;
    }
    let c = raster.channels();
    let rows = (0..h).step_by((h / 128).max(1));
    let (mut border, mut border_n, mut inner, mut inner_n) = (0.0, 0u64, 0.0, 0u64);
    for y in rows {
        let row = &raster.data[y * w * c..(y + 1) * w * c];
        let l = |x: usize| row[x * c + 1] as f64 / 257.0;
        for x in 0..w - 1 {
            let d = (l(x + 1) - l(x)).abs();
            if x % 8 == 7 {
                border += d;
                border_n += 1;
            } else {
                inner += d;
                inner_n += 1;
            }
        }
    }
    let inner = inner / inner_n.max(1) as f64;
    if inner < 0.5 {
        return 1.0; // flat images have no measurable blocking
    }
    (border / border_n.max(1) as f64) / inner
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

    /// A muted photograph whose statistics read as rows of type.
    fn statistically_text() -> Features {
        Features {
            flat: 0.2,
            edges: 0.01,
            top_colours: 0.65,
            background: 0.1,
            saturation: 0.15,
            extremes: 0.0,
            ramps: 0.75,
            row_transitions: 3.6,
            ink: 0.1,
            lines: 0.003,
            face_share: 0.0,
            text_lines: Some(0),
            text_share: Some(0.0),
            close_text_lines: None,
            drawn: Some(0.0),
        }
    }

    #[test]
    fn no_type_on_a_closer_look_overrules_the_statistics() {
        let mut f = statistically_text();
        assert_eq!(decide(&f, 0).0, Class::Text);
        f.close_text_lines = Some(0);
        assert_eq!(decide(&f, 0).0, Class::Photo);
        f.close_text_lines = Some(4);
        assert_eq!(decide(&f, 0).0, Class::Text);
        // Flat artwork without type is an illustration.
        let flat = Features {
            flat: 0.85,
            ramps: 0.08,
            close_text_lines: Some(0),
            ..statistically_text()
        };
        assert_eq!(decide(&flat, 0).0, Class::Illustration);
        // A grey texture full of strokes is a scan only with type in it.
        let grey = Features {
            saturation: 0.0,
            top_colours: 0.6,
            row_transitions: 0.0,
            lines: 0.05,
            edges: 0.06,
            ..statistically_text()
        };
        assert_eq!(decide(&grey, 0).0, Class::Text);
        let grey = Features {
            close_text_lines: Some(0),
            ..grey
        };
        assert_eq!(decide(&grey, 0).0, Class::Photo);
    }

    /// Handwriting is invisible to the detector; rows of ink on a grey page
    /// still make it text.
    #[test]
    fn rows_of_ink_on_a_grey_page_are_text_without_the_detector() {
        let page = Features {
            saturation: 0.0,
            top_colours: 0.91,
            row_transitions: 4.1,
            close_text_lines: Some(0),
            ..statistically_text()
        };
        assert_eq!(decide(&page, 0).0, Class::Text);
    }

    #[test]
    fn jpeg_quality_is_read_from_the_table() {
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
        });
        for q in [30u8, 75, 92] {
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
                .encode_image(&img)
                .unwrap();
            let est = jpeg_quality(&out).unwrap();
            assert!(est.abs_diff(q) <= 2, "quality {q} estimated as {est}");
        }
    }
}
