//! What `misp-guard check` (the listener's own phases without the
//! network) says about the copies MISP embeds in references, the
//! `all_orgs` membership rule, tag names with joiners, and how PHP's
//! `json_decode` (MISP's reader) reads the answers the guard rebuilds.
//!
//! Addresses are the conformance config's (10.0.0.1 = instance_1_1,
//! 10.0.0.2 = instance_1_2 `instance2-comp1.com`, both compartment 1);
//! `check` sends nothing.

mod common;

use std::collections::HashSet;
use std::process::Command;

use common::{GUARD, SHARED};
use misp_guard::rules::{evaluate, Context, Document, Policy, Verdict, DEFAULT_MAX_DEPTH};
use serde_json::{json, Value};

/// The pinned pull of one event (the conformance data's event).
const VIEW: &str = "/events/view/385283a1-b5e0-4e10-a532-dce11c365a56/deleted[]:0/deleted[]:1/excludeGalaxy:1/includeEventCorrelations:0/includeFeedCorrelations:0/includeWarninglistHits:0/excludeLocalTags:1";

fn fixture(name: &str) -> Value {
    let text = std::fs::read(format!("{SHARED}/fixtures/{name}")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn clean_event() -> Value {
    fixture("test_event_non-blocked.json")
}

/// `misp-guard check` of one exchange: its output, line by line.
fn check(
    source: &str,
    method: &str,
    url: &str,
    body: Option<(&str, &Value)>,
    headers: &[&str],
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(GUARD);
    c.arg("check")
        .arg("--config")
        .arg(format!("{SHARED}/config.json"))
        .arg("--source")
        .arg(source)
        .arg("--method")
        .arg(method)
        .arg("--url")
        .arg(url);
    if let Some((flag, value)) = body {
        let p = dir.path().join("body.json");
        std::fs::write(&p, serde_json::to_vec(value).unwrap()).unwrap();
        c.arg(flag).arg(&p);
    }
    for h in headers {
        c.arg("--response-header").arg(h);
    }
    let out = c.output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// instance_1_2 pulls `path` from instance_1_1, which answers `answer`
/// (judged under instance_1_1's rules: tlp:red, distribution 0,
/// passport-number, Person, person objects blocked).
fn pull(path: &str, answer: &Value, headers: &[&str]) -> Vec<String> {
    let url = format!("http://instance1-comp1.com:443{path}");
    check(
        "10.0.0.2",
        "GET",
        &url,
        Some(("--response-body", answer)),
        headers,
    )
}

/// instance_1_1 pushes `body` to instance_1_2 at `path` (instance_1_1's
/// rules).
fn push(path: &str, body: &Value) -> Vec<String> {
    let url = format!("http://instance2-comp1.com:443{path}");
    check(
        "10.0.0.1",
        "POST",
        &url,
        Some(("--request-body", body)),
        &[],
    )
}

fn first(lines: &[String]) -> &str {
    lines.first().map_or("", String::as_str)
}

/// An event whose visible object references, as MISP's `fetchEvent`
/// writes it, an attribute and an object that are not in the event's
/// lists: a distribution-0 passport number and a distribution-0 `person`
/// object (filtered out of the lists by the sender's push filter, or
/// hidden from the pulling sync user, while the copies embedded in the
/// reference stay).
fn event_with_reference_copies() -> Value {
    let mut ev = clean_event();
    ev["Event"]["Object"] = json!([{
        "name": "file", "meta-category": "file", "distribution": "5", "sharing_group_id": "0",
        "uuid": "11111111-1111-4111-8111-111111111111",
        "Attribute": [{
            "type": "filename", "category": "Payload delivery", "value": "a.exe",
            "distribution": "5", "uuid": "21111111-1111-4111-8111-111111111111"
        }],
        "ObjectReference": [
            {
                "uuid": "31111111-1111-4111-8111-111111111111",
                "referenced_uuid": "41111111-1111-4111-8111-111111111111",
                "referenced_type": "0", "relationship_type": "related-to",
                "Attribute": {
                    "uuid": "41111111-1111-4111-8111-111111111111", "type": "passport-number",
                    "category": "Person", "value": "X1234567", "to_ids": false,
                    "distribution": "0", "sharing_group_id": "0"
                }
            },
            {
                "uuid": "51111111-1111-4111-8111-111111111111",
                "referenced_uuid": "61111111-1111-4111-8111-111111111111",
                "referenced_type": "1", "relationship_type": "related-to",
                "Object": {
                    "uuid": "61111111-1111-4111-8111-111111111111", "name": "person",
                    "meta-category": "misc", "distribution": "0", "sharing_group_id": "0"
                }
            }
        ]
    }]);
    ev
}

/// The copies of referenced attributes and objects that `ObjectReference`
/// items carry are judged in a push, and left out of a pulled event.
#[test]
fn object_reference_copies_are_judged_or_left_out() {
    let ev = event_with_reference_copies();
    let pushed = push("/events/add/metadata:1", &ev);
    assert_eq!(
        first(&pushed),
        "blocked: blocked attribute category: Person at Event.Object[0].ObjectReference[0].Attribute.category",
        "{pushed:?}"
    );
    let pulled = pull(VIEW, &ev, &[]);
    assert_eq!(first(&pulled), "allowed", "{pulled:?}");
    let rebuilt = pulled.join("\n");
    assert!(
        rebuilt.contains("ObjectReference.Attribute left out (1×")
            && rebuilt.contains("ObjectReference.Object left out (1×"),
        "{rebuilt}"
    );
    // A protected (signed) event is never rebuilt: judged whole, it is
    // refused.
    let signed = pull(VIEW, &ev, &["x-pgp-signature: c2ln"]);
    assert!(first(&signed).starts_with("blocked: "), "{signed:?}");
}

/// Tag names of real use that hold a joiner or a variation selector (an
/// emoji with U+FE0F, a ZWJ emoji sequence, Persian words with the
/// zero-width non-joiner) pass; one that reads as a blocked tag without
/// them is blocked.
#[test]
fn tags_with_joiners_and_variation_selectors_pass() {
    for name in [
        "\u{26a0}\u{fe0f} needs-review",
        "\u{1f469}\u{200d}\u{1f4bb} analyst",
        "source:\u{06af}\u{0632}\u{0627}\u{0631}\u{0634}\u{200c}\u{062a}\u{0647}\u{062f}\u{06cc}\u{062f}",
    ] {
        let mut ev = clean_event();
        ev["Event"]["Tag"] = json!([{ "name": name }]);
        let verdict = push("/events/add/metadata:1", &ev);
        assert_eq!(first(&verdict), "allowed", "tag {name:?}");
    }
    let mut ev = clean_event();
    ev["Event"]["Tag"] = json!([{ "name": "tlp:\u{200d}red" }]);
    let verdict = push("/events/add/metadata:1", &ev);
    assert!(
        first(&verdict).starts_with("blocked: blocked tag: tlp:")
            && first(&verdict).ends_with(" at Event.Tag[0].name"),
        "{verdict:?}"
    );
}

/// An event in a sharing group of "Org A and all orgs of `server`".
fn event_shared_with_all_orgs_of(server: &str) -> Value {
    let mut ev = clean_event();
    ev["Event"]["distribution"] = json!("4");
    ev["Event"]["SharingGroup"] = json!({
        "uuid": "11111111-2222-4333-8444-555555555555", "name": "A and C", "roaming": true,
        "SharingGroupOrg": [{ "Organisation": {
            "uuid": "aaaaaaaa-0000-4000-8000-000000000001", "name": "Org A" } }],
        "SharingGroupServer": [{ "all_orgs": true, "server_id": "7",
            "Server": { "url": server, "name": "C" } }]
    });
    ev
}

/// A sharing group holds the receiving organisation by `all_orgs` only
/// on the receiving instance's own server entry: MISP gives a third
/// server's entry the orgs of that server, not the receiver's.
#[test]
fn all_orgs_of_a_third_server_is_not_membership() {
    let receiving = "X-UserOrgUUID: bbbbbbbb-0000-4000-8000-000000000002";
    let third = event_shared_with_all_orgs_of("https://third-party.example");
    let verdict = pull(VIEW, &third, &[receiving]);
    assert_eq!(
        first(&verdict),
        "blocked: sharing group excludes receiving organisation: bbbbbbbb-0000-4000-8000-000000000002 at Event.SharingGroup",
        "{verdict:?}"
    );
    // The puller is instance_1_2: its own entry, by name or address.
    for url in ["https://instance2-comp1.com", "https://10.0.0.2:443/"] {
        let own = event_shared_with_all_orgs_of(url);
        let verdict = pull(VIEW, &own, &[receiving]);
        assert_eq!(first(&verdict), "allowed", "{url}: {verdict:?}");
    }
    // The answering instance's own entry is not the puller's.
    let answering = event_shared_with_all_orgs_of("https://instance1-comp1.com");
    let verdict = pull(VIEW, &answering, &[receiving]);
    assert!(first(&verdict).starts_with("blocked: "), "{verdict:?}");
}

/// A cluster whose relation carries a copy of a tlp:red, distribution-0
/// target cluster.
fn cluster_with_target_copy() -> Value {
    let mut cluster = fixture("test_galaxy_cluster_non-blocked_distribution.json");
    let uuid = cluster["GalaxyCluster"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    cluster["GalaxyCluster"]["GalaxyClusterRelation"] = json!([{
        "galaxy_cluster_uuid": uuid,
        "referenced_galaxy_cluster_uuid": "22222222-3333-4444-8555-666666666666",
        "referenced_galaxy_cluster_type": "similar", "distribution": "3", "Tag": [],
        "TargetCluster": {
            "uuid": "22222222-3333-4444-8555-666666666666", "value": "Operation Secret",
            "tag_name": "tlp:red", "distribution": "0"
        }
    }]);
    cluster
}

/// A cluster relation's `TargetCluster` copy is judged in a push and
/// left out of a pulled cluster.
#[test]
fn cluster_relation_target_copies_are_judged_or_left_out() {
    let cluster = cluster_with_target_copy();
    let uuid = cluster["GalaxyCluster"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let pulled = pull(&format!("/galaxy_clusters/view/{uuid}"), &cluster, &[]);
    assert_eq!(first(&pulled), "allowed", "{pulled:?}");
    assert!(
        pulled
            .join("\n")
            .contains("GalaxyClusterRelation.TargetCluster left out (1×"),
        "{pulled:?}"
    );
    let pushed = push("/galaxies/pushCluster", &json!([cluster]));
    assert_eq!(
        first(&pushed),
        "blocked: blocked distribution level: 0 at [0].GalaxyCluster.GalaxyClusterRelation[0].TargetCluster.distribution",
        "{pushed:?}"
    );
}

// === rebuilt answers as PHP reads them ===

fn policy() -> Policy {
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
    Policy {
        blocked_tags: set(&["tlp:red"]),
        blocked_distributions: [true, false, false, false, false, false],
        blocked_attribute_types: set(&["passport-number"]),
        ..Policy::default()
    }
}

/// The rebuilt bytes of `body` read as an answer of `doc`, fed in pieces
/// of `piece` bytes.
fn rebuilt(doc: Document, body: &str, piece: usize) -> Vec<u8> {
    let ctx = Context {
        rebuild: true,
        ..Context::default()
    };
    let policy = policy();
    let Verdict::Rebuild(plan) = evaluate(body.as_bytes(), doc, &policy, &ctx) else {
        panic!("expected a rebuilt answer for {body}");
    };
    let mut rebuilder = plan.rebuilder(&policy, &ctx, DEFAULT_MAX_DEPTH);
    let mut out = Vec::new();
    for p in body.as_bytes().chunks(piece) {
        rebuilder.feed(p, &mut out);
    }
    assert!(rebuilder.finish(&mut out).is_ok(), "second reading refused");
    out
}

/// Whether PHP's `json_decode($x, true)` reads `a` and `b` as the same
/// array (`===`: same keys in the same order, same types). `None` when
/// there is no `php` here.
fn php_same(a: &[u8], b: &[u8]) -> Option<Result<(), String>> {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let script = r#"
        $a = json_decode(file_get_contents($argv[1]), true, 512, JSON_THROW_ON_ERROR);
        $b = json_decode(file_get_contents($argv[2]), true, 512, JSON_THROW_ON_ERROR);
        echo $a === $b ? "same" : var_export($a, true) . "\n---\n" . var_export($b, true);
    "#;
    let out = Command::new("php")
        .arg("-r")
        .arg(script)
        .arg(&pa)
        .arg(&pb)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Some(if out.status.success() && text == "same" {
        Ok(())
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    })
}

/// Values whose text PHP and a careless writer could read differently.
const AWKWARD: [&str; 14] = [
    r#""\/""#,
    r#""\u00e9\u2028""#,
    r#""\ud83d\ude00""#,
    r#""\u0000nul""#,
    r#""a\nb\t\"q\\""#,
    "1e400",
    "-0",
    "1.0",
    "123456789012345678901234567890",
    "true",
    "null",
    "[]",
    "{}",
    r#"{"x":[1,{"y":"\\"}]}"#,
];

#[test]
fn rebuilt_proposal_pages_read_in_php_as_the_original_with_fillers() {
    let row = |i: usize, kind: &str, value: &str| {
        format!(
            r#"{{"ShadowAttribute": {{"id":"{i}","event_uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","uuid":"5f1b6a38-0000-4000-8000-00000000000{i}","type":"{kind}","category":"Network activity","value":{value},"comment":{value},"k\u00e9y{i}":{value},"Org":{{"name":"o","uuid":"10c8f445-888b-4a2d-bac8-4e1e8861d595"}}}}}}"#
        )
    };
    for (n, value) in AWKWARD.iter().enumerate() {
        let kinds = ["ip-src", "passport-number", "ip-dst", "passport-number"];
        let rows: Vec<String> = (0..4).map(|i| row(i, kinds[i], value)).collect();
        let body = format!("[ {} ]", rows.join(" ,\n "));
        let expected: Vec<String> = rows
            .iter()
            .zip(kinds)
            .map(|(r, k)| {
                if k == "passport-number" {
                    r#"{"ShadowAttribute":{}}"#.to_string()
                } else {
                    r.clone()
                }
            })
            .collect();
        let expected = format!("[{}]", expected.join(","));
        let out = rebuilt(Document::ShadowAttributeList, &body, n % 5 + 1);
        match php_same(expected.as_bytes(), &out) {
            None => {
                eprintln!("php not installed: the PHP reading of rebuilt answers is not checked");
                return;
            }
            Some(r) => r.unwrap_or_else(|e| panic!("value {value}: {e}")),
        }
    }
}

#[test]
fn rebuilt_sightings_read_in_php_as_the_original_without_what_is_left_out() {
    for (n, value) in AWKWARD.iter().enumerate() {
        // The members kept are strings, whole numbers or null (anything
        // else refuses the answer); the awkward others go where members
        // are left out.
        // (`-0` is a double to the guard, as to serde_json.)
        let integer = value.parse::<i64>().is_ok() && *value != "-0";
        let scalar = value.starts_with('"') || *value == "null" || integer;
        let kept = if scalar { value } else { r#""x""# };
        let body = format!(
            r#"{{"response":[{{"Sighting":{{"id":"9","uuid":"5f1b6a38-0000-4000-8000-000000000001","value":{value},"attribute_uuid":"5f1b6a38-0000-4000-8000-0000000000a1","Attribute":{{"value":{value}}},"event_uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","source":{kept},"Organisation":{{"id":"1","uuid":"10c8f445-888b-4a2d-bac8-4e1e8861d595","name":{kept},"sector":{value}}},"date_sighting":"1700000000","type":"0"}}}}]}}"#
        );
        let expected = format!(
            r#"{{"response":[{{"Sighting":{{"id":"9","uuid":"5f1b6a38-0000-4000-8000-000000000001","attribute_uuid":"5f1b6a38-0000-4000-8000-0000000000a1","event_uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","source":{kept},"Organisation":{{"id":"1","uuid":"10c8f445-888b-4a2d-bac8-4e1e8861d595","name":{kept}}},"date_sighting":"1700000000","type":"0"}}}}]}}"#
        );
        let out = rebuilt(Document::Sightings, &body, n % 7 + 1);
        match php_same(expected.as_bytes(), &out) {
            None => {
                eprintln!("php not installed: the PHP reading of rebuilt answers is not checked");
                return;
            }
            Some(r) => r.unwrap_or_else(|e| panic!("value {value}: {e}")),
        }
    }
}
