//! The one log record each exchange ends with (written by
//! [`super::exchange`]), and what it records ([`Outcome`]).

use std::net::SocketAddr;
use std::time::Duration;

use super::reject::Reject;
use super::route::escape;

/// What one exchange did, for the log line.
pub(super) struct Outcome {
    pub(super) status: u16,
    pub(super) reject: Option<Reject>,
    pub(super) source: Option<String>,
    pub(super) destination: Option<String>,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) keep_alive: bool,
    /// What an answer the guard rebuilt was rebuilt without.
    pub(super) rebuilt: Option<String>,
}

impl Outcome {
    pub(super) fn new() -> Outcome {
        Outcome {
            status: 0,
            reject: None,
            source: None,
            destination: None,
            bytes_in: 0,
            bytes_out: 0,
            keep_alive: false,
            rebuilt: None,
        }
    }
}

pub(super) fn outcome_of(reject: Reject) -> Outcome {
    let mut o = Outcome::new();
    o.status = reject.status;
    o.reject = Some(reject);
    o
}

/// The one log line of an exchange.
pub(super) fn log_exchange(
    peer: SocketAddr,
    method: &str,
    target: &str,
    o: &Outcome,
    took: Duration,
) {
    let path = escape(target);
    let method = escape(method);
    let src = o.source.as_deref().unwrap_or("-");
    let dst = o.destination.as_deref().unwrap_or("-");
    let ms = took.as_secs_f64() * 1000.0;
    match &o.reject {
        None if o.rebuilt.is_some() => tracing::info!(
            client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
            verdict = "allow", rebuilt = %escape(o.rebuilt.as_deref().unwrap_or("")), status = o.status,
            bytes.request = o.bytes_in, bytes.response = o.bytes_out, duration_ms = ms,
            "exchange allowed, answer rebuilt"
        ),
        None => tracing::info!(
            client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
            verdict = "allow", status = o.status, bytes.request = o.bytes_in, bytes.response = o.bytes_out,
            duration_ms = ms, "exchange allowed"
        ),
        Some(r) => {
            let (rule, value, at) = match &r.block {
                Some(b) => (b.rule.name(), escape(&b.value), escape(&b.at)),
                None => ("-", String::new(), String::new()),
            };
            tracing::warn!(
                client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
                verdict = "block", status = r.status, side = %r.side, rule = rule, value = %value, at = %at,
                reason = %escape(&r.reason), bytes.request = o.bytes_in, bytes.response = o.bytes_out,
                duration_ms = ms, "exchange blocked"
            )
        }
    }
}
