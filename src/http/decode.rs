//! Content codings (RFC 9110 §8.4): which one a body has, and a streaming
//! decoder for it with caps on output size and compression ratio.
//!
//! Each decoder is strict at the end of its stream: a truncated stream, a
//! bad checksum, a second gzip member or any byte after the end is an error,
//! never silently ignored, so the guard never inspects less than the peer
//! would decode.

use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::head::{fields, Header};
use super::Error;

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
    /// Most decoded bytes per raw byte read, checked once the output is
    /// over `ratio_grace_bytes`.
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

/// A streaming decoder of `raw` in `coding`, capped by `caps`.
///
/// Errors of the coding or the caps are `io::Error`s of kind `InvalidData`
/// that carry an [`Error`] (see [`Error::from_io`]); errors of `raw` itself
/// are passed through unchanged. After an error every later read fails too.
/// An empty `raw` is a truncated stream for every coding but identity.
pub fn decoder<R: Read + Send + 'static>(
    coding: Coding,
    raw: R,
    caps: DecodeCaps,
) -> Box<dyn Read + Send> {
    let counted = Arc::new(AtomicU64::new(0));
    let source_failed = Arc::new(AtomicBool::new(false));
    let source = Counting {
        inner: raw,
        count: Arc::clone(&counted),
        failed: Arc::clone(&source_failed),
    };
    let codec = match coding {
        Coding::Identity => Codec::Identity(source),
        Coding::Gzip => Codec::Gzip(flate2::bufread::GzDecoder::new(BufReader::new(source))),
        Coding::Deflate => {
            Codec::Deflate(flate2::bufread::ZlibDecoder::new(BufReader::new(source)))
        }
        // The buffer size only sizes brotli's input buffer.
        Coding::Br => Codec::Br(Box::new(brotli::Decompressor::new(source, 8 * 1024))),
        Coding::Zstd => Codec::Zstd(Zstd::Start(Some(BufReader::new(source)))),
    };
    Box::new(Capped {
        codec,
        coding,
        caps,
        raw: counted,
        source_failed,
        out: 0,
        state: Progress::Reading,
    })
}

/// Counts the raw bytes read and remembers whether the source failed, so
/// its errors are not mistaken for a corrupt stream.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

type Source<R> = Counting<R>;

enum Codec<R: Read> {
    Identity(Source<R>),
    Gzip(flate2::bufread::GzDecoder<BufReader<Source<R>>>),
    Deflate(flate2::bufread::ZlibDecoder<BufReader<Source<R>>>),
    Br(Box<brotli::Decompressor<Source<R>>>),
    Zstd(Zstd<R>),
}

/// RFC 9659 §3: a zstd content coding MUST NOT need a window over 8 MiB;
/// refusing more also bounds our memory per body.
const ZSTD_MAX_WINDOW: u64 = 8 * 1024 * 1024;

type ZstdSource<R> = io::Chain<Cursor<Vec<u8>>, BufReader<Source<R>>>;

enum Zstd<R: Read> {
    /// Before the frame header was read (done on first read, so that
    /// making a decoder never blocks on the source).
    Start(Option<BufReader<Source<R>>>),
    Frame(Box<ruzstd::decoding::StreamingDecoder<ZstdSource<R>, ruzstd::decoding::FrameDecoder>>),
}

impl<R: Read> Codec<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Codec::Identity(r) => r.read(buf),
            Codec::Gzip(r) => r.read(buf),
            Codec::Deflate(r) => r.read(buf),
            Codec::Br(r) => r.read(buf),
            Codec::Zstd(z) => z.read(buf),
        }
    }

    /// After the codec reported its end: refuse anything left over.
    fn finish(&mut self) -> io::Result<Option<&'static str>> {
        match self {
            Codec::Identity(_) => Ok(None),
            Codec::Gzip(r) => trailing(r.get_mut(), "bytes after the gzip member"),
            Codec::Deflate(r) => trailing(r.get_mut(), "bytes after the zlib stream"),
            Codec::Br(r) => {
                // brotli reports bytes left in its own buffer on the read
                // after its end, and never looks past that buffer.
                let mut probe = [0u8; 1];
                if r.read(&mut probe)? != 0 {
                    return Ok(Some("output after the brotli stream end"));
                }
                let mut rest = [0u8; 1];
                if read_retrying(r.get_mut(), &mut rest)? != 0 {
                    return Ok(Some("bytes after the brotli stream"));
                }
                Ok(None)
            }
            Codec::Zstd(Zstd::Frame(d)) => {
                let frame = &d.decoder;
                if let Some(sent) = frame.get_checksum_from_data() {
                    if frame.get_calculated_checksum() != Some(sent) {
                        return Ok(Some("zstd content checksum mismatch"));
                    }
                }
                trailing(d.get_mut(), "bytes after the zstd frame")
            }
            Codec::Zstd(Zstd::Start(_)) => Ok(Some("zstd frame never started")),
        }
    }
}

fn read_retrying<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn trailing<B: BufRead>(r: &mut B, what: &'static str) -> io::Result<Option<&'static str>> {
    Ok(if r.fill_buf()?.is_empty() {
        None
    } else {
        Some(what)
    })
}

impl<R: Read> Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Zstd::Start(src) = self {
            let Some(mut src) = src.take() else {
                return Err(bad("zstd decoder failed to start"));
            };
            let header = zstd_header(&mut src)?;
            let source = Cursor::new(header).chain(src);
            let frame = ruzstd::decoding::StreamingDecoder::new_with_decoder(
                source,
                ruzstd::decoding::FrameDecoder::new(),
            )
            .map_err(|e| bad_owned(format!("bad zstd frame header: {e}")))?;
            *self = Zstd::Frame(Box::new(frame));
        }
        match self {
            Zstd::Frame(d) => d.read(buf),
            Zstd::Start(_) => Err(bad("zstd decoder failed to start")),
        }
    }
}

/// Read and check a zstd frame header (RFC 8878 §3.1.1), returning its
/// bytes to be replayed to the decoder. Refuses skippable frames, frames
/// that need a dictionary, reserved bits, and windows over 8 MiB.
fn zstd_header<B: BufRead>(src: &mut B) -> io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(18);
    let mut take = |n: usize, header: &mut Vec<u8>| -> io::Result<()> {
        let start = header.len();
        header.resize(start + n, 0);
        let dst = header.get_mut(start..).ok_or_else(|| bad("zstd header"))?;
        src.read_exact(dst).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bad("truncated zstd frame header")
            } else {
                e
            }
        })
    };
    // Indexing below reads only bytes that `take` just filled.
    take(5, &mut header)?;
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if magic != 0xFD2F_B528 {
        return Err(bad("not a zstd frame (or a skippable frame)"));
    }
    let descriptor = header[4];
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    if descriptor & 0x08 != 0 {
        return Err(bad("zstd reserved bit set"));
    }
    let dict_bytes = match descriptor & 0x03 {
        0 => 0,
        1 => 1,
        2 => 2,
        _ => 4,
    };
    let fcs_bytes = match (fcs_flag, single_segment) {
        (0, false) => 0,
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let mut window: Option<u64> = None;
    if !single_segment {
        take(1, &mut header)?;
        let wd = header[5];
        let exponent = u64::from(wd >> 3);
        let mantissa = u64::from(wd & 0x07);
        let base = 1u64 << (10 + exponent);
        window = Some(base + (base / 8) * mantissa);
    }
    if dict_bytes > 0 {
        let at = header.len();
        take(dict_bytes, &mut header)?;
        if header[at..].iter().any(|&b| b != 0) {
            return Err(bad("zstd frame needs a dictionary"));
        }
    }
    if fcs_bytes > 0 {
        let at = header.len();
        take(fcs_bytes, &mut header)?;
        let mut le = [0u8; 8];
        le[..fcs_bytes].copy_from_slice(&header[at..]);
        let mut fcs = u64::from_le_bytes(le);
        if fcs_bytes == 2 {
            fcs += 256;
        }
        if single_segment {
            window = Some(fcs);
        }
    }
    match window {
        Some(w) if w <= ZSTD_MAX_WINDOW => Ok(header),
        _ => Err(bad("zstd window over 8 MiB")),
    }
}

fn bad(reason: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Reason(reason.to_owned()))
}

fn bad_owned(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Reason(reason))
}

/// A reason from inside a codec, turned into [`Error::BadEncoding`] by
/// [`Capped`].
#[derive(Debug)]
struct Reason(String);

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reason {}

enum Progress {
    Reading,
    Ended,
    Failed(io::ErrorKind, Error),
}

/// The codec with the caps, the end-of-stream checks and a latched error.
struct Capped<R: Read> {
    codec: Codec<R>,
    coding: Coding,
    caps: DecodeCaps,
    raw: Arc<AtomicU64>,
    source_failed: Arc<AtomicBool>,
    out: u64,
    state: Progress,
}

impl<R: Read> Capped<R> {
    fn fail(&mut self, error: Error) -> io::Error {
        self.state = Progress::Failed(io::ErrorKind::InvalidData, error.clone());
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    fn bad_stream(&mut self, reason: String) -> io::Error {
        let coding = self.coding;
        self.fail(Error::BadEncoding { coding, reason })
    }

    /// An error from the codec: the source's own error passes through
    /// (the relay's I/O failed, not the stream); anything else is a bad
    /// stream.
    fn codec_error(&mut self, e: io::Error) -> io::Error {
        if self.source_failed.load(Ordering::Relaxed) {
            return e;
        }
        let reason = match e.get_ref().and_then(|r| r.downcast_ref::<Reason>()) {
            Some(r) => r.0.clone(),
            None if e.kind() == io::ErrorKind::UnexpectedEof => "truncated stream".to_owned(),
            None => format!("corrupt stream: {e}"),
        };
        self.bad_stream(reason)
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            Progress::Ended => return Ok(0),
            Progress::Failed(kind, e) => return Err(io::Error::new(*kind, e.clone())),
            Progress::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // Never ask for more than the cap allows plus one byte, so an
        // overshoot is seen without decoding a large block past the cap.
        let room = self
            .caps
            .max_decoded_bytes
            .saturating_sub(self.out)
            .saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let dst = buf.get_mut(..want).unwrap_or_default();
        let n = match self.codec.read(dst) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => return Err(self.codec_error(e)),
        };
        if n == 0 {
            return match self.codec.finish() {
                Ok(None) => {
                    self.state = Progress::Ended;
                    Ok(0)
                }
                Ok(Some(reason)) => Err(self.bad_stream(reason.to_owned())),
                Err(e) => Err(self.codec_error(e)),
            };
        }
        self.out += n as u64;
        if self.out > self.caps.max_decoded_bytes {
            return Err(self.fail(Error::DecodedTooLarge(self.caps.max_decoded_bytes)));
        }
        let raw = self.raw.load(Ordering::Relaxed);
        if self.out > self.caps.ratio_grace_bytes
            && self.out > raw.saturating_mul(self.caps.max_ratio)
        {
            return Err(self.fail(Error::RatioTooHigh(self.caps.max_ratio)));
        }
        Ok(n)
    }
}
