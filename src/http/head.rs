//! Request and response heads: a raw byte scan of our own for the shapes
//! httparse tolerates (bare LF, leading empty lines), then httparse with no
//! leniency, then checks of the target, version and `Host`.

use bytes::Bytes;

use super::{Error, Limits};

/// One header field as received: the name keeps its case, the value has its
/// surrounding whitespace removed (RFC 9112 §5: OWS around a field value is
/// not part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name, as received.
    pub name: String,
    /// The field value, as received, without leading or trailing OWS.
    pub value: Bytes,
}

impl Header {
    /// Whether this field is called `name` (field names are
    /// case-insensitive, RFC 9110 §5.1).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value as text, if it is visible ASCII (with SP and HTAB).
    pub fn text(&self) -> Option<&str> {
        if self
            .value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            std::str::from_utf8(&self.value).ok()
        } else {
            None
        }
    }
}

/// Every field called `name`, in order.
pub fn fields<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a Header> + 'a {
    headers.iter().filter(move |h| h.is(name))
}

/// The one field called `name`, refusing a repeated one.
pub fn unique<'a>(headers: &'a [Header], name: &'static str) -> Result<Option<&'a Header>, Error> {
    let mut found = fields(headers, name);
    let first = found.next();
    if found.next().is_some() {
        return Err(Error::DuplicateHeader(name));
    }
    Ok(first)
}

/// The form of a request target (RFC 9112 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `/path?query` (§3.2.1).
    Origin,
    /// `http://authority/path?query` (§3.2.2), sent to a proxy.
    Absolute {
        /// `host[:port]`, as written.
        authority: String,
        /// Where the path starts in the target.
        path_at: usize,
    },
    /// `host:port` (§3.2.3), with `CONNECT` only.
    Authority,
}

/// A parsed and checked request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, a token (case-sensitive, RFC 9110 §9.1).
    pub method: String,
    /// The request target, as received.
    pub target: String,
    /// Which form the target has.
    pub form: Form,
    /// The fields, in order.
    pub headers: Vec<Header>,
}

impl RequestHead {
    /// Path and query: the origin-form target, or the part of an
    /// absolute-form target after its authority. `None` for `CONNECT`.
    pub fn path(&self) -> Option<&str> {
        match &self.form {
            Form::Origin => Some(&self.target),
            Form::Absolute { path_at, .. } => self.target.get(*path_at..),
            Form::Authority => None,
        }
    }

    /// The authority the request is for: the target's in absolute- and
    /// authority-form, else the `Host` field (checked present and unique).
    pub fn authority(&self) -> Option<&str> {
        match &self.form {
            Form::Absolute { authority, .. } => Some(authority),
            Form::Authority => Some(&self.target),
            Form::Origin => fields(&self.headers, "host").next().and_then(Header::text),
        }
    }

    /// Whether the method is `HEAD` (its response has no body).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

impl AsRef<[Header]> for RequestHead {
    fn as_ref(&self) -> &[Header] {
        &self.headers
    }
}

/// A parsed and checked response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 100 to 599 (101 is refused: we never upgrade).
    pub status: u16,
    /// The reason phrase, as received; empty when absent or when it holds
    /// non-ASCII bytes (httparse drops those; RFC 9112 §4: a client SHOULD
    /// ignore the reason phrase).
    pub reason: String,
    /// The fields, in order.
    pub headers: Vec<Header>,
}

impl AsRef<[Header]> for ResponseHead {
    fn as_ref(&self) -> &[Header] {
        &self.headers
    }
}

/// Parse a request head at the start of `buf`.
///
/// `Ok(None)`: no complete head yet (read more). `Ok(Some((head, len)))`:
/// the head takes the first `len` bytes. Refuses once `buf` holds more than
/// `max_header_bytes` without a complete head. HTTP/1.0 is refused: its
/// keep-alive and framing rules differ, and MISP speaks 1.1.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, Error> {
    let Some(len) = scan_head(buf, limits)? else {
        return Ok(None);
    };
    let raw = buf.get(..len).ok_or(Error::HeadTooLarge)?;
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) if n == len => {}
        Ok(_) => return Err(Error::BadHeader),
        Err(e) => return Err(map_httparse(e, Side::Request)),
    }
    // RFC 9112 §2.3: only HTTP/1.1 (httparse reads "1.x" as x).
    if req.version != Some(1) {
        return Err(Error::BadVersion);
    }
    let method = req.method.ok_or(Error::BadMethod)?;
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Error::BadMethod);
    }
    let target = req.path.ok_or(Error::BadTarget)?;
    if target.len() > limits.max_target_bytes {
        return Err(Error::TargetTooLong);
    }
    let form = target_form(method, target)?;
    let headers = collect(req.headers);
    check_host(&headers, &form, target)?;
    Ok(Some((
        RequestHead {
            method: method.to_owned(),
            target: target.to_owned(),
            form,
            headers,
        },
        len,
    )))
}

/// Parse a response head at the start of `buf`, with the same strictness as
/// [`parse_request`]: a bad upstream is refused too.
pub fn parse_response(buf: &[u8], limits: &Limits) -> Result<Option<(ResponseHead, usize)>, Error> {
    let Some(len) = scan_head(buf, limits)? else {
        return Ok(None);
    };
    let raw = buf.get(..len).ok_or(Error::HeadTooLarge)?;
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut res = httparse::Response::new(&mut slots);
    match res.parse(raw) {
        Ok(httparse::Status::Complete(n)) if n == len => {}
        Ok(_) => return Err(Error::BadHeader),
        Err(e) => return Err(map_httparse(e, Side::Response)),
    }
    if res.version != Some(1) {
        return Err(Error::BadVersion);
    }
    let status = res.code.ok_or(Error::BadStatus)?;
    // RFC 9110 §15: status codes are 100..=599. 101 would switch protocols
    // under our feet; we strip Upgrade, so an upstream sending it is broken.
    if !(100..=599).contains(&status) || status == 101 {
        return Err(Error::BadStatus);
    }
    let reason = res.reason.unwrap_or("");
    if !reason
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(Error::BadStatus);
    }
    Ok(Some((
        ResponseHead {
            status,
            reason: reason.to_owned(),
            headers: collect(res.headers),
        },
        len,
    )))
}

/// Whether the message asks to close the connection after it: a `close`
/// token in any `Connection` field (RFC 9112 §9.6).
pub fn connection_close(head: &(impl AsRef<[Header]> + ?Sized)) -> bool {
    connection_tokens(head.as_ref()).any(|t| t.eq_ignore_ascii_case("close"))
}

/// The tokens of every `Connection` field (RFC 9110 §7.6.1), trimmed.
pub(crate) fn connection_tokens(headers: &[Header]) -> impl Iterator<Item = &str> {
    fields(headers, "connection")
        .filter_map(Header::text)
        .flat_map(|v| v.split(','))
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
}

/// Whether the request waits for `100 Continue`: one `Expect:
/// 100-continue` (case-insensitive). RFC 9110 §10.1.1: any other
/// expectation is refused (417).
pub fn expects_continue(head: &(impl AsRef<[Header]> + ?Sized)) -> Result<bool, Error> {
    match unique(head.as_ref(), "expect").map_err(|_| Error::BadExpect)? {
        None => Ok(false),
        Some(h) if h.value.eq_ignore_ascii_case(b"100-continue") => Ok(true),
        Some(_) => Err(Error::BadExpect),
    }
}

/// Scan the raw head for the shapes httparse accepts but we refuse, and
/// find its end. Scans left to right and stops at the first fault, so any
/// prefix of a message gives `None` or the same error as the whole message.
fn scan_head(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    // RFC 9112 §2.2 lets a server skip empty lines before the request line;
    // we refuse them: no HTTP/1.1 client we serve sends them, and skipping
    // is one more way for two parsers to disagree about where a message
    // starts.
    if matches!(buf.first(), Some(b'\r' | b'\n')) {
        return Err(Error::LeadingEmptyLine);
    }
    scan_fields(buf, limits.max_header_bytes, Error::HeadTooLarge)
}

/// Scan a start line and field lines (or, for a trailer section, field
/// lines only) up to and including the empty line. Returns the offset just
/// past the empty line. Shared by heads and trailer
/// sections (RFC 9112 §7.1.2: trailers use the field-line syntax).
pub(crate) fn scan_fields(
    buf: &[u8],
    max: usize,
    too_large: Error,
) -> Result<Option<usize>, Error> {
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        if i >= max {
            return Err(too_large);
        }
        match b {
            0 => return Err(Error::Nul),
            // RFC 9112 §2.2: a bare LF MAY be accepted as a line end; we
            // refuse it, because a peer that does not would see a
            // different head.
            b'\n' => return Err(Error::BareLf),
            b'\r' => match buf.get(i + 1) {
                None => return Ok(None),
                // RFC 9112 §2.2: a bare CR MUST be refused or replaced.
                Some(&c) if c != b'\n' => return Err(Error::BareCr),
                Some(_) => {
                    // An empty line ends the section.
                    if i == 0 || (i >= 2 && buf.get(i - 2..i) == Some(b"\r\n")) {
                        if i + 2 > max {
                            return Err(too_large);
                        }
                        return Ok(Some(i + 2));
                    }
                    // RFC 9112 §5.2: obs-fold in a request MUST be refused;
                    // in a response it may be replaced, we refuse it too.
                    match buf.get(i + 2) {
                        Some(b' ' | b'\t') => return Err(Error::ObsFold),
                        _ => i += 2,
                    }
                }
            },
            _ => i += 1,
        }
    }
    Ok(None)
}

#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

fn map_httparse(e: httparse::Error, side: Side) -> Error {
    match e {
        httparse::Error::HeaderName | httparse::Error::HeaderValue => Error::BadHeader,
        // Line ends were checked by `scan_head`, so this is junk after the
        // version or status line.
        httparse::Error::NewLine => match side {
            Side::Request => Error::BadVersion,
            Side::Response => Error::BadStatus,
        },
        httparse::Error::Status => Error::BadStatus,
        httparse::Error::Token => match side {
            Side::Request => Error::BadMethod,
            Side::Response => Error::BadStatus,
        },
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        httparse::Error::Version => Error::BadVersion,
    }
}

fn collect(raw: &[httparse::Header<'_>]) -> Vec<Header> {
    raw.iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| Header {
            name: h.name.to_owned(),
            value: Bytes::copy_from_slice(h.value),
        })
        .collect()
}

/// RFC 9110 §5.6.2: tchar.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9112 §3.2: which form the target has, refusing the asterisk form
/// and any form that does not fit the method. Absolute-form must start
/// with the lowercase scheme `http://` (what clients send to a proxy;
/// `https` goes through `CONNECT`) and have a path.
fn target_form(method: &str, target: &str) -> Result<Form, Error> {
    let connect = method == "CONNECT";
    if let Some(rest) = target.strip_prefix("http://") {
        if connect {
            return Err(Error::BadTarget);
        }
        // §3.2.2: absolute-form. We require a path, so the authority ends
        // at the first '/'.
        let slash = rest.find('/').ok_or(Error::BadTarget)?;
        let (authority, path) = rest.split_at(slash);
        check_authority(authority, false).map_err(|_| Error::BadTarget)?;
        check_path(path)?;
        return Ok(Form::Absolute {
            authority: authority.to_owned(),
            path_at: "http://".len() + slash,
        });
    }
    if target.starts_with('/') {
        if connect {
            return Err(Error::BadTarget);
        }
        check_path(target)?;
        return Ok(Form::Origin);
    }
    // §3.2.3: authority-form is only for CONNECT, and needs a port. The
    // asterisk form (§3.2.4) and every other shape are refused.
    if connect {
        check_authority(target, true).map_err(|_| Error::BadTarget)?;
        return Ok(Form::Authority);
    }
    Err(Error::BadTarget)
}

/// RFC 3986 §3.3/§3.4 path and query bytes: unreserved, sub-delims, `:`,
/// `@`, `/`, `?` and well-formed percent-encoding; plus `[` and `]`, which
/// RFC 3986 reserves for IP literals but MISP sends unencoded in named
/// array parameters (`deleted[]:0`, `uuid[]:…`; protocol doc §5), as
/// libcurl passes them through. No fragment, no space, no controls, no
/// non-ASCII.
fn check_path(path: &str) -> Result<(), Error> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(Error::BadTarget)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Error::BadTarget);
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?[]".contains(&b) => i += 1,
            _ => return Err(Error::BadTarget),
        }
    }
    Ok(())
}

/// RFC 9110 §4.2.1 / RFC 3986 §3.2: `host[:port]` with a DNS name, an IPv4
/// address or a bracketed IPv6 address. No userinfo (refused by §4.2.4),
/// no percent-encoding, port 0..=65535 with 1 to 5 digits.
fn check_authority(authority: &str, port_required: bool) -> Result<(), Error> {
    let port = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or(Error::BadHost)?;
        let (v6, after) = rest.split_at(end);
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(Error::BadHost);
        }
        let after = after.get(1..).unwrap_or("");
        match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(Error::BadHost),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(Error::BadHost);
        }
        port
    };
    match port {
        None if port_required => Err(Error::BadHost),
        None => Ok(()),
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::BadHost);
            }
            match p.parse::<u32>() {
                Ok(n) if n <= 65535 => Ok(()),
                _ => Err(Error::BadHost),
            }
        }
    }
}

/// RFC 9112 §3.2: a request without `Host`, with several, or with an
/// invalid one MUST be answered 400. For absolute- and authority-form the
/// target's authority wins (§3.2.2); we require `Host` to agree with it,
/// so no later hop can pick the other one.
fn check_host(headers: &[Header], form: &Form, target: &str) -> Result<(), Error> {
    let host = unique(headers, "host")
        .map_err(|_| Error::BadHost)?
        .ok_or(Error::BadHost)?;
    let host = host.text().ok_or(Error::BadHost)?;
    check_authority(host, false)?;
    let expected = match form {
        Form::Origin => return Ok(()),
        Form::Absolute { authority, .. } => authority.as_str(),
        Form::Authority => target,
    };
    if host.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::BadHost)
    }
}
