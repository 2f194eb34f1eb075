//! The checked layer: from the raw tree to [`Config`], every problem
//! reported by JSON path in one pass.
//!
//! The walk never stops at the first problem: a field that is wrong is
//! reported and left out, and the walk goes on, so `config check` lists
//! everything at once. A [`Config`] is only returned when nothing was wrong.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{index, join, Object, Value};
use super::{
    vocab, AdminSettings, Allowlist, Config, Enforcement, FirewallMode, FirewallSettings,
    GuardSettings, Instance, InstanceSettings, InstanceTls, Limits, LogFormat, LogSettings,
    Problem, Timeouts, TlsSettings,
};
use crate::rules::{Policy, RequiredTaxonomy};

/// What the walk found.
pub(super) struct Checked {
    /// The model, when every part of it could be built (check `errors` too).
    pub(super) config: Option<Config>,
    /// Problems that refuse the file.
    pub(super) errors: Vec<Problem>,
    /// Problems that do not (values MISP does not know, weakened checks).
    pub(super) warnings: Vec<Problem>,
}

const TOP_KEYS: &[&str] = &["allowlist", "compartments_rules", "instances", "guard"];
const ALLOWLIST_KEYS: &[&str] = &["urls", "domains"];
const COMPARTMENTS_KEYS: &[&str] = &["can_reach"];
const INSTANCE_KEYS: &[&str] = &[
    "ip",
    "host",
    "port",
    "compartment_id",
    "affiliation",
    "taxonomies_rules",
    "blocked_distribution_levels",
    "blocked_sharing_groups_uuids",
    "blocked_attribute_types",
    "blocked_attribute_categories",
    "blocked_object_types",
];
const TAXONOMIES_KEYS: &[&str] = &["required_taxonomies", "allowed_tags", "blocked_tags"];
/// Hints at the instance level also name the taxonomies_rules keys: a tag
/// rule written one level too high is a likely mistake.
const INSTANCE_HINTS: &[&str] = &[
    "taxonomies_rules.required_taxonomies",
    "taxonomies_rules.allowed_tags",
    "taxonomies_rules.blocked_tags",
];
const GUARD_KEYS: &[&str] = &[
    "listen",
    "limits",
    "timeouts",
    "upstream_mark",
    "tls",
    "log",
    "spill_dir",
    "instances",
    "firewall",
    "mode",
    "admin",
];
const ADMIN_KEYS: &[&str] = &["listen"];
const FIREWALL_KEYS: &[&str] = &["mode", "interfaces", "local_instances", "nat_priority"];
/// Linux interface names are at most 15 bytes (IFNAMSIZ less the NUL).
const MAX_IFNAME: usize = 15;
const LISTEN_KEYS: &[&str] = &["proxy", "transparent"];
const LIMITS_KEYS: &[&str] = &[
    "max_header_bytes",
    "max_headers",
    "max_body_bytes",
    "max_decoded_bytes",
    "max_decode_ratio",
    "hold_memory_bytes",
    "max_connections",
    "max_json_depth",
    "max_spill_bytes",
];
const TIMEOUTS_KEYS: &[&str] = &[
    "handshake",
    "head",
    "idle",
    "body_idle",
    "min_body_rate",
    "connect",
    "upstream_response",
    "shutdown_grace",
];
const GUARD_TLS_KEYS: &[&str] = &["ca_cert", "ca_key", "upstream_ca_bundle", "min_version"];
const LOG_KEYS: &[&str] = &["format", "level"];
const GUARD_INSTANCE_KEYS: &[&str] = &["base_path", "tls", "mode"];
const INSTANCE_TLS_KEYS: &[&str] = &[
    "cert",
    "key",
    "ca",
    "client_cert",
    "client_key",
    "danger_skip_upstream_verify",
    "upstream",
    "allow_plain_http",
];

/// The one problem of a file whose `instances` is empty, as the package
/// ships it (see [`super::Error::is_unconfigured`]).
pub(super) const NO_INSTANCES: &str = "no instances (at least one is required)";

/// The longest timeout: a week. Longer is no timeout at all, and deadlines
/// computed as `now + timeout` must not overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether comment keys (`"//..."`) are allowed in an object: only inside
/// `guard`, so that the older guard's part keeps the older guard's grammar.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Comments {
    Refused,
    Ignored,
}

fn is_comment(key: &str) -> bool {
    key.starts_with("//")
}

/// Check the raw tree and build the model.
pub(super) fn build(root: &Value) -> Checked {
    let mut c = Checker::default();
    let config = c.config(root);
    Checked {
        config,
        errors: c.errors,
        warnings: c.warnings,
    }
}

/// An instance as far as it could be read.
struct Draft {
    name: String,
    path: String,
    ip: Option<IpAddr>,
    host: Option<String>,
    port: Option<u16>,
    compartment: Option<String>,
    affiliation: String,
    policy: Policy,
}

#[derive(Default)]
struct Checker {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

// === impl Checker: the document ===

impl Checker {
    fn config(&mut self, root: &Value) -> Option<Config> {
        let top = self.object(root, "")?;
        self.keys(top, "", TOP_KEYS, Comments::Refused);

        let allowlist = match top.get("allowlist") {
            Some(v) => self.allowlist(v, "allowlist"),
            None => Allowlist::default(),
        };
        let reach = self
            .required(top, "", "compartments_rules")
            .and_then(|v| self.compartments(v, "compartments_rules"));
        let drafts = self
            .required(top, "", "instances")
            .map(|v| self.instances(v, "instances"))
            .unwrap_or_default();
        if let Some(reach) = &reach {
            self.compartment_links(reach, &drafts);
        }
        let mut guard_instances = HashMap::new();
        let guard = match top.get("guard") {
            Some(v) => self.guard(v, "guard", &drafts, &mut guard_instances),
            None => GuardSettings::default(),
        };

        let mut instances = Vec::with_capacity(drafts.len());
        for d in drafts {
            // A missing part has been reported; the file will not load.
            let (Some(ip), Some(host), Some(port), Some(compartment)) =
                (d.ip, d.host, d.port, d.compartment)
            else {
                continue;
            };
            let settings = guard_instances
                .remove(&d.name)
                .unwrap_or_else(|| InstanceSettings::for_port(port));
            instances.push(Instance {
                name: d.name,
                ip,
                host,
                port,
                compartment,
                affiliation: d.affiliation,
                policy: d.policy,
                settings,
            });
        }
        self.allowlist_names_no_instance(&allowlist, &instances);
        let can_reach = reach?
            .into_iter()
            .flat_map(|(from, tos)| tos.into_iter().map(move |(_, to)| (from.clone(), to)))
            .collect();
        Some(Config {
            instances,
            can_reach,
            allowlist,
            guard,
        })
    }

    /// An allowlisted destination is relayed without inspection and before
    /// compartments are looked at: naming an instance there would open it.
    fn allowlist_names_no_instance(&mut self, allowlist: &Allowlist, instances: &[Instance]) {
        let names_instance = |host: &str| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            instances
                .iter()
                .any(|i| i.host.eq_ignore_ascii_case(host) || i.ip.to_string() == host)
        };
        for (n, d) in allowlist.domains.iter().enumerate() {
            if names_instance(d) {
                self.error(
                    format!("allowlist.domains[{n}]"),
                    format!("{d:?} is an instance: instances are inspected, never allowlisted"),
                );
            }
        }
        for (n, url) in allowlist.urls.iter().enumerate() {
            let rest = url.split_once("://").map_or("", |(_, r)| r);
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = match authority.rsplit_once(':') {
                Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                    h
                }
                _ => authority,
            };
            if names_instance(host) {
                self.error(
                    format!("allowlist.urls[{n}]"),
                    format!(
                        "{url:?} is on an instance: instances are inspected, never allowlisted"
                    ),
                );
            }
        }
    }

    fn allowlist(&mut self, v: &Value, path: &str) -> Allowlist {
        let mut out = Allowlist::default();
        let Some(obj) = self.object(v, path) else {
            return out;
        };
        self.keys(obj, path, ALLOWLIST_KEYS, Comments::Refused);
        if let Some(v) = obj.get("urls") {
            for (p, url) in self.strings(v, &join(path, "urls")) {
                match check_url(url) {
                    Ok(()) => out.urls.push(url.to_owned()),
                    Err(why) => self.error(p, format!("{url:?} {why}")),
                }
            }
        }
        if let Some(v) = obj.get("domains") {
            for (p, domain) in self.strings(v, &join(path, "domains")) {
                match host_name(domain) {
                    Ok(d) => out.domains.push(d),
                    Err(why) => self.error(p, format!("{domain:?} {why}")),
                }
            }
        }
        out
    }

    /// `compartments_rules`: each compartment with the (path, name) of each
    /// compartment it reaches, in file order.
    #[allow(clippy::type_complexity)]
    fn compartments(
        &mut self,
        v: &Value,
        path: &str,
    ) -> Option<Vec<(String, Vec<(String, String)>)>> {
        let obj = self.object(v, path)?;
        self.keys(obj, path, COMPARTMENTS_KEYS, Comments::Refused);
        let path = join(path, "can_reach");
        let map = self.required(obj, "compartments_rules", "can_reach")?;
        let map = self.object(map, &path)?;
        let mut out = Vec::new();
        for (from, tos) in &map.entries {
            let p = join(&path, from);
            if from.is_empty() {
                self.error(&p, "empty compartment name");
            }
            let tos = self
                .strings(tos, &p)
                .into_iter()
                .map(|(p, to)| (p, to.to_owned()))
                .collect();
            out.push((from.clone(), tos));
        }
        Some(out)
    }

    /// Compartments and instances refer to each other: every instance's
    /// compartment says whom it reaches, and every compartment reached is
    /// one that exists.
    fn compartment_links(&mut self, reach: &[(String, Vec<(String, String)>)], drafts: &[Draft]) {
        let keys: Vec<&str> = reach.iter().map(|(k, _)| k.as_str()).collect();
        let mut known: Vec<&str> = keys.clone();
        for d in drafts {
            if let Some(c) = &d.compartment {
                if !known.contains(&c.as_str()) {
                    known.push(c);
                }
                if !keys.contains(&c.as_str()) {
                    self.error(
                        join(&d.path, "compartment_id"),
                        format!(
                            "compartment {c:?} is not a key of compartments_rules.can_reach, \
                             so the instance could reach nothing{}",
                            hint(c, keys.iter().copied())
                        ),
                    );
                }
            }
        }
        for (_, tos) in reach {
            for (p, to) in tos {
                if !known.contains(&to.as_str()) {
                    self.error(
                        p,
                        format!(
                            "unknown compartment {to:?}{}",
                            hint(to, known.iter().copied())
                        ),
                    );
                }
            }
        }
    }
}

// === impl Checker: instances ===

impl Checker {
    fn instances(&mut self, v: &Value, path: &str) -> Vec<Draft> {
        let Some(obj) = self.object(v, path) else {
            return Vec::new();
        };
        if obj.entries.is_empty() {
            self.error(path, NO_INSTANCES);
        }
        let mut drafts: Vec<Draft> = Vec::new();
        for (name, v) in &obj.entries {
            let p = join(path, name);
            if name.is_empty() {
                self.error(&p, "empty instance name");
            }
            let Some(d) = self.instance(name, v, &p) else {
                continue;
            };
            self.distinct(&d, &drafts);
            drafts.push(d);
        }
        drafts
    }

    fn instance(&mut self, name: &str, v: &Value, path: &str) -> Option<Draft> {
        let obj = self.object(v, path)?;
        self.keys_with_hints(obj, path, INSTANCE_KEYS, INSTANCE_HINTS, Comments::Refused);
        let ip = self.required(obj, path, "ip").and_then(|v| {
            let p = join(path, "ip");
            let s = self.string(v, &p)?;
            match instance_ip(s) {
                Ok(ip) => Some(ip),
                Err(why) => self.fail(p, format!("{s:?} {why}")),
            }
        });
        let host = self.required(obj, path, "host").and_then(|v| {
            let p = join(path, "host");
            let s = self.string(v, &p)?;
            match host_name(s) {
                Ok(h) => Some(h),
                Err(why) => self.fail(p, format!("{s:?} {why}")),
            }
        });
        let port = self.required(obj, path, "port").and_then(|v| {
            let n = self.integer(v, &join(path, "port"), 1, u64::from(u16::MAX))?;
            u16::try_from(n).ok()
        });
        let compartment = self.required(obj, path, "compartment_id").and_then(|v| {
            let p = join(path, "compartment_id");
            let s = self.string(v, &p)?;
            if s.is_empty() {
                return self.fail(p, "empty compartment name");
            }
            Some(s.to_owned())
        });
        // Lenient where the older guard's schema was strict: `affiliation`
        // and the rule lists may be left out and mean "none". Unknown keys
        // are refused, so a misspelt list cannot pass for a missing one.
        let affiliation = obj
            .get("affiliation")
            .and_then(|v| self.string(v, &join(path, "affiliation")))
            .unwrap_or_default()
            .to_owned();
        let policy = self.policy(obj, path);
        Some(Draft {
            name: name.to_owned(),
            path: path.to_owned(),
            ip,
            host,
            port,
            compartment,
            affiliation,
            policy,
        })
    }

    /// Instances are told apart by address and by name: two with one `ip`
    /// or one `host` would make routing ambiguous.
    fn distinct(&mut self, d: &Draft, earlier: &[Draft]) {
        for e in earlier {
            if d.ip.is_some() && d.ip == e.ip {
                if let Some(ip) = d.ip {
                    self.error(
                        join(&d.path, "ip"),
                        format!("{ip} is also the ip of instance {}", e.name),
                    );
                }
            }
            if let (Some(h), Some(eh)) = (&d.host, &e.host) {
                if h == eh {
                    self.error(
                        join(&d.path, "host"),
                        format!("{h} is also the host of instance {}", e.name),
                    );
                }
            }
            // An IP-literal host must not name another instance's address,
            // else one literal would route to two instances.
            if let (Some(h), Some(ip)) = (&d.host, e.ip) {
                if h.parse::<IpAddr>().ok() == Some(ip) {
                    self.error(
                        join(&d.path, "host"),
                        format!("{h} is the ip of instance {}", e.name),
                    );
                }
            }
            if let (Some(h), Some(ip)) = (&e.host, d.ip) {
                if h.parse::<IpAddr>().ok() == Some(ip) {
                    self.error(
                        join(&d.path, "ip"),
                        format!("{ip} is the host of instance {}", e.name),
                    );
                }
            }
        }
    }

    fn policy(&mut self, obj: &Object, path: &str) -> Policy {
        let mut policy = Policy::default();
        if let Some(v) = obj.get("taxonomies_rules") {
            self.taxonomies(v, &join(path, "taxonomies_rules"), &mut policy);
        }
        if let Some(v) = obj.get("blocked_distribution_levels") {
            let p = join(path, "blocked_distribution_levels");
            for (i, item) in self.array(v, &p).unwrap_or_default().iter().enumerate() {
                let level = match item {
                    Value::String(s) => s.parse::<u8>().ok().filter(|_| s.len() == 1),
                    Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
                    other => {
                        self.expected::<()>(index(&p, i), "a string \"0\"..\"5\"", other);
                        continue;
                    }
                };
                match level.and_then(|l| policy.blocked_distributions.get_mut(usize::from(l))) {
                    Some(slot) => *slot = true,
                    None => self.error(
                        index(&p, i),
                        format!("{item} is not a distribution level (\"0\"..\"5\")"),
                    ),
                }
            }
        }
        if let Some(v) = obj.get("blocked_sharing_groups_uuids") {
            for (p, s) in self.strings(v, &join(path, "blocked_sharing_groups_uuids")) {
                match canonical_uuid(s) {
                    Some(u) => {
                        policy.blocked_sharing_groups.insert(u);
                    }
                    None => self.error(
                        p,
                        format!("{s:?} is not a uuid in the hyphenated form 8-4-4-4-12"),
                    ),
                }
            }
        }
        let lists: [(&str, &[&str], &str, &mut HashSet<String>); 3] = [
            (
                "blocked_attribute_types",
                vocab::ATTRIBUTE_TYPES,
                "an attribute type",
                &mut policy.blocked_attribute_types,
            ),
            (
                "blocked_attribute_categories",
                vocab::CATEGORIES,
                "an attribute category",
                &mut policy.blocked_attribute_categories,
            ),
            (
                "blocked_object_types",
                vocab::OBJECT_NAMES,
                "an object name",
                &mut policy.blocked_object_types,
            ),
        ];
        for (key, known, what, set) in lists {
            let Some(v) = obj.get(key) else { continue };
            for (p, s) in self.strings(v, &join(path, key)) {
                let Some(value) = self.rule_value(&p, s) else {
                    continue;
                };
                if !known.iter().any(|k| k.eq_ignore_ascii_case(&value)) {
                    self.warn(
                        &p,
                        format!(
                            "{s:?} is not {what} MISP knows, so it never blocks anything \
                             (nearest: {:?})",
                            nearest(&value, known.iter().copied()).unwrap_or_default()
                        ),
                    );
                }
                set.insert(value);
            }
        }
        policy
    }

    fn taxonomies(&mut self, v: &Value, path: &str, policy: &mut Policy) {
        let Some(obj) = self.object(v, path) else {
            return;
        };
        self.keys(obj, path, TAXONOMIES_KEYS, Comments::Refused);
        if let Some(v) = obj.get("blocked_tags") {
            for (p, s) in self.strings(v, &join(path, "blocked_tags")) {
                if let Some(tag) = self.rule_value(&p, s) {
                    policy.blocked_tags.insert(tag);
                }
            }
        }
        if let Some(v) = obj.get("required_taxonomies") {
            for (p, s) in self.strings(v, &join(path, "required_taxonomies")) {
                let Some(namespace) = self.rule_value(&p, s) else {
                    continue;
                };
                if !policy
                    .required_taxonomies
                    .iter()
                    .any(|t| t.namespace == namespace)
                {
                    policy.required_taxonomies.push(RequiredTaxonomy {
                        namespace,
                        allowed: Vec::new(),
                    });
                }
            }
        }
        let Some(v) = obj.get("allowed_tags") else {
            return;
        };
        let p = join(path, "allowed_tags");
        let Some(allowed) = self.object(v, &p) else {
            return;
        };
        for (ns, tags) in &allowed.entries {
            let p = join(&p, ns);
            let namespace = ns.trim().to_lowercase();
            let tags = self.strings(tags, &p);
            let Some(required) = policy
                .required_taxonomies
                .iter_mut()
                .find(|t| t.namespace == namespace)
            else {
                self.error(&p, format!("{ns:?} is not in required_taxonomies"));
                continue;
            };
            for (p, s) in tags {
                let Some(tag) = self.rule_value(&p, s) else {
                    continue;
                };
                let rest = tag
                    .strip_prefix(namespace.as_str())
                    .and_then(|r| r.strip_prefix(':'));
                match rest {
                    Some(r) if !r.is_empty() => {
                        if !required.allowed.contains(&tag) {
                            required.allowed.push(tag);
                        }
                    }
                    _ => self.error(
                        p,
                        format!("{s:?} is not a tag of taxonomy {namespace:?} ({namespace}:...)"),
                    ),
                }
            }
        }
    }

    /// A rule value, lower-cased and trimmed as the engine compares it; an
    /// empty one is an error (it would match nothing, or everything).
    fn rule_value(&mut self, path: &str, s: &str) -> Option<String> {
        let v = s.trim().to_lowercase();
        if v.is_empty() {
            return self.fail(path, "empty value");
        }
        Some(v)
    }
}

// === impl Checker: the `guard` section ===

impl Checker {
    fn guard(
        &mut self,
        v: &Value,
        path: &str,
        drafts: &[Draft],
        per_instance: &mut HashMap<String, InstanceSettings>,
    ) -> GuardSettings {
        let mut g = GuardSettings::default();
        let Some(obj) = self.object(v, path) else {
            return g;
        };
        self.keys(obj, path, GUARD_KEYS, Comments::Ignored);
        if let Some(v) = obj.get("listen") {
            self.listen(v, &join(path, "listen"), &mut g);
        }
        if let Some(v) = obj.get("limits") {
            g.limits = self.limits(v, &join(path, "limits"));
        }
        if let Some(v) = obj.get("timeouts") {
            g.timeouts = self.timeouts(v, &join(path, "timeouts"));
        }
        if let Some(v) = obj.get("upstream_mark") {
            if let Some(mark) = self.mark(v, &join(path, "upstream_mark")) {
                g.upstream_mark = mark;
            }
        }
        if let Some(v) = obj.get("tls") {
            g.tls = self.guard_tls(v, &join(path, "tls"));
        }
        if let Some(v) = obj.get("log") {
            g.log = self.log(v, &join(path, "log"));
        }
        if let Some(v) = obj.get("spill_dir") {
            if let Some(dir) = self.file_path(v, &join(path, "spill_dir")) {
                g.spill_dir = dir;
            }
        }
        if let Some(v) = obj.get("mode") {
            if let Some(m) = self.enforcement(v, &join(path, "mode")) {
                g.mode = m;
            }
        }
        if let Some(v) = obj.get("admin") {
            g.admin = self.admin(v, &join(path, "admin"));
        }
        if let Some(v) = obj.get("firewall") {
            // After `listen`: the table redirects to a transparent listener.
            g.firewall = self.firewall(v, &join(path, "firewall"), drafts, &g);
        }
        if let Some(v) = obj.get("instances") {
            let p = join(path, "instances");
            if let Some(map) = self.object(v, &p) {
                for (name, v) in &map.entries {
                    if is_comment(name) {
                        continue;
                    }
                    let p = join(&p, name);
                    let Some(d) = drafts.iter().find(|d| &d.name == name) else {
                        let names = drafts.iter().map(|d| d.name.as_str());
                        self.error(
                            &p,
                            format!("no instance {name:?} in instances{}", hint(name, names)),
                        );
                        continue;
                    };
                    let Some(port) = d.port else { continue };
                    let s = self.instance_settings(v, &p, port);
                    per_instance.insert(name.clone(), s);
                }
            }
        }
        g
    }

    fn listen(&mut self, v: &Value, path: &str, g: &mut GuardSettings) {
        let Some(obj) = self.object(v, path) else {
            return;
        };
        self.keys(obj, path, LISTEN_KEYS, Comments::Ignored);
        let mut seen: Vec<SocketAddr> = Vec::new();
        for (key, list) in [
            ("proxy", &mut g.proxy_listen),
            ("transparent", &mut g.transparent_listen),
        ] {
            let Some(v) = obj.get(key) else { continue };
            list.clear();
            for (p, s) in self.strings(v, &join(path, key)) {
                match s.parse::<SocketAddr>() {
                    Ok(a) if seen.contains(&a) => {
                        self.error(p, format!("{a} is listed twice"));
                    }
                    Ok(a) => {
                        seen.push(a);
                        list.push(a);
                    }
                    Err(_) => self.error(
                        p,
                        format!("{s:?} is not an address:port (e.g. 0.0.0.0:8443, [::]:8443)"),
                    ),
                }
            }
        }
        // No listener at all is allowed here: `run` may add them with
        // flags, and it refuses to start without any.
    }

    /// `"enforce"` or `"monitor"`.
    fn enforcement(&mut self, v: &Value, path: &str) -> Option<Enforcement> {
        match self.string(v, path)? {
            "enforce" => Some(Enforcement::Enforce),
            "monitor" => Some(Enforcement::Monitor),
            s => self.fail(path, format!("{s:?} is not \"enforce\" or \"monitor\"")),
        }
    }

    /// `admin.listen`: loopback only. The admin listener answers anyone who
    /// reaches it, without authentication; metrics name the instances.
    fn admin(&mut self, v: &Value, path: &str) -> AdminSettings {
        let mut a = AdminSettings::default();
        let Some(obj) = self.object(v, path) else {
            return a;
        };
        self.keys(obj, path, ADMIN_KEYS, Comments::Ignored);
        if let Some(v) = obj.get("listen") {
            let p = join(path, "listen");
            match self.string(v, &p).map(|s| (s, s.parse::<SocketAddr>())) {
                Some((_, Ok(addr))) if addr.ip().to_canonical().is_loopback() => {
                    a.listen = Some(addr);
                }
                Some((_, Ok(addr))) => self.error(
                    p,
                    format!("{addr} is not a loopback address (127.0.0.0/8 or [::1]): the admin listener has no authentication"),
                ),
                Some((s, Err(_))) => self.error(
                    p,
                    format!("{s:?} is not an address:port (e.g. 127.0.0.1:9464)"),
                ),
                None => {}
            }
        }
        a
    }

    fn firewall(
        &mut self,
        v: &Value,
        path: &str,
        drafts: &[Draft],
        g: &GuardSettings,
    ) -> FirewallSettings {
        let mut f = FirewallSettings::default();
        let Some(obj) = self.object(v, path) else {
            return f;
        };
        self.keys(obj, path, FIREWALL_KEYS, Comments::Ignored);
        if let Some(v) = obj.get("mode") {
            let p = join(path, "mode");
            match self.string(v, &p) {
                Some("off") => f.mode = FirewallMode::Off,
                Some("host") => f.mode = FirewallMode::Host,
                Some("gateway") => f.mode = FirewallMode::Gateway,
                Some(s) => self.error(p, format!("{s:?} is not \"off\", \"host\" or \"gateway\"")),
                None => {}
            }
        }
        if let Some(v) = obj.get("interfaces") {
            let p = join(path, "interfaces");
            for (ip, name) in self.strings(v, &p) {
                match interface_name(name) {
                    Err(why) => self.error(ip, format!("{name:?} {why}")),
                    Ok(()) if f.interfaces.iter().any(|i| i == name) => {
                        self.error(ip, format!("{name:?} is listed twice"));
                    }
                    Ok(()) => f.interfaces.push(name.to_owned()),
                }
            }
            if f.mode != FirewallMode::Gateway {
                self.error(p, "only for mode \"gateway\"");
            }
        }
        if let Some(v) = obj.get("local_instances") {
            let p = join(path, "local_instances");
            let mut names: Vec<String> = Vec::new();
            for (ip, name) in self.strings(v, &p) {
                if !drafts.iter().any(|d| d.name == name) {
                    let known = drafts.iter().map(|d| d.name.as_str());
                    self.error(
                        ip,
                        format!("no instance {name:?} in instances{}", hint(name, known)),
                    );
                } else if names.iter().any(|n| n == name) {
                    self.error(ip, format!("{name:?} is listed twice"));
                } else {
                    names.push(name.to_owned());
                }
            }
            if f.mode != FirewallMode::Host {
                self.error(&p, "only for mode \"host\"");
            } else if names.is_empty() && !self.errors.iter().any(|e| e.path.starts_with(&p)) {
                self.error(&p, "empty: name the instances on this host, or leave the key out to find them by address");
            }
            f.local_instances = Some(names);
        }
        if let Some(v) = obj.get("nat_priority") {
            let p = join(path, "nat_priority");
            if let Some(n) = self.signed(v, &p, -1000, 1000) {
                f.nat_priority = n;
            }
        }
        if f.mode == FirewallMode::Gateway && f.interfaces.is_empty() {
            let why = match obj.get("interfaces") {
                None => "missing (required for mode \"gateway\": the interfaces sync traffic arrives on)",
                Some(_) => "no interface: mode \"gateway\" redirects what arrives on these",
            };
            self.error(join(path, "interfaces"), why);
        }
        if f.mode != FirewallMode::Off {
            self.firewall_listener(path, g);
        }
        f
    }

    /// The table redirects to the port of the first transparent listener;
    /// one must be configured, and only a wildcard address receives what
    /// `redirect` rewrites to (127.0.0.1 or ::1 for local traffic, the
    /// incoming interface's address for routed traffic).
    fn firewall_listener(&mut self, path: &str, g: &GuardSettings) {
        let Some(first) = g.transparent_listen.first() else {
            return self.error(
                join(path, "mode"),
                "needs a transparent listener (guard.listen.transparent): the table redirects to its port",
            );
        };
        if !first.ip().is_unspecified() {
            self.warn(
                "guard.listen.transparent[0]",
                format!(
                    "{first} is not a wildcard address (0.0.0.0 or [::]): traffic the table redirects arrives on the incoming interface's address or loopback, and only a listener there receives it"
                ),
            );
        }
    }

    fn limits(&mut self, v: &Value, path: &str) -> Limits {
        let mut l = Limits::default();
        let Some(obj) = self.object(v, path) else {
            return l;
        };
        self.keys(obj, path, LIMITS_KEYS, Comments::Ignored);
        let max = usize::MAX as u64;
        let size = |c: &mut Checker, key: &str, slot: &mut usize| {
            if let Some(v) = obj.get(key) {
                let n = c.integer(v, &join(path, key), 1, max);
                if let Some(n) = n.and_then(|n| usize::try_from(n).ok()) {
                    *slot = n;
                }
            }
        };
        size(self, "max_header_bytes", &mut l.max_header_bytes);
        size(self, "max_headers", &mut l.max_headers);
        size(self, "hold_memory_bytes", &mut l.hold_memory_bytes);
        size(self, "max_connections", &mut l.max_connections);
        size(self, "max_json_depth", &mut l.max_json_depth);
        for (key, slot) in [
            ("max_body_bytes", &mut l.max_body_bytes),
            ("max_decoded_bytes", &mut l.max_decoded_bytes),
            ("max_decode_ratio", &mut l.max_decode_ratio),
            ("max_spill_bytes", &mut l.max_spill_bytes),
        ] {
            if let Some(n) = obj
                .get(key)
                .and_then(|v| self.integer(v, &join(path, key), 1, u64::MAX))
            {
                *slot = n;
            }
        }
        l
    }

    fn timeouts(&mut self, v: &Value, path: &str) -> Timeouts {
        let mut t = Timeouts::default();
        let Some(obj) = self.object(v, path) else {
            return t;
        };
        self.keys(obj, path, TIMEOUTS_KEYS, Comments::Ignored);
        for (key, slot) in [
            ("handshake", &mut t.handshake),
            ("head", &mut t.head),
            ("idle", &mut t.idle),
            ("body_idle", &mut t.body_idle),
            ("connect", &mut t.connect),
            ("upstream_response", &mut t.upstream_response),
            ("shutdown_grace", &mut t.shutdown_grace),
        ] {
            if let Some(d) = obj.get(key).and_then(|v| self.seconds(v, &join(path, key))) {
                *slot = d;
            }
        }
        if let Some(n) = obj
            .get("min_body_rate")
            .and_then(|v| self.integer(v, &join(path, "min_body_rate"), 0, u64::MAX))
        {
            t.min_body_rate = n;
        }
        t
    }

    /// `upstream_mark`: an integer, or a string in hex (`"0x4d47"`) as
    /// nftables prints marks. Zero is refused: the redirect rules skip the
    /// guard's own sockets by their mark, and zero is every unmarked socket.
    fn mark(&mut self, v: &Value, path: &str) -> Option<u32> {
        let n = match v {
            Value::String(s) => {
                let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
                match hex.and_then(|h| u32::from_str_radix(h, 16).ok()) {
                    Some(n) => n,
                    None => return self.fail(path, format!("{s:?} is not a hex mark (0x4d47)")),
                }
            }
            _ => u32::try_from(self.integer(v, path, 0, u64::from(u32::MAX))?).ok()?,
        };
        if n == 0 {
            return self.fail(
                path,
                "0 is every unmarked socket; the mark must be non-zero",
            );
        }
        Some(n)
    }

    fn guard_tls(&mut self, v: &Value, path: &str) -> TlsSettings {
        let mut t = TlsSettings::default();
        let Some(obj) = self.object(v, path) else {
            return t;
        };
        self.keys(obj, path, GUARD_TLS_KEYS, Comments::Ignored);
        (t.ca_cert, t.ca_key) = self.pair(obj, path, "ca_cert", "ca_key");
        t.upstream_ca_bundle = obj
            .get("upstream_ca_bundle")
            .and_then(|v| self.file_path(v, &join(path, "upstream_ca_bundle")));
        if let Some(v) = obj.get("min_version") {
            let p = join(path, "min_version");
            match self.string(v, &p) {
                Some("1.2") => t.min_version_13 = false,
                Some("1.3") => t.min_version_13 = true,
                Some(s) => self.error(p, format!("{s:?} is not \"1.2\" or \"1.3\"")),
                None => {}
            }
        }
        t
    }

    fn log(&mut self, v: &Value, path: &str) -> LogSettings {
        let mut l = LogSettings::default();
        let Some(obj) = self.object(v, path) else {
            return l;
        };
        self.keys(obj, path, LOG_KEYS, Comments::Ignored);
        if let Some(v) = obj.get("format") {
            l.format_given = true;
            let p = join(path, "format");
            match self.string(v, &p) {
                Some("text") => l.format = LogFormat::Text,
                Some("json") => l.format = LogFormat::Json,
                Some("journald") => l.format = LogFormat::Journald,
                Some(s) => self.error(
                    p,
                    format!("{s:?} is not \"text\", \"json\" or \"journald\""),
                ),
                None => {}
            }
        }
        if let Some(v) = obj.get("level") {
            let p = join(path, "level");
            if let Some(s) = self.string(v, &p) {
                match tracing_subscriber::EnvFilter::try_new(s) {
                    Ok(_) if !s.trim().is_empty() => l.level = s.to_owned(),
                    Ok(_) => self.error(p, "empty filter (e.g. \"info\")"),
                    Err(e) => self.error(p, format!("{s:?} is not a tracing filter: {e}")),
                }
            }
        }
        l
    }

    fn instance_settings(&mut self, v: &Value, path: &str, port: u16) -> InstanceSettings {
        let mut s = InstanceSettings::for_port(port);
        let Some(obj) = self.object(v, path) else {
            return s;
        };
        self.keys(obj, path, GUARD_INSTANCE_KEYS, Comments::Ignored);
        if let Some(v) = obj.get("base_path") {
            let p = join(path, "base_path");
            if let Some(raw) = self.string(v, &p) {
                match base_path(raw) {
                    Ok(b) => s.base_path = b,
                    Err(why) => self.error(p, format!("{raw:?} {why}")),
                }
            }
        }
        if let Some(v) = obj.get("tls") {
            s.tls = self.instance_tls(v, &join(path, "tls"), s.tls.upstream);
        }
        if let Some(v) = obj.get("mode") {
            s.mode = self.enforcement(v, &join(path, "mode"));
        }
        s
    }

    fn instance_tls(&mut self, v: &Value, path: &str, upstream: bool) -> InstanceTls {
        let mut t = InstanceTls {
            upstream,
            ..InstanceTls::default()
        };
        let Some(obj) = self.object(v, path) else {
            return t;
        };
        self.keys(obj, path, INSTANCE_TLS_KEYS, Comments::Ignored);
        (t.cert, t.key) = self.pair(obj, path, "cert", "key");
        (t.client_cert, t.client_key) = self.pair(obj, path, "client_cert", "client_key");
        t.ca = obj
            .get("ca")
            .and_then(|v| self.file_path(v, &join(path, "ca")));
        for (key, slot) in [
            (
                "danger_skip_upstream_verify",
                &mut t.danger_skip_upstream_verify,
            ),
            ("upstream", &mut t.upstream),
            ("allow_plain_http", &mut t.allow_plain_http),
        ] {
            if let Some(b) = obj.get(key).and_then(|v| self.boolean(v, &join(path, key))) {
                *slot = b;
            }
        }
        if t.danger_skip_upstream_verify && t.upstream {
            self.warn(
                join(path, "danger_skip_upstream_verify"),
                "the upstream certificate is not verified: anyone on the path can read and change the sync",
            );
        }
        if t.allow_plain_http {
            self.warn(
                join(path, "allow_plain_http"),
                "clients may send this instance's sync in clear text",
            );
        }
        t
    }

    /// Two files that only make sense together (a certificate and its key).
    fn pair(
        &mut self,
        obj: &Object,
        path: &str,
        a: &str,
        b: &str,
    ) -> (Option<PathBuf>, Option<PathBuf>) {
        let pa = obj.get(a).and_then(|v| self.file_path(v, &join(path, a)));
        let pb = obj.get(b).and_then(|v| self.file_path(v, &join(path, b)));
        match (obj.get(a).is_some(), obj.get(b).is_some()) {
            (true, false) => self.error(join(path, a), format!("{a} without {b}")),
            (false, true) => self.error(join(path, b), format!("{b} without {a}")),
            _ => {}
        }
        (pa, pb)
    }

    /// A file or directory name. Not checked for existence here: the tls
    /// module opens the files and says which one is missing, and a config
    /// can be checked on a machine that does not hold the keys.
    fn file_path(&mut self, v: &Value, path: &str) -> Option<PathBuf> {
        let s = self.string(v, path)?;
        if s.is_empty() {
            return self.fail(path, "empty path");
        }
        Some(PathBuf::from(s))
    }

    fn seconds(&mut self, v: &Value, path: &str) -> Option<Duration> {
        let Value::Number(n) = v else {
            return self.expected(path, "a number of seconds", v);
        };
        match n.as_f64().and_then(|s| Duration::try_from_secs_f64(s).ok()) {
            Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Some(d),
            _ => self.fail(
                path,
                format!(
                    "{n} is not a positive number of seconds up to {}",
                    MAX_TIMEOUT.as_secs()
                ),
            ),
        }
    }
}

// === impl Checker: types and keys ===

impl Checker {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Report and give up on this value.
    fn fail<T>(&mut self, path: impl Into<String>, message: impl Into<String>) -> Option<T> {
        self.error(path, message);
        None
    }

    fn expected<T>(&mut self, path: impl Into<String>, what: &str, found: &Value) -> Option<T> {
        self.fail(path, format!("expected {what}, found {}", found.kind()))
    }

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Object> {
        match v {
            Value::Object(o) => Some(o),
            other => self.expected(path_or_root(path), "an object", other),
        }
    }

    fn array<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v [Value]> {
        match v {
            Value::Array(a) => Some(a),
            other => self.expected(path, "an array", other),
        }
    }

    fn string<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => self.expected(path, "a string", other),
        }
    }

    fn boolean(&mut self, v: &Value, path: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => self.expected(path, "true or false", other),
        }
    }

    /// An integer in `min..=max`.
    fn integer(&mut self, v: &Value, path: &str, min: u64, max: u64) -> Option<u64> {
        let Value::Number(n) = v else {
            return self.expected(path, "an integer", v);
        };
        match (n.as_u64(), n.is_i64()) {
            (Some(x), _) if (min..=max).contains(&x) => Some(x),
            (Some(_), _) | (None, true) => self.fail(path, format!("{n} is outside {min}..{max}")),
            (None, false) => self.fail(path, format!("{n} is not an integer")),
        }
    }

    /// A signed integer in `min..=max`.
    fn signed(&mut self, v: &Value, path: &str, min: i32, max: i32) -> Option<i32> {
        let Value::Number(n) = v else {
            return self.expected(path, "an integer", v);
        };
        match n.as_i64() {
            Some(x) if (i64::from(min)..=i64::from(max)).contains(&x) => i32::try_from(x).ok(),
            Some(_) => self.fail(path, format!("{n} is outside {min}..{max}")),
            None if n.is_u64() => self.fail(path, format!("{n} is outside {min}..{max}")),
            None => self.fail(path, format!("{n} is not an integer")),
        }
    }

    /// An array of strings, each with its path; other items are reported.
    fn strings<'v>(&mut self, v: &'v Value, path: &str) -> Vec<(String, &'v str)> {
        let mut out = Vec::new();
        for (i, item) in self.array(v, path).unwrap_or_default().iter().enumerate() {
            match item {
                Value::String(s) => out.push((index(path, i), s.as_str())),
                other => {
                    self.expected::<()>(index(path, i), "a string", other);
                }
            }
        }
        out
    }

    fn required<'v>(&mut self, obj: &'v Object, path: &str, key: &str) -> Option<&'v Value> {
        match obj.get(key) {
            Some(v) => Some(v),
            None => self.fail(join(path, key), "missing (required)"),
        }
    }

    /// Report every key of `obj` that is not in `known`, with the nearest
    /// known key as a hint.
    fn keys(&mut self, obj: &Object, path: &str, known: &[&str], comments: Comments) {
        self.keys_with_hints(obj, path, known, &[], comments);
    }

    /// [`Checker::keys`], with more candidates for the hint (dotted paths,
    /// compared by their last part).
    fn keys_with_hints(
        &mut self,
        obj: &Object,
        path: &str,
        known: &[&str],
        more: &[&str],
        comments: Comments,
    ) {
        for (key, _) in &obj.entries {
            if known.contains(&key.as_str()) || (comments == Comments::Ignored && is_comment(key)) {
                continue;
            }
            let candidates = known.iter().chain(more).copied();
            self.error(
                join(path, key),
                format!("unknown key{}", hint(key, candidates)),
            );
        }
    }
}

fn path_or_root(path: &str) -> &str {
    if path.is_empty() {
        "(top level)"
    } else {
        path
    }
}

/// The known value nearest to `word` by edit distance, case-insensitive,
/// with the distance. A dotted candidate is compared by its last part.
fn nearest_with_distance<'a>(
    word: &str,
    known: impl Iterator<Item = &'a str>,
) -> Option<(usize, &'a str)> {
    let word = word.to_lowercase();
    known
        .map(|k| {
            let last = k.rsplit('.').next().unwrap_or(k);
            (strsim::damerau_levenshtein(&word, &last.to_lowercase()), k)
        })
        .min_by_key(|(d, _)| *d)
}

/// The known value nearest to `word`.
fn nearest<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    nearest_with_distance(word, known).map(|(_, k)| k)
}

/// ` (did you mean "x"?)` when a known value is close enough to be a typo:
/// at most a third of its length away (one edit for short words).
fn hint<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> String {
    let len = word.chars().count();
    match nearest_with_distance(word, known) {
        Some((d, k)) if d <= (len / 3).max(1) && d < len => {
            format!(" (did you mean {k:?}?)")
        }
        _ => String::new(),
    }
}

// === value grammars ===

/// An instance's `ip`: an address the guard can connect to. A v4-mapped
/// IPv6 address is the IPv4 address (that is how the kernel reports an
/// IPv4 peer on a dual-stack socket, so both spellings must match).
/// A name Linux accepts for a network interface (`dev_valid_name`).
fn interface_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > MAX_IFNAME {
        return Err("is longer than 15 bytes, the longest interface name Linux allows");
    }
    if s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err("is not an interface name (no '/', ':', spaces, \".\" or \"..\")");
    }
    Ok(())
}

pub(super) fn instance_ip(s: &str) -> Result<IpAddr, &'static str> {
    let ip = s
        .parse::<IpAddr>()
        .map_err(|_| "is not an IPv4 or IPv6 address")?
        .to_canonical();
    // Connecting to 0.0.0.0 reaches the local host; a group address is
    // never one MISP.
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err("is not the address of one host");
    }
    Ok(ip)
}

/// A `host` or allowlist domain: a DNS name or an IP literal (`[v6]`
/// allowed), lower-cased; IP literals in their canonical text.
pub(super) fn host_name(s: &str) -> Result<String, &'static str> {
    let bracketed = s.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(inner) = bracketed {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| IpAddr::V6(ip).to_canonical().to_string())
            .map_err(|_| "is not an IPv6 literal");
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip.to_canonical().to_string());
    }
    let name = s.to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err("is not a DNS name (1 to 253 characters)");
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err("is not a DNS name (labels of letters, digits, '-' and '_')");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("is not a DNS name (a label starts or ends with '-')");
        }
    }
    // URL parsers read `10.1`, `010.0.0.1` or `0x0a.1` as IPv4 addresses; a
    // name that some reader takes for an address is refused.
    let last = name.rsplit('.').next().unwrap_or_default();
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err("looks like an IPv4 address but is not one");
    }
    Ok(name)
}

/// An allowlist URL: `http(s)://host[:port][/path][?query]`, compared as
/// written, so it must be a plain one.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("is not an http:// or https:// URL")?;
    if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("contains spaces or control characters".into());
    }
    if url.contains('#') {
        return Err("has a fragment, which is never sent".into());
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    if authority.contains('@') {
        return Err("has user information".into());
    }
    let (host, port) = match authority.rfind(':') {
        // A colon inside `[...]` belongs to an IPv6 literal.
        Some(i) if !authority.get(i..).unwrap_or_default().contains(']') => (
            authority.get(..i).unwrap_or_default(),
            Some(authority.get(i + 1..).unwrap_or_default()),
        ),
        _ => (authority, None),
    };
    host_name(host).map_err(|why| format!("has a host that {why}"))?;
    if let Some(p) = port {
        if !p.bytes().all(|b| b.is_ascii_digit()) || !matches!(p.parse::<u16>(), Ok(1..)) {
            return Err(format!("has port {p:?}, not 1..65535"));
        }
    }
    Ok(())
}

/// A sharing-group uuid in the canonical hyphenated form, lower-cased.
fn canonical_uuid(s: &str) -> Option<String> {
    let lower = s.trim().to_ascii_lowercase();
    let u = uuid::Uuid::try_parse(&lower).ok()?;
    let canonical = u.hyphenated().to_string();
    (canonical == lower).then_some(canonical)
}

/// `base_path`: `""`, or `/seg/seg` with no trailing `/`. Segments are
/// plain: no `.`/`..`, no `%` (an encoded path could match two ways).
fn base_path(s: &str) -> Result<String, &'static str> {
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let rest = trimmed
        .strip_prefix('/')
        .ok_or("must start with '/' (e.g. \"/misp\")")?;
    for seg in rest.split('/') {
        let plain = seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        // The same characters the sync table accepts in paths: a base path
        // with others would load and then refuse every request.
        if seg.is_empty() || seg == "." || seg == ".." || !plain {
            return Err("is not a plain path (segments of letters, digits, '-', '.', '_'; no '.' or '..' segment)");
        }
    }
    Ok(trimmed.to_owned())
}
