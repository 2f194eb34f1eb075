//! misp-guard: a transparent guard for MISP server synchronisation.
//!
//! # Layout
//!
//! The modules follow the path a connection takes through the guard:
//!
//! ```text
//! listen ──▶ tls ──▶ http ──▶ sync ──▶ rules ──▶ relay
//! ```
//!
//! * [`listen`]: accept loops; original destination (`SO_ORIGINAL_DST`) for
//!   transparent listeners, `CONNECT` and absolute-form for proxy listeners.
//! * [`tls`]: terminates the client's TLS with the destination instance's
//!   certificate and opens a verified TLS connection upstream.
//! * [`http`]: strict HTTP/1.1 heads (httparse) and body framing; refuses
//!   every ambiguous framing; decodes `Content-Encoding` for inspection.
//! * [`sync`]: the table of every exchange MISP sync makes; anything else is
//!   refused.
//! * [`json`]: a strict push tokenizer: body chunks in, events out,
//!   nothing held whole.
//! * [`rules`]: the streaming evaluator that reads a MISP document once and
//!   gives a [`rules::Verdict`].
//! * [`relay`]: one connection's requests, each an exchange in phases
//!   (admit, judge the request, forward, judge the answer, answer), holding
//!   each body until its verdict and forwarding only what passed.
//!
//! Beside the path: [`addr`] (one spelling of a peer's address, below
//! `listen` and `relay`), [`config`] (the older guard's JSON plus a `guard`
//! section, validated into a typed model), [`firewall`] (the nftables
//! table that redirects sync traffic to the listener; the only part that
//! speaks netlink, and the only `unsafe` code), [`telemetry`] (logging and metrics), [`admin`] (the
//! loopback listener serving `/metrics` and `/healthz`) and
//! [`service`] (readiness, status and reload outcomes for systemd).

#![deny(unsafe_code)]

pub mod addr;
pub mod admin;
pub mod check;
pub mod config;
pub mod firewall;
pub mod http;
pub mod json;
pub mod listen;
pub mod relay;
pub mod rules;
pub mod service;
pub mod sync;
pub mod telemetry;
pub mod tls;
