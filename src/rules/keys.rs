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
    ThreatLevelId,
    AttributeCount,
    Analysis,
    PublishTimestamp,
    ProposalEmailLock,
    Locked,
    ExtendsUuid,
    Protected,
    EventCreatorEmail,
    CryptographicKey,
    Description,
    HideTag,
    LocalOnly,
    Inherited,
    ReferencedId,
    ReferencedUuid,
    ReferencedType,
    SourceUuid,
    ObjectUuid,
    CollectionUuid,
    GalaxyId,
    Source,
    Authors,
    Version,
    Default,
    ExtendsVersion,
    GalaxyElement,
    Meta,
    Icon,
    Namespace,
    Enabled,
    KillChainOrder,
    AttributeUuid,
    EventUuid,
    DateSighting,
    AttributeId,
    TargetCluster,
    Server,
    Url,
}

impl K {
    /// The key's bit in a per-object mask (fewer than 128 variants).
    #[inline]
    pub(super) fn bit(self) -> u128 {
        1u128 << (self as u8)
    }

    /// The key exactly as it is spelled in MISP JSON.
    pub(super) const fn text(self) -> &'static str {
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
            K::ThreatLevelId => "threat_level_id",
            K::AttributeCount => "attribute_count",
            K::Analysis => "analysis",
            K::PublishTimestamp => "publish_timestamp",
            K::ProposalEmailLock => "proposal_email_lock",
            K::Locked => "locked",
            K::ExtendsUuid => "extends_uuid",
            K::Protected => "protected",
            K::EventCreatorEmail => "event_creator_email",
            K::CryptographicKey => "CryptographicKey",
            K::Description => "description",
            K::HideTag => "hide_tag",
            K::LocalOnly => "local_only",
            K::Inherited => "inherited",
            K::ReferencedId => "referenced_id",
            K::ReferencedUuid => "referenced_uuid",
            K::ReferencedType => "referenced_type",
            K::SourceUuid => "source_uuid",
            K::ObjectUuid => "object_uuid",
            K::CollectionUuid => "collection_uuid",
            K::GalaxyId => "galaxy_id",
            K::Source => "source",
            K::Authors => "authors",
            K::Version => "version",
            K::Default => "default",
            K::ExtendsVersion => "extends_version",
            K::GalaxyElement => "GalaxyElement",
            K::Meta => "meta",
            K::Icon => "icon",
            K::Namespace => "namespace",
            K::Enabled => "enabled",
            K::KillChainOrder => "kill_chain_order",
            K::AttributeUuid => "attribute_uuid",
            K::EventUuid => "event_uuid",
            K::DateSighting => "date_sighting",
            K::AttributeId => "attribute_id",
            K::TargetCluster => "TargetCluster",
            K::Server => "Server",
            K::Url => "url",
        }
    }
}

/// A set of keys: known ones by their bit, and one more bit for all the
/// keys that are not known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Keys([u64; 2]);

/// The bit of the keys that are not known.
const UNKNOWN: usize = ALL.len();

// Every known key is in `ALL` at the place of its bit, and the bit of the
// unknown ones is the last of the 128.
const _: () = {
    assert!(ALL.len() < 128);
    let mut n = 0;
    while n < ALL.len() {
        assert!(ALL[n] as usize == n);
        n += 1;
    }
};

impl Keys {
    /// No key at all.
    pub(super) const NONE: Keys = Keys([0; 2]);
    /// Every key, known or not.
    pub(super) const ANY: Keys = Keys([u64::MAX; 2]);

    /// The known keys `ks`.
    pub(super) const fn of(ks: &[K]) -> Keys {
        let mut set = Keys::NONE;
        let mut i = 0;
        while i < ks.len() {
            let n = ks[i] as usize;
            set.0[n >> 6] |= 1 << (n & 63);
            i += 1;
        }
        set
    }

    /// One known key.
    #[inline]
    pub(super) fn one(k: K) -> Keys {
        Keys::of(&[k])
    }

    /// Whether key `k` (`None`: a key that is not known) is in the set.
    #[inline(always)]
    pub(super) fn has(self, k: Option<K>) -> bool {
        let n = k.map_or(UNKNOWN, |k| k as usize);
        self.0[(n >> 6) & 1] & (1 << (n & 63)) != 0
    }

    /// Add known key `k`; false if it was there already.
    #[inline(always)]
    fn add(&mut self, k: K) -> bool {
        let n = k as usize;
        let word = &mut self.0[(n >> 6) & 1];
        let bit = 1 << (n & 63);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

/// Every known key, in the order of its bit.
pub(super) const ALL: [K; 111] = [
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
    K::ThreatLevelId,
    K::AttributeCount,
    K::Analysis,
    K::PublishTimestamp,
    K::ProposalEmailLock,
    K::Locked,
    K::ExtendsUuid,
    K::Protected,
    K::EventCreatorEmail,
    K::CryptographicKey,
    K::Description,
    K::HideTag,
    K::LocalOnly,
    K::Inherited,
    K::ReferencedId,
    K::ReferencedUuid,
    K::ReferencedType,
    K::SourceUuid,
    K::ObjectUuid,
    K::CollectionUuid,
    K::GalaxyId,
    K::Source,
    K::Authors,
    K::Version,
    K::Default,
    K::ExtendsVersion,
    K::GalaxyElement,
    K::Meta,
    K::Icon,
    K::Namespace,
    K::Enabled,
    K::KillChainOrder,
    K::AttributeUuid,
    K::EventUuid,
    K::DateSighting,
    K::AttributeId,
    K::TargetCluster,
    K::Server,
    K::Url,
];

/// A key as two words that, with its length, tell it apart from every
/// other key of up to 16 bytes: its first and last eight bytes
/// (overlapping below 16), or for a key shorter than 8 its bytes. Both
/// ways give the same words: the table below is built at compile time.
#[inline(always)]
fn words(k: &[u8]) -> (u64, u64) {
    let n = k.len();
    if let (Some(a), Some(b)) = (k.first_chunk::<8>(), k.last_chunk::<8>()) {
        return (u64::from_le_bytes(*a), u64::from_le_bytes(*b));
    }
    if let (Some(a), Some(b)) = (k.first_chunk::<4>(), k.last_chunk::<4>()) {
        let lo = u64::from(u32::from_le_bytes(*a));
        let hi = u64::from(u32::from_le_bytes(*b));
        return (lo | hi << ((n - 4) * 8), 0);
    }
    match (k.first(), k.get(n / 2), k.last()) {
        (Some(&a), Some(&m), Some(&z)) => {
            let w = u64::from(a) | u64::from(m) << (n / 2 * 8) | u64::from(z) << ((n - 1) * 8);
            (w, 0)
        }
        _ => (0, 0),
    }
}

/// [`words`] at compile time, byte by byte.
const fn const_words(k: &[u8]) -> (u64, u64) {
    let n = k.len();
    let (mut a, mut b) = (0u64, 0u64);
    let mut i = 0;
    while i < n {
        if n >= 8 {
            if i < 8 {
                a |= (k[i] as u64) << (i * 8);
            }
            if i >= n - 8 {
                b |= (k[i] as u64) << ((i + 8 - n) * 8);
            }
        } else {
            a |= (k[i] as u64) << (i * 8);
        }
        i += 1;
    }
    (a, b)
}

/// How many bits of the hash pick a slot of [`TABLE`].
const SLOT_BITS: u32 = 9;

/// The multiplier of [`slot_of`]: one (found by trying) that gives every
/// known key a slot of its own, so a lookup is one probe. A key added to
/// [`K`] may need another; the table below refuses to build if two share.
const MIX: u64 = 0xF7FE_31D3_4DA0_22F3;

#[inline(always)]
const fn slot_of(len: usize, a: u64, b: u64) -> usize {
    let x = a ^ b.rotate_left(29) ^ (len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x.wrapping_mul(MIX) >> (64 - SLOT_BITS)) as usize
}

const NO_KEY: u8 = u8::MAX;

/// A perfect hash table from a key's words to its index in [`ALL`], and
/// for keys past 16 bytes the word of their bytes 8 to 16.
struct Table {
    slots: [u8; 1 << SLOT_BITS],
    words: [(usize, u64, u64); ALL.len()],
    middles: [u64; ALL.len()],
}

/// The longest known key: the words and the middle word cover it whole.
const LONGEST: usize = 24;

const TABLE: Table = {
    let mut t = Table {
        slots: [NO_KEY; 1 << SLOT_BITS],
        words: [(0, 0, 0); ALL.len()],
        middles: [0; ALL.len()],
    };
    let mut n = 0;
    while n < ALL.len() {
        let text = ALL[n].text().as_bytes();
        assert!(text.len() <= LONGEST);
        let (a, b) = const_words(text);
        t.words[n] = (text.len(), a, b);
        if text.len() > 16 {
            let mut i = 0;
            while i < 8 {
                t.middles[n] |= (text[8 + i] as u64) << (i * 8);
                i += 1;
            }
        }
        let h = slot_of(text.len(), a, b);
        assert!(
            t.slots[h] == NO_KEY,
            "two known keys share a slot: change MIX"
        );
        t.slots[h] = n as u8;
        n += 1;
    }
    t
};

/// Exact match, as PHP's arrays do: `"Attribute "` or `"attribute"` is not
/// `Attribute`. The key arrives unescaped, so `"n\u0061me"` is `name`.
/// One hash of the key's [`words`], one comparison of length and words
/// (and of the middle word, for the few keys longer than 16 bytes): a key
/// that is not the one of its slot is no known key.
#[inline(always)]
pub(super) fn classify(s: &str) -> Option<K> {
    let (a, b) = words(s.as_bytes());
    // An empty slot holds NO_KEY, which is past the end of `words`.
    let n = usize::from(*TABLE.slots.get(slot_of(s.len(), a, b))?);
    let &(len, ka, kb) = TABLE.words.get(n)?;
    if len != s.len() || ka != a || kb != b {
        return None;
    }
    let k = *ALL.get(n)?;
    if len <= 16 {
        return Some(k);
    }
    let middle = s.as_bytes().get(8..16)?.first_chunk::<8>()?;
    (u64::from_le_bytes(*middle) == *TABLE.middles.get(n)?).then_some(k)
}

/// Above this many keys alive at once (in all open objects together) the
/// document is refused: duplicate detection must remember every key of an
/// object, and this keeps that memory bounded (8 bytes a key).
pub(super) const MAX_LIVE_KEYS: usize = 1 << 20;

/// Objects with more keys than this switch from a linear scan to a set.
const LINEAR_KEYS: usize = 16;

/// The keys of one open object.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    known: Keys,
    start: u32,
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
            known: Keys::NONE,
            // No more than MAX_LIVE_KEYS hashes are ever kept.
            start: self.hashes.len() as u32,
            big: false,
        }
    }

    /// Record key `s` (classified as `k`) in `frame`.
    #[inline]
    pub(super) fn insert(
        &mut self,
        frame: &mut Frame,
        k: Option<K>,
        s: &str,
    ) -> Result<(), KeyError> {
        match k {
            Some(k) if frame.known.add(k) => Ok(()),
            Some(_) => Err(KeyError::Duplicate),
            None => self.insert_other(frame, s),
        }
    }

    /// Record a key that is not a known one, by its hash.
    #[inline(never)]
    fn insert_other(&mut self, frame: &mut Frame, s: &str) -> Result<(), KeyError> {
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
        let start = frame.start as usize;
        let mine = self.hashes.get(start..).unwrap_or(&[]);
        if mine.contains(&h) {
            return Err(KeyError::Duplicate);
        }
        if mine.len() < LINEAR_KEYS {
            self.hashes.push(h);
            return Ok(());
        }
        let mut set: HashSet<u64> = self.hashes.drain(start..).collect();
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
            self.hashes.truncate(frame.start as usize);
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

    #[test]
    fn a_key_one_byte_off_is_not_the_known_one() {
        for k in ALL {
            let text = k.text();
            for i in 0..text.len() {
                let mut bytes = text.as_bytes().to_vec();
                bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
                let near = String::from_utf8(bytes).expect("ASCII");
                assert_ne!(classify(&near), Some(k), "{near}");
            }
            assert_eq!(classify(&format!("{text}x")), None, "{text}x");
            assert_eq!(classify(&text[1..]).filter(|&o| o == k), None);
        }
    }

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
