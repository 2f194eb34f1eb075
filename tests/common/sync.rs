//! Separate hosts for the firewall tests: network namespaces joined by veth
//! pairs, a MISP on each (`tests/peer/misp_sync.py`: its server answers
//! like MISP and records every byte; its client runs MISP's push and pull
//! request sequences), certificates made at test time, the guard with its
//! own nftables table, and the checks every sync run makes.
//!
//! Addresses exist only inside the namespaces a test creates; dropping a
//! namespace removes its veth ends, processes are killed first.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::{ca, server_cert, Ca};
use super::{decode_b64, sh, Netns, Proc};

pub const SYNC_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/misp_sync.py");

/// Whether the firewall tests can run: root, ip, nft, python3.
pub fn can_run_firewall(test: &str) -> bool {
    if !super::can_run(test) {
        return false;
    }
    let nft = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !nft {
        eprintln!("SKIP {test}: needs nft (nftables)");
    }
    nft
}

/// A veth pair between `a` and `b`, each end with an address (`ip/prefix`),
/// up. IPv6 addresses skip duplicate address detection, so they are usable
/// at once.
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    for (ns, dev, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        let mut args = vec!["ip", "-n", &ns.name, "addr", "add", addr, "dev", dev];
        if addr.contains(':') {
            args.push("nodad");
        }
        sh(&args);
        sh(&["ip", "-n", &ns.name, "link", "set", dev, "up"]);
    }
}

/// Add an address to a device of `ns`.
pub fn add_addr(ns: &Netns, dev: &str, addr: &str) {
    let mut args = vec!["ip", "-n", &ns.name, "addr", "add", addr, "dev", dev];
    if addr.contains(':') {
        args.push("nodad");
    }
    sh(&args);
}

/// A default route of `ns` via `gateway`.
pub fn default_route(ns: &Netns, gateway: &str) {
    let family = if gateway.contains(':') { "-6" } else { "-4" };
    sh(&[
        "ip", "-n", &ns.name, family, "route", "add", "default", "via", gateway,
    ]);
}

/// Turn on IPv4 and IPv6 forwarding inside `ns` (/proc/sys/net is the
/// namespace's own for a thread in it).
pub fn forwarding(ns: &Netns) {
    ns.run(|| {
        for key in ["ipv4/ip_forward", "ipv6/conf/all/forwarding"] {
            fs::write(format!("/proc/sys/net/{key}"), "1").expect("turn on forwarding");
        }
    });
}

/// `nft list table inet misp_guard` inside `ns`, or None when there is none.
pub fn table(ns: &Netns) -> Option<String> {
    let out = ns
        .command("nft")
        .args(["list", "table", "inet", "misp_guard"])
        .output()
        .expect("run nft");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------
// Instances

/// One MISP instance of a test: its name, address, host name, and the files
/// of its own CA and certificate.
pub struct Instance {
    pub name: String,
    pub ip: String,
    pub host: String,
    pub port: u16,
    /// PEM files: the instance's CA, its certificate (for `host` and `ip`)
    /// and key.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Its data (`misp_sync.py data`).
    pub data: PathBuf,
}

impl Instance {
    /// Make instance `name` at `ip:443` with its CA, certificate and data
    /// under `dir`.
    pub fn new(dir: &Path, name: &str, ip: &str) -> Instance {
        Instance::with(dir, name, ip, 443, &[])
    }

    /// As [`Instance::new`], at `port` (443 speaks TLS, any other plain
    /// HTTP), its data made with `data_flags` (`misp_sync.py data`).
    pub fn with(dir: &Path, name: &str, ip: &str, port: u16, data_flags: &[&str]) -> Instance {
        let host = format!("misp-{}.example", name.to_lowercase());
        let own = ca(&format!("{name} CA"));
        let (cert, key) = server_cert(&own, &[host.clone(), ip.to_string()]);
        let base = dir.join(name);
        fs::create_dir_all(&base).unwrap();
        let write = |file: &str, text: &str| {
            let p = base.join(file);
            fs::write(&p, text).unwrap();
            p
        };
        let data = base.join("data");
        let out = Command::new("python3")
            .arg(SYNC_PEER)
            .arg("data")
            .arg(&data)
            .args(["--name", name])
            .args(data_flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Instance {
            name: name.to_string(),
            ip: ip.to_string(),
            host,
            port,
            ca: write("ca.crt", &own.cert_pem),
            cert: write("cert.pem", &cert),
            key: write("key.pem", &key),
            data,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip.parse().unwrap(), self.port)
    }

    /// Its events, in push order.
    pub fn index(&self) -> Vec<serde_json::Value> {
        let text = fs::read_to_string(self.data.join("index.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The bytes of one of its events.
    pub fn event(&self, uuid: &str) -> Vec<u8> {
        fs::read(self.data.join("events").join(format!("{uuid}.json"))).unwrap()
    }

    /// Its entry in `instances`, with the rules every test uses.
    pub fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "ip": self.ip, "host": self.host, "port": self.port, "compartment_id": "c",
            "taxonomies_rules": {
                "blocked_tags": ["tlp:red"],
                "required_taxonomies": ["tlp"],
                "allowed_tags": { "tlp": ["tlp:clear", "tlp:white", "tlp:green", "tlp:amber"] }
            },
            "blocked_distribution_levels": ["0"],
            "blocked_sharing_groups_uuids": ["b9e656ba-b9c0-4506-83ed-7b54b43a57cb"],
            "blocked_attribute_types": ["passport-number"],
            "blocked_attribute_categories": ["Person"],
            "blocked_object_types": ["person"]
        })
    }
}

/// The guard's CA, written to `dir`.
pub struct GuardCa {
    pub ca: Ca,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl GuardCa {
    pub fn new(dir: &Path) -> GuardCa {
        let ca = ca("misp-guard test CA");
        let cert = dir.join("guard-ca.crt");
        let key = dir.join("guard-ca.key");
        fs::write(&cert, &ca.cert_pem).unwrap();
        fs::write(&key, &ca.key_pem).unwrap();
        GuardCa { ca, cert, key }
    }
}

/// A config with `instances` (all in one compartment), the guard CA, each
/// instance verified upstream with its own CA, and `firewall`.
pub fn config(
    instances: &[&Instance],
    guard_ca: &GuardCa,
    firewall: serde_json::Value,
    spill: &Path,
) -> serde_json::Value {
    let mut all = serde_json::Map::new();
    let mut tls = serde_json::Map::new();
    for i in instances {
        all.insert(i.name.clone(), i.config());
        tls.insert(
            i.name.clone(),
            serde_json::json!({ "tls": { "ca": i.ca.display().to_string() } }),
        );
    }
    serde_json::json!({
        "compartments_rules": { "can_reach": { "c": ["c"] } },
        "instances": all,
        "guard": {
            "listen": { "transparent": ["[::]:8443"] },
            "tls": {
                "ca_cert": guard_ca.cert.display().to_string(),
                "ca_key": guard_ca.key.display().to_string()
            },
            "instances": tls,
            "firewall": firewall,
            "spill_dir": spill.display().to_string(),
            "log": { "level": "info" }
        }
    })
}

// ---------------------------------------------------------------------------
// Processes

/// A MISP server: answers sync like MISP, records what it receives.
pub struct Server {
    pub proc: Proc,
    pub record: PathBuf,
    pub raw: PathBuf,
}

impl Server {
    /// Instance `i`'s server inside `ns`, on its address, with its own
    /// certificate.
    pub fn start(ns: &Netns, i: &Instance) -> Server {
        Server::start_with(ns, i, &[])
    }

    /// As [`Server::start`], answering as `flags` say (`misp_sync.py
    /// serve`: `--deflate`, `--correlate`); TLS only on port 443.
    pub fn start_with(ns: &Netns, i: &Instance, flags: &[&str]) -> Server {
        let dir = ns.path(&format!("server-{}", i.name));
        fs::create_dir_all(&dir).unwrap();
        let record = dir.join("record.jsonl");
        let raw = dir.join("raw");
        let ready = dir.join("ready");
        let stderr = dir.join("stderr");
        fs::write(&record, "").unwrap();
        let mut c = ns.command("python3");
        c.arg(SYNC_PEER)
            .arg("serve")
            .arg("--data")
            .arg(&i.data)
            .args(["--name", &i.name, "--listen", &i.addr().to_string()])
            .args(flags);
        if i.port == 443 {
            c.arg("--cert").arg(&i.cert).arg("--key").arg(&i.key);
        }
        let child = c
            .arg("--record")
            .arg(&record)
            .arg("--raw")
            .arg(&raw)
            .arg("--ready")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start the MISP server");
        let proc = Proc { child, stderr };
        wait(|| ready.exists(), "the MISP server", &proc);
        Server { proc, record, raw }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }

    /// Every byte every connection brought (after TLS), concatenated.
    pub fn raw_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Ok(dir) = fs::read_dir(&self.raw) {
            for e in dir.flatten() {
                out.extend(fs::read(e.path()).unwrap_or_default());
            }
        }
        out
    }
}

/// The guard, running inside `ns` with `config`.
pub struct Guard {
    pub proc: Proc,
    pub config: PathBuf,
}

impl Guard {
    /// Start it and wait until its table is installed.
    pub fn start(ns: &Netns, config: &serde_json::Value) -> Guard {
        let path = ns.path("guard-config.json");
        fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
        Guard::start_with(ns, &path)
    }

    /// Start it on an existing config file.
    pub fn start_with(ns: &Netns, path: &Path) -> Guard {
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stderr = ns.path(&format!("guard-{n}.stderr"));
        let child = ns
            .command(super::GUARD)
            .arg("run")
            .arg("--config")
            .arg(path)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start the guard");
        let mut proc = Proc { child, stderr };
        let start = Instant::now();
        loop {
            if proc.log().contains("installed") {
                break;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("the guard exited ({status}):\n{}", proc.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the guard did not install its table:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Guard {
            proc,
            config: path.to_owned(),
        }
    }

    /// The log so far, without colour codes.
    pub fn log(&self) -> String {
        strip_ansi(&self.proc.log())
    }

    /// Send SIGHUP and wait for the reload's outcome line (`rebuilt` or
    /// `refused`) after the `before`-th such line.
    pub fn reload(&self) -> String {
        let count = |log: &str| {
            log.lines()
                .filter(|l| l.contains("config reloaded") || l.contains("config reload refused"))
                .count()
        };
        let before = count(&self.log());
        sh(&["kill", "-HUP", &self.proc.child.id().to_string()]);
        let start = Instant::now();
        loop {
            let log = self.log();
            if count(&log) > before {
                return log
                    .lines()
                    .rev()
                    .find(|l| l.contains("config reloaded") || l.contains("config reload refused"))
                    .unwrap_or_default()
                    .to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no reload line:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn wait(mut f: impl FnMut() -> bool, what: &str, proc: &Proc) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}; log:\n{}", proc.log());
}

/// How a sync run is started.
pub struct Run<'a> {
    /// "push" or "pull".
    pub kind: &'a str,
    /// The instance whose MISP runs it.
    pub from: &'a Instance,
    /// The remote.
    pub to: &'a Instance,
    /// The CA file the client trusts for the remote (its `cert_file`).
    pub trust: &'a Path,
    /// Pause at this exchange (1-based), half-way through its body if
    /// `mid_body`.
    pub pause_at: Option<(usize, bool)>,
}

/// A sync run's outcome: the client's report and its files.
pub struct Report {
    pub json: serde_json::Value,
    /// Request bodies as sent, by file name.
    pub sent: PathBuf,
    /// Every byte the client received.
    pub raw: PathBuf,
    /// Events a pull saved.
    pub saved: PathBuf,
}

impl Report {
    /// Every byte the client received, and then every answer decoded (an
    /// answer in gzip hides its text from the raw bytes).
    pub fn raw_bytes(&self) -> Vec<u8> {
        let mut all = fs::read(&self.raw).unwrap_or_default();
        for x in self.exchanges() {
            all.extend(decode_b64(x["answer_b64"].as_str().unwrap_or("")));
        }
        all
    }

    pub fn sent_body(&self, name: &str) -> Vec<u8> {
        fs::read(self.sent.join(name)).unwrap()
    }

    /// Every request body sent: (file name, bytes).
    pub fn sent_bodies(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if let Ok(dir) = fs::read_dir(&self.sent) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                out.push((name, fs::read(e.path()).unwrap_or_default()));
            }
        }
        out
    }

    pub fn exchanges(&self) -> Vec<serde_json::Value> {
        self.json["exchanges"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A sync run started in the background (when it pauses).
pub struct Running {
    pub proc: Proc,
    dir: PathBuf,
    report: Report,
}

impl Running {
    /// Wait until the client has paused.
    pub fn wait_paused(&self) -> String {
        let paused = self.dir.join("paused");
        wait(|| paused.exists(), "the client to pause", &self.proc);
        fs::read_to_string(&paused).unwrap_or_default()
    }

    /// Let the client go on and wait for it to finish.
    pub fn resume(mut self) -> Report {
        fs::remove_file(self.dir.join("paused")).unwrap();
        fs::write(self.dir.join("go"), "").unwrap();
        let start = Instant::now();
        while self.proc.child.try_wait().ok().flatten().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the sync run did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.report.json = read_report(&self.dir.join("report.json"), &self.proc);
        self.report
    }
}

fn read_report(path: &Path, proc: &Proc) -> serde_json::Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report {}: {e}\n{}", path.display(), proc.log()));
    serde_json::from_str(&text).unwrap()
}

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Start `run` inside `ns` (where `run.from`'s MISP lives).
pub fn start_run(ns: &Netns, run: &Run) -> Running {
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = ns.path(&format!(
        "run-{n}-{}-{}-{}",
        run.kind, run.from.name, run.to.name
    ));
    fs::create_dir_all(&dir).unwrap();
    let report = Report {
        json: serde_json::Value::Null,
        sent: dir.join("sent"),
        raw: dir.join("received.bin"),
        saved: dir.join("saved"),
    };
    let stderr = dir.join("stderr");
    let mut c = ns.command("python3");
    c.arg(SYNC_PEER)
        .arg(run.kind)
        .args(["--to", &run.to.ip, "--host", &run.to.host])
        .args(["--port", &run.to.port.to_string(), "--source", &run.from.ip])
        .arg("--out")
        .arg(dir.join("report.json"))
        .arg("--sent")
        .arg(&report.sent)
        .arg("--raw")
        .arg(&report.raw)
        .arg("--pause-dir")
        .arg(&dir);
    if run.to.port == 443 {
        c.arg("--ca").arg(run.trust);
    }
    if run.kind == "push" {
        c.arg("--data").arg(&run.from.data);
    } else {
        c.arg("--save").arg(&report.saved);
    }
    if let Some((at, mid)) = run.pause_at {
        c.args(["--pause-at", &at.to_string()]);
        if mid {
            c.arg("--pause-mid-body");
        }
    }
    let child = c
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start the sync client");
    Running {
        proc: Proc { child, stderr },
        dir,
        report,
    }
}

/// Run `run` inside `ns` to its end.
pub fn sync(ns: &Netns, run: &Run) -> Report {
    let mut r = start_run(ns, run);
    let start = Instant::now();
    while r.proc.child.try_wait().ok().flatten().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the sync run did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    r.report.json = read_report(&r.dir.join("report.json"), &r.proc);
    r.report
}

// ---------------------------------------------------------------------------
// Checks

/// The push of `from`'s events to `server` as `report` saw it: every clean
/// event answered 200 and received byte for byte; every event breaking a
/// rule answered MISP's JSON 403 naming the rule, and not one 64-byte piece
/// of its body (as sent, gzip and all) reached the server; the run went on
/// past each blocked event to the end of the sequence. Empty when all is
/// right.
pub fn push_problems(from: &Instance, report: &Report, server: &Server) -> Vec<String> {
    let mut problems = Vec::new();
    let received = server.received();
    let raw = server.raw_bytes();
    let events = &report.json["events"];
    for e in from.index() {
        let uuid = e["uuid"].as_str().unwrap();
        let key = e["key"].as_str().unwrap();
        let got = &events[uuid];
        let Some(sent) = got["sent"].as_str() else {
            problems.push(format!("{key}: not pushed ({got})"));
            continue;
        };
        let body = report.sent_body(sent);
        let arrived: Vec<Vec<u8>> = received
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/events/add") || p.starts_with("/events/edit"))
            })
            .map(|r| decode_b64(r["body_b64"].as_str().unwrap_or("")))
            .collect();
        let others: Vec<Vec<u8>> = report
            .sent_bodies()
            .into_iter()
            .filter(|(name, _)| name != sent)
            .map(|(_, b)| b)
            .collect();
        match e["expect"].as_str() {
            Some("allow") => {
                if got["status"] != 200 {
                    problems.push(format!("{key}: clean event answered {got}"));
                }
                if !arrived.contains(&body) {
                    problems.push(format!(
                        "{key}: the server did not receive the exact bytes sent"
                    ));
                }
                let event = from.event(uuid);
                let seen = |m: &String| {
                    received
                        .iter()
                        .any(|r| contains(&decoded_body(r), m.as_bytes()))
                };
                if !markers(&event).iter().all(seen) {
                    problems.push(format!("{key}: the server's record misses a clean event"));
                }
            }
            _ => {
                let rule = e["rule"].as_str().unwrap();
                if got["status"] != 403 || !got["reason"].as_str().unwrap_or("").contains(rule) {
                    problems.push(format!(
                        "{key}: expected MISP's 403 naming {rule:?}, got {got}"
                    ));
                }
                if leaked(&raw, &body, &others) || arrived.iter().any(|a| a == &body) {
                    problems.push(format!(
                        "{key}: bytes of the blocked event reached the server"
                    ));
                }
                let event = from.event(uuid);
                for m in markers(&event) {
                    let m = m.as_bytes();
                    if contains(&raw, m) || received.iter().any(|r| contains(&decoded_body(r), m)) {
                        problems.push(format!(
                            "{key}: {:?} reached the server",
                            String::from_utf8_lossy(m)
                        ));
                    }
                }
            }
        }
    }
    problems.extend(forbidden_shape(report));
    problems.extend(ran_to_the_end(
        report,
        &["pushAnalystData", "bulkSaveSightings", "pushProposals"],
    ));
    problems
}

/// The pull of `from`'s events (`from` is the remote) as `report` saw it:
/// clean events arrived byte for byte, blocked ones answered MISP's JSON
/// 403 naming the rule, and not one 64-byte piece of them reached the
/// puller; the run went on to the end of the sequence.
pub fn pull_problems(from: &Instance, report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    let raw = report.raw_bytes();
    let pulled = &report.json["pulled"];
    for e in from.index() {
        let uuid = e["uuid"].as_str().unwrap();
        let key = e["key"].as_str().unwrap();
        let got = &pulled[uuid];
        let event = from.event(uuid);
        let saved = fs::read(report.saved.join(format!("{uuid}.json"))).ok();
        match e["expect"].as_str() {
            Some("allow") => {
                if got["status"] != 200 || saved.as_deref() != Some(&event[..]) {
                    problems.push(format!(
                        "{key}: clean event not pulled byte for byte ({got})"
                    ));
                }
                // The capture sees what passes, so its silence on blocked
                // events means something.
                if !markers(&event).iter().all(|m| contains(&raw, m.as_bytes())) {
                    problems.push(format!("{key}: the client's capture misses a clean event"));
                }
            }
            _ => {
                let rule = e["rule"].as_str().unwrap();
                if got["status"] != 403 || !got["reason"].as_str().unwrap_or("").contains(rule) {
                    problems.push(format!(
                        "{key}: expected MISP's 403 naming {rule:?}, got {got}"
                    ));
                }
                if saved.is_some() || markers(&event).iter().any(|m| contains(&raw, m.as_bytes())) {
                    problems.push(format!(
                        "{key}: bytes of the blocked event reached the puller"
                    ));
                }
            }
        }
    }
    problems.extend(forbidden_shape(report));
    problems.extend(ran_to_the_end(
        report,
        &["analystData", "sightings", "proposals"],
    ));
    problems
}

/// Every 403 is MISP's save-fail JSON.
fn forbidden_shape(report: &Report) -> Vec<String> {
    report
        .exchanges()
        .iter()
        .filter(|x| x["status"] == 403 && x["saved"] != serde_json::Value::Bool(false))
        .map(|x| {
            format!(
                "exchange {} answered a 403 that is not MISP's save-fail JSON",
                x["n"]
            )
        })
        .collect()
}

/// The last steps of the sequence ran and were answered 200, and nothing
/// failed on the way.
fn ran_to_the_end(report: &Report, last_steps: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let xs = report.exchanges();
    for step in last_steps {
        if !xs.iter().any(|x| x["step"] == *step && x["status"] == 200) {
            problems.push(format!("step {step} did not run to a 200"));
        }
    }
    if let Some(errors) = report.json["errors"].as_array().filter(|e| !e.is_empty()) {
        problems.push(format!("the run had errors: {errors:?}"));
    }
    problems
}

/// What only this event carries: its title, the uuids of its attributes,
/// objects and reports, and the reports' text (its own uuid is no secret:
/// indexes and paths name it).
pub fn markers(event: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(event).unwrap();
    let e = &v["Event"];
    let mut out = vec![format!("\"info\":{}", e["info"])];
    for list in ["Attribute", "Object", "EventReport"] {
        for item in e[list].as_array().into_iter().flatten() {
            out.push(item["uuid"].as_str().unwrap().to_string());
            if let Some(text) = item["content"].as_str() {
                out.push(text.to_string());
            }
        }
    }
    out
}

/// The window of [`leaked`]: shorter than any field of an event, longer
/// than what two unrelated documents share by chance.
const WINDOW: usize = 32;

/// Whether `haystack` holds a `WINDOW`-byte piece of `secret` that none of
/// `others` holds (what the secret shares with documents that may pass,
/// such as the JSON around every event, proves nothing).
pub fn leaked(haystack: &[u8], secret: &[u8], others: &[Vec<u8>]) -> bool {
    use std::collections::HashSet;
    if secret.len() < WINDOW || haystack.len() < WINDOW {
        return false;
    }
    let common: HashSet<&[u8]> = others.iter().flat_map(|o| o.windows(WINDOW)).collect();
    let own: HashSet<&[u8]> = secret
        .windows(WINDOW)
        .filter(|w| !common.contains(w))
        .collect();
    haystack.windows(WINDOW).any(|w| own.contains(w))
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A recorded request's body, gzip undone.
pub fn decoded_body(entry: &serde_json::Value) -> Vec<u8> {
    use std::io::Read;
    let body = decode_b64(entry["body_b64"].as_str().unwrap_or(""));
    let gzipped = super::recorded_header(entry, "content-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return body;
    }
    let mut out = Vec::new();
    match flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out) {
        Ok(_) => out,
        Err(_) => body,
    }
}

/// Run `f` on a thread of its own inside `ns`, in the background.
pub fn spawn_in<F, R>(ns: &Netns, f: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    use std::os::fd::AsFd;
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = fs::File::open(&path).expect("open netns");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}
