//! What the rule engine and tokenizer benches share: the generated MISP
//! events (of a size, of a number of attributes, with one inline
//! attachment), the same events as PHP's `json_encode` writes them, a heap
//! counter, a resident set reader, and a best-of timer.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;

/// Counts live heap bytes and their peak; a bench that wants the figures
/// declares it its `#[global_allocator]`.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// The most heap `f` holds at once beyond what was live before it.
pub fn peak_heap<F: FnOnce()>(f: F) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// The shortest of `runs` runs of `f`.
pub fn best_of<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// The attribute comment of [`event`].
pub const COMMENT: &str = r#"seen in campaign \"x\" \/ stage"#;

fn attribute(out: &mut String, i: usize, comment: &str) {
    let _ = write!(
        out,
        r#"{{"id":"{i}","type":"ip-dst","category":"Network activity","to_ids":true,"uuid":"5f1c2b3a-{i:04x}-4d5e-8f90-0123456789ab","event_id":"1","distribution":"5","timestamp":"1661956302","comment":"{comment} {i}","sharing_group_id":"0","deleted":false,"disable_correlation":false,"object_id":"0","object_relation":null,"first_seen":null,"last_seen":null,"value":"198.51.{}.{}","Galaxy":[],"ShadowAttribute":[],"Tag":[{{"id":"3","name":"tlp:green","colour":"\u002333FF00","exportable":true,"user_id":"0","hide_tag":false,"numerical_value":null,"is_galaxy":false,"is_custom_galaxy":false,"local_only":false,"local":0,"relationship_type":null}}]}}"#,
        i % 256,
        (i / 256) % 256
    );
}

/// An event of about `target` bytes: attributes and objects of attributes.
pub fn event(target: usize) -> Vec<u8> {
    event_with(target, COMMENT)
}

/// [`event`] with another attribute comment (JSON string text, escaped).
pub fn event_with(target: usize, comment: &str) -> Vec<u8> {
    let mut out = String::with_capacity(target + 4096);
    out.push_str(HEAD);
    let mut i = 0;
    while out.len() < target / 2 {
        if i > 0 {
            out.push(',');
        }
        attribute(&mut out, i, comment);
        i += 1;
    }
    out.push_str(r#"],"Object":["#);
    let mut first = true;
    while out.len() < target {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(
            out,
            r#"{{"id":"{i}","name":"domain-ip","meta-category":"network","description":"A domain/hostname and IP address","template_uuid":"43b3b146-77eb-4931-b4cc-b66c60f28734","template_version":"10","event_id":"1","uuid":"feda50b8-c69c-4f5f-ae34-91b289e46799","timestamp":"1661956788","distribution":"5","sharing_group_id":"0","comment":"","deleted":false,"ObjectReference":[],"Attribute":["#
        );
        for j in 0..4 {
            if j > 0 {
                out.push(',');
            }
            attribute(&mut out, i + j, comment);
        }
        out.push_str("]}");
        i += 4;
    }
    out.push_str(TAIL);
    out.into_bytes()
}

/// An event up to its attribute list.
const HEAD: &str = r#"{"Event":{"id":"1","orgc_id":"1","org_id":"1","date":"2022-08-31","threat_level_id":"1","info":"bench","published":false,"uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","attribute_count":"4","analysis":"0","timestamp":"1661956788","distribution":"2","sharing_group_id":"0","Tag":[{"id":"1","name":"tlp:clear","colour":"\u0023FFFFFF"}],"Org":{"id":"1","name":"HOST","uuid":"10c8f445-888b-4a2d-bac8-4e1e8861d595","local":true},"Attribute":["#;

/// An event after its object list.
const TAIL: &str = r#"],"ShadowAttribute":[],"RelatedEvent":[],"Galaxy":[],"EventReport":[],"CryptographicKey":[]}}"#;

/// An event of `n` attributes and no object.
pub fn event_of_attributes(n: usize) -> Vec<u8> {
    let mut out = String::with_capacity(n * 700 + 4096);
    out.push_str(HEAD);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        attribute(&mut out, i, COMMENT);
    }
    out.push_str(r#"],"Object":["#);
    out.push_str(TAIL);
    out.into_bytes()
}

/// An event whose one attribute is an attachment of about `size` bytes,
/// carried inline as MISP pushes it: base64 in the attribute's `data`.
pub fn event_with_attachment(size: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(size + 4096);
    out.extend_from_slice(HEAD.as_bytes());
    out.extend_from_slice(
        br#"{"id":"1","type":"attachment","category":"Payload delivery","to_ids":false,"uuid":"5f1c2b3a-0001-4d5e-8f90-0123456789ab","event_id":"1","distribution":"5","timestamp":"1661956302","comment":"","sharing_group_id":"0","deleted":false,"disable_correlation":false,"object_id":"0","object_relation":null,"first_seen":null,"last_seen":null,"value":"sample.bin","Galaxy":[],"ShadowAttribute":[],"Tag":[{"id":"3","name":"tlp:green"}],"data":""#,
    );
    // A pseudo-random stream (xorshift), so nothing compresses it away.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..size / 4 * 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(ALPHABET[(x >> 58) as usize]);
    }
    out.extend_from_slice(br#""}],"Object":["#);
    out.extend_from_slice(TAIL.as_bytes());
    out
}

/// Resident set size now, and its peak since [`reset_peak_rss`], in
/// bytes (Linux: `/proc/self/status`).
pub fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Start the peak of [`rss`] again from the resident set size now (Linux
/// 4.0 and later: `5` to `/proc/self/clear_refs`).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// How far the resident set grows while `f` runs, if the system tells.
pub fn peak_rss_growth<F: FnOnce()>(f: F) -> Option<u64> {
    if !reset_peak_rss() {
        f();
        return None;
    }
    let (before, _) = rss()?;
    f();
    let (_, peak) = rss()?;
    Some(peak.saturating_sub(before))
}

/// The same document as PHP's `json_encode` (default flags) writes it: in
/// strings, `/` as `\/` and every character past ASCII as `\uXXXX` (a
/// surrogate pair past the BMP). The input must be valid JSON.
pub fn php_encoded(json: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(json);
    let mut out = String::with_capacity(json.len() + json.len() / 8);
    let (mut in_string, mut escaped) = (false, false);
    for ch in text.chars() {
        if !in_string {
            in_string = ch == '"';
            out.push(ch);
            continue;
        }
        if escaped {
            escaped = false;
            out.push(ch);
            continue;
        }
        match ch {
            '\\' => {
                escaped = true;
                out.push(ch);
            }
            '"' => {
                in_string = false;
                out.push(ch);
            }
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.into_bytes()
}

/// Criterion as these benches run it: few samples of large bodies, and
/// its own arguments read.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

/// The labels asked for on the command line (arguments not starting with
/// `--`, also split by `|` as criterion's filter is): none means all.
pub fn wanted_labels() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .flat_map(|a| a.split('|').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Whether `label` is among those `wanted` (any, when none is).
pub fn chosen(wanted: &[String], label: &str) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| label.contains(w.as_str()))
}
