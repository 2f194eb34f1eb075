//! Request and response heads: parse, frame, re-encode, parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    misp_guard::http::fuzz::head(data);
});
