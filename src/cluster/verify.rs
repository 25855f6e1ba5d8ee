//! The coordinator's check of a worker's output before it is written: the
//! format it must be, the bytes the worker hashed, the size the plan
//! expects, and (for the formats the image crate reads) a whole decode, so
//! a truncated or forged file is refused, never published.

use std::io::Cursor;

use crate::pipeline::encode::OutputFormat;

/// Why an output is refused, or Ok.
pub fn check(
    bytes: &[u8],
    format: OutputFormat,
    sha256: &str,
    expected: (u32, u32),
    max_bytes: Option<u64>,
) -> Result<(), String> {
    if super::wire::sha256_hex(bytes) != sha256 {
        return Err("its bytes do not match the hash it reported".into());
    }
    if let Some(max) = max_bytes
        && bytes.len() as u64 > max
    {
        return Err(format!(
            "{} bytes, over the target's limit of {max}",
            bytes.len()
        ));
    }
    let size = match format {
        OutputFormat::Avif => avif_size(bytes).ok_or("not an AVIF file")?,
        other => decoded_size(bytes, other, expected)?,
    };
    if size != expected {
        return Err(format!(
            "{}x{} pixels where the plan expects {}x{}",
            size.0, size.1, expected.0, expected.1
        ));
    }
    Ok(())
}

fn decoded_size(
    bytes: &[u8],
    format: OutputFormat,
    expected: (u32, u32),
) -> Result<(u32, u32), String> {
    let wanted = match format {
        OutputFormat::Png => image::ImageFormat::Png,
        OutputFormat::Webp => image::ImageFormat::WebP,
        OutputFormat::Jpeg => image::ImageFormat::Jpeg,
        OutputFormat::Avif => unreachable!("AVIF is read by its boxes"),
    };
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format() != Some(wanted) {
        return Err(format!("not a {} file", format.extension()));
    }
    let size = reader
        .into_dimensions()
        .map_err(|e| format!("unreadable header: {e}"))?;
    if size != expected {
        return Ok(size);
    }
    // The size is the planned one, so a whole decode is bounded by it.
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), wanted);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(expected.0);
    limits.max_image_height = Some(expected.1);
    limits.max_alloc = Some(u64::from(expected.0) * u64::from(expected.1) * 8 + (1 << 20));
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| format!("does not decode: {e}"))?;
    Ok(size)
}

/// Width and height from an AVIF's `ftyp` brand and `ispe` property.
fn avif_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let head = bytes.get(4..12)?;
    if &head[..4] != b"ftyp"
        || !bytes[8..bytes.len().min(64)]
            .windows(4)
            .any(|w| w == b"avif")
    {
        return None;
    }
    let at = bytes.windows(4).position(|w| w == b"ispe")?;
    let field = |o: usize| {
        bytes
            .get(at + o..at + o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    Some((field(8)?, field(12)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_true_output_passes_and_forgeries_do_not() {
        let good = png(40, 30);
        let sha = crate::cluster::wire::sha256_hex(&good);
        assert_eq!(
            check(&good, OutputFormat::Png, &sha, (40, 30), None),
            Ok(())
        );
        // Other pixels than the plan, the wrong format, a lie about the hash.
        assert!(check(&good, OutputFormat::Png, &sha, (80, 60), None).is_err());
        assert!(check(&good, OutputFormat::Webp, &sha, (40, 30), None).is_err());
        assert!(check(&good, OutputFormat::Png, "00", (40, 30), None).is_err());
        assert!(check(&good, OutputFormat::Png, &sha, (40, 30), Some(10)).is_err());
        // Truncated: the header is right, the pixels are not there.
        let cut = &good[..good.len() / 2];
        let sha = crate::cluster::wire::sha256_hex(cut);
        assert!(check(cut, OutputFormat::Png, &sha, (40, 30), None).is_err());
        let noise: Vec<u8> = (0..500u32).map(|i| (i * 7919 % 251) as u8).collect();
        let sha = crate::cluster::wire::sha256_hex(&noise);
        assert!(check(&noise, OutputFormat::Avif, &sha, (40, 30), None).is_err());
    }
}
