//! The dry run and the admin listener through the real guard: pushes over
//! the real explicit-proxy listener to the real fake peer, then `/metrics`
//! and `/healthz` scraped over TCP on 127.0.0.1 inside the namespace, the
//! text parsed with a Prometheus parser, and reloads by SIGHUP.
//!
//! `instance_2_2` (127.20.0.2) runs in monitor mode: its blocked push is
//! relayed and logged `would block`. `instance_1_2` (127.10.0.2) is
//! enforced: its blocked push is refused.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// instance_2_2, in monitor mode, pushing to instance_2_1.
const MONITORED: &str = "127.20.0.2";
const MONITORED_DST: &str = "instance1-comp2.com:443";
/// instance_1_2, enforced, pushing to instance_1_1.
const ENFORCED: &str = "127.10.0.2";
const ENFORCED_DST: &str = "instance1-comp1.com:443";
const PUSH: &str = "/events/add/metadata:1";
const ADMIN: &str = "127.0.0.1:19464";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{SHARED}/fixtures/{name}")).unwrap()
}

fn push(dst: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST http://{dst}{PUSH} HTTP/1.1\r\nHost: {dst}\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: MISP 2.5.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `GET path` on the admin listener: the status and the body.
fn admin_get(rig: &Rig, path: &str) -> (u16, String) {
    let addr: SocketAddr = ADMIN.parse().unwrap();
    rig.ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("admin");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {ADMIN}\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).expect("admin answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, body.to_string())
    })
}

fn scrape(rig: &Rig) -> prometheus_parse::Scrape {
    let (status, body) = admin_get(rig, "/metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    assert!(
        body.trim_end().ends_with("# EOF"),
        "not whole OpenMetrics text: {body}"
    );
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parse")
}

fn number(v: &prometheus_parse::Value) -> Option<f64> {
    match v {
        prometheus_parse::Value::Counter(n)
        | prometheus_parse::Value::Gauge(n)
        | prometheus_parse::Value::Untyped(n) => Some(*n),
        _ => None,
    }
}

/// The sum of the samples of `metric` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .filter_map(|s| number(&s.value))
        .sum()
}

/// The observation count of histogram `metric` with `labels`.
fn observations(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            _ => None,
        })
        .sum()
}

/// Poll the metrics until `f` holds (a reload is answered asynchronously).
fn wait_metrics(rig: &Rig, what: &str, f: impl Fn(&prometheus_parse::Scrape) -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f(&scrape(rig)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; log:\n{}", rig.log_tail(30));
}

/// The first log line holding `text`, once the guard has written it.
fn wait_log_line(rig: &Rig, text: &str) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(line) = rig.guard.log().lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {text:?} line:\n{}", rig.log_tail(10));
}

fn hup(rig: &Rig) {
    let pid = nix::unistd::Pid::from_raw(rig.guard.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
}

#[test]
fn monitor_mode_passes_a_blocked_push_and_the_metrics_count_it() {
    if !can_run("monitor_mode_passes_a_blocked_push_and_the_metrics_count_it") {
        return;
    }
    let guard = serde_json::json!({
        "admin": { "listen": ADMIN },
        "instances": { "instance_2_2": { "mode": "monitor" } },
    });
    let rig = Rig::proxy("metrics", guard);
    let (status, body) = admin_get(&rig, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert!(
        rig.guard.log().contains("MONITOR MODE"),
        "no monitor warning at start:\n{}",
        rig.log_tail(20)
    );

    let clean = fixture("test_event_non-blocked.json");
    let blocked = fixture("test_event_blocked_tags.json");
    let before = rig.count();
    let r = rig.send(MONITORED, &push(MONITORED_DST, &clean), false);
    assert_eq!(r.map(|r| r.status), Some(200), "{}", rig.log_tail(10));
    let r = rig.send(MONITORED, &push(MONITORED_DST, &blocked), false);
    assert_eq!(
        r.map(|r| r.status),
        Some(200),
        "monitor mode refused a push: {}",
        rig.log_tail(10)
    );
    let got = rig.since(before);
    assert_eq!(got.len(), 2, "the peer must get both pushes");
    assert_eq!(recorded_body(&got[1]), blocked, "relayed as it came");
    // The record is written once the answer is out: wait for it.
    let line = wait_log_line(&rig, "exchange would block");
    for part in ["mode=\"monitor\"", "rule=\"blocked tag\"", "tlp:red"] {
        assert!(line.contains(part), "no {part} in {line}");
    }

    let before = rig.count();
    let r = rig.send(ENFORCED, &push(ENFORCED_DST, &blocked), false);
    assert_eq!(r.map(|r| r.status), Some(403), "{}", rig.log_tail(10));
    assert_eq!(
        rig.since(before).len(),
        0,
        "an enforced block reached the peer"
    );
    // Counted just before its log record is written.
    wait_log_line(&rig, "exchange blocked");

    let m = scrape(&rig);
    let exchanges = "misp_guard_exchanges_total";
    let monitored = [("src", "instance_2_2"), ("dst", "instance_2_1")];
    let counted = |outcome: &str, mode: &str, who: &[(&str, &str)]| {
        let mut labels = who.to_vec();
        labels.extend([
            ("outcome", outcome),
            ("mode", mode),
            ("endpoint", "events/add"),
            ("direction", "push"),
        ]);
        value(&m, exchanges, &labels)
    };
    assert_eq!(counted("allowed", "monitor", &monitored), 1.0);
    assert_eq!(counted("would_block", "monitor", &monitored), 1.0);
    assert_eq!(counted("blocked", "monitor", &monitored), 0.0);
    let enforced = [("src", "instance_1_2"), ("dst", "instance_1_1")];
    assert_eq!(counted("blocked", "enforce", &enforced), 1.0);
    let blocks = "misp_guard_blocks_total";
    let rule = ("rule", "blocked tag");
    assert_eq!(
        value(
            &m,
            blocks,
            &[rule, ("verdict", "would_block"), ("mode", "monitor")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            blocks,
            &[rule, ("verdict", "block"), ("mode", "enforce")]
        ),
        1.0
    );
    assert_eq!(
        value(&m, "misp_guard_bytes_in_total", &monitored),
        (clean.len() + blocked.len()) as f64
    );
    assert!(value(&m, "misp_guard_bytes_out_total", &monitored) > 0.0);
    assert_eq!(
        observations(
            &m,
            "misp_guard_decision_seconds",
            &[("stage", "head_to_verdict")]
        ),
        3.0
    );
    assert_eq!(
        observations(
            &m,
            "misp_guard_decision_seconds",
            &[("stage", "verdict_to_answer"), ("mode", "monitor")]
        ),
        2.0
    );
    assert_eq!(value(&m, "misp_guard_ready", &[("mode", "enforce")]), 1.0);
    assert_eq!(value(&m, "misp_guard_config_generation", &[]), 0.0);
    let open = m
        .samples
        .iter()
        .find(|s| s.metric == "misp_guard_connections_open");
    assert!(open.is_some(), "no connections_open gauge");
    for s in &m.samples {
        assert!(s.labels.get("mode").is_some(), "no mode label on {s:?}");
    }

    // A refused reload: counted, and /healthz says so; the old config
    // (with its monitor mode) stays in force.
    let path = rig.ns.path("config.json");
    let good = std::fs::read_to_string(&path).unwrap();
    let mut bad: serde_json::Value = serde_json::from_str(&good).unwrap();
    bad["guard"]["mode"] = "bogus".into();
    std::fs::write(&path, bad.to_string()).unwrap();
    hup(&rig);
    wait_metrics(&rig, "a refused reload", |m| {
        value(m, "misp_guard_reloads_total", &[("result", "refused")]) == 1.0
    });
    let (status, body) = admin_get(&rig, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("reload was refused"), "{body}");

    // A good reload, now guard-wide monitor: in force, healthy again, the
    // gauges labelled with the new mode, the warning repeated.
    let mut next: serde_json::Value = serde_json::from_str(&good).unwrap();
    next["guard"]["mode"] = "monitor".into();
    std::fs::write(&path, next.to_string()).unwrap();
    hup(&rig);
    wait_metrics(&rig, "a reload in force", |m| {
        value(m, "misp_guard_reloads_total", &[("result", "ok")]) == 1.0
    });
    let (status, _) = admin_get(&rig, "/healthz");
    assert_eq!(status, 200);
    let m = scrape(&rig);
    assert_eq!(
        value(&m, "misp_guard_config_generation", &[("mode", "monitor")]),
        2.0
    );
    assert_eq!(value(&m, "misp_guard_ready", &[("mode", "monitor")]), 1.0);
    let start = Instant::now();
    let warnings = loop {
        let n = rig.guard.log().matches("MONITOR MODE").count();
        if n >= 3 || start.elapsed() > Duration::from_secs(10) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        warnings >= 3,
        "the monitor warning must come at start and after each reload ({warnings})"
    );

    let before = rig.count();
    let r = rig.send(ENFORCED, &push(ENFORCED_DST, &blocked), false);
    assert_eq!(r.map(|r| r.status), Some(200), "{}", rig.log_tail(10));
    assert_eq!(rig.since(before).len(), 1, "guard-wide monitor mode");
}

#[test]
fn the_admin_listener_answers_only_its_two_paths() {
    if !can_run("the_admin_listener_answers_only_its_two_paths") {
        return;
    }
    let rig = Rig::proxy("admin", serde_json::json!({ "admin": { "listen": ADMIN } }));
    assert_eq!(admin_get(&rig, "/metrics").0, 200);
    assert_eq!(admin_get(&rig, "/nope").0, 404);
    let addr: SocketAddr = ADMIN.parse().unwrap();
    let status = rig.ns.run(|| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    });
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");
}

/// Bytes held until the verdict and the spill files in use are gauges
/// that go up while a body is held and back to zero once it is answered;
/// a client whose TLS handshake the guard refuses is counted by reason.
#[test]
fn held_bytes_spill_files_and_failed_handshakes_are_counted() {
    if !can_run("held_bytes_spill_files_and_failed_handshakes_are_counted") {
        return;
    }
    let ca_dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(GUARD)
        .args(["ca", "init", "--out"])
        .arg(ca_dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let guard = serde_json::json!({
        "admin": { "listen": ADMIN },
        "limits": { "hold_memory_bytes": 65536 },
        "tls": {
            "ca_cert": ca_dir.path().join("ca.crt"),
            "ca_key": ca_dir.path().join("ca.key"),
        },
    });
    let rig = Rig::proxy("held", guard);
    let gauge = |m: &prometheus_parse::Scrape, name: &str| value(m, name, &[]);
    let idle = scrape(&rig);
    assert_eq!(gauge(&idle, "misp_guard_held_bytes"), 0.0);
    assert_eq!(gauge(&idle, "misp_guard_spill_files"), 0.0);

    // A push whose body is sent past the memory threshold and then held
    // back: the guard holds it (spilled) until the rest comes.
    let clean = fixture("test_event_non-blocked.json");
    let mut body = clean[..clean.len() - 1].to_vec();
    body.extend(std::iter::repeat_n(b' ', 200_000));
    body.push(*clean.last().unwrap());
    let request = push(MONITORED_DST, &body);
    let split = request.len() - 10;
    let source: std::net::IpAddr = MONITORED.parse().unwrap();
    let mut s = rig.ns.run(|| connect(source, rig.listen));
    rig.ns.run(|| s.write_all(&request[..split]).unwrap());
    wait_metrics(&rig, "the body to be held", |m| {
        gauge(m, "misp_guard_held_bytes") >= 200_000.0 && gauge(m, "misp_guard_spill_files") == 1.0
    });
    let answer = rig.ns.run(|| {
        s.write_all(&request[split..]).unwrap();
        read_response(&mut s, false)
    });
    assert_eq!(answer.map(|r| r.status), Some(200), "{}", rig.log_tail(10));
    drop(s);
    wait_metrics(&rig, "the hold to be let go", |m| {
        gauge(m, "misp_guard_held_bytes") == 0.0 && gauge(m, "misp_guard_spill_files") == 0.0
    });

    // A CONNECT tunnel whose first record is a handshake record that is
    // no ClientHello.
    let mut t = rig.ns.run(|| connect(source, rig.listen));
    let tunnel = format!("CONNECT {MONITORED_DST} HTTP/1.1\r\nHost: {MONITORED_DST}\r\n\r\n");
    let ok = rig.ns.run(|| {
        t.write_all(tunnel.as_bytes()).unwrap();
        read_response(&mut t, true)
    });
    assert_eq!(ok.map(|r| r.status), Some(200), "{}", rig.log_tail(10));
    rig.ns.run(|| {
        t.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])
            .unwrap();
        let mut rest = Vec::new();
        let _ = t.read_to_end(&mut rest);
    });
    wait_metrics(&rig, "the refused handshake to be counted", |m| {
        value(
            m,
            "misp_guard_tls_handshake_failures_total",
            &[("side", "client"), ("reason", "bad_client_hello")],
        ) == 1.0
    });
}

/// A dry run is of the rules, not of the parser: a body the guard cannot
/// read is refused under monitor mode too, and never reaches the peer.
#[test]
fn monitor_mode_still_refuses_what_cannot_be_read() {
    if !can_run("monitor_mode_still_refuses_what_cannot_be_read") {
        return;
    }
    let guard = serde_json::json!({ "instances": { "instance_2_2": { "mode": "monitor" } } });
    let rig = Rig::proxy("monmalformed", guard);
    let duplicate_key = br#"{"Event":{"info":"x","info":"y","distribution":"1"}}"#;
    let not_json = b"{\"Event\":{\"info\":";
    for body in [&duplicate_key[..], &not_json[..]] {
        let before = rig.count();
        let r = rig.send(MONITORED, &push(MONITORED_DST, body), false);
        assert_eq!(r.map(|r| r.status), Some(403), "{}", rig.log_tail(10));
        assert!(
            rig.since(before).is_empty(),
            "a body the guard could not read reached the peer"
        );
    }
}
