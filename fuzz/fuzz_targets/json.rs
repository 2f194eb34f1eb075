//! The JSON tokenizer against serde_json on the same bytes: accept/reject,
//! the values, and every event's offset, in one chunk and in a chunking
//! (and limits) drawn from the input's first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    misp_guard::json::fuzz::differential(data);
});
