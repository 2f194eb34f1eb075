//! The streaming walk: serde visitors that read a MISP document once,
//! check each rule field as it goes by and skip everything else.
//!
//! Each entity (event, attribute, object, …) is a small [`Node`] that sees
//! its keys one by one and decides at its end what only the end can tell
//! (a missing field, a missing taxonomy, distribution 4 without a sharing
//! group). Nothing of the document is kept but one candidate [`Block`], the
//! path to the current entity, and the keys of the open objects.
//!
//! Two kinds of findings:
//! * a *fatal* one (bad JSON, bad UTF-8, too deep, duplicate key, a list
//!   where an object must be, an unexpected key where the shape is fixed)
//!   stops the walk at once and is the verdict;
//! * a *rule hit* (a blocked value, or a rule field with a value of the
//!   wrong type) is ranked by where the older guard would have met it, and
//!   the walk goes on; the lowest rank is the verdict. The rank is a path
//!   of small numbers: the entity's place (`Attribute` list = 10, item 3)
//!   then the check's stage in the older guard's order.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{classify, Frame, KeyError, KeySet, K};
use super::{Block, Context, Document, Policy, Rule};

/// Longest offending value kept in a [`Block`], in characters.
pub(super) const VALUE_CHARS: usize = 200;

const DIGITS: [&str; 6] = ["0", "1", "2", "3", "4", "5"];

/// The state of one evaluation.
pub(super) struct Engine<'p> {
    policy: &'p Policy,
    user_org: Option<String>,
    max_depth: usize,
    path: String,
    rank: Vec<u32>,
    best: Option<(Vec<u32>, Block)>,
    fatal: Option<Block>,
    keys: KeySet,
    scratch: String,
    /// The blocked tags of the form `misp-galaxy:<type>="<uuid>"`, by
    /// uuid: see [`galaxy_tags`].
    galaxy_tags: HashMap<String, String>,
}

impl<'p> Engine<'p> {
    pub(super) fn new(policy: &'p Policy, ctx: &Context, max_depth: usize) -> Engine<'p> {
        Engine {
            policy,
            user_org: ctx
                .user_org_uuid
                .as_deref()
                .map(|u| u.trim().to_lowercase()),
            max_depth,
            path: String::new(),
            rank: Vec::new(),
            best: None,
            fatal: None,
            keys: KeySet::new(),
            scratch: String::new(),
            galaxy_tags: galaxy_tags(policy),
        }
    }

    /// The fatal finding, if the walk was stopped by one.
    pub(super) fn take_fatal(&mut self) -> Option<Block> {
        self.fatal.take()
    }

    /// The best-ranked rule hit, if any.
    pub(super) fn take_best(&mut self) -> Option<Block> {
        self.best.take().map(|(_, b)| b)
    }

    /// Where the walk is, for errors reported by the JSON reader.
    pub(super) fn here(&self) -> String {
        if self.path.is_empty() {
            "$".to_string()
        } else {
            self.path.clone()
        }
    }

    fn at(&self, field: &str) -> String {
        let mut at = self.path.clone();
        if !field.is_empty() {
            if !at.is_empty() && !field.starts_with('[') {
                at.push('.');
            }
            at.push_str(field);
        }
        if at.is_empty() {
            at.push('$');
        }
        at
    }

    /// Record a rule hit at the current rank plus `suffix`.
    fn hit(&mut self, suffix: &[u32], rule: Rule, value: &str, field: &str) {
        let better = match &self.best {
            None => true,
            Some((key, _)) => self.rank.iter().chain(suffix).cmp(key.iter()) == Ordering::Less,
        };
        if better {
            let key = self.rank.iter().chain(suffix).copied().collect();
            let block = Block {
                rule,
                value: clip(value),
                at: self.at(field),
            };
            self.best = Some((key, block));
        }
    }

    /// Record a fatal finding and make the error that unwinds the parse.
    fn stop<E: de::Error>(&mut self, rule: Rule, value: &str, field: &str) -> E {
        if self.fatal.is_none() {
            self.fatal = Some(Block {
                rule,
                value: clip(value),
                at: self.at(field),
            });
        }
        E::custom("stopped by a rule")
    }

    fn push_path(&mut self, seg: &str) -> usize {
        let mark = self.path.len();
        if !self.path.is_empty() && !seg.starts_with('[') {
            self.path.push('.');
        }
        self.path.push_str(seg);
        mark
    }

    fn push_index(&mut self, name: &str, i: u32) -> usize {
        let mark = self.push_path(name);
        // Writing to a String cannot fail.
        let _ = write!(self.path, "[{i}]");
        mark
    }

    /// Fold (see [`fold`]), lower-case and trim `s` into the scratch
    /// buffer.
    fn norm(&mut self, s: &str) {
        self.scratch.clear();
        // Nearly every name is ASCII: fold, lower-case and trim it without
        // going through `char`s (same result as the general path below).
        if s.is_ascii() {
            let t = s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
            self.scratch.push_str(t);
            self.scratch.make_ascii_lowercase();
            return;
        }
        for c in s.chars().map(fold) {
            self.scratch.extend(c.to_lowercase());
        }
        let end = self.scratch.trim_end().len();
        self.scratch.truncate(end);
        let start = self.scratch.len() - self.scratch.trim_start().len();
        self.scratch.drain(..start);
    }

    fn sg_end(&mut self, stage: u32, dist: Option<Option<u8>>, sg: Option<(bool, bool)>) {
        match sg {
            Some((member, all_orgs)) => {
                if let Some(org) = self.user_org.clone() {
                    if !member && !all_orgs {
                        self.hit(
                            &[stage, 2],
                            Rule::SharingGroupExcludesOrg,
                            &org,
                            "SharingGroup",
                        );
                    }
                }
            }
            None => {
                let guarded =
                    !self.policy.blocked_sharing_groups.is_empty() || self.user_org.is_some();
                if dist == Some(Some(4)) && guarded {
                    self.hit(
                        &[stage, 1],
                        Rule::BlockedSharingGroup,
                        "missing",
                        "SharingGroup",
                    );
                }
            }
        }
    }

    fn required_taxonomies(&mut self, stage: u32, tags: Option<u64>) {
        let policy = self.policy;
        let have = tags.unwrap_or(0);
        for (i, rt) in policy.required_taxonomies.iter().enumerate() {
            if have & (1u64 << i) == 0 {
                self.hit(
                    &[stage, i as u32],
                    Rule::MissingTaxonomy,
                    &rt.namespace,
                    "Tag",
                );
            }
        }
    }
}

/// MISP ignores the `tag_name` a pushed or pulled cluster carries and
/// builds its own, `misp-galaxy:<Galaxy.type>="<uuid>"`, where the type is
/// that of the local galaxy of the same uuid (which the sender cannot be
/// trusted to state). So a blocked tag of that form blocks the cluster of
/// that uuid whatever galaxy it claims. Uuids are unique, so this cannot
/// catch another cluster. Where several blocked tags name one uuid, the
/// smallest is reported.
fn galaxy_tags(policy: &Policy) -> HashMap<String, String> {
    let mut by_uuid: HashMap<String, String> = HashMap::new();
    for tag in &policy.blocked_tags {
        let uuid = tag
            .strip_prefix("misp-galaxy:")
            .and_then(|rest| rest.split_once("=\""))
            .and_then(|(_, quoted)| quoted.strip_suffix('"'));
        let Some(uuid) = uuid.filter(|u| !u.is_empty()) else {
            continue;
        };
        let slot = by_uuid
            .entry(uuid.to_string())
            .or_insert_with(|| tag.clone());
        if tag < slot {
            slot.clone_from(tag);
        }
    }
    by_uuid
}

/// Cut `s` to [`VALUE_CHARS`] characters, escaping control characters so a
/// value cannot forge log lines.
pub(super) fn clip(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == VALUE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON scalar as serde hands it over.
enum Scalar<'s> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'s str),
}

impl Scalar<'_> {
    fn render(&self) -> String {
        match self {
            Scalar::Null => "null".to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::U64(n) => n.to_string(),
            Scalar::I64(n) => n.to_string(),
            Scalar::F64(f) => format!("{f:?}"),
            Scalar::Str(s) => format!("{s:?}"),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
        }
    }
}

/// What a walked value tells its parent.
pub(super) enum Out {
    Unit,
    Dist(Option<u8>),
    Bits(u64),
    Sg(bool, bool),
    RelType(RelType),
    Related(Interp),
}

impl Out {
    fn bits(&self) -> u64 {
        match self {
            Out::Bits(b) => *b,
            _ => 0,
        }
    }
}

/// The declared `related_object_type` of a relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RelType {
    Event,
    Attribute,
    Object,
    GalaxyCluster,
    Analyst(AKind),
    Other,
}

/// What a `related_object` turned out to be, from its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interp {
    Empty,
    Event,
    Attribute,
    Object,
    GalaxyCluster,
    Wrapped(AKind),
    Bare,
}

/// The three kinds of analyst data, and a bare one whose kind only its
/// relationship's `related_object_type` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AKind {
    Note,
    Opinion,
    Relationship,
    Bare,
}

/// Rule fields holding a string.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    Type,
    /// An attribute's category; `summary` for the copy a sighting embeds,
    /// which may lack one (and so may leave it blank).
    Category {
        summary: bool,
    },
    ObjectName,
    TagName,
    /// A galaxy cluster's `tag_name`: MISP attaches it as a tag.
    ClusterTag,
    /// A galaxy cluster's `uuid`: MISP builds the tag it attaches from it.
    ClusterUuid,
    SgUuid,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::Category { .. } => "category",
            Field::ObjectName | Field::TagName => "name",
            Field::ClusterTag => "tag_name",
            Field::ClusterUuid => "uuid",
            Field::SgUuid => "SharingGroup.uuid",
        }
    }
}

/// Entities: objects read key by key.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ent {
    Event {
        related: bool,
    },
    /// The event summary a sighting may embed (`includeEvent`).
    EventSummary,
    Attribute,
    /// The attribute a sighting may embed (`includeAttribute`).
    AttributeSummary,
    /// A proposal (`ShadowAttribute`): an attribute without distribution,
    /// sharing group or tags of its own in MISP.
    Proposal,
    Sighting,
    Object,
    Report,
    Analyst(AKind),
    Cluster {
        minimal: bool,
    },
    Galaxy,
    Relation,
    Tag,
    TagLink,
    Sg {
        stage: u32,
    },
    SgOrg,
    SgServer,
    Organisation,
    EventUuidTimestamp,
    StrMap,
    IndexEntry,
}

/// Objects with exactly one key naming what they hold.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wrap {
    Event,
    RelatedEvent,
    Cluster { minimal: bool },
    Shadow,
    AnyAnalyst,
    Sighting,
    EventUuidTimestamp,
}

impl Wrap {
    fn allowed(self) -> u128 {
        match self {
            Wrap::Event | Wrap::RelatedEvent | Wrap::EventUuidTimestamp => K::Event.bit(),
            Wrap::Cluster { .. } => K::GalaxyCluster.bit(),
            Wrap::Shadow => K::ShadowAttribute.bit(),
            Wrap::AnyAnalyst => K::Note.bit() | K::Opinion.bit() | K::Relationship.bit(),
            Wrap::Sighting => K::Sighting.bit(),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Wrap::Event | Wrap::RelatedEvent | Wrap::EventUuidTimestamp => "Event",
            Wrap::Cluster { .. } => "GalaxyCluster",
            Wrap::Shadow => "ShadowAttribute",
            Wrap::AnyAnalyst => "Note, Opinion or Relationship",
            Wrap::Sighting => "Sighting",
        }
    }

    fn inner(self, k: K) -> Kind {
        match self {
            Wrap::Event => Kind::Ent(Ent::Event { related: false }),
            Wrap::RelatedEvent => Kind::Ent(Ent::Event { related: true }),
            Wrap::Cluster { minimal } => Kind::Ent(Ent::Cluster { minimal }),
            Wrap::Shadow => Kind::Ent(Ent::Proposal),
            Wrap::AnyAnalyst => Kind::Ent(Ent::Analyst(akind_of(k))),
            Wrap::Sighting => Kind::Ent(Ent::Sighting),
            Wrap::EventUuidTimestamp => Kind::Ent(Ent::EventUuidTimestamp),
        }
    }
}

fn akind_of(k: K) -> AKind {
    match k {
        K::Note => AKind::Note,
        K::Opinion => AKind::Opinion,
        _ => AKind::Relationship,
    }
}

/// Items of a list.
#[derive(Debug, Clone, Copy)]
pub(super) enum Item {
    Ent(Ent),
    Wrap(Wrap),
    Str,
}

impl Item {
    fn kind(self) -> Kind {
        match self {
            Item::Ent(e) => Kind::Ent(e),
            Item::Wrap(w) => Kind::Wrap(w),
            Item::Str => Kind::Str,
        }
    }
}

/// What the value about to be read must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Skip,
    Str,
    Scalar,
    Root(Document),
    Wrap(Wrap),
    Ent(Ent),
    List {
        item: Item,
        group: u32,
        name: &'static str,
    },
    /// `EventTag` / `AttributeTag`: a list of `{"Tag":{…}}` links, or
    /// PHP's single-link form, one such object.
    Links {
        group: u32,
        name: &'static str,
    },
    Dist {
        stage: u32,
    },
    Field {
        field: Field,
        stage: u32,
    },
    RelType,
    Related {
        stage: u32,
    },
    OrgUuid,
    Truthy,
    One {
        stage: u32,
        field: &'static str,
    },
    MinimalValue,
    Flat,
    /// A scalar parameter of the sightings search.
    Param(Param),
    /// An array of `min..=max` strings.
    Strings {
        min: u32,
        max: u32,
        name: &'static str,
    },
}

/// The scalar parameters of MISP's sightings pull search, each held to
/// the one value (or spelling) MISP's pull sends.
#[derive(Debug, Clone, Copy)]
pub(super) enum Param {
    /// `returnFormat`: the string `json`.
    Json,
    /// `last`: a whole number, or a string of digits.
    Last,
    /// `includeUuid`: `true`, `1` or `"1"`.
    IncludeUuid,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Json => "returnFormat",
            Param::Last => "last",
            Param::IncludeUuid => "includeUuid",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Param::Json => "\"json\"",
            Param::Last => "a whole number",
            Param::IncludeUuid => "true or 1",
        }
    }

    fn accepts(self, s: &Scalar<'_>) -> bool {
        match self {
            Param::Json => matches!(s, Scalar::Str("json")),
            Param::Last => match s {
                Scalar::U64(_) => true,
                Scalar::Str(t) => !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()),
                _ => false,
            },
            Param::IncludeUuid => {
                matches!(s, Scalar::Bool(true) | Scalar::U64(1) | Scalar::Str("1"))
            }
        }
    }
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Skip => "a value",
            Kind::Wrap(_) | Kind::Ent(_) => "an object",
            Kind::List { .. } => "an array",
            Kind::Links { .. } => "an array or an object",
            Kind::Str => "a string",
            Kind::Scalar => "a string or a number",
            Kind::Root(doc) => match doc {
                Document::GalaxyClusterList
                | Document::ShadowAttributeList
                | Document::ProposalRows
                | Document::AnalystDataList
                | Document::EventIndex
                | Document::EventUuidTimestamps
                | Document::UuidList => "an array",
                Document::GalaxyClusterSearch | Document::Sightings => "an object or an array",
                Document::AnalystDataMinimal => "an object or an empty array",
                Document::AnyJson => "a value",
                _ => "an object",
            },
            Kind::Dist { .. } => "a distribution level",
            Kind::Field { .. } | Kind::RelType | Kind::OrgUuid => "a string",
            Kind::Related { .. } => "an object, an empty array or null",
            Kind::Truthy | Kind::One { .. } => "a scalar",
            Kind::MinimalValue => "an object or an array",
            Kind::Flat => "a scalar (a minimal index entry)",
            Kind::Param(p) => p.expected(),
            Kind::Strings { .. } => "an array of strings",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Kind::List { name, .. } | Kind::Links { name, .. } => name,
            Kind::Dist { .. } => "distribution",
            Kind::Field { field, .. } => field.name(),
            Kind::RelType => "related_object_type",
            Kind::One { field, .. } => field,
            Kind::Param(p) => p.name(),
            Kind::Strings { name, .. } => name,
            _ => "",
        }
    }
}

/// One value of the document, read by the visitor for `kind`.
pub(super) struct Walk<'a, 'p> {
    pub(super) eng: &'a mut Engine<'p>,
    pub(super) depth: usize,
    pub(super) kind: Kind,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = Out;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Out, D::Error> {
        d.deserialize_any(self)
    }
}

impl Walk<'_, '_> {
    fn shape<E: de::Error>(self, found: &str) -> E {
        let value = format!("{found} where {} was expected", self.kind.expected());
        let field = self.kind.field();
        self.eng.stop(Rule::Malformed, &value, field)
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        if self.depth > self.eng.max_depth {
            let value = format!("nesting deeper than {}", self.eng.max_depth);
            return Err(self.eng.stop(Rule::Malformed, &value, ""));
        }
        Ok(())
    }

    fn scalar<E: de::Error>(self, s: Scalar<'_>) -> Result<Out, E> {
        let eng = self.eng;
        match self.kind {
            Kind::Skip | Kind::Root(Document::AnyJson) => Ok(Out::Unit),
            Kind::Str => match s {
                Scalar::Str(_) => Ok(Out::Unit),
                _ => Err(Walk { eng, ..self }.shape(s.what())),
            },
            Kind::Scalar => match s {
                Scalar::Str(_) | Scalar::U64(_) | Scalar::I64(_) => Ok(Out::Unit),
                _ => Err(Walk { eng, ..self }.shape(s.what())),
            },
            Kind::Dist { stage } => Ok(distribution(eng, stage, &s)),
            Kind::Field { field, stage } => Ok(rule_field(eng, field, stage, &s)),
            Kind::RelType => match s {
                Scalar::Str(t) => Ok(Out::RelType(rel_type(t))),
                _ => Err(Walk { eng, ..self }.shape(s.what())),
            },
            Kind::Related { .. } => match s {
                Scalar::Null => Ok(Out::Related(Interp::Empty)),
                _ => Err(Walk { eng, ..self }.shape(s.what())),
            },
            Kind::OrgUuid => {
                let member = match (&s, eng.user_org.is_some()) {
                    (Scalar::Str(t), true) => {
                        eng.norm(t);
                        eng.user_org.as_deref() == Some(eng.scratch.as_str())
                    }
                    _ => false,
                };
                Ok(Out::Bits(u64::from(member)))
            }
            Kind::Flat => Ok(Out::Unit),
            Kind::Truthy => {
                let yes = matches!(s, Scalar::Bool(true) | Scalar::U64(1) | Scalar::Str("1"));
                Ok(Out::Bits(u64::from(yes)))
            }
            Kind::One { stage, field } => {
                if !matches!(s, Scalar::U64(1) | Scalar::Str("1")) {
                    eng.hit(&[stage], Rule::NotMinimalSearch, &s.render(), field);
                }
                Ok(Out::Unit)
            }
            Kind::Param(p) => {
                if p.accepts(&s) {
                    Ok(Out::Unit)
                } else {
                    Err(eng.stop(Rule::Malformed, &s.render(), p.name()))
                }
            }
            _ => Err(Walk { eng, ..self }.shape(s.what())),
        }
    }
}

fn distribution(eng: &mut Engine<'_>, stage: u32, s: &Scalar<'_>) -> Out {
    let level = match s {
        Scalar::U64(n) if *n <= 5 => Some(*n as u8),
        Scalar::Str(t) => match t.as_bytes() {
            [d @ b'0'..=b'5'] => Some(d - b'0'),
            _ => None,
        },
        _ => None,
    };
    match level {
        Some(d) => {
            let blocked = eng.policy.blocked_distributions.get(usize::from(d)) == Some(&true);
            if blocked {
                let digit = DIGITS.get(usize::from(d)).copied().unwrap_or("?");
                eng.hit(&[stage], Rule::BlockedDistribution, digit, "distribution");
            }
        }
        None => eng.hit(&[stage], Rule::Malformed, &s.render(), "distribution"),
    }
    Out::Dist(level)
}

fn rule_field(eng: &mut Engine<'_>, field: Field, stage: u32, s: &Scalar<'_>) -> Out {
    let Scalar::Str(text) = s else {
        eng.hit(&[stage], Rule::Malformed, &s.render(), field.name());
        return Out::Unit;
    };
    // PHP's trim() also strips NUL and vertical tab, and MISP trims what it
    // saves: `"email\u0000"` is `email` to MISP. No rule field carries a
    // control or invisible character legitimately, so none is guessed at.
    if text.chars().any(is_hidden) {
        eng.hit(&[stage], Rule::Malformed, text, field.name());
        return Out::Unit;
    }
    eng.norm(text);
    if let Field::Category { summary } = field {
        // MISP's beforeValidateMassage replaces an `empty()` category
        // ("", "0", after its trim) by the type's default category, which
        // may be a blocked one: we cannot tell which, so it is refused.
        // A summary may lack a category, so a blank one is as good as none.
        if eng.scratch.is_empty() || eng.scratch == "0" {
            if !summary {
                eng.hit(&[stage], Rule::Malformed, &s.render(), field.name());
            }
            return Out::Unit;
        }
    }
    if let Field::ClusterUuid = field {
        if let Some(tag) = eng.galaxy_tags.get(eng.scratch.as_str()).cloned() {
            eng.hit(&[stage], Rule::BlockedTag, &tag, field.name());
        }
        return Out::Unit;
    }
    let policy = eng.policy;
    let norm = eng.scratch.as_str();
    let (blocked, rule, bits) = match field {
        Field::Type => (
            policy.blocked_attribute_types.contains(norm),
            Rule::BlockedAttributeType,
            0,
        ),
        Field::Category { .. } => (
            policy.blocked_attribute_categories.contains(norm),
            Rule::BlockedAttributeCategory,
            0,
        ),
        Field::ObjectName => (
            policy.blocked_object_types.contains(norm),
            Rule::BlockedObjectType,
            0,
        ),
        Field::SgUuid => (
            policy.blocked_sharing_groups.contains(norm),
            Rule::BlockedSharingGroup,
            0,
        ),
        Field::ClusterTag => (policy.blocked_tags.contains(norm), Rule::BlockedTag, 0),
        // Handled above.
        Field::ClusterUuid => (false, Rule::BlockedTag, 0),
        Field::TagName => {
            let mut bits = 0u64;
            for (i, rt) in policy.required_taxonomies.iter().enumerate() {
                let in_ns = norm
                    .strip_prefix(rt.namespace.as_str())
                    .is_some_and(|rest| rest.starts_with(':'));
                if in_ns && (rt.allowed.is_empty() || rt.allowed.iter().any(|a| a == norm)) {
                    bits |= 1u64 << i;
                }
            }
            (policy.blocked_tags.contains(norm), Rule::BlockedTag, bits)
        }
    };
    if blocked {
        eng.hit(&[stage], rule, text, field.name());
    }
    Out::Bits(bits)
}

/// The narrow look-alike folding applied before comparing with the policy.
/// MISP's `tags.name` is `utf8mb3_bin`, so MISP tells `ｔｌｐ:ｒｅｄ` from
/// `tlp:red`: folding only blocks more, look-alikes of blocked names that
/// a reader cannot tell apart. Full-width ASCII (U+FF01..U+FF5E) becomes
/// ASCII. Not NFKC: only what is cheap and cannot turn a harmless name
/// into a blocked one by accident. Invisible characters are not folded
/// away but refused ([`is_hidden`]).
pub(super) fn fold(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        c => c,
    }
}

/// A character no MISP name holds: a control character (C0, DEL, C1), a
/// format character (zero-width ones, the soft hyphen, U+2061..U+2064,
/// U+180E, bidirectional controls, tag characters), a private-use or
/// unassigned code point, or another default-ignorable one that renders as
/// nothing (Hangul fillers, variation selectors, the combining grapheme
/// joiner). Any of them would let `tlp:` + U+2063 + `red` differ from
/// `tlp:red` to the guard and not to a reader, so a name holding one is
/// malformed rather than folded: no list of what to drop can be complete.
pub(super) fn is_hidden(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    if c.is_ascii() {
        return c < ' ' || c == '\u{7f}';
    }
    matches!(
        get_general_category(c),
        G::Control | G::Format | G::PrivateUse | G::Unassigned | G::Surrogate
    ) || matches!(
        c,
        '\u{34F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

fn rel_type(t: &str) -> RelType {
    match t {
        "Event" => RelType::Event,
        "Attribute" => RelType::Attribute,
        "Object" => RelType::Object,
        "GalaxyCluster" => RelType::GalaxyCluster,
        "Note" => RelType::Analyst(AKind::Note),
        "Opinion" => RelType::Analyst(AKind::Opinion),
        "Relationship" => RelType::Analyst(AKind::Relationship),
        _ => RelType::Other,
    }
}

fn matches_declared(t: RelType, i: Interp) -> bool {
    match (t, i) {
        (_, Interp::Empty) => true,
        (RelType::Event, Interp::Event)
        | (RelType::Attribute, Interp::Attribute)
        | (RelType::Object, Interp::Object)
        | (RelType::GalaxyCluster, Interp::GalaxyCluster) => true,
        (RelType::Analyst(_), Interp::Bare) => true,
        (RelType::Analyst(a), Interp::Wrapped(b)) => a == b,
        _ => false,
    }
}

macro_rules! scalar_visits {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Out, E> {
            self.scalar(Scalar::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Out, E> {
            self.scalar(Scalar::I64(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Out, E> {
            self.scalar(Scalar::U64(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Out, E> {
            self.scalar(Scalar::F64(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Out, E> {
            self.scalar(Scalar::Str(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Out, E> {
            self.scalar(Scalar::Null)
        }
    };
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = Out;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.expected())
    }

    scalar_visits!();

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<Out, A::Error> {
        self.enter()?;
        let Walk { eng, depth, kind } = self;
        match kind {
            Kind::Skip | Kind::Root(Document::AnyJson) => {
                let frame = eng.keys.open();
                drive(eng, depth, map, Skipper, frame, None, None)
            }
            Kind::Root(doc) => root_map(eng, depth, doc, map),
            Kind::Wrap(w) => wrapped(eng, depth, w, map),
            Kind::Ent(e) => entity(eng, depth, e, map),
            Kind::Related { stage } => related(eng, depth, stage, map),
            Kind::MinimalValue => entity(eng, depth, Ent::StrMap, map),
            Kind::Links { group, name } => {
                let rank = eng.rank.len();
                eng.rank.push(group);
                let mark = eng.push_path(name);
                let out = entity(eng, depth, Ent::TagLink, map)?;
                eng.path.truncate(mark);
                eng.rank.truncate(rank);
                Ok(out)
            }
            _ => Err(Walk { eng, depth, kind }.shape("an object")),
        }
    }

    fn visit_seq<S: SeqAccess<'de>>(mut self, seq: S) -> Result<Out, S::Error> {
        self.enter()?;
        let Walk { eng, depth, kind } = self;
        let (item, group, name) = match kind {
            Kind::Skip | Kind::Root(Document::AnyJson) => {
                return skip_seq(eng, depth, seq);
            }
            Kind::List { item, group, name } => (item, group, name),
            Kind::Links { group, name } => (Item::Ent(Ent::TagLink), group, name),
            Kind::Root(doc) => {
                let item = match doc {
                    Document::GalaxyClusterList => Item::Wrap(Wrap::Cluster { minimal: false }),
                    Document::GalaxyClusterSearch => Item::Wrap(Wrap::Cluster { minimal: true }),
                    Document::ShadowAttributeList => Item::Wrap(Wrap::Shadow),
                    Document::ProposalRows => Item::Ent(Ent::Proposal),
                    // PHP encodes an empty map as `[]`: nothing at all.
                    Document::AnalystDataMinimal => return empty_seq(eng, depth, seq),
                    Document::Sightings => Item::Ent(Ent::Sighting),
                    Document::EventIndex => Item::Ent(Ent::IndexEntry),
                    Document::AnalystDataList => Item::Wrap(Wrap::AnyAnalyst),
                    Document::EventUuidTimestamps => Item::Wrap(Wrap::EventUuidTimestamp),
                    Document::UuidList => Item::Str,
                    _ => return Err(Walk { eng, depth, kind }.shape("an array")),
                };
                (item, 0, "")
            }
            Kind::Related { .. } => {
                let mut seq = seq;
                let next = seq.next_element_seed(Walk {
                    eng: &mut *eng,
                    depth: depth + 1,
                    kind: Kind::Skip,
                })?;
                if next.is_some() {
                    return Err(Walk { eng, depth, kind }.shape("a non-empty array"));
                }
                return Ok(Out::Related(Interp::Empty));
            }
            Kind::MinimalValue => (Item::Ent(Ent::StrMap), 0, ""),
            Kind::Strings { min, max, name } => return strings(eng, depth, seq, min..=max, name),
            _ => return Err(Walk { eng, depth, kind }.shape("an array")),
        };
        list(eng, depth, seq, item, group, name)
    }
}

/// An array that must be empty: PHP's `json_encode` writes an empty map so.
fn empty_seq<'de, S: SeqAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    mut seq: S,
) -> Result<Out, S::Error> {
    let next = seq.next_element_seed(Walk {
        eng: &mut *eng,
        depth: depth + 1,
        kind: Kind::Skip,
    })?;
    match next {
        None => Ok(Out::Unit),
        Some(_) => Err(eng.stop(
            Rule::Malformed,
            "a non-empty array where an object was expected",
            "",
        )),
    }
}

fn skip_seq<'de, S: SeqAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    mut seq: S,
) -> Result<Out, S::Error> {
    while seq
        .next_element_seed(Walk {
            eng: &mut *eng,
            depth: depth + 1,
            kind: Kind::Skip,
        })?
        .is_some()
    {}
    Ok(Out::Unit)
}

/// An array of strings whose length must lie in `count`.
fn strings<'de, S: SeqAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    mut seq: S,
    count: std::ops::RangeInclusive<u32>,
    name: &'static str,
) -> Result<Out, S::Error> {
    let mut n = 0u32;
    loop {
        let mark = eng.push_index(name, n);
        let got = seq.next_element_seed(Walk {
            eng: &mut *eng,
            depth: depth + 1,
            kind: Kind::Str,
        })?;
        eng.path.truncate(mark);
        if got.is_none() {
            break;
        }
        n = n.saturating_add(1);
        if n > *count.end() {
            let value = format!("more than {} strings", count.end());
            return Err(eng.stop(Rule::Malformed, &value, name));
        }
    }
    if n < *count.start() {
        let value = format!("fewer than {} strings", count.start());
        return Err(eng.stop(Rule::Malformed, &value, name));
    }
    Ok(Out::Unit)
}

fn list<'de, S: SeqAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    mut seq: S,
    item: Item,
    group: u32,
    name: &'static str,
) -> Result<Out, S::Error> {
    let mut bits = 0u64;
    let mut i = 0u32;
    loop {
        let mark = eng.push_index(name, i);
        let rank = eng.rank.len();
        eng.rank.push(group);
        eng.rank.push(i);
        let got = seq.next_element_seed(Walk {
            eng: &mut *eng,
            depth: depth + 1,
            kind: item.kind(),
        })?;
        eng.rank.truncate(rank);
        eng.path.truncate(mark);
        match got {
            Some(out) => bits |= out.bits(),
            None => break,
        }
        i = i.saturating_add(1);
    }
    Ok(Out::Bits(bits))
}

/// The seed for one key: classifies it, refuses a duplicate and what the
/// node refuses by name, and in an object of fixed shape refuses any key
/// not in `allowed`.
struct KeySeed<'a, 'p> {
    eng: &'a mut Engine<'p>,
    frame: &'a mut Frame,
    allowed: Option<u128>,
    /// Keys refused by their text, with the rule they break.
    refuse: fn(&str) -> Option<Rule>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = Option<K>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<K>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = Option<K>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<K>, E> {
        let k = classify(s);
        match self.eng.keys.insert(self.frame, k, s) {
            Ok(()) => {}
            Err(KeyError::Duplicate) => return Err(self.eng.stop(Rule::DuplicateKey, s, s)),
            Err(KeyError::TooMany) => {
                return Err(self.eng.stop(Rule::Malformed, "too many object keys", s))
            }
        }
        if let Some(rule) = (self.refuse)(s) {
            return Err(self.eng.stop(rule, s, s));
        }
        if let Some(mask) = self.allowed {
            if k.is_none_or(|k| mask & k.bit() == 0) {
                return Err(self
                    .eng
                    .stop(Rule::Malformed, &format!("unexpected key {s:?}"), s));
            }
        }
        Ok(k)
    }
}

/// An object read key by key.
trait Node {
    /// A key this node refuses outright, by its text (the walk hands
    /// [`Node::key`] only the keys it knows), and the rule it breaks.
    fn refuses(_key: &str) -> Option<Rule> {
        None
    }

    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error>;

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E>;
}

fn drive<'de, A: MapAccess<'de>, N: Node>(
    eng: &mut Engine<'_>,
    depth: usize,
    mut map: A,
    mut node: N,
    mut frame: Frame,
    first: Option<Option<K>>,
    allowed: Option<u128>,
) -> Result<Out, A::Error> {
    if let Some(k) = first {
        node.key(eng, depth, k, &mut map)?;
    }
    while let Some(k) = map.next_key_seed(KeySeed {
        eng: &mut *eng,
        frame: &mut frame,
        allowed,
        refuse: N::refuses,
    })? {
        node.key(eng, depth, k, &mut map)?;
    }
    eng.keys.close(frame);
    node.end(eng)
}

fn val<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    map: &mut A,
    kind: Kind,
) -> Result<Out, A::Error> {
    map.next_value_seed(Walk {
        eng,
        depth: depth + 1,
        kind,
    })
}

fn skip<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    map: &mut A,
) -> Result<(), A::Error> {
    val(eng, depth, map, Kind::Skip).map(|_| ())
}

fn links(group: u32, name: &'static str) -> Kind {
    Kind::Links { group, name }
}

fn items(item: Ent, group: u32, name: &'static str) -> Kind {
    Kind::List {
        item: Item::Ent(item),
        group,
        name,
    }
}

/// One entity held under key `name` of another (an object's `Object`),
/// checked at `stage` of its holder, under its own path.
fn nested<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    map: &mut A,
    stage: u32,
    name: &str,
    kind: Kind,
) -> Result<Out, A::Error> {
    let rank = eng.rank.len();
    eng.rank.push(stage);
    let mark = eng.push_path(name);
    let out = val(eng, depth, map, kind)?;
    eng.path.truncate(mark);
    eng.rank.truncate(rank);
    Ok(out)
}

fn dist_of(out: Out) -> Option<Option<u8>> {
    match out {
        Out::Dist(d) => Some(d),
        _ => Some(None),
    }
}

fn sg_of(out: Out) -> Option<(bool, bool)> {
    match out {
        Out::Sg(m, a) => Some((m, a)),
        _ => Some((false, false)),
    }
}

/// Analyst data lists (`Note`, `Opinion`, `Relationship`) hanging off an
/// entity, at stages `first`, `first + 1`, `first + 2`.
fn analyst_lists<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    k: K,
    first: u32,
    map: &mut A,
) -> Result<bool, A::Error> {
    let (kind, stage, name) = match k {
        K::Note => (AKind::Note, first, "Note"),
        K::Opinion => (AKind::Opinion, first + 1, "Opinion"),
        K::Relationship => (AKind::Relationship, first + 2, "Relationship"),
        _ => return Ok(false),
    };
    val(eng, depth, map, items(Ent::Analyst(kind), stage, name))?;
    Ok(true)
}

fn root_map<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    doc: Document,
    map: A,
) -> Result<Out, A::Error> {
    let frame = eng.keys.open();
    let any_analyst = K::Note.bit() | K::Opinion.bit() | K::Relationship.bit();
    match doc {
        Document::Event => wrapped(eng, depth, Wrap::Event, map),
        Document::GalaxyCluster => wrapped(eng, depth, Wrap::Cluster { minimal: false }, map),
        Document::AnalystDataItem => wrapped(eng, depth, Wrap::AnyAnalyst, map),
        Document::GalaxyClusterSearch => {
            let node = Response {
                item: Item::Wrap(Wrap::Cluster { minimal: true }),
                required: true,
                seen: false,
            };
            drive(eng, depth, map, node, frame, None, Some(K::Response.bit()))
        }
        Document::Sightings => {
            let node = Response {
                item: Item::Wrap(Wrap::Sighting),
                required: false,
                seen: false,
            };
            drive(eng, depth, map, node, frame, None, Some(K::Response.bit()))
        }
        Document::AnalystDataMinimal => drive(
            eng,
            depth,
            map,
            AnalystMinimal,
            frame,
            None,
            Some(any_analyst),
        ),
        Document::MinimalSearch => {
            drive(eng, depth, map, MinimalSearch::default(), frame, None, None)
        }
        Document::SightingSearch => drive(
            eng,
            depth,
            map,
            SightingSearch::default(),
            frame,
            None,
            None,
        ),
        Document::PostTest => drive(
            eng,
            depth,
            map,
            PostTest { seen: false },
            frame,
            None,
            Some(K::TestString.bit()),
        ),
        Document::AnyJson => drive(eng, depth, map, Skipper, frame, None, None),
        _ => Err(Walk {
            eng,
            depth,
            kind: Kind::Root(doc),
        }
        .shape("an object")),
    }
}

fn wrapped<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    w: Wrap,
    mut map: A,
) -> Result<Out, A::Error> {
    let mut frame = eng.keys.open();
    let first = map.next_key_seed(KeySeed {
        eng: &mut *eng,
        frame: &mut frame,
        allowed: Some(w.allowed()),
        refuse: Skipper::refuses,
    })?;
    let Some(Some(k)) = first else {
        return Err(eng.stop(Rule::Malformed, &format!("missing {}", w.expected()), ""));
    };
    let mark = eng.push_path(k.text());
    let out = val(eng, depth, &mut map, w.inner(k))?;
    eng.path.truncate(mark);
    let more = map.next_key_seed(KeySeed {
        eng: &mut *eng,
        frame: &mut frame,
        allowed: Some(0),
        refuse: Skipper::refuses,
    })?;
    if more.is_some() {
        return Err(eng.stop(Rule::Malformed, "unexpected key", ""));
    }
    eng.keys.close(frame);
    Ok(out)
}

fn entity<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    e: Ent,
    map: A,
) -> Result<Out, A::Error> {
    let frame = eng.keys.open();
    match e {
        Ent::Event { related } => {
            let node = EventNode::new(!related, true);
            drive(eng, depth, map, node, frame, None, None)
        }
        Ent::EventSummary => {
            let node = EventNode::new(false, false);
            drive(eng, depth, map, node, frame, None, None)
        }
        Ent::Attribute => drive(eng, depth, map, AttributeNode::default(), frame, None, None),
        Ent::AttributeSummary => {
            let node = AttributeNode {
                summary: true,
                ..AttributeNode::default()
            };
            drive(eng, depth, map, node, frame, None, None)
        }
        Ent::Proposal => {
            let node = AttributeNode {
                proposal: true,
                ..AttributeNode::default()
            };
            drive(eng, depth, map, node, frame, None, None)
        }
        Ent::Sighting => drive(eng, depth, map, SightingNode, frame, None, None),
        Ent::Object => drive(eng, depth, map, ObjectNode::default(), frame, None, None),
        Ent::Report => drive(eng, depth, map, ReportNode::default(), frame, None, None),
        Ent::Analyst(kind) => drive(eng, depth, map, AnalystNode::new(kind), frame, None, None),
        Ent::Cluster { minimal } => drive(
            eng,
            depth,
            map,
            ClusterNode::new(minimal),
            frame,
            None,
            None,
        ),
        Ent::Relation => drive(eng, depth, map, RelationNode::default(), frame, None, None),
        Ent::Galaxy => drive(
            eng,
            depth,
            map,
            Pick(
                K::GalaxyCluster,
                items(Ent::Cluster { minimal: true }, 0, "GalaxyCluster"),
                0,
            ),
            frame,
            None,
            None,
        ),
        Ent::Tag => drive(eng, depth, map, TagNode::default(), frame, None, None),
        Ent::TagLink => drive(eng, depth, map, TagLinkNode::default(), frame, None, None),
        Ent::Sg { stage } => drive(eng, depth, map, SgNode::new(stage), frame, None, None),
        Ent::SgOrg => drive(
            eng,
            depth,
            map,
            Pick(K::Organisation, Kind::Ent(Ent::Organisation), 0),
            frame,
            None,
            None,
        ),
        Ent::SgServer => drive(
            eng,
            depth,
            map,
            Pick(K::AllOrgs, Kind::Truthy, 0),
            frame,
            None,
            None,
        ),
        Ent::Organisation => drive(
            eng,
            depth,
            map,
            Pick(K::Uuid, Kind::OrgUuid, 0),
            frame,
            None,
            None,
        ),
        Ent::EventUuidTimestamp => {
            let allowed = K::Uuid.bit() | K::Timestamp.bit();
            drive(
                eng,
                depth,
                map,
                UuidTimestamp::default(),
                frame,
                None,
                Some(allowed),
            )
        }
        Ent::StrMap => drive(eng, depth, map, StrMap, frame, None, None),
        Ent::IndexEntry => drive(eng, depth, map, IndexEntry, frame, None, None),
    }
}

/// A `related_object`: its first key tells its shape (`{"Event":…}`,
/// `{"Attribute":…}`, …, or a bare analyst data object), so it is read
/// under that one interpretation before `related_object_type` is known,
/// and the relationship checks at its end that the two agree.
fn related<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    stage: u32,
    mut map: A,
) -> Result<Out, A::Error> {
    let rank = eng.rank.len();
    eng.rank.push(stage);
    let mark = eng.push_path("related_object");
    let mut frame = eng.keys.open();
    let first = map.next_key_seed(KeySeed {
        eng: &mut *eng,
        frame: &mut frame,
        allowed: None,
        refuse: Skipper::refuses,
    })?;
    let wrapped_kind = match first {
        None => None,
        Some(Some(K::Event)) => Some((Interp::Event, Kind::Ent(Ent::Event { related: false }))),
        Some(Some(K::Attribute)) => Some((Interp::Attribute, Kind::Ent(Ent::Attribute))),
        Some(Some(K::Object)) => Some((Interp::Object, Kind::Ent(Ent::Object))),
        Some(Some(K::GalaxyCluster)) => Some((
            Interp::GalaxyCluster,
            Kind::Ent(Ent::Cluster { minimal: false }),
        )),
        Some(Some(k @ (K::Note | K::Opinion | K::Relationship))) => Some((
            Interp::Wrapped(akind_of(k)),
            Kind::Ent(Ent::Analyst(akind_of(k))),
        )),
        Some(_) => {
            let node = AnalystNode::new(AKind::Bare);
            drive(eng, depth, map, node, frame, first, None)?;
            eng.path.truncate(mark);
            eng.rank.truncate(rank);
            return Ok(Out::Related(Interp::Bare));
        }
    };
    let interp = match wrapped_kind {
        None => Interp::Empty,
        Some((interp, kind)) => {
            if let Some(Some(k)) = first {
                let inner = eng.push_path(k.text());
                val(eng, depth, &mut map, kind)?;
                eng.path.truncate(inner);
            }
            let more = map.next_key_seed(KeySeed {
                eng: &mut *eng,
                frame: &mut frame,
                allowed: Some(0),
                refuse: Skipper::refuses,
            })?;
            if more.is_some() {
                return Err(eng.stop(Rule::Malformed, "unexpected key", ""));
            }
            interp
        }
    };
    eng.keys.close(frame);
    eng.path.truncate(mark);
    eng.rank.truncate(rank);
    Ok(Out::Related(interp))
}

/// Any object: every key checked for duplicates, every value skipped.
struct Skipper;

impl Node for Skipper {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        _: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        skip(eng, depth, map)
    }

    fn end<E: de::Error>(self, _: &mut Engine<'_>) -> Result<Out, E> {
        Ok(Out::Unit)
    }
}

/// An object of which one key matters: its value's bits are the answer.
struct Pick(K, Kind, u64);

impl Node for Pick {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        if k == Some(self.0) {
            self.2 |= val(eng, depth, map, self.1)?.bits();
            Ok(())
        } else {
            skip(eng, depth, map)
        }
    }

    fn end<E: de::Error>(self, _: &mut Engine<'_>) -> Result<Out, E> {
        Ok(Out::Bits(self.2))
    }
}

struct EventNode {
    /// Required taxonomies apply (not to summaries of other events).
    taxonomies: bool,
    /// A missing distribution is malformed (not in a sighting's summary).
    dist_required: bool,
    dist: Option<Option<u8>>,
    tags: Option<u64>,
    sg: Option<(bool, bool)>,
}

impl EventNode {
    fn new(taxonomies: bool, dist_required: bool) -> EventNode {
        EventNode {
            taxonomies,
            dist_required,
            dist: None,
            tags: None,
            sg: None,
        }
    }
}

// Event stages, in the older guard's order: tags 0, required taxonomies 3,
// distribution 4, event reports 5, sharing group 6, notes 7, opinions 8,
// relationships 9, then attributes 10, objects 11, and what it never
// looked at: event tag links 1 and galaxies 2 (tags MISP attaches too),
// event-level proposals 12, related events 13, inbound relationships 14.
impl Node for EventNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let Some(k) = k else {
            return skip(eng, depth, map);
        };
        match k {
            K::Tag => {
                let bits = val(eng, depth, map, items(Ent::Tag, 0, "Tag"))?.bits();
                self.tags = Some(self.tags.unwrap_or(0) | bits);
            }
            K::EventTag => {
                let bits = val(eng, depth, map, links(1, "EventTag"))?.bits();
                self.tags = Some(self.tags.unwrap_or(0) | bits);
            }
            K::Galaxy => {
                val(eng, depth, map, items(Ent::Galaxy, 2, "Galaxy"))?;
            }
            K::Distribution => self.dist = dist_of(val(eng, depth, map, Kind::Dist { stage: 4 })?),
            K::EventReport => {
                val(eng, depth, map, items(Ent::Report, 5, "EventReport"))?;
            }
            K::SharingGroup => {
                self.sg = sg_of(val(eng, depth, map, Kind::Ent(Ent::Sg { stage: 6 }))?)
            }
            K::Attribute => {
                val(eng, depth, map, items(Ent::Attribute, 10, "Attribute"))?;
            }
            K::Object => {
                val(eng, depth, map, items(Ent::Object, 11, "Object"))?;
            }
            K::ShadowAttribute => {
                val(eng, depth, map, items(Ent::Proposal, 12, "ShadowAttribute"))?;
            }
            K::RelationshipInbound => inbound(eng, depth, map, 14)?,
            K::RelatedEvent => {
                let kind = Kind::List {
                    item: Item::Wrap(Wrap::RelatedEvent),
                    group: 13,
                    name: "RelatedEvent",
                };
                let present = val(eng, depth, map, kind)?.bits();
                // A related event summary carries no tags, so blocked tags
                // and required taxonomies cannot be judged on it, and its
                // `info` names an event the receiver may not be allowed to
                // see (the answer to a push's events/add or edit). The pull
                // pins includeEventCorrelations:0 and a pushing MISP never
                // reads the answer's RelatedEvent, so MISP's own traffic
                // carries none when tag rules are in force.
                let policy = eng.policy;
                let tag_rules =
                    !policy.blocked_tags.is_empty() || !policy.required_taxonomies.is_empty();
                if present != 0 && tag_rules {
                    eng.hit(
                        &[13],
                        Rule::BlockedTag,
                        RELATED_EVENT_UNJUDGED,
                        "RelatedEvent",
                    );
                }
            }
            _ => {
                if !analyst_lists(eng, depth, k, 7, map)? {
                    skip(eng, depth, map)?;
                }
            }
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if self.taxonomies {
            eng.required_taxonomies(3, self.tags);
        }
        if self.dist.is_none() && self.dist_required {
            eng.hit(&[4], Rule::Malformed, "missing", "distribution");
        }
        eng.sg_end(6, self.dist, self.sg);
        // Seen by the `RelatedEvent` list of the holder: one bit, "there
        // was an event", whatever it held.
        Ok(Out::Bits(1))
    }
}

/// The value of the block for a non-empty `RelatedEvent` list under tag
/// rules: its summaries carry no tags to judge.
pub(super) const RELATED_EVENT_UNJUDGED: &str = "RelatedEvent (tags not visible)";

/// The value of the block for an entity wrapped in another of its kind.
pub(super) const WRAPPED: &str = "a wrapped form MISP does not send";

/// The value of the block for a tag link naming a local tag id.
pub(super) const TAG_BY_ID: &str = "a tag attached by its local id";

/// `RelationshipInbound`: the relationships of other entities pointing at
/// this one, which MISP's REST view adds to every entity. The receiver
/// does not save them, but they cross, each with its own distribution and
/// sharing group: judged as relationships, at `stage` of the holder.
fn inbound<'de, A: MapAccess<'de>>(
    eng: &mut Engine<'_>,
    depth: usize,
    map: &mut A,
    stage: u32,
) -> Result<(), A::Error> {
    let kind = items(
        Ent::Analyst(AKind::Relationship),
        stage,
        "RelationshipInbound",
    );
    val(eng, depth, map, kind).map(|_| ())
}

#[derive(Default)]
struct AttributeNode {
    /// A sighting's copy: type and category may be absent, required
    /// taxonomies do not apply (it carries no tags).
    summary: bool,
    /// A proposal: it has no distribution of its own.
    proposal: bool,
    category: bool,
    kind: bool,
    dist: Option<Option<u8>>,
    tags: Option<u64>,
    sg: Option<(bool, bool)>,
}

// Attribute stages: category 0, type 1, distribution 2, tags 3, tag
// links 4, galaxies 5, required taxonomies 6, sharing group 7, proposals 8,
// notes 9, opinions 10, relationships 11, inbound relationships 12, an
// `Attribute` inside 13. MISP's save paths do not unwrap an inner
// `Attribute` and no MISP sends one, so it is refused rather than guessed
// at.
impl Node for AttributeNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let Some(k) = k else {
            return skip(eng, depth, map);
        };
        match k {
            K::Category => {
                self.category = true;
                val(
                    eng,
                    depth,
                    map,
                    Kind::Field {
                        field: Field::Category {
                            summary: self.summary,
                        },
                        stage: 0,
                    },
                )?;
            }
            K::Type => {
                self.kind = true;
                val(
                    eng,
                    depth,
                    map,
                    Kind::Field {
                        field: Field::Type,
                        stage: 1,
                    },
                )?;
            }
            K::Distribution => self.dist = dist_of(val(eng, depth, map, Kind::Dist { stage: 2 })?),
            K::Tag => {
                let bits = val(eng, depth, map, items(Ent::Tag, 3, "Tag"))?.bits();
                self.tags = Some(self.tags.unwrap_or(0) | bits);
            }
            K::AttributeTag => {
                let bits = val(eng, depth, map, links(4, "AttributeTag"))?.bits();
                self.tags = Some(self.tags.unwrap_or(0) | bits);
            }
            K::Galaxy => {
                val(eng, depth, map, items(Ent::Galaxy, 5, "Galaxy"))?;
            }
            K::SharingGroup => {
                self.sg = sg_of(val(eng, depth, map, Kind::Ent(Ent::Sg { stage: 7 }))?)
            }
            K::ShadowAttribute => {
                val(eng, depth, map, items(Ent::Proposal, 8, "ShadowAttribute"))?;
            }
            K::RelationshipInbound => inbound(eng, depth, map, 12)?,
            K::Attribute => {
                eng.hit(&[13], Rule::Malformed, WRAPPED, "Attribute");
                skip(eng, depth, map)?;
            }
            _ => {
                if !analyst_lists(eng, depth, k, 9, map)? {
                    skip(eng, depth, map)?;
                }
            }
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if !self.category && !self.summary {
            eng.hit(&[0], Rule::Malformed, "missing", "category");
        }
        if !self.kind && !self.summary {
            eng.hit(&[1], Rule::Malformed, "missing", "type");
        }
        // MISP gives an attribute without one the receiver's default
        // distribution, which no rule here can judge; MISP always sends it.
        if self.dist.is_none() && !self.summary && !self.proposal {
            eng.hit(&[2], Rule::Malformed, "missing", "distribution");
        }
        if !eng.policy.required_taxonomies.is_empty() && !self.summary {
            eng.required_taxonomies(6, self.tags);
        }
        eng.sg_end(7, self.dist, self.sg);
        Ok(Out::Unit)
    }
}

#[derive(Default)]
struct ObjectNode {
    name: bool,
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

// Object stages: distribution 0, sharing group 1, name 2, tags 3,
// attributes 4, notes 5, opinions 6, relationships 7, inbound
// relationships 8, wrapped object 9. MISP's captureObject saves
// `$object['Object']` instead of the item when the item has that key, with
// the inner object's *local* `sharing_group_id` unchecked, its
// `SharingGroup` ignored and its attributes' tags attached by local id;
// a pull's downgrade does not reach it. No MISP sends that form, and
// judging the inner object would not be enough: it is refused.
impl Node for ObjectNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let Some(k) = k else {
            return skip(eng, depth, map);
        };
        match k {
            K::Distribution => self.dist = dist_of(val(eng, depth, map, Kind::Dist { stage: 0 })?),
            K::SharingGroup => {
                self.sg = sg_of(val(eng, depth, map, Kind::Ent(Ent::Sg { stage: 1 }))?)
            }
            K::Name => {
                self.name = true;
                val(
                    eng,
                    depth,
                    map,
                    Kind::Field {
                        field: Field::ObjectName,
                        stage: 2,
                    },
                )?;
            }
            K::Tag => {
                val(eng, depth, map, items(Ent::Tag, 3, "Tag"))?;
            }
            K::Attribute => {
                val(eng, depth, map, items(Ent::Attribute, 4, "Attribute"))?;
            }
            K::RelationshipInbound => inbound(eng, depth, map, 8)?,
            K::Object => {
                eng.hit(&[9], Rule::Malformed, WRAPPED, "Object");
                skip(eng, depth, map)?;
            }
            _ => {
                if !analyst_lists(eng, depth, k, 5, map)? {
                    skip(eng, depth, map)?;
                }
            }
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if self.dist.is_none() {
            eng.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        eng.sg_end(1, self.dist, self.sg);
        if !self.name {
            eng.hit(&[2], Rule::Malformed, "missing", "name");
        }
        Ok(Out::Unit)
    }
}

/// One sighting. Its own fields carry no rule, but a puller that asked
/// for `includeAttribute` / `includeEvent` gets the attribute (type,
/// category, value, …) and a summary of its event embedded.
struct SightingNode;

// Sighting stages: attribute 0, event 1, a wrapped sighting 2.
impl Node for SightingNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let (stage, name, e) = match k {
            Some(K::Attribute) => (0, "Attribute", Ent::AttributeSummary),
            Some(K::Event) => (1, "Event", Ent::EventSummary),
            Some(K::Sighting) => (2, "Sighting", Ent::Sighting),
            _ => return skip(eng, depth, map),
        };
        nested(eng, depth, map, stage, name, Kind::Ent(e)).map(|_| ())
    }

    fn end<E: de::Error>(self, _: &mut Engine<'_>) -> Result<Out, E> {
        Ok(Out::Unit)
    }
}

#[derive(Default)]
struct ReportNode {
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

// Event report stages: distribution 0, sharing group 1, notes 2,
// opinions 3, relationships 4, inbound relationships 5, wrapped report 6.
// `EventReport::captureReport` saves the inner report of an item
// `{"EventReport":{…}}` (its distribution and sharing group, which a
// pull's downgrade does not reach); no MISP sends that form: refused.
impl Node for ReportNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let Some(k) = k else {
            return skip(eng, depth, map);
        };
        match k {
            K::Distribution => self.dist = dist_of(val(eng, depth, map, Kind::Dist { stage: 0 })?),
            K::SharingGroup => {
                self.sg = sg_of(val(eng, depth, map, Kind::Ent(Ent::Sg { stage: 1 }))?)
            }
            K::RelationshipInbound => inbound(eng, depth, map, 5)?,
            K::EventReport => {
                eng.hit(&[6], Rule::Malformed, WRAPPED, "EventReport");
                skip(eng, depth, map)?;
            }
            _ => {
                if !analyst_lists(eng, depth, k, 2, map)? {
                    skip(eng, depth, map)?;
                }
            }
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if self.dist.is_none() {
            eng.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        eng.sg_end(1, self.dist, self.sg);
        Ok(Out::Unit)
    }
}

struct AnalystNode {
    kind: AKind,
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
    rel_type: Option<RelType>,
    related: Option<Interp>,
}

impl AnalystNode {
    fn new(kind: AKind) -> AnalystNode {
        AnalystNode {
            kind,
            dist: None,
            sg: None,
            rel_type: None,
            related: None,
        }
    }

    fn relational(&self) -> bool {
        matches!(self.kind, AKind::Relationship | AKind::Bare)
    }
}

// Analyst data stages: distribution 0, sharing group 1, related object 2,
// then its own notes 3, opinions 4, relationships 5, inbound
// relationships 6.
impl Node for AnalystNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let Some(k) = k else {
            return skip(eng, depth, map);
        };
        match k {
            K::Distribution => self.dist = dist_of(val(eng, depth, map, Kind::Dist { stage: 0 })?),
            K::SharingGroup => {
                self.sg = sg_of(val(eng, depth, map, Kind::Ent(Ent::Sg { stage: 1 }))?)
            }
            K::RelatedObjectType if self.relational() => {
                if let Out::RelType(t) = val(eng, depth, map, Kind::RelType)? {
                    self.rel_type = Some(t);
                }
            }
            K::RelatedObject if self.relational() => {
                if let Out::Related(i) = val(eng, depth, map, Kind::Related { stage: 2 })? {
                    self.related = Some(i);
                }
            }
            K::RelationshipInbound => inbound(eng, depth, map, 6)?,
            _ => {
                if !analyst_lists(eng, depth, k, 3, map)? {
                    skip(eng, depth, map)?;
                }
            }
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if self.dist.is_none() {
            eng.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        eng.sg_end(1, self.dist, self.sg);
        let related = self.related.unwrap_or(Interp::Empty);
        match (self.rel_type, related) {
            (None, Interp::Empty) => {
                if self.kind == AKind::Relationship {
                    eng.hit(&[2], Rule::Malformed, "missing", "related_object_type");
                }
            }
            (None, _) => {
                return Err(eng.stop(Rule::Malformed, "missing", "related_object_type"));
            }
            (Some(t), i) => {
                if !matches_declared(t, i) {
                    let value =
                        format!("related_object is not of related_object_type ({i:?} vs {t:?})");
                    return Err(eng.stop(Rule::Malformed, &value, "related_object"));
                }
            }
        }
        Ok(Out::Unit)
    }
}

struct ClusterNode {
    minimal: bool,
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

impl ClusterNode {
    fn new(minimal: bool) -> ClusterNode {
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
impl Node for ClusterNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match k {
            Some(K::Distribution) => {
                self.dist = dist_of(val(eng, depth, map, Kind::Dist { stage: 0 })?)
            }
            Some(K::SharingGroup) => {
                self.sg = sg_of(val(eng, depth, map, Kind::Ent(Ent::Sg { stage: 1 }))?)
            }
            Some(K::GalaxyClusterRelation) => {
                val(
                    eng,
                    depth,
                    map,
                    items(Ent::Relation, 2, "GalaxyClusterRelation"),
                )?;
            }
            Some(K::TagName) => {
                let kind = Kind::Field {
                    field: Field::ClusterTag,
                    stage: 3,
                };
                val(eng, depth, map, kind)?;
            }
            Some(K::TargetingClusterRelation) => {
                val(
                    eng,
                    depth,
                    map,
                    items(Ent::Relation, 5, "TargetingClusterRelation"),
                )?;
            }
            Some(K::Uuid) => {
                let kind = Kind::Field {
                    field: Field::ClusterUuid,
                    stage: 4,
                };
                val(eng, depth, map, kind)?;
            }
            _ => skip(eng, depth, map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if self.dist.is_none() && !self.minimal {
            eng.hit(&[0], Rule::Malformed, "missing", "distribution");
        }
        eng.sg_end(1, self.dist, self.sg);
        Ok(Out::Unit)
    }
}

#[derive(Default)]
struct RelationNode {
    dist: Option<Option<u8>>,
    sg: Option<(bool, bool)>,
}

// Cluster relation stages: distribution 0, tags 1, sharing group 2.
impl Node for RelationNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match k {
            Some(K::Distribution) => {
                self.dist = dist_of(val(eng, depth, map, Kind::Dist { stage: 0 })?)
            }
            Some(K::Tag) => {
                val(eng, depth, map, items(Ent::Tag, 1, "Tag"))?;
            }
            // MISP's `captureRelations` takes these flat `{"name":…}` items
            // before `Tag` when both are there.
            Some(K::GalaxyClusterRelationTag) => {
                val(
                    eng,
                    depth,
                    map,
                    items(Ent::Tag, 1, "GalaxyClusterRelationTag"),
                )?;
            }
            // ... and unwraps `{"GalaxyClusterRelation":{…}}` items, saving
            // the inner relation: judged as one.
            Some(K::GalaxyClusterRelation) => {
                let mark = eng.push_path("GalaxyClusterRelation");
                val(eng, depth, map, Kind::Ent(Ent::Relation))?;
                eng.path.truncate(mark);
            }
            Some(K::SharingGroup) => {
                self.sg = sg_of(val(eng, depth, map, Kind::Ent(Ent::Sg { stage: 2 }))?)
            }
            _ => skip(eng, depth, map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        eng.sg_end(2, self.dist, self.sg);
        Ok(Out::Unit)
    }
}

#[derive(Default)]
struct TagNode {
    name: bool,
    bits: u64,
}

impl Node for TagNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        if k == Some(K::Name) {
            self.name = true;
            self.bits = val(
                eng,
                depth,
                map,
                Kind::Field {
                    field: Field::TagName,
                    stage: 0,
                },
            )?
            .bits();
            Ok(())
        } else {
            skip(eng, depth, map)
        }
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if !self.name {
            eng.hit(&[0], Rule::Malformed, "missing", "name");
        }
        Ok(Out::Bits(self.bits))
    }
}

/// One `EventTag` / `AttributeTag` item: MISP attaches its `Tag`.
#[derive(Default)]
struct TagLinkNode {
    tag: bool,
    bits: u64,
}

impl Node for TagLinkNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match k {
            Some(K::Tag) => {
                self.tag = true;
                let mark = eng.push_path("Tag");
                self.bits = val(eng, depth, map, Kind::Ent(Ent::Tag))?.bits();
                eng.path.truncate(mark);
                Ok(())
            }
            // `captureAttribute` saves `AttributeTag` rows as they come, so
            // the tag attached is the receiver's tag of that local id and
            // the name beside it is not read: only the name can be judged.
            Some(K::TagId) => {
                eng.hit(&[1], Rule::Malformed, TAG_BY_ID, "tag_id");
                skip(eng, depth, map)
            }
            _ => skip(eng, depth, map),
        }
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        // Without a `Tag` the link is unreadable for us: `{"0":{…}}` is a
        // list to PHP, and MISP would read it so.
        if !self.tag {
            eng.hit(&[0], Rule::Malformed, "missing", "Tag");
        }
        Ok(Out::Bits(self.bits))
    }
}

struct SgNode {
    stage: u32,
    uuid: bool,
    member: bool,
    all_orgs: bool,
}

impl SgNode {
    fn new(stage: u32) -> SgNode {
        SgNode {
            stage,
            uuid: false,
            member: false,
            all_orgs: false,
        }
    }
}

impl Node for SgNode {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match k {
            Some(K::Uuid) => {
                self.uuid = true;
                val(
                    eng,
                    depth,
                    map,
                    Kind::Field {
                        field: Field::SgUuid,
                        stage: self.stage,
                    },
                )?;
            }
            Some(K::SharingGroupOrg) => {
                let kind = items(Ent::SgOrg, 0, "SharingGroup.SharingGroupOrg");
                self.member |= val(eng, depth, map, kind)?.bits() != 0;
            }
            Some(K::SharingGroupServer) => {
                let kind = items(Ent::SgServer, 0, "SharingGroup.SharingGroupServer");
                self.all_orgs |= val(eng, depth, map, kind)?.bits() != 0;
            }
            _ => skip(eng, depth, map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if !self.uuid {
            eng.hit(
                &[self.stage],
                Rule::Malformed,
                "missing",
                "SharingGroup.uuid",
            );
        }
        Ok(Out::Sg(self.member, self.all_orgs))
    }
}

/// `{"response":[…]}`.
struct Response {
    item: Item,
    required: bool,
    seen: bool,
}

impl Node for Response {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        _: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        self.seen = true;
        let kind = Kind::List {
            item: self.item,
            group: 0,
            name: "response",
        };
        val(eng, depth, map, kind).map(|_| ())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if self.required && !self.seen {
            return Err(eng.stop(Rule::Malformed, "missing response", ""));
        }
        Ok(Out::Unit)
    }
}

/// `{"Note":{uuid:modified}|[{uuid:modified}]|[],…}`.
struct AnalystMinimal;

impl Node for AnalystMinimal {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let mark = eng.push_path(k.map_or("", K::text));
        val(eng, depth, map, Kind::MinimalValue)?;
        eng.path.truncate(mark);
        Ok(())
    }

    fn end<E: de::Error>(self, _: &mut Engine<'_>) -> Result<Out, E> {
        Ok(Out::Unit)
    }
}

/// An object whose values are all strings (uuid → modified).
struct StrMap;

impl Node for StrMap {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        _: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        val(eng, depth, map, Kind::Str).map(|_| ())
    }

    fn end<E: de::Error>(self, _: &mut Engine<'_>) -> Result<Out, E> {
        Ok(Out::Unit)
    }
}

/// One entry of the `events/index` answer. A minimal index (the only kind
/// the table lets a client ask for) has flat entries: id, uuid, timestamps,
/// published, orgc_uuid. Nested values (`Org`, `EventTag`, …) mean the
/// remote answered a full index, which carries tags and more: refused.
struct IndexEntry;

impl Node for IndexEntry {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        _: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        val(eng, depth, map, Kind::Flat).map(|_| ())
    }

    fn end<E: de::Error>(self, _: &mut Engine<'_>) -> Result<Out, E> {
        Ok(Out::Unit)
    }
}

#[derive(Default)]
struct MinimalSearch {
    minimal: bool,
    published: bool,
}

/// A key MISP would read instead of, or on top of, the body's `minimal`
/// and `published`. `EventsController::index` (and `_harvestParameters`)
/// search `$data['request']` instead of the body when it is set, and
/// `index` folds keys case-insensitively, dropping a `search` prefix
/// (`Minimal`, `searchminimal`, `SearchPublished`), the last one winning.
/// `request` is refused in any case, the folded spellings of the two flags
/// in any case and with any `search` prefix: wider than PHP (whose prefix
/// is case-sensitive), never narrower.
fn shadows_search_flag(key: &str) -> bool {
    if key == "minimal" || key == "published" {
        return false;
    }
    let lower = key.to_ascii_lowercase();
    let bare = lower.strip_prefix("search").unwrap_or(&lower);
    lower == "request" || bare == "minimal" || bare == "published"
}

impl Node for MinimalSearch {
    fn refuses(key: &str) -> Option<Rule> {
        shadows_search_flag(key).then_some(Rule::NotMinimalSearch)
    }

    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match k {
            Some(K::Minimal) => {
                self.minimal = true;
                val(
                    eng,
                    depth,
                    map,
                    Kind::One {
                        stage: 0,
                        field: "minimal",
                    },
                )?;
            }
            Some(K::Published) => {
                self.published = true;
                val(
                    eng,
                    depth,
                    map,
                    Kind::One {
                        stage: 1,
                        field: "published",
                    },
                )?;
            }
            _ => skip(eng, depth, map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if !self.minimal {
            eng.hit(&[0], Rule::NotMinimalSearch, "missing", "minimal");
        }
        if !self.published {
            eng.hit(&[1], Rule::NotMinimalSearch, "missing", "published");
        }
        Ok(Out::Unit)
    }
}

/// The body of MISP's sightings pull (`POST /sightings/restSearch/event`).
/// `Sighting::restSearch` also honours `includeEvent` and
/// `includeAttribute` (event titles and attribute values of every sighting
/// found), `context`, `id` and more, and `_harvestParameters` reads
/// `request` instead of the body; a puller could use them to read what
/// the event rules would block. So only the keys MISP's pull sends are
/// accepted, each spelled exactly so, and `uuid` must name 1 to 20 events
/// (an empty list would lift the event filter).
#[derive(Default)]
struct SightingSearch {
    return_format: bool,
    uuid: bool,
}

/// The keys of MISP's own sightings pull.
const SIGHTING_SEARCH_KEYS: [&str; 5] = ["returnFormat", "last", "includeUuid", "uuid", "org_id"];

/// The most event uuids MISP's pull puts in one sightings search.
const SIGHTING_SEARCH_MAX_UUIDS: u32 = 20;

impl Node for SightingSearch {
    fn refuses(key: &str) -> Option<Rule> {
        (!SIGHTING_SEARCH_KEYS.contains(&key)).then_some(Rule::Malformed)
    }

    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let kind = match k {
            Some(K::ReturnFormat) => {
                self.return_format = true;
                Kind::Param(Param::Json)
            }
            Some(K::Last) => Kind::Param(Param::Last),
            Some(K::IncludeUuid) => Kind::Param(Param::IncludeUuid),
            Some(K::Uuid) => {
                self.uuid = true;
                Kind::Strings {
                    min: 1,
                    max: SIGHTING_SEARCH_MAX_UUIDS,
                    name: "uuid",
                }
            }
            Some(K::OrgId) => Kind::Strings {
                min: 0,
                max: u32::MAX,
                name: "org_id",
            },
            // `refuses` lets no other key through.
            _ => return Err(eng.stop(Rule::Malformed, "unexpected key", "")),
        };
        val(eng, depth, map, kind).map(|_| ())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if !self.return_format {
            return Err(eng.stop(Rule::Malformed, "missing", "returnFormat"));
        }
        if !self.uuid {
            return Err(eng.stop(Rule::Malformed, "missing", "uuid"));
        }
        Ok(Out::Unit)
    }
}

struct PostTest {
    seen: bool,
}

impl Node for PostTest {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        _: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        self.seen = true;
        let mark = eng.push_path("testString");
        val(eng, depth, map, Kind::Str)?;
        eng.path.truncate(mark);
        Ok(())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if !self.seen {
            return Err(eng.stop(Rule::Malformed, "missing testString", ""));
        }
        Ok(Out::Unit)
    }
}

#[derive(Default)]
struct UuidTimestamp {
    uuid: bool,
    timestamp: bool,
}

impl Node for UuidTimestamp {
    fn key<'de, A: MapAccess<'de>>(
        &mut self,
        eng: &mut Engine<'_>,
        depth: usize,
        k: Option<K>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match k {
            Some(K::Uuid) => self.uuid = true,
            _ => self.timestamp = true,
        }
        val(eng, depth, map, Kind::Scalar).map(|_| ())
    }

    fn end<E: de::Error>(self, eng: &mut Engine<'_>) -> Result<Out, E> {
        if !self.uuid || !self.timestamp {
            return Err(eng.stop(Rule::Malformed, "missing uuid or timestamp", ""));
        }
        Ok(Out::Unit)
    }
}
