//! The walk: the consumer of the tokenizer's events that reads a MISP
//! document once, checks each rule field as it goes by and skips
//! everything else.
//!
//! Each open object or array is a [`Frame`] on a stack, holding a small
//! [`Node`] (an event, an attribute, a list, …) that sees its keys one by
//! one and decides at its end what only the end can tell (a missing
//! field, a missing taxonomy, distribution 4 without a sharing group).
//! Nothing of the document is kept but the stack, one candidate block, the
//! path to the current entity, the keys of the open objects, and the text
//! of the one rule field being read (bounded).
//!
//! Most of a MISP document is what no rule reads (ids, timestamps,
//! values, comments). A value whose key says it is skipped whole, and
//! every item of an array so skipped, takes a short path: no node is
//! asked, no place is entered, its scalars are not looked at; only the
//! keys of the objects inside are still checked for duplicates.

use super::analyst::{self, AnalystNode, RelatedNode};
use super::attribute::{self, AttributeNode, Flavour};
use super::cluster::{self, ClusterNode, RelationNode};
use super::documents::{
    analyst_minimal, items_of, not_a_sighting_search_key, root_items, shadows_search_flag,
    MinimalSearchNode, PostTestNode, ResponseNode, SightingSearchNode, UuidTimestampNode, WrapNode,
};
use super::emit::Emitter;
use super::event::{self, EventNode};
use super::judge::{Judge, Marks, Place, Stop};
use super::keys::{classify, Frame as KeyFrame, KeyError, Keys, K};
use super::list::{EmptyNode, ListNode, StringsNode};
use super::object::{self, ObjectNode, ReferenceNode};
use super::report::{self, ReportNode};
use super::sharing_group::{self, PickNode, SgNode, SgServerNode};
use super::sighting::{self, SightingNode, SightingOrgNode};
use super::tag::{self, TagLinkNode, TagNode};
use super::value::{scalar, shape, string, Ent, Item, Kind, Name, Out, Scalar, Slot, Wrap};
use super::{Document, Rule};
use crate::json::{Literal, Sink};

/// The longest rule field value read: a tag name, a type, a uuid. MISP's
/// columns hold at most 255 characters; past this a value is malformed.
pub(super) const MAX_FIELD_BYTES: usize = 4096;

/// One open object or array.
struct Frame {
    node: Node,
    /// The keys met so far (none in an array).
    keys: KeyFrame,
    /// The keys whose values it reads (see [`Node::keys`]).
    interest: Keys,
    /// The key whose value is being read, and where that value goes.
    k: Option<K>,
    slot: Slot,
    /// Where the places were when this value began.
    marks: Marks,
    /// Skipped whole: its end tells its holder nothing.
    quiet: bool,
    /// An array (its values are items, not the values of keys).
    array: bool,
}

/// What an open value is.
enum Node {
    /// Any object: every key checked for duplicates, every value skipped.
    Skip,
    /// An object left out of an answer the guard rebuilds: the same, and
    /// whether it held anything.
    Strip(bool),
    Event(EventNode),
    Attribute(AttributeNode),
    Object(ObjectNode),
    Reference(ReferenceNode),
    Report(ReportNode),
    Analyst(AnalystNode),
    Related(RelatedNode),
    Cluster(ClusterNode),
    Relation(RelationNode),
    Sighting(SightingNode),
    SightingOrg(SightingOrgNode),
    Tag(TagNode),
    TagLink(TagLinkNode),
    Sg(SgNode),
    SgServer(SgServerNode),
    Pick(PickNode),
    Wrap(WrapNode),
    Response(ResponseNode),
    /// `{"Note":{…},…}` of `indexMinimal` and `filterAnalystDataForPush`.
    AnalystMinimal,
    /// An object whose values are all strings (uuid → modified).
    StrMap,
    /// One entry of the `events/index` answer: flat. Nested values
    /// (`Org`, `EventTag`, …) mean the remote answered a full index, which
    /// carries tags and more: refused.
    IndexEntry,
    MinimalSearch(MinimalSearchNode),
    SightingSearch(SightingSearchNode),
    PostTest(PostTestNode),
    UuidTimestamp(UuidTimestampNode),
    /// An array left out of an answer the guard rebuilds: its items
    /// skipped. Whether it held anything.
    SkipList(bool),
    /// Any other array whose items are skipped: they take the short path.
    Skipped,
    List(ListNode),
    Strings(StringsNode),
    Empty(EmptyNode),
}

impl Node {
    /// The node for an object read as `kind`.
    fn object(j: &mut Judge<'_>, kind: Kind) -> Result<Node, Stop> {
        Ok(match kind {
            Kind::Skip | Kind::Root(Document::AnyJson) => Node::Skip,
            Kind::Strip => Node::Strip(false),
            Kind::Root(doc) => Node::root_object(j, doc)?,
            Kind::Wrap(w) => Node::Wrap(WrapNode::new(w)),
            Kind::Ent(e) | Kind::Copy(e) => Node::entity(e),
            Kind::Related => Node::Related(RelatedNode::Fresh),
            Kind::MinimalValue => Node::StrMap,
            Kind::Server => Node::Pick(PickNode::server()),
            Kind::Links { group, name } => {
                // PHP's single-link form: one link, placed as a list would be.
                j.enter(Place::Link { name, group });
                Node::TagLink(TagLinkNode::default())
            }
            _ => return Err(shape(j, kind, "an object")),
        })
    }

    fn root_object(j: &mut Judge<'_>, doc: Document) -> Result<Node, Stop> {
        Ok(match doc {
            Document::Event => Node::Wrap(WrapNode::new(Wrap::Event)),
            Document::GalaxyCluster => Node::Wrap(WrapNode::new(Wrap::Cluster { minimal: false })),
            Document::AnalystDataItem => Node::Wrap(WrapNode::new(Wrap::AnyAnalyst)),
            Document::GalaxyClusterSearch => Node::Response(ResponseNode::new(
                doc,
                Item::Wrap(Wrap::Cluster { minimal: true }),
                true,
            )),
            Document::Sightings => {
                Node::Response(ResponseNode::new(doc, Item::Wrap(Wrap::Sighting), false))
            }
            Document::AnalystDataMinimal => Node::AnalystMinimal,
            Document::MinimalSearch => Node::MinimalSearch(MinimalSearchNode::default()),
            Document::SightingSearch => Node::SightingSearch(SightingSearchNode::default()),
            Document::PostTest => Node::PostTest(PostTestNode::default()),
            _ => return Err(shape(j, Kind::Root(doc), "an object")),
        })
    }

    fn entity(e: Ent) -> Node {
        match e {
            Ent::Event { related } => Node::Event(EventNode::new(!related, true)),
            Ent::EventSummary => Node::Event(EventNode::new(false, false)),
            Ent::Attribute => Node::Attribute(AttributeNode::new(Flavour::Attribute)),
            Ent::AttributeSummary => Node::Attribute(AttributeNode::new(Flavour::Summary)),
            Ent::Proposal => Node::Attribute(AttributeNode::new(Flavour::Proposal)),
            Ent::Sighting => Node::Sighting(SightingNode),
            Ent::SightingOrg => Node::SightingOrg(SightingOrgNode),
            Ent::Object => Node::Object(ObjectNode::new(false)),
            Ent::ObjectSummary => Node::Object(ObjectNode::new(true)),
            Ent::Reference => Node::Reference(ReferenceNode),
            Ent::Report => Node::Report(ReportNode::default()),
            Ent::Analyst(kind) => Node::Analyst(AnalystNode::new(kind)),
            Ent::Cluster { minimal } => Node::Cluster(ClusterNode::new(minimal)),
            Ent::Galaxy => Node::Pick(PickNode::galaxy()),
            Ent::Relation => Node::Relation(RelationNode::default()),
            Ent::Tag => Node::Tag(TagNode::default()),
            Ent::TagLink => Node::TagLink(TagLinkNode::default()),
            Ent::Sg { stage } => Node::Sg(SgNode::new(stage)),
            Ent::SgOrg => Node::Pick(PickNode::sg_org()),
            Ent::SgServer => Node::SgServer(SgServerNode::default()),
            Ent::Organisation => Node::Pick(PickNode::organisation()),
            Ent::EventUuidTimestamp => Node::UuidTimestamp(UuidTimestampNode::default()),
            Ent::StrMap => Node::StrMap,
            Ent::IndexEntry => Node::IndexEntry,
        }
    }

    /// The node for an array read as `kind`.
    fn array(j: &mut Judge<'_>, kind: Kind) -> Result<Node, Stop> {
        Ok(match kind {
            Kind::Skip | Kind::Root(Document::AnyJson) => Node::Skipped,
            Kind::Strip => Node::SkipList(false),
            Kind::List { item, group, name } => Node::List(ListNode::new(item, group, name)),
            Kind::Page { item, name, filler } => Node::List(ListNode::page(item, name, filler)),
            Kind::Links { group, name } => {
                Node::List(ListNode::new(Item::Ent(Ent::TagLink), group, name))
            }
            Kind::Root(Document::AnalystDataMinimal) => Node::Empty(EmptyNode::Map),
            Kind::Root(doc) => match root_items(doc) {
                Some((item, page)) => match items_of(j, doc, item, page, Name::Root) {
                    Kind::Page { item, name, filler } => {
                        Node::List(ListNode::page(item, name, filler))
                    }
                    _ => Node::List(ListNode::new(item, 0, Name::Root)),
                },
                None => return Err(shape(j, kind, "an array")),
            },
            Kind::Related => Node::Empty(EmptyNode::Related),
            // PHP's empty array: the owner's own entry, no receiver.
            Kind::Server => Node::Skipped,
            Kind::Copy(_) => Node::Empty(EmptyNode::Map),
            Kind::MinimalValue => Node::List(ListNode::new(Item::Ent(Ent::StrMap), 0, Name::Root)),
            Kind::Strings(list) => {
                let (min, max) = list.bounds();
                Node::Strings(StringsNode::new(min, max, list.name()))
            }
            _ => return Err(shape(j, kind, "an array")),
        })
    }

    /// The keys this object does anything with: the value of any other
    /// is skipped whole without asking it (its `key` would say so).
    #[inline]
    fn keys(&self, rebuild: bool) -> Keys {
        match self {
            Node::Skip => Keys::NONE,
            Node::Event(_) => event::KEYS,
            Node::Attribute(_) => attribute::KEYS,
            Node::Object(_) => object::KEYS,
            Node::Reference(_) => object::REFERENCE_KEYS,
            Node::Report(_) => report::KEYS,
            Node::Analyst(_) => analyst::KEYS,
            Node::Cluster(_) => cluster::KEYS,
            Node::Relation(_) => cluster::RELATION_KEYS,
            Node::Sighting(_) if !rebuild => sighting::KEYS,
            Node::Tag(_) => tag::KEYS,
            Node::TagLink(_) => tag::LINK_KEYS,
            Node::Sg(_) => sharing_group::KEYS,
            Node::SgServer(_) => sharing_group::SERVER_KEYS,
            Node::Pick(n) => n.keys(),
            // Read by the first key, by a key's text, or refusing keys.
            _ => Keys::ANY,
        }
    }

    /// Where the value of key `k` (spelled `text`) goes. An object of
    /// fixed shape refuses what it may not hold, by the key's text or by
    /// the known keys it may have.
    #[inline]
    fn key(&mut self, j: &mut Judge<'_>, k: Option<K>, text: &str) -> Result<Slot, Stop> {
        match self {
            Node::Skip => Ok(Slot::skip()),
            Node::Strip(nonempty) => {
                *nonempty = true;
                Ok(Slot::skip())
            }
            Node::Event(n) => n.key(j, k),
            Node::Attribute(n) => n.key(j, k),
            Node::Object(n) => n.key(j, k),
            Node::Reference(n) => n.key(j, k),
            Node::Report(n) => n.key(j, k),
            Node::Analyst(n) => n.key(j, k),
            Node::Related(n) => n.key(j, k),
            Node::Cluster(n) => n.key(j, k),
            Node::Relation(n) => n.key(j, k),
            Node::Sighting(n) => n.key(j, k, text),
            Node::SightingOrg(n) => n.key(j, k, text),
            Node::Tag(n) => n.key(j, k),
            Node::TagLink(n) => n.key(j, k),
            Node::Sg(n) => n.key(j, k),
            Node::SgServer(n) => n.key(j, k),
            Node::Pick(n) => n.key(j, k),
            Node::Wrap(n) => {
                allowed(j, n.allowed(), k, text)?;
                n.key(j, k)
            }
            Node::Response(n) => {
                allowed(j, K::Response.bit(), k, text)?;
                n.key(j, k)
            }
            Node::AnalystMinimal => {
                let mask = K::Note.bit() | K::Opinion.bit() | K::Relationship.bit();
                allowed(j, mask, k, text)?;
                Ok(analyst_minimal(k))
            }
            Node::StrMap => Ok(Slot::of(Kind::Str)),
            Node::IndexEntry => Ok(Slot::of(Kind::Flat)),
            Node::MinimalSearch(n) => {
                if shadows_search_flag(text) {
                    return Err(j.stop(Rule::NotMinimalSearch, text, text));
                }
                n.key(j, k)
            }
            Node::SightingSearch(n) => {
                if not_a_sighting_search_key(text) {
                    return Err(j.stop(Rule::Malformed, text, text));
                }
                n.key(j, k)
            }
            Node::PostTest(n) => {
                allowed(j, K::TestString.bit(), k, text)?;
                n.key(j, k)
            }
            Node::UuidTimestamp(n) => {
                allowed(j, K::Uuid.bit() | K::Timestamp.bit(), k, text)?;
                n.key(j, k)
            }
            Node::SkipList(_)
            | Node::Skipped
            | Node::List(_)
            | Node::Strings(_)
            | Node::Empty(_) => Ok(Slot::skip()),
        }
    }

    /// The value of key `k` has been read: what it told.
    #[inline]
    fn value(&mut self, j: &mut Judge<'_>, k: Option<K>, out: Out) {
        match self {
            Node::Event(n) => n.value(j, k, out),
            Node::Attribute(n) => n.value(j, k, out),
            Node::Object(n) => n.value(j, k, out),
            Node::Report(n) => n.value(j, k, out),
            Node::Analyst(n) => n.value(j, k, out),
            Node::Related(n) => n.value(j, k, out),
            Node::Cluster(n) => n.value(j, k, out),
            Node::Relation(n) => n.value(j, k, out),
            Node::Tag(n) => n.value(j, k, out),
            Node::TagLink(n) => n.value(j, k, out),
            Node::Sg(n) => n.value(j, k, out),
            Node::SgServer(n) => n.value(j, k, out),
            Node::Pick(n) => n.value(j, k, out),
            _ => {}
        }
    }

    #[inline]
    fn end(&mut self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        match self {
            Node::Skip | Node::Skipped => Ok(Out::UNIT),
            Node::Strip(nonempty) | Node::SkipList(nonempty) => {
                Ok(Out::of_bits(u64::from(*nonempty)))
            }
            Node::Event(n) => n.end(j),
            Node::Attribute(n) => n.end(j),
            Node::Object(n) => n.end(j),
            Node::Reference(n) => n.end(j),
            Node::Report(n) => n.end(j),
            Node::Analyst(n) => n.end(j),
            Node::Related(n) => n.end(j),
            Node::Cluster(n) => n.end(j),
            Node::Relation(n) => n.end(j),
            Node::Sighting(n) => n.end(j),
            Node::SightingOrg(n) => n.end(j),
            Node::Tag(n) => n.end(j),
            Node::TagLink(n) => n.end(j),
            Node::Sg(n) => n.end(j),
            Node::SgServer(n) => n.end(j),
            Node::Pick(n) => n.end(j),
            Node::Wrap(n) => n.end(j),
            Node::Response(n) => n.end(j),
            Node::MinimalSearch(n) => n.end(j),
            Node::SightingSearch(n) => n.end(j),
            Node::PostTest(n) => n.end(j),
            Node::UuidTimestamp(n) => n.end(j),
            Node::AnalystMinimal | Node::StrMap | Node::IndexEntry => Ok(Out::UNIT),
            Node::List(n) => Ok(n.end(j)),
            Node::Strings(n) => n.end(j),
            Node::Empty(n) => Ok(n.end()),
        }
    }
}

/// In an object of fixed shape, a key that is not one of `mask` is
/// refused.
fn allowed(j: &mut Judge<'_>, mask: u128, k: Option<K>, text: &str) -> Result<(), Stop> {
    if k.is_none_or(|k| mask & k.bit() == 0) {
        let value = format!("unexpected key {text:?}");
        return Err(j.stop(Rule::Malformed, &value, text));
    }
    Ok(())
}

/// A key the key set refused.
#[cold]
fn key_refused(j: &mut Judge<'_>, e: KeyError, text: &str) -> Stop {
    match e {
        KeyError::Duplicate => j.stop(Rule::DuplicateKey, text, text),
        KeyError::TooMany => j.stop(Rule::Malformed, "too many object keys", text),
    }
}

/// The string value being read.
struct Text {
    kind: Kind,
    marks: Marks,
    /// Whether its text matters (a rule field) or only its type.
    read: bool,
    buf: String,
    long: bool,
}

/// The consumer of the tokenizer: one document, judged as it streams by.
pub(super) struct Walk<'p> {
    pub(super) j: Judge<'p>,
    doc: Document,
    stack: Vec<Frame>,
    /// The next value of the current container is skipped whole: set by
    /// a key whose value is, and inside an array that is.
    skipping: bool,
    text: Text,
    /// The answer being rebuilt, on the second reading of it.
    pub(super) emit: Option<Emitter>,
}

impl<'p> Walk<'p> {
    pub(super) fn new(j: Judge<'p>, doc: Document) -> Walk<'p> {
        Walk {
            j,
            doc,
            stack: Vec::new(),
            skipping: false,
            text: Text {
                kind: Kind::Skip,
                marks: Marks::default(),
                read: false,
                buf: String::new(),
                long: false,
            },
            emit: None,
        }
    }

    /// A value begins: what it must be, placed in the path and rank
    /// (where they were before is `self.j.marks()` beforehand).
    #[inline]
    fn open(&mut self) -> Result<Kind, Stop> {
        let Some(f) = self.stack.last_mut() else {
            return Ok(Kind::Root(self.doc));
        };
        // Branches on what the holder is, most common first: a jump
        // through a table of every node would be guessed wrong more often.
        if !f.array {
            let slot = f.slot;
            let (path, stage) = slot.place();
            if path.is_some() || stage.is_some() {
                self.j.enter(Place::Key { path, stage });
            }
            return Ok(slot.kind);
        }
        if let Node::List(list) = &mut f.node {
            if let Some(e) = &mut self.emit {
                e.item(list.is_page(), list.index());
            }
            return Ok(list.open_item(&mut self.j));
        }
        let kind = match &mut f.node {
            Node::SkipList(nonempty) => {
                *nonempty = true;
                Kind::Skip
            }
            Node::Strings(s) => s.open_item(&mut self.j)?,
            Node::Empty(e) => return Err(e.refuse_item(&mut self.j)),
            _ => Kind::Skip,
        };
        Ok(kind)
    }

    /// A value has ended with `out`: it goes to its holder.
    #[inline]
    fn close(&mut self, out: Out, marks: Marks) {
        self.j.back_to(marks);
        let Some(f) = self.stack.last_mut() else {
            return;
        };
        if f.array {
            if let Node::List(list) = &mut f.node {
                list.close_item(&mut self.j, out);
            }
            return;
        }
        if let Some(name) = f.slot.stripped() {
            if out.bits() != 0 {
                self.j.stripped(name.text());
            }
        }
        f.node.value(&mut self.j, f.k, out);
    }

    /// A number or literal that is not skipped, written as `text` when
    /// the answer is rebuilt.
    #[inline(never)]
    fn scalar(&mut self, s: Scalar<'_>, text: &str) -> Result<(), Stop> {
        let marks = self.j.marks();
        let kind = self.open()?;
        if let Some(e) = &mut self.emit {
            e.raw(text);
        }
        let out = scalar(&mut self.j, kind, s)?;
        self.close(out, marks);
        Ok(())
    }

    /// A container opens inside one skipped whole: only its keys are
    /// checked, for duplicates.
    #[inline(never)]
    fn begin_skipped(&mut self, object: bool) {
        let node = if object { Node::Skip } else { Node::Skipped };
        let keys = self.j.keys.open();
        self.stack.push(Frame {
            node,
            keys,
            interest: Keys::NONE,
            k: None,
            slot: Slot::skip(),
            marks: Marks::default(),
            quiet: true,
            array: !object,
        });
    }

    #[inline(never)]
    fn begin(&mut self, object: bool) -> Result<(), Stop> {
        let marks = self.j.marks();
        let kind = self.open()?;
        let node = if object {
            Node::object(&mut self.j, kind)?
        } else {
            Node::array(&mut self.j, kind)?
        };
        self.skipping = matches!(node, Node::Skipped);
        let interest = node.keys(self.j.rebuild);
        let keys = self.j.keys.open();
        self.stack.push(Frame {
            node,
            keys,
            interest,
            k: None,
            slot: Slot::skip(),
            marks,
            quiet: false,
            array: !object,
        });
        Ok(())
    }

    #[inline]
    fn end(&mut self) -> Result<(), Stop> {
        let Some(f) = self.stack.last() else {
            return Ok(());
        };
        if !f.quiet {
            return self.end_read();
        }
        let keys = f.keys;
        self.stack.truncate(self.stack.len() - 1);
        self.j.keys.close(keys);
        self.skipping = self.in_skipped();
        Ok(())
    }

    /// Whether the current container is an array skipped whole.
    #[inline]
    fn in_skipped(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                node: Node::Skipped,
                ..
            })
        )
    }

    /// A container that was read has ended: what it tells goes to its
    /// holder.
    #[inline(never)]
    fn end_read(&mut self) -> Result<(), Stop> {
        // Ended where it lies: a node moved out of the stack would be
        // copied in pieces and read back whole.
        let Some(f) = self.stack.last_mut() else {
            return Ok(());
        };
        let (keys, marks) = (f.keys, f.marks);
        let out = f.node.end(&mut self.j);
        self.stack.truncate(self.stack.len() - 1);
        self.j.keys.close(keys);
        self.skipping = self.in_skipped();
        self.close(out?, marks);
        Ok(())
    }

    /// A key its object reads (or any key, on the second reading).
    #[inline(never)]
    fn key_read(&mut self, k: Option<K>, text: &str) -> Result<(), Stop> {
        let Some(f) = self.stack.last_mut() else {
            return Ok(());
        };
        let slot = f.node.key(&mut self.j, k, text)?;
        if let Some(e) = &mut self.emit {
            e.key(text, slot.stripped().is_some());
        }
        // A value skipped whole never looks at its slot.
        self.skipping = slot.skipped();
        if !self.skipping {
            f.k = k;
            f.slot = slot;
        }
        Ok(())
    }

    /// A string value that is not skipped begins.
    #[inline(never)]
    fn begin_string_read(&mut self) -> Result<(), Stop> {
        let marks = self.j.marks();
        let kind = self.open()?;
        self.text.kind = kind;
        self.text.marks = marks;
        self.text.read = kind.reads_text();
        self.text.buf.clear();
        self.text.long = false;
        Ok(())
    }

    /// More of a string whose text is read.
    #[inline(never)]
    fn read_fragment(&mut self, fragment: &str) {
        let t = &mut self.text;
        if t.long {
            return;
        }
        if t.buf.len() + fragment.len() <= MAX_FIELD_BYTES {
            t.buf.push_str(fragment);
        } else {
            // Keep a prefix to show, cut on a character boundary.
            let room = MAX_FIELD_BYTES - t.buf.len();
            let cut = (0..=room)
                .rev()
                .find(|&i| fragment.is_char_boundary(i))
                .unwrap_or(0);
            t.buf.push_str(&fragment[..cut]);
            t.long = true;
        }
    }

    /// A string value that is not skipped ends.
    #[inline(never)]
    fn end_string_read(&mut self) -> Result<(), Stop> {
        let t = &self.text;
        let (kind, marks) = (t.kind, t.marks);
        // The text goes as a pointer and a length, each read on its own:
        // the length was written just now.
        let out = string(&mut self.j, kind, t.buf.as_str(), t.long)?;
        self.close(out, marks);
        Ok(())
    }

    /// The document the body must be.
    pub(super) fn doc(&self) -> Document {
        self.doc
    }
}

// The events of values skipped whole are handled here, inline in the
// tokenizer's loop; everything else goes to the `_read` functions above.
impl Sink for Walk<'_> {
    type Error = Stop;

    #[inline(always)]
    fn begin_object(&mut self, _: u64) -> Result<(), Stop> {
        if self.skipping {
            self.begin_skipped(true);
        } else {
            self.begin(true)?;
        }
        if let Some(e) = &mut self.emit {
            e.begin(b'{');
        }
        Ok(())
    }

    #[inline(always)]
    fn end_object(&mut self, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.end(b'}');
        }
        self.end()
    }

    #[inline(always)]
    fn begin_array(&mut self, _: u64) -> Result<(), Stop> {
        if self.skipping {
            self.begin_skipped(false);
        } else {
            self.begin(false)?;
        }
        if let Some(e) = &mut self.emit {
            e.begin(b'[');
        }
        Ok(())
    }

    #[inline(always)]
    fn end_array(&mut self, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.end(b']');
        }
        self.end()
    }

    #[inline(always)]
    fn key(&mut self, text: &str, _: u64) -> Result<(), Stop> {
        let Some(f) = self.stack.last_mut() else {
            return Ok(());
        };
        let k = classify(text);
        if let Err(e) = self.j.keys.insert(&mut f.keys, k, text) {
            return Err(key_refused(&mut self.j, e, text));
        }
        if f.interest.has(k) || self.emit.is_some() {
            return self.key_read(k, text);
        }
        self.skipping = true;
        Ok(())
    }

    #[inline(always)]
    fn begin_string(&mut self, _: u64) -> Result<(), Stop> {
        if self.skipping {
            self.text.read = false;
        } else {
            self.begin_string_read()?;
        }
        if let Some(e) = &mut self.emit {
            e.begin_string();
        }
        Ok(())
    }

    #[inline(always)]
    fn string_fragment(&mut self, fragment: &str, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.fragment(fragment);
        }
        if self.text.read {
            self.read_fragment(fragment);
        }
        Ok(())
    }

    #[inline(always)]
    fn end_string(&mut self, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.end_string();
        }
        if self.skipping {
            return Ok(());
        }
        self.end_string_read()
    }

    #[inline(always)]
    fn number(&mut self, text: &str, _: u64) -> Result<(), Stop> {
        if self.skipping {
            if let Some(e) = &mut self.emit {
                e.raw(text);
            }
            return Ok(());
        }
        self.scalar(Scalar::Num(text), text)
    }

    #[inline(always)]
    fn literal(&mut self, literal: Literal, _: u64) -> Result<(), Stop> {
        if self.skipping {
            if let Some(e) = &mut self.emit {
                e.raw(literal.text());
            }
            return Ok(());
        }
        let s = match literal {
            Literal::True => Scalar::Bool(true),
            Literal::False => Scalar::Bool(false),
            Literal::Null => Scalar::Null,
        };
        self.scalar(s, literal.text())
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::ALL;
    use super::super::value::AKind;
    use super::super::{Context, Policy, RequiredTaxonomy};
    use super::*;

    fn policy() -> Policy {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Policy {
            blocked_tags: set(&["tlp:red"]),
            required_taxonomies: vec![RequiredTaxonomy {
                namespace: "tlp".into(),
                allowed: vec![],
            }],
            blocked_distributions: [true; 6],
            blocked_sharing_groups: set(&["x"]),
            blocked_attribute_types: set(&["email"]),
            blocked_attribute_categories: set(&["person"]),
            blocked_object_types: set(&["person"]),
        }
    }

    /// Every node an object can be read as.
    fn objects(j: &mut Judge<'_>) -> Vec<Node> {
        let mut kinds = vec![Kind::Skip, Kind::Strip, Kind::Related, Kind::MinimalValue];
        let ents = [
            Ent::Event { related: false },
            Ent::Event { related: true },
            Ent::EventSummary,
            Ent::Attribute,
            Ent::AttributeSummary,
            Ent::Proposal,
            Ent::Sighting,
            Ent::SightingOrg,
            Ent::Object,
            Ent::ObjectSummary,
            Ent::Reference,
            Ent::Report,
            Ent::Analyst(AKind::Note),
            Ent::Analyst(AKind::Relationship),
            Ent::Analyst(AKind::Bare),
            Ent::Cluster { minimal: false },
            Ent::Cluster { minimal: true },
            Ent::Galaxy,
            Ent::Relation,
            Ent::Tag,
            Ent::TagLink,
            Ent::Sg { stage: 3 },
            Ent::SgOrg,
            Ent::SgServer,
            Ent::Organisation,
            Ent::EventUuidTimestamp,
            Ent::StrMap,
            Ent::IndexEntry,
        ];
        kinds.extend(ents.map(Kind::Ent));
        kinds.extend(
            [
                Wrap::Event,
                Wrap::RelatedEvent,
                Wrap::Cluster { minimal: true },
                Wrap::Shadow,
                Wrap::AnyAnalyst,
                Wrap::Sighting,
                Wrap::EventUuidTimestamp,
            ]
            .map(Kind::Wrap),
        );
        kinds.push(Kind::Links {
            group: 1,
            name: K::EventTag.into(),
        });
        for doc in [
            Document::Event,
            Document::GalaxyCluster,
            Document::AnalystDataItem,
            Document::GalaxyClusterSearch,
            Document::Sightings,
            Document::AnalystDataMinimal,
            Document::MinimalSearch,
            Document::SightingSearch,
            Document::PostTest,
            Document::AnyJson,
        ] {
            kinds.push(Kind::Root(doc));
        }
        kinds
            .into_iter()
            .map(|kind| Node::object(j, kind).expect("an object kind"))
            .collect()
    }

    /// A key outside a node's [`Node::keys`] is one its `key` skips,
    /// finding nothing and changing nothing the node's end could tell.
    #[test]
    fn keys_outside_a_node_s_set_are_skipped_by_it() {
        let policy = policy();
        for rebuild in [false, true] {
            let ctx = Context {
                user_org_uuid: Some("org".into()),
                receiver: None,
                rebuild,
            };
            let mut j = Judge::new(&policy, &ctx);
            let count = objects(&mut j).len();
            let keys = ALL
                .iter()
                .map(|&k| (Some(k), k.text()))
                .chain([(None, "other")]);
            for (k, text) in keys {
                for n in 0..count {
                    let mut asked = objects(&mut j).swap_remove(n);
                    if asked.keys(rebuild).has(k) {
                        continue;
                    }
                    let mut fresh = objects(&mut j).swap_remove(n);
                    let mut ja = Judge::new(&policy, &ctx);
                    let slot = asked.key(&mut ja, k, text);
                    assert_eq!(slot, Ok(Slot::skip()), "node {n}, key {text}");
                    let mut jb = Judge::new(&policy, &ctx);
                    assert_eq!(
                        asked.end(&mut ja),
                        fresh.end(&mut jb),
                        "node {n}, key {text}"
                    );
                    assert_eq!(ja.take_fatal(), jb.take_fatal(), "node {n}, key {text}");
                    assert_eq!(ja.take_best(), jb.take_best(), "node {n}, key {text}");
                }
            }
        }
    }
}
