//! Beside the path: the configuration.
//!
//! The file is the older guard's JSON (`allowlist`, `compartments_rules`,
//! `instances`) plus one optional top-level key `guard` for everything new.
//! It is read in two layers: a serde mirror that accepts what the older
//! guard accepted, then a checked model ([`Config`]) in which instances are
//! indexed, compartments resolved and rules normalised. Every problem is
//! reported in one run, each as one line naming its JSON path.
//!
//! What it refuses: wrong types, unknown keys (with a did-you-mean),
//! duplicate keys, instances in no compartment or sharing an address,
//! malformed addresses, uuids, distribution levels and tags. What it only
//! warns about: rule values MISP does not know (see [`vocab`]), which would
//! silently never block. The keys, defaults and their reasons are listed in
//! the README (Configuration).

mod check;
mod raw;
#[cfg(test)]
mod tests;
pub mod vocab;

use std::fmt::Write as _;
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
    /// `mode`: whether this instance's rules are enforced; `None` follows
    /// `guard.mode` (see [`Config::enforcement`]).
    pub mode: Option<Enforcement>,
}

/// `guard.mode` and `guard.instances.<name>.mode`: what becomes of the
/// rules' verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Enforcement {
    /// `"enforce"` (default): a body the rules block is refused, an answer
    /// they rebuild is forwarded rebuilt.
    #[default]
    Enforce,
    /// `"monitor"`, the dry run: every verdict is computed and logged
    /// (`would block`, `would rebuild`), and the traffic passes unchanged.
    Monitor,
}

impl Enforcement {
    /// The name in the config, the log and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Monitor => "monitor",
        }
    }
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
    /// `firewall`: the nftables table the guard owns.
    pub firewall: FirewallSettings,
    /// `mode`: whether the rules' verdicts are enforced (per instance in
    /// `guard.instances.<name>.mode`).
    pub mode: Enforcement,
    /// `admin`: the admin listener (metrics, health).
    pub admin: AdminSettings,
}

/// `guard.admin`: the listener serving `/metrics` and `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// `listen`: a loopback address; `None` (the default) serves nothing.
    pub listen: Option<SocketAddr>,
}

/// `guard.firewall`: whether and how the guard programs its nftables table
/// (`inet misp_guard`, see [`crate::firewall`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSettings {
    /// `mode`: "off" (default), "host" or "gateway".
    pub mode: FirewallMode,
    /// `interfaces` (gateway mode): the interfaces whose incoming sync
    /// traffic is redirected to the guard.
    pub interfaces: Vec<String>,
    /// `local_instances` (host mode): the instances on this host, by name;
    /// when absent, those whose `ip` is an address of this host.
    pub local_instances: Option<Vec<String>>,
    /// `nat_priority`: the priority of the table's nat chains (default
    /// -100, `dstnat`).
    pub nat_priority: i32,
}

/// `guard.firewall.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallMode {
    /// nftables is left to the admin (`nft/` has reference rulesets).
    Off,
    /// On a MISP host: the local MISP's outgoing sync and the remotes'
    /// inbound sync go to the guard.
    Host,
    /// On a gateway between compartments: sync routed through the box goes
    /// to the guard, and nothing reaches an instance around it.
    Gateway,
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
    /// `max_spill_bytes`: bytes of held bodies on disk at once, all
    /// connections together (default 16 GiB).
    pub max_spill_bytes: u64,
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
    /// Whether the file names a `format`. Without one the guard logs to the
    /// journal when it runs under systemd (`JOURNAL_STREAM`), else text.
    pub format_given: bool,
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
    /// Warnings found in the same run (not the reason for the failure).
    pub warnings: Vec<Problem>,
}

impl Error {
    /// Whether the only thing wrong is that no instance is configured yet:
    /// the state of the file the Debian package ships, which `config check`
    /// accepts and `run` refuses with one line.
    pub fn is_unconfigured(&self) -> bool {
        matches!(&self.problems[..], [p] if p.path == "instances" && p.message == check::NO_INSTANCES)
    }
}

/// Why a connection's destination is not an instance the guard serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No instance has this host name or address.
    #[error("destination {kind} {value} is not a configured instance")]
    UnknownDestination {
        /// `host` (a name from CONNECT, Host or SNI) or `address`.
        kind: &'static str,
        /// The name or address as asked for.
        value: String,
    },
    /// The instance exists, but not on this port.
    #[error("destination port {port} is not the port of instance {instance} ({expected})")]
    WrongPort {
        /// The instance's name.
        instance: String,
        /// The port asked for.
        port: u16,
        /// The instance's `port`.
        expected: u16,
    },
}

// === defaults ===
//
// Each default with the reason for its value; the README repeats
// them.

/// The transparent listener: all IPv4 addresses, because nftables `redirect`
/// rewrites to the primary address of the incoming interface (or 127.0.0.1
/// for locally generated traffic), which one wildcard socket covers.
const DEFAULT_TRANSPARENT_LISTEN: &str = "0.0.0.0:8443";
/// `SO_MARK` 0x4d47 ("MG"): unlikely to collide with marks set by other
/// tools, and readable in `nft list ruleset`.
const DEFAULT_UPSTREAM_MARK: u32 = 0x4d47;
/// 64 KiB: far above any head MISP sends (a few hundred bytes), low enough
/// that a slow flood of header bytes costs little memory.
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// 100 header lines: MISP sends about a dozen; the common server limit.
const DEFAULT_MAX_HEADERS: usize = 100;
/// 1 GiB: big events with attachments are pushed whole; beyond this is abuse.
const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 30;
/// 2 GiB: a large event compresses well; the cap stops decompression bombs.
const DEFAULT_MAX_DECODED_BYTES: u64 = 2 << 30;
/// 200: JSON compresses 10-50x; a higher ratio is a bomb, not an event.
const DEFAULT_MAX_DECODE_RATIO: u64 = 200;
/// 4 MiB: most sync bodies fit in memory; larger ones spill to `spill_dir`.
const DEFAULT_HOLD_MEMORY_BYTES: usize = 4 << 20;
/// 16 GiB: a few of the largest events at once; past it the disk of the
/// guard, not the rules, would decide what passes.
const DEFAULT_MAX_SPILL_BYTES: u64 = 16 << 30;
/// 512 connections: a MISP sync uses a handful; this bounds file descriptors.
const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// 64 levels: a MISP event nests about 8 deep; deeper is an attack.
const DEFAULT_MAX_JSON_DEPTH: usize = 64;
/// 10 s: a TLS handshake on a LAN takes milliseconds.
const DEFAULT_HANDSHAKE: Duration = Duration::from_secs(10);
/// 30 s: a head is one small write; this ends slowloris heads.
const DEFAULT_HEAD: Duration = Duration::from_secs(30);
/// 60 s: MISP reuses a connection for the next request within seconds.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// 30 s: a body in flight that stalls this long is dead or an attack.
const DEFAULT_BODY_IDLE: Duration = Duration::from_secs(30);
/// 1024 bytes/s: far below any real link, far above a trickle attack.
const DEFAULT_MIN_BODY_RATE: u64 = 1024;
/// 10 s: connecting to a configured address on a LAN takes milliseconds.
const DEFAULT_CONNECT: Duration = Duration::from_secs(10);
/// 300 s: MISP's own curl timeout; a slower answer is abandoned by MISP.
const DEFAULT_UPSTREAM_RESPONSE: Duration = Duration::from_secs(300);
/// 30 s: under systemd's default 90 s stop timeout, time to end a push.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// -100 (`dstnat`): where nat chains that rewrite the destination
/// conventionally sit, after conntrack (-200) and before filtering (0).
const DEFAULT_NAT_PRIORITY: i32 = -100;
/// "info": one line per verdict, nothing per byte.
const DEFAULT_LOG_LEVEL: &str = "info";
/// The TLS port: an instance on 443 is spoken to over TLS unless told.
const TLS_PORT: u16 = 443;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            max_decode_ratio: DEFAULT_MAX_DECODE_RATIO,
            hold_memory_bytes: DEFAULT_HOLD_MEMORY_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_spill_bytes: DEFAULT_MAX_SPILL_BYTES,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            handshake: DEFAULT_HANDSHAKE,
            head: DEFAULT_HEAD,
            idle: DEFAULT_IDLE,
            body_idle: DEFAULT_BODY_IDLE,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            connect: DEFAULT_CONNECT,
            upstream_response: DEFAULT_UPSTREAM_RESPONSE,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: LogFormat::Text,
            level: DEFAULT_LOG_LEVEL.to_owned(),
            format_given: false,
        }
    }
}

impl Default for GuardSettings {
    fn default() -> GuardSettings {
        GuardSettings {
            proxy_listen: Vec::new(),
            transparent_listen: DEFAULT_TRANSPARENT_LISTEN.parse().into_iter().collect(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            upstream_mark: DEFAULT_UPSTREAM_MARK,
            tls: TlsSettings::default(),
            log: LogSettings::default(),
            // Held bodies are private: the system temp dir is per-host and
            // the spill files are created with tempfile (mode 0600).
            spill_dir: std::env::temp_dir(),
            firewall: FirewallSettings::default(),
            mode: Enforcement::Enforce,
            admin: AdminSettings::default(),
        }
    }
}

impl Default for FirewallSettings {
    fn default() -> FirewallSettings {
        // Off: a config written before the guard managed nftables keeps
        // the admin's own rules in charge.
        FirewallSettings {
            mode: FirewallMode::Off,
            interfaces: Vec::new(),
            local_instances: None,
            nat_priority: DEFAULT_NAT_PRIORITY,
        }
    }
}

impl InstanceSettings {
    /// The settings of an instance on `port` with no `guard.instances`
    /// entry: no base path, TLS upstream when the port is 443.
    pub fn for_port(port: u16) -> InstanceSettings {
        InstanceSettings {
            base_path: String::new(),
            tls: InstanceTls {
                upstream: port == TLS_PORT,
                ..InstanceTls::default()
            },
            mode: None,
        }
    }
}

impl Config {
    /// Read and check a config file. Warnings (e.g. an attribute type MISP
    /// does not know) come back beside the config.
    pub fn load(path: &Path) -> Result<(Config, Vec<Problem>), Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error {
            file: Some(path.to_owned()),
            problems: vec![Problem {
                path: path.display().to_string(),
                message: format!("cannot read: {e}"),
            }],
            warnings: Vec::new(),
        })?;
        Config::from_json_str(&text).map_err(|e| Error {
            file: Some(path.to_owned()),
            ..e
        })
    }

    /// Check a config given as JSON text; [`Config::load`] without the file.
    pub fn from_json_str(text: &str) -> Result<(Config, Vec<Problem>), Error> {
        let (root, duplicates) = raw::parse(text).map_err(|p| Error {
            file: None,
            problems: vec![p],
            warnings: Vec::new(),
        })?;
        let checked = check::build(&root);
        let mut problems = duplicates;
        problems.extend(checked.errors);
        if checked.config.is_none() && problems.is_empty() {
            // Not reached: the walk reports whatever stops the build. Kept
            // so that a refusal can never come without a reason.
            problems.push(Problem {
                path: "(top level)".into(),
                message: "incomplete configuration".into(),
            });
        }
        match checked.config {
            Some(config) if problems.is_empty() => Ok((config, checked.warnings)),
            _ => Err(Error {
                file: None,
                problems,
                warnings: checked.warnings,
            }),
        }
    }

    /// The instance with this id.
    pub fn instance(&self, id: InstanceId) -> &Instance {
        // Ids are only made by this module, as indexes into `instances`.
        &self.instances[id.0]
    }

    /// The instance a peer address belongs to, by `ip`. An IPv4 peer seen on
    /// an IPv6 socket (`::ffff:a.b.c.d`) is the IPv4 address.
    pub fn source(&self, ip: IpAddr) -> Option<InstanceId> {
        let ip = ip.to_canonical();
        self.ids().find(|&id| self.instance(id).ip == ip)
    }

    /// Transparent mode: the original destination must be an instance's
    /// `ip` and `port`.
    pub fn destination_by_addr(&self, addr: SocketAddr) -> Result<InstanceId, RouteError> {
        let ip = addr.ip().to_canonical();
        let id = self
            .ids()
            .find(|&id| self.instance(id).ip == ip)
            .ok_or_else(|| RouteError::UnknownDestination {
                kind: "address",
                value: SocketAddr::new(ip, addr.port()).to_string(),
            })?;
        self.check_port(id, addr.port())
    }

    /// Proxy mode and the offline check: `host` is an instance's `host`
    /// (case-insensitive) or an IP literal (`10.0.0.1`, `[2001:db8::1]`)
    /// equal to its `ip` or `host`; then `port` must be its `port`.
    pub fn destination_by_name(&self, host: &str, port: u16) -> Result<InstanceId, RouteError> {
        let unknown = || RouteError::UnknownDestination {
            kind: "host",
            value: host.to_owned(),
        };
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map_or_else(
                || host.parse::<IpAddr>().ok(),
                |h| h.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
            )
            .map(|ip| ip.to_canonical());
        let id = match literal {
            // Validation keeps an IP-literal `host` from naming another
            // instance's `ip`, so the two lookups cannot disagree.
            Some(ip) => {
                let text = ip.to_string();
                self.ids().find(|&id| {
                    let i = self.instance(id);
                    i.ip == ip || i.host == text
                })
            }
            None => self
                .ids()
                .find(|&id| self.instance(id).host.eq_ignore_ascii_case(host)),
        }
        .ok_or_else(unknown)?;
        self.check_port(id, port)
    }

    /// Whether the rules of instance `id` are enforced or only logged: its
    /// own `mode`, else `guard.mode`.
    pub fn enforcement(&self, id: InstanceId) -> Enforcement {
        self.instance(id).settings.mode.unwrap_or(self.guard.mode)
    }

    /// The instances whose rules are only logged (monitor mode), by name.
    pub fn monitored(&self) -> Vec<&str> {
        self.ids()
            .filter(|&id| self.enforcement(id) == Enforcement::Monitor)
            .map(|id| self.instance(id).name.as_str())
            .collect()
    }

    /// Whether `from`'s compartment lists `to`'s compartment in `can_reach`.
    pub fn can_reach(&self, from: InstanceId, to: InstanceId) -> bool {
        let from = &self.instance(from).compartment;
        let to = &self.instance(to).compartment;
        self.can_reach.iter().any(|(f, t)| f == from && t == to)
    }

    /// Whether a request outside MISP sync may pass: `url` exactly in
    /// `allowlist.urls`, or `host` (case-insensitive, brackets of an IPv6
    /// literal ignored) in `allowlist.domains`.
    pub fn allowlisted(&self, url: &str, host: &str) -> bool {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        self.allowlist.urls.iter().any(|u| u == url)
            || self
                .allowlist
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(host))
    }

    /// A short multi-line summary for `misp-guard config check`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "instances ({}):", self.instances.len());
        for i in &self.instances {
            let p = &i.policy;
            let _ = writeln!(
                out,
                "  {} host {} at {} compartment {} ({}{}): {} blocked tags, {} required taxonomies, \
                 {} blocked distributions, {} blocked sharing groups, {} blocked types, \
                 {} blocked categories, {} blocked objects",
                i.name,
                i.host,
                SocketAddr::new(i.ip, i.port),
                i.compartment,
                if i.settings.tls.upstream { "TLS upstream" } else { "plain HTTP upstream" },
                if i.settings.base_path.is_empty() {
                    String::new()
                } else {
                    format!(", base path {}", i.settings.base_path)
                },
                p.blocked_tags.len(),
                p.required_taxonomies.len(),
                p.blocked_distributions.iter().filter(|b| **b).count(),
                p.blocked_sharing_groups.len(),
                p.blocked_attribute_types.len(),
                p.blocked_attribute_categories.len(),
                p.blocked_object_types.len(),
            );
        }
        let _ = writeln!(out, "compartments:");
        let mut froms: Vec<&str> = self.can_reach.iter().map(|(f, _)| f.as_str()).collect();
        froms.dedup();
        for from in froms {
            let to: Vec<&str> = self
                .can_reach
                .iter()
                .filter(|(f, _)| f == from)
                .map(|(_, t)| t.as_str())
                .collect();
            let members: Vec<&str> = self
                .instances
                .iter()
                .filter(|i| i.compartment == from)
                .map(|i| i.name.as_str())
                .collect();
            let _ = writeln!(
                out,
                "  {from} [{}] reaches {}",
                members.join(", "),
                if to.is_empty() {
                    "nothing".to_owned()
                } else {
                    to.join(", ")
                }
            );
        }
        let _ = writeln!(
            out,
            "allowlist: {} urls, {} domains",
            self.allowlist.urls.len(),
            self.allowlist.domains.len()
        );
        let _ = writeln!(out, "listeners:");
        for a in &self.guard.transparent_listen {
            let _ = writeln!(out, "  transparent {a}");
        }
        for a in &self.guard.proxy_listen {
            let _ = writeln!(out, "  proxy {a}");
        }
        if let Some(a) = self.guard.admin.listen {
            let _ = writeln!(out, "  admin {a} (/metrics, /healthz)");
        }
        let monitored = self.monitored();
        if !monitored.is_empty() {
            let _ = writeln!(
                out,
                "MONITOR MODE (rules logged as \"would block\", not enforced) for: {}",
                monitored.join(", ")
            );
        }
        out
    }

    fn ids(&self) -> impl Iterator<Item = InstanceId> {
        (0..self.instances.len()).map(InstanceId)
    }

    fn check_port(&self, id: InstanceId, port: u16) -> Result<InstanceId, RouteError> {
        let instance = self.instance(id);
        if instance.port == port {
            Ok(id)
        } else {
            Err(RouteError::WrongPort {
                instance: instance.name.clone(),
                port,
                expected: instance.port,
            })
        }
    }
}
