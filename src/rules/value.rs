//! What each value of a document must be ([`Kind`]), what a scalar is
//! ([`Scalar`]), what a value tells its holder ([`Out`]), and the reading
//! of the scalar rule fields: distributions, names, search flags.

use super::judge::{Blocked, Judge, Stop};
use super::keys::K;
use super::names::{normalised, tag_normalised};
use super::{Document, Rule};

/// A JSON scalar as the tokenizer hands it over. Numbers stay text, read
/// here the way PHP's `json_decode` would matter to a rule.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scalar<'s> {
    Null,
    Bool(bool),
    /// Number text, RFC 8259 grammar already checked.
    Num(&'s str),
    Str(&'s str),
    /// A string longer than a rule field may be: its first bytes.
    Long(&'s str),
}

impl Scalar<'_> {
    pub(super) fn render(&self) -> String {
        match self {
            Scalar::Null => "null".to_string(),
            Scalar::Bool(b) => b.to_string(),
            // As the number reads: integers as they are, others as the
            // double PHP makes of them (`1e0` is `1.0`).
            Scalar::Num(t) if is_integer(t) => (*t).to_string(),
            Scalar::Num(t) => match t.parse::<f64>() {
                Ok(f) => format!("{f:?}"),
                Err(_) => (*t).to_string(),
            },
            Scalar::Str(s) | Scalar::Long(s) => format!("{s:?}"),
        }
    }

    pub(super) fn what(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Num(_) => "a number",
            Scalar::Str(_) | Scalar::Long(_) => "a string",
        }
    }

    /// A whole number that fits 64 bits (what PHP reads as an integer):
    /// no fraction, no exponent.
    fn integer(&self) -> bool {
        matches!(self, Scalar::Num(t) if is_integer(t))
    }

    /// The number `1` or the string `"1"`, spelled so.
    fn one(&self) -> bool {
        matches!(self, Scalar::Num("1") | Scalar::Str("1"))
    }
}

/// Whether number text is a whole number of 64 bits: `1.0`, `1e0` and
/// anything past 64 bits are doubles to PHP's `json_decode`. `-0` is
/// counted a double as serde_json (the tests' oracle) counts it; PHP makes
/// it `0`, but no rule accepts a signed value, so either reading refuses
/// it.
fn is_integer(t: &str) -> bool {
    match t.strip_prefix('-') {
        Some("0") => false,
        Some(_) => t.parse::<i64>().is_ok(),
        None => t.parse::<u64>().is_ok(),
    }
}

/// How a place in the document is named in what the guard reports: a key
/// as MISP spells it, or one of a few names of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name {
    /// The document itself: the items of a top-level list are `[0]`, `[1]`…
    Root,
    Key(K),
    /// `SharingGroup.SharingGroupOrg`.
    SgOrgs,
    /// `SharingGroup.SharingGroupServer`.
    SgServers,
    SightingValue,
    SightingAttribute,
    SightingEvent,
    SightingOther,
    SightingOrgOther,
    /// The copy of a referenced attribute an `ObjectReference` carries.
    ReferenceAttribute,
    /// The copy of a referenced object an `ObjectReference` carries.
    ReferenceObject,
    /// The copy of the target cluster a cluster relation carries.
    RelationTarget,
    /// The copy of the source cluster an inbound cluster relation carries.
    RelationSource,
}

impl Name {
    pub(super) fn text(self) -> &'static str {
        match self {
            Name::Root => "",
            Name::Key(k) => k.text(),
            Name::SgOrgs => "SharingGroup.SharingGroupOrg",
            Name::SgServers => "SharingGroup.SharingGroupServer",
            Name::SightingValue => "Sighting.value",
            Name::SightingAttribute => "Sighting.Attribute",
            Name::SightingEvent => "Sighting.Event",
            Name::SightingOther => "other Sighting members",
            Name::SightingOrgOther => "other Sighting.Organisation members",
            Name::ReferenceAttribute => "ObjectReference.Attribute",
            Name::ReferenceObject => "ObjectReference.Object",
            Name::RelationTarget => "GalaxyClusterRelation.TargetCluster",
            Name::RelationSource => "GalaxyClusterRelation.GalaxyCluster",
        }
    }
}

impl From<K> for Name {
    fn from(k: K) -> Name {
        Name::Key(k)
    }
}

/// What a walked value tells its holder: what it is, and one word of it.
/// A plain pair, so that it travels in two registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Out {
    what: What,
    word: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Unit,
    /// A distribution level, or `NO_LEVEL`.
    Dist,
    Bits,
    /// Member (bit 0), all orgs (bit 1).
    Sg,
    /// A [`RelType`], by [`RelType::index`].
    RelType,
    /// An [`Interp`], by [`Interp::index`].
    Related,
}

const NO_LEVEL: u64 = u64::MAX;

impl Out {
    /// Nothing to tell.
    pub(super) const UNIT: Out = Out {
        what: What::Unit,
        word: 0,
    };

    pub(super) fn of_bits(bits: u64) -> Out {
        Out {
            what: What::Bits,
            word: bits,
        }
    }

    /// A distribution: a level, or malformed.
    pub(super) fn of_dist(level: Option<u8>) -> Out {
        Out {
            what: What::Dist,
            word: level.map_or(NO_LEVEL, u64::from),
        }
    }

    /// A sharing group: whether it holds the receiving organisation, and
    /// whether a server of it has `all_orgs`.
    pub(super) fn of_sg(member: bool, all_orgs: bool) -> Out {
        Out {
            what: What::Sg,
            word: u64::from(member) | u64::from(all_orgs) << 1,
        }
    }

    pub(super) fn of_rel_type(t: RelType) -> Out {
        Out {
            what: What::RelType,
            word: t.index(),
        }
    }

    pub(super) fn of_related(i: Interp) -> Out {
        Out {
            what: What::Related,
            word: i.index(),
        }
    }

    pub(super) fn bits(&self) -> u64 {
        match self.what {
            What::Bits => self.word,
            _ => 0,
        }
    }

    /// A distribution as its holder keeps it: absent, malformed or a level.
    pub(super) fn dist(self) -> Option<Option<u8>> {
        match self.what {
            What::Dist => Some(u8::try_from(self.word).ok()),
            _ => Some(None),
        }
    }

    /// A sharing group as its holder keeps it: (member, all orgs).
    pub(super) fn sg(self) -> Option<(bool, bool)> {
        match self.what {
            What::Sg => Some((self.word & 1 != 0, self.word & 2 != 0)),
            _ => Some((false, false)),
        }
    }

    /// The `related_object_type` read, if this is one.
    pub(super) fn rel_type(self) -> Option<RelType> {
        match self.what {
            What::RelType => RelType::ALL.get(usize::try_from(self.word).ok()?).copied(),
            _ => None,
        }
    }

    /// What a `related_object` turned out to be, if this is one.
    pub(super) fn related(self) -> Option<Interp> {
        match self.what {
            What::Related => Interp::ALL.get(usize::try_from(self.word).ok()?).copied(),
            _ => None,
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

impl RelType {
    /// Every declared type, in the order of [`RelType::index`].
    const ALL: [RelType; 9] = [
        RelType::Event,
        RelType::Attribute,
        RelType::Object,
        RelType::GalaxyCluster,
        RelType::Analyst(AKind::Note),
        RelType::Analyst(AKind::Opinion),
        RelType::Analyst(AKind::Relationship),
        RelType::Analyst(AKind::Bare),
        RelType::Other,
    ];

    fn index(self) -> u64 {
        match self {
            RelType::Event => 0,
            RelType::Attribute => 1,
            RelType::Object => 2,
            RelType::GalaxyCluster => 3,
            RelType::Analyst(a) => 4 + a.index(),
            RelType::Other => 8,
        }
    }

    pub(super) fn of(t: &str) -> RelType {
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

impl Interp {
    /// Every shape, in the order of [`Interp::index`].
    const ALL: [Interp; 10] = [
        Interp::Empty,
        Interp::Event,
        Interp::Attribute,
        Interp::Object,
        Interp::GalaxyCluster,
        Interp::Wrapped(AKind::Note),
        Interp::Wrapped(AKind::Opinion),
        Interp::Wrapped(AKind::Relationship),
        Interp::Wrapped(AKind::Bare),
        Interp::Bare,
    ];

    fn index(self) -> u64 {
        match self {
            Interp::Empty => 0,
            Interp::Event => 1,
            Interp::Attribute => 2,
            Interp::Object => 3,
            Interp::GalaxyCluster => 4,
            Interp::Wrapped(a) => 5 + a.index(),
            Interp::Bare => 9,
        }
    }

    /// Whether a `related_object` of this shape may be declared `t`.
    pub(super) fn matches(self, t: RelType) -> bool {
        match (t, self) {
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

impl AKind {
    fn index(self) -> u64 {
        match self {
            AKind::Note => 0,
            AKind::Opinion => 1,
            AKind::Relationship => 2,
            AKind::Bare => 3,
        }
    }

    pub(super) fn of(k: K) -> AKind {
        match k {
            K::Note => AKind::Note,
            K::Opinion => AKind::Opinion,
            _ => AKind::Relationship,
        }
    }
}

/// Rule fields holding a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub(super) fn name(self) -> &'static str {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ent {
    Event {
        related: bool,
    },
    /// The event summary a sighting may embed (`includeEvent`).
    EventSummary,
    Attribute,
    /// A copy of an attribute: the one a sighting may embed
    /// (`includeAttribute`), the one an object reference carries.
    AttributeSummary,
    /// A proposal (`ShadowAttribute`): an attribute without distribution,
    /// sharing group or tags of its own in MISP.
    Proposal,
    Sighting,
    /// The `Organisation` of a sighting in an answer the guard rebuilds.
    SightingOrg,
    Object,
    /// The copy of a referenced object an object reference carries.
    ObjectSummary,
    /// One `ObjectReference` of an object.
    Reference,
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
        stage: u8,
    },
    SgOrg,
    SgServer,
    Organisation,
    EventUuidTimestamp,
    StrMap,
    IndexEntry,
}

/// Objects with exactly one key naming what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub(super) fn allowed(self) -> u128 {
        match self {
            Wrap::Event | Wrap::RelatedEvent | Wrap::EventUuidTimestamp => K::Event.bit(),
            Wrap::Cluster { .. } => K::GalaxyCluster.bit(),
            Wrap::Shadow => K::ShadowAttribute.bit(),
            Wrap::AnyAnalyst => K::Note.bit() | K::Opinion.bit() | K::Relationship.bit(),
            Wrap::Sighting => K::Sighting.bit(),
        }
    }

    pub(super) fn expected(self) -> &'static str {
        match self {
            Wrap::Event | Wrap::RelatedEvent | Wrap::EventUuidTimestamp => "Event",
            Wrap::Cluster { .. } => "GalaxyCluster",
            Wrap::Shadow => "ShadowAttribute",
            Wrap::AnyAnalyst => "Note, Opinion or Relationship",
            Wrap::Sighting => "Sighting",
        }
    }

    pub(super) fn inner(self, k: K) -> Kind {
        match self {
            Wrap::Event => Kind::Ent(Ent::Event { related: false }),
            Wrap::RelatedEvent => Kind::Ent(Ent::Event { related: true }),
            Wrap::Cluster { minimal } => Kind::Ent(Ent::Cluster { minimal }),
            Wrap::Shadow => Kind::Ent(Ent::Proposal),
            Wrap::AnyAnalyst => Kind::Ent(Ent::Analyst(AKind::of(k))),
            Wrap::Sighting => Kind::Ent(Ent::Sighting),
            Wrap::EventUuidTimestamp => Kind::Ent(Ent::EventUuidTimestamp),
        }
    }
}

/// Items of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    Ent(Ent),
    Wrap(Wrap),
    Str,
}

impl Item {
    pub(super) fn kind(self) -> Kind {
        match self {
            Item::Ent(e) => Kind::Ent(e),
            Item::Wrap(w) => Kind::Wrap(w),
            Item::Str => Kind::Str,
        }
    }
}

/// What the value about to be read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Skip,
    /// Anything: a member the guard leaves out of an answer it rebuilds;
    /// tells its holder whether it held something.
    Strip,
    Str,
    Scalar,
    /// A member kept in an answer the guard rebuilds: a string, a whole
    /// number or `null`, never a container (whatever that would carry
    /// would go on unjudged).
    Kept,
    Root(Document),
    Wrap(Wrap),
    Ent(Ent),
    /// The copy of an entity MISP embeds in a reference to it: the
    /// entity, or nothing (`null`, PHP's empty `[]`).
    Copy(Ent),
    List {
        item: Item,
        group: u8,
        name: Name,
    },
    /// The independent items of an answer the guard may rebuild: one the
    /// rules forbid is left out instead of refusing the whole.
    Page {
        item: Item,
        name: Name,
        /// A removed item is replaced by [`super::proposal::FILLER`].
        filler: bool,
    },
    /// `EventTag` / `AttributeTag`: a list of `{"Tag":{…}}` links, or
    /// PHP's single-link form, one such object.
    Links {
        group: u8,
        name: Name,
    },
    Dist {
        stage: u8,
    },
    Field {
        field: Field,
        stage: u8,
    },
    RelType,
    Related,
    OrgUuid,
    Truthy,
    One {
        stage: u8,
        field: Name,
    },
    MinimalValue,
    Flat,
    /// A scalar parameter of the sightings search.
    Param(Param),
    /// An array of strings of the sightings search.
    Strings(Strings),
    /// The `Server` of a sharing group's server entry: an object, or
    /// PHP's empty `[]` (or `null`) for the owner's own entry.
    Server,
    /// A server's `url`: whether it names the receiving instance.
    ServerUrl,
}

/// The arrays of strings of MISP's sightings pull search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strings {
    /// `uuid`: the events, 1 to 20 (an empty list would lift the event
    /// filter; MISP's pull puts at most 20 in one search).
    Uuids,
    /// `org_id`: any number.
    OrgIds,
}

impl Strings {
    /// How many strings it must hold, at least and at most.
    pub(super) fn bounds(self) -> (u32, u32) {
        match self {
            Strings::Uuids => (1, 20),
            Strings::OrgIds => (0, u32::MAX),
        }
    }

    pub(super) fn name(self) -> Name {
        match self {
            Strings::Uuids => K::Uuid.into(),
            Strings::OrgIds => K::OrgId.into(),
        }
    }
}

impl Kind {
    pub(super) fn expected(self) -> &'static str {
        match self {
            Kind::Skip | Kind::Strip => "a value",
            Kind::Wrap(_) | Kind::Ent(_) => "an object",
            Kind::Copy(_) => "an object, an empty array or null",
            Kind::List { .. } | Kind::Page { .. } => "an array",
            Kind::Links { .. } => "an array or an object",
            Kind::Str => "a string",
            Kind::Scalar => "a string or a number",
            Kind::Kept => "a string, a whole number or null",
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
            Kind::Related => "an object, an empty array or null",
            Kind::Truthy | Kind::One { .. } => "a scalar",
            Kind::MinimalValue => "an object or an array",
            Kind::Flat => "a scalar (a minimal index entry)",
            Kind::Param(p) => p.expected(),
            Kind::Strings(_) => "an array of strings",
            Kind::Server => "an object",
            Kind::ServerUrl => "a string",
        }
    }

    pub(super) fn field(self) -> &'static str {
        match self {
            Kind::List { name, .. } | Kind::Links { name, .. } | Kind::Page { name, .. } => {
                name.text()
            }
            Kind::Dist { .. } => "distribution",
            Kind::Field { field, .. } => field.name(),
            Kind::RelType => "related_object_type",
            Kind::One { field, .. } => field.text(),
            Kind::Param(p) => p.name(),
            Kind::Strings(list) => list.name().text(),
            _ => "",
        }
    }

    /// Whether a string value of this kind is read (else only its type
    /// matters, and its fragments are not kept).
    pub(super) fn reads_text(self) -> bool {
        matches!(
            self,
            Kind::Dist { .. }
                | Kind::Field { .. }
                | Kind::RelType
                | Kind::OrgUuid
                | Kind::Truthy
                | Kind::One { .. }
                | Kind::Param(_)
                | Kind::ServerUrl
        )
    }

    /// A list of `item`s, ranked as `group` of its holder, under `name`.
    pub(super) fn items(item: Ent, group: u8, name: impl Into<Name>) -> Kind {
        Kind::List {
            item: Item::Ent(item),
            group,
            name: name.into(),
        }
    }
}

/// The scalar parameters of MISP's sightings pull search, each held to
/// the one value (or spelling) MISP's pull sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    /// `returnFormat`: the string `json`.
    Json,
    /// `last`: a whole number, or a string of digits.
    Last,
    /// `includeUuid`: `true`, `1` or `"1"`.
    IncludeUuid,
}

impl Param {
    pub(super) fn name(self) -> &'static str {
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
                Scalar::Num(t) => s.integer() && !t.starts_with('-'),
                Scalar::Str(t) => !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()),
                _ => false,
            },
            Param::IncludeUuid => matches!(s, Scalar::Bool(true)) || s.one(),
        }
    }
}

const DIGITS: [&str; 6] = ["0", "1", "2", "3", "4", "5"];

/// Read scalar `s` as a value of `kind`. A scalar where a container is
/// expected stops the walk.
pub(super) fn scalar(j: &mut Judge<'_>, kind: Kind, s: Scalar<'_>) -> Result<Out, Stop> {
    match kind {
        Kind::Skip | Kind::Root(Document::AnyJson) => Ok(Out::UNIT),
        Kind::Strip => Ok(Out::of_bits(u64::from(!matches!(s, Scalar::Null)))),
        Kind::Str => match s {
            Scalar::Str(_) | Scalar::Long(_) => Ok(Out::UNIT),
            _ => Err(shape(j, kind, s.what())),
        },
        Kind::Scalar => match s {
            Scalar::Str(_) | Scalar::Long(_) => Ok(Out::UNIT),
            Scalar::Num(_) if s.integer() => Ok(Out::UNIT),
            _ => Err(shape(j, kind, s.what())),
        },
        Kind::Kept => match s {
            Scalar::Str(_) | Scalar::Long(_) | Scalar::Null => Ok(Out::UNIT),
            Scalar::Num(_) if s.integer() => Ok(Out::UNIT),
            _ => Err(shape(j, kind, s.what())),
        },
        Kind::Dist { stage } => Ok(distribution(j, stage, &s)),
        Kind::Field { field, stage } => Ok(rule_field(j, field, stage, &s)),
        Kind::RelType => match s {
            Scalar::Str(t) => Ok(Out::of_rel_type(RelType::of(t))),
            Scalar::Long(_) => Ok(Out::of_rel_type(RelType::Other)),
            _ => Err(shape(j, kind, s.what())),
        },
        Kind::Related => match s {
            Scalar::Null => Ok(Out::of_related(Interp::Empty)),
            _ => Err(shape(j, kind, s.what())),
        },
        Kind::OrgUuid => Ok(Out::of_bits(u64::from(j.is_receiving_org(&s)))),
        // Anything but a URL naming the receiving instance gives no
        // membership: the owner's own entry (`[]`, `null`) included.
        Kind::ServerUrl => Ok(Out::of_bits(u64::from(j.is_receiver_url(&s)))),
        Kind::Server => Ok(Out::UNIT),
        Kind::Copy(_) => match s {
            Scalar::Null => Ok(Out::UNIT),
            _ => Err(shape(j, kind, s.what())),
        },
        Kind::Flat => Ok(Out::UNIT),
        Kind::Truthy => {
            let yes = matches!(s, Scalar::Bool(true)) || s.one();
            Ok(Out::of_bits(u64::from(yes)))
        }
        Kind::One { stage, field } => {
            if !s.one() {
                j.hit(
                    &[stage.into()],
                    Rule::NotMinimalSearch,
                    &s.render(),
                    field.text(),
                );
            }
            Ok(Out::UNIT)
        }
        Kind::Param(p) => {
            if p.accepts(&s) {
                Ok(Out::UNIT)
            } else {
                Err(j.stop(Rule::Malformed, &s.render(), p.name()))
            }
        }
        _ => Err(shape(j, kind, s.what())),
    }
}

/// Read a string as a value of `kind`: its text, or (`long`) the first
/// bytes of a longer one.
#[inline(never)]
pub(super) fn string(j: &mut Judge<'_>, kind: Kind, text: &str, long: bool) -> Result<Out, Stop> {
    let s = if long {
        Scalar::Long(text)
    } else {
        Scalar::Str(text)
    };
    scalar(j, kind, s)
}

/// `found` where a value of `kind` was expected: the walk stops.
pub(super) fn shape(j: &mut Judge<'_>, kind: Kind, found: &str) -> Stop {
    let value = format!("{found} where {} was expected", kind.expected());
    j.stop(Rule::Malformed, &value, kind.field())
}

/// Only the JSON integers 0..5 and the one-digit strings `"0"`..`"5"`
/// are distributions; every other spelling PHP would compare loosely is
/// malformed.
fn distribution(j: &mut Judge<'_>, stage: u8, s: &Scalar<'_>) -> Out {
    let stage = u32::from(stage);
    let level = match s {
        Scalar::Num(t) | Scalar::Str(t) => match t.as_bytes() {
            [d @ b'0'..=b'5'] => Some(d - b'0'),
            _ => None,
        },
        _ => None,
    };
    match level {
        Some(d) => {
            if j.policy().blocked_distributions.get(usize::from(d)) == Some(&true) {
                let digit = DIGITS.get(usize::from(d)).copied().unwrap_or("?");
                j.hit(&[stage], Rule::BlockedDistribution, digit, "distribution");
            }
        }
        None => j.hit(&[stage], Rule::Malformed, &s.render(), "distribution"),
    }
    Out::of_dist(level)
}

fn rule_field(j: &mut Judge<'_>, field: Field, stage: u8, s: &Scalar<'_>) -> Out {
    let stage = u32::from(stage);
    let text = match s {
        Scalar::Str(t) => *t,
        // A tag name, a type, a uuid: never kilobytes.
        Scalar::Long(t) => {
            let value = format!("{} (longer than any MISP name)", super::names::clip(t));
            j.hit(&[stage], Rule::Malformed, &value, field.name());
            return Out::UNIT;
        }
        _ => {
            j.hit(&[stage], Rule::Malformed, &s.render(), field.name());
            return Out::UNIT;
        }
    };
    let mut scratch = j.take_scratch();
    let out = judge_name(j, field, stage, text, &mut scratch);
    j.give_back(scratch);
    out
}

/// [`rule_field`] of a string, normalised in `scratch` where it must be.
fn judge_name(
    j: &mut Judge<'_>,
    field: Field,
    stage: u32,
    text: &str,
    scratch: &mut String,
) -> Out {
    if matches!(field, Field::TagName | Field::ClusterTag) {
        return judge_tag(j, field, stage, text, scratch);
    }
    // PHP's trim() also strips NUL and vertical tab, and MISP trims what it
    // saves: `"email\u0000"` is `email` to MISP. No rule field carries a
    // control or invisible character legitimately, so none is guessed at.
    let Some(norm) = normalised(text, scratch) else {
        j.hit(&[stage], Rule::Malformed, text, field.name());
        return Out::UNIT;
    };
    if let Field::Category { summary } = field {
        // MISP's beforeValidateMassage replaces an `empty()` category
        // ("", "0", after its trim) by the type's default category, which
        // may be a blocked one: we cannot tell which, so it is refused.
        // A summary may lack a category, so a blank one is as good as none.
        if norm.is_empty() || norm == "0" {
            if !summary {
                let value = Scalar::Str(text).render();
                j.hit(&[stage], Rule::Malformed, &value, field.name());
            }
            return Out::UNIT;
        }
    }
    let (blocked, rule, bits) = match field {
        Field::Type => (
            j.blocked(Blocked::Types, norm),
            Rule::BlockedAttributeType,
            0,
        ),
        Field::Category { .. } => (
            j.blocked(Blocked::Categories, norm),
            Rule::BlockedAttributeCategory,
            0,
        ),
        Field::ObjectName => (
            j.blocked(Blocked::Objects, norm),
            Rule::BlockedObjectType,
            0,
        ),
        Field::SgUuid => (
            j.blocked(Blocked::SharingGroups, norm),
            Rule::BlockedSharingGroup,
            0,
        ),
        // Read by `judge_tag`.
        Field::ClusterTag | Field::TagName => return Out::UNIT,
        Field::ClusterUuid => {
            if let Some(tag) = j.galaxy_tag(norm) {
                j.hit(&[stage], Rule::BlockedTag, &tag, field.name());
            }
            return Out::UNIT;
        }
    };
    if blocked {
        j.hit(&[stage], rule, text, field.name());
    }
    Out::of_bits(bits)
}

/// [`judge_name`] of a tag name or a cluster's `tag_name`. Real tags hold
/// joiners and variation selectors (emoji, Persian words): they are
/// allowed, and the blocked tags are compared with the name's skeleton
/// without them, while required taxonomies match the name exactly.
fn judge_tag(j: &mut Judge<'_>, field: Field, stage: u32, text: &str, scratch: &mut String) -> Out {
    let Some((norm, skeleton)) = tag_normalised(text, scratch) else {
        j.hit(&[stage], Rule::Malformed, text, field.name());
        return Out::UNIT;
    };
    if j.blocked(Blocked::Tags, skeleton.as_deref().unwrap_or(norm)) {
        j.hit(&[stage], Rule::BlockedTag, text, field.name());
    }
    if field == Field::ClusterTag {
        return Out::UNIT;
    }
    Out::of_bits(taxonomy_bits(j.policy(), norm))
}

/// The required taxonomies a (normalised) tag name satisfies, as bits.
fn taxonomy_bits(policy: &super::Policy, norm: &str) -> u64 {
    let mut bits = 0u64;
    for (i, rt) in policy.required_taxonomies.iter().enumerate() {
        let in_ns = norm
            .strip_prefix(rt.namespace.as_str())
            .is_some_and(|rest| rest.starts_with(':'));
        if in_ns && (rt.allowed.is_empty() || rt.allowed.iter().any(|a| a == norm)) {
            bits |= 1u64 << i;
        }
    }
    bits
}

/// Where the value of a key goes: what it must be, and how it is placed
/// in the path and the rank of what is found inside it. Eight bytes, so
/// that it travels in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) kind: Kind,
    at: At,
}

/// How a key's value is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// As its holder is.
    Holder,
    /// Under a path segment (`Tag`, `related_object`, …).
    Under(Name),
    /// Under a path segment, at a rank stage of its holder.
    Nested(u8, Name),
    /// Left out of an answer the guard rebuilds; the name it is reported
    /// by when it held something.
    Strip(Name),
}

impl Slot {
    /// A value of `kind`, placed as its holder is.
    pub(super) fn of(kind: Kind) -> Slot {
        Slot {
            kind,
            at: At::Holder,
        }
    }

    /// A value that only has to be JSON.
    pub(super) fn skip() -> Slot {
        Slot::of(Kind::Skip)
    }

    /// Whether the value is skipped whole, with nothing to place it by:
    /// it then takes the walk's short path.
    #[inline]
    pub(super) fn skipped(&self) -> bool {
        matches!((self.kind, self.at), (Kind::Skip, At::Holder))
    }

    /// A member the guard leaves out of the answer it rebuilds, reported
    /// as `name` when it held something.
    pub(super) fn strip(name: impl Into<Name>) -> Slot {
        Slot {
            kind: Kind::Strip,
            at: At::Strip(name.into()),
        }
    }

    /// A value of `kind` under path segment `name`.
    pub(super) fn under(name: impl Into<Name>, kind: Kind) -> Slot {
        Slot {
            kind,
            at: At::Under(name.into()),
        }
    }

    /// One entity held under key `name` of another, checked at `stage` of
    /// its holder, under its own path.
    pub(super) fn nested(stage: u8, name: impl Into<Name>, kind: Kind) -> Slot {
        Slot {
            kind,
            at: At::Nested(stage, name.into()),
        }
    }

    /// The path segment and rank stage of what is inside.
    #[inline]
    pub(super) fn place(&self) -> (Option<Name>, Option<u8>) {
        match self.at {
            At::Under(name) => (Some(name), None),
            At::Nested(stage, name) => (Some(name), Some(stage)),
            At::Holder | At::Strip(_) => (None, None),
        }
    }

    /// The name a member left out is reported by.
    #[inline]
    pub(super) fn stripped(&self) -> Option<Name> {
        match self.at {
            At::Strip(name) => Some(name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_value_tells_reads_back() {
        for t in RelType::ALL {
            assert_eq!(Out::of_rel_type(t).rel_type(), Some(t));
            assert_eq!(Out::of_rel_type(t).related(), None);
        }
        for i in Interp::ALL {
            assert_eq!(Out::of_related(i).related(), Some(i));
            assert_eq!(Out::of_related(i).rel_type(), None);
        }
        for d in [None, Some(0), Some(5)] {
            assert_eq!(Out::of_dist(d).dist(), Some(d));
        }
        for (m, a) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(Out::of_sg(m, a).sg(), Some((m, a)));
        }
        assert_eq!(Out::of_bits(u64::MAX).bits(), u64::MAX);
        assert_eq!(Out::UNIT.bits(), 0);
        assert_eq!(Out::UNIT.dist(), Some(None));
        assert_eq!(Out::UNIT.sg(), Some((false, false)));
    }
}
