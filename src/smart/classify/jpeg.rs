//! JPEG damage: the quality of the file's luminance table and the
//! blockiness of the decoded picture.

use crate::raster::Raster;

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
