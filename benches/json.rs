//! Tokenizer throughput: `json::Tokenizer` fed in 256 KiB chunks over
//! generated MISP events of about 1, 20 and 100 MB, as written plainly and
//! as PHP's `json_encode` writes them (`\/`, `\uXXXX`), against the floor
//! of serde_json skipping the same bytes (`from_slice::<IgnoredAny>`),
//! measured in the same run. Two consumers: one that takes nothing (the
//! tokenizer alone) and one that does what the rule engine must at least
//! do, track the key path and refuse duplicate keys. Also the peak heap the
//! tokenizer holds beyond its input.
//!
//! `cargo bench --bench json`; arguments that do not start with `--` select
//! sizes by label, e.g. `cargo bench --bench json -- 1MB`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Throughput;
use misp_guard::json::{Discard, Error, Limits, Literal, Sink, Tokenizer};

mod common;

use common::{
    best_of, chosen, criterion, event, event_with, peak_heap, php_encoded, wanted_labels, Counting,
};

#[global_allocator]
static ALLOC: Counting = Counting;

/// How the relay hands a body over.
const CHUNK: usize = 256 << 10;

/// An attribute comment with text past ASCII, for the PHP-escaped event.
const COMMENT_INTL: &str = r#"vu dans la campagne « x » \/ étape Überprüfung"#;

fn tokenize<S: Sink>(body: &[u8], sink: &mut S) -> Result<(), Error<S::Error>> {
    let mut t = Tokenizer::new(Limits::default());
    for chunk in body.chunks(CHUNK) {
        t.feed(chunk, sink)?;
    }
    t.finish(sink)
}

// ---------------------------------------------------------------------------
// A consumer that tracks the key path and refuses duplicate keys

/// The keys of a MISP event: each is one bit of an object's seen-set.
const KNOWN: [&str; 60] = [
    "id",
    "type",
    "category",
    "to_ids",
    "uuid",
    "event_id",
    "distribution",
    "timestamp",
    "comment",
    "sharing_group_id",
    "deleted",
    "disable_correlation",
    "object_id",
    "object_relation",
    "first_seen",
    "last_seen",
    "value",
    "Galaxy",
    "ShadowAttribute",
    "Tag",
    "name",
    "colour",
    "exportable",
    "user_id",
    "hide_tag",
    "numerical_value",
    "is_galaxy",
    "is_custom_galaxy",
    "local_only",
    "local",
    "relationship_type",
    "Event",
    "orgc_id",
    "org_id",
    "date",
    "threat_level_id",
    "info",
    "published",
    "attribute_count",
    "analysis",
    "Org",
    "Orgc",
    "Attribute",
    "Object",
    "meta-category",
    "description",
    "template_uuid",
    "template_version",
    "ObjectReference",
    "RelatedEvent",
    "EventReport",
    "CryptographicKey",
    "SharingGroup",
    "publish_timestamp",
    "proposal_email_lock",
    "locked",
    "extends_uuid",
    "protected",
    "Sighting",
    "EventTag",
];

const NO_KEY: u8 = u8::MAX;

/// A key as two words that tell it apart from every other key of its
/// length: its first and last eight bytes (overlapping when shorter than
/// 16; for shorter than 8, the bytes themselves).
#[inline(always)]
fn words(k: &[u8]) -> (u64, u64) {
    let n = k.len();
    match (k.first_chunk::<8>(), k.last_chunk::<8>()) {
        (Some(a), Some(b)) => (u64::from_le_bytes(*a), u64::from_le_bytes(*b)),
        _ => match (k.first_chunk::<4>(), k.last_chunk::<4>()) {
            (Some(a), Some(b)) => {
                let lo = u64::from(u32::from_le_bytes(*a));
                let hi = u64::from(u32::from_le_bytes(*b));
                (lo | hi << ((n - 4) * 8), 0)
            }
            _ if n > 0 => {
                let w = u64::from(k[0])
                    | u64::from(k[n / 2]) << (n / 2 * 8)
                    | u64::from(k[n - 1]) << ((n - 1) * 8);
                (w, 0)
            }
            _ => (0, 0),
        },
    }
}

/// An open-addressing table from key text to its index in [`KNOWN`]: one
/// hash of the two words, one comparison of length and words (and of the
/// middle, for the few keys longer than 16 bytes).
struct Classify {
    slots: [u8; 256],
    words: Vec<(usize, u64, u64)>,
}

impl Classify {
    fn new() -> Classify {
        let mut slots = [NO_KEY; 256];
        let words: Vec<_> = KNOWN
            .iter()
            .map(|k| {
                let (a, b) = words(k.as_bytes());
                (k.len(), a, b)
            })
            .collect();
        for (n, &(len, a, b)) in words.iter().enumerate() {
            let mut h = Self::hash(len, a, b);
            while slots[h] != NO_KEY {
                h = (h + 1) & 255;
            }
            slots[h] = n as u8;
        }
        Classify { slots, words }
    }

    #[inline(always)]
    fn hash(len: usize, a: u64, b: u64) -> usize {
        let x = a ^ b.rotate_left(29) ^ (len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as usize
    }

    #[inline(always)]
    fn get(&self, k: &str) -> Option<u8> {
        let (a, b) = words(k.as_bytes());
        let mut h = Self::hash(k.len(), a, b);
        loop {
            let n = self.slots[h];
            if n == NO_KEY {
                return None;
            }
            let (len, ka, kb) = self.words[usize::from(n)];
            if len == k.len() && ka == a && kb == b && (len <= 16 || KNOWN[usize::from(n)] == k) {
                return Some(n);
            }
            h = (h + 1) & 255;
        }
    }
}

struct Frame {
    seen: u64,
    /// Where this object's unknown keys start in `others` and `arena`.
    others: usize,
    arena: usize,
}

/// Tracks the key path (one entry per open container: the known key it
/// sits under) and refuses a key seen twice in one object: known keys by a
/// bit, others by an exact comparison.
struct KeyPath {
    classify: Classify,
    frames: Vec<Frame>,
    path: Vec<u8>,
    pending: u8,
    others: Vec<(usize, usize)>,
    arena: String,
}

#[derive(Debug)]
struct Duplicate(#[allow(dead_code)] u64);

impl KeyPath {
    fn new() -> KeyPath {
        KeyPath {
            classify: Classify::new(),
            frames: Vec::new(),
            path: Vec::new(),
            pending: NO_KEY,
            others: Vec::new(),
            arena: String::new(),
        }
    }

    #[inline]
    fn open(&mut self) {
        self.path.push(self.pending);
        self.pending = NO_KEY;
    }
}

impl Sink for KeyPath {
    type Error = Duplicate;

    fn begin_object(&mut self, _: u64) -> Result<(), Duplicate> {
        self.open();
        self.frames.push(Frame {
            seen: 0,
            others: self.others.len(),
            arena: self.arena.len(),
        });
        Ok(())
    }

    fn end_object(&mut self, _: u64) -> Result<(), Duplicate> {
        if let Some(f) = self.frames.pop() {
            self.others.truncate(f.others);
            self.arena.truncate(f.arena);
        }
        self.path.pop();
        Ok(())
    }

    fn begin_array(&mut self, _: u64) -> Result<(), Duplicate> {
        self.open();
        Ok(())
    }

    fn end_array(&mut self, _: u64) -> Result<(), Duplicate> {
        self.path.pop();
        Ok(())
    }

    #[inline]
    fn key(&mut self, key: &str, at: u64) -> Result<(), Duplicate> {
        let Some(frame) = self.frames.last_mut() else {
            return Err(Duplicate(at));
        };
        match self.classify.get(key) {
            Some(n) => {
                let bit = 1u64 << n;
                if frame.seen & bit != 0 {
                    return Err(Duplicate(at));
                }
                frame.seen |= bit;
                self.pending = n;
            }
            None => {
                if self.others[frame.others..]
                    .iter()
                    .any(|&(s, e)| &self.arena[s..e] == key)
                {
                    return Err(Duplicate(at));
                }
                let s = self.arena.len();
                self.arena.push_str(key);
                self.others.push((s, self.arena.len()));
                self.pending = NO_KEY;
            }
        }
        Ok(())
    }

    fn begin_string(&mut self, _: u64) -> Result<(), Duplicate> {
        Ok(())
    }

    fn string_fragment(&mut self, _: &str, _: u64) -> Result<(), Duplicate> {
        Ok(())
    }

    fn end_string(&mut self, _: u64) -> Result<(), Duplicate> {
        Ok(())
    }

    fn number(&mut self, _: &str, _: u64) -> Result<(), Duplicate> {
        Ok(())
    }

    fn literal(&mut self, _: Literal, _: u64) -> Result<(), Duplicate> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------

fn main() {
    // The consumer refuses what it must, or its cost says nothing.
    for dup in [
        &br#"{"id":1,"x":[],"id":2}"#[..],
        br#"{"a":{"x":1,"y":2,"x":3}}"#,
    ] {
        assert!(tokenize(dup, &mut KeyPath::new()).is_err());
    }
    let mut c = criterion();
    let wanted = wanted_labels();
    let mut summary = Vec::new();
    for (label, size) in [
        ("1MB", 1usize << 20),
        ("20MB", 20 << 20),
        ("100MB", 100 << 20),
    ] {
        if !chosen(&wanted, label) {
            continue;
        }
        for (form, body) in [
            ("misp", event(size)),
            ("php", php_encoded(&event_with(size, COMMENT_INTL))),
        ] {
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok());
            assert!(tokenize(&body, &mut Discard).is_ok());
            assert!(
                tokenize(&body, &mut KeyPath::new()).is_ok(),
                "the bench event has no duplicate key"
            );
            let mut group = c.benchmark_group(format!("json/{label}/{form}"));
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function("ignored_any", |b| {
                b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)))
            });
            group.bench_function("tokenizer", |b| {
                b.iter(|| tokenize(black_box(&body), &mut Discard))
            });
            group.bench_function("tokenizer_keypath", |b| {
                b.iter(|| tokenize(black_box(&body), &mut KeyPath::new()).is_ok())
            });
            group.finish();

            // Interleaved rounds, the best of each kept: on a shared
            // machine the three see the same quiet moments.
            let rounds = (300 << 20) / size;
            let (mut floor, mut bare, mut keyed) = (Duration::MAX, Duration::MAX, Duration::MAX);
            for _ in 0..rounds.max(8) {
                floor = floor.min(best_of(1, || {
                    let _ = black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&body));
                }));
                bare = bare.min(best_of(1, || {
                    let _ = black_box(tokenize(&body, &mut Discard));
                }));
                keyed = keyed.min(best_of(1, || {
                    let _ = black_box(tokenize(&body, &mut KeyPath::new()).is_ok());
                }));
            }
            let peak = peak_heap(|| {
                let _ = black_box(tokenize(&body, &mut KeyPath::new()).is_ok());
            });
            let mb = body.len() as f64 / 1e6;
            let rate = |d: Duration| mb / d.as_secs_f64();
            let ratio = |d: Duration| floor.as_secs_f64() / d.as_secs_f64();
            summary.push(format!(
                "{label} {form}: {mb:.1} MB, best of {} rounds: IgnoredAny {:.0} MB/s, tokenizer {:.0} MB/s ({:.2}x), \
                 tokenizer+keypath {:.0} MB/s ({:.2}x), peak heap {:.1} KiB",
                rounds.max(8),
                rate(floor),
                rate(bare),
                ratio(bare),
                rate(keyed),
                ratio(keyed),
                peak as f64 / 1024.0,
            ));
        }
    }
    c.final_summary();
    for line in summary {
        println!("{line}");
    }
}
