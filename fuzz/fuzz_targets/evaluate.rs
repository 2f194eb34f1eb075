//! The rule engine on arbitrary bytes, as every kind of document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use misp_guard::rules::{evaluate, Context, Document, Policy};

const DOCUMENTS: [Document; 15] = [
    Document::Event,
    Document::GalaxyCluster,
    Document::GalaxyClusterList,
    Document::GalaxyClusterSearch,
    Document::ShadowAttributeList,
    Document::Sightings,
    Document::AnalystDataItem,
    Document::AnalystDataList,
    Document::AnalystDataMinimal,
    Document::MinimalSearch,
    Document::EventIndex,
    Document::EventUuidTimestamps,
    Document::UuidList,
    Document::PostTest,
    Document::AnyJson,
];

fuzz_target!(|data: &[u8]| {
    let mut policy = Policy::default();
    policy.blocked_tags.insert("tlp:red".into());
    policy.blocked_distributions[0] = true;
    policy.blocked_attribute_types.insert("ip-src".into());
    let ctx = Context {
        user_org_uuid: Some("5b9e9a6c-3f2e-4c6a-9d1e-0a1b2c3d4e5f".into()),
    };
    for doc in DOCUMENTS {
        let _ = evaluate(data, doc, &policy, &ctx);
    }
});
