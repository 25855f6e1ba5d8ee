//! ICC profiles (lcms2): the input is an embedded profile, in a PNG iCCP chunk
//! of an 8- or 16-bit RGB(A) picture (the RGB-to-sRGB conversion) or in JPEG
//! APP2 segments of a CMYK picture with or without the Adobe marker (the
//! CMYK-to-sRGB conversion), then decoded as the daemon does.
#![no_main]

mod common;

use std::io::Write;

libfuzzer_sys::fuzz_target!(init: common::init(), |data: &[u8]| {
    let Some((&choice, profile)) = data.split_first() else {
        return;
    };
    let file = match choice % 6 {
        variant @ 0..=3 => {
            let mut iccp = b"ICC Profile\0\0".to_vec();
            let mut z = flate2::write::ZlibEncoder::new(&mut iccp, flate2::Compression::fast());
            z.write_all(profile).expect("zlib");
            z.finish().expect("zlib");
            common::png_with_chunks(variant & 1 != 0, variant & 2 != 0, &[(png::chunk::iCCP, &iccp)])
        }
        variant => {
            // ICC_PROFILE segments of at most 65519 bytes, numbered from 1.
            let parts: Vec<&[u8]> = if profile.is_empty() {
                vec![profile]
            } else {
                profile.chunks(65519).take(255).collect()
            };
            let segments: Vec<(u8, Vec<u8>)> = parts
                .iter()
                .enumerate()
                .map(|(i, part)| {
                    let mut app2 = b"ICC_PROFILE\0".to_vec();
                    app2.extend_from_slice(&[i as u8 + 1, parts.len() as u8]);
                    app2.extend_from_slice(part);
                    (0xe2, app2)
                })
                .collect();
            common::jpeg_with_segments(common::cmyk_jpeg(variant == 4), &segments)
        }
    };
    common::decode(&file);
});
