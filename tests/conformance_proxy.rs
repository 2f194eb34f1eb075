//! The older guard's 122 verdict scenarios through the real explicit-proxy
//! listener, against a real upstream process that records every byte it
//! receives. Runs in a network namespace the test creates; the scenario
//! addresses are mapped one-to-one onto its loopback (a.b.c.d → 127.a.c.d)
//! and the allowlisted domains resolve there through the namespace's own
//! /etc/hosts.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;

const PROXY: &str = "127.0.0.1:18080";
const ALLOWLIST_PEER: &str = "127.99.0.1";

#[test]
fn every_scenario_through_the_proxy_listener() {
    if !can_run("every_scenario_through_the_proxy_listener") {
        return;
    }
    let ns = Netns::new("conf");
    ns.hosts(&[
        (ALLOWLIST_PEER, "snort-org-site.s3.amazonaws.com"),
        (ALLOWLIST_PEER, "www.dan.me.uk"),
    ]);
    let config = conformance_config(serde_json::json!({ "log": { "level": "info" } }));
    let mut listen: Vec<SocketAddr> = config["instances"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| {
            format!("{}:{}", i["ip"].as_str().unwrap(), i["port"])
                .parse()
                .unwrap()
        })
        .collect();
    listen.push(format!("{ALLOWLIST_PEER}:443").parse().unwrap());
    let peer = Peer::start(&ns, &listen, None);
    let proxy: SocketAddr = PROXY.parse().unwrap();
    let guard = start_guard(&ns, &config, &["--proxy-listen", PROXY], proxy);

    let all = scenarios();
    assert_eq!(all.len(), 122);
    let mut failures = Vec::new();
    for s in &all {
        let fixture = s.fixture.as_ref().map(|f| std::fs::read(f).unwrap());
        let mut script = serde_json::json!({});
        if s.is_pull() {
            if let Some(f) = &s.fixture {
                script["body_file"] = serde_json::Value::String(f.display().to_string());
            }
        }
        let headers: serde_json::Map<String, serde_json::Value> = s
            .response_headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        script["headers"] = serde_json::Value::Object(headers);
        peer.answer(script);

        let before = peer.received().len();
        let body = s.body();
        let mut request = format!(
            "{} http://{}:{}{} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: MISP 2.5.1\r\n",
            s.method, s.host, s.port, s.url, s.host, s.port
        );
        if !body.is_empty() {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&body);
        let source: IpAddr = map_ip(&s.client_ip).parse().unwrap();
        let head_only = s.method == "HEAD";
        let response = ns.run(|| {
            let mut c = connect(source, proxy);
            roundtrip(&mut c, &bytes, head_only)
        });
        let received = peer.received();
        let new: Vec<_> = received[before..].to_vec();
        let Some(r) = response else {
            failures.push(format!("{}: no response", s.name));
            continue;
        };
        let mut problems = Vec::new();
        if r.status != s.expected_status {
            problems.push(format!(
                "status {} (expected {})",
                r.status, s.expected_status
            ));
        }
        if s.expected_status == 403 {
            let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let errors = answer["errors"].as_str().unwrap_or("").to_string();
            if answer["saved"] != serde_json::Value::Bool(false) {
                problems.push("403 is not MISP's save-fail JSON".into());
            }
            match s.expected_block() {
                Some((rule, _))
                    if rule == "cannot reach compartment" && !errors.contains(&rule) =>
                {
                    problems.push(format!("reason {errors:?} does not name {rule}"));
                }
                Some((rule, value))
                    if rule != "cannot reach compartment"
                        && !errors.contains(&format!("{rule}: {value} at ")) =>
                {
                    problems.push(format!("reason {errors:?} does not name {rule}: {value}"));
                }
                _ => {}
            }
            if let Some(f) = &fixture {
                // Blocked content never reaches the other side, not even
                // partly: for a push the upstream got nothing of the body,
                // for a pull the client got nothing of the answer.
                if !s.is_pull() && new.iter().any(|e| e["body_len"].as_u64().unwrap_or(0) > 0) {
                    problems.push("a blocked push body reached the upstream".into());
                }
                if s.is_pull()
                    && f.len() > 2
                    && r.body.windows(f.len().min(64)).any(|w| f.starts_with(w))
                {
                    problems.push("the blocked pull answer reached the client".into());
                }
            }
            if !s.is_pull() && !new.is_empty() && s.fixture.is_some() {
                problems.push(format!(
                    "upstream received {} request(s) for a blocked push",
                    new.len()
                ));
            }
        } else {
            if new.len() != 1 {
                problems.push(format!(
                    "upstream received {} requests (expected 1)",
                    new.len()
                ));
            } else if !s.is_pull() {
                let got = base64_decode(new[0]["body_b64"].as_str().unwrap_or(""));
                if got != body {
                    problems.push("upstream did not receive the exact body".into());
                }
            }
            if s.is_pull() {
                if let Some(f) = &fixture {
                    if &r.body != f {
                        problems.push("client did not receive the exact answer".into());
                    }
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{} [{}]: {}", s.name, s.file, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 122 scenarios failed:\n{}\n--- guard log (tail) ---\n{}",
        failures.len(),
        failures.join("\n"),
        tail(&guard.log(), 40)
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let Some(v) = T.iter().position(|&t| t == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
