//! Certificates made at test time with rcgen: CAs and server certificates
//! signed by them. Shared by the TLS tests and the relay bench (which
//! includes this file by path, so it may use only part of it).
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// A CA made now: its issuer, DER and PEM certificate, PKCS#8 PEM key.
pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A self-signed CA called `name`.
    pub fn new(name: &str) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate made from `params` with a fresh key, signed by this CA.
    pub fn sign(&self, params: CertificateParams) -> Result<(Certificate, KeyPair), rcgen::Error> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}

/// The parameters of a server certificate for `hosts` (named after the
/// first), to adjust before [`Ca::sign`].
pub fn server_params(hosts: &[String]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(hosts.to_vec())?;
    if let Some(first) = hosts.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

/// A CA called `name` (tests: a failure is a panic).
pub fn ca(name: &str) -> Ca {
    Ca::new(name).unwrap()
}

/// A server certificate for `hosts` signed by `ca`: (cert PEM, key PEM).
pub fn server_cert(ca: &Ca, hosts: &[String]) -> (String, String) {
    let (cert, key) = ca.sign(server_params(hosts).unwrap()).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A self-signed certificate for `cn` as admins make them, with
/// `openssl req -x509` (OpenSSL marks it basicConstraints CA:TRUE), each
/// `-addext` given (e.g. `subjectAltName=DNS:host`): (cert PEM, key PEM).
/// `expired`: valid only in 2020, made with `openssl ca -selfsign`, since
/// `req -x509` cannot date a certificate back. Files go to `dir`.
pub fn openssl_self_signed(
    dir: &std::path::Path,
    cn: &str,
    addext: &[&str],
    expired: bool,
) -> (String, String) {
    use std::process::Command;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let key = dir.join(format!("openssl-{n}.key"));
    let cert = dir.join(format!("openssl-{n}.crt"));
    let run = |c: &mut Command| {
        let out = c.output().expect("run openssl (the tests need it)");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut req = Command::new("openssl");
    req.args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
    ])
    .args(["-nodes", "-keyout"])
    .arg(&key)
    .args(["-subj", &format!("/CN={cn}")]);
    for e in addext {
        req.args(["-addext", e]);
    }
    if !expired {
        req.args(["-x509", "-days", "30", "-out"]).arg(&cert);
        run(&mut req);
    } else {
        let csr = dir.join(format!("openssl-{n}.csr"));
        req.arg("-out").arg(&csr);
        run(&mut req);
        let db = dir.join(format!("openssl-{n}.db"));
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("index.txt"), "").unwrap();
        std::fs::write(db.join("serial"), "01\n").unwrap();
        let conf = db.join("ca.cnf");
        let d = db.display();
        std::fs::write(
            &conf,
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\n\
                 serial = {d}/serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\n\
                 [p]\ncommonName = supplied\n\
                 [v3]\nbasicConstraints = critical,CA:true\nsubjectKeyIdentifier = hash\n"
            ),
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["ca", "-batch", "-notext", "-selfsign", "-config"])
            .arg(&conf)
            .args(["-extensions", "v3", "-keyfile"])
            .arg(&key)
            .arg("-in")
            .arg(&csr)
            .arg("-out")
            .arg(&cert)
            .args([
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20201231000000Z",
            ]));
    }
    (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    )
}
