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

/// The invisible characters real tag names hold: the zero-width
/// non-joiner and joiner (Persian, Urdu and Indic words need them, emoji
/// sequences such as 👩‍💻 are made with the joiner) and the variation
/// selectors (`⚠️` is U+26A0 U+FE0F). A tag name may hold them
/// ([`tag_normalised`]); no other name may.
pub(super) fn is_joiner(c: char) -> bool {
    matches!(
        c,
        '\u{200C}' | '\u{200D}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}'
    )
}

/// A tag name as the rules compare it: as [`normalised`], but the
/// [`is_joiner`] characters are allowed. The name is returned as it reads
/// (what required taxonomies and allowed tags are matched against,
/// exactly: a look-alike with a joiner satisfies none), and, when it holds
/// joiners, its skeleton without them, trimmed (what is compared with the
/// blocked tags, so `tlp:` + U+200D + `red` is `tlp:red`). `None` when it
/// holds another invisible character, or nothing but joiners and blanks.
pub(super) fn tag_normalised<'a>(
    s: &'a str,
    out: &'a mut String,
) -> Option<(&'a str, Option<String>)> {
    if s.is_ascii() {
        return normalised(s, out).map(|n| (n, None));
    }
    if s.chars().any(|c| is_hidden(c) && !is_joiner(c)) {
        return None;
    }
    norm_into(s, out);
    if !out.chars().any(is_joiner) {
        return Some((out, None));
    }
    let skeleton: String = out.chars().filter(|&c| !is_joiner(c)).collect();
    let skeleton = skeleton.trim();
    if skeleton.is_empty() {
        return None;
    }
    Some((out, Some(skeleton.to_string())))
}

/// `s` as the rules compare it ([`norm_into`]), or `None` when it holds
/// a character [`is_hidden`] refuses. Borrowed when it reads so already
/// (ASCII, no capital, no blank at either end, as nearly every name is),
/// else written into `out`.
pub(super) fn normalised<'a>(s: &'a str, out: &'a mut String) -> Option<&'a str> {
    match ascii(s.as_bytes()) {
        Ascii::Not => {
            if s.chars().any(is_hidden) {
                return None;
            }
            norm_into(s, out);
            Some(out)
        }
        Ascii::Hidden => None,
        // Past the control characters, a space is the only blank left.
        Ascii::Lower if !s.starts_with(' ') && !s.ends_with(' ') => Some(s),
        Ascii::Lower | Ascii::Upper => {
            out.clear();
            out.push_str(s.trim_matches(' '));
            out.make_ascii_lowercase();
            Some(out)
        }
    }
}

/// What one pass over a name's bytes tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ascii {
    /// A byte past ASCII.
    Not,
    /// ASCII with a control character or DEL.
    Hidden,
    /// ASCII with a capital letter.
    Upper,
    /// ASCII, none of the above.
    Lower,
}

/// [`Ascii`], eight bytes at a time.
fn ascii(b: &[u8]) -> Ascii {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (mut high, mut control, mut upper) = (0u64, 0u64, 0u64);
    let mut words = b.chunks_exact(8);
    let mut word = |w: u64| {
        high |= w;
        // Below 0x20, or DEL: on bytes below 0x80 no borrow crosses into
        // a byte that is not itself a hit.
        let del = w ^ (LO * 0x7f);
        control |= (w.wrapping_sub(LO * 0x20) | del.wrapping_sub(LO)) & !w;
        // 0x41..=0x5A: at least 'A' and not past 'Z'.
        upper |= w.wrapping_add(LO * (0x80 - 0x41)) & !w.wrapping_add(LO * (0x80 - 0x5B));
    };
    for w in words.by_ref() {
        if let Some(w) = w.first_chunk::<8>() {
            word(u64::from_le_bytes(*w));
        }
    }
    match b.last_chunk::<8>() {
        // The last eight bytes again, overlapping: looking twice at a byte
        // changes nothing.
        Some(last) => word(u64::from_le_bytes(*last)),
        None => {
            // Shorter than a word: padded with 'a', which is none of the
            // above.
            let mut w = LO * u64::from(b'a');
            for (i, &x) in words.remainder().iter().enumerate() {
                w = w & !(0xff << (i * 8)) | u64::from(x) << (i * 8);
            }
            word(w);
        }
    }
    if high & HI != 0 {
        Ascii::Not
    } else if control & HI != 0 {
        Ascii::Hidden
    } else if upper & HI != 0 {
        Ascii::Upper
    } else {
        Ascii::Lower
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`normalised`] must give: the hidden-character check and
    /// [`norm_into`], the slow way.
    fn slowly(s: &str) -> Option<String> {
        if s.chars().any(is_hidden) {
            return None;
        }
        let mut out = String::new();
        norm_into(s, &mut out);
        Some(out)
    }

    #[test]
    fn normalised_is_the_hidden_check_and_norm_into() {
        let pieces = [
            "",
            " ",
            "a",
            "Z",
            "@",
            "[",
            "`",
            "{",
            "A",
            "z",
            "0",
            "\u{7f}",
            "\u{1f}",
            "\t",
            "\u{b}",
            "\u{0}",
            "é",
            "É",
            "ｔ",
            "\u{2063}",
            "\u{a0}",
            "tlp:",
            "red",
            "Network activity",
            "ip-dst",
            "x\u{80}",
        ];
        let mut seen = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for pad in ["", "abcdefg", "ABCDEFGH"] {
                        let s = format!("{a}{pad}{b}{c}");
                        let mut out = String::from("left over");
                        let got = normalised(&s, &mut out).map(str::to_string);
                        assert_eq!(got, slowly(&s), "{s:?}");
                        seen += 1;
                    }
                }
            }
        }
        assert!(seen > 10_000);
    }
    #[test]
    fn tag_names_allow_joiners_and_compare_without_them() {
        let mut out = String::new();
        let got =
            |s: &str, out: &mut String| tag_normalised(s, out).map(|(n, k)| (n.to_string(), k));
        // ASCII and names without joiners: as `normalised`.
        for s in [" TLP:Red ", "tlp:\u{2063}red", "é", "\u{200b}x", "ｔｌｐ"] {
            let mut plain = String::new();
            let want = normalised(s, &mut plain).map(|n| (n.to_string(), None));
            assert_eq!(got(s, &mut out), want, "{s:?}");
        }
        assert_eq!(
            got("TLP:\u{200d}RED", &mut out),
            Some(("tlp:\u{200d}red".to_string(), Some("tlp:red".to_string())))
        );
        assert_eq!(
            got("\u{fe0f} tlp:red\u{e0100}", &mut out),
            Some((
                "\u{fe0f} tlp:red\u{e0100}".to_string(),
                Some("tlp:red".to_string())
            ))
        );
        assert_eq!(
            got("\u{26a0}\u{fe0f} Review", &mut out),
            Some((
                "\u{26a0}\u{fe0f} review".to_string(),
                Some("\u{26a0} review".to_string())
            ))
        );
        for s in [
            "\u{200d}",
            " \u{200c}\u{fe0f} ",
            "a\u{200d}\u{2063}",
            "\u{e0067}\u{200d}",
        ] {
            assert_eq!(got(s, &mut out), None, "{s:?}");
        }
        // Only joiners are let through: every other hidden character stays
        // refused.
        for c in [
            '\u{200c}',
            '\u{200d}',
            '\u{fe00}',
            '\u{fe0f}',
            '\u{e0100}',
            '\u{e01ef}',
        ] {
            assert!(is_hidden(c) && is_joiner(c), "{c:?}");
        }
        for c in [
            '\u{200b}',
            '\u{2060}',
            '\u{2063}',
            '\u{202e}',
            '\u{e0041}',
            '\u{34f}',
            '\u{ad}',
        ] {
            assert!(!is_joiner(c), "{c:?}");
        }
    }
}
