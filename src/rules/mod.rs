//! Step 5 of the path: the rule engine.
//!
//! [`evaluate`] reads one decoded body as a stream and returns a
//! [`Verdict`]. It never builds a tree of the document: memory is bounded by
//! nesting depth, not by size.
//!
//! (Interface fixed by the skeleton; the evaluator is being written.)

use std::collections::HashSet;
use std::fmt;
use std::io::Read;

/// The block rules of one instance, normalised for comparison (lower-case,
/// trimmed). Built by `config` from the older guard's per-instance rules.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `taxonomies_rules.blocked_tags`, lower-cased and trimmed.
    pub blocked_tags: HashSet<String>,
    /// `taxonomies_rules.required_taxonomies` with their allowed tags
    /// (`taxonomies_rules.allowed_tags`), all lower-cased and trimmed. An
    /// empty allowed list means any tag of the taxonomy satisfies it.
    pub required_taxonomies: Vec<RequiredTaxonomy>,
    /// `blocked_distribution_levels`: index 0..=5 is true when blocked.
    pub blocked_distributions: [bool; 6],
    /// `blocked_sharing_groups_uuids`, lower-cased.
    pub blocked_sharing_groups: HashSet<String>,
    /// `blocked_attribute_types`, lower-cased.
    pub blocked_attribute_types: HashSet<String>,
    /// `blocked_attribute_categories`, lower-cased.
    pub blocked_attribute_categories: HashSet<String>,
    /// `blocked_object_types`, lower-cased.
    pub blocked_object_types: HashSet<String>,
}

/// One entry of `required_taxonomies`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredTaxonomy {
    /// The taxonomy namespace, e.g. `tlp`.
    pub namespace: String,
    /// Allowed full tag names, e.g. `tlp:green`; empty = any of the namespace.
    pub allowed: Vec<String>,
}

/// What the engine knows about the exchange besides the body.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The organisation uuid of the user the data goes to (MISP's
    /// `X-UserOrgUUID` response header), lower-cased. When set, every
    /// sharing group met must contain it (or have a server with `all_orgs`).
    pub user_org_uuid: Option<String>,
}

/// Which MISP document a body is expected to be. The sync table says which
/// one each exchange carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    /// `{"Event":{…}}`: push add/edit body, pull `events/view` answer.
    Event,
    /// `{"GalaxyCluster":{…}}`: pull `galaxy_clusters/view` answer.
    GalaxyCluster,
    /// `[{"GalaxyCluster":{…}},…]`: push `galaxies/pushCluster` body.
    GalaxyClusterList,
    /// `{"response":[{"GalaxyCluster":{…}}]}` or a bare list: answer of
    /// `galaxy_clusters/restSearch` (minimal clusters).
    GalaxyClusterSearch,
    /// `[{"ShadowAttribute":{…}},…]`: pull proposals page, push proposals.
    ShadowAttributeList,
    /// Sightings: a list (or PHP's empty `{}`) of sighting objects, or
    /// `{"response":[{"Sighting":{…}}]}`. Validated, no rules yet.
    Sightings,
    /// `{"Note"|"Opinion"|"Relationship":{…}}`: push `pushAnalystData`.
    AnalystDataItem,
    /// `[{"Note"|"Opinion"|"Relationship":{…}},…]`: pull `analyst_data/index`.
    AnalystDataList,
    /// `{"Note":{uuid:modified}|[…],…}`: `indexMinimal` answer,
    /// `filterAnalystDataForPush` body and answer.
    AnalystDataMinimal,
    /// A search body that must carry `minimal:1` and `published:1`
    /// (`events/index`, `galaxy_clusters/restSearch`).
    MinimalSearch,
    /// `[{id,uuid,timestamp,…},…]`: the `events/index` answer.
    EventIndex,
    /// `[{"Event":{"uuid","timestamp"}},…]`: `filterEventIdsForPush` body.
    EventUuidTimestamps,
    /// `["uuid",…]`: uuid lists (`filterEventIdsForPush` answer,
    /// `filterSightingUuidsForPush` body and answer).
    UuidList,
    /// `{"testString":"…"}`: `servers/postTest` body.
    PostTest,
    /// Any single JSON value (strictly parsed, duplicate keys refused).
    AnyJson,
}

/// The outcome of inspecting one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The body may be forwarded; the [`Pass`] proves it.
    Allow(Pass),
    /// The body must not be forwarded.
    Block(Block),
}

/// Proof that a body was inspected and allowed. Only this module can make
/// one, so code that forwards a held body cannot skip the inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    _private: (),
}

impl Pass {
    /// Allow a body that carries no document to inspect (the sync table
    /// says so). Named so that every use is visible in review.
    pub fn uninspected() -> Pass {
        Pass { _private: () }
    }
}

/// Why a body was blocked: the rule, the offending value, and where in the
/// document it was found (e.g. `Event.Object[2].Attribute[0].type`). It
/// never carries the document itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The rule that matched.
    pub rule: Rule,
    /// The offending value, cut to a fixed length.
    pub value: String,
    /// Where it was found, as a path into the document.
    pub at: String,
}

/// The rules a body can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A tag listed in `blocked_tags`.
    BlockedTag,
    /// A required taxonomy (or an allowed tag of it) is missing.
    MissingTaxonomy,
    /// A distribution listed in `blocked_distribution_levels`.
    BlockedDistribution,
    /// A sharing group listed in `blocked_sharing_groups_uuids`, or a
    /// distribution 4 without a sharing group uuid.
    BlockedSharingGroup,
    /// A sharing group that does not contain the receiving organisation.
    SharingGroupExcludesOrg,
    /// An attribute type listed in `blocked_attribute_types`.
    BlockedAttributeType,
    /// An attribute category listed in `blocked_attribute_categories`.
    BlockedAttributeCategory,
    /// An object name listed in `blocked_object_types`.
    BlockedObjectType,
    /// A search without `minimal:1` and `published:1`.
    NotMinimalSearch,
    /// The same key twice in one object.
    DuplicateKey,
    /// Not the document the endpoint expects, not JSON, not UTF-8, too
    /// deep, or a rule field of the wrong shape.
    Malformed,
}

impl Rule {
    /// A short stable name, used in logs and answers.
    pub fn name(self) -> &'static str {
        match self {
            Rule::BlockedTag => "blocked tag",
            Rule::MissingTaxonomy => "missing required taxonomy",
            Rule::BlockedDistribution => "blocked distribution level",
            Rule::BlockedSharingGroup => "blocked sharing group",
            Rule::SharingGroupExcludesOrg => "sharing group excludes receiving organisation",
            Rule::BlockedAttributeType => "blocked attribute type",
            Rule::BlockedAttributeCategory => "blocked attribute category",
            Rule::BlockedObjectType => "blocked object type",
            Rule::NotMinimalSearch => "search must be minimal and published",
            Rule::DuplicateKey => "duplicate key",
            Rule::Malformed => "malformed document",
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} at {}", self.rule.name(), self.value, self.at)
    }
}

/// Read `body` (already de-chunked and decoded) as a `doc` and judge it
/// under `policy`. Reads to the end: trailing bytes after the document are
/// malformed. An I/O error from `body` (a decode cap, a bad gzip stream) is
/// a [`Rule::Malformed`] block naming the error.
pub fn evaluate(body: impl Read, doc: Document, policy: &Policy, ctx: &Context) -> Verdict {
    let _ = (body, doc, policy, ctx);
    Verdict::Block(Block {
        rule: Rule::Malformed,
        value: "evaluator not built yet".into(),
        at: "$".into(),
    })
}
