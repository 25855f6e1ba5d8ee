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
        // only the lines the detector found are protected.
        (Text, Photo) if lines_found => 0.3,
        (Text, Photo) => 1.0,
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

/// The route with the least expected cost. Ties go to the earlier route of
/// [`CLASSES`], the safer one.
pub fn decide(p: &Probabilities, lines_found: bool) -> Decision {
    let expected_costs = CLASSES.map(|route| {
        CLASSES
            .iter()
            .map(|&truth| p.of(truth) * cost(truth, route, lines_found))
            .sum::<f64>()
    });
    let best = (0..4)
        .min_by(|&a, &b| expected_costs[a].total_cmp(&expected_costs[b]))
        .unwrap_or(0);
    Decision {
        route: CLASSES[best],
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
        // A chance in three of type is enough without a line to protect...
        assert_eq!(decide(&p(0.65, 0.0, 0.35, 0.0), false).route, Class::Text);
        // ...with lines found, the photo route may take it.
        assert_eq!(decide(&p(0.65, 0.0, 0.35, 0.0), true).route, Class::Photo);
        // A likely photo is a photo.
        assert_eq!(decide(&p(0.85, 0.0, 0.15, 0.0), false).route, Class::Photo);
        // Type is never sent to a drawing-only model on a hunch.
        assert_eq!(decide(&p(0.0, 0.0, 0.2, 0.8), false).route, Class::Text);
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
