//! Step 6 of the path: one connection's request/response loop.
//!
//! For each request on a keep-alive connection: who is talking (source and
//! destination instance, compartments), is this a step of sync (the
//! [`crate::sync`] table), then the body is held (in memory, then on disk)
//! while the rule engine reads it, and only on a verdict of allow do the
//! exact received bytes go on, re-framed with a `Content-Length` the guard
//! wrote itself. Pulls are judged the same way on the response.
//!
//! TLS: a redirected connection or a `CONNECT` tunnel that starts with a
//! TLS handshake is terminated with the destination instance's certificate
//! ([`crate::tls::Acceptor`]) and its requests are judged as `https`; the
//! guard reaches an instance with `tls.upstream` over its own verified TLS
//! ([`crate::tls::Connector`]), never falling back to plain. Plain HTTP to
//! such an instance is refused unless `allow_plain_http`, except an
//! absolute-form `http://` request on the proxy listener, whose scheme the
//! client named (it is relayed plain, as the older mitmproxy guard did).
//! The config and the TLS material built from it are one [`Snapshot`],
//! swapped whole on reload. Each request is judged under the snapshot in
//! force when its head arrived (so a reload applies to connections already
//! open), and an upstream connection kept from a request under another
//! snapshot is closed, not reused: the next one is verified under the trust
//! now in force.
//!
//! Refuses: anything [`crate::http`] refuses (400/413/431), unknown
//! instances and unreachable compartments (403), a `Host` naming another
//! instance (403), exchanges outside the table (403), bodies the rules
//! block (403 in MISP's own save-fail shape, so MISP logs it and carries on
//! with the next event), upstream failures and refused upstream
//! certificates (502/504).

mod accept;
mod body;
mod conn;
mod exchange;
mod hold;
mod inspect;
mod io;
mod log;
mod pool;
mod refuse;
mod reject;
mod route;
mod session;
mod snapshot;
mod tunnel;
mod upstream;

pub use conn::Origin;
pub use hold::Hold;
pub use refuse::{refuse_busy, refuse_stranger};
pub use reject::{Reject, Side};
pub use route::{parse_authority, route, Destination, Route, Target};
pub use session::serve;
pub use snapshot::{Shared, Snapshot};

/// Whether an empty request body may stand for `doc`. Only filter bodies
/// qualify: an empty filter carries no data out, and the older guard let
/// such pulls through. An empty sightings search gets a 400 from MISP
/// (`_harvestParameters` wants filters) and no sightings.
pub fn empty_body_allowed(doc: crate::rules::Document) -> bool {
    matches!(
        doc,
        crate::rules::Document::AnyJson | crate::rules::Document::SightingSearch
    )
}

/// The decoding caps of `config` (the relay and the offline check use the
/// same ones).
pub fn decode_caps(config: &crate::config::Config) -> crate::http::DecodeCaps {
    crate::http::DecodeCaps {
        max_decoded_bytes: config.guard.limits.max_decoded_bytes,
        max_ratio: config.guard.limits.max_decode_ratio,
        ..crate::http::DecodeCaps::default()
    }
}
