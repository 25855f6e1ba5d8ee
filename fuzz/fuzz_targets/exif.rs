//! EXIF: the input is an EXIF block (TIFF structure) placed in a JPEG APP1
//! segment or a PNG eXIf chunk around a small valid picture, then decoded (the
//! orientation is read and applied) and rewritten by both metadata modes
//! (kamadak-exif), as the encode stage does. The raw block is also rewritten
//! directly, the way a block a decoder passed through unchanged would be.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(init: common::init(), |data: &[u8]| {
    let Some((&choice, blob)) = data.split_first() else {
        return;
    };
    let file = if choice & 1 == 0 {
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(blob);
        common::jpeg_with_segments(common::rgb_jpeg(), &[(0xe1, app1)])
    } else {
        common::png_with_chunks(false, choice & 2 != 0, &[(png::chunk::eXIf, blob)])
    };
    common::decode_and_rewrite_exif(&file);
    common::rewrite_exif(Some(blob));
});
