//! Content codings (RFC 9110 §8.4): which one a body has, and a push
//! decoder for it with caps on output size and compression ratio.
//!
//! [`Decoder`] takes the raw body in whatever pieces the relay receives it
//! and hands the decoded bytes on as they come, in pieces of at most
//! [`PIECE`] bytes. It never blocks and never reads: the caller owns the
//! loop, so a body can be decoded on the connection's own task.
//!
//! Each coding is strict at the end of its stream: a truncated stream, a
//! bad checksum, a second gzip member or any byte after the end is an
//! error, never silently ignored, so the guard never inspects less than the
//! peer would decode.
//!
//! What a body decodes to, and where a cap trips, never depends on how the
//! raw body was split: gzip, deflate and br reach their codec in steps at
//! fixed offsets of the body (16 bytes first, doubling up to [`STEP`]),
//! zstd one whole block at a time, so every split runs the same codec
//! calls. A peer cannot choose its segmentation to get a different
//! verdict.
//!
//! Memory per decoder is bounded whatever the input: identity holds
//! nothing; gzip and deflate hold the inflater (its 32 KiB window and
//! tables), one step and one piece; br holds its ring buffer (at most the
//! 16 MiB window of RFC 7932; large-window streams are refused), its tables,
//! one step and one piece; zstd holds its window (at most 8 MiB, RFC 9659,
//! in a ring buffer that may round up to twice that), one block of input
//! (128 KiB) and its block scratch.

mod br;
mod flate;
mod zstd;

use std::fmt;
use std::mem;

use super::head::{fields, Header};
use super::Error;

/// Largest piece of decoded bytes handed on at once.
pub const PIECE: usize = 32 * 1024;

/// The most raw bytes gzip, deflate and br decode in one codec call. Pieces
/// that end inside a step are held until the step is whole (or the body
/// ends), so the calls do not depend on the split.
pub const STEP: usize = 4 * 1024;

/// A content coding we can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// No coding.
    Identity,
    /// gzip (RFC 9110 §8.4.1.3), one member.
    Gzip,
    /// zlib-wrapped deflate (RFC 9110 §8.4.1.2); raw deflate is refused.
    Deflate,
    /// Brotli (RFC 7932).
    Br,
    /// Zstandard (RFC 8878, RFC 9659), one frame, window up to 8 MiB.
    Zstd,
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        })
    }
}

/// The content coding of a message: no field or `identity` is
/// [`Coding::Identity`]; otherwise exactly one field naming exactly one
/// known coding (case-insensitive, RFC 9110 §8.4.1). Stacked codings
/// (`gzip, br`), repeated fields, empty or unknown values are refused.
pub fn content_coding(head: &(impl AsRef<[Header]> + ?Sized)) -> Result<Coding, Error> {
    let headers = head.as_ref();
    let mut found = fields(headers, "content-encoding");
    let (Some(field), None) = (found.next(), found.next()) else {
        return match fields(headers, "content-encoding").next() {
            None => Ok(Coding::Identity),
            Some(_) => Err(Error::UnsupportedEncoding),
        };
    };
    let v = &field.value;
    let is = |name: &str| v.eq_ignore_ascii_case(name.as_bytes());
    if is("identity") {
        Ok(Coding::Identity)
    } else if is("gzip") || is("x-gzip") {
        // §8.4.1.3: x-gzip SHOULD be read as gzip.
        Ok(Coding::Gzip)
    } else if is("deflate") {
        Ok(Coding::Deflate)
    } else if is("br") {
        Ok(Coding::Br)
    } else if is("zstd") {
        Ok(Coding::Zstd)
    } else {
        Err(Error::UnsupportedEncoding)
    }
}

/// The content coding of a request body: only what MISP sends (identity,
/// gzip, br). Anything else is refused (415).
pub fn request_coding(head: &(impl AsRef<[Header]> + ?Sized)) -> Result<Coding, Error> {
    match content_coding(head)? {
        c @ (Coding::Identity | Coding::Gzip | Coding::Br) => Ok(c),
        _ => Err(Error::UnsupportedEncoding),
    }
}

/// The content coding of a response body: any coding a MISP client may
/// have advertised (identity, gzip, deflate, br, zstd).
pub fn response_coding(head: &(impl AsRef<[Header]> + ?Sized)) -> Result<Coding, Error> {
    content_coding(head)
}

/// Caps on a decoder's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeCaps {
    /// Most decoded bytes.
    pub max_decoded_bytes: u64,
    /// Most decoded bytes per raw byte the codec consumed, checked once the
    /// output is over `ratio_grace_bytes`.
    pub max_ratio: u64,
    /// Output below which the ratio is not checked (tiny bodies compress
    /// well and are harmless).
    pub ratio_grace_bytes: u64,
}

impl Default for DecodeCaps {
    fn default() -> Self {
        DecodeCaps {
            max_decoded_bytes: 256 * 1024 * 1024,
            // Repetitive MISP JSON compresses some 20-50x with gzip and a
            // little more with brotli; zeros reach 1000x with gzip and far
            // more with brotli or zstd.
            max_ratio: 200,
            ratio_grace_bytes: 64 * 1024,
        }
    }
}

/// A push decoder of one body in one coding, capped.
///
/// [`push`](Decoder::push) each raw piece as it arrives, then
/// [`finish`](Decoder::finish). Decoded bytes go to `out` as they come, in
/// pieces of at most [`PIECE`] bytes (identity hands on sub-slices of the
/// raw pieces themselves). When `out` returns `false` the consumer has had
/// enough: the decoder stops, and every later call decodes nothing and
/// returns `Ok` (the consumer knows why it stopped).
///
/// Errors are [`Error::BadEncoding`] (the stream is corrupt, truncated or
/// followed by bytes), [`Error::DecodedTooLarge`] and
/// [`Error::RatioTooHigh`]. Caps are checked as the output grows, so a bomb
/// stops within one piece of the cap; bytes up to `max_decoded_bytes` are
/// handed on before the error. After an error every later call returns it
/// again. An empty body is a truncated stream for every coding but
/// identity.
pub struct Decoder {
    coding: Coding,
    stream: Box<dyn Stream + Send>,
    meter: Meter,
    state: State,
}

enum State {
    Open,
    Stopped,
    Failed(Error),
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("coding", &self.coding)
            .field("raw", &self.meter.raw)
            .field("decoded", &self.meter.out)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder of a body in `coding`, capped by `caps`.
    pub fn new(coding: Coding, caps: DecodeCaps) -> Decoder {
        let stream: Box<dyn Stream + Send> = match coding {
            Coding::Identity => Box::new(Identity),
            Coding::Gzip => Box::new(Stepped::new(flate::Gzip::new())),
            Coding::Deflate => Box::new(Stepped::new(flate::Zlib::new())),
            Coding::Br => Box::new(Stepped::new(br::Br::new())),
            Coding::Zstd => Box::new(zstd::Zstd::new()),
        };
        Decoder {
            coding,
            stream,
            meter: Meter {
                caps,
                raw: 0,
                out: 0,
            },
            state: State::Open,
        }
    }

    /// Decode the next raw piece of the body.
    pub fn push(&mut self, raw: &[u8], out: impl FnMut(&[u8]) -> bool) -> Result<(), Error> {
        self.run(out, |stream, sink| stream.push(raw, sink))
    }

    /// The body ended: decode what is held and refuse a stream that did
    /// not end with it.
    pub fn finish(mut self, out: impl FnMut(&[u8]) -> bool) -> Result<(), Error> {
        self.run(out, |stream, sink| stream.finish(sink))
    }

    fn run(
        &mut self,
        mut out: impl FnMut(&[u8]) -> bool,
        step: impl FnOnce(&mut dyn Stream, &mut Sink<'_>) -> Result<(), Halt>,
    ) -> Result<(), Error> {
        match &self.state {
            State::Open => {}
            State::Stopped => return Ok(()),
            State::Failed(e) => return Err(e.clone()),
        }
        let mut sink = Sink {
            meter: &mut self.meter,
            out: &mut out,
        };
        let error = match step(self.stream.as_mut(), &mut sink) {
            Ok(()) => return Ok(()),
            Err(Halt::Stop) => {
                self.state = State::Stopped;
                return Ok(());
            }
            Err(Halt::Cap(e)) => e,
            Err(Halt::Bad(reason)) => Error::BadEncoding {
                coding: self.coding,
                reason,
            },
        };
        self.state = State::Failed(error.clone());
        Err(error)
    }
}

/// One coding's decoding, fed through a [`Sink`].
trait Stream {
    /// Decode all of `input`.
    fn push(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt>;
    /// The body ended after the input pushed.
    fn finish(&mut self, sink: &mut Sink<'_>) -> Result<(), Halt>;
}

/// Why decoding stopped early.
enum Halt {
    /// The consumer has had enough.
    Stop,
    /// The stream is bad; the reason becomes [`Error::BadEncoding`].
    Bad(String),
    /// A cap was hit.
    Cap(Error),
}

fn bad(reason: impl Into<String>) -> Halt {
    Halt::Bad(reason.into())
}

/// The counts the caps are checked against.
struct Meter {
    caps: DecodeCaps,
    /// Raw bytes the codec consumed.
    raw: u64,
    /// Decoded bytes handed on.
    out: u64,
}

/// Where a codec puts its output: the caps, then the consumer.
struct Sink<'a> {
    meter: &'a mut Meter,
    out: &'a mut dyn FnMut(&[u8]) -> bool,
}

impl Sink<'_> {
    /// The codec consumed `n` more raw bytes.
    fn took(&mut self, n: usize) {
        self.meter.raw = self.meter.raw.saturating_add(n as u64);
    }

    /// How much output a codec may make in its next call: a piece, but
    /// never more than one byte past the size cap, so an overshoot is seen
    /// without decoding far past it.
    fn room(&self) -> usize {
        let left = self
            .meter
            .caps
            .max_decoded_bytes
            .saturating_sub(self.meter.out)
            .saturating_add(1);
        usize::try_from(left).map_or(PIECE, |left| left.min(PIECE))
    }

    /// Hand on a piece of output, checking the caps first.
    fn emit(&mut self, piece: &[u8]) -> Result<(), Halt> {
        if piece.is_empty() {
            return Ok(());
        }
        let caps = &self.meter.caps;
        let left = caps.max_decoded_bytes.saturating_sub(self.meter.out);
        if piece.len() as u64 > left {
            let max = caps.max_decoded_bytes;
            // `left` < piece.len(), so it fits a usize.
            let fits = piece
                .get(..usize::try_from(left).unwrap_or(0))
                .unwrap_or_default();
            self.meter.out = max;
            if !fits.is_empty() && !(self.out)(fits) {
                return Err(Halt::Stop);
            }
            return Err(Halt::Cap(Error::DecodedTooLarge(max)));
        }
        self.meter.out += piece.len() as u64;
        if self.meter.out > caps.ratio_grace_bytes
            && self.meter.out > self.meter.raw.saturating_mul(caps.max_ratio)
        {
            return Err(Halt::Cap(Error::RatioTooHigh(caps.max_ratio)));
        }
        if (self.out)(piece) {
            Ok(())
        } else {
            Err(Halt::Stop)
        }
    }
}

/// Identity: the raw bytes are the output, handed on without a copy.
struct Identity;

impl Stream for Identity {
    fn push(&mut self, raw: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt> {
        sink.took(raw.len());
        raw.chunks(PIECE).try_for_each(|piece| sink.emit(piece))
    }

    fn finish(&mut self, _: &mut Sink<'_>) -> Result<(), Halt> {
        Ok(())
    }
}

/// Feeds a codec in steps at fixed body offsets: whole steps straight
/// from the pushed piece, a step split across pieces gathered first. Steps
/// start small and double up to [`STEP`], so a small body (or the start of
/// a bomb) is decoded without waiting for a full step.
struct Stepped<C> {
    codec: C,
    partial: Vec<u8>,
    /// Where the current step starts in the body.
    at: u64,
}

/// The first step's length.
const FIRST_STEP: usize = 16;

impl<C: Stream> Stepped<C> {
    fn new(codec: C) -> Self {
        Stepped {
            codec,
            partial: Vec::new(),
            at: 0,
        }
    }

    /// The current step's length: 16, 16, 32, 64, … up to [`STEP`].
    fn len(&self) -> usize {
        usize::try_from(self.at).map_or(STEP, |at| at.clamp(FIRST_STEP, STEP))
    }

    /// Decode the gathered step, keeping its buffer for the next one.
    fn flush(&mut self, sink: &mut Sink<'_>) -> Result<(), Halt> {
        self.at += self.partial.len() as u64;
        let step = mem::take(&mut self.partial);
        let res = self.codec.push(&step, sink);
        self.partial = step;
        self.partial.clear();
        res
    }
}

impl<C: Stream> Stream for Stepped<C> {
    fn push(&mut self, mut raw: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt> {
        while !raw.is_empty() {
            let len = self.len();
            if self.partial.is_empty() && raw.len() >= len {
                let (step, rest) = raw.split_at(len);
                raw = rest;
                self.at += len as u64;
                self.codec.push(step, sink)?;
            } else {
                let want = len.saturating_sub(self.partial.len());
                let (head, rest) = raw.split_at(raw.len().min(want));
                raw = rest;
                self.partial.extend_from_slice(head);
                if self.partial.len() >= len {
                    self.flush(sink)?;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, sink: &mut Sink<'_>) -> Result<(), Halt> {
        if !self.partial.is_empty() {
            self.flush(sink)?;
        }
        self.codec.finish(sink)
    }
}
