//! The server name of a client's first TLS record, read by the guard
//! itself.
//!
//! rustls ignores an SNI that is an IP address (RFC 6066 §3 allows DNS
//! names only), so a client naming another instance by its address would
//! pass the rule "the SNI must name the destination". The guard reads the
//! ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) from the first record
//! before rustls sees it: strictly (every length must add up exactly, one
//! `server_name` extension with one host name, no duplicate extensions) and
//! bounded (one record of at most 2^14 bytes; a ClientHello spread over
//! several records is refused: MISP's libcurl never sends one).
//!
//! Names are classified exactly as rustls does (`ServerName` of
//! rustls-pki-types), so the guard and rustls never disagree on what is a
//! name and what is an address.

use std::net::IpAddr;

use rustls_pki_types::ServerName;

/// Record header: content type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest TLSPlaintext fragment (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 1 << 14;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: usize = 0;
const HOST_NAME: u8 = 0;

/// What the client named by SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// No `server_name` extension.
    None,
    /// A DNS name (a final dot removed, as rustls does).
    Name(String),
    /// An IP address, which rustls would ignore.
    Ip(IpAddr),
}

/// Why a first record is not a ClientHello the guard accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// The length of the first record (header included) once its header is
/// in `first`; `Ok(None)` while fewer than 5 bytes are.
pub fn record_len(first: &[u8]) -> Result<Option<usize>, Malformed> {
    let Some(header) = first.get(..RECORD_HEADER) else {
        return Ok(None);
    };
    if header[0] != HANDSHAKE || header[1] != 3 || !(1..=4).contains(&header[2]) {
        return Err(Malformed("not a TLS handshake record"));
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len == 0 || len > MAX_FRAGMENT {
        return Err(Malformed("record length out of range"));
    }
    Ok(Some(RECORD_HEADER + len))
}

/// The SNI of the ClientHello that fills the first record, exactly
/// `record_len` bytes of `first` (more bytes after it are not looked at).
pub fn server_name(first: &[u8]) -> Result<Sni, Malformed> {
    let len = record_len(first)?.ok_or(Malformed("record header incomplete"))?;
    let record = first
        .get(RECORD_HEADER..len)
        .ok_or(Malformed("record incomplete"))?;
    let mut r = Reader(record);
    if r.u8()? != CLIENT_HELLO {
        return Err(Malformed("first handshake message is not a ClientHello"));
    }
    let body_len = r.u24()?;
    if body_len > r.0.len() {
        return Err(Malformed("ClientHello spans more than one record"));
    }
    let mut hello = Reader(r.take(body_len)?);
    r.end("data after the ClientHello in its record")?;

    hello.take(2 + 32)?; // legacy_version, random
    let session_id = hello.u8()?;
    if session_id > 32 {
        return Err(Malformed("session id longer than 32 bytes"));
    }
    hello.take(usize::from(session_id))?;
    let suites = hello.u16()?;
    if suites == 0 || suites % 2 != 0 {
        return Err(Malformed("bad cipher suite list"));
    }
    hello.take(suites)?;
    let compression = usize::from(hello.u8()?);
    if compression == 0 {
        return Err(Malformed("empty compression method list"));
    }
    hello.take(compression)?;
    if hello.0.is_empty() {
        // RFC 5246 §7.4.1.2: a ClientHello may end before the extensions.
        return Ok(Sni::None);
    }
    let ext_len = hello.u16()?;
    let mut exts = Reader(hello.take(ext_len)?);
    hello.end("data after the extensions")?;

    let mut seen: Vec<usize> = Vec::new();
    let mut sni = Sni::None;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data_len = exts.u16()?;
        let data = exts.take(data_len)?;
        // RFC 8446 §4.2: at most one extension of each type.
        if seen.contains(&kind) {
            return Err(Malformed("an extension appears twice"));
        }
        seen.push(kind);
        if kind == EXT_SERVER_NAME {
            sni = server_name_extension(data)?;
        }
    }
    Ok(sni)
}

/// `ServerNameList`: exactly one `host_name` (RFC 6066 §3 forbids two of
/// one type, and defines no other type).
fn server_name_extension(data: &[u8]) -> Result<Sni, Malformed> {
    let mut r = Reader(data);
    let list_len = r.u16()?;
    let mut list = Reader(r.take(list_len)?);
    r.end("data after the server name list")?;
    if list.u8()? != HOST_NAME {
        return Err(Malformed("server name of an unknown type"));
    }
    let name_len = list.u16()?;
    if name_len == 0 {
        return Err(Malformed("empty server name"));
    }
    let name = list.take(name_len)?;
    list.end("more than one server name")?;
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(dns)) => Ok(Sni::Name(dns.as_ref().to_owned())),
        Ok(ServerName::IpAddress(ip)) => Ok(Sni::Ip(IpAddr::from(ip))),
        Ok(_) | Err(_) => Err(Malformed(
            "server name is neither a DNS name nor an IP address",
        )),
    }
}

/// Reads big-endian fields off a slice; running short is malformed.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed("a length runs past its data"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, Malformed> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Result<usize, Malformed> {
        let b = self.take(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    fn end(&self, what: &'static str) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed(what))
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::Arc;

    /// A ClientHello record (one suite, no session id) with these
    /// extensions (type, data).
    pub(in crate::tls) fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext_bytes = Vec::new();
        for (kind, data) in exts {
            ext_bytes.extend_from_slice(&kind.to_be_bytes());
            ext_bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext_bytes.extend_from_slice(data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // no session id
        body.extend_from_slice(&[0, 2, 0xc0, 0x2b]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext_bytes);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![HANDSHAKE, 3, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    /// A `server_name` extension listing these (type, name) entries.
    pub(in crate::tls) fn sni(names: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for (kind, name) in names {
            list.push(*kind);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        (0, data)
    }

    /// The first record a real rustls client sends for `name`.
    fn rustls_hello(name: ServerName<'static>) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(super::super::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn real_client_hellos() {
        let named = rustls_hello(ServerName::try_from("MISP.example.").unwrap());
        assert_eq!(record_len(&named), Ok(Some(named.len())));
        // rustls sends the name without the final dot; the case is kept.
        assert_eq!(server_name(&named), Ok(Sni::Name("MISP.example".into())));
        // A client naming an address sends no SNI at all.
        let by_ip = rustls_hello(ServerName::IpAddress(
            "10.0.0.1".parse::<IpAddr>().unwrap().into(),
        ));
        assert_eq!(server_name(&by_ip), Ok(Sni::None));
        // Bytes after the record (the client's next record) are not read.
        let mut more = named.clone();
        more.extend_from_slice(&[0x14, 3, 3, 0, 1, 1]);
        assert_eq!(server_name(&more), Ok(Sni::Name("MISP.example".into())));
    }

    #[test]
    fn server_names_table() {
        let ip4: IpAddr = "10.0.0.2".parse().unwrap();
        let ip6: IpAddr = "2001:db8::1".parse().unwrap();
        let ok: Vec<(&str, Vec<u8>, Sni)> = vec![
            ("no extensions at all", hello(&[]), Sni::None),
            (
                "a name",
                hello(&[sni(&[(0, b"a.example")])]),
                Sni::Name("a.example".into()),
            ),
            (
                "an IPv4 address",
                hello(&[sni(&[(0, b"10.0.0.2")])]),
                Sni::Ip(ip4),
            ),
            (
                "an IPv6 address",
                hello(&[sni(&[(0, b"2001:db8::1")])]),
                Sni::Ip(ip6),
            ),
            (
                "other extensions around it",
                hello(&[
                    (10, vec![0, 2, 0, 29]),
                    sni(&[(0, b"a.example")]),
                    (16, vec![0, 0]),
                ]),
                Sni::Name("a.example".into()),
            ),
        ];
        for (what, bytes, want) in ok {
            assert_eq!(server_name(&bytes), Ok(want), "{what}");
        }
        let mut no_ext_block = hello(&[]);
        // Drop the (empty) extensions length: a hello that ends early.
        no_ext_block.truncate(no_ext_block.len() - 2);
        no_ext_block[4] -= 2;
        no_ext_block[8] -= 2;
        assert_eq!(server_name(&no_ext_block), Ok(Sni::None));

        let bad: Vec<(&str, Vec<u8>)> = vec![
            (
                "two host names",
                hello(&[sni(&[(0, b"a.example"), (0, b"10.0.0.2")])]),
            ),
            ("an unknown name type", hello(&[sni(&[(1, b"a.example")])])),
            ("an empty name", hello(&[sni(&[(0, b"")])])),
            ("an empty list", hello(&[(0, vec![0, 0])])),
            ("not a name", hello(&[sni(&[(0, b"a b")])])),
            (
                "two SNI extensions",
                hello(&[sni(&[(0, b"a.example")]), sni(&[(0, b"b.example")])]),
            ),
            (
                "a duplicate other extension",
                hello(&[(10, vec![0, 0]), (10, vec![0, 0])]),
            ),
            ("list shorter than its extension", {
                let (kind, mut data) = sni(&[(0, b"a.example")]);
                data.push(0);
                hello(&[(kind, data)])
            }),
        ];
        for (what, bytes) in bad {
            assert!(
                server_name(&bytes).is_err(),
                "{what}: {:?}",
                server_name(&bytes)
            );
        }
    }

    #[test]
    fn records_and_lengths() {
        let good = hello(&[sni(&[(0, b"a.example")])]);
        assert_eq!(record_len(&good[..4]), Ok(None));
        let mut not_handshake = good.clone();
        not_handshake[0] = 23;
        assert!(record_len(&not_handshake).is_err());
        let mut too_long = good.clone();
        too_long[3..5].copy_from_slice(&(MAX_FRAGMENT as u16 + 1).to_be_bytes());
        assert!(record_len(&too_long).is_err());
        let mut empty = good.clone();
        empty[3..5].copy_from_slice(&[0, 0]);
        assert!(record_len(&empty).is_err());

        // A ClientHello longer than its record (continued in the next).
        let mut split = good.clone();
        split[6..9].copy_from_slice(&((good.len() - 9 + 1) as u32).to_be_bytes()[1..]);
        assert_eq!(
            server_name(&split),
            Err(Malformed("ClientHello spans more than one record"))
        );
        // A record longer than its ClientHello.
        let mut trailing = good.clone();
        trailing.push(0);
        let n = (trailing.len() - 5) as u16;
        trailing[3..5].copy_from_slice(&n.to_be_bytes());
        assert!(server_name(&trailing).is_err());
        // Another handshake message first.
        let mut server_hello = good.clone();
        server_hello[5] = 2;
        assert!(server_name(&server_hello).is_err());
    }

    proptest::proptest! {
        /// Any bytes behind a handshake record header: read or refused,
        /// never a panic.
        #[test]
        fn arbitrary_records_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut record = vec![HANDSHAKE, 3, 3];
            record.extend_from_slice(&(body.len() as u16).to_be_bytes());
            record.extend_from_slice(&body);
            let _ = server_name(&record);
            let _ = server_name(&body);
        }
    }

    /// Every cut and every flipped byte of a real ClientHello is refused or
    /// read, never a panic; a cut one is never taken as whole.
    #[test]
    fn truncated_and_corrupted_hellos_are_refused_without_panic() {
        let real = rustls_hello(ServerName::try_from("a.example").unwrap());
        for n in 0..real.len() {
            assert!(
                server_name(&real[..n]).is_err(),
                "a hello cut at {n} was read"
            );
        }
        for i in 0..real.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = real.clone();
                bad[i] ^= flip;
                let _ = server_name(&bad);
            }
        }
    }
}
