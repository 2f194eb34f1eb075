//! HTTP-level attacks and relay behaviour through the real explicit-proxy
//! listener, against the real fake peer, with raw bytes over TCP inside a
//! network namespace the test creates.
//!
//! The client is `instance_2_2` (127.20.0.2) talking to `instance_2_1`
//! (`instance1-comp2.com:443`, 127.20.0.1) unless a test says otherwise.
//! Every refusal is checked twice: the status the client got, and that the
//! peer received nothing (the peer records every request it reads).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// instance_2_2: the pushing client.
const SRC: &str = "127.20.0.2";
/// instance_2_1, as the client names it.
const DST: &str = "instance1-comp2.com:443";
/// instance_1_2: the pulling client of pull.json.
const PULL_SRC: &str = "127.10.0.2";
/// instance_1_1, as the pulling client names it.
const PULL_DST: &str = "instance1-comp1.com:443";
/// The pinned event-view URL of pull.json.
const VIEW: &str = "/events/view/385283a1-b5e0-4e10-a532-dce11c365a56/deleted[]:0/deleted[]:1/excludeGalaxy:1/includeEventCorrelations:0/includeFeedCorrelations:0/includeWarninglistHits:0/excludeLocalTags:1";
const PUSH: &str = "/events/add/metadata:1";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{SHARED}/fixtures/{name}")).unwrap()
}

fn allowed_event() -> Vec<u8> {
    fixture("test_event_non-blocked.json")
}

fn blocked_event() -> Vec<u8> {
    fixture("test_event_blocked_tags.json")
}

/// An absolute-form head to `dst` with MISP's usual fields, `extra` lines
/// (each ending in CRLF) before the empty line.
fn head_to(method: &str, dst: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} http://{dst}{path} HTTP/1.1\r\nHost: {dst}\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: MISP 2.5.1\r\n{extra}\r\n"
    )
}

fn head(method: &str, path: &str, extra: &str) -> String {
    head_to(method, DST, path, extra)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A push with `Content-Length` framing.
fn post(path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    cat(&[
        head(
            "POST",
            path,
            &format!("{extra}Content-Length: {}\r\n", body.len()),
        )
        .as_bytes(),
        body,
    ])
}

/// `body` as chunks of 500 bytes and the last chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(500) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Give a wrongly forwarded request time to be recorded before checking
/// that the peer got nothing.
fn settle() {
    std::thread::sleep(Duration::from_millis(150));
}

/// Send `bytes` on a new connection; the status must be one of `statuses`
/// and the peer must have received nothing. Problems go to `failures`.
fn expect_refused(
    rig: &Rig,
    name: &str,
    bytes: &[u8],
    statuses: &[u16],
    failures: &mut Vec<String>,
) {
    let before = rig.count();
    let r = rig.send(SRC, bytes, false);
    settle();
    let new = rig.since(before);
    let mut problems = Vec::new();
    match &r {
        None => problems.push("no response".to_string()),
        Some(r) => {
            if !statuses.contains(&r.status) {
                problems.push(format!(
                    "status {} (expected one of {statuses:?})",
                    r.status
                ));
            }
            problems.extend(forbidden_json_problems(r));
        }
    }
    if !new.is_empty() {
        let paths: Vec<_> = new.iter().map(|e| e["path"].to_string()).collect();
        problems.push(format!(
            "peer received {} request(s): {}",
            new.len(),
            paths.join(", ")
        ));
    }
    if !problems.is_empty() {
        failures.push(format!("{name}: {}", problems.join("; ")));
    }
}

fn finish(rig: &Rig, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}\n--- guard log (tail) ---\n{}",
        failures.len(),
        failures.join("\n"),
        rig.log_tail(40)
    );
}

/// Whether the connection is closed: the next read gives end of stream or
/// an error, never more bytes.
fn closed(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn refused_framings_reach_nothing() {
    if !can_run("refused_framings_reach_nothing") {
        return;
    }
    let rig = Rig::proxy("framing", serde_json::json!({}));
    let ev = allowed_event();
    let len = ev.len();
    let te = |extra: &str, body: &[u8]| cat(&[head("POST", PUSH, extra).as_bytes(), body]);
    let te_chunked = |body: &[u8]| te("Transfer-Encoding: chunked\r\n", body);
    let many_headers: String = (0..150).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
    let big_header = format!("X-Pad: {}\r\n", "a".repeat(70 * 1024));
    let long_ext = format!("5;{}\r\nabcde\r\n0\r\n\r\n", "e".repeat(300));

    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("CL then TE", te(&format!("Content-Length: {len}\r\nTransfer-Encoding: chunked\r\n"), &chunked(&ev)), &[400]),
        ("TE then CL", te(&format!("Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n"), &chunked(&ev)), &[400]),
        ("two equal CLs", te(&format!("Content-Length: {len}\r\nContent-Length: {len}\r\n"), &ev), &[400]),
        ("two different CLs", te(&format!("Content-Length: {len}\r\nContent-Length: {}\r\n", len + 1), &ev), &[400]),
        ("CL list 5, 5", te("Content-Length: 5, 5\r\n", b"abcde"), &[400]),
        ("CL +5", te("Content-Length: +5\r\n", b"abcde"), &[400]),
        ("CL -5", te("Content-Length: -5\r\n", b"abcde"), &[400]),
        ("CL 0x5", te("Content-Length: 0x5\r\n", b"abcde"), &[400]),
        ("TE chunked, identity", te("Transfer-Encoding: chunked, identity\r\n", &chunked(&ev)), &[400]),
        ("TE identity, chunked", te("Transfer-Encoding: identity, chunked\r\n", &chunked(&ev)), &[400]),
        ("TE twice", te("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", &chunked(&ev)), &[400]),
        // RFC 9112 §6.1: an unknown transfer coding is answered 501.
        ("TE gzip", te("Transfer-Encoding: gzip\r\n", &ev), &[501]),
        ("TE with space before colon", te("Transfer-Encoding : chunked\r\n", &chunked(&ev)), &[400]),
        ("obs-fold", te(&format!("Content-Length: {len}\r\nX-Folded: a\r\n  b\r\n"), &ev), &[400]),
        ("obs-fold of TE", te("Transfer-Encoding:\r\n chunked\r\n", &chunked(&ev)), &[400]),
        (
            "bare LF line endings",
            cat(&[
                format!("POST http://{DST}{PUSH} HTTP/1.1\nHost: {DST}\nContent-Length: {len}\n\n").as_bytes(),
                &ev,
            ]),
            &[400],
        ),
        (
            "bare LF in one line",
            cat(&[head("POST", PUSH, &format!("X-A: 1\nContent-Length: {len}\r\n")).as_bytes(), &ev]),
            &[400],
        ),
        ("bare CR", cat(&[head("POST", PUSH, &format!("X-A: 1\rContent-Length: {len}\r\n")).as_bytes(), &ev]), &[400]),
        ("chunk size 0x5", te_chunked(b"0x5\r\nabcde\r\n0\r\n\r\n"), &[400]),
        ("chunk size -5", te_chunked(b"-5\r\nabcde\r\n0\r\n\r\n"), &[400]),
        ("chunk size zz", te_chunked(b"zz\r\nabcde\r\n0\r\n\r\n"), &[400]),
        ("chunk size overflow", te_chunked(b"fffffffffffffffff\r\nabcde\r\n0\r\n\r\n"), &[400, 413]),
        ("chunk data longer than size", te_chunked(b"3\r\nabcde\r\n0\r\n\r\n"), &[400]),
        ("chunk extension over the limit", te_chunked(long_ext.as_bytes()), &[400]),
        ("head over 64 KiB", te(&format!("{big_header}Content-Length: {len}\r\n"), &ev), &[431]),
        ("150 header fields", te(&format!("{many_headers}Content-Length: {len}\r\n"), &ev), &[431]),
        (
            "invalid method",
            cat(&[
                format!("P(ST http://{DST}{PUSH} HTTP/1.1\r\nHost: {DST}\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
                &ev,
            ]),
            &[400],
        ),
        (
            "target with a space",
            cat(&[
                format!("POST http://{DST}/events/add /metadata:1 HTTP/1.1\r\nHost: {DST}\r\nContent-Length: {len}\r\n\r\n")
                    .as_bytes(),
                &ev,
            ]),
            // httparse reads the text after the space as the version.
            &[400, 505],
        ),
        (
            "HTTP/1.0",
            cat(&[
                format!("POST http://{DST}{PUSH} HTTP/1.0\r\nHost: {DST}\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
                &ev,
            ]),
            &[505],
        ),
        (
            "HTTP/2.0 in an HTTP/1 line",
            format!("GET http://{DST}/servers/getVersion HTTP/2.0\r\nHost: {DST}\r\n\r\n").into_bytes(),
            &[400, 505],
        ),
        ("NUL in a header", te(&format!("X-A: a\0b\r\nContent-Length: {len}\r\n"), &ev), &[400]),
        ("NUL in a header name", te(&format!("X-\0A: ab\r\nContent-Length: {len}\r\n"), &ev), &[400]),
        ("two Host fields", te(&format!("Host: {DST}\r\nContent-Length: {len}\r\n"), &ev), &[400]),
        ("Expect other than 100-continue", te(&format!("Expect: 200-ok\r\nContent-Length: {len}\r\n"), &ev), &[417]),
        (
            "leading empty line",
            cat(&[b"\r\n", head("POST", PUSH, &format!("Content-Length: {len}\r\n")).as_bytes(), &ev]),
            &[400],
        ),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (name, bytes, statuses) in &cases {
        expect_refused(&rig, name, bytes, statuses, &mut failures);
    }
    // Each of these refusals is fatal: the guard says so and closes.
    let r = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), rig.listen);
        c.write_all(&te(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
        ))
        .unwrap();
        let r = read_response(&mut c, false);
        (r, closed(&mut c))
    });
    match r {
        (Some(r), true) if r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) => {}
        (r, closed) => failures.push(format!(
            "CL+TE: answer without Connection: close or connection left open (closed={closed}): {:?}",
            r.map(|r| r.head)
        )),
    }
    finish(&rig, failures);
}

#[test]
fn smuggled_second_request_never_reaches_the_peer() {
    if !can_run("smuggled_second_request_never_reaches_the_peer") {
        return;
    }
    let rig = Rig::proxy("smuggle", serde_json::json!({}));
    let ev = allowed_event();
    let forbidden = format!("GET http://{DST}/users HTTP/1.1\r\nHost: {DST}\r\n\r\n");
    let mut failures = Vec::new();
    let never_users = |failures: &mut Vec<String>, case: &str, before: usize| {
        settle();
        for e in rig.since(before) {
            if e["path"].as_str().is_some_and(|p| p.contains("/users")) {
                failures.push(format!(
                    "{case}: the smuggled /users request reached the peer"
                ));
            }
            let body = recorded_body(&e);
            if !body.is_empty() && body != ev {
                failures.push(format!(
                    "{case}: the peer received a body other than the event"
                ));
            }
        }
    };

    // 1. TE+CL whose chunked body ends and is followed by a second request:
    // refused as a whole, the connection closed, nothing forwarded.
    let before = rig.count();
    let bytes = cat(&[
        head(
            "POST",
            PUSH,
            &format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                ev.len()
            ),
        )
        .as_bytes(),
        &chunked(&ev),
        forbidden.as_bytes(),
    ]);
    let (first, second) = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), rig.listen);
        let _ = c.write_all(&bytes);
        let first = read_response(&mut c, false);
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        (first, read_response(&mut c, false))
    });
    if first.as_ref().map(|r| r.status) != Some(400) {
        failures.push(format!(
            "TE+CL smuggle: first answer {:?} (expected 400)",
            first.map(|r| r.head)
        ));
    }
    if let Some(s) = second {
        failures.push(format!("TE+CL smuggle: a second answer came: {}", s.head));
    }
    settle();
    if rig.count() != before {
        failures.push("TE+CL smuggle: the peer received a request".into());
    }

    // 2. A well-framed chunked push with a forbidden request right after its
    // last chunk, in the same write: two exchanges, each judged on its own.
    // The second is refused whatever the first's verdict was.
    let before = rig.count();
    let bytes = cat(&[
        head("POST", PUSH, "Transfer-Encoding: chunked\r\n").as_bytes(),
        &chunked(&ev),
        forbidden.as_bytes(),
    ]);
    let (first, second) = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), rig.listen);
        let _ = c.write_all(&bytes);
        let first = read_response(&mut c, false);
        (first, read_response(&mut c, false))
    });
    if first.is_none() {
        failures.push("chunked then /users: no first answer".into());
    }
    match second {
        Some(r) if r.status == 403 => failures.extend(forbidden_json_problems(&r)),
        Some(r) => failures.push(format!(
            "chunked then /users: second answer {} (expected 403)",
            r.status
        )),
        // Closing after a refused push is also safe: /users was not served.
        None if first.as_ref().is_some_and(|r| r.status != 200) => {}
        None => failures.push("chunked then /users: no answer to the second request".into()),
    }
    never_users(&mut failures, "chunked then /users", before);

    // 3. Content-Length shorter than what follows: the rest is the next
    // request, judged on its own.
    let before = rig.count();
    let bytes = cat(&[post(PUSH, "", &ev).as_slice(), forbidden.as_bytes()]);
    let (_, second) = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), rig.listen);
        let _ = c.write_all(&bytes);
        let first = read_response(&mut c, false);
        (first, read_response(&mut c, false))
    });
    if let Some(r) = &second {
        if r.status != 403 {
            failures.push(format!(
                "CL then /users: second answer {} (expected 403)",
                r.status
            ));
        }
    }
    never_users(&mut failures, "CL then /users", before);

    // 4. A chunk whose data runs past its size, carrying a request.
    let before = rig.count();
    let mut body = b"5\r\nabcde".to_vec();
    body.extend_from_slice(forbidden.as_bytes());
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    expect_refused(
        &rig,
        "chunk data carrying a request",
        &cat(&[
            head("POST", PUSH, "Transfer-Encoding: chunked\r\n").as_bytes(),
            &body,
        ]),
        &[400],
        &mut failures,
    );
    never_users(&mut failures, "chunk data carrying a request", before);
    finish(&rig, failures);
}

#[test]
fn keep_alive_and_pipelining() {
    if !can_run("keep_alive_and_pipelining") {
        return;
    }
    let rig = Rig::proxy("keepalive", serde_json::json!({}));
    let version = head("GET", "/servers/getVersion", "");
    let users = head("GET", "/users", "");
    let mut failures = Vec::new();

    // Two requests, one after the other, on one connection.
    let before = rig.count();
    let (a, b) = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), rig.listen);
        let a = roundtrip(&mut c, version.as_bytes(), false);
        let b = roundtrip(&mut c, version.as_bytes(), false);
        (a, b)
    });
    let new = rig.since(before);
    for (n, r) in [("first", &a), ("second", &b)] {
        if r.as_ref().map(|r| r.status) != Some(200) {
            failures.push(format!(
                "keep-alive: {n} answer {:?}",
                r.as_ref().map(|r| &r.head)
            ));
        }
    }
    if new.len() != 2 || new.iter().any(|e| e["path"] != "/servers/getVersion") {
        failures.push(format!(
            "keep-alive: peer received {} request(s) (expected 2 getVersion)",
            new.len()
        ));
    }

    // Pipelined in one write: allowed, then forbidden, then allowed again.
    let before = rig.count();
    let bytes = [version.as_bytes(), users.as_bytes(), version.as_bytes()].concat();
    let answers = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), rig.listen);
        c.write_all(&bytes).unwrap();
        (0..3)
            .map(|_| read_response(&mut c, false).map(|r| r.status))
            .collect::<Vec<_>>()
    });
    settle();
    let new = rig.since(before);
    if answers != [Some(200), Some(403), Some(200)] {
        failures.push(format!(
            "pipelining: answers {answers:?} (expected 200, 403, 200)"
        ));
    }
    if new.len() != 2 || new.iter().any(|e| e["path"] != "/servers/getVersion") {
        let paths: Vec<_> = new.iter().map(|e| e["path"].to_string()).collect();
        failures.push(format!(
            "pipelining: peer received {paths:?} (expected getVersion twice)"
        ));
    }
    finish(&rig, failures);
}

/// The allowed half of `Expect: 100-continue` needs an allowed body.
#[test]
fn expect_continue_allowed_push() {
    if !can_run("expect_continue_allowed_push") {
        return;
    }
    let rig = Rig::proxy("expect", serde_json::json!({}));
    let ev = allowed_event();
    let h = head(
        "POST",
        PUSH,
        &format!("Expect: 100-continue\r\nContent-Length: {}\r\n", ev.len()),
    );
    let before = rig.count();
    let (interim, during, last) = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), rig.listen);
        c.write_all(h.as_bytes()).unwrap();
        let interim = read_response(&mut c, true);
        // Nothing goes upstream before the body has been judged.
        let during = rig.count() - before;
        c.write_all(&ev).unwrap();
        (interim, during, read_response(&mut c, false))
    });
    let new = rig.since(before);
    let mut failures = Vec::new();
    if interim.as_ref().map(|r| r.status) != Some(100) {
        failures.push(format!(
            "interim answer {:?} (expected 100 Continue)",
            interim.map(|r| r.head)
        ));
    }
    if during != 0 {
        failures.push("the peer got a request before the body was sent".into());
    }
    if last.as_ref().map(|r| r.status) != Some(200) {
        failures.push(format!(
            "final answer {:?} (expected 200)",
            last.map(|r| r.head)
        ));
    }
    if new.len() != 1 {
        failures.push(format!("peer received {} requests (expected 1)", new.len()));
    } else {
        if recorded_body(&new[0]) != ev {
            failures.push("peer did not receive the exact body".into());
        }
        if !recorded_header(&new[0], "expect").is_empty() {
            failures.push("Expect was forwarded".into());
        }
    }
    finish(&rig, failures);
}

#[test]
fn expect_continue_to_forbidden_endpoint_gets_403_without_100() {
    if !can_run("expect_continue_to_forbidden_endpoint_gets_403_without_100") {
        return;
    }
    let rig = Rig::proxy("expect403", serde_json::json!({}));
    let ev = allowed_event();
    let mut failures = Vec::new();
    for path in ["/admin/users/add", "/users", "/events/delete/1"] {
        let h = head(
            "POST",
            path,
            &format!("Expect: 100-continue\r\nContent-Length: {}\r\n", ev.len()),
        );
        let before = rig.count();
        let first = rig.ns.run(|| {
            let mut c = connect(SRC.parse().unwrap(), rig.listen);
            c.write_all(h.as_bytes()).unwrap();
            read_response(&mut c, false)
        });
        settle();
        match first {
            Some(r) if r.status == 403 => failures.extend(forbidden_json_problems(&r)),
            Some(r) => failures.push(format!(
                "{path}: first answer {} (expected 403, no 100)",
                r.status
            )),
            None => failures.push(format!("{path}: no answer")),
        }
        if rig.count() != before {
            failures.push(format!("{path}: the peer received a request"));
        }
    }
    finish(&rig, failures);
}

#[test]
fn bodies_on_get_and_method_overrides_refused() {
    if !can_run("bodies_on_get_and_method_overrides_refused") {
        return;
    }
    let rig = Rig::proxy("getbody", serde_json::json!({}));
    let ev = allowed_event();
    let mut failures = Vec::new();
    let get_cl = cat(&[
        head(
            "GET",
            "/servers/getVersion",
            &format!("Content-Length: {}\r\n", ev.len()),
        )
        .as_bytes(),
        &ev,
    ]);
    let get_te = cat(&[
        head(
            "GET",
            "/servers/getVersion",
            "Transfer-Encoding: chunked\r\n",
        )
        .as_bytes(),
        &chunked(&ev),
    ]);
    let view_cl = cat(&[
        head_to(
            "GET",
            PULL_DST,
            VIEW,
            &format!("Content-Length: {}\r\n", ev.len()),
        )
        .as_bytes(),
        &ev,
    ]);
    expect_refused(
        &rig,
        "GET with Content-Length body",
        &get_cl,
        &[400, 403],
        &mut failures,
    );
    expect_refused(
        &rig,
        "GET with chunked body",
        &get_te,
        &[400, 403],
        &mut failures,
    );
    // To the pull source's own instance (from instance_2_2 → instance_1_1
    // is compartment 2 → 1: reachable).
    expect_refused(
        &rig,
        "GET events/view with a body",
        &view_cl,
        &[400, 403],
        &mut failures,
    );
    for name in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "x_http_method_override",
    ] {
        let bytes = head("GET", "/servers/getVersion", &format!("{name}: DELETE\r\n"));
        expect_refused(
            &rig,
            &format!("{name}: DELETE"),
            bytes.as_bytes(),
            &[403],
            &mut failures,
        );
        let bytes = post(PUSH, &format!("{name}: DELETE\r\n"), &ev);
        expect_refused(
            &rig,
            &format!("push with {name}"),
            &bytes,
            &[403],
            &mut failures,
        );
    }
    finish(&rig, failures);
}

#[test]
fn path_tricks_refused() {
    if !can_run("path_tricks_refused") {
        return;
    }
    let rig = Rig::proxy("paths", serde_json::json!({}));
    let ev = allowed_event();
    let mut failures = Vec::new();
    let paths = [
        "/events/ADD",
        "/events/ADD/metadata:1",
        "/Events/add/metadata:1",
        "/events/add/../add",
        "/events/add/../add/metadata:1",
        "/events/./add/metadata:1",
        "/events/%61dd",
        "/events/%61dd/metadata:1",
        "/events/add;x",
        "/events/add;x/metadata:1",
        "/events/add?x=1",
        "/events/add/metadata:1?x=1",
        "/events/add.xml",
        "/events/add/metadata:1.xml",
        "//events/add/metadata:1",
        "/events//add/metadata:1",
        "/events/add/metadata:1/",
        "/users/../events/add/metadata:1",
        "/events/add/metadata%3A1",
    ];
    for path in paths {
        expect_refused(
            &rig,
            &format!("POST {path}"),
            &post(path, "", &ev),
            &[400, 403],
            &mut failures,
        );
    }
    // The first six of the brief must be refused by the sync table (403),
    // not by accident elsewhere.
    for path in [
        "/events/ADD",
        "/events/add/../add",
        "/events/%61dd",
        "/events/add;x",
        "/events/add?x=1",
        "/events/add.xml",
    ] {
        let r = rig.send(SRC, &post(path, "", &ev), false);
        if r.as_ref().map(|r| r.status) != Some(403) {
            failures.push(format!(
                "POST {path}: {:?} (expected 403)",
                r.map(|r| r.status)
            ));
        }
    }
    finish(&rig, failures);
}

#[test]
fn host_header_naming_another_instance_refused() {
    if !can_run("host_header_naming_another_instance_refused") {
        return;
    }
    let rig = Rig::proxy("host", serde_json::json!({}));
    let ev = allowed_event();
    let mut failures = Vec::new();
    for host in [
        "instance2-comp2.com:443",
        "instance1-comp1.com:443",
        "127.20.0.1:443",
        "instance1-comp2.com:8443",
    ] {
        let get = format!("GET http://{DST}/servers/getVersion HTTP/1.1\r\nHost: {host}\r\n\r\n");
        expect_refused(
            &rig,
            &format!("GET with Host {host}"),
            get.as_bytes(),
            &[400, 403],
            &mut failures,
        );
        let push = cat(&[
            format!(
                "POST http://{DST}{PUSH} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
                ev.len()
            )
            .as_bytes(),
            &ev,
        ]);
        expect_refused(
            &rig,
            &format!("push with Host {host}"),
            &push,
            &[400, 403],
            &mut failures,
        );
    }
    // Control: the same request with the matching Host passes.
    let get = format!("GET http://{DST}/servers/getVersion HTTP/1.1\r\nHost: {DST}\r\n\r\n");
    let r = rig.send(SRC, get.as_bytes(), false);
    if r.as_ref().map(|r| r.status) != Some(200) {
        failures.push(format!(
            "control with the right Host: {:?}",
            r.map(|r| r.head)
        ));
    }
    finish(&rig, failures);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn refused_content_codings_and_blocked_encoded_pushes() {
    if !can_run("refused_content_codings_and_blocked_encoded_pushes") {
        return;
    }
    let rig = Rig::proxy("codings", serde_json::json!({}));
    let ev = allowed_event();
    let blocked = blocked_event();
    let mut failures = Vec::new();
    // MISP sends identity, gzip or br; anything else is refused before the
    // body is read.
    expect_refused(
        &rig,
        "deflate",
        &post(PUSH, "Content-Encoding: deflate\r\n", &zlib(&ev)),
        &[415],
        &mut failures,
    );
    expect_refused(
        &rig,
        "zstd",
        &post(PUSH, "Content-Encoding: zstd\r\n", &ev),
        &[415],
        &mut failures,
    );
    expect_refused(
        &rig,
        "gzip, br",
        &post(PUSH, "Content-Encoding: gzip, br\r\n", &brotli(&gzip(&ev))),
        &[415],
        &mut failures,
    );
    expect_refused(
        &rig,
        "gzip twice",
        &post(
            PUSH,
            "Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n",
            &gzip(&gzip(&ev)),
        ),
        &[415],
        &mut failures,
    );
    expect_refused(
        &rig,
        "compress",
        &post(PUSH, "Content-Encoding: compress\r\n", &ev),
        &[415],
        &mut failures,
    );
    // A blocked event stays blocked when compressed.
    expect_refused(
        &rig,
        "gzip blocked event",
        &post(PUSH, "Content-Encoding: gzip\r\n", &gzip(&blocked)),
        &[403],
        &mut failures,
    );
    expect_refused(
        &rig,
        "br blocked event",
        &post(PUSH, "Content-Encoding: br\r\n", &brotli(&blocked)),
        &[403],
        &mut failures,
    );
    // A body that is not what its coding says is refused, never passed raw.
    expect_refused(
        &rig,
        "gzip label on plain JSON",
        &post(PUSH, "Content-Encoding: gzip\r\n", &ev),
        &[400, 403, 415],
        &mut failures,
    );
    let mut truncated = gzip(&ev);
    truncated.truncate(truncated.len() - 8);
    expect_refused(
        &rig,
        "truncated gzip",
        &post(PUSH, "Content-Encoding: gzip\r\n", &truncated),
        &[400, 403],
        &mut failures,
    );
    finish(&rig, failures);
}

/// Needs the rule engine: allowed compressed pushes pass byte for byte, and
/// a blocked compressed push names its rule.
#[test]
fn encoded_pushes_judged_on_the_decoded_body() {
    if !can_run("encoded_pushes_judged_on_the_decoded_body") {
        return;
    }
    let rig = Rig::proxy("encoded", serde_json::json!({}));
    let ev = allowed_event();
    let blocked = blocked_event();
    let mut failures = Vec::new();
    for (coding, body) in [("gzip", gzip(&ev)), ("br", brotli(&ev))] {
        let before = rig.count();
        let r = rig.send(
            SRC,
            &post(PUSH, &format!("Content-Encoding: {coding}\r\n"), &body),
            false,
        );
        let new = rig.since(before);
        if r.as_ref().map(|r| r.status) != Some(200) {
            failures.push(format!(
                "{coding} allowed event: {:?}",
                r.map(|r| (r.status, String::from_utf8_lossy(&r.body).to_string()))
            ));
        }
        if new.len() != 1 {
            failures.push(format!(
                "{coding} allowed event: peer got {} requests",
                new.len()
            ));
            continue;
        }
        if recorded_body(&new[0]) != body {
            failures.push(format!(
                "{coding}: peer did not receive the exact compressed bytes"
            ));
        }
        if recorded_header(&new[0], "content-encoding") != [coding] {
            failures.push(format!(
                "{coding}: Content-Encoding not kept: {:?}",
                recorded_header(&new[0], "content-encoding")
            ));
        }
    }
    for (coding, body) in [("gzip", gzip(&blocked)), ("br", brotli(&blocked))] {
        let r = rig.send(
            SRC,
            &post(PUSH, &format!("Content-Encoding: {coding}\r\n"), &body),
            false,
        );
        let errors = r
            .as_ref()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["errors"].as_str().map(str::to_string))
            .unwrap_or_default();
        if !errors.contains("blocked tag: tlp:red at ") {
            failures.push(format!(
                "{coding} blocked event: reason {errors:?} does not name blocked tag: tlp:red"
            ));
        }
    }
    finish(&rig, failures);
}

#[test]
fn gzip_bomb_refused_and_guard_survives() {
    if !can_run("gzip_bomb_refused_and_guard_survives") {
        return;
    }
    let rig = Rig::proxy("bomb", serde_json::json!({}));
    // 300 MB of zeros inside JSON, compressed as a stream: ~300 KB on the
    // wire, far over the 200x ratio cap.
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(br#"{"Event":{"info":""#).unwrap();
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..300 {
            e.write_all(&zeros).unwrap();
        }
        e.write_all(br#""}}"#).unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let mut failures = Vec::new();
    let before = rig.count();
    let r = rig.send(SRC, &post(PUSH, "Content-Encoding: gzip\r\n", &bomb), false);
    settle();
    match &r {
        Some(r) if r.status == 413 => {}
        Some(r) => failures.push(format!(
            "bomb: status {} (expected 413): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )),
        None => failures.push("bomb: no answer".into()),
    }
    if rig.count() != before {
        failures.push("bomb: the peer received a request".into());
    }
    // Still alive and serving.
    let r = rig.send(
        SRC,
        head("GET", "/servers/getVersion", "").as_bytes(),
        false,
    );
    if r.as_ref().map(|r| r.status) != Some(200) {
        failures.push(format!("after the bomb: {:?}", r.map(|r| r.head)));
    }
    finish(&rig, failures);
}

#[test]
fn blocked_pull_answer_never_reaches_the_client() {
    if !can_run("blocked_pull_answer_never_reaches_the_client") {
        return;
    }
    let rig = Rig::proxy("pullblock", serde_json::json!({}));
    let mut failures = Vec::new();
    for chunked_answer in [false, true] {
        let f = format!("{SHARED}/fixtures/test_event_blocked_tags.json");
        rig.peer
            .answer(serde_json::json!({ "body_file": f, "chunked": chunked_answer }));
        let before = rig.count();
        let r = rig.send(
            PULL_SRC,
            head_to("GET", PULL_DST, VIEW, "").as_bytes(),
            false,
        );
        let new = rig.since(before);
        let case = if chunked_answer {
            "chunked answer"
        } else {
            "answer"
        };
        match &r {
            Some(r) => {
                if r.status != 403 {
                    failures.push(format!("{case}: status {} (expected 403)", r.status));
                }
                failures.extend(forbidden_json_problems(r));
                if contains_part_of(&r.body, &blocked_event()) {
                    failures.push(format!("{case}: the blocked answer reached the client"));
                }
            }
            None => failures.push(format!("{case}: no answer")),
        }
        if new.len() != 1 {
            failures.push(format!(
                "{case}: peer received {} requests (expected the one pull)",
                new.len()
            ));
        }
    }
    finish(&rig, failures);
}

/// Checks of a relayed answer: the exact bytes, re-framed with a length.
fn expect_exact_answer(case: &str, r: Option<Response>, want: &[u8], failures: &mut Vec<String>) {
    let Some(r) = r else {
        failures.push(format!("{case}: no answer"));
        return;
    };
    if r.status != 200 {
        failures.push(format!(
            "{case}: status {} (expected 200): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
        return;
    }
    if r.header("transfer-encoding").is_some() {
        failures.push(format!("{case}: answer is still chunked"));
    }
    if r.header("content-length") != Some(want.len().to_string()) {
        failures.push(format!(
            "{case}: Content-Length {:?} (expected {})",
            r.header("content-length"),
            want.len()
        ));
    }
    if r.body != want {
        failures.push(format!("{case}: body differs from what the peer sent"));
    }
}

#[test]
fn chunked_upstream_answer_reframed_uninspected() {
    if !can_run("chunked_upstream_answer_reframed_uninspected") {
        return;
    }
    let rig = Rig::proxy("chunkedup", serde_json::json!({}));
    let f = format!("{SHARED}/fixtures/test_event_non-blocked.json");
    rig.peer
        .answer(serde_json::json!({ "body_file": f, "chunked": true }));
    let r = rig.send(
        SRC,
        head("GET", "/servers/getVersion", "").as_bytes(),
        false,
    );
    let mut failures = Vec::new();
    expect_exact_answer("getVersion chunked", r, &allowed_event(), &mut failures);
    finish(&rig, failures);
}

/// Needs the rule engine: an inspected chunked answer that is allowed.
#[test]
fn chunked_upstream_answer_reframed_inspected() {
    if !can_run("chunked_upstream_answer_reframed_inspected") {
        return;
    }
    let rig = Rig::proxy("chunkedpull", serde_json::json!({}));
    let f = format!("{SHARED}/fixtures/test_event_non-blocked.json");
    rig.peer
        .answer(serde_json::json!({ "body_file": f, "chunked": true }));
    let r = rig.send(
        PULL_SRC,
        head_to("GET", PULL_DST, VIEW, "").as_bytes(),
        false,
    );
    let mut failures = Vec::new();
    expect_exact_answer("events/view chunked", r, &allowed_event(), &mut failures);
    finish(&rig, failures);
}

/// An allowed event of about 20 MB: attributes of type ip-dst, category
/// Network activity, distribution 5 (inherit).
fn large_event() -> Vec<u8> {
    let mut ev: serde_json::Value = serde_json::from_slice(&allowed_event()).unwrap();
    let attrs: Vec<serde_json::Value> = (0..45_000u32)
        .map(|i| {
            serde_json::json!({
                "id": (i + 10).to_string(),
                "type": "ip-dst",
                "category": "Network activity",
                "to_ids": true,
                "uuid": format!("{i:08x}-1b2c-4d3e-8f40-{:012x}", u64::from(i) * 7919),
                "event_id": "1",
                "distribution": "5",
                "timestamp": "1661956302",
                "comment": "generated by relay_http.rs for the spill test, padding padding padding",
                "sharing_group_id": "0",
                "deleted": false,
                "disable_correlation": false,
                "object_id": "0",
                "object_relation": null,
                "first_seen": null,
                "last_seen": null,
                "value": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                "Galaxy": [],
                "ShadowAttribute": []
            })
        })
        .collect();
    ev["Event"]["attribute_count"] = serde_json::Value::String(attrs.len().to_string());
    ev["Event"]["Attribute"] = serde_json::Value::Array(attrs);
    serde_json::to_vec(&ev).unwrap()
}

/// Needs the rule engine: a body far past the in-memory threshold spills
/// and still arrives byte for byte.
#[test]
fn large_push_spills_and_arrives_exact() {
    if !can_run("large_push_spills_and_arrives_exact") {
        return;
    }
    let rig = Rig::proxy(
        "spill",
        serde_json::json!({ "limits": { "hold_memory_bytes": 65536 } }),
    );
    let ev = large_event();
    assert!(ev.len() > 19 << 20, "large event is {} bytes", ev.len());
    let before = rig.count();
    let r = rig.send(SRC, &post(PUSH, "", &ev), false);
    let new = rig.since(before);
    let mut failures = Vec::new();
    if r.as_ref().map(|r| r.status) != Some(200) {
        failures.push(format!(
            "status {:?} (expected 200)",
            r.map(|r| (r.status, String::from_utf8_lossy(&r.body).to_string()))
        ));
    }
    if new.len() != 1 {
        failures.push(format!("peer received {} requests (expected 1)", new.len()));
    } else if recorded_body(&new[0]) != ev {
        failures.push(format!(
            "peer received {} bytes, not the exact {} sent",
            new[0]["body_len"],
            ev.len()
        ));
    }
    // The same event chunked: re-framed with its length, same bytes.
    let before = rig.count();
    let r = rig.send(
        SRC,
        &cat(&[
            head("POST", PUSH, "Transfer-Encoding: chunked\r\n").as_bytes(),
            &chunked(&ev),
        ]),
        false,
    );
    let new = rig.since(before);
    if r.as_ref().map(|r| r.status) != Some(200) {
        failures.push(format!(
            "chunked: status {:?} (expected 200)",
            r.map(|r| r.status)
        ));
    }
    if new.len() != 1 || recorded_body(&new[0]) != ev {
        failures.push("chunked: peer did not receive exactly the event once".into());
    } else if recorded_header(&new[0], "content-length") != [ev.len().to_string()] {
        failures.push(format!(
            "chunked: forwarded Content-Length {:?}",
            recorded_header(&new[0], "content-length")
        ));
    }
    finish(&rig, failures);
}

#[test]
fn answer_encoding_must_be_one_the_client_offered() {
    if !can_run("answer_encoding_must_be_one_the_client_offered") {
        return;
    }
    let rig = Rig::proxy("answerenc", serde_json::json!({}));
    let payload = br#"{"version":"2.5.1","perm_sync":true,"perm_sighting":true,"perm_galaxy_editor":true,"request_encoding":["gzip","br"]}"#;
    let gz = gzip(payload);
    let gz_file = rig.ns.path("answer.gz");
    std::fs::write(&gz_file, &gz).unwrap();
    rig.peer.answer(serde_json::json!({
        "body_file": gz_file.display().to_string(),
        "headers": { "Content-Encoding": "gzip" },
    }));
    let mut failures = Vec::new();

    // No Accept-Encoding: the guard asks for identity; an upstream that
    // answers gzip anyway is refused.
    let before = rig.count();
    let r = rig.send(
        SRC,
        head("GET", "/servers/getVersion", "").as_bytes(),
        false,
    );
    let new = rig.since(before);
    match &r {
        Some(r) if r.status == 502 => {
            if contains_part_of(&r.body, &gz) {
                failures.push("no offer: the encoded answer reached the client".into());
            }
        }
        other => failures.push(format!(
            "no offer: {:?} (expected 502)",
            other.as_ref().map(|r| r.status)
        )),
    }
    if new.len() == 1 && recorded_header(&new[0], "accept-encoding") != ["identity"] {
        failures.push(format!(
            "no offer: upstream was asked for {:?}",
            recorded_header(&new[0], "accept-encoding")
        ));
    }

    // Offered br only: gzip is still not acceptable.
    let r = rig.send(
        SRC,
        head("GET", "/servers/getVersion", "Accept-Encoding: br\r\n").as_bytes(),
        false,
    );
    if r.as_ref().map(|r| r.status) != Some(502) {
        failures.push(format!(
            "br offered, gzip answered: {:?} (expected 502)",
            r.map(|r| r.status)
        ));
    }

    // Offered gzip (and an unknown coding): passes with the encoding kept.
    let before = rig.count();
    let r = rig.send(
        SRC,
        head(
            "GET",
            "/servers/getVersion",
            "Accept-Encoding: gzip, compress\r\n",
        )
        .as_bytes(),
        false,
    );
    let new = rig.since(before);
    match &r {
        Some(r) if r.status == 200 => {
            if r.body != gz {
                failures.push("gzip offered: answer bytes differ".into());
            }
            if r.header("content-encoding").as_deref() != Some("gzip") {
                failures.push("gzip offered: Content-Encoding not kept".into());
            }
        }
        other => failures.push(format!(
            "gzip offered: {:?} (expected 200)",
            other.as_ref().map(|r| r.status)
        )),
    }
    if new.len() == 1 && recorded_header(&new[0], "accept-encoding") != ["gzip"] {
        failures.push(format!(
            "gzip offered: upstream was asked for {:?}",
            recorded_header(&new[0], "accept-encoding")
        ));
    }
    finish(&rig, failures);
}

/// A body that is valid JSON and a valid form at once would be judged as
/// one document and read by PHP as another: only JSON bodies pass.
#[test]
fn bodies_not_declared_json_are_refused() {
    if !can_run("bodies_not_declared_json_are_refused") {
        return;
    }
    let rig = Rig::proxy("ctype", serde_json::json!({}));
    let form = br#"{"Event":{"distribution":"1","info":"x&Event[Tag][0][name]=tlp:red&z="}}"#;
    let mut failures = Vec::new();
    for (case, ctype) in [
        (
            "form-urlencoded",
            "Content-Type: application/x-www-form-urlencoded\r\n",
        ),
        (
            "multipart",
            "Content-Type: multipart/form-data; boundary=x\r\n",
        ),
        ("no Content-Type", ""),
        (
            "two Content-Types",
            "Content-Type: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        ),
    ] {
        let bytes = cat(&[
            format!(
                "POST http://{DST}{PUSH} HTTP/1.1\r\nHost: {DST}\r\nAccept: application/json\r\n{ctype}Content-Length: {}\r\n\r\n",
                form.len()
            )
            .as_bytes(),
            form,
        ]);
        expect_refused(&rig, case, &bytes, &[403], &mut failures);
    }
    // The same body declared as JSON is judged as JSON and passes.
    let before = rig.count();
    let r = rig.send(SRC, &post(PUSH, "", form), false);
    if r.map(|r| r.status) != Some(200) || rig.since(before).len() != 1 {
        failures.push("the JSON-declared body did not pass".into());
    }
    finish(&rig, failures);
}

/// An error answer where a document was expected is not judged, so its
/// body is withheld: a 404 or 302 carrying a blocked event gives the
/// client the status with the guard's own text, none of the event.
#[test]
fn error_answers_to_pulls_carry_nothing_of_their_body() {
    if !can_run("error_answers_to_pulls_carry_nothing_of_their_body") {
        return;
    }
    let rig = Rig::proxy("pullerr", serde_json::json!({}));
    let mut failures = Vec::new();
    let f = format!("{SHARED}/fixtures/test_event_blocked_tags.json");
    for status in [404, 302, 500] {
        rig.peer.answer(serde_json::json!({
            "status": status, "body_file": f, "headers": { "Location": "/events/1" }
        }));
        let r = rig.send(
            PULL_SRC,
            head_to("GET", PULL_DST, VIEW, "").as_bytes(),
            false,
        );
        match r {
            Some(r) => {
                if r.status != status {
                    failures.push(format!("{status}: status {} reached the client", r.status));
                }
                if contains_part_of(&r.body, &blocked_event())
                    || r.body.windows(7).any(|w| w == b"tlp:red")
                {
                    failures.push(format!("{status}: the withheld body reached the client"));
                }
                if !String::from_utf8_lossy(&r.body).contains("withheld") {
                    failures.push(format!(
                        "{status}: no guard text in {:?}",
                        String::from_utf8_lossy(&r.body)
                    ));
                }
            }
            None => failures.push(format!("{status}: no answer")),
        }
    }
    finish(&rig, failures);
}

/// `Connection` naming a header would drop it on forwarding, after the
/// guard checked it.
#[test]
fn connection_naming_a_checked_header_is_refused() {
    if !can_run("connection_naming_a_checked_header_is_refused") {
        return;
    }
    let rig = Rig::proxy("conntok", serde_json::json!({}));
    let mut failures = Vec::new();
    for token in ["Content-Type", "Host", "close, Content-Encoding"] {
        let bytes = post(PUSH, &format!("Connection: {token}\r\n"), &allowed_event());
        expect_refused(
            &rig,
            &format!("Connection: {token}"),
            &bytes,
            &[400],
            &mut failures,
        );
    }
    finish(&rig, failures);
}

/// A connection from an address that is no instance gets its 403 and is
/// closed: it cannot keep a slot by asking again and again.
#[test]
fn unknown_source_is_answered_once_and_closed() {
    if !can_run("unknown_source_is_answered_once_and_closed") {
        return;
    }
    let rig = Rig::proxy("unknownsrc", serde_json::json!({}));
    let listen = rig.listen;
    let closed_after = rig.ns.run(|| {
        let mut c = connect("127.99.0.7".parse().unwrap(), listen);
        let req = head("GET", "/servers/getVersion", "");
        let first = roundtrip(&mut c, req.as_bytes(), false).map(|r| r.status);
        let _ = c.write_all(req.as_bytes());
        (first, closed(&mut c))
    });
    assert_eq!(closed_after, (Some(403), true));
}

/// An upstream that stops reading gives the client a gateway error within
/// the body-idle time, not a hang.
#[test]
fn upstream_that_stops_reading_gives_a_gateway_error() {
    if !can_run("upstream_that_stops_reading_gives_a_gateway_error") {
        return;
    }
    // instance_1_4 moves to port 4444, where a listener accepts and never
    // reads; instance_1_1 (compartment 1) may push to it (compartment 4).
    let ns = Netns::new("stall");
    let mut config = conformance_config(serde_json::json!({
        "timeouts": { "body_idle": 2 },
        "listen": { "transparent": [] },
        "spill_dir": ns.dir.path().display().to_string(),
    }));
    config["instances"]["instance_1_4"]["port"] = serde_json::json!(4444);
    let hole: SocketAddr = "127.40.0.1:4444".parse().unwrap();
    let listener = ns.run(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(2048).unwrap();
        s.bind(&hole.into()).unwrap();
        s.listen(4).unwrap();
        std::net::TcpListener::from(s)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keep = std::thread::spawn({
        let stop = stop.clone();
        move || {
            listener.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            for _ in 0..600 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if let Ok((c, _)) = listener.accept() {
                    held.push(c); // accepted, never read
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let proxy: SocketAddr = RIG_PROXY.parse().unwrap();
    let guard = start_guard(&ns, &config, &["--proxy-listen", RIG_PROXY], proxy);
    let mut ev: serde_json::Value = serde_json::from_slice(&allowed_event()).unwrap();
    ev["Event"]["info"] = serde_json::Value::String("x".repeat(8 << 20));
    let body = serde_json::to_vec(&ev).unwrap();
    let req = cat(&[
        format!(
            "POST http://instance1-comp4.com:4444{PUSH} HTTP/1.1\r\nHost: instance1-comp4.com:4444\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
        &body,
    ]);
    let started = std::time::Instant::now();
    let status = ns.run(|| {
        let mut c = connect("127.10.0.1".parse().unwrap(), proxy);
        roundtrip(&mut c, &req, false).map(|r| r.status)
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = keep.join();
    assert!(
        matches!(status, Some(502 | 504)),
        "status {status:?}\n{}",
        log_tail(&guard.log(), 20)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

type Encoder = fn(&[u8]) -> Vec<u8>;

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// Pull answers in every coding MISP's curl accepts: judged on the decoded
/// event, the exact compressed bytes passed on when allowed, nothing of
/// them when blocked.
#[test]
fn encoded_pull_answers_judged_on_the_decoded_event() {
    if !can_run("encoded_pull_answers_judged_on_the_decoded_event") {
        return;
    }
    let rig = Rig::proxy("pullenc", serde_json::json!({}));
    let mut failures = Vec::new();
    let codings: [(&str, Encoder); 4] = [
        ("gzip", gzip),
        ("deflate", zlib),
        ("br", brotli),
        ("zstd", zstd),
    ];
    for (name, encode) in codings {
        for (allowed, event) in [(true, allowed_event()), (false, blocked_event())] {
            let body = encode(&event);
            let file = rig.ns.path(&format!("answer.{name}.{allowed}"));
            std::fs::write(&file, &body).unwrap();
            rig.peer.answer(serde_json::json!({
                "body_file": file.display().to_string(),
                "headers": { "Content-Encoding": name }
            }));
            let req = head_to(
                "GET",
                PULL_DST,
                VIEW,
                "Accept-Encoding: deflate, gzip, br, zstd\r\n",
            );
            let case = format!("{name} {}", if allowed { "allowed" } else { "blocked" });
            match rig.send(PULL_SRC, req.as_bytes(), false) {
                None => failures.push(format!("{case}: no answer")),
                Some(r) if allowed => {
                    if r.status != 200 || r.body != body {
                        failures.push(format!(
                            "{case}: status {}, exact bytes {}",
                            r.status,
                            r.body == body
                        ));
                    }
                    if r.header("content-encoding").as_deref() != Some(name) {
                        failures.push(format!(
                            "{case}: Content-Encoding {:?}",
                            r.header("content-encoding")
                        ));
                    }
                }
                Some(r) => {
                    if r.status != 403 || contains_part_of(&r.body, &body) {
                        failures.push(format!(
                            "{case}: status {} or compressed bytes leaked",
                            r.status
                        ));
                    }
                }
            }
        }
    }
    finish(&rig, failures);
}

/// What the remote answers a push with is the remote's data: judged under
/// the remote's rules (here a related event of distribution 0 would flow
/// back to the pusher). The pusher reads only the answer's status (and
/// `Event.id` for a debug line), never its `RelatedEvent` summaries, so
/// the answer goes on rebuilt without them: the push counts as done, and
/// nothing of the related event reaches the pusher.
#[test]
fn answers_to_pushes_are_judged_under_the_remotes_rules() {
    if !can_run("answers_to_pushes_are_judged_under_the_remotes_rules") {
        return;
    }
    let rig = Rig::proxy("pushanswer", serde_json::json!({}));
    let mut failures = Vec::new();
    let leak = r#"{"Event":{"id":"1","info":"x","distribution":"1","RelatedEvent":[{"Event":{"id":"2","info":"other","distribution":"0"}}]}}"#;
    rig.peer.answer(serde_json::json!({ "body": leak }));
    match rig.send(SRC, &post(PUSH, "", &allowed_event()), false) {
        Some(r) => {
            let answer: serde_json::Value =
                serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
            let rebuilt = serde_json::json!({"Event":{"id":"1","info":"x","distribution":"1"}});
            if r.status != 200 || answer != rebuilt || r.body.windows(5).any(|w| w == b"other") {
                failures.push(format!(
                    "leaky answer: status {}, {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        }
        None => failures.push("no answer".into()),
    }
    // A signed answer (a protected event) is never rebuilt: judged whole.
    rig.peer
        .answer(serde_json::json!({ "body": leak, "headers": {"x-pgp-signature": "c2ln"} }));
    match rig.send(SRC, &post(PUSH, "", &allowed_event()), false) {
        Some(r) if r.status == 403 && !r.body.windows(5).any(|w| w == b"other") => {}
        Some(r) => failures.push(format!("signed answer: status {}", r.status)),
        None => failures.push("no answer to the signed one".into()),
    }
    finish(&rig, failures);
}

/// Only the headers MISP sync sends reach an instance: a Cookie or an
/// X-Forwarded-For would change what the remote does.
#[test]
fn only_sync_headers_reach_the_instance() {
    if !can_run("only_sync_headers_reach_the_instance") {
        return;
    }
    let rig = Rig::proxy("headers", serde_json::json!({}));
    let before = rig.count();
    let extra = "Authorization: 0123456789012345678901234567890123456789\r\nCookie: MISP-session=abc\r\nX-Forwarded-For: 10.9.9.9\r\nRange: bytes=0-10\r\n";
    let r = rig.send(
        SRC,
        head("GET", "/servers/getVersion", extra).as_bytes(),
        false,
    );
    assert_eq!(r.map(|r| r.status), Some(200));
    let got = rig.since(before);
    assert_eq!(got.len(), 1);
    let names: Vec<String> = got[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for gone in ["cookie", "x-forwarded-for", "range"] {
        assert!(
            !names.contains(&gone.to_string()),
            "{gone} reached the instance: {names:?}"
        );
    }
    for kept in [
        "authorization",
        "accept",
        "content-type",
        "user-agent",
        "host",
    ] {
        assert!(
            names.contains(&kept.to_string()),
            "{kept} did not reach the instance: {names:?}"
        );
    }
}

/// An allowlisted name must never lead to an instance (its traffic would
/// skip the rules and the compartments), whatever its DNS says, and a
/// request relayed as allowlisted must not name an instance in its Host.
#[test]
fn allowlisted_names_never_reach_an_instance() {
    if !can_run("allowlisted_names_never_reach_an_instance") {
        return;
    }
    let listen: SocketAddr = RIG_PROXY.parse().unwrap();
    let rig = Rig::start(
        "allowinst",
        serde_json::json!({}),
        &["--proxy-listen", RIG_PROXY],
        listen,
        |ns| ns.hosts(&[("127.20.0.1", "snort-org-site.s3.amazonaws.com")]),
    );
    let mut failures = Vec::new();
    let domain = "snort-org-site.s3.amazonaws.com:443";
    // Plain, absolute-form: the name resolves to instance_2_1.
    let plain = head_to("GET", domain, "/test.txt", "");
    expect_refused(
        &rig,
        "absolute-form to an allowlisted name on an instance",
        plain.as_bytes(),
        &[403],
        &mut failures,
    );
    // CONNECT then TLS bytes: no blind tunnel to an instance.
    let before = rig.count();
    let answer = rig.ns.run(|| {
        let mut c = connect(SRC.parse().unwrap(), listen);
        c.write_all(format!("CONNECT {domain} HTTP/1.1\r\nHost: {domain}\r\n\r\n").as_bytes())
            .unwrap();
        let established = read_response(&mut c, true).map(|r| r.status);
        let _ = c.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
        let after = read_response(&mut c, false).map(|r| r.status);
        (established, after)
    });
    // Inside the tunnel the client speaks TLS: the refusal is a close (and
    // a log line), not an HTTP answer.
    if answer.0 != Some(200) || answer.1.is_some() {
        failures.push(format!("blind tunnel to an instance: {answer:?}"));
    }
    if !rig
        .guard
        .log()
        .contains("resolves to 127.20.0.1, an instance")
    {
        failures.push("no log line for the refused tunnel".into());
    }
    if !rig.since(before).is_empty() {
        failures.push("the instance received something".into());
    }
    finish(&rig, failures);
}

/// A silent connection from an address that is no instance is closed
/// within seconds and never takes an instance's slot.
#[test]
fn silent_strangers_are_closed_quickly() {
    if !can_run("silent_strangers_are_closed_quickly") {
        return;
    }
    let rig = Rig::proxy(
        "stranger",
        serde_json::json!({ "limits": { "max_connections": 2 } }),
    );
    let listen = rig.listen;
    let took = rig.ns.run(|| {
        // More silent strangers than there are slots for instances.
        let mut held: Vec<TcpStream> = (0..4)
            .map(|_| connect("127.99.0.8".parse().unwrap(), listen))
            .collect();
        // An instance still gets through.
        let mut c = connect(SRC.parse().unwrap(), listen);
        let ok = roundtrip(
            &mut c,
            head("GET", "/servers/getVersion", "").as_bytes(),
            false,
        )
        .map(|r| r.status);
        let started = std::time::Instant::now();
        let mut byte = [0u8; 1];
        let closed = held.iter_mut().all(|s| matches!(s.read(&mut byte), Ok(0)));
        (ok, closed, started.elapsed())
    });
    assert_eq!(took.0, Some(200), "an instance was kept out by strangers");
    assert!(took.1, "a stranger's connection was not closed");
    assert!(
        took.2 < Duration::from_secs(8),
        "strangers held for {:?}",
        took.2
    );
}

/// An answer whose `Connection` names a header would lose it on the way to
/// the client after the guard judged the body with it (here the coding),
/// and a request with two Authorization headers would be read by the
/// remote as one joined value: both refused.
#[test]
fn connection_tokens_in_answers_and_repeated_headers_are_refused() {
    if !can_run("connection_tokens_in_answers_and_repeated_headers_are_refused") {
        return;
    }
    let rig = Rig::proxy("conntok2", serde_json::json!({}));
    let mut failures = Vec::new();
    let body = gzip(&allowed_event());
    let file = rig.ns.path("answer.gz");
    std::fs::write(&file, &body).unwrap();
    rig.peer.answer(serde_json::json!({
        "body_file": file.display().to_string(),
        "headers": { "Content-Encoding": "gzip", "Connection": "keep-alive, Content-Encoding" }
    }));
    let req = head_to("GET", PULL_DST, VIEW, "Accept-Encoding: gzip\r\n");
    match rig.send(PULL_SRC, req.as_bytes(), false) {
        Some(r) if r.status == 502 && !contains_part_of(&r.body, &body) => {}
        Some(r) => failures.push(format!(
            "answer naming Content-Encoding: status {}",
            r.status
        )),
        None => failures.push("answer naming Content-Encoding: no answer".into()),
    }
    rig.peer.answer(serde_json::json!({}));
    let twice = head(
        "GET",
        "/servers/getVersion",
        "Authorization: a\r\nAuthorization: b\r\n",
    );
    expect_refused(
        &rig,
        "two Authorization headers",
        twice.as_bytes(),
        &[400],
        &mut failures,
    );
    finish(&rig, failures);
}

/// The error answers to a push are not judged: MISP's save-fail 403 JSON
/// reaches the pusher as it is (MISP logs its `errors`), encoded or not,
/// but no error answer may be large, raw or decoded.
#[test]
fn error_answers_to_pushes_pass_small_and_are_capped() {
    if !can_run("error_answers_to_pushes_pass_small_and_are_capped") {
        return;
    }
    let rig = Rig::proxy("pusherr", serde_json::json!({}));
    let mut failures = Vec::new();
    let save_fail = r#"{"saved":false,"name":"Event could not be saved.","message":"Event could not be saved.","url":"\/events\/add","errors":"Event could not be saved: Event in the request not newer than the local copy."}"#;
    let gz = |name: &str, data: &[u8]| {
        let file = rig.ns.path(name);
        std::fs::write(&file, gzip(data)).unwrap();
        file.display().to_string()
    };
    let big = "x".repeat(100 * 1024);
    let cases = [
        (
            "save-fail JSON",
            serde_json::json!({ "status": 403, "body": save_fail }),
            Some(save_fail.as_bytes().to_vec()),
        ),
        (
            "save-fail JSON, gzip",
            serde_json::json!({
                "status": 403, "body_file": gz("fail.gz", save_fail.as_bytes()),
                "headers": { "Content-Encoding": "gzip" }
            }),
            Some(gzip(save_fail.as_bytes())),
        ),
        (
            "100 KiB error answer",
            serde_json::json!({ "status": 403, "body": big }),
            None,
        ),
        (
            "gzip error answer of 1 MiB decoded",
            serde_json::json!({
                "status": 500, "body_file": gz("big.gz", &vec![b'x'; 1 << 20]),
                "headers": { "Content-Encoding": "gzip" }
            }),
            None,
        ),
    ];
    for (case, script, passes) in cases {
        rig.peer.answer(script);
        let bytes = post(PUSH, "Accept-Encoding: gzip\r\n", &allowed_event());
        let Some(r) = rig.send(SRC, &bytes, false) else {
            failures.push(format!("{case}: no answer"));
            continue;
        };
        match passes {
            Some(body) => {
                if r.status != 403 || r.body != body {
                    failures.push(format!(
                        "{case}: status {}, exact body {}",
                        r.status,
                        r.body == body
                    ));
                }
            }
            None => {
                if r.status != 502 || r.body.windows(64).any(|w| w.iter().all(|b| *b == b'x')) {
                    failures.push(format!(
                        "{case}: status {} or the body reached the client",
                        r.status
                    ));
                }
            }
        }
    }
    finish(&rig, failures);
}

/// An instance's connection past `limits.max_connections` is answered with
/// a short 503 in JSON (so MISP logs why) and closed; once a slot frees,
/// connections are served again.
#[test]
fn connections_past_the_cap_get_a_503() {
    if !can_run("connections_past_the_cap_get_a_503") {
        return;
    }
    let rig = Rig::proxy(
        "busy",
        serde_json::json!({ "limits": { "max_connections": 1 } }),
    );
    let listen = rig.listen;
    let get = head("GET", "/servers/getVersion", "");
    let (held, refused, closed_after, again) = rig.ns.run(|| {
        let mut first = connect(SRC.parse().unwrap(), listen);
        let held = roundtrip(&mut first, get.as_bytes(), false).map(|r| r.status);
        let mut second = connect(SRC.parse().unwrap(), listen);
        let refused = roundtrip(&mut second, get.as_bytes(), false);
        let closed_after = closed(&mut second);
        drop(first);
        // The slot is given back when the guard sees the close.
        let again = (0..100).find_map(|_| {
            let mut c = connect(SRC.parse().unwrap(), listen);
            match roundtrip(&mut c, get.as_bytes(), false).map(|r| r.status) {
                Some(200) => Some(200),
                _ => {
                    std::thread::sleep(Duration::from_millis(50));
                    None
                }
            }
        });
        (held, refused, closed_after, again)
    });
    assert_eq!(held, Some(200));
    let refused = refused.expect("no answer past the cap");
    assert_eq!(refused.status, 503, "{refused:?}\n{}", rig.log_tail(10));
    assert_eq!(refused.header("connection").as_deref(), Some("close"));
    let answer: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_connections"),
        "{answer}"
    );
    assert!(closed_after, "the refused connection stayed open");
    assert_eq!(again, Some(200), "{}", rig.log_tail(10));
}

/// What MISP's save paths read that a guard reading only the obvious keys
/// would miss, pushed through the real listener: each is refused with
/// MISP's JSON 403 naming why, and nothing reaches the peer; MISP's own
/// forms pass.
#[test]
fn save_path_forms_misp_does_not_send_are_refused() {
    if !can_run("save_path_forms_misp_does_not_send_are_refused") {
        return;
    }
    let rig = Rig::proxy("savepaths", serde_json::json!({}));
    let mut failures = Vec::new();
    let attr =
        r#""type":"ip-src","category":"Network activity","distribution":"5","value":"1.2.3.4""#;
    let event = |inner: &str| {
        format!(
            r#"{{"Event":{{"uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","info":"x","distribution":"3","Tag":[{{"name":"tlp:green"}}],{inner}}}}}"#
        )
    };
    let cases = [
        (
            "a report saved from its wrapper (inner distribution 0)",
            event(
                r#""EventReport":[{"name":"r","distribution":"3","EventReport":{"name":"r","content":"secret","distribution":"0"}}]"#,
            ),
            "Event.EventReport[0].EventReport",
        ),
        (
            "an object saved from its wrapper",
            event(
                r#""Object":[{"name":"file","distribution":"3","Object":{"name":"person","distribution":"0"}}]"#,
            ),
            "Event.Object[0].Object",
        ),
        (
            "a tag attached by its local id",
            event(&format!(
                r#""Attribute":[{{{attr},"AttributeTag":[{{"tag_id":"7","Tag":{{"name":"tlp:green"}}}}]}}]"#
            )),
            "Event.Attribute[0].AttributeTag[0].tag_id",
        ),
        (
            "an invisible character in a tag",
            event(&format!(
                r#""Attribute":[{{{attr},"Tag":[{{"name":"tlp:\u2063red"}}]}}]"#
            )),
            "Event.Attribute[0].Tag[0].name",
        ),
        (
            "an attribute without distribution",
            event(
                r#""Attribute":[{"type":"ip-src","category":"Network activity","value":"1.2.3.4"}]"#,
            ),
            "Event.Attribute[0].distribution",
        ),
    ];
    for (name, body, at) in cases {
        let before = rig.count();
        let r = rig.send(SRC, &post(PUSH, "", body.as_bytes()), false);
        settle();
        match r {
            Some(r) if r.status == 403 && String::from_utf8_lossy(&r.body).contains(at) => {}
            Some(r) => failures.push(format!(
                "{name}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            None => failures.push(format!("{name}: no answer")),
        }
        if !rig.since(before).is_empty() {
            failures.push(format!("{name}: reached the peer"));
        }
    }
    // MISP's own forms pass: a flat event, and proposals pushed as the flat
    // rows Server::syncProposals posts (a wrapped row is refused).
    let fine = event(&format!(
        r#""Attribute":[{{{attr},"Tag":[{{"name":"tlp:green"}}]}}]"#
    ));
    match rig.send(SRC, &post(PUSH, "", fine.as_bytes()), false) {
        Some(r) if r.status == 200 => {}
        other => failures.push(format!("MISP's own event: {:?}", other.map(|r| r.status))),
    }
    let proposals = "/events/pushProposals/385283a1-b5e0-4e10-a532-dce11c365a56";
    let row = r#"{"old_id":"0","type":"ip-src","category":"Network activity","value":"5.6.7.8","to_ids":true,"uuid":"5a2c9b1e-0000-4000-8000-000000000001","event_uuid":"385283a1-b5e0-4e10-a532-dce11c365a56"}"#;
    match rig.send(
        SRC,
        &post(proposals, "", format!("[{row}]").as_bytes()),
        false,
    ) {
        Some(r) if r.status == 200 => {}
        other => failures.push(format!("flat proposal rows: {:?}", other.map(|r| r.status))),
    }
    let before = rig.count();
    let wrapped = format!(r#"[{{"ShadowAttribute":{row}}}]"#);
    match rig.send(SRC, &post(proposals, "", wrapped.as_bytes()), false) {
        Some(r) if r.status == 403 => {}
        other => failures.push(format!(
            "wrapped proposal rows: {:?}",
            other.map(|r| r.status)
        )),
    }
    if !rig.since(before).is_empty() {
        failures.push("wrapped proposal rows reached the peer".into());
    }
    finish(&rig, failures);
}
