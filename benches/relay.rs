//! End-to-end relay benchmark: requests/s, MB/s, latency and the guard's
//! peak memory for pushes and pulls of MISP events from 10 KB to 100 MB,
//! through the guard and directly to the same upstream.
//!
//! Needs root: the bench moves itself into a fresh network namespace
//! (`unshare(CLONE_NEWNET)`), so every byte stays on that namespace's
//! loopback and nothing collides with ports of the host, and the guard
//! keeps its default `upstream_mark` (setting `SO_MARK` needs
//! CAP_NET_ADMIN). Run with `cargo bench --bench relay` (release profile;
//! cargo builds the `misp-guard` binary it starts). Arguments that do not
//! start with `--` select sizes by label, e.g. `cargo bench --bench relay
//! -- 10KB 1MB`.
//!
//! The upstream is a small thread-per-connection HTTP/1.1 server in this
//! file, not the Python fake peer: it must not be what limits throughput.
//! It checks every pushed body byte for byte, and the client checks every
//! pulled body, so a figure never comes from a refused or mangled exchange.
//!
//! [`Transport`] says how each leg is spoken and [`Path`] whether the guard
//! is in between. [`Transport::Tls`] is TLS on both legs through the guard
//! (client → guard after a `CONNECT` on the explicit-proxy listener, with
//! the certificate the guard mints from its CA; guard → upstream, verified
//! against the upstream CA) against TLS directly to the same upstream. Both
//! CAs are made at bench start with rcgen. Arguments `plain` and `tls`
//! select transports, e.g. `cargo bench --bench relay -- tls 1MB`.
//!
//! [`Path::Transparent`] is the same exchange sent to the instance's own
//! address with no proxy setting, caught by the guard's own nftables table
//! (`guard.firewall.mode: "host"`, the output hook, as on a MISP host) and
//! relayed by its transparent listener: the redirect against the explicit
//! proxy, in the same run. Each such guard's log gives the time from its
//! start to its table installed; the table is removed after each series.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use misp_guard::config::Config;
use misp_guard::rules::{self, Context, Document, Evaluation, Verdict};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};

#[path = "../tests/common/pki.rs"]
mod pki;

use pki::{server_params, Ca};

const GUARD: &str = env!("CARGO_BIN_EXE_misp-guard");
const CONFORMANCE_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/conformance/peer-scenarios/config.json"
);

/// The guard's explicit-proxy listener.
const PROXY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 18080);

/// The guard's transparent listener (a wildcard: the output hook's
/// redirect sends local traffic to 127.0.0.1).
const TRANSPARENT: &str = "0.0.0.0:18443";

/// Plain HTTP port of every instance. Not 443: an instance on 443 is spoken
/// to over TLS by default (`tls.upstream`).
const PLAIN_PORT: u16 = 80;

/// TLS port of every instance: the guard speaks TLS upstream by default.
const TLS_PORT: u16 = 443;

/// The pinned pull URL of the conformance scenario `pull_event_non-blocked`.
const EVENT_UUID: &str = "385283a1-b5e0-4e10-a532-dce11c365a56";
const PULL_PATH: &str = "/events/view/385283a1-b5e0-4e10-a532-dce11c365a56/deleted[]:0/deleted[]:1/excludeGalaxy:1/includeEventCorrelations:0/includeFeedCorrelations:0/includeWarninglistHits:0/excludeLocalTags:1";
const PUSH_PATH: &str = "/events/add/metadata:1";

/// What the upstream answers to a push (MISP's answer is not inspected).
/// What MISP answers an add with: the event's metadata (judged by the
/// guard under the remote's rules).
const PUSH_ANSWER: &[u8] = br#"{"Event":{"id":"1","uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","info":"pushed","distribution":"1","published":false,"Tag":[{"name":"tlp:green"}]}}"#;

/// Event sizes under test: label, target body size, measured requests.
/// Counts keep the whole run within a few minutes on a busy 2-core box.
const SIZES: &[(&str, usize, usize)] = &[
    ("10KB", 10_000, 2000),
    ("1MB", 1_000_000, 200),
    ("20MB", 20_000_000, 20),
    ("100MB", 100_000_000, 5),
];

/// The three targets of the issue.
const RSS_TARGET_MIB: f64 = 64.0;
const RATIO_TARGET: f64 = 0.5;
const ADDED_LATENCY_TARGET_MS: f64 = 0.5;

/// How each leg is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// HTTP/1.1 over TCP on both legs; through the guard, absolute-form
    /// requests to the proxy listener.
    Plain,
    /// HTTP/1.1 over TLS on both legs; through the guard, a `CONNECT` per
    /// connection, then TLS inside the tunnel and origin-form requests.
    Tls,
}

impl Transport {
    const ALL: [Transport; 2] = [Transport::Plain, Transport::Tls];

    fn label(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls => "tls",
        }
    }

    /// The port instances listen on for this transport.
    fn port(self) -> u16 {
        match self {
            Transport::Plain => PLAIN_PORT,
            Transport::Tls => TLS_PORT,
        }
    }

    /// Open a client connection for `kind` along `path`, ready for the
    /// first request: for TLS through the guard, after the `CONNECT` and
    /// the handshake with the guard. Not timed: the series measure
    /// requests on a kept-alive connection.
    fn dial(self, kind: Kind, path: Path, pki: &Pki) -> Result<Box<dyn Conn>, String> {
        let (source, host, ip) = kind.endpoints();
        let to = match path {
            // The transparent path dials the instance itself; the table
            // sends it to the guard.
            Path::Direct | Path::Transparent => SocketAddr::new(IpAddr::V4(ip), self.port()),
            Path::Guard => PROXY,
        };
        let mut tcp = tcp_from(IpAddr::V4(source), to).map_err(|e| format!("connect {to}: {e}"))?;
        match (self, path) {
            (Transport::Plain, _) => Ok(Box::new(tcp)),
            (Transport::Tls, Path::Direct) => {
                Ok(Box::new(tls_client(tcp, host, &pki.client_direct)?))
            }
            (Transport::Tls, Path::Transparent) => {
                Ok(Box::new(tls_client(tcp, host, &pki.client_guard)?))
            }
            (Transport::Tls, Path::Guard) => {
                let port = self.port();
                tcp.write_all(
                    format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
                        .as_bytes(),
                )
                .map_err(|e| format!("CONNECT: {e}"))?;
                let head = read_head(&mut tcp).map_err(|e| format!("CONNECT: {e}"))?;
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(format!("CONNECT answered {head:?}"));
                }
                Ok(Box::new(tls_client(tcp, host, &pki.client_guard)?))
            }
        }
    }
}

/// A TCP connection from `source` to `to`, Nagle off, reads bounded.
fn tcp_from(source: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(source, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(s)
}

/// A completed TLS handshake over `tcp` naming `host`.
fn tls_client(
    tcp: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
    }
    Ok(s)
}

/// An answer head, up to its blank line, read byte by byte so nothing of
/// what follows (the TLS handshake) is consumed.
fn read_head(s: &mut impl Read) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed inside the head",
            ));
        }
        buf.push(byte[0]);
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("head over 16 KiB"));
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A client byte stream: TCP or TLS over TCP.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

// ---------------------------------------------------------------------------
// The certificates

/// The two CAs of the TLS column and the rustls configs made from them.
struct Pki {
    /// The guard's CA (`guard.tls.ca_cert`/`ca_key`), PEM; the guard mints
    /// each instance's certificate from it.
    guard_ca_cert: String,
    guard_ca_key: String,
    /// The upstream CA (`guard.tls.upstream_ca_bundle`), PEM.
    upstream_ca_cert: String,
    /// The upstream's server side: a certificate for every instance host,
    /// signed by the upstream CA.
    upstream_server: Arc<ServerConfig>,
    /// Trusts only the guard CA: the client through the guard.
    client_guard: Arc<ClientConfig>,
    /// Trusts only the upstream CA: the client going direct.
    client_direct: Arc<ClientConfig>,
}

impl Pki {
    fn new() -> Result<Pki, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let guard_ca = Ca::new("relay bench guard CA").map_err(|e| format!("guard CA: {e}"))?;
        let upstream_ca =
            Ca::new("relay bench upstream CA").map_err(|e| format!("upstream CA: {e}"))?;

        let hosts: Vec<String> = [Kind::Push, Kind::Pull]
            .iter()
            .map(|k| k.endpoints().1.to_string())
            .collect();
        let (cert, key) = server_params(&hosts)
            .and_then(|params| upstream_ca.sign(params))
            .map_err(|e| format!("upstream cert: {e}"))?;
        let mut upstream_server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| format!("upstream server config: {e}"))?;
        upstream_server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let client = |ca: &Ca| -> Result<Arc<ClientConfig>, String> {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der.clone()).map_err(|e| e.to_string())?;
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            // What MISP's curl offers.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Pki {
            client_guard: client(&guard_ca)?,
            client_direct: client(&upstream_ca)?,
            guard_ca_cert: guard_ca.cert_pem,
            guard_ca_key: guard_ca.key_pem,
            upstream_ca_cert: upstream_ca.cert_pem,
            upstream_server: Arc::new(upstream_server),
        })
    }
}

/// Whether the guard is in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    /// The explicit-proxy listener.
    Guard,
    /// The guard's nftables redirect and its transparent listener.
    Transparent,
}

/// Push or pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// instance_2_2 posts an event to instance1-comp2.com.
    Push,
    /// instance_1_2 fetches an event from instance1-comp1.com.
    Pull,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Push => "push",
            Kind::Pull => "pull",
        }
    }

    /// (client address, destination host, destination address) in the
    /// namespace, after the conformance config's mapping a.b.c.d → 127.a.c.d.
    fn endpoints(self) -> (Ipv4Addr, &'static str, Ipv4Addr) {
        match self {
            Kind::Push => (
                Ipv4Addr::new(127, 20, 0, 2),
                "instance1-comp2.com",
                Ipv4Addr::new(127, 20, 0, 1),
            ),
            Kind::Pull => (
                Ipv4Addr::new(127, 10, 0, 2),
                "instance1-comp1.com",
                Ipv4Addr::new(127, 10, 0, 1),
            ),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Push => PUSH_PATH,
            Kind::Pull => PULL_PATH,
        }
    }
}

fn main() -> ExitCode {
    if !nix::unistd::Uid::effective().is_root() {
        println!(
            "SKIP relay bench: needs root (own network namespace, SO_MARK on upstream sockets)"
        );
        return ExitCode::SUCCESS;
    }
    // Before any thread exists: threads and children inherit the namespace.
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        println!("SKIP relay bench: cannot create a network namespace: {e}");
        return ExitCode::SUCCESS;
    }
    // A missed target is a figure to report, not a failure: only a refused
    // or mangled exchange (or a setup error) fails the run.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay bench failed: {e}");
            ExitCode::from(2)
        }
    }
}

/// One measured series.
struct Series {
    latencies: Vec<Duration>,
    wall: Duration,
    bytes_per_request: usize,
    /// Connections the upstream accepted during the series (warm-up
    /// included): 1 when the guard keeps its upstream connection.
    upstream_connections: u64,
}

impl Series {
    fn requests_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn mb_per_s(&self) -> f64 {
        (self.latencies.len() * self.bytes_per_request) as f64 / self.wall.as_secs_f64() / 1e6
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut v = self.latencies.clone();
        v.sort();
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    }
}

/// One row of the table.
struct Row {
    kind: Kind,
    transport: Transport,
    label: &'static str,
    size: usize,
    direct: Series,
    guard: Series,
    /// Through the redirect and the transparent listener.
    transparent: Series,
    /// The rule engine alone on the same event, in this process, MB/s:
    /// the ceiling of what the guard can do on one body.
    engine_mb_s: f64,
    peak_mib: f64,
    /// The guard's CPU time (user and system) per exchange of the guard
    /// series, ms.
    cpu_ms: f64,
}

fn run() -> Result<(), String> {
    sh(&["ip", "link", "set", "lo", "up"])?;
    let selected: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let is = |s: &String, label: &str| s.eq_ignore_ascii_case(label);
    if let Some(unknown) = selected.iter().find(|s| {
        !SIZES.iter().any(|z| is(s, z.0)) && !Transport::ALL.iter().any(|t| is(s, t.label()))
    }) {
        return Err(format!(
            "unknown argument {unknown:?}; sizes are 10KB 1MB 20MB 100MB, transports plain tls"
        ));
    }
    // No size named means every size; no transport named, every transport.
    let any_size = !selected.iter().any(|s| SIZES.iter().any(|z| is(s, z.0)));
    let sizes: Vec<_> = SIZES
        .iter()
        .filter(|z| any_size || selected.iter().any(|s| is(s, z.0)))
        .collect();
    let any_transport = !selected
        .iter()
        .any(|s| Transport::ALL.iter().any(|t| is(s, t.label())));
    let transports: Vec<Transport> = Transport::ALL
        .into_iter()
        .filter(|t| any_transport || selected.iter().any(|s| is(s, t.label())))
        .collect();

    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let pki = Pki::new()?;
    let upstream = Upstream::start(&transports, &pki)?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut fresh_rows = Vec::new();
    let mut idle_mib = 0.0;
    let mut installs = Vec::new();
    for &transport in &transports {
        let config = guard_config(transport, dir.path(), &pki, false)?;
        let config_path = dir
            .path()
            .join(format!("config-{}.json", transport.label()));
        fs::write(&config_path, config).map_err(|e| format!("write config: {e}"))?;
        let transparent_path = dir
            .path()
            .join(format!("config-{}-transparent.json", transport.label()));
        fs::write(
            &transparent_path,
            guard_config(transport, dir.path(), &pki, true)?,
        )
        .map_err(|e| format!("write config: {e}"))?;
        let (loaded, _) = Config::load(&config_path).map_err(|e| format!("bench config: {e}"))?;
        for &&(label, size, n) in &sizes {
            let event = Arc::new(event_of_size(size));
            for kind in [Kind::Push, Kind::Pull] {
                upstream.expect(kind, event.clone());
                let request = request_bytes(kind, Path::Direct, transport, &event);
                let direct = measure(
                    kind,
                    Path::Direct,
                    transport,
                    Connections::Kept,
                    &request,
                    &event,
                    n,
                    &upstream,
                    &pki,
                )?;
                // A fresh guard per row: its VmHWM is this row's peak.
                let guard = GuardProc::start(&config_path, dir.path())?;
                idle_mib = guard.peak_mib().unwrap_or(0.0);
                let request = request_bytes(kind, Path::Guard, transport, &event);
                let cpu_before = guard.cpu_ms()?;
                let through = measure(
                    kind,
                    Path::Guard,
                    transport,
                    Connections::Kept,
                    &request,
                    &event,
                    n,
                    &upstream,
                    &pki,
                )
                .map_err(|e| format!("{e}\n--- guard log (tail) ---\n{}", guard.log_tail(20)))?;
                let peak_mib = guard.peak_mib()?;
                let cpu_ms = (guard.cpu_ms()? - cpu_before) / through.latencies.len().max(1) as f64;
                drop(guard);
                // The same exchange to the instance's address, caught by
                // the guard's own table.
                let guard = GuardProc::start_transparent(&transparent_path, dir.path())?;
                installs.push(guard.install_ms()?);
                let request = request_bytes(kind, Path::Transparent, transport, &event);
                let transparent = measure(
                    kind,
                    Path::Transparent,
                    transport,
                    Connections::Kept,
                    &request,
                    &event,
                    n,
                    &upstream,
                    &pki,
                )
                .map_err(|e| format!("{e}\n--- guard log (tail) ---\n{}", guard.log_tail(20)))?;
                drop(guard);
                // The table stays when the guard stops (fail closed): the
                // next direct series must not meet it.
                sh(&[GUARD, "nft", "remove"])?;
                let engine_mb_s = engine_rate(&loaded, kind, transport, &event, n)?;
                let row = Row {
                    kind,
                    transport,
                    label,
                    size: event.len(),
                    direct,
                    guard: through,
                    transparent,
                    engine_mb_s,
                    peak_mib,
                    cpu_ms,
                };
                eprintln!("{}", row_line(&row));
                rows.push(row);
            }
        }
        if sizes.iter().any(|z| z.1 == FRESH_SIZE) {
            fresh_rows.push(fresh_series(
                transport,
                &config_path,
                dir.path(),
                &upstream,
                &pki,
            )?);
        }
    }
    let took = started.elapsed();
    print!("{}", table(&rows, idle_mib, took));
    print!("{}", fresh_table(&fresh_rows));
    print!("{}", transparent_table(&rows, &installs));
    targets_report(&rows);
    Ok(())
}

/// The event size of the new-connection series (the 10 KB push).
const FRESH_SIZE: usize = 10_000;
/// Exchanges measured in the new-connection series.
const FRESH_N: usize = 300;

/// The 10 KB push with a new connection for each exchange, direct and
/// through one guard: what the connection setup (and for TLS the
/// handshakes, two of them through the guard) adds per exchange.
fn fresh_series(
    transport: Transport,
    config_path: &std::path::Path,
    dir: &std::path::Path,
    upstream: &Upstream,
    pki: &Pki,
) -> Result<FreshRow, String> {
    let kind = Kind::Push;
    let event = Arc::new(event_of_size(FRESH_SIZE));
    upstream.expect(kind, event.clone());
    let request = request_bytes(kind, Path::Direct, transport, &event);
    let direct = measure(
        kind,
        Path::Direct,
        transport,
        Connections::Fresh,
        &request,
        &event,
        FRESH_N,
        upstream,
        pki,
    )?;
    let guard = GuardProc::start(config_path, dir)?;
    let request = request_bytes(kind, Path::Guard, transport, &event);
    let through = measure(
        kind,
        Path::Guard,
        transport,
        Connections::Fresh,
        &request,
        &event,
        FRESH_N,
        upstream,
        pki,
    )
    .map_err(|e| format!("{e}\n--- guard log (tail) ---\n{}", guard.log_tail(20)))?;
    let row = FreshRow {
        transport,
        direct,
        guard: through,
    };
    eprintln!(
        "push 10KB {} new connection each: direct p50 {:.3} ms, guard p50 {:.3} ms",
        transport.label(),
        row.direct.percentile_ms(0.5),
        row.guard.percentile_ms(0.5)
    );
    Ok(row)
}

/// The rule engine alone on `event` under the rules the guard applies to
/// this exchange (the sender's for a push, the remote's for a pull), MB/s.
/// Repeated for at least half a second (at most `n` times), so one
/// scheduling hiccup on a busy machine does not make the figure.
fn engine_rate(
    config: &Config,
    kind: Kind,
    transport: Transport,
    event: &[u8],
    n: usize,
) -> Result<f64, String> {
    let (source, host, _) = kind.endpoints();
    let instance = match kind {
        Kind::Push => config
            .source(IpAddr::V4(source))
            .ok_or_else(|| format!("{source} is not an instance of the bench config"))?,
        Kind::Pull => config
            .destination_by_name(host, transport.port())
            .map_err(|e| format!("{host}: {e}"))?,
    };
    let policy = &config.instance(instance).policy;
    let started = Instant::now();
    let mut runs = 0;
    while runs < n && (runs == 0 || started.elapsed() < Duration::from_millis(500)) {
        // As the relay feeds it: the held pieces straight into the
        // tokenizer, no reader between.
        let mut evaluation = Evaluation::new(
            Document::Event,
            policy,
            &Context::default(),
            rules::DEFAULT_MAX_DEPTH,
        );
        for piece in event.chunks(256 * 1024) {
            evaluation.feed(piece);
        }
        match evaluation.finish() {
            Verdict::Allow(_) => {}
            Verdict::Block(b) => return Err(format!("the engine blocks the bench event: {b:?}")),
            Verdict::Rebuild(r) => {
                return Err(format!("the engine rebuilds the bench event: {r:?}"))
            }
        }
        runs += 1;
    }
    Ok((runs * event.len()) as f64 / started.elapsed().as_secs_f64() / 1e6)
}

// ---------------------------------------------------------------------------
// The guard

/// The conformance config with its addresses mapped onto the namespace
/// loopback (a.b.c.d → 127.a.c.d, as the end-to-end tests do), every
/// instance on the transport's port, and a `guard` section (for TLS with
/// the two CAs, written into `dir`). The rules are the conformance ones:
/// the generated events pass them.
fn guard_config(
    transport: Transport,
    dir: &std::path::Path,
    pki: &Pki,
    transparent: bool,
) -> Result<String, String> {
    let spill = dir.join("spill");
    let spill = spill.as_path();
    let text =
        fs::read_to_string(CONFORMANCE_CONFIG).map_err(|e| format!("{CONFORMANCE_CONFIG}: {e}"))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{CONFORMANCE_CONFIG}: {e}"))?;
    let instances_mut = config["instances"]
        .as_object_mut()
        .ok_or("conformance config has no instances")?;
    for inst in instances_mut.values_mut() {
        let ip = inst["ip"].as_str().ok_or("instance without ip")?;
        let o: Vec<&str> = ip.split('.').collect();
        if o.len() != 4 {
            return Err(format!("instance ip {ip} is not IPv4"));
        }
        inst["ip"] = serde_json::Value::String(format!("127.{}.{}.{}", o[0], o[2], o[3]));
        inst["port"] = serde_json::Value::from(transport.port());
    }
    let instances = config["instances"]
        .as_object()
        .cloned()
        .ok_or("conformance config has no instances")?;
    fs::create_dir_all(spill).map_err(|e| format!("mkdir {}: {e}", spill.display()))?;
    // `upstream_mark` keeps its default: root may set it, and the figures
    // then include the cost a deployment pays. Logging stays at `info` (one
    // line per exchange) for the same reason.
    config["guard"] = serde_json::json!({
        "listen": { "transparent": [], "proxy": [PROXY.to_string()] },
        "log": { "level": "info" },
        "spill_dir": spill.display().to_string(),
    });
    if transparent {
        // The clients' instances live "on this host": the table redirects
        // their connections to the others.
        let local: Vec<String> = [Kind::Push, Kind::Pull]
            .iter()
            .filter_map(|k| {
                let source = k.endpoints().0.to_string();
                instances
                    .iter()
                    .find(|(_, i)| i["ip"] == source.as_str())
                    .map(|(name, _)| name.clone())
            })
            .collect();
        config["guard"]["listen"] =
            serde_json::json!({ "transparent": [TRANSPARENT], "proxy": [] });
        config["guard"]["firewall"] =
            serde_json::json!({ "mode": "host", "local_instances": local });
    }
    if transport == Transport::Tls {
        let write = |name: &str, text: &str| -> Result<String, String> {
            let p = dir.join(name);
            fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p.display().to_string())
        };
        // Instances on 443 are reached over TLS (`tls.upstream` defaults to
        // true there); their certificates for clients are minted from the
        // guard CA.
        config["guard"]["tls"] = serde_json::json!({
            "ca_cert": write("guard-ca.crt", &pki.guard_ca_cert)?,
            "ca_key": write("guard-ca.key", &pki.guard_ca_key)?,
            "upstream_ca_bundle": write("upstream-ca.crt", &pki.upstream_ca_cert)?,
        });
    }
    serde_json::to_string_pretty(&config).map_err(|e| e.to_string())
}

/// The guard process, killed on drop.
struct GuardProc {
    child: Child,
    log: PathBuf,
}

impl GuardProc {
    fn start(config: &std::path::Path, dir: &std::path::Path) -> Result<GuardProc, String> {
        let log = dir.join("guard.log");
        let stderr = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(GUARD)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start {GUARD}: {e}"))?;
        let mut guard = GuardProc { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&PROXY, Duration::from_millis(200)).is_ok() {
                return Ok(guard);
            }
            if let Ok(Some(status)) = guard.child.try_wait() {
                return Err(format!("guard exited ({status}):\n{}", guard.log_tail(20)));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "guard not listening on {PROXY}:\n{}",
                    guard.log_tail(20)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A guard with its own table and a transparent listener, started when
    /// its log says the table is installed.
    fn start_transparent(
        config: &std::path::Path,
        dir: &std::path::Path,
    ) -> Result<GuardProc, String> {
        let log = dir.join("guard.log");
        let stderr = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(GUARD)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start {GUARD}: {e}"))?;
        let mut guard = GuardProc { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if guard.install_ms().is_ok() {
                return Ok(guard);
            }
            if let Ok(Some(status)) = guard.child.try_wait() {
                return Err(format!("guard exited ({status}):\n{}", guard.log_tail(20)));
            }
            if Instant::now() > deadline {
                return Err(format!("guard installed no table:\n{}", guard.log_tail(20)));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// From its start to its table installed, ms, as its log says.
    fn install_ms(&self) -> Result<f64, String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains("installed") && l.contains("elapsed_ms"))
            .ok_or("no table installed yet")?;
        let rest = &line[line.find("elapsed_ms").unwrap_or(0)..];
        let digits: String = rest
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits
            .parse()
            .map_err(|_| format!("no elapsed_ms in {line:?}"))
    }

    /// The CPU time the guard has used so far (user and system), ms, in
    /// the kernel's clock ticks (`/proc/<pid>/stat` fields 14 and 15).
    fn cpu_ms(&self) -> Result<f64, String> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        // The command name may hold spaces: fields are counted after it.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
            return Err(format!("no utime/stime in {path}"));
        };
        Ok((user + system) * 1000.0 / clock_ticks_per_s())
    }

    /// The peak resident set so far (`VmHWM`), MiB.
    fn peak_mib(&self) -> Result<f64, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no VmHWM in {path}"))?;
        Ok(kb / 1024.0)
    }

    fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for GuardProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The upstream

/// The fake MISP instances: one listener per destination, a thread per
/// connection, keep-alive. Pushes are read and compared with the expected
/// body; pulls are answered with the prepared event.
struct Upstream {
    state: Arc<UpstreamState>,
}

struct UpstreamState {
    push_body: RwLock<Arc<Vec<u8>>>,
    pull_body: RwLock<Arc<Vec<u8>>>,
    /// Requests that were not what the bench sent.
    errors: AtomicU64,
    /// Requests answered.
    served: AtomicU64,
    /// Connections accepted.
    accepted: AtomicU64,
}

impl Upstream {
    fn start(transports: &[Transport], pki: &Pki) -> Result<Upstream, String> {
        let state = Arc::new(UpstreamState {
            push_body: RwLock::new(Arc::new(Vec::new())),
            pull_body: RwLock::new(Arc::new(Vec::new())),
            errors: AtomicU64::new(0),
            served: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        for &transport in transports {
            for kind in [Kind::Push, Kind::Pull] {
                let (_, _, ip) = kind.endpoints();
                let addr = SocketAddr::new(IpAddr::V4(ip), transport.port());
                let listener =
                    TcpListener::bind(addr).map_err(|e| format!("upstream bind {addr}: {e}"))?;
                let state = state.clone();
                let tls = pki.upstream_server.clone();
                thread::spawn(move || {
                    for conn in listener.incoming().flatten() {
                        state.accepted.fetch_add(1, Ordering::SeqCst);
                        let state = state.clone();
                        let tls = tls.clone();
                        thread::spawn(move || {
                            // An error ends this connection; the client
                            // sees it and the bench fails with it.
                            let _ = conn.set_nodelay(true);
                            let _ = match transport {
                                Transport::Plain => serve_upstream(conn, &state),
                                Transport::Tls => rustls::ServerConnection::new(tls)
                                    .map_err(io::Error::other)
                                    .and_then(|c| {
                                        serve_upstream(StreamOwned::new(c, conn), &state)
                                    }),
                            };
                        });
                    }
                });
            }
        }
        Ok(Upstream { state })
    }

    fn expect(&self, kind: Kind, body: Arc<Vec<u8>>) {
        let slot = match kind {
            Kind::Push => &self.state.push_body,
            Kind::Pull => &self.state.pull_body,
        };
        if let Ok(mut b) = slot.write() {
            *b = body;
        }
    }

    fn errors(&self) -> u64 {
        self.state.errors.load(Ordering::SeqCst)
    }

    fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

fn serve_upstream(conn: impl Read + Write, state: &UpstreamState) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, conn);
    let mut line = Vec::new();
    loop {
        // The head.
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let request_line = String::from_utf8_lossy(&line).to_string();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line == b"\r\n" {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some((name, value)) = text.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(usize::MAX);
                }
            }
        }
        let answer: Arc<Vec<u8>> = match (method.as_str(), target.as_str()) {
            ("POST", PUSH_PATH) => {
                let expected = state
                    .push_body
                    .read()
                    .map(|b| b.clone())
                    .unwrap_or_default();
                let same = length == expected.len() && read_compare(&mut reader, &expected)?;
                if !same {
                    state.errors.fetch_add(1, Ordering::SeqCst);
                }
                Arc::new(PUSH_ANSWER.to_vec())
            }
            ("GET", PULL_PATH) if length == 0 => state
                .pull_body
                .read()
                .map(|b| b.clone())
                .unwrap_or_default(),
            _ => {
                state.errors.fetch_add(1, Ordering::SeqCst);
                let writer = reader.get_mut();
                writer.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return writer.flush();
            }
        };
        // Counted before answering, so the client never sees an answer
        // that is not counted yet.
        state.served.fetch_add(1, Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        let writer = reader.get_mut();
        if answer.len() <= 64 * 1024 {
            // One write: a small answer in one segment (one TLS record).
            let mut out = head.into_bytes();
            out.extend_from_slice(&answer);
            writer.write_all(&out)?;
        } else {
            writer.write_all(head.as_bytes())?;
            writer.write_all(&answer)?;
        }
        // TLS may still hold the last record.
        writer.flush()?;
    }
}

/// Read `expected.len()` bytes and compare them with `expected`.
fn read_compare(reader: &mut impl Read, expected: &[u8]) -> io::Result<bool> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut offset = 0;
    let mut same = true;
    while offset < expected.len() {
        let want = (expected.len() - offset).min(buf.len());
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body cut short",
            ));
        }
        same &= buf[..n] == expected[offset..offset + n];
        offset += n;
    }
    Ok(same)
}

// ---------------------------------------------------------------------------
// The client

/// The whole request, head and body, ready to write.
fn request_bytes(kind: Kind, path: Path, transport: Transport, event: &[u8]) -> Vec<u8> {
    let (_, host, _) = kind.endpoints();
    let port = transport.port();
    // Inside a CONNECT tunnel requests are origin-form, as to the origin.
    let target = match (path, transport) {
        (Path::Guard, Transport::Plain) => format!("http://{host}:{port}{}", kind.path()),
        (Path::Direct | Path::Transparent, _) | (Path::Guard, Transport::Tls) => {
            kind.path().to_string()
        }
    };
    let method = match kind {
        Kind::Push => "POST",
        Kind::Pull => "GET",
    };
    // The headers MISP's ServerSyncTool sends.
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: MISP 2.5.1\r\nAuthorization: 0123456789abcdef0123456789abcdef01234567\r\n"
    );
    if kind == Kind::Push {
        let _ = write!(head, "Content-Length: {}\r\n", event.len());
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if kind == Kind::Push {
        out.extend_from_slice(event);
    }
    out
}

/// How a series uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connections {
    /// One keep-alive connection, set up before the timing.
    Kept,
    /// A new connection for each exchange, its setup (TCP, `CONNECT`, TLS
    /// handshakes) timed with it, as a client that does not keep
    /// connections alive pays it.
    Fresh,
}

/// Send `n` requests (after a warm-up), one at a time, and time each from
/// first byte written (or, with [`Connections::Fresh`], from the dial) to
/// last byte read.
#[allow(clippy::too_many_arguments)]
fn measure(
    kind: Kind,
    path: Path,
    transport: Transport,
    connections: Connections,
    request: &[u8],
    event: &[u8],
    n: usize,
    upstream: &Upstream,
    pki: &Pki,
) -> Result<Series, String> {
    let (_, host, _) = kind.endpoints();
    let what = format!(
        "{} {} {} {} via {:?}",
        kind.label(),
        transport.label(),
        event.len(),
        host,
        path
    );
    // Counted from before the dial: the direct path's own connection is 1.
    let accepted_before = upstream.accepted();
    let dial = || -> Result<BufReader<Box<dyn Conn>>, String> {
        let conn = transport
            .dial(kind, path, pki)
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(BufReader::with_capacity(256 * 1024, conn))
    };
    let mut kept = match connections {
        Connections::Kept => Some(dial()?),
        Connections::Fresh => None,
    };
    let expected_answer: &[u8] = match kind {
        Kind::Push => PUSH_ANSWER,
        Kind::Pull => event,
    };
    let warmup = (n / 10).clamp(1, 100);
    let errors_before = upstream.errors();
    let served_before = upstream.served();
    let mut latencies = Vec::with_capacity(n);
    let mut wall = Duration::ZERO;
    for i in 0..warmup + n {
        if i == warmup {
            wall = Duration::ZERO;
        }
        let t = Instant::now();
        let mut fresh;
        let reader = match kept.as_mut() {
            Some(reader) => reader,
            None => {
                fresh = dial()?;
                &mut fresh
            }
        };
        let writer = reader.get_mut();
        writer
            .write_all(request)
            .and_then(|()| writer.flush())
            .map_err(|e| format!("{what}: request {i}: write: {e}"))?;
        read_answer(reader, expected_answer).map_err(|e| format!("{what}: request {i}: {e}"))?;
        let took = t.elapsed();
        wall += took;
        if i >= warmup {
            latencies.push(took);
        }
    }
    let errors = upstream.errors() - errors_before;
    let served = upstream.served() - served_before;
    if errors != 0 || served != (warmup + n) as u64 {
        return Err(format!(
            "{what}: upstream saw {errors} wrong request(s) and answered {served} of {}",
            warmup + n
        ));
    }
    Ok(Series {
        latencies,
        wall,
        bytes_per_request: event.len(),
        upstream_connections: upstream.accepted() - accepted_before,
    })
}

/// Read one answer; it must be a 200 carrying exactly `expected`.
fn read_answer(reader: &mut impl BufRead, expected: &[u8]) -> Result<(), String> {
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read: {e}"))?;
    let status_line = String::from_utf8_lossy(&line).trim_end().to_string();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length: Option<usize> = None;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("read: {e}"))?
            == 0
        {
            return Err("connection closed inside the answer head".into());
        }
        if line == b"\r\n" {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if let Some((name, value)) = text.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
    }
    let length = length.ok_or("answer without Content-Length")?;
    if status != 200 {
        let mut body = vec![0u8; length.min(4096)];
        let _ = reader.read_exact(&mut body);
        return Err(format!("{status_line}: {}", String::from_utf8_lossy(&body)));
    }
    if length != expected.len() {
        return Err(format!(
            "answer of {length} bytes, expected {}",
            expected.len()
        ));
    }
    match read_compare(reader, expected) {
        Ok(true) => Ok(()),
        Ok(false) => Err("answer differs from what the upstream sent".into()),
        Err(e) => Err(format!("read body: {e}")),
    }
}

// ---------------------------------------------------------------------------
// The events

/// An allowed MISP event of about `size` bytes: the conformance fixture's
/// event header and as many `ip-dst` attributes (category "Network
/// activity", distribution 5 = inherit) as it takes.
fn event_of_size(size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"Event":{{"id":"1","orgc_id":"1","org_id":"1","date":"2022-08-31","threat_level_id":"1","info":"relay benchmark","published":false,"uuid":"{EVENT_UUID}","analysis":"0","timestamp":"1661956788","distribution":"2","proposal_email_lock":false,"locked":false,"publish_timestamp":"1661956380","sharing_group_id":"0","disable_correlation":false,"extends_uuid":"","protected":null,"Org":{{"id":"1","name":"HOST","uuid":"10c8f445-888b-4a2d-bac8-4e1e8861d595","local":true}},"Orgc":{{"id":"1","name":"HOST","uuid":"10c8f445-888b-4a2d-bac8-4e1e8861d595","local":true}},"Tag":[{{"name":"tlp:green"}}],"Attribute":["#
    );
    let tail = r#"],"ShadowAttribute":[],"RelatedEvent":[],"Galaxy":[],"Object":[],"EventReport":[],"CryptographicKey":[]}}"#;
    let mut out = String::with_capacity(size + 1024);
    out.push_str(&head);
    let mut i: u32 = 0;
    loop {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"id":"{id}","type":"ip-dst","category":"Network activity","to_ids":true,"uuid":"{a:08x}-{b:04x}-4{c:03x}-8{d:03x}-{e:012x}","event_id":"1","distribution":"5","timestamp":"1661956302","comment":"","sharing_group_id":"0","deleted":false,"disable_correlation":false,"object_id":"0","object_relation":null,"first_seen":null,"last_seen":null,"value":"10.{o1}.{o2}.{o3}","Tag":[]}}"#,
            id = i + 1,
            a = i.wrapping_mul(2_654_435_761),
            b = i & 0xffff,
            c = (i >> 4) & 0xfff,
            d = (i >> 8) & 0xfff,
            e = u64::from(i) * 7919,
            o1 = (i >> 16) & 0xff,
            o2 = (i >> 8) & 0xff,
            o3 = i & 0xff,
        );
        i += 1;
        if out.len() + tail.len() >= size {
            break;
        }
    }
    out.push_str(tail);
    out.into_bytes()
}

// ---------------------------------------------------------------------------
// The report

/// `sysconf(_SC_CLK_TCK)`, as `getconf` says (100 where it cannot tell).
fn clock_ticks_per_s() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn row_line(r: &Row) -> String {
    format!(
        "{} {} {}: direct {:.0} req/s {:.1} MB/s, guard {:.0} req/s {:.1} MB/s, peak {:.1} MiB, \
         guard CPU {:.3} ms per exchange, upstream connections direct {} guard {}",
        r.kind.label(),
        r.label,
        r.transport.label(),
        r.direct.requests_per_s(),
        r.direct.mb_per_s(),
        r.guard.requests_per_s(),
        r.guard.mb_per_s(),
        r.peak_mib,
        r.cpu_ms,
        r.direct.upstream_connections,
        r.guard.upstream_connections,
    )
}

fn table(rows: &[Row], idle_mib: f64, took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{:<5} {:<6} {:<6} {:>9} {:>5} | {:>9} {:>9} {:>9} {:>9} {:>6} | {:>8} {:>7} | {:>8} {:>8} {:>8} {:>8} {:>9} | {:>8} {:>8}",
        "what", "size", "legs", "bytes", "n", "dir req/s", "grd req/s", "dir MB/s", "grd MB/s", "ratio",
        "eng MB/s", "grd/eng", "dir p50", "dir p99", "grd p50", "grd p99", "added p50", "peak MiB", "CPU ms"
    );
    let _ = writeln!(s, "{}", "-".repeat(179));
    for (i, r) in rows.iter().enumerate() {
        if i > 0 && rows[i - 1].transport != r.transport {
            let _ = writeln!(s, "{}", "-".repeat(179));
        }
        let added = r.guard.percentile_ms(0.5) - r.direct.percentile_ms(0.5);
        let _ = writeln!(
            s,
            "{:<5} {:<6} {:<6} {:>9} {:>5} | {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.2} | {:>8.1} {:>7.2} | {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.3} | {:>8.1} {:>8.3}",
            r.kind.label(),
            r.label,
            r.transport.label(),
            r.size,
            r.guard.latencies.len(),
            r.direct.requests_per_s(),
            r.guard.requests_per_s(),
            r.direct.mb_per_s(),
            r.guard.mb_per_s(),
            r.guard.mb_per_s() / r.direct.mb_per_s(),
            r.engine_mb_s,
            r.guard.mb_per_s() / r.engine_mb_s,
            r.direct.percentile_ms(0.5),
            r.direct.percentile_ms(0.99),
            r.guard.percentile_ms(0.5),
            r.guard.percentile_ms(0.99),
            added,
            r.peak_mib,
            r.cpu_ms,
        );
    }
    let _ = writeln!(
        s,
        "legs: plain = HTTP on both legs, tls = TLS on both legs (through the guard: CONNECT, \
         TLS to the guard, TLS from the guard; direct: TLS to the upstream);\nratio = \
         guard/direct MB/s of the same legs; eng = rule engine alone on the same event; \
         latencies in ms, one keep-alive connection (set up before the timing), one request at \
         a time;\npeak = guard VmHWM (fresh guard per row, {idle_mib:.1} MiB just after start); \
         CPU ms = the guard's user+system CPU per exchange of its series; run took {:.0} s",
        took.as_secs_f64()
    );
    s
}

/// One row of the new-connection table.
struct FreshRow {
    transport: Transport,
    direct: Series,
    guard: Series,
}

fn fresh_table(rows: &[FreshRow]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\npush 10KB, a new connection per exchange (n = {FRESH_N}):\n{:<6} | {:>9} {:>9} | {:>8} {:>8} {:>8} {:>8} {:>9} | {:>13}",
        "legs", "dir req/s", "grd req/s", "dir p50", "dir p99", "grd p50", "grd p99", "added p50",
        "upstream conns"
    );
    let _ = writeln!(s, "{}", "-".repeat(96));
    for r in rows {
        let _ = writeln!(
            s,
            "{:<6} | {:>9.1} {:>9.1} | {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.3} | {:>6} {:>6}",
            r.transport.label(),
            r.direct.requests_per_s(),
            r.guard.requests_per_s(),
            r.direct.percentile_ms(0.5),
            r.direct.percentile_ms(0.99),
            r.guard.percentile_ms(0.5),
            r.guard.percentile_ms(0.99),
            r.guard.percentile_ms(0.5) - r.direct.percentile_ms(0.5),
            r.direct.upstream_connections,
            r.guard.upstream_connections,
        );
    }
    let _ = writeln!(
        s,
        "latency from the dial (TCP; for tls through the guard also CONNECT and both handshakes, \
         the guard's to the upstream on the first request) to the last byte of the answer"
    );
    s
}

/// The redirect against the explicit proxy, same rows: p50 latency and
/// throughput of each, and the guard's start-to-table times.
fn transparent_table(rows: &[Row], installs: &[f64]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\ntransparent (nftables redirect + transparent listener) vs explicit proxy, same run:\n{:<5} {:<6} {:<6} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "what", "size", "legs", "prx MB/s", "trn MB/s", "trn/prx", "prx p50", "trn p50", "trn-prx", "trn p99"
    );
    let _ = writeln!(s, "{}", "-".repeat(96));
    for r in rows {
        let _ = writeln!(
            s,
            "{:<5} {:<6} {:<6} | {:>9.1} {:>9.1} {:>9.2} | {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            r.kind.label(),
            r.label,
            r.transport.label(),
            r.guard.mb_per_s(),
            r.transparent.mb_per_s(),
            r.transparent.mb_per_s() / r.guard.mb_per_s(),
            r.guard.percentile_ms(0.5),
            r.transparent.percentile_ms(0.5),
            r.transparent.percentile_ms(0.5) - r.guard.percentile_ms(0.5),
            r.transparent.percentile_ms(0.99),
        );
    }
    let mut sorted = installs.to_vec();
    sorted.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
        let median = sorted[sorted.len() / 2];
        let _ = writeln!(
            s,
            "guard start to table installed (its log's elapsed_ms, {} starts): median {median:.0} ms, min {min:.0} ms, max {max:.0} ms",
            sorted.len()
        );
    }
    s
}

/// Print each target of the issue, met or missed.
fn targets_report(rows: &[Row]) {
    let (mut met, mut missed) = (0, 0);
    let mut check = |ok: bool, text: String| {
        println!("{} {text}", if ok { "MET   " } else { "MISSED" });
        if ok {
            met += 1;
        } else {
            missed += 1;
        }
    };
    for r in rows.iter().filter(|r| r.size >= 100_000_000) {
        check(
            r.peak_mib < RSS_TARGET_MIB,
            format!(
                "{} {} {}: guard peak RSS {:.1} MiB (target < {RSS_TARGET_MIB} MiB)",
                r.kind.label(),
                r.label,
                r.transport.label(),
                r.peak_mib
            ),
        );
    }
    for r in rows.iter().filter(|r| r.size >= 1_000_000) {
        let ratio = r.guard.mb_per_s() / r.direct.mb_per_s();
        check(
            ratio >= RATIO_TARGET,
            format!(
                "{} {} {}: throughput {ratio:.2} of direct (target >= {RATIO_TARGET})",
                r.kind.label(),
                r.label,
                r.transport.label()
            ),
        );
    }
    for r in rows
        .iter()
        .filter(|r| r.kind == Kind::Push && r.size < 1_000_000)
    {
        let added = r.guard.percentile_ms(0.5) - r.direct.percentile_ms(0.5);
        check(
            added < ADDED_LATENCY_TARGET_MS,
            format!(
                "push {} {}: p50 added latency {added:.3} ms (target < {ADDED_LATENCY_TARGET_MS} ms)",
                r.label,
                r.transport.label()
            ),
        );
    }
    println!("targets: {met} met, {missed} missed");
}

fn sh(args: &[&str]) -> Result<(), String> {
    let (program, rest) = args.split_first().ok_or("empty command")?;
    let out = Command::new(program)
        .args(rest)
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
