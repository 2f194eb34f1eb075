//! Fuzz entry point of the rule engine, shared by the cargo-fuzz target in
//! `fuzz/` and by a bounded stable test (so CI runs the same checks
//! without a nightly toolchain). It panics only when an invariant breaks:
//! the verdict must not depend on the pieces the body comes in, and an
//! answer the engine rebuilds must be JSON that needs no further
//! rebuilding.

use super::{
    evaluate, Context, Document, Evaluation, Policy, Receiver, Verdict, DEFAULT_MAX_DEPTH,
};

/// Every kind of document.
pub const DOCUMENTS: [Document; 17] = [
    Document::Event,
    Document::GalaxyCluster,
    Document::GalaxyClusterList,
    Document::GalaxyClusterSearch,
    Document::ShadowAttributeList,
    Document::ProposalRows,
    Document::Sightings,
    Document::AnalystDataItem,
    Document::AnalystDataList,
    Document::AnalystDataMinimal,
    Document::MinimalSearch,
    Document::EventIndex,
    Document::EventUuidTimestamps,
    Document::UuidList,
    Document::PostTest,
    Document::SightingSearch,
    Document::AnyJson,
];

fn policy() -> Policy {
    let mut policy = Policy::default();
    policy.blocked_tags.insert("tlp:red".into());
    policy.blocked_distributions[0] = true;
    policy.blocked_attribute_types.insert("ip-src".into());
    policy
}

/// The body as every document, as a request and as an answer, whole and in
/// pieces whose sizes the first byte chooses.
pub fn evaluate_all(data: &[u8]) {
    let policy = policy();
    let piece = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    for rebuild in [false, true] {
        let ctx = Context {
            user_org_uuid: Some("5b9e9a6c-3f2e-4c6a-9d1e-0a1b2c3d4e5f".into()),
            receiver: Some(Receiver::new(
                "misp-b.example",
                std::net::IpAddr::from([127, 0, 0, 2]),
                443,
            )),
            rebuild,
        };
        for doc in DOCUMENTS {
            let whole = evaluate(data, doc, &policy, &ctx);
            let pieces = in_pieces(data, piece, doc, &policy, &ctx);
            assert_eq!(whole, pieces, "{doc:?} in pieces of {piece}");
            if let Verdict::Rebuild(r) = &whole {
                let out = rebuilt(r, data, piece, &policy, &ctx);
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
                    "{doc:?}: the rebuilt answer is no JSON"
                );
                // A rebuilt answer has nothing left to take out: read again,
                // it passes, or rebuilds to itself (fillers stay fillers).
                match evaluate(&out[..], doc, &policy, &ctx) {
                    Verdict::Allow(_) => {}
                    Verdict::Rebuild(again) => {
                        let twice = rebuilt(&again, &out, piece, &policy, &ctx);
                        assert_eq!(twice, out, "{doc:?}: rebuilding is not settled");
                    }
                    Verdict::Block(b) => panic!("{doc:?}: the rebuilt answer is refused: {b}"),
                }
            }
        }
    }
}

fn in_pieces(data: &[u8], piece: usize, doc: Document, policy: &Policy, ctx: &Context) -> Verdict {
    let mut evaluation = Evaluation::new(doc, policy, ctx, DEFAULT_MAX_DEPTH);
    for chunk in data.chunks(piece) {
        if !evaluation.feed(chunk) {
            break;
        }
    }
    evaluation.finish()
}

fn rebuilt(
    r: &super::Rebuild,
    data: &[u8],
    piece: usize,
    policy: &Policy,
    ctx: &Context,
) -> Vec<u8> {
    let mut rebuilder = r.rebuilder(policy, ctx, DEFAULT_MAX_DEPTH);
    let mut out = Vec::new();
    for chunk in data.chunks(piece) {
        rebuilder.feed(chunk, &mut out);
    }
    match rebuilder.finish(&mut out) {
        Ok(_) => out,
        Err(b) => panic!("the second reading refused the answer: {b}"),
    }
}
