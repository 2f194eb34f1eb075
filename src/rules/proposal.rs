//! Proposals (`ShadowAttribute`): judged as attributes without a
//! distribution of their own (see [`super::attribute::Flavour`]); here,
//! how a page of them is rebuilt.
//!
//! `ShadowAttribute::pullProposals` asks for pages of 1000 and stops at
//! the first page that holds fewer, so a page the guard left a proposal
//! out of would end the pull early and lose every later page. A removed
//! proposal is replaced by `{"ShadowAttribute":{}}`, which MISP's
//! `__preCaptureMassage` skips without a word (no `event_uuid`): the page
//! keeps its length and the paging goes on.

use super::Document;

/// What stands in the place of a proposal left out of a page.
pub(super) const FILLER: &str = r#"{"ShadowAttribute":{}}"#;

/// The page size MISP's proposals pull asks for (`limit:1000`, pinned by
/// the sync table).
pub(super) const PAGE: u32 = 1000;

/// Whether an item left out of a page of `doc` is replaced by [`FILLER`].
pub(super) fn has_filler(doc: Document) -> bool {
    doc == Document::ShadowAttributeList
}
