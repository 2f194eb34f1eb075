//! The upstream side of the guard: the guard's own verified TLS connection
//! to the destination instance.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::pin::{self, Named, PinnedOrChain};
use super::{handshake_error, pem, provider, versions, Error, Errors, Side, HTTP11};
use crate::config::{Instance, TlsSettings};

/// Opens TLS connections to the configured instances reached over TLS
/// (`upstream`). Immutable; on reload build a new one and swap it.
pub struct Connector {
    by_name: HashMap<String, Upstream>,
}

struct Upstream {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// Trust stores loaded at most once per build, shared by the instances
/// that use them.
struct Roots {
    bundle: Option<Result<Arc<RootCertStore>, ()>>,
    system: Option<Result<Arc<RootCertStore>, ()>>,
}

impl Connector {
    /// Builds a client config for every instance with `upstream` set:
    /// roots from the instance's `ca` file (replacing all others, as MISP's
    /// `cert_file` does), else `upstream_ca_bundle`, else the system store;
    /// its client certificate when set. Returns every problem found.
    pub fn new(settings: &TlsSettings, instances: &[Instance]) -> Result<Connector, Errors> {
        let provider = provider();
        let mut errors = Vec::new();
        let mut roots = Roots {
            bundle: None,
            system: None,
        };
        let mut by_name = HashMap::new();
        for instance in instances.iter().filter(|i| i.settings.tls.upstream) {
            match upstream(&provider, settings, instance, &mut roots, &mut errors) {
                Ok(Some(u)) => {
                    by_name.insert(instance.name.clone(), u);
                }
                // A shared trust store failed; it is reported once.
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(Errors(errors));
        }
        Ok(Connector { by_name })
    }

    /// Completes a TLS handshake with `instance` over `io` within `timeout`,
    /// verifying its certificate for its `host` (an IP SAN when `host` is an
    /// IP literal; no SNI is sent then).
    pub async fn connect<IO>(
        &self,
        io: IO,
        instance: &Instance,
        timeout: Duration,
    ) -> Result<TlsStream<IO>, Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let upstream = self
            .by_name
            .get(&instance.name)
            .ok_or_else(|| Error::UnknownInstance {
                instance: instance.name.clone(),
                side: Side::Upstream,
            })?;
        let connector = TlsConnector::from(upstream.config.clone());
        let handshake = connector.connect(upstream.name.clone(), io);
        match tokio::time::timeout(timeout, handshake).await {
            Err(_) => Err(Error::Timeout {
                side: Side::Upstream,
            }),
            Ok(Err(e)) => Err(handshake_error(
                e,
                Side::Upstream,
                &instance.name,
                &instance.host,
            )),
            Ok(Ok(stream)) => Ok(stream),
        }
    }
}

/// One instance's client config; `Ok(None)` when a shared store it needs
/// failed (already in `errors`).
fn upstream(
    provider: &Arc<CryptoProvider>,
    settings: &TlsSettings,
    instance: &Instance,
    roots: &mut Roots,
    errors: &mut Vec<Error>,
) -> Result<Option<Upstream>, Error> {
    let tls = &instance.settings.tls;
    let bare = instance.host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_owned()).map_err(|e| Error::Settings {
        instance: instance.name.clone(),
        problem: format!(
            "host {:?} is neither a DNS name nor an IP address: {e}",
            instance.host
        ),
    })?;

    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(settings.min_version_13))
        .map_err(|e| Error::Settings {
            instance: instance.name.clone(),
            problem: e.to_string(),
        })?;
    let builder = if tls.danger_skip_upstream_verify {
        tracing::warn!(
            instance = %instance.name,
            "danger_skip_upstream_verify is set: ANY certificate is accepted from this instance, \
             so anyone on the path can impersonate it and read the synchronised data"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerAcceptAnyCertificate {
                provider: provider.clone(),
            }))
    } else if let Some(file) = &tls.ca {
        // Like MISP's cert_file, the instance's ca replaces every other
        // root; a certificate in it is also pinned (the instance's own).
        let certs = pem::certs(file)?;
        let store = Arc::new(roots_from_certs(file, &certs)?);
        log_pinned(instance, file, &certs, &name);
        let chain = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
            .build()
            .map_err(|e| pem::problem(file, &format!("cannot verify with these roots: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedOrChain {
                instance: instance.name.clone(),
                pinned: certs,
                chain,
            }))
    } else {
        let Some(store) = shared_roots(settings, roots, errors) else {
            return Ok(None);
        };
        builder.with_root_certificates(store)
    };
    let mut config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert_file), Some(key_file)) => {
            let chain = pem::certs(cert_file)?;
            if let Some(leaf) = chain.first() {
                pem::check_validity(cert_file, &pem::parse(cert_file, leaf)?)?;
            }
            let key = pem::key(key_file)?;
            let certified = CertifiedKey::from_der(chain, key, provider)
                .and_then(|c| c.keys_match().map(|()| c))
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => Error::KeyMismatch {
                        cert: cert_file.clone(),
                        key: key_file.clone(),
                    },
                    other => pem::problem(key_file, &format!("unusable private key: {other}")),
                })?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Settings {
                instance: instance.name.clone(),
                problem: "tls.client_cert and tls.client_key must be set together".into(),
            })
        }
    };
    config.alpn_protocols = vec![HTTP11.to_vec()];
    Ok(Some(Upstream {
        config: Arc::new(config),
        name,
    }))
}

/// The bundle or, without one, the system store, each loaded once.
fn shared_roots(
    settings: &TlsSettings,
    roots: &mut Roots,
    errors: &mut Vec<Error>,
) -> Option<Arc<RootCertStore>> {
    let (slot, load): (_, Box<dyn FnOnce() -> Result<RootCertStore, Error>>) =
        match &settings.upstream_ca_bundle {
            Some(file) => (&mut roots.bundle, Box::new(|| roots_from_file(file))),
            None => (&mut roots.system, Box::new(system_roots)),
        };
    slot.get_or_insert_with(|| match load() {
        Ok(store) => Ok(Arc::new(store)),
        Err(e) => {
            errors.push(e);
            Err(())
        }
    })
    .as_ref()
    .ok()
    .cloned()
}

/// Every certificate of a CA file as a trust anchor.
fn roots_from_file(file: &Path) -> Result<RootCertStore, Error> {
    roots_from_certs(file, &pem::certs(file)?)
}

/// The certificates read from `file` as trust anchors.
fn roots_from_certs(
    file: &Path,
    certs: &[CertificateDer<'static>],
) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for (n, der) in certs.iter().cloned().enumerate() {
        store.add(der).map_err(|e| {
            pem::problem(
                file,
                &format!("certificate {} is not usable as a trust anchor: {e}", n + 1),
            )
        })?;
    }
    Ok(store)
}

/// Says in the log which certificates of the instance's `tls.ca` are
/// pinned: those that name the instance (a CA's certificate does not, and
/// is only a root).
fn log_pinned(
    instance: &Instance,
    file: &Path,
    certs: &[CertificateDer<'static>],
    name: &ServerName<'static>,
) {
    for der in certs {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        let how = match pin::names(der, &cert, name) {
            Ok(Some(Named::San)) => "its validity and its name are checked",
            Ok(Some(Named::Cn)) => {
                "its validity and its name are checked, by its CN as it has no subjectAltName"
            }
            _ => continue,
        };
        tracing::info!(
            instance = %instance.name, file = %file.display(), subject = %cert.subject(),
            "the instance's own certificate in tls.ca is pinned: the instance may present \
             exactly this certificate ({how}); any other certificate must chain to tls.ca"
        );
        if cert.validity().not_after.timestamp() < pem::unix_now() {
            tracing::warn!(
                instance = %instance.name, file = %file.display(),
                not_after = %cert.validity().not_after,
                "the pinned certificate has expired: connections to the instance are refused"
            );
        }
    }
}

/// The operating system's trust store.
fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Roots {
            problem: if why.is_empty() {
                "no certificate found; set guard.tls.upstream_ca_bundle or the instance's tls.ca"
                    .into()
            } else {
                format!("no certificate loaded ({why}); set guard.tls.upstream_ca_bundle or the instance's tls.ca")
            },
        });
    }
    Ok(store)
}

/// Accepts any upstream certificate (`danger_skip_upstream_verify`). The
/// handshake signatures are still checked, which proves only that the peer
/// holds the key of whatever certificate it sent.
#[derive(Debug)]
struct DangerAcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for DangerAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
