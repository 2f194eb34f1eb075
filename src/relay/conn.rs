//! What a connection is judged with: how it reached the guard ([`Origin`])
//! and which ways of speaking to an instance that allows.

use std::net::SocketAddr;

use super::route::Target;
use crate::config::Instance;

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
