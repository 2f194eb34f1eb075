use std::collections::HashSet;
use std::io;

use serde_json::Value;

use super::attribute::WRAPPED;
use super::oracle;
use super::tag::TAG_BY_ID;
use super::*;

// ===== helpers =====

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| s.trim().to_lowercase()).collect()
}

/// The rules every conformance instance has but `instance_1_4`, and a
/// blocked custom galaxy cluster.
fn base_policy() -> Policy {
    Policy {
        blocked_tags: set(&["tlp:red", BLOCKED_CLUSTER_TAG]),
        required_taxonomies: Vec::new(),
        blocked_distributions: [true, false, false, false, false, false],
        blocked_sharing_groups: set(&["b9e656ba-b9c0-4506-83ed-7b54b43a57cb"]),
        blocked_attribute_types: set(&["passport-number", "email"]),
        blocked_attribute_categories: set(&["Person"]),
        blocked_object_types: set(&["person"]),
    }
}

/// `instance_1_4`: `tlp` required, only clear/white/green allowed.
/// [`base_policy`] without blocked tags (and no required taxonomies).
fn no_tag_rules() -> Policy {
    Policy {
        blocked_tags: HashSet::new(),
        ..base_policy()
    }
}

fn tlp_policy() -> Policy {
    Policy {
        blocked_tags: set(&["tlp:rainbow", "tlp:red"]),
        required_taxonomies: vec![RequiredTaxonomy {
            namespace: "tlp".into(),
            allowed: vec!["tlp:clear".into(), "tlp:white".into(), "tlp:green".into()],
        }],
        ..base_policy()
    }
}

/// The tag MISP builds for the custom cluster [`BLOCKED_CLUSTER`].
const BLOCKED_CLUSTER_TAG: &str =
    r#"misp-galaxy:threat-actor="11111111-2222-4333-8444-555555555555""#;
const BLOCKED_CLUSTER: &str = "11111111-2222-4333-8444-555555555555";

fn ctx() -> Context {
    Context::default()
}

/// The receiving instance of the tests: `https://misp-b.example`, at
/// 127.0.0.2, port 443.
fn receiver() -> Receiver {
    Receiver::new(
        "misp-b.example",
        std::net::IpAddr::from([127, 0, 0, 2]),
        443,
    )
}

fn run(body: &str, doc: Document, policy: &Policy, ctx: &Context) -> Verdict {
    evaluate(body.as_bytes(), doc, policy, ctx)
}

fn block_of(v: Verdict) -> Option<Block> {
    match v {
        Verdict::Allow(_) => None,
        Verdict::Block(b) => Some(b),
        Verdict::Rebuild(r) => panic!("a rebuild where none was asked for: {}", r.summary()),
    }
}

/// The verdict when the body comes in pieces of the sizes `sizes` gives
/// (cycled).
fn in_pieces(
    body: &[u8],
    sizes: &[usize],
    doc: Document,
    policy: &Policy,
    ctx: &Context,
) -> Verdict {
    let mut evaluation = Evaluation::new(doc, policy, ctx, DEFAULT_MAX_DEPTH);
    let mut rest = body;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, more) = rest.split_at((*size).clamp(1, rest.len()));
        if !evaluation.feed(piece) {
            break;
        }
        rest = more;
    }
    evaluation.finish()
}

/// Piece sizes for a body: one byte at a time, and a few uneven ones drawn
/// from the body itself (so every body gets its own).
fn piece_sizes(body: &[u8]) -> Vec<Vec<usize>> {
    let seed = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let uneven: Vec<usize> = (0..7)
        .map(|i| 1 + ((seed >> (i * 8)) as usize % 97))
        .collect();
    vec![vec![1], uneven, vec![2, 3, 5, 7, 11, 13]]
}

/// Evaluate and compare with the oracle, which must agree, and with the
/// same body in pieces, which must give the same verdict.
fn judged(body: &str, doc: Document, policy: &Policy, ctx: &Context) -> Option<Block> {
    let whole = run(body, doc, policy, ctx);
    for sizes in piece_sizes(body.as_bytes()) {
        let pieces = in_pieces(body.as_bytes(), &sizes, doc, policy, ctx);
        assert_eq!(pieces, whole, "in pieces of {sizes:?}: {body}");
    }
    let got = block_of(whole);
    let want = oracle::judge(body, doc, policy, ctx);
    match &want {
        Some(w) if w.value.starts_with(oracle::FATAL) => {
            assert_eq!(
                got.as_ref().map(|b| b.rule),
                Some(Rule::Malformed),
                "oracle: {w}, body {body}"
            );
        }
        _ => assert_eq!(got, want, "engine and oracle disagree on {body}"),
    }
    got
}

fn event(inner: &str) -> String {
    format!(r#"{{"Event":{{{inner}}}}}"#)
}

const ATTR: &str = r#""type":"ip-src","category":"Network activity","distribution":"5""#;

// ===== conformance fixtures =====

/// The bodies of the conformance fixtures.
fn fixture_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(scenarios_dir().join("fixtures"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    bodies.sort();
    if bodies.is_empty() {
        bodies.push(br#"{"Event":{"distribution":"1"}}"#.to_vec());
    }
    bodies
}

fn scenarios_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/peer-scenarios"
    ))
}

fn policy_from_config(instance: &Value) -> Policy {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| s.trim().to_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    };
    let tax = &instance["taxonomies_rules"];
    let mut blocked_distributions = [false; 6];
    for d in strs(&instance["blocked_distribution_levels"]) {
        blocked_distributions[d.parse::<usize>().unwrap()] = true;
    }
    Policy {
        blocked_tags: strs(&tax["blocked_tags"]).into_iter().collect(),
        required_taxonomies: strs(&tax["required_taxonomies"])
            .into_iter()
            .map(|ns| RequiredTaxonomy {
                allowed: strs(&tax["allowed_tags"][ns.as_str()]),
                namespace: ns,
            })
            .collect(),
        blocked_distributions,
        blocked_sharing_groups: strs(&instance["blocked_sharing_groups_uuids"])
            .into_iter()
            .collect(),
        blocked_attribute_types: strs(&instance["blocked_attribute_types"])
            .into_iter()
            .collect(),
        blocked_attribute_categories: strs(&instance["blocked_attribute_categories"])
            .into_iter()
            .collect(),
        blocked_object_types: strs(&instance["blocked_object_types"])
            .into_iter()
            .collect(),
    }
}

fn document_for(url: &str) -> Document {
    let table = [
        ("/events/add", Document::Event),
        ("/events/edit", Document::Event),
        ("/events/view", Document::Event),
        ("/galaxies/pushCluster", Document::GalaxyClusterList),
        ("/galaxy_clusters/view", Document::GalaxyCluster),
        ("/shadow_attributes/index", Document::ShadowAttributeList),
        ("/analyst_data/pushAnalystData", Document::AnalystDataItem),
        ("/analyst_data/indexMinimal", Document::AnalystDataMinimal),
        (
            "/analyst_data/filterAnalystDataForPush",
            Document::AnalystDataMinimal,
        ),
        ("/analyst_data/index/", Document::AnalystDataList),
        ("/sightings/", Document::Sightings),
    ];
    table
        .iter()
        .find(|(p, _)| url.starts_with(p))
        .map(|(_, d)| *d)
        .unwrap_or_else(|| panic!("no document for {url}"))
}

/// The last entity named in a path such as `Event.Object[0].Attribute[1].type`.
fn entity_of(at: &str) -> &str {
    const ENTITIES: [&str; 9] = [
        "Event",
        "Attribute",
        "ShadowAttribute",
        "Object",
        "EventReport",
        "Note",
        "Opinion",
        "Relationship",
        "GalaxyCluster",
    ];
    at.split('.')
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .rfind(|seg| ENTITIES.contains(seg))
        .unwrap_or("")
}

/// (rule, value, entities that may carry it) for an old guard log line.
fn expected_from_log(log: &str) -> (Rule, String, Vec<&'static str>) {
    let reason = log.split(" - ").last().unwrap();
    let (what, value) = reason.rsplit_once(": ").unwrap();
    let entities: Vec<&str> = if what.starts_with("event report") {
        vec!["EventReport"]
    } else if what.starts_with("event is missing") {
        vec!["Event", "Attribute", "ShadowAttribute"]
    } else if what.starts_with("event") {
        vec!["Event"]
    } else if what.starts_with("attribute") {
        vec!["Attribute", "ShadowAttribute"]
    } else if what.starts_with("object") {
        vec!["Object"]
    } else if what.starts_with("galaxy cluster") {
        vec!["GalaxyCluster"]
    } else if what.starts_with("analyst data") {
        vec!["Note", "Opinion", "Relationship"]
    } else {
        panic!("unknown log {log}")
    };
    let rule = if what.contains("missing required taxonomy") {
        Rule::MissingTaxonomy
    } else if what.contains("tag") {
        Rule::BlockedTag
    } else if what.contains("distribution") {
        Rule::BlockedDistribution
    } else if what.contains("sharing group") {
        Rule::BlockedSharingGroup
    } else if what.contains("category") {
        Rule::BlockedAttributeCategory
    } else if what.starts_with("object") {
        Rule::BlockedObjectType
    } else if what.contains("type") {
        Rule::BlockedAttributeType
    } else {
        panic!("unknown log {log}")
    };
    (rule, value.to_string(), entities)
}

#[test]
fn conformance_fixtures() {
    let dir = scenarios_dir();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let instances = config["instances"].as_object().unwrap();
    let (mut evaluated, mut skipped) = (0, 0);
    for file in ["push.json", "pull.json", "extra.json"] {
        let scenarios: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        for s in scenarios {
            let Some(fixture) = s["fixture_file"].as_str() else {
                continue;
            };
            let logs: Vec<&str> = s["expected_logs"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if logs.iter().any(|l| l.ends_with("cannot reach compartment")) {
                skipped += 1;
                continue;
            }
            let url = s["url"].as_str().unwrap();
            let push = file == "push.json";
            let instance = instances
                .values()
                .find(|i| {
                    if push {
                        i["ip"] == s["client"]["ip"]
                    } else {
                        i["host"] == s["host"]
                    }
                })
                .unwrap();
            let policy = policy_from_config(instance);
            let ctx = Context {
                user_org_uuid: s["response_headers"]["X-UserOrgUUID"]
                    .as_str()
                    .map(str::to_lowercase),
                receiver: None,
                rebuild: false,
            };
            let name = fixture.rsplit('/').next().unwrap();
            let body = std::fs::read_to_string(dir.join("fixtures").join(name)).unwrap();
            let doc = document_for(url);
            let got = judged(&body, doc, &policy, &ctx);
            let label = format!("{file} {} {name}", s["name"]);
            match (s["expected_status_code"].as_u64().unwrap(), got) {
                (200, None) => {}
                (200, Some(b)) => panic!("{label}: expected allow, got {b}"),
                (_, None) => panic!("{label}: expected block, got allow"),
                (_, Some(b)) => {
                    if let Some(log) = logs.first() {
                        let (rule, value, entities) = expected_from_log(log);
                        assert_eq!(
                            (b.rule, b.value.as_str()),
                            (rule, value.as_str()),
                            "{label}: {b}"
                        );
                        assert!(
                            entities.contains(&entity_of(&b.at)),
                            "{label}: wrong place {}",
                            b.at
                        );
                    } else if ctx.user_org_uuid.is_some() {
                        assert_eq!(b.rule, Rule::SharingGroupExcludesOrg, "{label}: {b}");
                        assert_eq!(Some(b.value.clone()), ctx.user_org_uuid, "{label}");
                        let want = if name.contains("object-attribute") {
                            // the object itself is in the group first: the older guard
                            // checks objects before their attributes
                            "Event.Object[0].SharingGroup"
                        } else if name.contains("attribute") {
                            "Event.Attribute[0].SharingGroup"
                        } else {
                            "Event.SharingGroup"
                        };
                        assert_eq!(b.at, want, "{label}");
                    } else {
                        assert_eq!(b.rule, Rule::Malformed, "{label}: {b}");
                    }
                }
            }
            evaluated += 1;
        }
    }
    // 68 push + 39 pull scenarios, 3 of them refused for compartments
    // (not a body rule), and the 4 extra cases that carry a fixture.
    assert_eq!((evaluated, skipped), (108, 3));
}

// ===== rule and shape tables =====

struct Case {
    name: &'static str,
    body: String,
    doc: Document,
    policy: Policy,
    ctx: Context,
    /// `None`: allowed; `Some((rule, value, at))`, with `""` for "any".
    want: Option<(Rule, &'static str, &'static str)>,
}

fn case(
    name: &'static str,
    body: impl Into<String>,
    want: Option<(Rule, &'static str, &'static str)>,
) -> Case {
    Case {
        name,
        body: body.into(),
        doc: Document::Event,
        policy: base_policy(),
        ctx: ctx(),
        want,
    }
}

fn check(cases: Vec<Case>, with_oracle: bool) {
    for c in cases {
        let got = if with_oracle {
            judged(&c.body, c.doc, &c.policy, &c.ctx)
        } else {
            block_of(run(&c.body, c.doc, &c.policy, &c.ctx))
        };
        match (c.want, got) {
            (None, None) => {}
            (Some((rule, value, at)), Some(b)) => {
                assert_eq!(b.rule, rule, "{}: {b}", c.name);
                if !value.is_empty() {
                    assert_eq!(b.value, value, "{}: {b}", c.name);
                }
                if !at.is_empty() {
                    assert_eq!(b.at, at, "{}: {b}", c.name);
                }
            }
            (want, got) => panic!("{}: want {want:?}, got {got:?}", c.name),
        }
    }
}

#[test]
fn distribution_spellings() {
    let ok = |n, d: &str| case(n, event(&format!(r#""distribution":{d}"#)), None);
    let bad = |n, d: &str, v: &'static str| {
        case(
            n,
            event(&format!(r#""distribution":{d}"#)),
            Some((Rule::Malformed, v, "Event.distribution")),
        )
    };
    let blocked = |n, d: &str| {
        case(
            n,
            event(&format!(r#""distribution":{d}"#)),
            Some((Rule::BlockedDistribution, "0", "Event.distribution")),
        )
    };
    check(
        vec![
            blocked("string zero", r#""0""#),
            blocked("number zero", "0"),
            ok("string two", r#""2""#),
            ok("number five", "5"),
            ok("number four without groups in force", "1"),
            bad("two zeros", r#""00""#, r#""00""#),
            bad("leading blank", r#"" 0""#, r#"" 0""#),
            bad("trailing blank", r#""0 ""#, r#""0 ""#),
            bad("float", "0.0", "0.0"),
            bad("exponent", "1e0", "1.0"),
            bad("negative", "-1", "-1"),
            bad("negative zero", "-0", ""),
            bad("six", "6", "6"),
            bad("string six", r#""6""#, r#""6""#),
            bad("null", "null", "null"),
            bad("true", "true", "true"),
            bad("word", r#""abc""#, r#""abc""#),
            bad("empty string", r#""""#, r#""""#),
            bad("huge", "18446744073709551616", ""),
            case(
                "missing",
                event(r#""info":"x""#),
                Some((Rule::Malformed, "missing", "Event.distribution")),
            ),
            case(
                "escaped key is the same key",
                event(r#""distri\u0062ution":"0""#),
                Some((Rule::BlockedDistribution, "0", "Event.distribution")),
            ),
            case(
                "a key with a blank is another key",
                event(r#""distribution":"1","distribution ":"0""#),
                None,
            ),
        ],
        true,
    );
}

#[test]
fn duplicate_keys() {
    let dup = |n, inner: &str, key: &'static str| {
        case(n, event(inner), Some((Rule::DuplicateKey, key, "")))
    };
    check(
        vec![
            dup(
                "blocked value first",
                r#""distribution":"0","distribution":"2""#,
                "distribution",
            ),
            dup(
                "blocked value last",
                r#""distribution":"2","distribution":"0""#,
                "distribution",
            ),
            dup(
                "escaped duplicate",
                r#""distribution":"2","distri\u0062ution":"2""#,
                "distribution",
            ),
            dup(
                "in a skipped object",
                r#""distribution":"2","Org":{"id":"1","id":"2"}"#,
                "id",
            ),
            dup(
                "unknown key",
                r#""distribution":"2","foo":1,"foo":2"#,
                "foo",
            ),
            dup(
                "in an attribute",
                &format!(r#""distribution":"2","Attribute":[{{{ATTR},"type":"email"}}]"#),
                "type",
            ),
            dup(
                "in a big object",
                &format!(
                    r#""distribution":"2","Org":{{{}, "k7":0}}"#,
                    (0..40)
                        .map(|i| format!(r#""k{i}":{i}"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "k7",
            ),
            dup(
                "in a skipped array of objects",
                r#""distribution":"2","Galaxy":[{"a":1},{"b":1,"b":1}]"#,
                "b",
            ),
            case(
                "same key in sibling objects is fine",
                event(r#""distribution":"2","Galaxy":[{"a":1},{"a":1}],"Org":{"a":1}"#),
                None,
            ),
            case(
                "top-level wrapper twice",
                r#"{"Event":{"distribution":"2"},"Event":{"distribution":"0"}}"#,
                Some((Rule::DuplicateKey, "Event", "Event")),
            ),
        ],
        false,
    );
}

#[test]
fn encodings_and_framing() {
    let bytes = |body: &[u8]| block_of(evaluate(body, Document::Event, &base_policy(), &ctx()));
    let malformed = |body: &[u8]| {
        let b = bytes(body).expect("blocked");
        assert_eq!(b.rule, Rule::Malformed, "{b}");
    };
    malformed(b"");
    malformed(b"   ");
    malformed(b"\xef\xbb\xbf{\"Event\":{\"distribution\":\"2\"}}");
    malformed(b"{\"Event\":{\"distribution\":\"2\"}} x");
    malformed(b"{\"Event\":{\"distribution\":\"2\"}}{}");
    malformed(b"{\"Event\":{\"distribution\":\"2\",\"info\":\"\xff\"}}");
    malformed(b"{\"Event\":{\"distribution\":\"2\",\"info\":\"\xc0\xaf\"}}");
    malformed(b"{\"Event\":{\"distribution\":\"2\",\"info\":\"\xed\xa0\x80\"}}");
    malformed(b"{\"Event\":{\"distribution\":\"2\",\"\xff\":1}}");
    malformed(br#"{"Event":{"distribution":"2","info":"\ud800"}}"#);
    malformed(br#"{"Event":{"distribution":"2","info":"\udc00x"}}"#);
    malformed(br#"{"Event":{"distribution":"2","x\ud800":1}}"#);
    malformed(br#"{"Event":{"distribution":"2","Galaxy":[["\ud800"]]}}"#);
    malformed(br#"{"Event":{"distribution":"\ud800"}}"#);
    malformed(b"{\"Event\":{\"distribution\":\"2\",\"info\":\"a\x01\"}}");
    malformed(b"{\"Event\":{\"distribution\":\"2\",}}");
    malformed(b"{\"Event\":{\"distribution\":\"2\"}");
    malformed(b"{'Event':{}}");
    malformed(b"{\"Event\":{\"distribution\":\"2\",\"x\":NaN}}");
    assert_eq!(
        bytes(br#"{"Event":{"distribution":"2","info":"\ud83d\ude00 ok"}}"#),
        None
    );
    assert_eq!(
        bytes(b" \n{\"Event\":{\"distribution\":\"2\"}}\r\n\t "),
        None
    );
}

#[test]
fn depth_limit() {
    let bomb = "[".repeat(10_000) + &"]".repeat(10_000);
    let b = block_of(run(&bomb, Document::AnyJson, &base_policy(), &ctx())).expect("blocked");
    assert_eq!(b.rule, Rule::Malformed);
    assert!(b.value.contains("nesting"), "{b}");
    let obj_bomb = "{\"a\":".repeat(10_000);
    let b = block_of(run(&obj_bomb, Document::AnyJson, &base_policy(), &ctx())).expect("blocked");
    assert_eq!(b.rule, Rule::Malformed);
    let inside = event(&format!(r#""distribution":"2","Galaxy":{}"#, bomb));
    let b = block_of(run(&inside, Document::Event, &base_policy(), &ctx())).expect("blocked");
    assert_eq!(b.rule, Rule::Malformed);
    let limited = |body: &str, depth| {
        block_of(evaluate_with_limits(
            body.as_bytes(),
            Document::AnyJson,
            &base_policy(),
            &ctx(),
            depth,
        ))
    };
    assert_eq!(limited("[[[1]]]", 3), None);
    assert!(limited("[[[[1]]]]", 3).is_some());
    assert!(limited(r#"{"a":{"b":{"c":{}}}}"#, 3).is_some());
    let deep_ok = "[".repeat(64) + &"]".repeat(64);
    assert_eq!(
        block_of(run(&deep_ok, Document::AnyJson, &base_policy(), &ctx())),
        None
    );
    let too_deep = "[".repeat(65) + &"]".repeat(65);
    assert!(block_of(run(&too_deep, Document::AnyJson, &base_policy(), &ctx())).is_some());
}

#[test]
fn read_errors_are_malformed() {
    struct Failing(usize);
    impl io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let head = br#"{"Event":{"distribution":"2","#;
            if self.0 < head.len() {
                let n = (head.len() - self.0).min(buf.len());
                buf[..n].copy_from_slice(&head[self.0..self.0 + n]);
                self.0 += n;
                Ok(n)
            } else {
                Err(io::Error::other("decode cap reached"))
            }
        }
    }
    let b = block_of(evaluate(
        Failing(0),
        Document::Event,
        &base_policy(),
        &ctx(),
    ))
    .expect("blocked");
    assert_eq!(b.rule, Rule::Malformed);
    assert!(b.value.contains("decode cap reached"), "{b}");
}

#[test]
fn event_rules() {
    let tagged = |name: &str| event(&format!(r#""distribution":"2","Tag":[{{"name":{name}}}]"#));
    let attr = |fields: &str| event(&format!(r#""distribution":"2","Attribute":[{{{fields}}}]"#));
    let sg = |uuid: &str| format!(r#""distribution":"4","SharingGroup":{{"uuid":"{uuid}"}}"#);
    check(
        vec![
            case("plain event", event(r#""distribution":"2""#), None),
            case(
                "blocked tag",
                tagged(r#""tlp:red""#),
                Some((Rule::BlockedTag, "tlp:red", "Event.Tag[0].name")),
            ),
            case(
                "blocked tag, case and blanks",
                tagged(r#"" TLP:RED ""#),
                Some((Rule::BlockedTag, " TLP:RED ", "Event.Tag[0].name")),
            ),
            case("other tag", tagged(r#""tlp:green""#), None),
            case(
                "tag name not a string",
                tagged("5"),
                Some((Rule::Malformed, "5", "Event.Tag[0].name")),
            ),
            case(
                "tag without name",
                event(r#""distribution":"2","Tag":[{"id":"1"}]"#),
                Some((Rule::Malformed, "missing", "Event.Tag[0].name")),
            ),
            case(
                "tag escaped",
                tagged(r#""tlp:r\u0065d""#),
                Some((Rule::BlockedTag, "tlp:red", "Event.Tag[0].name")),
            ),
            case(
                "blocked sharing group",
                event(&sg("b9e656ba-b9c0-4506-83ed-7b54b43a57cb")),
                Some((
                    Rule::BlockedSharingGroup,
                    "b9e656ba-b9c0-4506-83ed-7b54b43a57cb",
                    "Event.SharingGroup.uuid",
                )),
            ),
            case(
                "blocked sharing group upper-case",
                event(&sg("B9E656BA-B9C0-4506-83ED-7B54B43A57CB")),
                Some((
                    Rule::BlockedSharingGroup,
                    "B9E656BA-B9C0-4506-83ED-7B54B43A57CB",
                    "Event.SharingGroup.uuid",
                )),
            ),
            case(
                "other sharing group",
                event(&sg("5d6d3b30-0a8b-4ba4-8f1b-6c1b3e1c1f1f")),
                None,
            ),
            case(
                "sharing group without uuid",
                event(r#""distribution":"4","SharingGroup":{"name":"x"}"#),
                Some((Rule::Malformed, "missing", "Event.SharingGroup.uuid")),
            ),
            case(
                "distribution 4 without sharing group",
                event(r#""distribution":"4""#),
                Some((Rule::BlockedSharingGroup, "missing", "Event.SharingGroup")),
            ),
            Case {
                policy: Policy {
                    blocked_sharing_groups: HashSet::new(),
                    ..base_policy()
                },
                ..case(
                    "distribution 4 without sharing group, no group rules",
                    event(r#""distribution":4"#),
                    None,
                )
            },
            case(
                "blocked type",
                attr(r#""type":"passport-number","category":"Other""#),
                Some((
                    Rule::BlockedAttributeType,
                    "passport-number",
                    "Event.Attribute[0].type",
                )),
            ),
            case(
                "blocked type, case",
                attr(r#""type":"Passport-Number","category":"Other""#),
                Some((
                    Rule::BlockedAttributeType,
                    "Passport-Number",
                    "Event.Attribute[0].type",
                )),
            ),
            case(
                "blocked category, case",
                attr(r#""type":"text","category":"PERSON""#),
                Some((
                    Rule::BlockedAttributeCategory,
                    "PERSON",
                    "Event.Attribute[0].category",
                )),
            ),
            case(
                "category reported before type whatever the key order",
                attr(r#""type":"email","category":"Person""#),
                Some((
                    Rule::BlockedAttributeCategory,
                    "Person",
                    "Event.Attribute[0].category",
                )),
            ),
            case(
                "attribute without type",
                attr(r#""category":"Other""#),
                Some((Rule::Malformed, "missing", "Event.Attribute[0].type")),
            ),
            case(
                "attribute type not a string",
                attr(r#""type":["email"],"category":"Other""#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "attribute type a number",
                attr(r#""type":5,"category":"Other""#),
                Some((Rule::Malformed, "5", "Event.Attribute[0].type")),
            ),
            case(
                "attribute blocked tag",
                attr(&format!(
                    r#"{ATTR},"Tag":[{{"name":"x"}},{{"name":"TLP:Red"}}]"#
                )),
                Some((
                    Rule::BlockedTag,
                    "TLP:Red",
                    "Event.Attribute[0].Tag[1].name",
                )),
            ),
            case(
                "attribute distribution required (MISP would use its default)",
                attr(r#""type":"text","category":"Other""#),
                Some((
                    Rule::Malformed,
                    "missing",
                    "Event.Attribute[0].distribution",
                )),
            ),
            case(
                "attribute blocked distribution",
                attr(r#""type":"text","category":"Other","distribution":0"#),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.Attribute[0].distribution",
                )),
            ),
            case(
                "event distribution outranks an earlier attribute",
                r#"{"Event":{"Attribute":[{"type":"email","category":"Other"}],"distribution":"0"}}"#,
                Some((Rule::BlockedDistribution, "0", "Event.distribution")),
            ),
            case(
                "proposal in an attribute",
                attr(&format!(
                    r#"{ATTR},"ShadowAttribute":[{{"type":"email","category":"Other"}}]"#
                )),
                Some((
                    Rule::BlockedAttributeType,
                    "email",
                    "Event.Attribute[0].ShadowAttribute[0].type",
                )),
            ),
            case(
                "event-level proposal",
                event(
                    r#""distribution":"2","ShadowAttribute":[{"type":"email","category":"Other"}]"#,
                ),
                Some((
                    Rule::BlockedAttributeType,
                    "email",
                    "Event.ShadowAttribute[0].type",
                )),
            ),
            case(
                "blocked object name, case",
                event(r#""distribution":"2","Object":[{"name":"Person","distribution":"5"}]"#),
                Some((Rule::BlockedObjectType, "Person", "Event.Object[0].name")),
            ),
            case(
                "object without name",
                event(r#""distribution":"2","Object":[{"distribution":"5"}]"#),
                Some((Rule::Malformed, "missing", "Event.Object[0].name")),
            ),
            case(
                "object without distribution",
                event(r#""distribution":"2","Object":[{"name":"file"}]"#),
                Some((Rule::Malformed, "missing", "Event.Object[0].distribution")),
            ),
            case(
                "object attribute",
                event(&format!(
                    r#""distribution":"2","Object":[{{"name":"file","distribution":"5","Attribute":[{{{ATTR}}}]}},{{"name":"file","distribution":"5","Attribute":[{{{ATTR}}},{{"type":"email","category":"Other"}}]}}]"#
                )),
                Some((
                    Rule::BlockedAttributeType,
                    "email",
                    "Event.Object[1].Attribute[1].type",
                )),
            ),
            case(
                "event report",
                event(
                    r#""distribution":"2","EventReport":[{"distribution":"1"},{"distribution":"0"}]"#,
                ),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.EventReport[1].distribution",
                )),
            ),
            case(
                "note on a report",
                event(
                    r#""distribution":"2","EventReport":[{"distribution":"1","Note":[{"distribution":0}]}]"#,
                ),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.EventReport[0].Note[0].distribution",
                )),
            ),
            case(
                "opinion on an event",
                event(r#""distribution":"2","Opinion":[{"distribution":"0"}]"#),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.Opinion[0].distribution",
                )),
            ),
            Case {
                policy: no_tag_rules(),
                ..case(
                    "related event",
                    event(
                        r#""distribution":"2","RelatedEvent":[{"Event":{"distribution":"0","info":"x"}}]"#,
                    ),
                    Some((
                        Rule::BlockedDistribution,
                        "0",
                        "Event.RelatedEvent[0].Event.distribution",
                    )),
                )
            },
            case(
                "related event under tag rules",
                event(
                    r#""distribution":"2","RelatedEvent":[{"Event":{"distribution":"0","info":"x"}}]"#,
                ),
                Some((
                    Rule::BlockedTag,
                    "RelatedEvent (tags not visible)",
                    "Event.RelatedEvent",
                )),
            ),
            case(
                "the event's own findings rank before its related events",
                event(
                    r#""RelatedEvent":[{"Event":{"distribution":"1","info":"x"}}],"distribution":"2","Attribute":[{"type":"email","category":"Network activity"}]"#,
                ),
                Some((
                    Rule::BlockedAttributeType,
                    "email",
                    "Event.Attribute[0].type",
                )),
            ),
            case(
                "no related events",
                event(r#""distribution":"2","RelatedEvent":[]"#),
                None,
            ),
            case(
                "related event of a wrong shape",
                event(
                    r#""distribution":"2","RelatedEvent":[{"Event":{"distribution":"1"},"x":1}]"#,
                ),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "key with a blank is not an attribute list",
                event(r#""distribution":"2","Attribute ":[{"type":"email"}]"#),
                None,
            ),
            case(
                "extra key next to Event",
                r#"{"Event":{"distribution":"2"},"Attribute":[]}"#,
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "no Event",
                r#"{"event":{"distribution":"2"}}"#,
                Some((Rule::Malformed, "", "")),
            ),
            case("empty object", "{}", Some((Rule::Malformed, "", ""))),
            case(
                "list",
                r#"[{"Event":{"distribution":"2"}}]"#,
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "Event not an object",
                r#"{"Event":[]}"#,
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "Attribute not a list",
                event(r#""distribution":"2","Attribute":{}"#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "Tag null",
                event(r#""distribution":"2","Tag":null"#),
                Some((Rule::Malformed, "", "")),
            ),
        ],
        true,
    );
}

#[test]
fn required_taxonomies() {
    let tlp = |name, body: String, want| Case {
        policy: tlp_policy(),
        ..case(name, body, want)
    };
    let tag = |t: &str| format!(r#""Tag":[{{"name":"{t}"}}]"#);
    check(
        vec![
            tlp(
                "allowed everywhere",
                event(&format!(
                    r#""distribution":"2",{},"Attribute":[{{{ATTR},{}}}]"#,
                    tag("tlp:green"),
                    tag("TLP:Clear")
                )),
                None,
            ),
            tlp(
                "tag not allowed",
                event(&format!(r#""distribution":"2",{}"#, tag("tlp:amber"))),
                Some((Rule::MissingTaxonomy, "tlp", "Event.Tag")),
            ),
            tlp(
                "no tags",
                event(r#""distribution":"2""#),
                Some((Rule::MissingTaxonomy, "tlp", "Event.Tag")),
            ),
            tlp(
                "prefix is not the namespace",
                event(&format!(r#""distribution":"2",{}"#, tag("tlpx:green"))),
                Some((Rule::MissingTaxonomy, "tlp", "Event.Tag")),
            ),
            tlp(
                "attribute without the taxonomy",
                event(&format!(
                    r#""distribution":"2",{},"Attribute":[{{{ATTR}}}]"#,
                    tag("tlp:white")
                )),
                Some((Rule::MissingTaxonomy, "tlp", "Event.Attribute[0].Tag")),
            ),
            tlp(
                "blocked tag first",
                event(&format!(r#""distribution":"2",{}"#, tag("tlp:rainbow"))),
                Some((Rule::BlockedTag, "tlp:rainbow", "Event.Tag[0].name")),
            ),
            tlp(
                "related events cannot be judged under required taxonomies",
                event(&format!(
                    r#""distribution":"2",{},"RelatedEvent":[{{"Event":{{"distribution":"1"}}}}]"#,
                    tag("tlp:green")
                )),
                Some((
                    Rule::BlockedTag,
                    "RelatedEvent (tags not visible)",
                    "Event.RelatedEvent",
                )),
            ),
            Case {
                policy: Policy {
                    blocked_tags: HashSet::new(),
                    ..tlp_policy()
                },
                ..tlp(
                    "required taxonomies alone block related events",
                    event(&format!(
                        r#""distribution":"2",{},"RelatedEvent":[{{"Event":{{"distribution":"1"}}}}]"#,
                        tag("tlp:green")
                    )),
                    Some((
                        Rule::BlockedTag,
                        "RelatedEvent (tags not visible)",
                        "Event.RelatedEvent",
                    )),
                )
            },
            tlp(
                "an empty related event list",
                event(&format!(
                    r#""distribution":"2",{},"RelatedEvent":[]"#,
                    tag("tlp:green")
                )),
                None,
            ),
        ],
        true,
    );
}

#[test]
fn receiving_organisation() {
    let org = "8b9661a3-8544-4f8d-94be-cd7ebe87e922";
    let with_org = |name, body: String, want| Case {
        ctx: Context {
            user_org_uuid: Some(org.into()),
            receiver: Some(receiver()),
            rebuild: false,
        },
        ..case(name, body, want)
    };
    let sg = |orgs: &str, servers: &str| {
        event(&format!(
            r#""distribution":"4","SharingGroup":{{"uuid":"u1","SharingGroupOrg":[{orgs}],"SharingGroupServer":[{servers}]}}"#
        ))
    };
    check(
        vec![
            with_org(
                "member",
                sg(
                    &format!(r#"{{"Organisation":{{"uuid":"{}"}}}}"#, org.to_uppercase()),
                    "",
                ),
                None,
            ),
            // `all_orgs` gives the orgs of that server access: only the
            // receiving instance's own entry makes the org a member.
            with_org(
                "all orgs of the receiving server",
                sg(
                    "",
                    r#"{"all_orgs":false,"Server":{"url":"https://misp-c.example"}},{"all_orgs":true,"Server":{"id":"3","url":"https://MISP-B.example/misp"}}"#,
                ),
                None,
            ),
            with_org(
                "all orgs of the receiving server by address",
                sg(
                    "",
                    r#"{"Server":{"url":"https://127.0.0.2:443"},"all_orgs":"1"}"#,
                ),
                None,
            ),
            with_org(
                "all orgs of a third server",
                sg(
                    "",
                    r#"{"all_orgs":true,"Server":{"url":"https://misp-c.example"}}"#,
                ),
                Some((Rule::SharingGroupExcludesOrg, org, "Event.SharingGroup")),
            ),
            with_org(
                "all orgs of a server not named",
                sg("", r#"{"all_orgs":true}"#),
                Some((Rule::SharingGroupExcludesOrg, org, "Event.SharingGroup")),
            ),
            with_org(
                "all orgs of the owner's own entry",
                sg("", r#"{"all_orgs":true,"server_id":"0","Server":[]}"#),
                Some((Rule::SharingGroupExcludesOrg, org, "Event.SharingGroup")),
            ),
            with_org(
                "the receiving server without all orgs",
                sg(
                    "",
                    r#"{"all_orgs":false,"Server":{"url":"https://misp-b.example"}}"#,
                ),
                Some((Rule::SharingGroupExcludesOrg, org, "Event.SharingGroup")),
            ),
            with_org(
                "the receiving server on another port",
                sg(
                    "",
                    r#"{"all_orgs":true,"Server":{"url":"https://misp-b.example:8443"}}"#,
                ),
                Some((Rule::SharingGroupExcludesOrg, org, "Event.SharingGroup")),
            ),
            with_org(
                "not a member",
                sg(
                    r#"{"Organisation":{"uuid":"other"}}"#,
                    r#"{"all_orgs":false}"#,
                ),
                Some((Rule::SharingGroupExcludesOrg, org, "Event.SharingGroup")),
            ),
            with_org(
                "group without lists",
                event(r#""distribution":"4","SharingGroup":{"uuid":"u1"}"#),
                Some((Rule::SharingGroupExcludesOrg, org, "Event.SharingGroup")),
            ),
            with_org(
                "attribute group",
                event(&format!(
                    r#""distribution":"2","Attribute":[{{{ATTR},"SharingGroup":{{"uuid":"u2","SharingGroupOrg":[]}}}}]"#
                )),
                Some((
                    Rule::SharingGroupExcludesOrg,
                    org,
                    "Event.Attribute[0].SharingGroup",
                )),
            ),
            with_org(
                "distribution 4 without group",
                Case {
                    policy: Policy::default(),
                    ..case("", String::new(), None)
                }
                .body
                    + &event(r#""distribution":"4""#),
                Some((Rule::BlockedSharingGroup, "missing", "Event.SharingGroup")),
            ),
        ],
        true,
    );
}

#[test]
fn analyst_data() {
    let item = |name, body: &str, want| Case {
        doc: Document::AnalystDataItem,
        ..case(name, body, want)
    };
    let attr0 = r#"{"Attribute":{"type":"ip-src","category":"Other","distribution":"0"}}"#;
    check(
        vec![
            item("note", r#"{"Note":{"distribution":"1","note":"x"}}"#, None),
            item(
                "blocked note",
                r#"{"Note":{"distribution":"0"}}"#,
                Some((Rule::BlockedDistribution, "0", "Note.distribution")),
            ),
            item(
                "note without distribution",
                r#"{"Note":{"note":"x"}}"#,
                Some((Rule::Malformed, "missing", "Note.distribution")),
            ),
            item(
                "two items",
                r#"{"Note":{"distribution":"1"},"Opinion":{"distribution":"1"}}"#,
                Some((Rule::Malformed, "", "")),
            ),
            item(
                "not analyst data",
                r#"{"Event":{"distribution":"1"}}"#,
                Some((Rule::Malformed, "", "")),
            ),
            item(
                "related object after its type",
                &format!(
                    r#"{{"Relationship":{{"distribution":"1","related_object_type":"Attribute","related_object":{attr0}}}}}"#
                ),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Relationship.related_object.Attribute.distribution",
                )),
            ),
            item(
                "related object before its type",
                &format!(
                    r#"{{"Relationship":{{"related_object":{attr0},"distribution":"1","related_object_type":"Attribute"}}}}"#
                ),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Relationship.related_object.Attribute.distribution",
                )),
            ),
            item(
                "related object of another type",
                &format!(
                    r#"{{"Relationship":{{"related_object":{attr0},"distribution":"1","related_object_type":"Event"}}}}"#
                ),
                Some((Rule::Malformed, "", "")),
            ),
            item(
                "related object without type",
                &format!(r#"{{"Relationship":{{"related_object":{attr0},"distribution":"1"}}}}"#),
                Some((Rule::Malformed, "", "")),
            ),
            item(
                "related event",
                r#"{"Relationship":{"related_object":{"Event":{"distribution":"0"}},"distribution":"1","related_object_type":"Event"}}"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Relationship.related_object.Event.distribution",
                )),
            ),
            item(
                "related object",
                r#"{"Relationship":{"related_object":{"Object":{"distribution":"1","name":"person"}},"distribution":"1","related_object_type":"Object"}}"#,
                Some((
                    Rule::BlockedObjectType,
                    "person",
                    "Relationship.related_object.Object.name",
                )),
            ),
            item(
                "related cluster",
                r#"{"Relationship":{"related_object":{"GalaxyCluster":{"distribution":"0"}},"distribution":"1","related_object_type":"GalaxyCluster"}}"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Relationship.related_object.GalaxyCluster.distribution",
                )),
            ),
            item(
                "related bare note",
                r#"{"Relationship":{"related_object":{"uuid":"x","distribution":"0"},"distribution":"1","related_object_type":"Note"}}"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Relationship.related_object.distribution",
                )),
            ),
            item(
                "related bare note, type not analyst",
                r#"{"Relationship":{"related_object":{"uuid":"x","distribution":"1"},"distribution":"1","related_object_type":"Attribute"}}"#,
                Some((Rule::Malformed, "", "")),
            ),
            item(
                "related nothing",
                r#"{"Relationship":{"related_object":[],"distribution":"1","related_object_type":"Event"}}"#,
                None,
            ),
            item(
                "related null, unknown type",
                r#"{"Relationship":{"related_object":null,"distribution":"1","related_object_type":"Organisation"}}"#,
                None,
            ),
            item(
                "related object of an unknown type",
                r#"{"Relationship":{"related_object":{"Organisation":{"uuid":"x"}},"distribution":"1","related_object_type":"Organisation"}}"#,
                Some((Rule::Malformed, "", "")),
            ),
            item(
                "relationship without type",
                r#"{"Relationship":{"distribution":"1"}}"#,
                Some((
                    Rule::Malformed,
                    "missing",
                    "Relationship.related_object_type",
                )),
            ),
            Case {
                doc: Document::AnalystDataList,
                ..case(
                    "list of mixed kinds",
                    r#"[{"Note":{"distribution":"1"}},{"Opinion":{"distribution":"0"}}]"#,
                    Some((Rule::BlockedDistribution, "0", "[1].Opinion.distribution")),
                )
            },
        ],
        true,
    );
}

#[test]
fn other_documents() {
    let doc = |d, name, body: &str, want| Case {
        doc: d,
        ..case(name, body, want)
    };
    use Document::*;
    let bad = Some((Rule::Malformed, "", ""));
    check(
        vec![
            doc(
                MinimalSearch,
                "minimal",
                r#"{"minimal":1,"published":"1","page":2}"#,
                None,
            ),
            doc(
                MinimalSearch,
                "not minimal",
                r#"{"minimal":0,"published":1}"#,
                Some((Rule::NotMinimalSearch, "0", "minimal")),
            ),
            doc(
                MinimalSearch,
                "true is not 1",
                r#"{"minimal":true,"published":1}"#,
                Some((Rule::NotMinimalSearch, "true", "minimal")),
            ),
            doc(
                MinimalSearch,
                "no published",
                r#"{"minimal":1}"#,
                Some((Rule::NotMinimalSearch, "missing", "published")),
            ),
            doc(MinimalSearch, "list", "[]", bad),
            doc(PostTest, "post test", r#"{"testString":"abc"}"#, None),
            doc(
                PostTest,
                "post test extra key",
                r#"{"testString":"abc","x":1}"#,
                bad,
            ),
            doc(PostTest, "post test number", r#"{"testString":1}"#, bad),
            doc(PostTest, "post test empty", r#"{}"#, bad),
            doc(UuidList, "uuids", r#"["a","b"]"#, None),
            doc(UuidList, "uuid number", r#"["a",1]"#, bad),
            doc(UuidList, "uuids object", r#"{}"#, bad),
            doc(EventIndex, "index", r#"[{"id":"1","uuid":"u"},{}]"#, None),
            doc(EventIndex, "index of strings", r#"["x"]"#, bad),
            doc(
                EventIndex,
                "minimal index",
                r#"[{"id":"1","timestamp":"1","sighting_timestamp":"0","published":true,"uuid":"u","orgc_uuid":"o"}]"#,
                None,
            ),
            doc(
                EventIndex,
                "full index with tags",
                r#"[{"id":"1","uuid":"u","EventTag":[{"Tag":{"name":"tlp:red"}}]}]"#,
                bad,
            ),
            doc(
                EventIndex,
                "full index with Org",
                r#"[{"id":"1","Org":{"name":"x"}}]"#,
                bad,
            ),
            doc(
                EventUuidTimestamps,
                "uuid timestamps",
                r#"[{"Event":{"uuid":"u","timestamp":"1"}}]"#,
                None,
            ),
            doc(
                EventUuidTimestamps,
                "extra key",
                r#"[{"Event":{"uuid":"u","timestamp":"1","x":1}}]"#,
                bad,
            ),
            doc(
                EventUuidTimestamps,
                "missing timestamp",
                r#"[{"Event":{"uuid":"u"}}]"#,
                bad,
            ),
            doc(Sightings, "empty object", "{}", None),
            doc(Sightings, "empty list", "[]", None),
            doc(Sightings, "list", r#"[{"uuid":"s","type":"0"}]"#, None),
            doc(
                Sightings,
                "response",
                r#"{"response":[{"Sighting":{"id":"1"}}]}"#,
                None,
            ),
            doc(Sightings, "list of numbers", "[1]", bad),
            doc(Sightings, "other key", r#"{"foo":[]}"#, bad),
            doc(
                Sightings,
                "response of the wrong wrapper",
                r#"{"response":[{"Event":{}}]}"#,
                bad,
            ),
            doc(AnalystDataMinimal, "minimal empty", r#"{"Note":[]}"#, None),
            doc(
                AnalystDataMinimal,
                "minimal map",
                r#"{"Note":{"u":"t"},"Opinion":[{"v":"t"}]}"#,
                None,
            ),
            doc(
                AnalystDataMinimal,
                "minimal other key",
                r#"{"Event":{}}"#,
                bad,
            ),
            doc(
                AnalystDataMinimal,
                "minimal number",
                r#"{"Note":{"u":1}}"#,
                bad,
            ),
            doc(
                GalaxyClusterSearch,
                "search",
                r#"{"response":[{"GalaxyCluster":{"uuid":"x"}}]}"#,
                None,
            ),
            doc(
                GalaxyClusterSearch,
                "search list",
                r#"[{"GalaxyCluster":{"uuid":"x"}}]"#,
                None,
            ),
            doc(
                GalaxyClusterSearch,
                "search blocked",
                r#"[{"GalaxyCluster":{"uuid":"x","distribution":"0"}}]"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "[0].GalaxyCluster.distribution",
                )),
            ),
            doc(GalaxyClusterSearch, "search without response", r#"{}"#, bad),
            doc(
                GalaxyCluster,
                "relation distribution",
                r#"{"GalaxyCluster":{"distribution":"1","GalaxyClusterRelation":[{"distribution":"0"}]}}"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "GalaxyCluster.GalaxyClusterRelation[0].distribution",
                )),
            ),
            doc(
                GalaxyCluster,
                "relation tag",
                r#"{"GalaxyCluster":{"distribution":"1","GalaxyClusterRelation":[{"Tag":[{"name":"tlp:red"}]}]}}"#,
                Some((
                    Rule::BlockedTag,
                    "tlp:red",
                    "GalaxyCluster.GalaxyClusterRelation[0].Tag[0].name",
                )),
            ),
            doc(
                GalaxyCluster,
                "cluster sharing group",
                r#"{"GalaxyCluster":{"distribution":"4","SharingGroup":{"uuid":"b9e656ba-b9c0-4506-83ed-7b54b43a57cb"}}}"#,
                Some((
                    Rule::BlockedSharingGroup,
                    "",
                    "GalaxyCluster.SharingGroup.uuid",
                )),
            ),
            doc(
                GalaxyCluster,
                "cluster without distribution",
                r#"{"GalaxyCluster":{}}"#,
                Some((Rule::Malformed, "missing", "")),
            ),
            doc(
                ShadowAttributeList,
                "proposals",
                r#"[{"ShadowAttribute":{"type":"ip-src","category":"Other"}},{"ShadowAttribute":{"type":"text","category":"Person"}}]"#,
                Some((
                    Rule::BlockedAttributeCategory,
                    "Person",
                    "[1].ShadowAttribute.category",
                )),
            ),
            doc(AnyJson, "any", r#"{"a":[1,2,{"b":null}]}"#, None),
            doc(AnyJson, "any scalar", "1", None),
        ],
        true,
    );
}

#[test]
fn values_are_cut_and_escaped() {
    let long = "x".repeat(1000);
    let b = block_of(run(
        &event(&format!(r#""distribution":"{long}""#)),
        Document::Event,
        &base_policy(),
        &ctx(),
    ))
    .unwrap();
    assert_eq!(b.value.chars().count(), names::VALUE_CHARS + 1);
    let b = block_of(run(
        &event(r#""distribution":"2","Tag":[{"name":"tlp:red"}],"Tag ":1"#),
        Document::Event,
        &Policy {
            blocked_tags: set(&["tlp:red"]),
            ..base_policy()
        },
        &ctx(),
    ))
    .unwrap();
    assert_eq!(b.value, "tlp:red");
    let mut policy = base_policy();
    policy.blocked_tags.insert("a\nb".into());
    let b = block_of(run(
        &event(r#""distribution":"2","Tag":[{"name":"a\nb"}]"#),
        Document::Event,
        &policy,
        &ctx(),
    ))
    .unwrap();
    assert!(!b.value.chars().any(char::is_control), "{b}");
    assert!(!b.to_string().contains('\n'));
}

// ===== property tests against the oracle =====

mod generated {
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    use super::*;

    /// A JSON value built as text, so key order is ours to choose.
    #[derive(Debug, Clone)]
    pub(super) enum J {
        Obj(Vec<(&'static str, J)>),
        Arr(Vec<J>),
        Raw(String),
    }

    impl J {
        /// Render, shuffling every object's keys with a small LCG.
        pub(super) fn text(&self, seed: &mut u64) -> String {
            match self {
                J::Raw(s) => s.clone(),
                J::Arr(items) => format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|j| j.text(seed))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                J::Obj(fields) => {
                    let mut order: Vec<usize> = (0..fields.len()).collect();
                    for i in (1..order.len()).rev() {
                        *seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        order.swap(i, (*seed >> 33) as usize % (i + 1));
                    }
                    let parts: Vec<String> = order
                        .into_iter()
                        .map(|i| format!("{:?}:{}", fields[i].0, fields[i].1.text(seed)))
                        .collect();
                    format!("{{{}}}", parts.join(","))
                }
            }
        }
    }

    fn raw(options: &'static [&'static str]) -> impl Strategy<Value = J> {
        proptest::sample::select(options).prop_map(|s| J::Raw(s.to_string()))
    }

    fn obj(fields: Vec<(&'static str, Option<J>)>) -> J {
        J::Obj(
            fields
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect(),
        )
    }

    const DISTRIBUTIONS: &[&str] = &[
        "0", "\"0\"", "1", "\"1\"", "\"2\"", "3", "\"3\"", "4", "\"4\"", "\"5\"", "5", "\"00\"",
        "\" 0\"", "0.0", "-1", "6", "null", "true", "\"abc\"",
    ];
    const ORG: &str = "8b9661a3-8544-4f8d-94be-cd7ebe87e922";

    fn dist() -> impl Strategy<Value = Option<J>> {
        option::weighted(0.9, raw(DISTRIBUTIONS))
    }

    fn tag() -> impl Strategy<Value = J> {
        let names = &[
            "\"tlp:red\"",
            "\" TLP:RED \"",
            "\"tlp:green\"",
            "\"TLP:Clear\"",
            "\"tlp:amber\"",
            "\"tlp:rainbow\"",
            "\"foo:bar\"",
            "\"tlpx:green\"",
            "\"ｔｌｐ：ｒｅｄ\"",
            "\"ＴＬＰ:green\"",
            "\"tlp:\\u200bred\"",
            "\"tlp:red\\u0000\"",
            "5",
        ];
        option::weighted(0.95, raw(names))
            .prop_map(|name| obj(vec![("id", Some(J::Raw("\"1\"".into()))), ("name", name)]))
    }

    fn tags() -> impl Strategy<Value = Option<J>> {
        option::of(vec(tag(), 0..3).prop_map(J::Arr))
    }

    /// `EventTag` / `AttributeTag`: a list of links or one link.
    fn tag_link() -> impl Strategy<Value = J> {
        (tag(), proptest::bool::weighted(0.9)).prop_map(|(t, with_tag)| {
            obj(vec![
                ("id", Some(J::Raw("\"7\"".into()))),
                ("Tag", with_tag.then_some(t)),
            ])
        })
    }

    /// `EventTag` / `AttributeTag`: a list of links or one link.
    fn tag_links() -> BoxedStrategy<Option<J>> {
        option::weighted(
            0.3,
            prop_oneof![vec(tag_link(), 0..3).prop_map(J::Arr), tag_link()],
        )
        .boxed()
    }

    fn galaxies() -> BoxedStrategy<Option<J>> {
        let tag_name = option::weighted(
            0.8,
            raw(&[
                "\"misp-galaxy:x=\\\"y\\\"\"",
                "\"tlp:red\"",
                "\"ｔｌｐ:red\"",
                "\"a:b\\r\"",
                "1",
            ]),
        );
        let uuid = option::weighted(
            0.5,
            raw(&[
                "\"11111111-2222-4333-8444-555555555555\"",
                "\" 11111111-2222-4333-8444-55555555555５\"",
                "\"e5d5a2a7-d659-4022-8b59-6afa4b658fd5\"",
                "\"\"",
                "null",
            ]),
        );
        let cluster = (
            tag_name,
            option::weighted(0.3, raw(DISTRIBUTIONS)),
            sharing_group(),
            uuid,
        )
            .prop_map(|(t, d, sg, u)| {
                obj(vec![
                    ("tag_name", t),
                    ("distribution", d),
                    ("SharingGroup", sg),
                    ("uuid", u),
                ])
            });
        let galaxy = vec(cluster, 0..3).prop_map(|c| {
            obj(vec![
                ("name", Some(J::Raw("\"g\"".into()))),
                ("GalaxyCluster", Some(J::Arr(c))),
            ])
        });
        option::weighted(0.3, vec(galaxy, 0..2).prop_map(J::Arr)).boxed()
    }

    fn sharing_group() -> impl Strategy<Value = Option<J>> {
        let uuid = option::weighted(
            0.95,
            raw(&[
                "\"b9e656ba-b9c0-4506-83ed-7b54b43a57cb\"",
                "\"B9E656BA-B9C0-4506-83ED-7B54B43A57CB\"",
                "\"e5d5a2a7-d659-4022-8b59-6afa4b658fd5\"",
            ]),
        );
        let org = raw(&[
            "\"8b9661a3-8544-4f8d-94be-cd7ebe87e922\"",
            "\"8B9661A3-8544-4F8D-94BE-CD7EBE87E922\"",
            "\"87c33ffe-f83c-4eb1-be09-51f767f6fd5a\"",
        ])
        .prop_map(|u| obj(vec![("Organisation", Some(obj(vec![("uuid", Some(u))])))]));
        let url = raw(&[
            "\"https://misp-b.example\"",
            "\"https://MISP-B.example:443/misp\"",
            "\"https://misp-c.example\"",
            "\"https://127.0.0.2:8443\"",
            "null",
        ])
        .prop_map(|u| obj(vec![("url", Some(u))]));
        // The owner's own entry: PHP's empty array.
        let url = prop_oneof![4 => url, 1 => Just(J::Raw("[]".into()))];
        let server = (
            raw(&["true", "false", "1", "\"0\""]),
            option::weighted(0.7, url),
        )
            .prop_map(|(a, s)| obj(vec![("all_orgs", Some(a)), ("Server", s)]));
        option::weighted(
            0.3,
            (
                uuid,
                option::of(vec(org, 0..2)),
                option::of(vec(server, 0..2)),
            )
                .prop_map(|(uuid, orgs, servers)| {
                    obj(vec![
                        ("uuid", uuid),
                        ("name", Some(J::Raw("\"sg\"".into()))),
                        ("SharingGroupOrg", orgs.map(J::Arr)),
                        ("SharingGroupServer", servers.map(J::Arr)),
                    ])
                }),
        )
    }

    // Boxed: nested tuple strategies make value trees large enough to
    // overflow a test thread's stack in debug builds.
    fn attribute_fields(shadows: Option<J>, notes: Option<J>) -> BoxedStrategy<J> {
        let kind = option::weighted(
            0.95,
            raw(&[
                "\"ip-src\"",
                "\"passport-number\"",
                "\"Email\"",
                "\"text\"",
                "\"ｅｍａｉｌ\"",
                "\"email\\u0000\"",
                "5",
            ]),
        );
        let category = option::weighted(
            0.95,
            raw(&[
                "\"Network activity\"",
                "\"Person\"",
                "\"PERSON\"",
                "\"Other\"",
                "\"\"",
                "\"0 \"",
            ]),
        );
        (
            kind,
            category,
            option::weighted(0.7, raw(DISTRIBUTIONS)),
            tags(),
            sharing_group(),
            tag_links(),
            galaxies(),
        )
            .prop_map(move |(kind, category, dist, tags, sg, links, galaxies)| {
                obj(vec![
                    ("type", kind),
                    ("category", category),
                    ("distribution", dist),
                    ("value", Some(J::Raw("\"8.8.8.8\"".into()))),
                    ("Tag", tags),
                    ("AttributeTag", links),
                    ("Galaxy", galaxies),
                    ("SharingGroup", sg),
                    ("ShadowAttribute", shadows.clone()),
                    ("Note", notes.clone()),
                ])
            })
            .boxed()
    }

    fn note() -> impl Strategy<Value = J> {
        dist().prop_map(|d| {
            obj(vec![
                ("distribution", d),
                ("note", Some(J::Raw("\"n\"".into()))),
            ])
        })
    }

    fn attribute() -> BoxedStrategy<J> {
        (
            option::of(vec(attribute_fields(None, None), 0..2)),
            option::of(vec(note(), 0..2)),
        )
            .prop_flat_map(|(shadows, notes)| {
                attribute_fields(shadows.map(J::Arr), notes.map(J::Arr))
            })
            .boxed()
    }

    fn object_name() -> impl Strategy<Value = Option<J>> {
        option::weighted(
            0.95,
            raw(&[
                "\"file\"",
                "\"person\"",
                "\"Person\"",
                "\"domain-ip\"",
                "\"per\\u00adson\"",
                "\"person\\u000b\"",
            ]),
        )
    }

    fn object() -> BoxedStrategy<J> {
        // What MISP saves instead when an item has an `Object` key.
        let inner = (
            object_name(),
            dist(),
            vec(attribute_fields(None, None), 0..2),
        )
            .prop_map(|(name, dist, attrs)| {
                obj(vec![
                    ("name", name),
                    ("distribution", dist),
                    ("Attribute", Some(J::Arr(attrs))),
                ])
            });
        (
            object_name(),
            dist(),
            sharing_group(),
            vec(attribute(), 0..3),
            option::of(vec(note(), 0..2)),
            option::weighted(0.15, inner),
        )
            .prop_map(|(name, dist, sg, attrs, notes, inner)| {
                obj(vec![
                    ("name", name),
                    ("distribution", dist),
                    ("SharingGroup", sg),
                    ("Attribute", Some(J::Arr(attrs))),
                    ("Opinion", notes.map(J::Arr)),
                    ("Object", inner),
                ])
            })
            .boxed()
    }

    fn small_event() -> impl Strategy<Value = J> {
        (dist(), tags(), sharing_group())
            .prop_map(|(d, t, sg)| obj(vec![("distribution", d), ("Tag", t), ("SharingGroup", sg)]))
    }

    fn relationship() -> impl Strategy<Value = J> {
        let related = prop_oneof![
            attribute().prop_map(|a| ("\"Attribute\"", obj(vec![("Attribute", Some(a))]))),
            object().prop_map(|o| ("\"Object\"", obj(vec![("Object", Some(o))]))),
            small_event().prop_map(|e| ("\"Event\"", obj(vec![("Event", Some(e))]))),
            note().prop_map(|n| ("\"Note\"", n)),
            Just(("\"Event\"", J::Arr(vec![]))),
        ];
        (dist(), related).prop_map(|(d, (kind, ro))| {
            obj(vec![
                ("distribution", d),
                ("related_object_type", Some(J::Raw(kind.into()))),
                ("related_object", Some(ro)),
            ])
        })
    }

    pub(super) fn event_doc() -> impl Strategy<Value = J> {
        let lists = (
            vec(attribute(), 0..4),
            vec(object(), 0..3),
            option::of(vec(
                dist().prop_map(|d| obj(vec![("distribution", d)])),
                0..2,
            )),
            option::of(vec(note(), 0..2)),
            option::of(vec(relationship(), 0..2)),
            option::of(vec(attribute(), 0..2)),
            option::of(vec(
                small_event().prop_map(|e| obj(vec![("Event", Some(e))])),
                0..2,
            )),
        );
        (
            dist(),
            tags(),
            sharing_group(),
            lists,
            tag_links(),
            galaxies(),
        )
            .prop_map(
                |(
                    d,
                    t,
                    sg,
                    (attrs, objects, reports, notes, rels, shadows, related),
                    links,
                    galaxies,
                )| {
                    let event = obj(vec![
                        ("distribution", d),
                        ("info", Some(J::Raw("\"generated\"".into()))),
                        (
                            "Org",
                            Some(obj(vec![("uuid", Some(J::Raw("\"o\"".into())))])),
                        ),
                        ("Tag", t),
                        ("EventTag", links),
                        ("Galaxy", galaxies),
                        ("SharingGroup", sg),
                        ("Attribute", Some(J::Arr(attrs))),
                        ("Object", Some(J::Arr(objects))),
                        ("EventReport", reports.map(J::Arr)),
                        ("Note", notes.map(J::Arr)),
                        ("Relationship", rels.map(J::Arr)),
                        ("ShadowAttribute", shadows.map(J::Arr)),
                        ("RelatedEvent", related.map(J::Arr)),
                    ]);
                    obj(vec![("Event", Some(event))])
                },
            )
    }

    pub(super) fn setting() -> impl Strategy<Value = (Policy, Context)> {
        (any::<bool>(), any::<bool>()).prop_map(|(tlp, org)| {
            let policy = if tlp { tlp_policy() } else { base_policy() };
            let ctx = Context {
                user_org_uuid: org.then(|| ORG.to_string()),
                receiver: Some(super::receiver()),
                rebuild: false,
            };
            (policy, ctx)
        })
    }

    /// Sightings, bare or under `response`, embedding an attribute and an
    /// event summary now and then.
    pub(super) fn sightings_doc() -> impl Strategy<Value = J> {
        let sighting = (
            option::weighted(0.5, attribute_fields(None, None)),
            option::weighted(0.3, (option::weighted(0.5, raw(DISTRIBUTIONS)), tags())),
        )
            .prop_map(|(attr, ev)| {
                let ev = ev.map(|(d, t)| {
                    obj(vec![
                        ("info", Some(J::Raw("\"x\"".into()))),
                        ("distribution", d),
                        ("Tag", t),
                    ])
                });
                obj(vec![
                    ("uuid", Some(J::Raw("\"s\"".into()))),
                    ("Attribute", attr),
                    ("Event", ev),
                ])
            });
        (vec(sighting, 0..3), any::<bool>()).prop_map(|(list, wrapped)| {
            if wrapped {
                let items = list
                    .into_iter()
                    .map(|s| obj(vec![("Sighting", Some(s))]))
                    .collect();
                obj(vec![("response", Some(J::Arr(items)))])
            } else {
                J::Arr(list)
            }
        })
    }

    pub(super) fn analyst_doc() -> impl Strategy<Value = J> {
        prop_oneof![
            note().prop_map(|n| obj(vec![("Note", Some(n))])),
            relationship().prop_map(|r| obj(vec![("Relationship", Some(r))])),
        ]
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

    #[test]
    fn events_agree_with_oracle(doc in generated::event_doc(), seed in proptest::prelude::any::<u64>(), (policy, ctx) in generated::setting()) {
        let mut seed = seed;
        let text = doc.text(&mut seed);
        let got = block_of(run(&text, Document::Event, &policy, &ctx));
        let want = oracle::judge(&text, Document::Event, &policy, &ctx);
        proptest::prop_assert_eq!(got, want, "{}", text);
    }

    #[test]
    fn analyst_data_agrees_with_oracle(doc in generated::analyst_doc(), seed in proptest::prelude::any::<u64>(), (policy, ctx) in generated::setting()) {
        let mut seed = seed;
        let text = doc.text(&mut seed);
        let got = block_of(run(&text, Document::AnalystDataItem, &policy, &ctx));
        let want = oracle::judge(&text, Document::AnalystDataItem, &policy, &ctx);
        proptest::prop_assert_eq!(got, want, "{}", text);
    }

    #[test]
    fn sightings_agree_with_oracle(doc in generated::sightings_doc(), seed in proptest::prelude::any::<u64>(), (policy, ctx) in generated::setting()) {
        let mut seed = seed;
        let text = doc.text(&mut seed);
        let got = block_of(run(&text, Document::Sightings, &policy, &ctx));
        let want = oracle::judge(&text, Document::Sightings, &policy, &ctx);
        proptest::prop_assert_eq!(got, want, "{}", text);
    }

    #[test]
    fn generated_documents_through_the_fuzz_entry(doc in generated::event_doc(), analyst in generated::analyst_doc(), sightings in generated::sightings_doc(), seed in proptest::prelude::any::<u64>()) {
        let mut seed = seed;
        for text in [doc.text(&mut seed), analyst.text(&mut seed), sightings.text(&mut seed)] {
            super::fuzz::evaluate_all(text.as_bytes());
        }
    }

    #[test]
    fn mutated_fixtures_through_the_fuzz_entry(pick in proptest::prelude::any::<proptest::sample::Index>(), edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..4)) {
        let fixtures = fixture_bodies();
        let mut body = fixtures[pick.index(fixtures.len())].clone();
        for (at, byte) in edits {
            if !body.is_empty() {
                let i = at.index(body.len());
                body[i] = byte;
            }
        }
        super::fuzz::evaluate_all(&body);
    }

    #[test]
    fn key_order_does_not_change_the_verdict(doc in generated::event_doc(), a in proptest::prelude::any::<u64>(), b in proptest::prelude::any::<u64>(), (policy, ctx) in generated::setting()) {
        let (mut a, mut b) = (a, b);
        let first = block_of(run(&doc.text(&mut a), Document::Event, &policy, &ctx));
        let second = block_of(run(&doc.text(&mut b), Document::Event, &policy, &ctx));
        proptest::prop_assert_eq!(first, second);
    }
}

/// The generated events reach every rule, and some pass: the properties
/// above are not comparing blocks of one kind only.
#[test]
fn generated_events_cover_the_rules() {
    use proptest::strategy::{Strategy, ValueTree};
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen: HashSet<Option<Rule>> = HashSet::new();
    let strategy = (generated::event_doc(), generated::setting());
    for i in 0..2000u64 {
        let (doc, (policy, ctx)) = strategy.new_tree(&mut runner).unwrap().current();
        let mut seed = i;
        let b = block_of(run(&doc.text(&mut seed), Document::Event, &policy, &ctx));
        seen.insert(b.map(|b| b.rule));
    }
    for want in [
        None,
        Some(Rule::BlockedTag),
        Some(Rule::MissingTaxonomy),
        Some(Rule::BlockedDistribution),
        Some(Rule::BlockedSharingGroup),
        Some(Rule::SharingGroupExcludesOrg),
        Some(Rule::BlockedAttributeType),
        Some(Rule::BlockedAttributeCategory),
        Some(Rule::BlockedObjectType),
        Some(Rule::Malformed),
    ] {
        assert!(seen.contains(&want), "never saw {want:?} in {seen:?}");
    }
}

// ===== red-team findings =====

#[test]
fn wrapped_objects_and_attributes() {
    // MISP's save paths read an inner `Object` (captureObject) and an inner
    // `EventReport` (captureReport) instead of the item, with a local
    // sharing group and no pull downgrade; no MISP sends either form, nor
    // an `Attribute` inside an attribute. All are refused.
    let wrapped = |name, body: String, at| case(name, body, Some((Rule::Malformed, WRAPPED, at)));
    check(
        vec![
            wrapped(
                "object inside an object (MISP saves the inner one)",
                event(
                    r#""distribution":"1","Object":[{"name":"file","distribution":"1","Object":{"name":"person","distribution":"1","Attribute":[{"type":"passport-number","category":"Person","value":"X1234567","distribution":"1"}]}}]"#,
                ),
                "Event.Object[0].Object",
            ),
            wrapped(
                "harmless inner object",
                event(
                    r#""distribution":"1","Object":[{"name":"file","distribution":"1","Object":{"name":"file","distribution":"1","Attribute":[]}}]"#,
                ),
                "Event.Object[0].Object",
            ),
            wrapped(
                "inner object that is not an object",
                event(
                    r#""distribution":"1","Object":[{"name":"file","distribution":"1","Object":[]}]"#,
                ),
                "Event.Object[0].Object",
            ),
            case(
                "outer object still checked first",
                event(
                    r#""distribution":"1","Object":[{"name":"person","distribution":"1","Object":{"name":"file","distribution":"1"}}]"#,
                ),
                Some((Rule::BlockedObjectType, "person", "Event.Object[0].name")),
            ),
            wrapped(
                "report inside a report (MISP saves the inner one)",
                event(
                    r#""distribution":"1","EventReport":[{"uuid":"6f6d7e1c-1a2b-4c3d-8e9f-0a1b2c3d4e5f","name":"r","content":"c","distribution":"1","EventReport":{"name":"r","content":"secret","distribution":"0"}}]"#,
                ),
                "Event.EventReport[0].EventReport",
            ),
            wrapped(
                "attribute inside an attribute",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"Attribute":{{"type":"passport-number","category":"Other"}}}}]"#
                )),
                "Event.Attribute[0].Attribute",
            ),
            wrapped(
                "attribute inside an object's attribute",
                event(&format!(
                    r#""distribution":"1","Object":[{{"name":"file","distribution":"1","Attribute":[{{{ATTR},"Attribute":{{"type":"text","category":"Person"}}}}]}}]"#
                )),
                "Event.Object[0].Attribute[0].Attribute",
            ),
            wrapped(
                "inner attribute null",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"Attribute":null}}]"#
                )),
                "Event.Attribute[0].Attribute",
            ),
            case(
                "flat reports and objects pass",
                event(&format!(
                    r#""distribution":"1","EventReport":[{{"name":"r","distribution":"1"}}],"Object":[{{"name":"file","distribution":"1","Attribute":[{{{ATTR}}}]}}]"#
                )),
                None,
            ),
        ],
        true,
    );
}

/// `captureAttribute` saves `AttributeTag` rows as they come: the tag
/// attached is the receiver's tag of that local `tag_id`, whatever the
/// name beside it says. A link naming a tag id is refused; a link by name
/// only is judged by its name.
#[test]
fn tags_attached_by_id() {
    check(
        vec![
            case(
                "attribute tag by id with a harmless name",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"AttributeTag":[{{"tag_id":"12","Tag":{{"name":"tlp:green"}}}}]}}]"#
                )),
                Some((
                    Rule::Malformed,
                    TAG_BY_ID,
                    "Event.Attribute[0].AttributeTag[0].tag_id",
                )),
            ),
            case(
                "object attribute tag by id",
                event(&format!(
                    r#""distribution":"1","Object":[{{"name":"file","distribution":"1","Attribute":[{{{ATTR},"AttributeTag":{{"tag_id":"3","Tag":{{"name":"tlp:green"}}}}}}]}}]"#
                )),
                Some((
                    Rule::Malformed,
                    TAG_BY_ID,
                    "Event.Object[0].Attribute[0].AttributeTag.tag_id",
                )),
            ),
            case(
                "event tag by id",
                event(
                    r#""distribution":"1","EventTag":[{"tag_id":"1","Tag":{"name":"tlp:green"}}]"#,
                ),
                Some((Rule::Malformed, TAG_BY_ID, "Event.EventTag[0].tag_id")),
            ),
            case(
                "a blocked name is still reported first",
                event(r#""distribution":"1","EventTag":[{"tag_id":"1","Tag":{"name":"tlp:red"}}]"#),
                Some((Rule::BlockedTag, "tlp:red", "Event.EventTag[0].Tag.name")),
            ),
            case(
                "a link by name only is judged by its name",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"AttributeTag":[{{"id":"4","Tag":{{"id":"9","name":"tlp:green"}}}}]}}]"#
                )),
                None,
            ),
        ],
        true,
    );
}

/// `events/pushProposals` carries the flat rows of the event's proposals
/// (`Server::syncProposals`); each is judged as a proposal. A wrapped row
/// is no row MISP saves.
#[test]
fn pushed_proposal_rows() {
    let rows = |name, body: &str, want| Case {
        doc: Document::ProposalRows,
        ..case(name, body, want)
    };
    check(
        vec![
            rows(
                "MISP's rows",
                r#"[{"old_id":"0","event_id":"2","type":"ip-src","category":"Network activity","uuid":"5a2c9b1e-0000-4000-8000-000000000001","to_ids":true,"value":"1.2.3.4","comment":"","event_uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","timestamp":"1700000000","deleted":false,"proposal_to_delete":false,"disable_correlation":false,"first_seen":null,"last_seen":null,"data":""}]"#,
                None,
            ),
            rows("no proposals", "[]", None),
            rows(
                "a blocked type",
                r#"[{"type":"ip-src","category":"Network activity"},{"type":"passport-number","category":"Person","value":"X1"}]"#,
                Some((Rule::BlockedAttributeCategory, "Person", "[1].category")),
            ),
            rows(
                "a blank category",
                r#"[{"type":"first-name","category":""}]"#,
                Some((Rule::Malformed, "", "[0].category")),
            ),
            rows(
                "a wrapped row",
                r#"[{"ShadowAttribute":{"type":"ip-src","category":"Network activity"}}]"#,
                Some((Rule::Malformed, "", "")),
            ),
            rows(
                "not a list",
                r#"{"type":"ip-src"}"#,
                Some((Rule::Malformed, "", "")),
            ),
        ],
        true,
    );
}

/// MISP's REST view adds `RelationshipInbound` (relationships of other
/// entities pointing here) to every entity, and a full cluster view its
/// `TargetingClusterRelation`: not saved by the receiver, but they cross,
/// each with a distribution of its own.
#[test]
fn inbound_relationships_and_targeting_relations() {
    let rel = |d: &str| {
        format!(
            r#"{{"uuid":"6f847552-aaab-4378-aa5f-369c7b1e0001","object_type":"Event","related_object_type":"Attribute","relationship_type":"related-to","distribution":"{d}"}}"#
        )
    };
    let cluster = |inner: &str| {
        format!(
            r#"{{"GalaxyCluster":{{"uuid":"8faab056-4212-4e80-8b54-b7eadec6b739","distribution":"1","TargetingClusterRelation":[{inner}]}}}}"#
        )
    };
    check(
        vec![
            case(
                "event",
                event(&format!(
                    r#""distribution":"1","RelationshipInbound":[{}]"#,
                    rel("0")
                )),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.RelationshipInbound[0].distribution",
                )),
            ),
            case(
                "attribute",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"RelationshipInbound":[{}]}}]"#,
                    rel("0")
                )),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.Attribute[0].RelationshipInbound[0].distribution",
                )),
            ),
            case(
                "object and report",
                event(&format!(
                    r#""distribution":"1","EventReport":[{{"name":"r","distribution":"1","RelationshipInbound":[{}]}}]"#,
                    rel("0")
                )),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.EventReport[0].RelationshipInbound[0].distribution",
                )),
            ),
            case(
                "harmless",
                event(&format!(
                    r#""distribution":"1","RelationshipInbound":[{}],"Object":[{{"name":"file","distribution":"1","RelationshipInbound":[]}}]"#,
                    rel("3")
                )),
                None,
            ),
            Case {
                doc: Document::GalaxyCluster,
                ..case(
                    "targeting relation",
                    cluster(
                        r#"{"referenced_galaxy_cluster_uuid":"8faab056-4212-4e80-8b54-b7eadec6b739","distribution":"0"}"#,
                    ),
                    Some((
                        Rule::BlockedDistribution,
                        "0",
                        "GalaxyCluster.TargetingClusterRelation[0].distribution",
                    )),
                )
            },
            Case {
                doc: Document::GalaxyCluster,
                ..case(
                    "targeting relation with a blocked tag",
                    cluster(r#"{"distribution":"1","Tag":[{"name":"tlp:red"}]}"#),
                    Some((
                        Rule::BlockedTag,
                        "tlp:red",
                        "GalaxyCluster.TargetingClusterRelation[0].Tag[0].name",
                    )),
                )
            },
        ],
        true,
    );
}

#[test]
fn tag_links() {
    let tlp = |name, body: String, want| Case {
        policy: tlp_policy(),
        ..case(name, body, want)
    };
    check(
        vec![
            case(
                "event tag list",
                event(r#""distribution":"1","EventTag":[{"Tag":{"name":"tlp:red"}}]"#),
                Some((Rule::BlockedTag, "tlp:red", "Event.EventTag[0].Tag.name")),
            ),
            case(
                "event tag single-link form",
                event(r#""distribution":"1","EventTag":{"id":"1","Tag":{"name":"tlp:red"}}"#),
                Some((Rule::BlockedTag, "tlp:red", "Event.EventTag.Tag.name")),
            ),
            case(
                "attribute tag",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"AttributeTag":[{{"id":"3","Tag":{{"name":"TLP:RED"}}}}]}}]"#
                )),
                Some((
                    Rule::BlockedTag,
                    "TLP:RED",
                    "Event.Attribute[0].AttributeTag[0].Tag.name",
                )),
            ),
            case(
                "attribute tag in an object",
                event(&format!(
                    r#""distribution":"1","Object":[{{"name":"file","distribution":"1","Attribute":[{{{ATTR},"AttributeTag":{{"Tag":{{"name":"tlp:red"}}}}}}]}}]"#
                )),
                Some((
                    Rule::BlockedTag,
                    "tlp:red",
                    "Event.Object[0].Attribute[0].AttributeTag.Tag.name",
                )),
            ),
            case(
                "link without Tag (PHP reads {\"0\":…} as a list)",
                event(r#""distribution":"1","EventTag":{"0":{"Tag":{"name":"tlp:red"}}}"#),
                Some((Rule::Malformed, "missing", "Event.EventTag.Tag")),
            ),
            case(
                "link whose Tag is a list",
                event(r#""distribution":"1","EventTag":[{"Tag":[{"name":"tlp:red"}]}]"#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "link list of strings",
                event(r#""distribution":"1","EventTag":["tlp:red"]"#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "link tag without name",
                event(r#""distribution":"1","EventTag":[{"Tag":{"id":"5"}}]"#),
                Some((Rule::Malformed, "missing", "Event.EventTag[0].Tag.name")),
            ),
            case(
                "harmless links",
                event(&format!(
                    r#""distribution":"1","EventTag":[{{"Tag":{{"name":"tlp:green"}}}}],"Attribute":[{{{ATTR},"AttributeTag":[]}}]"#
                )),
                None,
            ),
            tlp(
                "event tag link satisfies a required taxonomy",
                event(r#""distribution":"1","EventTag":[{"Tag":{"name":"tlp:green"}}]"#),
                None,
            ),
            tlp(
                "Tag and EventTag together",
                event(
                    r#""distribution":"1","Tag":[{"name":"foo:bar"}],"EventTag":{"Tag":{"name":"tlp:clear"}}"#,
                ),
                None,
            ),
            tlp(
                "a disallowed link does not satisfy it",
                event(r#""distribution":"1","EventTag":[{"Tag":{"name":"tlp:amber"}}]"#),
                Some((Rule::MissingTaxonomy, "tlp", "Event.Tag")),
            ),
            tlp(
                "attribute tag link satisfies it on attributes",
                event(&format!(
                    r#""distribution":"1","Tag":[{{"name":"tlp:green"}}],"Attribute":[{{{ATTR},"AttributeTag":[{{"Tag":{{"name":"tlp:white"}}}}]}}]"#
                )),
                None,
            ),
        ],
        true,
    );
}

#[test]
fn galaxies_in_events() {
    let cluster_doc = |name, body: &str, want| Case {
        doc: Document::GalaxyCluster,
        ..case(name, body, want)
    };
    check(
        vec![
            case(
                "cluster tag name",
                event(
                    r#""distribution":"1","Galaxy":[{"name":"g","GalaxyCluster":[{"tag_name":"misp-galaxy:x=\"y\""},{"tag_name":"tlp:red"}]}]"#,
                ),
                Some((
                    Rule::BlockedTag,
                    "tlp:red",
                    "Event.Galaxy[0].GalaxyCluster[1].tag_name",
                )),
            ),
            case(
                "cluster distribution",
                event(
                    r#""distribution":"1","Galaxy":[{"GalaxyCluster":[{"tag_name":"a:b","distribution":"0"}]}]"#,
                ),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.Galaxy[0].GalaxyCluster[0].distribution",
                )),
            ),
            case(
                "cluster sharing group",
                event(
                    r#""distribution":"1","Galaxy":[{"GalaxyCluster":[{"distribution":"4","SharingGroup":{"uuid":"b9e656ba-b9c0-4506-83ed-7b54b43a57cb"}}]}]"#,
                ),
                Some((
                    Rule::BlockedSharingGroup,
                    "",
                    "Event.Galaxy[0].GalaxyCluster[0].SharingGroup.uuid",
                )),
            ),
            case(
                "attribute galaxy",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"Galaxy":[{{"GalaxyCluster":[{{"tag_name":" TLP:RED "}}]}}]}}]"#
                )),
                Some((
                    Rule::BlockedTag,
                    " TLP:RED ",
                    "Event.Attribute[0].Galaxy[0].GalaxyCluster[0].tag_name",
                )),
            ),
            case(
                "tag name of a wrong type",
                event(r#""distribution":"1","Galaxy":[{"GalaxyCluster":[{"tag_name":5}]}]"#),
                Some((
                    Rule::Malformed,
                    "5",
                    "Event.Galaxy[0].GalaxyCluster[0].tag_name",
                )),
            ),
            case(
                "clusters not in a list",
                event(r#""distribution":"1","Galaxy":[{"GalaxyCluster":{"tag_name":"tlp:red"}}]"#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "harmless galaxies, distribution absent",
                event(
                    r#""distribution":"1","Galaxy":[{"name":"g","GalaxyCluster":[{"tag_name":"misp-galaxy:a=\"b\"","value":"b"}]},{"name":"h"}]"#,
                ),
                None,
            ),
            cluster_doc(
                "a pulled cluster's own tag name",
                r#"{"GalaxyCluster":{"distribution":"1","tag_name":"tlp:red"}}"#,
                Some((Rule::BlockedTag, "tlp:red", "GalaxyCluster.tag_name")),
            ),
        ],
        true,
    );
}

#[test]
fn control_characters_in_rule_fields() {
    let attr = |kind: &str, category: &str| {
        event(&format!(
            r#""distribution":"1","Attribute":[{{"type":"{kind}","category":"{category}","distribution":"1"}}]"#
        ))
    };
    check(
        vec![
            case(
                "type with NUL (PHP trim strips it)",
                attr(r"email\u0000", "Other"),
                Some((Rule::Malformed, r"email\u{0000}", "Event.Attribute[0].type")),
            ),
            case(
                "category with vertical tab",
                attr("text", r"Person\u000b"),
                Some((
                    Rule::Malformed,
                    r"Person\u{000b}",
                    "Event.Attribute[0].category",
                )),
            ),
            case(
                "harmless type with a control character",
                attr(r"text\t", "Other"),
                Some((Rule::Malformed, r"text\u{0009}", "Event.Attribute[0].type")),
            ),
            case(
                "DEL",
                attr("text\u{7f}", "Other"),
                Some((Rule::Malformed, r"text\u{007f}", "Event.Attribute[0].type")),
            ),
            case(
                "object name",
                event(
                    r#""distribution":"1","Object":[{"name":"person\u0000","distribution":"1"}]"#,
                ),
                Some((Rule::Malformed, r"person\u{0000}", "Event.Object[0].name")),
            ),
            case(
                "tag name",
                event(r#""distribution":"1","Tag":[{"name":"tlp:red\u0000"}]"#),
                Some((Rule::Malformed, r"tlp:red\u{0000}", "Event.Tag[0].name")),
            ),
            case(
                "tag link name",
                event(r#""distribution":"1","EventTag":[{"Tag":{"name":"\u0000tlp:red"}}]"#),
                Some((
                    Rule::Malformed,
                    r"\u{0000}tlp:red",
                    "Event.EventTag[0].Tag.name",
                )),
            ),
            case(
                "cluster tag name",
                event(
                    r#""distribution":"1","Galaxy":[{"GalaxyCluster":[{"tag_name":"tlp:red\r"}]}]"#,
                ),
                Some((
                    Rule::Malformed,
                    r"tlp:red\u{000d}",
                    "Event.Galaxy[0].GalaxyCluster[0].tag_name",
                )),
            ),
            case(
                "sharing group uuid",
                event(
                    r#""distribution":"4","SharingGroup":{"uuid":"b9e656ba-b9c0-4506-83ed-7b54b43a57cb\u0000"}"#,
                ),
                Some((Rule::Malformed, "", "Event.SharingGroup.uuid")),
            ),
            case(
                "blanks are still trimmed",
                attr(" \u{3000}email\u{a0} ", "Other"),
                Some((Rule::BlockedAttributeType, "", "Event.Attribute[0].type")),
            ),
            case(
                "non-control characters are fine",
                attr("ip-src", "Network activity"),
                None,
            ),
            case(
                "value with a control character is not a rule field",
                event(
                    r#""distribution":"1","Attribute":[{"type":"text","category":"Other","value":"a\u0000b","distribution":"1"}]"#,
                ),
                None,
            ),
        ],
        true,
    );
}

#[test]
fn look_alike_names_are_folded() {
    let tlp = |name, body: String, want| Case {
        policy: tlp_policy(),
        ..case(name, body, want)
    };
    let tag = |t: &str| event(&format!(r#""distribution":"1","Tag":[{{"name":"{t}"}}]"#));
    let attr = |kind: &str, category: &str| {
        event(&format!(
            r#""distribution":"1","Attribute":[{{"type":"{kind}","category":"{category}","distribution":"1"}}]"#
        ))
    };
    check(
        vec![
            case(
                "full-width tag",
                tag("ｔｌｐ：ｒｅｄ"),
                Some((Rule::BlockedTag, "ｔｌｐ：ｒｅｄ", "Event.Tag[0].name")),
            ),
            case(
                "full-width upper-case tag",
                tag("ＴＬＰ:ＲＥＤ"),
                Some((Rule::BlockedTag, "", "Event.Tag[0].name")),
            ),
            case(
                "zero-width space inside",
                tag(r"tlp:\u200bred"),
                Some((Rule::Malformed, "", "Event.Tag[0].name")),
            ),
            case(
                "zero-width characters around a blank",
                tag(r"\ufeff tlp:red\u2060 \u00ad"),
                Some((Rule::Malformed, "", "Event.Tag[0].name")),
            ),
            case(
                "full-width type",
                attr("ｅｍａｉｌ", "Other"),
                Some((Rule::BlockedAttributeType, "ｅｍａｉｌ", "")),
            ),
            case(
                "soft hyphen in a type",
                attr(r"passport\u00ad-number", "Other"),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "full-width category",
                attr("text", "Ｐｅｒｓｏｎ"),
                Some((Rule::BlockedAttributeCategory, "", "")),
            ),
            case(
                "object name with a zero-width joiner",
                event(
                    r#""distribution":"1","Object":[{"name":"per\u200dson","distribution":"1"}]"#,
                ),
                Some((Rule::Malformed, "", "Event.Object[0].name")),
            ),
            case(
                "full-width cluster tag name",
                event(
                    r#""distribution":"1","Galaxy":[{"GalaxyCluster":[{"tag_name":"ｔｌｐ:red"}]}]"#,
                ),
                Some((Rule::BlockedTag, "", "")),
            ),
            case(
                "other look-alikes are left alone (not NFKC)",
                tag("tlp:ʀed"),
                None,
            ),
            case("full-width harmless tag", tag("ｔｌｐ：ｇｒｅｅｎ"), None),
            tlp(
                "full-width allowed tag satisfies the taxonomy",
                tag("ＴＬＰ:ＧＲＥＥＮ"),
                None,
            ),
            tlp(
                "full-width blocked tag of the taxonomy",
                tag("tlp:ｒａｉｎｂｏｗ"),
                Some((Rule::BlockedTag, "", "Event.Tag[0].name")),
            ),
        ],
        true,
    );
}

/// A name holding an invisible character (format, control, private-use
/// or default-ignorable) is malformed wherever a name is judged: no list
/// of characters to fold away can be complete, and no MISP name has one.
/// Tag names alone may hold the joiners and variation selectors real tags
/// use, and are then compared with the blocked tags without them.
#[test]
fn invisible_characters_in_names_are_malformed() {
    const HIDDEN: &[&str] = &[
        r"\u2061",
        r"\u2062",
        r"\u2063",
        r"\u2064",
        r"\u180e",
        r"\u200b",
        r"\u200d",
        r"\u202e",
        r"\u2066",
        r"\u3164",
        r"\ufe0f",
        r"\u034f",
        r"\u0085",
        r"\ue000",
        r"\udb40\udc41",
        r"\u115f",
    ];
    let mut cases = Vec::new();
    for h in HIDDEN {
        // A tag may hold a joiner or a variation selector (real tags do):
        // it is then compared without them, and `tlp:red` stays blocked.
        let joiner = [r"\u200d", r"\ufe0f"].contains(h);
        let tag_rule = if joiner {
            Rule::BlockedTag
        } else {
            Rule::Malformed
        };
        let tag_event = event(&format!(
            r#""distribution":"1","Tag":[{{"name":"tlp:{h}red"}}]"#
        ));
        cases.push((tag_event, "Event.Tag[0].name", tag_rule));
        let attr_tag = event(&format!(
            r#""distribution":"1","Attribute":[{{{ATTR},"Tag":[{{"name":"tlp:red{h}"}}]}}]"#
        ));
        cases.push((attr_tag, "Event.Attribute[0].Tag[0].name", tag_rule));
        let link = event(&format!(
            r#""distribution":"1","EventTag":[{{"Tag":{{"name":"{h}tlp:red"}}}}]"#
        ));
        cases.push((link, "Event.EventTag[0].Tag.name", tag_rule));
        let kind = event(&format!(
            r#""distribution":"1","Attribute":[{{"type":"pass{h}port-number","category":"Other"}}]"#
        ));
        cases.push((kind, "Event.Attribute[0].type", Rule::Malformed));
        let category = event(&format!(
            r#""distribution":"1","Attribute":[{{"type":"text","category":"Per{h}son"}}]"#
        ));
        cases.push((category, "Event.Attribute[0].category", Rule::Malformed));
        let object = event(&format!(
            r#""distribution":"1","Object":[{{"name":"per{h}son","distribution":"1"}}]"#
        ));
        cases.push((object, "Event.Object[0].name", Rule::Malformed));
        let cluster = event(&format!(
            r#""distribution":"1","Galaxy":[{{"GalaxyCluster":[{{"tag_name":"tlp:{h}red"}}]}}]"#
        ));
        cases.push((
            cluster,
            "Event.Galaxy[0].GalaxyCluster[0].tag_name",
            tag_rule,
        ));
        let sg = event(&format!(
            r#""distribution":"4","SharingGroup":{{"uuid":"b9e656ba-b9c0-4506-83ed-7b54b43a57cb{h}"}}"#
        ));
        cases.push((sg, "Event.SharingGroup.uuid", Rule::Malformed));
    }
    for (body, at, rule) in cases {
        let got = judged(&body, Document::Event, &base_policy(), &ctx());
        let b = got.unwrap_or_else(|| panic!("allowed: {body}"));
        assert_eq!((b.rule, b.at.as_str()), (rule, at), "{body}: {b}");
    }
    // Visible non-ASCII names stay names.
    check(
        vec![
            case(
                "accented cluster tag",
                event(
                    r#""distribution":"1","Tag":[{"name":"misp-galaxy:threat-actor=\"Émile\""}]"#,
                ),
                None,
            ),
            case(
                "emoji tag",
                event(r#""distribution":"1","Tag":[{"name":"🔴 internal"}]"#),
                None,
            ),
            case(
                "non-breaking space is trimmed, not refused",
                event(r#""distribution":"1","Tag":[{"name":"\u00a0tlp:red"}]"#),
                Some((Rule::BlockedTag, "", "Event.Tag[0].name")),
            ),
        ],
        true,
    );
}

#[test]
fn sightings_with_embedded_attribute_and_event() {
    let doc = |name, body: &str, want| Case {
        doc: Document::Sightings,
        ..case(name, body, want)
    };
    let tlp = |name, body: &str, want| Case {
        policy: tlp_policy(),
        ..doc(name, body, want)
    };
    check(
        vec![
            doc("empty object", "{}", None),
            doc("empty list", "[]", None),
            doc(
                "plain sightings",
                r#"[{"uuid":"s","type":"0","attribute_uuid":"a"},{}]"#,
                None,
            ),
            doc(
                "embedded attribute type",
                r#"{"response":[{"Sighting":{"id":"1","Attribute":{"type":"passport-number","category":"Other","value":"X1234567"}}}]}"#,
                Some((
                    Rule::BlockedAttributeType,
                    "passport-number",
                    "response[0].Sighting.Attribute.type",
                )),
            ),
            doc(
                "embedded attribute category in a bulk list",
                r#"[{"uuid":"s"},{"uuid":"t","Attribute":{"type":"text","category":"Person"}}]"#,
                Some((
                    Rule::BlockedAttributeCategory,
                    "Person",
                    "[1].Attribute.category",
                )),
            ),
            doc(
                "embedded attribute distribution",
                r#"[{"Attribute":{"type":"text","category":"Other","distribution":"0"}}]"#,
                Some((Rule::BlockedDistribution, "0", "[0].Attribute.distribution")),
            ),
            doc(
                "embedded attribute tag",
                r#"[{"Attribute":{"type":"text","category":"Other","Tag":[{"name":"tlp:red"}]}}]"#,
                Some((Rule::BlockedTag, "tlp:red", "[0].Attribute.Tag[0].name")),
            ),
            doc(
                "embedded attribute sharing group",
                r#"[{"Attribute":{"distribution":"4","SharingGroup":{"uuid":"b9e656ba-b9c0-4506-83ed-7b54b43a57cb"}}}]"#,
                Some((
                    Rule::BlockedSharingGroup,
                    "",
                    "[0].Attribute.SharingGroup.uuid",
                )),
            ),
            doc(
                "embedded event distribution",
                r#"{"response":[{"Sighting":{"Event":{"id":"1","info":"x","distribution":"0"}}}]}"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "response[0].Sighting.Event.distribution",
                )),
            ),
            doc(
                "embedded event tag",
                r#"[{"Event":{"info":"x","Tag":[{"name":"tlp:red"}]}}]"#,
                Some((Rule::BlockedTag, "tlp:red", "[0].Event.Tag[0].name")),
            ),
            doc(
                "wrapped sighting in a bulk list",
                r#"[{"Sighting":{"Attribute":{"type":"email","category":"Other"}}}]"#,
                Some((
                    Rule::BlockedAttributeType,
                    "email",
                    "[0].Sighting.Attribute.type",
                )),
            ),
            doc(
                "embedded attribute that is not an object",
                r#"[{"Attribute":"x"}]"#,
                Some((Rule::Malformed, "", "")),
            ),
            doc(
                "harmless summaries, fields absent",
                r#"{"response":[{"Sighting":{"id":"1","Attribute":{"uuid":"a","value":"8.8.8.8"},"Event":{"id":"1","uuid":"e","info":"x","Orgc":{"name":"o"}}}}]}"#,
                None,
            ),
            tlp(
                "summaries need no required taxonomy",
                r#"[{"Attribute":{"type":"ip-src","category":"Network activity"},"Event":{"info":"x","distribution":"1"}}]"#,
                None,
            ),
        ],
        true,
    );
}

/// Entities nested to the depth limit (objects in objects, sightings in
/// sightings) fit in the stack of a tokio worker (2 MiB), debug build.
#[test]
fn nested_entities_fit_a_worker_stack() {
    let chain = |open: &str, close: &str, n: usize| open.repeat(n) + "{}" + &close.repeat(n);
    let objects = event(&format!(
        r#""distribution":"1","Object":[{}]"#,
        chain(r#"{"name":"file","distribution":"1","Object":"#, "}", 70)
    ));
    let sightings = format!("[{}]", chain(r#"{"Sighting":"#, "}", 70));
    let run_small = |body: String, doc: Document| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || block_of(run(&body, doc, &base_policy(), &ctx())))
            .unwrap()
            .join()
            .unwrap()
    };
    for (body, doc) in [(objects, Document::Event), (sightings, Document::Sightings)] {
        let b = run_small(body, doc).expect("too deep");
        assert_eq!(b.rule, Rule::Malformed);
        assert!(b.value.contains("nesting"), "{b}");
    }
}

// ===== red-team round 3 =====

/// MISP's `Attribute::beforeValidateMassage` replaces an `empty()`
/// category by the type's default one (`first-name` → `Person`).
#[test]
fn blank_categories() {
    let attr = |category: &str| {
        event(&format!(
            r#""distribution":"1","Attribute":[{{"type":"first-name","category":{category},"value":"John","distribution":"1"}}]"#
        ))
    };
    let sighting = |name, body: &str, want| Case {
        doc: Document::Sightings,
        ..case(name, body, want)
    };
    let shadows = |name, body: &str, want| Case {
        doc: Document::ShadowAttributeList,
        ..case(name, body, want)
    };
    let at = "Event.Attribute[0].category";
    let cases = vec![
        case("empty", attr(r#""""#), Some((Rule::Malformed, r#""""#, at))),
        case(
            "zero",
            attr(r#""0""#),
            Some((Rule::Malformed, r#""0""#, at)),
        ),
        case(
            "blank",
            attr(r#"" ""#),
            Some((Rule::Malformed, r#"" ""#, at)),
        ),
        case(
            "zero and blank",
            attr(r#""0 ""#),
            Some((Rule::Malformed, r#""0 ""#, at)),
        ),
        case(
            "zero among blanks",
            attr(r#""\u00a0 0\u3000""#),
            Some((Rule::Malformed, "", at)),
        ),
        case(
            "zero-width only",
            attr(r#""\u200b""#),
            Some((Rule::Malformed, "", at)),
        ),
        case(
            "full-width zero",
            attr(r#""０""#),
            Some((Rule::Malformed, "", at)),
        ),
        case("null", attr("null"), Some((Rule::Malformed, "null", at))),
        case("two zeros are not empty()", attr(r#""00""#), None),
        case("a real category", attr(r#""Other""#), None),
        case("a zero inside", attr(r#""Other 0""#), None),
        case(
            "the category the default would give",
            attr(r#""Person""#),
            Some((Rule::BlockedAttributeCategory, "Person", at)),
        ),
        case(
            "object attribute",
            event(
                r#""distribution":"1","Object":[{"name":"file","distribution":"1","Attribute":[{"type":"first-name","category":"","value":"John"}]}]"#,
            ),
            Some((
                Rule::Malformed,
                r#""""#,
                "Event.Object[0].Attribute[0].category",
            )),
        ),
        case(
            "wrapped attribute",
            event(&format!(
                r#""distribution":"1","Attribute":[{{{ATTR},"Attribute":{{"type":"first-name","category":"0"}}}}]"#
            )),
            Some((Rule::Malformed, WRAPPED, "Event.Attribute[0].Attribute")),
        ),
        case(
            "proposal in an event",
            event(r#""distribution":"1","ShadowAttribute":[{"type":"first-name","category":" "}]"#),
            Some((
                Rule::Malformed,
                r#"" ""#,
                "Event.ShadowAttribute[0].category",
            )),
        ),
        case(
            "proposal of an attribute",
            event(&format!(
                r#""distribution":"1","Attribute":[{{{ATTR},"ShadowAttribute":[{{"type":"first-name","category":""}}]}}]"#
            )),
            Some((
                Rule::Malformed,
                "",
                "Event.Attribute[0].ShadowAttribute[0].category",
            )),
        ),
        case(
            "relationship's related attribute",
            event(
                r#""distribution":"1","Relationship":[{"distribution":"1","related_object_type":"Attribute","related_object":{"Attribute":{"type":"first-name","category":"0"}}}]"#,
            ),
            Some((
                Rule::Malformed,
                r#""0""#,
                "Event.Relationship[0].related_object.Attribute.category",
            )),
        ),
        shadows(
            "proposals pushed",
            r#"[{"ShadowAttribute":{"type":"first-name","category":"","value":"John"}}]"#,
            Some((Rule::Malformed, r#""""#, "[0].ShadowAttribute.category")),
        ),
        shadows(
            "proposals with a category",
            r#"[{"ShadowAttribute":{"type":"first-name","category":"Other","value":"John"}}]"#,
            None,
        ),
        sighting(
            "a sighting's attribute may leave it blank, as it may leave it out",
            r#"[{"Attribute":{"type":"text","category":""}},{"Attribute":{"type":"text","category":"0 "}},{"Attribute":{"type":"text"}}]"#,
            None,
        ),
        sighting(
            "a sighting's blank category does not hide its type",
            r#"[{"Attribute":{"type":"passport-number","category":"0"}}]"#,
            Some((
                Rule::BlockedAttributeType,
                "passport-number",
                "[0].Attribute.type",
            )),
        ),
        sighting(
            "an attribute wrapped in a sighting's is refused",
            r#"[{"Attribute":{"type":"text","Attribute":{"type":"first-name","category":""}}}]"#,
            Some((Rule::Malformed, WRAPPED, "[0].Attribute.Attribute")),
        ),
    ];
    check(cases, true);
}

/// `EventsController::index` reads `request` instead of the body and folds
/// `Minimal`, `searchminimal`, … onto `minimal` (last one wins), so those
/// keys could undo the flags the guard checked.
#[test]
fn search_flags_cannot_be_shadowed() {
    let search = |name, body: &str, want| Case {
        doc: Document::MinimalSearch,
        ..case(name, body, want)
    };
    let shadow = |name, key: &'static str| {
        search(
            name,
            &format!(r#"{{"minimal":1,"published":1,{key:?}:0}}"#),
            Some((Rule::NotMinimalSearch, key, key)),
        )
    };
    check(
        vec![
            search(
                "request replaces the body",
                r#"{"minimal":1,"published":1,"request":{"published":1}}"#,
                Some((Rule::NotMinimalSearch, "request", "request")),
            ),
            search(
                "request that would change nothing",
                r#"{"request":{"minimal":1,"published":1},"minimal":1,"published":1}"#,
                Some((Rule::NotMinimalSearch, "request", "request")),
            ),
            shadow("request in capitals", "Request"),
            shadow("capital Minimal", "Minimal"),
            shadow("shouting", "PUBLISHED"),
            shadow("search prefix", "searchminimal"),
            shadow("search prefix on published", "searchpublished"),
            shadow("search prefix and capitals", "searchMinimal"),
            shadow("capital search prefix (wider than PHP)", "SearchPublished"),
            search(
                "escaped key",
                r#"{"minimal":1,"published":1,"Minim\u0061l":0}"#,
                Some((Rule::NotMinimalSearch, "Minimal", "Minimal")),
            ),
            search(
                "a shadow before the flags",
                r#"{"Published":0,"minimal":1,"published":1}"#,
                Some((Rule::NotMinimalSearch, "Published", "Published")),
            ),
            search(
                "MISP's own pull search",
                r#"{"published":1,"minimal":1,"custom":1,"uuid":["11111111-2222-4333-8444-555555555555"]}"#,
                None,
            ),
            search(
                "other keys, other cases",
                r#"{"minimal":"1","published":1,"eventid":7,"Page":2,"searchall":"x","requested":1,"minimalist":0,"search":"minimal"}"#,
                None,
            ),
            search(
                "a missing flag is still missing",
                r#"{"minimal":1}"#,
                Some((Rule::NotMinimalSearch, "missing", "published")),
            ),
        ],
        true,
    );
}

/// MISP ignores a cluster's `tag_name` and builds
/// `misp-galaxy:<type>="<uuid>"` itself, with the type of its own galaxy.
#[test]
fn cluster_tags_are_rebuilt_from_the_uuid() {
    let with_doc = |doc, name, body: String, want| Case {
        doc,
        ..case(name, body, want)
    };
    let push =
        |name, body: &str, want| with_doc(Document::GalaxyClusterList, name, body.into(), want);
    let cluster = |uuid: &str, galaxy_type: &str| {
        format!(
            r#"{{"uuid":{uuid},"value":"Evil","distribution":"1","tag_name":"misp-galaxy:threat-actor=\"harmless\"","Galaxy":{{"uuid":"698774c7-8022-42c4-917f-8d6e4f06ada3","type":"{galaxy_type}"}},"GalaxyElement":[]}}"#
        )
    };
    let blocked = Some((
        Rule::BlockedTag,
        BLOCKED_CLUSTER_TAG,
        "[0].GalaxyCluster.uuid",
    ));
    let quoted = format!("{BLOCKED_CLUSTER:?}");
    let no_galaxy_tags = Policy {
        blocked_tags: set(&["tlp:red"]),
        ..base_policy()
    };
    check(
        vec![
            push(
                "pushed with a harmless tag name",
                &format!(
                    "[{{\"GalaxyCluster\":{}}}]",
                    cluster(&quoted, "threat-actor")
                ),
                blocked,
            ),
            push(
                "whatever galaxy type it claims",
                &format!("[{{\"GalaxyCluster\":{}}}]", cluster(&quoted, "tool")),
                blocked,
            ),
            push(
                "upper-case uuid",
                &format!(
                    "[{{\"GalaxyCluster\":{}}}]",
                    cluster(&quoted.to_uppercase(), "threat-actor")
                ),
                blocked,
            ),
            push(
                "another cluster",
                &format!(
                    "[{{\"GalaxyCluster\":{}}}]",
                    cluster(r#""e5d5a2a7-d659-4022-8b59-6afa4b658fd5""#, "threat-actor")
                ),
                None,
            ),
            push(
                "uuid of a wrong type",
                &format!("[{{\"GalaxyCluster\":{}}}]", cluster("5", "threat-actor")),
                Some((Rule::Malformed, "5", "[0].GalaxyCluster.uuid")),
            ),
            push(
                "the sent tag name still counts, and first",
                r#"[{"GalaxyCluster":{"uuid":"11111111-2222-4333-8444-555555555555","distribution":"1","tag_name":"tlp:red"}}]"#,
                Some((Rule::BlockedTag, "tlp:red", "[0].GalaxyCluster.tag_name")),
            ),
            Case {
                policy: no_galaxy_tags,
                ..push(
                    "no galaxy tag blocked",
                    &format!(
                        "[{{\"GalaxyCluster\":{}}}]",
                        cluster(&quoted, "threat-actor")
                    ),
                    None,
                )
            },
            with_doc(
                Document::GalaxyCluster,
                "pulled",
                format!("{{\"GalaxyCluster\":{}}}", cluster(&quoted, "threat-actor")),
                Some((Rule::BlockedTag, BLOCKED_CLUSTER_TAG, "GalaxyCluster.uuid")),
            ),
            with_doc(
                Document::GalaxyClusterSearch,
                "in a search answer",
                format!(
                    r#"{{"response":[{{"GalaxyCluster":{{"uuid":{quoted},"version":"1"}}}}]}}"#
                ),
                Some((
                    Rule::BlockedTag,
                    BLOCKED_CLUSTER_TAG,
                    "response[0].GalaxyCluster.uuid",
                )),
            ),
            case(
                "in an event's galaxy",
                event(&format!(
                    r#""distribution":"1","Galaxy":[{{"type":"threat-actor","GalaxyCluster":[{{"tag_name":"misp-galaxy:threat-actor=\"x\""}},{{"uuid":{quoted},"tag_name":"misp-galaxy:threat-actor=\"y\""}}]}}]"#
                )),
                Some((
                    Rule::BlockedTag,
                    BLOCKED_CLUSTER_TAG,
                    "Event.Galaxy[0].GalaxyCluster[1].uuid",
                )),
            ),
            case(
                "in an attribute's galaxy, type after the clusters",
                event(&format!(
                    r#""distribution":"1","Attribute":[{{{ATTR},"Galaxy":[{{"GalaxyCluster":[{{"uuid":{quoted}}}],"type":"tool"}}]}}]"#
                )),
                Some((
                    Rule::BlockedTag,
                    BLOCKED_CLUSTER_TAG,
                    "Event.Attribute[0].Galaxy[0].GalaxyCluster[0].uuid",
                )),
            ),
            case(
                "a relationship's related cluster",
                event(&format!(
                    r#""distribution":"1","Relationship":[{{"distribution":"1","related_object_type":"GalaxyCluster","related_object":{{"GalaxyCluster":{}}}}}]"#,
                    cluster(&quoted, "threat-actor")
                )),
                Some((
                    Rule::BlockedTag,
                    BLOCKED_CLUSTER_TAG,
                    "Event.Relationship[0].related_object.GalaxyCluster.uuid",
                )),
            ),
            case(
                "harmless galaxies",
                event(
                    r#""distribution":"1","Galaxy":[{"type":"threat-actor","GalaxyCluster":[{"uuid":"e5d5a2a7-d659-4022-8b59-6afa4b658fd5","tag_name":"misp-galaxy:threat-actor=\"e5d5a2a7-d659-4022-8b59-6afa4b658fd5\""}]}]"#,
                ),
                None,
            ),
            case(
                "an event's own uuid is no cluster",
                event(&format!(r#""distribution":"1","uuid":{quoted}"#)),
                None,
            ),
        ],
        true,
    );
}

#[test]
fn galaxy_tags_of_the_policy() {
    let policy = Policy {
        blocked_tags: set(&[
            r#"misp-galaxy:tool="abc""#,
            r#"misp-galaxy:a-tool="abc""#,
            r#"misp-galaxy:x="""#,
            r#"misp-galaxy:y="d"e""#,
            r#"misp-galaxy:z=abc"#,
            r#"other:tool="abc2""#,
            "tlp:red",
        ]),
        ..base_policy()
    };
    let found = |uuid: &str| {
        let body = format!(r#"{{"GalaxyCluster":{{"distribution":"1","uuid":{uuid:?}}}}}"#);
        judged(&body, Document::GalaxyCluster, &policy, &ctx()).map(|b| b.value)
    };
    assert_eq!(found("abc").as_deref(), Some(r#"misp-galaxy:a-tool="abc""#));
    assert_eq!(found(r#"d"e"#).as_deref(), Some(r#"misp-galaxy:y="d"e""#));
    assert_eq!(found(""), None);
    assert_eq!(found("abc2"), None);
    assert_eq!(found("e"), None);
}

/// `Sighting::restSearch` honours `includeEvent` / `includeAttribute`
/// (event titles, attribute values) and `_harvestParameters` reads
/// `request` instead of the body: the pull search holds MISP's keys only.
#[test]
fn sighting_search_is_misp_pull_only() {
    const U: &str = "385283a1-b5e0-4e10-a532-dce11c365a56";
    let search = |name, body: String, want| Case {
        doc: Document::SightingSearch,
        ..case(name, body, want)
    };
    let pull = |extra: &str| {
        format!(r#"{{"returnFormat":"json","last":0,"includeUuid":true,"uuid":["{U}"]{extra}}}"#)
    };
    let refused = |name, key: &'static str| {
        search(
            name,
            pull(&format!(",{key:?}:1")),
            Some((Rule::Malformed, key, key)),
        )
    };
    let bad =
        |name, body: String, at: &'static str| search(name, body, Some((Rule::Malformed, "", at)));
    let uuids = |n: usize| {
        let list = vec![format!("{U:?}"); n].join(",");
        format!(r#"{{"returnFormat":"json","uuid":[{list}]}}"#)
    };
    check(
        vec![
            search("MISP's pull", pull(""), None),
            search(
                "MISP's pull with a sighting blocklist",
                pull(r#","org_id":["!55555555-1111-4111-8111-111111111111"]"#),
                None,
            ),
            search(
                "other spellings MISP may send",
                format!(
                    r#"{{"uuid":["{U}"],"includeUuid":"1","last":"1700000000","returnFormat":"json"}}"#
                ),
                None,
            ),
            search(
                "includeUuid 1, no last",
                uuids(1).replace("{", r#"{"includeUuid":1,"#),
                None,
            ),
            search("twenty events", uuids(20), None),
            refused("event titles", "includeEvent"),
            refused("attribute values", "includeAttribute"),
            refused("request replaces the body", "request"),
            refused("capital request", "Request"),
            refused("another case", "IncludeEvent"),
            refused("search prefix", "searchincludeEvent"),
            refused("context", "context"),
            refused("id", "id"),
            refused("time window", "from"),
            refused("type", "type"),
            refused("anything else", "page"),
            search(
                "escaped key",
                pull(r#","includ\u0065Event":1"#),
                Some((Rule::Malformed, "includeEvent", "includeEvent")),
            ),
            search(
                "red-team reproducer",
                format!(
                    r#"{{"returnFormat":"json","last":0,"includeUuid":true,"includeEvent":1,"includeAttribute":1,"uuid":["{U}"]}}"#
                ),
                Some((Rule::Malformed, "includeEvent", "includeEvent")),
            ),
            search(
                "request first",
                r#"{"request":{"includeEvent":1}}"#.into(),
                Some((Rule::Malformed, "request", "request")),
            ),
            bad(
                "csv",
                pull("").replace(r#""json""#, r#""csv""#),
                "returnFormat",
            ),
            bad(
                "JSON",
                pull("").replace(r#""json""#, r#""JSON""#),
                "returnFormat",
            ),
            bad(
                "format as a list",
                pull("").replace(r#""json""#, r#"["json"]"#),
                "returnFormat",
            ),
            bad(
                "last as a period",
                pull("").replace(r#""last":0"#, r#""last":"1d""#),
                "last",
            ),
            bad(
                "negative last",
                pull("").replace(r#""last":0"#, r#""last":-1"#),
                "last",
            ),
            bad(
                "fractional last",
                pull("").replace(r#""last":0"#, r#""last":1.5"#),
                "last",
            ),
            bad(
                "empty last",
                pull("").replace(r#""last":0"#, r#""last":"""#),
                "last",
            ),
            bad(
                "includeUuid false",
                pull("").replace("true", "false"),
                "includeUuid",
            ),
            bad(
                "includeUuid 0",
                pull("").replace("true", "0"),
                "includeUuid",
            ),
            search(
                "no event uuids",
                uuids(0),
                Some((Rule::Malformed, "fewer than 1 strings", "uuid")),
            ),
            search(
                "more than twenty events",
                uuids(21),
                Some((Rule::Malformed, "more than 20 strings", "uuid")),
            ),
            bad(
                "uuid not a list",
                r#"{"returnFormat":"json","uuid":"x"}"#.into(),
                "",
            ),
            bad(
                "uuid of numbers",
                r#"{"returnFormat":"json","uuid":[1]}"#.into(),
                "uuid[0]",
            ),
            bad("org_id not a list", pull(r#","org_id":"!1""#), ""),
            bad("org_id of objects", pull(r#","org_id":[{}]"#), ""),
            search(
                "no returnFormat",
                format!(r#"{{"uuid":["{U}"]}}"#),
                Some((Rule::Malformed, "missing", "returnFormat")),
            ),
            search(
                "no uuid",
                r#"{"returnFormat":"json","last":0}"#.into(),
                Some((Rule::Malformed, "missing", "uuid")),
            ),
            bad("empty object", "{}".into(), ""),
            bad("a list", "[1,2,3]".into(), ""),
            bad("a string", r#""json""#.into(), ""),
        ],
        true,
    );
    // Duplicates are invisible to the oracle.
    check(
        vec![search(
            "uuid twice",
            format!(r#"{{"returnFormat":"json","uuid":["{U}"],"uuid":[]}}"#),
            Some((Rule::DuplicateKey, "uuid", "uuid")),
        )],
        false,
    );
}

/// A related event summary carries no tags; under tag rules a non-empty
/// `RelatedEvent` list (a push's events/add answer, say) is blocked.
#[test]
fn related_events_under_tag_rules() {
    let probe_answer = r#"{"Event":{"id":"9","info":"probe","distribution":"1","uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","Tag":[],"RelatedEvent":[{"Event":{"id":"3","date":"2024-01-01","info":"TLP:RED op nightfall","uuid":"44444444-1111-4111-8111-111111111111","distribution":"1","published":true,"Orgc":{"name":"CERT-X","uuid":"55555555-1111-4111-8111-111111111111"}}}]}}"#;
    let nested = event(
        r#""distribution":"1","Attribute":[{"type":"ip-src","category":"Network activity","distribution":"1","RelatedEvent":[]}],"RelatedEvent":[{"Event":{"distribution":"1","RelatedEvent":[{"Event":{"distribution":"1"}}]}}]"#,
    );
    check(
        vec![
            case(
                "red-team probe answer",
                probe_answer,
                Some((
                    Rule::BlockedTag,
                    "RelatedEvent (tags not visible)",
                    "Event.RelatedEvent",
                )),
            ),
            Case {
                policy: no_tag_rules(),
                ..case("no tag rules, nothing to judge", probe_answer, None)
            },
            case(
                "the outer list is reported",
                nested,
                Some((
                    Rule::BlockedTag,
                    "RelatedEvent (tags not visible)",
                    "Event.RelatedEvent",
                )),
            ),
        ],
        true,
    );
}

/// MISP's `captureRelations` unwraps `{"GalaxyClusterRelation":{…}}`
/// items and takes flat `GalaxyClusterRelationTag` names before `Tag`.
#[test]
fn cluster_relations_as_misp_captures_them() {
    let push = |name, relation: &str, want| Case {
        doc: Document::GalaxyClusterList,
        ..case(
            name,
            format!(
                r#"[{{"GalaxyCluster":{{"uuid":"44444444-2222-4222-8222-222222222222","value":"y","distribution":"1","GalaxyClusterRelation":[{relation}]}}}}]"#
            ),
            want,
        )
    };
    let sg = "b9e656ba-b9c0-4506-83ed-7b54b43a57cb";
    check(
        vec![
            push(
                "wrapped relation, blocked distribution",
                r#"{"GalaxyClusterRelation":{"referenced_galaxy_cluster_uuid":"6","distribution":"0"}}"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "[0].GalaxyCluster.GalaxyClusterRelation[0].GalaxyClusterRelation.distribution",
                )),
            ),
            push(
                "wrapped relation, blocked tag",
                r#"{"GalaxyClusterRelation":{"distribution":"1","Tag":[{"name":"tlp:red"}]}}"#,
                Some((Rule::BlockedTag, "tlp:red", "")),
            ),
            push(
                "wrapped relation, blocked sharing group",
                &format!(
                    r#"{{"GalaxyClusterRelation":{{"distribution":"4","SharingGroup":{{"uuid":"{sg}"}}}}}}"#
                ),
                Some((Rule::BlockedSharingGroup, "", "")),
            ),
            push(
                "flat relation tags",
                r#"{"distribution":"1","GalaxyClusterRelationTag":[{"name":"tlp:red"}]}"#,
                Some((
                    Rule::BlockedTag,
                    "tlp:red",
                    "[0].GalaxyCluster.GalaxyClusterRelation[0].GalaxyClusterRelationTag[0].name",
                )),
            ),
            push(
                "relation tags allowed",
                r#"{"distribution":"1","GalaxyClusterRelationTag":[{"name":"tlp:green"}],"Tag":[]}"#,
                None,
            ),
            push(
                "wrapped relation allowed",
                r#"{"GalaxyClusterRelation":{"distribution":"1","Tag":[{"name":"tlp:green"}]}}"#,
                None,
            ),
        ],
        false,
    );
}

/// PHP's `json_encode` writes an empty array, list or map, as `[]`: every
/// document that can be "nothing" accepts it so (and `{"response":[]}`
/// where MISP wraps its answer).
#[test]
fn empty_php_arrays() {
    let doc = |name, doc, body: &str, want| Case {
        doc,
        ..case(name, body, want)
    };
    check(
        vec![
            doc(
                "indexMinimal with no analyst data",
                Document::AnalystDataMinimal,
                "[]",
                None,
            ),
            doc(
                "filterAnalystDataForPush answer with nothing accepted",
                Document::AnalystDataMinimal,
                r#"{"Note":[],"Opinion":[],"Relationship":{"41146bcb-2869-4cf0-8d00-000000000001":"2024-01-01 00:00:00"}}"#,
                None,
            ),
            doc(
                "a non-empty list is no map",
                Document::AnalystDataMinimal,
                r#"[{"Note":{}}]"#,
                Some((Rule::Malformed, "", "")),
            ),
            doc("empty events index", Document::EventIndex, "[]", None),
            doc("no uuids", Document::UuidList, "[]", None),
            doc(
                "empty proposals page",
                Document::ShadowAttributeList,
                "[]",
                None,
            ),
            doc("no proposal rows", Document::ProposalRows, "[]", None),
            doc("empty analyst chunk", Document::AnalystDataList, "[]", None),
            doc("no sightings to push", Document::Sightings, "[]", None),
            doc(
                "no sightings found",
                Document::Sightings,
                r#"{"response":[]}"#,
                None,
            ),
            doc(
                "no clusters found",
                Document::GalaxyClusterSearch,
                r#"{"response":[]}"#,
                None,
            ),
            doc(
                "no clusters, bare",
                Document::GalaxyClusterSearch,
                "[]",
                None,
            ),
            doc(
                "no push candidates",
                Document::EventUuidTimestamps,
                "[]",
                None,
            ),
        ],
        true,
    );
}

/// MISP's proposals carry no tags, so a required taxonomy cannot apply to
/// them (it would refuse every proposal); their tags, where a sender puts
/// some, are still judged.
#[test]
fn proposals_need_no_required_taxonomy() {
    let tlp = |name, doc, body: &str, want| Case {
        doc,
        policy: tlp_policy(),
        ..case(name, body, want)
    };
    let row = r#"{"type":"ip-src","category":"Network activity","value":"1.2.3.4","event_uuid":"385283a1-b5e0-4e10-a532-dce11c365a56"}"#;
    check(
        vec![
            tlp(
                "pushed rows",
                Document::ProposalRows,
                &format!("[{row}]"),
                None,
            ),
            tlp(
                "a pulled page",
                Document::ShadowAttributeList,
                &format!(r#"[{{"ShadowAttribute":{row}}}]"#),
                None,
            ),
            tlp(
                "in an event",
                Document::Event,
                &event(&format!(
                    r#""distribution":"1","Tag":[{{"name":"tlp:green"}}],"ShadowAttribute":[{row}]"#
                )),
                None,
            ),
            tlp(
                "a blocked tag on a proposal",
                Document::ProposalRows,
                r#"[{"type":"ip-src","category":"Network activity","Tag":[{"name":"tlp:red"}]}]"#,
                Some((Rule::BlockedTag, "tlp:red", "[0].Tag[0].name")),
            ),
        ],
        true,
    );
}

// ===== copies MISP embeds in references, and who `all_orgs` admits =====

/// An event whose object references `reference` (the items of its
/// `ObjectReference` list, written out).
fn referencing(references: &str) -> String {
    event(&format!(
        r#""distribution":"1","Object":[{{"name":"file","distribution":"5","Attribute":[{{{ATTR}}}],"ObjectReference":[{references}]}}]"#
    ))
}

/// `fetchEvent` embeds in each reference a copy of what it points at,
/// also where that is not in the event's lists: in a body sent on as it
/// is, each copy is judged as a summary of its kind.
#[test]
fn object_reference_copies_are_judged() {
    let reference = |copy: &str| {
        referencing(&format!(
            r#"{{"uuid":"r1","referenced_uuid":"a1","relationship_type":"related-to",{copy}}}"#
        ))
    };
    check(
        vec![
            case(
                "attribute copy of a blocked type",
                reference(
                    r#""Attribute":{"uuid":"a1","type":"passport-number","category":"Other","value":"X1234567","distribution":"5"}"#,
                ),
                Some((
                    Rule::BlockedAttributeType,
                    "passport-number",
                    "Event.Object[0].ObjectReference[0].Attribute.type",
                )),
            ),
            case(
                "attribute copy of a blocked distribution",
                reference(
                    r#""Attribute":{"type":"text","category":"Other","value":"x","distribution":"0","sharing_group_id":"0"}"#,
                ),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.Object[0].ObjectReference[0].Attribute.distribution",
                )),
            ),
            case(
                "attribute copy of a blocked category",
                reference(r#""Attribute":{"type":"text","category":"Person"}"#),
                Some((
                    Rule::BlockedAttributeCategory,
                    "Person",
                    "Event.Object[0].ObjectReference[0].Attribute.category",
                )),
            ),
            case(
                "attribute copy with a blocked tag",
                reference(r#""Attribute":{"type":"text","Tag":[{"name":"tlp:red"}]}"#),
                Some((
                    Rule::BlockedTag,
                    "tlp:red",
                    "Event.Object[0].ObjectReference[0].Attribute.Tag[0].name",
                )),
            ),
            case(
                "attribute copy in a blocked sharing group",
                reference(
                    r#""Attribute":{"type":"text","distribution":"4","SharingGroup":{"uuid":"b9e656ba-b9c0-4506-83ed-7b54b43a57cb"}}"#,
                ),
                Some((
                    Rule::BlockedSharingGroup,
                    "",
                    "Event.Object[0].ObjectReference[0].Attribute.SharingGroup.uuid",
                )),
            ),
            case(
                "attribute copy of distribution 4 without its group",
                reference(r#""Attribute":{"type":"text","distribution":"4"}"#),
                Some((
                    Rule::BlockedSharingGroup,
                    "missing",
                    "Event.Object[0].ObjectReference[0].Attribute.SharingGroup",
                )),
            ),
            case(
                "object copy of a blocked name",
                reference(
                    r#""Object":{"uuid":"o1","name":"person","meta-category":"misc","distribution":"5"}"#,
                ),
                Some((
                    Rule::BlockedObjectType,
                    "person",
                    "Event.Object[0].ObjectReference[0].Object.name",
                )),
            ),
            case(
                "object copy of a blocked distribution",
                reference(r#""Object":{"name":"file","distribution":"0"}"#),
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "Event.Object[0].ObjectReference[0].Object.distribution",
                )),
            ),
            case(
                "a malformed distribution in a copy",
                reference(r#""Object":{"name":"file","distribution":"00"}"#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "a hidden character in a copy's type",
                reference(r#""Attribute":{"type":"pass\u2063port-number"}"#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "a copy that is not an object",
                reference(r#""Attribute":"passport-number""#),
                Some((Rule::Malformed, "", "")),
            ),
            case(
                "clean copies, fields absent as in MISP's copies",
                referencing(
                    r#"{"uuid":"r1","Attribute":{"uuid":"a1","type":"ip-dst","category":"Network activity","value":"1.2.3.4","to_ids":true,"distribution":"5","sharing_group_id":"0"}},{"uuid":"r2","Object":{"uuid":"o1","name":"domain-ip","meta-category":"network"}},{"uuid":"r3"}"#,
                ),
                None,
            ),
            case("no references", referencing(""), None),
            case(
                "copies of nothing",
                referencing(r#"{"Attribute":[]},{"Object":null}"#),
                None,
            ),
            case(
                "a copy that is a list",
                referencing(r#"{"Attribute":[{"type":"passport-number"}]}"#),
                Some((Rule::Malformed, "", "")),
            ),
        ],
        true,
    );
    // The other rules of the object rank first; between references,
    // the first one.
    let body = event(
        r#""distribution":"1","Object":[{"name":"person","distribution":"1","ObjectReference":[{"Attribute":{"type":"email"}}]},{"name":"file","distribution":"1","ObjectReference":[{"Object":{"name":"person"}},{"Attribute":{"type":"email"}}]}]"#,
    );
    let b = judged(&body, Document::Event, &base_policy(), &ctx()).expect("blocked");
    assert_eq!(b.at, "Event.Object[0].name", "{b}");
}

/// A cluster relation carries a copy of the cluster it points at, and an
/// inbound one (`TargetingClusterRelation`) of the cluster it comes from:
/// judged as clusters in a body sent on as it is.
#[test]
fn cluster_relation_copies_are_judged() {
    let cluster = |relations: &str| {
        let mut c = Case {
            doc: Document::GalaxyCluster,
            ..case(
                "",
                format!(
                    r#"{{"GalaxyCluster":{{"uuid":"c0","tag_name":"misp-galaxy:x=\"c0\"","distribution":"3",{relations}}}}}"#
                ),
                None,
            )
        };
        c.name = "cluster";
        c
    };
    let with = |name, relations: &str, want| Case {
        name,
        want,
        ..cluster(relations)
    };
    check(
        vec![
            with(
                "target copy with a blocked tag name",
                r#""GalaxyClusterRelation":[{"referenced_galaxy_cluster_uuid":"c1","distribution":"3","TargetCluster":{"uuid":"c1","value":"Operation Secret","tag_name":"tlp:red","distribution":"3"}}]"#,
                Some((
                    Rule::BlockedTag,
                    "tlp:red",
                    "GalaxyCluster.GalaxyClusterRelation[0].TargetCluster.tag_name",
                )),
            ),
            with(
                "target copy of a blocked distribution",
                r#""GalaxyClusterRelation":[{"distribution":"3","TargetCluster":{"uuid":"c1","distribution":"0"}}]"#,
                Some((
                    Rule::BlockedDistribution,
                    "0",
                    "GalaxyCluster.GalaxyClusterRelation[0].TargetCluster.distribution",
                )),
            ),
            with(
                "target copy of a blocked cluster uuid",
                &format!(
                    r#""GalaxyClusterRelation":[{{"distribution":"3","TargetCluster":{{"uuid":"{BLOCKED_CLUSTER}"}}}}]"#
                ),
                Some((
                    Rule::BlockedTag,
                    BLOCKED_CLUSTER_TAG,
                    "GalaxyCluster.GalaxyClusterRelation[0].TargetCluster.uuid",
                )),
            ),
            with(
                "source copy of an inbound relation",
                r#""TargetingClusterRelation":[{"distribution":"3","GalaxyCluster":{"uuid":"c2","tag_name":"tlp:red"}}]"#,
                Some((
                    Rule::BlockedTag,
                    "tlp:red",
                    "GalaxyCluster.TargetingClusterRelation[0].GalaxyCluster.tag_name",
                )),
            ),
            with(
                "clean copies",
                r#""GalaxyClusterRelation":[{"distribution":"3","TargetCluster":{"uuid":"c1","value":"v","tag_name":"misp-galaxy:x=\"c1\"","distribution":"3"}}],"TargetingClusterRelation":[{"distribution":"3","GalaxyCluster":{"uuid":"c2","tag_name":"misp-galaxy:x=\"c2\""}}]"#,
                None,
            ),
        ],
        true,
    );
}

#[test]
fn a_receiver_is_named_by_its_server_url() {
    let r = receiver();
    for url in [
        "https://misp-b.example",
        "https://misp-b.example/",
        "https://MISP-B.Example.:443/misp/",
        "http://misp-b.example",
        "https://sync:secret@misp-b.example",
        " https://misp-b.example?x#y ",
        "misp-b.example",
        "https://127.0.0.2",
        "https://[::ffff:127.0.0.2]:443",
    ] {
        assert!(r.names(url), "{url}");
    }
    for url in [
        "",
        "https://",
        "https://misp-c.example",
        "https://misp-b.example.evil",
        "https://evil.example/misp-b.example",
        "https://misp-b.example@evil.example",
        "https://misp-b.example:8443",
        "https://misp-b.example:443x",
        "https://127.0.0.3",
        "https://[::1]",
        "https://[127.0.0.2",
        "https://[::ffff:127.0.0.2]x",
    ] {
        assert!(!r.names(url), "{url}");
    }
    let v6 = Receiver::new("[2001:db8::2]", "2001:db8::2".parse().unwrap(), 8443);
    assert!(v6.names("https://[2001:db8::2]:8443"));
    assert!(!v6.names("https://[2001:db8::2]:443"));
}

/// Without a receiving instance, no `all_orgs` entry makes the receiving
/// organisation a member.
#[test]
fn all_orgs_counts_for_no_one_without_a_receiver() {
    let org = "8b9661a3-8544-4f8d-94be-cd7ebe87e922";
    let body = event(
        r#""distribution":"4","SharingGroup":{"uuid":"u1","SharingGroupServer":[{"all_orgs":true,"Server":{"url":"https://misp-b.example"}}]}"#,
    );
    for (receiver, allowed) in [(None, false), (Some(receiver()), true)] {
        let ctx = Context {
            user_org_uuid: Some(org.into()),
            receiver,
            rebuild: false,
        };
        let got = judged(&body, Document::Event, &base_policy(), &ctx);
        assert_eq!(got.is_none(), allowed, "{got:?}");
    }
}

/// Real tags hold joiners and variation selectors (emoji, Persian words):
/// they pass, are compared with the blocked tags without them, and match
/// required taxonomies only exactly.
#[test]
fn tags_with_joiners_and_variation_selectors() {
    let tag = |name: &str| {
        event(&format!(
            r#""distribution":"1","Tag":[{{"name":"{name}"}}]"#
        ))
    };
    let tlp = |name, body, want| Case {
        policy: tlp_policy(),
        ..case(name, body, want)
    };
    check(
        vec![
            case("emoji with VS16", tag(r"\u26a0\ufe0f needs-review"), None),
            case("ZWJ emoji sequence", tag("👩\u{200d}💻 analyst"), None),
            case(
                "Persian word with ZWNJ",
                tag("source:گزارش\u{200c}تهدید"),
                None,
            ),
            case(
                "cluster tag name with ZWNJ",
                event(
                    r#""distribution":"1","Galaxy":[{"GalaxyCluster":[{"tag_name":"misp-galaxy:threat-actor=\"گزارش\u200cتهدید\""}]}]"#,
                ),
                None,
            ),
            case(
                "a joiner inside a blocked tag",
                tag(r"tlp:\u200cred"),
                Some((Rule::BlockedTag, "tlp:\u{200c}red", "Event.Tag[0].name")),
            ),
            case(
                "variation selectors around a blocked tag",
                tag(r"\ufe0f TLP:RED\udb40\udd00"),
                Some((Rule::BlockedTag, "", "Event.Tag[0].name")),
            ),
            case(
                "a joiner in a blocked cluster tag name",
                event(
                    r#""distribution":"1","Galaxy":[{"GalaxyCluster":[{"tag_name":"tlp:r\u200ded"}]}]"#,
                ),
                Some((
                    Rule::BlockedTag,
                    "",
                    "Event.Galaxy[0].GalaxyCluster[0].tag_name",
                )),
            ),
            case(
                "nothing but joiners",
                tag(r"\u200d\ufe0f \u200c"),
                Some((Rule::Malformed, "", "Event.Tag[0].name")),
            ),
            case(
                "a joiner beside another invisible character",
                tag(r"\u26a0\ufe0f\u2063 needs-review"),
                Some((Rule::Malformed, "", "Event.Tag[0].name")),
            ),
            case(
                "tag characters stay refused",
                tag(r"\ud83c\udff4\udb40\udc67\udb40\udc62\udb40\udc7f"),
                Some((Rule::Malformed, "", "Event.Tag[0].name")),
            ),
            tlp(
                "a look-alike with a joiner satisfies no allowed tag",
                tag(r"tlp:gr\u200deen"),
                Some((Rule::MissingTaxonomy, "tlp", "Event.Tag")),
            ),
            tlp(
                "the allowed tag itself still does",
                event(
                    r#""distribution":"1","Tag":[{"name":"tlp:green"},{"name":"\u26a0\ufe0f review"}]"#,
                ),
                None,
            ),
        ],
        true,
    );
}
