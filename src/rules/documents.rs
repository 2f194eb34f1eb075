//! The documents themselves: the wrappers MISP puts around what it sends,
//! and the small documents of the sync steps (search bodies, indexes,
//! uuid lists, the connection test).

use super::judge::{Judge, Stop};
use super::keys::K;
use super::proposal;
use super::value::{Ent, Item, Kind, Name, Out, Param, Slot, Strings, Wrap};
use super::{Document, Rule};

/// The kind of the items of a document that is a list, and whether they
/// are a page (independent items an answer may be rebuilt without).
pub(super) fn root_items(doc: Document) -> Option<(Item, bool)> {
    Some(match doc {
        Document::GalaxyClusterList => (Item::Wrap(Wrap::Cluster { minimal: false }), false),
        Document::GalaxyClusterSearch => (Item::Wrap(Wrap::Cluster { minimal: true }), true),
        Document::ShadowAttributeList => (Item::Wrap(Wrap::Shadow), true),
        Document::ProposalRows => (Item::Ent(Ent::Proposal), false),
        Document::Sightings => (Item::Ent(Ent::Sighting), true),
        Document::EventIndex => (Item::Ent(Ent::IndexEntry), false),
        Document::AnalystDataList => (Item::Wrap(Wrap::AnyAnalyst), true),
        Document::EventUuidTimestamps => (Item::Wrap(Wrap::EventUuidTimestamp), false),
        Document::UuidList => (Item::Str, false),
        _ => return None,
    })
}

/// The list of `item`s under `name`: a page in an answer the guard may
/// rebuild, else a plain list.
pub(super) fn items_of(j: &Judge<'_>, doc: Document, item: Item, page: bool, name: Name) -> Kind {
    if page && j.rebuild {
        Kind::Page {
            item,
            name,
            filler: proposal::has_filler(doc),
        }
    } else {
        Kind::List {
            item,
            group: 0,
            name,
        }
    }
}

/// `{"<one key>": …}`: an object with exactly one key naming what it
/// holds.
pub(super) struct WrapNode {
    wrap: Wrap,
    seen: bool,
}

impl WrapNode {
    pub(super) fn new(wrap: Wrap) -> WrapNode {
        WrapNode { wrap, seen: false }
    }

    pub(super) fn allowed(&self) -> u128 {
        if self.seen {
            0
        } else {
            self.wrap.allowed()
        }
    }

    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        self.seen = true;
        // `allowed` let no other key through.
        let k = k.unwrap_or(K::Event);
        Ok(Slot::under(k, self.wrap.inner(k)))
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if !self.seen {
            let value = format!("missing {}", self.wrap.expected());
            return Err(j.stop(Rule::Malformed, &value, ""));
        }
        Ok(Out::of_bits(1))
    }
}

/// `{"response":[…]}`.
pub(super) struct ResponseNode {
    doc: Document,
    item: Item,
    required: bool,
    seen: bool,
}

impl ResponseNode {
    pub(super) fn new(doc: Document, item: Item, required: bool) -> ResponseNode {
        ResponseNode {
            doc,
            item,
            required,
            seen: false,
        }
    }

    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, _: Option<K>) -> Result<Slot, Stop> {
        self.seen = true;
        Ok(Slot::of(items_of(
            j,
            self.doc,
            self.item,
            true,
            K::Response.into(),
        )))
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if self.required && !self.seen {
            return Err(j.stop(Rule::Malformed, "missing response", ""));
        }
        Ok(Out::UNIT)
    }
}

/// `{"Note":{uuid:modified}|[{uuid:modified}]|[],…}`: each type's value
/// is a uuid map (or PHP's `[]`).
pub(super) fn analyst_minimal(k: Option<K>) -> Slot {
    let name = k.map_or(Name::Root, Name::Key);
    Slot::under(name, Kind::MinimalValue)
}

/// A key MISP would read instead of, or on top of, the body's `minimal`
/// and `published`. `EventsController::index` (and `_harvestParameters`)
/// search `$data['request']` instead of the body when it is set, and
/// `index` folds keys case-insensitively, dropping a `search` prefix
/// (`Minimal`, `searchminimal`, `SearchPublished`), the last one winning.
/// `request` is refused in any case, the folded spellings of the two flags
/// in any case and with any `search` prefix: wider than PHP (whose prefix
/// is case-sensitive), never narrower.
pub(super) fn shadows_search_flag(key: &str) -> bool {
    if key == "minimal" || key == "published" {
        return false;
    }
    let lower = key.to_ascii_lowercase();
    let bare = lower.strip_prefix("search").unwrap_or(&lower);
    lower == "request" || bare == "minimal" || bare == "published"
}

/// A search body that must say `minimal:1` and `published:1`.
#[derive(Default)]
pub(super) struct MinimalSearchNode {
    minimal: bool,
    published: bool,
}

impl MinimalSearchNode {
    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let kind = match k {
            Some(K::Minimal) => {
                self.minimal = true;
                Kind::One {
                    stage: 0,
                    field: K::Minimal.into(),
                }
            }
            Some(K::Published) => {
                self.published = true;
                Kind::One {
                    stage: 1,
                    field: K::Published.into(),
                }
            }
            _ => Kind::Skip,
        };
        Ok(Slot::of(kind))
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if !self.minimal {
            j.hit(&[0], Rule::NotMinimalSearch, "missing", "minimal");
        }
        if !self.published {
            j.hit(&[1], Rule::NotMinimalSearch, "missing", "published");
        }
        Ok(Out::UNIT)
    }
}

/// The keys of MISP's own sightings pull.
const SIGHTING_SEARCH_KEYS: [&str; 5] = ["returnFormat", "last", "includeUuid", "uuid", "org_id"];

/// Whether a key is not one of MISP's sightings pull search.
pub(super) fn not_a_sighting_search_key(key: &str) -> bool {
    !SIGHTING_SEARCH_KEYS.contains(&key)
}

/// The body of MISP's sightings pull (`POST /sightings/restSearch/event`).
/// `Sighting::restSearch` also honours `includeEvent` and
/// `includeAttribute` (event titles and attribute values of every sighting
/// found), `context`, `id` and more, and `_harvestParameters` reads
/// `request` instead of the body; a puller could use them to read what
/// the event rules would block. So only the keys MISP's pull sends are
/// accepted, each spelled exactly so, and `uuid` must name 1 to 20 events
/// (an empty list would lift the event filter).
#[derive(Default)]
pub(super) struct SightingSearchNode {
    return_format: bool,
    uuid: bool,
}

impl SightingSearchNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let kind = match k {
            Some(K::ReturnFormat) => {
                self.return_format = true;
                Kind::Param(Param::Json)
            }
            Some(K::Last) => Kind::Param(Param::Last),
            Some(K::IncludeUuid) => Kind::Param(Param::IncludeUuid),
            Some(K::Uuid) => {
                self.uuid = true;
                Kind::Strings(Strings::Uuids)
            }
            Some(K::OrgId) => Kind::Strings(Strings::OrgIds),
            // `not_a_sighting_search_key` lets no other key through.
            _ => return Err(j.stop(Rule::Malformed, "unexpected key", "")),
        };
        Ok(Slot::of(kind))
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if !self.return_format {
            return Err(j.stop(Rule::Malformed, "missing", "returnFormat"));
        }
        if !self.uuid {
            return Err(j.stop(Rule::Malformed, "missing", "uuid"));
        }
        Ok(Out::UNIT)
    }
}

/// `{"testString":"…"}`.
#[derive(Default)]
pub(super) struct PostTestNode {
    seen: bool,
}

impl PostTestNode {
    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, _: Option<K>) -> Result<Slot, Stop> {
        self.seen = true;
        Ok(Slot::under(K::TestString, Kind::Str))
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if !self.seen {
            return Err(j.stop(Rule::Malformed, "missing testString", ""));
        }
        Ok(Out::UNIT)
    }
}

/// `{"uuid":…,"timestamp":…}` of a `filterEventIdsForPush` candidate.
#[derive(Default)]
pub(super) struct UuidTimestampNode {
    uuid: bool,
    timestamp: bool,
}

impl UuidTimestampNode {
    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        match k {
            Some(K::Uuid) => self.uuid = true,
            _ => self.timestamp = true,
        }
        Ok(Slot::of(Kind::Scalar))
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if !self.uuid || !self.timestamp {
            return Err(j.stop(Rule::Malformed, "missing uuid or timestamp", ""));
        }
        Ok(Out::UNIT)
    }
}
