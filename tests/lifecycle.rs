//! Start-up, reload and shutdown of the real guard process.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const PROXY: &str = "127.0.0.1:18081";

#[test]
fn a_bad_config_stops_start_up_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = conformance_config(serde_json::json!({}));
    config["instances"]["instance_1_1"]["port"] = serde_json::json!(70000);
    let path = dir.path().join("bad.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(GUARD)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("instances.instance_1_1.port"), "{stderr}");
}

#[test]
fn an_address_in_use_stops_start_up_with_one_line() {
    if !can_run("an_address_in_use_stops_start_up_with_one_line") {
        return;
    }
    let ns = Netns::new("inuse");
    let config = conformance_config(serde_json::json!({ "listen": { "transparent": [] } }));
    let path = ns.path("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    // Hold the port inside the namespace, then start the guard on it.
    let holder = ns
        .command("python3")
        .args([
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',18081)); s.listen(); print('ok',flush=True); time.sleep(30)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = Proc {
        child: holder,
        stderr: ns.path("none"),
    };
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let out = ns
        .command(GUARD)
        .args(["run", "--config"])
        .arg(&path)
        .args(["--proxy-listen", PROXY])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.contains("cannot listen on 127.0.0.1:18081"),
        "{stderr}"
    );
}

/// The head of a push from instance_2_2 of a `len`-byte event.
fn push_head(len: usize) -> String {
    format!(
        "POST http://instance1-comp2.com:443/events/add/metadata:1 HTTP/1.1\r\nHost: instance1-comp2.com:443\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

fn push(ns: &Netns, fixture: &str) -> u16 {
    let body = std::fs::read(format!("{SHARED}/fixtures/{fixture}")).unwrap();
    let mut req = push_head(body.len()).into_bytes();
    req.extend_from_slice(&body);
    let source: IpAddr = "127.20.0.2".parse().unwrap();
    ns.run(|| {
        let mut c = connect(source, PROXY.parse().unwrap());
        roundtrip(&mut c, &req, false)
            .map(|r| r.status)
            .unwrap_or(0)
    })
}

#[test]
fn sighup_reloads_the_rules_and_refuses_a_bad_config() {
    if !can_run("sighup_reloads_the_rules_and_refuses_a_bad_config") {
        return;
    }
    let ns = Netns::new("hup");
    let config = conformance_config(serde_json::json!({ "listen": { "transparent": [] } }));
    let peer = Peer::start(&ns, &["127.20.0.1:443".parse().unwrap()], None);
    let guard = start_guard(
        &ns,
        &config,
        &["--proxy-listen", PROXY],
        PROXY.parse().unwrap(),
    );
    assert_eq!(push(&ns, "test_event_blocked_tags.json"), 403);

    // A bad config is refused; the old one stays in force.
    std::fs::write(ns.path("config.json"), "{ not json").unwrap();
    hup(&guard);
    assert_eq!(push(&ns, "test_event_blocked_tags.json"), 403);
    assert!(
        guard.log().contains("config reload refused"),
        "{}",
        guard.log()
    );

    // A good one takes effect: instance_2_2 no longer blocks tlp:red.
    let mut relaxed = config.clone();
    relaxed["instances"]["instance_2_2"]["taxonomies_rules"]["blocked_tags"] =
        serde_json::json!([]);
    std::fs::write(ns.path("config.json"), relaxed.to_string()).unwrap();
    hup(&guard);
    assert_eq!(push(&ns, "test_event_blocked_tags.json"), 200);
    assert_eq!(peer.received().len(), 1);
}

/// A reload applies to a connection already open: the same push on the
/// same kept-alive connection is allowed before the SIGHUP and blocked
/// after it, and the blocked one never reaches the peer.
#[test]
fn a_reload_applies_to_the_next_request_of_a_kept_alive_connection() {
    if !can_run("a_reload_applies_to_the_next_request_of_a_kept_alive_connection") {
        return;
    }
    let ns = Netns::new("hupkept");
    let config = conformance_config(serde_json::json!({ "listen": { "transparent": [] } }));
    // Start with instance_2_2 not blocking tlp:red.
    let mut relaxed = config.clone();
    relaxed["instances"]["instance_2_2"]["taxonomies_rules"]["blocked_tags"] =
        serde_json::json!([]);
    let peer = Peer::start(&ns, &["127.20.0.1:443".parse().unwrap()], None);
    let guard = start_guard(
        &ns,
        &relaxed,
        &["--proxy-listen", PROXY],
        PROXY.parse().unwrap(),
    );
    let body = std::fs::read(format!("{SHARED}/fixtures/test_event_blocked_tags.json")).unwrap();
    let mut req = push_head(body.len()).into_bytes();
    req.extend_from_slice(&body);
    let source: IpAddr = "127.20.0.2".parse().unwrap();
    let (first, second) = ns.run(|| {
        let mut c = connect(source, PROXY.parse().unwrap());
        let first = roundtrip(&mut c, &req, false).map(|r| (r.status, r.header("connection")));
        // Back to the config that blocks tlp:red, while the connection is
        // open and idle.
        std::fs::write(ns.path("config.json"), config.to_string()).unwrap();
        hup(&guard);
        let second = roundtrip(&mut c, &req, false).map(|r| r.status);
        (first, second)
    });
    assert_eq!(first, Some((200, None)), "{}", log_tail(&guard.log(), 10));
    assert_eq!(second, Some(403), "{}", log_tail(&guard.log(), 10));
    assert_eq!(
        peer.received().len(),
        1,
        "the push blocked after the reload reached the peer"
    );
}

fn hup(guard: &Proc) {
    let before = guard.log().matches("config reload").count();
    sh(&["kill", "-HUP", &guard.child.id().to_string()]);
    let start = Instant::now();
    while guard.log().matches("config reload").count() == before
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_the_exchange_in_flight_finish_then_exits() {
    if !can_run("sigterm_lets_the_exchange_in_flight_finish_then_exits") {
        return;
    }
    let ns = Netns::new("term");
    let config = conformance_config(serde_json::json!({ "listen": { "transparent": [] } }));
    let _peer = Peer::start(&ns, &["127.20.0.1:443".parse().unwrap()], None);
    let mut guard = start_guard(
        &ns,
        &config,
        &["--proxy-listen", PROXY],
        PROXY.parse().unwrap(),
    );
    let proxy: SocketAddr = PROXY.parse().unwrap();
    let source: IpAddr = "127.20.0.2".parse().unwrap();
    let body = std::fs::read(format!("{SHARED}/fixtures/test_event_non-blocked.json")).unwrap();
    let status = ns.run(|| {
        let mut c = connect(source, proxy);
        // Send the head and half the body, then ask the guard to stop.
        let head = push_head(body.len());
        std::io::Write::write_all(&mut c, head.as_bytes()).unwrap();
        std::io::Write::write_all(&mut c, &body[..body.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        sh(&["kill", "-TERM", &guard.child.id().to_string()]);
        std::thread::sleep(Duration::from_millis(200));
        std::io::Write::write_all(&mut c, &body[body.len() / 2..]).unwrap();
        read_response(&mut c, false).map(|r| (r.status, r.header("connection")))
    });
    let (status, connection) = status.expect("a response to the exchange in flight");
    assert_eq!(status, 200);
    assert_eq!(connection.as_deref(), Some("close"));
    let start = Instant::now();
    let code = loop {
        if let Some(s) = guard.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "guard did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    // No new connections once stopped.
    assert!(ns
        .run(|| std::net::TcpStream::connect_timeout(&proxy, Duration::from_millis(300)).is_err()));
}
