//! One client connection: its requests in order, each judged and relayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::answer::{Reject, Side};
use super::hold::Hold;
use super::inspect::{Inspection, Job, Judged};
use super::prefixed::Prefixed;
use super::route::{escape, route, Destination, Route, Target};
use super::upstream;
use crate::config::{Config, Instance};
use crate::http::{
    self, BodyKind, Chunk, ChunkedDecoder, Coding, DecodeCaps, RequestHead, ResponseHead,
};
use crate::rules::{Context, Document, Pass, Verdict};
use crate::sync::{self, Direction};
use crate::tls;

/// State shared by every connection.
pub struct Shared {
    /// The config and TLS material in force; SIGHUP puts a new snapshot
    /// here. Each exchange takes one and uses it from start to end.
    pub current: watch::Receiver<Arc<Snapshot>>,
}

impl Shared {
    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }
}

/// A config with the TLS acceptor and connector built from it, swapped as
/// one so a request never sees a config with another config's certificates.
pub struct Snapshot {
    /// The config.
    pub config: Arc<Config>,
    /// Terminates clients' TLS; `None` when no certificate source is
    /// configured at all (no guard CA, no instance `cert`), and then every
    /// TLS client is refused.
    pub acceptor: Option<Arc<tls::Acceptor>>,
    /// Opens TLS connections to the instances reached over TLS.
    pub connector: Arc<tls::Connector>,
}

impl Snapshot {
    /// Builds the acceptor and connector for `config`; any TLS problem
    /// refuses the whole config, so a reload keeps the old snapshot.
    pub fn build(config: Config) -> Result<Snapshot, tls::Errors> {
        let t = &config.guard.tls;
        let has_certificates = t.ca_cert.is_some()
            || t.ca_key.is_some()
            || config
                .instances
                .iter()
                .any(|i| i.settings.tls.cert.is_some() || i.settings.tls.key.is_some());
        let acceptor = if has_certificates {
            Some(tls::Acceptor::new(t, &config.instances))
        } else {
            None
        };
        let connector = tls::Connector::new(t, &config.instances);
        let (acceptor, connector) = match (acceptor.transpose(), connector) {
            (Ok(a), Ok(c)) => (a, c),
            (a, c) => {
                let mut all = Vec::new();
                if let Err(tls::Errors(e)) = a {
                    all.extend(e);
                }
                if let Err(tls::Errors(e)) = c {
                    all.extend(e);
                }
                return Err(tls::Errors(all));
            }
        };
        if acceptor.is_none() && config.instances.iter().any(|i| i.settings.tls.upstream) {
            tracing::warn!(
                "no guard.tls.ca_cert/ca_key and no instance tls.cert: \
                 TLS from clients is refused; only plain HTTP can be relayed"
            );
        }
        Ok(Snapshot {
            config: Arc::new(config),
            acceptor: acceptor.map(Arc::new),
            connector: Arc::new(connector),
        })
    }
}

/// How the connection reached the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Redirected by nftables: the original destination.
    Transparent(SocketAddr),
    /// An explicit-proxy connection: each request names its target
    /// (absolute-form), or a `CONNECT` makes the rest a tunnel.
    Proxy,
    /// The inside of a `CONNECT` tunnel to this target.
    Tunnel(Target),
}

/// A byte stream the relay can use: TCP or TLS, client or upstream side.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

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

/// The largest error answer passed on where a document was expected.
const MAX_ERROR_ANSWER: u64 = 64 * 1024;

/// Read size; large reads matter for big events.
const READ_CHUNK: usize = 256 * 1024;

/// One side's stream with the bytes read ahead of the current message.
struct Peer<S> {
    io: S,
    buf: BytesMut,
}

/// An open connection to a destination, kept across requests.
struct Upstream {
    addr: SocketAddr,
    tls: bool,
    /// The connector it was opened with: after a reload that changed the
    /// trust, a new connection is verified with the new one.
    connector: Arc<tls::Connector>,
    peer: Peer<Box<dyn Io>>,
}

/// What one exchange did, for the log line.
struct Outcome {
    status: u16,
    reject: Option<Reject>,
    source: Option<String>,
    destination: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
    keep_alive: bool,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            status: 0,
            reject: None,
            source: None,
            destination: None,
            bytes_in: 0,
            bytes_out: 0,
            keep_alive: false,
        }
    }
}

/// Serve one client connection until it closes, fails or shutdown.
///
/// A redirected connection that starts with a TLS handshake is terminated
/// with the certificate of the instance it was going to; a `CONNECT` tunnel
/// that starts with one, with the certificate of the instance the `CONNECT`
/// named. The HTTP inside is then judged like any other, as `https`.
pub async fn serve<S: Io>(
    client: S,
    peer: SocketAddr,
    origin: Origin,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut client = Peer {
        io: client,
        buf: BytesMut::with_capacity(16 * 1024),
    };
    if let Origin::Transparent(dst) = origin {
        let snapshot = shared.snapshot();
        first_bytes(&mut client, snapshot.config.guard.timeouts.handshake).await;
        if tls::looks_like_tls(&client.buf) {
            let instance = match snapshot.config.destination_by_addr(dst) {
                Ok(id) => snapshot.config.instance(id).clone(),
                Err(e) => {
                    tracing::warn!(
                        client.addr = %peer, dst.addr = %dst, reason = %e,
                        "TLS connection refused: no instance to take the certificate from"
                    );
                    return;
                }
            };
            if let Some(client) = accept_tls(client, &snapshot, &instance, peer).await {
                http_loop(client, peer, origin, true, &shared, &shutdown).await;
            }
            return;
        }
    }
    if let Some((client, target, instance)) =
        http_loop(client, peer, origin, false, &shared, &shutdown).await
    {
        let snapshot = shared.snapshot();
        if let Some(client) = accept_tls(client, &snapshot, &instance, peer).await {
            // A CONNECT inside the tunnel is refused by `connect_tunnel`, so
            // this loop never hands back another tunnel.
            http_loop(
                client,
                peer,
                Origin::Tunnel(target),
                true,
                &shared,
                &shutdown,
            )
            .await;
        }
    }
}

/// How long a connection from an address that is no instance may take to
/// say what it wants before it is closed.
const STRANGER_WAIT: Duration = Duration::from_secs(2);

/// Answer a connection from an address that is no configured instance: a
/// 403 to the first request head (so an operator sees why), nothing to a
/// TLS handshake, and close. It never holds an instance's slot.
pub async fn refuse_stranger<S: Io>(mut client: S, peer: SocketAddr) {
    let mut buf = BytesMut::with_capacity(4096);
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match client.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(STRANGER_WAIT, read).await;
    let reject = Reject {
        close: true,
        ..Reject::forbidden(format!(
            "source address {} is not a configured instance",
            peer.ip()
        ))
    };
    let target = std::str::from_utf8(&buf)
        .ok()
        .and_then(|t| t.split(' ').nth(1))
        .unwrap_or("-")
        .to_string();
    if !buf.is_empty() && !tls::looks_like_tls(&buf) {
        let _ = tokio::time::timeout(
            STRANGER_WAIT,
            client.write_all(&reject.to_response(&target, true)),
        )
        .await;
    }
    let _ = client.shutdown().await;
    log_exchange(peer, "-", &target, &outcome_of(reject), Duration::ZERO);
}

/// Read until the first three bytes are in (enough for
/// [`tls::looks_like_tls`]), the first byte rules TLS out, the client
/// closes, or `timeout` passes. What was read stays in the buffer.
async fn first_bytes<S: Io>(client: &mut Peer<S>, timeout: Duration) {
    let read = async {
        while client.buf.len() < 3 && client.buf.first().is_none_or(|b| *b == 0x16) {
            client.buf.reserve(4 * 1024);
            match client.io.read_buf(&mut client.buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    // A client that says nothing in time is left to the HTTP loop's idle
    // timeout: plain HTTP clients may connect before they have a request.
    let _ = tokio::time::timeout(timeout, read).await;
}

/// The client's TLS handshake with `instance`'s certificate; the bytes
/// already read are replayed into it. `None` (logged) when it fails.
async fn accept_tls<S: Io>(
    client: Peer<S>,
    snapshot: &Snapshot,
    instance: &Instance,
    peer: SocketAddr,
) -> Option<Peer<tokio_rustls::server::TlsStream<Prefixed<S>>>> {
    let Some(acceptor) = &snapshot.acceptor else {
        tracing::warn!(
            client.addr = %peer, dst.instance = %instance.name,
            "TLS connection refused: no certificate source configured \
             (guard.tls.ca_cert/ca_key or the instance's tls.cert/tls.key)"
        );
        return None;
    };
    let io = Prefixed::new(client.buf, client.io);
    match acceptor
        .accept(io, instance, snapshot.config.guard.timeouts.handshake)
        .await
    {
        Ok(io) => Some(Peer {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
        }),
        Err(e) => {
            tracing::warn!(
                client.addr = %peer, dst.instance = %instance.name, reason = %e,
                "TLS connection refused"
            );
            None
        }
    }
}

/// Requests in order until the connection ends. Hands the connection back
/// when a `CONNECT` tunnel starts with TLS, with the target and the
/// instance whose certificate the client must be shown.
async fn http_loop<S: Io>(
    mut client: Peer<S>,
    peer: SocketAddr,
    mut origin: Origin,
    tls: bool,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Option<(Peer<S>, Target, Instance)> {
    let mut upstream: Option<Upstream> = None;
    let mut learned_org: Option<(SocketAddr, String)> = None;
    loop {
        let snapshot = shared.snapshot();
        let config = &snapshot.config;
        let limits = http_limits(config);
        let head = match next_request(&mut client, config, &limits, shutdown).await {
            Ok(Some(head)) => head,
            Ok(None) => return None,
            Err(reject) => {
                let _ = client.io.write_all(&reject.to_response("", true)).await;
                log_exchange(peer, "-", "-", &outcome_of(reject), Duration::ZERO);
                return None;
            }
        };
        let started = Instant::now();
        if head.method == "CONNECT" {
            match connect_tunnel(&mut client, config, peer, &origin, &head).await {
                Ok(Tunnel::Plain(target)) => {
                    origin = Origin::Tunnel(target);
                    continue;
                }
                Ok(Tunnel::Tls(target, instance)) => {
                    return Some((client, target, *instance));
                }
                Ok(Tunnel::Blind { host, port }) => {
                    blind_tunnel(client, &host, port, config, peer).await;
                    return None;
                }
                Err(reject) => {
                    let _ = client
                        .io
                        .write_all(&reject.to_response(&head.target, true))
                        .await;
                    log_exchange(
                        peer,
                        "CONNECT",
                        &head.target,
                        &outcome_of(reject),
                        started.elapsed(),
                    );
                    return None;
                }
            }
        }
        let mut outcome = Outcome::new();
        let result = exchange(
            &mut client,
            &mut upstream,
            &snapshot,
            &limits,
            peer,
            &origin,
            tls,
            &head,
            &mut outcome,
            &mut learned_org,
            shutdown,
        )
        .await;
        if let Err(reject) = result {
            // Close when the request body was not read (its bytes would be
            // taken for the next request) or the state is unclear.
            let close = reject.close || !outcome.keep_alive;
            let _ = client
                .io
                .write_all(&reject.to_response(&head.target, close))
                .await;
            outcome.status = reject.status;
            outcome.keep_alive = !close;
            outcome.reject = Some(reject);
        }
        log_exchange(
            peer,
            &head.method,
            &head.target,
            &outcome,
            started.elapsed(),
        );
        if !outcome.keep_alive || shutdown.is_cancelled() {
            let _ = client.io.shutdown().await;
            return None;
        }
    }
}

fn outcome_of(reject: Reject) -> Outcome {
    let mut o = Outcome::new();
    o.status = reject.status;
    o.reject = Some(reject);
    o
}

fn http_limits(config: &Config) -> http::Limits {
    let l = &config.guard.limits;
    http::Limits {
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_body_bytes: l.max_body_bytes,
        ..http::Limits::default()
    }
}

/// Wait for the next request head. `Ok(None)`: the client closed between
/// requests, stayed idle too long, or the guard is shutting down.
async fn next_request<S: Io>(
    client: &mut Peer<S>,
    config: &Config,
    limits: &http::Limits,
    shutdown: &CancellationToken,
) -> Result<Option<RequestHead>, Reject> {
    let t = &config.guard.timeouts;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if !client.buf.is_empty() {
            match http::parse_request(&client.buf, limits) {
                Ok(Some((head, len))) => {
                    let _ = client.buf.split_to(len);
                    return Ok(Some(head));
                }
                Ok(None) => {}
                Err(e) => return Err(Reject::fatal(e.status(), Side::Client, e.to_string())),
            }
            // The head has started: it must be complete within `head`.
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + t.head);
        }
        client.buf.reserve(16 * 1024);
        let read = client.io.read_buf(&mut client.buf);
        let n = match deadline {
            None => tokio::select! {
                r = tokio::time::timeout(t.idle, read) => match r {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                },
                _ = shutdown.cancelled() => return Ok(None),
            },
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r,
                Err(_) => return Err(Reject::fatal(408, Side::Client, "request head timed out")),
            },
        };
        match n {
            Ok(0) if client.buf.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(Reject::fatal(
                    400,
                    Side::Client,
                    "connection closed inside a request head",
                ))
            }
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
}

/// What a `CONNECT` tunnel carries.
enum Tunnel {
    /// Plain HTTP to this target.
    Plain(Target),
    /// TLS to this target, terminated with this instance's certificate.
    Tls(Target, Box<Instance>),
    /// TLS to a host of `allowlist.domains`: relayed as it is.
    Blind {
        /// The listed host.
        host: String,
        /// The port asked for.
        port: u16,
    },
}

/// Answer a `CONNECT` on a proxy listener: route it, then the rest of the
/// connection is a tunnel to that target.
async fn connect_tunnel<S: Io>(
    client: &mut Peer<S>,
    config: &Config,
    peer: SocketAddr,
    origin: &Origin,
    head: &RequestHead,
) -> Result<Tunnel, Reject> {
    if *origin != Origin::Proxy {
        return Err(Reject::fatal(
            400,
            Side::Client,
            "CONNECT is only for proxy listeners",
        ));
    }
    let (host, port) = super::route::parse_authority(&head.target, 443)
        .filter(|_| head.target.contains(':'))
        .ok_or_else(|| {
            Reject::fatal(
                400,
                Side::Client,
                format!("bad CONNECT target {}", escape(&head.target)),
            )
        })?;
    let target = Target::Name { host, port };
    let routed = route(config, peer.ip(), &target, "https", "/", None)
        .map_err(|r| Reject { close: true, ..r })?;
    client
        .io
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .map_err(|e| Reject::fatal(400, Side::Client, format!("write: {e}")))?;
    first_bytes(client, config.guard.timeouts.handshake).await;
    if !tls::looks_like_tls(&client.buf) {
        // A plain tunnel carries HTTP that is judged like any other request.
        return Ok(Tunnel::Plain(target));
    }
    match routed.destination {
        Destination::Instance(id) => {
            let instance = config.instance(id).clone();
            Ok(Tunnel::Tls(target, Box::new(instance)))
        }
        // A domain of `allowlist.domains` may be reached on any path,
        // uninspected (the older guard's meaning), so its TLS is relayed as
        // it is. A listed URL names one path, which only interception could
        // check: refused over TLS (the guard mints certificates for
        // instances only).
        Destination::Allowlisted { host, port } => {
            if port != 443 {
                // A blind tunnel is TLS to a web host, not a relay to any
                // port of it.
                Err(Reject::fatal(
                    403,
                    Side::Client,
                    format!("TLS to the allowlisted host {host} is relayed on port 443 only"),
                ))
            } else if config
                .allowlist
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&host))
            {
                Ok(Tunnel::Blind { host, port })
            } else {
                Err(Reject::fatal(
                    501,
                    Side::Guard,
                    format!("TLS to the allowlisted URL host {host} is not intercepted"),
                ))
            }
        }
    }
}

/// One request and its response.
#[allow(clippy::too_many_arguments)]
async fn exchange<S: Io>(
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
    if let Some(token) = http::head::connection_tokens(&head.headers)
        .find(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
    {
        return Err(Reject::fatal(
            400,
            Side::Client,
            format!(
                "Connection names {}: only close and keep-alive are accepted",
                escape(token)
            ),
        ));
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
            caps: decode_caps(config),
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
    let reusable = upstream.as_ref().is_some_and(|u| {
        u.addr == upstream_addr
            && u.tls == upstream_tls.is_some()
            && Arc::ptr_eq(&u.connector, &snapshot.connector)
    });
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
    // An error answer where a document was expected is not judged, so its
    // body never reaches the client: it is read (a large one is refused)
    // and replaced by the guard's own error text below. MISP's REST errors
    // are small JSON objects and MISP only logs them.
    // Only pulls: the error answers to a push (MISP's save-fail texts, which
    // the pushing MISP reads, e.g. "not newer than the local copy") pass,
    // small.
    let replace_error = !success
        && exchange
            .as_ref()
            .is_some_and(|x| x.response.is_some() && x.direction == Direction::Pull);
    let mut body_limits = limits.clone();
    if replace_error {
        body_limits.max_body_bytes = body_limits.max_body_bytes.min(MAX_ERROR_ANSWER);
    }
    let job = match (response_doc, &exchange) {
        (Some(doc), Some(_)) => Some(Job {
            config: config.clone(),
            instance: answer_rules,
            doc,
            coding: response_coding,
            caps: decode_caps(config),
            context: Context {
                user_org_uuid: user_org,
            },
        }),
        _ => None,
    };
    let mut hold = Hold::new(
        config.guard.limits.hold_memory_bytes,
        config.guard.limits.max_spill_bytes,
    );
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
fn plain_refused(origin: &Origin, instance: &Instance) -> bool {
    let t = &instance.settings.tls;
    *origin != Origin::Proxy && t.upstream && !t.allow_plain_http
}

/// Relay a `CONNECT` tunnel to an allowlisted domain byte for byte.
async fn blind_tunnel<S: Io>(
    mut client: Peer<S>,
    host: &str,
    port: u16,
    config: &Config,
    peer: SocketAddr,
) {
    let started = Instant::now();
    let target = format!("{host}:{port}");
    let upstream = async {
        let addrs = resolve_allowlisted(config, host, port).await?;
        // `resolve` answers at least one address or an error.
        let first = addrs
            .first()
            .copied()
            .ok_or_else(|| Reject::fatal(502, Side::Upstream, "no address"))?;
        upstream::connect(
            first,
            config.guard.upstream_mark,
            config.guard.timeouts.connect,
            config.guard.timeouts.body_idle,
        )
        .await
    }
    .await;
    let mut up = match upstream {
        Ok(up) => up,
        Err(reject) => {
            log_exchange(
                peer,
                "CONNECT",
                &target,
                &outcome_of(reject),
                started.elapsed(),
            );
            return;
        }
    };
    // A tunnel nobody talks through ends: the upstream side's reads time
    // out after the keep-alive idle time (the client side's writes already
    // time out).
    up.as_mut()
        .set_read_timeout_pinned(Some(config.guard.timeouts.idle));
    let prefix = client.buf.split().freeze();
    let copied = async {
        up.write_all(&prefix).await?;
        tokio::io::copy_bidirectional(&mut client.io, &mut up).await
    }
    .await;
    let (sent, received) = copied
        .map(|(a, b)| (a + prefix.len() as u64, b))
        .unwrap_or((prefix.len() as u64, 0));
    let connected = up
        .get_ref()
        .peer_addr()
        .map_or_else(|_| "-".to_string(), |a| a.to_string());
    tracing::info!(
        client.addr = %peer, dst.instance = %format!("allowlist:{host}"), dst.addr = %connected,
        method = "CONNECT", path = %escape(&target),
        verdict = "allow", bytes.request = sent, bytes.response = received,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "allowlisted domain tunnelled without inspection"
    );
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
async fn resolve_allowlisted(
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

fn decode_caps(config: &Config) -> DecodeCaps {
    DecodeCaps {
        max_decoded_bytes: config.guard.limits.max_decoded_bytes,
        max_ratio: config.guard.limits.max_decode_ratio,
        ..DecodeCaps::default()
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

/// Read one body into `hold`, feeding the rule engine when a `job` is given.
/// Returns the verdict (an uninspected body passes).
async fn take_body<S: AsyncRead + Unpin>(
    peer: &mut Peer<S>,
    kind: BodyKind,
    job: Option<Job>,
    hold: &mut Hold,
    config: &Config,
    limits: &http::Limits,
    side: Side,
) -> Result<Verdict, Reject> {
    let too_large = |n: u64| {
        let status = if side == Side::Client { 413 } else { 502 };
        Reject::fatal(
            status,
            side,
            format!(
                "body of {n} bytes is over the limit of {}",
                limits.max_body_bytes
            ),
        )
    };
    if let BodyKind::Length(n) = kind {
        if n > limits.max_body_bytes {
            return Err(too_large(n));
        }
    }
    let mut inspection = job.map(Inspection::start);
    let spill_dir = config.guard.spill_dir.clone();
    let mut rate = Rate::new(config);
    let store = |hold: &mut Hold, piece: &[u8]| -> Result<(), Reject> {
        hold.push(piece, &spill_dir)
            .map_err(|e| Reject::fatal(503, Side::Guard, format!("cannot hold body: {e}")))?;
        if hold.len() > limits.max_body_bytes {
            return Err(too_large(hold.len()));
        }
        Ok(())
    };
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(n) => {
            let mut left = n;
            while left > 0 {
                if peer.buf.is_empty() {
                    read_more(peer, &mut rate, side, false).await?;
                }
                let take = (peer.buf.len() as u64).min(left) as usize;
                let piece = peer.buf.split_to(take).freeze();
                left -= take as u64;
                store(hold, &piece)?;
                feed(&mut inspection, piece).await;
            }
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            loop {
                match decoder.decode(&mut peer.buf, limits) {
                    Ok(Chunk::Data(piece)) => {
                        store(hold, &piece)?;
                        feed(&mut inspection, piece).await;
                    }
                    Ok(Chunk::NeedMore) => {
                        read_more(peer, &mut rate, side, false).await?;
                    }
                    Ok(Chunk::Done) => break,
                    Err(e) => {
                        let status = if side == Side::Client {
                            e.status()
                        } else {
                            502
                        };
                        return Err(Reject::fatal(status, side, e.to_string()));
                    }
                }
            }
        }
        BodyKind::CloseDelimited => loop {
            if !peer.buf.is_empty() {
                let piece = peer.buf.split().freeze();
                store(hold, &piece)?;
                feed(&mut inspection, piece).await;
            }
            if !read_more(peer, &mut rate, side, true).await? {
                break;
            }
        },
    }
    match inspection {
        Some(i) => match i.finish().await {
            Judged::Verdict(v) => Ok(v),
            Judged::Limit(status, reason) => {
                Err(Reject::fatal(side_status(side, status, 502), side, reason))
            }
        },
        None => Ok(Verdict::Allow(Pass::uninspected())),
    }
}

async fn feed(inspection: &mut Option<Inspection>, piece: Bytes) {
    if let Some(i) = inspection {
        i.feed(piece).await;
    }
}

/// Body pacing: an idle limit per read and a minimum average rate, so a
/// slow client cannot hold a worker forever.
struct Rate {
    started: Instant,
    bytes: u64,
    idle: Duration,
    min_rate: u64,
}

/// The average rate is judged only after this long.
const RATE_GRACE: Duration = Duration::from_secs(10);

impl Rate {
    fn new(config: &Config) -> Rate {
        Rate {
            started: Instant::now(),
            bytes: 0,
            idle: config.guard.timeouts.body_idle,
            min_rate: config.guard.timeouts.min_body_rate,
        }
    }
}

/// Read more bytes into the buffer. `Ok(false)` at end of stream when
/// `eof_ok`, else end of stream is a truncated body.
async fn read_more<S: AsyncRead + Unpin>(
    peer: &mut Peer<S>,
    rate: &mut Rate,
    side: Side,
    eof_ok: bool,
) -> Result<bool, Reject> {
    // A broken or slow answer from upstream is the gateway's failure, not
    // the client's.
    let (broken, slow) = if side == Side::Client {
        (400, 408)
    } else {
        (502, 504)
    };
    peer.buf.reserve(READ_CHUNK);
    let n = match tokio::time::timeout(rate.idle, peer.io.read_buf(&mut peer.buf)).await {
        Err(_) => return Err(Reject::fatal(slow, side, "body stalled")),
        // Over TLS this includes an end without close_notify, which could
        // be a truncation, so a close-delimited body is refused then.
        Ok(Err(e)) => return Err(Reject::fatal(broken, side, format!("reading body: {e}"))),
        Ok(Ok(n)) => n,
    };
    if n == 0 {
        if eof_ok {
            return Ok(false);
        }
        return Err(Reject::fatal(
            broken,
            side,
            "connection closed inside a body",
        ));
    }
    rate.bytes += n as u64;
    let elapsed = rate.started.elapsed();
    if elapsed > RATE_GRACE && rate.bytes < rate.min_rate.saturating_mul(elapsed.as_secs()) {
        return Err(Reject::fatal(
            slow,
            side,
            "body arrives slower than the minimum rate",
        ));
    }
    Ok(true)
}

/// The status for a failure of the client's message, or of the upstream's
/// (which the client must see as a gateway error).
fn side_status(side: Side, client: u16, upstream: u16) -> u16 {
    if side == Side::Upstream {
        upstream
    } else {
        client
    }
}

/// The one log line of an exchange.
fn log_exchange(peer: SocketAddr, method: &str, target: &str, o: &Outcome, took: Duration) {
    let path = escape(target);
    let method = escape(method);
    let src = o.source.as_deref().unwrap_or("-");
    let dst = o.destination.as_deref().unwrap_or("-");
    let ms = took.as_secs_f64() * 1000.0;
    match &o.reject {
        None => tracing::info!(
            client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
            verdict = "allow", status = o.status, bytes.request = o.bytes_in, bytes.response = o.bytes_out,
            duration_ms = ms, "exchange allowed"
        ),
        Some(r) => {
            let (rule, value, at) = match &r.block {
                Some(b) => (b.rule.name(), escape(&b.value), escape(&b.at)),
                None => ("-", String::new(), String::new()),
            };
            tracing::warn!(
                client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
                verdict = "block", status = r.status, side = %r.side, rule = rule, value = %value, at = %at,
                reason = %escape(&r.reason), bytes.request = o.bytes_in, bytes.response = o.bytes_out,
                duration_ms = ms, "exchange blocked"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with one instance on `port` and `guard.tls` as given.
    fn config(port: u16, tls: serde_json::Value, instance_tls: serde_json::Value) -> Config {
        let v = serde_json::json!({
            "compartments_rules": { "can_reach": { "c": ["c"] } },
            "instances": {
                "a": {
                    "ip": "10.0.0.1", "host": "a.example", "port": port,
                    "compartment_id": "c", "affiliation": "",
                    "taxonomies_rules": { "required_taxonomies": [], "allowed_tags": {}, "blocked_tags": [] },
                    "blocked_distribution_levels": [], "blocked_sharing_groups_uuids": [],
                    "blocked_attribute_types": [], "blocked_attribute_categories": [],
                    "blocked_object_types": []
                }
            },
            "guard": { "tls": tls, "instances": { "a": { "tls": instance_tls } } }
        });
        Config::from_json_str(&v.to_string()).unwrap().0
    }

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

    #[test]
    fn snapshot_without_certificates_has_no_acceptor() {
        let s = Snapshot::build(config(80, serde_json::json!({}), serde_json::json!({}))).unwrap();
        assert!(s.acceptor.is_none());
    }

    #[test]
    fn snapshot_with_a_ca_mints_and_bad_material_refuses_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let files = tls::ca_init(dir.path()).unwrap();
        let good = serde_json::json!({
            "ca_cert": files.cert, "ca_key": files.key, "upstream_ca_bundle": files.cert,
        });
        let s = Snapshot::build(config(443, good, serde_json::json!({}))).unwrap();
        assert!(s.acceptor.is_some());

        let missing = dir.path().join("missing.key");
        let bad = serde_json::json!({
            "ca_cert": files.cert, "ca_key": missing, "upstream_ca_bundle": files.cert,
        });
        let e = Snapshot::build(config(443, bad, serde_json::json!({})))
            .err()
            .expect("a missing key is refused");
        assert!(e.to_string().contains("missing.key"), "{e}");
    }
}
