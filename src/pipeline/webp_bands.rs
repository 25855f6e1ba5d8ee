//! Lossy WebP with its sharp RGB→YUV conversion run in horizontal bands, one
//! per thread.
//!
//! libwebp's sharp ("iterative") conversion keeps colour edges crisp but is
//! single-threaded, and on a 4 MP output it is 40% of the encode
//! (docs/benchmarks.md, "The main job"). Each band is converted on its own
//! thread into its own picture; the planes are then copied into one YUV
//! picture that libwebp encodes as usual. A band ends on an even row, so
//! each band owns whole chroma rows; only the two luma rows at a seam see a
//! clamped neighbour instead of the real one.

use libwebp_sys as sys;
use std::ffi::c_void;

/// Below this many rows a band costs more in set-up than it saves.
const MIN_BAND_ROWS: u32 = 128;

/// A libwebp picture, freed on drop.
struct Picture(sys::WebPPicture);

impl Picture {
    fn new(width: u32, height: u32) -> Result<Self, String> {
        // SAFETY: WebPPicture is a plain C struct; Init fills every field.
        let mut picture: sys::WebPPicture = unsafe { std::mem::zeroed() };
        let ok = unsafe {
            sys::WebPPictureInitInternal(&mut picture, sys::WEBP_ENCODER_ABI_VERSION as i32)
        };
        if ok == 0 {
            return Err("libwebp picture init failed (library version mismatch)".into());
        }
        picture.width = width as i32;
        picture.height = height as i32;
        Ok(Self(picture))
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised by `new`; Free accepts any
        // state Init and the conversions leave it in.
        unsafe { sys::WebPPictureFree(&mut self.0) }
    }
}

// The picture owns its planes and nothing else refers to them.
unsafe impl Send for Picture {}

/// One band of rows as a YUV(A) picture, by the sharp conversion.
fn convert_band(pixels: &[u8], width: u32, rows: u32, channels: u32) -> Result<Picture, String> {
    let mut band = Picture::new(width, rows)?;
    band.0.use_argb = 1;
    let stride = (width * channels) as i32;
    debug_assert_eq!(pixels.len(), (width * rows * channels) as usize);
    // SAFETY: `pixels` holds `rows` rows of `stride` bytes (checked by the
    // caller), and the picture's size was set above.
    let imported = unsafe {
        if channels == 4 {
            sys::WebPPictureImportRGBA(&mut band.0, pixels.as_ptr(), stride)
        } else {
            sys::WebPPictureImportRGB(&mut band.0, pixels.as_ptr(), stride)
        }
    };
    if imported == 0 {
        return Err(format!(
            "libwebp could not import a {width}x{rows} band ({:?})",
            band.0.error_code
        ));
    }
    // SAFETY: the picture holds ARGB from the import above.
    if unsafe { sys::WebPPictureSharpARGBToYUVA(&mut band.0) } == 0 {
        return Err(format!(
            "libwebp sharp YUV conversion failed ({:?})",
            band.0.error_code
        ));
    }
    Ok(band)
}

/// Copies `rows` rows of `bytes` bytes from one plane into another.
///
/// SAFETY: both planes must hold `rows` rows of at least `bytes` bytes at
/// their strides.
unsafe fn copy_plane(
    from: *const u8,
    from_stride: i32,
    to: *mut u8,
    to_stride: i32,
    bytes: usize,
    rows: u32,
) {
    for row in 0..rows as isize {
        unsafe {
            std::ptr::copy_nonoverlapping(
                from.offset(row * from_stride as isize),
                to.offset(row * to_stride as isize),
                bytes,
            );
        }
    }
}

/// The row where each band starts, plus the height: even rows, `threads`
/// bands at most, none under MIN_BAND_ROWS.
fn band_starts(height: u32, threads: usize) -> Vec<u32> {
    let bands = (height / MIN_BAND_ROWS).clamp(1, threads.max(1) as u32);
    let step = (height.div_ceil(bands) + 1) & !1;
    let mut starts: Vec<u32> = (0..bands)
        .map(|b| b * step)
        .filter(|&s| s < height)
        .collect();
    starts.push(height);
    starts
}

/// Encodes 8-bit RGB or RGBA `pixels` as lossy WebP with `config`, the
/// sharp conversion spread over `threads` bands.
pub fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    has_alpha: bool,
    config: &sys::WebPConfig,
    threads: usize,
) -> Result<Vec<u8>, String> {
    let channels = if has_alpha { 4 } else { 3 };
    let row_bytes = (width * channels) as usize;
    if pixels.len() != row_bytes * height as usize {
        return Err(format!(
            "{} bytes for a {width}x{height} image of {channels} channels",
            pixels.len()
        ));
    }
    let starts = band_starts(height, threads);
    let mut bands = convert_bands(pixels, width, &starts, channels)?;
    // One band is the picture libwebp would have made itself: no copy.
    let mut picture = if bands.len() == 1 {
        bands.remove(0)
    } else {
        assemble(bands, &starts, width, height, has_alpha)?
    };
    encode_picture(&mut picture, config)
}

/// Each band of rows (`starts`, as `band_starts` gives them) converted on
/// its own thread; a single band on this one.
fn convert_bands(
    pixels: &[u8],
    width: u32,
    starts: &[u32],
    channels: u32,
) -> Result<Vec<Picture>, String> {
    let row_bytes = (width * channels) as usize;
    let band = |top: u32, bottom: u32| {
        let rows = &pixels[top as usize * row_bytes..bottom as usize * row_bytes];
        convert_band(rows, width, bottom - top, channels)
    };
    if let [top, bottom] = starts {
        return Ok(vec![band(*top, *bottom)?]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = starts
            .windows(2)
            .map(|w| scope.spawn(move || band(w[0], w[1])))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a WebP conversion thread panicked".into()))
            })
            .collect()
    })
}

/// The bands' planes copied into one YUV(A) picture of the whole image.
fn assemble(
    bands: Vec<Picture>,
    starts: &[u32],
    width: u32,
    height: u32,
    has_alpha: bool,
) -> Result<Picture, String> {
    let mut whole = Picture::new(width, height)?;
    whole.0.use_argb = 0;
    whole.0.colorspace = if has_alpha {
        sys::WebPEncCSP::WEBP_YUV420A
    } else {
        sys::WebPEncCSP::WEBP_YUV420
    };
    // SAFETY: size and colour space are set; Alloc makes the YUV(A) planes.
    if unsafe { sys::WebPPictureAlloc(&mut whole.0) } == 0 {
        return Err(format!(
            "libwebp could not allocate a {width}x{height} picture"
        ));
    }
    let chroma_width = width.div_ceil(2) as usize;
    for (band, &top) in bands.iter().zip(starts) {
        let b = &band.0;
        let w = &whole.0;
        let rows = b.height as u32;
        // SAFETY: the band's planes hold `rows` luma rows and rows.div_ceil(2)
        // chroma rows; the whole picture's hold the band's rows at `top`
        // (`top` is even, so its chroma rows start at top / 2).
        unsafe {
            copy_plane(
                b.y,
                b.y_stride,
                w.y.offset(top as isize * w.y_stride as isize),
                w.y_stride,
                width as usize,
                rows,
            );
            for (from, to) in [(b.u, w.u), (b.v, w.v)] {
                copy_plane(
                    from,
                    b.uv_stride,
                    to.offset((top / 2) as isize * w.uv_stride as isize),
                    w.uv_stride,
                    chroma_width,
                    rows.div_ceil(2),
                );
            }
            if has_alpha {
                let to = w.a.offset(top as isize * w.a_stride as isize);
                if b.a.is_null() {
                    // libwebp leaves out the alpha plane of an opaque band.
                    for row in 0..rows as isize {
                        std::ptr::write_bytes(
                            to.offset(row * w.a_stride as isize),
                            255,
                            width as usize,
                        );
                    }
                } else {
                    copy_plane(b.a, b.a_stride, to, w.a_stride, width as usize, rows);
                }
            }
        }
    }

    Ok(whole)
}

/// libwebp's encode of a YUV(A) picture, into memory.
fn encode_picture(picture: &mut Picture, config: &sys::WebPConfig) -> Result<Vec<u8>, String> {
    // SAFETY: WebPMemoryWriter is a plain C struct that Init fills; the
    // picture writes into it through WebPMemoryWrite during WebPEncode and
    // the writer outlives that call; Clear frees what it gathered.
    unsafe {
        let mut writer: sys::WebPMemoryWriter = std::mem::zeroed();
        sys::WebPMemoryWriterInit(&mut writer);
        picture.0.writer = Some(sys::WebPMemoryWrite);
        picture.0.custom_ptr = &mut writer as *mut sys::WebPMemoryWriter as *mut c_void;
        let ok = sys::WebPEncode(config, &mut picture.0);
        let result = if ok == 0 {
            Err(format!("WebP encoder: {:?}", picture.0.error_code))
        } else {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        };
        sys::WebPMemoryWriterClear(&mut writer);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_start_on_even_rows_and_cover_the_image() {
        for (height, threads) in [(1, 4), (127, 2), (300, 2), (301, 2), (2048, 2), (2049, 3)] {
            let starts = band_starts(height, threads);
            assert_eq!(starts[0], 0);
            assert_eq!(*starts.last().unwrap(), height);
            assert!(starts.len() - 1 <= threads.max(1));
            for w in starts.windows(2) {
                assert!(w[0] < w[1], "{height}/{threads}: {starts:?}");
                assert_eq!(w[0] % 2, 0, "{height}/{threads}: {starts:?}");
            }
        }
        assert_eq!(band_starts(100, 2), vec![0, 100], "small images stay whole");
    }

    fn config() -> sys::WebPConfig {
        let mut config = webp::WebPConfig::new().unwrap();
        config.quality = 90.0;
        config.use_sharp_yuv = 1;
        config.alpha_compression = 1;
        config
    }

    /// A smooth gradient with hard colour edges, in RGBA; the top third
    /// half transparent, the rest opaque (so only one band has alpha).
    fn pattern(width: u32, height: u32) -> Vec<u8> {
        let mut px = Vec::with_capacity((width * height * 4) as usize);
        for y in 0..height {
            for x in 0..width {
                let edge = (x / 37 + y / 29) % 2 == 0;
                px.extend_from_slice(&[
                    if edge { 220 } else { 30 },
                    (x * 255 / width) as u8,
                    (y * 255 / height) as u8,
                    if y < height / 3 { 128 } else { 255 },
                ]);
            }
        }
        px
    }

    fn decode(bytes: &[u8]) -> Vec<u8> {
        webp::Decoder::new(bytes)
            .decode()
            .expect("our WebP decodes")
            .to_image()
            .to_rgba8()
            .into_raw()
    }

    #[test]
    fn banded_output_matches_the_one_piece_conversion() {
        let (width, height) = (301, 517);
        let rgba = pattern(width, height);
        let rgb: Vec<u8> = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        for (pixels, alpha) in [(&rgb, false), (&rgba, true)] {
            let source: Vec<u8> = if alpha {
                rgba.clone()
            } else {
                rgba.chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2], 255])
                    .collect()
            };
            // Mean colour error against the source; alpha must come back exactly.
            let error = |decoded: &[u8]| {
                let sum: u64 = source
                    .chunks_exact(4)
                    .zip(decoded.chunks_exact(4))
                    .map(|(s, d)| {
                        assert_eq!(s[3], d[3], "alpha changed");
                        (0..3).map(|c| s[c].abs_diff(d[c]) as u64).sum::<u64>()
                    })
                    .sum();
                sum as f64 / (width * height * 3) as f64
            };
            let whole = error(&decode(
                &encode(pixels, width, height, alpha, &config(), 1).unwrap(),
            ));
            let banded = error(&decode(
                &encode(pixels, width, height, alpha, &config(), 3).unwrap(),
            ));
            eprintln!("alpha {alpha}: mean error one piece {whole:.3}, banded {banded:.3}");
            assert!(
                whole < 8.0,
                "alpha {alpha}: one piece is {whole} off the source"
            );
            // The encoder's own choices move with any change, so the two are
            // not identical; the banded one must be as close to the source.
            assert!(
                banded < whole * 1.02 + 0.01,
                "alpha {alpha}: banded {banded} against one piece {whole}"
            );
        }
    }

    #[test]
    fn a_wrong_buffer_is_an_error_not_a_read_past_it() {
        let err = encode(&[0u8; 100], 64, 64, false, &config(), 2).unwrap_err();
        assert!(err.contains("64x64"), "{err}");
    }
}
