//! Step 1 of the path: accepting connections.
//!
//! A transparent listener receives connections that nftables redirected to
//! it and recovers where they were going (`SO_ORIGINAL_DST`); a connection
//! that has no original destination, or whose original destination is the
//! guard's own listener, was not redirected and is refused. A proxy
//! listener receives MISP's explicit-proxy requests (absolute-form and
//! `CONNECT`). Each connection gets one task; a semaphore caps how many run
//! at once; one past the cap, and one from an address that is no instance,
//! is answered once on a small pool of its own ([`relay::refuse_busy`],
//! [`relay::refuse_stranger`]). Whether a connection speaks TLS is decided
//! by [`relay::serve`] from its first bytes, not here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::addr::unmap;
use crate::relay::{self, Origin, Shared};
use crate::telemetry::metrics::metrics;

/// Connections from addresses that are no instance answered at once: a
/// few, so that a flood of them costs little and never takes the slots of
/// the instances.
const STRANGER_SLOTS: usize = 16;

/// Instances' connections past `limits.max_connections` answered with a
/// 503 at once: a few, for the same reason.
const BUSY_SLOTS: usize = 16;

/// What kind of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redirected traffic: the destination comes from the kernel.
    Transparent,
    /// Explicit proxy: the destination comes from the request.
    Proxy,
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding failed (address in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Bind a listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Accept connections until `shutdown`, each served by [`relay::serve`].
pub async fn run(
    listener: TcpListener,
    mode: Mode,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let strangers = Arc::new(Semaphore::new(STRANGER_SLOTS));
    let busy = Arc::new(Semaphore::new(BUSY_SLOTS));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = unmap(peer);
        // Only instances may hold a connection slot: any other address gets
        // one short answer on a small pool of its own, and is closed.
        if shared.snapshot().config.source(peer.ip()).is_none() {
            match strangers.clone().try_acquire_owned() {
                Ok(permit) => {
                    let mode = shared.snapshot().config.guard.mode;
                    tracker.spawn(async move {
                        relay::refuse_stranger(stream, peer, mode).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::warn!(client.addr = %peer, "connection refused: not an instance")
                }
            }
            continue;
        }
        let origin = match mode {
            Mode::Proxy => Origin::Proxy,
            // Not redirected: the kernel reports the socket's own address.
            Mode::Transparent => match original_dst(&stream, peer) {
                Ok(dst) if Some(dst) != stream.local_addr().ok().map(unmap) => {
                    Origin::Transparent(dst)
                }
                Ok(dst) => {
                    tracing::warn!(client.addr = %peer, dst.addr = %dst, "connection refused: not redirected (original destination is the guard itself)");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(client.addr = %peer, error = %e, "connection refused: no original destination");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            // Past the cap: a short 503 (so MISP logs why) on a pool of its
            // own; when that is full too, closed with nothing said.
            match busy.clone().try_acquire_owned() {
                Ok(refusing) => {
                    let shared = shared.clone();
                    tracker.spawn(async move {
                        relay::refuse_busy(stream, peer, origin, shared).await;
                        drop(refusing);
                    });
                }
                Err(_) => tracing::warn!(
                    client.addr = %peer,
                    "connection refused: too many connections, and too many being answered so"
                ),
            }
            continue;
        };
        // A client that stops reading must not hold its slot forever: every
        // write to it may wait at most `body_idle`.
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(shared.snapshot().config.guard.timeouts.body_idle));
        let stream = Box::pin(stream);
        let span = match &origin {
            Origin::Transparent(dst) => {
                tracing::info_span!("conn", client.addr = %peer, dst.addr = %dst)
            }
            _ => tracing::info_span!("conn", client.addr = %peer),
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let open = metrics().connection();
        tracker.spawn(
            async move {
                relay::serve(stream, peer, origin, shared, shutdown).await;
                drop(open);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// The destination a redirected connection was going to.
///
/// An IPv4 client on a dual-stack IPv6 socket must be asked with the IPv4
/// option: the kernel keeps its conntrack entry as IPv4.
pub fn original_dst(stream: &TcpStream, peer: SocketAddr) -> io::Result<SocketAddr> {
    let sock = SockRef::from(stream);
    let addr = if peer.is_ipv4() {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    addr.as_socket().map(unmap).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "original destination is not an IP address",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unredirected_connection_has_no_original_destination_or_itself() {
        // Without an nftables redirect the kernel either has no NAT entry
        // (error) or reports the listener itself; both are refused by run().
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        let (s, peer) = listener.accept().await.unwrap();
        if let Ok(dst) = original_dst(&s, peer) {
            assert_eq!(dst, addr);
        }
    }
}
