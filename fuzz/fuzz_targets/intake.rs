#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signpost_fuzz::entries::intake(data));
