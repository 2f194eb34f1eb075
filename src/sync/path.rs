//! Lexing a request target into segments, refusing every spelling whose
//! meaning depends on who reads it.
//!
//! The table compares raw segments, so anything a server might decode,
//! normalise or split differently is refused here, before matching: `%`
//! (the remote URL-decodes segments, so `%5B%5D` is `[]` and `%2F` may be
//! `/` to one hop and not another), dot segments (resolved by some
//! front ends, not by others), empty segments (merged by some), `;` (path
//! parameters: Tomcat-style servers drop them), `\` (read as `/` by some),
//! `#`, `?`, control and non-ASCII bytes.

use super::Refusal;

/// The longest target accepted. The longest MISP sync path is a pull of
/// 100 analyst-data items: `/analyst_data/index/Relationship/` plus 100
/// `uuid[]:<36>/` (44 bytes each) plus `.json`, about 4.5 KB, under a base
/// path.
pub(super) const MAX_TARGET: usize = 8 * 1024;

/// A target split into segments under the base path; the last segment's
/// extension (after its first `.`) is held apart.
#[derive(Debug)]
pub(super) struct Target<'a> {
    /// The segments after the base path, none empty, none a dot segment;
    /// the last one without its extension.
    pub(super) segments: Vec<&'a str>,
    /// What followed the first `.` of the last segment, if it had one.
    pub(super) extension: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// Check `target` byte by byte, strip `base_path`, split into segments.
    pub(super) fn lex(target: &'a str, base_path: &str) -> Result<Target<'a>, Refusal> {
        if target.len() > MAX_TARGET {
            return Err(Refusal::TooLong { max: MAX_TARGET });
        }
        if !target.starts_with('/') {
            return Err(Refusal::NotOriginForm);
        }
        check_bytes(target)?;
        let rest = strip_base(target, base_path)?;
        // `rest` starts with `/`: strip_base guarantees it.
        let rest = rest.strip_prefix('/').ok_or(Refusal::OutsideBasePath)?;

        let mut segments: Vec<&str> = Vec::new();
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err(Refusal::EmptySegment);
            }
            if segment == "." || segment == ".." {
                return Err(Refusal::DotSegment);
            }
            segments.push(segment);
        }

        // The remote strips a `.json`/`.xml`/`.csv` extension from the
        // last segment (§5); the table says where MISP appends `.json`.
        // A `.` elsewhere reaches the matcher, where no name, id, uuid or
        // value of the table matches it.
        let mut extension = None;
        if let Some(last) = segments.last_mut() {
            if let Some((stem, ext)) = last.split_once('.') {
                if stem.is_empty() {
                    // `/.json`: an empty segment with an extension.
                    return Err(Refusal::EmptySegment);
                }
                *last = stem;
                extension = Some(ext);
            }
        }
        Ok(Target {
            segments,
            extension,
        })
    }
}

/// Refuse the first byte that is not part of a plain MISP sync path.
fn check_bytes(target: &str) -> Result<(), Refusal> {
    for b in target.bytes() {
        match b {
            0x80.. => return Err(Refusal::NonAscii),
            0..=0x1f | 0x7f => return Err(Refusal::ControlCharacter),
            b'%' => return Err(Refusal::Encoded),
            b'?' => return Err(Refusal::QueryString),
            b'#' => return Err(Refusal::Fragment),
            b';' => return Err(Refusal::Semicolon),
            b'\\' => return Err(Refusal::Backslash),
            // What MISP sync paths are made of: names, ids, uuids, named
            // parameters (`key:value`, `key[]:value`). `+` is let through
            // so that `+12` is refused as a bad id, which says more.
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b':'
            | b'['
            | b']'
            | b'/'
            | b'+' => {}
            other => {
                return Err(Refusal::BadCharacter {
                    ch: char::from(other),
                })
            }
        }
    }
    Ok(())
}

/// Strip the destination's base path; what remains starts with `/`.
///
/// `Server.url` has its trailing `/` stripped on save (Server.php
/// beforeSave), so MISP sends `<base>/<controller>/…` and nothing else.
fn strip_base<'a>(target: &'a str, base_path: &str) -> Result<&'a str, Refusal> {
    if base_path.is_empty() || base_path == "/" {
        return Ok(target);
    }
    if !plain_base(base_path) {
        return Err(Refusal::BadBasePath);
    }
    match target.strip_prefix(base_path) {
        Some(rest) if rest.starts_with('/') => Ok(rest),
        _ => Err(Refusal::OutsideBasePath),
    }
}

/// A base path is `/seg(/seg)*`, each segment letters, digits, `-._` and no
/// dot segment: anything else would need the normalisation we refuse.
fn plain_base(base_path: &str) -> bool {
    let Some(rest) = base_path.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    })
}
