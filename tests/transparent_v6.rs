//! The transparent listener over IPv6: the original destination comes from
//! `IP6T_SO_ORIGINAL_DST`, with real nftables (`ip6` family) in a network
//! namespace the test creates, on addresses it adds there.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;

const SENDER: &str = "fd00:4d47::20:2";
const RECEIVER: &str = "fd00:4d47::20:1";
const LISTEN: &str = "[::]:18443";

fn config() -> serde_json::Value {
    serde_json::json!({
        "compartments_rules": { "can_reach": { "c": ["c"] } },
        "instances": {
            "sender": {
                "ip": SENDER, "host": "sender.example", "port": 8080, "compartment_id": "c",
                "taxonomies_rules": { "blocked_tags": ["tlp:red"] },
                "blocked_attribute_types": ["passport-number"]
            },
            "receiver": {
                "ip": RECEIVER, "host": "receiver.example", "port": 8080, "compartment_id": "c"
            }
        },
        "guard": { "listen": { "transparent": [] } }
    })
}

fn push(ns: &Netns, body: &[u8]) -> Option<Response> {
    let mut req = format!(
        "POST /events/add/metadata:1 HTTP/1.1\r\nHost: receiver.example:8080\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let source: IpAddr = SENDER.parse().unwrap();
    let to: SocketAddr = format!("[{RECEIVER}]:8080").parse().unwrap();
    ns.run(|| {
        let mut c = connect(source, to);
        roundtrip(&mut c, &req, false)
    })
}

#[test]
fn transparent_listener_over_ipv6() {
    if !can_run("transparent_listener_over_ipv6") {
        return;
    }
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP transparent_listener_over_ipv6: nft is not installed");
        return;
    }
    let ns = Netns::new("v6");
    for addr in [SENDER, RECEIVER] {
        sh(&[
            "ip",
            "-n",
            &ns.name,
            "-6",
            "addr",
            "add",
            &format!("{addr}/128"),
            "dev",
            "lo",
            "nodad",
        ]);
    }
    let rules = format!(
        "table ip6 misp_guard_test {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    meta mark 0x4d47 return\n    ip6 daddr {RECEIVER} tcp dport 8080 redirect to :18443\n  }}\n}}\n"
    );
    let file = ns.path("ruleset.nft");
    std::fs::write(&file, &rules).unwrap();
    let out = ns.command("nft").arg("-f").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let peer = Peer::start(&ns, &[format!("[{RECEIVER}]:8080").parse().unwrap()], None);
    std::thread::sleep(Duration::from_millis(100));
    let probe: SocketAddr = "[::1]:18443".parse().unwrap();
    let guard = start_guard(&ns, &config(), &["--transparent-listen", LISTEN], probe);

    let allowed = std::fs::read(format!("{SHARED}/fixtures/test_event_non-blocked.json")).unwrap();
    let r = push(&ns, &allowed).expect("an answer to the allowed push");
    assert_eq!(r.status, 200, "{}", guard.log());
    let got = peer.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body_len"].as_u64(), Some(allowed.len() as u64));

    let blocked = std::fs::read(format!("{SHARED}/fixtures/test_event_blocked_tags.json")).unwrap();
    let r = push(&ns, &blocked).expect("an answer to the blocked push");
    assert_eq!(r.status, 403);
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(answer["errors"]
        .as_str()
        .unwrap()
        .contains("blocked tag: tlp:red at "));
    assert_eq!(
        peer.received().len(),
        1,
        "the blocked push reached the peer"
    );
    // The log names the IPv6 original destination.
    assert!(
        guard.log().contains(&format!("[{RECEIVER}]:8080")),
        "{}",
        guard.log()
    );
}
