//! Smart mode's decision weighed by what a wrong route costs: the route with
//! the least expected cost under the head's probabilities, not the most
//! likely class. The table is the one in docs/smart-mode.md ("Cost").

use serde::Serialize;

use super::Class;

/// The four classes in the order of the table's rows and columns.
pub const CLASSES: [Class; 4] = [Class::Photo, Class::Face, Class::Text, Class::Illustration];

/// What it costs to send a picture whose truth is `truth` down the route of
/// `route`, in units of "a photo a little softer than it could be". The
/// routes differ in their models (config/routes.yaml): photo is fidelity
/// SPAN but generative at `best` and for damaged JPEGs; face and text are
/// fidelity SPAN at every level (the same models); illustration is a
/// drawing-only model at every level. `lines_found`: whether the text
/// detector found a line of type, which protection then takes from the
/// fidelity model, so a generative model cannot reinvent it.
pub fn cost(truth: Class, route: Class, lines_found: bool) -> f64 {
    use Class::*;
    match (truth, route) {
        (t, r) if t == r => 0.0,
        // A natural picture through a drawing-only model comes out waxy,
        // a person as a cartoon: the worst output the product can make.
        (Photo | Face, Illustration) => 10.0,
        // Type through a drawing-only model may be reinvented, less so
        // where its lines are protected.
        (Text, Illustration) if lines_found => 2.0,
        (Text, Illustration) => 4.0,
        // The photo route is the same fidelity model as the text route
        // except at `best` and for damaged JPEGs, where it is generative and
        // only the lines the detector found are protected: type it did not
        // find is reinvented, as bad as a drawing-only model.
        (Text, Photo) if lines_found => 1.0,
        (Text, Photo) => 4.0,
        // Face and text routes run the same fidelity models.
        (Face, Text) | (Text, Face) => 0.1,
        // A photo on a fidelity-only route misses the generative texture
        // of `best` and the JPEG denoiser: a little softer.
        (Photo, Face | Text) => 0.3,
        // A face on the photo route is protected at `best`, but the
        // generative model still runs around it.
        (Face, Photo) => 0.5,
        // A drawing through a fidelity model is only a little less crisp
        // (docs/smart-mode.md, "Route evaluation": often not even that).
        (Illustration, _) => 0.5,
        _ => 0.0,
    }
}

/// The four class probabilities (they sum to 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Probabilities {
    pub photo: f64,
    pub face: f64,
    pub text: f64,
    pub illustration: f64,
}

impl Probabilities {
    pub fn of(&self, class: Class) -> f64 {
        match class {
            Class::Photo => self.photo,
            Class::Face => self.face,
            Class::Text => self.text,
            Class::Illustration => self.illustration,
        }
    }

    /// The most probable class.
    pub fn likely(&self) -> Class {
        CLASSES
            .into_iter()
            .max_by(|a, b| self.of(*a).total_cmp(&self.of(*b)))
            .unwrap_or(Class::Photo)
    }
}

/// The route taken and what each would have cost on average.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub route: Class,
    /// Expected cost of each route, in [`CLASSES`] order.
    pub expected_costs: [f64; 4],
}

/// The route with the least expected cost, every route taken as its own
/// model (the table as written). Ties go to the more likely class.
pub fn decide(p: &Probabilities, lines_found: bool) -> Decision {
    decide_with(p, lines_found, |_, _| false)
}

/// As [`decide`], where `same_model(truth, route)` says that the two routes
/// run the same model at the job's scale and level (config/routes.yaml):
/// then the detour costs nothing, because the output is the same. At
/// `balanced` the photo, face and text routes share SPAN, so only the
/// drawing-only route is weighed; at `best` the photo route's generative
/// model is.
pub fn decide_with(
    p: &Probabilities,
    lines_found: bool,
    same_model: impl Fn(Class, Class) -> bool,
) -> Decision {
    let expected_costs = CLASSES.map(|route| {
        CLASSES
            .iter()
            .filter(|&&truth| !same_model(truth, route))
            .map(|&truth| p.of(truth) * cost(truth, route, lines_found))
            .sum::<f64>()
    });
    let least = expected_costs.iter().copied().fold(f64::INFINITY, f64::min);
    // Among routes of (numerically) equal cost, the one named after the
    // most likely class, so that reports say what the picture is.
    let route = CLASSES
        .into_iter()
        .zip(expected_costs)
        .filter(|&(_, cost)| cost <= least + 1e-9)
        .map(|(route, _)| route)
        .max_by(|a, b| p.of(*a).total_cmp(&p.of(*b)))
        .unwrap_or(Class::Photo);
    Decision {
        route,
        expected_costs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(photo: f64, face: f64, text: f64, illustration: f64) -> Probabilities {
        Probabilities {
            photo,
            face,
            text,
            illustration,
        }
    }

    #[test]
    fn a_borderline_photo_goes_to_fidelity() {
        // Most likely drawn, but a one-in-ten chance of a photo is too much
        // for the drawing route.
        let d = decide(&p(0.1, 0.0, 0.0, 0.9), false);
        assert_eq!(d.route, Class::Photo, "{d:?}");
        // A clear drawing takes it.
        assert_eq!(
            decide(&p(0.02, 0.0, 0.0, 0.98), false).route,
            Class::Illustration
        );
        // A possible face keeps the face route's protection.
        assert_eq!(decide(&p(0.05, 0.05, 0.0, 0.9), false).route, Class::Face);
    }

    #[test]
    fn unprotected_type_stays_on_the_text_route() {
        // A chance in seven of type is enough without a line to protect...
        assert_eq!(decide(&p(0.85, 0.0, 0.15, 0.0), false).route, Class::Text);
        // ...with lines found, the photo route may take it.
        assert_eq!(decide(&p(0.85, 0.0, 0.15, 0.0), true).route, Class::Photo);
        // A clear photo is a photo.
        assert_eq!(decide(&p(0.95, 0.0, 0.05, 0.0), false).route, Class::Photo);
        // Type is never sent to a drawing-only model on a hunch.
        assert_eq!(decide(&p(0.0, 0.0, 0.2, 0.8), false).route, Class::Text);
    }

    #[test]
    fn a_detour_through_the_same_model_costs_nothing() {
        // At `balanced` photo and text run the same fidelity model: a
        // photo with a fair chance of type is still reported as a photo.
        let q = p(0.8, 0.0, 0.2, 0.0);
        assert_eq!(decide(&q, false).route, Class::Text);
        let fidelity = |c: Class| c != Class::Illustration;
        let shared = |t: Class, r: Class| fidelity(t) && fidelity(r);
        let d = decide_with(&q, false, shared);
        assert_eq!(d.route, Class::Photo, "{d:?}");
        assert_eq!(d.expected_costs[0], 0.0);
        // The drawing-only route is still weighed in full.
        let drawn = p(0.1, 0.0, 0.0, 0.9);
        assert_eq!(decide_with(&drawn, false, shared).route, Class::Photo);
    }

    #[test]
    fn the_most_likely_class_wins_when_it_is_sure() {
        for class in CLASSES {
            let mut q = p(0.0, 0.0, 0.0, 0.0);
            match class {
                Class::Photo => q.photo = 1.0,
                Class::Face => q.face = 1.0,
                Class::Text => q.text = 1.0,
                Class::Illustration => q.illustration = 1.0,
            }
            assert_eq!(q.likely(), class);
            assert_eq!(decide(&q, false).route, class);
        }
    }
}
