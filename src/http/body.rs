//! Message body framing (RFC 9112 §6) and the incremental chunked decoder
//! (RFC 9112 §7.1). Every framing two parsers could read differently is
//! refused; what we accept has exactly one reading.

use bytes::{Buf, Bytes, BytesMut};

use super::head::{fields, is_tchar, scan_fields, Header, RequestHead, ResponseHead};
use super::{Error, Limits};

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// Exactly this many bytes follow the head (may be 0).
    Length(u64),
    /// Chunked transfer coding: feed the bytes to a [`ChunkedDecoder`].
    Chunked,
    /// The body runs until the upstream closes (responses only).
    CloseDelimited,
}

/// The framing of a request body (RFC 9112 §6.3). Without `Content-Length`
/// and `Transfer-Encoding` a request has no body (§6.3 rule 7). A chunked
/// request body is accepted (the relay re-frames it with Content-Length).
/// The caller checks a declared length against [`Limits::check_length`].
pub fn request_body(head: &RequestHead) -> Result<BodyKind, Error> {
    Ok(match framing(&head.headers)? {
        Some(kind) => kind,
        None => BodyKind::Empty,
    })
}

/// The framing of a response body (RFC 9112 §6.3).
///
/// The framing fields are checked even where they do not apply (HEAD, 304),
/// so a malformed upstream is refused in every case. A `CONNECT` is never
/// forwarded (the guard answers it itself), so rule 2 does not arise.
pub fn response_body(head: &ResponseHead, request_method_is_head: bool) -> Result<BodyKind, Error> {
    let kind = framing(&head.headers)?;
    // RFC 9110 §8.6 and RFC 9112 §6.1: a server MUST NOT send Content-Length
    // or Transfer-Encoding in a 1xx or 204 response; one that does is broken
    // or lying about where the next response starts.
    if head.status < 200 || head.status == 204 {
        if kind.is_some() {
            return Err(Error::BadContentLength);
        }
        return Ok(BodyKind::Empty);
    }
    // RFC 9112 §6.3 rule 1: HEAD responses and 304 have no body, whatever
    // their fields say.
    if request_method_is_head || head.status == 304 {
        return Ok(BodyKind::Empty);
    }
    // §6.3 rule 8: otherwise the body runs to the close.
    Ok(kind.unwrap_or(BodyKind::CloseDelimited))
}

/// `Some(Length | Chunked)` from the framing fields, `None` without any.
fn framing(headers: &[Header]) -> Result<Option<BodyKind>, Error> {
    let mut te = fields(headers, "transfer-encoding");
    let mut cl = fields(headers, "content-length");
    let (te1, te2) = (te.next(), te.next());
    let (cl1, cl2) = (cl.next(), cl.next());
    // RFC 9112 §6.3 rule 3: both present is a smuggling attempt or a
    // broken sender; the server MAY reject it and we do.
    if te1.is_some() && cl1.is_some() {
        return Err(Error::ConflictingLength);
    }
    if let Some(te) = te1 {
        // §6.1: several fields form one list; we accept only a lone
        // `chunked`, so any second field is refused.
        if te2.is_some() {
            return Err(Error::BadTransferEncoding);
        }
        return transfer_coding(&te.value).map(Some);
    }
    if let Some(cl) = cl1 {
        // RFC 9110 §8.6 lets a recipient merge equal repeated values; we
        // refuse them, since another hop may not.
        if cl2.is_some() {
            return Err(Error::DuplicateLength);
        }
        return content_length(&cl.value).map(|n| Some(BodyKind::Length(n)));
    }
    Ok(None)
}

/// RFC 9112 §6.1: a transfer-coding list whose final coding is `chunked`.
/// We accept only the single token `chunked` (case-insensitive, §7):
/// stacked codings, `chunked` twice, parameters or `identity` are refused.
fn transfer_coding(value: &[u8]) -> Result<BodyKind, Error> {
    if value.eq_ignore_ascii_case(b"chunked") {
        return Ok(BodyKind::Chunked);
    }
    if !value.is_empty() && value.iter().all(|&b| is_tchar(b)) {
        // One well-formed coding we do not implement (§6.1: 501).
        return Err(Error::UnknownTransferEncoding);
    }
    Err(Error::BadTransferEncoding)
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. No sign, no list, no inner
/// whitespace; surrounding OWS was already trimmed (RFC 9112 §5) and is
/// harmless since we re-frame with our own value. Leading zeros are
/// digits and accepted.
fn content_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() {
        return Err(Error::BadContentLength);
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(Error::BadContentLength);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Error::BadContentLength)
    })
}

/// One step of chunked decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Decoded body bytes (never empty).
    Data(Bytes),
    /// The input holds no complete next element: read more and call again.
    NeedMore,
    /// The last chunk and the trailer section were read. Bytes left in the
    /// input belong to the next message.
    Done,
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1). It consumes what
/// it decodes from the input and leaves partial lines there. Any split of
/// the same bytes gives the same data or the same error. After an error it
/// keeps returning that error.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: State,
    total: u64,
}

#[derive(Debug, Clone, Default)]
enum State {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: expecting the trailer section.
    Trailers,
    Done,
    Failed(Error),
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decoded bytes so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the whole body was read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decode the next element from `input`, consuming what it uses.
    pub fn decode(&mut self, input: &mut BytesMut, limits: &Limits) -> Result<Chunk, Error> {
        match self.step(input, limits) {
            Ok(chunk) => Ok(chunk),
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn step(&mut self, input: &mut BytesMut, limits: &Limits) -> Result<Chunk, Error> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Done => return Ok(Chunk::Done),
                State::Size => {
                    let Some((size, len)) = size_line(input, limits.max_chunk_ext_bytes)? else {
                        return Ok(Chunk::NeedMore);
                    };
                    input.advance(len);
                    if size == 0 {
                        // §7.1: the last chunk; the trailer section follows.
                        self.state = State::Trailers;
                    } else {
                        match self.total.checked_add(size) {
                            Some(n) if n <= limits.max_body_bytes => {}
                            _ => return Err(Error::BodyTooLarge),
                        }
                        self.state = State::Data(size);
                    }
                }
                State::Data(left) => {
                    if input.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let data = input.split_to(n).freeze();
                    // n <= *left by construction.
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::DataEnd;
                    }
                    self.total += n as u64;
                    return Ok(Chunk::Data(data));
                }
                State::DataEnd => {
                    // §7.1: chunk-data is followed by CRLF; anything else
                    // means the data is longer than its size said.
                    match (input.first(), input.get(1)) {
                        (Some(b'\r'), Some(b'\n')) => {
                            input.advance(2);
                            self.state = State::Size;
                        }
                        (Some(b'\r'), None) | (None, _) => return Ok(Chunk::NeedMore),
                        _ => return Err(Error::BadChunkData),
                    }
                }
                State::Trailers => {
                    return match trailers(input, limits)? {
                        Some(len) => {
                            // §7.1.2: trailer fields are discarded; we never
                            // forward them and never merge them into the
                            // head.
                            input.advance(len);
                            self.state = State::Done;
                            Ok(Chunk::Done)
                        }
                        None => Ok(Chunk::NeedMore),
                    };
                }
            }
        }
    }
}

/// RFC 9112 §7.1.2: `trailer-section = *( field-line CRLF )` then CRLF,
/// with the same strictness and size limit as a head.
fn trailers(input: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    let Some(len) = scan_fields(input, limits.max_header_bytes, Error::HeadTooLarge)? else {
        return Ok(None);
    };
    let section = input.get(..len).ok_or(Error::BadTrailer)?;
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((n, _))) if n == len => Ok(Some(len)),
        Err(httparse::Error::TooManyHeaders) => Err(Error::TooManyHeaders),
        _ => Err(Error::BadTrailer),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Digits,
    /// After a complete extension name or value.
    AfterExt,
    Name,
    NameMore,
    ValueStart,
    Token,
    Quoted,
    QuotedEscape,
    Cr,
}

/// Parse one chunk-size line (RFC 9112 §7.1):
///
/// ```text
/// chunk-size CRLF / chunk-size chunk-ext CRLF
/// chunk-size = 1*HEXDIG                      ; we allow 1 to 16 digits
/// chunk-ext  = *( BWS ";" BWS name [ BWS "=" BWS value ] )
/// ```
///
/// We refuse BWS (no sender we serve puts whitespace there, and parsers
/// disagree about it), a sign, `0x`, and more than 16 digits (they could
/// only overflow or pad). Returns the size and the line length, `None` if
/// the line is incomplete so far. Scans left to right and checks the
/// extension length byte by byte, so a prefix gives `None` or the error the
/// whole line gives.
fn size_line(buf: &[u8], max_ext: usize) -> Result<Option<(u64, usize)>, Error> {
    let mut state = Line::Digits;
    let mut size: u64 = 0;
    let mut digits = 0usize;
    let mut ext_len = 0usize;
    for (i, &b) in buf.iter().enumerate() {
        if !matches!(state, Line::Digits | Line::Cr) && b != b'\r' {
            ext_len += 1;
            if ext_len > max_ext {
                return Err(Error::ChunkExtensionTooLong);
            }
        }
        state = match state {
            Line::Digits => match b {
                b if b.is_ascii_hexdigit() => {
                    digits += 1;
                    if digits > 16 {
                        return Err(Error::BadChunkSize);
                    }
                    let v = (b as char).to_digit(16).ok_or(Error::BadChunkSize)?;
                    size = (size << 4) | u64::from(v);
                    Line::Digits
                }
                _ if digits == 0 => return Err(Error::BadChunkSize),
                b';' => {
                    // The extension starts with its ';'.
                    ext_len = 1;
                    if ext_len > max_ext {
                        return Err(Error::ChunkExtensionTooLong);
                    }
                    Line::Name
                }
                b'\r' => Line::Cr,
                b'\n' => return Err(Error::BareLf),
                _ => return Err(Error::BadChunkSize),
            },
            Line::AfterExt => match b {
                b';' => Line::Name,
                b'\r' => Line::Cr,
                b'\n' => return Err(Error::BareLf),
                _ => return Err(Error::BadChunkExtension),
            },
            Line::Name => match b {
                b if is_tchar(b) => Line::NameMore,
                b'\n' => return Err(Error::BareLf),
                _ => return Err(Error::BadChunkExtension),
            },
            Line::NameMore | Line::Token => match b {
                b if is_tchar(b) => state,
                b'=' if state == Line::NameMore => Line::ValueStart,
                b';' => Line::Name,
                b'\r' => Line::Cr,
                b'\n' => return Err(Error::BareLf),
                _ => return Err(Error::BadChunkExtension),
            },
            Line::ValueStart => match b {
                b if is_tchar(b) => Line::Token,
                b'"' => Line::Quoted,
                b'\n' => return Err(Error::BareLf),
                _ => return Err(Error::BadChunkExtension),
            },
            // RFC 9110 §5.6.4: quoted-string.
            Line::Quoted => match b {
                b'"' => Line::AfterExt,
                b'\\' => Line::QuotedEscape,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => Line::Quoted,
                _ => return Err(Error::BadChunkExtension),
            },
            Line::QuotedEscape => match b {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => Line::Quoted,
                _ => return Err(Error::BadChunkExtension),
            },
            Line::Cr => match b {
                b'\n' => return Ok(Some((size, i + 1))),
                _ => return Err(Error::BareCr),
            },
        };
    }
    Ok(None)
}
