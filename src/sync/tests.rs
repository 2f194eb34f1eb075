//! Tables of accepted and refused request lines, the table's own
//! invariants, the conformance URLs, and a mutation property.

use super::table::{is_number, is_uuid, TABLE};
use super::*;
use proptest::prelude::*;

const U: &str = "385283a1-b5e0-4e10-a532-dce11c365a56";

const L5: &str = "deleted[]:0/deleted[]:1/excludeGalaxy:1/includeEventCorrelations:0/includeFeedCorrelations:0/includeWarninglistHits:0/excludeLocalTags:1";
const L5_INTERNAL: &str = "deleted[]:0/deleted[]:1/excludeGalaxy:1/includeEventCorrelations:0/includeFeedCorrelations:0/includeWarninglistHits:0";
const L8: &str = "deleted[]:0/deleted[]:1/excludeGalaxy:1/excludeLocalTags:1/includeAttachments:0/includeEventCorrelations:0/includeFeedCorrelations:0/includeWarninglistHits:0/noEventReports:1/noShadowAttributes:1";

fn q(text: &str) -> Quoted {
    Quoted::new(text)
}

/// `/analyst_data/index/<kind>/uuid[]:…` with `n` distinct uuids.
fn analyst_path(kind: &str, n: usize) -> String {
    let mut path = format!("/analyst_data/index/{kind}");
    for i in 0..n {
        path.push_str(&format!("/uuid[]:6f847552-aaab-4378-aa5f-{i:012x}"));
    }
    path.push_str(".json");
    path
}

/// Every accepted form: (method, target, exchange name).
fn accepted() -> Vec<(&'static str, String, &'static str)> {
    let mut v: Vec<(&'static str, String, &'static str)> = vec![
        ("GET", "/servers/getVersion".into(), "servers/getVersion"),
        ("POST", "/servers/postTest".into(), "servers/postTest"),
        ("GET", "/users/view/me.json".into(), "users/view/me"),
        (
            "GET",
            "/servers/getAvailableSyncFilteringRules".into(),
            "servers/getAvailableSyncFilteringRules",
        ),
        (
            "POST",
            "/galaxy_clusters/restSearch".into(),
            "galaxy_clusters/restSearch",
        ),
        (
            "GET",
            "/galaxy_clusters/view/8faab056-4212-4e80-8b54-b7eadec6b739".into(),
            "galaxy_clusters/view",
        ),
        ("POST", "/galaxies/pushCluster".into(), "galaxies/pushCluster"),
        (
            "POST",
            "/events/filterEventIdsForPush".into(),
            "events/filterEventIdsForPush",
        ),
        ("HEAD", format!("/events/view/{U}"), "events/view:head"),
        ("POST", "/events/add/metadata:1".into(), "events/add"),
        ("POST", format!("/events/edit/{U}/metadata:1"), "events/edit"),
        ("POST", "/events/edit/42/metadata:1".into(), "events/edit"),
        (
            "POST",
            "/events/edit/18446744073709551615/metadata:1".into(),
            "events/edit",
        ),
        ("POST", "/events/index".into(), "events/index"),
        (
            "POST",
            format!("/events/pushProposals/{U}"),
            "events/pushProposals",
        ),
        ("GET", "/eventReports/add".into(), "eventReports/add"),
        (
            "POST",
            format!("/sightings/filterSightingUuidsForPush/{U}"),
            "sightings/filterSightingUuidsForPush",
        ),
        (
            "POST",
            "/sightings/bulkSaveSightings/5e168365-4391-44bd-851a-b48a14c30d77".into(),
            "sightings/bulkSaveSightings",
        ),
        (
            "POST",
            "/sightings/restSearch/event".into(),
            "sightings/restSearch",
        ),
        ("GET", format!("/events/view/{U}/{L5}"), "events/view"),
        ("GET", format!("/events/view/17/{L5}"), "events/view"),
        ("GET", format!("/events/view/{U}/{L8}"), "events/view"),
        // Named parameters in another order: CakePHP reads them so.
        (
            "GET",
            format!("/events/view/{U}/excludeLocalTags:1/includeWarninglistHits:0/includeFeedCorrelations:0/includeEventCorrelations:0/excludeGalaxy:1/deleted[]:1/deleted[]:0"),
            "events/view",
        ),
        (
            "GET",
            "/shadow_attributes/index/all:1/timestamp:0/limit:1000/page:1/deleted[]:0/deleted[]:1.json"
                .into(),
            "shadow_attributes/index",
        ),
        (
            "GET",
            "/shadow_attributes/index/all:1/timestamp:1720000000/limit:1000/page:12/deleted[]:0/deleted[]:1.json"
                .into(),
            "shadow_attributes/index",
        ),
        (
            "POST",
            "/analyst_data/indexMinimal".into(),
            "analyst_data/indexMinimal",
        ),
        (
            "POST",
            "/analyst_data/filterAnalystDataForPush".into(),
            "analyst_data/filterAnalystDataForPush",
        ),
        (
            "POST",
            "/analyst_data/pushAnalystData".into(),
            "analyst_data/pushAnalystData",
        ),
    ];
    for kind in ["Note", "Opinion", "Relationship"] {
        for n in [1, 2, 99, 100] {
            v.push(("GET", analyst_path(kind, n), "analyst_data/index"));
        }
    }
    v
}

#[test]
fn accepts_every_form_misp_sends() {
    for (method, target, name) in accepted() {
        match classify(method, &target, "") {
            Ok(ex) => assert_eq!(ex.name, name, "{method} {target}"),
            Err(e) => panic!("{method} {target} refused: {e}"),
        }
    }
}

#[test]
fn accepts_every_form_under_a_base_path() {
    for base in ["/misp", "/a/b-c_d.e"] {
        for (method, target, name) in accepted() {
            let prefixed = format!("{base}{target}");
            match classify(method, &prefixed, base) {
                Ok(ex) => assert_eq!(ex.name, name, "{method} {prefixed}"),
                Err(e) => panic!("{method} {prefixed} refused: {e}"),
            }
            // Without the prefix the path is not the destination's.
            assert_eq!(
                classify(method, &target, base),
                Err(Refusal::OutsideBasePath),
                "{method} {target} under {base}"
            );
        }
    }
}

#[test]
fn slash_base_path_means_none() {
    assert!(classify("GET", "/servers/getVersion", "/").is_ok());
}

#[test]
fn exchanges_carry_documents_and_directions() {
    use crate::rules::Document as D;
    /// (method, target, direction, request, response)
    type Case = (&'static str, String, Direction, Option<D>, Option<D>);
    let cases: &[Case] = &[
        ("GET", format!("/events/view/{U}/{L5}"), Direction::Pull, None, Some(D::Event)),
        ("HEAD", format!("/events/view/{U}"), Direction::Push, None, None),
        ("POST", "/events/add/metadata:1".into(), Direction::Push, Some(D::Event), Some(D::Event)),
        ("POST", format!("/events/edit/{U}/metadata:1"), Direction::Push, Some(D::Event), Some(D::Event)),
        ("POST", "/events/index".into(), Direction::Pull, Some(D::MinimalSearch), Some(D::EventIndex)),
        ("POST", "/galaxy_clusters/restSearch".into(), Direction::Pull, Some(D::MinimalSearch), Some(D::GalaxyClusterSearch)),
        ("POST", "/galaxies/pushCluster".into(), Direction::Push, Some(D::GalaxyClusterList), None),
        ("POST", "/events/filterEventIdsForPush".into(), Direction::Push, Some(D::EventUuidTimestamps), Some(D::UuidList)),
        ("POST", format!("/events/pushProposals/{U}"), Direction::Push, Some(D::ProposalRows), None),
        ("POST", format!("/sightings/filterSightingUuidsForPush/{U}"), Direction::Push, Some(D::UuidList), Some(D::UuidList)),
        ("POST", format!("/sightings/bulkSaveSightings/{U}"), Direction::Push, Some(D::Sightings), None),
        ("POST", "/sightings/restSearch/event".into(), Direction::Pull, Some(D::SightingSearch), Some(D::Sightings)),
        ("GET", "/shadow_attributes/index/all:1/timestamp:0/limit:1000/page:1/deleted[]:0/deleted[]:1.json".into(), Direction::Pull, None, Some(D::ShadowAttributeList)),
        ("POST", "/analyst_data/indexMinimal".into(), Direction::Pull, Some(D::AnyJson), Some(D::AnalystDataMinimal)),
        ("GET", analyst_path("Note", 3), Direction::Pull, None, Some(D::AnalystDataList)),
        ("POST", "/analyst_data/filterAnalystDataForPush".into(), Direction::Push, Some(D::AnalystDataMinimal), Some(D::AnalystDataMinimal)),
        ("POST", "/analyst_data/pushAnalystData".into(), Direction::Push, Some(D::AnalystDataItem), None),
        ("POST", "/servers/postTest".into(), Direction::Push, Some(D::PostTest), None),
        ("GET", "/eventReports/add".into(), Direction::Push, None, None),
        ("GET", "/servers/getVersion".into(), Direction::Pull, None, None),
    ];
    for (method, target, direction, request, response) in cases {
        let ex = classify(method, target, "").unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(ex.direction, *direction, "{target}");
        assert_eq!(ex.request, *request, "{target}");
        assert_eq!(ex.response, *response, "{target}");
    }
}

/// One refused form per trick, with the refusal it must get.
fn refused() -> Vec<(&'static str, String, &'static str, Refusal)> {
    let nit = |r: &str| Refusal::NotInTable { route: q(r) };
    let case = |r: &str, c: &'static str| Refusal::CaseVariant {
        route: q(r),
        canonical: c,
    };
    let method = |m: &str, r: &'static str| Refusal::MethodNotAllowed {
        method: q(m),
        route: r,
    };
    let ext = |r: &'static str| Refusal::BadExtension { route: r };
    let bad = |n: &str| Refusal::BadParameter { name: q(n) };
    let missing = |n: &str| Refusal::MissingPinnedParameter { name: q(n) };
    let repeated = |n: &str| Refusal::RepeatedParameter { name: q(n) };
    let unexpected = |s: &str| Refusal::UnexpectedSegment { segment: q(s) };
    vec![
        // Not in the table at all.
        ("GET", "/users".into(), "", nit("users")),
        ("GET", "/".into(), "", Refusal::EmptySegment),
        ("POST", "/users/resetauthkey/me".into(), "", nit("users/resetauthkey")),
        ("POST", "/attributes/restSearch.json".into(), "", nit("attributes/restSearch")),
        ("GET", "/events/index/published:1".into(), "", method("GET", "events/index")),
        ("GET", format!("/events/checkuuid/{U}"), "", nit("events/checkuuid")),
        ("GET", "/users/view/1.json".into(), "", bad("user")),
        // REST resource aliases (§5).
        ("POST", "/events".into(), "", nit("events")),
        ("POST", "/events.json".into(), "", nit("events")),
        ("PUT", format!("/events/{U}"), "", nit(&format!("events/{U}"))),
        ("POST", format!("/events/{U}"), "", nit(&format!("events/{U}"))),
        ("GET", "/events/12".into(), "", nit("events/12")),
        ("DELETE", "/events/12".into(), "", nit("events/12")),
        // Spellings CakePHP routes to a row but MISP does not send.
        ("POST", "/events/ADD".into(), "", case("events/ADD", "events/add")),
        ("POST", "/Events/add".into(), "", case("Events/add", "events/add")),
        ("GET", "/servers/GETVERSION".into(), "", case("servers/GETVERSION", "servers/getVersion")),
        ("POST", "/events/filtereventidsforpush".into(), "", case("events/filtereventidsforpush", "events/filterEventIdsForPush")),
        ("POST", "/galaxyClusters/restSearch".into(), "", case("galaxyClusters/restSearch", "galaxy_clusters/restSearch")),
        ("GET", "/event_reports/add".into(), "", case("event_reports/add", "eventReports/add")),
        ("POST", "/analystData/pushAnalystData".into(), "", case("analystData/pushAnalystData", "analyst_data/pushAnalystData")),
        // Methods other than the row's.
        ("GET", "/events/add/metadata:1".into(), "", method("GET", "events/add")),
        ("PUT", format!("/events/edit/{U}/metadata:1"), "", method("PUT", "events/edit")),
        ("POST", "/servers/getVersion".into(), "", method("POST", "servers/getVersion")),
        ("HEAD", "/servers/getVersion".into(), "", method("HEAD", "servers/getVersion")),
        ("get", "/servers/getVersion".into(), "", method("get", "servers/getVersion")),
        ("DELETE", format!("/events/view/{U}"), "", method("DELETE", "events/view")),
        ("POST", format!("/events/view/{U}/{L5}"), "", method("POST", "events/view")),
        ("GET", "/events/index".into(), "", method("GET", "events/index")),
        ("HEAD", format!("/galaxy_clusters/view/{U}"), "", method("HEAD", "galaxy_clusters/view")),
        // HEAD is only the existence check: a uuid, no parameters.
        ("HEAD", format!("/events/view/{U}/{L5}"), "", bad("deleted[]")),
        ("HEAD", "/events/view/12".into(), "", bad("event uuid")),
        // A plain GET of an event is no pull MISP makes: the pinned
        // parameters keep the answer minimal.
        ("GET", format!("/events/view/{U}"), "", missing("deleted[]:0")),
        // The remote's local tags and whole events must not come along.
        ("GET", format!("/events/view/{U}/{L5_INTERNAL}"), "", missing("excludeLocalTags:1")),
        ("POST", "/events/add".into(), "", missing("metadata:1")),
        ("POST", format!("/events/edit/{U}"), "", missing("metadata:1")),
        ("POST", "/events/edit/42".into(), "", missing("metadata:1")),
        ("GET", format!("/events/view/{U}/{L5_INTERNAL}").replace("/includeWarninglistHits:0", ""), "", missing("includeWarninglistHits:0")),
        ("GET", format!("/events/view/{U}/{L5}/noEventReports:1"), "", missing("includeAttachments:0")),
        ("GET", format!("/events/view/{U}/{L5}/includeEventCorrelations:1"), "", bad("includeEventCorrelations")),
        ("GET", format!("/events/view/{U}/{L5}").replace("excludeGalaxy:1", "excludeGalaxy:0"), "", bad("excludeGalaxy")),
        ("GET", format!("/events/view/{U}/{L5}/excludeGalaxy:1"), "", repeated("excludeGalaxy")),
        ("GET", format!("/events/view/{U}/{L5}/deleted[]:1"), "", repeated("deleted[]")),
        ("GET", format!("/events/view/{U}/{L5}/apikey:0123456789"), "", bad("apikey")),
        ("GET", format!("/events/view/{U}/{L5}/includeGranularCorrelations:1"), "", bad("includeGranularCorrelations")),
        ("GET", format!("/events/view/{U}/{L5}/extra"), "", unexpected("extra")),
        ("GET", format!("/events/view/deleted[]:0/{U}/{L5}"), "", bad("event id")),
        ("GET", format!("/events/view/{U}/{L5}.json"), "", ext("events/view")),
        // Extensions.
        ("POST", "/events/add.json".into(), "", ext("events/add")),
        ("POST", "/events/add/metadata:1.json".into(), "", ext("events/add")),
        ("POST", "/events/add.xml".into(), "", ext("events/add")),
        ("POST", "/events/add.csv".into(), "", ext("events/add")),
        ("POST", "/events/add.".into(), "", ext("events/add")),
        ("GET", "/servers/getVersion.json".into(), "", ext("servers/getVersion")),
        ("GET", "/users/view/me".into(), "", ext("users/view")),
        ("GET", "/users/view/me.xml".into(), "", ext("users/view")),
        ("GET", "/users/view/me.JSON".into(), "", ext("users/view")),
        ("GET", "/users/view/me.json.json".into(), "", ext("users/view")),
        ("GET", "/shadow_attributes/index/all:1/timestamp:0/limit:1000/page:1/deleted[]:0/deleted[]:1".into(), "", ext("shadow_attributes/index")),
        ("GET", "/shadow_attributes/index/all:1/timestamp:0/limit:1000/page:1/deleted[]:0/deleted[]:1.xml".into(), "", ext("shadow_attributes/index")),
        ("GET", analyst_path("Note", 1).replace(".json", ""), "", ext("analyst_data/index")),
        ("GET", "/users/view/me.json/.json".into(), "", Refusal::EmptySegment),
        ("POST", "/events.json/add".into(), "", nit("events.json/add")),
        // Ids and uuids.
        ("POST", "/events/edit/+12/metadata:1".into(), "", bad("event id")),
        ("POST", "/events/edit/-12/metadata:1".into(), "", bad("event id")),
        ("POST", "/events/edit/012/metadata:1".into(), "", bad("event id")),
        ("POST", "/events/edit/0/metadata:1".into(), "", bad("event id")),
        ("POST", "/events/edit/123456789012345678901/metadata:1".into(), "", bad("event id")),
        ("POST", "/events/edit/metadata:1".into(), "", bad("event id")),
        ("POST", "/events/edit".into(), "", Refusal::MissingSegment { name: "event id" }),
        ("POST", format!("/events/edit/{}/metadata:1", U.to_uppercase()), "", bad("event id")),
        ("POST", "/events/edit/385283a1b5e04e10a532dce11c365a56/metadata:1".into(), "", bad("event id")),
        ("POST", "/events/edit/{385283a1-b5e0-4e10-a532-dce11c365a56}".into(), "", Refusal::BadCharacter { ch: '{' }),
        ("POST", "/events/edit/385283a1-b5e0-4e10-a532-dce11c365a5g".into(), "", bad("event id")),
        ("POST", "/events/edit/385283a1-b5e0-4e10-a532-dce11c365a5".into(), "", bad("event id")),
        ("POST", "/events/edit/385283a1-b5e04-e10-a532-dce11c365a56".into(), "", bad("event id")),
        ("POST", "/events/pushProposals/12".into(), "", bad("event uuid")),
        ("POST", "/sightings/bulkSaveSightings/12".into(), "", bad("event uuid")),
        ("POST", "/sightings/filterSightingUuidsForPush".into(), "", Refusal::MissingSegment { name: "event uuid" }),
        ("GET", "/galaxy_clusters/view/12".into(), "", bad("cluster uuid")),
        ("POST", "/events/add/metadata:0".into(), "", bad("metadata")),
        ("POST", "/events/add/metadata:1/metadata:1".into(), "", repeated("metadata")),
        ("POST", "/events/add/metadata:true".into(), "", bad("metadata")),
        ("POST", "/events/add/extra".into(), "", unexpected("extra")),
        ("POST", format!("/events/add/{U}"), "", unexpected(U)),
        ("POST", "/sightings/restSearch/attribute".into(), "", bad("context")),
        ("POST", "/sightings/restSearch".into(), "", Refusal::MissingSegment { name: "context" }),
        ("POST", "/events/index/minimal:1".into(), "", bad("minimal")),
        // Proposal pages.
        ("GET", "/shadow_attributes/index/all:1/timestamp:-1/limit:1000/page:1/deleted[]:0/deleted[]:1.json".into(), "", bad("timestamp")),
        ("GET", "/shadow_attributes/index/all:1/timestamp:0/limit:100000/page:1/deleted[]:0/deleted[]:1.json".into(), "", bad("limit")),
        ("GET", "/shadow_attributes/index/all:1/timestamp:0/page:1/deleted[]:0/deleted[]:1.json".into(), "", missing("limit:1000")),
        ("GET", "/shadow_attributes/index/all:1/timestamp:0/limit:1000/page:1/deleted[]:0/deleted[]:1/event_id:5.json".into(), "", bad("event_id")),
        ("GET", "/shadow_attributes/index/all:1.json/timestamp:0/limit:1000/page:1/deleted[]:0/deleted[]:1.json".into(), "", bad("all")),
        // Analyst data chunks.
        ("GET", analyst_path("Note", 101), "", Refusal::TooManyUuids { max: 100 }),
        ("GET", analyst_path("Note", 0), "", missing("uuid[]")),
        ("GET", analyst_path("Event", 1), "", bad("analyst data type")),
        ("GET", analyst_path("note", 1), "", bad("analyst data type")),
        ("GET", analyst_path("Note", 1).replace("uuid[]:", "uuid:"), "", bad("uuid")),
        ("GET", analyst_path("Note", 1).replace("6f847552", "6F847552"), "", bad("uuid[]")),
        ("GET", format!("{}.json", analyst_path("Note", 1).replace(".json", "/all:1")), "", bad("all")),
        // Percent-encoding anywhere.
        ("GET", format!("/events/view/{U}/{L5}").replace("[]", "%5B%5D"), "", Refusal::Encoded),
        ("GET", "/servers/getVersion%2e".into(), "", Refusal::Encoded),
        ("GET", "/servers%2FgetVersion".into(), "", Refusal::Encoded),
        ("POST", "/events/%61dd".into(), "", Refusal::Encoded),
        ("POST", "/events/add%00".into(), "", Refusal::Encoded),
        // Dot and empty segments, trailing slash.
        ("POST", "/events/../events/add".into(), "", Refusal::DotSegment),
        ("POST", "/events/./add".into(), "", Refusal::DotSegment),
        ("POST", "/events/add/..".into(), "", Refusal::DotSegment),
        ("POST", "/./events/add".into(), "", Refusal::DotSegment),
        ("POST", "/events//add".into(), "", Refusal::EmptySegment),
        ("POST", "//events/add".into(), "", Refusal::EmptySegment),
        ("POST", "/events/add/".into(), "", Refusal::EmptySegment),
        ("GET", "/servers/getVersion/".into(), "", Refusal::EmptySegment),
        ("POST", "/events/add/metadata:1/".into(), "", Refusal::EmptySegment),
        // Separators other servers read differently.
        ("POST", "/events/add;metadata:1".into(), "", Refusal::Semicolon),
        ("POST", "/events;/add".into(), "", Refusal::Semicolon),
        ("POST", "/events\\add".into(), "", Refusal::Backslash),
        ("GET", "/servers/getVersion?x".into(), "", Refusal::QueryString),
        ("GET", "/servers/getVersion?".into(), "", Refusal::QueryString),
        ("POST", "/events/index?minimal=0".into(), "", Refusal::QueryString),
        ("GET", "/servers/getVersion#x".into(), "", Refusal::Fragment),
        // Bytes MISP never sends.
        ("GET", "/servers/getVersion\t".into(), "", Refusal::ControlCharacter),
        ("GET", "/servers/get\u{0}Version".into(), "", Refusal::ControlCharacter),
        ("GET", "/servers/get\rVersion".into(), "", Refusal::ControlCharacter),
        ("GET", "/servers/get\u{7f}Version".into(), "", Refusal::ControlCharacter),
        ("GET", "/servers/getVersi\u{f3}n".into(), "", Refusal::NonAscii),
        ("GET", "/servers/getVersion\u{ff0f}".into(), "", Refusal::NonAscii),
        ("GET", "/servers/get Version".into(), "", Refusal::BadCharacter { ch: ' ' }),
        ("GET", "/servers/~getVersion".into(), "", Refusal::BadCharacter { ch: '~' }),
        ("GET", "/servers/getVersion,".into(), "", Refusal::BadCharacter { ch: ',' }),
        ("GET", "/servers/getVersion@".into(), "", Refusal::BadCharacter { ch: '@' }),
        ("POST", "/events/add/metadata=1".into(), "", Refusal::BadCharacter { ch: '=' }),
        // Not origin-form.
        ("GET", "https://misp.example/servers/getVersion".into(), "", Refusal::NotOriginForm),
        ("GET", "servers/getVersion".into(), "", Refusal::NotOriginForm),
        ("GET", "*".into(), "", Refusal::NotOriginForm),
        ("GET", "".into(), "", Refusal::NotOriginForm),
        ("GET", "\\servers\\getVersion".into(), "", Refusal::NotOriginForm),
        // Base paths.
        ("GET", "/servers/getVersion".into(), "/misp", Refusal::OutsideBasePath),
        ("GET", "/MISP/servers/getVersion".into(), "/misp", Refusal::OutsideBasePath),
        ("GET", "/mispx/servers/getVersion".into(), "/misp", Refusal::OutsideBasePath),
        ("GET", "/misp".into(), "/misp", Refusal::OutsideBasePath),
        ("GET", "/misp/".into(), "/misp", Refusal::EmptySegment),
        ("GET", "/misp/../servers/getVersion".into(), "/misp", Refusal::DotSegment),
        ("GET", "/misp/misp/servers/getVersion".into(), "/misp", nit("misp/servers")),
        ("GET", "/misp/servers/getVersion".into(), "/misp/", Refusal::BadBasePath),
        ("GET", "/misp/servers/getVersion".into(), "misp", Refusal::BadBasePath),
        ("GET", "/a//servers/getVersion".into(), "/a/", Refusal::BadBasePath),
        ("GET", "/../servers/getVersion".into(), "/..", Refusal::BadBasePath),
        ("GET", "/m%69sp/servers/getVersion".into(), "/m%69sp", Refusal::Encoded),
        ("GET", "/a/servers/getVersion".into(), "/a?", Refusal::BadBasePath),
        ("GET", "/~a/servers/getVersion".into(), "/~a", Refusal::BadCharacter { ch: '~' }),
        ("GET", "/a/servers/getVersion".into(), "/~a", Refusal::BadBasePath),
        // Too long.
        ("GET", format!("/{}", "a".repeat(path::MAX_TARGET)), "", Refusal::TooLong { max: path::MAX_TARGET }),
    ]
}

#[test]
fn refuses_each_trick_with_its_reason() {
    for (method, target, base, want) in refused() {
        assert_eq!(
            classify(method, &target, base),
            Err(want),
            "{method} {target:?} under {base:?}"
        );
    }
}

#[test]
fn refusals_quote_safely() {
    let long = format!("/{}/x", "é".repeat(10));
    // Non-ASCII is refused before anything is quoted; quoting itself must
    // still be safe for whatever reaches it.
    assert_eq!(classify("GET", &long, ""), Err(Refusal::NonAscii));
    let quoted = Quoted::new("a\r\nb\"c\\d\u{1b}[31m\u{e9}");
    assert_eq!(quoted.as_str(), "a\\r\\nb\\\"c\\\\d\\u{1b}[31m\\u{e9}");
    let cut = Quoted::new(&"x".repeat(500));
    assert_eq!(cut.as_str().len(), Quoted::MAX + 3);
    assert!(cut.as_str().ends_with("..."));
    let exact = Quoted::new(&"y".repeat(Quoted::MAX));
    assert_eq!(exact.as_str(), "y".repeat(Quoted::MAX));
    let method = classify("G\u{7}ET\n", "/servers/getVersion", "")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        method,
        "method \"G\\u{7}ET\\n\" not allowed on servers/getVersion"
    );
    // A refusal message names the route, cut to a fixed length.
    let msg = classify("GET", &format!("/{}/b", "a".repeat(300)), "")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.len() < 120, "{msg}");
    assert!(!msg.contains('\n'));
}

#[test]
fn refusal_messages_say_why() {
    for (method, target, _, want) in refused() {
        let msg = want.to_string();
        assert!(
            !msg.is_empty() && msg.is_ascii(),
            "{method} {target}: {msg}"
        );
        assert!(!msg.chars().any(|c| c.is_control()), "{msg}");
    }
}

#[test]
fn table_has_one_row_per_route_and_method() {
    let mut seen = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for row in TABLE {
        assert!(
            seen.insert((row.route, row.method)),
            "duplicate {} {}",
            row.method,
            row.route
        );
        assert!(
            names.insert(row.exchange.name),
            "duplicate name {}",
            row.exchange.name
        );
        let (c, a) = row.route.split_once('/').unwrap_or(("", ""));
        assert!(
            !c.is_empty() && !a.is_empty() && !a.contains('/'),
            "{}",
            row.route
        );
        assert!(!row.named.is_empty(), "{} has no named set", row.route);
        assert!(
            ["GET", "HEAD", "POST"].contains(&row.method),
            "{}",
            row.route
        );
        if row.method == "POST" {
            // Every POST body is checked as a document, so a form body
            // (and a CakePHP `_method` field in it) never passes.
            assert!(row.exchange.request.is_some(), "{}", row.route);
        } else {
            // The relay refuses bodies on GET and HEAD; the table agrees.
            assert_eq!(row.exchange.request, None, "{} {}", row.method, row.route);
        }
        if row.method == "HEAD" {
            assert_eq!(row.exchange.response, None, "HEAD answers have no body");
        }
        // Two spellings of one route that fold together would make
        // CaseVariant ambiguous.
        for other in TABLE {
            if other.route != row.route {
                assert_ne!(
                    other.route.to_lowercase().replace('_', ""),
                    row.route.to_lowercase().replace('_', "")
                );
            }
        }
    }
}

#[test]
fn every_row_is_reachable() {
    let accepted = accepted();
    for row in TABLE {
        assert!(
            accepted.iter().any(|(m, t, _)| *m == row.method
                && classify(m, t, "").map(|e| e.name) == Ok(row.exchange.name)),
            "no accepted sample for {} {}",
            row.method,
            row.route
        );
    }
}

#[test]
fn uuid_and_number_forms() {
    assert!(is_uuid(U));
    assert!(is_uuid("00000000-0000-0000-0000-000000000000"));
    for bad in [
        "",
        "385283A1-b5e0-4e10-a532-dce11c365a56",
        "385283a1-b5e0-4e10-a532-dce11c365a56a",
        "385283a1_b5e0_4e10_a532_dce11c365a56",
        "385283a1-b5e0-4e10-a532-dce11c365a5",
        "{385283a1-b5e0-4e10-a532-dce11c365a5}",
        "385283a1-b5e0-4e10-a532-dce11c365a5\u{e9}",
    ] {
        assert!(!is_uuid(bad), "{bad}");
    }
    for good in ["0", "1", "42", "12345678901234567890"] {
        assert!(is_number(good), "{good}");
    }
    for bad in [
        "",
        "00",
        "01",
        "+1",
        "-1",
        "1.0",
        "1e3",
        "123456789012345678901",
        " 1",
    ] {
        assert!(!is_number(bad), "{bad}");
    }
}

#[test]
fn method_override_headers_are_refused() {
    let refused: &[&str] = &[
        "X-HTTP-Method-Override",
        "x-http-method-override",
        "X-HTTP-METHOD-OVERRIDE",
        "X_HTTP_Method_Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ];
    for name in refused {
        let headers = [("Accept", &b"application/json"[..]), (*name, &b"PUT"[..])];
        assert_eq!(
            check_request_headers(headers),
            Err(Refusal::MethodOverride { header: q(name) }),
            "{name}"
        );
    }
    for name in ["X-Original-URL", "x-rewrite-url"] {
        assert_eq!(
            check_request_headers([(name, &b"/events/add"[..])]),
            Err(Refusal::UrlOverride { header: q(name) }),
            "{name}"
        );
    }
    let fine = [
        (
            "Authorization",
            &b"0123456789012345678901234567890123456789"[..],
        ),
        ("Accept", &b"application/json"[..]),
        ("Content-Type", &b"application/json"[..]),
        ("User-Agent", &b"MISP 2.5.1"[..]),
        ("X-HTTP-Method-Overrides", &b"PUT"[..]),
        ("X-HTTP", &b"PUT"[..]),
        ("x-pgp-signature", &b"abc"[..]),
    ];
    assert_eq!(check_request_headers(fine), Ok(()));
    assert_eq!(check_request_headers(std::iter::empty()), Ok(()));
}

/// The (method, URL) pairs of the conformance scenarios whose endpoint must
/// pass the table (status 200, or 403 from a body or rule verdict), copied
/// from `conformance/peer-scenarios/{push,pull,extra}.json`.
const CONFORMANCE_ALLOWED: &[(&str, &str)] = &[
    ("POST", "/analyst_data/filterAnalystDataForPush"),
    ("POST", "/analyst_data/pushAnalystData"),
    ("POST", "/events/add/metadata:1"),
    ("POST", "/events/edit/385283a1-b5e0-4e10-a532-dce11c365a56/metadata:1"),
    ("POST", "/galaxies/pushCluster"),
    ("POST", "/sightings/bulkSaveSightings/5e168365-4391-44bd-851a-b48a14c30d77"),
    ("GET", "/analyst_data/index/Note/uuid[]:6f847552-aaab-4378-aa5f-369c416822d1.json"),
    ("GET", "/analyst_data/index/Opinion/uuid[]:9c0e3e20-b1ea-4473-81d2-845c4399c36d.json"),
    ("GET", "/analyst_data/index/Opinion/uuid[]:9d9170c4-b9b8-4457-8f44-e5bbacc94367.json"),
    ("GET", "/analyst_data/index/Opinion/uuid[]:f43b2e9c-93c3-4d1e-a99a-e0996ced962c.json"),
    ("GET", "/analyst_data/index/Relationship/uuid[]:41146bcb-2869-4cf0-8abb-015e8d1350c9.json"),
    ("GET", "/analyst_data/index/Relationship/uuid[]:8d96fbd5-2364-42e9-acca-4701bf794bfb.json"),
    ("GET", "/events/view/385283a1-b5e0-4e10-a532-dce11c365a56/deleted[]:0/deleted[]:1/excludeGalaxy:1/includeEventCorrelations:0/includeFeedCorrelations:0/includeWarninglistHits:0/excludeLocalTags:1"),
    ("GET", "/galaxy_clusters/view/8faab056-4212-4e80-8b54-b7eadec6b739"),
    ("GET", "/shadow_attributes/index/all:1/timestamp:0/limit:1000/page:1/deleted[]:0/deleted[]:1.json"),
    ("POST", "/analyst_data/indexMinimal"),
    ("POST", "/sightings/restSearch/event"),
    ("HEAD", "/events/view/385283a1-b5e0-4e10-a532-dce11c365a56"),
    // 403 from the minimal/published body check, not from the table.
    ("POST", "/events/index"),
    ("POST", "/galaxy_clusters/restSearch"),
    // 403 from the port check; the endpoint itself is allowed.
    ("GET", "/users/view/me.json"),
];

#[test]
fn conformance_endpoints_pass_the_table() {
    for (method, url) in CONFORMANCE_ALLOWED {
        assert!(
            classify(method, url, "").is_ok(),
            "{method} {url}: {:?}",
            classify(method, url, "")
        );
    }
    assert_eq!(
        classify("GET", "/users", ""),
        Err(Refusal::NotInTable { route: q("users") })
    );
}

/// When the conformance data is at hand, every scenario to a MISP instance
/// (not to an allowlisted site) whose endpoint is a sync step must pass the
/// table, and the one outside sync must not.
#[test]
fn conformance_files_agree() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        dir.join("tests/conformance/peer-scenarios"),
        std::path::PathBuf::from("/work/shared/conformance/peer-scenarios"),
    ];
    let Some(found) = candidates.iter().find(|p| p.is_dir()) else {
        eprintln!("conformance data not found; covered by conformance_endpoints_pass_the_table");
        return;
    };
    let mut checked = 0;
    for file in ["push.json", "pull.json", "extra.json"] {
        let text = std::fs::read_to_string(found.join(file)).expect("read scenario file");
        let scenarios: serde_json::Value = serde_json::from_str(&text).expect("scenario JSON");
        for s in scenarios.as_array().expect("a list") {
            let host = s["host"].as_str().unwrap_or_default();
            let method = s["method"].as_str().unwrap_or_default();
            let url = s["url"].as_str().unwrap_or_default();
            if !host.starts_with("instance") {
                continue; // the allowlist, not the table
            }
            let got = classify(method, url, "");
            if s["name"] == "endpoint_outside_sync_is_blocked" {
                assert!(got.is_err(), "{method} {url}");
            } else {
                assert!(got.is_ok(), "{file}: {method} {url}: {got:?}");
                assert!(
                    CONFORMANCE_ALLOWED.contains(&(method, url)),
                    "{method} {url} missing from CONFORMANCE_ALLOWED"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} scenarios read");
}

/// The accepted forms as (method, target), for mutation.
fn mutation_seeds() -> Vec<(&'static str, String)> {
    let mut seeds: Vec<(&'static str, String)> =
        accepted().into_iter().map(|(m, t, _)| (m, t)).collect();
    seeds.retain(|(_, t)| t.len() < 1000);
    seeds.push(("GET", analyst_path("Opinion", 3)));
    seeds
}

#[derive(Debug, Clone)]
enum Mutation {
    Percent(u8),
    FlipCase,
    InsertSlash,
    RemoveSlash,
    Semicolon,
    Query,
    Xml,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<u8>().prop_map(Mutation::Percent),
        Just(Mutation::FlipCase),
        Just(Mutation::InsertSlash),
        Just(Mutation::RemoveSlash),
        Just(Mutation::Semicolon),
        Just(Mutation::Query),
        Just(Mutation::Xml),
    ]
}

/// Apply `m` at byte `at` (modulo the length) of an ASCII target.
fn mutate(target: &str, m: &Mutation, at: usize) -> String {
    let mut bytes = target.as_bytes().to_vec();
    let at = at % (bytes.len() + 1);
    let insert = |bytes: &mut Vec<u8>, text: &[u8]| {
        let tail = bytes.split_off(at);
        bytes.extend_from_slice(text);
        bytes.extend_from_slice(&tail);
    };
    match m {
        Mutation::Percent(b) => insert(&mut bytes, format!("%{b:02X}").as_bytes()),
        Mutation::FlipCase => {
            if let Some(c) = bytes.get_mut(at) {
                if c.is_ascii_lowercase() {
                    c.make_ascii_uppercase();
                } else {
                    c.make_ascii_lowercase();
                }
            }
        }
        Mutation::InsertSlash => insert(&mut bytes, b"/"),
        Mutation::RemoveSlash => {
            // Remove the first `/` at or after `at`.
            if let Some(i) = bytes.iter().skip(at).position(|b| *b == b'/') {
                bytes.remove(at + i);
            }
        }
        Mutation::Semicolon => insert(&mut bytes, b";"),
        Mutation::Query => bytes.extend_from_slice(b"?x"),
        Mutation::Xml => bytes.extend_from_slice(b".xml"),
    }
    String::from_utf8(bytes).expect("ASCII stays UTF-8")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// A mutated allowed target is refused unless the mutation changed
    /// nothing, in which case it is the same exchange.
    #[test]
    fn mutations_are_refused(seed in any::<prop::sample::Index>(), m in mutation(), at in any::<usize>()) {
        let seeds = mutation_seeds();
        let (method, target) = &seeds[seed.index(seeds.len())];
        let original = classify(method, target, "");
        prop_assert!(original.is_ok());
        let mutated = mutate(target, &m, at);
        let got = classify(method, &mutated, "");
        if mutated == *target {
            prop_assert_eq!(got, original.clone());
        } else {
            prop_assert!(got.is_err(), "{} {} -> {:?}", method, mutated, got);
        }
        // The same under a base path.
        let based = format!("/misp{mutated}");
        let got = classify(method, &based, "/misp");
        if mutated == *target {
            prop_assert_eq!(got, original);
        } else {
            prop_assert!(got.is_err(), "{} {} -> {:?}", method, based, got);
        }
    }

    /// Arbitrary printable targets never panic, and whatever passes is a
    /// row's exact spelling: re-classifying gives the same exchange.
    #[test]
    fn arbitrary_targets_do_not_panic(target in "/[a-zA-Z0-9_:.\\[\\]/%;?#-]{0,80}", method in "GET|HEAD|POST|PUT") {
        let _ = classify(&method, &target, "");
        let _ = classify(&method, &target, "/misp");
    }
}

#[test]
fn bodies_must_be_declared_json() {
    let ok: &[&[(&str, &[u8])]] = &[
        &[("Content-Type", b"application/json")],
        &[("content-type", b"Application/JSON; charset=UTF-8")],
        &[("Content-Type", b" application/json ")],
    ];
    for headers in ok {
        assert_eq!(
            check_body_type(headers.iter().copied()),
            Ok(()),
            "{headers:?}"
        );
    }
    let refused: &[&[(&str, &[u8])]] = &[
        &[],
        &[("Content-Type", b"application/x-www-form-urlencoded")],
        &[("Content-Type", b"multipart/form-data; boundary=x")],
        &[("Content-Type", b"text/plain")],
        &[("Content-Type", b"application/jsonx")],
        &[
            ("Content-Type", b"application/json"),
            ("Content-Type", b"application/json"),
        ],
        &[
            ("Content-Type", b"application/json"),
            ("content-type", b"application/x-www-form-urlencoded"),
        ],
        &[("Content-Type", b"\xff")],
        &[("Content-Type", "\u{a0}application/json".as_bytes())],
    ];
    for headers in refused {
        assert!(
            matches!(
                check_body_type(headers.iter().copied()),
                Err(Refusal::BodyType { .. })
            ),
            "{headers:?}"
        );
    }
}

/// The sightings pull row's request document takes MISP's own L8 body and
/// refuses the keys that would put event titles and attribute values in
/// the answer.
#[test]
fn sightings_pull_body_is_misp_search_only() {
    use crate::rules::{evaluate, Context, Policy, Rule, Verdict};
    let ex = classify("POST", "/sightings/restSearch/event", "").expect("L8 passes the table");
    let doc = ex.request.expect("L8 has a request body");
    let judge = |body: &str| {
        evaluate(
            body.as_bytes(),
            doc,
            &Policy::default(),
            &Context::default(),
        )
    };
    let misp = format!(
        r#"{{"returnFormat":"json","last":0,"includeUuid":true,"uuid":["{U}"],"org_id":["!55555555-1111-4111-8111-111111111111"]}}"#
    );
    assert!(matches!(judge(&misp), Verdict::Allow(_)), "MISP's L8 body");
    for key in ["includeEvent", "includeAttribute", "request", "context"] {
        let body = format!(r#"{{"returnFormat":"json","uuid":["{U}"],"{key}":1}}"#);
        match judge(&body) {
            Verdict::Block(b) => {
                assert_eq!((b.rule, b.value.as_str()), (Rule::Malformed, key), "{body}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}
