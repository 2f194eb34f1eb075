//! Content codings: arbitrary compressed bytes end in data or an error,
//! within the caps.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    misp_guard::http::fuzz::decode(data);
});
