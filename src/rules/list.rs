//! Arrays: lists of entities, the pages of an answer the guard may
//! rebuild (whose forbidden items are left out), lists of strings, and
//! arrays that must be empty.

use super::judge::{Judge, Place, Stop};
use super::value::{shape, Item, Kind, Name, Out};
use super::{Block, Rule};

/// What became of the items of a page.
#[derive(Debug, Clone, Default)]
pub(super) struct PageOutcome {
    /// How many items the page had.
    pub(super) total: u32,
    /// The items the rules forbid, by index, with the reason.
    pub(super) removed: Vec<(u32, Block)>,
    /// A removed item is replaced by [`super::proposal::FILLER`].
    pub(super) filler: bool,
}

/// A page being read: each item is judged alone.
struct Page {
    outcome: PageOutcome,
    /// The best hit outside the current item, set aside while it is read.
    aside: Option<(Vec<u32>, Block)>,
}

pub(super) struct ListNode {
    item: Item,
    group: u8,
    name: Name,
    index: u32,
    bits: u64,
    /// Boxed: pages are rare, and every open list moves with the stack.
    page: Option<Box<Page>>,
}

impl ListNode {
    /// A list of `item`s, ranked as `group` of its holder, under `name`.
    pub(super) fn new(item: Item, group: u8, name: Name) -> ListNode {
        ListNode {
            item,
            group,
            name,
            index: 0,
            bits: 0,
            page: None,
        }
    }

    /// A page: an item the rules forbid is left out (or replaced by
    /// `filler`) instead of refusing the whole answer.
    pub(super) fn page(item: Item, name: Name, filler: bool) -> ListNode {
        ListNode {
            page: Some(Box::new(Page {
                outcome: PageOutcome {
                    filler,
                    ..PageOutcome::default()
                },
                aside: None,
            })),
            ..ListNode::new(item, 0, name)
        }
    }

    /// The index of the item about to be read.
    pub(super) fn index(&self) -> u32 {
        self.index
    }

    /// Whether this is a page whose item `i` the rules forbade.
    pub(super) fn is_page(&self) -> bool {
        self.page.is_some()
    }

    #[inline]
    pub(super) fn open_item(&mut self, j: &mut Judge<'_>) -> Kind {
        j.enter(Place::Item {
            name: self.name,
            group: self.group,
            index: self.index,
            ranked: true,
        });
        if let Some(page) = &mut self.page {
            page.aside = j.swap_best(None);
        }
        self.item.kind()
    }

    #[inline]
    pub(super) fn close_item(&mut self, j: &mut Judge<'_>, out: Out) {
        self.bits |= out.bits();
        if let Some(page) = &mut self.page {
            if let Some((_, block)) = j.swap_best(page.aside.take()) {
                page.outcome.removed.push((self.index, block));
            }
        }
        self.index = self.index.saturating_add(1);
    }

    #[inline]
    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Out {
        if let Some(page) = self.page.take() {
            let mut outcome = page.outcome;
            outcome.total = self.index;
            j.page = Some(outcome);
        }
        Out::of_bits(self.bits)
    }
}

/// An array of `min..=max` strings.
pub(super) struct StringsNode {
    min: u32,
    max: u32,
    name: Name,
    count: u32,
}

impl StringsNode {
    pub(super) fn new(min: u32, max: u32, name: Name) -> StringsNode {
        StringsNode {
            min,
            max,
            name,
            count: 0,
        }
    }

    pub(super) fn open_item(&mut self, j: &mut Judge<'_>) -> Result<Kind, Stop> {
        if self.count >= self.max {
            let value = format!("more than {} strings", self.max);
            return Err(j.stop(Rule::Malformed, &value, self.name.text()));
        }
        j.enter(Place::Item {
            name: self.name,
            group: 0,
            index: self.count,
            ranked: false,
        });
        self.count += 1;
        Ok(Kind::Str)
    }

    pub(super) fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        if self.count < self.min {
            let value = format!("fewer than {} strings", self.min);
            return Err(j.stop(Rule::Malformed, &value, self.name.text()));
        }
        Ok(Out::UNIT)
    }
}

/// An array that may only be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EmptyNode {
    /// A `related_object` of `[]`: nothing related.
    Related,
    /// PHP's empty map, `[]`, where a map is expected.
    Map,
}

impl EmptyNode {
    pub(super) fn refuse_item(self, j: &mut Judge<'_>) -> Stop {
        match self {
            EmptyNode::Related => shape(j, Kind::Related, "a non-empty array"),
            EmptyNode::Map => j.stop(
                Rule::Malformed,
                "a non-empty array where an object was expected",
                "",
            ),
        }
    }

    pub(super) fn end(&mut self) -> Out {
        match self {
            EmptyNode::Related => Out::of_related(super::value::Interp::Empty),
            EmptyNode::Map => Out::UNIT,
        }
    }
}
