//! Pinning: an instance's `tls.ca` may hold the instance's own certificate.
//!
//! A self-signed certificate made the usual way (`openssl req -x509`) is
//! marked `CA:TRUE`, and a chain verifier refuses a CA certificate as a
//! server's (`CaUsedAsEndEntity`), although MISP's curl accepts it as the
//! Server's `cert_file`. So an upstream certificate that is byte for byte
//! one of the instance's `tls.ca` certificates is accepted as that one
//! certificate, with its validity period, its purpose (when it names one)
//! and its name still checked: a SAN for the instance's `host` (or `ip`),
//! or, for a certificate without any subjectAltName, its CN, as curl reads
//! it. Every other certificate must chain to `tls.ca` as before. Nothing
//! here ever accepts a certificate unchecked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

/// The instance's pinned certificates first, then the chain to `tls.ca`.
#[derive(Debug)]
pub(super) struct PinnedOrChain {
    /// The instance, for the log.
    pub(super) instance: String,
    /// The certificates of the instance's `tls.ca`.
    pub(super) pinned: Vec<CertificateDer<'static>>,
    /// Verifies every other certificate against `tls.ca` as trust anchors.
    pub(super) chain: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedOrChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return self.chain.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        check_pinned(end_entity, server_name, now)?;
        tracing::debug!(
            instance = %self.instance,
            "the upstream presented its pinned certificate (from tls.ca)"
        );
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signatures prove the peer holds the key of the
    // certificate it presented, pinned or not.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// What a chain verifier checks of a server certificate besides its
/// issuer: validity now, purpose, name.
fn check_pinned(
    der: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| CertificateError::BadEncoding)?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(CertificateError::NotValidYet.into());
    }
    if now > validity.not_after.timestamp() {
        return Err(CertificateError::Expired.into());
    }
    match cert.extended_key_usage() {
        Ok(None) => {}
        Ok(Some(eku)) if eku.value.server_auth || eku.value.any => {}
        Ok(Some(_)) => return Err(CertificateError::InvalidPurpose.into()),
        Err(_) => return Err(CertificateError::BadEncoding.into()),
    }
    match names(der, &cert, server_name)? {
        Some(_) => Ok(()),
        None => Err(CertificateError::NotValidForName.into()),
    }
}

/// How a certificate names a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Named {
    /// By a subjectAltName.
    San,
    /// By its CN, having no subjectAltName at all.
    Cn,
}

/// Whether the certificate names `server_name`: by its subjectAltNames
/// (webpki's matching, wildcards included), or, when it has none at all
/// and the name is a DNS name, by a CN equal to it (curl's fallback).
pub(super) fn names(
    der: &CertificateDer<'_>,
    cert: &X509Certificate<'_>,
    server_name: &ServerName<'_>,
) -> Result<Option<Named>, rustls::Error> {
    let parsed = ParsedCertificate::try_from(der)?;
    if verify_server_name(&parsed, server_name).is_ok() {
        return Ok(Some(Named::San));
    }
    let has_san = cert.extensions().iter().any(|e| {
        matches!(
            e.parsed_extension(),
            ParsedExtension::SubjectAlternativeName(_)
        )
    });
    let ServerName::DnsName(dns) = server_name else {
        return Ok(None);
    };
    if has_san {
        return Ok(None);
    }
    let host = dns.as_ref().trim_end_matches('.');
    let by_cn = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn.eq_ignore_ascii_case(host));
    Ok(by_cn.then_some(Named::Cn))
}
