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
/// The allowlisted hosts live at a test host of the namespace: not on
/// loopback, which the guard refuses as a destination of the allowlist (it
/// would be the guard's own host).
const ALLOWLIST_PEER: &str = "192.0.2.99";

#[test]
fn every_scenario_through_the_proxy_listener() {
    if !can_run("every_scenario_through_the_proxy_listener") {
        return;
    }
    let ns = Netns::new("conf");
    ns.add_address(ALLOWLIST_PEER);
    ns.hosts(&[
        (ALLOWLIST_PEER, "snort-org-site.s3.amazonaws.com"),
        (ALLOWLIST_PEER, "www.dan.me.uk"),
    ]);
    let config = conformance_config(serde_json::json!({ "log": { "level": "info" } }));
    let mut listen = instance_addrs(&config);
    listen.push(format!("{ALLOWLIST_PEER}:443").parse().unwrap());
    let peer = Peer::start(&ns, &listen, None);
    let proxy: SocketAddr = PROXY.parse().unwrap();
    let guard = start_guard(&ns, &config, &["--proxy-listen", PROXY], proxy);

    let all = scenarios();
    assert_eq!(all.len(), 122);
    let mut failures = Vec::new();
    for s in &all {
        peer.answer(script_for(s));
        let before = peer.received().len();
        let bytes = scenario_request(s, true);
        let source: IpAddr = map_ip(&s.client_ip).parse().unwrap();
        let head_only = s.method == "HEAD";
        let response = ns.run(|| {
            let mut c = connect(source, proxy);
            roundtrip(&mut c, &bytes, head_only)
        });
        let new: Vec<_> = peer.received()[before..].to_vec();
        let Some(r) = response else {
            failures.push(format!("{}: no response", s.name));
            continue;
        };
        // The status; a 403 in MISP's save-fail shape naming the rule and
        // value; blocked content never reaching the other side, not even
        // partly; allowed content arriving byte for byte.
        let problems = scenario_problems(s, &r, &new);
        if !problems.is_empty() {
            failures.push(format!("{} [{}]: {}", s.name, s.file, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 122 scenarios failed:\n{}\n--- guard log (tail) ---\n{}",
        failures.len(),
        failures.join("\n"),
        log_tail(&guard.log(), 40)
    );
}
