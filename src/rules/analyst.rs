//! Analyst data (notes, opinions, relationships) and what a relationship
//! points at (`related_object`), read under the interpretation its shape
//! gives.

use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{AKind, Ent, Interp, Kind, Out, RelType, Slot};
use super::Rule;

/// The analyst data lists (`Note`, `Opinion`, `Relationship`) hanging off
/// an entity, at stages `first`, `first + 1`, `first + 2`.
pub(super) fn lists(k: K, first: u8) -> Option<Slot> {
    let (kind, stage) = match k {
        K::Note => (AKind::Note, first),
        K::Opinion => (AKind::Opinion, first + 1),
        K::Relationship => (AKind::Relationship, first + 2),
        _ => return None,
    };
    Some(Slot::of(Kind::items(Ent::Analyst(kind), stage, k)))
}

/// `RelationshipInbound`: the relationships of other entities pointing at
/// this one, which MISP's REST view adds to every entity. The receiver
/// does not save them, but they cross, each with its own distribution and
/// sharing group: judged as relationships at `stage` of the holder, or
/// left out of an answer the guard rebuilds.
pub(super) fn inbound(j: &Judge<'_>, stage: u8) -> Slot {
    if j.rebuild {
        return Slot::strip(K::RelationshipInbound);
    }
    let kind = Kind::items(
        Ent::Analyst(AKind::Relationship),
        stage,
        K::RelationshipInbound,
    );
    Slot::of(kind)
}

/// The keys analyst data reads: the value of any other is skipped whole.
pub(super) const KEYS: Keys = Keys::of(&[
    K::Distribution,
    K::SharingGroup,
    K::RelatedObjectType,
    K::RelatedObject,
    K::RelationshipInbound,
    K::Note,
    K::Opinion,
    K::Relationship,
]);

pub(super) struct AnalystNode {
    kind: AKind,
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
    rel_type: Option<RelType>,
    related: Option<Interp>,
}

impl AnalystNode {
    pub(super) fn new(kind: AKind) -> AnalystNode {
        AnalystNode {
            kind,
            dist: None,
            sg: None,
            rel_type: None,
            related: None,
        }
    }

    fn relational(&self) -> bool {
        matches!(self.kind, AKind::Relationship | AKind::Bare)
    }
}

// Analyst data stages: distribution 0, sharing group 1, related object 2,
// then its own notes 3, opinions 4, relationships 5, inbound
// relationships 6.
impl AnalystNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let Some(k) = k else {
            return Ok(Slot::skip());
        };
        let slot = match k {
            K::Distribution => Slot::of(Kind::Dist { stage: 0 }),
            K::SharingGroup => Slot::of(Kind::Ent(Ent::Sg { stage: 1 })),
            K::RelatedObjectType if self.relational() => Slot::of(Kind::RelType),
            K::RelatedObject if self.relational() => {
                Slot::nested(2, K::RelatedObject, Kind::Related)
            }
            K::RelationshipInbound => inbound(j, 6),
            _ => lists(k, 3).unwrap_or_else(Slot::skip),
        };
        Ok(slot)
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        match k {
            Some(K::Distribution) => self.dist = out.dist(),
            Some(K::SharingGroup) => self.sg = out.sg(),
            Some(K::RelatedObjectType) => {
                if let Some(t) = out.rel_type() {
                    self.rel_type = Some(t);
                }
            }
            Some(K::RelatedObject) => {
                if let Some(i) = out.related() {
                    self.related = Some(i);
                }
            }
            _ => {}
        }
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if self.dist.is_none() {
            j.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        j.sg_end(1, self.dist, self.sg);
        let related = self.related.unwrap_or(Interp::Empty);
        match (self.rel_type, related) {
            (None, Interp::Empty) => {
                if self.kind == AKind::Relationship {
                    j.hit(&[2], Rule::Malformed, "missing", "related_object_type");
                }
            }
            (None, _) => return Err(j.stop(Rule::Malformed, "missing", "related_object_type")),
            (Some(t), i) => {
                if !i.matches(t) {
                    let value =
                        format!("related_object is not of related_object_type ({i:?} vs {t:?})");
                    return Err(j.stop(Rule::Malformed, &value, "related_object"));
                }
            }
        }
        Ok(Out::UNIT)
    }
}

/// A `related_object` object: its first key tells its shape (`{"Event":…}`,
/// `{"Attribute":…}`, …, or a bare analyst data object), so it is read
/// under that one interpretation before `related_object_type` is known,
/// and the relationship checks at its end that the two agree.
pub(super) enum RelatedNode {
    Fresh,
    Wrapped(Interp),
    Bare(AnalystNode),
}

impl RelatedNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        match self {
            RelatedNode::Fresh => {
                let wrapped = match k {
                    Some(K::Event) => Some((Interp::Event, Ent::Event { related: false })),
                    Some(K::Attribute) => Some((Interp::Attribute, Ent::Attribute)),
                    Some(K::Object) => Some((Interp::Object, Ent::Object)),
                    Some(K::GalaxyCluster) => {
                        Some((Interp::GalaxyCluster, Ent::Cluster { minimal: false }))
                    }
                    Some(k @ (K::Note | K::Opinion | K::Relationship)) => {
                        Some((Interp::Wrapped(AKind::of(k)), Ent::Analyst(AKind::of(k))))
                    }
                    _ => None,
                };
                match (wrapped, k) {
                    (Some((interp, ent)), Some(k)) => {
                        *self = RelatedNode::Wrapped(interp);
                        Ok(Slot::under(k, Kind::Ent(ent)))
                    }
                    _ => {
                        let mut bare = AnalystNode::new(AKind::Bare);
                        let slot = bare.key(j, k);
                        *self = RelatedNode::Bare(bare);
                        slot
                    }
                }
            }
            RelatedNode::Wrapped(_) => Err(j.stop(Rule::Malformed, "unexpected key", "")),
            RelatedNode::Bare(a) => a.key(j, k),
        }
    }

    #[inline]
    pub(super) fn value(&mut self, j: &mut Judge<'_>, k: Option<K>, out: Out) {
        if let RelatedNode::Bare(a) = self {
            a.value(j, k, out);
        }
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        match self {
            RelatedNode::Fresh => Ok(Out::of_related(Interp::Empty)),
            RelatedNode::Wrapped(i) => Ok(Out::of_related(*i)),
            RelatedNode::Bare(a) => {
                a.end(j)?;
                Ok(Out::of_related(Interp::Bare))
            }
        }
    }
}
