//! A MISP object: its distribution, sharing group, name, tags, attributes,
//! analyst data and references (with the copies of what they point at).

use super::analyst;
use super::attribute::WRAPPED;
use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Field, Kind, Name, Out, Slot};
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
    K::ObjectReference,
]);

pub(super) struct ObjectNode {
    /// A copy of a referenced object: name and distribution may be absent.
    summary: bool,
    name: bool,
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

// Object stages: distribution 0, sharing group 1, name 2, tags 3,
// attributes 4, notes 5, opinions 6, relationships 7, inbound
// relationships 8, wrapped object 9, references 10. MISP's captureObject saves
// `$object['Object']` instead of the item when the item has that key, with
// the inner object's *local* `sharing_group_id` unchecked, its
// `SharingGroup` ignored and its attributes' tags attached by local id;
// a pull's downgrade does not reach it. No MISP sends that form, and
// judging the inner object would not be enough: it is refused.
impl ObjectNode {
    pub(super) fn new(summary: bool) -> ObjectNode {
        ObjectNode {
            summary,
            name: false,
            dist: None,
            sg: None,
        }
    }

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
            K::ObjectReference => Kind::items(Ent::Reference, 10, K::ObjectReference),
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
        if self.dist.is_none() && !self.summary {
            j.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        j.sg_end(1, self.dist, self.sg);
        if !self.name && !self.summary {
            j.hit(&[2], Rule::Malformed, "missing", "name");
        }
        Ok(Out::UNIT)
    }
}

/// The keys an object reference reads: the copies of what it points at.
pub(super) const REFERENCE_KEYS: Keys = Keys::of(&[K::Attribute, K::Object]);

/// One `ObjectReference` of an object. MISP's `fetchEvent` embeds in it a
/// copy of the referenced attribute (`value`, `type`, `category`, …) or
/// object (`name`, …), with its own distribution and sharing group, also
/// where the referenced entity itself is left out of the event's lists
/// (a push drops distribution 0 and 1 from them, a pull hides what the
/// sync user may not see) or lies in the event this one extends. The
/// receiver never reads the copies (`captureReference` saves the
/// reference's own fields), but they cross: in a body sent on as it is,
/// each is judged as a summary of its kind (what it carries, under the
/// rules of that kind, its absent fields not demanded); in an answer the
/// guard rebuilds, they are left out.
pub(super) struct ReferenceNode;

// Reference stages: the attribute copy 0, the object copy 1.
impl ReferenceNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        Ok(match k {
            Some(K::Attribute) if j.rebuild => Slot::strip(Name::ReferenceAttribute),
            Some(K::Object) if j.rebuild => Slot::strip(Name::ReferenceObject),
            Some(K::Attribute) => Slot::nested(0, K::Attribute, Kind::Copy(Ent::AttributeSummary)),
            Some(K::Object) => Slot::nested(1, K::Object, Kind::Copy(Ent::ObjectSummary)),
            _ => Slot::skip(),
        })
    }

    pub(super) fn end(&mut self, _: &mut Judge<'_>) -> Result<Out, Stop> {
        Ok(Out::UNIT)
    }
}
