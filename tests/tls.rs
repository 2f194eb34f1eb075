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

use common::pki::{ca, openssl_self_signed, server_cert, server_params, Ca};
use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const PROXY: &str = "127.0.0.1:18443";
/// The transparent listener, reached through the nftables redirect.
const TRANSPARENT: &str = "127.0.0.1:18444";
/// The guard's default `upstream_mark`: its own connections are not
/// redirected.
const MARK: u32 = 0x4d47;
/// An instance whose server presents a certificate from a CA the guard
/// does not trust.
const ROGUE_IP: &str = "127.77.0.1";
const ROGUE_HOST: &str = "rogue-comp1.com";

/// A certificate for `host` from `ca` that expired yesterday.
fn expired_cert(ca: &Ca, host: &str) -> (String, String) {
    let mut params = server_params(&[host.to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let (cert, key) = ca.sign(params).unwrap();
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
    /// The config the guard was started with.
    config: serde_json::Value,
    /// The certificate of the CA the guard does not trust.
    untrusted_ca: PathBuf,
}

/// What the rogue upstream presents.
#[derive(Clone, Copy)]
enum Rogue {
    /// A certificate for its host from a CA the guard does not trust.
    Untrusted,
    /// A certificate for its host from the trusted CA, expired.
    Expired,
    /// A certificate from the trusted CA for another host.
    OtherHost,
    /// Its own self-signed certificate (`openssl req -x509`, CA:TRUE),
    /// which is the rogue instance's `tls.ca`: pinned.
    Pinned,
    /// A self-signed certificate for its host, while its `tls.ca` is
    /// another one.
    PinnedOther,
    /// Its pinned self-signed certificate, expired.
    PinnedExpired,
    /// Its pinned self-signed certificate, for another host.
    PinnedWrongName,
}

fn world(tag: &str) -> World {
    world_with(tag, Rogue::Untrusted)
}

fn world_with(tag: &str, rogue_kind: Rogue) -> World {
    world_guard(tag, rogue_kind, serde_json::json!({}))
}

/// [`world_with`], with these keys added to the `guard` section.
fn world_guard(tag: &str, rogue_kind: Rogue, guard: serde_json::Value) -> World {
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
    let untrusted = write("untrusted-ca.crt", &untrusted_ca.cert_pem);
    let (cert, key) = server_cert(&upstream_ca, &hosts);
    let (peer_cert, peer_key) = (write("peer.crt", &cert), write("peer.key", &key));
    let san = format!("subjectAltName=DNS:{ROGUE_HOST}");
    let self_signed = |cn: &str, san: &str, expired: bool| {
        openssl_self_signed(ns.dir.path(), cn, &[san], expired)
    };
    let mut pinned = None;
    let (cert, key) = match rogue_kind {
        Rogue::Untrusted => server_cert(&untrusted_ca, &[ROGUE_HOST.to_string()]),
        Rogue::Expired => expired_cert(&upstream_ca, ROGUE_HOST),
        Rogue::OtherHost => server_cert(&upstream_ca, &["someone-else.example".to_string()]),
        Rogue::Pinned | Rogue::PinnedExpired | Rogue::PinnedWrongName => {
            let made = match rogue_kind {
                Rogue::PinnedExpired => self_signed(ROGUE_HOST, &san, true),
                Rogue::PinnedWrongName => self_signed(
                    "someone-else.example",
                    "subjectAltName=DNS:someone-else.example",
                    false,
                ),
                _ => self_signed(ROGUE_HOST, &san, false),
            };
            pinned = Some(write("rogue-pinned.crt", &made.0));
            made
        }
        Rogue::PinnedOther => {
            pinned = Some(write(
                "rogue-pinned.crt",
                &self_signed(ROGUE_HOST, &san, false).0,
            ));
            self_signed(ROGUE_HOST, &san, false)
        }
    };
    let (rogue_cert, rogue_key) = (write("rogue.crt", &cert), write("rogue.key", &key));

    config["guard"] = serde_json::json!({
        "log": { "level": "info" },
        "tls": {
            "ca_cert": ca_cert,
            "ca_key": ca_key,
            "upstream_ca_bundle": bundle,
        },
    });
    if let Some(file) = pinned {
        config["guard"]["instances"] = serde_json::json!({ "rogue": { "tls": { "ca": file } } });
    }
    for (key, value) in guard.as_object().unwrap() {
        config["guard"][key] = value.clone();
    }
    let peer = Peer::start(&ns, &listen, Some((&peer_cert, &peer_key)));
    let rogue = Peer::start_as(
        &ns,
        "rogue",
        &[format!("{ROGUE_IP}:443").parse().unwrap()],
        Some((&rogue_cert, &rogue_key)),
    );
    let proxy: SocketAddr = PROXY.parse().unwrap();
    let guard = start_guard(
        &ns,
        &config,
        &["--proxy-listen", PROXY, "--transparent-listen", TRANSPARENT],
        proxy,
    );
    World {
        ns,
        peer,
        rogue,
        guard,
        guard_ca,
        proxy,
        config,
        untrusted_ca: untrusted,
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
    handshake(w, tcp, sni, alpn)
}

/// A TLS handshake over `tcp` naming `sni`, offering `alpn`, trusting only
/// the guard CA.
fn handshake(w: &World, tcp: TcpStream, sni: &str, alpn: &[&[u8]]) -> Result<Tls, String> {
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
    w.peer.answer(script_for(s));
    let before = w.peer.received().len();
    let body = s.body();
    // Not `scenario_request`: over https curl names no port in `Host`.
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
    refused_upstream(
        Rogue::Untrusted,
        "tlsrogue",
        "certificate refused: unknown issuer",
    );
}

#[test]
fn expired_upstream_certificate_is_a_502_and_nothing_is_sent() {
    if !can_run("expired_upstream_certificate_is_a_502_and_nothing_is_sent") {
        return;
    }
    refused_upstream(Rogue::Expired, "tlsexpired", "expired");
}

#[test]
fn upstream_certificate_for_another_host_is_a_502_and_nothing_is_sent() {
    if !can_run("upstream_certificate_for_another_host_is_a_502_and_nothing_is_sent") {
        return;
    }
    refused_upstream(Rogue::OtherHost, "tlsotherhost", "not valid for name");
}

/// An instance whose `tls.ca` is its own self-signed certificate made by
/// `openssl req -x509` (CA:TRUE) is reached: the certificate is pinned,
/// and the log says so in plain words.
#[test]
fn a_pinned_self_signed_upstream_certificate_is_accepted() {
    if !can_run("a_pinned_self_signed_upstream_certificate_is_accepted") {
        return;
    }
    let w = world_with("tlspinned", Rogue::Pinned);
    let response = w.ns.run(|| {
        let mut t = tunnel(&w, "10.0.0.2", ROGUE_HOST, ROGUE_HOST, &[b"http/1.1"]).unwrap();
        t.write_all(&push_to_rogue()).unwrap();
        read_response(&mut t, false)
    });
    let r = response.expect("no response");
    assert_eq!(r.status, 200, "{r:?}\n{}", w.guard.log());
    assert_eq!(w.rogue.received().len(), 1);
    let log = w.guard.log();
    assert!(
        log.contains("the instance's own certificate in tls.ca is pinned"),
        "{log}"
    );
}

#[test]
fn another_self_signed_certificate_than_the_pinned_one_is_a_502() {
    if !can_run("another_self_signed_certificate_than_the_pinned_one_is_a_502") {
        return;
    }
    refused_upstream(
        Rogue::PinnedOther,
        "tlspinother",
        "a CA certificate (CA:TRUE) that is not one of the instance's tls.ca certificates",
    );
}

#[test]
fn an_expired_pinned_certificate_is_a_502() {
    if !can_run("an_expired_pinned_certificate_is_a_502") {
        return;
    }
    refused_upstream(Rogue::PinnedExpired, "tlspinexp", "certificate expired");
}

#[test]
fn a_pinned_certificate_for_another_name_is_a_502() {
    if !can_run("a_pinned_certificate_for_another_name_is_a_502") {
        return;
    }
    refused_upstream(
        Rogue::PinnedWrongName,
        "tlspinname",
        "certificate not valid for name rogue-comp1.com",
    );
}

/// A push of an allowed event to the rogue instance.
fn push_to_rogue() -> Vec<u8> {
    let event = std::fs::read(format!("{SHARED}/fixtures/test_event_non-blocked.json")).unwrap();
    let mut request = format!(
        "POST /events/add/metadata:1 HTTP/1.1\r\nHost: {ROGUE_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        event.len()
    )
    .into_bytes();
    request.extend_from_slice(&event);
    request
}

/// A push to the rogue upstream: 502 naming `reason`, a log line saying
/// it, and nothing reaches the rogue application.
fn refused_upstream(kind: Rogue, tag: &str, reason: &str) {
    let w = world_with(tag, kind);
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
    assert!(message.contains(reason), "{message}");
    assert!(w.rogue.received().is_empty(), "{:?}", w.rogue.received());
    assert!(log_with(&w.guard, reason).contains(reason));
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

/// Redirect TCP to port 443 of every instance to the transparent listener,
/// except the guard's own (marked) connections.
fn redirect(w: &World) -> bool {
    let ok = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP transparent TLS: needs nft (nftables)");
        return false;
    }
    let port = TRANSPARENT.rsplit(':').next().unwrap();
    let rules = format!(
        "table ip misp_guard_tls_test {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    meta mark {MARK:#x} return\n    tcp dport 443 ip daddr != 127.0.0.1 redirect to :{port}\n  }}\n}}\n"
    );
    let file = w.ns.path("ruleset.nft");
    std::fs::write(&file, &rules).unwrap();
    let out = w.ns.command("nft").arg("-f").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "nft -f failed: {}\n{rules}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn transparent_tls_takes_the_certificate_of_the_original_destination() {
    if !can_run("transparent_tls_takes_the_certificate_of_the_original_destination") {
        return;
    }
    let w = world("tlstr");
    if !redirect(&w) {
        return;
    }
    let source: IpAddr = map_ip("20.0.0.2").parse().unwrap();
    let dst: SocketAddr = format!("{}:443", map_ip("20.0.0.1")).parse().unwrap();
    let host = "instance1-comp2.com";

    // An allowed push and a blocked one, on one TLS connection.
    let allowed = scenario("push_new_event_non-blocked");
    let blocked = scenario("push_new_event_blocked_event_tags");
    assert_eq!(allowed.host, host);
    assert_eq!(blocked.host, host);
    let post = |s: &Scenario| {
        let body = s.body();
        let mut r = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            s.url,
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let (first, second) = w.ns.run(|| {
        let tcp = connect(source, dst);
        let mut t = handshake(&w, tcp, host, &[b"http/1.1"])
            .unwrap_or_else(|e| panic!("{e}\n{}", w.guard.log()));
        t.write_all(&post(&allowed)).unwrap();
        let first = read_response(&mut t, false);
        t.write_all(&post(&blocked)).unwrap();
        let second = read_response(&mut t, false);
        // The upstream TLS connection of the first request is kept and
        // used again.
        t.write_all(format!("GET /servers/getVersion HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .unwrap();
        let third = read_response(&mut t, false);
        assert_eq!(third.map(|r| r.status), Some(200));
        (first, second)
    });
    let first = first.expect("no response to the allowed push");
    assert_eq!(first.status, 200, "{first:?}\n{}", w.guard.log());
    let second = second.expect("no response to the blocked push");
    assert_eq!(second.status, 403, "{second:?}");
    let got = w.peer.received();
    assert_eq!(
        got.len(),
        2,
        "the blocked push did not go upstream: {got:?}"
    );
    assert_eq!(got[1]["path"], "/servers/getVersion");
    assert_eq!(
        got[0]["body_len"].as_u64(),
        Some(allowed.body().len() as u64)
    );

    // Without SNI (a client naming the address: IP literals are never sent
    // as SNI) the certificate is still the original destination's, which
    // names its address too.
    let no_sni = w.ns.run(|| {
        let tcp = connect(source, dst);
        handshake(&w, tcp, &map_ip("20.0.0.1"), &[b"http/1.1"]).map(|_| ())
    });
    assert!(no_sni.is_ok(), "{no_sni:?}\n{}", w.guard.log());

    // A Host naming an allowlisted domain inside TLS is not relayed (the
    // allowlist is for plain HTTP; the guard cannot verify such a host).
    let listed = w.ns.run(|| {
        let tcp = connect(source, dst);
        let mut t = handshake(&w, tcp, host, &[b"http/1.1"]).unwrap();
        t.write_all(b"GET /test.txt HTTP/1.1\r\nHost: snort-org-site.s3.amazonaws.com\r\n\r\n")
            .unwrap();
        read_response(&mut t, false)
    });
    let listed = listed.expect("no answer for the allowlisted host");
    assert_eq!(listed.status, 403);
    let body = String::from_utf8_lossy(&listed.body);
    assert!(body.contains("plain HTTP only"), "{body}");
    assert_eq!(w.peer.received().len(), 2);

    // Plain HTTP to an instance reached over TLS is refused.
    let plain = w.ns.run(|| {
        let mut tcp = connect(source, dst);
        roundtrip(
            &mut tcp,
            format!("GET /servers/getVersion HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes(),
            false,
        )
    });
    let plain = plain.expect("no answer to plain HTTP");
    assert_eq!(plain.status, 403);
    let body = String::from_utf8_lossy(&plain.body);
    assert!(body.contains("reached over TLS"), "{body}");
    assert_eq!(w.peer.received().len(), 2);
}

/// A client of an instance reached over TLS only that says nothing is
/// closed at the handshake timeout, transparently and inside `CONNECT`, not
/// kept for the (here far longer) idle timeout.
#[test]
fn silent_clients_of_tls_only_instances_are_closed_at_the_handshake_timeout() {
    if !can_run("silent_clients_of_tls_only_instances_are_closed_at_the_handshake_timeout") {
        return;
    }
    let w = world_guard(
        "tlssilent",
        Rogue::Untrusted,
        serde_json::json!({ "timeouts": { "handshake": 1, "idle": 600 } }),
    );
    if !redirect(&w) {
        return;
    }
    let source: IpAddr = map_ip("20.0.0.2").parse().unwrap();
    let dst: SocketAddr = format!("{}:443", map_ip("20.0.0.1")).parse().unwrap();
    let (transparent, tunnelled) = w.ns.run(|| {
        // The client's reads give up after 20 s (`connect`), long before
        // the idle timeout: a read of 0 bytes is the guard closing.
        let mut c = connect(source, dst);
        let mut byte = [0u8; 1];
        let transparent = c.read(&mut byte).map_err(|e| e.kind());
        let mut c = connect(source, w.proxy);
        c.write_all(
            b"CONNECT instance1-comp2.com:443 HTTP/1.1\r\nHost: instance1-comp2.com:443\r\n\r\n",
        )
        .unwrap();
        let established = read_head(&mut c);
        let answer = read_response(&mut c, false).map(|r| r.status);
        let end = c.read(&mut byte).map_err(|e| e.kind());
        (transparent, (established, answer, end))
    });
    assert_eq!(transparent, Ok(0), "{}", w.guard.log());
    assert!(tunnelled.0.starts_with("HTTP/1.1 200"), "{tunnelled:?}");
    assert_eq!(
        (tunnelled.1, tunnelled.2),
        (Some(408), Ok(0)),
        "{}",
        w.guard.log()
    );
    let log = log_with(&w.guard, "no TLS handshake within timeouts.handshake");
    assert_eq!(
        log.matches("no TLS handshake within timeouts.handshake")
            .count(),
        2,
        "{log}"
    );
}

/// A TLS 1.3 ClientHello record naming `name` by SNI, written by hand:
/// rustls clients never send an IP address as SNI, OpenSSL's do
/// (`s_client -servername 10.0.0.2`).
fn client_hello_naming(name: &str) -> Vec<u8> {
    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }
    let mut sni = (name.len() as u16 + 3).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    // x25519 share: the base point, a valid public key.
    let mut share = vec![0, 36, 0, 0x1d, 0, 32, 9];
    share.extend_from_slice(&[0; 31]);
    let exts = [
        ext(0, &sni),
        ext(10, &[0, 4, 0, 0x1d, 0, 0x17]),
        ext(11, &[1, 0]),
        ext(13, &[0, 6, 4, 3, 8, 4, 4, 1]),
        ext(16, b"\x00\x09\x08http/1.1"),
        ext(43, &[4, 3, 4, 3, 3]),
        ext(51, &share),
    ]
    .concat();
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(32);
    body.extend_from_slice(&[0xa5; 32]);
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(body.len() as u16 + 4).to_be_bytes());
    record.push(1);
    record.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    record.extend_from_slice(&body);
    record
}

/// An SNI that is an IP address (which rustls ignores) must be the
/// destination's, as a name must be its host; a malformed ClientHello is
/// refused. Refusals close the connection and say why in the log.
#[test]
fn an_ip_address_as_sni_must_be_the_destinations() {
    if !can_run("an_ip_address_as_sni_must_be_the_destinations") {
        return;
    }
    let w = world("tlsipsni");
    if !redirect(&w) {
        return;
    }
    let source: IpAddr = map_ip("20.0.0.2").parse().unwrap();
    let dst: SocketAddr = format!("{}:443", map_ip("20.0.0.1")).parse().unwrap();
    let other_instance = map_ip("10.0.0.1");
    let first_bytes = |record: &[u8]| {
        w.ns.run(|| {
            let mut c = connect(source, dst);
            c.write_all(record).unwrap();
            let mut got = [0u8; 1];
            c.read(&mut got)
                .map(|n| got[..n].to_vec())
                .unwrap_or_default()
        })
    };
    // The destination's own address: rustls goes on with a ServerHello.
    let own = first_bytes(&client_hello_naming(&map_ip("20.0.0.1")));
    assert_eq!(own, [22], "{}", w.guard.log());
    // Another instance's address: closed without a word.
    let other = first_bytes(&client_hello_naming(&other_instance));
    assert!(other.is_empty(), "{other:?}");
    let log = log_with(&w.guard, "client sent SNI");
    assert!(
        log.contains(&format!(
            "client sent SNI \"{other_instance}\" but connected to instance1-comp2.com"
        )),
        "{log}"
    );
    // A ClientHello whose lengths do not add up.
    let mut broken = client_hello_naming("instance1-comp2.com");
    broken.push(0);
    let n = broken.len() as u16 - 5;
    broken[3..5].copy_from_slice(&n.to_be_bytes());
    assert!(first_bytes(&broken).is_empty());
    assert!(log_with(&w.guard, "malformed TLS ClientHello").contains("malformed TLS ClientHello"));
    assert!(w.peer.received().is_empty());
}

/// Past `limits.max_connections`, a client speaking TLS to a transparent
/// listener still gets its 503 (MISP sync runs over HTTPS): after the
/// handshake, in JSON, and the connection is closed.
#[test]
fn tls_connections_past_the_cap_get_a_503() {
    if !can_run("tls_connections_past_the_cap_get_a_503") {
        return;
    }
    let w = world_guard(
        "tlsbusy",
        Rogue::Untrusted,
        serde_json::json!({ "limits": { "max_connections": 1 } }),
    );
    if !redirect(&w) {
        return;
    }
    let source: IpAddr = map_ip("20.0.0.2").parse().unwrap();
    let dst: SocketAddr = format!("{}:443", map_ip("20.0.0.1")).parse().unwrap();
    let host = "instance1-comp2.com";
    let get = format!("GET /servers/getVersion HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let (held, refused) = w.ns.run(|| {
        let mut first = handshake(&w, connect(source, dst), host, &[b"http/1.1"]).unwrap();
        first.write_all(get.as_bytes()).unwrap();
        let held = read_response(&mut first, false).map(|r| r.status);
        let mut second = handshake(&w, connect(source, dst), host, &[b"http/1.1"])
            .unwrap_or_else(|e| panic!("{e}\n{}", w.guard.log()));
        second.write_all(get.as_bytes()).unwrap();
        (held, read_response(&mut second, false))
    });
    assert_eq!(held, Some(200), "{}", w.guard.log());
    let refused = refused.expect("no answer past the cap");
    assert_eq!(refused.status, 503, "{refused:?}");
    let answer: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_connections"),
        "{answer}"
    );
    assert_eq!(w.peer.received().len(), 1);
}

/// Rewrite the guard's config file, send SIGHUP and wait for the log line
/// saying how it went (the `n`th such line).
fn reload(w: &World, config: &serde_json::Value, n: usize) -> String {
    std::fs::write(
        w.ns.path("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    let pid = w.guard.child.id().to_string();
    sh(&["kill", "-HUP", &pid]);
    let start = std::time::Instant::now();
    loop {
        let log = w.guard.log();
        let seen =
            log.matches("config reloaded").count() + log.matches("config reload refused").count();
        if seen >= n || start.elapsed() > std::time::Duration::from_secs(10) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn reload_swaps_tls_with_the_config_or_keeps_the_old() {
    if !can_run("reload_swaps_tls_with_the_config_or_keeps_the_old") {
        return;
    }
    let w = world("tlshup");
    let s = scenario("push_new_event_non-blocked");
    let (r, _) = run(&w, &s);
    assert_eq!(r.status, 200);

    // A config whose CA key is missing is refused as a whole.
    let mut broken = w.config.clone();
    broken["guard"]["tls"]["ca_key"] = w.ns.path("no-such.key").display().to_string().into();
    let log = reload(&w, &broken, 1);
    assert!(log.contains("config reload refused"), "{log}");
    assert!(log.contains("no-such.key"), "{log}");
    let (r, _) = run(&w, &s);
    assert_eq!(r.status, 200, "the old TLS settings stay in force");

    // Trusting another CA upstream takes effect for the next connection.
    let mut other = w.config.clone();
    other["guard"]["tls"]["upstream_ca_bundle"] = w.untrusted_ca.display().to_string().into();
    let log = reload(&w, &other, 2);
    assert!(log.contains("config reloaded"), "{log}");
    let before = w.peer.received().len();
    let (r, got) = run(&w, &s);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("unknown issuer"));
    assert!(got.is_empty());
    assert_eq!(w.peer.received().len(), before);
}

/// A reload that changes the upstream trust applies before the next
/// request of a connection already open: the upstream TLS connection the
/// guard kept from the first request is not used again, the new one is
/// verified under the new trust, refused, and nothing reaches the peer.
#[test]
fn a_trust_change_applies_to_a_kept_upstream_connection() {
    if !can_run("a_trust_change_applies_to_a_kept_upstream_connection") {
        return;
    }
    let w = world("tlshupkept");
    let s = scenario("push_new_event_non-blocked");
    w.peer.answer(script_for(&s));
    let body = s.body();
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.url,
        s.host,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let mut other = w.config.clone();
    other["guard"]["tls"]["upstream_ca_bundle"] = w.untrusted_ca.display().to_string().into();
    let (first, second) = w.ns.run(|| {
        let mut t = tunnel(&w, &s.client_ip, &s.host, &s.host, &[b"http/1.1"]).unwrap();
        t.write_all(&request).unwrap();
        let first = read_response(&mut t, false).map(|r| r.status);
        let log = reload(&w, &other, 1);
        assert!(log.contains("config reloaded"), "{log}");
        t.write_all(&request).unwrap();
        (first, read_response(&mut t, false))
    });
    assert_eq!(first, Some(200), "{}", w.guard.log());
    let second = second.expect("no answer after the reload");
    assert_eq!(second.status, 502, "{second:?}\n{}", w.guard.log());
    assert!(
        String::from_utf8_lossy(&second.body).contains("unknown issuer"),
        "{second:?}"
    );
    assert_eq!(w.peer.received().len(), 1, "{:?}", w.peer.received());
}

#[test]
fn ca_init_writes_a_ca_the_guard_can_use_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(GUARD)
        .args(["ca", "init", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ca_cert"), "{text}");
    let cert = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(dir.path().join("ca.key").exists());

    let again = std::process::Command::new(GUARD)
        .args(["ca", "init", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        cert
    );
}

#[test]
fn config_check_loads_the_tls_material() {
    let dir = tempfile::tempdir().unwrap();
    let guard_ca = ca("check CA");
    let cert = dir.path().join("ca.crt");
    std::fs::write(&cert, &guard_ca.cert_pem).unwrap();
    let missing = dir.path().join("missing.key");
    let mut config = conformance_config(serde_json::json!({
        "tls": { "ca_cert": cert, "ca_key": missing, "upstream_ca_bundle": cert },
    }));
    let file = dir.path().join("config.json");
    let check = |config: &serde_json::Value| {
        std::fs::write(&file, config.to_string()).unwrap();
        std::process::Command::new(GUARD)
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = check(&config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.key"));

    let key = dir.path().join("ca.key");
    std::fs::write(&key, &guard_ca.key_pem).unwrap();
    config["guard"]["tls"]["ca_key"] = key.display().to_string().into();
    let out = check(&config);
    assert!(out.status.success(), "{out:?}");
}
