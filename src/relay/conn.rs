//! What a connection and each of its requests are judged with.
//!
//! Two contexts, on purpose. [`Conn`] lasts as long as the client
//! connection: how it reached the guard ([`Via`]), the shutdown signal, the
//! org learnt from the remote, the upstream connection kept. [`Terms`] are
//! taken per request, when its head arrives: the config in force then and
//! the limits drawn from it. A config kept in the connection would judge a
//! request under a config that a reload has replaced.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::hold::Hold;
use super::pool::UpstreamPool;
use super::route::Target;
use crate::config::{Config, Enforcement, Instance, InstanceId};
use crate::http;

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

/// How a connection reached the guard.
pub(super) struct Via {
    /// The client's address.
    pub(super) peer: SocketAddr,
    /// Which listener, or which tunnel.
    pub(super) origin: Origin,
    /// Whether the client speaks TLS (terminated by the guard).
    pub(super) tls: bool,
}

/// One client connection's state across its requests.
pub(super) struct Conn {
    /// How it reached the guard; a plain `CONNECT` tunnel changes the
    /// origin of the requests after it.
    pub(super) via: Via,
    /// Stop accepting requests: the one in flight finishes with
    /// `Connection: close`.
    pub(super) shutdown: CancellationToken,
    /// The org of the remote sync user (`X-UserOrgUUID` of an answer), and
    /// the upstream address it came from.
    learned_org: Option<(SocketAddr, String)>,
    /// The upstream connection kept between requests.
    pub(super) pool: UpstreamPool,
}

impl Conn {
    /// A connection that has made no request yet.
    pub(super) fn new(via: Via, shutdown: CancellationToken) -> Conn {
        Conn {
            via,
            shutdown,
            learned_org: None,
            pool: UpstreamPool::new(),
        }
    }

    /// The org learnt from an answer of `upstream`, if any.
    pub(super) fn org_of(&self, upstream: SocketAddr) -> Option<&str> {
        self.learned_org
            .as_ref()
            .filter(|(addr, _)| *addr == upstream)
            .map(|(_, org)| org.as_str())
    }

    /// Remember the org of the remote sync user that `upstream` named: on
    /// a push it is the org that receives the data, so later pushes of this
    /// connection are checked against it too (protocol doc §7).
    pub(super) fn learn(&mut self, upstream: SocketAddr, org: Option<&str>) {
        if let Some(org) = org {
            self.learned_org = Some((upstream, org.to_string()));
        }
    }
}

/// What one request is judged under, fixed when its head arrived.
pub(super) struct Terms {
    /// The config in force then.
    pub(super) config: Arc<Config>,
    /// The HTTP limits drawn from it.
    pub(super) limits: http::Limits,
    /// Bytes of a held body kept in memory before it spills to disk.
    hold_memory: usize,
    /// Whether the instances' monitor modes apply (the listener); the
    /// offline check always reports what the rules enforce.
    modes: bool,
}

impl Terms {
    /// The terms of `config`, as the listener holds bodies.
    pub(super) fn new(config: &Arc<Config>) -> Terms {
        Terms {
            config: config.clone(),
            limits: http_limits(config),
            hold_memory: config.guard.limits.hold_memory_bytes,
            modes: true,
        }
    }

    /// The same, with bodies held in memory only: the offline check has
    /// them in memory already, and its machine may have no `spill_dir`.
    pub(super) fn in_memory(config: &Arc<Config>) -> Terms {
        Terms {
            hold_memory: usize::MAX,
            modes: false,
            ..Terms::new(config)
        }
    }

    /// Whether the verdicts of `id`'s rules are enforced or only logged.
    pub(super) fn enforcement(&self, id: InstanceId) -> Enforcement {
        if self.modes {
            self.config.enforcement(id)
        } else {
            Enforcement::Enforce
        }
    }

    /// An empty store for one body, keeping at least `at_least` bytes in
    /// memory.
    pub(super) fn hold(&self, at_least: usize) -> Hold {
        Hold::new(
            self.hold_memory.max(at_least),
            self.config.guard.limits.max_spill_bytes,
        )
    }
}

/// The HTTP limits of `config`.
pub(super) fn http_limits(config: &Config) -> http::Limits {
    let l = &config.guard.limits;
    http::Limits {
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_body_bytes: l.max_body_bytes,
        ..http::Limits::default()
    }
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
pub(super) fn upstream_over_tls(origin: &Origin, instance: &Instance) -> bool {
    *origin != Origin::Proxy && instance.settings.tls.upstream
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::tests::config;
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
}
