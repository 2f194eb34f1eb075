use std::fmt::Write as _;

use proptest::prelude::*;

use super::fuzz::{self, chunking, Event, Rng, SERDE_MAX_DEPTH};
use super::{Discard, Error, ErrorKind, Limits, Literal, Sink, SyntaxError, Tokenizer};

/// Limits no test document reaches, but serde_json's depth.
fn wide() -> Limits {
    Limits {
        max_depth: SERDE_MAX_DEPTH,
        max_key_len: usize::MAX,
        max_number_len: usize::MAX,
    }
}

/// How many generated and mutated documents to check; a longer run sets
/// MISP_GUARD_JSON_CASES (e.g. 50000).
fn cases(default: usize) -> usize {
    std::env::var("MISP_GUARD_JSON_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The events of a document as one short line: `{@0 k:a@1 [@5 1@6 ]@7 }@8`.
fn render(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let _ = match e {
            Event::BeginObject(at) => write!(out, "{{@{at} "),
            Event::EndObject(end) => write!(out, "}}@{end} "),
            Event::BeginArray(at) => write!(out, "[@{at} "),
            Event::EndArray(end) => write!(out, "]@{end} "),
            Event::Key(k, at) => write!(out, "k:{k}@{at} "),
            Event::BeginString(at) => write!(out, "\"@{at} "),
            Event::Text(t, at) => write!(out, "t:{t}@{at} "),
            Event::EndString(end) => write!(out, "\"@{end} "),
            Event::Number(n, at) => write!(out, "{n}@{at} "),
            Event::Literal(l, at) => write!(out, "{}@{at} ", l.text()),
        };
    }
    out.trim_end().to_owned()
}

/// Checks `doc` against serde_json whole, in every split into two chunks
/// and one byte at a time; all must give the same outcome and events.
fn every_split(doc: &[u8], limits: Limits) -> fuzz::Outcome {
    let whole = fuzz::check(doc, &[usize::MAX], limits);
    for cut in 0..=doc.len() {
        let split = fuzz::check(doc, &[cut.max(1), usize::MAX], limits);
        let split = if cut == 0 {
            // A first chunk of zero bytes, then the rest.
            let mut sink = fuzz::Rebuild::new(doc);
            let mut t = Tokenizer::new(limits);
            let r = t
                .feed(b"", &mut sink)
                .and_then(|()| t.feed(doc, &mut sink))
                .and_then(|()| t.finish(&mut sink));
            assert_eq!(r, split.0, "empty first chunk");
            split
        } else {
            split
        };
        assert_eq!(
            whole,
            split,
            "split at {cut} of {:?}",
            String::from_utf8_lossy(doc)
        );
    }
    let bytes = fuzz::check(doc, &[1], limits);
    assert_eq!(
        whole,
        bytes,
        "one byte at a time: {:?}",
        String::from_utf8_lossy(doc)
    );
    whole
}

// ===== tables =====

#[test]
fn accepted_documents_give_exact_events() {
    let table: &[(&str, &str)] = &[
        ("0", "0@0"),
        (" -1.5e+3 ", "-1.5e+3@1"),
        ("true", "true@0"),
        ("\tnull\n", "null@1"),
        ("\"\"", "\"@0 \"@2"),
        (r#""a\/b""#, "\"@0 t:a/b@1 \"@6"),
        (r#""\ud83d\ude00!""#, "\"@0 t:😀!@1 \"@15"),
        ("\"é\u{7f}\"", "\"@0 t:é\u{7f}@1 \"@5"),
        ("[]", "[@0 ]@2"),
        ("{}", "{@0 }@2"),
        ("[ 1 , [ ] ,{ } ]", "[@0 1@2 [@6 ]@9 {@11 }@14 ]@16"),
        (
            r#"{"a":[1,true,"x"],"b":{"c":null}}"#,
            "{@0 k:a@1 [@5 1@6 true@8 \"@13 t:x@14 \"@16 ]@17 k:b@18 {@22 k:c@23 null@27 }@32 }@33",
        ),
        (
            "{ \"a\" : 1 ,\n\"b\"\t:\r\"\" }",
            "{@0 k:a@2 1@8 k:b@12 \"@18 \"@20 }@22",
        ),
        (r#"{"\u0041\n":0}"#, "{@0 k:A\n@1 0@12 }@14"),
        (r#"{"a":1,"a":2}"#, "{@0 k:a@1 1@5 k:a@7 2@11 }@13"),
        ("1e400", "1e400@0"),
    ];
    for (doc, want) in table {
        let (r, events) = every_split(doc.as_bytes(), wide());
        assert_eq!(r, Ok(()), "{doc}");
        assert_eq!(render(&events), *want, "{doc}");
    }
}

#[test]
fn refused_documents_name_the_error_and_its_offset() {
    use ErrorKind::*;
    let table: &[(&[u8], ErrorKind, u64)] = &[
        (b"", Empty, 0),
        (b" \n\t\r", Empty, 4),
        (b"\xEF\xBB\xBF{}", ByteOrderMark, 0),
        (b"\xFF", InvalidUtf8, 0),
        (b"\"a\xC3\"", InvalidUtf8, 2),
        (b"\"\xC0\x80\"", InvalidUtf8, 1),
        (b"\"\xED\xA0\x80\"", InvalidUtf8, 1),
        (b"\"\xF4\x90\x80\x80\"", InvalidUtf8, 1),
        (b"\"\xE2\x82", InvalidUtf8, 1),
        (b"[1,\xE9]", InvalidUtf8, 3),
        (b"[x", ExpectedValue, 1),
        (b"\x0c1", ExpectedValue, 0),
        (b"[1,]", ExpectedValue, 3),
        (b"[,1]", ExpectedValue, 1),
        (b"{,}", ExpectedKeyOrEnd, 1),
        (b"{1:2}", ExpectedKeyOrEnd, 1),
        (b"{\"a\":1,}", ExpectedKey, 7),
        (b"{\"a\" 1}", ExpectedColon, 5),
        (b"{\"a\":1 \"b\":2}", ExpectedCommaOrBrace, 7),
        (b"{\"a\":1]", ExpectedCommaOrBrace, 6),
        (b"[1 2]", ExpectedCommaOrBracket, 3),
        (b"[1}", ExpectedCommaOrBracket, 2),
        (b"[truefalse]", ExpectedCommaOrBracket, 5),
        (b"1 2", TrailingBytes, 2),
        (b"{}}", TrailingBytes, 2),
        (b"\"a\"\"b\"", TrailingBytes, 3),
        (b"\"a\x00\"", ControlCharacter, 2),
        (b"\"\x1f\"", ControlCharacter, 1),
        (b"{\"a\nb\":1}", ControlCharacter, 3),
        (b"\"\\x\"", InvalidEscape, 2),
        (b"\"\\'\"", InvalidEscape, 2),
        (b"\"\\u12\"", InvalidUnicodeEscape, 5),
        (b"\"\\uD800\"", LoneSurrogate, 1),
        (b"\"\\uDC00\"", LoneSurrogate, 1),
        (b"\"\\uD800\\uD800\"", LoneSurrogate, 1),
        (b"\"\\uD800\\n\"", LoneSurrogate, 1),
        (b"{\"\\uDFFF\":1}", LoneSurrogate, 2),
        (b"01", InvalidNumber, 1),
        (b"-", InvalidNumber, 1),
        (b"-a", InvalidNumber, 1),
        (b"+1", ExpectedValue, 0),
        (b".5", ExpectedValue, 0),
        (b"1.", InvalidNumber, 2),
        (b"1.e5", InvalidNumber, 2),
        (b"[1e]", InvalidNumber, 3),
        (b"1e+", InvalidNumber, 3),
        (b"[-01]", InvalidNumber, 3),
        (b"tru", Truncated, 3),
        (b"trUe", InvalidLiteral, 2),
        (b"nul1", InvalidLiteral, 3),
        (b"NaN", ExpectedValue, 0),
        (b"[", Truncated, 1),
        (b"{\"a\":", Truncated, 5),
        (b"\"abc", Truncated, 4),
        (b"\"\\u00", Truncated, 5),
        (b"[1", Truncated, 2),
    ];
    for &(doc, kind, offset) in table {
        let (r, _) = every_split(doc, wide());
        assert_eq!(
            r,
            Err(Error::Syntax(SyntaxError { kind, offset })),
            "{:?}",
            String::from_utf8_lossy(doc)
        );
    }
}

#[test]
fn limits_are_exact() {
    use ErrorKind::*;
    let limits = Limits {
        max_depth: 3,
        max_key_len: 4,
        max_number_len: 5,
    };
    let ok: &[&str] = &[
        "[[[]]]",
        "{\"a\":{\"b\":[]}}",
        "{\"abcd\":1}",
        r#"{"ab\u0063d":1}"#,
        "{\"éab\":1}",
        "12345",
        "[-1e10]",
    ];
    for doc in ok {
        assert_eq!(every_split(doc.as_bytes(), limits).0, Ok(()), "{doc}");
    }
    let bad: &[(&str, ErrorKind, u64)] = &[
        ("[[[[]]]]", TooDeep, 3),
        ("{\"a\":{\"b\":[{}]}}", TooDeep, 11),
        ("{\"abcde\":1}", KeyTooLong, 1),
        (r#"[{"ab\u0063de":1}]"#, KeyTooLong, 2),
        ("{\"é€a\":1}", KeyTooLong, 1),
        ("123456", NumberTooLong, 0),
        ("[-1e100]", NumberTooLong, 1),
        // serde_json's value keeps only the second "a": the oracle must
        // check the limit on the bytes.
        ("{\"a\":[[[]]],\"a\":1}", TooDeep, 7),
        ("{\"a\":{\"abcde\":1},\"a\":2}", KeyTooLong, 6),
    ];
    for &(doc, kind, offset) in bad {
        assert_eq!(
            every_split(doc.as_bytes(), limits).0,
            Err(Error::Syntax(SyntaxError { kind, offset })),
            "{doc}"
        );
    }
}

#[test]
fn serde_json_stops_at_127_levels_and_the_oracle_knows_it() {
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(serde_json::from_str::<serde_json::Value>(&nest(SERDE_MAX_DEPTH)).is_ok());
    assert!(serde_json::from_str::<serde_json::Value>(&nest(SERDE_MAX_DEPTH + 1)).is_err());
    for (n, depth, ok) in [
        (127, 127, true),
        (128, 127, false),
        (128, 128, true),
        (300, 400, true),
    ] {
        let limits = Limits {
            max_depth: depth,
            ..wide()
        };
        let doc = nest(n);
        assert_eq!(
            fuzz::check(doc.as_bytes(), &[7], limits).0.is_ok(),
            ok,
            "{n} deep, limit {depth}"
        );
    }
}

#[test]
fn errors_read_as_a_reason_and_an_offset() {
    let mut t = Tokenizer::new(Limits::default());
    let e = t.feed(b"[1,\n  01]", &mut Discard).unwrap_err();
    assert_eq!(e.to_string(), "invalid number at byte 7");
    let e = Tokenizer::new(Limits::default())
        .finish(&mut Discard)
        .unwrap_err();
    assert_eq!(e.to_string(), "empty document at byte 0");
}

// ===== the sink's side =====

/// Stops at the key `stop`.
struct StopAt;

#[derive(Debug, PartialEq)]
struct Stopped(u64);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stop key at {}", self.0)
    }
}

impl Sink for StopAt {
    type Error = Stopped;
    fn begin_object(&mut self, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn end_object(&mut self, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn begin_array(&mut self, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn end_array(&mut self, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn key(&mut self, key: &str, at: u64) -> Result<(), Stopped> {
        if key == "stop" {
            return Err(Stopped(at));
        }
        Ok(())
    }
    fn begin_string(&mut self, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn string_fragment(&mut self, _: &str, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn end_string(&mut self, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn number(&mut self, _: &str, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
    fn literal(&mut self, _: Literal, _: u64) -> Result<(), Stopped> {
        Ok(())
    }
}

#[test]
fn a_sink_error_stops_the_parse_for_good() {
    let mut t = Tokenizer::new(Limits::default());
    assert_eq!(t.feed(br#"{"a":1,"st"#, &mut StopAt), Ok(()));
    assert_eq!(
        t.feed(br#"op":2}"#, &mut StopAt),
        Err(Error::Sink(Stopped(7)))
    );
    let again = t.feed(b" ", &mut StopAt);
    assert!(
        matches!(
            again,
            Err(Error::Syntax(SyntaxError {
                kind: ErrorKind::Closed,
                ..
            }))
        ),
        "{again:?}"
    );
    assert!(t.finish(&mut StopAt).is_err());
    assert_eq!(
        Error::<Stopped>::Sink(Stopped(7)).to_string(),
        "stopped by the consumer: stop key at 7"
    );
}

#[test]
fn nothing_is_taken_after_an_error_or_the_end() {
    let mut t = Tokenizer::new(Limits::default());
    let first = t.feed(b"[1,,", &mut Discard).unwrap_err();
    assert_eq!(t.feed(b"2]", &mut Discard), Err(first.clone()));
    assert_eq!(t.finish(&mut Discard), Err(first));

    let mut t = Tokenizer::new(Limits::default());
    assert_eq!(t.feed(b"[]", &mut Discard), Ok(()));
    assert_eq!(t.finish(&mut Discard), Ok(()));
    assert!(t.feed(b" ", &mut Discard).is_err());
    assert!(t.finish(&mut Discard).is_err());
}

/// Counts fragment bytes and the largest fragment.
#[derive(Default)]
struct Fragments {
    bytes: usize,
    largest: usize,
}

impl Sink for Fragments {
    type Error = std::convert::Infallible;
    fn begin_object(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end_object(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn begin_array(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end_array(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn key(&mut self, _: &str, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn begin_string(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn string_fragment(&mut self, f: &str, _: u64) -> Result<(), Self::Error> {
        self.bytes += f.len();
        self.largest = self.largest.max(f.len());
        Ok(())
    }
    fn end_string(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn number(&mut self, _: &str, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn literal(&mut self, _: Literal, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[test]
fn a_long_string_is_never_held_whole() {
    // 8 MiB of base64-like text with PHP's `\/` escapes, in 64 KiB chunks.
    let mut doc = String::from("{\"data\":\"");
    while doc.len() < 8 << 20 {
        doc.push_str("QUJDRA\\/+éxyz0123456789");
    }
    doc.push_str("\"}");
    let mut t = Tokenizer::new(Limits::default());
    let mut sink = Fragments::default();
    for chunk in doc.as_bytes().chunks(64 << 10) {
        t.feed(chunk, &mut sink).unwrap();
    }
    t.finish(&mut sink).unwrap();
    assert!(
        sink.largest <= 64 << 10,
        "largest fragment {}",
        sink.largest
    );
    let plain = doc.len() - "{\"data\":\"\"}".len();
    assert_eq!(sink.bytes, plain - plain / "QUJDRA\\/+éxyz0123456789".len());
}

// ===== differential: hostile inputs =====

fn hostile() -> Vec<Vec<u8>> {
    let mut docs: Vec<Vec<u8>> = [
        "",
        " ",
        "[",
        "]",
        "{",
        "}",
        "[1,]",
        "{,}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{1:2}",
        "[1 2]",
        "01",
        "-",
        "--1",
        "1.",
        ".1",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "Infinity",
        "NaN",
        "-Infinity",
        "tru",
        "truee",
        "nul",
        "True",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\uD800\"",
        "\"\\uDC00\"",
        "\"\\uD800\\uD800\"",
        "\"\\uD800\\u0041\"",
        "\"\\uDBFF\\uDFFF\"",
        "\"\\uD800\\\"",
        "\"\u{7f}\"",
        "[1]x",
        "[1] [2]",
        "1 2",
        "\"a\" \"b\"",
        "{}}",
        "[]]",
        "[[[]]",
        "1e400",
        "-1e400",
        "1e-400",
        "[1e400,2]",
        "{\"a\":1e999}",
        "1E+2",
        "-0",
        "-0.0e-0",
        "\t\n\r 1 \t\n\r",
        "\u{c}1",
        "\u{a0}1",
        "1\u{0}",
        "[1,\n2]",
        "{\"a\":1,\"a\":2}",
        "{\"a\":{},\"a\":[]}",
        "\"\\/\"",
        "[\"\\\"]",
        "\"\\",
        "\u{feff}1",
        "1\u{feff}",
        "\"\u{feff}\"",
        "[\"\u{2028}\u{2029}\"]",
        "{\"\":\"\"}",
        "[[],[[]],{}]",
        "123456789012345678901234567890",
        "-9223372036854775809",
        "18446744073709551616",
        "0.1e1",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "4.9e-324",
        "2e-400",
        "[true,false,null]",
        "[true false]",
        "{\"a\":true,\"b\":fals}",
        "0e",
        "0.e1",
        "00",
        "-00",
        "0-1",
        "1e1e1",
        "1.5.3",
        "[-]",
        "[--]",
        "{\"a\":-}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for raw in [
        &b"\"\xFF\""[..],
        b"\"\xC0\x80\"",
        b"\"\xC3\"",
        b"\"\xED\xA0\x80\"",
        b"\"\xED\xBF\xBF\"",
        b"\"\xF4\x90\x80\x80\"",
        b"\"\xF8\x88\x80\x80\x80\"",
        b"\"\xE2\x82\"",
        b"\"\xE2\x82\xAC\"",
        b"\"\xF0\x9F\x98\x80\"",
        b"\"\x80\"",
        b"\xC3\xA9",
        b"[\"a\",\xFF]",
        b"\xEF\xBB\xBF[]",
        b"\"\x00\"",
        b"\"\x1F\"",
        b"\"\t\"",
        b"{\"\x01\":1}",
    ] {
        docs.push(raw.to_vec());
    }
    for n in [126, 127, 128, 129, 200] {
        docs.push(format!("{}1{}", "[".repeat(n), "]".repeat(n)).into_bytes());
        docs.push(format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes());
    }
    docs.push(format!("1{}", "0".repeat(400)).into_bytes());
    docs.push(format!("0.{}1", "0".repeat(400)).into_bytes());
    docs.push(format!("[{}]", "1,".repeat(1000) + "1").into_bytes());
    docs.push(format!("\"{}\"", "\\u00e9".repeat(300)).into_bytes());
    docs.push(format!("\"{}\"", "\\ud83d\\ude00".repeat(300)).into_bytes());
    docs
}

#[test]
fn hostile_inputs_agree_with_serde_json_in_every_split() {
    for doc in hostile() {
        if doc.len() <= 64 {
            let _ = every_split(&doc, wide());
        }
        let mut rng = Rng::new(doc.len() as u64);
        let whole = fuzz::check(&doc, &[usize::MAX], wide());
        for _ in 0..8 {
            let sizes = chunking(&mut rng, doc.len());
            assert_eq!(fuzz::check(&doc, &sizes, wide()), whole, "{sizes:?}");
            let limits = fuzz::limits(&mut rng);
            let a = fuzz::check(&doc, &[usize::MAX], limits);
            assert_eq!(fuzz::check(&doc, &sizes, limits), a, "{limits:?} {sizes:?}");
        }
    }
}

// ===== differential: mutated MISP documents =====

fn fixtures() -> Vec<Vec<u8>> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/peer-scenarios/fixtures"
    );
    let mut docs: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fixtures at {dir}: {e}"))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    docs.sort();
    assert!(docs.len() > 20, "only {} fixtures in {dir}", docs.len());
    docs
}

const INTERESTING: &[u8] =
    b"\"\\{}[],:0123456789-+.eEtfnu \t\n\x00\x1f\x7f\xc3\xa9\xe2\xed\xf0\xff";

fn mutate(doc: &mut Vec<u8>, rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(doc.len() + 1);
        match rng.below(7) {
            0 if at < doc.len() => doc[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 if at < doc.len() => doc[at] ^= 1 << rng.below(8),
            2 => doc.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 if at < doc.len() => {
                let n = 1 + rng.below(8).min(doc.len() - at - 1);
                doc.drain(at..at + n);
            }
            4 => doc.truncate(at),
            5 if at < doc.len() => {
                let end = (at + 1 + rng.below(32)).min(doc.len());
                let piece = doc[at..end].to_vec();
                let to = rng.below(doc.len() + 1);
                doc.splice(to..to, piece);
            }
            _ => {
                let piece: &[u8] = [
                    &b"\\u0000"[..],
                    b"\\ud83d\\ude00",
                    b"\\ud83d",
                    b"\\udc00",
                    b"\\/",
                    b"1e400",
                    b"-0.0",
                    b"\xf0\x9f\x98\x80",
                    b"\xef\xbb\xbf",
                ][rng.below(9)];
                doc.splice(at..at, piece.iter().copied());
            }
        }
    }
}

#[test]
fn mutated_misp_documents_agree_with_serde_json() {
    let seeds = fixtures();
    let mut rng = Rng::new(0x6d69_7370);
    let (mut accepted, mut refused) = (0, 0);
    for seed in &seeds {
        // Every fixture as it is, in three chunkings.
        let whole = fuzz::check(seed, &[usize::MAX], wide());
        assert_eq!(whole.0, Ok(()), "a fixture is refused");
        for _ in 0..3 {
            let sizes = chunking(&mut rng, seed.len());
            assert_eq!(fuzz::check(seed, &sizes, wide()), whole);
        }
    }
    for _ in 0..cases(600) {
        let mut doc = seeds[rng.below(seeds.len())].clone();
        mutate(&mut doc, &mut rng);
        let limits = fuzz::limits(&mut rng);
        let whole = fuzz::check(&doc, &[usize::MAX], limits);
        let sizes = chunking(&mut rng, doc.len());
        assert_eq!(fuzz::check(&doc, &sizes, limits), whole, "{sizes:?}");
        if whole.0.is_ok() {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Mutations must both keep and break documents, or the test says little.
    eprintln!("mutated MISP documents: {accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );
}

// ===== differential: generated documents =====

#[derive(Debug, Clone)]
enum Gen {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Gen>),
    Object(Vec<(String, Gen)>),
}

fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        4 => proptest::char::range('a', 'z'),
        1 => prop::sample::select(vec![
            '"', '\\', '/', '\u{0}', '\u{8}', '\u{c}', '\n', '\r', '\t', '\u{1f}', '\u{7f}',
            'é', '€', '😀', '\u{10ffff}', '\u{feff}', '\u{2028}', '\u{ffff}',
        ]),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => prop::sample::select(vec!["id", "uuid", "Tag", "name", ""]).prop_map(str::to_owned),
    ]
}

fn number() -> impl Strategy<Value = String> {
    let int = prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,3}", "[1-9][0-9]{15,25}",];
    let frac = prop::option::of("[0-9]{1,20}");
    let exp = prop::option::of(("[eE]", "[+-]?", "[0-9]{1,3}"));
    (any::<bool>(), int, frac, exp).prop_map(|(neg, int, frac, exp)| {
        let mut s = String::new();
        if neg {
            s.push('-');
        }
        s.push_str(&int);
        if let Some(f) = frac {
            s.push('.');
            s.push_str(&f);
        }
        if let Some((e, sign, digits)) = exp {
            s.push_str(&e);
            s.push_str(&sign);
            s.push_str(&digits);
        }
        s
    })
}

fn document() -> impl Strategy<Value = Gen> {
    let leaf = prop_oneof![
        Just(Gen::Null),
        any::<bool>().prop_map(Gen::Bool),
        number().prop_map(Gen::Number),
        text().prop_map(Gen::Str),
    ];
    leaf.prop_recursive(8, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Gen::Array),
            prop::collection::vec((key(), inner), 0..8).prop_map(Gen::Object),
        ]
    })
}

/// Writes a generated document as JSON, with whitespace and escapes chosen
/// by `rng`: every escape form, surrogate pairs, `\/`, both hex cases.
fn write(g: &Gen, rng: &mut Rng, out: &mut Vec<u8>) {
    space(rng, out);
    match g {
        Gen::Null => out.extend_from_slice(b"null"),
        Gen::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Gen::Number(n) => out.extend_from_slice(n.as_bytes()),
        Gen::Str(s) => string(s, rng, out),
        Gen::Array(items) => {
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write(item, rng, out);
            }
            space(rng, out);
            out.push(b']');
        }
        Gen::Object(members) => {
            out.push(b'{');
            for (k, (name, value)) in members.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                space(rng, out);
                string(name, rng, out);
                space(rng, out);
                out.push(b':');
                write(value, rng, out);
            }
            space(rng, out);
            out.push(b'}');
        }
    }
    space(rng, out);
}

fn space(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.below(4) == 0 {
        for _ in 0..1 + rng.below(3) {
            out.push(b" \t\n\r"[rng.below(4)]);
        }
    }
}

fn string(s: &str, rng: &mut Rng, out: &mut Vec<u8>) {
    out.push(b'"');
    for ch in s.chars() {
        let must = ch == '"' || ch == '\\' || ch < ' ';
        if !must && rng.below(6) != 0 {
            let mut buf = [0; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let short = match ch {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        match short {
            Some(e) if rng.below(2) == 0 => out.extend_from_slice(e.as_bytes()),
            _ => {
                let mut units = [0; 2];
                for u in ch.encode_utf16(&mut units) {
                    let hex = if rng.below(2) == 0 {
                        format!("\\u{u:04x}")
                    } else {
                        format!("\\u{u:04X}")
                    };
                    out.extend_from_slice(hex.as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256) as u32))]

    #[test]
    fn generated_documents_agree_with_serde_json(g in document(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut doc = Vec::new();
        write(&g, &mut rng, &mut doc);
        let whole = fuzz::check(&doc, &[usize::MAX], wide());
        // Generated documents are valid JSON, so the tokenizer takes every
        // one (serde_json may refuse one for a number out of f64 range, and
        // `check` verified that was its reason).
        if let Err(e) = &whole.0 {
            prop_assert!(false, "refused: {e} in {}", String::from_utf8_lossy(&doc));
        }
        for _ in 0..3 {
            let sizes = chunking(&mut rng, doc.len());
            prop_assert_eq!(&fuzz::check(&doc, &sizes, wide()), &whole);
        }
        prop_assert_eq!(&fuzz::check(&doc, &[1], wide()), &whole);
    }

    #[test]
    fn generated_documents_with_one_byte_changed_agree(
        g in document(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut doc = Vec::new();
        write(&g, &mut rng, &mut doc);
        mutate(&mut doc, &mut rng);
        let limits = fuzz::limits(&mut rng);
        let whole = fuzz::check(&doc, &[usize::MAX], limits);
        let sizes = chunking(&mut rng, doc.len());
        prop_assert_eq!(&fuzz::check(&doc, &sizes, limits), &whole);
    }

    #[test]
    fn the_fuzz_entry_point_holds_on_any_bytes(data in prop::collection::vec(any::<u8>(), 0..64)) {
        fuzz::differential(&data);
    }
}

#[test]
fn the_fuzz_seeds_hold() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/json");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let seed = std::fs::read(entry.unwrap().path()).unwrap();
        fuzz::differential(&seed);
        // A seed is a document behind its first byte, and a valid one.
        assert_eq!(fuzz::check(&seed[1..], &[usize::MAX], wide()).0, Ok(()));
        n += 1;
    }
    assert!(n >= 5, "{n} seeds in {dir}");
}
