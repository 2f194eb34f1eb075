//! Chunked bodies: decoding split at arbitrary points equals decoding whole.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    misp_guard::http::fuzz::chunked(data);
});
