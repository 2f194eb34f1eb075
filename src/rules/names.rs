//! Names as the rules compare them: the look-alike folding, the characters
//! no MISP name holds, and how a value is cut for a log line.

use std::fmt::Write as _;

/// Longest offending value kept in a [`super::Block`], in characters.
pub(super) const VALUE_CHARS: usize = 200;

/// The narrow look-alike folding applied before comparing with the policy.
/// MISP's `tags.name` is `utf8mb3_bin`, so MISP tells `ｔｌｐ:ｒｅｄ` from
/// `tlp:red`: folding only blocks more, look-alikes of blocked names that
/// a reader cannot tell apart. Full-width ASCII (U+FF01..U+FF5E) becomes
/// ASCII. Not NFKC: only what is cheap and cannot turn a harmless name
/// into a blocked one by accident. Invisible characters are not folded
/// away but refused ([`is_hidden`]).
pub(super) fn fold(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        c => c,
    }
}

/// A character no MISP name holds: a control character (C0, DEL, C1), a
/// format character (zero-width ones, the soft hyphen, U+2061..U+2064,
/// U+180E, bidirectional controls, tag characters), a private-use or
/// unassigned code point, or another default-ignorable one that renders as
/// nothing (Hangul fillers, variation selectors, the combining grapheme
/// joiner). Any of them would let `tlp:` + U+2063 + `red` differ from
/// `tlp:red` to the guard and not to a reader, so a name holding one is
/// malformed rather than folded: no list of what to drop can be complete.
pub(super) fn is_hidden(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    if c.is_ascii() {
        return c < ' ' || c == '\u{7f}';
    }
    matches!(
        get_general_category(c),
        G::Control | G::Format | G::PrivateUse | G::Unassigned | G::Surrogate
    ) || matches!(
        c,
        '\u{34F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Whether `s` holds a character [`is_hidden`] refuses.
pub(super) fn has_hidden(s: &str) -> bool {
    if s.is_ascii() {
        return s.bytes().any(|b| b < b' ' || b == 0x7f);
    }
    s.chars().any(is_hidden)
}

/// Fold (see [`fold`]), lower-case and trim `s` into `out`.
pub(super) fn norm_into(s: &str, out: &mut String) {
    out.clear();
    // Nearly every name is ASCII: lower-case and trim it without going
    // through `char`s (same result as the general path below).
    if s.is_ascii() {
        let t = s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
        out.push_str(t);
        out.make_ascii_lowercase();
        return;
    }
    for c in s.chars().map(fold) {
        out.extend(c.to_lowercase());
    }
    let end = out.trim_end().len();
    out.truncate(end);
    let start = out.len() - out.trim_start().len();
    out.drain(..start);
}

/// Cut `s` to [`VALUE_CHARS`] characters, escaping control characters so a
/// value cannot forge log lines.
pub(super) fn clip(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == VALUE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}
