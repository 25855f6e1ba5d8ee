//! The daemon's decode (real limits) on Tiff input: the bytes are forced to start
//! with the Tiff signature, then decoded, oriented, colour-converted, and their
//! EXIF rewritten as the encode stage would.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(init: common::init(), |data: &[u8]| {
    common::decode_and_rewrite_exif(&common::with_magic(data, common::Format::Tiff));
});
