//! A MISP object: its distribution, sharing group, name, tags, attributes
//! and analyst data.

use super::analyst;
use super::attribute::WRAPPED;
use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Field, Kind, Out, Slot};
use super::Rule;

/// The keys an object reads: the value of any other is skipped whole.
pub(super) const KEYS: Keys = Keys::of(&[
    K::Distribution,
    K::SharingGroup,
    K::Name,
    K::Tag,
    K::Attribute,
    K::RelationshipInbound,
    K::Object,
    K::Note,
    K::Opinion,
    K::Relationship,
]);

#[derive(Default)]
pub(super) struct ObjectNode {
    name: bool,
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

// Object stages: distribution 0, sharing group 1, name 2, tags 3,
// attributes 4, notes 5, opinions 6, relationships 7, inbound
// relationships 8, wrapped object 9. MISP's captureObject saves
// `$object['Object']` instead of the item when the item has that key, with
// the inner object's *local* `sharing_group_id` unchecked, its
// `SharingGroup` ignored and its attributes' tags attached by local id;
// a pull's downgrade does not reach it. No MISP sends that form, and
// judging the inner object would not be enough: it is refused.
impl ObjectNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let Some(k) = k else {
            return Ok(Slot::skip());
        };
        let kind = match k {
            K::Distribution => Kind::Dist { stage: 0 },
            K::SharingGroup => Kind::Ent(Ent::Sg { stage: 1 }),
            K::Name => {
                self.name = true;
                Kind::Field {
                    field: Field::ObjectName,
                    stage: 2,
                }
            }
            K::Tag => Kind::items(Ent::Tag, 3, K::Tag),
            K::Attribute => Kind::items(Ent::Attribute, 4, K::Attribute),
            K::RelationshipInbound => return Ok(analyst::inbound(j, 8)),
            K::Object => {
                j.hit(&[9], Rule::Malformed, WRAPPED, "Object");
                Kind::Skip
            }
            _ => return Ok(analyst::lists(k, 5).unwrap_or_else(Slot::skip)),
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
        if !self.name {
            j.hit(&[2], Rule::Malformed, "missing", "name");
        }
        Ok(Out::UNIT)
    }
}
