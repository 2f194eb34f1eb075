//! The journal's field layout, captured from the guard's own output: the
//! test binds a Unix datagram socket and the guard, run in a mount
//! namespace of its own where that socket is `/run/systemd/journal/socket`,
//! sends its journal entries there in the native protocol. The guard gets
//! no `log.format`: it finds the journal as it does under systemd, by
//! `JOURNAL_STREAM` naming its stderr.
//!
//! Traffic stays inside a network namespace the test creates: pushes over
//! the explicit-proxy listener to the fake peer.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const PROXY: &str = "127.0.0.1:18080";
/// instance_1_2, enforced, pushing to instance_1_1.
const ENFORCED: &str = "127.10.0.2";
const ENFORCED_DST: &str = "instance1-comp1.com:443";
/// instance_2_2, in monitor mode, pushing to instance_2_1.
const MONITORED: &str = "127.20.0.2";
const MONITORED_DST: &str = "instance1-comp2.com:443";
/// Sent as the API key: it must reach no journal field.
const KEY: &str = "SECRETKEY0123456789abcdefSECRETKEY0123456";

fn push(dst: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST http://{dst}/events/add/metadata:1 HTTP/1.1\r\nHost: {dst}\r\nAuthorization: {KEY}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// One entry of the native protocol: `KEY=value\n`, or `KEY\n`, a 64-bit
/// little-endian length, the value and `\n` for a value with a newline.
fn entry(mut data: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut fields = HashMap::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n').expect("field end");
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8(line[..eq].to_vec()).unwrap(),
                line[eq + 1..].to_vec(),
            );
            data = &data[end + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).unwrap();
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(name, rest[8..8 + len].to_vec());
            assert_eq!(rest[8 + len], b'\n', "binary field end");
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

fn text<'a>(e: &'a HashMap<String, Vec<u8>>, name: &str) -> Option<&'a str> {
    e.get(name).and_then(|v| std::str::from_utf8(v).ok())
}

/// The guard in `ns`, in a mount namespace where `socket` is the journal's.
/// Its stderr goes to a file; `journal_stream` is what `JOURNAL_STREAM` is
/// set to (`None`: that file's own device and inode, as systemd sets it).
fn start(ns: &Netns, socket: &std::path::Path, journal_stream: Option<&str>) -> Proc {
    let config = conformance_config(serde_json::json!({
        "spill_dir": ns.dir.path(),
        "instances": { "instance_2_2": { "mode": "monitor" } },
    }));
    let path = ns.path("config.json");
    fs::write(&path, config.to_string()).unwrap();
    let stderr = ns.path("guard.stderr");
    let file = fs::File::create(&stderr).unwrap();
    let meta = file.metadata().unwrap();
    let stream = journal_stream
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:{}", meta.dev(), meta.ino()));
    // A tmpfs over /run in the guard's own mount namespace (`ip netns
    // exec` makes one): nothing of it reaches the host's /run.
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal; \
         touch /run/systemd/journal/socket; mount --bind {sock} /run/systemd/journal/socket; \
         exec {GUARD} run --config {config} --proxy-listen {PROXY}",
        sock = socket.display(),
        config = path.display(),
    );
    let child = ns
        .command("sh")
        .args(["-c", &script])
        .env("JOURNAL_STREAM", stream)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start guard");
    let proc = Proc { child, stderr };
    let probe: SocketAddr = PROXY.parse().unwrap();
    let start = Instant::now();
    while !ns
        .run(|| std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok())
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "guard not listening: {}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

fn send(ns: &Netns, source: &str, bytes: &[u8]) -> Option<u16> {
    let source: std::net::IpAddr = source.parse().unwrap();
    let to: SocketAddr = PROXY.parse().unwrap();
    ns.run(|| {
        let mut c = connect(source, to);
        let _ = c.write_all(bytes);
        read_response(&mut c, false).map(|r| r.status)
    })
}

/// Entries received until one has `VERDICT=verdict` from `src` (or the
/// deadline). The start-up probe is a stranger's connection (`-`).
fn until_verdict(
    socket: &UnixDatagram,
    verdict: &str,
    src: &str,
    all: &mut Vec<HashMap<String, Vec<u8>>>,
) -> Option<HashMap<String, Vec<u8>>> {
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    while start.elapsed() < Duration::from_secs(20) {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        if n == 0 {
            continue;
        }
        let e = entry(&buf[..n]);
        all.push(e.clone());
        if text(&e, "VERDICT") == Some(verdict) && text(&e, "SRC_INSTANCE") == Some(src) {
            return Some(e);
        }
    }
    None
}

/// A datagram socket in `ns`'s directory, standing in for journald's.
fn journal_socket(ns: &Netns) -> (std::path::PathBuf, UnixDatagram) {
    let path = ns.path("journal.socket");
    let socket = UnixDatagram::bind(&path).expect("bind the journal socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (path, socket)
}

#[test]
fn journal_entries_carry_the_exchange_fields() {
    if !can_run("journal_entries_carry_the_exchange_fields") {
        return;
    }
    let ns = Netns::new("journal");
    let (socket_path, socket) = journal_socket(&ns);
    let config = conformance_config(serde_json::json!({}));
    let _peer = Peer::start(&ns, &instance_addrs(&config), None);
    let guard = start(&ns, &socket_path, None);
    let blocked = fs::read(format!("{SHARED}/fixtures/test_event_blocked_tags.json")).unwrap();

    assert_eq!(
        send(&ns, ENFORCED, &push(ENFORCED_DST, &blocked)),
        Some(403)
    );
    let mut all = Vec::new();
    let e = until_verdict(&socket, "block", "instance_1_2", &mut all)
        .unwrap_or_else(|| panic!("no VERDICT=block entry; stderr:\n{}", guard.log()));
    let want = [
        ("VERDICT", "block"),
        ("MODE", "enforce"),
        ("RULE", "blocked tag"),
        ("VALUE", "tlp:red"),
        ("SRC_INSTANCE", "instance_1_2"),
        ("DST_INSTANCE", "instance_1_1"),
        ("METHOD", "POST"),
        ("STATUS", "403"),
        ("BYTES_IN", &blocked.len().to_string()),
        ("BYTES_OUT", "0"),
        ("PRIORITY", "4"),
    ];
    for (name, value) in want {
        assert_eq!(text(&e, name), Some(value), "{name} in {e:?}");
    }
    for name in ["AT", "PATH", "DURATION_MS", "MESSAGE"] {
        assert!(text(&e, name).is_some(), "no {name} in {e:?}");
    }

    assert_eq!(
        send(&ns, MONITORED, &push(MONITORED_DST, &blocked)),
        Some(200)
    );
    let e = until_verdict(&socket, "would block", "instance_2_2", &mut all)
        .unwrap_or_else(|| panic!("no VERDICT=would block entry; stderr:\n{}", guard.log()));
    assert_eq!(text(&e, "MODE"), Some("monitor"), "{e:?}");
    assert_eq!(text(&e, "RULE"), Some("blocked tag"), "{e:?}");
    assert_ne!(text(&e, "BYTES_OUT"), Some("0"), "{e:?}");

    assert!(
        all.iter()
            .any(|e| text(e, "MESSAGE").is_some_and(|m| m.contains("MONITOR MODE"))),
        "no monitor warning in the journal"
    );
    for e in &all {
        for v in e.values() {
            assert!(
                !String::from_utf8_lossy(v).contains(KEY),
                "the API key reached the journal: {e:?}"
            );
        }
    }
    // The journal had the log; stderr (systemd's stream) had none of it.
    assert!(
        !guard.log().contains("exchange blocked"),
        "logged to stderr too:\n{}",
        guard.log()
    );
}

#[test]
fn a_journal_stream_that_is_not_stderr_keeps_text_on_stderr() {
    if !can_run("a_journal_stream_that_is_not_stderr_keeps_text_on_stderr") {
        return;
    }
    let ns = Netns::new("nojournal");
    let (socket_path, socket) = journal_socket(&ns);
    let config = conformance_config(serde_json::json!({}));
    let _peer = Peer::start(&ns, &instance_addrs(&config), None);
    // What a child of a unit whose stderr was redirected inherits.
    let guard = start(&ns, &socket_path, Some("1:1"));
    let blocked = fs::read(format!("{SHARED}/fixtures/test_event_blocked_tags.json")).unwrap();
    assert_eq!(
        send(&ns, ENFORCED, &push(ENFORCED_DST, &blocked)),
        Some(403)
    );
    let start = Instant::now();
    while !guard.log().contains("exchange blocked") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no text log line:\n{}",
            guard.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut buf = [0u8; 4096];
    assert!(
        socket.recv(&mut buf).is_err(),
        "an entry reached the journal socket"
    );
}
