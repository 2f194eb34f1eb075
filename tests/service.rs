//! The guard as systemd sees it, without systemd: the notify socket is a
//! datagram socket the test binds and names in `NOTIFY_SOCKET`, the runtime
//! directory a temporary one in `RUNTIME_DIRECTORY`, as the unit sets them.
//! Each guard runs in a network namespace of its own, with its nftables
//! table (host mode).
//!
//! What is checked: `READY=1` comes only once the listeners accept and the
//! table is listed, and never when either fails; `STATUS=` names instances
//! and listeners; `misp-guard reload` (the unit's `ExecReload=`) exits 0
//! on a good config and 1 on a refused one, with `RELOADING=1` … `READY=1`
//! around both; `STOPPING=1` on SIGTERM; `WATCHDOG=1` when asked for.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sync::{can_run_firewall, table};
use common::{Netns, Proc, GUARD};

const LISTEN: &str = "127.0.0.1:8443";

/// The socket systemd would listen on for the guard's notifications.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        Notify { sock, path }
    }

    /// The next message, or None when none comes within `wait`.
    fn next(&self, wait: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one has the line `line`; all of them, that one last.
    fn until(&self, line: &str, proc: &Proc) -> Vec<String> {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(m) = self.next(Duration::from_millis(200)) {
                let done = m.lines().any(|l| l == line);
                seen.push(m);
                if done {
                    return seen;
                }
            }
        }
        panic!("no {line} in {seen:?}; log:\n{}", proc.log());
    }
}

fn status(message: &str) -> String {
    message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_default()
        .to_string()
}

fn config(instances: &[(&str, &str)], firewall: serde_json::Value) -> serde_json::Value {
    let mut all = serde_json::Map::new();
    for (name, ip) in instances {
        all.insert(
            name.to_string(),
            serde_json::json!({"ip": ip, "host": format!("{name}.example"), "port": 80, "compartment_id": "c"}),
        );
    }
    serde_json::json!({
        "compartments_rules": {"can_reach": {"c": ["c"]}},
        "instances": all,
        "guard": {"listen": {"transparent": [LISTEN]}, "firewall": firewall}
    })
}

fn host_mode() -> serde_json::Value {
    serde_json::json!({"mode": "host", "local_instances": ["a"]})
}

/// The guard in `ns` on `config`, its notify socket and runtime directory
/// under `ns.dir`, with `env` added.
/// Instances a and b, with the guard's table in host mode.
fn two_instances() -> serde_json::Value {
    config(&[("a", "10.1.0.1"), ("b", "10.1.0.2")], host_mode())
}

fn start(ns: &Netns, notify: &Notify, config: &serde_json::Value, env: &[(&str, &str)]) -> Proc {
    let path = ns.path("config.json");
    fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
    let run = ns.path("run");
    fs::create_dir_all(&run).unwrap();
    let stderr = ns.path("guard.stderr");
    let mut c = ns.command(GUARD);
    c.args(["run", "--config"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("RUNTIME_DIRECTORY", &run)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc {
        child: c.spawn().expect("start the guard"),
        stderr,
    }
}

/// `misp-guard reload` for `guard`, as ExecReload= runs it.
fn reload(ns: &Netns, guard: &Proc) -> std::process::Output {
    Command::new(GUARD)
        .args(["reload", "--pid", &guard.child.id().to_string()])
        .env("RUNTIME_DIRECTORY", ns.path("run"))
        .output()
        .expect("run misp-guard reload")
}

fn accepts(ns: &Netns) -> bool {
    let addr: SocketAddr = LISTEN.parse().unwrap();
    ns.run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Wait for the guard to exit on its own; its status.
fn exited(guard: &mut Proc) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = guard.child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the guard did not exit:\n{}",
            guard.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_comes_after_the_listeners_and_the_table() {
    if !can_run_firewall("ready_comes_after_the_listeners_and_the_table") {
        return;
    }
    let ns = Netns::new("svc-ready");
    let notify = Notify::bind(ns.dir.path());
    let guard = start(&ns, &notify, &two_instances(), &[]);
    let seen = notify.until("READY=1", &guard);
    // By the time READY=1 is read, both are there.
    let listed = table(&ns).unwrap_or_default();
    assert!(
        listed.contains("10.1.0.2 . 80"),
        "no table at READY=1:\n{listed}"
    );
    assert!(accepts(&ns), "the listener does not accept at READY=1");
    let ready = seen.last().unwrap();
    assert_eq!(
        status(ready),
        format!("instances: 2; listeners: {LISTEN} transparent; table inet misp_guard: 4 chains, 10 rules, 6 sets with 3 elements installed"),
    );
    assert!(
        fs::read_to_string(ns.path("run/reload.json"))
            .unwrap()
            .contains("\"state\":\"ready\""),
        "the reload report is written before READY=1"
    );
}

#[test]
fn no_ready_when_the_table_or_a_listener_fails() {
    if !can_run_firewall("no_ready_when_the_table_or_a_listener_fails") {
        return;
    }
    // The kernel refuses nat chains at priority -300: the guard has bound
    // its listener, but must not say it is ready.
    let ns = Netns::new("svc-noready");
    let notify = Notify::bind(ns.dir.path());
    let refused =
        serde_json::json!({"mode": "host", "local_instances": ["a"], "nat_priority": -300});
    let mut guard = start(
        &ns,
        &notify,
        &config(&[("a", "10.1.0.1"), ("b", "10.1.0.2")], refused),
        &[],
    );
    assert!(!exited(&mut guard).success());
    let mut messages = Vec::new();
    while let Some(m) = notify.next(Duration::from_millis(100)) {
        messages.push(m);
    }
    assert!(
        !messages.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 without a table: {messages:?}"
    );
    // systemctl status says why.
    assert!(
        messages
            .last()
            .is_some_and(|m| status(m).starts_with("failed: ") && status(m).contains("chain")),
        "{messages:?}"
    );
    assert!(table(&ns).is_none(), "a table was left");

    // The listener's address is taken.
    let ns = Netns::new("svc-busy");
    let notify = Notify::bind(ns.dir.path());
    let _taken = ns.run(|| TcpListener::bind(LISTEN).unwrap());
    let mut guard = start(&ns, &notify, &two_instances(), &[]);
    assert!(!exited(&mut guard).success());
    assert!(guard.log().contains("8443"), "{}", guard.log());
    while let Some(m) = notify.next(Duration::from_millis(100)) {
        assert!(!m.lines().any(|l| l == "READY=1"), "READY=1 unbound: {m}");
    }
    assert!(table(&ns).is_none(), "a table without a listener");
}

#[test]
fn reload_waits_for_the_outcome_and_fails_when_refused() {
    if !can_run_firewall("reload_waits_for_the_outcome_and_fails_when_refused") {
        return;
    }
    let ns = Netns::new("svc-reload");
    let notify = Notify::bind(ns.dir.path());
    let guard = start(&ns, &notify, &two_instances(), &[]);
    notify.until("READY=1", &guard);

    // A good config: a third instance.
    let three = config(
        &[("a", "10.1.0.1"), ("b", "10.1.0.2"), ("c", "10.1.0.3")],
        host_mode(),
    );
    fs::write(ns.path("config.json"), three.to_string()).unwrap();
    let out = reload(&ns, &guard);
    assert!(
        out.status.success(),
        "reload failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        guard.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reload 1 in force\n");
    // misp-guard reload returned once the new table was in place.
    assert!(table(&ns).unwrap_or_default().contains("10.1.0.3 . 80"));
    let seen = notify.until("READY=1", &guard);
    assert!(
        seen.iter().any(|m| m.lines().any(|l| l == "RELOADING=1")),
        "{seen:?}"
    );
    assert!(
        status(seen.last().unwrap()).starts_with("instances: 3; listeners: ")
            && status(seen.last().unwrap()).ends_with("; reload 1 in force"),
        "{seen:?}"
    );

    // A bad one: refused, exit 1 with the reason; the guard serves on.
    fs::write(ns.path("config.json"), "{\"instances\": ").unwrap();
    let out = reload(&ns, &guard);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reload refused, the running config stays in force")
            && err.contains("invalid JSON"),
        "{err}"
    );
    let seen = notify.until("READY=1", &guard);
    assert!(seen.iter().any(|m| m.lines().any(|l| l == "RELOADING=1")));
    let last = status(seen.last().unwrap());
    assert!(
        last.starts_with("instances: 3;") && last.contains("reload 2 refused"),
        "{last}"
    );
    assert!(!last.contains('\n'));
    assert!(accepts(&ns));
    assert!(table(&ns).unwrap_or_default().contains("10.1.0.3 . 80"));
}

#[test]
fn stopping_and_watchdog_are_sent() {
    if !can_run_firewall("stopping_and_watchdog_are_sent") {
        return;
    }
    let ns = Netns::new("svc-stop");
    let notify = Notify::bind(ns.dir.path());
    let mut guard = start(
        &ns,
        &notify,
        &two_instances(),
        &[("WATCHDOG_USEC", "200000")],
    );
    notify.until("READY=1", &guard);
    // Two pings show it is a timer, not a one-off.
    notify.until("WATCHDOG=1", &guard);
    notify.until("WATCHDOG=1", &guard);
    common::sh(&["kill", "-TERM", &guard.child.id().to_string()]);
    notify.until("STOPPING=1", &guard);
    assert!(exited(&mut guard).success(), "{}", guard.log());
    assert!(table(&ns).is_some(), "the table stays when the guard stops");
}

#[test]
fn run_refuses_the_shipped_config_in_one_line() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/config.json");
    let out = Command::new(GUARD)
        .args(["run", "--config", shipped])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("no instances configured: edit {shipped}\n")
    );
    let out = Command::new(GUARD)
        .args(["config", "check", shipped])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no instances configured: edit "));
}
