//! The guard's counters, served as Prometheus text on the admin listener
//! ([`crate::admin`]).
//!
//! One registry per process, like the tracing subscriber: every exchange
//! already ends in the one log record of `relay::log`, which counts it
//! here too, so nothing has to carry a handle along the path. Each metric
//! has a `mode` label (`enforce` or `monitor`): a dry run shows in every
//! series it touches. For the exchange series it is the exchange's own mode
//! (monitor when the rules of its source or destination are only logged);
//! for the guard-wide gauges it is `guard.mode` at scrape time, so a reload
//! that changes the mode leaves no stale series behind.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::Enforcement;

/// What became of an exchange, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Relayed, nothing blocked.
    Allowed,
    /// Refused with a 403: a rule, the sync table, a compartment, an
    /// address that is no instance.
    Blocked,
    /// Monitor mode: the rules blocked it, and it was relayed all the same.
    WouldBlock,
    /// Refused otherwise: bad framing, a limit, an upstream failure.
    Error,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Blocked => "blocked",
            Outcome::WouldBlock => "would_block",
            Outcome::Error => "error",
        }
    }
}

/// One finished exchange, as the log record describes it.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// The source instance's name, `-` when none.
    pub src: &'a str,
    /// The destination's name (`allowlist:HOST` for a listed host), `-`.
    pub dst: &'a str,
    /// The sync table's name of the exchange, `-` when not classified.
    pub endpoint: &'static str,
    /// `push`, `pull` or `-`.
    pub direction: &'static str,
    /// What became of it.
    pub outcome: Outcome,
    /// The rule that blocked it (or would have), if a rule did.
    pub rule: Option<&'static str>,
    /// Whether its rules were enforced.
    pub mode: Enforcement,
    /// Body bytes read from the client and from upstream.
    pub bytes_in: u64,
    /// Body bytes of the answer.
    pub bytes_out: u64,
    /// From the request head to the request body's verdict, when reached.
    pub to_verdict: Option<Duration>,
    /// From that verdict to the upstream answer's verdict, when reached.
    pub to_answer: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExchangeLabels {
    src: String,
    dst: String,
    endpoint: &'static str,
    direction: &'static str,
    outcome: &'static str,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BlockLabels {
    rule: &'static str,
    src: String,
    dst: String,
    /// `block` or `would_block`.
    verdict: &'static str,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FlowLabels {
    src: String,
    dst: String,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabels {
    /// `head_to_verdict` or `verdict_to_answer`.
    stage: &'static str,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    /// `ok` or `refused`; for the firewall watch, `ok` or `failed`.
    result: &'static str,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsLabels {
    /// `client` (MISP to the guard) or `upstream` (the guard to an instance).
    side: &'static str,
    reason: &'static str,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    exchanges: Family<ExchangeLabels, Counter>,
    blocks: Family<BlockLabels, Counter>,
    bytes_in: Family<FlowLabels, Counter>,
    bytes_out: Family<FlowLabels, Counter>,
    latency: Family<StageLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ResultLabels, Counter>,
    reinstalls: Family<ResultLabels, Counter>,
    tls_failures: Family<TlsLabels, Counter>,
    state: Arc<State>,
}

/// What the gauges and `/healthz` read, set by the running guard.
#[derive(Debug, Default)]
struct State {
    mode: AtomicU8,
    connections: AtomicI64,
    listening: AtomicBool,
    /// Whether the guard owns a table (`guard.firewall.mode` not off).
    firewall: AtomicBool,
    table_present: AtomicBool,
    reload_refused: AtomicBool,
    generation: AtomicU64,
    /// Body bytes held now (memory and spill files), and spill files open.
    held_bytes: AtomicI64,
    spill_files: AtomicI64,
}

fn mode_name(state: &State) -> &'static str {
    match state.mode.load(Ordering::Relaxed) {
        1 => Enforcement::Monitor.name(),
        _ => Enforcement::Enforce.name(),
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … about 16 s: a small push is judged in well under a
    // millisecond, a 100 MB event in seconds, a slow upstream answer later.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("misp_guard");
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        let blocks = Family::<BlockLabels, Counter>::default();
        let bytes_in = Family::<FlowLabels, Counter>::default();
        let bytes_out = Family::<FlowLabels, Counter>::default();
        let latency = Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        let reinstalls = Family::<ResultLabels, Counter>::default();
        let tls_failures = Family::<TlsLabels, Counter>::default();
        let state = Arc::new(State::default());
        registry.register(
            "exchanges",
            "Exchanges by source, destination, sync endpoint, direction and outcome (allowed, blocked, would_block, error)",
            exchanges.clone(),
        );
        registry.register(
            "blocks",
            "Bodies the rules blocked (verdict block) or would have blocked in monitor mode (would_block), by rule",
            blocks.clone(),
        );
        registry.register(
            "bytes_in",
            "Body bytes received from clients (requests)",
            bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Body bytes received from upstream instances (answers)",
            bytes_out.clone(),
        );
        registry.register(
            "decision_seconds",
            "Latency: request head to the request body's verdict (head_to_verdict), then to the upstream answer's verdict (verdict_to_answer)",
            latency.clone(),
        );
        registry.register(
            "reloads",
            "Config reloads (SIGHUP) by result: ok or refused (the old config stays)",
            reloads.clone(),
        );
        registry.register(
            "firewall_reinstalls",
            "Times the guard found its nftables table gone or changed and installed it again, by result",
            reinstalls.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by side and reason (sni_mismatch, bad_client_hello, no_http11, alert, protocol, certificate_refused, timeout, connection, no_tls_configured)",
            tls_failures.clone(),
        );
        registry.register_collector(Box::new(Gauges(state.clone())));
        Metrics {
            registry,
            exchanges,
            blocks,
            bytes_in,
            bytes_out,
            latency,
            reloads,
            reinstalls,
            tls_failures,
            state,
        }
    }

    /// Count one finished exchange.
    pub fn exchange(&self, x: &Exchange<'_>) {
        let mode = x.mode.name();
        self.exchanges
            .get_or_create(&ExchangeLabels {
                src: x.src.to_owned(),
                dst: x.dst.to_owned(),
                endpoint: x.endpoint,
                direction: x.direction,
                outcome: x.outcome.name(),
                mode,
            })
            .inc();
        if let Some(rule) = x.rule {
            let verdict = match x.outcome {
                Outcome::WouldBlock => "would_block",
                _ => "block",
            };
            self.blocks
                .get_or_create(&BlockLabels {
                    rule,
                    src: x.src.to_owned(),
                    dst: x.dst.to_owned(),
                    verdict,
                    mode,
                })
                .inc();
        }
        let flow = FlowLabels {
            src: x.src.to_owned(),
            dst: x.dst.to_owned(),
            mode,
        };
        if x.bytes_in > 0 {
            self.bytes_in.get_or_create(&flow).inc_by(x.bytes_in);
        }
        if x.bytes_out > 0 {
            self.bytes_out.get_or_create(&flow).inc_by(x.bytes_out);
        }
        for (stage, took) in [
            ("head_to_verdict", x.to_verdict),
            ("verdict_to_answer", x.to_answer),
        ] {
            if let Some(took) = took {
                self.latency
                    .get_or_create(&StageLabels { stage, mode })
                    .observe(took.as_secs_f64());
            }
        }
    }

    /// A TLS handshake failed on `side` for `reason` (see
    /// `tls::Error::handshake_kind`).
    pub fn tls_failure(&self, side: &'static str, reason: &'static str) {
        let mode = mode_name(&self.state);
        self.tls_failures
            .get_or_create(&TlsLabels { side, reason, mode })
            .inc();
    }

    /// Held body bytes grew (or, negative, were let go).
    pub fn held(&self, bytes: i64) {
        self.state.held_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A spill file was opened (1) or closed (-1).
    pub fn spill_file(&self, delta: i64) {
        self.state.spill_files.fetch_add(delta, Ordering::Relaxed);
    }

    /// One client connection more, until the handle is dropped.
    pub fn connection(&self) -> Open {
        self.state.connections.fetch_add(1, Ordering::Relaxed);
        Open(self.state.clone())
    }

    /// The config now in force: its guard-wide mode, whether it asks for a
    /// table, and its generation (0 at start, one more per reload in force).
    pub fn config(&self, mode: Enforcement, firewall: bool, generation: u64) {
        let m = match mode {
            Enforcement::Enforce => 0,
            Enforcement::Monitor => 1,
        };
        self.state.mode.store(m, Ordering::Relaxed);
        self.state.firewall.store(firewall, Ordering::Relaxed);
        self.state.generation.store(generation, Ordering::Relaxed);
    }

    /// Every listener is bound.
    pub fn listening(&self) {
        self.state.listening.store(true, Ordering::Relaxed);
    }

    /// Whether the guard's table is in place, as last installed or checked.
    pub fn table(&self, present: bool) {
        self.state.table_present.store(present, Ordering::Relaxed);
    }

    /// A reload ended: in force, or refused.
    pub fn reload(&self, ok: bool) {
        self.state.reload_refused.store(!ok, Ordering::Relaxed);
        let result = if ok { "ok" } else { "refused" };
        let mode = mode_name(&self.state);
        self.reloads
            .get_or_create(&ResultLabels { result, mode })
            .inc();
    }

    /// The firewall watch installed the table again (or failed to).
    pub fn reinstall(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        let mode = mode_name(&self.state);
        self.reinstalls
            .get_or_create(&ResultLabels { result, mode })
            .inc();
    }

    /// `/healthz`: `Ok` once every listener is bound and, when the guard
    /// owns a table, the table is in place, and while the last reload was
    /// not refused; otherwise why not.
    pub fn health(&self) -> Result<(), &'static str> {
        health_of(&self.state)
    }

    /// The Prometheus text (OpenMetrics) of every metric.
    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a metric that could not be
        // encoded would show as a truncated scrape, which Prometheus flags.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A client connection being served; dropping it counts it closed.
#[derive(Debug)]
pub struct Open(Arc<State>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The gauges, read at scrape time so that their `mode` label is the one
/// in force then.
#[derive(Debug)]
struct Gauges(Arc<State>);

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let labels = ModeLabels { mode: mode_name(s) };
        let gauges = [
            (
                "connections_open",
                "Client connections being served",
                s.connections.load(Ordering::Relaxed),
            ),
            (
                "held_bytes",
                "Body bytes held until their verdict now, in memory and in spill files",
                s.held_bytes.load(Ordering::Relaxed),
            ),
            (
                "spill_files",
                "Spill files (unlinked, under guard.spill_dir) in use now",
                s.spill_files.load(Ordering::Relaxed),
            ),
            (
                "ready",
                "1 when /healthz answers 200",
                i64::from(health_of(s).is_ok()),
            ),
            (
                "firewall_table_present",
                "1 when the guard's nftables table is in place (0 also when guard.firewall.mode is off)",
                i64::from(s.table_present.load(Ordering::Relaxed)),
            ),
            (
                "config_generation",
                "The number of the reload whose config is in force (0: the one read at start; refused reloads are numbered too)",
                i64::try_from(s.generation.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let mut metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn health_of(s: &State) -> Result<(), &'static str> {
    if !s.listening.load(Ordering::Relaxed) {
        return Err("not ready: the listeners are not bound yet");
    }
    if s.firewall.load(Ordering::Relaxed) && !s.table_present.load(Ordering::Relaxed) {
        return Err("not ready: the nftables table is not in place");
    }
    if s.reload_refused.load(Ordering::Relaxed) {
        return Err("degraded: the last reload was refused (the previous config stays in force)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_listening_with_the_table_and_no_refused_reload() {
        let s = State::default();
        assert!(health_of(&s).is_err(), "before the listeners");
        s.listening.store(true, Ordering::Relaxed);
        assert!(health_of(&s).is_ok(), "no table asked for");
        s.firewall.store(true, Ordering::Relaxed);
        assert!(health_of(&s).unwrap_err().contains("table"));
        s.table_present.store(true, Ordering::Relaxed);
        assert!(health_of(&s).is_ok());
        s.reload_refused.store(true, Ordering::Relaxed);
        assert!(health_of(&s).unwrap_err().contains("reload"));
    }

    #[test]
    fn the_text_ends_as_openmetrics_does_and_labels_the_mode() {
        let m = Metrics::new();
        m.config(Enforcement::Monitor, false, 3);
        m.exchange(&Exchange {
            src: "a",
            dst: "b",
            endpoint: "events/add",
            direction: "push",
            outcome: Outcome::WouldBlock,
            rule: Some("blocked tag"),
            mode: Enforcement::Monitor,
            bytes_in: 10,
            bytes_out: 0,
            to_verdict: Some(Duration::from_millis(1)),
            to_answer: None,
        });
        let text = m.text();
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        assert!(text.contains(
            "misp_guard_blocks_total{rule=\"blocked tag\",src=\"a\",dst=\"b\",verdict=\"would_block\",mode=\"monitor\"} 1"
        ), "{text}");
        assert!(
            text.contains("misp_guard_config_generation{mode=\"monitor\"} 3"),
            "{text}"
        );
        assert!(
            !text.contains("bytes_out_total"),
            "no bytes out counted: {text}"
        );
    }
}
