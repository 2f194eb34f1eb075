//! A sighting. Its own fields carry no rule, but it can carry what the
//! rules protect: `Sighting::getSightings` always adds the sighted
//! attribute's `value`, and a search with `includeAttribute` /
//! `includeEvent` embeds the attribute and a summary of its event.
//!
//! The receiver (`Sighting::bulkSaveSightings`, for a pull's answer and a
//! push's body alike) reads `uuid`, `attribute_uuid`, `event_uuid`,
//! `type`, `date_sighting`, `source`, `org_id` and `Organisation.uuid`,
//! nothing else. So in an answer the guard rebuilds, a sighting keeps
//! those keys (and the ids beside them), each a scalar (a container there
//! would cross unjudged: the answer is refused), and loses everything
//! else; where
//! nothing is rebuilt (a push's body), an embedded attribute or event is
//! judged, and a `value` (which MISP never pushes, and which no rule can
//! judge without its attribute's type and tags) is refused.

use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Kind, Name, Out, Slot};
use super::Rule;

/// The keys of a sighting the receiver reads, and the ids MISP sends
/// beside them.
const KEPT: [&str; 10] = [
    "id",
    "uuid",
    "attribute_id",
    "attribute_uuid",
    "event_id",
    "event_uuid",
    "org_id",
    "date_sighting",
    "type",
    "source",
];

/// The keys of a sighting's `Organisation` kept in a rebuilt answer.
const ORG_KEPT: [&str; 3] = ["id", "uuid", "name"];

/// The value of the block for a sighting's `value` where nothing is
/// rebuilt.
pub(super) const SIGHTING_VALUE: &str =
    "a sighting carrying its attribute's value (MISP never sends one, and no rule can judge it)";

/// The keys a sighting reads where nothing is rebuilt (in an answer the
/// guard rebuilds, it reads them all).
pub(super) const KEYS: Keys = Keys::of(&[K::Attribute, K::Event, K::Sighting, K::Value]);

pub(super) struct SightingNode;

// Sighting stages: attribute 0, event 1, a wrapped sighting 2, value 3.
impl SightingNode {
    #[inline]
    pub(super) fn key(
        &mut self,
        j: &mut Judge<'_>,
        k: Option<K>,
        text: &str,
    ) -> Result<Slot, Stop> {
        if j.rebuild {
            return Ok(match k {
                Some(K::Organisation) => Slot::of(Kind::Ent(Ent::SightingOrg)),
                _ if KEPT.contains(&text) => Slot::of(Kind::Kept),
                Some(K::Value) => Slot::strip(Name::SightingValue),
                Some(K::Attribute) => Slot::strip(Name::SightingAttribute),
                Some(K::Event) => Slot::strip(Name::SightingEvent),
                _ => Slot::strip(Name::SightingOther),
            });
        }
        Ok(match k {
            Some(K::Attribute) => Slot::nested(0, K::Attribute, Kind::Ent(Ent::AttributeSummary)),
            Some(K::Event) => Slot::nested(1, K::Event, Kind::Ent(Ent::EventSummary)),
            Some(K::Sighting) => Slot::nested(2, K::Sighting, Kind::Ent(Ent::Sighting)),
            Some(K::Value) => {
                j.hit(&[3], Rule::Malformed, SIGHTING_VALUE, "value");
                Slot::skip()
            }
            _ => Slot::skip(),
        })
    }

    pub(super) fn end(&mut self, _: &mut Judge<'_>) -> Result<Out, Stop> {
        Ok(Out::UNIT)
    }
}

/// A sighting's `Organisation` in an answer the guard rebuilds: its
/// `uuid` (what the receiver reads), `id` and `name`.
pub(super) struct SightingOrgNode;

impl SightingOrgNode {
    #[inline]
    pub(super) fn key(
        &mut self,
        _: &mut Judge<'_>,
        _: Option<K>,
        text: &str,
    ) -> Result<Slot, Stop> {
        if ORG_KEPT.contains(&text) {
            return Ok(Slot::of(Kind::Kept));
        }
        Ok(Slot::strip(Name::SightingOrgOther))
    }

    pub(super) fn end(&mut self, _: &mut Judge<'_>) -> Result<Out, Stop> {
        Ok(Out::UNIT)
    }
}
