//! Inputs the fuzz targets (fuzz/, docs/fuzzing.md) found, each kept as a
//! test: the file must fail to decode with a reason, never take the process
//! down or hang.

use upscaled::error::Stage;
use upscaled::pipeline::decode::{DecodeLimits, decode};

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// A 1x1 8-bit indexed PNG whose PLTE chunk holds `palette`.
fn indexed_png(palette: &[u8]) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 3, 0, 0, 0];
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"PLTE", palette));
    // zlib of one row: filter byte 0, index 0.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &[0, 0]).unwrap();
    png.extend(chunk(b"IDAT", &z.finish().unwrap()));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// decode_png: png 0.18.1 panics on a PLTE chunk whose length is not a
/// multiple of 3 (an out-of-range slice in its palette expansion). The panic
/// must stay inside decode: the file fails at the decode stage with a reason.
#[test]
fn png_palette_of_four_bytes_fails_with_a_reason() {
    // The same picture with a whole palette entry decodes, so the test is
    // about the palette's length and nothing else.
    let good = decode(&indexed_png(&[10, 20, 30]), &DecodeLimits::default()).unwrap();
    assert_eq!((good.raster.width, good.raster.height), (1, 1));
    for len in [4, 5, 7, 8] {
        let palette: Vec<u8> = (0..len as u8).collect();
        let e = decode(&indexed_png(&palette), &DecodeLimits::default())
            .err()
            .unwrap_or_else(|| panic!("a {len}-byte PLTE decoded"));
        assert_eq!(e.stage, Stage::Decode);
        assert!(!e.cause.is_empty());
    }
}

/// A WebP with an extended header and one chunk that declares `size` bytes
/// but holds only a few.
fn webp_with_chunk(kind: &[u8; 4], size: u32) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    // VP8X: flags (EXIF and ICC present), reserved, canvas 1x1 (minus one).
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(kind);
    body.extend_from_slice(&size.to_le_bytes());
    body.extend_from_slice(b"only a few bytes");
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend(body);
    webp
}

/// decode_webp: image-webp 0.2.4 allocated the size a metadata chunk declares
/// (3.6 GB from a 1 KB file: an out-of-memory abort where memory is not
/// overcommitted) before finding the file too short; image's max_alloc does
/// not reach those reads. decode now refuses a chunk larger than the file,
/// naming it, before any decoder runs.
#[test]
fn webp_chunk_larger_than_the_file_is_refused_before_decoding() {
    for kind in [b"EXIF", b"ICCP", b"VP8 ", b"ANMF"] {
        let e = decode(
            &webp_with_chunk(kind, 0xd900_0000),
            &DecodeLimits::default(),
        )
        .err()
        .unwrap();
        assert_eq!(e.stage, Stage::Decode);
        let name = String::from_utf8_lossy(kind).into_owned();
        assert!(
            e.cause
                .contains(&format!("\"{name}\" chunk declares 3640655872 bytes")),
            "{}",
            e.cause
        );
    }
}
