//! Re-encoding heads for forwarding. The guard writes its own framing: the
//! hop-by-hop fields of the received head are dropped (RFC 9110 §7.6.1),
//! and so are `Content-Length` and `Expect`; the body goes with our own
//! `Content-Length`. `Content-Encoding` stays: the raw bytes are forwarded
//! as received.

use super::head::{connection_tokens, Header, RequestHead, ResponseHead};

/// Fields never forwarded: RFC 9110 §7.6.1 hop-by-hop fields, the
/// proxy credentials (§11.7), and the framing and expectation we replace.
const DROPPED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "expect",
];

/// Whether `name` is dropped when forwarding a head with these fields:
/// one of the fixed hop-by-hop names or one named by `Connection`.
pub fn is_hop_by_hop(headers: &[Header], name: &str) -> bool {
    DROPPED.iter().any(|d| d.eq_ignore_ascii_case(name))
        || connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name))
}

/// Write `METHOD target HTTP/1.1`, the forwarded fields, our
/// `Content-Length: n` when `body_len` is `Some` (pass `Some(0)` for an
/// empty POST), and the empty line.
pub fn encode_request(head: &RequestHead, target: &str, body_len: Option<u64>, out: &mut Vec<u8>) {
    request(head, target, body_len, false, out);
}

/// As [`encode_request`], adding `Connection: close`.
pub fn encode_request_close(
    head: &RequestHead,
    target: &str,
    body_len: Option<u64>,
    out: &mut Vec<u8>,
) {
    request(head, target, body_len, true, out);
}

/// Write `HTTP/1.1 status reason`, the forwarded fields, our
/// `Content-Length: n` when `body_len` is `Some`, and the empty line.
pub fn encode_response(head: &ResponseHead, body_len: Option<u64>, out: &mut Vec<u8>) {
    response(head, body_len, false, out);
}

/// As [`encode_response`], adding `Connection: close` (the guard closes
/// the client connection after this response).
pub fn encode_response_close(head: &ResponseHead, body_len: Option<u64>, out: &mut Vec<u8>) {
    response(head, body_len, true, out);
}

fn request(
    head: &RequestHead,
    target: &str,
    body_len: Option<u64>,
    close: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields(&head.headers, body_len, close, out);
}

fn response(head: &ResponseHead, body_len: Option<u64>, close: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(head.status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    fields(&head.headers, body_len, close, out);
}

fn fields(headers: &[Header], body_len: Option<u64>, close: bool, out: &mut Vec<u8>) {
    for h in headers.iter().filter(|h| !is_hop_by_hop(headers, &h.name)) {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = body_len {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
