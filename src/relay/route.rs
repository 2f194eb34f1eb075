//! Who is talking: source and destination instance, compartments, allowlist.
//!
//! Called by [`super::admit`] for every request (and so by the offline
//! `misp-guard check` too) and by [`super::tunnel`] for a `CONNECT`.

use std::net::{IpAddr, SocketAddr};

use super::reject::Reject;
use crate::config::{Config, InstanceId};

/// Where the client wants to go, as the guard learnt it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The original destination of a redirected connection.
    Address(SocketAddr),
    /// The host and port a proxy request (absolute-form or `CONNECT`) or an
    /// offline check names.
    Name {
        /// Host name or IP literal (no brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

/// Where an exchange goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A configured instance: inspected.
    Instance(InstanceId),
    /// A host on the allowlist: relayed without inspection.
    Allowlisted {
        /// The listed host.
        host: String,
        /// The port asked for.
        port: u16,
    },
}

/// The outcome of routing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The configured instance the connection comes from.
    pub source: InstanceId,
    /// Where it goes.
    pub destination: Destination,
}

/// Decide who talks to whom for one request.
///
/// `scheme` is `http` or `https` (the URL the allowlist compares against is
/// built as the older guard did: `scheme://host[:port]path`, the port left
/// out when it is the scheme's default). `host_header` is the request's
/// `Host`, checked against the destination when given.
pub fn route(
    config: &Config,
    peer: IpAddr,
    target: &Target,
    scheme: &str,
    path: &str,
    host_header: Option<&str>,
) -> Result<Route, Reject> {
    let default_port = if scheme == "https" { 443 } else { 80 };
    let named = match host_header {
        Some(h) => Some(
            parse_authority(h, default_port)
                .ok_or_else(|| Reject::forbidden(format!("malformed Host header {}", escape(h))))?,
        ),
        None => None,
    };
    let (url_host, url_port) = match (target, &named) {
        (Target::Name { host, port }, _) => (host.clone(), *port),
        (Target::Address(_), Some((h, p))) => (h.clone(), *p),
        (Target::Address(addr), None) => (addr.ip().to_string(), addr.port()),
    };
    let url = if url_port == default_port {
        format!("{scheme}://{}{path}", bracket(&url_host))
    } else {
        format!("{scheme}://{}:{url_port}{path}", bracket(&url_host))
    };

    let source = config.source(peer);
    if config.allowlisted(&url, &url_host) {
        // An allowlisted request is relayed uninspected: it must not be a
        // way to address an instance by its Host.
        if let Some((h, _)) = &named {
            if config
                .instances
                .iter()
                .any(|i| i.host.eq_ignore_ascii_case(h) || i.ip.to_string() == *h)
            {
                return Err(Reject::forbidden(format!(
                    "Host header {} names an instance on an allowlisted request",
                    escape(h)
                )));
            }
        }
        let source = source.ok_or_else(|| unknown_source(peer))?;
        return Ok(Route {
            source,
            destination: Destination::Allowlisted {
                host: url_host,
                port: url_port,
            },
        });
    }

    let source = source.ok_or_else(|| unknown_source(peer))?;
    let destination = match target {
        Target::Address(addr) => config.destination_by_addr(*addr),
        Target::Name { host, port } => config.destination_by_name(host, *port),
    }
    .map_err(|e| Reject::forbidden(e.to_string()))?;
    if !config.can_reach(source, destination) {
        return Err(Reject::forbidden(format!(
            "cannot reach compartment: {} ({}) may not reach {} ({})",
            config.instance(source).name,
            config.instance(source).compartment,
            config.instance(destination).name,
            config.instance(destination).compartment,
        )));
    }
    if let Some((host, port)) = named {
        // A Host naming another instance than the connection goes to is a
        // client trying to be judged under another instance's identity.
        match config.destination_by_name(&host, port) {
            Ok(id) if id == destination => {}
            _ => {
                return Err(Reject::forbidden(format!(
                    "Host header {} does not name the destination instance {}",
                    escape(&format!("{host}:{port}")),
                    config.instance(destination).name
                )))
            }
        }
    }
    Ok(Route {
        source,
        destination: Destination::Instance(destination),
    })
}

/// A connection from an address that is no instance is answered once and
/// closed: it has nothing more to ask, and must not keep a slot.
fn unknown_source(peer: IpAddr) -> Reject {
    Reject {
        close: true,
        ..Reject::forbidden(format!(
            "source address {peer} is not a configured instance"
        ))
    }
}

/// Split `host[:port]` or `[v6][:port]` (RFC 9110 §7.2); lower-cases the host.
pub fn parse_authority(s: &str, default_port: u16) -> Option<(String, u16)> {
    if s.is_empty() || s.bytes().any(|b| !b.is_ascii_graphic()) {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#', '\\', '%', ':']) && !s.starts_with('[')
    {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|p| *p != 0)?
        }
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Escape control characters and cut, for quoting request text in logs.
pub fn escape(s: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_forms() {
        let ok: &[(&str, (&str, u16))] = &[
            ("misp.example", ("misp.example", 443)),
            ("MISP.example:8443", ("misp.example", 8443)),
            ("10.0.0.1:443", ("10.0.0.1", 443)),
            ("[::1]:443", ("::1", 443)),
            ("[::1]", ("::1", 443)),
        ];
        for (s, (h, p)) in ok {
            assert_eq!(parse_authority(s, 443), Some((h.to_string(), *p)), "{s}");
        }
        for s in [
            "",
            "a b",
            "host:",
            "host:0",
            "host:65536",
            "host:+1",
            "host:1:2",
            "[::1",
            "[zz]:1",
            "user@host",
            "host/x",
            "ho\tst",
            "[::1]x",
        ] {
            assert_eq!(parse_authority(s, 443), None, "{s:?}");
        }
    }
}
