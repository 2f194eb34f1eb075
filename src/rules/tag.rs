//! Tags, and the links (`EventTag`, `AttributeTag`) that attach them.

use super::judge::{Judge, Stop};
use super::keys::{Keys, K};
use super::value::{Ent, Field, Kind, Out, Slot};
use super::Rule;

/// The value of the block for a tag link naming a local tag id.
pub(super) const TAG_BY_ID: &str = "a tag attached by its local id";

/// The keys a tag reads: the value of any other is skipped whole.
pub(super) const KEYS: Keys = Keys::of(&[K::Name]);

/// The keys a tag link reads.
pub(super) const LINK_KEYS: Keys = Keys::of(&[K::Tag, K::TagId]);

#[derive(Default)]
pub(super) struct TagNode {
    name: bool,
    bits: u64,
}

impl TagNode {
    #[inline]
    pub(super) fn key(&mut self, _: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        if k == Some(K::Name) {
            self.name = true;
            return Ok(Slot::of(Kind::Field {
                field: Field::TagName,
                stage: 0,
            }));
        }
        Ok(Slot::skip())
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        if k == Some(K::Name) {
            self.bits = out.bits();
        }
    }

    #[inline]
    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if !self.name {
            j.hit(&[0], Rule::Malformed, "missing", "name");
        }
        Ok(Out::of_bits(self.bits))
    }
}

/// One `EventTag` / `AttributeTag` item: MISP attaches its `Tag`.
#[derive(Default)]
pub(super) struct TagLinkNode {
    tag: bool,
    bits: u64,
}

impl TagLinkNode {
    #[inline]
    pub(super) fn key(&mut self, j: &mut Judge<'_>, k: Option<K>) -> Result<Slot, Stop> {
        match k {
            Some(K::Tag) => {
                self.tag = true;
                Ok(Slot::under(K::Tag, Kind::Ent(Ent::Tag)))
            }
            // `captureAttribute` saves `AttributeTag` rows as they come, so
            // the tag attached is the receiver's tag of that local id and
            // the name beside it is not read: only the name can be judged.
            Some(K::TagId) => {
                j.hit(&[1], Rule::Malformed, TAG_BY_ID, "tag_id");
                Ok(Slot::skip())
            }
            _ => Ok(Slot::skip()),
        }
    }

    #[inline]
    pub(super) fn value(&mut self, _: &mut Judge<'_>, k: Option<K>, out: Out) {
        if k == Some(K::Tag) {
            self.bits = out.bits();
        }
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        // Without a `Tag` the link is unreadable for us: `{"0":{…}}` is a
        // list to PHP, and MISP would read it so.
        if !self.tag {
            j.hit(&[0], Rule::Malformed, "missing", "Tag");
        }
        Ok(Out::of_bits(self.bits))
    }
}
