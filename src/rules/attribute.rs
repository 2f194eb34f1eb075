//! An attribute, the copy of one a sighting embeds, and a proposal (which
//! MISP stores as an attribute without distribution of its own).

use super::analyst;
use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Field, Kind, Out, Slot};
use super::Rule;

/// The value of the block for an entity wrapped in another of its kind.
pub(super) const WRAPPED: &str = "a wrapped form MISP does not send";

/// What an attribute-shaped object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavour {
    /// An attribute of an event or object: type, category and
    /// distribution required.
    Attribute,
    /// A copy MISP embeds elsewhere (a sighting's `includeAttribute`, the
    /// target of an object reference): type, category and distribution
    /// may be absent, required taxonomies do not apply (it carries no
    /// tags of its own to satisfy them); what it carries is judged.
    Summary,
    /// A proposal: it has no distribution of its own.
    Proposal,
}

/// The keys an attribute reads: the value of any other is skipped whole.
pub(super) const KEYS: Keys = Keys::of(&[
    K::Category,
    K::Type,
    K::Distribution,
    K::Tag,
    K::AttributeTag,
    K::Galaxy,
    K::SharingGroup,
    K::ShadowAttribute,
    K::RelationshipInbound,
    K::Attribute,
    K::Note,
    K::Opinion,
    K::Relationship,
]);

pub(super) struct AttributeNode {
    flavour: Flavour,
    category: bool,
    kind: bool,
    dist: Option<Option<u8>>,
    tags: Option<u64>,
    sg: Option<(bool, bool)>,
}

impl AttributeNode {
    pub(super) fn new(flavour: Flavour) -> AttributeNode {
        AttributeNode {
            flavour,
            category: false,
            kind: false,
            dist: None,
            tags: None,
            sg: None,
        }
    }

    fn summary(&self) -> bool {
        self.flavour == Flavour::Summary
    }
}

// Attribute stages: category 0, type 1, distribution 2, tags 3, tag
// links 4, galaxies 5, required taxonomies 6, sharing group 7, proposals 8,
// notes 9, opinions 10, relationships 11, inbound relationships 12, an
// `Attribute` inside 13. MISP's save paths do not unwrap an inner
// `Attribute` and no MISP sends one, so it is refused rather than guessed
// at.
impl AttributeNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        let Some(k) = k else {
            return Ok(Slot::skip());
        };
        let kind = match k {
            K::Category => {
                self.category = true;
                let summary = self.summary();
                Kind::Field {
                    field: Field::Category { summary },
                    stage: 0,
                }
            }
            K::Type => {
                self.kind = true;
                Kind::Field {
                    field: Field::Type,
                    stage: 1,
                }
            }
            K::Distribution => Kind::Dist { stage: 2 },
            K::Tag => Kind::items(Ent::Tag, 3, K::Tag),
            K::AttributeTag => Kind::Links {
                group: 4,
                name: K::AttributeTag.into(),
            },
            K::Galaxy => Kind::items(Ent::Galaxy, 5, K::Galaxy),
            K::SharingGroup => Kind::Ent(Ent::Sg { stage: 7 }),
            K::ShadowAttribute => Kind::items(Ent::Proposal, 8, K::ShadowAttribute),
            K::RelationshipInbound => return Ok(analyst::inbound(j, 12)),
            K::Attribute => {
                j.hit(&[13], Rule::Malformed, WRAPPED, "Attribute");
                Kind::Skip
            }
            _ => return Ok(analyst::lists(k, 9).unwrap_or_else(Slot::skip)),
        };
        Ok(Slot::of(kind))
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        match k {
            Some(K::Distribution) => self.dist = out.dist(),
            Some(K::Tag | K::AttributeTag) => self.tags = Some(self.tags.unwrap_or(0) | out.bits()),
            Some(K::SharingGroup) => self.sg = out.sg(),
            _ => {}
        }
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        let summary = self.summary();
        if !self.category && !summary {
            j.hit(&[0], Rule::Malformed, "missing", "category");
        }
        if !self.kind && !summary {
            j.hit(&[1], Rule::Malformed, "missing", "type");
        }
        // MISP gives an attribute without one the receiver's default
        // distribution, which no rule here can judge; MISP always sends it.
        if self.dist.is_none() && self.flavour == Flavour::Attribute {
            j.hit(&[2], Rule::Malformed, "missing", "distribution");
        }
        // A proposal has no tags in MISP (and a summary none either): a
        // required taxonomy would refuse every one of them.
        if !j.policy().required_taxonomies.is_empty() && self.flavour == Flavour::Attribute {
            j.required_taxonomies(6, self.tags);
        }
        j.sg_end(7, self.dist, self.sg);
        Ok(Out::UNIT)
    }
}
