//! Format sniffing: the bytes as they are, so the fuzzer explores which
//! decoder (if any) `decode` picks and the refusals of everything else (text,
//! HEIC, JXL, AVIF, truncated magics).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(init: common::init(), |data: &[u8]| {
    common::decode_and_rewrite_exif(data);
});
