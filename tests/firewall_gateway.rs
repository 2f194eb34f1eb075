//! The guard on a gateway between two compartments, with its own nftables
//! table (`guard.firewall.mode: "gateway"`): MISP A, the gateway and MISP
//! B in three network namespaces, IP forwarding on in the gateway, TLS on
//! every leg. Push and pull both ways go through the guard; a connection
//! to an instance that does not pass the guard is dropped; other traffic
//! is routed as before.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::sync::*;
use common::*;

/// A TLS client straight to `to`, trusting `ca_pem` (the instance's own
/// CA): what a MISP would do if nothing sent it to the guard.
fn direct_tls(
    to: SocketAddr,
    host: &str,
    ca_pem: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// One getVersion on `s`: the status line, or None when nothing came.
fn get_version(s: &mut impl ReadWrite, host: &str) -> Option<String> {
    let req = format!(
        "GET /servers/getVersion HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nContent-Type: application/json\r\nAuthorization: {}\r\n\r\n",
        "k".repeat(40)
    );
    s.write_all(req.as_bytes()).ok()?;
    s.flush().ok()?;
    let r = read_response(s, false)?;
    Some(r.head.lines().next().unwrap_or_default().to_string())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn gateway_guards_sync_both_ways_and_drops_what_goes_around_it() {
    if !can_run_firewall("gateway_guards_sync_both_ways_and_drops_what_goes_around_it") {
        return;
    }
    let ns_a = Netns::new("fwga");
    let ns_gw = Netns::new("fwgg");
    let ns_b = Netns::new("fwgb");
    veth(&ns_a, "a0", "10.77.1.2/24", &ns_gw, "ga", "10.77.1.1/24");
    veth(&ns_gw, "gb", "10.77.2.1/24", &ns_b, "b0", "10.77.2.2/24");
    default_route(&ns_a, "10.77.1.1");
    default_route(&ns_b, "10.77.2.1");
    forwarding(&ns_gw);
    // The admin's own table, as on any real gateway: it tracks connections
    // from the start, and the guard leaves it alone.
    let admin = "table inet admin {\n\tchain forward {\n\t\ttype filter hook forward priority 10; policy accept;\n\t\tct state established,related accept\n\t}\n}\n";
    let admin_file = ns_gw.path("admin.nft");
    std::fs::write(&admin_file, admin).unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns_gw.name,
        "nft",
        "-f",
        admin_file.to_str().unwrap(),
    ]);
    let dir = ns_gw.dir.path();
    let a = Instance::new(dir, "A", "10.77.1.2");
    let b = Instance::new(dir, "B", "10.77.2.2");
    let guard_ca = GuardCa::new(dir);
    let config = config(
        &[&a, &b],
        &guard_ca,
        serde_json::json!({ "mode": "gateway", "interfaces": ["ga", "gb"] }),
        dir,
    );
    let server_a = Server::start(&ns_a, &a);
    let server_b = Server::start(&ns_b, &b);

    // Before the guard: a connection from A straight to B's MISP, and a
    // service on another port of B.
    let b_ca = std::fs::read_to_string(&b.ca).unwrap();
    let (b_addr, b_host) = (b.addr(), b.host.clone());
    let (to_bypass, bypass_rx) = std::sync::mpsc::channel::<()>();
    let (bypass_tx, from_bypass) = std::sync::mpsc::channel::<(Option<String>, Option<String>)>();
    let bypass = spawn_in(&ns_a, move || {
        let mut s = direct_tls(b_addr, &b_host, &b_ca);
        let before = get_version(&mut s, &b_host);
        bypass_tx.send((before, None)).unwrap();
        bypass_rx.recv().unwrap();
        // Dropped packets: the write is buffered, the read times out (a
        // reset or an answer would mean the packets got through).
        let req = format!("GET /servers/getVersion HTTP/1.1\r\nHost: {b_host}\r\n\r\n");
        let _ = s.write_all(req.as_bytes()).and_then(|()| s.flush());
        let mut byte = [0u8; 1];
        let after = match s.read(&mut byte) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            other => Some(format!("{other:?}")),
        };
        bypass_tx.send((None, after)).unwrap();
    });
    let (before, _) = from_bypass.recv().unwrap();
    assert_eq!(
        before.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the direct path before the guard"
    );
    let echo = spawn_in(&ns_b, || {
        let l = TcpListener::bind("10.77.2.2:9000").unwrap();
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
    });

    let guard = Guard::start(&ns_gw, &config);
    let mut problems = Vec::new();

    let run = |kind, from: &Instance, to: &Instance| {
        let ns = if from.name == "A" { &ns_a } else { &ns_b };
        sync(
            ns,
            &Run {
                kind,
                from,
                to,
                trust: &guard_ca.cert,
                pause_at: None,
            },
        )
    };
    let r = run("push", &a, &b);
    problems.extend(
        push_problems(&a, &r, &server_b)
            .into_iter()
            .map(|p| format!("A→B push: {p}")),
    );
    let r = run("pull", &a, &b);
    problems.extend(
        pull_problems(&b, &r)
            .into_iter()
            .map(|p| format!("A←B pull: {p}")),
    );
    let r = run("push", &b, &a);
    problems.extend(
        push_problems(&b, &r, &server_a)
            .into_iter()
            .map(|p| format!("B→A push: {p}")),
    );
    let r = run("pull", &b, &a);
    problems.extend(
        pull_problems(&a, &r)
            .into_iter()
            .map(|p| format!("B←A pull: {p}")),
    );

    // The connection opened around the guard is dropped in forward.
    let seen = server_b.received().len();
    to_bypass.send(()).unwrap();
    let (_, after) = from_bypass.recv().unwrap();
    bypass.join().unwrap();
    if after.is_some() {
        problems.push(format!(
            "a connection around the guard was not silently dropped: {after:?}"
        ));
    }
    if server_b.received().len() != seen {
        problems.push("a request around the guard reached B".into());
    }
    // Another port of B is routed as before.
    let echoed = ns_a.run(|| {
        let mut c =
            TcpStream::connect_timeout(&"10.77.2.2:9000".parse().unwrap(), Duration::from_secs(5))
                .ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        c.write_all(b"ping").ok()?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).ok()?;
        Some(buf)
    });
    if echoed != Some(*b"ping") {
        problems.push(format!(
            "traffic to another port of B did not pass: {echoed:?}"
        ));
    } else {
        echo.join().unwrap();
    }
    let listed = ns_gw
        .command("nft")
        .args(["list", "table", "inet", "admin"])
        .output()
        .unwrap();
    if !String::from_utf8_lossy(&listed.stdout).contains("ct state established,related accept") {
        problems.push("the admin's table was touched".into());
    }
    // The MISPs only ever saw the gateway (the guard's own connections).
    for (server, gw) in [(&server_a, "10.77.1.1"), (&server_b, "10.77.2.1")] {
        let clients: Vec<_> = server
            .received()
            .iter()
            .skip(usize::from(gw == "10.77.2.1"))
            .map(|r| r["client"].as_str().unwrap_or("").to_string())
            .filter(|c| c != gw)
            .collect();
        if !clients.is_empty() {
            problems.push(format!(
                "a MISP was reached by {clients:?}, not by the guard"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n--- guard log (tail) ---\n{}",
        problems.join("\n"),
        log_tail(&guard.log(), 30)
    );
}
