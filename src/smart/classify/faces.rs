//! Faces: the SeetaFace frontal detector that ships inside the `rustface`
//! crate, on a grey copy of fixed size.

use super::FaceBox;
use super::statistics::{luma, small_luma_rgb};
use crate::raster::Raster;

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
