//! The byte-level pieces of the tokenizer: each one a plain function over a
//! slice, with no state, so the hot loops stay short and every piece can be
//! tested on its own.

use super::ErrorKind;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A word with the high bit set in each byte that ends a run of plain string
/// text: `"`, `\` or a control character (below 0x20). A byte is flagged
/// when subtracting from it (or from it xor the delimiter) borrows, and only
/// ASCII bytes can be flagged, which is why one `& !w` serves all three
/// tests. Borrows between bytes can only flag bytes *above* a true hit, so
/// the lowest flag is exact.
#[inline(always)]
fn special_mask(w: u64) -> u64 {
    let q = w ^ (LO * u64::from(b'"'));
    let s = w ^ (LO * u64::from(b'\\'));
    (q.wrapping_sub(LO) | s.wrapping_sub(LO) | w.wrapping_sub(LO * 0x20)) & !w & HI
}

#[inline(always)]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The index of the first `"`, `\` or control byte at or after `i`, or
/// `b.len()` when the slice ends first. Eight bytes at a time.
#[inline(always)]
pub(super) fn string_end(b: &[u8], mut i: usize) -> usize {
    while let Some(w) = b.get(i..i.wrapping_add(8)) {
        let m = special_mask(u64::from_le_bytes(w.try_into().unwrap_or_default()));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if is_special(c) {
            break;
        }
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` that is not JSON whitespace
/// (RFC 8259 §2: space, tab, LF, CR), or `b.len()`.
#[inline(always)]
pub(super) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// The end of the run of bytes that can belong to a number. The run is
/// checked against the grammar once it is whole ([`check_number`]); a byte
/// of the run past a valid number would be refused after it anyway, so
/// refusing the whole run agrees on accept/reject.
#[inline(always)]
pub(super) fn number_end(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
            break;
        }
        i += 1;
    }
    i
}

/// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
/// On a mismatch, the index of the first byte that breaks it (`s.len()` when
/// the text stops too early).
pub(super) fn check_number(s: &[u8]) -> Result<(), usize> {
    let digits = |mut k: usize| {
        while s.get(k).is_some_and(u8::is_ascii_digit) {
            k += 1;
        }
        k
    };
    let mut k = usize::from(s.first() == Some(&b'-'));
    match s.get(k) {
        Some(b'0') => k += 1,
        Some(b'1'..=b'9') => k = digits(k + 1),
        _ => return Err(k),
    }
    if s.get(k) == Some(&b'.') {
        if !s.get(k + 1).is_some_and(u8::is_ascii_digit) {
            return Err(k + 1);
        }
        k = digits(k + 1);
    }
    if matches!(s.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(s.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if !s.get(k).is_some_and(u8::is_ascii_digit) {
            return Err(k);
        }
        k = digits(k);
    }
    if k == s.len() {
        Ok(())
    } else {
        Err(k)
    }
}

/// What one escape sequence at the start of a slice decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escape {
    /// The character, and how many bytes the escape took (2, 6 or 12).
    Char(char, usize),
    /// The slice ends inside an escape that is valid so far.
    Incomplete,
    /// Refused: why, and the index of the byte it is blamed on.
    Bad(ErrorKind, usize),
}

/// Longest escape: a surrogate pair, `\uD83D\uDE00`.
pub(super) const MAX_ESCAPE: usize = 12;

/// Decodes the escape at the start of `s` (which starts with `\`), as RFC
/// 8259 §7 and serde_json read it: the eight short escapes and `\uXXXX`, a
/// leading surrogate only when a trailing one follows at once; lone
/// surrogates of either kind are refused.
pub(super) fn unescape(s: &[u8]) -> Escape {
    let Some(&c) = s.get(1) else {
        return Escape::Incomplete;
    };
    let short = match c {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => return unicode(s),
        _ => return Escape::Bad(ErrorKind::InvalidEscape, 1),
    };
    Escape::Char(short, 2)
}

fn unicode(s: &[u8]) -> Escape {
    let high = match hex4(s, 2) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if (0xDC00..=0xDFFF).contains(&high) {
        return Escape::Bad(ErrorKind::LoneSurrogate, 0);
    }
    if !(0xD800..=0xDBFF).contains(&high) {
        return match char::from_u32(high) {
            Some(ch) => Escape::Char(ch, 6),
            None => Escape::Bad(ErrorKind::LoneSurrogate, 0),
        };
    }
    for (k, want) in [(6, b'\\'), (7, b'u')] {
        match s.get(k) {
            None => return Escape::Incomplete,
            Some(&c) if c == want => {}
            Some(_) => return Escape::Bad(ErrorKind::LoneSurrogate, 0),
        }
    }
    let low = match hex4(s, 8) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if !(0xDC00..=0xDFFF).contains(&low) {
        return Escape::Bad(ErrorKind::LoneSurrogate, 0);
    }
    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
    match char::from_u32(code) {
        Some(ch) => Escape::Char(ch, MAX_ESCAPE),
        None => Escape::Bad(ErrorKind::LoneSurrogate, 0),
    }
}

/// Each byte's value as a hex digit, or 0xFF.
const HEX: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => 0xFF,
        };
        c += 1;
    }
    t
};

/// Four hex digits at `s[at..at + 4]`.
#[inline]
fn hex4(s: &[u8], at: usize) -> Result<u32, Escape> {
    if let Some(&[a, b, c, d]) = s.get(at..at + 4) {
        let v = [
            HEX[usize::from(a)],
            HEX[usize::from(b)],
            HEX[usize::from(c)],
            HEX[usize::from(d)],
        ];
        if (v[0] | v[1] | v[2] | v[3]) & 0xF0 == 0 {
            return Ok(v.iter().fold(0, |n, &x| n << 4 | u32::from(x)));
        }
    }
    // Short or not all hex: blame the first byte that is not a digit.
    for k in at..at + 4 {
        match s.get(k) {
            None => return Err(Escape::Incomplete),
            Some(&c) if HEX[usize::from(c)] == 0xFF => {
                return Err(Escape::Bad(ErrorKind::InvalidUnicodeEscape, k))
            }
            Some(_) => {}
        }
    }
    Err(Escape::Bad(ErrorKind::InvalidUnicodeEscape, at))
}

/// Where a chunk must be cut so that what comes before it is whole UTF-8:
/// the start of a multi-byte sequence that the chunk ends inside, or
/// `b.len()`. Anything else (a bad lead byte, stray continuation bytes) is
/// left in place for the validator to refuse.
pub(super) fn utf8_cut(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let at = b.len() - back;
        let c = b[at];
        if c & 0xC0 == 0x80 {
            continue;
        }
        return if utf8_width(c) > back { at } else { b.len() };
    }
    b.len()
}

/// The length of the UTF-8 sequence that `lead` starts (1 for ASCII), or 0
/// for a byte that never starts one.
pub(super) fn utf8_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_end_finds_the_first_special_byte_at_every_position() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1F, b'\n'] {
                    let mut b = vec![b'a'; len];
                    // Bytes that sit next to the specials in value or in
                    // the arithmetic, and non-ASCII bytes.
                    for (k, x) in b.iter_mut().enumerate() {
                        *x = [b'a', b'!', b'#', b'[', b']', 0x20, 0x7F, 0x80, 0xC3, 0xFF][k % 10];
                    }
                    if at < len {
                        b[at] = special;
                        // A second hit after the first must not matter.
                        if at + 1 < len {
                            b[at + 1] = b'"';
                        }
                    }
                    assert_eq!(string_end(&b, 0), at, "len {len} at {at} byte {special:#x}");
                }
            }
        }
    }

    #[test]
    fn string_end_starts_where_asked() {
        let b = b"\"abc\"defghijklmnop\\";
        assert_eq!(string_end(b, 0), 0);
        assert_eq!(string_end(b, 1), 4);
        assert_eq!(string_end(b, 5), 18);
        assert_eq!(string_end(b, 19), 19);
    }

    #[test]
    fn numbers_follow_the_rfc_grammar() {
        for ok in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "1.5",
            "-0.0",
            "0e0",
            "0E+1",
            "1e-5",
            "123.456e789",
            "1E400",
        ] {
            assert_eq!(check_number(ok.as_bytes()), Ok(()), "{ok}");
        }
        for (bad, at) in [
            ("", 0),
            ("-", 1),
            ("01", 1),
            ("-01", 2),
            ("+1", 0),
            (".5", 0),
            ("1.", 2),
            ("1.e5", 2),
            ("1e", 2),
            ("1e+", 3),
            ("1e5.0", 3),
            ("1-2", 1),
            ("--1", 1),
            ("1.5.3", 3),
        ] {
            assert_eq!(check_number(bad.as_bytes()), Err(at), "{bad}");
        }
    }

    #[test]
    fn escapes_decode_or_say_why_not() {
        use Escape::*;
        let cases: &[(&str, Escape)] = &[
            (r"\n", Char('\n', 2)),
            (r"\/", Char('/', 2)),
            (r"\u00e9", Char('é', 6)),
            (r"\u00E9", Char('é', 6)),
            (r"\ud83d\ude00", Char('😀', 12)),
            (r"\", Incomplete),
            (r"\u00", Incomplete),
            (r"\ud83d", Incomplete),
            (r"\ud83d\", Incomplete),
            (r"\ud83d\ude0", Incomplete),
            (r"\x", Bad(ErrorKind::InvalidEscape, 1)),
            (r"\u00g0", Bad(ErrorKind::InvalidUnicodeEscape, 4)),
            (r"\ude00", Bad(ErrorKind::LoneSurrogate, 0)),
            (r"\ud83dx", Bad(ErrorKind::LoneSurrogate, 0)),
            (r"\ud83d\n", Bad(ErrorKind::LoneSurrogate, 0)),
            (r"\ud83d\ud83d", Bad(ErrorKind::LoneSurrogate, 0)),
            (r"\ud83d\u0041", Bad(ErrorKind::LoneSurrogate, 0)),
            (r"\ud83d\uzzzz", Bad(ErrorKind::InvalidUnicodeEscape, 8)),
        ];
        for (text, want) in cases {
            assert_eq!(unescape(text.as_bytes()), *want, "{text}");
        }
    }

    #[test]
    fn chunks_are_cut_before_an_unfinished_sequence() {
        assert_eq!(utf8_cut(b""), 0);
        assert_eq!(utf8_cut(b"ab"), 2);
        assert_eq!(utf8_cut("é".as_bytes()), 2);
        assert_eq!(utf8_cut(&"é".as_bytes()[..1]), 0);
        assert_eq!(utf8_cut(&"a€".as_bytes()[..3]), 1);
        assert_eq!(utf8_cut(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(utf8_cut("a😀".as_bytes()), 5);
        // Not a sequence start: left for the validator.
        assert_eq!(utf8_cut(b"a\xFF"), 2);
        assert_eq!(utf8_cut(b"a\xC0"), 2);
        assert_eq!(utf8_cut(b"a\x80\x80\x80"), 4);
    }
}
