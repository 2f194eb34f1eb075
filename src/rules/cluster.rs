//! Galaxy clusters, their relations, and the galaxies of events and
//! attributes that hold clusters.

use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Field, Kind, Name, Out, Slot};
use super::Rule;

/// The keys a galaxy cluster reads: the value of any other is skipped
/// whole.
pub(super) const KEYS: Keys = Keys::of(&[
    K::Distribution,
    K::SharingGroup,
    K::GalaxyClusterRelation,
    K::TagName,
    K::Uuid,
    K::TargetingClusterRelation,
]);

/// The keys a cluster relation reads.
pub(super) const RELATION_KEYS: Keys = Keys::of(&[
    K::Distribution,
    K::Tag,
    K::GalaxyClusterRelationTag,
    K::GalaxyClusterRelation,
    K::SharingGroup,
    K::TargetCluster,
    K::GalaxyCluster,
]);

pub(super) struct ClusterNode {
    minimal: bool,
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

impl ClusterNode {
    pub(super) fn new(minimal: bool) -> ClusterNode {
        ClusterNode {
            minimal,
            dist: None,
            sg: None,
        }
    }
}

// Galaxy cluster stages: distribution 0, sharing group 1, relations 2,
// tag name 3 (MISP tags the event or attribute that holds the cluster
// with it), uuid 4 (the tag name MISP builds for itself from it), the
// relations of other clusters to this one 5 (a full view lists them, with
// their own distribution; the receiver does not save them, but they
// cross).
impl ClusterNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let kind = match k {
            Some(K::Distribution) => Kind::Dist { stage: 0 },
            Some(K::SharingGroup) => Kind::Ent(Ent::Sg { stage: 1 }),
            Some(K::GalaxyClusterRelation) => {
                Kind::items(Ent::Relation, 2, K::GalaxyClusterRelation)
            }
            Some(K::TagName) => Kind::Field {
                field: Field::ClusterTag,
                stage: 3,
            },
            Some(K::Uuid) => Kind::Field {
                field: Field::ClusterUuid,
                stage: 4,
            },
            Some(K::TargetingClusterRelation) if j.rebuild => {
                return Ok(Slot::strip(K::TargetingClusterRelation))
            }
            Some(K::TargetingClusterRelation) => {
                Kind::items(Ent::Relation, 5, K::TargetingClusterRelation)
            }
            _ => Kind::Skip,
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
        if self.dist.is_none() && !self.minimal {
            j.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        j.sg_end(1, self.dist, self.sg);
        Ok(Out::UNIT)
    }
}

/// A copy of a cluster a relation carries.
const COPY: Kind = Kind::Copy(Ent::Cluster { minimal: true });

#[derive(Default)]
pub(super) struct RelationNode {
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

// Cluster relation stages: distribution 0, tags 1, sharing group 2, the
// copy of the target cluster 3, the copy of the source cluster 4. A
// fetched cluster's relations carry a copy of the cluster they point at
// (`TargetCluster`, with its `tag_name`, value and distribution), and the
// relations of others to it (`TargetingClusterRelation`) a copy of theirs
// (`GalaxyCluster`). The receiver saves neither (`captureRelations` reads
// the relation's own fields), but they cross: judged as clusters whose
// distribution may be absent, or left out of an answer the guard
// rebuilds.
impl RelationNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let slot = match k {
            Some(K::Distribution) => Slot::of(Kind::Dist { stage: 0 }),
            Some(K::Tag) => Slot::of(Kind::items(Ent::Tag, 1, K::Tag)),
            // MISP's `captureRelations` takes these flat `{"name":…}` items
            // before `Tag` when both are there.
            Some(K::GalaxyClusterRelationTag) => {
                Slot::of(Kind::items(Ent::Tag, 1, K::GalaxyClusterRelationTag))
            }
            // ... and unwraps `{"GalaxyClusterRelation":{…}}` items, saving
            // the inner relation: judged as one.
            Some(K::GalaxyClusterRelation) => {
                Slot::under(K::GalaxyClusterRelation, Kind::Ent(Ent::Relation))
            }
            Some(K::SharingGroup) => Slot::of(Kind::Ent(Ent::Sg { stage: 2 })),
            Some(K::TargetCluster) if j.rebuild => Slot::strip(Name::RelationTarget),
            Some(K::GalaxyCluster) if j.rebuild => Slot::strip(Name::RelationSource),
            Some(K::TargetCluster) => Slot::nested(3, K::TargetCluster, COPY),
            Some(K::GalaxyCluster) => Slot::nested(4, K::GalaxyCluster, COPY),
            _ => Slot::skip(),
        };
        Ok(slot)
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
        j.sg_end(2, self.dist, self.sg);
        Ok(Out::UNIT)
    }
}
