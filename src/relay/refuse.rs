//! Before any slot: connections the guard answers once and closes,
//! each kind on a small pool of its own, so that neither a flood of
//! strangers nor a burst past the connection cap holds an instance's slot,
//! and the client still learns why (curl's "Empty reply from server" says
//! nothing).
//!
//! Refuses: a source address that is no instance (403), an instance's
//! connection past `limits.max_connections` (503, also inside TLS: MISP
//! sync runs over HTTPS, and curl logs the status and the JSON).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::accept::{accept_tls, first_bytes};
use super::conn::Origin;
use super::io::{Io, Peer};
use super::log::{log_exchange, outcome_of};
use super::reject::{Reject, Side};
use super::snapshot::Shared;
use crate::config::Enforcement;
use crate::tls;

/// How long a connection from an address that is no instance may take to
/// say what it wants before it is closed.
const STRANGER_WAIT: Duration = Duration::from_secs(2);

/// How long a connection past the cap may take, TLS handshake included,
/// to receive its 503.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// Answer a connection from an address that is no configured instance: a
/// 403 to the first request head (so an operator sees why), nothing to a
/// TLS handshake, and close. It never holds an instance's slot.
pub async fn refuse_stranger<S: Io>(client: S, peer: SocketAddr, mode: Enforcement) {
    let mut client = Peer {
        io: client,
        buf: BytesMut::with_capacity(4096),
    };
    let reject = Reject {
        close: true,
        ..Reject::forbidden(format!(
            "source address {} is not a configured instance",
            peer.ip()
        ))
    };
    let target = answer_once(&mut client, &reject, STRANGER_WAIT).await;
    log_exchange(
        peer,
        "-",
        &target,
        &outcome_of(reject, mode),
        Duration::ZERO,
    );
}

/// Answer an instance's connection past `limits.max_connections` with a
/// 503 to its first request (after the TLS handshake, when it speaks TLS
/// to a transparent listener), and close.
pub async fn refuse_busy<S: Io>(client: S, peer: SocketAddr, origin: Origin, shared: Arc<Shared>) {
    let snapshot = shared.snapshot();
    let config = &snapshot.config;
    let reject = Reject::fatal(
        503,
        Side::Guard,
        format!(
            "too many connections: all {} of limits.max_connections are in use; try again later",
            config.guard.limits.max_connections
        ),
    );
    let answered = async {
        let mut client = Peer {
            io: client,
            buf: BytesMut::with_capacity(4096),
        };
        first_bytes(&mut client, BUSY_WAIT).await;
        if !tls::looks_like_tls(&client.buf) {
            return answer_once(&mut client, &reject, BUSY_WAIT).await;
        }
        // Over TLS the answer needs the handshake with the certificate of
        // the instance the client was going to (transparent listeners
        // only: on a proxy listener the first request is a plain CONNECT).
        let Origin::Transparent(dst) = origin else {
            return "-".to_string();
        };
        let Ok(id) = config.destination_by_addr(dst) else {
            return "-".to_string();
        };
        match accept_tls(client, &snapshot, config.instance(id), peer).await {
            Some(mut client) => answer_once(&mut client, &reject, BUSY_WAIT).await,
            None => "-".to_string(),
        }
    };
    let target = tokio::time::timeout(BUSY_WAIT, answered)
        .await
        .unwrap_or_else(|_| "-".to_string());
    let mut outcome = outcome_of(reject, config.guard.mode);
    outcome.source = config
        .source(peer.ip())
        .map(|id| config.instance(id).name.clone());
    log_exchange(peer, "-", &target, &outcome, Duration::ZERO);
}

/// Read the first request head (up to 8 KiB, within `wait`), answer it
/// with `reject` unless the client speaks TLS, and close. The request
/// target, for the log.
async fn answer_once<S: Io>(client: &mut Peer<S>, reject: &Reject, wait: Duration) -> String {
    let read = async {
        while !client.buf.windows(4).any(|w| w == b"\r\n\r\n") && client.buf.len() < 8192 {
            client.buf.reserve(4096);
            match client.io.read_buf(&mut client.buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    let target = std::str::from_utf8(&client.buf)
        .ok()
        .and_then(|t| t.split(' ').nth(1))
        .unwrap_or("-")
        .to_string();
    if !client.buf.is_empty() && !tls::looks_like_tls(&client.buf) {
        let _ = tokio::time::timeout(
            wait,
            client.io.write_all(&reject.to_response(&target, true)),
        )
        .await;
    }
    let _ = client.io.shutdown().await;
    target
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::tests::config;
    use super::super::snapshot::Snapshot;
    use super::*;
    use tokio::sync::watch;

    #[tokio::test]
    async fn a_connection_past_the_cap_gets_a_503_in_json_and_is_closed() {
        let config = config(80, serde_json::json!({}), serde_json::json!({}));
        let (_tx, rx) = watch::channel(Arc::new(Snapshot::build(config).unwrap()));
        let shared = Arc::new(Shared { current: rx });
        let (mut far, near) = tokio::io::duplex(4096);
        far.write_all(b"GET /servers/getVersion HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .await
            .unwrap();
        refuse_busy(
            near,
            "10.0.0.1:40000".parse().unwrap(),
            Origin::Transparent("10.0.0.1:80".parse().unwrap()),
            shared,
        )
        .await;
        let mut answer = String::new();
        far.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["url"], "/servers/getVersion");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("limits.max_connections"), "{message}");
    }
}
