//! Step 6c of the path: one request and its response — routed, classified
//! against the sync table, each body held and judged, then relayed
//! re-framed (or an error answer replaced by the guard's own text).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::answer::{Reject, Side};
use super::body::take_body;
use super::hold::Hold;
use super::inspect::Job;
use super::log::Outcome;
use super::route::{escape, route, Destination, Route, Target};
use super::session::{Io, Origin, Peer, Snapshot};
use super::upstream;
use crate::config::{Config, Instance};
use crate::http::{self, BodyKind, Coding, RequestHead, ResponseHead};
use crate::rules::{Context, Document, Verdict};
use crate::sync::{self, Direction};
use crate::tls;

/// The request headers MISP sync sends (protocol doc §1.1); the framing
/// and hop-by-hop ones among them are rewritten by `http::encode_request`.
const SYNC_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "accept",
    "content-type",
    "content-length",
    "content-encoding",
    "user-agent",
    "if-none-match",
    "x-pgp-signature",
];

/// Request headers that must appear at most once.
const SINGLE_HEADERS: &[&str] = &[
    "authorization",
    "accept",
    "user-agent",
    "if-none-match",
    "x-pgp-signature",
];

/// A `Connection` token other than `close` and `keep-alive`: one that would
/// remove a header on forwarding (RFC 9110 §7.6.1).
fn odd_connection_token(headers: &[http::Header]) -> Option<&str> {
    http::head::connection_tokens(headers)
        .find(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
}

/// The largest error answer passed on where a document was expected.
const MAX_ERROR_ANSWER: u64 = 64 * 1024;

/// An open connection to a destination, kept across requests.
pub(super) struct Upstream {
    addr: SocketAddr,
    tls: bool,
    /// The connector it was opened with: after a reload that changed the
    /// trust, a new connection is verified with the new one.
    connector: Arc<tls::Connector>,
    peer: Peer<Box<dyn Io>>,
}

impl Upstream {
    /// Whether this kept connection may carry the next request: it goes to
    /// the same place, the same way, and was verified with the trust now
    /// in force. Every reload builds a new connector, so after a reload a
    /// kept connection is closed and the next one verified under the new
    /// trust (`tls.ca`, the bundle, a client certificate) before any byte
    /// of the request is sent.
    fn fits(&self, addr: SocketAddr, tls: bool, connector: &Arc<tls::Connector>) -> bool {
        self.addr == addr && self.tls == tls && Arc::ptr_eq(&self.connector, connector)
    }
}

/// One request and its response.
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange<S: Io>(
    client: &mut Peer<S>,
    upstream: &mut Option<Upstream>,
    snapshot: &Snapshot,
    limits: &http::Limits,
    peer: SocketAddr,
    origin: &Origin,
    tls: bool,
    head: &RequestHead,
    outcome: &mut Outcome,
    learned_org: &mut Option<(SocketAddr, String)>,
    shutdown: &CancellationToken,
) -> Result<(), Reject> {
    let config = &snapshot.config;
    let request_body = http::request_body(head)
        .map_err(|e| Reject::fatal(e.status(), Side::Client, e.to_string()))?;
    // Until the body is consumed, a refusal must close the connection.
    outcome.keep_alive = is_empty(request_body) && !http::connection_close(head);
    // `Connection` may name headers to drop on forwarding (RFC 9110 §7.6.1);
    // naming one the guard has checked (Content-Type, Host…) would forward
    // something other than what was judged. MISP sends at most
    // `keep-alive` or `close`.
    if let Some(token) = odd_connection_token(&head.headers) {
        return Err(Reject::fatal(
            400,
            Side::Client,
            format!(
                "Connection names {}: only close and keep-alive are accepted",
                escape(token)
            ),
        ));
    }
    // One value each: a second Authorization or Accept would be joined by
    // the remote's web server into something the guard did not see.
    for name in SINGLE_HEADERS {
        if head.headers.iter().filter(|h| h.is(name)).count() > 1 {
            return Err(Reject::fatal(
                400,
                Side::Client,
                format!("more than one {name} header"),
            ));
        }
    }

    // Where does it go?
    let (target, path) = match origin {
        Origin::Transparent(dst) => (Target::Address(*dst), head.target.clone()),
        Origin::Tunnel(t) => (t.clone(), head.target.clone()),
        Origin::Proxy => absolute_form(&head.target)?,
    };
    if !path.starts_with('/') {
        return Err(Reject::fatal(
            400,
            Side::Client,
            "request target must be origin-form here",
        ));
    }
    let host_header = single_header(head, "host")?
        .ok_or_else(|| Reject::fatal(400, Side::Client, "missing Host header"))?;
    let Route {
        source,
        destination,
    } = route(
        config,
        peer.ip(),
        &target,
        if tls { "https" } else { "http" },
        &path,
        Some(&host_header),
    )?;
    outcome.source = Some(config.instance(source).name.clone());

    let (dst_id, exchange, upstream_addr) = match &destination {
        Destination::Instance(id) => {
            let instance = config.instance(*id);
            outcome.destination = Some(instance.name.clone());
            if !tls && plain_refused(origin, instance) {
                return Err(Reject::forbidden(format!(
                    "plain HTTP to {}, which is reached over TLS: the client must use TLS \
                     (or set allow_plain_http for this instance)",
                    instance.name
                )));
            }
            let exchange = sync::classify(&head.method, &path, &instance.settings.base_path)
                .map_err(|r| Reject::forbidden(r.to_string()))?;
            sync::check_request_headers(
                head.headers
                    .iter()
                    .map(|h| (h.name.as_str(), h.value.as_ref())),
            )
            .map_err(|r| Reject::forbidden(r.to_string()))?;
            if !is_empty(request_body) {
                sync::check_body_type(
                    head.headers
                        .iter()
                        .map(|h| (h.name.as_str(), h.value.as_ref())),
                )
                .map_err(|r| Reject::forbidden(r.to_string()))?;
            }
            (
                Some(*id),
                Some(exchange),
                SocketAddr::new(instance.ip, instance.port),
            )
        }
        Destination::Allowlisted { host, port } => {
            outcome.destination = Some(format!("allowlist:{host}"));
            if tls {
                // The guard has no certificate to check such a host with
                // and would reach it in plain; the client meant TLS.
                return Err(Reject::forbidden(format!(
                    "the allowlisted host {host} is relayed over plain HTTP only, not inside TLS"
                )));
            }
            let addr = allowlisted_addr(config, host, *port, &target).await?;
            (None, None, addr)
        }
    };

    // The request body: which document it must be, whose rules apply.
    let request_doc = match &exchange {
        Some(x) => {
            if x.request.is_none() && !is_empty(request_body) {
                return Err(Reject::forbidden(format!("{} carries no body", x.name)));
            }
            x.request
        }
        None => None,
    };
    // A body is judged under the rules of the instance whose data it is:
    // the request's are the source's, the answer's the destination's (a
    // pull's event, but also what the remote answers a push with).
    let answer_rules = dst_id.unwrap_or(source);
    let expect = http::expects_continue(head)
        .map_err(|e| Reject::fatal(e.status(), Side::Client, e.to_string()))?;
    let request_coding = match request_doc {
        Some(_) => http::request_coding(&head.headers)
            .map_err(|e| Reject::fatal(e.status(), Side::Client, e.to_string()))?,
        None => Coding::Identity,
    };
    if expect {
        // Ask for the body only now that the head passed every check; the
        // `Expect` itself is never forwarded, so no body goes upstream
        // before its verdict.
        client
            .io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| Reject::fatal(400, Side::Client, format!("write: {e}")))?;
    }

    let mut hold = Hold::new(
        config.guard.limits.hold_memory_bytes,
        config.guard.limits.max_spill_bytes,
    );
    let job = match (request_doc, &exchange) {
        (Some(doc), _) if is_empty(request_body) && super::empty_body_allowed(doc) => None,
        (Some(doc), Some(x)) => Some(Job {
            config: config.clone(),
            instance: source,
            doc,
            coding: request_coding,
            caps: super::decode_caps(config),
            context: Context {
                user_org_uuid: learned_org
                    .as_ref()
                    .filter(|(addr, _)| *addr == upstream_addr && x.direction == Direction::Push)
                    .map(|(_, org)| org.clone()),
            },
        }),
        _ => None,
    };
    let verdict = take_body(
        client,
        request_body,
        job,
        &mut hold,
        config,
        limits,
        Side::Client,
    )
    .await?;
    outcome.bytes_in = hold.len();
    outcome.keep_alive = !http::connection_close(head);
    let pass = match verdict {
        Verdict::Allow(pass) => pass,
        Verdict::Block(block) => return Err(Reject::blocked(block, Side::Client)),
    };

    // Upstream: reuse the connection when it goes to the same place, the
    // same way, with the same trust.
    let upstream_tls = match dst_id {
        Some(id) if upstream_over_tls(origin, config.instance(id)) => Some(config.instance(id)),
        _ => None,
    };
    let reusable = upstream
        .as_ref()
        .is_some_and(|u| u.fits(upstream_addr, upstream_tls.is_some(), &snapshot.connector));
    if !reusable {
        *upstream = None;
    }
    if let Some(u) = upstream.as_mut() {
        if !still_open(&mut u.peer).await {
            *upstream = None;
        }
    }
    let up = match upstream {
        Some(u) => u,
        None => {
            let tcp = upstream::connect(
                upstream_addr,
                config.guard.upstream_mark,
                config.guard.timeouts.connect,
                config.guard.timeouts.body_idle,
            )
            .await?;
            let io: Box<dyn Io> = match upstream_tls {
                Some(instance) => Box::new(
                    upstream::tls(
                        &snapshot.connector,
                        tcp,
                        instance,
                        config.guard.timeouts.handshake,
                    )
                    .await?,
                ),
                None => Box::new(tcp),
            };
            upstream.insert(Upstream {
                addr: upstream_addr,
                tls: upstream_tls.is_some(),
                connector: snapshot.connector.clone(),
                peer: Peer {
                    io,
                    buf: BytesMut::with_capacity(16 * 1024),
                },
            })
        }
    };

    let offered = offered_codings(head);
    let mut out = Vec::with_capacity(1024);
    let accept = if offered.is_empty() {
        "identity".to_string()
    } else {
        offered.join(", ")
    };
    let mut forwarded = head.clone();
    forwarded.headers.retain(|h| !h.is("accept-encoding"));
    if exchange.is_some() {
        // To an instance only the headers MISP sync sends go on: others
        // change what the remote does behind the table's back (a Cookie
        // logs in by session, X-Forwarded-For passes an API key's IP
        // check, Range cuts the answer into slices).
        forwarded
            .headers
            .retain(|h| SYNC_HEADERS.iter().any(|name| h.is(name)));
    }
    forwarded.headers.push(http::Header {
        name: "Accept-Encoding".into(),
        value: Bytes::from(accept),
    });
    http::encode_request(&forwarded, &path, Some(hold.len()), &mut out);
    let sent = async {
        up.peer.io.write_all(&out).await?;
        hold.forward(&pass, &mut up.peer.io).await?;
        up.peer.io.flush().await
    }
    .await;
    if let Err(e) = sent {
        *upstream = None;
        return Err(Reject::fatal(
            502,
            Side::Upstream,
            format!("sending request: {e}"),
        ));
    }

    // The response.
    let response = match read_response_head(up, config, limits).await {
        Ok(r) => r,
        Err(r) => {
            *upstream = None;
            return Err(r);
        }
    };
    // The same for the answer: `Connection: content-encoding` would drop
    // the coding the body was judged in.
    if let Some(token) = odd_connection_token(&response.headers) {
        *upstream = None;
        return Err(Reject::fatal(
            502,
            Side::Upstream,
            format!(
                "answer's Connection names {}: only close and keep-alive are accepted",
                escape(token)
            ),
        ));
    }
    let is_head = head.method == "HEAD";
    let response_body = match http::response_body(&response, is_head) {
        Ok(k) => k,
        Err(e) => {
            *upstream = None;
            return Err(Reject::fatal(502, Side::Upstream, e.to_string()));
        }
    };
    let response_coding = if response_body == BodyKind::Empty {
        Coding::Identity
    } else {
        match http::response_coding(&response.headers) {
            Ok(c) => c,
            Err(e) => {
                *upstream = None;
                return Err(Reject::fatal(502, Side::Upstream, e.to_string()));
            }
        }
    };
    if let Some(name) = coding_name(response_coding) {
        if !offered.contains(&name) {
            *upstream = None;
            return Err(Reject::fatal(
                502,
                Side::Upstream,
                format!("answer encoded with {name}, which the client did not offer"),
            ));
        }
    }
    let success = (200..300).contains(&response.status);
    let user_org = match unique_response_header(&response, "x-userorguuid") {
        Ok(v) => v.map(|s| s.trim().to_ascii_lowercase()),
        Err(r) => {
            *upstream = None;
            return Err(r);
        }
    };
    if let Some(org) = &user_org {
        // The org of the remote sync user: on a push it is the org that
        // receives the data, so later pushes of this session are checked
        // against it too (protocol doc §7).
        *learned_org = Some((upstream_addr, org.clone()));
    }
    let response_doc: Option<Document> = match &exchange {
        Some(x) if success => x.response,
        _ => None,
    };
    // No error answer of a sync exchange is judged, so none may be large:
    // each is read up to `MAX_ERROR_ANSWER` (a larger one is refused).
    // MISP's REST errors are small JSON objects that MISP only logs.
    let error_answer = !success && exchange.is_some();
    // Where a document was expected (a pull), the body never reaches the
    // client either: it is replaced by the guard's own error text below.
    // The error answers to a push pass (MISP's save-fail 403 JSON, whose
    // `errors` the pushing MISP logs, e.g. "not newer than the local
    // copy"), checked for their decoded size too.
    let replace_error = error_answer
        && exchange
            .as_ref()
            .is_some_and(|x| x.response.is_some() && x.direction == Direction::Pull);
    let mut body_limits = limits.clone();
    let mut hold_memory = config.guard.limits.hold_memory_bytes;
    if error_answer {
        body_limits.max_body_bytes = body_limits.max_body_bytes.min(MAX_ERROR_ANSWER);
        // Kept in memory whole, for the decoded-size check.
        hold_memory = hold_memory.max(MAX_ERROR_ANSWER as usize);
    }
    let job = match (response_doc, &exchange) {
        (Some(doc), Some(_)) => Some(Job {
            config: config.clone(),
            instance: answer_rules,
            doc,
            coding: response_coding,
            caps: super::decode_caps(config),
            context: Context {
                user_org_uuid: user_org,
            },
        }),
        _ => None,
    };
    let mut hold = Hold::new(hold_memory, config.guard.limits.max_spill_bytes);
    let verdict = match take_body(
        &mut up.peer,
        response_body,
        job,
        &mut hold,
        config,
        &body_limits,
        Side::Upstream,
    )
    .await
    {
        Ok(v) => v,
        Err(r) => {
            *upstream = None;
            return Err(r);
        }
    };
    let upstream_reusable =
        response_body != BodyKind::CloseDelimited && !http::connection_close(&response.headers);
    if !upstream_reusable {
        *upstream = None;
    }
    outcome.bytes_out = hold.len();
    let pass = match verdict {
        Verdict::Allow(pass) => pass,
        Verdict::Block(block) => return Err(Reject::blocked(block, Side::Upstream)),
    };
    if error_answer && !replace_error {
        error_answer_decodes_small(&hold, response_coding)?;
    }

    // On shutdown the exchange in flight finishes and says it is the last.
    if shutdown.is_cancelled() {
        outcome.keep_alive = false;
    }
    let close = !outcome.keep_alive;
    let mut out = Vec::with_capacity(1024);
    if replace_error && !is_empty(response_body) {
        let body = serde_json::json!({
            "name": response.reason,
            "message": format!(
                "misp-guard: the body of this {} answer was withheld (only 2xx answers of {} are inspected)",
                response.status,
                exchange.as_ref().map_or("-", |x| x.name),
            ),
            "url": path,
        })
        .to_string();
        let mut replaced = response.clone();
        replaced.headers.retain(|h| {
            !(h.is("content-type")
                || h.is("content-encoding")
                || h.is("etag")
                || h.is("content-md5"))
        });
        replaced.headers.push(http::Header {
            name: "Content-Type".into(),
            value: Bytes::from_static(b"application/json"),
        });
        if close {
            http::encode_response_close(&replaced, Some(body.len() as u64), &mut out);
        } else {
            http::encode_response(&replaced, Some(body.len() as u64), &mut out);
        }
        out.extend_from_slice(body.as_bytes());
        outcome.status = response.status;
        if client.io.write_all(&out).await.is_err() || client.io.flush().await.is_err() {
            outcome.keep_alive = false;
        }
        return Ok(());
    }
    let length = match response_body {
        // A HEAD answer declares the length a GET would have had.
        BodyKind::Empty if is_head => declared_length(&response),
        BodyKind::Empty => None,
        _ => Some(hold.len()),
    };
    if close {
        http::encode_response_close(&response, length, &mut out);
    } else {
        http::encode_response(&response, length, &mut out);
    }
    let written = async {
        client.io.write_all(&out).await?;
        hold.forward(&pass, &mut client.io).await?;
        client.io.flush().await
    }
    .await;
    outcome.status = response.status;
    if written.is_err() {
        outcome.keep_alive = false;
    }
    Ok(())
}

/// Whether plain HTTP from the client to `instance` is refused: the
/// instance is reached over TLS, so its clients are expected to use TLS
/// too, unless `allow_plain_http`. An absolute-form `http://` request on
/// the proxy listener names its scheme itself and is exempt (as with the
/// older mitmproxy guard, the client's scheme decides there).
pub(super) fn plain_refused(origin: &Origin, instance: &Instance) -> bool {
    let t = &instance.settings.tls;
    *origin != Origin::Proxy && t.upstream && !t.allow_plain_http
}

/// Whether the guard speaks TLS to `instance`: when it is reached over
/// TLS, except for an absolute-form `http://` request on the proxy
/// listener, which asked for plain HTTP by name.
fn upstream_over_tls(origin: &Origin, instance: &Instance) -> bool {
    *origin != Origin::Proxy && instance.settings.tls.upstream
}

/// Whether a kept upstream connection can carry another request. Servers
/// close idle keep-alive connections (Apache after 5 s); sending on such
/// a connection would fail the client's request with a 502. Anything
/// readable now (end of stream, an error, a TLS close, bytes nobody asked
/// for) means it cannot be reused; only "nothing yet" can.
async fn still_open<S: Io>(peer: &mut Peer<S>) -> bool {
    if !peer.buf.is_empty() {
        return false;
    }
    peer.buf.reserve(4 * 1024);
    // Poll the read once: pending means the connection is idle and open.
    // (Not a zero timeout: tokio rounds timers up to the next millisecond,
    // which every reused connection would wait.)
    let mut read = std::pin::pin!(peer.io.read_buf(&mut peer.buf));
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(read.as_mut(), cx).is_pending())
    })
    .await
}

/// Refuses an error answer passed on uninspected whose `Content-Encoding`
/// would multiply the `MAX_ERROR_ANSWER` cap (or that does not decode: the
/// client could not read it either).
fn error_answer_decodes_small(hold: &Hold, coding: Coding) -> Result<(), Reject> {
    if coding == Coding::Identity || hold.is_empty() {
        return Ok(());
    }
    // Held in memory: error answers are read up to MAX_ERROR_ANSWER with a
    // memory threshold at least as large.
    let raw = hold
        .in_memory()
        .ok_or_else(|| Reject::fatal(502, Side::Guard, "error answer not held in memory"))?;
    let caps = http::DecodeCaps {
        max_decoded_bytes: MAX_ERROR_ANSWER,
        ..http::DecodeCaps::default()
    };
    let mut decoder = http::Decoder::new(coding, caps);
    decoder
        .push(&raw, |_| true)
        .and_then(|()| decoder.finish(|_| true))
        .map_err(|why| {
            Reject::fatal(
                502,
                Side::Upstream,
                format!("error answer refused (error answers are passed up to {MAX_ERROR_ANSWER} bytes decoded): {why}"),
            )
        })
}

fn is_empty(kind: BodyKind) -> bool {
    matches!(kind, BodyKind::Empty | BodyKind::Length(0))
}

/// Split an absolute-form target `http://host[:port]/path` (proxy mode).
fn absolute_form(target: &str) -> Result<(Target, String), Reject> {
    let bad = || {
        Reject::fatal(
            400,
            Side::Client,
            format!("bad absolute-form target {}", escape(target)),
        )
    };
    let rest = target.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(bad()),
    };
    let (host, port) = super::route::parse_authority(authority, 80).ok_or_else(bad)?;
    Ok((Target::Name { host, port }, path.to_string()))
}

/// Resolve an allowlisted host, refusing answers the allowlist must never
/// lead to: an instance (that traffic would skip the rules and the
/// compartments), the guard's own host (loopback) or an unspecified
/// address. Every answer is checked, so which one the resolver puts first
/// does not matter.
pub(super) async fn resolve_allowlisted(
    config: &Config,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Reject> {
    let addrs = upstream::resolve(host, port).await?;
    for a in &addrs {
        let ip = crate::listen::unmap(*a).ip();
        let forbidden =
            ip.is_loopback() || ip.is_unspecified() || config.instances.iter().any(|i| i.ip == ip);
        if forbidden {
            return Err(Reject::forbidden(format!(
                "allowlisted host {host} resolves to {ip}, an instance or the guard itself"
            )));
        }
    }
    Ok(addrs)
}

/// Where an allowlisted host is reached. Transparent: the original
/// destination, which the name must resolve to (else a client could name a
/// listed domain to reach any address).
async fn allowlisted_addr(
    config: &Config,
    host: &str,
    port: u16,
    target: &Target,
) -> Result<SocketAddr, Reject> {
    let addrs = resolve_allowlisted(config, host, port).await?;
    match target {
        Target::Address(dst) => {
            if addrs.iter().any(|a| a.ip() == dst.ip()) {
                Ok(*dst)
            } else {
                Err(Reject::forbidden(format!(
                    "allowlisted domain {host} does not resolve to the original destination {dst}"
                )))
            }
        }
        Target::Name { .. } => addrs
            .first()
            .copied()
            .ok_or_else(|| Reject::fatal(502, Side::Upstream, format!("{host} has no address"))),
    }
}

/// The one value of a header that must appear at most once.
fn single_header(head: &RequestHead, name: &str) -> Result<Option<String>, Reject> {
    let mut values = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = values.next();
    if values.next().is_some() {
        return Err(Reject::fatal(
            400,
            Side::Client,
            format!("more than one {name} header"),
        ));
    }
    match first {
        None => Ok(None),
        Some(h) => match std::str::from_utf8(&h.value) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(_) => Err(Reject::fatal(
                400,
                Side::Client,
                format!("{name} header is not ASCII"),
            )),
        },
    }
}

/// The `Content-Length` of a bodiless answer (already checked by `http`).
fn declared_length(head: &ResponseHead) -> Option<u64> {
    head.headers
        .iter()
        .find(|h| h.is("content-length"))
        .and_then(|h| h.text())
        .and_then(|t| t.trim().parse().ok())
}

/// A response header that may appear at most once (two values would be
/// two different answers to the same question).
fn unique_response_header(head: &ResponseHead, name: &str) -> Result<Option<String>, Reject> {
    let mut values = head.headers.iter().filter(|h| h.is(name));
    let first = values.next();
    if values.next().is_some() {
        return Err(Reject::fatal(
            502,
            Side::Upstream,
            format!("more than one {name} header"),
        ));
    }
    match first {
        None => Ok(None),
        Some(h) => match h.text() {
            Some(t) => Ok(Some(t.to_string())),
            None => Err(Reject::fatal(
                502,
                Side::Upstream,
                format!("{name} header is not text"),
            )),
        },
    }
}

/// The codings the client accepts that the guard can also decode, in the
/// client's order. Sent upstream as the `Accept-Encoding`, so the answer
/// comes in an encoding both the guard and the client understand.
fn offered_codings(head: &RequestHead) -> Vec<&'static str> {
    let mut out = Vec::new();
    for h in head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept-encoding"))
    {
        let Ok(value) = std::str::from_utf8(&h.value) else {
            continue;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().map(|q| q <= 0.0).unwrap_or(true))
            });
            if refused {
                continue;
            }
            let known = match token.as_str() {
                "gzip" | "x-gzip" => "gzip",
                "deflate" => "deflate",
                "br" => "br",
                "zstd" => "zstd",
                _ => continue,
            };
            if !out.contains(&known) {
                out.push(known);
            }
        }
    }
    out
}

fn coding_name(c: Coding) -> Option<&'static str> {
    match c {
        Coding::Identity => None,
        Coding::Gzip => Some("gzip"),
        Coding::Deflate => Some("deflate"),
        Coding::Br => Some("br"),
        Coding::Zstd => Some("zstd"),
    }
}

/// Read the next final response head from upstream (skipping 1xx).
async fn read_response_head(
    up: &mut Upstream,
    config: &Config,
    limits: &http::Limits,
) -> Result<ResponseHead, Reject> {
    let deadline = tokio::time::Instant::now() + config.guard.timeouts.upstream_response;
    loop {
        if !up.peer.buf.is_empty() {
            match http::parse_response(&up.peer.buf, limits) {
                Ok(Some((head, len))) => {
                    let _ = up.peer.buf.split_to(len);
                    if head.status == 101 {
                        return Err(Reject::fatal(
                            502,
                            Side::Upstream,
                            "upstream switched protocols",
                        ));
                    }
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Reject::fatal(
                        502,
                        Side::Upstream,
                        format!("bad response: {e}"),
                    ))
                }
            }
        }
        up.peer.buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, up.peer.io.read_buf(&mut up.peer.buf)).await {
            Err(_) => return Err(Reject::fatal(504, Side::Upstream, "no response in time")),
            Ok(Ok(0)) => {
                return Err(Reject::fatal(
                    502,
                    Side::Upstream,
                    "upstream closed without a response",
                ))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Reject::fatal(
                    502,
                    Side::Upstream,
                    format!("reading response: {e}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::session::tests::config;
    use super::*;

    #[test]
    fn plain_http_and_upstream_tls_by_origin_and_settings() {
        let dst: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let tunnel = Origin::Tunnel(Target::Name {
            host: "a.example".into(),
            port: 443,
        });
        // (origin, upstream, allow_plain_http) → (plain refused, TLS upstream)
        let cases = [
            (Origin::Transparent(dst), true, false, (true, true)),
            (Origin::Transparent(dst), true, true, (false, true)),
            (Origin::Transparent(dst), false, false, (false, false)),
            (tunnel.clone(), true, false, (true, true)),
            (tunnel.clone(), false, true, (false, false)),
            // An absolute-form http:// request named its scheme itself.
            (Origin::Proxy, true, false, (false, false)),
            (Origin::Proxy, false, false, (false, false)),
        ];
        for (origin, upstream, allow_plain_http, want) in cases {
            let c = config(
                443,
                serde_json::json!({}),
                serde_json::json!({ "upstream": upstream, "allow_plain_http": allow_plain_http }),
            );
            let i = &c.instances[0];
            assert_eq!(
                (plain_refused(&origin, i), upstream_over_tls(&origin, i)),
                want,
                "{origin:?} upstream={upstream} allow_plain_http={allow_plain_http}"
            );
        }
    }

    #[test]
    fn error_answers_passed_on_are_small_once_decoded() {
        let held = |bytes: &[u8]| {
            let mut hold = Hold::new(MAX_ERROR_ANSWER as usize, u64::MAX);
            hold.push(bytes, &std::env::temp_dir()).unwrap();
            hold
        };
        let gzip = |data: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let save_fail = br#"{"saved":false,"name":"Event could not be saved.","errors":"Event could not be saved: not newer"}"#;
        assert!(error_answer_decodes_small(&held(save_fail), Coding::Identity).is_ok());
        assert!(error_answer_decodes_small(&held(&gzip(save_fail)), Coding::Gzip).is_ok());
        let at_cap = vec![b' '; MAX_ERROR_ANSWER as usize];
        assert!(error_answer_decodes_small(&held(&gzip(&at_cap)), Coding::Gzip).is_ok());

        // 64 KiB of gzip could carry megabytes.
        let large = vec![b'x'; 4 * MAX_ERROR_ANSWER as usize];
        let packed = gzip(&large);
        assert!(packed.len() < 4096);
        let r = error_answer_decodes_small(&held(&packed), Coding::Gzip).unwrap_err();
        assert_eq!((r.status, r.side), (502, Side::Upstream));
        assert!(r.reason.contains("65536"), "{}", r.reason);

        let corrupt = error_answer_decodes_small(&held(b"not gzip at all"), Coding::Gzip);
        assert_eq!(corrupt.map_err(|r| r.status), Err(502));
    }

    #[test]
    fn kept_upstream_fits_the_same_place_way_and_trust_only() {
        let settings = crate::config::TlsSettings::default();
        let before = Arc::new(tls::Connector::new(&settings, &[]).unwrap());
        // A reload builds a new connector even from the same files.
        let after = Arc::new(tls::Connector::new(&settings, &[]).unwrap());
        let addr: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let (_far, near) = tokio::io::duplex(64);
        let kept = Upstream {
            addr,
            tls: true,
            connector: before.clone(),
            peer: Peer {
                io: Box::new(near),
                buf: BytesMut::new(),
            },
        };
        assert!(kept.fits(addr, true, &before));
        assert!(!kept.fits(addr, true, &after), "trust of another snapshot");
        assert!(!kept.fits(addr, false, &before), "plain instead of TLS");
        let other: SocketAddr = "10.0.0.2:443".parse().unwrap();
        assert!(!kept.fits(other, true, &before), "another destination");
    }

    #[tokio::test]
    async fn kept_upstream_is_reused_only_while_idle_and_open() {
        let (far, near) = tokio::io::duplex(1024);
        let mut peer = Peer {
            io: near,
            buf: BytesMut::new(),
        };
        assert!(still_open(&mut peer).await);
        assert!(still_open(&mut peer).await, "probing reads nothing");

        let (mut far2, near2) = tokio::io::duplex(1024);
        let mut talky = Peer {
            io: near2,
            buf: BytesMut::new(),
        };
        far2.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        assert!(!still_open(&mut talky).await, "unsolicited bytes");

        drop(far);
        assert!(!still_open(&mut peer).await, "closed by the server");
    }
}
