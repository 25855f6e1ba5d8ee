//! The white-background rule of marketplace main images (Amazon asks for RGB
//! 255,255,255): measure how white a picture's border is, and `whiten`, which
//! sets the near-white background that touches the border to pure white and
//! leaves everything the border does not reach (the product) alone.

use crate::raster::{Raster, u16_to_u8 as to8};

/// Lowest 8-bit value, in every channel, that still reads as a white backdrop:
/// off-white studio sweeps and JPEG noise sit at 240–254, while the lightest
/// product colours (cream, light grey, pale wood) have a channel below it.
pub const NEAR_WHITE_MIN: u8 = 235;

/// Share of edge pixels: exactly white, and near white (white included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Border {
    pub pure: f64,
    pub near: f64,
}

/// A transparent pixel counts as background: it is flattened onto the white
/// pad colour by formats without alpha.
fn is_clear(raster: &Raster, i: usize) -> bool {
    raster.has_alpha && to8(raster.data[i + 3]) == 0
}

fn min_channel(raster: &Raster, i: usize) -> u8 {
    to8(raster.data[i])
        .min(to8(raster.data[i + 1]))
        .min(to8(raster.data[i + 2]))
}

/// The edge ring, about 1% of the short side deep (at least one pixel).
pub fn border(raster: &Raster) -> Border {
    let (w, h) = (raster.width as usize, raster.height as usize);
    if w == 0 || h == 0 {
        return Border {
            pure: 1.0,
            near: 1.0,
        };
    }
    let depth = (w.min(h) / 100).max(1);
    let c = raster.channels();
    let (mut pure, mut near, mut total) = (0u64, 0u64, 0u64);
    for y in 0..h {
        let edge_row = y < depth || y >= h - depth;
        for x in 0..w {
            if !edge_row && x >= depth && x < w - depth {
                continue;
            }
            let i = (y * w + x) * c;
            let m = if is_clear(raster, i) {
                255
            } else {
                min_channel(raster, i)
            };
            total += 1;
            pure += u64::from(m == 255);
            near += u64::from(m >= NEAR_WHITE_MIN);
        }
    }
    Border {
        pure: pure as f64 / total as f64,
        near: near as f64 / total as f64,
    }
}

/// Sets to pure white every near-white pixel connected to the image edge
/// through near-white pixels (4-neighbours); returns how many changed.
pub fn whiten(raster: &mut Raster) -> u64 {
    let (w, h) = (raster.width as usize, raster.height as usize);
    let c = raster.channels();
    let near = |r: &Raster, p: usize| is_clear(r, p * c) || min_channel(r, p * c) >= NEAR_WHITE_MIN;
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    for x in 0..w {
        stack.extend([x, (h.saturating_sub(1)) * w + x]);
    }
    for y in 0..h {
        stack.extend([y * w, y * w + w.saturating_sub(1)]);
    }
    let mut changed = 0;
    while let Some(p) = stack.pop() {
        if p >= w * h || seen[p] || !near(raster, p) {
            continue;
        }
        seen[p] = true;
        let i = p * c;
        if raster.data[i..i + 3].iter().any(|v| *v != u16::MAX) {
            raster.data[i..i + 3].fill(u16::MAX);
            changed += 1;
        }
        let (x, y) = (p % w, p / w);
        if x > 0 {
            stack.push(p - 1);
        }
        if x + 1 < w {
            stack.push(p + 1);
        }
        if y > 0 {
            stack.push(p - w);
        }
        if y + 1 < h {
            stack.push(p + w);
        }
    }
    changed
}

/// The warning for a picture whose border breaks a pure-white rule (None: it
/// holds). `whitened`: the target maps near-white borders to white.
pub fn white_rule_warning(b: Border, whitened: bool) -> Option<String> {
    // A few stray pixels (dust, a shadow touching the frame) are not a grey backdrop.
    if b.pure >= 0.99 {
        return None;
    }
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    if b.near < 0.9 {
        return Some(format!(
            "background is not white: only {} of the border is near white (the platform asks \
             for a pure white background, RGB 255,255,255)",
            pct(b.near)
        ));
    }
    Some(if whitened {
        format!(
            "border was {} pure white, {} near white: near-white background set to 255 \
             (background: whiten)",
            pct(b.pure),
            pct(b.near)
        )
    } else {
        format!(
            "border is not pure white ({} of it at RGB 255,255,255, {} near white); the \
             platform asks for pure white: `background: whiten` sets near-white borders to 255",
            pct(b.pure),
            pct(b.near)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey-ish product on an off-white backdrop with a white spot inside it.
    fn product_on(backdrop: u8) -> Raster {
        let (w, h) = (60u32, 40u32);
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let inside = (15..45).contains(&x) && (10..30).contains(&y);
                let spot = (28..32).contains(&x) && (18..22).contains(&y);
                let v = match (inside, spot) {
                    (true, true) => 250, // a white label on the product
                    (true, false) => 120,
                    _ => backdrop,
                };
                px.extend([v, v, v]);
            }
        }
        Raster::from_u8(w, h, false, &px)
    }

    #[test]
    fn border_measures_white_and_near_white() {
        assert_eq!(
            border(&product_on(255)),
            Border {
                pure: 1.0,
                near: 1.0
            }
        );
        let b = border(&product_on(246));
        assert_eq!((b.pure, b.near), (0.0, 1.0));
        assert_eq!(border(&product_on(200)).near, 0.0);
    }

    #[test]
    fn whiten_reaches_the_backdrop_but_not_the_product() {
        let mut r = product_on(246);
        let changed = whiten(&mut r);
        assert_eq!(changed, 60 * 40 - 30 * 20);
        assert_eq!(r.pixel(0, 0), &[u16::MAX; 3]);
        assert_eq!(to8(r.pixel(20, 15)[0]), 120, "product untouched");
        assert_eq!(
            to8(r.pixel(30, 20)[0]),
            250,
            "white label inside the product untouched"
        );
        assert_eq!(border(&r).pure, 1.0);
    }

    #[test]
    fn a_photo_backdrop_is_left_alone() {
        let mut r = product_on(180);
        assert_eq!(whiten(&mut r), 0);
        assert!(
            white_rule_warning(border(&r), true)
                .unwrap()
                .contains("not white")
        );
    }

    #[test]
    fn warnings_say_what_to_do() {
        assert_eq!(white_rule_warning(border(&product_on(255)), false), None);
        let w = white_rule_warning(border(&product_on(246)), false).unwrap();
        assert!(w.contains("background: whiten"), "{w}");
    }
}
