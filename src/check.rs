//! Offline verdicts: `misp-guard check`.
//!
//! Judges one exchange described on the command line with exactly the steps
//! the listener takes (routing, the sync table, header checks, the rules),
//! without any network. Scripts and analysts use it to ask "would the guard
//! let this through?".

use std::io::Read;
use std::net::IpAddr;

use crate::config::Config;
use crate::http::{self, Coding, DecodeCaps};
use crate::relay::{self, Destination, Target};
use crate::rules::{self, Context, Document, Verdict};
use crate::sync;

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
}

/// Judge `x` under `config`.
pub fn judge(config: &Config, x: &Exchange) -> Result<Outcome, Error> {
    let (scheme, host, port, path) = split_url(&x.url)?;
    let Some(source) = x.source else {
        return Err(Error::Url("a source address is required".into()));
    };
    let target = Target::Name { host, port };
    let route = match relay::route(config, source, &target, scheme, &path, None) {
        Ok(r) => r,
        Err(reject) => return Ok(Outcome::Block(reject.reason)),
    };
    let dst = match route.destination {
        Destination::Allowlisted { host, .. } => {
            return Ok(Outcome::Allow(vec![format!(
                "allowlisted: {host} (not inspected)"
            )]))
        }
        Destination::Instance(id) => id,
    };
    let instance = config.instance(dst);
    let exchange = match sync::classify(&x.method, &path, &instance.settings.base_path) {
        Ok(e) => e,
        Err(r) => return Ok(Outcome::Block(r.to_string())),
    };
    let headers: Vec<(&str, &[u8])> = x
        .request_headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    if let Err(r) = sync::check_request_headers(headers.iter().copied()) {
        return Ok(Outcome::Block(r.to_string()));
    }
    // A body is taken as MISP sends it, JSON, unless a Content-Type says
    // otherwise.
    let declared = x
        .request_headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if declared && x.request_body.as_ref().is_some_and(|b| !b.is_empty()) {
        if let Err(r) = sync::check_body_type(headers.iter().copied()) {
            return Ok(Outcome::Block(r.to_string()));
        }
    }
    // As in the relay: the request is the source's data, the answer the
    // destination's.
    let policy = &config.instance(route.source).policy;
    let answer_policy = &config.instance(dst).policy;
    let caps = relay::decode_caps(config);
    let mut notes = Vec::new();

    let body = x.request_body.as_deref().unwrap_or_default();
    match exchange.request {
        None if !body.is_empty() => {
            return Ok(Outcome::Block(format!("{} carries no body", exchange.name)))
        }
        None => {}
        Some(doc) if body.is_empty() && relay::empty_body_allowed(doc) => {}
        Some(doc) => {
            let coding = match coding_of(&x.request_headers, true) {
                Ok(c) => c,
                Err(e) => return Ok(Outcome::Block(e)),
            };
            if let Verdict::Block(b) = judge_body(
                body,
                coding,
                caps.clone(),
                doc,
                policy,
                &Context::default(),
                config.guard.limits.max_json_depth,
            ) {
                return Ok(Outcome::Block(b.to_string()));
            }
        }
    }

    match (exchange.response, &x.response_body) {
        (Some(doc), Some(body)) => {
            let coding = match coding_of(&x.response_headers, false) {
                Ok(c) => c,
                Err(e) => return Ok(Outcome::Block(e)),
            };
            let context = Context {
                user_org_uuid: x
                    .response_headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("x-userorguuid"))
                    .map(|(_, v)| v.trim().to_ascii_lowercase()),
            };
            if let Verdict::Block(b) = judge_body(
                body,
                coding,
                caps,
                doc,
                answer_policy,
                &context,
                config.guard.limits.max_json_depth,
            ) {
                return Ok(Outcome::Block(b.to_string()));
            }
        }
        (Some(doc), None) => notes.push(format!(
            "the answer would be inspected as {doc:?}; give --response-body to judge it"
        )),
        (None, _) => {}
    }
    Ok(Outcome::Allow(notes))
}

fn judge_body(
    body: &[u8],
    coding: Coding,
    caps: DecodeCaps,
    doc: Document,
    policy: &rules::Policy,
    context: &Context,
    max_depth: usize,
) -> Verdict {
    // The body is given whole; its decoded form (within the caps) is held
    // too, then read by the engine, ending as decoding ended.
    let mut decoded = Vec::new();
    let mut keep = |piece: &[u8]| {
        decoded.extend_from_slice(piece);
        true
    };
    let mut decoder = http::Decoder::new(coding, caps);
    let end = decoder
        .push(body, &mut keep)
        .and_then(|()| decoder.finish(&mut keep));
    let reader = decoded.as_slice().chain(Ended(end));
    rules::evaluate_with_limits(reader, doc, policy, context, max_depth)
}

/// The end of a decoded body: nothing more, or the decoder's error, as the
/// relay's engine sees it.
struct Ended(Result<(), http::Error>);

impl Read for Ended {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        match &self.0 {
            Ok(()) => Ok(0),
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.clone(),
            )),
        }
    }
}

fn coding_of(headers: &[(String, String)], request: bool) -> Result<Coding, String> {
    let headers: Vec<http::Header> = headers
        .iter()
        .map(|(n, v)| http::Header {
            name: n.clone(),
            value: bytes::Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect();
    let r = if request {
        http::request_coding(&headers)
    } else {
        http::response_coding(&headers)
    };
    r.map_err(|e| e.to_string())
}

/// Split `scheme://host[:port]/path`.
fn split_url(url: &str) -> Result<(&'static str, String, u16, String), Error> {
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
    Ok((scheme, host, port, path.to_string()))
}

/// Parse a `Name: value` argument.
pub fn header_arg(s: &str) -> Result<(String, String), Error> {
    match s.split_once(':') {
        Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_string(), v.trim().to_string())),
        _ => Err(Error::Header(s.to_string())),
    }
}
