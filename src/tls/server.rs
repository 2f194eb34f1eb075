//! The client side of the guard: terminating MISP's TLS with a certificate
//! for the destination instance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::ServerConfig;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::hello::{self, Sni};
use super::mint::{Ca, LEAF_RENEW_BEFORE};
use super::{handshake_error, pem, provider, rustls_error, versions, Error, Errors, Side, HTTP11};
use crate::config::{Instance, TlsSettings};

/// Terminates clients' TLS for the configured instances. Immutable apart
/// from the minted-leaf cache; on reload build a new one and swap it.
pub struct Acceptor {
    by_name: HashMap<String, Entry>,
    ca: Option<Arc<Ca>>,
    provider: Arc<CryptoProvider>,
    min_version_13: bool,
}

/// One instance's certificate.
enum Entry {
    /// The instance's own `cert`/`key`.
    Own(Arc<ServerConfig>),
    /// Minted from the guard CA, replaced when it nears its end.
    Minted(Mutex<Minted>),
}

struct Minted {
    config: Arc<ServerConfig>,
    not_after: i64,
}

impl Acceptor {
    /// Loads every instance's certificate (or mints one from the CA).
    /// Instances without `cert` are minted for when `ca_cert`/`ca_key` are
    /// set; an instance reached over TLS (`upstream`) with neither is an
    /// error. Returns every problem found, not just the first.
    pub fn new(settings: &TlsSettings, instances: &[Instance]) -> Result<Acceptor, Errors> {
        let mut errors = Vec::new();
        let provider = provider();
        let ca = match (&settings.ca_cert, &settings.ca_key) {
            (Some(cert), Some(key)) => match Ca::load(cert, key) {
                Ok(ca) => Some(Arc::new(ca)),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            (None, None) => None,
            (Some(_), None) => {
                errors.push(Error::Settings {
                    instance: "(guard)".into(),
                    problem: "guard.tls.ca_cert is set without guard.tls.ca_key".into(),
                });
                None
            }
            (None, Some(_)) => {
                errors.push(Error::Settings {
                    instance: "(guard)".into(),
                    problem: "guard.tls.ca_key is set without guard.tls.ca_cert".into(),
                });
                None
            }
        };
        let ca_broken = settings.ca_cert.is_some() && ca.is_none();

        let mut by_name = HashMap::new();
        for instance in instances {
            let tls = &instance.settings.tls;
            let entry = match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    own_config(&provider, settings.min_version_13, instance, cert, key)
                        .map(|c| Entry::Own(Arc::new(c)))
                }
                (Some(_), None) | (None, Some(_)) => Err(Error::Settings {
                    instance: instance.name.clone(),
                    problem: "tls.cert and tls.key must be set together".into(),
                }),
                (None, None) => match &ca {
                    Some(ca) => {
                        mint_config(&provider, settings.min_version_13, ca, instance).map(
                            |(config, not_after)| {
                                Entry::Minted(Mutex::new(Minted { config, not_after }))
                            },
                        )
                    }
                    // Already reported; one error per cause is enough.
                    None if ca_broken => continue,
                    None if tls.upstream => Err(Error::Settings {
                        instance: instance.name.clone(),
                        problem: "reached over TLS but has no tls.cert/tls.key and no guard.tls.ca_cert/ca_key is set to mint one".into(),
                    }),
                    None => continue,
                },
            };
            match entry {
                Ok(e) => {
                    by_name.insert(instance.name.clone(), e);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(Errors(errors));
        }
        Ok(Acceptor {
            by_name,
            ca,
            provider,
            min_version_13: settings.min_version_13,
        })
    }

    /// Completes the TLS handshake of a client connecting to `instance`,
    /// within `timeout`. The certificate is `instance`'s whatever the client
    /// asks for; an SNI naming another host is refused, as is an ALPN list
    /// without `http/1.1`.
    pub async fn accept<IO>(
        &self,
        io: IO,
        instance: &Instance,
        timeout: Duration,
    ) -> Result<TlsStream<IO>, Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = async {
            let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
                .await
                .map_err(|e| handshake_error(e, Side::Client, &instance.name, &instance.host))?;
            let hello = start.client_hello();
            if let Some(sent) = hello.server_name() {
                if !same_host(sent, &instance.host) {
                    return Err(Error::SniMismatch {
                        sent: sent.to_owned(),
                        expected: instance.host.clone(),
                    });
                }
            }
            let offered: Vec<String> = hello
                .alpn()
                .map(|protocols| {
                    protocols
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let config = self.config(instance)?;
            // rustls refuses an ALPN list without ours with the
            // no_application_protocol alert, which the client understands.
            start.into_stream(config).await.map_err(|e| {
                if matches!(rustls_error(&e), Some(rustls::Error::NoApplicationProtocol)) {
                    Error::NoHttp11 {
                        offered: offered.clone(),
                    }
                } else {
                    handshake_error(e, Side::Client, &instance.name, &instance.host)
                }
            })
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| Error::Timeout { side: Side::Client })?
    }

    /// The server config for `instance`, re-minting its leaf when it nears
    /// its end.
    fn config(&self, instance: &Instance) -> Result<Arc<ServerConfig>, Error> {
        let unknown = || Error::UnknownInstance {
            instance: instance.name.clone(),
            side: Side::Client,
        };
        match self.by_name.get(&instance.name).ok_or_else(unknown)? {
            Entry::Own(config) => Ok(config.clone()),
            Entry::Minted(minted) => {
                // A poisoned lock only means another task panicked while
                // holding it; the cached value is still whole.
                let mut minted = minted.lock().unwrap_or_else(|p| p.into_inner());
                let now = pem::unix_now();
                let ca = self.ca.as_ref().ok_or_else(unknown)?;
                let renew_at = minted
                    .not_after
                    .saturating_sub(i64::try_from(LEAF_RENEW_BEFORE.as_secs()).unwrap_or(0));
                // Past the renewal point a new leaf is minted, unless the CA
                // itself ends first and a new leaf could not last longer.
                if now >= renew_at && minted.not_after < ca.not_after() {
                    let (config, not_after) =
                        mint_config(&self.provider, self.min_version_13, ca, instance)?;
                    tracing::info!(instance = %instance.name, "renewed the minted certificate");
                    *minted = Minted { config, not_after };
                }
                Ok(minted.config.clone())
            }
        }
    }
}

/// The length of the client's first record (its header included) once
/// its header is in `first`; `Ok(None)` while fewer than 5 bytes are.
pub fn client_hello_len(first: &[u8]) -> Result<Option<usize>, Error> {
    hello::record_len(first).map_err(|e| Error::BadClientHello { reason: e.0 })
}

/// Refuses a client's first record (whole, see [`client_hello_len`]) whose
/// ClientHello is malformed or names by SNI another host than `instance`:
/// a DNS name must be its `host`, an IP address its `ip` (or its `host`
/// when that is an IP literal). rustls checks names again; it would let an
/// address pass.
pub fn check_client_hello(first: &[u8], instance: &Instance) -> Result<(), Error> {
    let sni = hello::server_name(first).map_err(|e| Error::BadClientHello { reason: e.0 })?;
    let (named, sent) = match sni {
        Sni::None => return Ok(()),
        Sni::Name(name) => (same_host(&name, &instance.host), name),
        Sni::Ip(ip) => (names_ip(instance, ip), ip.to_string()),
    };
    if named {
        Ok(())
    } else {
        Err(Error::SniMismatch {
            sent,
            expected: instance.host.clone(),
        })
    }
}

/// Whether `ip` is the instance's address.
fn names_ip(instance: &Instance, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let host = instance.host.trim_start_matches('[').trim_end_matches(']');
    ip == instance.ip.to_canonical() || host.parse::<IpAddr>().is_ok_and(|h| h.to_canonical() == ip)
}

/// SNI and host compared as DNS names: case-insensitive, a final dot ignored.
fn same_host(sni: &str, host: &str) -> bool {
    sni.trim_end_matches('.')
        .eq_ignore_ascii_case(host.trim_end_matches('.'))
}

/// A server config for the instance's own certificate and key.
fn own_config(
    provider: &Arc<CryptoProvider>,
    min_version_13: bool,
    instance: &Instance,
    cert_file: &Path,
    key_file: &Path,
) -> Result<ServerConfig, Error> {
    let chain = pem::certs(cert_file)?;
    if let Some(leaf) = chain.first() {
        let parsed = pem::parse(cert_file, leaf)?;
        pem::check_validity(cert_file, &parsed)?;
        if !covers(&parsed, &instance.host) {
            tracing::warn!(
                instance = %instance.name,
                file = %cert_file.display(),
                "the certificate does not name the instance host {}; MISP will refuse it unless the Server is set self_signed",
                instance.host
            );
        }
    }
    let key = pem::key(key_file)?;
    server_config(provider, min_version_13, chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Error::KeyMismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
        },
        other => pem::problem(key_file, &format!("unusable private key: {other}")),
    })
}

/// A server config with a freshly minted leaf for `instance`.
fn mint_config(
    provider: &Arc<CryptoProvider>,
    min_version_13: bool,
    ca: &Ca,
    instance: &Instance,
) -> Result<(Arc<ServerConfig>, i64), Error> {
    let mint_error = |reason: String| Error::Mint {
        instance: instance.name.clone(),
        reason,
    };
    let leaf = ca
        .mint(&instance.host, instance.ip, pem::unix_now())
        .map_err(mint_error)?;
    let config = server_config(provider, min_version_13, leaf.chain, leaf.key)
        .map_err(|e| mint_error(e.to_string()))?;
    Ok((Arc::new(config), leaf.not_after))
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    min_version_13: bool,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let certified = CertifiedKey::from_der(chain, key, provider)?;
    // from_der lets "cannot tell" pass; ring always can, so be strict.
    certified.keys_match()?;
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(min_version_13))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![HTTP11.to_vec()];
    Ok(config)
}

/// Whether the certificate's subject alternative names cover `host`
/// (exactly, or by a one-label wildcard).
fn covers(cert: &x509_parser::certificate::X509Certificate<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    san.value.general_names.iter().any(|name| match (name, ip) {
        (GeneralName::DNSName(dns), None) => {
            dns.eq_ignore_ascii_case(host)
                || dns.strip_prefix("*.").is_some_and(|suffix| {
                    host.split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix))
                })
        }
        (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
            std::net::IpAddr::V4(v4) => *bytes == v4.octets().as_slice(),
            std::net::IpAddr::V6(v6) => *bytes == v6.octets().as_slice(),
        },
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InstanceSettings, InstanceTls};

    fn minted_not_after(acceptor: &Acceptor, name: &str) -> (i64, Arc<ServerConfig>) {
        match acceptor.by_name.get(name) {
            Some(Entry::Minted(m)) => {
                let m = m.lock().unwrap();
                (m.not_after, m.config.clone())
            }
            _ => panic!("not minted"),
        }
    }

    fn set_not_after(acceptor: &Acceptor, name: &str, t: i64) {
        if let Some(Entry::Minted(m)) = acceptor.by_name.get(name) {
            m.lock().unwrap().not_after = t;
        }
    }

    #[test]
    fn minted_leaf_is_renewed_near_its_end_only() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::super::ca_init(dir.path()).unwrap();
        let settings = TlsSettings {
            ca_cert: Some(files.cert),
            ca_key: Some(files.key),
            ..Default::default()
        };
        let inst = Instance {
            name: "i".into(),
            ip: "10.0.0.1".parse().unwrap(),
            host: "misp.example".into(),
            port: 443,
            compartment: "c".into(),
            affiliation: String::new(),
            policy: Default::default(),
            settings: InstanceSettings {
                base_path: String::new(),
                tls: InstanceTls::default(),
                mode: None,
            },
        };
        let acceptor = Acceptor::new(&settings, std::slice::from_ref(&inst)).unwrap();
        let (first, config) = minted_not_after(&acceptor, "i");
        let now = pem::unix_now();
        assert!(first > now + 29 * 24 * 3600);

        // Fresh: the same config is served again.
        assert!(Arc::ptr_eq(&acceptor.config(&inst).unwrap(), &config));

        // Eight days left: still kept.
        set_not_after(&acceptor, "i", now + 8 * 24 * 3600);
        assert!(Arc::ptr_eq(&acceptor.config(&inst).unwrap(), &config));

        // Six days left: a new leaf with a full lifetime.
        set_not_after(&acceptor, "i", now + 6 * 24 * 3600);
        let renewed = acceptor.config(&inst).unwrap();
        assert!(!Arc::ptr_eq(&renewed, &config));
        let (after, _) = minted_not_after(&acceptor, "i");
        assert!(after >= first);
    }

    #[test]
    fn sni_comparison() {
        let cases = [
            ("misp.example", "misp.example", true),
            ("MISP.Example", "misp.example", true),
            ("misp.example.", "misp.example", true),
            ("misp.example", "misp.example.", true),
            ("misp.example.org", "misp.example", false),
            ("other.example", "misp.example", false),
            ("", "misp.example", false),
        ];
        for (sni, host, want) in cases {
            assert_eq!(same_host(sni, host), want, "{sni} vs {host}");
        }
    }
}
