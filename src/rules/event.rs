//! An event: its tags, distribution, sharing group, reports, analyst data,
//! attributes, objects and proposals; the summaries of related events.

use super::analyst;
use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Item, Kind, Out, Slot, Wrap};
use super::Rule;

/// The value of the block for a non-empty `RelatedEvent` list under tag
/// rules: its summaries carry no tags to judge.
pub(super) const RELATED_EVENT_UNJUDGED: &str = "RelatedEvent (tags not visible)";

/// The keys an event reads: the value of any other is skipped whole.
pub(super) const KEYS: Keys = Keys::of(&[
    K::Tag,
    K::EventTag,
    K::Galaxy,
    K::Distribution,
    K::EventReport,
    K::SharingGroup,
    K::Attribute,
    K::Object,
    K::ShadowAttribute,
    K::RelatedEvent,
    K::RelationshipInbound,
    K::Note,
    K::Opinion,
    K::Relationship,
]);

pub(super) struct EventNode {
    /// Required taxonomies apply (not to summaries of other events).
    taxonomies: bool,
    /// A missing distribution is malformed (not in a sighting's summary).
    dist_required: bool,
    dist: Option<Option<u8>>,
    tags: Option<u64>,
    sg: Option<(bool, bool)>,
}

impl EventNode {
    pub(super) fn new(taxonomies: bool, dist_required: bool) -> EventNode {
        EventNode {
            taxonomies,
            dist_required,
            dist: None,
            tags: None,
            sg: None,
        }
    }
}

// Event stages, in the older guard's order: tags 0, required taxonomies 3,
// distribution 4, event reports 5, sharing group 6, notes 7, opinions 8,
// relationships 9, then attributes 10, objects 11, and what it never
// looked at: event tag links 1 and galaxies 2 (tags MISP attaches too),
// event-level proposals 12, related events 13, inbound relationships 14.
impl EventNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let Some(k) = k else {
            return Ok(Slot::skip());
        };
        let kind = match k {
            K::Tag => Kind::items(Ent::Tag, 0, K::Tag),
            K::EventTag => Kind::Links {
                group: 1,
                name: K::EventTag.into(),
            },
            K::Galaxy => Kind::items(Ent::Galaxy, 2, K::Galaxy),
            K::Distribution => Kind::Dist { stage: 4 },
            K::EventReport => Kind::items(Ent::Report, 5, K::EventReport),
            K::SharingGroup => Kind::Ent(Ent::Sg { stage: 6 }),
            K::Attribute => Kind::items(Ent::Attribute, 10, K::Attribute),
            K::Object => Kind::items(Ent::Object, 11, K::Object),
            K::ShadowAttribute => Kind::items(Ent::Proposal, 12, K::ShadowAttribute),
            // The summaries of the remote's correlating events: in an
            // answer, the receiver never reads them (`Server::push` takes
            // the add/edit answer's status only), so they are left out.
            K::RelatedEvent if j.rebuild => return Ok(Slot::strip(K::RelatedEvent)),
            K::RelatedEvent => Kind::List {
                item: Item::Wrap(Wrap::RelatedEvent),
                group: 13,
                name: K::RelatedEvent.into(),
            },
            K::RelationshipInbound => return Ok(analyst::inbound(j, 14)),
            _ => return Ok(analyst::lists(k, 7).unwrap_or_else(Slot::skip)),
        };
        Ok(Slot::of(kind))
    }

    #[inline]
    pub(super) fn value(&mut self, j: &mut Judge<'_>, k: Option<K>, out: Out) {
        match k {
            Some(K::Tag | K::EventTag) => self.tags = Some(self.tags.unwrap_or(0) | out.bits()),
            Some(K::Distribution) => self.dist = out.dist(),
            Some(K::SharingGroup) => self.sg = out.sg(),
            // A related event summary carries no tags, so blocked tags and
            // required taxonomies cannot be judged on it, and its `info`
            // names an event the receiver may not be allowed to see. The
            // pull pins includeEventCorrelations:0, so MISP's own pulls
            // carry none.
            Some(K::RelatedEvent) if !j.rebuild && out.bits() != 0 && j.has_tag_rules() => {
                j.hit(
                    &[13],
                    Rule::BlockedTag,
                    RELATED_EVENT_UNJUDGED,
                    "RelatedEvent",
                );
            }
            _ => {}
        }
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if self.taxonomies {
            j.required_taxonomies(3, self.tags);
        }
        if self.dist.is_none() && self.dist_required {
            j.hit(&[4], Rule::Malformed, "missing", "distribution");
        }
        j.sg_end(6, self.dist, self.sg);
        // Seen by the `RelatedEvent` list of the holder: one bit, "there
        // was an event", whatever it held.
        Ok(Out::of_bits(1))
    }
}
