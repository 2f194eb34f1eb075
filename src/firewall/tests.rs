//! The plan and its text, without a kernel (the end-to-end tests in
//! `tests/firewall_*.rs` install it in network namespaces).

use std::net::IpAddr;

use super::apply::{expressions, set_layout};
use super::plan::{Action, Element, Family, Key, Mode, Plan, Rule};
use super::render;
use crate::config::Config;

fn config(firewall: serde_json::Value) -> Config {
    let v = serde_json::json!({
        "compartments_rules": {"can_reach": {"c": ["c"]}},
        "instances": {
            "a": {"ip": "10.77.1.2", "host": "misp-a.example", "port": 443, "compartment_id": "c"},
            "b": {"ip": "10.77.2.2", "host": "misp-b.example", "port": 443, "compartment_id": "c"},
            "c": {"ip": "10.77.2.3", "host": "misp-c.example", "port": 8443, "compartment_id": "c"},
            "d": {"ip": "fd00:77::2", "host": "misp-d.example", "port": 443, "compartment_id": "c"}
        },
        "guard": {"firewall": firewall}
    });
    Config::from_json_str(&v.to_string()).unwrap().0
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn elements(plan: &Plan, set: &str) -> Vec<String> {
    plan.set(set)
        .unwrap()
        .elements
        .iter()
        .map(|e| match e {
            Element::Addr(a) => a.to_string(),
            Element::AddrPort(a, p) => format!("{a} . {p}"),
            Element::Ifname(n) => n.clone(),
        })
        .collect()
}

const HOST: &str = "table inet misp_guard {
\tset local_v4 {
\t\ttype ipv4_addr . inet_service
\t\telements = { 10.77.1.2 . 443 }
\t}

\tset local_v6 {
\t\ttype ipv6_addr . inet_service
\t}

\tset remote_v4 {
\t\ttype ipv4_addr . inet_service
\t\telements = { 10.77.2.2 . 443,
\t\t\t     10.77.2.3 . 8443 }
\t}

\tset remote_v6 {
\t\ttype ipv6_addr . inet_service
\t\telements = { fd00:77::2 . 443 }
\t}

\tset remote_addrs_v4 {
\t\ttype ipv4_addr
\t\telements = { 10.77.2.2, 10.77.2.3 }
\t}

\tset remote_addrs_v6 {
\t\ttype ipv6_addr
\t\telements = { fd00:77::2 }
\t}

\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta mark 0x00004d47 return
\t\tip daddr . tcp dport @remote_v4 redirect to :8443
\t\tip6 daddr . tcp dport @remote_v6 redirect to :8443
\t}

\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip saddr @remote_addrs_v4 ip daddr . tcp dport @local_v4 redirect to :8443
\t\tip6 saddr @remote_addrs_v6 ip6 daddr . tcp dport @local_v6 redirect to :8443
\t}

\tchain unguarded_out {
\t\ttype filter hook output priority filter; policy accept;
\t\tmeta mark 0x00004d47 return
\t\tip daddr . tcp dport @remote_v4 drop
\t\tip6 daddr . tcp dport @remote_v6 drop
\t}

\tchain unguarded_in {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr @remote_addrs_v4 ip daddr . tcp dport @local_v4 drop
\t\tip6 saddr @remote_addrs_v6 ip6 daddr . tcp dport @local_v6 drop
\t}
}
";

const GATEWAY: &str = "table inet misp_guard {
\tset instances_v4 {
\t\ttype ipv4_addr . inet_service
\t\telements = { 10.77.1.2 . 443,
\t\t\t     10.77.2.2 . 443,
\t\t\t     10.77.2.3 . 8443 }
\t}

\tset instances_v6 {
\t\ttype ipv6_addr . inet_service
\t\telements = { fd00:77::2 . 443 }
\t}

\tset interfaces {
\t\ttype ifname
\t\telements = { \"eth0\",
\t\t\t     \"eth1\" }
\t}

\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname @interfaces ip daddr . tcp dport @instances_v4 redirect to :8443
\t\tiifname @interfaces ip6 daddr . tcp dport @instances_v6 redirect to :8443
\t}

\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tip daddr . tcp dport @instances_v4 drop
\t\tip6 daddr . tcp dport @instances_v6 drop
\t}
}
";

#[test]
fn host_mode_text_is_what_nft_lists() {
    // As nftables 1.0.6 listed the table installed from this config.
    let c = config(serde_json::json!({"mode": "host", "local_instances": ["a"]}));
    let plan = Plan::build(&c, 8443, &[]).unwrap().unwrap();
    assert_eq!(plan.mode, Mode::Host);
    assert_eq!(render(&plan), HOST);
}

#[test]
fn gateway_mode_text_is_what_nft_lists() {
    let c = config(serde_json::json!({"mode": "gateway", "interfaces": ["eth1", "eth0"]}));
    let plan = Plan::build(&c, 8443, &[]).unwrap().unwrap();
    assert_eq!(plan.mode, Mode::Gateway);
    assert_eq!(plan.interfaces(), ["eth0", "eth1"]);
    assert_eq!(render(&plan), GATEWAY);
}

#[test]
fn off_is_no_table() {
    let c = config(serde_json::json!({"mode": "off"}));
    assert!(Plan::build(&c, 8443, &[]).unwrap().is_none());
    let c = config(serde_json::json!({}));
    assert!(Plan::build(&c, 8443, &[]).unwrap().is_none());
}

#[test]
fn host_mode_finds_local_instances_by_address() {
    let c = config(serde_json::json!({"mode": "host"}));
    let local = [ip("127.0.0.1"), ip("10.77.2.2"), ip("fd00:77::2")];
    let plan = Plan::build(&c, 9000, &local).unwrap().unwrap();
    assert_eq!(elements(&plan, "local_v4"), ["10.77.2.2 . 443"]);
    assert_eq!(elements(&plan, "local_v6"), ["fd00:77::2 . 443"]);
    assert_eq!(
        elements(&plan, "remote_v4"),
        ["10.77.1.2 . 443", "10.77.2.3 . 8443"]
    );
    assert!(elements(&plan, "remote_v6").is_empty());
    assert_eq!(
        elements(&plan, "remote_addrs_v4"),
        ["10.77.1.2", "10.77.2.3"]
    );
    // The port of the listener, in every redirect; what the nat chains
    // redirect, the filter chains drop.
    let actions: Vec<_> = plan
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .filter_map(|r| match r {
            Rule::Match { action, .. } => Some(*action),
            Rule::MarkReturn(_) => None,
        })
        .collect();
    let mut want = vec![Action::Redirect(9000); 4];
    want.extend([Action::Drop; 4]);
    assert_eq!(actions, want);
}

#[test]
fn local_instances_override_the_addresses() {
    let c = config(serde_json::json!({"mode": "host", "local_instances": ["b", "c"]}));
    // The host's own addresses do not count once the list is given.
    let plan = Plan::build(&c, 8443, &[ip("10.77.1.2")]).unwrap().unwrap();
    assert_eq!(
        elements(&plan, "local_v4"),
        ["10.77.2.2 . 443", "10.77.2.3 . 8443"]
    );
    assert_eq!(elements(&plan, "remote_v4"), ["10.77.1.2 . 443"]);
    assert_eq!(elements(&plan, "remote_v6"), ["fd00:77::2 . 443"]);
}

#[test]
fn host_mode_without_a_local_instance_is_refused() {
    let c = config(serde_json::json!({"mode": "host"}));
    let e = Plan::build(&c, 8443, &[ip("192.0.2.1")]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("no instance's ip is an address of this host"),
        "{text}"
    );
    assert!(
        text.contains("192.0.2.1") && text.contains("local_instances"),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn the_mark_is_the_configured_one() {
    let v = serde_json::json!({
        "compartments_rules": {"can_reach": {"c": ["c"]}},
        "instances": {
            "a": {"ip": "10.0.0.1", "host": "a.example", "port": 443, "compartment_id": "c"},
            "b": {"ip": "10.0.0.2", "host": "b.example", "port": 443, "compartment_id": "c"}
        },
        "guard": {
            "upstream_mark": "0x1",
            "listen": {"transparent": ["[::]:9443"]},
            "firewall": {"mode": "host", "local_instances": ["a"], "nat_priority": -90}
        }
    });
    let c = Config::from_json_str(&v.to_string()).unwrap().0;
    let plan = Plan::build(&c, 9443, &[]).unwrap().unwrap();
    let text = render(&plan);
    assert!(text.contains("\t\tmeta mark 0x00000001 return\n"), "{text}");
    assert!(
        text.contains("type nat hook output priority -90;"),
        "{text}"
    );
    assert!(
        text.contains("type nat hook prerouting priority dstnat + 10;"),
        "{text}"
    );
    assert!(text.contains("redirect to :9443"), "{text}");
}

#[test]
fn rules_are_the_expressions_nft_generates() {
    // As `nft --debug=netlink` showed them for the same rules.
    let names = |r: &Rule| -> Vec<&str> { expressions(r).iter().map(|e| e.name()).collect() };
    assert_eq!(
        names(&Rule::MarkReturn(0x4d47)),
        ["meta", "cmp", "immediate"]
    );
    let inbound = Rule::Match {
        family: Family::V4,
        iifname: None,
        saddr: Some("remote_addrs_v4"),
        daddr_dport: "local_v4",
        action: Action::Redirect(8443),
    };
    assert_eq!(
        names(&inbound),
        [
            "meta",
            "cmp",
            "payload",
            "lookup",
            "meta",
            "cmp",
            "payload",
            "payload",
            "lookup",
            "immediate",
            "redir"
        ]
    );
    let forward = Rule::Match {
        family: Family::V6,
        iifname: Some("interfaces"),
        saddr: None,
        daddr_dport: "instances_v6",
        action: Action::Drop,
    };
    assert_eq!(
        names(&forward),
        [
            "meta",
            "lookup",
            "meta",
            "cmp",
            "meta",
            "cmp",
            "payload",
            "payload",
            "lookup",
            "immediate"
        ]
    );
}

#[test]
fn set_keys_are_laid_out_as_registers_hold_them() {
    // As `nft --debug=netlink` showed the elements of the same sets.
    let c = config(serde_json::json!({"mode": "gateway", "interfaces": ["veth0"]}));
    let plan = Plan::build(&c, 8443, &[]).unwrap().unwrap();
    let (ty, len, keys) = set_layout(plan.set("instances_v4").unwrap());
    assert_eq!((ty, len), ((7 << 6) | 13, 8));
    assert_eq!(keys[0], [10, 77, 1, 2, 0x01, 0xbb, 0, 0]);
    let (ty, len, keys) = set_layout(plan.set("instances_v6").unwrap());
    assert_eq!((ty, len), ((8 << 6) | 13, 20));
    assert_eq!(&keys[0][16..], [0x01, 0xbb, 0, 0]);
    let (ty, len, keys) = set_layout(plan.set("interfaces").unwrap());
    assert_eq!((ty, len), (41, 16));
    assert_eq!(&keys[0][..6], b"veth0\0");
    assert_eq!(plan.set("interfaces").unwrap().key, Key::Ifname);
}

#[test]
fn many_ipv4_addresses_two_to_a_line() {
    let mut instances = serde_json::Map::new();
    for i in 1..=5 {
        instances.insert(
            format!("i{i}"),
            serde_json::json!({"ip": format!("10.0.0.{i}"), "host": format!("i{i}.example"), "port": 443, "compartment_id": "c"}),
        );
    }
    let v = serde_json::json!({
        "compartments_rules": {"can_reach": {"c": ["c"]}},
        "instances": instances,
        "guard": {"firewall": {"mode": "host", "local_instances": ["i1"]}}
    });
    let c = Config::from_json_str(&v.to_string()).unwrap().0;
    let text = render(&Plan::build(&c, 8443, &[]).unwrap().unwrap());
    assert!(
        text.contains("\t\telements = { 10.0.0.2, 10.0.0.3,\n\t\t\t     10.0.0.4, 10.0.0.5 }\n"),
        "{text}"
    );
}
