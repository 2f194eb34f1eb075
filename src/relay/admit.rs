//! Phase 1 of an exchange, `admit`: may this request head go anywhere at
//! all? Header sanity, where it goes ([`super::route`]: source and
//! destination instance, compartments, `Host`), which exchange of the sync
//! table it is and the header checks of [`crate::sync`], or the allowlist
//! entry it matches. Nothing is read beyond the head and nothing touches the
//! network, so `misp-guard check` admits with the same function. Then
//! [`locate`], the one network step before the body is read: the address
//! the request goes to (DNS, for allowlisted hosts only).
//!
//! Refuses: ambiguous or doubled headers, `Connection` naming a header
//! (400), unknown instances, unreachable compartments, a `Host` naming
//! another instance, plain HTTP to an instance reached over TLS, exchanges
//! outside the table, method or URL override headers, bodies not declared
//! as JSON or where the exchange has none (403).

use std::net::SocketAddr;

use super::body::is_empty;
use super::conn::{plain_refused, upstream_over_tls, Origin, Via};
use super::log::Outcome;
use super::reject::{Reject, Side};
use super::route::{escape, parse_authority, route, Destination, Route, Target};
use super::snapshot::Snapshot;
use super::upstream::{self, Dial};
use crate::config::{Config, InstanceId};
use crate::http::{self, BodyKind, RequestHead};
use crate::rules::Receiver;
use crate::sync;

/// Request headers that must appear at most once.
const SINGLE_HEADERS: &[&str] = &[
    "authorization",
    "accept",
    "user-agent",
    "if-none-match",
    "x-pgp-signature",
];

/// An admitted request: where it goes and what its body must be.
pub(super) struct Admitted {
    /// The origin-form path and query it goes on with.
    pub(super) path: String,
    /// The request body's framing.
    pub(super) body: BodyKind,
    /// The instance the connection comes from.
    pub(super) source: InstanceId,
    /// Where it goes.
    pub(super) to: To,
    /// The codings the client accepts that the guard can also decode, in
    /// the client's order.
    pub(super) offered: Vec<&'static str>,
}

/// Where an admitted request goes.
pub(super) enum To {
    /// An instance; the request is this exchange of the sync table.
    Instance {
        /// The instance.
        id: InstanceId,
        /// The exchange.
        exchange: sync::Exchange,
    },
    /// A host of the allowlist: relayed uninspected.
    Allowlisted {
        /// The listed host.
        host: String,
        /// The port asked for.
        port: u16,
        /// Where the client wanted to go (a transparent connection's
        /// original destination, which the host must resolve to).
        target: Target,
    },
}

impl Admitted {
    /// The exchange of the sync table, for a request to an instance.
    pub(super) fn exchange(&self) -> Option<&sync::Exchange> {
        match &self.to {
            To::Instance { exchange, .. } => Some(exchange),
            To::Allowlisted { .. } => None,
        }
    }

    /// Whose rules an answer is judged under. A body is judged under the
    /// rules of the instance whose data it is: the request's are the
    /// source's, the answer's the destination's (a pull's event, but also
    /// what the remote answers a push with).
    pub(super) fn answer_rules(&self) -> InstanceId {
        match &self.to {
            To::Instance { id, .. } => *id,
            To::Allowlisted { .. } => self.source,
        }
    }

    /// The instance the request's body goes to: the destination.
    pub(super) fn request_receiver(&self, config: &Config) -> Option<Receiver> {
        match &self.to {
            To::Instance { id, .. } => Some(receiver(config, *id)),
            To::Allowlisted { .. } => None,
        }
    }

    /// The instance the answer goes to: the source.
    pub(super) fn answer_receiver(&self, config: &Config) -> Option<Receiver> {
        Some(receiver(config, self.source))
    }
}

/// Instance `id` as sharing groups' server entries name it.
fn receiver(config: &Config, id: InstanceId) -> Receiver {
    let i = config.instance(id);
    Receiver::new(&i.host, i.ip, i.port)
}

/// Admit the request `head` that arrived `via`, under `config`. Records in
/// `outcome` who talks to whom as soon as that is known, for the log.
pub(super) fn admit(
    head: &RequestHead,
    via: &Via,
    config: &Config,
    outcome: &mut Outcome,
) -> Result<Admitted, Reject> {
    let body = http::request_body(head)
        .map_err(|e| Reject::fatal(e.status(), Side::Client, e.to_string()))?;
    // Until the body is consumed, a refusal must close the connection.
    outcome.keep_alive = is_empty(body) && !http::connection_close(head);
    sane(head)?;
    let (target, path) = target_of(head, &via.origin)?;
    let host_header = single_header(head, "host")?
        .ok_or_else(|| Reject::fatal(400, Side::Client, "missing Host header"))?;
    let Route {
        source,
        destination,
    } = route(
        config,
        via.peer.ip(),
        &target,
        if via.tls { "https" } else { "http" },
        &path,
        Some(&host_header),
    )?;
    outcome.source = Some(config.instance(source).name.clone());
    let to = match destination {
        Destination::Instance(id) => {
            outcome.destination = Some(config.instance(id).name.clone());
            let exchange = exchange_of(head, via, config, id, &path, body)?;
            let direction = match exchange.direction {
                sync::Direction::Push => "push",
                sync::Direction::Pull => "pull",
            };
            outcome.endpoint = Some((exchange.name, direction));
            To::Instance { id, exchange }
        }
        Destination::Allowlisted { host, port } => {
            outcome.destination = Some(format!("allowlist:{host}"));
            To::Allowlisted { host, port, target }
        }
    };
    Ok(Admitted {
        path,
        body,
        source,
        to,
        offered: offered_codings(head),
    })
}

/// The header checks that come before routing.
fn sane(head: &RequestHead) -> Result<(), Reject> {
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
    Ok(())
}

/// Where the request goes, as the client asked, and its origin-form path.
fn target_of(head: &RequestHead, origin: &Origin) -> Result<(Target, String), Reject> {
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
    Ok((target, path))
}

/// The exchange of the sync table a request to instance `id` is, with the
/// checks of its headers and body declaration.
fn exchange_of(
    head: &RequestHead,
    via: &Via,
    config: &Config,
    id: InstanceId,
    path: &str,
    body: BodyKind,
) -> Result<sync::Exchange, Reject> {
    let instance = config.instance(id);
    if !via.tls && plain_refused(&via.origin, instance) {
        return Err(Reject::forbidden(format!(
            "plain HTTP to {}, which is reached over TLS: the client must use TLS \
             (or set allow_plain_http for this instance)",
            instance.name
        )));
    }
    let exchange = sync::classify(&head.method, path, &instance.settings.base_path)
        .map_err(|r| Reject::forbidden(r.to_string()))?;
    let headers = || {
        head.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_ref()))
    };
    sync::check_request_headers(headers()).map_err(|r| Reject::forbidden(r.to_string()))?;
    if !is_empty(body) {
        sync::check_body_type(headers()).map_err(|r| Reject::forbidden(r.to_string()))?;
    }
    if exchange.request.is_none() && !is_empty(body) {
        return Err(Reject::forbidden(format!(
            "{} carries no body",
            exchange.name
        )));
    }
    Ok(exchange)
}

/// Where the admitted request goes upstream, and how: an instance at its
/// configured address, over TLS when it is reached so; an allowlisted host
/// in plain HTTP, at an address it resolves to.
pub(super) async fn locate<'s>(
    admitted: &Admitted,
    via: &Via,
    snapshot: &'s Snapshot,
) -> Result<Dial<'s>, Reject> {
    let config = &snapshot.config;
    let (addr, tls) = match &admitted.to {
        To::Instance { id, .. } => {
            let instance = config.instance(*id);
            let tls = upstream_over_tls(&via.origin, instance).then_some(instance);
            (SocketAddr::new(instance.ip, instance.port), tls)
        }
        To::Allowlisted { host, port, target } => {
            if via.tls {
                // The guard has no certificate to check such a host with
                // and would reach it in plain; the client meant TLS.
                return Err(Reject::forbidden(format!(
                    "the allowlisted host {host} is relayed over plain HTTP only, not inside TLS"
                )));
            }
            (allowlisted_addr(config, host, *port, target).await?, None)
        }
    };
    Ok(Dial {
        addr,
        connector: &snapshot.connector,
        tls,
    })
}

/// A `Connection` token other than `close` and `keep-alive`: one that would
/// remove a header on forwarding (RFC 9110 §7.6.1).
pub(super) fn odd_connection_token(headers: &[http::Header]) -> Option<&str> {
    http::head::connection_tokens(headers)
        .find(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
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
    let (host, port) = parse_authority(authority, 80).ok_or_else(bad)?;
    Ok((Target::Name { host, port }, path.to_string()))
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
    let addrs = upstream::resolve_allowlisted(config, host, port).await?;
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
