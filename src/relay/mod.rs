//! Step 6 of the path: one connection's request/response loop.
//!
//! For each request on a keep-alive connection: who is talking (source and
//! destination instance, compartments), is this a step of sync (the
//! [`crate::sync`] table), then the body is held (in memory, then on disk)
//! while the rule engine reads it, and only on a verdict of allow do the
//! exact received bytes go on, re-framed with a `Content-Length` the guard
//! wrote itself. Pulls are judged the same way on the response.
//!
//! Refuses: anything [`crate::http`] refuses (400/413/431), unknown
//! instances and unreachable compartments (403), a `Host` naming another
//! instance (403), exchanges outside the table (403), bodies the rules
//! block (403 in MISP's own save-fail shape, so MISP logs it and carries on
//! with the next event), upstream failures (502/504).

mod answer;
mod hold;
mod inspect;
mod prefixed;
mod route;
mod session;
mod upstream;

pub use answer::{Reject, Side};
pub use hold::Hold;
pub use route::{parse_authority, route, Destination, Route, Target};
pub use session::{serve, Origin, Shared, Snapshot};

/// Whether an empty request body may stand for `doc`. Only filter bodies
/// (`AnyJson`) qualify: an empty filter carries no data out, and the
/// older guard let such pulls through.
pub fn empty_body_allowed(doc: crate::rules::Document) -> bool {
    doc == crate::rules::Document::AnyJson
}
