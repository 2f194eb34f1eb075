//! One client connection, from its first bytes (TLS or not: decided here,
//! terminated by [`super::accept`]) through its requests in order, each an
//! [`exchange`]; a `CONNECT` on a proxy listener makes the rest a tunnel
//! ([`super::tunnel`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::accept::{accept_tls, first_bytes};
use super::conn::{http_limits, plain_refused, Conn, Origin, Via};
use super::exchange::exchange;
use super::io::{Io, Peer};
use super::log::{log_exchange, outcome_of};
use super::reject::{Reject, Side};
use super::route::Target;
use super::snapshot::{Shared, Snapshot};
use super::tunnel::{blind_tunnel, connect_tunnel, Tunnel};
use crate::config::{Config, Instance};
use crate::http::{self, RequestHead};
use crate::tls;

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
                let via = Via {
                    peer,
                    origin,
                    tls: true,
                };
                http_loop(client, Conn::new(via, shutdown), &shared).await;
            }
            return;
        }
        if client.buf.is_empty() {
            if let Some(instance) = tls_only(&snapshot.config, &origin, dst) {
                tracing::warn!(
                    client.addr = %peer, dst.instance = %instance.name,
                    "connection closed: no TLS handshake within timeouts.handshake, and the \
                     instance is reached over TLS only (no allow_plain_http)"
                );
                return;
            }
        }
    }
    let via = Via {
        peer,
        origin,
        tls: false,
    };
    if let Some((client, target, instance)) =
        http_loop(client, Conn::new(via, shutdown.clone()), &shared).await
    {
        let snapshot = shared.snapshot();
        if let Some(client) = accept_tls(client, &snapshot, &instance, peer).await {
            // A CONNECT inside the tunnel is refused by `connect_tunnel`, so
            // this loop never hands back another tunnel.
            let via = Via {
                peer,
                origin: Origin::Tunnel(target),
                tls: true,
            };
            http_loop(client, Conn::new(via, shutdown), &shared).await;
        }
    }
}

/// The instance at `dst` when its clients must speak TLS: a client that
/// said nothing within the handshake timeout is then closed at once, not
/// kept for the idle timeout of a plain HTTP connection.
fn tls_only<'c>(config: &'c Config, origin: &Origin, dst: SocketAddr) -> Option<&'c Instance> {
    let instance = config.instance(config.destination_by_addr(dst).ok()?);
    plain_refused(origin, instance).then_some(instance)
}

/// Requests in order until the connection ends. Hands the connection back
/// when a `CONNECT` tunnel starts with TLS, with the target and the
/// instance whose certificate the client must be shown.
async fn http_loop<S: Io>(
    mut client: Peer<S>,
    mut conn: Conn,
    shared: &Shared,
) -> Option<(Peer<S>, Target, Instance)> {
    let peer = conn.via.peer;
    loop {
        // The snapshot is the one in force when the head arrived, not when
        // the wait began: a reload while the connection sat idle applies to
        // its next request (and a changed trust to its upstream).
        let (head, snapshot) = match next_request(&mut client, shared, &conn.shutdown).await {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(reject) => {
                let _ = client.io.write_all(&reject.to_response("", true)).await;
                let mode = shared.snapshot().config.guard.mode;
                log_exchange(peer, "-", "-", &outcome_of(reject, mode), Duration::ZERO);
                return None;
            }
        };
        if head.method == "CONNECT" {
            let started = Instant::now();
            let config = &snapshot.config;
            match connect_tunnel(&mut client, config, peer, &conn.via.origin, &head).await {
                Ok(Tunnel::Plain(target)) => {
                    conn.via.origin = Origin::Tunnel(target);
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
                        &outcome_of(reject, config.guard.mode),
                        started.elapsed(),
                    );
                    return None;
                }
            }
        }
        let outcome = exchange(&mut conn, &mut client, &head, &snapshot).await;
        if !outcome.keep_alive || conn.shutdown.is_cancelled() {
            let _ = client.io.shutdown().await;
            return None;
        }
    }
}

/// Wait for the next request head, and the snapshot in force when it was
/// complete (the one its exchange is judged under). `Ok(None)`: the client
/// closed between requests, stayed idle too long, or the guard is shutting
/// down.
async fn next_request<S: Io>(
    client: &mut Peer<S>,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<Option<(RequestHead, Arc<Snapshot>)>, Reject> {
    let t = shared.snapshot().config.guard.timeouts.clone();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if !client.buf.is_empty() {
            let snapshot = shared.snapshot();
            match http::parse_request(&client.buf, &http_limits(&snapshot.config)) {
                Ok(Some((head, len))) => {
                    let _ = client.buf.split_to(len);
                    return Ok(Some((head, snapshot)));
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

#[cfg(test)]
mod tests {
    use super::super::snapshot::tests::{config, config_json};
    use super::*;
    use tokio::sync::watch;

    /// A client that says nothing to a transparent listener: closed at the
    /// handshake timeout when the instance is reached over TLS only, else
    /// left to the idle timeout (a plain HTTP client may connect before it
    /// has a request).
    #[tokio::test]
    async fn a_silent_client_of_a_tls_only_instance_is_closed_at_the_handshake_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let files = tls::ca_init(dir.path()).unwrap();
        let guard_tls = serde_json::json!({
            "ca_cert": files.cert, "ca_key": files.key, "upstream_ca_bundle": files.cert,
        });
        let serve_silent = |allow_plain_http: bool| {
            let mut v = config_json(
                443,
                guard_tls.clone(),
                serde_json::json!({ "allow_plain_http": allow_plain_http }),
            );
            v["guard"]["timeouts"] = serde_json::json!({ "handshake": 0.05, "idle": 600 });
            let config = Config::from_json_str(&v.to_string()).unwrap().0;
            let (_tx, rx) = watch::channel(Arc::new(Snapshot::build(config).unwrap()));
            let shared = Arc::new(Shared { current: rx });
            let (far, near) = tokio::io::duplex(1024);
            let serving = serve(
                near,
                "10.0.0.9:40000".parse().unwrap(),
                Origin::Transparent("10.0.0.1:443".parse().unwrap()),
                shared,
                CancellationToken::new(),
            );
            (far, serving)
        };
        let (mut far, serving) = serve_silent(false);
        let ended = tokio::time::timeout(Duration::from_secs(30), serving).await;
        assert!(ended.is_ok(), "kept past the handshake timeout");
        let mut byte = [0u8; 1];
        assert_eq!(
            far.read(&mut byte).await.unwrap(),
            0,
            "closed, nothing said"
        );

        let (_far, serving) = serve_silent(true);
        let ended = tokio::time::timeout(Duration::from_millis(500), serving).await;
        assert!(ended.is_err(), "allow_plain_http: the idle timeout applies");
    }

    /// A reload while a keep-alive connection waits (here with half a head
    /// in) applies to the request whose head then completes.
    #[tokio::test]
    async fn a_request_is_judged_under_the_snapshot_in_force_when_its_head_arrives() {
        let snapshot = || {
            Arc::new(
                Snapshot::build(config(80, serde_json::json!({}), serde_json::json!({}))).unwrap(),
            )
        };
        let (old, new) = (snapshot(), snapshot());
        let (tx, rx) = watch::channel(old.clone());
        let shared = Shared { current: rx };
        let (mut far, near) = tokio::io::duplex(4096);
        let mut client = Peer {
            io: near,
            buf: BytesMut::new(),
        };
        let shutdown = CancellationToken::new();
        let (got, ()) = tokio::join!(next_request(&mut client, &shared, &shutdown), async {
            far.write_all(b"GET /servers/getVersion HTTP/1.1\r\n")
                .await
                .unwrap();
            tokio::task::yield_now().await;
            tx.send(new.clone()).unwrap();
            far.write_all(b"Host: a.example\r\n\r\n").await.unwrap();
        });
        let (head, judged_under) = got.unwrap().unwrap();
        assert_eq!(head.target, "/servers/getVersion");
        assert!(
            Arc::ptr_eq(&judged_under, &new),
            "judged under the old config"
        );
    }
}
