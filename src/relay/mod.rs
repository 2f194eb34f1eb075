//! Step 6 of the path: one connection's requests, each an exchange made of
//! named phases.
//!
//! A newcomer follows one exchange by opening the files in this order:
//!
//! ```text
//! refuse.rs        connections answered once and closed (strangers, past the cap)
//! session.rs       one connection: TLS or not (accept.rs), then its requests in order;
//!                  a CONNECT makes the rest a tunnel (tunnel.rs)
//! exchange.rs      one request and its answer, the phases in order:
//!   admit.rs         head checks, route (route.rs), the sync table  → Admitted
//!                    and `locate`: where it goes upstream           → Dial
//!   judge_request.rs the body held (hold.rs) while the rules read it
//!                    (body.rs, inspect.rs), the source's rules      → Held
//!   forward.rs       the upstream connection (pool.rs, upstream.rs),
//!                    the request re-framed and sent, the answer head
//!   judge_answer.rs  the answer head checked, one Policy, the body
//!                    judged under the destination's rules           → Reply
//!   answer.rs        bytes to the client (or the refusal); exchange.rs
//!                    then writes the one log record (log.rs)
//! offline.rs       admit, judge_request, judge_answer without the network:
//!                  `misp-guard check`
//! ```
//!
//! Beside the path: what a connection and a request are judged with
//! (`conn.rs`: [`Origin`], the connection-wide `Conn`, the per-request
//! `Terms`), the config in force ([`Snapshot`], swapped whole on reload),
//! the streams (`io.rs`), the refusals ([`Reject`], `reject.rs`).
//!
//! Each request is judged under the snapshot in force when its head
//! arrived (so a reload applies to connections already open), and an
//! upstream connection kept from a request under another snapshot is
//! closed, not reused: the next one is verified under the trust now in
//! force. TLS: a redirected connection or a `CONNECT` tunnel that starts
//! with a TLS handshake is terminated with the destination instance's
//! certificate ([`crate::tls::Acceptor`]) and its requests are judged as
//! `https`; the guard reaches an instance with `tls.upstream` over its own
//! verified TLS ([`crate::tls::Connector`]), never falling back to plain.
//! Plain HTTP to such an instance is refused unless `allow_plain_http`,
//! except an absolute-form `http://` request on the proxy listener, whose
//! scheme the client named (relayed plain, as the older mitmproxy guard
//! did).
//!
//! # Where later changes plug in
//!
//! - **Monitor mode** (`guard.mode: "monitor"`, the dry run): `body::pass`
//!   is the only place a blocking verdict becomes a [`Reject`], and both
//!   judging phases settle there (`judge_request::Judged::settle`,
//!   `judge_answer::Judged::settle`); under monitor rules it notes the
//!   block in the exchange's `Outcome` (logged `would block`) and returns
//!   a pass made with `rules::Pass::despite`. Refusals outside the rules
//!   (framing, limits, the sync table) never reach it and stay refused.
//! - **Metrics**: every exchange ends in `log::log_exchange`, which counts
//!   it ([`crate::telemetry::metrics`]) from the same `Outcome` it logs;
//!   `exchange::phases` stamps the request's and the answer's verdicts for
//!   the latency histogram.
//! - **Rebuilt answers**: a rebuild verdict of the rules becomes a third
//!   `answer::Body`, `Rebuilt { hold, pass }`, made in one arm of
//!   `judge_answer::Judged::settle` (re-decode the held answer, rebuild it
//!   into a new `Hold`); how it changes the head (identity coding, the new
//!   `Content-Length`, no `Content-Encoding`, `ETag` or `Content-MD5`) is
//!   one arm of `answer::prepare`, which says that for every kind of body;
//!   the writing after it is shared with held bodies.
//!
//! Refuses: anything [`crate::http`] refuses (400/413/431), unknown
//! instances and unreachable compartments (403), a `Host` naming another
//! instance (403), exchanges outside the table (403), bodies the rules
//! block (403 in MISP's own save-fail shape, so MISP logs it and carries on
//! with the next event), upstream failures and refused upstream
//! certificates (502/504).

mod accept;
mod admit;
mod answer;
mod body;
mod conn;
mod exchange;
mod forward;
mod hold;
mod inspect;
mod io;
mod judge_answer;
mod judge_request;
mod log;
pub mod offline;
mod pool;
mod rebuild;
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
pub use route::{parse_authority, Target};
pub use session::serve;
pub use snapshot::{Shared, Snapshot};
