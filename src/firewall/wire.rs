//! Netlink messages as bytes, in safe code: requests for dumps (what the
//! read-back and the host's addresses need) and the parsing of what the
//! kernel answers. The table itself is built by libnftnl (see `apply`).
//!
//! A message is a 16-byte header (length, type, flags, sequence, port),
//! a fixed family header, then attributes: 2-byte length, 2-byte type,
//! the value, padding to 4 bytes. All in host byte order but for the
//! values nf_tables defines as big-endian.

use std::io;

/// `NLMSG_ERROR`: an error or, with code 0, an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub const F_REQUEST: u16 = 1;
/// `NLM_F_ACK`.
pub const F_ACK: u16 = 4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const F_DUMP: u16 = 0x300;
/// Attribute type bits that are flags (`NLA_F_NESTED`, byte order).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Nothing a dump answers here is larger than this (libnftnl's own bound:
/// a 64 KiB attribute plus a page).
pub const RECV_BUFFER: usize = 128 * 1024;

/// A message being written.
pub struct Message {
    buf: Vec<u8>,
}

impl Message {
    /// A message of `kind` with `flags` and sequence number `seq`.
    pub fn new(kind: u16, flags: u16, seq: u32) -> Message {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
        Message { buf }
    }

    /// Append a fixed header (`nfgenmsg`, `ifaddrmsg`, ...).
    pub fn header(mut self, bytes: &[u8]) -> Message {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Append an attribute holding a NUL-terminated string.
    pub fn attr_str(mut self, kind: u16, value: &str) -> Message {
        let len = 4 + value.len() + 1;
        // Names here are a table or set name: far below 64 KiB.
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.pad();
        self
    }

    /// The bytes to send.
    pub fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
}

/// The `nfgenmsg` of an nf_tables request for `family`.
pub fn nfgenmsg(family: u8) -> [u8; 4] {
    // version NFNETLINK_V0, resource id 0 (big-endian).
    [family, 0, 0, 0]
}

/// The header of a received message.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Its type.
    pub kind: u16,
    /// Its sequence number.
    pub seq: u32,
}

/// The messages in `buf`: each header and its payload (what follows the
/// 16-byte header). A message that does not fit ends the iteration.
pub fn messages(buf: &[u8]) -> Vec<(Header, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32_at(rest, 0) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let header = Header {
            kind: u16_at(rest, 4),
            seq: u32_at(rest, 8),
        };
        out.push((header, &rest[16..len]));
        rest = &rest[align(len).min(rest.len())..];
    }
    out
}

/// The code of an `NLMSG_ERROR` payload: 0 for an acknowledgement, else a
/// negative errno.
pub fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(-libc::EBADMSG)
}

/// The sequence number of the request an `NLMSG_ERROR` answers (its
/// payload repeats the request's header after the code).
pub fn error_seq(payload: &[u8]) -> Option<u32> {
    (payload.len() >= 4 + 16).then(|| u32_at(payload, 4 + 8))
}

/// The attributes in `buf`: (type without flag bits, value).
pub fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 4 {
        let len = usize::from(u16_at(rest, 0));
        if len < 4 || len > rest.len() {
            break;
        }
        out.push((u16_at(rest, 2) & NLA_TYPE_MASK, &rest[4..len]));
        rest = &rest[align(len).min(rest.len())..];
    }
    out
}

/// The value of the first attribute of `kind`.
pub fn attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf)
        .into_iter()
        .find_map(|(k, v)| (k == kind).then_some(v))
}

/// A NUL-terminated string attribute.
pub fn string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// A big-endian u32 attribute (nf_tables numbers).
pub fn be_u32(value: &[u8]) -> Option<u32> {
    value
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Send `request` on `socket` and collect the answers up to `NLMSG_DONE`
/// (a dump) or the acknowledgement (a request with `F_ACK`): each
/// message's type and payload. An error answer is the kernel's errno.
pub fn dump(socket: &mnl::Socket, request: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    socket.send(request)?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::new();
    loop {
        let n = socket.recv_raw(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink closed mid-dump",
            ));
        }
        for (header, payload) in messages(&buf[..n]) {
            match header.kind {
                NLMSG_DONE => return Ok(out),
                // An acknowledgement ends a plain request (with
                // `F_ACK`); a dump without it ends with `NLMSG_DONE`.
                NLMSG_ERROR => match error_code(payload) {
                    0 => return Ok(out),
                    code => return Err(io::Error::from_raw_os_error(-code)),
                },
                kind => out.push((kind, payload.to_vec())),
            }
        }
    }
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_message_parses_back() {
        let m = Message::new(0x0a05, F_REQUEST | F_DUMP, 7)
            .header(&nfgenmsg(1))
            .attr_str(1, "misp_guard")
            .finish();
        assert_eq!(m.len() % 4, 0);
        let parsed = messages(&m);
        assert_eq!(parsed.len(), 1);
        let (h, payload) = parsed[0];
        assert_eq!((h.kind, h.seq), (0x0a05, 7));
        assert_eq!(&payload[..4], &[1, 0, 0, 0]);
        let a = attrs(&payload[4..]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].0, 1);
        assert_eq!(string(a[0].1), "misp_guard");
    }

    #[test]
    fn truncated_input_never_panics() {
        let m = Message::new(1, 0, 1).attr_str(2, "abc").finish();
        for cut in 0..m.len() {
            let _ = messages(&m[..cut]);
            let _ = attrs(&m[..cut]);
            let _ = error_seq(&m[..cut]);
            let _ = error_code(&m[..cut]);
        }
        // A length field pointing past the end.
        let mut bad = m.clone();
        bad[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(messages(&bad).is_empty());
    }
}
