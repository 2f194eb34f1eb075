//! Shared parts of the end-to-end tests: network namespaces, the fake MISP
//! peer process, the guard process, and a raw-bytes HTTP client.
//!
//! Everything runs inside a network namespace the test creates, so test
//! traffic only ever goes to addresses on that namespace's loopback.
#![allow(dead_code)]

pub mod nspawn;
pub mod pki;
pub mod sync;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/conformance/peer-scenarios"
);
pub const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer/fake_misp.py");
pub const GUARD: &str = env!("CARGO_BIN_EXE_misp-guard");

/// Whether the end-to-end tests can run here (root, `ip`, `python3`).
/// When not, the test prints why and passes: these tests need root.
pub fn can_run(test: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    let py = Command::new("python3").arg("-V").output().is_ok();
    if root && ip && py {
        return true;
    }
    eprintln!("SKIP {test}: needs root, iproute2 and python3 (root={root} ip={ip} python3={py})");
    false
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "mg-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Give the namespace its own /etc/hosts (`ip netns exec` bind-mounts
    /// /etc/netns/NAME/hosts over /etc/hosts for the processes it starts).
    pub fn hosts(&self, entries: &[(&str, &str)]) {
        let dir = PathBuf::from(format!("/etc/netns/{}", self.name));
        fs::create_dir_all(&dir).expect("mkdir /etc/netns");
        let mut text = String::from("127.0.0.1 localhost\n");
        for (ip, name) in entries {
            text.push_str(&format!("{ip} {name}\n"));
        }
        fs::write(dir.join("hosts"), text).expect("write hosts");
    }

    /// Give the namespace's loopback device one more address (a test host
    /// of this namespace only).
    pub fn add_address(&self, ip: &str) {
        let prefix = if ip.contains(':') { "128" } else { "32" };
        sh(&[
            "ip",
            "-n",
            &self.name,
            "addr",
            "add",
            &format!("{ip}/{prefix}"),
            "dev",
            "lo",
        ]);
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `f` on a thread that lives in the namespace.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = fs::File::open(&path).expect("open netns");
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns");
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub stderr: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// The fake MISP peer, listening on `listen` inside `ns`.
pub struct Peer {
    pub proc: Proc,
    pub record: PathBuf,
    pub script: PathBuf,
}

impl Peer {
    /// The fake MISP with its files named `peer.*`.
    pub fn start(ns: &Netns, listen: &[SocketAddr], tls: Option<(&Path, &Path)>) -> Peer {
        Peer::start_as(ns, "peer", listen, tls)
    }

    /// A fake MISP whose files are prefixed with `tag`, so several peers can
    /// run in one namespace (e.g. one with a certificate from another CA).
    pub fn start_as(
        ns: &Netns,
        tag: &str,
        listen: &[SocketAddr],
        tls: Option<(&Path, &Path)>,
    ) -> Peer {
        let record = ns.path(&format!("{tag}.record.jsonl"));
        let script = ns.path(&format!("{tag}.script.json"));
        let ready = ns.path(&format!("{tag}.ready"));
        let stderr = ns.path(&format!("{tag}.stderr"));
        fs::write(&record, "").unwrap();
        fs::write(&script, "{}").unwrap();
        let mut c = ns.command("python3");
        c.arg(PEER)
            .arg("--record")
            .arg(&record)
            .arg("--script")
            .arg(&script)
            .arg("--ready")
            .arg(&ready);
        for l in listen {
            c.arg("--listen").arg(l.to_string());
        }
        if let Some((cert, key)) = tls {
            c.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start peer");
        let proc = Proc { child, stderr };
        wait_for(|| ready.exists(), "peer ready", &proc);
        Peer {
            proc,
            record,
            script,
        }
    }

    /// Set the next answers.
    pub fn answer(&self, script: serde_json::Value) {
        fs::write(&self.script, script.to_string()).unwrap();
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }
}

/// Start the guard inside `ns` with `config`, waiting until `probe` accepts.
pub fn start_guard(
    ns: &Netns,
    config: &serde_json::Value,
    args: &[&str],
    probe: SocketAddr,
) -> Proc {
    let path = ns.path("config.json");
    fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
    let stderr = ns.path("guard.stderr");
    let child = ns
        .command(GUARD)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start guard");
    let proc = Proc { child, stderr };
    wait_for(
        || ns.run(|| TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()),
        "guard listening",
        &proc,
    );
    proc
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str, proc: &Proc) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; log:\n{}", proc.log());
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A client connection from `source` (bound) to `to`.
pub fn connect(source: std::net::IpAddr, to: SocketAddr) -> TcpStream {
    let domain = if to.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(source, 0).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Read one response (Content-Length or chunked or close-delimited).
pub fn read_response(s: &mut impl Read, head_only: bool) -> Option<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
    };
    if status == 100 {
        return Some(r);
    }
    if head_only || status == 204 || status == 304 {
        return Some(r);
    }
    if let Some(n) = r.header("content-length") {
        let n: usize = n.parse().ok()?;
        let mut body = vec![0u8; n];
        s.read_exact(&mut body).ok()?;
        r.body = body;
    } else if r.header("transfer-encoding").is_some() {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).ok()?;
                line.push(byte[0]);
            }
            let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16).ok()?;
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            r.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        s.read_to_end(&mut r.body).ok()?;
    }
    Some(r)
}

/// Send raw bytes and read one response.
pub fn roundtrip(s: &mut TcpStream, request: &[u8], head_only: bool) -> Option<Response> {
    s.write_all(request).ok()?;
    read_response(s, head_only)
}

/// Map an address of the conformance config onto the namespace loopback:
/// a.b.c.d → 127.a.c.d (one-to-one on every address the data uses).
pub fn map_ip(ip: &str) -> String {
    let o: Vec<&str> = ip.split('.').collect();
    format!("127.{}.{}.{}", o[0], o[2], o[3])
}

/// The conformance config with its addresses mapped and a `guard` section.
pub fn conformance_config(guard: serde_json::Value) -> serde_json::Value {
    let text = fs::read_to_string(format!("{SHARED}/config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (_, inst) in config["instances"].as_object_mut().unwrap() {
        let ip = inst["ip"].as_str().unwrap().to_string();
        inst["ip"] = serde_json::Value::String(map_ip(&ip));
    }
    config["guard"] = guard;
    config
}

/// One verdict scenario of the older guard.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: &'static str,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub url: String,
    pub method: String,
    pub client_ip: String,
    pub fixture: Option<PathBuf>,
    pub request_body: Option<Vec<u8>>,
    pub response_headers: Vec<(String, String)>,
    pub expected_status: u16,
    pub expected_log: Option<String>,
}

impl Scenario {
    pub fn is_pull(&self) -> bool {
        self.file == "pull.json" || (self.file == "extra.json" && self.fixture.is_some())
    }

    /// The request body sent: push fixtures, or the inline body of extra.json.
    pub fn body(&self) -> Vec<u8> {
        if let Some(b) = &self.request_body {
            return b.clone();
        }
        match (&self.fixture, self.is_pull()) {
            (Some(f), false) => fs::read(f).unwrap(),
            _ => Vec::new(),
        }
    }

    /// The (rule name, value) the old guard's log names, in our words.
    pub fn expected_block(&self) -> Option<(String, String)> {
        if self
            .name
            .starts_with("x_user_org_uuid_not_in_sharing_group")
        {
            let org = self.response_headers[0].1.clone();
            return Some(("sharing group excludes receiving organisation".into(), org));
        }
        let log = self.expected_log.as_ref()?;
        let tail = log.rsplit(" - ").next()?;
        if tail == "cannot reach compartment" {
            return Some(("cannot reach compartment".into(), String::new()));
        }
        let (phrase, value) = tail.rsplit_once(": ")?;
        let rule = if phrase.ends_with("blocked tag") {
            "blocked tag"
        } else if phrase.ends_with("blocked distribution level") {
            "blocked distribution level"
        } else if phrase.ends_with("blocked sharing group uuid") {
            "blocked sharing group"
        } else if phrase == "attribute with a blocked type" {
            "blocked attribute type"
        } else if phrase == "attribute with a blocked category" {
            "blocked attribute category"
        } else if phrase == "object with a blocked type" {
            "blocked object type"
        } else if phrase == "event is missing required taxonomy" {
            "missing required taxonomy"
        } else {
            panic!("unknown old-guard phrase {phrase:?}")
        };
        Some((rule.into(), value.into()))
    }
}

/// All 122 scenarios: push.json, pull.json, extra.json.
pub fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for file in ["push.json", "pull.json", "extra.json"] {
        let text = fs::read_to_string(format!("{SHARED}/{file}")).unwrap();
        let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for s in list {
            let fixture = s["fixture_file"].as_str().map(|f| {
                let base = f.rsplit('/').next().unwrap();
                PathBuf::from(format!("{SHARED}/fixtures/{base}"))
            });
            let response_headers = s["response_headers"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Scenario {
                file,
                name: s["name"].as_str().unwrap().to_string(),
                host: s["host"].as_str().unwrap().to_string(),
                port: s["port"].as_u64().unwrap() as u16,
                url: s["url"].as_str().unwrap().to_string(),
                method: s["method"].as_str().unwrap().to_string(),
                client_ip: s["client"]["ip"].as_str().unwrap().to_string(),
                fixture,
                request_body: (!s["request_body"].is_null())
                    .then(|| s["request_body"].to_string().into_bytes()),
                response_headers,
                expected_status: s["expected_status_code"].as_u64().unwrap() as u16,
                expected_log: s["expected_logs"][0].as_str().map(str::to_string),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Shared by relay_http.rs and transparent.rs: a running rig (namespace, peer,
// guard), scenario requests and the conformance assertions.

/// The explicit-proxy listener used by the rigs.
pub const RIG_PROXY: &str = "127.0.0.1:18080";

/// A namespace with the fake peer listening on every instance address and a
/// guard running. Fields drop in order: guard, peer, then the namespace.
pub struct Rig {
    pub guard: Proc,
    pub peer: Peer,
    pub ns: Netns,
    pub config: serde_json::Value,
    /// Where clients connect (the proxy listener, or the probe address).
    pub listen: SocketAddr,
}

impl Rig {
    /// The conformance config plus `guard`, the guard on the proxy listener.
    pub fn proxy(tag: &str, guard: serde_json::Value) -> Rig {
        let listen: SocketAddr = RIG_PROXY.parse().unwrap();
        Rig::start(tag, guard, &["--proxy-listen", RIG_PROXY], listen, |_| {})
    }

    /// Create the namespace, run `setup` in it (e.g. nftables), start the
    /// peer and the guard (`args`), wait until `probe` accepts.
    pub fn start(
        tag: &str,
        guard: serde_json::Value,
        args: &[&str],
        probe: SocketAddr,
        setup: impl FnOnce(&Netns),
    ) -> Rig {
        let ns = Netns::new(tag);
        let mut config = conformance_config(guard);
        if config["guard"]["spill_dir"].is_null() {
            config["guard"]["spill_dir"] =
                serde_json::Value::String(ns.dir.path().display().to_string());
        }
        setup(&ns);
        let peer = Peer::start(&ns, &instance_addrs(&config), None);
        let guard = start_guard(&ns, &config, args, probe);
        Rig {
            guard,
            peer,
            ns,
            config,
            listen: probe,
        }
    }

    /// How many requests the peer has recorded so far.
    pub fn count(&self) -> usize {
        self.peer.received().len()
    }

    /// The requests the peer recorded after the first `before`.
    pub fn since(&self, before: usize) -> Vec<serde_json::Value> {
        self.peer
            .received()
            .get(before..)
            .unwrap_or_default()
            .to_vec()
    }

    /// Connect from `source` to `to` inside the namespace, write `bytes`
    /// (a write error is ignored: the guard may close early), read one
    /// response.
    pub fn send_to(
        &self,
        source: &str,
        to: SocketAddr,
        bytes: &[u8],
        head_only: bool,
    ) -> Option<Response> {
        let source: std::net::IpAddr = source.parse().unwrap();
        self.ns.run(|| {
            let mut c = connect(source, to);
            let _ = c.write_all(bytes);
            read_response(&mut c, head_only)
        })
    }

    /// [`Rig::send_to`] the rig's listener.
    pub fn send(&self, source: &str, bytes: &[u8], head_only: bool) -> Option<Response> {
        self.send_to(source, self.listen, bytes, head_only)
    }

    /// The last `n` lines of the guard's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.guard.log(), n)
    }
}

/// Every instance address of `config` (already mapped).
pub fn instance_addrs(config: &serde_json::Value) -> Vec<SocketAddr> {
    config["instances"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| {
            format!("{}:{}", i["ip"].as_str().unwrap(), i["port"])
                .parse()
                .unwrap()
        })
        .collect()
}

/// The (mapped) address of the instance called `host` in `config`.
pub fn instance_addr(config: &serde_json::Value, host: &str) -> Option<SocketAddr> {
    config["instances"]
        .as_object()
        .unwrap()
        .values()
        .find(|i| i["host"] == host)
        .map(|i| {
            format!("{}:{}", i["ip"].as_str().unwrap(), i["port"])
                .parse()
                .unwrap()
        })
}

/// The last `n` lines of `s`.
pub fn log_tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Standard base64 (what the peer records bodies in).
pub fn decode_b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let Some(v) = T.iter().position(|&t| t == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The body a recorded request carried.
pub fn recorded_body(entry: &serde_json::Value) -> Vec<u8> {
    decode_b64(entry["body_b64"].as_str().unwrap_or(""))
}

/// The values of header `name` in a recorded request.
pub fn recorded_header(entry: &serde_json::Value, name: &str) -> Vec<String> {
    entry["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .filter_map(|h| h[1].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Set the peer's answer for scenario `s` (pull fixture, response headers).
pub fn script_for(s: &Scenario) -> serde_json::Value {
    let mut script = serde_json::json!({});
    if s.is_pull() {
        if let Some(f) = &s.fixture {
            script["body_file"] = serde_json::Value::String(f.display().to_string());
        }
    }
    let headers: serde_json::Map<String, serde_json::Value> = s
        .response_headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    script["headers"] = serde_json::Value::Object(headers);
    script
}

/// The raw request of scenario `s`: absolute-form (proxy) or origin-form
/// (transparent), with the same headers a MISP sends.
pub fn scenario_request(s: &Scenario, absolute: bool) -> Vec<u8> {
    let body = s.body();
    let target = if absolute {
        format!("http://{}:{}{}", s.host, s.port, s.url)
    } else {
        s.url.clone()
    };
    let mut request = format!(
        "{} {target} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: MISP 2.5.1\r\n",
        s.method, s.host, s.port
    );
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// What is wrong with the outcome of scenario `s`: the response `r` and the
/// requests `new` the peer received for it. Empty when all is right. The
/// checks every conformance run makes: the status, a 403 in MISP's
/// save-fail shape naming the rule and value, blocked content never
/// reaching the other side, allowed content arriving byte for byte.
pub fn scenario_problems(s: &Scenario, r: &Response, new: &[serde_json::Value]) -> Vec<String> {
    let fixture = s.fixture.as_ref().map(|f| fs::read(f).unwrap());
    let mut problems = Vec::new();
    if r.status != s.expected_status {
        problems.push(format!(
            "status {} (expected {})",
            r.status, s.expected_status
        ));
    }
    if s.expected_status == 403 {
        problems.extend(forbidden_json_problems(r));
        let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let errors = answer["errors"].as_str().unwrap_or("").to_string();
        if let Some((rule, value)) = s.expected_block() {
            // The compartment refusal names no value.
            let wanted = if rule == "cannot reach compartment" {
                rule
            } else {
                format!("{rule}: {value} at ")
            };
            if !errors.contains(&wanted) {
                problems.push(format!("reason {errors:?} does not name {wanted:?}"));
            }
        }
        if let Some(f) = &fixture {
            if !s.is_pull() && new.iter().any(|e| e["body_len"].as_u64().unwrap_or(0) > 0) {
                problems.push("a blocked push body reached the upstream".into());
            }
            if s.is_pull() && contains_part_of(&r.body, f) {
                problems.push("the blocked pull answer reached the client".into());
            }
        }
        if !s.is_pull() && !new.is_empty() && s.fixture.is_some() {
            problems.push(format!(
                "upstream received {} request(s) for a blocked push",
                new.len()
            ));
        }
    } else if new.len() != 1 {
        problems.push(format!(
            "upstream received {} requests (expected 1)",
            new.len()
        ));
    } else {
        if !s.is_pull() && recorded_body(&new[0]) != s.body() {
            problems.push("upstream did not receive the exact body".into());
        }
        if s.is_pull() {
            if let Some(f) = &fixture {
                if &r.body != f {
                    problems.push("client did not receive the exact answer".into());
                }
            }
        }
    }
    problems
}

/// Problems of a guard-written 403: JSON in MISP's save-fail shape.
pub fn forbidden_json_problems(r: &Response) -> Vec<String> {
    let mut problems = Vec::new();
    if r.status != 403 {
        return problems;
    }
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    if answer["saved"] != serde_json::Value::Bool(false) || !answer["errors"].is_string() {
        problems.push(format!(
            "403 is not MISP's save-fail JSON: {:?}",
            String::from_utf8_lossy(&r.body)
        ));
    }
    problems
}

/// Whether `body` holds any 64-byte window (or the whole, if shorter) of
/// `secret`: a blocked answer must not leak even in part.
pub fn contains_part_of(body: &[u8], secret: &[u8]) -> bool {
    let w = secret.len().min(64);
    if w <= 2 || body.len() < w {
        return false;
    }
    body.windows(w)
        .any(|piece| secret.windows(w).any(|s| s == piece))
}
