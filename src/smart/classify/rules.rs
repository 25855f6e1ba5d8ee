//! The hand-written rule tree that decides when the drawing network (and
//! so the head, which reads its embedding) is not installed.

use super::{Class, FACE_SHARE, Features};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
