//! Offline verdicts: `misp-guard check`.
//!
//! Judges one exchange described on the command line with the listener's own
//! phases ([`crate::relay::offline`]: admit, judge the request, judge the
//! answer), without any network. The request is taken as MISP sends it
//! through a proxy listener. Scripts and analysts use it to ask "would the
//! guard let this through?".

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Config;
use crate::http::{Form, Header, RequestHead, ResponseHead};
use crate::relay::offline::{self, Unjudged};
use crate::relay::{self, Target};

/// The `Accept-Encoding` MISP's libcurl sends (every coding it was built
/// with).
const MISP_ACCEPT_ENCODING: &str = "deflate, gzip, br, zstd";

/// One exchange to judge.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The connection's source address.
    pub source: Option<IpAddr>,
    /// Method.
    pub method: String,
    /// `http://HOST:PORT/PATH` or `https://…`.
    pub url: String,
    /// Request headers (`Name: value`), e.g. `Content-Encoding`.
    pub request_headers: Vec<(String, String)>,
    /// Request body.
    pub request_body: Option<Vec<u8>>,
    /// Response headers, e.g. `X-UserOrgUUID`, `Content-Encoding`.
    pub response_headers: Vec<(String, String)>,
    /// Response body (judged as a 200 answer).
    pub response_body: Option<Vec<u8>>,
}

/// The outcome, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed; notes say what was not judged.
    Allow(Vec<String>),
    /// Blocked, with the reason (`rule: value at where` for rule blocks).
    Block(String),
}

/// Why the exchange could not even be judged (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not `http(s)://host[:port]/path`.
    #[error("--url: {0}")]
    Url(String),
    /// A header argument is not `Name: value`.
    #[error("header {0:?} is not 'Name: value'")]
    Header(String),
    /// The judging could not start.
    #[error("cannot start: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Judge `x` under `config`.
pub fn judge(config: &Config, x: &Exchange) -> Result<Outcome, Error> {
    let Some(source) = x.source else {
        return Err(Error::Url("a source address is required".into()));
    };
    let url = split_url(&x.url)?;
    let request_body = x.request_body.clone().unwrap_or_default();
    let request = request_head(x, &url, request_body.len());
    let answer = x.response_body.as_ref().map(|body| {
        let head = ResponseHead {
            status: 200,
            reason: "OK".into(),
            headers: framed(&x.response_headers, &[], Some(body.len())),
        };
        (head, body.clone())
    });
    let case = offline::Case {
        source,
        tunnel: (url.scheme == "https").then(|| Target::Name {
            host: url.host.clone(),
            port: url.port,
        }),
        request,
        request_body,
        answer,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let config = Arc::new(config.clone());
    Ok(match runtime.block_on(offline::judge(&config, case)) {
        Ok(Unjudged::Nothing) => Outcome::Allow(Vec::new()),
        Ok(Unjudged::Allowlisted(host)) => {
            Outcome::Allow(vec![format!("allowlisted: {host} (not inspected)")])
        }
        Ok(Unjudged::Answer(doc)) => Outcome::Allow(vec![format!(
            "the answer would be inspected as {doc:?}; give --response-body to judge it"
        )]),
        Ok(Unjudged::Rebuilt(summary)) => {
            Outcome::Allow(vec![format!("the answer goes on rebuilt: {summary}")])
        }
        Err(reject) => Outcome::Block(reject.reason),
    })
}

/// The request head a MISP would send for `x`: in absolute form for an
/// `http` URL (as to a proxy listener), in origin-form for an `https` one
/// (inside a `CONNECT` tunnel); with the headers given, and those MISP
/// always sends where they are not given (`Host`, `Accept-Encoding`, a
/// JSON `Content-Type` for a body), framed for the body given.
fn request_head(x: &Exchange, url: &Url, body_len: usize) -> RequestHead {
    let mut defaults = vec![
        ("Host", url.authority.clone()),
        ("Accept-Encoding", MISP_ACCEPT_ENCODING.to_string()),
    ];
    if body_len > 0 {
        defaults.push(("Content-Type", "application/json".to_string()));
    }
    let headers = framed(
        &x.request_headers,
        &defaults,
        (body_len > 0).then_some(body_len),
    );
    let (target, form) = if url.scheme == "https" {
        (url.path.clone(), Form::Origin)
    } else {
        let authority = url.authority.clone();
        let target = format!("http://{authority}{}", url.path);
        let path_at = target.len() - url.path.len();
        (target, Form::Absolute { authority, path_at })
    };
    RequestHead {
        method: x.method.clone(),
        target,
        form,
        headers,
    }
}

/// `given` headers with `defaults` for the names not given, framed by a
/// `Content-Length` of `len` when there is a body (any framing given is
/// dropped: the body is the file).
fn framed(
    given: &[(String, String)],
    defaults: &[(&str, String)],
    len: Option<usize>,
) -> Vec<Header> {
    let header = |name: &str, value: &str| Header {
        name: name.to_string(),
        value: Bytes::copy_from_slice(value.as_bytes()),
    };
    let is = |n: &str, name: &str| n.eq_ignore_ascii_case(name);
    let mut headers: Vec<Header> = given
        .iter()
        .filter(|(n, _)| !is(n, "content-length") && !is(n, "transfer-encoding"))
        .map(|(n, v)| header(n, v))
        .collect();
    for (name, value) in defaults {
        if !given.iter().any(|(n, _)| is(n, name)) {
            headers.push(header(name, value));
        }
    }
    if let Some(len) = len {
        headers.push(header("Content-Length", &len.to_string()));
    }
    headers
}

/// A URL of `--url`, in parts.
struct Url {
    scheme: &'static str,
    /// `host[:port]` as written.
    authority: String,
    host: String,
    port: u16,
    path: String,
}

/// Split `scheme://host[:port]/path`.
fn split_url(url: &str) -> Result<Url, Error> {
    let (scheme, rest, default) = if let Some(r) = url.strip_prefix("http://") {
        ("http", r, 80)
    } else if let Some(r) = url.strip_prefix("https://") {
        ("https", r, 443)
    } else {
        return Err(Error::Url(format!(
            "{url:?} does not start with http:// or https://"
        )));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(Error::Url(format!("{url:?} has no path"))),
    };
    let (host, port) = relay::parse_authority(authority, default)
        .ok_or_else(|| Error::Url(format!("{url:?} has a malformed host or port")))?;
    Ok(Url {
        scheme,
        authority: authority.to_string(),
        host,
        port,
        path: path.to_string(),
    })
}

/// Parse a `Name: value` argument.
pub fn header_arg(s: &str) -> Result<(String, String), Error> {
    match s.split_once(':') {
        Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_string(), v.trim().to_string())),
        _ => Err(Error::Header(s.to_string())),
    }
}
