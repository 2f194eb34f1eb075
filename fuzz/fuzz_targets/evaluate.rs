//! The rule engine on arbitrary bytes, as every kind of document, as a
//! request and as an answer it may rebuild, whole and in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| misp_guard::rules::fuzz::evaluate_all(data));
