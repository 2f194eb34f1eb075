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

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;

use super::keys::KeySet;
use super::list::PageOutcome;
use super::names::{clip, norm_into};
use super::value::Scalar;
use super::{Block, Context, Policy, Rule};

/// The walk stopped: the finding is in [`Judge::take_fatal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stop;

/// Where the walk is: how far to cut the path and the rank back when the
/// current value ends.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Marks {
    path: usize,
    rank: usize,
}

/// The state of one evaluation but the stack of open values.
pub(super) struct Judge<'p> {
    policy: &'p Policy,
    user_org: Option<String>,
    /// The answer may be forwarded rebuilt (see [`Context::rebuild`]).
    pub(super) rebuild: bool,
    /// The blocked tags of the form `misp-galaxy:<type>="<uuid>"`, by
    /// uuid, made when the first cluster uuid is met.
    galaxy_tags: Option<HashMap<String, String>>,
    path: String,
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
            user_org: ctx
                .user_org_uuid
                .as_deref()
                .map(|u| u.trim().to_lowercase()),
            rebuild: ctx.rebuild,
            galaxy_tags: None,
            path: String::new(),
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

    pub(super) fn marks(&self) -> Marks {
        Marks {
            path: self.path.len(),
            rank: self.rank.len(),
        }
    }

    pub(super) fn back_to(&mut self, marks: Marks) {
        self.path.truncate(marks.path);
        self.rank.truncate(marks.rank);
    }

    pub(super) fn push_path(&mut self, seg: &str) {
        if !self.path.is_empty() && !seg.starts_with('[') {
            self.path.push('.');
        }
        self.path.push_str(seg);
    }

    pub(super) fn push_index(&mut self, name: &str, i: u32) {
        self.push_path(name);
        // Writing to a String cannot fail.
        let _ = write!(self.path, "[{i}]");
    }

    pub(super) fn push_rank(&mut self, n: u32) {
        self.rank.push(n);
    }

    // === comparisons ===

    /// `s` folded, lower-cased and trimmed, in a buffer to give back with
    /// [`Judge::give_back`].
    pub(super) fn norm(&mut self, s: &str) -> String {
        let mut out = std::mem::take(&mut self.scratch);
        norm_into(s, &mut out);
        out
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
