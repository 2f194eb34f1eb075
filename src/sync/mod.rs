//! Step 4 of the path: the table of MISP sync exchanges.
//!
//! [`classify`] takes the method and the request target of one request and
//! finds the one row of the table (`table.rs`) that MISP sync sends exactly so,
//! or says why it is refused. The answer, an [`Exchange`], tells `relay`
//! whose rules apply ([`Direction`]) and which document the request and the
//! 2xx answer must be (`rules::Document`).
//!
//! Default deny: a request that is not a row is refused. The table lists the
//! one spelling MISP sends (`MISP/MISP app/Lib/Tools/ServerSyncTool.php`),
//! and refuses every other spelling the remote CakePHP 2 would route to the
//! same action (protocol reference §5), because a guard that matches more
//! loosely than the remote routes can be walked around:
//!
//! * percent-encoding, dot segments, empty segments, `;`, `\`, `#`, query
//!   strings, control and non-ASCII bytes: refused before any matching
//!   (`path.rs`);
//! * case variants and controller aliases (`/events/ADD`, `/Events/add`,
//!   `/event_reports/add`): refused ([`Refusal::CaseVariant`]);
//! * REST resource aliases (`POST /events`, `PUT /events/<id>`): not rows;
//! * extensions other than the `.json` MISP appends on three routes;
//! * named parameters other than the pinned ones, repeated ones, or values
//!   MISP does not send.
//!
//! Method-override headers are refused by [`check_request_headers`]. A body
//! must be declared `application/json` ([`check_body_type`]): PHP fills
//! `$_POST` from a form-encoded body, CakePHP 2 takes that as the request
//! data (with a `_method` field as a method override), and a body can be
//! valid JSON and a valid form at once, so a form body would be judged as
//! one document and read by MISP as another.

mod path;
mod table;

#[cfg(test)]
mod tests;

use std::fmt;

use crate::rules::Document;

/// Whose data an exchange carries, and so whose rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client sends its data: rules of the source instance.
    Push,
    /// The client fetches the remote's data: rules of the destination.
    Pull,
}

/// One allowed exchange, as classified from a request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// A stable name for logs, e.g. `events/add`.
    pub name: &'static str,
    /// Push or pull.
    pub direction: Direction,
    /// The document the request body must be; `None`: no body allowed.
    pub request: Option<Document>,
    /// The document the response body must be when the status is 2xx;
    /// `None`: forwarded without inspection.
    pub response: Option<Document>,
}

/// Why a request is not an allowed sync exchange. Every message fits on a
/// log line: text quoted from the request is escaped and cut ([`Quoted`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The target is longer than any sync request (100 analyst-data uuids
    /// make about 4.5 KB).
    #[error("request target longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The target does not start with `/` (absolute-form, `*`, empty).
    #[error("request target is not origin-form (must start with `/`)")]
    NotOriginForm,
    /// A byte above 0x7f.
    #[error("non-ASCII byte in the request target")]
    NonAscii,
    /// A byte below 0x20, or DEL.
    #[error("control character in the request target")]
    ControlCharacter,
    /// `%`: the remote decodes segments, the table compares them raw.
    #[error("percent-encoding in the request target (MISP sync sends none)")]
    Encoded,
    /// `?`: MISP sync passes parameters in the path, never in a query.
    #[error("query string in the request target (MISP sync sends none)")]
    QueryString,
    /// `#`: a fragment never belongs in a request target.
    #[error("`#` in the request target")]
    Fragment,
    /// `;`: path parameters, read differently by different servers.
    #[error("`;` (path parameter) in the request target")]
    Semicolon,
    /// `\`: some servers read it as `/`.
    #[error("backslash in the request target")]
    Backslash,
    /// Another character MISP sync never sends in a path.
    #[error("character {ch:?} not used by MISP sync paths")]
    BadCharacter {
        /// The character (printable ASCII).
        ch: char,
    },
    /// `//`, a trailing `/`, or a target that is only `/`.
    #[error("empty path segment (`//` or trailing `/`)")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("dot segment (`.` or `..`) in the path")]
    DotSegment,
    /// The configured base path of the destination is not a plain path.
    #[error("configured base path is not a plain absolute path")]
    BadBasePath,
    /// The path does not start with the destination's base path.
    #[error("path is not under the destination's base path")]
    OutsideBasePath,
    /// No row has this controller and action.
    #[error("endpoint not in the sync table: {route}")]
    NotInTable {
        /// The first two segments (or fewer), as received.
        route: Quoted,
    },
    /// A spelling of a table endpoint that MISP does not send but CakePHP
    /// would route to it (case, `snake_case` vs `camelCase`).
    #[error("{route} is a spelling MISP does not send (the table has {canonical})")]
    CaseVariant {
        /// The route as received.
        route: Quoted,
        /// The route as MISP spells it.
        canonical: &'static str,
    },
    /// The endpoint is in the table, but not with this method.
    #[error("method {method} not allowed on {route}")]
    MethodNotAllowed {
        /// The method as received.
        method: Quoted,
        /// The table's route.
        route: &'static str,
    },
    /// An extension where MISP sends none, another than `.json`, or none
    /// where MISP appends `.json`.
    #[error("extension not as MISP sends it on {route}")]
    BadExtension {
        /// The table's route.
        route: &'static str,
    },
    /// A positional segment or a named parameter MISP does not send, or a
    /// value it does not send for it.
    #[error("parameter {name} not allowed here or with this value")]
    BadParameter {
        /// The parameter (key, or the positional slot's name).
        name: Quoted,
    },
    /// A named parameter given twice.
    #[error("parameter {name} repeated")]
    RepeatedParameter {
        /// The parameter.
        name: Quoted,
    },
    /// A parameter MISP always sends on this endpoint is missing (on
    /// `events/view` they keep the pull minimal).
    #[error("pinned parameter {name} missing")]
    MissingPinnedParameter {
        /// The parameter as MISP sends it, e.g. `deleted[]:0`.
        name: Quoted,
    },
    /// A positional segment (an id, a type) is missing.
    #[error("segment {name} missing")]
    MissingSegment {
        /// The slot's name.
        name: &'static str,
    },
    /// A segment after the last positional one that is no named parameter.
    #[error("unexpected segment {segment}")]
    UnexpectedSegment {
        /// The segment as received.
        segment: Quoted,
    },
    /// More `uuid[]` values than MISP sends in one request.
    #[error("more than {max} uuids in one request")]
    TooManyUuids {
        /// The limit.
        max: usize,
    },
    /// A method-override header (CakePHP 2 honours one; see
    /// [`check_request_headers`]).
    #[error("method-override header {header}")]
    MethodOverride {
        /// The header name as received.
        header: Quoted,
    },
    /// A header some front ends read as the request URL instead of the
    /// request line.
    #[error("URL-override header {header}")]
    UrlOverride {
        /// The header name as received.
        header: Quoted,
    },
    /// A body not declared as exactly one `application/json`.
    #[error("a request body must be Content-Type application/json, not {found}")]
    BodyType {
        /// The Content-Type(s) as received, or `none`.
        found: Quoted,
    },
}

/// Text quoted from a request for a log line: control, non-ASCII, `"` and
/// `\` characters escaped, cut to [`Quoted::MAX`] characters of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    /// How many characters of input a quote keeps.
    pub const MAX: usize = 64;

    /// Escape and cut `text`.
    pub fn new(text: &str) -> Quoted {
        let mut out = String::with_capacity(text.len().min(Self::MAX) + 3);
        for (n, c) in text.chars().enumerate() {
            if n == Self::MAX {
                // ASCII, so the log line stays ASCII whatever came in.
                out.push_str("...");
                break;
            }
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                out.push(c);
            } else {
                out.extend(c.escape_default());
            }
        }
        Quoted(out)
    }

    /// The escaped text, without the surrounding quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// Classify a request by method and request target (origin-form path and
/// query, as received). `base_path` is the destination instance's path
/// prefix (`""` or `"/"` for none, else e.g. `"/misp"`, no trailing `/`).
pub fn classify(method: &str, target: &str, base_path: &str) -> Result<Exchange, Refusal> {
    let target = path::Target::lex(target, base_path)?;
    table::lookup(method, &target)
}

/// Header names that make a framework run another method than the request
/// line's. CakePHP 2 (`CakeRequest::_processPost`) replaces the method with
/// `X-HTTP-Method-Override` and parses the JSON body *after* the override,
/// so `POST /events/index` could run as another method, or a GET with a body
/// we never inspected could run as a POST; the other two names are honoured
/// by other frameworks a remote may sit behind. MISP never sends any of them.
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Header names that some front ends (IIS URL Rewrite, Symfony, older
/// CakePHP `HTTP_X_REWRITE_URL` fallback) take as the request URL instead of
/// the request line, which would bypass the table. MISP never sends them.
const URL_OVERRIDE_HEADERS: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Refuse request headers that change what the remote runs behind the
/// table's back: method overrides and URL overrides. Names compare
/// ASCII-case-insensitively and with `_` taken as `-`, because PHP exposes
/// headers as `HTTP_X_HTTP_METHOD_OVERRIDE`, where both spellings meet.
pub fn check_request_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), Refusal> {
    for (name, _value) in headers {
        if METHOD_OVERRIDE_HEADERS.iter().any(|h| same_header(name, h)) {
            return Err(Refusal::MethodOverride {
                header: Quoted::new(name),
            });
        }
        if URL_OVERRIDE_HEADERS.iter().any(|h| same_header(name, h)) {
            return Err(Refusal::UrlOverride {
                header: Quoted::new(name),
            });
        }
    }
    Ok(())
}

/// Refuse a request body that is not declared as JSON: exactly one
/// `Content-Type` whose media type is `application/json` (parameters such
/// as `charset` allowed; RFC 9110 §8.3.1, compared case-insensitively).
/// MISP sends `application/json` on every request.
pub fn check_body_type<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), Refusal> {
    let types: Vec<&[u8]> = headers
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v)
        .collect();
    let refuse = |found: &str| Refusal::BodyType {
        found: Quoted::new(found),
    };
    match types.as_slice() {
        [] => Err(refuse("none")),
        [one] => {
            let text = std::str::from_utf8(one).map_err(|_| refuse("a non-text value"))?;
            // Only the whitespace HTTP knows (RFC 9110 §5.6.3): PHP keeps a
            // no-break space, and would not see JSON.
            let media = text
                .split(';')
                .next()
                .unwrap_or("")
                .trim_matches([' ', '\t']);
            if media.eq_ignore_ascii_case("application/json") {
                Ok(())
            } else {
                Err(refuse(text))
            }
        }
        _ => Err(refuse("several Content-Type headers")),
    }
}

/// `name` equals the lower-case `known`, ignoring ASCII case and taking `_`
/// as `-`.
fn same_header(name: &str, known: &str) -> bool {
    name.len() == known.len()
        && name.bytes().zip(known.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}
