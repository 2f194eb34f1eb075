//! Beside the path: the configuration.
//!
//! The file is the older guard's JSON (`allowlist`, `compartments_rules`,
//! `instances`) plus one optional top-level key `guard` for everything new.
//! It is read in two layers: a serde mirror that accepts what the older
//! guard accepted, then a checked model ([`Config`]) in which instances are
//! indexed, compartments resolved and rules normalised. Every problem is
//! reported in one run, each as one line naming its JSON path.
//!
//! (Interface fixed by the skeleton; loading and validation are being
//! written.)

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rules::Policy;

/// Index of an instance in [`Config::instances`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub usize);

/// The checked configuration. Immutable once built; shared as `Arc<Config>`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Instances in file order.
    pub instances: Vec<Instance>,
    /// `compartments_rules.can_reach`: (from, to) pairs by compartment name.
    pub can_reach: Vec<(String, String)>,
    /// `allowlist`.
    pub allowlist: Allowlist,
    /// The `guard` section, defaults filled in.
    pub guard: GuardSettings,
}

/// One MISP instance of `instances`.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Its key in `instances`, e.g. `instance_1_1`.
    pub name: String,
    /// `ip`: the only address the guard ever connects to for it.
    pub ip: IpAddr,
    /// `host`: the name MISP uses for it (`Server.url`); may be an IP literal.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `compartment_id`.
    pub compartment: String,
    /// `affiliation` (informational).
    pub affiliation: String,
    /// Its block rules, normalised.
    pub policy: Policy,
    /// `guard.instances.<name>`: settings the older guard did not have.
    pub settings: InstanceSettings,
}

/// `guard.instances.<name>`.
#[derive(Debug, Clone, Default)]
pub struct InstanceSettings {
    /// `base_path`: a path prefix when the instance's `Server.url` has one
    /// (`/misp`); empty when none. Never ends with `/`.
    pub base_path: String,
    /// `tls`: how the guard talks TLS for this instance.
    pub tls: InstanceTls,
}

/// `guard.instances.<name>.tls`.
#[derive(Debug, Clone, Default)]
pub struct InstanceTls {
    /// `cert`/`key`: the certificate the guard presents to clients for this
    /// instance (e.g. that MISP's own); when absent, one is minted from the CA.
    pub cert: Option<PathBuf>,
    /// See `cert`.
    pub key: Option<PathBuf>,
    /// `ca`: CA file that verifies this instance's certificate upstream.
    pub ca: Option<PathBuf>,
    /// `client_cert`/`client_key`: client certificate for mutual TLS upstream.
    pub client_cert: Option<PathBuf>,
    /// See `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `danger_skip_upstream_verify`: accept any upstream certificate.
    pub danger_skip_upstream_verify: bool,
    /// `upstream`: whether the guard speaks TLS to the instance (default:
    /// true when `port` is 443, else false).
    pub upstream: bool,
    /// `allow_plain_http`: accept plain HTTP from clients for an instance
    /// reached over TLS.
    pub allow_plain_http: bool,
}

/// `allowlist`.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    /// `urls`: exact URLs (`http://host:port/path?query`).
    pub urls: Vec<String>,
    /// `domains`: host names, any path.
    pub domains: Vec<String>,
}

/// `guard`: listeners, limits, timeouts, TLS, logging.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// `listen.proxy`: explicit-proxy listeners.
    pub proxy_listen: Vec<SocketAddr>,
    /// `listen.transparent`: transparent listeners (nftables redirect).
    pub transparent_listen: Vec<SocketAddr>,
    /// `limits`.
    pub limits: Limits,
    /// `timeouts`.
    pub timeouts: Timeouts,
    /// `upstream_mark`: `SO_MARK` on upstream sockets.
    pub upstream_mark: u32,
    /// `tls`.
    pub tls: TlsSettings,
    /// `log`.
    pub log: LogSettings,
    /// `spill_dir`: where held bodies past the memory threshold go.
    pub spill_dir: PathBuf,
}

/// `guard.limits`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `max_header_bytes`: a request or response head (default 64 KiB).
    pub max_header_bytes: usize,
    /// `max_headers`: header lines in one head (default 100).
    pub max_headers: usize,
    /// `max_body_bytes`: a raw body as received (default 1 GiB).
    pub max_body_bytes: u64,
    /// `max_decoded_bytes`: a body after `Content-Encoding` (default 2 GiB).
    pub max_decoded_bytes: u64,
    /// `max_decode_ratio`: decoded/raw (default 200).
    pub max_decode_ratio: u64,
    /// `hold_memory_bytes`: bytes of one held body kept in memory before it
    /// spills to a file (default 4 MiB).
    pub hold_memory_bytes: usize,
    /// `max_connections`: concurrent client connections (default 512).
    pub max_connections: usize,
    /// `max_json_depth`: nesting depth of an inspected document (default 64).
    pub max_json_depth: usize,
}

/// `guard.timeouts`, each in seconds in the file.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// `handshake`: TLS handshake with a client (default 10 s).
    pub handshake: Duration,
    /// `head`: a whole request head once its first byte came (default 30 s).
    pub head: Duration,
    /// `idle`: a keep-alive connection with no request (default 60 s).
    pub idle: Duration,
    /// `body_idle`: no body byte for this long aborts the exchange
    /// (default 30 s).
    pub body_idle: Duration,
    /// `min_body_rate`: bytes per second a body must average after its first
    /// 10 seconds (default 1024).
    pub min_body_rate: u64,
    /// `connect`: TCP + TLS connect upstream (default 10 s).
    pub connect: Duration,
    /// `upstream_response`: from request sent to response head (default 300 s,
    /// MISP's own curl timeout).
    pub upstream_response: Duration,
    /// `shutdown_grace`: how long in-flight exchanges may finish on SIGTERM
    /// (default 30 s).
    pub shutdown_grace: Duration,
}

/// `guard.tls`.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `ca_cert`/`ca_key`: the CA that mints leaf certificates for instances
    /// without their own `cert`.
    pub ca_cert: Option<PathBuf>,
    /// See `ca_cert`.
    pub ca_key: Option<PathBuf>,
    /// `upstream_ca_bundle`: trusted roots for upstreams without their own
    /// `ca`; the system roots when absent.
    pub upstream_ca_bundle: Option<PathBuf>,
    /// `min_version`: "1.2" (default) or "1.3".
    pub min_version_13: bool,
}

/// `guard.log`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `format`: "text" (default), "json" or "journald".
    pub format: LogFormat,
    /// `level`: a tracing filter (default "info").
    pub level: String,
}

/// `guard.log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// The systemd journal.
    Journald,
}

/// A problem found in a config file: one line naming the JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path, e.g. `instances.instance_1_1.port`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Everything wrong with a config file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("\n"))]
pub struct Error {
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    /// Each problem.
    pub problems: Vec<Problem>,
}

impl Config {
    /// Read and check a config file. Warnings (e.g. an attribute type MISP
    /// does not know) come back beside the config.
    pub fn load(path: &Path) -> Result<(Config, Vec<Problem>), Error> {
        let _ = path;
        todo!("config loading is being written")
    }

    /// The instance with this id.
    pub fn instance(&self, id: InstanceId) -> &Instance {
        &self.instances[id.0]
    }
}
