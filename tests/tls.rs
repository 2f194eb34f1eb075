//! TLS end to end: a client that trusts only the guard CA goes through the
//! explicit-proxy listener (`CONNECT`, then TLS, then origin-form HTTP), and
//! the guard reaches real TLS upstreams (the fake MISP with a certificate
//! from an "upstream" CA the guard trusts, or from a CA it does not).
//! Everything runs in a network namespace the test creates; the conformance
//! addresses are mapped onto its loopback as in `conformance_proxy.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const PROXY: &str = "127.0.0.1:18443";
/// An instance whose server presents a certificate from a CA the guard
/// does not trust.
const ROGUE_IP: &str = "127.77.0.1";
const ROGUE_HOST: &str = "rogue-comp1.com";

/// A CA made at test time.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for `hosts` signed by `ca`: (cert PEM, key PEM).
fn server_cert(ca: &Ca, hosts: &[String]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(hosts.to_vec()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, &hosts[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The namespace, the two upstreams and the guard.
struct World {
    ns: Netns,
    peer: Peer,
    rogue: Peer,
    guard: Proc,
    guard_ca: Ca,
    proxy: SocketAddr,
}

fn world(tag: &str) -> World {
    let ns = Netns::new(tag);
    let guard_ca = ca("test guard CA");
    let upstream_ca = ca("test upstream CA");
    let untrusted_ca = ca("test untrusted CA");

    let mut config = conformance_config(serde_json::json!({}));
    let instances = config["instances"].as_object_mut().unwrap();
    let mut rogue = instances["instance_1_2"].clone();
    rogue["ip"] = ROGUE_IP.into();
    rogue["host"] = ROGUE_HOST.into();
    instances.insert("rogue".into(), rogue);
    let hosts: Vec<String> = instances
        .values()
        .map(|i| i["host"].as_str().unwrap().to_string())
        .filter(|h| h != ROGUE_HOST)
        .collect();
    let listen: Vec<SocketAddr> = instances
        .values()
        .filter(|i| i["host"] != ROGUE_HOST)
        .map(|i| {
            assert_eq!(i["port"], 443, "upstream TLS is the default on 443 only");
            format!("{}:443", i["ip"].as_str().unwrap())
                .parse()
                .unwrap()
        })
        .collect();

    let write = |name: &str, text: &str| -> PathBuf {
        let p = ns.path(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_cert = write("guard-ca.crt", &guard_ca.cert_pem);
    let ca_key = write("guard-ca.key", &guard_ca.key_pem);
    let bundle = write("upstream-ca.crt", &upstream_ca.cert_pem);
    let (cert, key) = server_cert(&upstream_ca, &hosts);
    let (peer_cert, peer_key) = (write("peer.crt", &cert), write("peer.key", &key));
    let (cert, key) = server_cert(&untrusted_ca, &[ROGUE_HOST.to_string()]);
    let (rogue_cert, rogue_key) = (write("rogue.crt", &cert), write("rogue.key", &key));

    config["guard"] = serde_json::json!({
        "log": { "level": "info" },
        "tls": {
            "ca_cert": ca_cert,
            "ca_key": ca_key,
            "upstream_ca_bundle": bundle,
        },
    });
    let peer = Peer::start(&ns, &listen, Some((&peer_cert, &peer_key)));
    let rogue = start_peer_as(
        &ns,
        "rogue",
        &[format!("{ROGUE_IP}:443").parse().unwrap()],
        Some((&rogue_cert, &rogue_key)),
    );
    let proxy: SocketAddr = PROXY.parse().unwrap();
    let guard = start_guard(&ns, &config, &["--proxy-listen", PROXY], proxy);
    World {
        ns,
        peer,
        rogue,
        guard,
        guard_ca,
        proxy,
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// `CONNECT host:443` from `source`, then a TLS handshake naming `sni` and
/// offering `alpn`, trusting only the guard CA. Runs on a namespace thread.
fn tunnel(w: &World, source: &str, host: &str, sni: &str, alpn: &[&[u8]]) -> Result<Tls, String> {
    let source: IpAddr = map_ip(source).parse().unwrap();
    let mut tcp = connect(source, w.proxy);
    tcp.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes())
        .unwrap();
    let head = read_head(&mut tcp);
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("CONNECT answered {head:?}"));
    }
    let mut roots = RootCertStore::empty();
    roots.add(w.guard_ca.der.clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(s)
}

/// The guard's log once it contains `needle` (the log line of an exchange
/// is written after the answer, so the client may be faster), or as it is
/// after five seconds.
fn log_with(guard: &Proc, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let log = guard.log();
        if log.contains(needle) || start.elapsed() > std::time::Duration::from_secs(5) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn read_head(s: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// One scenario of the conformance data by name.
fn scenario(name: &str) -> Scenario {
    scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

/// Run a conformance scenario over CONNECT + TLS: (response, what the
/// upstream received meanwhile).
fn run(w: &World, s: &Scenario) -> (Response, Vec<serde_json::Value>) {
    let mut script = serde_json::json!({});
    if s.is_pull() {
        if let Some(f) = &s.fixture {
            script["body_file"] = f.display().to_string().into();
        }
    }
    w.peer.answer(script);
    let before = w.peer.received().len();
    let body = s.body();
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: MISP 2.5.1\r\n",
        s.method, s.url, s.host
    );
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);
    let response = w.ns.run(|| {
        let mut t = tunnel(w, &s.client_ip, &s.host, &s.host, &[b"http/1.1"])
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", s.name, w.guard.log()));
        t.write_all(&request).unwrap();
        read_response(&mut t, false)
    });
    let response = response.unwrap_or_else(|| panic!("{}: no response\n{}", s.name, w.guard.log()));
    (response, w.peer.received()[before..].to_vec())
}

#[test]
fn push_and_pull_over_tls_are_judged_like_plain_ones() {
    if !can_run("push_and_pull_over_tls_are_judged_like_plain_ones") {
        return;
    }
    let w = world("tls");

    let s = scenario("push_new_event_non-blocked");
    let (r, got) = run(&w, &s);
    assert_eq!(r.status, 200, "{}\n{}", s.name, w.guard.log());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body_len"].as_u64(), Some(s.body().len() as u64));
    assert_eq!(got[0]["method"], "POST");

    let s = scenario("push_new_event_blocked_event_tags");
    let (r, got) = run(&w, &s);
    assert_eq!(r.status, 403, "{}", s.name);
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer["saved"], false);
    assert!(
        answer["errors"].as_str().unwrap().contains("blocked tag"),
        "{answer}"
    );
    assert!(got.is_empty(), "the upstream got {got:?}");

    let s = scenario("pull_event_non-blocked");
    let (r, got) = run(&w, &s);
    assert_eq!(r.status, 200, "{}", s.name);
    assert_eq!(got.len(), 1);
    assert_eq!(
        &r.body,
        &std::fs::read(s.fixture.as_ref().unwrap()).unwrap()
    );

    let s = scenario("pull_event_blocked_event_tags");
    let (r, got) = run(&w, &s);
    assert_eq!(r.status, 403, "{}", s.name);
    assert_eq!(got.len(), 1, "the request itself went upstream");
    let fixture = std::fs::read(s.fixture.as_ref().unwrap()).unwrap();
    assert!(!r.body.windows(64).any(|x| fixture.starts_with(x)));
    assert!(log_with(&w.guard, "exchange blocked").contains("exchange blocked"));
}

#[test]
fn sni_naming_another_host_is_refused() {
    if !can_run("sni_naming_another_host_is_refused") {
        return;
    }
    let w = world("tlssni");
    let result = w.ns.run(|| {
        tunnel(
            &w,
            "20.0.0.2",
            "instance1-comp2.com",
            "instance2-comp2.com",
            &[b"http/1.1"],
        )
        .map(|_| ())
    });
    assert!(result.is_err(), "handshake succeeded");
    let log = log_with(&w.guard, "client sent SNI");
    assert!(
        log.contains(
            "client sent SNI \"instance2-comp2.com\" but connected to instance1-comp2.com"
        ),
        "{log}"
    );
    assert!(w.peer.received().is_empty());

    // The same client naming the right host gets through.
    let ok = w.ns.run(|| {
        tunnel(
            &w,
            "20.0.0.2",
            "instance1-comp2.com",
            "instance1-comp2.com",
            &[b"http/1.1"],
        )
        .map(|_| ())
    });
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn client_offering_only_h2_is_refused() {
    if !can_run("client_offering_only_h2_is_refused") {
        return;
    }
    let w = world("tlsh2");
    let result = w.ns.run(|| {
        tunnel(
            &w,
            "20.0.0.2",
            "instance1-comp2.com",
            "instance1-comp2.com",
            &[b"h2"],
        )
        .map(|_| ())
    });
    let err = result.expect_err("h2-only handshake succeeded");
    assert!(err.contains("NoApplicationProtocol"), "{err}");
    let log = log_with(&w.guard, "client offers no");
    assert!(
        log.contains("client offers no http/1.1 in ALPN (offered: h2)"),
        "{log}"
    );
}

#[test]
fn upstream_certificate_from_an_untrusted_ca_is_a_502_and_nothing_is_sent() {
    if !can_run("upstream_certificate_from_an_untrusted_ca_is_a_502_and_nothing_is_sent") {
        return;
    }
    let w = world("tlsrogue");
    let event = std::fs::read(format!("{SHARED}/fixtures/test_event_non-blocked.json")).unwrap();
    let mut request = format!(
        "POST /events/add/metadata:1 HTTP/1.1\r\nHost: {ROGUE_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        event.len()
    )
    .into_bytes();
    request.extend_from_slice(&event);
    let response = w.ns.run(|| {
        let mut t = tunnel(&w, "10.0.0.2", ROGUE_HOST, ROGUE_HOST, &[b"http/1.1"]).unwrap();
        t.write_all(&request).unwrap();
        read_response(&mut t, false)
    });
    let r = response.expect("no response");
    assert_eq!(r.status, 502, "{r:?}\n{}", w.guard.log());
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("certificate refused: unknown issuer"),
        "{message}"
    );
    assert!(w.rogue.received().is_empty(), "{:?}", w.rogue.received());
    assert!(log_with(&w.guard, "unknown issuer").contains("unknown issuer"));
}

#[test]
fn plain_http_inside_a_tunnel_to_a_tls_instance_is_refused() {
    if !can_run("plain_http_inside_a_tunnel_to_a_tls_instance_is_refused") {
        return;
    }
    let w = world("tlsplain");
    let r = w.ns.run(|| {
        let mut tcp = connect(map_ip("20.0.0.2").parse().unwrap(), w.proxy);
        tcp.write_all(
            b"CONNECT instance1-comp2.com:443 HTTP/1.1\r\nHost: instance1-comp2.com:443\r\n\r\n",
        )
        .unwrap();
        assert!(read_head(&mut tcp).starts_with("HTTP/1.1 200"));
        roundtrip(
            &mut tcp,
            b"GET /servers/getVersion HTTP/1.1\r\nHost: instance1-comp2.com:443\r\n\r\n",
            false,
        )
    });
    let r = r.expect("no response");
    assert_eq!(r.status, 403);
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("reached over TLS"), "{body}");
    assert!(w.peer.received().is_empty());
}
