//! The one log record each exchange ends with (written by
//! [`super::exchange`]), and what it records ([`Outcome`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::reject::Reject;
use super::route::escape;
use crate::config::Enforcement;
use crate::telemetry::metrics::{self, metrics};

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
    /// Whether the rules judging this exchange are enforced: monitor when
    /// those that judged its request (the source's) or its answer (the
    /// destination's) are only logged.
    pub(super) mode: Enforcement,
    /// Monitor mode: the first block the rules would have refused the
    /// exchange with (the body went on).
    pub(super) would_block: Option<Reject>,
    /// Monitor mode: what an answer forwarded as it came would have been
    /// rebuilt without.
    pub(super) would_rebuild: Option<String>,
    /// The sync table's name of the exchange and its direction, once
    /// admitted.
    pub(super) endpoint: Option<(&'static str, &'static str)>,
    /// When the head arrived; then how long until the request body's
    /// verdict, and until the answer's.
    pub(super) started: Instant,
    pub(super) to_verdict: Option<Duration>,
    pub(super) to_answer: Option<Duration>,
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
            mode: Enforcement::Enforce,
            would_block: None,
            would_rebuild: None,
            endpoint: None,
            started: Instant::now(),
            to_verdict: None,
            to_answer: None,
        }
    }

    /// The request body has its verdict (now).
    pub(super) fn request_judged(&mut self) {
        self.to_verdict = Some(self.started.elapsed());
    }

    /// The answer has its verdict (now).
    pub(super) fn answer_judged(&mut self) {
        let verdict = self.to_verdict.unwrap_or_default();
        self.to_answer = Some(self.started.elapsed().saturating_sub(verdict));
    }

    /// What the metrics say about the exchange.
    fn outcome(&self) -> (metrics::Outcome, Option<&'static str>) {
        let rule = |r: &Reject| r.block.as_ref().map(|b| b.rule.name());
        match (&self.reject, &self.would_block) {
            (Some(r), _) if r.status == 403 => (metrics::Outcome::Blocked, rule(r)),
            (Some(r), _) => (metrics::Outcome::Error, rule(r)),
            (None, Some(r)) => (metrics::Outcome::WouldBlock, rule(r)),
            (None, None) => (metrics::Outcome::Allowed, None),
        }
    }

    /// Note a block the monitor mode let pass; the first one is logged.
    pub(super) fn would_block(&mut self, reject: Reject) {
        self.would_block.get_or_insert(reject);
    }
}

/// The outcome of an exchange refused before it was routed, under the
/// guard-wide `mode`.
pub(super) fn outcome_of(reject: Reject, mode: Enforcement) -> Outcome {
    let mut o = Outcome::new();
    o.status = reject.status;
    o.reject = Some(reject);
    o.mode = mode;
    o
}

/// The one log line of an exchange, and its count in the metrics. Its fields are the journal's
/// (`VERDICT`, `RULE`, `VALUE`, `AT`, `SRC_INSTANCE`, `DST_INSTANCE`,
/// `METHOD`, `PATH`, `STATUS`, `BYTES_IN`, `BYTES_OUT`, `DURATION_MS`,
/// `MODE`); none of them carries a body, a header value or a key.
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
    let (counted, rule) = o.outcome();
    let (endpoint, direction) = o.endpoint.unwrap_or(("-", "-"));
    metrics().exchange(&metrics::Exchange {
        src,
        dst,
        endpoint,
        direction,
        outcome: counted,
        rule,
        mode: o.mode,
        bytes_in: o.bytes_in,
        bytes_out: o.bytes_out,
        to_verdict: o.to_verdict,
        to_answer: o.to_answer,
    });
    let mode = o.mode.name();
    let (bytes_in, bytes_out, status) = (o.bytes_in, o.bytes_out, o.status);
    let blocked = |r: &Reject| match &r.block {
        Some(b) => (b.rule.name(), escape(&b.value), escape(&b.at)),
        None => ("-", String::new(), String::new()),
    };
    match (&o.reject, &o.would_block) {
        (Some(r), _) => {
            let (rule, value, at) = blocked(r);
            tracing::warn!(
                client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
                verdict = "block", mode, status = r.status, side = %r.side, rule, value = %value, at = %at,
                reason = %escape(&r.reason), bytes.in = bytes_in, bytes.out = bytes_out,
                duration_ms = ms, "exchange blocked"
            )
        }
        (None, Some(r)) => {
            let (rule, value, at) = blocked(r);
            let would_rebuild = escape(o.would_rebuild.as_deref().unwrap_or("-"));
            tracing::warn!(
                client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
                verdict = "would block", mode, status, side = %r.side, rule, value = %value, at = %at,
                reason = %escape(&r.reason), would_rebuild = %would_rebuild, bytes.in = bytes_in,
                bytes.out = bytes_out, duration_ms = ms,
                "exchange would block (monitor mode: passed unchanged)"
            )
        }
        (None, None) if o.would_rebuild.is_some() => tracing::info!(
            client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
            verdict = "would rebuild", mode,
            would_rebuild = %escape(o.would_rebuild.as_deref().unwrap_or("")), status,
            bytes.in = bytes_in, bytes.out = bytes_out, duration_ms = ms,
            "exchange allowed, answer would be rebuilt (monitor mode: forwarded as it came)"
        ),
        (None, None) if o.rebuilt.is_some() => tracing::info!(
            client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
            verdict = "allow", mode, rebuilt = %escape(o.rebuilt.as_deref().unwrap_or("")), status,
            bytes.in = bytes_in, bytes.out = bytes_out, duration_ms = ms,
            "exchange allowed, answer rebuilt"
        ),
        (None, None) => tracing::info!(
            client.addr = %peer, src.instance = src, dst.instance = dst, method = %method, path = %path,
            verdict = "allow", mode, status, bytes.in = bytes_in, bytes.out = bytes_out,
            duration_ms = ms, "exchange allowed"
        ),
    }
}
