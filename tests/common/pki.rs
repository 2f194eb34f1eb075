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
