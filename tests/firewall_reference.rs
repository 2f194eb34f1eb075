//! The reference rulesets in `nft/` are the table the guard builds: each
//! file, its sets filled with the instances of a config and loaded with
//! `nft -f`, lists the same table as `misp-guard nft install` of that
//! config, and as `misp-guard nft render` prints.

mod common;

use std::fs;

use common::sync::*;
use common::*;

const NFT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/nft");

/// The instances of the test config: (name, ip, port).
const INSTANCES: &[(&str, &str, u16)] = &[
    ("here", "10.77.1.2", 443),
    ("peer1", "10.77.2.2", 443),
    ("peer2", "10.77.3.2", 8443),
    ("peer6", "fd00:77::2", 443),
    ("here6", "fd00:77::9", 4443),
];

fn config(firewall: serde_json::Value) -> serde_json::Value {
    let mut instances = serde_json::Map::new();
    for (name, ip, port) in INSTANCES {
        instances.insert(
            (*name).into(),
            serde_json::json!({"ip": ip, "host": format!("{name}.example"), "port": port, "compartment_id": "c"}),
        );
    }
    serde_json::json!({
        "compartments_rules": {"can_reach": {"c": ["c"]}},
        "instances": instances,
        "guard": {"firewall": firewall}
    })
}

/// `ip . port` or `ip` elements of the instances that `pick` selects, as
/// nft writes them.
fn elements(pick: impl Fn(&str) -> bool, v6: bool, with_port: bool) -> Vec<String> {
    INSTANCES
        .iter()
        .filter(|(name, ip, _)| pick(name) && ip.contains(':') == v6)
        .map(|(_, ip, port)| {
            if with_port {
                format!("{ip} . {port}")
            } else {
                ip.to_string()
            }
        })
        .collect()
}

/// The reference file with each set's elements replaced.
fn fill(file: &str, sets: &[(&str, Vec<String>)]) -> String {
    let text = fs::read_to_string(format!("{NFT_DIR}/{file}")).unwrap();
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("set ").and_then(|r| r.strip_suffix(" {")) {
            current = sets.iter().map(|(n, _)| *n).find(|n| *n == name);
            assert!(
                current.is_some(),
                "{file}: set {name} is not one of the table's"
            );
        }
        if t.starts_with("elements = ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if t.starts_with("type ") {
            if let Some(name) = current.take() {
                let e = &sets.iter().find(|(n, _)| *n == name).unwrap().1;
                if !e.is_empty() {
                    out.push_str(&format!("\t\telements = {{ {} }}\n", e.join(", ")));
                }
            }
        }
    }
    out
}

/// A listing with each set's elements in one sorted line (the kernel lists
/// hash sets in its own order and nft wraps lines by type).
fn normalise(listing: &str) -> String {
    let mut out = Vec::new();
    let mut lines = listing.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("elements = { ") else {
            out.push(line.to_string());
            continue;
        };
        let mut text = rest.to_string();
        while !text.trim_end().ends_with('}') {
            text.push(' ');
            text.push_str(lines.next().unwrap().trim());
        }
        let inner = text.trim_end().trim_end_matches('}');
        let mut items: Vec<String> = inner.split(',').map(|s| s.trim().to_string()).collect();
        items.sort();
        out.push(format!("\t\telements = {{ {} }}", items.join(", ")));
    }
    out.join("\n")
}

fn run_guard(ns: &Netns, args: &[&str]) -> (bool, String, String) {
    let out = ns.command(GUARD).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn compare(tag: &str, file: &str, firewall: serde_json::Value, sets: &[(&str, Vec<String>)]) {
    // The guard's table, in one namespace.
    let ours = Netns::new(&format!("{tag}g"));
    let theirs = Netns::new(&format!("{tag}r"));
    for ns in [&ours, &theirs] {
        sh(&[
            "ip", "-n", &ns.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
    }
    let path = ours.path("config.json");
    fs::write(&path, config(firewall).to_string()).unwrap();
    let config = path.to_str().unwrap();
    let (ok, _, err) = run_guard(&ours, &["nft", "install", "--config", config]);
    assert!(ok, "nft install: {err}");
    let installed = table(&ours).expect("the guard's table");
    let (ok, rendered, err) = run_guard(&ours, &["nft", "render", "--config", config]);
    assert!(ok, "nft render: {err}");

    // The reference file, filled and loaded by nft, in another.
    let filled = fill(file, sets);
    let filled_path = theirs.path(file);
    fs::write(&filled_path, &filled).unwrap();
    let out = theirs
        .command("nft")
        .arg("-f")
        .arg(&filled_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft -f {file}: {}\n{filled}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = table(&theirs).unwrap();

    assert_eq!(
        normalise(&reference),
        normalise(&installed),
        "nft/{file} filled with the config's instances lists another table than the guard installs"
    );
    assert_eq!(
        normalise(&rendered),
        normalise(&installed),
        "`misp-guard nft render` is not what `nft list` shows after install"
    );
    // And the file as shipped loads.
    let out = theirs
        .command("nft")
        .arg("-f")
        .arg(format!("{NFT_DIR}/{file}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft -f nft/{file} as shipped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn host_reference_is_the_guards_table() {
    if !can_run_firewall("host_reference_is_the_guards_table") {
        return;
    }
    let local = |n: &str| n.starts_with("here");
    let remote = |n: &str| !n.starts_with("here");
    compare(
        "fwrh",
        "misp-host.nft",
        serde_json::json!({"mode": "host", "local_instances": ["here", "here6"]}),
        &[
            ("local_v4", elements(local, false, true)),
            ("local_v6", elements(local, true, true)),
            ("remote_v4", elements(remote, false, true)),
            ("remote_v6", elements(remote, true, true)),
            ("remote_addrs_v4", elements(remote, false, false)),
            ("remote_addrs_v6", elements(remote, true, false)),
        ],
    );
}

#[test]
fn gateway_reference_is_the_guards_table() {
    if !can_run_firewall("gateway_reference_is_the_guards_table") {
        return;
    }
    let all = |_: &str| true;
    compare(
        "fwrg",
        "gateway.nft",
        serde_json::json!({"mode": "gateway", "interfaces": ["eth1", "eth0"]}),
        &[
            ("instances_v4", elements(all, false, true)),
            ("instances_v6", elements(all, true, true)),
            ("interfaces", vec!["\"eth0\"".into(), "\"eth1\"".into()]),
        ],
    );
}

#[test]
fn normalising_keeps_what_differs() {
    // The comparison would see a changed element or rule.
    let a = "\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.2,\n\t\t\t     10.0.0.1 }\n\t}\n\t\tmeta mark 0x00004d47 return";
    let b = "\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1, 10.0.0.2 }\n\t}\n\t\tmeta mark 0x00004d47 return";
    assert_eq!(normalise(a), normalise(b));
    assert_ne!(normalise(a), normalise(&b.replace("10.0.0.2", "10.0.0.3")));
    assert_ne!(normalise(a), normalise(&b.replace("return", "accept")));
}
