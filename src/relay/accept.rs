//! A connection's first bytes: whether it speaks TLS, and if so its
//! ClientHello checked by the guard and the handshake with the certificate
//! of the instance it was going to. Used by the request loop and by the
//! one-answer refusals alike.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::io::{Io, Peer, Prefixed};
use super::snapshot::Snapshot;
use crate::config::Instance;
use crate::telemetry::metrics::metrics;
use crate::tls;

/// Read until the first three bytes are in (enough for
/// [`tls::looks_like_tls`]), the first byte rules TLS out, the client
/// closes, or `timeout` passes. What was read stays in the buffer.
pub(super) async fn first_bytes<S: Io>(client: &mut Peer<S>, timeout: Duration) {
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
/// already read are replayed into it. Its first record is read whole and
/// checked by the guard first (the SNI must name `instance`, also as an
/// address). `None` (logged) when it fails.
pub(super) async fn accept_tls<S: Io>(
    mut client: Peer<S>,
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
    let timeout = snapshot.config.guard.timeouts.handshake;
    let hello = read_client_hello(&mut client, timeout)
        .await
        .and_then(|()| tls::check_client_hello(&client.buf, instance));
    if let Err(e) = hello {
        count_failure(&e);
        tracing::warn!(
            client.addr = %peer, dst.instance = %instance.name, reason = %e,
            "TLS connection refused"
        );
        return None;
    }
    let io = Prefixed::new(client.buf, client.io);
    match acceptor.accept(io, instance, timeout).await {
        Ok(io) => Some(Peer {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
        }),
        Err(e) => {
            count_failure(&e);
            tracing::warn!(
                client.addr = %peer, dst.instance = %instance.name, reason = %e,
                "TLS connection refused"
            );
            None
        }
    }
}

/// Count a client's failed handshake by its reason.
fn count_failure(e: &tls::Error) {
    if let Some(kind) = e.handshake_kind() {
        metrics().tls_failure(tls::Side::Client.name(), kind);
    }
}

/// Read until the client's first TLS record is whole in the buffer (at
/// most 5 + 2^14 bytes), within `timeout`.
async fn read_client_hello<S: Io>(
    client: &mut Peer<S>,
    timeout: Duration,
) -> Result<(), tls::Error> {
    let read = async {
        loop {
            if let Some(len) = tls::client_hello_len(&client.buf)? {
                if client.buf.len() >= len {
                    return Ok(());
                }
                client.buf.reserve(len - client.buf.len());
            } else {
                client.buf.reserve(1024);
            }
            match client.io.read_buf(&mut client.buf).await {
                Ok(0) => {
                    return Err(tls::Error::Handshake {
                        side: tls::Side::Client,
                        reason: "connection closed inside the ClientHello".into(),
                    })
                }
                Ok(_) => {}
                Err(source) => {
                    return Err(tls::Error::Io {
                        side: tls::Side::Client,
                        source,
                    })
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| tls::Error::Timeout {
            side: tls::Side::Client,
        })?
}
