//! Answers the guard rebuilds: what is left out, what stays, and that the
//! written answer is the same JSON whatever the pieces the body came in.

use serde_json::{json, Value};

use super::*;

fn policy() -> Policy {
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    Policy {
        blocked_tags: set(&["tlp:red"]),
        blocked_distributions: [true, false, false, false, false, false],
        blocked_attribute_types: set(&["passport-number"]),
        ..Policy::default()
    }
}

fn answer() -> Context {
    Context {
        rebuild: true,
        ..Context::default()
    }
}

/// The verdict on `body` as an answer, and the rebuilt answer (parsed)
/// when it is rebuilt; the rebuilt bytes must not depend on the pieces
/// the body came in.
fn rebuild(doc: Document, body: &Value) -> (Verdict, Option<Value>) {
    let text = body.to_string();
    let verdict = evaluate(text.as_bytes(), doc, &policy(), &answer());
    let Verdict::Rebuild(r) = &verdict else {
        return (verdict, None);
    };
    let mut outputs = Vec::new();
    let policy = policy();
    for size in [text.len(), 1, 7, 4096] {
        let mut rebuilder = r.rebuilder(&policy, &answer(), DEFAULT_MAX_DEPTH);
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(size) {
            rebuilder.feed(piece, &mut out);
        }
        let pass = rebuilder.finish(&mut out);
        assert!(pass.is_ok(), "second reading refused: {pass:?}");
        outputs.push(out);
    }
    assert!(
        outputs.windows(2).all(|w| w[0] == w[1]),
        "output depends on the pieces"
    );
    let rebuilt: Value = serde_json::from_slice(&outputs[0]).expect("rebuilt answer is JSON");
    (verdict, Some(rebuilt))
}

fn sighting(extra: Value) -> Value {
    let mut s = json!({
        "id": "9", "attribute_id": "5", "event_id": "2", "org_id": "1",
        "date_sighting": "1700000000", "uuid": "5f1b6a38-0000-4000-8000-000000000001",
        "source": "", "type": "0",
        "attribute_uuid": "5f1b6a38-0000-4000-8000-0000000000a1",
        "event_uuid": "385283a1-b5e0-4e10-a532-dce11c365a56",
        "Organisation": {"id": "1", "uuid": "55555555-1111-4111-8111-111111111111", "name": "ORG"},
    });
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    s
}

#[test]
fn sighting_answers_lose_the_attribute_value() {
    let body = json!({"response": [
        {"Sighting": sighting(json!({"value": "X1234567"}))},
        {"Sighting": sighting(json!({
            "value": "tlp-red value",
            "Attribute": {"type": "passport-number", "category": "Person", "value": "X1"},
            "Event": {"id": "2", "info": "secret title", "distribution": "0"},
        }))},
    ]});
    let (verdict, rebuilt) = rebuild(Document::Sightings, &body);
    let want =
        json!({"response": [{"Sighting": sighting(json!({}))}, {"Sighting": sighting(json!({}))}]});
    assert_eq!(rebuilt, Some(want));
    let Verdict::Rebuild(r) = verdict else {
        panic!()
    };
    assert!(r.removed().is_empty(), "no sighting is refused: {r:?}");
    assert!(r.stripped().contains(&("Sighting.value", 2)), "{r:?}");
    assert!(
        r.summary().contains("Sighting.value left out (2×"),
        "{}",
        r.summary()
    );
    // Only the keys the receiver reads stay, also of the organisation.
    let odd = json!({"response": [{"Sighting": sighting(json!({
        "attribute_value": "leak", "Organisation": {"uuid": "u", "contacts": "x@y"},
    }))}]});
    let (_, rebuilt) = rebuild(Document::Sightings, &odd);
    let rebuilt = rebuilt.expect("rebuilt");
    let s = &rebuilt["response"][0]["Sighting"];
    assert!(s.get("attribute_value").is_none(), "{rebuilt}");
    assert_eq!(s["Organisation"], json!({"uuid": "u"}));
}

#[test]
fn a_sightings_push_with_values_is_refused() {
    // A push body is never rebuilt: a value MISP never pushes is refused.
    let body = json!([sighting(json!({"value": "X1234567"}))]).to_string();
    let v = evaluate(
        body.as_bytes(),
        Document::Sightings,
        &policy(),
        &Context::default(),
    );
    match v {
        Verdict::Block(b) => assert_eq!((b.rule, b.at.as_str()), (Rule::Malformed, "[0].value")),
        other => panic!("{other:?}"),
    }
    let clean = json!([sighting(json!({}))]).to_string();
    let v = evaluate(
        clean.as_bytes(),
        Document::Sightings,
        &policy(),
        &Context::default(),
    );
    assert!(matches!(v, Verdict::Allow(_)), "{v:?}");
}

fn proposal(kind: &str) -> Value {
    json!({"ShadowAttribute": {
        "id": "1", "old_id": "0", "event_id": "2", "type": kind, "category": "Other",
        "uuid": "5a2c9b1e-0000-4000-8000-000000000001", "to_ids": false, "value": "v \"quoted\" \\ é \u{1}",
        "comment": "", "event_uuid": "385283a1-b5e0-4e10-a532-dce11c365a56",
        "Org": {"name": "ORG", "uuid": "55555555-1111-4111-8111-111111111111"},
    }})
}

#[test]
fn a_forbidden_proposal_is_replaced_so_paging_goes_on() {
    let body = json!([
        proposal("text"),
        proposal("passport-number"),
        proposal("ip-src")
    ]);
    let (verdict, rebuilt) = rebuild(Document::ShadowAttributeList, &body);
    let want = json!([proposal("text"), {"ShadowAttribute": {}}, proposal("ip-src")]);
    assert_eq!(rebuilt, Some(want));
    let Verdict::Rebuild(r) = verdict else {
        panic!()
    };
    assert_eq!(r.removed().len(), 1);
    let (index, block) = &r.removed()[0];
    assert_eq!(*index, 1);
    assert_eq!(
        (block.rule, block.at.as_str()),
        (Rule::BlockedAttributeType, "[1].ShadowAttribute.type")
    );
}

#[test]
fn a_page_with_nothing_allowed_is_refused_unless_paging_needs_it() {
    // A short page (the last one) with nothing allowed: refused as the older
    // guard did, so MISP logs why.
    let one = json!([proposal("passport-number")]);
    let (verdict, _) = rebuild(Document::ShadowAttributeList, &one);
    assert!(
        matches!(&verdict, Verdict::Block(b) if b.rule == Rule::BlockedAttributeType),
        "{verdict:?}"
    );
    // A full page of forbidden proposals: fillers, so the next page is
    // still asked for.
    let full = Value::Array((0..1000).map(|_| proposal("passport-number")).collect());
    let (verdict, rebuilt) = rebuild(Document::ShadowAttributeList, &full);
    assert!(matches!(verdict, Verdict::Rebuild(_)), "{verdict:?}");
    let rebuilt = rebuilt.expect("rebuilt");
    let items = rebuilt.as_array().expect("a list");
    assert_eq!(items.len(), 1000);
    assert!(items.iter().all(|i| *i == json!({"ShadowAttribute": {}})));
}

fn note(distribution: &str) -> Value {
    json!({"Note": {
        "uuid": "6f847552-aaab-4378-aa5f-369c7b1e0001", "note": "n", "distribution": distribution,
        "object_type": "Event", "object_uuid": "385283a1-b5e0-4e10-a532-dce11c365a56",
    }})
}

#[test]
fn analyst_data_and_cluster_pages_lose_forbidden_items() {
    let (verdict, rebuilt) = rebuild(
        Document::AnalystDataList,
        &json!([note("3"), note("0"), note("1")]),
    );
    assert_eq!(rebuilt, Some(json!([note("3"), note("1")])));
    assert!(
        matches!(verdict, Verdict::Rebuild(r) if r.removed()[0].1.rule == Rule::BlockedDistribution)
    );
    let (verdict, _) = rebuild(Document::AnalystDataList, &json!([note("0")]));
    assert!(matches!(verdict, Verdict::Block(_)), "{verdict:?}");

    let cluster = |uuid: &str, d: &str| json!({"GalaxyCluster": {"uuid": uuid, "version": "3", "distribution": d}});
    let a = "8faab056-4212-4e80-8b54-b7eadec6b739";
    let b = "8faab056-4212-4e80-8b54-b7eadec6b73a";
    let body = json!({"response": [cluster(a, "0"), cluster(b, "3")]});
    let (_, rebuilt) = rebuild(Document::GalaxyClusterSearch, &body);
    assert_eq!(rebuilt, Some(json!({"response": [cluster(b, "3")]})));
}

fn event_with(extra: Value) -> Value {
    let mut e = json!({
        "id": "12", "uuid": "385283a1-b5e0-4e10-a532-dce11c365a56", "info": "pushed",
        "distribution": "1", "Tag": [{"name": "tlp:green"}],
        "Attribute": [{"type": "ip-src", "category": "Network activity", "distribution": "5", "value": "1.2.3.4"}],
    });
    if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(extra.clone());
    }
    json!({ "Event": e })
}

#[test]
fn push_answers_lose_related_events_and_inbound_relationships() {
    let related =
        json!([{"Event": {"id": "3", "info": "TLP:RED op nightfall", "distribution": "1"}}]);
    let (verdict, rebuilt) = rebuild(
        Document::Event,
        &event_with(json!({"RelatedEvent": related})),
    );
    assert_eq!(rebuilt, Some(event_with(json!({}))));
    assert!(
        matches!(&verdict, Verdict::Rebuild(r) if r.stripped() == [("RelatedEvent", 1)]),
        "{verdict:?}"
    );
    // Under the same rules, as a request (nothing rebuilt), it is refused.
    let body = event_with(json!({"RelatedEvent": related})).to_string();
    let v = evaluate(
        body.as_bytes(),
        Document::Event,
        &policy(),
        &Context::default(),
    );
    assert!(matches!(v, Verdict::Block(b) if b.at == "Event.RelatedEvent"));
    // Nothing to leave out: allowed as it is.
    let (verdict, rebuilt) = rebuild(Document::Event, &event_with(json!({"RelatedEvent": []})));
    assert!(
        matches!(verdict, Verdict::Allow(_)) && rebuilt.is_none(),
        "{verdict:?}"
    );
    // Inbound relationships, wherever they hang.
    let inbound = json!([{"uuid": "6f847552-aaab-4378-aa5f-369c7b1e0002", "distribution": "0",
        "related_object_type": "Attribute", "relationship_type": "related-to"}]);
    let mut body = event_with(json!({"RelationshipInbound": inbound}));
    body["Event"]["Attribute"][0]["RelationshipInbound"] = inbound.clone();
    let (_, rebuilt) = rebuild(Document::Event, &body);
    assert_eq!(rebuilt, Some(event_with(json!({}))));
}

#[test]
fn whole_events_stay_all_or_nothing() {
    let mut body =
        event_with(json!({"RelatedEvent": [{"Event": {"id": "3", "distribution": "1"}}]}));
    body["Event"]["Attribute"][0]["type"] = json!("passport-number");
    let (verdict, _) = rebuild(Document::Event, &body);
    assert!(
        matches!(&verdict, Verdict::Block(b) if b.rule == Rule::BlockedAttributeType),
        "{verdict:?}"
    );
}

#[test]
fn what_cannot_be_read_refuses_the_whole_page() {
    let body = r#"[{"Note":{"uuid":"u","distribution":"3","distribution":"0"}},{"Note":{"distribution":"3"}}]"#;
    let v = evaluate(
        body.as_bytes(),
        Document::AnalystDataList,
        &policy(),
        &answer(),
    );
    assert!(
        matches!(&v, Verdict::Block(b) if b.rule == Rule::DuplicateKey),
        "{v:?}"
    );
}

#[test]
fn the_second_reading_must_agree() {
    let body = json!([note("3"), note("0")]).to_string();
    let Verdict::Rebuild(r) = evaluate(
        body.as_bytes(),
        Document::AnalystDataList,
        &policy(),
        &answer(),
    ) else {
        panic!("not rebuilt")
    };
    // Other bytes on the second reading (a held body that changed): refused.
    let other = json!([note("0"), note("3")]).to_string();
    let policy = policy();
    let mut rebuilder = r.rebuilder(&policy, &answer(), DEFAULT_MAX_DEPTH);
    let mut out = Vec::new();
    rebuilder.feed(other.as_bytes(), &mut out);
    assert!(rebuilder.finish(&mut out).is_err());
}

/// An event whose object references carry the copies MISP embeds: a
/// distribution-0 passport number and a `person` object.
fn event_with_reference_copies() -> Value {
    json!({"Event": {
        "uuid": "385283a1-b5e0-4e10-a532-dce11c365a56", "distribution": "1", "info": "e",
        "Object": [{
            "name": "file", "distribution": "5", "uuid": "o0",
            "Attribute": [{"type": "filename", "category": "Payload delivery", "value": "a.exe", "distribution": "5"}],
            "ObjectReference": [
                {"uuid": "r1", "referenced_uuid": "a1", "referenced_type": "0", "relationship_type": "related-to",
                 "Attribute": {"uuid": "a1", "type": "passport-number", "category": "Person",
                               "value": "X1234567", "to_ids": false, "distribution": "0"}},
                {"uuid": "r2", "referenced_uuid": "o1", "referenced_type": "1", "relationship_type": "related-to",
                 "Object": {"uuid": "o1", "name": "person", "meta-category": "misc", "distribution": "0"}},
                {"uuid": "r3", "referenced_uuid": "a2", "Attribute": []}
            ]
        }]
    }})
}

#[test]
fn pulled_events_lose_the_copies_in_object_references() {
    let body = event_with_reference_copies();
    let (verdict, rebuilt) = rebuild(Document::Event, &body);
    let mut want = body.clone();
    for r in want["Event"]["Object"][0]["ObjectReference"]
        .as_array_mut()
        .expect("references")
    {
        if let Some(r) = r.as_object_mut() {
            r.remove("Attribute");
            r.remove("Object");
        }
    }
    assert_eq!(rebuilt, Some(want));
    let Verdict::Rebuild(r) = verdict else {
        panic!()
    };
    // The empty copy is not counted as left out.
    assert_eq!(
        r.stripped(),
        &[
            ("ObjectReference.Attribute", 1),
            ("ObjectReference.Object", 1)
        ]
    );
    // Judged whole (a signed answer, a push body), the copies block it.
    let v = evaluate(
        body.to_string().as_bytes(),
        Document::Event,
        &policy(),
        &Context::default(),
    );
    match v {
        Verdict::Block(b) => assert_eq!(
            b.at, "Event.Object[0].ObjectReference[0].Attribute.type",
            "{b}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pulled_clusters_lose_the_copies_in_their_relations() {
    let body = json!({"GalaxyCluster": {
        "uuid": "c0", "distribution": "3", "tag_name": "misp-galaxy:x=\"c0\"",
        "GalaxyClusterRelation": [{
            "referenced_galaxy_cluster_uuid": "c1", "distribution": "3", "Tag": [],
            "TargetCluster": {"uuid": "c1", "value": "Operation Secret", "tag_name": "tlp:red", "distribution": "0"}
        }]
    }});
    let (verdict, rebuilt) = rebuild(Document::GalaxyCluster, &body);
    let mut want = body.clone();
    if let Some(r) = want["GalaxyCluster"]["GalaxyClusterRelation"][0].as_object_mut() {
        r.remove("TargetCluster");
    }
    assert_eq!(rebuilt, Some(want));
    let Verdict::Rebuild(r) = verdict else {
        panic!()
    };
    assert_eq!(r.stripped(), &[("GalaxyClusterRelation.TargetCluster", 1)]);
}

/// The members a rebuilt sighting keeps are scalars: a container there
/// would go on unjudged, so the answer is refused.
#[test]
fn kept_sighting_members_must_be_scalars() {
    for extra in [
        json!({"source": {"Attribute": {"value": "X1234567"}}}),
        json!({"type": ["0"]}),
        json!({"uuid": true}),
        json!({"Organisation": {"id": "1", "uuid": "u", "name": {"x": "y"}}}),
    ] {
        let body = json!({"response": [{"Sighting": sighting(extra.clone())}]});
        let (verdict, rebuilt) = rebuild(Document::Sightings, &body);
        assert!(rebuilt.is_none(), "{extra}: rebuilt {rebuilt:?}");
        match verdict {
            Verdict::Block(b) => assert_eq!(b.rule, Rule::Malformed, "{extra}: {b}"),
            other => panic!("{extra}: {other:?}"),
        }
    }
    let body = json!({"response": [{"Sighting": sighting(json!({"source": null, "org_id": 1, "value": "v"}))}]});
    let (_, rebuilt) = rebuild(Document::Sightings, &body);
    let rebuilt = rebuilt.expect("rebuilt");
    assert_eq!(rebuilt["response"][0]["Sighting"]["org_id"], json!(1));
}
