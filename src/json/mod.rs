//! A strict, resumable push tokenizer for JSON: chunks in, events out,
//! nothing held whole.
//!
//! It sits between the relay's body buffers and the rule engine. The relay
//! calls [`Tokenizer::feed`] with each chunk as it arrives (any size, down to
//! one byte), then [`Tokenizer::finish`]; the tokenizer calls a [`Sink`] for
//! every token. A string value reaches the sink as fragments, so a 100 MB
//! base64 attachment is never held; a key is handed over whole but bounded.
//! What is held across chunks is small and bounded: the nesting stack
//! (one byte per level, up to [`Limits::max_depth`]), one unfinished key or
//! number (up to its limit), an escape (12 bytes) and a UTF-8 sequence
//! (4 bytes).
//!
//! # What it refuses
//!
//! Exactly what `serde_json::from_slice::<serde_json::Value>` refuses, for
//! documents within the limits (the differential tests and the `json` fuzz
//! target hold it to that):
//!
//! * bytes that are not UTF-8, anywhere: each chunk is validated whole
//!   (simdutf8), including strings nobody reads; a sequence split between
//!   chunks is carried to the next one;
//! * in strings: control characters (below U+0020), escapes other than the
//!   eight of RFC 8259 §7 and `\uXXXX`, lone surrogates (a leading one must
//!   be followed at once by `\u` and a trailing one);
//! * numbers outside the RFC 8259 §6 grammar (`01`, `+1`, `.5`, `1.`, `1e`);
//!   the text is handed over as it is, for the consumer to read the way the
//!   peer will (PHP's `json_decode`, say);
//! * literals other than exactly `true`, `false`, `null`;
//! * nesting deeper than [`Limits::max_depth`], keys longer than
//!   [`Limits::max_key_len`] bytes (unescaped), number text longer than
//!   [`Limits::max_number_len`];
//! * anything but whitespace after the top-level value, a byte order mark,
//!   an empty document (at [`Tokenizer::finish`]), a truncated one.
//!
//! Duplicate keys are not refused here: the sink sees every key, and the
//! consumer decides (the rule engine refuses them on inspected objects).
//!
//! # Where it differs from serde_json, on purpose
//!
//! * Numbers are text here. serde_json refuses a number whose value is out
//!   of `f64` range (`1e400`, a 400-digit integer); the JSON grammar and PHP
//!   (which reads it as `INF`) accept it, and so does this tokenizer.
//! * serde_json stops at 127 levels of nesting, whatever the caller wants;
//!   here the limit is [`Limits::max_depth`].
//! * Over a limit of [`Limits`] is refused here, whatever serde_json does.
//!
//! # Offsets
//!
//! Every event carries a byte offset in the whole stream (all chunks fed so
//! far): where the token starts (its first byte: `{`, `[`, the opening `"`,
//! the first byte of a number or literal), and for the end of an object,
//! array or string, the offset just past it. A string fragment carries the
//! offset of the first raw byte it was decoded from. Errors carry the offset
//! of the byte they are blamed on.

mod scan;
mod tokenizer;

#[doc(hidden)]
pub mod fuzz;

#[cfg(test)]
mod tests;

pub use tokenizer::Tokenizer;

/// Bounds on what the tokenizer holds or accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most containers open at once: `[[]]` is 2 deep. Over it:
    /// [`ErrorKind::TooDeep`].
    pub max_depth: usize,
    /// Longest key, in bytes after unescaping. Over it:
    /// [`ErrorKind::KeyTooLong`].
    pub max_key_len: usize,
    /// Longest number text. Over it: [`ErrorKind::NumberTooLong`].
    pub max_number_len: usize,
}

impl Default for Limits {
    /// Generous for MISP documents: 64 levels (the guard's default
    /// `max_json_depth`), 1 KiB keys, 512-byte numbers.
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_key_len: 1024,
            max_number_len: 512,
        }
    }
}

/// One of the three literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literal {
    True,
    False,
    Null,
}

impl Literal {
    /// Its text, as it stands in the document.
    pub fn text(self) -> &'static str {
        match self {
            Literal::True => "true",
            Literal::False => "false",
            Literal::Null => "null",
        }
    }
}

/// The consumer of the events. Each callback may stop the parse by
/// returning its own error, which [`Tokenizer::feed`] hands back as
/// [`Error::Sink`]; after that the tokenizer refuses further input.
///
/// A string value is `begin_string`, zero or more non-empty fragments, then
/// `end_string`; the fragments, joined, are the unescaped string. Fragments
/// borrow the chunk being fed where they can; a fragment decoded from an
/// escape, or a character whose UTF-8 bytes were split between chunks,
/// comes from a small buffer of the tokenizer's own.
pub trait Sink {
    /// What stops the parse.
    type Error;
    /// `{` at `at`.
    fn begin_object(&mut self, at: u64) -> Result<(), Self::Error>;
    /// `}`; `end` is just past it.
    fn end_object(&mut self, end: u64) -> Result<(), Self::Error>;
    /// `[` at `at`.
    fn begin_array(&mut self, at: u64) -> Result<(), Self::Error>;
    /// `]`; `end` is just past it.
    fn end_array(&mut self, end: u64) -> Result<(), Self::Error>;
    /// A key of the current object, unescaped and whole; `at` is its
    /// opening `"`. Its value's events follow.
    fn key(&mut self, key: &str, at: u64) -> Result<(), Self::Error>;
    /// A string value opens; `at` is its opening `"`.
    fn begin_string(&mut self, at: u64) -> Result<(), Self::Error>;
    /// The next piece of the string value, unescaped, never empty; `at` is
    /// the offset of the first raw byte it comes from.
    fn string_fragment(&mut self, fragment: &str, at: u64) -> Result<(), Self::Error>;
    /// The string value closes; `end` is just past its closing `"`.
    fn end_string(&mut self, end: u64) -> Result<(), Self::Error>;
    /// A number, as its raw text (RFC 8259 grammar checked); it spans
    /// `at..at + text.len()`.
    fn number(&mut self, text: &str, at: u64) -> Result<(), Self::Error>;
    /// `true`, `false` or `null` at `at`.
    fn literal(&mut self, literal: Literal, at: u64) -> Result<(), Self::Error>;
}

/// A sink that takes every event and keeps nothing: the tokenizer then only
/// validates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Sink for Discard {
    type Error = std::convert::Infallible;
    #[inline]
    fn begin_object(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn end_object(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn begin_array(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn end_array(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn key(&mut self, _: &str, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn begin_string(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn string_fragment(&mut self, _: &str, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn end_string(&mut self, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn number(&mut self, _: &str, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    #[inline]
    fn literal(&mut self, _: Literal, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why the bytes are not one JSON document within the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A byte sequence that is not UTF-8 (blamed on its first byte).
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A byte order mark at the start (RFC 8259 §8.1: must not be added).
    #[error("byte order mark")]
    ByteOrderMark,
    /// A byte that cannot start a value.
    #[error("expected a value")]
    ExpectedValue,
    /// After `{`: neither a key nor `}`.
    #[error("expected a key or '}}'")]
    ExpectedKeyOrEnd,
    /// After `,` in an object: not a key.
    #[error("expected a key")]
    ExpectedKey,
    /// After a key: not `:`.
    #[error("expected ':'")]
    ExpectedColon,
    /// After a value in an object: neither `,` nor `}`.
    #[error("expected ',' or '}}'")]
    ExpectedCommaOrBrace,
    /// After a value in an array: neither `,` nor `]`.
    #[error("expected ',' or ']'")]
    ExpectedCommaOrBracket,
    /// Something other than whitespace after the top-level value.
    #[error("trailing bytes after the document")]
    TrailingBytes,
    /// A control character (below U+0020) inside a string.
    #[error("control character in a string")]
    ControlCharacter,
    /// A backslash followed by none of `"\/bfnrtu`.
    #[error("invalid escape")]
    InvalidEscape,
    /// `\u` not followed by four hex digits.
    #[error("invalid \\u escape")]
    InvalidUnicodeEscape,
    /// A `\u` surrogate that is not half of a pair (blamed on its `\`).
    #[error("lone surrogate in a \\u escape")]
    LoneSurrogate,
    /// Number text outside the RFC 8259 grammar.
    #[error("invalid number")]
    InvalidNumber,
    /// Not exactly `true`, `false` or `null`.
    #[error("invalid literal")]
    InvalidLiteral,
    /// A container past [`Limits::max_depth`].
    #[error("nesting deeper than the limit")]
    TooDeep,
    /// A key past [`Limits::max_key_len`] (blamed on its opening `"`).
    #[error("key longer than the limit")]
    KeyTooLong,
    /// A number past [`Limits::max_number_len`] (blamed on its start).
    #[error("number longer than the limit")]
    NumberTooLong,
    /// Nothing but whitespace, at [`Tokenizer::finish`].
    #[error("empty document")]
    Empty,
    /// The input ended inside the document, at [`Tokenizer::finish`].
    #[error("truncated document")]
    Truncated,
    /// Input after an earlier error or after [`Tokenizer::finish`].
    #[error("input after the end of the parse")]
    Closed,
}

/// A refusal: what and where (a byte offset in the whole stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct SyntaxError {
    pub kind: ErrorKind,
    pub offset: u64,
}

/// Why [`Tokenizer::feed`] or [`Tokenizer::finish`] stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// The bytes are not one JSON document within the limits.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The sink stopped the parse.
    #[error("stopped by the consumer: {0}")]
    Sink(E),
}
