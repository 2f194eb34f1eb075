//! Reading certificates and keys from PEM files, each error naming the
//! file and the problem.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;

use super::Error;

/// The whole file, or [`Error::Read`].
pub(crate) fn read(file: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(file).map_err(|source| Error::Read {
        file: file.to_owned(),
        source,
    })
}

/// Every certificate in the file, in order (leaf first for a chain). Each
/// must parse as X.509 so that a bad file fails at load, not at the first
/// handshake.
pub(crate) fn certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read(file)?;
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let der = item.map_err(|e| pem_error(file, e, "certificate"))?;
        parse(file, &der)?;
        out.push(der);
    }
    if out.is_empty() {
        return Err(problem(file, "no certificate in file"));
    }
    Ok(out)
}

/// The first private key in the file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn key(file: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_error(file, e, "private key"))
}

/// The certificate parsed, or [`Error::Pem`] saying it does not parse.
pub(crate) fn parse<'a>(file: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, Error> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| problem(file, &format!("a certificate does not parse: {e}")))
}

/// Refuses a certificate outside its validity period now.
pub(crate) fn check_validity(file: &Path, cert: &X509Certificate<'_>) -> Result<(), Error> {
    let now = unix_now();
    let validity = cert.validity();
    if validity.not_after.timestamp() < now {
        return Err(Error::Expired {
            file: file.to_owned(),
            not_after: validity.not_after.to_string(),
        });
    }
    if validity.not_before.timestamp() > now {
        return Err(Error::NotYetValid {
            file: file.to_owned(),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// Seconds since the epoch; a clock before 1970 counts as 1970.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// [`Error::Pem`] for `file`.
pub(crate) fn problem(file: &Path, problem: &str) -> Error {
    Error::Pem {
        file: file.to_owned(),
        problem: problem.to_owned(),
    }
}

fn pem_error(file: &Path, e: pem::Error, what: &str) -> Error {
    let text = match e {
        pem::Error::NoItemsFound => format!("no {what} in file"),
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(e) => format!("bad base64 in a PEM section: {e}"),
        pem::Error::SectionTooLarge => "a PEM section is too large".to_owned(),
        other => other.to_string(),
    };
    problem(file, &text)
}
