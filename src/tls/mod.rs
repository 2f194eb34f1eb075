//! Step two of the path: TLS on both sides of the guard.
//!
//! MISP (the client) connects to what it believes is the destination
//! instance; the guard terminates that TLS with a certificate for the
//! destination's `host` ([`Acceptor`]), either the instance's own or one
//! minted from the guard's CA, and opens its own verified TLS connection to
//! the instance ([`Connector`]). Plain HTTP flows between the two.
//!
//! * [`server`](Acceptor): certificate chosen from the destination instance
//!   (learnt from `SO_ORIGINAL_DST` or `CONNECT`), never from SNI; SNI, when
//!   sent, must name that instance; ALPN offers only `http/1.1`, because
//!   libcurl speaks HTTP/2 whenever `h2` is accepted.
//! * [`client`](Connector): trust as MISP has it (per-instance `ca` file
//!   replacing everything, else the bundle, else system roots), optional
//!   client certificate, `http/1.1` only.
//! * `pin`: a certificate of the instance's `ca` file presented as it is
//!   (a self-signed `CA:TRUE` one made by `openssl req -x509`) is accepted
//!   as pinned, with its validity, purpose and name still checked.
//! * `hello`: the SNI read from the client's first record by the guard
//!   itself (rustls ignores an IP-literal SNI), strictly and bounded.
//! * `mint`: the guard CA (`misp-guard ca init`) and leaf minting.
//! * `pem`: reading PEM files with errors that name the file.
//!
//! Both sides use the ring provider explicitly so the process never depends
//! on a process-wide default provider being installed.

mod client;
mod hello;
mod mint;
mod pem;
mod pin;
mod server;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::SupportedProtocolVersion;

pub use client::Connector;
pub use mint::{ca_init, CaFiles};
pub use server::{check_client_hello, client_hello_len, Acceptor};

/// The one ALPN protocol either side offers or accepts.
const HTTP11: &[u8] = b"http/1.1";

/// Which peer a connection error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The connecting MISP.
    Client,
    /// The destination instance.
    Upstream,
}

impl Side {
    /// `client` or `upstream`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong loading TLS material or making a handshake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read at all.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("{}: cannot write: {source}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file was read but its PEM content is unusable.
    #[error("{}: {problem}", file.display())]
    Pem {
        /// The file.
        file: PathBuf,
        /// What is wrong, e.g. "no certificate in file".
        problem: String,
    },
    /// The private key is not the certificate's key.
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// `ca_cert` is not a CA certificate.
    #[error("{}: not a CA certificate (needs basicConstraints CA:TRUE and, when key usage is present, keyCertSign)", file.display())]
    NotCa {
        /// The file.
        file: PathBuf,
    },
    /// A certificate's validity period is over.
    #[error("{}: certificate expired ({not_after})", file.display())]
    Expired {
        /// The file.
        file: PathBuf,
        /// Its notAfter.
        not_after: String,
    },
    /// A certificate's validity period has not begun.
    #[error("{}: certificate not yet valid (from {not_before})", file.display())]
    NotYetValid {
        /// The file.
        file: PathBuf,
        /// Its notBefore.
        not_before: String,
    },
    /// An instance's TLS settings cannot work, e.g. a `cert` without `key`.
    #[error("instance {instance}: {problem}")]
    Settings {
        /// The instance name.
        instance: String,
        /// What is missing or inconsistent.
        problem: String,
    },
    /// Minting a leaf certificate failed.
    #[error("instance {instance}: cannot mint a certificate: {reason}")]
    Mint {
        /// The instance name.
        instance: String,
        /// Why.
        reason: String,
    },
    /// The system trust store gave no usable root.
    #[error("system trust store: {problem}")]
    Roots {
        /// Why.
        problem: String,
    },
    /// The instance was not among those the acceptor or connector was
    /// built for, or has no TLS on that side.
    #[error("instance {instance}: no TLS configured for the {side} side")]
    UnknownInstance {
        /// The instance name.
        instance: String,
        /// Which side was asked for.
        side: Side,
    },
    /// `ca_init` would overwrite a file.
    #[error("{}: exists, refusing to overwrite it", file.display())]
    Exists {
        /// The file.
        file: PathBuf,
    },
    /// The client named another host by SNI than the destination it
    /// connected to.
    #[error("client sent SNI {sent:?} but connected to {expected}")]
    SniMismatch {
        /// The SNI the client sent.
        sent: String,
        /// The destination instance's host.
        expected: String,
    },
    /// The client's first record is not a ClientHello the guard reads.
    #[error("malformed TLS ClientHello: {reason}")]
    BadClientHello {
        /// What is wrong.
        reason: &'static str,
    },
    /// The client offered ALPN protocols but not `http/1.1`.
    #[error("client offers no http/1.1 in ALPN (offered: {})", offered.join(", "))]
    NoHttp11 {
        /// What it offered.
        offered: Vec<String>,
    },
    /// The handshake failed for a reason other than certificate verification.
    #[error("TLS handshake with the {side} failed: {reason}")]
    Handshake {
        /// Which peer.
        side: Side,
        /// Why, in short words.
        reason: String,
    },
    /// The upstream's certificate was refused.
    #[error("upstream {instance}: certificate refused: {reason}")]
    Verify {
        /// The instance name.
        instance: String,
        /// Why, e.g. "certificate expired", "unknown issuer".
        reason: String,
    },
    /// The handshake did not finish in time.
    #[error("TLS handshake with the {side} timed out")]
    Timeout {
        /// Which peer.
        side: Side,
    },
    /// The connection failed during the handshake.
    #[error("{side} connection failed during the TLS handshake: {source}")]
    Io {
        /// Which peer.
        side: Side,
        /// The io error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// A handshake failure in one word, for counting failures by reason
    /// (`None` for errors that are not about a handshake).
    pub fn handshake_kind(&self) -> Option<&'static str> {
        Some(match self {
            Error::SniMismatch { .. } => "sni_mismatch",
            Error::BadClientHello { .. } => "bad_client_hello",
            Error::NoHttp11 { .. } => "no_http11",
            Error::Handshake { reason, .. } if reason.contains("alert") => "alert",
            Error::Handshake { .. } => "protocol",
            Error::Verify { .. } => "certificate_refused",
            Error::Timeout { .. } => "timeout",
            Error::Io { .. } => "connection",
            Error::UnknownInstance { .. } => "no_tls_configured",
            _ => return None,
        })
    }
}

/// Every problem found while building an [`Acceptor`] or [`Connector`],
/// so one config check reports them all.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Errors(pub Vec<Error>);

/// Whether the first bytes of a connection are a TLS handshake record
/// (content type 22, record version 3.1 to 3.4). Needs at least 3 bytes;
/// fewer give `false`. Plain HTTP starts with a method letter, so the two
/// never collide.
pub fn looks_like_tls(first_bytes: &[u8]) -> bool {
    matches!(first_bytes, [0x16, 0x03, 0x01..=0x04, ..])
}

/// The ring provider, explicitly: no process-wide default is assumed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2 and 1.3, or 1.3 only when `min_version` is "1.3".
fn versions(min_version_13: bool) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    if min_version_13 {
        TLS13_ONLY
    } else {
        rustls::DEFAULT_VERSIONS
    }
}

/// The rustls error inside an io error from tokio-rustls, if any.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A failed handshake as an [`Error`] naming the side; certificate
/// problems on the upstream side become [`Error::Verify`].
fn handshake_error(e: io::Error, side: Side, instance: &str, host: &str) -> Error {
    let Some(tls) = rustls_error(&e) else {
        return Error::Io { side, source: e };
    };
    match (side, tls) {
        (Side::Upstream, rustls::Error::InvalidCertificate(c)) => Error::Verify {
            instance: instance.to_owned(),
            reason: certificate_reason(c, host),
        },
        (_, other) => Error::Handshake {
            side,
            reason: handshake_reason(other, side),
        },
    }
}

/// Short words for why a certificate was refused.
fn certificate_reason(e: &rustls::CertificateError, host: &str) -> String {
    use rustls::CertificateError as C;
    match e {
        C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate not yet valid".into(),
        C::NotValidForName => format!("certificate not valid for name {host}"),
        C::NotValidForNameContext { presented, .. } => format!(
            "certificate not valid for name {host} (it is for {})",
            if presented.is_empty() {
                "no name".to_owned()
            } else {
                presented.join(", ")
            }
        ),
        C::UnknownIssuer => "unknown issuer (not signed by a trusted CA)".into(),
        C::BadSignature => "bad signature".into(),
        C::BadEncoding => "certificate does not parse".into(),
        C::Revoked => "certificate revoked".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate not valid for server authentication".into()
        }
        // webpki's error arrives only as text here. A certificate of
        // tls.ca itself would have been pinned, so this one is not it.
        C::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "a CA certificate (CA:TRUE) that is not one of the instance's tls.ca \
             certificates (a self-signed one is accepted only as exactly the certificate \
             in tls.ca)"
                .into()
        }
        other => other.to_string(),
    }
}

/// Short words for other handshake failures, with a hint where the usual
/// cause is known.
fn handshake_reason(e: &rustls::Error, side: Side) -> String {
    use rustls::AlertDescription as A;
    match (side, e) {
        (
            Side::Client,
            rustls::Error::AlertReceived(
                a @ (A::UnknownCA | A::BadCertificate | A::CertificateUnknown),
            ),
        ) => {
            format!("the client refused the guard's certificate ({a:?}): MISP must trust the guard CA (Server cert_file or MISP.ca_path) or the instance's own certificate")
        }
        (
            Side::Upstream,
            rustls::Error::AlertReceived(a @ (A::CertificateRequired | A::HandshakeFailure)),
        ) => {
            format!("the upstream ended the handshake ({a:?}); does it require a client certificate (client_cert/client_key)?")
        }
        (_, rustls::Error::AlertReceived(a)) => format!("{side} sent alert {a:?}"),
        (_, other) => other.to_string(),
    }
}
