//! Test-only oracle: the same rules written the plain way, over a parsed
//! `serde_json::Value`, checking in the older guard's order and stopping at
//! the first rule hit. The streaming walk must agree with it.
//!
//! `Value` loses key order and duplicates, so the oracle cannot see
//! duplicate keys (covered by unit tests instead).

use serde_json::{Map, Value};

use super::attribute::WRAPPED;
use super::event::RELATED_EVENT_UNJUDGED;
use super::names::{clip, is_hidden, is_joiner};
use super::tag::TAG_BY_ID;
use super::{Block, Context, Document, Policy, Receiver, Rule};

/// Prefix of the value of a block for a document that cannot be read.
pub(super) const FATAL: &str = "fatal: ";

/// Judge `text` as `doc`; `None` means allowed.
pub(super) fn judge(text: &str, doc: Document, policy: &Policy, ctx: &Context) -> Option<Block> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(block(Rule::Malformed, &format!("{FATAL}{e}"), "$")),
    };
    let mut o = Oracle {
        policy,
        org: ctx
            .user_org_uuid
            .as_deref()
            .map(|u| u.trim().to_lowercase()),
        receiver: ctx.receiver.clone(),
        first: None,
        fatal: None,
    };
    o.document(&v, doc);
    o.fatal.or(o.first)
}

fn block(rule: Rule, value: &str, at: &str) -> Block {
    Block {
        rule,
        value: clip(value),
        at: at.to_string(),
    }
}

/// Written apart from the walk's `fold`, the plain way.
fn norm(s: &str) -> String {
    let mut folded = String::new();
    for c in s.chars() {
        let code = u32::from(c);
        if (0xFF01..=0xFF5E).contains(&code) {
            folded.extend(char::from_u32(code - 0xFEE0));
        } else {
            folded.push(c);
        }
    }
    folded.trim().to_lowercase()
}

/// A tag name's skeleton, the plain way: `None` when it holds an
/// invisible character other than a joiner, or nothing else; else its
/// normalised text without joiners, trimmed.
fn tag_skeleton(name: &str) -> Option<String> {
    if name.chars().any(|c| is_hidden(c) && !is_joiner(c)) {
        return None;
    }
    let skeleton: String = norm(name).chars().filter(|&c| !is_joiner(c)).collect();
    let skeleton = skeleton.trim();
    (!skeleton.is_empty() || !name.chars().any(is_joiner)).then(|| skeleton.to_string())
}

/// A copy that carries nothing: `null`, or PHP's empty array.
fn nothing(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
}

fn render(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.to_string()
            } else if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                format!("{:?}", n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// What an attribute-shaped object is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// An attribute: distribution required.
    Attribute,
    /// A proposal: no distribution of its own.
    Proposal,
    /// A sighting's copy: type and category optional, no required
    /// taxonomies.
    Summary,
}

const ANALYST: [(&str, u8); 3] = [("Note", 0), ("Opinion", 1), ("Relationship", 2)];

struct Oracle<'p> {
    policy: &'p Policy,
    org: Option<String>,
    receiver: Option<Receiver>,
    first: Option<Block>,
    fatal: Option<Block>,
}

impl Oracle<'_> {
    fn hit(&mut self, rule: Rule, value: &str, at: String) {
        if self.first.is_none() {
            self.first = Some(block(rule, value, &at));
        }
    }

    fn fail(&mut self, value: &str, at: &str) {
        if self.fatal.is_none() {
            // Marked: the walk reports these where it meets them, in its
            // own words; only the rule is compared.
            self.fatal = Some(block(Rule::Malformed, &format!("{FATAL}{value}"), at));
        }
    }

    fn obj<'v>(&mut self, v: &'v Value, at: &str) -> Option<&'v Map<String, Value>> {
        let o = v.as_object();
        if o.is_none() {
            self.fail("not an object", at);
        }
        o
    }

    fn arr<'v>(&mut self, v: &'v Value, at: &str) -> &'v [Value] {
        match v.as_array() {
            Some(a) => a,
            None => {
                self.fail("not an array", at);
                &[]
            }
        }
    }

    /// `{"<one of keys>": inner}` exactly.
    fn wrapped<'v>(
        &mut self,
        v: &'v Value,
        keys: &[&'static str],
        at: &str,
    ) -> Option<(&'static str, &'v Value)> {
        let o = self.obj(v, at)?;
        let found = keys.iter().find_map(|k| o.get(*k).map(|inner| (*k, inner)));
        if o.len() != 1 || found.is_none() {
            self.fail("wrong wrapper", at);
            return None;
        }
        found
    }

    fn document(&mut self, v: &Value, doc: Document) {
        match doc {
            Document::Event => {
                if let Some((_, e)) = self.wrapped(v, &["Event"], "$") {
                    self.event(e, "Event", false);
                }
            }
            Document::GalaxyCluster => {
                if let Some((_, c)) = self.wrapped(v, &["GalaxyCluster"], "$") {
                    self.cluster(c, "GalaxyCluster", false);
                }
            }
            Document::GalaxyClusterList => {
                for (i, item) in self.arr(v, "$").iter().enumerate() {
                    let at = format!("[{i}]");
                    if let Some((_, c)) = self.wrapped(item, &["GalaxyCluster"], &at) {
                        self.cluster(c, &join(&at, "GalaxyCluster"), false);
                    }
                }
            }
            Document::GalaxyClusterSearch => {
                let (list, base) = match v.get("response") {
                    Some(l) if v.as_object().is_some_and(|o| o.len() == 1) => (l, "response"),
                    _ => (v, ""),
                };
                for (i, item) in self.arr(list, "$").iter().enumerate() {
                    let at = format!("{base}[{i}]");
                    if let Some((_, c)) = self.wrapped(item, &["GalaxyCluster"], &at) {
                        self.cluster(c, &join(&at, "GalaxyCluster"), true);
                    }
                }
            }
            Document::ShadowAttributeList => {
                for (i, item) in self.arr(v, "$").iter().enumerate() {
                    let at = format!("[{i}]");
                    if let Some((_, a)) = self.wrapped(item, &["ShadowAttribute"], &at) {
                        self.proposal(a, &join(&at, "ShadowAttribute"));
                    }
                }
            }
            Document::ProposalRows => {
                for (i, item) in self.arr(v, "$").iter().enumerate() {
                    self.proposal(item, &format!("[{i}]"));
                }
            }
            Document::AnalystDataItem => {
                if let Some((k, a)) = self.wrapped(v, &["Note", "Opinion", "Relationship"], "$") {
                    self.analyst(a, k, k == "Relationship", k == "Relationship");
                }
            }
            Document::AnalystDataList => {
                for (i, item) in self.arr(v, "$").iter().enumerate() {
                    let at = format!("[{i}]");
                    if let Some((k, a)) =
                        self.wrapped(item, &["Note", "Opinion", "Relationship"], &at)
                    {
                        self.analyst(a, &join(&at, k), k == "Relationship", k == "Relationship");
                    }
                }
            }
            Document::AnalystDataMinimal if v.as_array().is_some_and(Vec::is_empty) => {}
            Document::AnalystDataMinimal => {
                if let Some(o) = self.obj(v, "$") {
                    for (k, inner) in o {
                        if !ANALYST.iter().any(|(n, _)| n == k) {
                            self.fail("unexpected key", k);
                        }
                        let maps: Vec<&Value> = match inner {
                            Value::Array(a) => a.iter().collect(),
                            other => vec![other],
                        };
                        for m in maps {
                            match m.as_object() {
                                Some(m) if m.values().all(Value::is_string) => {}
                                _ => self.fail("not a uuid map", k),
                            }
                        }
                    }
                }
            }
            Document::Sightings => match v {
                Value::Array(a) => {
                    for (i, s) in a.iter().enumerate() {
                        self.sighting(s, &format!("[{i}]"));
                    }
                }
                Value::Object(o) => {
                    for (k, list) in o {
                        if k != "response" {
                            self.fail("unexpected key", k);
                        }
                        for (i, item) in self.arr(list, "response").iter().enumerate() {
                            let at = format!("response[{i}]");
                            if let Some((_, s)) = self.wrapped(item, &["Sighting"], &at) {
                                self.sighting(s, &join(&at, "Sighting"));
                            }
                        }
                    }
                }
                _ => self.fail("not a sightings document", "$"),
            },
            Document::MinimalSearch => {
                if let Some(o) = self.obj(v, "$") {
                    // Written apart from the walk's `shadows_search_flag`.
                    for key in o.keys() {
                        let lower = key.to_ascii_lowercase();
                        let flag = |k: &str| k == "minimal" || k == "published";
                        let shadows = lower == "request"
                            || (!flag(key)
                                && (flag(&lower)
                                    || lower.strip_prefix("search").is_some_and(flag)));
                        if shadows {
                            self.hit(Rule::NotMinimalSearch, key, key.clone());
                        }
                    }
                    for key in ["minimal", "published"] {
                        match o.get(key) {
                            None => self.hit(Rule::NotMinimalSearch, "missing", key.into()),
                            Some(x) if x.as_u64() == Some(1) || x.as_str() == Some("1") => {}
                            Some(x) => self.hit(Rule::NotMinimalSearch, &render(x), key.into()),
                        }
                    }
                }
            }
            Document::EventIndex => {
                let flat = |e: &Value| {
                    e.as_object()
                        .is_some_and(|o| o.values().all(|x| !x.is_object() && !x.is_array()))
                };
                if !self.arr(v, "$").iter().all(flat) {
                    self.fail("not a flat object", "$");
                }
            }
            Document::EventUuidTimestamps => {
                for item in self.arr(v, "$") {
                    if let Some((_, e)) = self.wrapped(item, &["Event"], "$") {
                        let ok = e.as_object().is_some_and(|e| {
                            e.len() == 2
                                && ["uuid", "timestamp"].iter().all(|k| {
                                    e.get(*k)
                                        .is_some_and(|x| x.is_string() || x.is_i64() || x.is_u64())
                                })
                        });
                        if !ok {
                            self.fail("bad uuid/timestamp", "$");
                        }
                    }
                }
            }
            Document::UuidList => {
                if !self.arr(v, "$").iter().all(Value::is_string) {
                    self.fail("not a string", "$");
                }
            }
            Document::PostTest => {
                let ok = v.as_object().is_some_and(|o| {
                    o.len() == 1 && o.get("testString").is_some_and(Value::is_string)
                });
                if !ok {
                    self.fail("bad postTest", "$");
                }
            }
            Document::SightingSearch => {
                let Some(o) = self.obj(v, "$") else { return };
                // Written apart from the walk's `SightingSearch` node.
                let strings = |x: &Value, min: usize, max: usize| {
                    x.as_array().is_some_and(|a| {
                        a.iter().all(Value::is_string) && a.len() >= min && a.len() <= max
                    })
                };
                for (key, x) in o {
                    let ok = match key.as_str() {
                        "returnFormat" => x.as_str() == Some("json"),
                        "last" => {
                            x.is_u64()
                                || x.as_str().is_some_and(|t| {
                                    !t.is_empty() && t.chars().all(|c| c.is_ascii_digit())
                                })
                        }
                        "includeUuid" => {
                            x.as_bool() == Some(true)
                                || x.as_u64() == Some(1)
                                || x.as_str() == Some("1")
                        }
                        "uuid" => strings(x, 1, 20),
                        "org_id" => strings(x, 0, usize::MAX),
                        _ => false,
                    };
                    if !ok {
                        self.fail("not the sightings pull search", key);
                    }
                }
                for key in ["returnFormat", "uuid"] {
                    if !o.contains_key(key) {
                        self.fail("missing", key);
                    }
                }
            }
            Document::AnyJson => {}
        }
    }

    /// Returns the level, `Some(None)` when malformed, `None` when absent.
    fn distribution(
        &mut self,
        o: &Map<String, Value>,
        path: &str,
        required: bool,
    ) -> Option<Option<u8>> {
        let at = join(path, "distribution");
        let Some(v) = o.get("distribution") else {
            if required {
                self.hit(Rule::Malformed, "missing", at);
            }
            return None;
        };
        if v.is_array() || v.is_object() {
            self.fail("container", &at);
            return Some(None);
        }
        let level = match v {
            Value::Number(n) => n.as_u64().filter(|n| *n <= 5).map(|n| n as u8),
            Value::String(s) if s.len() == 1 => s.parse::<u8>().ok().filter(|n| *n <= 5),
            _ => None,
        };
        match level {
            Some(d) if self.policy.blocked_distributions[usize::from(d)] => {
                self.hit(Rule::BlockedDistribution, &d.to_string(), at)
            }
            Some(_) => {}
            None => self.hit(Rule::Malformed, &render(v), at),
        }
        Some(level)
    }

    fn field(&mut self, o: &Map<String, Value>, path: &str, key: &str, required: bool, rule: Rule) {
        let at = join(path, key);
        match o.get(key) {
            None if required => self.hit(Rule::Malformed, "missing", at),
            None => {}
            Some(Value::String(s)) if s.chars().any(is_hidden) => self.hit(Rule::Malformed, s, at),
            // PHP's empty(): MISP swaps in the type's default category.
            // Where the category may be absent, a blank one is absent.
            Some(Value::String(s)) if key == "category" && ["", "0"].contains(&&*norm(s)) => {
                self.blank_category(required, s, at)
            }
            Some(Value::String(s)) => {
                let n = norm(s);
                let set = match rule {
                    Rule::BlockedAttributeType => &self.policy.blocked_attribute_types,
                    Rule::BlockedAttributeCategory => &self.policy.blocked_attribute_categories,
                    _ => &self.policy.blocked_object_types,
                };
                if set.contains(&n) {
                    self.hit(rule, s, at);
                }
            }
            Some(other) if other.is_array() || other.is_object() => self.fail("container", &at),
            Some(other) => self.hit(Rule::Malformed, &render(other), at),
        }
    }

    /// A category PHP's `empty()` calls empty: malformed where one is
    /// required, absent where it is not.
    fn blank_category(&mut self, required: bool, s: &str, at: String) {
        if required {
            self.hit(Rule::Malformed, &format!("{s:?}"), at);
        }
    }

    /// Checks a `Tag` list; returns which required taxonomies it satisfies.
    fn tags(&mut self, o: &Map<String, Value>, path: &str) -> Option<Vec<bool>> {
        let list = o.get("Tag")?;
        let mut have = vec![false; self.policy.required_taxonomies.len()];
        for (i, t) in self.arr(list, &join(path, "Tag")).iter().enumerate() {
            let at = format!("{}[{i}].name", join(path, "Tag"));
            self.tag(t, at, &mut have);
        }
        Some(have)
    }

    /// Checks `EventTag` / `AttributeTag` (`key`): a list of `{"Tag":…}`
    /// links, or one such link; adds the taxonomies they satisfy to `have`.
    fn tag_links(
        &mut self,
        o: &Map<String, Value>,
        path: &str,
        key: &str,
        have: Option<Vec<bool>>,
    ) -> Option<Vec<bool>> {
        let Some(links) = o.get(key) else { return have };
        let mut have = have.unwrap_or_else(|| vec![false; self.policy.required_taxonomies.len()]);
        let base = join(path, key);
        let links: Vec<(String, &Value)> = match links {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("{base}[{i}]"), l))
                .collect(),
            Value::Object(_) => vec![(base, links)],
            _ => {
                self.fail("not a tag link list", &base);
                return Some(have);
            }
        };
        for (at, link) in links {
            let Some(link) = self.obj(link, &at) else {
                continue;
            };
            match link.get("Tag") {
                None => self.hit(Rule::Malformed, "missing", join(&at, "Tag")),
                Some(t) => self.tag(t, join(&at, "Tag.name"), &mut have),
            }
            if link.contains_key("tag_id") {
                self.hit(Rule::Malformed, TAG_BY_ID, join(&at, "tag_id"));
            }
        }
        Some(have)
    }

    /// One tag object; `at` is the path of its name.
    fn tag(&mut self, t: &Value, at: String, have: &mut [bool]) {
        let Some(t) = self.obj(t, &at) else { return };
        match t.get("name") {
            None => self.hit(Rule::Malformed, "missing", at),
            Some(Value::String(name)) if tag_skeleton(name).is_none() => {
                self.hit(Rule::Malformed, name, at)
            }
            Some(Value::String(name)) => {
                let n = norm(name);
                for (j, rt) in self.policy.required_taxonomies.iter().enumerate() {
                    let in_ns = n.starts_with(&format!("{}:", rt.namespace));
                    if in_ns && (rt.allowed.is_empty() || rt.allowed.contains(&n)) {
                        have[j] = true;
                    }
                }
                if tag_skeleton(name).is_some_and(|s| self.policy.blocked_tags.contains(&s)) {
                    self.hit(Rule::BlockedTag, name, at);
                }
            }
            Some(other) if other.is_array() || other.is_object() => self.fail("container", &at),
            Some(other) => self.hit(Rule::Malformed, &render(other), at),
        }
    }

    fn required(&mut self, have: Option<Vec<bool>>, path: &str) {
        for (i, rt) in self.policy.required_taxonomies.iter().enumerate() {
            let ok = have.as_ref().is_some_and(|h| h[i]);
            if !ok {
                let ns = rt.namespace.clone();
                self.hit(Rule::MissingTaxonomy, &ns, join(path, "Tag"));
                return;
            }
        }
    }

    fn sharing_group(&mut self, o: &Map<String, Value>, path: &str, dist: Option<Option<u8>>) {
        let guarded = !self.policy.blocked_sharing_groups.is_empty() || self.org.is_some();
        let Some(sg) = o.get("SharingGroup") else {
            if dist == Some(Some(4)) && guarded {
                self.hit(
                    Rule::BlockedSharingGroup,
                    "missing",
                    join(path, "SharingGroup"),
                );
            }
            return;
        };
        let Some(sg) = self.obj(sg, path) else { return };
        let at = join(path, "SharingGroup.uuid");
        match sg.get("uuid") {
            None => self.hit(Rule::Malformed, "missing", at),
            Some(Value::String(u)) if u.chars().any(is_hidden) => self.hit(Rule::Malformed, u, at),
            Some(Value::String(u)) => {
                if self.policy.blocked_sharing_groups.contains(&norm(u)) {
                    self.hit(Rule::BlockedSharingGroup, u, at);
                }
            }
            Some(other) if other.is_array() || other.is_object() => self.fail("container", &at),
            Some(other) => self.hit(Rule::Malformed, &render(other), at),
        }
        if let Some(org) = self.org.clone() {
            let member = sg
                .get("SharingGroupOrg")
                .and_then(Value::as_array)
                .is_some_and(|l| {
                    l.iter().any(|e| {
                        e.get("Organisation")
                            .and_then(|o| o.get("uuid"))
                            .and_then(Value::as_str)
                            .is_some_and(|u| norm(u) == org)
                    })
                });
            // `all_orgs` counts on the receiving instance's own entry only.
            let receiver = self.receiver.clone();
            let names_receiver = |e: &Value| {
                let url = e.get("Server").and_then(|s| s.get("url"));
                match (url.and_then(Value::as_str), &receiver) {
                    (Some(url), Some(r)) => r.names(url),
                    _ => false,
                }
            };
            let all = sg
                .get("SharingGroupServer")
                .and_then(Value::as_array)
                .is_some_and(|l| {
                    l.iter().any(|e| {
                        let all_orgs = matches!(e.get("all_orgs"), Some(Value::Bool(true)))
                            || e.get("all_orgs").and_then(Value::as_u64) == Some(1)
                            || e.get("all_orgs").and_then(Value::as_str) == Some("1");
                        all_orgs && names_receiver(e)
                    })
                });
            if !member && !all {
                self.hit(
                    Rule::SharingGroupExcludesOrg,
                    &org,
                    join(path, "SharingGroup"),
                );
            }
        }
    }

    fn analyst_lists(&mut self, o: &Map<String, Value>, path: &str) {
        for (name, kind) in ANALYST {
            if let Some(list) = o.get(name) {
                for (i, a) in self.arr(list, path).iter().enumerate() {
                    let at = format!("{}[{i}]", join(path, name));
                    self.analyst(a, &at, kind == 2, kind == 2);
                }
            }
        }
    }

    fn each(
        &mut self,
        o: &Map<String, Value>,
        path: &str,
        name: &str,
        f: fn(&mut Self, &Value, &str),
    ) {
        if let Some(list) = o.get(name) {
            for (i, item) in self.arr(list, path).iter().enumerate() {
                f(self, item, &format!("{}[{i}]", join(path, name)));
            }
        }
    }

    fn event(&mut self, v: &Value, path: &str, related: bool) {
        self.event_with(v, path, !related, true);
    }

    fn event_with(&mut self, v: &Value, path: &str, taxonomies: bool, dist_required: bool) {
        let Some(o) = self.obj(v, path) else { return };
        let have = self.tags(o, path);
        let have = self.tag_links(o, path, "EventTag", have);
        self.galaxies(o, path);
        if taxonomies {
            self.required(have, path);
        }
        let dist = self.distribution(o, path, dist_required);
        self.each(o, path, "EventReport", |s, r, at| s.report(r, at));
        self.sharing_group(o, path, dist);
        self.analyst_lists(o, path);
        self.each(o, path, "Attribute", |s, a, at| s.attribute(a, at));
        self.each(o, path, "Object", |s, a, at| s.object(a, at));
        self.each(o, path, "ShadowAttribute", |s, a, at| s.proposal(a, at));
        let tag_rules =
            !self.policy.blocked_tags.is_empty() || !self.policy.required_taxonomies.is_empty();
        let related = o.get("RelatedEvent").and_then(Value::as_array);
        if tag_rules && related.is_some_and(|r| !r.is_empty()) {
            let at = join(path, "RelatedEvent");
            self.hit(Rule::BlockedTag, RELATED_EVENT_UNJUDGED, at);
        }
        self.each(o, path, "RelatedEvent", |s, r, at| {
            if let Some((_, e)) = s.wrapped(r, &["Event"], at) {
                s.event(e, &join(at, "Event"), true);
            }
        });
        self.inbound(o, path);
    }

    fn attribute(&mut self, v: &Value, path: &str) {
        self.attribute_with(v, path, Flavour::Attribute);
    }

    fn proposal(&mut self, v: &Value, path: &str) {
        self.attribute_with(v, path, Flavour::Proposal);
    }

    fn attribute_with(&mut self, v: &Value, path: &str, flavour: Flavour) {
        let summary = flavour == Flavour::Summary;
        let Some(o) = self.obj(v, path) else { return };
        self.field(
            o,
            path,
            "category",
            !summary,
            Rule::BlockedAttributeCategory,
        );
        self.field(o, path, "type", !summary, Rule::BlockedAttributeType);
        let dist = self.distribution(o, path, flavour == Flavour::Attribute);
        let have = self.tags(o, path);
        let have = self.tag_links(o, path, "AttributeTag", have);
        self.galaxies(o, path);
        if !self.policy.required_taxonomies.is_empty() && flavour == Flavour::Attribute {
            self.required(have, path);
        }
        self.sharing_group(o, path, dist);
        self.each(o, path, "ShadowAttribute", |s, a, at| s.proposal(a, at));
        self.analyst_lists(o, path);
        self.inbound(o, path);
        if o.contains_key("Attribute") {
            self.hit(Rule::Malformed, WRAPPED, join(path, "Attribute"));
        }
    }

    fn object(&mut self, v: &Value, path: &str) {
        self.object_with(v, path, false);
    }

    /// `summary`: the copy an object reference carries, whose
    /// distribution and name may be absent.
    fn object_with(&mut self, v: &Value, path: &str, summary: bool) {
        let Some(o) = self.obj(v, path) else { return };
        let dist = self.distribution(o, path, !summary);
        self.sharing_group(o, path, dist);
        self.field(o, path, "name", !summary, Rule::BlockedObjectType);
        self.tags(o, path);
        self.each(o, path, "Attribute", |s, a, at| s.attribute(a, at));
        self.analyst_lists(o, path);
        self.inbound(o, path);
        if o.contains_key("Object") {
            self.hit(Rule::Malformed, WRAPPED, join(path, "Object"));
        }
        self.each(o, path, "ObjectReference", |s, r, at| {
            let Some(r) = s.obj(r, at) else { return };
            if let Some(a) = r.get("Attribute").filter(|a| !nothing(a)) {
                s.attribute_with(a, &join(at, "Attribute"), Flavour::Summary);
            }
            if let Some(c) = r.get("Object").filter(|c| !nothing(c)) {
                s.object_with(c, &join(at, "Object"), true);
            }
        });
    }

    /// A sighting: what it embeds of its attribute and event.
    fn sighting(&mut self, v: &Value, path: &str) {
        let Some(o) = self.obj(v, path) else { return };
        if let Some(a) = o.get("Attribute") {
            self.attribute_with(a, &join(path, "Attribute"), Flavour::Summary);
        }
        if let Some(e) = o.get("Event") {
            self.event_with(e, &join(path, "Event"), false, false);
        }
        if let Some(s) = o.get("Sighting") {
            self.sighting(s, &join(path, "Sighting"));
        }
    }

    fn report(&mut self, v: &Value, path: &str) {
        let Some(o) = self.obj(v, path) else { return };
        let dist = self.distribution(o, path, true);
        self.sharing_group(o, path, dist);
        self.analyst_lists(o, path);
        self.inbound(o, path);
        if o.contains_key("EventReport") {
            self.hit(Rule::Malformed, WRAPPED, join(path, "EventReport"));
        }
    }

    /// `RelationshipInbound`: judged as relationships.
    fn inbound(&mut self, o: &Map<String, Value>, path: &str) {
        if let Some(list) = o.get("RelationshipInbound") {
            for (i, a) in self.arr(list, path).iter().enumerate() {
                let at = format!("{}[{i}]", join(path, "RelationshipInbound"));
                self.analyst(a, &at, true, true);
            }
        }
    }

    fn relation(&mut self, r: &Value, at: &str) {
        let Some(r) = self.obj(r, at) else { return };
        let dist = self.distribution(r, at, false);
        self.tags(r, at);
        self.sharing_group(r, at, dist);
        for key in ["TargetCluster", "GalaxyCluster"] {
            if let Some(c) = r.get(key).filter(|c| !nothing(c)) {
                self.cluster(c, &join(at, key), true);
            }
        }
    }

    fn cluster(&mut self, v: &Value, path: &str, minimal: bool) {
        let Some(o) = self.obj(v, path) else { return };
        let dist = self.distribution(o, path, !minimal);
        self.sharing_group(o, path, dist);
        self.each(o, path, "GalaxyClusterRelation", |s, r, at| {
            s.relation(r, at)
        });
        let at = join(path, "tag_name");
        match o.get("tag_name") {
            None => {}
            Some(Value::String(t)) if tag_skeleton(t).is_none() => self.hit(Rule::Malformed, t, at),
            Some(Value::String(t))
                if tag_skeleton(t).is_some_and(|s| self.policy.blocked_tags.contains(&s)) =>
            {
                self.hit(Rule::BlockedTag, t, at)
            }
            Some(Value::String(_)) => {}
            Some(other) if other.is_array() || other.is_object() => self.fail("container", &at),
            Some(other) => self.hit(Rule::Malformed, &render(other), at),
        }
        // MISP builds the tag itself: misp-galaxy:<type>="<uuid>", with the
        // type of its own galaxy, so any blocked tag naming the uuid counts.
        let at = join(path, "uuid");
        match o.get("uuid") {
            None => {}
            Some(Value::String(u)) if u.chars().any(is_hidden) => self.hit(Rule::Malformed, u, at),
            Some(Value::String(u)) => {
                let want = format!("=\"{}\"", norm(u));
                let mut named: Vec<&String> = self
                    .policy
                    .blocked_tags
                    .iter()
                    .filter(|t| {
                        t.starts_with("misp-galaxy:")
                            && t.ends_with(&want)
                            && !t["misp-galaxy:".len()..t.len() - want.len()].contains("=\"")
                            && want.len() > 3
                    })
                    .collect();
                named.sort();
                if let Some(tag) = named.first() {
                    let tag = tag.to_string();
                    self.hit(Rule::BlockedTag, &tag, at);
                }
            }
            Some(other) if other.is_array() || other.is_object() => self.fail("container", &at),
            Some(other) => self.hit(Rule::Malformed, &render(other), at),
        }
        self.each(o, path, "TargetingClusterRelation", |s, r, at| {
            s.relation(r, at)
        });
    }

    /// `Galaxy` list of an event or attribute: its clusters, whose
    /// distribution may be absent.
    fn galaxies(&mut self, o: &Map<String, Value>, path: &str) {
        self.each(o, path, "Galaxy", |s, g, at| {
            let Some(g) = s.obj(g, at) else { return };
            s.each(g, at, "GalaxyCluster", |s, c, at| s.cluster(c, at, true));
        });
    }

    /// `relational`: reads `related_object`; `typed`: needs its type.
    fn analyst(&mut self, v: &Value, path: &str, relational: bool, typed: bool) {
        let Some(o) = self.obj(v, path) else { return };
        let dist = self.distribution(o, path, true);
        self.sharing_group(o, path, dist);
        if relational {
            self.related(o, path, typed);
        }
        self.analyst_lists(o, path);
        self.inbound(o, path);
    }

    fn related(&mut self, o: &Map<String, Value>, path: &str, typed: bool) {
        let declared = match o.get("related_object_type") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.fail("related_object_type not a string", path);
                return;
            }
        };
        let at = join(path, "related_object");
        let shape = match o.get("related_object") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) if a.is_empty() => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(Value::Object(m)) => {
                let wrapper = [
                    "Event",
                    "Attribute",
                    "Object",
                    "GalaxyCluster",
                    "Note",
                    "Opinion",
                    "Relationship",
                ]
                .into_iter()
                .find(|k| m.contains_key(*k));
                match wrapper {
                    Some(k) if m.len() == 1 => Some(k),
                    _ => Some("bare"),
                }
            }
            Some(_) => {
                self.fail("related_object of a wrong type", &at);
                return;
            }
        };
        let Some(shape) = shape else {
            if declared.is_none() && typed {
                self.hit(
                    Rule::Malformed,
                    "missing",
                    join(path, "related_object_type"),
                );
            }
            return;
        };
        let Some(declared) = declared else {
            self.fail("missing", &join(path, "related_object_type"));
            return;
        };
        let agree = match shape {
            "bare" => ["Note", "Opinion", "Relationship"].contains(&declared),
            k => k == declared,
        };
        if !agree {
            self.fail("related_object is not of related_object_type", &at);
            return;
        }
        let Some(ro) = o.get("related_object") else {
            return;
        };
        if shape == "bare" {
            self.analyst(ro, &at, true, false);
            return;
        }
        let inner_at = join(&at, shape);
        let Some(inner) = ro.get(shape) else { return };
        match shape {
            "Event" => self.event(inner, &inner_at, false),
            "Attribute" => self.attribute(inner, &inner_at),
            "Object" => self.object(inner, &inner_at),
            "GalaxyCluster" => self.cluster(inner, &inner_at, false),
            k => self.analyst(inner, &inner_at, k == "Relationship", k == "Relationship"),
        }
    }
}
