//! What one evaluation has found so far, and where in the document it is.
//!
//! Two kinds of findings:
//! * a *fatal* one (bad JSON, too deep, duplicate key, a list where an
//!   object must be, an unexpected key where the shape is fixed) stops the
//!   walk at once and is the verdict;
//! * a *rule hit* (a blocked value, or a rule field with a value of the
//!   wrong type) is ranked by where the older guard would have met it, and
//!   the walk goes on; the lowest rank is the verdict. The rank is a path
//!   of small numbers: the entity's place (`Attribute` list = 10, item 3)
//!   then the check's stage in the older guard's order.
//!
//! Where the walk is, is kept as the few [`Place`]s of the open values
//! (a key's value, a list's item) as they are: the path and rank are only
//! written out when a finding is recorded, so a list item costs one small
//! push, not a formatted index.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::keys::KeySet;
use super::list::PageOutcome;
use super::names::{clip, norm_into};
use super::value::{Name, Scalar};
use super::{Block, Context, Policy, Receiver, Rule};

/// The walk stopped: the finding is in [`Judge::take_fatal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stop;

/// Where the walk is: how far to cut the places back when the current
/// value ends.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Marks(u32);

/// What one open value adds to the path reported and to the rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// The value of a key: a path segment, a rank stage, or both.
    Key {
        path: Option<Name>,
        stage: Option<u8>,
    },
    /// Item `index` of the list `name` (`name[index]`), ranked `group`
    /// then `index` when `ranked`.
    Item {
        name: Name,
        group: u8,
        index: u32,
        ranked: bool,
    },
    /// PHP's single-link form of a tag link list: ranked `group`, under
    /// `name`.
    Link { name: Name, group: u8 },
}

/// Which of the policy's sets of blocked names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blocked {
    Tags,
    Types,
    Categories,
    Objects,
    SharingGroups,
}

impl Blocked {
    const ALL: [Blocked; 5] = [
        Blocked::Tags,
        Blocked::Types,
        Blocked::Categories,
        Blocked::Objects,
        Blocked::SharingGroups,
    ];

    fn of(self, policy: &Policy) -> &HashSet<String> {
        match self {
            Blocked::Tags => &policy.blocked_tags,
            Blocked::Types => &policy.blocked_attribute_types,
            Blocked::Categories => &policy.blocked_attribute_categories,
            Blocked::Objects => &policy.blocked_object_types,
            Blocked::SharingGroups => &policy.blocked_sharing_groups,
        }
    }
}

/// The lengths of the names of one set, one bit each (the last bit: that
/// long or longer). Most names looked up have a length no blocked name
/// has, and need no hash.
fn lengths(names: &HashSet<String>) -> u64 {
    names.iter().fold(0, |bits, n| bits | 1 << n.len().min(63))
}

/// The state of one evaluation but the stack of open values.
pub(super) struct Judge<'p> {
    policy: &'p Policy,
    /// [`lengths`] of each set of [`Blocked`] names.
    lengths: [u64; 5],
    user_org: Option<String>,
    /// Whose sharing-group server entry counts (see [`Context::receiver`]).
    receiver: Option<Receiver>,
    /// The answer may be forwarded rebuilt (see [`Context::rebuild`]).
    pub(super) rebuild: bool,
    /// The blocked tags of the form `misp-galaxy:<type>="<uuid>"`, by
    /// uuid, made when the first cluster uuid is met.
    galaxy_tags: Option<HashMap<String, String>>,
    places: Vec<Place>,
    /// The rank of the hit being recorded, written out from `places`.
    rank: Vec<u32>,
    best: Option<(Vec<u32>, Block)>,
    fatal: Option<Block>,
    pub(super) keys: KeySet,
    scratch: String,
    /// Members left out of a rebuilt answer: the member's name, how often.
    stripped: Vec<(&'static str, u64)>,
    /// What became of the items of the document's page, once read.
    pub(super) page: Option<PageOutcome>,
}

impl<'p> Judge<'p> {
    pub(super) fn new(policy: &'p Policy, ctx: &Context) -> Judge<'p> {
        Judge {
            policy,
            lengths: Blocked::ALL.map(|b| lengths(b.of(policy))),
            user_org: ctx
                .user_org_uuid
                .as_deref()
                .map(|u| u.trim().to_lowercase()),
            receiver: ctx.receiver.clone(),
            rebuild: ctx.rebuild,
            galaxy_tags: None,
            places: Vec::new(),
            rank: Vec::new(),
            best: None,
            fatal: None,
            keys: KeySet::new(),
            scratch: String::new(),
            stripped: Vec::new(),
            page: None,
        }
    }

    pub(super) fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// Whether a name (normalised) is one of a set of blocked ones.
    #[inline]
    pub(super) fn blocked(&self, set: Blocked, norm: &str) -> bool {
        let len_bit = 1 << norm.len().min(63);
        self.lengths[set as usize] & len_bit != 0 && set.of(self.policy).contains(norm)
    }

    /// Whether sharing groups are judged at all (a group to block, or a
    /// receiving organisation to look for).
    pub(super) fn guards_sharing_groups(&self) -> bool {
        !self.policy.blocked_sharing_groups.is_empty() || self.user_org.is_some()
    }

    /// Whether tag rules are in force.
    pub(super) fn has_tag_rules(&self) -> bool {
        !self.policy.blocked_tags.is_empty() || !self.policy.required_taxonomies.is_empty()
    }

    // === findings ===

    /// The fatal finding, if the walk was stopped by one.
    pub(super) fn take_fatal(&mut self) -> Option<Block> {
        self.fatal.take()
    }

    /// The best-ranked rule hit, if any.
    pub(super) fn take_best(&mut self) -> Option<Block> {
        self.best.take().map(|(_, b)| b)
    }

    /// Set the best hit aside (the items of a page are judged one by one)
    /// and bring back what was set aside.
    pub(super) fn swap_best(
        &mut self,
        with: Option<(Vec<u32>, Block)>,
    ) -> Option<(Vec<u32>, Block)> {
        std::mem::replace(&mut self.best, with)
    }

    /// Record a rule hit at the current rank plus `suffix`.
    pub(super) fn hit(&mut self, suffix: &[u32], rule: Rule, value: &str, field: &str) {
        let mut rank = std::mem::take(&mut self.rank);
        rank.clear();
        for place in &self.places {
            match *place {
                Place::Key { stage, .. } => rank.extend(stage.map(u32::from)),
                Place::Item {
                    group,
                    index,
                    ranked: true,
                    ..
                } => rank.extend([group.into(), index]),
                Place::Item { .. } => {}
                Place::Link { group, .. } => rank.push(group.into()),
            }
        }
        rank.extend_from_slice(suffix);
        let better = match &self.best {
            None => true,
            Some((key, _)) => rank.as_slice().cmp(key.as_slice()) == Ordering::Less,
        };
        if better {
            let block = Block {
                rule,
                value: clip(value),
                at: self.at(field),
            };
            self.best = Some((rank.clone(), block));
        }
        self.rank = rank;
    }

    /// Record a fatal finding; the caller stops the walk with the [`Stop`].
    pub(super) fn stop(&mut self, rule: Rule, value: &str, field: &str) -> Stop {
        if self.fatal.is_none() {
            self.fatal = Some(Block {
                rule,
                value: clip(value),
                at: self.at(field),
            });
        }
        Stop
    }

    /// A member was left out of the answer.
    pub(super) fn stripped(&mut self, name: &'static str) {
        match self.stripped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.stripped.push((name, 1)),
        }
    }

    pub(super) fn take_stripped(&mut self) -> Vec<(&'static str, u64)> {
        std::mem::take(&mut self.stripped)
    }

    // === where ===

    /// Where the walk is, for errors of the JSON itself.
    pub(super) fn here(&self) -> String {
        let path = self.path();
        if path.is_empty() {
            "$".to_string()
        } else {
            path
        }
    }

    /// The path of the current value, as `Event.Attribute[3].Tag[0]`.
    fn path(&self) -> String {
        let mut path = String::new();
        for place in &self.places {
            match *place {
                Place::Key { path: None, .. } => {}
                Place::Key { path: Some(n), .. } | Place::Link { name: n, .. } => {
                    push_path(&mut path, n.text());
                }
                Place::Item { name, index, .. } => {
                    push_path(&mut path, name.text());
                    // Writing to a String cannot fail.
                    let _ = write!(path, "[{index}]");
                }
            }
        }
        path
    }

    fn at(&self, field: &str) -> String {
        let mut at = self.path();
        if !field.is_empty() {
            push_path(&mut at, field);
        }
        if at.is_empty() {
            at.push('$');
        }
        at
    }

    #[inline]
    pub(super) fn marks(&self) -> Marks {
        // At most two places per open value, and values nest no deeper
        // than the tokenizer's depth limit.
        Marks(self.places.len() as u32)
    }

    #[inline]
    pub(super) fn back_to(&mut self, marks: Marks) {
        self.places.truncate(marks.0 as usize);
    }

    /// The value about to be read is at `place` (within the one before).
    #[inline]
    pub(super) fn enter(&mut self, place: Place) {
        self.places.push(place);
    }

    // === comparisons ===

    /// `s` folded, lower-cased and trimmed, in a buffer to give back with
    /// [`Judge::give_back`].
    pub(super) fn norm(&mut self, s: &str) -> String {
        let mut out = std::mem::take(&mut self.scratch);
        norm_into(s, &mut out);
        out
    }

    /// The buffer [`Judge::norm`] writes in, to give back.
    pub(super) fn take_scratch(&mut self) -> String {
        std::mem::take(&mut self.scratch)
    }

    pub(super) fn give_back(&mut self, buffer: String) {
        self.scratch = buffer;
    }

    /// Whether an organisation uuid is the receiving organisation's.
    pub(super) fn is_receiving_org(&mut self, s: &Scalar<'_>) -> bool {
        let (Scalar::Str(t), Some(_)) = (s, &self.user_org) else {
            return false;
        };
        let norm = self.norm(t);
        let member = self.user_org.as_deref() == Some(norm.as_str());
        self.give_back(norm);
        member
    }

    /// Whether a sharing group server's `url` names the receiving
    /// instance.
    pub(super) fn is_receiver_url(&self, s: &Scalar<'_>) -> bool {
        match (s, &self.receiver) {
            (Scalar::Str(url), Some(r)) => r.names(url),
            _ => false,
        }
    }

    /// The blocked tag MISP would build for the cluster of this uuid.
    pub(super) fn galaxy_tag(&mut self, uuid: &str) -> Option<String> {
        let policy = self.policy;
        self.galaxy_tags
            .get_or_insert_with(|| galaxy_tags(policy))
            .get(uuid)
            .cloned()
    }

    // === checks at the end of an entity ===

    /// Distribution 4 without a sharing group cannot be judged when
    /// sharing groups are; a group without the receiving organisation is
    /// refused.
    pub(super) fn sg_end(
        &mut self,
        stage: u32,
        dist: Option<Option<u8>>,
        sg: Option<(bool, bool)>,
    ) {
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
                if dist == Some(Some(4)) && self.guards_sharing_groups() {
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

    pub(super) fn required_taxonomies(&mut self, stage: u32, tags: Option<u64>) {
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

/// `seg` appended to `path`: a key after a dot, an index as it is.
fn push_path(path: &mut String, seg: &str) {
    if !path.is_empty() && !seg.starts_with('[') {
        path.push('.');
    }
    path.push_str(seg);
}

/// MISP ignores the `tag_name` a pushed or pulled cluster carries and
/// builds its own, `misp-galaxy:<type>="<uuid>"`, where the type need not
/// be what the sender claims. So a blocked tag of that form blocks the
/// cluster of that uuid whatever galaxy it claims. Uuids are unique, so
/// this cannot catch another cluster. Where several blocked tags name one
/// uuid, the smallest is reported.
pub(super) fn galaxy_tags(policy: &Policy) -> HashMap<String, String> {
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
