//! The transparent listener with real nftables: inside a network namespace
//! the test creates, a nat output chain redirects TCP to the instance
//! addresses (port 443) to the guard, except packets carrying the guard's
//! upstream mark. Clients connect straight to the instance address and
//! speak origin-form HTTP, as a MISP behind the guard does; the guard
//! recovers the original destination with SO_ORIGINAL_DST.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The guard's transparent listener (all addresses: nftables `redirect`
/// rewrites the destination to 127.0.0.1 for local traffic).
const LISTEN: &str = "0.0.0.0:18443";
/// Where a client reaches that listener without a redirect.
const DIRECT: &str = "127.0.0.1:18443";
/// The guard's default `upstream_mark`.
const MARK: u32 = 0x4d47;

/// `can_run` plus the `nft` command.
fn can_run_nft(test: &str) -> bool {
    if !can_run(test) {
        return false;
    }
    if Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    eprintln!("SKIP {test}: needs nft (nftables)");
    false
}

/// The nat table: the guard's own (marked) connections go out unchanged,
/// everything else to an instance address on port 443 goes to the guard.
fn ruleset(config: &serde_json::Value) -> String {
    let ips: Vec<String> = instance_addrs(config)
        .iter()
        .map(|a| a.ip().to_string())
        .collect();
    let port = DIRECT.rsplit(':').next().unwrap();
    format!(
        "table ip misp_guard_test {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    meta mark {MARK:#x} return\n    ip daddr {{ {} }} tcp dport 443 redirect to :{port}\n  }}\n}}\n",
        ips.join(", ")
    )
}

fn rig(tag: &str) -> Rig {
    let probe: SocketAddr = DIRECT.parse().unwrap();
    let config = conformance_config(serde_json::json!({}));
    let rules = ruleset(&config);
    // Plain HTTP on both legs here (tests/tls.rs covers TLS): instances on
    // port 443 are otherwise reached over TLS.
    let plain: serde_json::Map<String, serde_json::Value> = config["instances"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| {
            (
                name.clone(),
                serde_json::json!({ "tls": { "upstream": false } }),
            )
        })
        .collect();
    Rig::start(
        tag,
        serde_json::json!({ "instances": plain }),
        &["--transparent-listen", LISTEN],
        probe,
        |ns| {
            let file = ns.path("ruleset.nft");
            std::fs::write(&file, &rules).unwrap();
            let out = ns.command("nft").arg("-f").arg(&file).output().unwrap();
            assert!(
                out.status.success(),
                "nft -f failed: {}\n{rules}",
                String::from_utf8_lossy(&out.stderr)
            );
        },
    )
}

/// The conformance scenarios run through the redirect: at least one of each
/// kind (allowed and blocked push of each main rule, allowed and blocked
/// pull, compartment, unknown source, HEAD, X-UserOrgUUID).
const SUBSET: &[&str] = &[
    "push_new_event_non-blocked",
    "push_edit_event_non-blocked",
    "push_new_event_blocked_event_tags",
    "push_edit_event_blocked_attribute_type",
    "push_new_event_blocked_attribute_category",
    "push_new_event_blocked_object_type",
    "push_new_event_blocked_event_distribution",
    "push_new_event_blocked_event_sharing_group",
    "push_new_event_missing_required_tag",
    "push_new_event_not_allowed_compartment",
    "pull_event_non-blocked",
    "pull_event_blocked_event_tags",
    "pull_event_blocked_object_attribute_sharing_group",
    "pull_event_not_allowed_compartment",
    "pull_galaxy_non-blocked_distribution_level",
    "unknown_source_host",
    "endpoint_outside_sync_is_blocked",
    "head_event_view_passes",
    "x_user_org_uuid_not_in_sharing_group:test_event_xuserorguuid-blocked_sharing_group",
];

#[test]
fn conformance_subset_through_nftables_redirect() {
    if !can_run_nft("conformance_subset_through_nftables_redirect") {
        return;
    }
    let rig = rig("tconf");
    let all = scenarios();
    let mut failures = Vec::new();
    for name in SUBSET {
        let s = all
            .iter()
            .find(|s| s.name == *name)
            .unwrap_or_else(|| panic!("no scenario {name}"));
        let to =
            instance_addr(&rig.config, &s.host).unwrap_or_else(|| panic!("no instance {}", s.host));
        rig.peer.answer(script_for(s));
        let before = rig.count();
        let r = rig.send_to(
            &map_ip(&s.client_ip),
            to,
            &scenario_request(s, false),
            s.method == "HEAD",
        );
        std::thread::sleep(Duration::from_millis(100));
        let new = rig.since(before);
        let Some(r) = r else {
            failures.push(format!("{name}: no response"));
            continue;
        };
        let mut problems = scenario_problems(s, &r, &new);
        // The guard went to the original destination, not elsewhere.
        for e in &new {
            if e["listen"] != to.to_string() {
                problems.push(format!("forwarded to {} instead of {to}", e["listen"]));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}\n--- guard log (tail) ---\n{}",
        failures.len(),
        SUBSET.len(),
        failures.join("\n"),
        rig.log_tail(40)
    );
}

#[test]
fn unredirected_connection_is_closed_without_an_answer() {
    if !can_run_nft("unredirected_connection_is_closed_without_an_answer") {
        return;
    }
    let rig = rig("tdirect");
    let direct: SocketAddr = DIRECT.parse().unwrap();
    let refused_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("connection refused"))
            .count()
    };
    let logged_before = refused_lines(&rig.guard.log());
    let before = rig.count();
    let request = "GET /servers/getVersion HTTP/1.1\r\nHost: instance1-comp1.com:443\r\n\r\n";
    let r = rig.send_to("127.10.0.2", direct, request.as_bytes(), false);
    std::thread::sleep(Duration::from_millis(300));
    let mut failures = Vec::new();
    if let Some(r) = r {
        failures.push(format!("a direct connection got an answer: {}", r.head));
    }
    if rig.count() != before {
        failures.push("a direct connection reached the peer".into());
    }
    if refused_lines(&rig.guard.log()) <= logged_before {
        failures.push("no log line for the refused connection".into());
    }
    // Control: the same request through the redirect is answered.
    let to = instance_addr(&rig.config, "instance1-comp1.com").unwrap();
    let r = rig.send_to("127.10.0.2", to, request.as_bytes(), false);
    if r.as_ref().map(|r| r.status) != Some(200) {
        failures.push(format!("redirected control: {:?}", r.map(|r| r.head)));
    }
    assert!(
        failures.is_empty(),
        "{}\n--- guard log ---\n{}",
        failures.join("\n"),
        rig.log_tail(20)
    );
}

#[test]
fn host_naming_another_instance_than_the_destination_is_refused() {
    if !can_run_nft("host_naming_another_instance_than_the_destination_is_refused") {
        return;
    }
    let rig = rig("thost");
    // instance_1_2 connects to instance_1_1 (127.10.0.1:443).
    let source = "127.10.0.2";
    let to = instance_addr(&rig.config, "instance1-comp1.com").unwrap();
    let ev = std::fs::read(format!("{SHARED}/fixtures/test_event_non-blocked.json")).unwrap();
    let mut failures = Vec::new();
    let check = |failures: &mut Vec<String>, case: &str, bytes: &[u8], want: u16| {
        let before = rig.count();
        let r = rig.send_to(source, to, bytes, false);
        std::thread::sleep(Duration::from_millis(100));
        let new = rig.since(before);
        match &r {
            Some(r) if r.status == want => failures.extend(
                forbidden_json_problems(r)
                    .into_iter()
                    .map(|p| format!("{case}: {p}")),
            ),
            other => failures.push(format!(
                "{case}: {:?} (expected {want})",
                other.as_ref().map(|r| &r.head)
            )),
        }
        let expected_requests = usize::from(want == 200);
        if new.len() != expected_requests {
            failures.push(format!("{case}: peer received {} request(s)", new.len()));
        }
        for e in &new {
            if e["listen"] != to.to_string() {
                failures.push(format!("{case}: forwarded to {}", e["listen"]));
            }
        }
    };
    for host in [
        "instance1-comp2.com:443",
        "instance2-comp1.com",
        "instance1-comp4.com:443",
        "127.20.0.1:443",
    ] {
        let get = format!("GET /servers/getVersion HTTP/1.1\r\nHost: {host}\r\n\r\n");
        check(
            &mut failures,
            &format!("GET with Host {host}"),
            get.as_bytes(),
            403,
        );
        let mut push = format!(
            "POST /events/add/metadata:1 HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            ev.len()
        )
        .into_bytes();
        push.extend_from_slice(&ev);
        check(&mut failures, &format!("push with Host {host}"), &push, 403);
    }
    // Control: the Host of the original destination passes.
    let get = "GET /servers/getVersion HTTP/1.1\r\nHost: instance1-comp1.com:443\r\n\r\n";
    check(
        &mut failures,
        "GET with the right Host",
        get.as_bytes(),
        200,
    );
    // Absolute-form on a transparent connection is not a way around it.
    let get = "GET http://instance1-comp2.com:443/servers/getVersion HTTP/1.1\r\nHost: instance1-comp2.com:443\r\n\r\n";
    let before = rig.count();
    let r = rig.send_to(source, to, get.as_bytes(), false);
    std::thread::sleep(Duration::from_millis(100));
    if !matches!(r.as_ref().map(|r| r.status), Some(400 | 403)) {
        failures.push(format!(
            "absolute-form on the transparent listener: {:?}",
            r.map(|r| r.head)
        ));
    }
    if rig.count() != before {
        failures.push("absolute-form on the transparent listener reached the peer".into());
    }
    assert!(
        failures.is_empty(),
        "{}\n--- guard log ---\n{}",
        failures.join("\n"),
        rig.log_tail(30)
    );
    let _ = std::io::stdout().flush();
}
