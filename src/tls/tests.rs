//! Real handshakes over in-memory pipes, with test CAs made at test time.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::ClientConfig;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::mint::Ca;
use super::*;
use crate::config::{Instance, InstanceSettings, InstanceTls, TlsSettings};

const HOST: &str = "instance1-comp1.com";
const T: Duration = Duration::from_secs(5);

fn ip() -> IpAddr {
    "10.0.0.1".parse().unwrap()
}

fn instance(host: &str, tls: InstanceTls) -> Instance {
    Instance {
        name: "instance_1_1".into(),
        ip: ip(),
        host: host.into(),
        port: 443,
        compartment: "comp1".into(),
        affiliation: String::new(),
        policy: Default::default(),
        settings: InstanceSettings {
            base_path: String::new(),
            tls,
            mode: None,
        },
    }
}

/// A test CA: its issuer, certificate PEM and key PEM.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn test_ca(name: &str) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf for `sans` signed by `ca`, valid between the given years.
fn leaf(ca: &TestCa, sans: &[&str], years: (i32, i32)) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*s).try_into().unwrap()),
        })
        .collect();
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn current() -> (i32, i32) {
    (2020, 2100)
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    super::provider()
}

/// A rustls server playing the upstream instance with `cert_pem`/`key_pem`.
fn upstream_server(cert_pem: &str, key_pem: &str) -> TlsAcceptor {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// A MISP-like client trusting `ca_pem`, offering `alpn`.
fn misp_client(ca_pem: &str, alpn: &[&str]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Runs the guard's accept against a MISP-like client asking for `name`.
async fn accept_from(
    acceptor: &Acceptor,
    inst: &Instance,
    client: TlsConnector,
    name: ServerName<'static>,
) -> (
    Result<tokio_rustls::server::TlsStream<DuplexStream>, Error>,
    std::io::Result<tokio_rustls::client::TlsStream<DuplexStream>>,
) {
    let (a, b) = duplex(1 << 16);
    let client = tokio::spawn(async move { client.connect(name, b).await });
    let server = acceptor.accept(a, inst, T).await;
    (server, client.await.unwrap())
}

/// Runs the guard's connect against an upstream server.
async fn connect_to(
    connector: &Connector,
    inst: &Instance,
    upstream: TlsAcceptor,
) -> Result<tokio_rustls::client::TlsStream<DuplexStream>, Error> {
    let (a, b) = duplex(1 << 16);
    let server = tokio::spawn(async move {
        if let Ok(mut s) = upstream.accept(b).await {
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).await.is_ok() {
                let _ = s.write_all(&buf).await;
                let _ = s.flush().await;
            }
        }
    });
    let out = connector.connect(a, inst, T).await;
    if out.is_err() {
        server.abort();
    }
    out
}

/// The guard CA (via `ca_init`), settings pointing at it, and its PEM.
fn guard_ca(dir: &Path) -> (TlsSettings, String) {
    let files = ca_init(dir).unwrap();
    let pem = std::fs::read_to_string(&files.cert).unwrap();
    let settings = TlsSettings {
        ca_cert: Some(files.cert),
        ca_key: Some(files.key),
        ..Default::default()
    };
    (settings, pem)
}

#[tokio::test]
async fn minted_round_trip_with_and_without_sni() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, ca_pem) = guard_ca(dir.path());
    let inst = instance(
        HOST,
        InstanceTls {
            upstream: true,
            ..Default::default()
        },
    );
    let acceptor = Acceptor::new(&settings, std::slice::from_ref(&inst)).unwrap();

    // SNI = host: the DNS SAN.
    let name = ServerName::try_from(HOST).unwrap();
    let (server, client) =
        accept_from(&acceptor, &inst, misp_client(&ca_pem, &["http/1.1"]), name).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    assert_eq!(server.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // Server.url is the IP: no SNI, the IP SAN is checked; no ALPN is fine.
    let name = ServerName::IpAddress(ip().into());
    let (server, client) = accept_from(&acceptor, &inst, misp_client(&ca_pem, &[]), name).await;
    assert!(server.is_ok(), "{:?}", server.err());
    assert!(client.is_ok());
    assert_eq!(server.unwrap().get_ref().1.server_name(), None);

    // h2 and http/1.1 offered: http/1.1 is chosen.
    let name = ServerName::try_from(HOST).unwrap();
    let client = misp_client(&ca_pem, &["h2", "http/1.1"]);
    let (server, client) = accept_from(&acceptor, &inst, client, name).await;
    assert_eq!(
        client.unwrap().get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    assert!(server.is_ok());
}

#[tokio::test]
async fn sni_is_case_insensitive_and_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, ca_pem) = guard_ca(dir.path());
    let inst = instance(HOST, InstanceTls::default());
    let acceptor = Acceptor::new(&settings, std::slice::from_ref(&inst)).unwrap();

    let name = ServerName::try_from("Instance1-COMP1.com").unwrap();
    let (server, _) = accept_from(&acceptor, &inst, misp_client(&ca_pem, &[]), name).await;
    assert!(server.is_ok(), "{:?}", server.err());

    let name = ServerName::try_from("other.example").unwrap();
    let (server, client) = accept_from(&acceptor, &inst, misp_client(&ca_pem, &[]), name).await;
    match server {
        Err(Error::SniMismatch { sent, expected }) => {
            assert_eq!(sent, "other.example");
            assert_eq!(expected, HOST);
        }
        other => panic!("expected SniMismatch, got {:?}", other.map(|_| ())),
    }
    assert!(client.is_err());
}

#[tokio::test]
async fn client_offering_only_h2_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, ca_pem) = guard_ca(dir.path());
    let inst = instance(HOST, InstanceTls::default());
    let acceptor = Acceptor::new(&settings, std::slice::from_ref(&inst)).unwrap();
    let name = ServerName::try_from(HOST).unwrap();
    let (server, client) = accept_from(&acceptor, &inst, misp_client(&ca_pem, &["h2"]), name).await;
    match server {
        Err(e @ Error::NoHttp11 { .. }) => {
            assert_eq!(
                e.to_string(),
                "client offers no http/1.1 in ALPN (offered: h2)"
            )
        }
        other => panic!("expected NoHttp11, got {:?}", other.map(|_| ())),
    }
    // The client hears the no_application_protocol alert, not a bare close.
    let err = client.err().unwrap();
    assert!(
        err.to_string().contains("NoApplicationProtocol"),
        "client saw: {err}"
    );
}

#[tokio::test]
async fn handshake_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = guard_ca(dir.path());
    let inst = instance(HOST, InstanceTls::default());
    let acceptor = Acceptor::new(&settings, std::slice::from_ref(&inst)).unwrap();
    let (a, _silent) = duplex(1024);
    let r = acceptor.accept(a, &inst, Duration::from_millis(50)).await;
    assert!(matches!(r, Err(Error::Timeout { side: Side::Client })));
}

#[tokio::test]
async fn unknown_instance_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = guard_ca(dir.path());
    let acceptor = Acceptor::new(&settings, &[]).unwrap();
    let connector = Connector::new(&settings, &[]).unwrap();
    let inst = instance(HOST, InstanceTls::default());
    let (a, mut b) = duplex(1 << 16);
    // A client hello is needed before the acceptor looks the instance up.
    let client = misp_client("", &[]);
    tokio::spawn(async move {
        let _ = client
            .connect(ServerName::try_from(HOST).unwrap(), &mut b)
            .await;
    });
    let r = acceptor.accept(a, &inst, T).await;
    assert!(matches!(
        r,
        Err(Error::UnknownInstance {
            side: Side::Client,
            ..
        })
    ));
    let (a, _b) = duplex(16);
    let r = connector.connect(a, &inst, T).await;
    assert!(matches!(
        r,
        Err(Error::UnknownInstance {
            side: Side::Upstream,
            ..
        })
    ));
}

/// Upstream scenarios: (what the upstream presents, the instance's trust,
/// the expected outcome).
#[tokio::test]
async fn upstream_verification() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = test_ca("trusted upstream CA");
    let other = test_ca("some other CA");
    let trusted_file = write(dir.path(), "trusted.crt", &trusted.cert_pem);

    let good = leaf(&trusted, &[HOST, "10.0.0.1"], current());
    let wrong_host = leaf(&trusted, &["other.example"], current());
    let expired = leaf(&trusted, &[HOST], (2020, 2021));
    let not_yet = leaf(&trusted, &[HOST], (2090, 2100));
    let foreign = leaf(&other, &[HOST], current());

    let verified = |ca: Option<PathBuf>| InstanceTls {
        ca,
        upstream: true,
        ..Default::default()
    };
    let danger = InstanceTls {
        danger_skip_upstream_verify: true,
        upstream: true,
        ..Default::default()
    };
    type Case<'a> = (
        &'a str,
        &'a (String, String),
        &'a str,
        InstanceTls,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "good",
            &good,
            HOST,
            verified(Some(trusted_file.clone())),
            None,
        ),
        (
            "good by IP",
            &good,
            "10.0.0.1",
            verified(Some(trusted_file.clone())),
            None,
        ),
        (
            "wrong host",
            &wrong_host,
            HOST,
            verified(Some(trusted_file.clone())),
            Some("certificate not valid for name instance1-comp1.com"),
        ),
        (
            "IP not in SANs",
            &wrong_host,
            "10.0.0.1",
            verified(Some(trusted_file.clone())),
            Some("certificate not valid for name 10.0.0.1"),
        ),
        (
            "expired",
            &expired,
            HOST,
            verified(Some(trusted_file.clone())),
            Some("certificate expired"),
        ),
        (
            "not yet valid",
            &not_yet,
            HOST,
            verified(Some(trusted_file.clone())),
            Some("certificate not yet valid"),
        ),
        (
            "untrusted issuer",
            &foreign,
            HOST,
            verified(Some(trusted_file.clone())),
            Some("unknown issuer"),
        ),
        ("danger: foreign", &foreign, HOST, danger.clone(), None),
        ("danger: expired", &expired, HOST, danger.clone(), None),
        ("danger: wrong host", &wrong_host, HOST, danger, None),
    ];
    for (what, (cert, key), host, tls, expect) in cases {
        let inst = instance(host, tls);
        let connector =
            Connector::new(&TlsSettings::default(), std::slice::from_ref(&inst)).unwrap();
        let r = connect_to(&connector, &inst, upstream_server(cert, key)).await;
        match (r, expect) {
            (Ok(mut s), None) => {
                assert_eq!(
                    s.get_ref().1.alpn_protocol(),
                    Some(&b"http/1.1"[..]),
                    "{what}"
                );
                s.write_all(b"pong").await.unwrap();
                s.flush().await.unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"pong", "{what}");
            }
            (Err(Error::Verify { instance, reason }), Some(want)) => {
                assert_eq!(instance, "instance_1_1", "{what}");
                assert!(reason.starts_with(want), "{what}: {reason}");
            }
            (r, want) => panic!("{what}: expected {want:?}, got {:?}", r.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn upstream_bundle_is_used_without_instance_ca_and_instance_ca_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = test_ca("CA a");
    let b = test_ca("CA b");
    let a_file = write(dir.path(), "a.crt", &a.cert_pem);
    let b_file = write(dir.path(), "b.crt", &b.cert_pem);
    let settings = TlsSettings {
        upstream_ca_bundle: Some(a_file),
        ..Default::default()
    };
    let (cert, key) = leaf(&a, &[HOST], current());

    let plain = instance(
        HOST,
        InstanceTls {
            upstream: true,
            ..Default::default()
        },
    );
    let connector = Connector::new(&settings, std::slice::from_ref(&plain)).unwrap();
    assert!(connect_to(&connector, &plain, upstream_server(&cert, &key))
        .await
        .is_ok());

    // Like MISP's cert_file: the instance's ca replaces the bundle.
    let own = instance(
        HOST,
        InstanceTls {
            upstream: true,
            ca: Some(b_file),
            ..Default::default()
        },
    );
    let connector = Connector::new(&settings, std::slice::from_ref(&own)).unwrap();
    let r = connect_to(&connector, &own, upstream_server(&cert, &key)).await;
    assert!(
        matches!(r, Err(Error::Verify { .. })),
        "{:?}",
        r.map(|_| ())
    );
}

#[tokio::test]
async fn upstream_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = test_ca("server CA");
    let client_ca = test_ca("client CA");
    let (cert, key) = leaf(&server_ca, &[HOST], current());
    let (ccert, ckey) = leaf(&client_ca, &["guard.example"], current());

    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            chain,
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    let server = TlsAcceptor::from(Arc::new(server));

    let ca_file = write(dir.path(), "server-ca.crt", &server_ca.cert_pem);
    let with_cert = instance(
        HOST,
        InstanceTls {
            upstream: true,
            ca: Some(ca_file.clone()),
            client_cert: Some(write(dir.path(), "client.crt", &ccert)),
            client_key: Some(write(dir.path(), "client.key", &ckey)),
            ..Default::default()
        },
    );
    let connector =
        Connector::new(&TlsSettings::default(), std::slice::from_ref(&with_cert)).unwrap();
    let mut s = connect_to(&connector, &with_cert, server.clone())
        .await
        .unwrap();
    // TLS 1.3 checks the client certificate after the client's Finished:
    // the exchange proves the server accepted it.
    s.write_all(b"mtls").await.unwrap();
    s.flush().await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"mtls");

    let without = instance(
        HOST,
        InstanceTls {
            upstream: true,
            ca: Some(ca_file),
            ..Default::default()
        },
    );
    let connector =
        Connector::new(&TlsSettings::default(), std::slice::from_ref(&without)).unwrap();
    let refused = match connect_to(&connector, &without, server).await {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(b"mtls").await;
            let _ = s.flush().await;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.is_err()
        }
    };
    assert!(refused);
}

/// Files that cannot be used: (what, cert content, key content, expected
/// error text after the file name).
#[test]
fn pem_errors_name_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("CA");
    let (cert, key) = leaf(&ca, &[HOST], current());
    let (_, other_key) = leaf(&ca, &[HOST], current());
    let (expired, expired_key) = leaf(&ca, &[HOST], (2020, 2021));
    let truncated: String = cert.lines().take(3).collect::<Vec<_>>().join("\n");

    let cases: &[(&str, &str, &str, &str)] = &[
        ("empty cert", "", &key, "cert.pem: no certificate in file"),
        (
            "garbage cert",
            "hello\n",
            &key,
            "cert.pem: no certificate in file",
        ),
        (
            "truncated cert",
            &truncated,
            &key,
            "cert.pem: a PEM section has no END line",
        ),
        (
            "key without key",
            &cert,
            &cert,
            "key.pem: no private key in file",
        ),
        ("empty key", &cert, "", "key.pem: no private key in file"),
        (
            "mismatched key",
            &cert,
            &other_key,
            "key.pem: the private key does not match the certificate in",
        ),
        (
            "expired",
            &expired,
            &expired_key,
            "cert.pem: certificate expired",
        ),
    ];
    for (what, cert, key, want) in cases {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let inst = instance(
            HOST,
            InstanceTls {
                cert: Some(write(sub.path(), "cert.pem", cert)),
                key: Some(write(sub.path(), "key.pem", key)),
                ..Default::default()
            },
        );
        let errs = Acceptor::new(&TlsSettings::default(), &[inst])
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(errs.0.len(), 1, "{what}: {errs}");
        let text = errs.to_string();
        let at = text.find(sub.path().to_str().unwrap());
        assert!(at.is_some(), "{what}: no file in {text}");
        assert!(text.contains(want), "{what}: {text}");
    }

    let missing = instance(
        HOST,
        InstanceTls {
            cert: Some(dir.path().join("absent.pem")),
            key: Some(dir.path().join("absent.key")),
            ..Default::default()
        },
    );
    let text = Acceptor::new(&TlsSettings::default(), &[missing])
        .err()
        .unwrap()
        .to_string();
    assert!(text.contains("absent.pem: cannot read"), "{text}");
}

#[tokio::test]
async fn own_certificate_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("MISP's own CA");
    let (cert, key) = leaf(&ca, &[HOST], current());
    let inst = instance(
        HOST,
        InstanceTls {
            cert: Some(write(dir.path(), "c.pem", &cert)),
            key: Some(write(dir.path(), "k.pem", &key)),
            ..Default::default()
        },
    );
    // No guard CA at all: the instance's own certificate is enough.
    let acceptor = Acceptor::new(&TlsSettings::default(), std::slice::from_ref(&inst)).unwrap();
    let name = ServerName::try_from(HOST).unwrap();
    let (server, client) =
        accept_from(&acceptor, &inst, misp_client(&ca.cert_pem, &[]), name).await;
    assert!(server.is_ok() && client.is_ok());
}

#[test]
fn ca_problems() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("CA");
    let (leaf_cert, leaf_key) = leaf(&ca, &[HOST], current());
    let other = test_ca("other");
    let ca_cert = write(dir.path(), "ca.crt", &ca.cert_pem);
    let ca_key = write(dir.path(), "ca.key", &ca.key_pem);

    assert!(Ca::load(&ca_cert, &ca_key).is_ok());

    let not_ca = write(dir.path(), "leaf.crt", &leaf_cert);
    let leaf_key = write(dir.path(), "leaf.key", &leaf_key);
    let e = Ca::load(&not_ca, &leaf_key).err().unwrap();
    assert!(
        matches!(&e, Error::NotCa { file } if file == &not_ca),
        "{e}"
    );
    assert!(e.to_string().contains("leaf.crt: not a CA certificate"));

    let other_key = write(dir.path(), "other.key", &other.key_pem);
    let e = Ca::load(&ca_cert, &other_key).err().unwrap();
    assert!(matches!(e, Error::KeyMismatch { .. }), "{e}");

    // Through the acceptor: one error per cause, each instance not blamed
    // again for the broken CA.
    let settings = TlsSettings {
        ca_cert: Some(not_ca),
        ca_key: Some(leaf_key),
        ..Default::default()
    };
    let inst = instance(
        HOST,
        InstanceTls {
            upstream: true,
            ..Default::default()
        },
    );
    let errs = Acceptor::new(&settings, std::slice::from_ref(&inst))
        .err()
        .unwrap();
    assert_eq!(errs.0.len(), 1, "{errs}");

    // No CA, an instance reached over TLS without its own certificate.
    let errs = Acceptor::new(&TlsSettings::default(), &[inst])
        .err()
        .unwrap();
    assert!(
        matches!(errs.0.as_slice(), [Error::Settings { .. }]),
        "{errs}"
    );
    // A plain-HTTP instance without certificate needs none.
    assert!(Acceptor::new(
        &TlsSettings::default(),
        &[instance(HOST, InstanceTls::default())]
    )
    .is_ok());
}

#[test]
fn ca_init_modes_and_no_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let files = ca_init(dir.path()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.key), 0o600);
    assert_eq!(mode(&files.cert), 0o644);
    assert!(files.instructions.contains("cert_file"));
    assert!(files.instructions.contains("MISP.ca_path"));
    assert!(files.instructions.contains("REPLACES"));

    let der = CertificateDer::from_pem_file(&files.cert).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(x.is_ca());
    assert!(x.key_usage().unwrap().unwrap().value.key_cert_sign());
    let cn = x.subject().iter_common_name().next().unwrap();
    assert!(cn.as_str().unwrap().starts_with("misp-guard CA "));
    let years = (x.validity().not_after.timestamp() - x.validity().not_before.timestamp())
        / (365 * 24 * 3600);
    assert_eq!(years, 10);
    assert!(Ca::load(&files.cert, &files.key).is_ok());

    let before = std::fs::read(&files.key).unwrap();
    let e = ca_init(dir.path()).err().unwrap();
    assert!(matches!(e, Error::Exists { .. }), "{e}");
    assert_eq!(std::fs::read(&files.key).unwrap(), before);

    // Only the key left behind: still refused, nothing written.
    let dir2 = tempfile::tempdir().unwrap();
    write(dir2.path(), "ca.key", "x");
    assert!(matches!(ca_init(dir2.path()), Err(Error::Exists { .. })));
    assert!(!dir2.path().join("ca.crt").exists());
}

#[test]
fn minted_leaf_names_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let files = ca_init(dir.path()).unwrap();
    let ca = Ca::load(&files.cert, &files.key).unwrap();
    let ca_der = CertificateDer::from_pem_file(&files.cert).unwrap();
    let (_, ca_x) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let now = pem::unix_now();

    // (host, expected DNS SANs, expected IP SANs)
    let cases: &[(&str, &[&str], &[&str])] = &[
        (HOST, &[HOST], &["10.0.0.1"]),
        ("10.0.0.1", &[], &["10.0.0.1"]),
        ("192.0.2.7", &[], &["192.0.2.7", "10.0.0.1"]),
    ];
    for (host, dns, ips) in cases {
        let leaf = ca.mint(host, ip(), now).unwrap();
        assert_eq!(leaf.chain.len(), 2);
        assert_eq!(leaf.chain[1], ca_der);
        let (_, x) = x509_parser::parse_x509_certificate(&leaf.chain[0]).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap();
        let mut got_dns = Vec::new();
        let mut got_ips = Vec::new();
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => got_dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let a: [u8; 4] = (*b).try_into().unwrap();
                    got_ips.push(IpAddr::from(a).to_string())
                }
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        assert_eq!(got_dns, *dns, "{host}");
        assert_eq!(got_ips, *ips, "{host}");
        assert!(!x.is_ca());
        assert_eq!(x.issuer(), ca_x.subject());
        x.verify_signature(Some(ca_x.public_key())).unwrap();
        let life = x.validity().not_after.timestamp() - now;
        assert_eq!(life, 30 * 24 * 3600);
        assert_eq!(leaf.not_after, x.validity().not_after.timestamp());
    }
    assert!(ca.mint("not a host name!", ip(), now).is_err());
}

#[test]
fn looks_like_tls_table() {
    let cases: &[(&[u8], bool)] = &[
        (&[0x16, 0x03, 0x01, 0x02, 0x00], true),
        (&[0x16, 0x03, 0x03], true),
        (&[0x16, 0x03, 0x04], true),
        (&[0x16, 0x03, 0x00], false),
        (&[0x16, 0x03, 0x05], false),
        (&[0x16, 0x02, 0x01], false),
        (&[0x17, 0x03, 0x03], false),
        (&[0x16, 0x03], false),
        (&[], false),
        (b"GET / HTTP/1.1\r\n", false),
        (b"POST /events/add", false),
        (b"CONNECT host:443", false),
    ];
    for (bytes, want) in cases {
        assert_eq!(looks_like_tls(bytes), *want, "{bytes:?}");
    }
}

#[tokio::test]
async fn min_version_13_refuses_tls12_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, ca_pem) = guard_ca(dir.path());
    settings.min_version_13 = true;
    let inst = instance(HOST, InstanceTls::default());
    let acceptor = Acceptor::new(&settings, std::slice::from_ref(&inst)).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let tls12 = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(HOST).unwrap();
    let (server, client) = accept_from(
        &acceptor,
        &inst,
        TlsConnector::from(Arc::new(tls12)),
        name.clone(),
    )
    .await;
    assert!(matches!(
        server,
        Err(Error::Handshake {
            side: Side::Client,
            ..
        })
    ));
    assert!(client.is_err());

    // TLS 1.3 clients are served.
    let (server, _) = accept_from(&acceptor, &inst, misp_client(&ca_pem, &[]), name).await;
    assert_eq!(
        server.unwrap().get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

/// MISP's common setup: the instance's own self-signed certificate is its
/// `cert_file`; the guard's `ca` may be that same certificate.
#[tokio::test]
async fn self_signed_upstream_certificate_as_ca() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, HOST);
    let cert = params.self_signed(&key).unwrap();
    let inst = instance(
        HOST,
        InstanceTls {
            upstream: true,
            ca: Some(write(dir.path(), "self.crt", &cert.pem())),
            ..Default::default()
        },
    );
    let connector = Connector::new(&TlsSettings::default(), std::slice::from_ref(&inst)).unwrap();
    let r = connect_to(
        &connector,
        &inst,
        upstream_server(&cert.pem(), &key.serialize_pem()),
    )
    .await;
    assert!(r.is_ok(), "{:?}", r.err());
}

/// The guard's own reading of the SNI: names as rustls compares them, and
/// addresses, which rustls ignores, must be the instance's.
#[test]
fn client_hello_sni_must_name_the_instance_also_as_an_address() {
    use super::hello::tests::{hello, sni};
    let by_name = instance(HOST, InstanceTls::default());
    let by_ip = instance("[2001:db8::1]", InstanceTls::default());
    let with = |name: &[u8]| hello(&[sni(&[(0, name)])]);
    let cases: Vec<(&str, &Instance, Vec<u8>, Option<&str>)> = vec![
        ("no SNI", &by_name, hello(&[]), None),
        ("the host", &by_name, with(b"Instance1-Comp1.COM."), None),
        (
            "another name",
            &by_name,
            with(b"other.example"),
            Some("other.example"),
        ),
        ("the instance's ip", &by_name, with(b"10.0.0.1"), None),
        (
            "as v4-mapped IPv6",
            &by_name,
            with(b"::ffff:10.0.0.1"),
            None,
        ),
        (
            "another instance's ip",
            &by_name,
            with(b"10.0.0.2"),
            Some("10.0.0.2"),
        ),
        ("the IP-literal host", &by_ip, with(b"2001:db8::1"), None),
        ("its ip beside an IP host", &by_ip, with(b"10.0.0.1"), None),
        (
            "another IPv6 address",
            &by_ip,
            with(b"2001:db8::2"),
            Some("2001:db8::2"),
        ),
    ];
    for (what, inst, record, refused) in cases {
        match (check_client_hello(&record, inst), refused) {
            (Ok(()), None) => {}
            (Err(Error::SniMismatch { sent, expected }), Some(want)) => {
                assert_eq!(sent, want, "{what}");
                assert_eq!(expected, inst.host, "{what}");
            }
            (r, want) => panic!("{what}: expected refusal of {want:?}, got {r:?}"),
        }
    }
    let two = hello(&[sni(&[(0, b"10.0.0.1"), (0, b"10.0.0.2")])]);
    let r = check_client_hello(&two, &by_name);
    assert!(
        matches!(&r, Err(e @ Error::BadClientHello { .. }) if e.to_string().starts_with("malformed TLS ClientHello")),
        "{r:?}"
    );
    assert!(matches!(
        client_hello_len(b"GET / HTTP/1.1"),
        Err(Error::BadClientHello { .. })
    ));
}

#[path = "../../tests/common/pki.rs"]
mod pki;

/// An instance's own self-signed certificate made by `openssl req -x509`
/// (CA:TRUE), given as its `tls.ca`, is pinned: accepted when presented
/// exactly, with its validity, purpose and name checked; any other
/// self-signed certificate is refused.
#[tokio::test]
async fn instance_certificate_in_tls_ca_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let san = format!("subjectAltName=DNS:{HOST},IP:10.0.0.1");
    let made = pki::openssl_self_signed(d, HOST, &[&san], false);
    // What makes it a case: OpenSSL marks it a CA.
    let der = CertificateDer::from_pem_slice(made.0.as_bytes()).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(parsed.basic_constraints().unwrap().unwrap().value.ca);

    let other = pki::openssl_self_signed(d, HOST, &[&san], false);
    let expired = pki::openssl_self_signed(d, HOST, &[&san], true);
    let wrong_name = pki::openssl_self_signed(
        d,
        "other.example",
        &["subjectAltName=DNS:other.example"],
        false,
    );
    // MISP's installer: a CN and no subjectAltName at all.
    let cn_only = pki::openssl_self_signed(d, HOST, &[], false);
    let cn_other = pki::openssl_self_signed(d, "other.example", &[], false);
    let client_only =
        pki::openssl_self_signed(d, HOST, &[&san, "extendedKeyUsage=clientAuth"], false);
    // A CA:TRUE certificate signed by a root of tls.ca but not pinned.
    let root = test_ca("root in tls.ca");
    let ca_leaf = {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.signed_by(&key, &root.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };

    let both = format!("{}{}", other.0, made.0);
    type Case<'a> = (
        &'a str,
        &'a (String, String),
        &'a str,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("pinned", &made, &made.0, HOST, None),
        ("pinned, by IP", &made, &made.0, "10.0.0.1", None),
        ("pinned among others", &made, &both, HOST, None),
        (
            "another self-signed one",
            &other,
            &made.0,
            HOST,
            Some("a CA certificate (CA:TRUE) that is not one of"),
        ),
        (
            "pinned but expired",
            &expired,
            &expired.0,
            HOST,
            Some("certificate expired"),
        ),
        (
            "pinned for another name",
            &wrong_name,
            &wrong_name.0,
            HOST,
            Some("certificate not valid for name"),
        ),
        ("pinned, CN only", &cn_only, &cn_only.0, HOST, None),
        (
            "pinned, CN only, by IP",
            &cn_only,
            &cn_only.0,
            "10.0.0.1",
            Some("certificate not valid for name"),
        ),
        (
            "pinned, another CN",
            &cn_other,
            &cn_other.0,
            HOST,
            Some("certificate not valid for name"),
        ),
        (
            "pinned for clients only",
            &client_only,
            &client_only.0,
            HOST,
            Some("certificate not valid for server authentication"),
        ),
        (
            "a CA signed by tls.ca",
            &ca_leaf,
            &root.cert_pem,
            HOST,
            Some("a CA certificate (CA:TRUE) that is not one of"),
        ),
    ];
    for (n, (what, (cert, key), ca, host, expect)) in cases.into_iter().enumerate() {
        let inst = instance(
            host,
            InstanceTls {
                upstream: true,
                ca: Some(write(d, &format!("ca-{n}.crt"), ca)),
                ..Default::default()
            },
        );
        let connector =
            Connector::new(&TlsSettings::default(), std::slice::from_ref(&inst)).unwrap();
        let r = connect_to(&connector, &inst, upstream_server(cert, key)).await;
        match (r, expect) {
            (Ok(mut s), None) => {
                s.write_all(b"pong").await.unwrap();
                s.flush().await.unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"pong", "{what}");
            }
            (Err(Error::Verify { reason, .. }), Some(want)) => {
                assert!(reason.starts_with(want), "{what}: {reason}");
            }
            (r, want) => panic!("{what}: expected {want:?}, got {:?}", r.map(|_| ())),
        }
    }
}
