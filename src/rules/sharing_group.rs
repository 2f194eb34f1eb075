//! A sharing group: its uuid, and whether it holds the receiving
//! organisation (an org of `SharingGroupOrg`, or the receiving instance's
//! own server entry with `all_orgs`).

use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Field, Kind, Name, Out, Slot};
use super::Rule;

/// The keys a sharing group reads: the value of any other is skipped
/// whole.
pub(super) const KEYS: Keys = Keys::of(&[K::Uuid, K::SharingGroupOrg, K::SharingGroupServer]);

pub(super) struct SgNode {
    stage: u8,
    uuid: bool,
    member: bool,
    all_orgs: bool,
}

impl SgNode {
    pub(super) fn new(stage: u8) -> SgNode {
        SgNode {
            stage,
            uuid: false,
            member: false,
            all_orgs: false,
        }
    }

    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let kind = match k {
            Some(K::Uuid) => {
                self.uuid = true;
                Kind::Field {
                    field: Field::SgUuid,
                    stage: self.stage,
                }
            }
            Some(K::SharingGroupOrg) => Kind::items(Ent::SgOrg, 0, Name::SgOrgs),
            Some(K::SharingGroupServer) => Kind::items(Ent::SgServer, 0, Name::SgServers),
            _ => Kind::Skip,
        };
        Ok(Slot::of(kind))
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        match k {
            Some(K::SharingGroupOrg) => self.member |= out.bits() != 0,
            Some(K::SharingGroupServer) => self.all_orgs |= out.bits() != 0,
            _ => {}
        }
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if !self.uuid {
            j.hit(
                &[self.stage.into()],
                Rule::Malformed,
                "missing",
                "SharingGroup.uuid",
            );
        }
        Ok(Out::of_sg(self.member, self.all_orgs))
    }
}

/// An object of which one key matters: its value's bits are the answer
/// (an organisation's `uuid`, a server's `all_orgs`, a galaxy's clusters).
pub(super) struct PickNode {
    key: K,
    kind: Kind,
    bits: u64,
}

impl PickNode {
    pub(super) fn new(key: K, kind: Kind) -> PickNode {
        PickNode { key, kind, bits: 0 }
    }

    /// The one key it reads.
    pub(super) fn keys(&self) -> Keys {
        Keys::one(self.key)
    }

    /// A sharing group's organisation entry: its `Organisation`.
    pub(super) fn sg_org() -> PickNode {
        PickNode::new(K::Organisation, Kind::Ent(Ent::Organisation))
    }

    /// A server entry's `Server`: whether its `url` names the receiving
    /// instance.
    pub(super) fn server() -> PickNode {
        PickNode::new(K::Url, Kind::ServerUrl)
    }

    /// An organisation: whether its `uuid` is the receiving one.
    pub(super) fn organisation() -> PickNode {
        PickNode::new(K::Uuid, Kind::OrgUuid)
    }

    /// A galaxy: its clusters (whose distribution may be absent).
    pub(super) fn galaxy() -> PickNode {
        PickNode::new(
            K::GalaxyCluster,
            Kind::items(Ent::Cluster { minimal: true }, 0, K::GalaxyCluster),
        )
    }

    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        if k == Some(self.key) {
            return Ok(Slot::of(self.kind));
        }
        Ok(Slot::skip())
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        if k == Some(self.key) {
            self.bits |= out.bits();
        }
    }

    pub(super) fn end(&mut self, _: &mut Judge<'_>) -> Result<Out, Stop> {
        Ok(Out::of_bits(self.bits))
    }
}

/// The keys a sharing group's server entry reads.
pub(super) const SERVER_KEYS: Keys = Keys::of(&[K::AllOrgs, K::Server]);

/// A sharing group's server entry. `all_orgs` there gives every org *of
/// that server* access (MISP's `SharingGroup::checkIfAuthorised` and
/// friends), so it makes the receiving organisation a member only when
/// the entry's `Server` is the receiving instance; a roaming group "org A
/// and all orgs of instance C" holds no org of instance B.
#[derive(Default)]
pub(super) struct SgServerNode {
    all_orgs: bool,
    receiver: bool,
}

impl SgServerNode {
    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        Ok(match k {
            Some(K::AllOrgs) => Slot::of(Kind::Truthy),
            Some(K::Server) => Slot::of(Kind::Server),
            _ => Slot::skip(),
        })
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        match k {
            Some(K::AllOrgs) => self.all_orgs = out.bits() != 0,
            Some(K::Server) => self.receiver = out.bits() != 0,
            _ => {}
        }
    }

    pub(super) fn end(&mut self, _: &mut Judge<'_>) -> Result<Out, Stop> {
        Ok(Out::of_bits(u64::from(self.all_orgs && self.receiver)))
    }
}
