//! The guard CA: creating one (`ca_init`) and minting leaf certificates for
//! instances that have no certificate of their own.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::pem;
use super::Error;

/// How long a minted leaf is valid.
pub(crate) const LEAF_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// A minted leaf is replaced once less than this remains.
pub(crate) const LEAF_RENEW_BEFORE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Backdating of notBefore, for peers whose clock is a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);
/// How long `ca_init`'s CA is valid: ten years.
const CA_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A loaded CA that can sign leaves.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    /// notAfter in Unix seconds: no leaf outlives its CA.
    not_after: i64,
}

/// A minted leaf: chain (leaf, CA) and key.
pub(crate) struct Leaf {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// notAfter in Unix seconds.
    pub(crate) not_after: i64,
}

impl Ca {
    /// Loads `ca_cert`/`ca_key`, checking that the certificate is a CA in
    /// its validity period and that the key is its key.
    pub(crate) fn load(cert_file: &Path, key_file: &Path) -> Result<Ca, Error> {
        // Whoever reads this key can mint certificates MISP trusts.
        if let Ok(meta) = std::fs::metadata(key_file) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %key_file.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "the guard CA key is readable by other users than its owner (chmod 600 it)"
                );
            }
        }
        let der = pem::certs(cert_file)?
            .into_iter()
            .next()
            .ok_or_else(|| pem::problem(cert_file, "no certificate in file"))?;
        let cert = pem::parse(cert_file, &der)?;
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let may_sign = match cert.key_usage() {
            Ok(Some(ku)) => ku.value.key_cert_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        if !is_ca || !may_sign {
            return Err(Error::NotCa {
                file: cert_file.to_owned(),
            });
        }
        pem::check_validity(cert_file, &cert)?;
        let not_after = cert.validity().not_after.timestamp();

        let key = KeyPair::try_from(&pem::key(key_file)?).map_err(|e| {
            pem::problem(
                key_file,
                &format!(
                    "unusable CA key ({e}): it must be PKCS#8 (ECDSA P-256/P-384, Ed25519 or RSA); \
                     convert with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
                ),
            )
        })?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(Error::KeyMismatch {
                cert: cert_file.to_owned(),
                key: key_file.to_owned(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| pem::problem(cert_file, &format!("unusable CA certificate: {e}")))?;
        Ok(Ca {
            issuer,
            der,
            not_after,
        })
    }

    /// A new leaf for `host` (a DNS SAN, or an IP SAN when `host` is an IP
    /// literal) plus `ip` as an IP SAN, valid from an hour ago for
    /// [`LEAF_LIFETIME`] or until the CA expires, whichever is first.
    pub(crate) fn mint(&self, host: &str, ip: IpAddr, now: i64) -> Result<Leaf, String> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        dn.push(DnType::OrganizationName, "misp-guard");
        params.distinguished_name = dn;
        params.subject_alt_names = sans(host, ip)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_after = now.saturating_add(secs(LEAF_LIFETIME)).min(self.not_after);
        params.not_before = time_at(now.saturating_sub(secs(BACKDATE)))?;
        params.not_after = time_at(not_after)?;

        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        Ok(Leaf {
            chain: vec![cert.der().clone(), self.der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
        })
    }

    /// The CA's notAfter in Unix seconds.
    pub(crate) fn not_after(&self) -> i64 {
        self.not_after
    }
}

/// The subject alternative names of a leaf for `host` at `ip`.
fn sans(host: &str, ip: IpAddr) -> Result<Vec<SanType>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut out = Vec::new();
    match bare.parse::<IpAddr>() {
        Ok(literal) => {
            out.push(SanType::IpAddress(literal));
            if literal != ip {
                out.push(SanType::IpAddress(ip));
            }
        }
        Err(_) => {
            // The same check clients make, so no certificate is minted for
            // a name no client could verify.
            rustls_pki_types::DnsName::try_from(host)
                .map_err(|e| format!("host {host:?} is not a valid DNS name: {e}"))?;
            let name = host
                .try_into()
                .map_err(|e| format!("host {host:?} is not a valid DNS name: {e}"))?;
            out.push(SanType::DnsName(name));
            out.push(SanType::IpAddress(ip));
        }
    }
    Ok(out)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A Unix time as rcgen's date type.
fn time_at(unix: i64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| format!("time {unix}: {e}"))
}

/// The files `ca_init` wrote and what to do with them.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// `ca.crt`, mode 0644: give this to MISP.
    pub cert: PathBuf,
    /// `ca.key`, mode 0600: the guard's signing key.
    pub key: PathBuf,
    /// Text for the operator: the config keys to set and how MISP must
    /// trust the CA.
    pub instructions: String,
}

/// Creates a new self-signed guard CA in `out_dir`: `ca.key` (0600) and
/// `ca.crt` (0644), valid ten years. Refuses to overwrite either file.
pub fn ca_init(out_dir: &Path) -> Result<CaFiles, Error> {
    let cert_file = out_dir.join("ca.crt");
    let key_file = out_dir.join("ca.key");
    for f in [&cert_file, &key_file] {
        if f.symlink_metadata().is_ok() {
            return Err(Error::Exists { file: f.clone() });
        }
    }
    let mint_error = |reason: String| Error::Mint {
        instance: "(guard CA)".to_owned(),
        reason,
    };
    let key = KeyPair::generate().map_err(|e| mint_error(e.to_string()))?;
    let now = pem::unix_now();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("misp-guard CA {}", ca_label(&key)),
    );
    dn.push(DnType::OrganizationName, "misp-guard");
    params.distinguished_name = dn;
    // Path length 0: this CA signs leaves only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time_at(now.saturating_sub(secs(BACKDATE))).map_err(mint_error)?;
    params.not_after = time_at(now.saturating_add(secs(CA_LIFETIME))).map_err(mint_error)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| mint_error(e.to_string()))?;

    write_new(&key_file, key.serialize_pem().as_bytes(), 0o600)?;
    if let Err(e) = write_new(&cert_file, cert.pem().as_bytes(), 0o644) {
        // A key without its certificate is useless and would block a retry.
        let _ = fs::remove_file(&key_file);
        return Err(e);
    }
    let instructions = format!(
        "Created {cert} (the CA certificate: give it to MISP) and {key} (its private key: keep it secret).\n\
         \n\
         In the guard config set:\n\
         \x20 \"guard\": {{ \"tls\": {{ \"ca_cert\": \"{cert}\", \"ca_key\": \"{key}\" }} }}\n\
         \n\
         MISP must trust this CA for every remote Server whose traffic the guard intercepts, either:\n\
         \x20 1. per remote Server: upload {cert} as the Server's certificate file (cert_file,\n\
         \x20    \"Certificate file\" in Sync Actions > List Servers > Edit). It REPLACES the system CA\n\
         \x20    bundle for that Server, so that Server then trusts only certificates from this CA; or\n\
         \x20 2. for all Servers without their own cert_file: add {cert} to the CA bundle that the\n\
         \x20    MISP.ca_path setting points to.\n\
         The Server's self_signed option is not needed (it would turn certificate checks off).",
        cert = cert_file.display(),
        key = key_file.display(),
    );
    Ok(CaFiles {
        cert: cert_file,
        key: key_file,
        instructions,
    })
}

/// This machine's host name, or a fingerprint of the key when there is none,
/// so two guards' CAs can be told apart in a trust store.
fn ca_label(key: &KeyPair) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() && host != "localhost" {
        return host.to_owned();
    }
    key.subject_public_key_info()
        .iter()
        .rev()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a file that must not exist yet, with exactly `mode` (the umask
/// would otherwise narrow 0644).
fn write_new(file: &Path, content: &[u8], mode: u32) -> Result<(), Error> {
    let io = |source| Error::Write {
        file: file.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(file)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists {
                    file: file.to_owned(),
                }
            } else {
                io(e)
            }
        })?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    f.write_all(content).map_err(io)?;
    f.sync_all().map_err(io)
}
