//! Config tests: the conformance config, the packaged example, one case per
//! validation error (asserting the path in the line), hints, warnings and
//! the routing helpers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value as Json};

use super::*;
use crate::rules::RequiredTaxonomy;

/// Verbatim copy of `conformance/peer-scenarios/config.json`, the older
/// guard's test config: it must load unchanged.
const CONFORMANCE: &str = r#"
{
    "allowlist": {
        "urls":  [
                "http://www.dan.me.uk:443/torlist/?exit"
        ],
        "domains": [
            "snort-org-site.s3.amazonaws.com"
        ]
    },
    "compartments_rules": {
        "can_reach": {
            "compartment_1": [
                "compartment_1",
                "compartment_2",
                "compartment_4"
            ],
            "compartment_2": [
                "compartment_1",
                "compartment_2"
            ],
            "compartment_3": [
                "compartment_1",
                "compartment_3"
            ],
            "compartment_4": [
                "compartment_1",
                "compartment_2",
                "compartment_3",
                "compartment_4"
            ]
        }
    },
    "instances": {
        "instance_1_1": {
            "ip": "10.0.0.1",
            "host": "instance1-comp1.com",
            "port": 443,
            "compartment_id": "compartment_1",
            "affiliation": "",
            "taxonomies_rules": {
                "required_taxonomies": [],
                "allowed_tags": {},
                "blocked_tags": [
                    "tlp:red"
                ]
            },
            "blocked_distribution_levels": [
                "0"
            ],
            "blocked_sharing_groups_uuids": [
                "b9e656ba-b9c0-4506-83ed-7b54b43a57cb"
            ],
            "blocked_attribute_types": [
                "passport-number",
                "email"
            ],
            "blocked_attribute_categories": [
                "Person"
            ],
            "blocked_object_types": [
                "person"
            ]
        },
        "instance_1_2": {
            "ip": "10.0.0.2",
            "host": "instance2-comp1.com",
            "port": 443,
            "compartment_id": "compartment_1",
            "affiliation": "",
            "taxonomies_rules": {
                "required_taxonomies": [],
                "allowed_tags": {},
                "blocked_tags": [
                    "tlp:red"
                ]
            },
            "blocked_distribution_levels": [
                "0"
            ],
            "blocked_sharing_groups_uuids": [
                "b9e656ba-b9c0-4506-83ed-7b54b43a57cb"
            ],
            "blocked_attribute_types": [
                "passport-number",
                "email"
            ],
            "blocked_attribute_categories": [
                "Person"
            ],
            "blocked_object_types": [
                "person"
            ]
        },
        "instance_2_1": {
            "ip": "20.0.0.1",
            "host": "instance1-comp2.com",
            "port": 443,
            "compartment_id": "compartment_2",
            "affiliation": "",
            "taxonomies_rules": {
                "required_taxonomies": [],
                "allowed_tags": {},
                "blocked_tags": [
                    "tlp:red"
                ]
            },
            "blocked_distribution_levels": [
                "0"
            ],
            "blocked_sharing_groups_uuids": [
                "b9e656ba-b9c0-4506-83ed-7b54b43a57cb"
            ],
            "blocked_attribute_types": [
                "passport-number",
                "email"
            ],
            "blocked_attribute_categories": [
                "Person"
            ],
            "blocked_object_types": [
                "person"
            ]
        },
        "instance_2_2": {
            "ip": "20.0.0.2",
            "host": "instance2-comp2.com",
            "port": 443,
            "compartment_id": "compartment_2",
            "affiliation": "",
            "taxonomies_rules": {
                "required_taxonomies": [],
                "allowed_tags": {},
                "blocked_tags": [
                    "tlp:red"
                ]
            },
            "blocked_distribution_levels": [
                "0"
            ],
            "blocked_sharing_groups_uuids": [
                "b9e656ba-b9c0-4506-83ed-7b54b43a57cb"
            ],
            "blocked_attribute_types": [
                "passport-number",
                "email"
            ],
            "blocked_attribute_categories": [
                "Person"
            ],
            "blocked_object_types": [
                "person"
            ]
        },
        "instance_1_3": {
            "ip": "30.0.0.1",
            "host": "instance1-comp3.com",
            "port": 443,
            "compartment_id": "compartment_3",
            "affiliation": "",
            "taxonomies_rules": {
                "required_taxonomies": [],
                "allowed_tags": {},
                "blocked_tags": [
                    "tlp:red"
                ]
            },
            "blocked_distribution_levels": [
                "0"
            ],
            "blocked_sharing_groups_uuids": [
                "b9e656ba-b9c0-4506-83ed-7b54b43a57cb"
            ],
            "blocked_attribute_types": [
                "passport-number",
                "email"
            ],
            "blocked_attribute_categories": [
                "Person"
            ],
            "blocked_object_types": [
                "person"
            ]
        },
        "instance_1_4": {
            "ip": "40.0.0.1",
            "host": "instance1-comp4.com",
            "port": 443,
            "compartment_id": "compartment_4",
            "affiliation": "",
            "taxonomies_rules": {
                "required_taxonomies": [
                    "tlp"
                ],
                "allowed_tags": {
                    "tlp": [
                        "tlp:clear",
                        "tlp:white",
                        "tlp:green"
                    ]
                },
                "blocked_tags": [
                    "tlp:rainbow",
                    "tlp:red"
                ]
            },
            "blocked_distribution_levels": [
                "0"
            ],
            "blocked_sharing_groups_uuids": [
                "b9e656ba-b9c0-4506-83ed-7b54b43a57cb"
            ],
            "blocked_attribute_types": [
                "passport-number",
                "email"
            ],
            "blocked_attribute_categories": [
                "Person"
            ],
            "blocked_object_types": [
                "person"
            ]
        }
    }
}"#;

const EXAMPLE: &str = include_str!("../../packaging/misp-guard.example.json");

/// A small valid config; tests mutate one thing in it.
fn base() -> Json {
    json!({
        "allowlist": {"urls": ["https://example.org/feed.json"], "domains": ["Feeds.Example.org"]},
        "compartments_rules": {"can_reach": {"c1": ["c1", "c2"], "c2": ["c2"]}},
        "instances": {
            "a": {
                "ip": "10.0.0.1",
                "host": "Misp-A.example.org",
                "port": 443,
                "compartment_id": "c1",
                "affiliation": "",
                "taxonomies_rules": {
                    "required_taxonomies": [" TLP "],
                    "allowed_tags": {"tlp": ["TLP:Green", "tlp:clear"]},
                    "blocked_tags": ["tlp:red"]
                },
                "blocked_distribution_levels": ["0", 4],
                "blocked_sharing_groups_uuids": ["B9E656BA-B9C0-4506-83ED-7B54B43A57CB"],
                "blocked_attribute_types": ["email"],
                "blocked_attribute_categories": ["Person"],
                "blocked_object_types": ["person"]
            },
            "b": {"ip": "2001:db8::2", "host": "misp-b.example.org", "port": 8080, "compartment_id": "c2"}
        }
    })
}

/// Set (or add) the value at a JSON pointer.
fn set(v: &mut Json, pointer: &str, value: Json) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Json::Object(m) => {
            m.insert(key.to_owned(), value);
        }
        Json::Array(a) => a[key.parse::<usize>().unwrap()] = value,
        other => panic!("cannot set in {other}"),
    }
}

fn remove(v: &mut Json, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
}

fn load(v: &Json) -> Result<(Config, Vec<Problem>), Error> {
    Config::from_json_str(&v.to_string())
}

fn lines(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}

/// The error lines of a config that must be refused.
fn refused(v: &Json) -> Vec<String> {
    match load(v) {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => lines(&e.problems),
    }
}

#[track_caller]
fn assert_line(lines: &[String], path: &str, fragment: &str) {
    let prefix = format!("{path}: ");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&prefix) && l.contains(fragment)),
        "no line `{path}: …{fragment}…` in {lines:#?}"
    );
}

fn set_of(items: &[&str]) -> std::collections::HashSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn conformance_config_loads_with_its_policies() {
    let (config, warnings) = Config::from_json_str(CONFORMANCE).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<_> = config.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "instance_1_1",
            "instance_1_2",
            "instance_2_1",
            "instance_2_2",
            "instance_1_3",
            "instance_1_4"
        ]
    );
    let i = &config.instances[0];
    assert_eq!(i.ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(
        (i.host.as_str(), i.port, i.compartment.as_str()),
        ("instance1-comp1.com", 443, "compartment_1")
    );
    let p = &i.policy;
    assert_eq!(p.blocked_tags, set_of(&["tlp:red"]));
    assert!(p.required_taxonomies.is_empty());
    assert_eq!(
        p.blocked_distributions,
        [true, false, false, false, false, false]
    );
    assert_eq!(
        p.blocked_sharing_groups,
        set_of(&["b9e656ba-b9c0-4506-83ed-7b54b43a57cb"])
    );
    assert_eq!(
        p.blocked_attribute_types,
        set_of(&["passport-number", "email"])
    );
    assert_eq!(p.blocked_attribute_categories, set_of(&["person"]));
    assert_eq!(p.blocked_object_types, set_of(&["person"]));
    assert!(i.settings.tls.upstream, "port 443 means TLS upstream");
    assert_eq!(i.settings.base_path, "");

    let p = &config.instances[5].policy;
    assert_eq!(
        p.required_taxonomies,
        [RequiredTaxonomy {
            namespace: "tlp".into(),
            allowed: vec!["tlp:clear".into(), "tlp:white".into(), "tlp:green".into()],
        }]
    );
    assert_eq!(p.blocked_tags, set_of(&["tlp:rainbow", "tlp:red"]));

    assert_eq!(config.can_reach.len(), 3 + 2 + 2 + 4);
    assert!(config
        .can_reach
        .contains(&("compartment_3".into(), "compartment_1".into())));
    assert_eq!(
        config.allowlist.urls,
        ["http://www.dan.me.uk:443/torlist/?exit"]
    );
    assert_eq!(
        config.allowlist.domains,
        ["snort-org-site.s3.amazonaws.com"]
    );

    // No `guard` section: every default.
    let g = &config.guard;
    assert_eq!(
        g.transparent_listen,
        ["0.0.0.0:8443".parse::<SocketAddr>().unwrap()]
    );
    assert!(g.proxy_listen.is_empty());
    assert_eq!(g.upstream_mark, 0x4d47);
    assert_eq!(g.limits.max_header_bytes, 64 * 1024);
    assert_eq!(g.timeouts.upstream_response, Duration::from_secs(300));
    assert_eq!(g.log.format, LogFormat::Text);
    assert_eq!(g.spill_dir, std::env::temp_dir());
    assert!(!g.tls.min_version_13);
}

#[test]
fn packaged_example_loads() {
    let (config, warnings) = Config::from_json_str(EXAMPLE).unwrap();
    assert_eq!(config.instances.len(), 6);
    let g = &config.guard;
    assert_eq!(
        g.proxy_listen,
        ["127.0.0.1:8888".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(g.upstream_mark, 0x4d47);
    assert_eq!(g.log.format, LogFormat::Journald);
    assert_eq!(
        g.spill_dir,
        std::path::Path::new("/var/lib/misp-guard/spill")
    );
    assert_eq!(
        g.tls.ca_cert.as_deref(),
        Some(std::path::Path::new("/etc/misp-guard/ca.pem"))
    );
    let i = config.instance(
        config
            .destination_by_name("instance1-comp4.com", 443)
            .unwrap(),
    );
    assert_eq!(i.settings.base_path, "/misp");
    let i = &config.instances[0];
    assert!(i.settings.tls.cert.is_some() && i.settings.tls.key.is_some());
    assert!(i.settings.tls.upstream && !i.settings.tls.danger_skip_upstream_verify);
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// The config the Debian package installs as /etc/misp-guard/config.json.
const SHIPPED: &str = include_str!("../../packaging/config.json");

#[test]
fn shipped_config_is_valid_but_unconfigured() {
    let e = Config::from_json_str(SHIPPED).unwrap_err();
    assert!(e.is_unconfigured(), "{e}");
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    // The same file with one instance is a config `run` takes.
    let mut v: Json = serde_json::from_str(SHIPPED).unwrap();
    v["compartments_rules"]["can_reach"] = json!({"c": ["c"]});
    v["instances"] =
        json!({"a": {"ip": "10.0.0.1", "host": "a.example", "port": 443, "compartment_id": "c"}});
    let (config, _) = load(&v).unwrap();
    assert_eq!(config.guard.firewall.mode, FirewallMode::Host);
    assert_eq!(config.guard.log.format, LogFormat::Journald);
}

#[test]
fn unconfigured_is_only_the_empty_instances() {
    let mut v: Json = serde_json::from_str(SHIPPED).unwrap();
    v["guard"]["lisen"] = json!({});
    let e = Config::from_json_str(&v.to_string()).unwrap_err();
    assert!(!e.is_unconfigured(), "{e}");
    assert_line(&lines(&e.problems), "guard.lisen", "unknown key");
    let mut v = base();
    remove(&mut v, "/instances");
    assert!(!load(&v).unwrap_err().is_unconfigured());
}

#[test]
fn base_config_is_normalised() {
    let (config, warnings) = load(&base()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let a = &config.instances[0];
    assert_eq!(a.host, "misp-a.example.org");
    assert_eq!(
        a.policy.required_taxonomies,
        [RequiredTaxonomy {
            namespace: "tlp".into(),
            allowed: vec!["tlp:green".into(), "tlp:clear".into()]
        }]
    );
    assert_eq!(
        a.policy.blocked_distributions,
        [true, false, false, false, true, false]
    );
    assert_eq!(
        a.policy.blocked_sharing_groups,
        set_of(&["b9e656ba-b9c0-4506-83ed-7b54b43a57cb"])
    );
    let b = &config.instances[1];
    assert_eq!(b.affiliation, "");
    assert_eq!(b.policy.blocked_distributions, [false; 6]);
    assert!(
        !b.settings.tls.upstream,
        "port 8080 means plain HTTP upstream"
    );
    assert_eq!(config.allowlist.domains, ["feeds.example.org"]);
}

#[test]
fn empty_object_is_refused() {
    // conformance/peer-scenarios/fixtures/test_invalid_config.json
    let e = Config::from_json_str("{}").unwrap_err();
    let lines = lines(&e.problems);
    assert_line(&lines, "instances", "missing (required)");
    assert_line(&lines, "compartments_rules", "missing (required)");
}

#[test]
fn invalid_json_is_one_line_with_position() {
    let e = Config::from_json_str("{\n  \"instances\": {,\n}").unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].path, "2:17");
    assert!(e.to_string().starts_with("2:17: invalid JSON: "), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn duplicate_keys_are_refused_each_by_path() {
    let text = base()
        .to_string()
        .replacen("\"port\":443", "\"port\":443,\"port\":444", 1);
    let text = text.replacen(
        "{\"allowlist\"",
        "{\"guard\":{},\"guard\":{},\"allowlist\"",
        1,
    );
    let e = Config::from_json_str(&text).unwrap_err();
    let lines = lines(&e.problems);
    assert_line(&lines, "instances.a.port", "duplicate key");
    assert_line(&lines, "guard", "duplicate key");
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let mut v = base();
    set(&mut v, "/instances/a/port", json!(0));
    set(&mut v, "/instances/b/ip", json!("nope"));
    set(&mut v, "/guard", json!({"listen": {"proxy": ["x"]}}));
    let lines = refused(&v);
    assert_eq!(lines.len(), 3, "{lines:#?}");
}

/// One row per validation error: where to change the base config, the
/// value, the path the line must name, and a fragment of its message.
#[test]
fn validation_errors_name_their_path() {
    let table: &[(&str, Json, &str, &str)] = &[
        // Types.
        (
            "/instances/a/port",
            json!("443"),
            "instances.a.port",
            "expected an integer, found a string",
        ),
        (
            "/instances/a/host",
            json!(1),
            "instances.a.host",
            "expected a string, found a number",
        ),
        (
            "/instances/a/taxonomies_rules",
            json!([]),
            "instances.a.taxonomies_rules",
            "expected an object",
        ),
        (
            "/instances/a/blocked_attribute_types",
            json!("email"),
            "instances.a.blocked_attribute_types",
            "expected an array",
        ),
        (
            "/instances/a/blocked_tags_x",
            json!([]),
            "instances.a.blocked_tags_x",
            "unknown key",
        ),
        (
            "/instances/a/blocked_object_types/0",
            json!(3),
            "instances.a.blocked_object_types[0]",
            "expected a string",
        ),
        ("/allowlist", json!([]), "allowlist", "expected an object"),
        ("/instances", json!([]), "instances", "expected an object"),
        // Required keys.
        (
            "/instances/b/ip",
            Json::Null,
            "instances.b.ip",
            "expected a string, found null",
        ),
        // Unknown keys everywhere.
        ("/extra", json!(1), "extra", "unknown key"),
        (
            "/allowlist/url",
            json!([]),
            "allowlist.url",
            "unknown key (did you mean \"urls\"?)",
        ),
        (
            "/compartments_rules/can_reach_x",
            json!({}),
            "compartments_rules.can_reach_x",
            "unknown key",
        ),
        (
            "/instances/a/taxonomies_rules/blocked",
            json!([]),
            "instances.a.taxonomies_rules.blocked",
            "unknown key",
        ),
        (
            "/guard",
            json!({"limit": {}}),
            "guard.limit",
            "unknown key (did you mean \"limits\"?)",
        ),
        (
            "/guard",
            json!({"limits": {"max_body": 1}}),
            "guard.limits.max_body",
            "unknown key",
        ),
        (
            "/guard",
            json!({"timeouts": {"iddle": 1}}),
            "guard.timeouts.iddle",
            "did you mean \"idle\"?",
        ),
        (
            "/guard",
            json!({"tls": {"min_versoin": "1.3"}}),
            "guard.tls.min_versoin",
            "did you mean \"min_version\"?",
        ),
        (
            "/guard",
            json!({"log": {"fromat": "json"}}),
            "guard.log.fromat",
            "did you mean \"format\"?",
        ),
        (
            "/guard",
            json!({"listen": {"proxi": []}}),
            "guard.listen.proxi",
            "did you mean \"proxy\"?",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"basepath": "/x"}}}),
            "guard.instances.a.basepath",
            "did you mean \"base_path\"?",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"tls": {"certs": "x"}}}}),
            "guard.instances.a.tls.certs",
            "did you mean \"cert\"?",
        ),
        // Compartments.
        (
            "/instances/b/compartment_id",
            json!("c3"),
            "instances.b.compartment_id",
            "not a key of compartments_rules.can_reach",
        ),
        (
            "/compartments_rules/can_reach/c2",
            json!(["c2", "c9"]),
            "compartments_rules.can_reach.c2[1]",
            "unknown compartment \"c9\"",
        ),
        (
            "/compartments_rules/can_reach/c2",
            json!(["c3"]),
            "compartments_rules.can_reach.c2[0]",
            "(did you mean \"c1\"?)",
        ),
        (
            "/compartments_rules/can_reach",
            json!([]),
            "compartments_rules.can_reach",
            "expected an object",
        ),
        (
            "/compartments_rules/can_reach/c1",
            json!("c1"),
            "compartments_rules.can_reach.c1",
            "expected an array",
        ),
        // Duplicate addresses and names.
        (
            "/instances/b/ip",
            json!("10.0.0.1"),
            "instances.b.ip",
            "10.0.0.1 is also the ip of instance a",
        ),
        (
            "/instances/b/ip",
            json!("::ffff:10.0.0.1"),
            "instances.b.ip",
            "10.0.0.1 is also the ip of instance a",
        ),
        (
            "/instances/b/host",
            json!("MISP-A.example.org"),
            "instances.b.host",
            "misp-a.example.org is also the host of instance a",
        ),
        (
            "/instances/b/host",
            json!("10.0.0.1"),
            "instances.b.host",
            "10.0.0.1 is the ip of instance a",
        ),
        // Ports.
        (
            "/instances/a/port",
            json!(70000),
            "instances.a.port",
            "70000 is outside 1..65535",
        ),
        (
            "/instances/a/port",
            json!(0),
            "instances.a.port",
            "0 is outside 1..65535",
        ),
        (
            "/instances/a/port",
            json!(-1),
            "instances.a.port",
            "-1 is outside 1..65535",
        ),
        (
            "/instances/a/port",
            json!(443.5),
            "instances.a.port",
            "443.5 is not an integer",
        ),
        // Distribution levels.
        (
            "/instances/a/blocked_distribution_levels/0",
            json!("6"),
            "instances.a.blocked_distribution_levels[0]",
            "\"6\" is not a distribution level",
        ),
        (
            "/instances/a/blocked_distribution_levels/0",
            json!(6),
            "instances.a.blocked_distribution_levels[0]",
            "6 is not a distribution level",
        ),
        (
            "/instances/a/blocked_distribution_levels/0",
            json!("01"),
            "instances.a.blocked_distribution_levels[0]",
            "not a distribution level",
        ),
        (
            "/instances/a/blocked_distribution_levels/0",
            json!(" 1"),
            "instances.a.blocked_distribution_levels[0]",
            "not a distribution level",
        ),
        (
            "/instances/a/blocked_distribution_levels/0",
            json!(-1),
            "instances.a.blocked_distribution_levels[0]",
            "not a distribution level",
        ),
        (
            "/instances/a/blocked_distribution_levels/0",
            json!(true),
            "instances.a.blocked_distribution_levels[0]",
            "expected a string",
        ),
        // Sharing-group uuids.
        (
            "/instances/a/blocked_sharing_groups_uuids/0",
            json!("b9e656bab9c0450683ed7b54b43a57cb"),
            "instances.a.blocked_sharing_groups_uuids[0]",
            "hyphenated form",
        ),
        (
            "/instances/a/blocked_sharing_groups_uuids/0",
            json!("{b9e656ba-b9c0-4506-83ed-7b54b43a57cb}"),
            "instances.a.blocked_sharing_groups_uuids[0]",
            "hyphenated form",
        ),
        (
            "/instances/a/blocked_sharing_groups_uuids/0",
            json!("b9e656ba-b9c0-4506-83ed-7b54b43a57cx"),
            "instances.a.blocked_sharing_groups_uuids[0]",
            "not a uuid",
        ),
        // Addresses.
        (
            "/instances/a/ip",
            json!("10.0.0.256"),
            "instances.a.ip",
            "is not an IPv4 or IPv6 address",
        ),
        (
            "/instances/a/ip",
            json!("10.0.0.1:443"),
            "instances.a.ip",
            "is not an IPv4 or IPv6 address",
        ),
        (
            "/instances/a/ip",
            json!("[2001:db8::1]"),
            "instances.a.ip",
            "is not an IPv4 or IPv6 address",
        ),
        (
            "/instances/a/ip",
            json!("0.0.0.0"),
            "instances.a.ip",
            "not the address of one host",
        ),
        (
            "/instances/a/ip",
            json!("224.0.0.1"),
            "instances.a.ip",
            "not the address of one host",
        ),
        (
            "/instances/a/host",
            json!("misp a.example.org"),
            "instances.a.host",
            "is not a DNS name",
        ),
        (
            "/instances/a/host",
            json!("-misp.example.org"),
            "instances.a.host",
            "starts or ends with '-'",
        ),
        (
            "/instances/a/host",
            json!("misp..example.org"),
            "instances.a.host",
            "is not a DNS name",
        ),
        (
            "/instances/a/host",
            json!(""),
            "instances.a.host",
            "is not a DNS name",
        ),
        (
            "/instances/a/host",
            json!("10.1"),
            "instances.a.host",
            "looks like an IPv4 address",
        ),
        (
            "/instances/a/host",
            json!("misp.0x0a"),
            "instances.a.host",
            "looks like an IPv4 address",
        ),
        (
            "/instances/a/host",
            json!("[10.0.0.1]"),
            "instances.a.host",
            "is not an IPv6 literal",
        ),
        // Allowlist.
        (
            "/allowlist/urls/0",
            json!("ftp://example.org/"),
            "allowlist.urls[0]",
            "is not an http:// or https:// URL",
        ),
        (
            "/allowlist/urls/0",
            json!("https://exa mple.org/"),
            "allowlist.urls[0]",
            "spaces",
        ),
        (
            "/allowlist/urls/0",
            json!("https://user@example.org/"),
            "allowlist.urls[0]",
            "user information",
        ),
        (
            "/allowlist/urls/0",
            json!("https://example.org:99999/"),
            "allowlist.urls[0]",
            "port",
        ),
        (
            "/allowlist/urls/0",
            json!("https:///x"),
            "allowlist.urls[0]",
            "has a host that",
        ),
        (
            "/allowlist/urls/0",
            json!("https://example.org/#x"),
            "allowlist.urls[0]",
            "fragment",
        ),
        (
            "/allowlist/domains/0",
            json!("exa_mple..org"),
            "allowlist.domains[0]",
            "is not a DNS name",
        ),
        // Taxonomies and tags.
        (
            "/instances/a/taxonomies_rules/required_taxonomies/0",
            json!("  "),
            "instances.a.taxonomies_rules.required_taxonomies[0]",
            "empty value",
        ),
        (
            "/instances/a/taxonomies_rules/allowed_tags/pap",
            json!(["pap:white"]),
            "instances.a.taxonomies_rules.allowed_tags.pap",
            "\"pap\" is not in required_taxonomies",
        ),
        (
            "/instances/a/taxonomies_rules/allowed_tags/tlp",
            json!(["pap:white"]),
            "instances.a.taxonomies_rules.allowed_tags.tlp[0]",
            "is not a tag of taxonomy \"tlp\"",
        ),
        (
            "/instances/a/taxonomies_rules/allowed_tags/tlp",
            json!(["tlp:"]),
            "instances.a.taxonomies_rules.allowed_tags.tlp[0]",
            "is not a tag of taxonomy",
        ),
        (
            "/instances/a/taxonomies_rules/allowed_tags/tlp",
            json!(["tlpx:green"]),
            "instances.a.taxonomies_rules.allowed_tags.tlp[0]",
            "is not a tag of taxonomy",
        ),
        (
            "/instances/a/taxonomies_rules/blocked_tags/0",
            json!(" \t"),
            "instances.a.taxonomies_rules.blocked_tags[0]",
            "empty value",
        ),
        (
            "/instances/a/blocked_attribute_types/0",
            json!(""),
            "instances.a.blocked_attribute_types[0]",
            "empty value",
        ),
        // Empty instances.
        ("/instances", json!({}), "instances", "no instances"),
        // The guard section.
        (
            "/guard",
            json!({"instances": {"c": {}}}),
            "guard.instances.c",
            "no instance \"c\" in instances",
        ),
        (
            "/guard",
            json!({"instances": {"aa": {}}}),
            "guard.instances.aa",
            "(did you mean \"a\"?)",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"tls": {"cert": "/c.pem"}}}}),
            "guard.instances.a.tls.cert",
            "cert without key",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"tls": {"key": "/k.pem"}}}}),
            "guard.instances.a.tls.key",
            "key without cert",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"tls": {"client_key": "/k.pem"}}}}),
            "guard.instances.a.tls.client_key",
            "client_key without client_cert",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"tls": {"cert": "", "key": "/k"}}}}),
            "guard.instances.a.tls.cert",
            "empty path",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"tls": {"upstream": "yes"}}}}),
            "guard.instances.a.tls.upstream",
            "expected true or false",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"base_path": "misp"}}}),
            "guard.instances.a.base_path",
            "must start with '/'",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"base_path": "/a/../b"}}}),
            "guard.instances.a.base_path",
            "not a plain path",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"base_path": "/a%2fb"}}}),
            "guard.instances.a.base_path",
            "not a plain path",
        ),
        (
            "/allowlist",
            json!({"domains": ["MISP-A.example.org"]}),
            "allowlist.domains[0]",
            "is an instance",
        ),
        (
            "/allowlist",
            json!({"urls": ["https://10.0.0.1:8443/feed"]}),
            "allowlist.urls[0]",
            "is on an instance",
        ),
        (
            "/guard",
            json!({"instances": {"a": {"base_path": "/~user/misp"}}}),
            "guard.instances.a.base_path",
            "not a plain path",
        ),
        (
            "/guard",
            json!({"tls": {"ca_key": "/k"}}),
            "guard.tls.ca_key",
            "ca_key without ca_cert",
        ),
        (
            "/guard",
            json!({"tls": {"min_version": "1.1"}}),
            "guard.tls.min_version",
            "is not \"1.2\" or \"1.3\"",
        ),
        (
            "/guard",
            json!({"tls": {"min_version": 1.3}}),
            "guard.tls.min_version",
            "expected a string",
        ),
        (
            "/guard",
            json!({"log": {"format": "xml"}}),
            "guard.log.format",
            "is not \"text\", \"json\" or \"journald\"",
        ),
        (
            "/guard",
            json!({"log": {"level": "info,=[[["}}),
            "guard.log.level",
            "not a tracing filter",
        ),
        (
            "/guard",
            json!({"listen": {"transparent": ["8443"]}}),
            "guard.listen.transparent[0]",
            "is not an address:port",
        ),
        (
            "/guard",
            json!({"listen": {"transparent": ["[::1]:8443"], "proxy": ["[::1]:8443"]}}),
            "guard.listen.transparent[0]",
            "listed twice",
        ),
        (
            "/guard",
            json!({"limits": {"max_headers": 0}}),
            "guard.limits.max_headers",
            "0 is outside 1..",
        ),
        (
            "/guard",
            json!({"limits": {"max_body_bytes": "1G"}}),
            "guard.limits.max_body_bytes",
            "expected an integer",
        ),
        (
            "/guard",
            json!({"timeouts": {"idle": 0}}),
            "guard.timeouts.idle",
            "not a positive number of seconds",
        ),
        (
            "/guard",
            json!({"timeouts": {"idle": -1}}),
            "guard.timeouts.idle",
            "not a positive number of seconds",
        ),
        (
            "/guard",
            json!({"timeouts": {"idle": "60s"}}),
            "guard.timeouts.idle",
            "expected a number of seconds",
        ),
        (
            "/guard",
            json!({"timeouts": {"idle": 1e12}}),
            "guard.timeouts.idle",
            "up to 604800",
        ),
        (
            "/guard",
            json!({"upstream_mark": 0}),
            "guard.upstream_mark",
            "must be non-zero",
        ),
        (
            "/guard",
            json!({"upstream_mark": "0x"}),
            "guard.upstream_mark",
            "not a hex mark",
        ),
        (
            "/guard",
            json!({"upstream_mark": 4294967296u64}),
            "guard.upstream_mark",
            "outside",
        ),
        (
            "/guard",
            json!({"spill_dir": ""}),
            "guard.spill_dir",
            "empty path",
        ),
        ("/guard", json!([]), "guard", "expected an object"),
    ];
    for (pointer, value, path, fragment) in table {
        let mut v = base();
        set(&mut v, pointer, value.clone());
        assert_line(&refused(&v), path, fragment);
    }
}

#[test]
fn missing_instance_keys_are_named() {
    for key in ["ip", "host", "port", "compartment_id"] {
        let mut v = base();
        remove(&mut v, &format!("/instances/a/{key}"));
        assert_line(
            &refused(&v),
            &format!("instances.a.{key}"),
            "missing (required)",
        );
    }
    let mut v = base();
    remove(&mut v, "/compartments_rules/can_reach");
    assert_line(
        &refused(&v),
        "compartments_rules.can_reach",
        "missing (required)",
    );
}

#[test]
fn comment_keys_only_inside_guard() {
    let mut v = base();
    v["instances"]["a"]["//"] = json!("note");
    v["//"] = json!("note");
    let lines = refused(&v);
    assert_eq!(lines, ["//: unknown key", "instances.a.//: unknown key"]);
}

#[test]
fn did_you_mean_on_unknown_instance_key() {
    let mut v = base();
    set(&mut v, "/instances/a/blocked_attribute_type", json!([]));
    assert_eq!(
        refused(&v),
        ["instances.a.blocked_attribute_type: unknown key (did you mean \"blocked_attribute_types\"?)"]
    );
    // A taxonomies_rules key misplaced at the instance level.
    for key in ["blocked_tag", "blocked_tags"] {
        let mut v = base();
        set(&mut v, &format!("/instances/a/{key}"), json!([]));
        assert_eq!(
            refused(&v),
            [format!(
                "instances.a.{key}: unknown key (did you mean \"taxonomies_rules.blocked_tags\"?)"
            )]
        );
    }
    // Nothing close: no hint.
    let mut v = base();
    set(&mut v, "/instances/a/zzzzzzzzzz", json!([]));
    assert_eq!(refused(&v), ["instances.a.zzzzzzzzzz: unknown key"]);
}

#[test]
fn accepted_spellings() {
    let cases: &[(&str, Json)] = &[
        ("/instances/a/ip", json!("::ffff:10.0.0.9")),
        ("/instances/a/host", json!("[2001:DB8::1]")),
        ("/instances/a/host", json!("10.0.0.1")),
        ("/instances/a/host", json!("misp_a")),
        (
            "/instances/a/blocked_distribution_levels",
            json!(["5", 5, 0, "0"]),
        ),
        (
            "/allowlist/urls",
            json!([
                "http://[2001:db8::1]:8080/x?y",
                "https://h",
                "http://h:80?q"
            ]),
        ),
        ("/allowlist/domains", json!(["10.0.0.8", "[::1]"])),
        (
            "/guard",
            json!({"//": "comment", "listen": {"//": 1, "proxy": ["[::]:3128"]}, "upstream_mark": 77}),
        ),
        (
            "/guard",
            json!({"timeouts": {"head": 0.5, "min_body_rate": 0}, "limits": {"max_decode_ratio": 1}}),
        ),
        (
            "/guard",
            json!({"instances": {"//": "c", "b": {"base_path": "/misp/", "tls": {"upstream": true}}}}),
        ),
        (
            "/guard",
            json!({"log": {"format": "json", "level": "misp_guard=debug,info"}}),
        ),
    ];
    for (pointer, value) in cases {
        let mut v = base();
        set(&mut v, pointer, value.clone());
        if let Err(e) = load(&v) {
            panic!("{pointer} = {value} refused: {e}");
        }
    }
    let mut v = base();
    set(&mut v, "/instances/a/ip", json!("::ffff:10.0.0.9"));
    set(&mut v, "/instances/a/host", json!("[2001:DB8::1]"));
    set(
        &mut v,
        "/guard",
        json!({"upstream_mark": "0x10", "instances": {"b": {"base_path": "/misp/", "tls": {"upstream": true}}}}),
    );
    let (c, _) = load(&v).unwrap();
    assert_eq!(c.instances[0].ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
    assert_eq!(c.instances[0].host, "2001:db8::1");
    assert_eq!(c.guard.upstream_mark, 16);
    assert_eq!(c.instances[1].settings.base_path, "/misp");
    assert!(c.instances[1].settings.tls.upstream);
}

#[test]
fn unknown_misp_values_are_warnings_with_nearest() {
    let mut v = base();
    set(
        &mut v,
        "/instances/a/blocked_attribute_types",
        json!(["emial", "EMAIL"]),
    );
    set(
        &mut v,
        "/instances/a/blocked_attribute_categories",
        json!(["Persn"]),
    );
    set(
        &mut v,
        "/instances/a/blocked_object_types",
        json!(["persn"]),
    );
    let (config, warnings) = load(&v).unwrap();
    let lines = lines(&warnings);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_line(
        &lines,
        "instances.a.blocked_attribute_types[0]",
        "not an attribute type MISP knows",
    );
    assert_line(
        &lines,
        "instances.a.blocked_attribute_types[0]",
        "(nearest: \"email\")",
    );
    assert_line(
        &lines,
        "instances.a.blocked_attribute_categories[0]",
        "(nearest: \"Person\")",
    );
    assert_line(
        &lines,
        "instances.a.blocked_object_types[0]",
        "(nearest: \"person\")",
    );
    // Still loaded, lower-cased, as the engine compares.
    assert_eq!(
        config.instances[0].policy.blocked_attribute_types,
        set_of(&["emial", "email"])
    );
}

#[test]
fn weakening_settings_warn() {
    let mut v = base();
    set(
        &mut v,
        "/guard",
        json!({"instances": {"a": {"tls": {"danger_skip_upstream_verify": true, "allow_plain_http": true}}}}),
    );
    let (_, warnings) = load(&v).unwrap();
    let lines = lines(&warnings);
    assert_line(
        &lines,
        "guard.instances.a.tls.danger_skip_upstream_verify",
        "not verified",
    );
    assert_line(
        &lines,
        "guard.instances.a.tls.allow_plain_http",
        "clear text",
    );
}

#[test]
fn warnings_come_back_with_errors() {
    let mut v = base();
    set(
        &mut v,
        "/instances/a/blocked_object_types",
        json!(["persn"]),
    );
    set(&mut v, "/instances/a/port", json!(0));
    let e = load(&v).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.warnings.len(), 1);
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(&path, EXAMPLE).unwrap();
    assert!(Config::load(&path).is_ok());
    std::fs::write(&path, "{}").unwrap();
    assert_eq!(
        Config::load(&path).unwrap_err().file.as_deref(),
        Some(path.as_path())
    );
    let missing = dir.path().join("missing.json");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert!(e.to_string().contains("cannot read"), "{e}");
}

// === routing ===

fn conformance() -> Config {
    Config::from_json_str(CONFORMANCE).unwrap().0
}

fn id(c: &Config, name: &str) -> InstanceId {
    InstanceId(c.instances.iter().position(|i| i.name == name).unwrap())
}

#[test]
fn source_by_peer_address() {
    let c = conformance();
    assert_eq!(
        c.source("10.0.0.2".parse().unwrap()),
        Some(id(&c, "instance_1_2"))
    );
    assert_eq!(
        c.source("::ffff:10.0.0.2".parse().unwrap()),
        Some(id(&c, "instance_1_2"))
    );
    assert_eq!(c.source("10.0.0.3".parse().unwrap()), None);
    assert_eq!(c.source("::1".parse().unwrap()), None);
}

#[test]
fn destination_by_original_address() {
    let c = conformance();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        c.destination_by_addr(addr("20.0.0.1:443")),
        Ok(id(&c, "instance_2_1"))
    );
    assert_eq!(
        c.destination_by_addr(addr("[::ffff:20.0.0.1]:443")),
        Ok(id(&c, "instance_2_1"))
    );
    assert_eq!(
        c.destination_by_addr(addr("20.0.0.1:80")),
        Err(RouteError::WrongPort {
            instance: "instance_2_1".into(),
            port: 80,
            expected: 443
        })
    );
    let e = c.destination_by_addr(addr("20.0.0.9:443")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "destination address 20.0.0.9:443 is not a configured instance"
    );
}

#[test]
fn destination_by_host_name() {
    let c = conformance();
    assert_eq!(
        c.destination_by_name("instance1-comp2.com", 443),
        Ok(id(&c, "instance_2_1"))
    );
    assert_eq!(
        c.destination_by_name("INSTANCE1-Comp2.com", 443),
        Ok(id(&c, "instance_2_1"))
    );
    assert_eq!(
        c.destination_by_name("20.0.0.1", 443),
        Ok(id(&c, "instance_2_1"))
    );
    assert_eq!(
        c.destination_by_name("[::ffff:20.0.0.1]", 443),
        Ok(id(&c, "instance_2_1"))
    );
    assert!(matches!(
        c.destination_by_name("instance1-comp2.com", 8443),
        Err(RouteError::WrongPort {
            port: 8443,
            expected: 443,
            ..
        })
    ));
    let e = c
        .destination_by_name("instance99-comp1.com", 443)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "destination host instance99-comp1.com is not a configured instance"
    );
    // Spellings that some reader would take for the same host are not it.
    for other in [
        "instance1-comp2.com.",
        " instance1-comp2.com",
        "instance1-comp2.com:443",
        "20.0.0.01",
        "[20.0.0.1]",
        "",
    ] {
        assert!(c.destination_by_name(other, 443).is_err(), "{other:?}");
    }
}

#[test]
fn destination_by_ipv6_literal() {
    let (c, _) = load(&base()).unwrap();
    let b = InstanceId(1);
    assert_eq!(c.destination_by_name("[2001:DB8::2]", 8080), Ok(b));
    assert_eq!(c.destination_by_name("2001:db8:0::2", 8080), Ok(b));
    assert_eq!(
        c.destination_by_addr("[2001:db8::2]:8080".parse().unwrap()),
        Ok(b)
    );
    assert_eq!(c.source("2001:db8::2".parse().unwrap()), Some(b));
}

#[test]
fn compartments_reach_as_listed() {
    let c = conformance();
    let (c1, c2, c3, c4) = (
        id(&c, "instance_1_1"),
        id(&c, "instance_2_1"),
        id(&c, "instance_1_3"),
        id(&c, "instance_1_4"),
    );
    assert!(c.can_reach(c1, c2) && c.can_reach(c1, c4) && c.can_reach(c1, id(&c, "instance_1_2")));
    assert!(!c.can_reach(c1, c3));
    assert!(c.can_reach(c3, c1) && !c.can_reach(c3, c2));
    assert!(!c.can_reach(c2, c4) && c.can_reach(c4, c2));
}

#[test]
fn allowlist_exact_url_or_domain() {
    let c = conformance();
    assert!(c.allowlisted("http://www.dan.me.uk:443/torlist/?exit", "www.dan.me.uk"));
    assert!(!c.allowlisted("http://www.dan.me.uk:443/torlist/?exit=1", "www.dan.me.uk"));
    assert!(!c.allowlisted("http://www.dan.me.uk:443/torlist/", "www.dan.me.uk"));
    assert!(c.allowlisted(
        "https://snort-org-site.s3.amazonaws.com/any",
        "SNORT-org-site.s3.amazonaws.com"
    ));
    assert!(!c.allowlisted(
        "https://x.snort-org-site.s3.amazonaws.com/",
        "x.snort-org-site.s3.amazonaws.com"
    ));
    let mut v = base();
    set(&mut v, "/allowlist/domains", json!(["[2001:db8::5]"]));
    let (c, _) = load(&v).unwrap();
    assert!(c.allowlisted("", "[2001:db8::5]") && c.allowlisted("", "2001:db8::5"));
}

#[test]
fn summary_lists_instances_compartments_listeners() {
    let s = conformance().summary();
    assert!(s.starts_with("instances (6):\n"), "{s}");
    assert!(
        s.contains(
            "instance_1_4 host instance1-comp4.com at 40.0.0.1:443 compartment compartment_4"
        ),
        "{s}"
    );
    assert!(s.contains("1 required taxonomies"), "{s}");
    assert!(
        s.contains("compartment_3 [instance_1_3] reaches compartment_1, compartment_3"),
        "{s}"
    );
    assert!(s.contains("transparent 0.0.0.0:8443"), "{s}");
}

#[test]
fn firewall_is_off_unless_asked_for() {
    let (config, _) = load(&base()).unwrap();
    let f = &config.guard.firewall;
    assert_eq!(f.mode, FirewallMode::Off);
    assert!(f.interfaces.is_empty() && f.local_instances.is_none());
    assert_eq!(f.nat_priority, -100);

    let mut v = base();
    set(
        &mut v,
        "/guard",
        json!({"firewall": {"mode": "host", "local_instances": ["b"], "nat_priority": -90}}),
    );
    let (config, warnings) = load(&v).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let f = &config.guard.firewall;
    assert_eq!(f.mode, FirewallMode::Host);
    assert_eq!(f.local_instances.as_deref(), Some(&["b".to_owned()][..]));
    assert_eq!(f.nat_priority, -90);

    set(
        &mut v,
        "/guard",
        json!({"firewall": {"mode": "gateway", "interfaces": ["eth0", "veth-misp.1"], "// why": "two legs"}}),
    );
    let f = load(&v).unwrap().0.guard.firewall;
    assert_eq!(f.mode, FirewallMode::Gateway);
    assert_eq!(f.interfaces, ["eth0", "veth-misp.1"]);
}

#[test]
fn firewall_errors_name_their_path() {
    let table: &[(Json, &str, &str)] = &[
        (
            json!({"mode": "on"}),
            "guard.firewall.mode",
            "is not \"off\", \"host\" or \"gateway\"",
        ),
        (
            json!({"mode": 1}),
            "guard.firewall.mode",
            "expected a string",
        ),
        (
            json!({"mdoe": "host"}),
            "guard.firewall.mdoe",
            "did you mean \"mode\"",
        ),
        (
            json!({"mode": "gateway"}),
            "guard.firewall.interfaces",
            "missing (required for mode \"gateway\"",
        ),
        (
            json!({"mode": "gateway", "interfaces": []}),
            "guard.firewall.interfaces",
            "no interface",
        ),
        (
            json!({"mode": "gateway", "interfaces": ["eth0", "eth0"]}),
            "guard.firewall.interfaces[1]",
            "listed twice",
        ),
        (
            json!({"mode": "gateway", "interfaces": ["a-very-long-name0"]}),
            "guard.firewall.interfaces[0]",
            "longer than 15 bytes",
        ),
        (
            json!({"mode": "gateway", "interfaces": ["eth0:1"]}),
            "guard.firewall.interfaces[0]",
            "not an interface name",
        ),
        (
            json!({"mode": "gateway", "interfaces": [""]}),
            "guard.firewall.interfaces[0]",
            "is empty",
        ),
        (
            json!({"mode": "host", "interfaces": ["eth0"]}),
            "guard.firewall.interfaces",
            "only for mode \"gateway\"",
        ),
        (
            json!({"mode": "host", "local_instances": ["c"]}),
            "guard.firewall.local_instances[0]",
            "no instance \"c\" in instances",
        ),
        (
            json!({"mode": "host", "local_instances": ["a", "a"]}),
            "guard.firewall.local_instances[1]",
            "listed twice",
        ),
        (
            json!({"mode": "gateway", "interfaces": ["eth0"], "local_instances": ["a"]}),
            "guard.firewall.local_instances",
            "only for mode \"host\"",
        ),
        (
            json!({"mode": "host", "local_instances": []}),
            "guard.firewall.local_instances",
            "empty: name the instances on this host",
        ),
        (
            json!({"nat_priority": -1001}),
            "guard.firewall.nat_priority",
            "outside -1000..1000",
        ),
        (
            json!({"nat_priority": 1.5}),
            "guard.firewall.nat_priority",
            "not an integer",
        ),
        (
            json!({"nat_priority": "dstnat"}),
            "guard.firewall.nat_priority",
            "expected an integer",
        ),
        (json!([]), "guard.firewall", "expected an object"),
    ];
    for (firewall, path, fragment) in table {
        let mut v = base();
        set(&mut v, "/guard", json!({ "firewall": firewall }));
        assert_line(&refused(&v), path, fragment);
    }
}

#[test]
fn firewall_needs_a_transparent_listener() {
    let mut v = base();
    set(
        &mut v,
        "/guard",
        json!({"listen": {"transparent": []}, "firewall": {"mode": "host"}}),
    );
    assert_line(
        &refused(&v),
        "guard.firewall.mode",
        "needs a transparent listener",
    );
    // A listener on one address only receives part of what is redirected.
    set(
        &mut v,
        "/guard",
        json!({"listen": {"transparent": ["127.0.0.1:8443"]}, "firewall": {"mode": "host"}}),
    );
    let (_, warnings) = load(&v).unwrap();
    assert_line(
        &lines(&warnings),
        "guard.listen.transparent[0]",
        "not a wildcard address",
    );
    // Off needs nothing.
    set(
        &mut v,
        "/guard",
        json!({"listen": {"transparent": []}, "firewall": {"mode": "off"}}),
    );
    assert!(load(&v).is_ok());
}

#[test]
fn packaged_example_sets_host_mode() {
    let (config, warnings) = Config::from_json_str(EXAMPLE).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let f = &config.guard.firewall;
    assert_eq!(f.mode, FirewallMode::Host);
    assert_eq!(
        f.local_instances.as_deref(),
        Some(&["instance_1_1".to_owned()][..])
    );
    assert_eq!(f.nat_priority, -100);
}

#[test]
fn mode_is_enforce_unless_monitor_is_asked_for_guard_wide_or_per_instance() {
    let (c, _) = load(&base()).unwrap();
    assert_eq!(c.guard.mode, Enforcement::Enforce);
    assert_eq!(c.enforcement(id(&c, "a")), Enforcement::Enforce);
    assert!(c.monitored().is_empty());
    assert!(!c.summary().contains("MONITOR"));

    let mut v = base();
    set(
        &mut v,
        "/guard",
        json!({"instances": {"b": {"mode": "monitor"}}}),
    );
    let (c, warnings) = load(&v).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.enforcement(id(&c, "a")), Enforcement::Enforce);
    assert_eq!(c.enforcement(id(&c, "b")), Enforcement::Monitor);
    assert_eq!(c.monitored(), ["b"]);
    assert!(c.summary().contains("MONITOR MODE"), "{}", c.summary());

    // Guard-wide, with one instance taken back to enforce.
    let mut v = base();
    set(
        &mut v,
        "/guard",
        json!({"mode": "monitor", "instances": {"a": {"mode": "enforce"}}}),
    );
    let (c, _) = load(&v).unwrap();
    assert_eq!(c.enforcement(id(&c, "a")), Enforcement::Enforce);
    assert_eq!(c.enforcement(id(&c, "b")), Enforcement::Monitor);
}

#[test]
fn mode_and_admin_errors_name_their_path() {
    let cases = [
        (
            json!({"mode": "dry-run"}),
            "guard.mode",
            "is not \"enforce\" or \"monitor\"",
        ),
        (json!({"mode": true}), "guard.mode", "expected a string"),
        (
            json!({"instances": {"a": {"mode": "Monitor"}}}),
            "guard.instances.a.mode",
            "is not \"enforce\" or \"monitor\"",
        ),
        (
            json!({"admin": {"listen": "0.0.0.0:9464"}}),
            "guard.admin.listen",
            "0.0.0.0:9464 is not a loopback address",
        ),
        (
            json!({"admin": {"listen": "[::]:9464"}}),
            "guard.admin.listen",
            "is not a loopback address",
        ),
        (
            json!({"admin": {"listen": "10.0.0.1:9464"}}),
            "guard.admin.listen",
            "is not a loopback address",
        ),
        (
            json!({"admin": {"listen": "localhost:9464"}}),
            "guard.admin.listen",
            "is not an address:port",
        ),
        (
            json!({"admin": {"lisen": "127.0.0.1:9464"}}),
            "guard.admin.lisen",
            "listen",
        ),
    ];
    for (guard, path, fragment) in cases {
        let mut v = base();
        set(&mut v, "/guard", guard.clone());
        let lines = refused(&v);
        assert_line(&lines, path, fragment);
        assert_eq!(lines.len(), 1, "{guard}: one line, got {lines:#?}");
    }
}

#[test]
fn admin_listener_is_off_by_default_and_loopback_when_on() {
    let (c, _) = load(&base()).unwrap();
    assert_eq!(c.guard.admin.listen, None);
    for addr in [
        "127.0.0.1:9464",
        "127.1.2.3:1",
        "[::1]:9464",
        "[::ffff:127.0.0.1]:9464",
    ] {
        let mut v = base();
        set(&mut v, "/guard", json!({"admin": {"listen": addr}}));
        let (c, _) = load(&v).unwrap();
        assert_eq!(c.guard.admin.listen, Some(addr.parse().unwrap()));
        assert!(c.summary().contains("admin"), "{}", c.summary());
    }
}

#[test]
fn log_format_given_or_left_to_the_service_manager() {
    let (c, _) = load(&base()).unwrap();
    assert!(!c.guard.log.format_given);
    let mut v = base();
    set(&mut v, "/guard", json!({"log": {"format": "text"}}));
    let (c, _) = load(&v).unwrap();
    assert!(c.guard.log.format_given);
    assert_eq!(c.guard.log.format, LogFormat::Text);
}
