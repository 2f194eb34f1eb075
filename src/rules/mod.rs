//! Step 5 of the path: the rule engine.
//!
//! [`evaluate`] reads one decoded body as a stream and returns a
//! [`Verdict`]. It never builds a tree of the document: serde visitors
//! (`walk`) look at each rule field as it goes by and skip the rest, so
//! memory is bounded by nesting depth (and the keys of the open objects),
//! not by size. It refuses what it cannot read one way only: bad JSON, bad
//! UTF-8, duplicate keys, nesting deeper than [`DEFAULT_MAX_DEPTH`],
//! trailing bytes, and any shape other than the one the endpoint carries.
//!
//! # Which violation is reported
//!
//! A document may break several rules. The verdict names the one the older
//! guard (MISP/misp-guard, Python) would have raised first: per event, the
//! event's tags, required taxonomies, distribution, event reports, sharing
//! group, analyst data, then each attribute (category, type, distribution,
//! tags, required taxonomies, sharing group, proposals, analyst data), then
//! each object (distribution, sharing group, name, its attributes, analyst
//! data). What it never read is ranked thus: tag links (`EventTag`,
//! `AttributeTag`) and galaxies just after the `Tag` list they stand
//! beside, wrapped entities after everything else of their holder. The
//! walk keeps one candidate and replaces it by any hit that ranks earlier,
//! so key order inside the document does not matter. What cannot be read
//! at all (see below) is reported at once instead.
//!
//! # Parser differences, and the defence for each
//!
//! MISP (PHP `json_decode`), the older guard (Python `json`) and this
//! engine (serde_json) do not read every byte string the same way. A body
//! that two of them could read differently is refused:
//!
//! * **Duplicate keys.** PHP and Python both keep the *last* value of a
//!   repeated key, and a guard that kept the first would check a value MISP
//!   never uses. Every object, inspected or skipped, is checked: a repeated
//!   key is [`Rule::DuplicateKey`]. Keys are compared after unescaping, so
//!   `"distri\u0062ution"` is `distribution` (and a duplicate of it).
//! * **Key spelling.** PHP matches array keys exactly, so `"Attribute "` or
//!   `"attribute"` is not `Attribute` for MISP either; exact match is right.
//!   A key that is not expected is skipped, except where the shape is fixed
//!   (the `{"Event":…}` wrapper and the like), where it is refused.
//! * **Distribution spellings.** MISP stores 0..5 and sends them as strings
//!   (`"0"`) or numbers (`0`). PHP compares loosely (`"00" == 0`, `" 0"`,
//!   `0.0`, `1e0`), Python's older guard compared `str(value)`. Only the JSON
//!   integers 0..5 and the one-digit strings `"0"`..`"5"` are accepted; any
//!   other value (`"00"`, `" 0"`, `0.0`, `1e0`, `-1`, `6`, `null`, `true`,
//!   `"abc"`) is [`Rule::Malformed`]. A missing distribution is malformed on
//!   events, objects, event reports, analyst data and galaxy clusters (the
//!   older guard raised `KeyError` there) and on attributes (MISP would
//!   give them the receiver's default distribution, which no rule judges;
//!   MISP always sends one); proposals (which have none), cluster
//!   relations and the copies a sighting embeds may omit it.
//! * **Distribution 4 without a sharing group.** Distribution 4 with no
//!   `SharingGroup` object on the same entity cannot be checked against
//!   `blocked_sharing_groups_uuids` or `X-UserOrgUUID`; when either is in
//!   force it is [`Rule::BlockedSharingGroup`] (value `missing`). This holds
//!   for every entity with a distribution, event reports, related events and
//!   analyst data included, although MISP seldom embeds their group.
//! * **Case and blanks.** Tags, attribute types and categories, object
//!   names and sharing group uuids are compared lower-cased and trimmed
//!   (the older guard was case-sensitive on some), so `" TLP:RED "` is
//!   `tlp:red`. Required taxonomies are matched the same way.
//! * **Look-alikes.** MISP's schema declares `tags.name` `utf8mb3_bin`, a
//!   binary collation, so MISP itself tells `ｔｌｐ：ｒｅｄ` from `tlp:red`;
//!   a look-alike tag is a different tag there. Folding look-alikes
//!   anyway can only block more (a look-alike of a blocked tag is blocked
//!   too: a human reading the tag cannot tell the two apart, and other
//!   columns or instances may use a `*_ci` collation). Before the
//!   comparison above, full-width ASCII (U+FF01..U+FF5E) is folded to
//!   ASCII in tags, cluster tag names and uuids, types, categories, object
//!   names and sharing group uuids. This is not NFKC: other look-alikes
//!   (`tlp:ʀed`) are left as they are. Policy entries are not folded.
//! * **Control and invisible characters.** PHP's `trim()` strips
//!   `" \t\n\r\0\x0B"` and MISP trims what it saves, so `"email\u0000"` is
//!   `email` to MISP but not to a plain Unicode trim; and `tlp:` + U+2063 +
//!   `red` reads as `tlp:red` to a person but is another string to any
//!   comparison. A tag name, cluster `tag_name` or `uuid`, attribute type
//!   or category, object name or sharing group uuid holding a control
//!   character (C0, DEL, C1), a format character (general category Cf:
//!   zero-width ones, the soft hyphen, invisible operators U+2061..U+2064,
//!   U+180E, bidirectional controls, tag characters), a private-use or
//!   unassigned code point, or another default-ignorable one (Hangul
//!   fillers, variation selectors, the combining grapheme joiner) is
//!   [`Rule::Malformed`] (the value is shown escaped): no real MISP name
//!   has one, and no list of characters to fold away could be complete.
//!   Tag names (and a cluster's `tag_name`) alone may hold the zero-width
//!   non-joiner and joiner and the variation selectors, which real tags
//!   use (emoji such as `⚠️`, ZWJ sequences, Persian and Indic words):
//!   the blocked tags are compared with the name's skeleton without them
//!   (so `tlp:` + U+200D + `red` is `tlp:red`), the required taxonomies
//!   and allowed tags with the name as it reads, so a look-alike never
//!   satisfies one; a name of nothing but joiners is malformed.
//!   What remains is trimmed of Unicode white space, a superset of PHP's
//!   set. Distribution strings stay one digit, nothing trimmed.
//! * **Blank categories.** MISP's `Attribute::beforeValidateMassage`
//!   replaces a category that PHP's `empty()` calls empty (`""`, `"0"`,
//!   after its trim `" "` and `"0 "`) by the type's default category, and
//!   that may be a blocked one (`first-name` defaults to `Person`). So an
//!   attribute or proposal category that is `""` or `"0"` after the trim
//!   and folding above is [`Rule::Malformed`], wherever attributes are read
//!   (events, objects, wrapped attributes, relationships, proposals). Our
//!   trim is wider than PHP's (`"\u{a0}0"` and full-width `"０"` are
//!   refused too; MISP would refuse them as invalid categories).
//!   `"00"` is not `empty()` and is compared as it is. The attribute a
//!   sighting embeds may lack a category, and a blank one counts as absent.
//! * **Types.** A rule field of the wrong JSON type (a number as `type`, a
//!   tag without a string `name`) is [`Rule::Malformed`], where the older
//!   guard silently compared unequal. Attributes need `type` and
//!   `category` (but for the copy a sighting embeds), objects `name`.
//! * **Encoding.** The body must be UTF-8 (serde_json checks every string,
//!   skipped ones too, because skipped values are read as strings, not
//!   ignored); `\ud800` and other lone surrogate escapes are refused. A
//!   byte order mark is refused (PHP's decoder refuses it too).
//! * **Trailing bytes** after the document are refused, as is an empty
//!   body. Python would refuse them as well; PHP returns `null`.
//! * **Numbers** such as `1e400` are read as floats; none are rule fields
//!   except distribution (see above) and `minimal`/`published`, which must
//!   be `1` or `"1"` (Python accepted `true` and `1.0`).
//! * **Search flags.** `EventsController::index` and `_harvestParameters`
//!   search `$data['request']` instead of the body when it is set, and
//!   `index` folds keys case-insensitively and drops a `search` prefix
//!   (`Minimal`, `searchminimal`, `searchpublished` all land on the flags,
//!   the last one winning). In a search body ([`Document::MinimalSearch`])
//!   a `request` key in any case, and any key other than `minimal` and
//!   `published` that folds to one of them (ASCII lower-case, an optional
//!   `search` prefix dropped, whatever its case), is
//!   [`Rule::NotMinimalSearch`] naming the key, at once. URL named
//!   parameters (`/minimal:0`) are the path's business, not the body's.
//! * **`RelatedEvent`** entries (`{"Event":{…}}` summaries of other events)
//!   are checked like events (distribution, sharing group, tags) but not
//!   for required taxonomies, which summaries never carry. A summary
//!   carries no tags, so tag rules cannot be judged on it, and its `info`
//!   names an event the receiver may not be allowed to see (MISP puts them
//!   in its answer to a push's `events/add` and `events/edit`). So when
//!   the policy has blocked tags or required taxonomies, a non-empty
//!   `RelatedEvent` list is [`Rule::BlockedTag`] with the value
//!   `RelatedEvent (tags not visible)`, ranked after everything else of
//!   its event. MISP's own traffic carries none: the pull pins
//!   `includeEventCorrelations:0` and a pushing MISP never reads the
//!   answer's `RelatedEvent`. An empty list passes.
//! * **Sightings search.** `Sighting::restSearch` honours `includeEvent`
//!   and `includeAttribute` (event titles, attribute values) and more, and
//!   `_harvestParameters` reads `request` instead of the body, so the pull
//!   body ([`Document::SightingSearch`]) may hold MISP's own keys only,
//!   spelled exactly: `returnFormat` `"json"`, `last` a whole number or
//!   digit string, `includeUuid` `true`/`1`/`"1"`, `uuid` 1 to 20 strings
//!   (an empty list would lift the event filter), `org_id` strings.
//! * **Relationships.** `related_object` is read under the interpretation
//!   its shape gives (`{"Event":…}`, `{"Attribute":…}`, `{"Object":…}`,
//!   `{"GalaxyCluster":…}`, `{"Note"|…:…}` or a bare analyst data object),
//!   before or after `related_object_type`; if the two disagree the body is
//!   malformed. `null`, `[]` and `{}` carry nothing to check.
//! * **Wrapped entities.** MISP's `captureObject` saves `$item['Object']`
//!   instead of the item when an `Event.Object` item has an `Object` key,
//!   and `EventReport::captureReport` saves `$item['EventReport']` the same
//!   way; the inner one keeps a *local* `sharing_group_id` (the object's
//!   `SharingGroup` is ignored), its attributes attach tags by local id,
//!   and a pull's distribution downgrade does not reach it. No MISP sends
//!   either form (nor an `Attribute` inside an attribute, which no save
//!   path unwraps), so each is [`Rule::Malformed`] at
//!   `Event.Object[0].Object`: judging the inner one would not be enough.
//!   The wrapped forms MISP does send are read as it reads them: the
//!   `{"Event":…}`, `{"GalaxyCluster":…}`, `{"ShadowAttribute":…}` (pull
//!   pages), `{"Sighting":…}` and `{"Note"|…:…}` wrappers, and a cluster
//!   relation's `{"GalaxyClusterRelation":…}` items.
//! * **Tag links.** Besides `Tag` lists, MISP's capture code attaches the
//!   tags of `EventTag` and `AttributeTag` (`[{"Tag":{"name":…}}]`, or
//!   PHP's single-link form `{"id":…,"Tag":{…}}`). Their `Tag` objects get
//!   the tag rules (`Event.EventTag[0].Tag.name`) and count towards
//!   required taxonomies. A link without a `Tag` object is malformed: to
//!   PHP `{"0":{"Tag":…}}` is a list, which we would misread. A link that
//!   names a `tag_id` is malformed: `captureAttribute` saves `AttributeTag`
//!   rows as they come, so the receiver attaches *its* tag of that local
//!   id whatever the name beside it says (MISP itself sends `Tag` lists by
//!   name only).
//! * **Proposal rows.** `events/pushProposals` carries the flat rows of an
//!   event's proposals (`Server::syncProposals` posts them as they are;
//!   [`Document::ProposalRows`]), the pull page wraps each in
//!   `{"ShadowAttribute":…}`; each is judged as a proposal (type, category,
//!   and what the older guard also read: tags, distribution and sharing
//!   group where present). A wrapped row in a push is no row MISP saves.
//! * **Copies in references.** MISP's `fetchEvent` embeds in each
//!   `Object[].ObjectReference[]` a copy of the referenced attribute
//!   (`value`, `type`, `category`, distribution, sharing group) or object
//!   (`name`, …), also of one left out of the event's lists (a push drops
//!   distribution 0 and 1 from the lists, not from the copies) or of the
//!   event this one extends; a fetched cluster's relations carry a copy of
//!   their target cluster (`TargetCluster`), inbound ones of their source
//!   (`GalaxyCluster`). The receiver never saves them. Where a body goes
//!   on as it is, each is judged as a summary of its kind (whatever fields
//!   it carries, under that kind's rules; none demanded; `[]` or `null` is
//!   nothing); in an answer the guard rebuilds, they are left out.
//! * **Inbound relationships.** MISP's REST view adds `RelationshipInbound`
//!   (relationships of other entities pointing here) to events, attributes,
//!   objects, reports and analyst data, and a full cluster view its
//!   `TargetingClusterRelation`. The receiver does not save them, but they
//!   cross with their own distribution and sharing group, so they are
//!   judged as relationships and cluster relations.
//! * **Empty arrays.** PHP's `json_encode` writes an empty map as `[]`, so
//!   `[]` stands for "nothing" where MISP sends it for a map (the
//!   `analyst_data/indexMinimal` answer, the `filterAnalystDataForPush`
//!   body and each type of its answer).
//! * **Galaxies.** A galaxy cluster's `tag_name` becomes a tag of what
//!   holds it, so `Galaxy[].GalaxyCluster[]` of events and attributes is
//!   read: each cluster's `tag_name` gets the blocked-tag check (it does
//!   not count for required taxonomies), its distribution (optional there),
//!   sharing group and relations the galaxy cluster rules. Clusters pulled
//!   or pushed on their own get the `tag_name` check too.
//! * **Rebuilt cluster tags.** When MISP saves a pushed or pulled cluster
//!   it ignores the `tag_name` sent and builds
//!   `misp-galaxy:<Galaxy.type>="<uuid>"`, with the type of *its own*
//!   galaxy of that uuid (`Galaxy::captureGalaxy` returns the stored one),
//!   which the sender need not state truly. So every cluster's `uuid`
//!   (in cluster documents, search answers, events' and attributes'
//!   `Galaxy[]`, related objects) is looked up among the blocked tags of
//!   that form, whatever their type: a match is [`Rule::BlockedTag`] with
//!   the blocked tag as value, at `….GalaxyCluster.uuid` (ranked just after
//!   the cluster's own `tag_name`, which is still checked). Uuids are
//!   unique, so no other cluster is caught. The uuid is folded, trimmed
//!   and lower-cased like a tag; one that is not a string, or holds a
//!   control character, is malformed.
//! * **Cluster relations.** MISP's `captureRelations` unwraps an item
//!   `{"GalaxyClusterRelation":{…}}` and saves the inner relation, and
//!   attaches the flat `{"name":…}` items of `GalaxyClusterRelationTag`
//!   before those of `Tag`: the inner relation is judged as a relation and
//!   `GalaxyClusterRelationTag` names as tags (an item without a string
//!   `name` is malformed, where MISP would attach nothing).
//! * **Sightings** carry no rule field of their own, but a puller that
//!   asks for `includeAttribute` / `includeEvent` gets the attribute and a
//!   summary of its event inside each sighting. An embedded `Attribute`
//!   gets the attribute rules (type, category, distribution, tags, sharing
//!   group) and an `Event` the event rules, where the fields are there:
//!   these summaries may lack type, category or distribution, and carry no
//!   tags to satisfy required taxonomies, so neither is demanded. A
//!   `Sighting` key inside a sighting is read as one too.
//! * **Depth.** Nesting deeper than the limit (64 by default, serde_json's
//!   own limit is 128, PHP's 512) is refused before the stack is at risk.
//! * **Key count.** Duplicate detection remembers the keys of every open
//!   object (8 bytes each); more than 2^20 at once is refused.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};

use crate::json;

mod analyst;
mod attribute;
mod cluster;
mod documents;
mod emit;
mod engine;
mod event;
#[doc(hidden)]
pub mod fuzz;
mod judge;
mod keys;
mod list;
mod names;
mod object;
mod proposal;
mod report;
mod scalar;
mod sharing_group;
mod sighting;
mod tag;
mod value;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod rebuild_tests;
#[cfg(test)]
mod tests;

/// Nesting limit applied by [`evaluate`]: MISP documents nest about ten
/// levels deep (a relationship's related event a few more).
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Read size of [`evaluate`].
const READ_BUFFER: usize = 64 * 1024;

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
    /// sharing group met must contain it: in `SharingGroupOrg`, or by the
    /// `all_orgs` entry of the [`Context::receiver`]'s own server.
    pub user_org_uuid: Option<String>,
    /// The instance the data goes to: the destination of a request, the
    /// source of the request an answer answers. `all_orgs` on a sharing
    /// group's server entry gives the orgs *of that server* access, so it
    /// counts as membership only on the entry whose `Server.url` names
    /// this instance; unknown, no entry counts.
    pub receiver: Option<Receiver>,
    /// The body is an answer the guard may forward rebuilt: the
    /// independent items of a page that the rules forbid are left out
    /// (instead of refusing the whole page), and what the receiving MISP
    /// never reads but could carry what the rules protect (a sighting's
    /// `value`, `RelatedEvent` summaries, inbound relationships) is left
    /// out too. The verdict is then [`Verdict::Rebuild`].
    pub rebuild: bool,
}

/// An instance as a sharing group's server entry names it: MISP's
/// `Server.url`, such as `https://misp-b.example:8443/misp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    host: String,
    ip: IpAddr,
    port: u16,
}

impl Receiver {
    /// The instance whose `Server.url` names `host` (its name, or an IP
    /// literal) or `ip`, with `port` or no port.
    pub fn new(host: &str, ip: IpAddr, port: u16) -> Receiver {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        Receiver { host, ip, port }
    }

    /// Whether `url` names this instance: scheme, user info, path and
    /// case aside, its host is the instance's name or address, and a port
    /// it states is the instance's.
    fn names(&self, url: &str) -> bool {
        let url = url.trim();
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return false,
                },
                None => return false,
            },
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        if let Some(p) = port {
            if p.parse::<u16>().ok() != Some(self.port) {
                return false;
            }
        }
        let host = host.trim_end_matches('.');
        if host.is_empty() {
            return false;
        }
        let unmap = |ip| crate::addr::unmap(SocketAddr::new(ip, 0)).ip();
        host.eq_ignore_ascii_case(&self.host)
            || host
                .parse::<IpAddr>()
                .is_ok_and(|ip| unmap(ip) == unmap(self.ip))
    }
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
    /// `[{"ShadowAttribute":{…}},…]`: the pull proposals page.
    ShadowAttributeList,
    /// `[{…},…]`: the flat proposal rows `events/pushProposals` carries
    /// (`Server::syncProposals` posts `$event['ShadowAttribute']` as it
    /// is, and `EventsController::pushProposals` reads rows so), each
    /// judged as a proposal.
    ProposalRows,
    /// Sightings: a list (or PHP's empty `{}`) of sighting objects, or
    /// `{"response":[{"Sighting":{…}}]}`. What a sighting embeds (its
    /// `Attribute`, a summary of its `Event`) is checked.
    Sightings,
    /// `{"Note"|"Opinion"|"Relationship":{…}}`: push `pushAnalystData`.
    AnalystDataItem,
    /// `[{"Note"|"Opinion"|"Relationship":{…}},…]`: pull `analyst_data/index`.
    AnalystDataList,
    /// `{"Note":{uuid:modified}|[…],…}`: `indexMinimal` answer,
    /// `filterAnalystDataForPush` body and answer; `[]` when there is
    /// nothing (PHP's empty map).
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
    /// `{"returnFormat":"json","last":…,"includeUuid":true,"uuid":[…],
    /// "org_id":[…]}`: the sightings pull search body. Exactly these keys
    /// (`returnFormat` and 1 to 20 `uuid`s required); anything else, such
    /// as `includeEvent`, `includeAttribute` or `request`, in any spelling,
    /// is [`Rule::Malformed`] naming the key.
    SightingSearch,
    /// Any single JSON value (strictly parsed, duplicate keys refused).
    AnyJson,
}

/// The outcome of inspecting one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The body may be forwarded; the [`Pass`] proves it.
    Allow(Pass),
    /// The body may not be forwarded as it is, but an answer rebuilt
    /// without what [`Rebuild`] lists may ([`Rebuild::rebuilder`]).
    Rebuild(Rebuild),
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

    /// Forward a body the rules blocked (or would forward only rebuilt)
    /// as it came: the monitor mode's pass (`guard.mode: "monitor"`), whose
    /// caller logs the block instead of enforcing it. Named so that every
    /// use is visible in review.
    pub fn despite(_block: &Block) -> Pass {
        Pass { _private: () }
    }
}

/// What an answer is rebuilt without: page items the rules forbid (with
/// why) and members the receiver never reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    doc: Document,
    removed: Vec<(u32, Block)>,
    filler: bool,
    stripped: Vec<(&'static str, u64)>,
}

impl Rebuild {
    /// The page items left out, by index, and why.
    pub fn removed(&self) -> &[(u32, Block)] {
        &self.removed
    }

    /// The members left out: their name, how many.
    pub fn stripped(&self) -> &[(&'static str, u64)] {
        &self.stripped
    }

    /// One line for the log: what was left out, and the first reasons.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.removed.is_empty() {
            let reasons: Vec<String> = self
                .removed
                .iter()
                .take(3)
                .map(|(_, b)| b.to_string())
                .collect();
            let more = if self.removed.len() > 3 { "; …" } else { "" };
            let instead = if self.filler {
                " (each replaced by an empty one, so the paging goes on)"
            } else {
                ""
            };
            parts.push(format!(
                "{} item(s) removed{instead}: {}{more}",
                self.removed.len(),
                reasons.join("; ")
            ));
        }
        for (name, count) in &self.stripped {
            parts.push(format!(
                "{name} left out ({count}×, not read by the receiver)"
            ));
        }
        parts.join("; ")
    }

    /// The refusal that stands where the answer cannot be rebuilt.
    pub fn unbuilt(&self) -> Block {
        let first = self.removed.first().map(|(_, b)| b.clone());
        first.unwrap_or_else(|| Block {
            rule: Rule::Malformed,
            value: format!("an answer to rebuild ({})", self.summary()),
            at: "$".into(),
        })
    }

    /// The second reading of the same decoded body, which writes the
    /// answer without what this lists. It judges the body again, and
    /// refuses it if that reading does not come to the same.
    pub fn rebuilder<'p>(
        &self,
        policy: &'p Policy,
        ctx: &Context,
        max_depth: usize,
    ) -> Rebuilder<'p> {
        let ctx = Context {
            rebuild: true,
            ..ctx.clone()
        };
        let mut evaluation = Evaluation::new(self.doc, policy, &ctx, max_depth);
        let removed = self.removed.iter().map(|(i, _)| *i).collect();
        let filler = self.filler.then_some(proposal::FILLER);
        evaluation.walk.emit = Some(emit::Emitter::new(removed, filler));
        Rebuilder {
            evaluation,
            expected: self.clone(),
        }
    }
}

/// Writes an answer rebuilt as a [`Rebuild`] says (see
/// [`Rebuild::rebuilder`]).
pub struct Rebuilder<'p> {
    evaluation: Evaluation<'p>,
    expected: Rebuild,
}

impl Rebuilder<'_> {
    /// Feed the next piece of the decoded body; the rebuilt bytes so far
    /// are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.evaluation.feed(chunk);
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        if let Some(e) = &mut self.evaluation.walk.emit {
            if out.is_empty() {
                *out = e.take();
            } else if e.pending() > 0 {
                out.extend_from_slice(&e.take());
            }
        }
    }

    /// The end of the body: the last rebuilt bytes go to `out`, and the
    /// rebuilt answer is allowed, or refused when the second reading did
    /// not come to the same verdict.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Pass, Block> {
        let mut evaluation = self.evaluation;
        let verdict = evaluation.conclude();
        if let Some(e) = &mut evaluation.walk.emit {
            out.extend_from_slice(&e.take());
        }
        self.evaluation = evaluation;
        match verdict {
            Verdict::Rebuild(r) if r == self.expected => Ok(Pass { _private: () }),
            Verdict::Block(b) => Err(b),
            _ => Err(Block {
                rule: Rule::Malformed,
                value: "the answer read differently the second time".into(),
                at: "$".into(),
            }),
        }
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
    /// Whether the rule is one the config sets (a blocked tag, a required
    /// taxonomy …), rather than the guard's own refusal of what it cannot
    /// read or classify (malformed, duplicate keys, a full search). Only
    /// the first kind is dry-run in monitor mode.
    pub fn is_configured(self) -> bool {
        !matches!(
            self,
            Rule::NotMinimalSearch | Rule::DuplicateKey | Rule::Malformed
        )
    }

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

/// One body being judged as it arrives: feed it the decoded body in
/// chunks of any size, then ask for the verdict.
pub struct Evaluation<'p> {
    tokenizer: json::Tokenizer,
    walk: engine::Walk<'p>,
    /// Why the reading stopped before the end, if it did.
    stopped: Option<Block>,
    policy_error: Option<Block>,
}

impl<'p> Evaluation<'p> {
    /// Judge a body that must be `doc` under `policy`, nesting at most
    /// `max_depth` levels (the top-level value is depth 1).
    pub fn new(
        doc: Document,
        policy: &'p Policy,
        ctx: &Context,
        max_depth: usize,
    ) -> Evaluation<'p> {
        let limits = json::Limits {
            max_depth,
            ..json::Limits::default()
        };
        // Satisfied taxonomies are tracked as bits of a u64.
        let policy_error = (policy.required_taxonomies.len() > 64).then(|| Block {
            rule: Rule::Malformed,
            value: "policy has more than 64 required taxonomies".into(),
            at: "$".into(),
        });
        Evaluation {
            tokenizer: json::Tokenizer::new(limits),
            walk: engine::Walk::new(judge::Judge::new(policy, ctx), doc),
            stopped: None,
            policy_error,
        }
    }

    /// The next piece of the decoded body. Returns whether more is wanted:
    /// once the body is known to be refused, the rest need not be read.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.stopped.is_some() || self.policy_error.is_some() {
            return false;
        }
        match self.tokenizer.feed(chunk, &mut self.walk) {
            Ok(()) => true,
            Err(e) => {
                self.stopped = Some(self.reading_error(e));
                false
            }
        }
    }

    /// The body could not be read to its end (a decoding error, a cap):
    /// it is refused, naming why.
    pub fn fail(mut self, why: &str) -> Verdict {
        let block = self.stopped.take().unwrap_or_else(|| Block {
            rule: Rule::Malformed,
            value: names::clip(why),
            at: self.walk.j.here(),
        });
        Verdict::Block(block)
    }

    /// The body has ended: the verdict.
    pub fn finish(mut self) -> Verdict {
        self.conclude()
    }

    fn reading_error(&mut self, e: json::Error<judge::Stop>) -> Block {
        match e {
            json::Error::Sink(_) => self.walk.j.take_fatal().unwrap_or_else(|| Block {
                rule: Rule::Malformed,
                value: "stopped".into(),
                at: self.walk.j.here(),
            }),
            json::Error::Syntax(e) => Block {
                rule: Rule::Malformed,
                value: names::clip(&e.to_string()),
                at: self.walk.j.here(),
            },
        }
    }

    fn conclude(&mut self) -> Verdict {
        if let Some(b) = self.policy_error.take().or_else(|| self.stopped.take()) {
            return Verdict::Block(b);
        }
        if let Err(e) = self.tokenizer.finish(&mut self.walk) {
            return Verdict::Block(self.reading_error(e));
        }
        let j = &mut self.walk.j;
        if let Some(b) = j.take_fatal().or_else(|| j.take_best()) {
            return Verdict::Block(b);
        }
        let page = j.page.take().unwrap_or_default();
        let stripped = j.take_stripped();
        if !page.removed.is_empty() {
            // Nothing the rules allow remains of a page that does not keep
            // MISP's paging going: refused as a whole, so MISP logs why.
            let keeps_paging = page.filler && page.total >= proposal::PAGE;
            if page.removed.len() as u64 == u64::from(page.total) && !keeps_paging {
                if let Some((_, b)) = page.removed.first() {
                    return Verdict::Block(b.clone());
                }
            }
        } else if stripped.is_empty() {
            return Verdict::Allow(Pass { _private: () });
        }
        Verdict::Rebuild(Rebuild {
            doc: self.walk.doc(),
            removed: page.removed,
            filler: page.filler,
            stripped,
        })
    }
}

/// Read `body` (already de-chunked and decoded) as a `doc` and judge it
/// under `policy`. Reads to the end: trailing bytes after the document are
/// malformed. An I/O error from `body` (a decode cap, a bad gzip stream) is
/// a [`Rule::Malformed`] block naming the error.
pub fn evaluate(body: impl Read, doc: Document, policy: &Policy, ctx: &Context) -> Verdict {
    evaluate_with_limits(body, doc, policy, ctx, DEFAULT_MAX_DEPTH)
}

/// [`evaluate`] with a nesting limit other than [`DEFAULT_MAX_DEPTH`]
/// (arrays and objects; the top-level value is depth 1).
pub fn evaluate_with_limits(
    mut body: impl Read,
    doc: Document,
    policy: &Policy,
    ctx: &Context,
    max_depth: usize,
) -> Verdict {
    let mut evaluation = Evaluation::new(doc, policy, ctx, max_depth);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match body.read(&mut buf) {
            Ok(0) => return evaluation.finish(),
            Ok(n) => {
                if !evaluation.feed(&buf[..n]) {
                    return evaluation.finish();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return evaluation.fail(&e.to_string()),
        }
    }
}
