//! The CMYK/YCCK JPEG path (zune-jpeg, the Adobe inversion, lcms2 with the
//! embedded CMYK profile or the naive formula). Inputs whose frame header is
//! not 4-component are skipped, so every run is spent on that path; the rest
//! of JPEG is decode_jpeg's.
#![no_main]

mod common;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;

libfuzzer_sys::fuzz_target!(init: common::init(), |data: &[u8]| {
    let data = common::with_magic(data, common::Format::Jpeg);
    let mut headers = zune_jpeg::JpegDecoder::new(ZCursor::new(&data[..]));
    if headers.decode_headers().is_err()
        || !matches!(
            headers.input_colorspace(),
            Some(ColorSpace::CMYK | ColorSpace::YCCK)
        )
    {
        return;
    }
    common::decode_and_rewrite_exif(&data);
});
