//! The upstream connection a client connection keeps between its requests,
//! and the rule for reusing it.
//!
//! One connection is kept at most (MISP sends its sync requests one after
//! the other). A request checks it out ([`UpstreamPool::checkout`]): the
//! kept one when it goes to the same place, the same way, verified with the
//! trust now in force, and is still open; else a new one. While checked
//! out it belongs to the [`Lease`]; only [`Lease::keep_if`] puts it back,
//! so a lease dropped on any failure (a `?` anywhere between sending the
//! request and reading the whole answer) closes the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::io::{Io, Peer};
use super::reject::Reject;
use super::upstream::{self, Dial};
use crate::config::Config;
use crate::tls;

/// The upstream connection kept by one client connection.
pub(super) struct UpstreamPool {
    kept: Option<Upstream>,
}

/// An open connection to a destination.
pub(super) struct Upstream {
    addr: SocketAddr,
    tls: bool,
    /// The connector it was opened with: after a reload that changed the
    /// trust, a new connection is verified with the new one.
    connector: Arc<tls::Connector>,
    peer: Peer<Box<dyn Io>>,
}

/// A connection checked out for one request.
pub(super) struct Lease<'p> {
    up: Upstream,
    slot: &'p mut Option<Upstream>,
}

impl UpstreamPool {
    /// Nothing kept yet.
    pub(super) fn new() -> UpstreamPool {
        UpstreamPool { kept: None }
    }

    /// The connection for `dial`: the kept one if it fits and is still
    /// open, else a new one (a kept one that does not fit is closed).
    pub(super) async fn checkout(
        &mut self,
        dial: &Dial<'_>,
        config: &Config,
    ) -> Result<Lease<'_>, Reject> {
        let mut kept = self.kept.take().filter(|u| u.fits(dial));
        if let Some(u) = kept.as_mut() {
            if !still_open(&mut u.peer).await {
                kept = None;
            }
        }
        let up = match kept {
            Some(u) => u,
            None => Upstream::open(dial, config).await?,
        };
        Ok(Lease {
            up,
            slot: &mut self.kept,
        })
    }
}

impl Lease<'_> {
    /// The connection's stream.
    pub(super) fn peer(&mut self) -> &mut Peer<Box<dyn Io>> {
        &mut self.up.peer
    }

    /// Put the connection back for the next request when the answer left
    /// it `reusable`; else close it.
    pub(super) fn keep_if(self, reusable: bool) {
        if reusable {
            *self.slot = Some(self.up);
        }
    }
}

impl Upstream {
    /// Connect to `dial.addr` with the firewall mark, and over TLS when
    /// `dial` says so.
    async fn open(dial: &Dial<'_>, config: &Config) -> Result<Upstream, Reject> {
        let t = &config.guard.timeouts;
        let tcp = upstream::connect(
            dial.addr,
            config.guard.upstream_mark,
            t.connect,
            t.body_idle,
        )
        .await?;
        let io: Box<dyn Io> = match dial.tls {
            Some(instance) => {
                Box::new(upstream::tls(dial.connector, tcp, instance, t.handshake).await?)
            }
            None => Box::new(tcp),
        };
        Ok(Upstream {
            addr: dial.addr,
            tls: dial.tls.is_some(),
            connector: dial.connector.clone(),
            peer: Peer {
                io,
                buf: BytesMut::with_capacity(16 * 1024),
            },
        })
    }

    /// Whether this kept connection may carry the next request: it goes to
    /// the same place, the same way, and was verified with the trust now
    /// in force. Every reload builds a new connector, so after a reload a
    /// kept connection is closed and the next one verified under the new
    /// trust (`tls.ca`, the bundle, a client certificate) before any byte
    /// of the request is sent.
    fn fits(&self, dial: &Dial<'_>) -> bool {
        self.addr == dial.addr
            && self.tls == dial.tls.is_some()
            && Arc::ptr_eq(&self.connector, dial.connector)
    }
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

#[cfg(test)]
mod tests {
    use super::super::snapshot::tests::config;
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn kept_upstream_fits_the_same_place_way_and_trust_only() {
        let settings = crate::config::TlsSettings::default();
        let before = Arc::new(tls::Connector::new(&settings, &[]).unwrap());
        // A reload builds a new connector even from the same files.
        let after = Arc::new(tls::Connector::new(&settings, &[]).unwrap());
        let c = config(443, serde_json::json!({}), serde_json::json!({}));
        let instance = &c.instances[0];
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
        let dial = |addr, connector, tls: bool| Dial {
            addr,
            connector,
            tls: tls.then_some(instance),
        };
        assert!(kept.fits(&dial(addr, &before, true)));
        assert!(
            !kept.fits(&dial(addr, &after, true)),
            "trust of another snapshot"
        );
        assert!(
            !kept.fits(&dial(addr, &before, false)),
            "plain instead of TLS"
        );
        let other: SocketAddr = "10.0.0.2:443".parse().unwrap();
        assert!(
            !kept.fits(&dial(other, &before, true)),
            "another destination"
        );
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

    /// A real listener on loopback counts the connections the pool opens:
    /// a kept connection carries the next request; one whose lease was
    /// dropped (a failed exchange), one the answer left unusable, or one
    /// under the trust of an older snapshot is replaced by a new one.
    #[tokio::test]
    async fn checkout_reuses_what_was_kept_and_nothing_else() {
        if !nix::unistd::Uid::effective().is_root() {
            println!("SKIP: upstream sockets carry a firewall mark (needs CAP_NET_ADMIN)");
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepted connections stay open (and silent) on the server side.
        let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((s, from)) = listener.accept().await {
                let _ = tx.send((s, from));
            }
        });
        let config = config(addr.port(), serde_json::json!({}), serde_json::json!({}));
        let settings = crate::config::TlsSettings::default();
        let trust = Arc::new(tls::Connector::new(&settings, &[]).unwrap());
        let reloaded = Arc::new(tls::Connector::new(&settings, &[]).unwrap());
        let dial = Dial {
            addr,
            connector: &trust,
            tls: None,
        };
        let mut pool = UpstreamPool::new();

        pool.checkout(&dial, &config).await.unwrap().keep_if(true); // opens 1
        let reused = pool.checkout(&dial, &config).await.unwrap(); // reuses it
        drop(reused); // a failed exchange: closed
        pool.checkout(&dial, &config).await.unwrap().keep_if(false); // opens 2
        pool.checkout(&dial, &config).await.unwrap().keep_if(true); // opens 3
        let after_reload = Dial {
            connector: &reloaded,
            ..dial
        };
        let lease = pool.checkout(&after_reload, &config).await.unwrap(); // opens 4
        assert!(
            Arc::ptr_eq(&lease.up.connector, &reloaded),
            "opened under the new trust"
        );
        drop(lease);

        // The listener accepts in order: every connection the pool opened
        // is accepted before this last one.
        let last = tokio::net::TcpStream::connect(addr).await.unwrap();
        let last = last.local_addr().unwrap();
        let mut opened = 0;
        while let Some((_, from)) = accepted.recv().await {
            if from == last {
                break;
            }
            opened += 1;
        }
        assert_eq!(opened, 4, "connections the pool opened");
        server.abort();
    }
}
