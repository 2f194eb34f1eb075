//! Object keys: the few the rules look at, and the set of keys already met
//! in each open object, so that a key given twice is refused.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

/// Keys with a fixed meaning. The first group is what the rules read; the
/// second group is only here because those keys fill every MISP document,
/// and a known key costs one bit instead of one hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum K {
    Event,
    Attribute,
    Object,
    Tag,
    ShadowAttribute,
    EventReport,
    SharingGroup,
    Note,
    Opinion,
    Relationship,
    RelatedEvent,
    GalaxyCluster,
    GalaxyClusterRelation,
    SharingGroupOrg,
    SharingGroupServer,
    Organisation,
    Response,
    Sighting,
    Name,
    Type,
    Category,
    Distribution,
    Uuid,
    AllOrgs,
    RelatedObject,
    RelatedObjectType,
    Minimal,
    Published,
    TestString,
    Timestamp,
    Id,
    Value,
    Comment,
    ToIds,
    EventId,
    ObjectId,
    Deleted,
    DisableCorrelation,
    SharingGroupId,
    ObjectRelation,
    FirstSeen,
    LastSeen,
    Galaxy,
    Colour,
    Exportable,
    Local,
    OrgId,
    OrgcId,
    Info,
    Date,
    MetaCategory,
    TemplateUuid,
    TemplateVersion,
    Org,
    Orgc,
    RelationshipType,
    IsGalaxy,
    NumericalValue,
    IsCustomGalaxy,
    UserId,
    ObjectReference,
    Data,
    EventTag,
    AttributeTag,
    TagName,
    ReturnFormat,
    Last,
    IncludeUuid,
    GalaxyClusterRelationTag,
    TagId,
    RelationshipInbound,
    TargetingClusterRelation,
}

impl K {
    /// The key's bit in a per-object mask (fewer than 128 variants).
    pub(super) fn bit(self) -> u128 {
        1u128 << (self as u8)
    }

    /// The key exactly as it is spelled in MISP JSON.
    pub(super) fn text(self) -> &'static str {
        match self {
            K::Event => "Event",
            K::Attribute => "Attribute",
            K::Object => "Object",
            K::Tag => "Tag",
            K::ShadowAttribute => "ShadowAttribute",
            K::EventReport => "EventReport",
            K::SharingGroup => "SharingGroup",
            K::Note => "Note",
            K::Opinion => "Opinion",
            K::Relationship => "Relationship",
            K::RelatedEvent => "RelatedEvent",
            K::GalaxyCluster => "GalaxyCluster",
            K::GalaxyClusterRelation => "GalaxyClusterRelation",
            K::SharingGroupOrg => "SharingGroupOrg",
            K::SharingGroupServer => "SharingGroupServer",
            K::Organisation => "Organisation",
            K::Response => "response",
            K::Sighting => "Sighting",
            K::Name => "name",
            K::Type => "type",
            K::Category => "category",
            K::Distribution => "distribution",
            K::Uuid => "uuid",
            K::AllOrgs => "all_orgs",
            K::RelatedObject => "related_object",
            K::RelatedObjectType => "related_object_type",
            K::Minimal => "minimal",
            K::Published => "published",
            K::TestString => "testString",
            K::Timestamp => "timestamp",
            K::Id => "id",
            K::Value => "value",
            K::Comment => "comment",
            K::ToIds => "to_ids",
            K::EventId => "event_id",
            K::ObjectId => "object_id",
            K::Deleted => "deleted",
            K::DisableCorrelation => "disable_correlation",
            K::SharingGroupId => "sharing_group_id",
            K::ObjectRelation => "object_relation",
            K::FirstSeen => "first_seen",
            K::LastSeen => "last_seen",
            K::Galaxy => "Galaxy",
            K::Colour => "colour",
            K::Exportable => "exportable",
            K::Local => "local",
            K::OrgId => "org_id",
            K::OrgcId => "orgc_id",
            K::Info => "info",
            K::Date => "date",
            K::MetaCategory => "meta-category",
            K::TemplateUuid => "template_uuid",
            K::TemplateVersion => "template_version",
            K::Org => "Org",
            K::Orgc => "Orgc",
            K::RelationshipType => "relationship_type",
            K::IsGalaxy => "is_galaxy",
            K::NumericalValue => "numerical_value",
            K::IsCustomGalaxy => "is_custom_galaxy",
            K::UserId => "user_id",
            K::ObjectReference => "ObjectReference",
            K::Data => "data",
            K::EventTag => "EventTag",
            K::AttributeTag => "AttributeTag",
            K::TagName => "tag_name",
            K::ReturnFormat => "returnFormat",
            K::Last => "last",
            K::IncludeUuid => "includeUuid",
            K::GalaxyClusterRelationTag => "GalaxyClusterRelationTag",
            K::TagId => "tag_id",
            K::RelationshipInbound => "RelationshipInbound",
            K::TargetingClusterRelation => "TargetingClusterRelation",
        }
    }
}

/// Exact match, as PHP's arrays do: `"Attribute "` or `"attribute"` is not
/// `Attribute`. The key arrives unescaped, so `"n\u0061me"` is `name`.
pub(super) fn classify(s: &str) -> Option<K> {
    // Dispatch on length first: most keys are rejected by one compare.
    let k = match s.len() {
        2 => match s {
            "id" => K::Id,
            _ => return None,
        },
        3 => match s {
            "Tag" => K::Tag,
            "Org" => K::Org,
            _ => return None,
        },
        4 => match s {
            "Note" => K::Note,
            "name" => K::Name,
            "type" => K::Type,
            "uuid" => K::Uuid,
            "info" => K::Info,
            "date" => K::Date,
            "Orgc" => K::Orgc,
            "data" => K::Data,
            "last" => K::Last,
            _ => return None,
        },
        5 => match s {
            "Event" => K::Event,
            "value" => K::Value,
            "local" => K::Local,
            _ => return None,
        },
        6 => match s {
            "tag_id" => K::TagId,
            "Object" => K::Object,
            "to_ids" => K::ToIds,
            "Galaxy" => K::Galaxy,
            "colour" => K::Colour,
            "org_id" => K::OrgId,
            _ => return None,
        },
        7 => match s {
            "Opinion" => K::Opinion,
            "minimal" => K::Minimal,
            "comment" => K::Comment,
            "deleted" => K::Deleted,
            "orgc_id" => K::OrgcId,
            "user_id" => K::UserId,
            _ => return None,
        },
        8 => match s {
            "response" => K::Response,
            "Sighting" => K::Sighting,
            "category" => K::Category,
            "all_orgs" => K::AllOrgs,
            "event_id" => K::EventId,
            "EventTag" => K::EventTag,
            "tag_name" => K::TagName,
            _ => return None,
        },
        9 => match s {
            "Attribute" => K::Attribute,
            "published" => K::Published,
            "timestamp" => K::Timestamp,
            "object_id" => K::ObjectId,
            "last_seen" => K::LastSeen,
            "is_galaxy" => K::IsGalaxy,
            _ => return None,
        },
        10 => match s {
            "testString" => K::TestString,
            "first_seen" => K::FirstSeen,
            "exportable" => K::Exportable,
            _ => return None,
        },
        11 => match s {
            "EventReport" => K::EventReport,
            "includeUuid" => K::IncludeUuid,
            _ => return None,
        },
        12 => match s {
            "Relationship" => K::Relationship,
            "RelatedEvent" => K::RelatedEvent,
            "SharingGroup" => K::SharingGroup,
            "Organisation" => K::Organisation,
            "distribution" => K::Distribution,
            "AttributeTag" => K::AttributeTag,
            "returnFormat" => K::ReturnFormat,
            _ => return None,
        },
        13 => match s {
            "GalaxyCluster" => K::GalaxyCluster,
            "meta-category" => K::MetaCategory,
            "template_uuid" => K::TemplateUuid,
            _ => return None,
        },
        14 => match s {
            "related_object" => K::RelatedObject,
            _ => return None,
        },
        15 => match s {
            "ShadowAttribute" => K::ShadowAttribute,
            "SharingGroupOrg" => K::SharingGroupOrg,
            "object_relation" => K::ObjectRelation,
            "numerical_value" => K::NumericalValue,
            "ObjectReference" => K::ObjectReference,
            _ => return None,
        },
        16 => match s {
            "sharing_group_id" => K::SharingGroupId,
            "template_version" => K::TemplateVersion,
            "is_custom_galaxy" => K::IsCustomGalaxy,
            _ => return None,
        },
        17 => match s {
            "relationship_type" => K::RelationshipType,
            _ => return None,
        },
        18 => match s {
            "SharingGroupServer" => K::SharingGroupServer,
            _ => return None,
        },
        19 => match s {
            "related_object_type" => K::RelatedObjectType,
            "disable_correlation" => K::DisableCorrelation,
            "RelationshipInbound" => K::RelationshipInbound,
            _ => return None,
        },
        21 => match s {
            "GalaxyClusterRelation" => K::GalaxyClusterRelation,
            _ => return None,
        },
        24 => match s {
            "GalaxyClusterRelationTag" => K::GalaxyClusterRelationTag,
            "TargetingClusterRelation" => K::TargetingClusterRelation,
            _ => return None,
        },
        _ => return None,
    };
    Some(k)
}

/// Above this many keys alive at once (in all open objects together) the
/// document is refused: duplicate detection must remember every key of an
/// object, and this keeps that memory bounded (8 bytes a key).
pub(super) const MAX_LIVE_KEYS: usize = 1 << 20;

/// Objects with more keys than this switch from a linear scan to a set.
const LINEAR_KEYS: usize = 16;

/// The keys of one open object.
pub(super) struct Frame {
    known: u128,
    start: usize,
    big: bool,
}

/// Why a key was refused.
pub(super) enum KeyError {
    Duplicate,
    TooMany,
}

/// The keys met in every open object, as hashes, on one stack shared by all
/// nesting levels: a child object always closes before its parent goes on.
/// Two different keys with equal hashes would be reported as a duplicate
/// (a false block, never a false pass); the hash keys are random per
/// evaluation, so a sender cannot aim for that.
pub(super) struct KeySet {
    hashes: Vec<u64>,
    big: Vec<HashSet<u64>>,
    big_live: usize,
    state: RandomState,
}

impl KeySet {
    pub(super) fn new() -> KeySet {
        KeySet {
            hashes: Vec::new(),
            big: Vec::new(),
            big_live: 0,
            state: RandomState::new(),
        }
    }

    /// Start the key set of a new object.
    pub(super) fn open(&self) -> Frame {
        Frame {
            known: 0,
            start: self.hashes.len(),
            big: false,
        }
    }

    /// Record key `s` (classified as `k`) in `frame`.
    pub(super) fn insert(
        &mut self,
        frame: &mut Frame,
        k: Option<K>,
        s: &str,
    ) -> Result<(), KeyError> {
        if let Some(k) = k {
            if frame.known & k.bit() != 0 {
                return Err(KeyError::Duplicate);
            }
            frame.known |= k.bit();
            return Ok(());
        }
        if self.hashes.len() + self.big_live >= MAX_LIVE_KEYS {
            return Err(KeyError::TooMany);
        }
        let h = self.state.hash_one(s);
        if frame.big {
            let set = self.big.last_mut().ok_or(KeyError::TooMany)?;
            if !set.insert(h) {
                return Err(KeyError::Duplicate);
            }
            self.big_live += 1;
            return Ok(());
        }
        let mine = self.hashes.get(frame.start..).unwrap_or(&[]);
        if mine.contains(&h) {
            return Err(KeyError::Duplicate);
        }
        if mine.len() < LINEAR_KEYS {
            self.hashes.push(h);
            return Ok(());
        }
        let mut set: HashSet<u64> = self.hashes.drain(frame.start..).collect();
        set.insert(h);
        self.big_live += set.len();
        self.big.push(set);
        frame.big = true;
        Ok(())
    }

    /// Forget the keys of an object that has ended.
    pub(super) fn close(&mut self, frame: Frame) {
        if frame.big {
            if let Some(set) = self.big.pop() {
                self.big_live -= set.len();
            }
        } else {
            self.hashes.truncate(frame.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_key_classifies_to_itself() {
        for k in ALL {
            assert_eq!(classify(k.text()), Some(k), "{}", k.text());
        }
        assert!((K::TargetingClusterRelation as u8) < 128);
        assert_eq!(classify("Attribute "), None);
        assert_eq!(classify("attribute"), None);
        assert_eq!(classify("Name"), None);
    }

    const ALL: [K; 72] = [
        K::Event,
        K::Attribute,
        K::Object,
        K::Tag,
        K::ShadowAttribute,
        K::EventReport,
        K::SharingGroup,
        K::Note,
        K::Opinion,
        K::Relationship,
        K::RelatedEvent,
        K::GalaxyCluster,
        K::GalaxyClusterRelation,
        K::SharingGroupOrg,
        K::SharingGroupServer,
        K::Organisation,
        K::Response,
        K::Sighting,
        K::Name,
        K::Type,
        K::Category,
        K::Distribution,
        K::Uuid,
        K::AllOrgs,
        K::RelatedObject,
        K::RelatedObjectType,
        K::Minimal,
        K::Published,
        K::TestString,
        K::Timestamp,
        K::Id,
        K::Value,
        K::Comment,
        K::ToIds,
        K::EventId,
        K::ObjectId,
        K::Deleted,
        K::DisableCorrelation,
        K::SharingGroupId,
        K::ObjectRelation,
        K::FirstSeen,
        K::LastSeen,
        K::Galaxy,
        K::Colour,
        K::Exportable,
        K::Local,
        K::OrgId,
        K::OrgcId,
        K::Info,
        K::Date,
        K::MetaCategory,
        K::TemplateUuid,
        K::TemplateVersion,
        K::Org,
        K::Orgc,
        K::RelationshipType,
        K::IsGalaxy,
        K::NumericalValue,
        K::IsCustomGalaxy,
        K::UserId,
        K::ObjectReference,
        K::Data,
        K::EventTag,
        K::AttributeTag,
        K::TagName,
        K::ReturnFormat,
        K::Last,
        K::IncludeUuid,
        K::GalaxyClusterRelationTag,
        K::TagId,
        K::RelationshipInbound,
        K::TargetingClusterRelation,
    ];

    #[test]
    fn duplicates_found_in_small_and_big_objects() {
        let mut ks = KeySet::new();
        let mut f = ks.open();
        assert!(ks.insert(&mut f, classify("uuid"), "uuid").is_ok());
        assert!(matches!(
            ks.insert(&mut f, classify("uuid"), "uuid"),
            Err(KeyError::Duplicate)
        ));
        for i in 0..100 {
            let s = format!("k{i}");
            assert!(ks.insert(&mut f, None, &s).is_ok());
            // a nested object in between does not disturb the parent
            let mut child = ks.open();
            assert!(ks.insert(&mut child, None, &s).is_ok());
            ks.close(child);
        }
        assert!(matches!(
            ks.insert(&mut f, None, "k7"),
            Err(KeyError::Duplicate)
        ));
        assert!(matches!(
            ks.insert(&mut f, None, "k99"),
            Err(KeyError::Duplicate)
        ));
        ks.close(f);
        assert!(ks.hashes.is_empty() && ks.big.is_empty() && ks.big_live == 0);
    }
}
