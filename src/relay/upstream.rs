//! Connecting to the destination.
//!
//! Instances are reached at their configured `ip` and `port` only, never
//! through DNS. Every upstream socket carries the configured firewall mark
//! (`SO_MARK`) so that the guard's own traffic is never redirected back to
//! it by the nftables rules.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio_io_timeout::TimeoutStream;

use tokio_rustls::client::TlsStream;

use super::reject::{Reject, Side};
use crate::addr::unmap;
use crate::config::{Config, Instance};
use crate::telemetry::metrics::metrics;
use crate::tls::{self, Connector};

/// Where an upstream connection goes and how: the address, the trust it is
/// verified with (the connector of the request's snapshot), and for TLS the
/// instance whose certificate it must present.
pub(super) struct Dial<'s> {
    /// The address connected to.
    pub(super) addr: SocketAddr,
    /// The trust in force for the request.
    pub(super) connector: &'s Arc<Connector>,
    /// The instance, when the connection is TLS.
    pub(super) tls: Option<&'s Instance>,
}

/// An upstream socket whose writes time out: an upstream that stops
/// reading must not hold the exchange (and its connection slot) forever.
pub type Stream = Pin<Box<TimeoutStream<TcpStream>>>;

/// Open a TCP connection to `addr` with the firewall `mark`; each write may
/// wait at most `write_timeout`.
pub async fn connect(
    addr: SocketAddr,
    mark: u32,
    timeout: Duration,
    write_timeout: Duration,
) -> Result<Stream, Reject> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| Reject::fatal(502, Side::Guard, format!("socket: {e}")))?;
    if mark != 0 {
        socket.set_mark(mark).map_err(|e| {
            Reject::fatal(
                502,
                Side::Guard,
                format!("cannot set firewall mark {mark:#x} on upstream socket (needs CAP_NET_ADMIN): {e}"),
            )
        })?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| Reject::fatal(502, Side::Guard, format!("socket: {e}")))?;
    let socket = TcpSocket::from_std_stream(socket.into());
    let stream = match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Reject::fatal(
                502,
                Side::Upstream,
                format!("connect to {addr}: {e}"),
            ))
        }
        Err(_) => {
            return Err(Reject::fatal(
                504,
                Side::Upstream,
                format!("connect to {addr}: timed out after {}s", timeout.as_secs()),
            ))
        }
    };
    // Requests and answers are written whole; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(write_timeout));
    Ok(Box::pin(stream))
}

/// The guard's TLS handshake with `instance` over `tcp`. The upstream's
/// certificate is always verified (unless the instance's config says
/// otherwise); a refusal is a 502 naming the reason, never a fallback to
/// plain HTTP.
pub async fn tls(
    connector: &Connector,
    tcp: Stream,
    instance: &Instance,
    timeout: Duration,
) -> Result<TlsStream<Stream>, Reject> {
    connector
        .connect(tcp, instance, timeout)
        .await
        .inspect_err(|e| {
            if let Some(kind) = e.handshake_kind() {
                metrics().tls_failure(tls::Side::Upstream.name(), kind);
            }
        })
        .map_err(|e| match e {
            tls::Error::Timeout { .. } => Reject::fatal(504, Side::Upstream, e.to_string()),
            other => Reject::fatal(502, Side::Upstream, other.to_string()),
        })
}

/// Resolve an allowlisted host. In transparent mode the caller also checks
/// that the original destination is among the answers.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Reject> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                Err(Reject::fatal(
                    502,
                    Side::Upstream,
                    format!("{host} has no address"),
                ))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(Reject::fatal(
            502,
            Side::Upstream,
            format!("cannot resolve {host}: {e}"),
        )),
    }
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
    let addrs = resolve(host, port).await?;
    for a in &addrs {
        let ip = unmap(*a).ip();
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
