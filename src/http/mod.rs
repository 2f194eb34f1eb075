//! Step 3 of the path: strict HTTP/1.1 heads and body framing.
//!
//! Everything here is synchronous and does no I/O: the relay reads bytes
//! (from TCP or from TLS, we never see which) into a `BytesMut` and calls
//! these functions. Incomplete input is `Ok(None)` / [`Chunk::NeedMore`],
//! never an error.
//!
//! The layer refuses every head or framing that two HTTP implementations
//! could read differently, so that the guard and the peer it forwards to
//! always agree on where a message ends:
//!
//! * heads ([`head`]): only `HTTP/1.1`; bare LF, bare CR, NUL, obs-fold,
//!   whitespace before a colon, leading empty lines, a missing or repeated
//!   `Host`, request targets that are not origin-form, `http://` absolute-form
//!   or (with `CONNECT` only) authority-form;
//! * framing ([`body`]): `Content-Length` with `Transfer-Encoding`, repeated
//!   or list-valued `Content-Length`, any transfer coding but a lone
//!   `chunked`, malformed chunk lines, over-long chunk extensions, trailers
//!   that break the head rules;
//! * content codings ([`decode`]): stacked or unknown codings, truncated
//!   streams, bytes after the end of a stream, raw deflate, zstd frames with
//!   a window over 8 MiB, output over a size cap or a ratio cap.
//!
//! What is forwarded is re-framed by the guard ([`encode`]): hop-by-hop
//! headers are dropped and the body is sent with our own `Content-Length`,
//! so the peer sees exactly the bytes that were inspected.

pub mod body;
pub mod decode;
pub mod encode;
pub mod head;

#[doc(hidden)]
pub mod fuzz;

#[cfg(test)]
mod tests;

pub use body::{request_body, response_body, BodyKind, Chunk, ChunkedDecoder};
pub use decode::{content_coding, request_coding, response_coding, Coding, DecodeCaps, Decoder};
pub use encode::{
    encode_request, encode_request_close, encode_response, encode_response_close, is_hop_by_hop,
};
pub use head::{
    connection_close, expects_continue, parse_request, parse_response, Form, Header, RequestHead,
    ResponseHead,
};

/// Size limits for heads and bodies. Every limit is checked before a buffer
/// grows past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest head (request/status line, fields and the empty line), and
    /// largest trailer section. Over it: 431.
    pub max_header_bytes: usize,
    /// Most header fields in a head or trailer section. Over it: 431.
    pub max_headers: usize,
    /// Longest request target. Over it: 414.
    pub max_target_bytes: usize,
    /// Longest chunk extension (everything after the chunk size on its line).
    pub max_chunk_ext_bytes: usize,
    /// Largest body as framed on the wire (after de-chunking). Over it: 413.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            max_chunk_ext_bytes: 256,
            max_body_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Refuse a declared body length over `max_body_bytes` before reading it.
    pub fn check_length(&self, len: u64) -> Result<(), Error> {
        if len > self.max_body_bytes {
            return Err(Error::BodyTooLarge);
        }
        Ok(())
    }
}

/// Why a message was refused. Each variant names the shape of the attack or
/// fault, so a log line says what was tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `Content-Length` and `Transfer-Encoding` in one message.
    #[error("Content-Length together with Transfer-Encoding")]
    ConflictingLength,
    /// More than one `Content-Length` field, even with equal values.
    #[error("more than one Content-Length field")]
    DuplicateLength,
    /// A `Content-Length` value that is not plain decimal digits in range.
    #[error("malformed Content-Length value")]
    BadContentLength,
    /// `Transfer-Encoding` that is not exactly one `chunked`.
    #[error("malformed or stacked Transfer-Encoding")]
    BadTransferEncoding,
    /// `Transfer-Encoding` naming one coding we do not implement.
    #[error("unsupported transfer coding")]
    UnknownTransferEncoding,
    /// A field line starting with whitespace (obsolete line folding).
    #[error("obsolete line folding")]
    ObsFold,
    /// A line feed not preceded by a carriage return.
    #[error("bare LF line ending")]
    BareLf,
    /// A carriage return not followed by a line feed.
    #[error("bare CR")]
    BareCr,
    /// A NUL byte in a head or trailer section.
    #[error("NUL byte in head")]
    Nul,
    /// Empty lines before the request or status line.
    #[error("empty line before the start line")]
    LeadingEmptyLine,
    /// A chunk-size line whose size is not 1 to 16 hex digits.
    #[error("malformed chunk size")]
    BadChunkSize,
    /// A malformed chunk extension (whitespace, bad token, bad quoting).
    #[error("malformed chunk extension")]
    BadChunkExtension,
    /// A chunk extension over `max_chunk_ext_bytes`.
    #[error("chunk extension too long")]
    ChunkExtensionTooLong,
    /// Chunk data not followed by CRLF (data longer than its size).
    #[error("chunk data not followed by CRLF")]
    BadChunkData,
    /// A malformed trailer section.
    #[error("malformed trailer section")]
    BadTrailer,
    /// A head (or trailer section) over `max_header_bytes`.
    #[error("head too large")]
    HeadTooLarge,
    /// More fields than `max_headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// A method that is not a token.
    #[error("malformed method")]
    BadMethod,
    /// A request target of a refused form or with refused bytes.
    #[error("malformed or refused request target")]
    BadTarget,
    /// A request target over `max_target_bytes`.
    #[error("request target too long")]
    TargetTooLong,
    /// A protocol version other than HTTP/1.1.
    #[error("HTTP version other than 1.1")]
    BadVersion,
    /// A malformed status line or a refused status code.
    #[error("malformed status line")]
    BadStatus,
    /// A malformed field line (name, colon, value).
    #[error("malformed header field")]
    BadHeader,
    /// A missing, repeated or malformed `Host` field, or one that differs
    /// from the authority of the target.
    #[error("missing, repeated or mismatched Host")]
    BadHost,
    /// A field that must appear at most once appeared more than once.
    #[error("repeated {0} field")]
    DuplicateHeader(&'static str),
    /// A `Content-Encoding` other than one allowed coding.
    #[error("unsupported or stacked Content-Encoding")]
    UnsupportedEncoding,
    /// A compressed body that is corrupt, truncated or followed by bytes.
    #[error("bad {coding} stream: {reason}")]
    BadEncoding {
        /// The coding being decoded.
        coding: Coding,
        /// What was wrong.
        reason: String,
    },
    /// A body over `max_body_bytes`.
    #[error("body too large")]
    BodyTooLarge,
    /// Decoded output over `DecodeCaps::max_decoded_bytes`.
    #[error("decoded body exceeds max_decoded_bytes ({0})")]
    DecodedTooLarge(u64),
    /// Decoded/raw ratio over `DecodeCaps::max_ratio`.
    #[error("decoded/raw ratio exceeds max_ratio ({0})")]
    RatioTooHigh(u64),
    /// An `Expect` other than one `100-continue`.
    #[error("unsupported Expect")]
    BadExpect,
}

impl Error {
    /// The status to answer a client with for this error. The one place
    /// that maps refusals to statuses; errors about an upstream's message
    /// are answered 502 by the relay instead.
    pub fn status(&self) -> u16 {
        match self {
            Error::HeadTooLarge | Error::TooManyHeaders => 431,
            Error::TargetTooLong => 414,
            Error::BodyTooLarge | Error::DecodedTooLarge(_) | Error::RatioTooHigh(_) => 413,
            // RFC 9112 §6.1: a transfer coding the server does not
            // understand SHOULD be answered 501.
            Error::UnknownTransferEncoding => 501,
            // RFC 9110 §15.6.6.
            Error::BadVersion => 505,
            // RFC 9110 §10.1.1: an Expect other than 100-continue MAY be
            // answered 417.
            Error::BadExpect => 417,
            // RFC 9110 §15.5.16.
            Error::UnsupportedEncoding => 415,
            _ => 400,
        }
    }

    /// The [`Error`] inside an `io::Error`, if it carries one (readers over
    /// a [`Decoder`] report its errors so), not an error of their source.
    pub fn from_io(err: &std::io::Error) -> Option<&Error> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
    }
}
