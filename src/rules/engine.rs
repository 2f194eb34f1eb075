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

use super::analyst::{AnalystNode, RelatedNode};
use super::attribute::{AttributeNode, Flavour};
use super::cluster::{ClusterNode, RelationNode};
use super::documents::{
    analyst_minimal, items_of, not_a_sighting_search_key, root_items, shadows_search_flag,
    MinimalSearchNode, PostTestNode, ResponseNode, SightingSearchNode, UuidTimestampNode, WrapNode,
};
use super::emit::Emitter;
use super::event::EventNode;
use super::judge::{Judge, Marks, Stop};
use super::keys::{classify, Frame as KeyFrame, KeyError, K};
use super::list::{EmptyNode, ListNode, StringsNode};
use super::object::ObjectNode;
use super::report::ReportNode;
use super::sharing_group::{PickNode, SgNode};
use super::sighting::{SightingNode, SightingOrgNode};
use super::tag::{TagLinkNode, TagNode};
use super::value::{scalar, shape, Ent, Item, Kind, Name, Out, Scalar, Slot, Wrap};
use super::{Document, Rule};
use crate::json::{Literal, Sink};

/// The longest rule field value read: a tag name, a type, a uuid. MISP's
/// columns hold at most 255 characters; past this a value is malformed.
pub(super) const MAX_FIELD_BYTES: usize = 4096;

/// One open object or array.
struct Frame {
    node: Node,
    /// The keys met so far (objects only).
    keys: Option<KeyFrame>,
    /// The key whose value is being read, and where that value goes.
    slot: Option<(Option<K>, Slot)>,
    /// Where path and rank were when this value began.
    marks: Marks,
}

/// What an open value is.
enum Node {
    /// Any object: every key checked for duplicates, every value skipped.
    /// Whether it held anything.
    Skip(bool),
    Event(EventNode),
    Attribute(AttributeNode),
    Object(ObjectNode),
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
    /// Any array: its items skipped. Whether it held anything.
    SkipList(bool),
    List(ListNode),
    Strings(StringsNode),
    Empty(EmptyNode),
}

impl Node {
    /// The node for an object read as `kind`.
    fn object(j: &mut Judge<'_>, kind: Kind) -> Result<Node, Stop> {
        Ok(match kind {
            Kind::Skip | Kind::Strip | Kind::Root(Document::AnyJson) => Node::Skip(false),
            Kind::Root(doc) => Node::root_object(j, doc)?,
            Kind::Wrap(w) => Node::Wrap(WrapNode::new(w)),
            Kind::Ent(e) => Node::entity(e),
            Kind::Related => Node::Related(RelatedNode::Fresh),
            Kind::MinimalValue => Node::StrMap,
            Kind::Links { group, name } => {
                // PHP's single-link form: one link, placed as a list would be.
                j.push_rank(group.into());
                j.push_path(name.text());
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
            Ent::Object => Node::Object(ObjectNode::default()),
            Ent::Report => Node::Report(ReportNode::default()),
            Ent::Analyst(kind) => Node::Analyst(AnalystNode::new(kind)),
            Ent::Cluster { minimal } => Node::Cluster(ClusterNode::new(minimal)),
            Ent::Galaxy => Node::Pick(PickNode::galaxy()),
            Ent::Relation => Node::Relation(RelationNode::default()),
            Ent::Tag => Node::Tag(TagNode::default()),
            Ent::TagLink => Node::TagLink(TagLinkNode::default()),
            Ent::Sg { stage } => Node::Sg(SgNode::new(stage)),
            Ent::SgOrg => Node::Pick(PickNode::sg_org()),
            Ent::SgServer => Node::Pick(PickNode::sg_server()),
            Ent::Organisation => Node::Pick(PickNode::organisation()),
            Ent::EventUuidTimestamp => Node::UuidTimestamp(UuidTimestampNode::default()),
            Ent::StrMap => Node::StrMap,
            Ent::IndexEntry => Node::IndexEntry,
        }
    }

    /// The node for an array read as `kind`.
    fn array(j: &mut Judge<'_>, kind: Kind) -> Result<Node, Stop> {
        Ok(match kind {
            Kind::Skip | Kind::Strip | Kind::Root(Document::AnyJson) => Node::SkipList(false),
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
            Kind::MinimalValue => Node::List(ListNode::new(Item::Ent(Ent::StrMap), 0, Name::Root)),
            Kind::Strings { min, max, name } => Node::Strings(StringsNode::new(min, max, name)),
            _ => return Err(shape(j, kind, "an array")),
        })
    }

    /// Keys this object refuses by their text, and the rule they break.
    fn refuses(&self, key: &str) -> Option<Rule> {
        match self {
            Node::MinimalSearch(_) => shadows_search_flag(key).then_some(Rule::NotMinimalSearch),
            Node::SightingSearch(_) => not_a_sighting_search_key(key).then_some(Rule::Malformed),
            _ => None,
        }
    }

    /// In an object of fixed shape, the known keys it may have.
    fn allowed(&self) -> Option<u128> {
        match self {
            Node::Wrap(w) => Some(w.allowed()),
            Node::Response(_) => Some(K::Response.bit()),
            Node::AnalystMinimal => Some(K::Note.bit() | K::Opinion.bit() | K::Relationship.bit()),
            Node::PostTest(_) => Some(K::TestString.bit()),
            Node::UuidTimestamp(_) => Some(K::Uuid.bit() | K::Timestamp.bit()),
            _ => None,
        }
    }

    #[inline]
    fn key(&mut self, j: &mut Judge<'_>, k: Option<K>, text: &str) -> Result<Slot, Stop> {
        match self {
            Node::Skip(nonempty) => {
                *nonempty = true;
                Ok(Slot::skip())
            }
            Node::Event(n) => n.key(j, k),
            Node::Attribute(n) => n.key(j, k),
            Node::Object(n) => n.key(j, k),
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
            Node::Pick(n) => n.key(j, k),
            Node::Wrap(n) => n.key(j, k),
            Node::Response(n) => n.key(j, k),
            Node::AnalystMinimal => Ok(analyst_minimal(k)),
            Node::StrMap => Ok(Slot::of(Kind::Str)),
            Node::IndexEntry => Ok(Slot::of(Kind::Flat)),
            Node::MinimalSearch(n) => n.key(j, k),
            Node::SightingSearch(n) => n.key(j, k),
            Node::PostTest(n) => n.key(j, k),
            Node::UuidTimestamp(n) => n.key(j, k),
            Node::SkipList(_) | Node::List(_) | Node::Strings(_) | Node::Empty(_) => {
                Ok(Slot::skip())
            }
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
            Node::Pick(n) => n.value(j, k, out),
            _ => {}
        }
    }

    fn end(self, j: &mut Judge<'_>) -> Result<Out, Stop> {
        match self {
            Node::Skip(nonempty) | Node::SkipList(nonempty) => Ok(Out::Bits(u64::from(nonempty))),
            Node::Event(n) => n.end(j),
            Node::Attribute(n) => n.end(j),
            Node::Object(n) => n.end(j),
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
            Node::Pick(n) => n.end(j),
            Node::Wrap(n) => n.end(j),
            Node::Response(n) => n.end(j),
            Node::MinimalSearch(n) => n.end(j),
            Node::SightingSearch(n) => n.end(j),
            Node::PostTest(n) => n.end(j),
            Node::UuidTimestamp(n) => n.end(j),
            Node::AnalystMinimal | Node::StrMap | Node::IndexEntry => Ok(Out::Unit),
            Node::List(n) => Ok(n.end(j)),
            Node::Strings(n) => n.end(j),
            Node::Empty(n) => Ok(n.end()),
        }
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

    /// A value begins: what it must be, placed in the path and rank.
    #[inline]
    fn open(&mut self) -> Result<(Kind, Marks), Stop> {
        let marks = self.j.marks();
        let Some(f) = self.stack.last_mut() else {
            return Ok((Kind::Root(self.doc), marks));
        };
        let kind = match &mut f.node {
            Node::List(list) => {
                if let Some(e) = &mut self.emit {
                    e.item(list.is_page(), list.index());
                }
                list.open_item(&mut self.j)
            }
            Node::SkipList(nonempty) => {
                *nonempty = true;
                Kind::Skip
            }
            Node::Strings(s) => s.open_item(&mut self.j)?,
            Node::Empty(e) => return Err(e.refuse_item(&mut self.j)),
            _ => match &f.slot {
                Some((_, slot)) => {
                    if let Some(stage) = slot.stage {
                        self.j.push_rank(stage.into());
                    }
                    if let Some(seg) = slot.path {
                        self.j.push_path(seg.text());
                    }
                    slot.kind
                }
                // The tokenizer hands a key before every value of an object.
                None => Kind::Skip,
            },
        };
        Ok((kind, marks))
    }

    /// A value has ended with `out`: it goes to its holder.
    #[inline]
    fn close(&mut self, out: Out, marks: Marks) {
        self.j.back_to(marks);
        let Some(f) = self.stack.last_mut() else {
            return;
        };
        match &mut f.node {
            Node::List(list) => list.close_item(&mut self.j, out),
            Node::SkipList(_) | Node::Strings(_) | Node::Empty(_) => {}
            node => {
                if let Some((k, slot)) = f.slot.take() {
                    if let Some(name) = slot.strip {
                        if out.bits() != 0 {
                            self.j.stripped(name.text());
                        }
                    }
                    node.value(&mut self.j, k, out);
                }
            }
        }
    }

    /// A number or literal, written as `text` when the answer is rebuilt.
    fn scalar(&mut self, s: Scalar<'_>, text: &str) -> Result<(), Stop> {
        let (kind, marks) = self.open()?;
        if let Some(e) = &mut self.emit {
            e.raw(text);
        }
        let out = scalar(&mut self.j, kind, s)?;
        self.close(out, marks);
        Ok(())
    }

    fn begin(&mut self, object: bool) -> Result<(), Stop> {
        let (kind, marks) = self.open()?;
        let (node, keys) = if object {
            (Node::object(&mut self.j, kind)?, Some(self.j.keys.open()))
        } else {
            (Node::array(&mut self.j, kind)?, None)
        };
        self.stack.push(Frame {
            node,
            keys,
            slot: None,
            marks,
        });
        Ok(())
    }

    fn end(&mut self) -> Result<(), Stop> {
        let Some(f) = self.stack.pop() else {
            return Ok(());
        };
        if let Some(keys) = f.keys {
            self.j.keys.close(keys);
        }
        let out = f.node.end(&mut self.j)?;
        self.close(out, f.marks);
        Ok(())
    }

    /// The document the body must be.
    pub(super) fn doc(&self) -> Document {
        self.doc
    }
}

impl Sink for Walk<'_> {
    type Error = Stop;

    fn begin_object(&mut self, _: u64) -> Result<(), Stop> {
        self.begin(true)?;
        if let Some(e) = &mut self.emit {
            e.begin(b'{');
        }
        Ok(())
    }

    fn end_object(&mut self, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.end(b'}');
        }
        self.end()
    }

    fn begin_array(&mut self, _: u64) -> Result<(), Stop> {
        self.begin(false)?;
        if let Some(e) = &mut self.emit {
            e.begin(b'[');
        }
        Ok(())
    }

    fn end_array(&mut self, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.end(b']');
        }
        self.end()
    }

    fn key(&mut self, text: &str, _: u64) -> Result<(), Stop> {
        let Some(f) = self.stack.last_mut() else {
            return Ok(());
        };
        let k = classify(text);
        if let Some(keys) = &mut f.keys {
            match self.j.keys.insert(keys, k, text) {
                Ok(()) => {}
                Err(KeyError::Duplicate) => {
                    return Err(self.j.stop(Rule::DuplicateKey, text, text))
                }
                Err(KeyError::TooMany) => {
                    return Err(self.j.stop(Rule::Malformed, "too many object keys", text))
                }
            }
        }
        if let Some(rule) = f.node.refuses(text) {
            return Err(self.j.stop(rule, text, text));
        }
        if let Some(mask) = f.node.allowed() {
            if k.is_none_or(|k| mask & k.bit() == 0) {
                let value = format!("unexpected key {text:?}");
                return Err(self.j.stop(Rule::Malformed, &value, text));
            }
        }
        let slot = f.node.key(&mut self.j, k, text)?;
        if let Some(e) = &mut self.emit {
            e.key(text, slot.strip.is_some());
        }
        f.slot = Some((k, slot));
        Ok(())
    }

    fn begin_string(&mut self, _: u64) -> Result<(), Stop> {
        let (kind, marks) = self.open()?;
        self.text.kind = kind;
        self.text.marks = marks;
        self.text.read = kind.reads_text();
        self.text.buf.clear();
        self.text.long = false;
        if let Some(e) = &mut self.emit {
            e.begin_string();
        }
        Ok(())
    }

    fn string_fragment(&mut self, fragment: &str, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.fragment(fragment);
        }
        let t = &mut self.text;
        if t.read && !t.long {
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
        Ok(())
    }

    fn end_string(&mut self, _: u64) -> Result<(), Stop> {
        if let Some(e) = &mut self.emit {
            e.end_string();
        }
        let Text {
            kind,
            marks,
            buf,
            long,
            ..
        } = &self.text;
        let (kind, marks, long) = (*kind, *marks, *long);
        let s = if long {
            Scalar::Long(buf)
        } else {
            Scalar::Str(buf)
        };
        let out = scalar(&mut self.j, kind, s)?;
        self.close(out, marks);
        Ok(())
    }

    fn number(&mut self, text: &str, _: u64) -> Result<(), Stop> {
        self.scalar(Scalar::Num(text), text)
    }

    fn literal(&mut self, literal: Literal, _: u64) -> Result<(), Stop> {
        let s = match literal {
            Literal::True => Scalar::Bool(true),
            Literal::False => Scalar::Bool(false),
            Literal::Null => Scalar::Null,
        };
        self.scalar(s, literal.text())
    }
}
