//! The differential check of the tokenizer against serde_json, shared by
//! the `json` cargo-fuzz target and the stable tests (`cargo test --lib
//! json`), so CI runs it without a nightly toolchain. It panics only when
//! the two disagree or an event is not exactly where it says it is.
//!
//! The oracle is `serde_json::from_slice::<serde_json::Value>`. The
//! tokenizer's events rebuild a `Value` (numbers read by serde_json from
//! their text, later duplicate keys replacing earlier ones as serde_json
//! does), which must equal serde_json's. The intended differences (see the
//! [module docs](super)) are each checked, never skipped:
//!
//! * serde_json refuses a number out of `f64` range: then the tokenizer
//!   must have handed over such a number, and serde_json's error must say
//!   so;
//! * serde_json stops at 127 levels: past that, the tokenizer must have
//!   gone deeper than 127 and serde_json's error must say so;
//! * the tokenizer refuses past its limits: the document must then really
//!   go past the limit it names.

use serde_json::{Map, Value};

use super::{Error, ErrorKind, Limits, Literal, Sink, Tokenizer};

/// serde_json's fixed nesting limit: it accepts 127 levels, not 128.
pub const SERDE_MAX_DEPTH: usize = 127;

/// One event as the sink saw it, with the fragments of a string joined
/// (how a string is cut into fragments depends on the chunking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    BeginObject(u64),
    EndObject(u64),
    BeginArray(u64),
    EndArray(u64),
    Key(String, u64),
    BeginString(u64),
    Text(String, u64),
    EndString(u64),
    Number(String, u64),
    Literal(Literal, u64),
}

/// A sink that records the events, rebuilds the document as a `Value`, and
/// checks each event's offset against the document's bytes.
#[derive(Debug)]
pub struct Rebuild<'d> {
    doc: &'d [u8],
    pub events: Vec<Event>,
    /// Open containers: the value being built and, in an object, the key
    /// its next value goes under.
    stack: Vec<(Value, Option<String>)>,
    text: Option<(u64, String)>,
    pub value: Option<Value>,
    /// A number serde_json cannot read (out of `f64` range) was seen.
    pub out_of_range: bool,
    pub max_depth: usize,
}

impl<'d> Rebuild<'d> {
    pub fn new(doc: &'d [u8]) -> Rebuild<'d> {
        Rebuild {
            doc,
            events: Vec::new(),
            stack: Vec::new(),
            text: None,
            value: None,
            out_of_range: false,
            max_depth: 0,
        }
    }

    fn byte_at(&self, at: u64) -> Option<u8> {
        usize::try_from(at)
            .ok()
            .and_then(|i| self.doc.get(i).copied())
    }

    fn put(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => {
                assert!(self.value.is_none(), "a second top-level value");
                self.value = Some(v);
            }
            Some((Value::Array(a), _)) => a.push(v),
            Some((Value::Object(m), key)) => {
                let k = key.take().expect("a value in an object without a key");
                m.insert(k, v);
            }
            Some(_) => unreachable!("only containers are stacked"),
        }
    }

    fn open(&mut self, v: Value) {
        self.stack.push((v, None));
        self.max_depth = self.max_depth.max(self.stack.len());
    }

    fn close(&mut self) {
        let (v, key) = self.stack.pop().expect("a close without an open");
        assert!(key.is_none(), "an object closed after a key");
        self.put(v);
    }
}

impl Sink for Rebuild<'_> {
    type Error = std::convert::Infallible;

    fn begin_object(&mut self, at: u64) -> Result<(), Self::Error> {
        assert_eq!(self.byte_at(at), Some(b'{'), "begin_object at {at}");
        self.events.push(Event::BeginObject(at));
        self.open(Value::Object(Map::new()));
        Ok(())
    }

    fn end_object(&mut self, end: u64) -> Result<(), Self::Error> {
        assert_eq!(self.byte_at(end - 1), Some(b'}'), "end_object at {end}");
        self.events.push(Event::EndObject(end));
        assert!(matches!(self.stack.last(), Some((Value::Object(_), _))));
        self.close();
        Ok(())
    }

    fn begin_array(&mut self, at: u64) -> Result<(), Self::Error> {
        assert_eq!(self.byte_at(at), Some(b'['), "begin_array at {at}");
        self.events.push(Event::BeginArray(at));
        self.open(Value::Array(Vec::new()));
        Ok(())
    }

    fn end_array(&mut self, end: u64) -> Result<(), Self::Error> {
        assert_eq!(self.byte_at(end - 1), Some(b']'), "end_array at {end}");
        self.events.push(Event::EndArray(end));
        assert!(matches!(self.stack.last(), Some((Value::Array(_), _))));
        self.close();
        Ok(())
    }

    fn key(&mut self, key: &str, at: u64) -> Result<(), Self::Error> {
        assert_eq!(self.byte_at(at), Some(b'"'), "key at {at}");
        // The key as serde_json reads it at that offset.
        let raw = &self.doc[at as usize..];
        let theirs = serde_json::Deserializer::from_slice(raw)
            .into_iter::<String>()
            .next();
        match theirs {
            Some(Ok(k)) => assert_eq!(k, key, "key at {at}"),
            other => panic!("key {key:?} at {at}: serde_json reads {other:?}"),
        }
        self.events.push(Event::Key(key.to_owned(), at));
        match self.stack.last_mut() {
            Some((Value::Object(_), slot)) => {
                assert!(slot.is_none(), "two keys in a row");
                *slot = Some(key.to_owned());
            }
            _ => panic!("a key outside an object"),
        }
        Ok(())
    }

    fn begin_string(&mut self, at: u64) -> Result<(), Self::Error> {
        assert_eq!(self.byte_at(at), Some(b'"'), "begin_string at {at}");
        assert!(self.text.is_none(), "a string inside a string");
        self.events.push(Event::BeginString(at));
        self.text = Some((at, String::new()));
        Ok(())
    }

    fn string_fragment(&mut self, fragment: &str, at: u64) -> Result<(), Self::Error> {
        assert!(!fragment.is_empty(), "an empty fragment at {at}");
        let Some((begin, text)) = self.text.as_mut() else {
            panic!("a fragment outside a string at {at}");
        };
        assert!(
            at > *begin,
            "a fragment at {at} before its string at {begin}"
        );
        match self.events.last_mut() {
            Some(Event::Text(t, _)) => t.push_str(fragment),
            _ => self.events.push(Event::Text(fragment.to_owned(), at)),
        }
        text.push_str(fragment);
        Ok(())
    }

    fn end_string(&mut self, end: u64) -> Result<(), Self::Error> {
        let (begin, text) = self.text.take().expect("end_string without begin");
        // The string's raw bytes, read by serde_json, are the fragments.
        let raw = &self.doc[begin as usize..end as usize];
        match serde_json::from_slice::<String>(raw) {
            Ok(s) => assert_eq!(s, text, "string at {begin}..{end}"),
            Err(e) => panic!("string at {begin}..{end}: serde_json refuses its bytes: {e}"),
        }
        self.events.push(Event::EndString(end));
        self.put(Value::String(text));
        Ok(())
    }

    fn number(&mut self, text: &str, at: u64) -> Result<(), Self::Error> {
        let raw = &self.doc[at as usize..at as usize + text.len()];
        assert_eq!(raw, text.as_bytes(), "number at {at}");
        assert!(
            !matches!(
                self.doc.get(at as usize + text.len()),
                Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            ),
            "number at {at} cut short"
        );
        self.events.push(Event::Number(text.to_owned(), at));
        let v = match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Number(_)) => v,
            Ok(other) => panic!("number {text:?} read as {other:?}"),
            Err(e) => {
                assert!(
                    e.to_string().starts_with("number out of range"),
                    "serde_json refuses number {text:?} that the tokenizer took: {e}"
                );
                assert!(
                    text.parse::<f64>().is_ok_and(f64::is_infinite),
                    "{text:?} is not out of f64 range"
                );
                self.out_of_range = true;
                Value::Null
            }
        };
        self.put(v);
        Ok(())
    }

    fn literal(&mut self, literal: Literal, at: u64) -> Result<(), Self::Error> {
        assert!(
            self.doc[at as usize..].starts_with(literal.text().as_bytes()),
            "{literal:?} at {at}"
        );
        self.events.push(Event::Literal(literal, at));
        self.put(match literal {
            Literal::True => Value::Bool(true),
            Literal::False => Value::Bool(false),
            Literal::Null => Value::Null,
        });
        Ok(())
    }
}

/// Feeds `doc` in chunks of the given sizes (cycled; a 0 is taken as 1),
/// then finishes.
pub fn feed<S: Sink>(
    doc: &[u8],
    sizes: &[usize],
    limits: Limits,
    sink: &mut S,
) -> Result<(), Error<S::Error>> {
    let mut t = Tokenizer::new(limits);
    let mut rest = doc;
    let mut k = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(usize::MAX)
            .clamp(1, rest.len());
        k += 1;
        let (chunk, tail) = rest.split_at(n);
        t.feed(chunk, sink)?;
        rest = tail;
    }
    t.finish(sink)
}

/// The outcome of one run: the error or nothing, and the events.
pub type Outcome = (Result<(), Error<std::convert::Infallible>>, Vec<Event>);

/// Feeds `doc` in the given chunking, checks every event against the bytes
/// and the verdict against serde_json; returns what happened, for the
/// caller to compare across chunkings.
pub fn check(doc: &[u8], sizes: &[usize], limits: Limits) -> Outcome {
    let mut sink = Rebuild::new(doc);
    let ours = feed(doc, sizes, limits, &mut sink);
    let theirs = serde_json::from_slice::<Value>(doc);
    match (&ours, &theirs) {
        (Ok(()), Ok(v)) => {
            assert!(!sink.out_of_range, "serde_json took an out-of-range number");
            assert_eq!(sink.value.as_ref(), Some(v), "values differ");
        }
        (Ok(()), Err(e)) => {
            let e = e.to_string();
            if e.starts_with("recursion limit exceeded") {
                assert!(
                    sink.max_depth > SERDE_MAX_DEPTH,
                    "serde_json: {e}, but the document is {} deep",
                    sink.max_depth
                );
            } else {
                assert!(
                    sink.out_of_range && e.starts_with("number out of range"),
                    "serde_json refuses what the tokenizer accepts: {e}"
                );
            }
        }
        // Past a limit, checked on the bytes at the offset named (not on
        // serde_json's value, where a later duplicate key may have
        // replaced the part that went past it).
        (Err(Error::Syntax(s)), Ok(_)) => {
            let at = s.offset as usize;
            match s.kind {
                ErrorKind::TooDeep => {
                    assert!(matches!(doc.get(at), Some(b'[' | b'{')), "{s}");
                    assert_eq!(depth_before(doc, at), limits.max_depth, "{s}");
                }
                ErrorKind::KeyTooLong => {
                    let key = serde_json::Deserializer::from_slice(&doc[at..])
                        .into_iter::<String>()
                        .next();
                    let Some(Ok(key)) = key else {
                        panic!("{s}: no key there");
                    };
                    assert!(key.len() > limits.max_key_len, "{s}: {key:?}");
                }
                ErrorKind::NumberTooLong => {
                    let len = doc[at..]
                        .iter()
                        .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                        .count();
                    assert!(len > limits.max_number_len, "{s}, serde_json takes it");
                }
                _ => panic!("the tokenizer refuses what serde_json accepts: {s}"),
            }
        }
        (Err(Error::Sink(never)), _) => match *never {},
        (Err(Error::Syntax(s)), Err(_)) => {
            assert!(s.offset <= doc.len() as u64, "{s} past the end");
        }
    }
    (ours, sink.events)
}

/// How many containers are open just before byte `at` of a valid
/// document: a plain count of brackets outside strings.
fn depth_before(doc: &[u8], at: usize) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &c in &doc[..at] {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth -= 1,
                _ => {}
            }
        }
    }
    depth
}

/// A small deterministic generator (xorshift64*), so a fuzz input or a
/// test seed always gives the same chunking.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// A random chunking of a document of `len` bytes: mostly small chunks,
/// often single bytes, sometimes large ones.
pub fn chunking(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = len;
    while left > 0 && sizes.len() < 4096 {
        let n = match rng.below(4) {
            0 => 1,
            1 => 1 + rng.below(8),
            2 => 1 + rng.below(64),
            _ => 1 + rng.below(len.max(1)),
        };
        sizes.push(n);
        left = left.saturating_sub(n);
    }
    sizes
}

/// Limits for a differential run: usually wider than any document so the
/// two parsers must agree outright, sometimes tight so the limits are
/// exercised (and checked) too.
pub fn limits(rng: &mut Rng) -> Limits {
    match rng.below(8) {
        0 => Limits {
            max_depth: 1 + rng.below(8),
            max_key_len: rng.below(12),
            max_number_len: 1 + rng.below(12),
        },
        1 => Limits {
            max_depth: SERDE_MAX_DEPTH + 1 + rng.below(100),
            max_key_len: usize::MAX,
            max_number_len: usize::MAX,
        },
        _ => Limits {
            max_depth: SERDE_MAX_DEPTH,
            max_key_len: usize::MAX,
            max_number_len: usize::MAX,
        },
    }
}

/// The fuzz entry point: the first byte seeds the chunking and the limits,
/// the rest is the document. It runs in one chunk and in a random chunking;
/// both must agree with serde_json and with each other.
pub fn differential(data: &[u8]) {
    let Some((&seed, doc)) = data.split_first() else {
        return;
    };
    let mut rng = Rng::new(u64::from(seed) ^ (doc.len() as u64) << 8);
    let limits = limits(&mut rng);
    let whole = check(doc, &[usize::MAX], limits);
    let sizes = chunking(&mut rng, doc.len());
    let split = check(doc, &sizes, limits);
    assert_eq!(whole, split, "chunking {sizes:?} changes the outcome");
}
