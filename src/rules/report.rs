//! An event report: its distribution, sharing group and analyst data.

use super::analyst;
use super::attribute::WRAPPED;
use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Kind, Out, Slot};
use super::Rule;

/// The keys an event report reads: the value of any other is skipped
/// whole.
pub(super) const KEYS: Keys = Keys::of(&[
    K::Distribution,
    K::SharingGroup,
    K::RelationshipInbound,
    K::EventReport,
    K::Note,
    K::Opinion,
    K::Relationship,
]);

#[derive(Default)]
pub(super) struct ReportNode {
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

// Event report stages: distribution 0, sharing group 1, notes 2,
// opinions 3, relationships 4, inbound relationships 5, wrapped report 6.
// `EventReport::captureReport` saves the inner report of an item
// `{"EventReport":{…}}` (its distribution and sharing group, which a
// pull's downgrade does not reach); no MISP sends that form: refused.
impl ReportNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let Some(k) = k else {
            return Ok(Slot::skip());
        };
        let kind = match k {
            K::Distribution => Kind::Dist { stage: 0 },
            K::SharingGroup => Kind::Ent(Ent::Sg { stage: 1 }),
            K::RelationshipInbound => return Ok(analyst::inbound(j, 5)),
            K::EventReport => {
                j.hit(&[6], Rule::Malformed, WRAPPED, "EventReport");
                Kind::Skip
            }
            _ => return Ok(analyst::lists(k, 2).unwrap_or_else(Slot::skip)),
        };
        Ok(Slot::of(kind))
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        match k {
            Some(K::Distribution) => self.dist = out.dist(),
            Some(K::SharingGroup) => self.sg = out.sg(),
            _ => {}
        }
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if self.dist.is_none() {
            j.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        j.sg_end(1, self.dist, self.sg);
        Ok(Out::UNIT)
    }
}
