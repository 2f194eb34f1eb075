//! A `CONNECT` on a proxy listener, and the tunnel it
//! opens (plain or TLS HTTP judged like any other, or a blind relay to an
//! allowlisted domain).

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use super::accept::first_bytes;
use super::conn::{plain_refused, Origin};
use super::io::{Io, Peer};
use super::log::{log_exchange, outcome_of};
use super::reject::{Reject, Side};
use super::route::{escape, route, Destination, Target};
use super::upstream;
use crate::config::{Config, Instance};
use crate::http::RequestHead;
use crate::telemetry::metrics::{self, metrics};
use crate::tls;

/// What a `CONNECT` tunnel carries.
pub(super) enum Tunnel {
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
pub(super) async fn connect_tunnel<S: Io>(
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
    if client.buf.is_empty() {
        if let Destination::Instance(id) = routed.destination {
            let instance = config.instance(id);
            if plain_refused(&Origin::Tunnel(target.clone()), instance) {
                // Plain HTTP would be refused: a client that says nothing
                // is not kept for the idle timeout.
                return Err(Reject::fatal(
                    408,
                    Side::Client,
                    format!(
                        "no TLS handshake within timeouts.handshake, and {} is reached over TLS only",
                        instance.name
                    ),
                ));
            }
        }
    }
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

/// Relay a `CONNECT` tunnel to an allowlisted domain byte for byte.
pub(super) async fn blind_tunnel<S: Io>(
    mut client: Peer<S>,
    host: &str,
    port: u16,
    config: &Config,
    peer: SocketAddr,
) {
    let started = Instant::now();
    let target = format!("{host}:{port}");
    let upstream = async {
        let addrs = upstream::resolve_allowlisted(config, host, port).await?;
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
                &outcome_of(reject, config.guard.mode),
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
    let dst = format!("allowlist:{host}");
    let src = config
        .source(peer.ip())
        .map_or("-", |id| config.instance(id).name.as_str());
    metrics().exchange(&metrics::Exchange {
        src,
        dst: &dst,
        endpoint: "-",
        direction: "-",
        outcome: metrics::Outcome::Allowed,
        rule: None,
        mode: config.guard.mode,
        bytes_in: sent,
        bytes_out: received,
        to_verdict: None,
        to_answer: None,
    });
    tracing::info!(
        client.addr = %peer, src.instance = src, dst.instance = %dst, dst.addr = %connected,
        method = "CONNECT", path = %escape(&target),
        verdict = "allow", mode = config.guard.mode.name(), bytes.in = sent, bytes.out = received,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "allowlisted domain tunnelled without inspection"
    );
}
