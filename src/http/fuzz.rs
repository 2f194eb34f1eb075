//! Fuzz entry points, shared by the cargo-fuzz targets in `fuzz/` and by the
//! bounded stable test in `tests.rs` (so CI runs the same checks without a
//! nightly toolchain). Each one panics only when an invariant breaks.

use bytes::BytesMut;

use super::decode::PIECE;
use super::{
    connection_close, content_coding, encode_request, encode_response, expects_continue,
    parse_request, parse_response, request_body, response_body, BodyKind, Chunk, ChunkedDecoder,
    Coding, DecodeCaps, Decoder, Error, Limits,
};

/// Heads: parse as request and as response; whatever is accepted must
/// re-encode into a head we accept again with the same meaning.
pub fn head(data: &[u8]) {
    let limits = Limits {
        max_header_bytes: 4096,
        max_headers: 16,
        max_target_bytes: 1024,
        ..Limits::default()
    };
    if let Ok(Some((req, len))) = parse_request(data, &limits) {
        assert!(len <= data.len());
        let kind = request_body(&req);
        let _ = (
            content_coding(&req),
            expects_continue(&req),
            connection_close(&req),
        );
        let body_len = match kind {
            Ok(BodyKind::Length(n)) => Some(n),
            _ => None,
        };
        let mut out = Vec::new();
        encode_request(&req, &req.target, body_len, &mut out);
        let again = parse_request(&out, &limits);
        let Ok(Some((again, n))) = again else {
            panic!("re-encoded request refused: {again:?}");
        };
        assert_eq!(n, out.len());
        assert_eq!(again.method, req.method);
        assert_eq!(again.target, req.target);
        let kind_again = request_body(&again);
        assert_eq!(
            kind_again,
            Ok(body_len.map_or(BodyKind::Empty, BodyKind::Length))
        );
    }
    if let Ok(Some((res, len))) = parse_response(data, &limits) {
        assert!(len <= data.len());
        let kind = response_body(&res, false);
        let _ = response_body(&res, true);
        let body_len = match kind {
            Ok(BodyKind::Length(n)) => Some(n),
            _ => None,
        };
        let mut out = Vec::new();
        encode_response(&res, body_len, &mut out);
        let again = parse_response(&out, &limits);
        let Ok(Some((again, n))) = again else {
            panic!("re-encoded response refused: {again:?}");
        };
        assert_eq!(n, out.len());
        assert_eq!(again.status, res.status);
    }
}

/// What decoding a whole chunked input gives: the data, and how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// All decoded data.
    pub data: Vec<u8>,
    /// `Ok(true)`: done; `Ok(false)`: needs more; or the error.
    pub end: Result<bool, Error>,
    /// Bytes left in the input after the end.
    pub left: Vec<u8>,
}

/// Feed `pieces` one after another to a fresh decoder.
pub fn dechunk<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, limits: &Limits) -> Outcome {
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::new();
    let mut data = Vec::new();
    let mut end = Ok(false);
    // After the end, later pieces only pile up in the input: the decoder
    // keeps answering Done or its error.
    for piece in pieces {
        input.extend_from_slice(piece);
        end = loop {
            match dec.decode(&mut input, limits) {
                Ok(Chunk::Data(d)) => {
                    assert!(!d.is_empty());
                    data.extend_from_slice(&d);
                }
                Ok(Chunk::NeedMore) => break Ok(false),
                Ok(Chunk::Done) => break Ok(true),
                Err(e) => break Err(e),
            }
        };
    }
    Outcome {
        data,
        end,
        left: input.to_vec(),
    }
}

/// Chunked decoding: the first byte seeds the split points of the rest;
/// decoding split must equal decoding whole.
pub fn chunked(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_body_bytes: 4096,
        max_header_bytes: 512,
        max_headers: 8,
        max_chunk_ext_bytes: 16,
        ..Limits::default()
    };
    let whole = dechunk([body], &limits);
    let step = usize::from(seed % 7) + 1;
    let split = dechunk(body.chunks(step), &limits);
    assert_eq!(whole.data, split.data, "data differs with splits of {step}");
    assert_eq!(whole.end, split.end, "end differs with splits of {step}");
    if whole.end == Ok(true) {
        assert_eq!(whole.left, split.left);
    }
}

/// What content decoding gave: the bytes handed on, and how it ended.
#[derive(PartialEq, Eq)]
pub struct Decoded {
    /// Every decoded byte handed on, in order.
    pub data: Vec<u8>,
    /// The first error, or `Ok` once finished.
    pub end: Result<(), Error>,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("data", &format_args!("{} bytes", self.data.len()))
            .field("end", &self.end)
            .finish()
    }
}

/// Push `pieces` one after another to a fresh decoder, then finish. The
/// consumer has had enough after `stop_after` bytes (it keeps the piece
/// that crossed it).
pub fn decode_pieces<'a>(
    coding: Coding,
    caps: &DecodeCaps,
    pieces: impl IntoIterator<Item = &'a [u8]>,
    stop_after: Option<usize>,
) -> Decoded {
    let mut dec = Decoder::new(coding, caps.clone());
    let mut data = Vec::new();
    let mut keep = |piece: &[u8]| {
        assert!(!piece.is_empty() && piece.len() <= PIECE, "{}", piece.len());
        data.extend_from_slice(piece);
        stop_after.is_none_or(|n| data.len() < n)
    };
    let mut end = Ok(());
    for piece in pieces {
        if let Err(e) = dec.push(piece, &mut keep) {
            // A failed decoder stays failed, with the same error.
            assert_eq!(dec.push(b"x", &mut keep), Err(e.clone()));
            end = Err(e);
            break;
        }
    }
    if end.is_ok() {
        end = dec.finish(&mut keep);
    }
    Decoded { data, end }
}

/// Content decoding of arbitrary bytes: the first byte picks the coding
/// and seeds how the rest is split. Must end in data or an error, never a
/// panic, within the caps; and every split must give exactly what decoding
/// whole gives (the same bytes, the same error), and a consumer that stops
/// early must get a prefix of it.
pub fn decode(data: &[u8]) {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let coding = match pick % 5 {
        0 => Coding::Identity,
        1 => Coding::Gzip,
        2 => Coding::Deflate,
        3 => Coding::Br,
        _ => Coding::Zstd,
    };
    let caps = DecodeCaps {
        max_decoded_bytes: 1 << 20,
        max_ratio: 1000,
        ratio_grace_bytes: 4096,
    };
    let whole = decode_pieces(coding, &caps, [raw], None);
    assert!(whole.data.len() <= 1 << 20);
    if whole.end.is_ok() {
        assert!(whole.data.len() as u64 <= (raw.len() as u64 * 1000).max(4096));
    }
    let mut sizes = vec![1, usize::from(pick / 5) + 2];
    let mut seed = u32::from(pick) | (raw.len() as u32) << 8;
    let irregular = split_by(raw, || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (seed >> 16) as usize % 300 + 1
    });
    sizes.push(raw.len() / 2 + 1);
    for size in sizes {
        let split = decode_pieces(coding, &caps, raw.chunks(size), None);
        assert_eq!(split, whole, "{coding} in pieces of {size}");
    }
    let split = decode_pieces(coding, &caps, irregular, None);
    assert_eq!(split, whole, "{coding} in irregular pieces");
    // A consumer that stops early.
    let stop = usize::from(pick) * 31 % (whole.data.len() + 1);
    let early = decode_pieces(coding, &caps, raw.chunks(64), Some(stop));
    assert!(
        whole.data.starts_with(&early.data),
        "{coding}: stopped at {stop}"
    );
    if whole.end.is_ok() || early.data.len() < whole.data.len() {
        assert_eq!(early.end, Ok(()), "{coding}: stopped at {stop}");
    }
}

/// `raw` cut where `next` says.
fn split_by(raw: &[u8], mut next: impl FnMut() -> usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (piece, after) = rest.split_at(next().min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    pieces
}
