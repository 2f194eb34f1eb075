//! Tables of accepted and refused heads, chunk lines and encoded bodies, in
//! the style of hyper's `decode.rs` tests, plus split-invariance properties
//! and a bounded run of the fuzz entry points.

use std::io::{self, Read, Write};

use bytes::BytesMut;
use proptest::prelude::*;

use super::fuzz::{self, dechunk, Outcome};
use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn req(raw: &str) -> Result<Option<(RequestHead, usize)>, Error> {
    parse_request(raw.as_bytes(), &limits())
}

fn req_ok(raw: &str) -> RequestHead {
    match req(raw) {
        Ok(Some((head, len))) => {
            assert_eq!(len, raw.len(), "{raw:?}");
            head
        }
        other => panic!("{raw:?} refused: {other:?}"),
    }
}

fn res(raw: &str) -> Result<Option<(ResponseHead, usize)>, Error> {
    parse_response(raw.as_bytes(), &limits())
}

fn res_ok(raw: &str) -> ResponseHead {
    match res(raw) {
        Ok(Some((head, _))) => head,
        other => panic!("{raw:?} refused: {other:?}"),
    }
}

/// Every prefix of `raw` gives `None` or the same answer as the whole.
fn assert_prefixes_agree(raw: &[u8], parse: impl Fn(&[u8]) -> Result<bool, Error>) {
    let whole = parse(raw);
    for cut in 0..raw.len() {
        let part = parse(&raw[..cut]);
        assert!(
            part == Ok(false) || part == whole,
            "prefix {cut} of {raw:?} gave {part:?}, whole gave {whole:?}"
        );
    }
}

// === heads ===

#[test]
fn accepted_requests() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "/", Some("a")),
        (
            "POST /events/add HTTP/1.1\r\nHost: misp.example:8443\r\nContent-Length: 2\r\n\r\n",
            "/events/add",
            Some("misp.example:8443"),
        ),
        (
            "GET /a/b?c=d&e=%2F HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n",
            "/a/b?c=d&e=%2F",
            Some("10.0.0.1"),
        ),
        (
            "GET /x HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
            "/x",
            Some("[::1]:443"),
        ),
        (
            "GET http://h.example/p?q HTTP/1.1\r\nHost: h.example\r\n\r\n",
            "/p?q",
            Some("h.example"),
        ),
        (
            "GET http://h:8080/ HTTP/1.1\r\nHOST: H:8080\r\n\r\n",
            "/",
            Some("h:8080"),
        ),
        (
            "CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n",
            "",
            Some("h.example:443"),
        ),
        // OWS around values is not part of them (RFC 9112 §5).
        (
            "GET / HTTP/1.1\r\nHost:a\r\nX-A:   b  \r\n\r\n",
            "/",
            Some("a"),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX-Tab: \tv\t\r\n\r\n",
            "/",
            Some("a"),
        ),
    ];
    for (raw, path, authority) in cases {
        let head = req_ok(raw);
        assert_eq!(head.path().unwrap_or(""), *path, "{raw:?}");
        assert_eq!(head.authority(), *authority, "{raw:?}");
    }
    let head = req_ok("GET / HTTP/1.1\r\nHost:a\r\nX-A:   b  \r\n\r\n");
    assert_eq!(&head.headers[1].value[..], b"b");
    assert_eq!(head.headers[1].name, "X-A");
}

#[test]
fn refused_requests() {
    let many_headers: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(70 * 1024)
    );
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    let cases: Vec<(&str, Error)> = vec![
        // Line endings and bytes.
        ("GET / HTTP/1.1\nHost: a\n\n", Error::BareLf),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", Error::BareLf),
        ("GET / HTTP/1.1\r\nHost: a\r\n\n", Error::BareLf),
        ("GET / HTTP/1.1\rHost: a\r\n\r\n", Error::BareCr),
        ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", Error::BareCr),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", Error::Nul),
        ("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", Error::Nul),
        (
            "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            Error::LeadingEmptyLine,
        ),
        (
            "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            Error::LeadingEmptyLine,
        ),
        // obs-fold, also on the first field and in Transfer-Encoding.
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
            Error::ObsFold,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n",
            Error::ObsFold,
        ),
        ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", Error::ObsFold),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
            Error::ObsFold,
        ),
        // Field syntax.
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            Error::BadHeader,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n",
            Error::BadHeader,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX(y): 5\r\n\r\n",
            Error::BadHeader,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            Error::BadHeader,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
            Error::BadHeader,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
            Error::BadHeader,
        ),
        // Request line.
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadMethod),
        ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadVersion),
        ("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadMethod),
        ("GET / HTTP/1.0\r\nHost: a\r\n\r\n", Error::BadVersion),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", Error::BadVersion),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Error::BadVersion),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", Error::BadVersion),
        // Targets.
        ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
        ("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", Error::BadTarget),
        (
            "GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Error::BadTarget,
        ),
        (
            "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Error::BadTarget,
        ),
        (
            "GET http://h:99999/ HTTP/1.1\r\nHost: h:99999\r\n\r\n",
            Error::BadTarget,
        ),
        (
            "GET h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            Error::BadTarget,
        ),
        ("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", Error::BadTarget),
        ("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", Error::BadTarget),
        (
            "CONNECT http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Error::BadTarget,
        ),
        (&long_target, Error::TargetTooLong),
        // Host (RFC 9112 §3.2).
        ("GET / HTTP/1.1\r\n\r\n", Error::BadHost),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            Error::BadHost,
        ),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Error::BadHost),
        ("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", Error::BadHost),
        ("GET / HTTP/1.1\r\nHost: a:\r\n\r\n", Error::BadHost),
        ("GET / HTTP/1.1\r\nHost: \r\n\r\n", Error::BadHost),
        (
            "GET http://h/ HTTP/1.1\r\nHost: other\r\n\r\n",
            Error::BadHost,
        ),
        (
            "CONNECT h:443 HTTP/1.1\r\nHost: h:8443\r\n\r\n",
            Error::BadHost,
        ),
        // Sizes.
        (&many, Error::TooManyHeaders),
        (&huge, Error::HeadTooLarge),
    ];
    for (raw, want) in &cases {
        assert_eq!(req(raw).map(|_| ()), Err(want.clone()), "{raw:?}");
    }
}

#[test]
fn head_limits_before_completion() {
    // More than max_header_bytes without an end is refused at once.
    let partial = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(64 * 1024));
    assert_eq!(req(&partial).map(|_| ()), Err(Error::HeadTooLarge));
    // Less is just incomplete.
    assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\n").map(|_| ()), Ok(()));
    assert!(matches!(req("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None)));
    // A head of exactly the limit passes, one byte more does not.
    let base = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
    let exact = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(100 - base)
    );
    let tight = Limits {
        max_header_bytes: 100,
        ..limits()
    };
    assert!(matches!(
        parse_request(exact.as_bytes(), &tight),
        Ok(Some((_, 100)))
    ));
    let over = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(101 - base)
    );
    assert_eq!(
        parse_request(over.as_bytes(), &tight).map(|_| ()),
        Err(Error::HeadTooLarge)
    );
}

#[test]
fn head_leaves_the_body() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
    let (head, len) = parse_request(raw, &limits()).unwrap().unwrap();
    assert_eq!(&raw[len..], b"abcGET");
    assert_eq!(request_body(&head), Ok(BodyKind::Length(3)));
}

#[test]
fn refused_responses() {
    let cases: &[(&str, Error)] = &[
        ("HTTP/1.0 200 OK\r\n\r\n", Error::BadVersion),
        ("HTTP/2 200 OK\r\n\r\n", Error::BadVersion),
        ("HTTP/1.1 101 Switching Protocols\r\n\r\n", Error::BadStatus),
        ("HTTP/1.1 999 Nope\r\n\r\n", Error::BadStatus),
        ("HTTP/1.1 099 Nope\r\n\r\n", Error::BadStatus),
        ("HTTP/1.1 20 OK\r\n\r\n", Error::BadStatus),
        ("HTTP/1.1 200 OK\nServer: x\n\n", Error::BareLf),
        ("HTTP/1.1 200 OK\r\nServer: x\r\n y\r\n\r\n", Error::ObsFold),
        ("HTTP/1.1 200 OK\r\nServer : x\r\n\r\n", Error::BadHeader),
        ("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", Error::Nul),
        ("\r\nHTTP/1.1 200 OK\r\n\r\n", Error::LeadingEmptyLine),
        ("HTTP/1.1 200 OK\r\n\rX", Error::BareCr),
        ("HTTP/1.1 200 OK \x01\r\n\r\n", Error::BadStatus),
    ];
    for (raw, want) in cases {
        assert_eq!(res(raw).map(|_| ()), Err(want.clone()), "{raw:?}");
    }
    let head = res_ok("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((head.status, head.reason.as_str()), (404, "Not Found"));
    assert_eq!(res_ok("HTTP/1.1 200\r\n\r\n").reason, "");
    assert_eq!(res_ok("HTTP/1.1 200 caf\u{e9}\r\n\r\n").reason, "");
}

#[test]
fn head_prefixes_agree() {
    let raws = [
        "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\rX: b\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for raw in raws {
        assert_prefixes_agree(raw.as_bytes(), |b| {
            parse_request(b, &limits()).map(|r| r.is_some())
        });
    }
    let tight = Limits {
        max_header_bytes: 24,
        ..limits()
    };
    assert_prefixes_agree(b"GET / HTTP/1.1\r\nHost: abcdefgh\r\n\r\n", |b| {
        parse_request(b, &tight).map(|r| r.is_some())
    });
}

// === framing ===

fn body_of(fields: &str) -> Result<BodyKind, Error> {
    let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
    request_body(&req_ok(&raw))
}

#[test]
fn request_framing_table() {
    let cases: &[(&str, Result<BodyKind, Error>)] = &[
        ("", Ok(BodyKind::Empty)),
        ("Content-Length: 0\r\n", Ok(BodyKind::Length(0))),
        ("Content-Length: 5\r\n", Ok(BodyKind::Length(5))),
        ("Content-Length: 0005\r\n", Ok(BodyKind::Length(5))),
        ("Content-Length:  5 \r\n", Ok(BodyKind::Length(5))),
        (
            "content-length: 18446744073709551615\r\n",
            Ok(BodyKind::Length(u64::MAX)),
        ),
        (
            "Content-Length: 18446744073709551616\r\n",
            Err(Error::BadContentLength),
        ),
        (
            "Content-Length: 99999999999999999999999\r\n",
            Err(Error::BadContentLength),
        ),
        ("Content-Length: 5, 5\r\n", Err(Error::BadContentLength)),
        ("Content-Length: 5,5\r\n", Err(Error::BadContentLength)),
        ("Content-Length: +5\r\n", Err(Error::BadContentLength)),
        ("Content-Length: -1\r\n", Err(Error::BadContentLength)),
        ("Content-Length: 5a\r\n", Err(Error::BadContentLength)),
        ("Content-Length: 0x5\r\n", Err(Error::BadContentLength)),
        ("Content-Length: 5 5\r\n", Err(Error::BadContentLength)),
        ("Content-Length: 5.0\r\n", Err(Error::BadContentLength)),
        ("Content-Length:\r\n", Err(Error::BadContentLength)),
        (
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            Err(Error::DuplicateLength),
        ),
        (
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            Err(Error::DuplicateLength),
        ),
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            Err(Error::ConflictingLength),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            Err(Error::ConflictingLength),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
            Err(Error::ConflictingLength),
        ),
        ("Transfer-Encoding: chunked\r\n", Ok(BodyKind::Chunked)),
        ("Transfer-Encoding: CHUNKED\r\n", Ok(BodyKind::Chunked)),
        ("Transfer-Encoding: chunked \r\n", Ok(BodyKind::Chunked)),
        (
            "Transfer-Encoding: chunked, identity\r\n",
            Err(Error::BadTransferEncoding),
        ),
        (
            "Transfer-Encoding: gzip, chunked\r\n",
            Err(Error::BadTransferEncoding),
        ),
        (
            "Transfer-Encoding: chunked, chunked\r\n",
            Err(Error::BadTransferEncoding),
        ),
        (
            "Transfer-Encoding: chunked,\r\n",
            Err(Error::BadTransferEncoding),
        ),
        (
            "Transfer-Encoding: chunked;q=1\r\n",
            Err(Error::BadTransferEncoding),
        ),
        (
            "Transfer-Encoding: \"chunked\"\r\n",
            Err(Error::BadTransferEncoding),
        ),
        ("Transfer-Encoding:\r\n", Err(Error::BadTransferEncoding)),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            Err(Error::BadTransferEncoding),
        ),
        (
            "Transfer-Encoding: xchunked\r\n",
            Err(Error::UnknownTransferEncoding),
        ),
        (
            "Transfer-Encoding: identity\r\n",
            Err(Error::UnknownTransferEncoding),
        ),
        (
            "Transfer-Encoding: gzip\r\n",
            Err(Error::UnknownTransferEncoding),
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(&body_of(fields), want, "{fields:?}");
    }
}

#[test]
fn response_framing_table() {
    let cases: &[(&str, bool, Result<BodyKind, Error>)] = &[
        (
            "HTTP/1.1 200 OK\r\n\r\n",
            false,
            Ok(BodyKind::CloseDelimited),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            false,
            Ok(BodyKind::Length(7)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            Ok(BodyKind::Chunked),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            true,
            Ok(BodyKind::Empty),
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", true, Ok(BodyKind::Empty)),
        ("HTTP/1.1 100 Continue\r\n\r\n", false, Ok(BodyKind::Empty)),
        (
            "HTTP/1.1 204 No Content\r\n\r\n",
            false,
            Ok(BodyKind::Empty),
        ),
        (
            "HTTP/1.1 304 Not Modified\r\n\r\n",
            false,
            Ok(BodyKind::Empty),
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            false,
            Ok(BodyKind::Empty),
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            false,
            Err(Error::BadContentLength),
        ),
        (
            "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            Err(Error::BadContentLength),
        ),
        (
            "HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n",
            false,
            Err(Error::BadContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            Err(Error::ConflictingLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            Err(Error::ConflictingLength),
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false,
            Err(Error::DuplicateLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
            Err(Error::BadTransferEncoding),
        ),
    ];
    for (raw, head_req, want) in cases {
        assert_eq!(
            &response_body(&res_ok(raw), *head_req),
            want,
            "{raw:?} head={head_req}"
        );
    }
}

#[test]
fn error_statuses() {
    let cases = [
        (Error::ConflictingLength, 400),
        (Error::HeadTooLarge, 431),
        (Error::TooManyHeaders, 431),
        (Error::TargetTooLong, 414),
        (Error::BodyTooLarge, 413),
        (Error::DecodedTooLarge(1), 413),
        (Error::UnknownTransferEncoding, 501),
        (Error::BadVersion, 505),
        (Error::BadExpect, 417),
        (Error::UnsupportedEncoding, 415),
        (Error::ObsFold, 400),
    ];
    for (e, status) in cases {
        assert_eq!(e.status(), status, "{e}");
    }
    assert_eq!(limits().check_length(limits().max_body_bytes), Ok(()));
    assert_eq!(
        limits().check_length(limits().max_body_bytes + 1),
        Err(Error::BodyTooLarge)
    );
}

#[test]
fn expect_and_connection() {
    let head = |fields: &str| req_ok(&format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n"));
    assert_eq!(expects_continue(&head("")), Ok(false));
    assert_eq!(
        expects_continue(&head("Expect: 100-continue\r\n")),
        Ok(true)
    );
    assert_eq!(
        expects_continue(&head("Expect: 100-Continue\r\n")),
        Ok(true)
    );
    assert_eq!(
        expects_continue(&head("Expect: 200-ok\r\n")),
        Err(Error::BadExpect)
    );
    assert_eq!(
        expects_continue(&head("Expect: 100-continue, x\r\n")),
        Err(Error::BadExpect)
    );
    assert_eq!(
        expects_continue(&head("Expect: 100-continue\r\nExpect: 100-continue\r\n")),
        Err(Error::BadExpect)
    );
    assert!(!connection_close(&head("")));
    assert!(!connection_close(&head("Connection: keep-alive\r\n")));
    assert!(connection_close(&head("Connection: close\r\n")));
    assert!(connection_close(&head("Connection: keep-alive, Close\r\n")));
    assert!(connection_close(&head(
        "Connection: x\r\nConnection: close\r\n"
    )));
}

// === re-encoding ===

#[test]
fn encode_drops_hop_by_hop() {
    let head = req_ok(
        "POST http://h/events/add HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\n\
         X-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\n\
         Upgrade: h2c\r\nTrailer: X\r\nProxy-Authorization: Basic a\r\nExpect: 100-continue\r\n\
         Content-Length: 4\r\nContent-Encoding: gzip\r\nAuthorization: k\r\nAccept: application/json\r\n\r\n",
    );
    let mut out = Vec::new();
    encode_request(&head, "/events/add", Some(4), &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /events/add HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\nAuthorization: k\r\n\
         Accept: application/json\r\nContent-Length: 4\r\n\r\n"
    );

    let get = req_ok("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut out = Vec::new();
    encode_request_close(&get, "/", None, &mut out);
    assert_eq!(
        out,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    );

    let head = res_ok(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nProxy-Authenticate: x\r\n\
         Content-Type: application/json\r\nConnection: close\r\n\r\n",
    );
    let mut out = Vec::new();
    encode_response(&head, Some(12), &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
    );
    let mut out = Vec::new();
    encode_response_close(&res_ok("HTTP/1.1 403 Forbidden\r\n\r\n"), Some(0), &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

// === chunked ===

fn dechunk_all(raw: &[u8], limits: &Limits) -> Outcome {
    dechunk([raw], limits)
}

/// A chunk-size line (without CRLF) and what it must give: its size, or
/// the error.
#[test]
fn chunk_line_table() {
    let long_ext = format!("5;{}", "a".repeat(300));
    let ext_at_limit = format!("5;{}", "a".repeat(255));
    let ext_over_limit = format!("5;{}", "a".repeat(256));
    let cases: Vec<(&str, Result<u64, Error>)> = vec![
        ("0", Ok(0)),
        ("5", Ok(5)),
        ("A", Ok(10)),
        ("a", Ok(10)),
        ("0005", Ok(5)),
        ("00000000000000a", Ok(10)),
        ("5;ext=1", Ok(5)),
        ("5;ext", Ok(5)),
        ("5;a;b=c;d=\"q v;\\\"\"", Ok(5)),
        (&ext_at_limit, Ok(5)),
        ("5 ;x", Err(Error::BadChunkSize)),
        ("5 ", Err(Error::BadChunkSize)),
        (" 5", Err(Error::BadChunkSize)),
        ("-5", Err(Error::BadChunkSize)),
        ("+5", Err(Error::BadChunkSize)),
        ("0x5", Err(Error::BadChunkSize)),
        ("", Err(Error::BadChunkSize)),
        ("g", Err(Error::BadChunkSize)),
        ("5g", Err(Error::BadChunkSize)),
        ("fffffffffffffffff", Err(Error::BadChunkSize)),
        ("00000000000000005", Err(Error::BadChunkSize)),
        ("5; x", Err(Error::BadChunkExtension)),
        ("5;", Err(Error::BadChunkExtension)),
        ("5;x=", Err(Error::BadChunkExtension)),
        ("5;x =1", Err(Error::BadChunkExtension)),
        ("5;x=1 ", Err(Error::BadChunkExtension)),
        ("5;x=\"open", Err(Error::BadChunkExtension)),
        ("5;x=\"a\"b", Err(Error::BadChunkExtension)),
        ("5;x=a\"", Err(Error::BadChunkExtension)),
        ("5;x=\"\x01\"", Err(Error::BadChunkExtension)),
        ("5;\u{e9}", Err(Error::BadChunkExtension)),
        (&long_ext, Err(Error::ChunkExtensionTooLong)),
        (&ext_over_limit, Err(Error::ChunkExtensionTooLong)),
        ("5\r", Err(Error::BareCr)),
        ("5;x\rx", Err(Error::BareCr)),
    ];
    for (line, want) in cases {
        let mut raw = format!("{line}\r\n").into_bytes();
        match want {
            Ok(size) => {
                raw.extend(std::iter::repeat_n(b'x', size as usize));
                if size > 0 {
                    raw.extend_from_slice(b"\r\n0\r\n");
                }
                raw.extend_from_slice(b"\r\n");
                let got = dechunk_all(&raw, &limits());
                assert_eq!(got.end, Ok(true), "{line:?}");
                assert_eq!(got.data.len() as u64, size, "{line:?}");
            }
            Err(e) => {
                let got = dechunk_all(&raw, &limits());
                assert_eq!(got.end, Err(e), "{line:?}");
            }
        }
    }
    // A bare LF ends no chunk line.
    assert_eq!(
        dechunk_all(b"5\nhello\r\n0\r\n\r\n", &limits()).end,
        Err(Error::BareLf)
    );
    assert_eq!(
        dechunk_all(b"5;x\nhello\r\n0\r\n\r\n", &limits()).end,
        Err(Error::BareLf)
    );
}

#[test]
fn chunked_bodies_table() {
    // (input, Ok((data, bytes left after the body)) or the error)
    type Case = (&'static [u8], Result<(&'static [u8], &'static [u8]), Error>);
    let cases: &[Case] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", Ok((b"hello", b""))),
        (
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /",
            Ok((b"hello world", b"GET /")),
        ),
        (b"0\r\n\r\n", Ok((b"", b""))),
        (
            b"3\r\nabc\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n",
            Ok((b"abc", b"")),
        ),
        (b"5\r\nhelloX\r\n0\r\n\r\n", Err(Error::BadChunkData)),
        (b"3\r\nhello\r\n0\r\n\r\n", Err(Error::BadChunkData)),
        (b"5\r\nhello\n0\r\n\r\n", Err(Error::BadChunkData)),
        (b"5\r\nhello\r0\r\n\r\n", Err(Error::BadChunkData)),
        (b"0\r\nX: 1\n\r\n", Err(Error::BareLf)),
        (b"0\r\n\n", Err(Error::BareLf)),
        (b"0\r\nX: 1\r\n y\r\n\r\n", Err(Error::ObsFold)),
        (b"0\r\nX : 1\r\n\r\n", Err(Error::BadTrailer)),
        (b"0\r\nX: \0\r\n\r\n", Err(Error::Nul)),
        (b"0\r\nno colon\r\n\r\n", Err(Error::BadTrailer)),
        // The second message in the smuggling classic: a bad size line
        // poisons the decoder, nothing after it is read.
        (b"2;\r\nab\r\n0\r\n\r\n", Err(Error::BadChunkExtension)),
    ];
    for (raw, want) in cases {
        let got = dechunk_all(raw, &limits());
        match want {
            Ok((data, left)) => {
                assert_eq!(got.end, Ok(true), "{raw:?}");
                assert_eq!(&got.data[..], *data, "{raw:?}");
                assert_eq!(&got.left[..], *left, "{raw:?}");
            }
            Err(e) => assert_eq!(&got.end, &Err(e.clone()), "{raw:?}"),
        }
    }
}

#[test]
fn chunked_limits() {
    let small = Limits {
        max_body_bytes: 10,
        ..limits()
    };
    assert_eq!(
        dechunk_all(b"a\r\n0123456789\r\n0\r\n\r\n", &small).end,
        Ok(true)
    );
    let got = dechunk_all(b"6\r\n012345\r\n5\r\n01234\r\n0\r\n\r\n", &small);
    assert_eq!((got.end, got.data.len()), (Err(Error::BodyTooLarge), 6));
    // Refused at the size line, before any data arrives.
    assert_eq!(
        dechunk_all(b"ffffffffffffffff\r\n", &limits()).end,
        Err(Error::BodyTooLarge)
    );
    let trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(70 * 1024));
    assert_eq!(
        dechunk_all(trailer.as_bytes(), &limits()).end,
        Err(Error::HeadTooLarge)
    );
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let trailer = format!("0\r\n{many}\r\n");
    assert_eq!(
        dechunk_all(trailer.as_bytes(), &limits()).end,
        Err(Error::TooManyHeaders)
    );
    // An over-long extension is refused without waiting for its end.
    let open = format!("5;{}", "a".repeat(300));
    assert_eq!(
        dechunk_all(open.as_bytes(), &limits()).end,
        Err(Error::ChunkExtensionTooLong)
    );
}

#[test]
fn chunked_decoder_latches() {
    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::from(&b"z\r\n"[..]);
    assert_eq!(dec.decode(&mut input, &limits()), Err(Error::BadChunkSize));
    let mut fresh = BytesMut::from(&b"0\r\n\r\n"[..]);
    assert_eq!(dec.decode(&mut fresh, &limits()), Err(Error::BadChunkSize));
    assert!(!dec.is_done());

    let mut dec = ChunkedDecoder::new();
    let mut input = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\n"[..]);
    assert_eq!(
        dec.decode(&mut input, &limits()),
        Ok(Chunk::Data(bytes::Bytes::from_static(b"abc")))
    );
    assert_eq!(dec.decode(&mut input, &limits()), Ok(Chunk::Done));
    assert_eq!(dec.decode(&mut input, &limits()), Ok(Chunk::Done));
    assert!(dec.is_done());
    assert_eq!(dec.total(), 3);
}

/// A valid chunked body from chunks, extensions and trailers.
fn chunked_body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let chunk = (
        proptest::collection::vec(any::<u8>(), 1..40),
        prop_oneof![Just(""), Just(";a"), Just(";a=b"), Just(";q=\"x y\";z")],
        any::<bool>(),
    );
    let trailers = prop_oneof![Just(""), Just("X: 1\r\n"), Just("X: 1\r\nY-Z: a b\r\n")];
    (
        proptest::collection::vec(chunk, 0..6),
        trailers,
        any::<bool>(),
    )
        .prop_map(|(chunks, trailers, ext_on_last)| {
            let mut raw = Vec::new();
            let mut data = Vec::new();
            for (bytes, ext, upper) in chunks {
                let size = if upper {
                    format!("{:X}", bytes.len())
                } else {
                    format!("{:04x}", bytes.len())
                };
                raw.extend_from_slice(size.as_bytes());
                raw.extend_from_slice(ext.as_bytes());
                raw.extend_from_slice(b"\r\n");
                raw.extend_from_slice(&bytes);
                raw.extend_from_slice(b"\r\n");
                data.extend_from_slice(&bytes);
            }
            raw.extend_from_slice(if ext_on_last { b"0;l=1\r\n" } else { b"0\r\n" });
            raw.extend_from_slice(trailers.as_bytes());
            raw.extend_from_slice(b"\r\n");
            (raw, data)
        })
}

/// Cut `raw` at the given points (taken modulo its length).
fn split_at(raw: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([raw.len()]) {
        pieces.push(raw[start..p].to_vec());
        start = p;
    }
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chunked_any_split_of_valid((raw, data) in chunked_body(), cuts in proptest::collection::vec(any::<usize>(), 0..12), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut full = raw.clone();
        full.extend_from_slice(&tail);
        let pieces = split_at(&full, &cuts);
        let got = dechunk(pieces.iter().map(Vec::as_slice), &limits());
        prop_assert_eq!(got.end, Ok(true));
        prop_assert_eq!(got.data, data);
        prop_assert_eq!(got.left, tail);
    }

    #[test]
    fn chunked_any_split_of_mutated((raw, _) in chunked_body(), at in any::<usize>(), byte in any::<u8>(), cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let mut bad = raw.clone();
        let i = at % bad.len();
        bad[i] = byte;
        let small = Limits { max_chunk_ext_bytes: 6, max_header_bytes: 24, max_headers: 2, ..limits() };
        let whole = dechunk_all(&bad, &small);
        let pieces = split_at(&bad, &cuts);
        let split = dechunk(pieces.iter().map(Vec::as_slice), &small);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn chunked_any_split_of_noise(raw in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'5'), Just(b';'), Just(b'a'), Just(b'"'), Just(b' '), any::<u8>()], 0..64), cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let small = Limits { max_chunk_ext_bytes: 6, max_header_bytes: 24, max_headers: 2, ..limits() };
        let whole = dechunk_all(&raw, &small);
        let pieces = split_at(&raw, &cuts);
        let split = dechunk(pieces.iter().map(Vec::as_slice), &small);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn head_any_prefix(raw in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b'a'), any::<u8>()], 0..48)) {
        let mut msg = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        msg.extend_from_slice(&raw);
        msg.extend_from_slice(b"\r\n\r\n");
        let tight = Limits { max_header_bytes: 60, max_headers: 3, ..limits() };
        assert_prefixes_agree(&msg, |b| parse_request(b, &tight).map(|r| r.is_some()));
    }
}

// === content codings ===

fn coding_of(value: &str) -> Result<Coding, Error> {
    content_coding(&req_ok(&format!(
        "POST / HTTP/1.1\r\nHost: a\r\n{value}\r\n"
    )))
}

#[test]
fn coding_table() {
    let cases: &[(&str, Result<Coding, Error>)] = &[
        ("", Ok(Coding::Identity)),
        ("Content-Encoding: identity\r\n", Ok(Coding::Identity)),
        ("Content-Encoding: gzip\r\n", Ok(Coding::Gzip)),
        ("Content-Encoding: GZip\r\n", Ok(Coding::Gzip)),
        ("Content-Encoding: x-gzip\r\n", Ok(Coding::Gzip)),
        ("Content-Encoding:  br \r\n", Ok(Coding::Br)),
        ("Content-Encoding: deflate\r\n", Ok(Coding::Deflate)),
        ("Content-Encoding: zstd\r\n", Ok(Coding::Zstd)),
        (
            "Content-Encoding: gzip, br\r\n",
            Err(Error::UnsupportedEncoding),
        ),
        (
            "Content-Encoding: gzip,\r\n",
            Err(Error::UnsupportedEncoding),
        ),
        (
            "Content-Encoding: compress\r\n",
            Err(Error::UnsupportedEncoding),
        ),
        ("Content-Encoding: \r\n", Err(Error::UnsupportedEncoding)),
        (
            "Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n",
            Err(Error::UnsupportedEncoding),
        ),
        (
            "Content-Encoding: identity\r\nContent-Encoding: gzip\r\n",
            Err(Error::UnsupportedEncoding),
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(&coding_of(fields), want, "{fields:?}");
    }
    let head = |v: &str| {
        req_ok(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Encoding: {v}\r\n\r\n"
        ))
    };
    assert_eq!(request_coding(&head("br")), Ok(Coding::Br));
    assert_eq!(request_coding(&head("gzip")), Ok(Coding::Gzip));
    assert_eq!(
        request_coding(&head("deflate")),
        Err(Error::UnsupportedEncoding)
    );
    assert_eq!(
        request_coding(&head("zstd")),
        Err(Error::UnsupportedEncoding)
    );
    assert_eq!(response_coding(&head("zstd")), Ok(Coding::Zstd));
    assert_eq!(response_coding(&head("deflate")), Ok(Coding::Deflate));
}

fn sample() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..5000 {
        write!(
            s,
            "{{\"Attribute\":{{\"id\":\"{i}\",\"type\":\"ip-dst\",\"value\":\"10.0.{}.{}\"}}}},",
            i / 256,
            i % 256
        )
        .unwrap();
    }
    s
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 1, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

type Encoder = fn(&[u8]) -> Vec<u8>;

fn encoders() -> [(Coding, Encoder); 4] {
    [
        (Coding::Gzip, gzip),
        (Coding::Deflate, zlib),
        (Coding::Br, brotli),
        (Coding::Zstd, zstd),
    ]
}

/// Decode `raw` pushed whole, after checking that pushing it in pieces of
/// one byte, a few bytes and a step and a half gives exactly the same.
fn decode_all(coding: Coding, raw: Vec<u8>, caps: DecodeCaps) -> io::Result<Vec<u8>> {
    let whole = fuzz::decode_pieces(coding, &caps, [&raw[..]], None);
    for size in [1, 7, decode::STEP * 3 / 2] {
        let split = fuzz::decode_pieces(coding, &caps, raw.chunks(size), None);
        assert!(
            split == whole,
            "{coding} in pieces of {size}: {split:?}, whole {whole:?}"
        );
    }
    whole
        .end
        .map(|()| whole.data)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A decoder fed from `source` as a `Read`, for sources too large to hold
/// (the bombs below): errors of the source pass through, the decoder's are
/// `InvalidData` carrying an [`Error`], and after an error every read fails.
fn decoder<R: Read>(coding: Coding, source: R, caps: DecodeCaps) -> Pulled<R> {
    Pulled {
        source,
        decoder: Some(Decoder::new(coding, caps)),
        decoded: Vec::new(),
        at: 0,
        failed: None,
    }
}

struct Pulled<R> {
    source: R,
    decoder: Option<Decoder>,
    decoded: Vec<u8>,
    at: usize,
    failed: Option<Error>,
}

impl<R: Read> Read for Pulled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.decoded.len() {
            if let Some(e) = &self.failed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
            }
            let Some(dec) = self.decoder.as_mut() else {
                return Ok(0);
            };
            self.decoded.clear();
            self.at = 0;
            // Small raw pieces keep what one push decodes small.
            let mut raw = [0u8; 64];
            let n = self.source.read(&mut raw)?;
            let decoded = &mut self.decoded;
            let keep = |piece: &[u8]| {
                decoded.extend_from_slice(piece);
                true
            };
            let res = if n == 0 {
                self.decoder.take().map_or(Ok(()), |dec| dec.finish(keep))
            } else {
                dec.push(&raw[..n], keep)
            };
            if let Err(e) = res {
                self.failed = Some(e);
            }
        }
        let n = buf.len().min(self.decoded.len() - self.at);
        buf[..n].copy_from_slice(&self.decoded[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn decode_error(coding: Coding, raw: Vec<u8>, caps: DecodeCaps) -> Error {
    match decode_all(coding, raw, caps) {
        Ok(out) => panic!("{coding} decoded {} bytes, expected an error", out.len()),
        Err(e) => Error::from_io(&e)
            .cloned()
            .unwrap_or_else(|| panic!("not ours: {e}")),
    }
}

#[test]
fn codings_round_trip() {
    let data = sample();
    for (coding, encode) in encoders() {
        let raw = encode(&data);
        assert_eq!(
            decode_all(coding, raw, DecodeCaps::default()).unwrap(),
            data,
            "{coding}"
        );
        assert_eq!(
            decode_all(coding, encode(b"{}"), DecodeCaps::default()).unwrap(),
            b"{}",
            "{coding}"
        );
    }
    assert_eq!(
        decode_all(Coding::Identity, data.clone(), DecodeCaps::default()).unwrap(),
        data
    );
    assert_eq!(
        decode_all(Coding::Identity, Vec::new(), DecodeCaps::default()).unwrap(),
        b""
    );
}

#[test]
fn truncated_streams_are_errors() {
    let data = sample();
    for (coding, encode) in encoders() {
        let raw = encode(&data);
        let mut cuts = vec![0, 1, 2, 5, 10, raw.len() / 2, raw.len() - 4, raw.len() - 1];
        cuts.dedup();
        for cut in cuts {
            let e = decode_error(coding, raw[..cut].to_vec(), DecodeCaps::default());
            assert!(
                matches!(e, Error::BadEncoding { .. }),
                "{coding} cut at {cut}: {e}"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_errors() {
    let data = sample();
    for (coding, encode) in encoders() {
        let mut raw = encode(&data);
        raw.extend_from_slice(b"garbage");
        let e = decode_error(coding, raw, DecodeCaps::default());
        assert!(matches!(e, Error::BadEncoding { .. }), "{coding}: {e}");
        // Also a single trailing byte, and a second copy of the stream
        // (a second gzip member must not be ignored either).
        let mut raw = encode(&data);
        raw.push(0);
        assert!(
            decode_all(coding, raw, DecodeCaps::default()).is_err(),
            "{coding} + NUL"
        );
        let mut raw = encode(b"{}");
        raw.extend(encode(b"{\"evil\":1}"));
        assert!(
            decode_all(coding, raw, DecodeCaps::default()).is_err(),
            "{coding} twice"
        );
    }
}

#[test]
fn corrupt_streams_are_errors() {
    let data = sample();
    // Raw deflate is not the `deflate` coding (RFC 9110 §8.4.1.2).
    let e = decode_error(Coding::Deflate, raw_deflate(&data), DecodeCaps::default());
    assert!(matches!(e, Error::BadEncoding { .. }), "{e}");
    // A flipped byte in the middle or in the checksum.
    for (coding, encode) in encoders() {
        let raw = encode(&data);
        for at in [raw.len() / 2, raw.len() - 2] {
            let mut bad = raw.clone();
            bad[at] ^= 0x55;
            let res = decode_all(coding, bad, DecodeCaps::default());
            assert!(
                res.as_ref().map(|out| out != &data).unwrap_or(true),
                "{coding} flip at {at}"
            );
            if coding != Coding::Br {
                // gzip, zlib and zstd (with its checksum) detect every
                // flip; brotli has no checksum.
                assert!(res.is_err(), "{coding} flip at {at}");
            }
        }
        let e = decode_error(coding, Vec::new(), DecodeCaps::default());
        assert!(
            matches!(e, Error::BadEncoding { .. }),
            "{coding} empty: {e}"
        );
    }
    // A zstd skippable frame is refused.
    let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    skippable.extend(zstd(b"{}"));
    assert!(decode_all(Coding::Zstd, skippable, DecodeCaps::default()).is_err());
}

#[test]
fn zstd_window_over_8_mib_is_refused() {
    // Frame header: magic, descriptor 0 (window descriptor follows, no
    // checksum, no dictionary, no content size), window 2^(10+14) = 16 MiB.
    let frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 14 << 3, 0x01, 0x00, 0x00];
    let e = decode_error(Coding::Zstd, frame, DecodeCaps::default());
    assert_eq!(
        e,
        Error::BadEncoding {
            coding: Coding::Zstd,
            reason: "zstd window over 8 MiB".into()
        }
    );
    // The same with an 8 MiB window is a valid empty frame (a last raw
    // block of size 0).
    let frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 13 << 3, 0x01, 0x00, 0x00];
    assert_eq!(
        decode_all(Coding::Zstd, frame, DecodeCaps::default()).unwrap(),
        b""
    );
}

/// 1 GiB of zeros, compressed lazily as the decoder reads, so the test
/// itself stays small: the decoder must stop at the cap.
fn bomb(coding: Coding) -> Box<dyn Read + Send> {
    let zeros = io::repeat(0).take(1 << 30);
    match coding {
        Coding::Gzip => Box::new(flate2::read::GzEncoder::new(
            zeros,
            flate2::Compression::best(),
        )),
        Coding::Deflate => Box::new(flate2::read::ZlibEncoder::new(
            zeros,
            flate2::Compression::best(),
        )),
        Coding::Br => Box::new(brotli::CompressorReader::new(zeros, 4096, 5, 22)),
        _ => unreachable!(),
    }
}

/// 1 GiB of zeros as a zstd frame of 8192 RLE blocks of 128 KiB each
/// (RFC 8878 §3.1.1.2): 32 KiB on the wire.
fn zstd_rle_bomb() -> Vec<u8> {
    // Magic, descriptor 0 (window descriptor follows), window 2^17.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3];
    let blocks = (1u32 << 30) / (128 * 1024);
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        // Block header: last bit, type 1 (RLE), size in bits 3..24.
        let header = last | (1 << 1) | ((128 * 1024) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

#[test]
fn zstd_bomb_stops_at_the_caps() {
    let caps = DecodeCaps {
        max_decoded_bytes: 4 << 20,
        max_ratio: u64::MAX,
        ratio_grace_bytes: 0,
    };
    let e = decode_error(Coding::Zstd, zstd_rle_bomb(), caps);
    assert_eq!(e, Error::DecodedTooLarge(4 << 20));
    let e = decode_error(Coding::Zstd, zstd_rle_bomb(), DecodeCaps::default());
    assert_eq!(e, Error::RatioTooHigh(200));
    // Under generous caps the frame itself is valid: the caps, not a
    // parse error, stopped it.
    let caps = DecodeCaps {
        max_decoded_bytes: 1 << 30,
        max_ratio: u64::MAX,
        ratio_grace_bytes: 0,
    };
    let mut out = io::sink();
    let n = io::copy(
        &mut decoder(Coding::Zstd, io::Cursor::new(zstd_rle_bomb()), caps),
        &mut out,
    );
    assert_eq!(n.unwrap(), 1 << 30);
}

#[test]
fn decompression_bomb_stops_at_the_size_cap() {
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Br] {
        let caps = DecodeCaps {
            max_decoded_bytes: 4 << 20,
            max_ratio: u64::MAX,
            ratio_grace_bytes: 0,
        };
        let mut dec = decoder(coding, bomb(coding), caps);
        let mut seen = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let err = loop {
            match dec.read(&mut buf) {
                Ok(0) => panic!("{coding}: bomb decoded to the end"),
                Ok(n) => seen += n as u64,
                Err(e) => break e,
            }
        };
        assert_eq!(seen, 4 << 20, "{coding}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            Error::from_io(&err),
            Some(&Error::DecodedTooLarge(4 << 20)),
            "{coding}"
        );
        assert!(err.to_string().contains("max_decoded_bytes"), "{err}");
        // And it stays failed.
        assert!(dec.read(&mut buf).is_err());
    }
}

#[test]
fn decompression_bomb_stops_at_the_ratio_cap() {
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Br] {
        let mut out = io::sink();
        let err = io::copy(
            &mut decoder(coding, bomb(coding), DecodeCaps::default()),
            &mut out,
        )
        .unwrap_err();
        assert_eq!(
            Error::from_io(&err),
            Some(&Error::RatioTooHigh(200)),
            "{coding}"
        );
        assert!(err.to_string().contains("max_ratio"), "{err}");
    }
    let zeros = vec![0u8; 8 << 20];
    let err = decode_all(Coding::Zstd, zstd(&zeros), DecodeCaps::default()).unwrap_err();
    assert_eq!(
        Error::from_io(&err),
        Some(&Error::RatioTooHigh(200)),
        "{err}"
    );
    // A large ordinary zstd frame (window 128 KiB) passes without the
    // ratio cap: the window check does not refuse real encoders' output.
    let caps = DecodeCaps {
        max_ratio: u64::MAX,
        ..DecodeCaps::default()
    };
    assert_eq!(
        decode_all(Coding::Zstd, zstd(&zeros), caps).unwrap().len(),
        8 << 20
    );
    // Ordinary JSON stays well under the ratio cap.
    let data = sample();
    for (coding, encode) in encoders() {
        assert_eq!(
            decode_all(coding, encode(&data), DecodeCaps::default()).unwrap(),
            data
        );
    }
}

#[test]
fn source_errors_pass_through() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer went away",
            ))
        }
    }
    for coding in [
        Coding::Identity,
        Coding::Gzip,
        Coding::Deflate,
        Coding::Br,
        Coding::Zstd,
    ] {
        let err = decoder(coding, Broken, DecodeCaps::default())
            .read(&mut [0u8; 8])
            .unwrap_err();
        assert!(Error::from_io(&err).is_none(), "{coding}: {err}");
    }
}

// === the push decoder: every split decodes alike ===

/// Decoding `raw` gives exactly the same bytes and the same end whole, cut
/// in two at every `stride`-th offset, and in pieces of every size up to
/// 64 bytes and around a step. Returns the whole result.
fn same_in_every_split(
    coding: Coding,
    raw: &[u8],
    caps: &DecodeCaps,
    stride: usize,
) -> fuzz::Decoded {
    let whole = fuzz::decode_pieces(coding, caps, [raw], None);
    for cut in (0..=raw.len()).step_by(stride) {
        let (a, b) = raw.split_at(cut);
        let split = fuzz::decode_pieces(coding, caps, [a, b], None);
        assert!(
            split == whole,
            "{coding} cut at {cut}: {split:?}, whole {whole:?}"
        );
    }
    let step = decode::STEP;
    for size in (1..=64).chain([step - 1, step, step + 1, 3 * step + 5]) {
        let split = fuzz::decode_pieces(coding, caps, raw.chunks(size), None);
        assert!(
            split == whole,
            "{coding} in pieces of {size}: {split:?}, whole {whole:?}"
        );
    }
    whole
}

fn all_codings() -> [(Coding, Encoder); 5] {
    let [g, d, b, z] = encoders();
    [(Coding::Identity, <[u8]>::to_vec), g, d, b, z]
}

#[test]
fn every_split_decodes_alike() {
    let data = sample();
    let small = &data[..2000];
    for (coding, encode) in all_codings() {
        let full = encode(small);
        let whole = same_in_every_split(coding, &full, &DecodeCaps::default(), 1);
        assert_eq!(
            (whole.data.as_slice(), whole.end),
            (small, Ok(())),
            "{coding}"
        );
        let whole = same_in_every_split(coding, &encode(b"{}"), &DecodeCaps::default(), 1);
        assert_eq!(whole.data, b"{}", "{coding}");
        if coding == Coding::Identity {
            continue;
        }
        let mut refused = Vec::new();
        for cut in [0, 1, 5, full.len() / 2, full.len() - 4, full.len() - 1] {
            refused.push(full[..cut].to_vec());
        }
        let mut trailing = full.clone();
        trailing.push(b'x');
        refused.push(trailing);
        let mut twice = encode(b"{}");
        twice.extend(encode(b"{}"));
        refused.push(twice);
        for raw in refused {
            let whole = same_in_every_split(coding, &raw, &DecodeCaps::default(), 1);
            assert!(
                matches!(whole.end, Err(Error::BadEncoding { .. })),
                "{coding} {} bytes: {whole:?}",
                raw.len()
            );
        }
        // A flipped byte: whatever it gives, it gives in every split.
        let mut flipped = full.clone();
        flipped[full.len() / 3] ^= 0x10;
        same_in_every_split(coding, &flipped, &DecodeCaps::default(), 1);
    }
}

/// 2 MiB of zeros, compressed as hard as each coding can.
fn zero_bombs() -> Vec<(Coding, Vec<u8>)> {
    let zeros = vec![0u8; 2 << 20];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&zeros).unwrap();
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zl.write_all(&zeros).unwrap();
    vec![
        (Coding::Gzip, gz.finish().unwrap()),
        (Coding::Deflate, zl.finish().unwrap()),
        (Coding::Br, brotli(&zeros)),
        (Coding::Zstd, zstd(&zeros)),
        (Coding::Zstd, zstd_rle_bomb()),
    ]
}

#[test]
fn bombs_stop_alike_in_every_split() {
    let size_cap = DecodeCaps {
        max_decoded_bytes: 256 << 10,
        max_ratio: u64::MAX,
        ratio_grace_bytes: 0,
    };
    for (coding, raw) in zero_bombs() {
        let stride = raw.len() / 16 + 1;
        let whole = same_in_every_split(coding, &raw, &size_cap, stride);
        assert_eq!(
            whole.end,
            Err(Error::DecodedTooLarge(256 << 10)),
            "{coding}"
        );
        assert_eq!(whole.data.len(), 256 << 10, "{coding}");
        let whole = same_in_every_split(coding, &raw, &DecodeCaps::default(), stride);
        assert_eq!(whole.end, Err(Error::RatioTooHigh(200)), "{coding}");
        // Stopped as the output grew past the grace, not after inflating.
        assert!(
            whole.data.len() <= (64 << 10) + decode::PIECE,
            "{coding}: {whole:?}"
        );
    }
}

#[test]
fn a_consumer_that_stops_gets_a_prefix_and_no_error() {
    let data = sample();
    for (coding, encode) in all_codings() {
        let raw = encode(&data);
        for stop in [0, 1, 1000, data.len() - 1] {
            let early =
                fuzz::decode_pieces(coding, &DecodeCaps::default(), raw.chunks(100), Some(stop));
            assert_eq!(early.end, Ok(()), "{coding} stop at {stop}");
            assert!(data.starts_with(&early.data), "{coding} stop at {stop}");
            assert!(early.data.len() >= stop.max(1), "{coding} stop at {stop}");
            assert!(
                early.data.len() <= stop + decode::PIECE,
                "{coding} stop at {stop}"
            );
        }
        // A truncated stream whose consumer stopped before its end: the
        // consumer's choice, not an error.
        let cut = &raw[..raw.len() - 1];
        let early = fuzz::decode_pieces(coding, &DecodeCaps::default(), [cut], Some(10));
        assert_eq!(early.end, Ok(()), "{coding}");
    }
}

#[test]
fn brotli_large_window_is_refused() {
    // The large-window extension is not RFC 7932 `br`: its windows reach
    // 1 GiB of memory.
    let params = brotli::enc::BrotliEncoderParams {
        large_window: true,
        lgwin: 26,
        quality: 1,
        ..Default::default()
    };
    let mut raw = Vec::new();
    brotli::BrotliCompress(&mut &sample()[..], &mut raw, &params).unwrap();
    let e = decode_error(Coding::Br, raw, DecodeCaps::default());
    assert!(matches!(e, Error::BadEncoding { .. }), "{e}");
    // The same at the standard's largest window decodes.
    let params = brotli::enc::BrotliEncoderParams {
        lgwin: 24,
        quality: 1,
        ..Default::default()
    };
    let mut raw = Vec::new();
    brotli::BrotliCompress(&mut &sample()[..], &mut raw, &params).unwrap();
    assert_eq!(
        decode_all(Coding::Br, raw, DecodeCaps::default()).unwrap(),
        sample()
    );
}

#[test]
fn zstd_refuses_oversized_blocks_before_holding_them() {
    // A raw block that says it is 1 MiB: refused from its header alone.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 13 << 3];
    let header: u32 = 1 | ((1 << 20) << 3);
    frame.extend_from_slice(&header.to_le_bytes()[..3]);
    let mut dec = Decoder::new(Coding::Zstd, DecodeCaps::default());
    let e = dec.push(&frame, |_| true).unwrap_err();
    assert!(matches!(e, Error::BadEncoding { .. }), "{e}");
    // And the decoder stays failed.
    assert_eq!(dec.push(&[0; 16], |_| true), Err(e.clone()));
    assert_eq!(dec.finish(|_| true), Err(e));
}

// === fuzz entry points, bounded, on stable ===

fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("Content-Length: 5\r\n"),
        Just("Transfer-Encoding: chunked\r\n"),
        Just("Connection: close, X-Drop\r\n"),
        Just("X-Drop: 1\r\n"),
        Just("Expect: 100-continue\r\n"),
        Just("Content-Encoding: gzip\r\n"),
        Just("Keep-Alive: 1\r\n"),
        Just("X-Obs: caf\u{e9}\r\n"),
    ];
    (
        prop_oneof![
            Just("GET / "),
            Just("POST /events/add?x=1 "),
            Just("GET http://h/p ")
        ],
        proptest::collection::vec(field, 0..5),
    )
        .prop_map(|(line, fields)| {
            let mut s = format!("{line}HTTP/1.1\r\nHost: h\r\n");
            for f in fields {
                s.push_str(f);
            }
            s.push_str("\r\n");
            s.into_bytes()
        })
}

fn mutate(mut raw: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        if raw.is_empty() {
            raw.push(byte);
            continue;
        }
        let i = at % raw.len();
        match op % 3 {
            0 => raw[i] = byte,
            1 => raw.insert(i, byte),
            _ => {
                raw.remove(i);
            }
        }
    }
    raw
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_head(raw in valid_request(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4)) {
        fuzz::head(&mutate(raw, &edits));
    }

    #[test]
    fn fuzz_head_noise(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
        fuzz::head(&raw);
    }

    #[test]
    fn fuzz_chunked(seed in any::<u8>(), (raw, _) in chunked_body(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4)) {
        let mut data = vec![seed];
        data.extend(mutate(raw, &edits));
        fuzz::chunked(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fuzz_decode(pick in 0u8..5, edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4)) {
        let data = br#"{"Event":{"uuid":"x","Attribute":[{"type":"ip-dst","value":"10.0.0.1"}]}}"#;
        let raw = match pick {
            0 => data.to_vec(),
            1 => gzip(data),
            2 => zlib(data),
            3 => brotli(data),
            _ => zstd(data),
        };
        let mut input = vec![pick];
        input.extend(mutate(raw, &edits));
        fuzz::decode(&input);
    }
}

#[test]
fn header_helpers_take_slices_and_heads() {
    let head =
        req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Encoding: br\r\nConnection: close\r\n\r\n");
    assert_eq!(content_coding(&head), Ok(Coding::Br));
    assert_eq!(content_coding(&head.headers), Ok(Coding::Br));
    assert_eq!(content_coding(&head.headers[..]), Ok(Coding::Br));
    assert!(connection_close(&head.headers[..]));
    assert!(head::fields(&head.headers, "HOST").count() == 1);
    assert_eq!(head::unique(&head.headers, "x"), Ok(None));
    let twice = req_ok("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nx: 2\r\n\r\n");
    assert_eq!(
        head::unique(&twice.headers, "x"),
        Err(Error::DuplicateHeader("x"))
    );
    assert!(twice.headers[1].is("X") && twice.headers[2].is("X"));
    assert_eq!(twice.headers[2].text(), Some("2"));
}
