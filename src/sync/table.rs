//! The table: every exchange MISP sync makes, one row each, spelled as MISP
//! sends it.
//!
//! Steps refer to the protocol reference (`docs/misp-sync-protocol.md`):
//! P1…P15 push (§2), L1…L10 pull (§3), §3.1 the UI's server calls. Paths
//! are those `ServerSyncTool.php` builds. One row per route and method (a
//! test holds it), so a refusal can say which part of the path was wrong.
//!
//! Decisions:
//! * **Uuids are lower-case only**, canonical 8-4-4-4-12. MISP lower-cases
//!   uuids when it saves events, attributes, clusters and analyst data, and
//!   sends them as stored; an upper-case uuid is no request MISP makes.
//! * **Numeric ids** are decimal, no sign, no leading zero, at most 20
//!   digits (the edit fallback takes the id from the remote's `Location`).
//! * **Named parameters** may come in any order (CakePHP reads them so, and
//!   the order is no security property), each at most once, and only the
//!   pinned set: on `events/view` they are what keeps a pull free of
//!   correlations, feed hits and local tags, so a plain
//!   `GET /events/view/<uuid>` (which MISP never sends) is refused.
//! * **`.json`** exactly where MISP appends it (`users/view/me`,
//!   `shadow_attributes/index`, `analyst_data/index`), nowhere else.
//! * Not rows, though §3.1 lists them: `users/resetauthkey/me` (changes the
//!   remote key), `GET /events/index/…` and `GET /events/<id>` (full,
//!   non-minimal browsing), `attributes/restSearch` (every attribute value,
//!   past all event-level rules), `events/checkuuid` (no caller).

use super::path::Target;
use super::Direction::{Pull, Push};
use super::{Direction, Exchange, Quoted, Refusal};
use crate::rules::Document;

/// What one positional segment must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// A lower-case uuid.
    Uuid,
    /// A lower-case uuid or a positive decimal id.
    Id,
    /// One of these literal words.
    OneOf(&'static [&'static str]),
}

/// A positional segment after the action.
#[derive(Debug, Clone, Copy)]
pub(super) struct Positional {
    /// How refusals name it.
    pub(super) name: &'static str,
    /// What it must be.
    pub(super) slot: Slot,
}

/// What the value of a named parameter must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    /// Exactly this text.
    Exact(&'static str),
    /// A decimal number: `0`, or no leading zero, at most 20 digits.
    Number,
    /// A lower-case uuid.
    Uuid,
}

/// One named parameter `key:value` a row accepts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Named {
    /// The key as MISP sends it, `[]` included for arrays.
    pub(super) key: &'static str,
    /// Its value.
    pub(super) value: Value,
    /// How many times it must appear (0: optional).
    pub(super) min: usize,
    /// How many times it may appear.
    pub(super) max: usize,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// The method, exactly (`GET` and `HEAD` are distinct rows).
    pub(super) method: &'static str,
    /// `controller/action` as MISP spells it.
    pub(super) route: &'static str,
    /// The segments after the action, in order.
    pub(super) positional: &'static [Positional],
    /// The accepted sets of named parameters after the positional ones;
    /// a request must match one set. `&[&[]]`: none accepted.
    pub(super) named: &'static [&'static [Named]],
    /// MISP appends `.json` to the last segment.
    pub(super) json: bool,
    /// What the exchange is.
    pub(super) exchange: Exchange,
}

/// The largest `uuid[]` list: analyst data is pulled in chunks of 100
/// (AnalystData.php L1069).
pub(super) const MAX_UUIDS: usize = 100;

const NONE: &[&[Named]] = &[&[]];

const fn exact(key: &'static str, value: &'static str) -> Named {
    Named {
        key,
        value: Value::Exact(value),
        min: 1,
        max: 1,
    }
}

const fn number(key: &'static str) -> Named {
    Named {
        key,
        value: Value::Number,
        min: 1,
        max: 1,
    }
}

const fn exchange(
    name: &'static str,
    direction: Direction,
    request: Option<Document>,
    response: Option<Document>,
) -> Exchange {
    Exchange {
        name,
        direction,
        request,
        response,
    }
}

const EVENT_ID: &[Positional] = &[Positional {
    name: "event id",
    slot: Slot::Id,
}];
const EVENT_UUID: &[Positional] = &[Positional {
    name: "event uuid",
    slot: Slot::Uuid,
}];

/// `metadata:1` (ServerSyncTool `createEvent`/`updateEvent`): the remote
/// answers with the event's metadata only. Required: without it the answer
/// to an add or edit is the whole event as the remote holds it, the
/// remote's data flowing back to the pusher.
const METADATA: &[&[Named]] = &[&[exact("metadata", "1")]];

/// L5: `Server.php` pull of one event. `excludeLocalTags:1` is required
/// although MISP leaves it out when the Server is flagged internal: without
/// it the remote's local tags (never meant to leave it) come along.
const VIEW_L5: &[Named] = &[
    exact("deleted[]", "0"),
    exact("deleted[]", "1"),
    exact("excludeGalaxy", "1"),
    exact("includeEventCorrelations", "0"),
    exact("includeFeedCorrelations", "0"),
    exact("includeWarninglistHits", "0"),
    exact("excludeLocalTags", "1"),
];

/// L8 on remotes ≤ 2.4.164: `Sighting::pullSightingOldWay` fetches the
/// event for its sightings with reports, proposals and attachments off.
const VIEW_L8: &[Named] = &[
    exact("deleted[]", "0"),
    exact("deleted[]", "1"),
    exact("excludeGalaxy", "1"),
    exact("excludeLocalTags", "1"),
    exact("includeAttachments", "0"),
    exact("includeEventCorrelations", "0"),
    exact("includeFeedCorrelations", "0"),
    exact("includeWarninglistHits", "0"),
    exact("noEventReports", "1"),
    exact("noShadowAttributes", "1"),
];

/// L6: `ShadowAttribute::pullProposals`, pages of 1000 since a timestamp
/// (now − 90 days; the conformance data uses 0).
const PROPOSALS_PAGE: &[Named] = &[
    exact("all", "1"),
    number("timestamp"),
    exact("limit", "1000"),
    number("page"),
    exact("deleted[]", "0"),
    exact("deleted[]", "1"),
];

/// L10: one chunk of up to 100 uuids of one analyst-data type.
const ANALYST_UUIDS: &[Named] = &[Named {
    key: "uuid[]",
    value: Value::Uuid,
    min: 1,
    max: MAX_UUIDS,
}];

/// Every exchange of MISP sync. Comments name the step and why it passes.
pub(super) static TABLE: &[Row] = &[
    // P1/L1, §3.1 test connection: capabilities of the remote sync user.
    // No shared data in the answer, and every run starts here.
    Row {
        method: "GET",
        route: "servers/getVersion",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange("servers/getVersion", Pull, None, None),
    },
    // §3.1 test connection (remote > 2.4.68): the remote echoes the test
    // string. The body must be exactly `{"testString":…}`.
    Row {
        method: "POST",
        route: "servers/postTest",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange("servers/postTest", Push, Some(Document::PostTest), None),
    },
    // §3.1 / §13 q1: the remote sync user, role and organisation. The older
    // guard allows it ("used during server pull"); no shared data.
    Row {
        method: "GET",
        route: "users/view",
        positional: &[Positional {
            name: "user",
            slot: Slot::OneOf(&["me"]),
        }],
        named: NONE,
        json: true,
        exchange: exchange("users/view/me", Pull, None, None),
    },
    // §3.1 rule editor: organisation and tag names of the remote, for the
    // admin to write push/pull rules. Names, no events.
    Row {
        method: "GET",
        route: "servers/getAvailableSyncFilteringRules",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange("servers/getAvailableSyncFilteringRules", Pull, None, None),
    },
    // P2/P5/L2: minimal search of custom clusters (uuid + version). The body
    // must say minimal and published; the answer carries the remote's
    // clusters, so the remote's (pull) rules apply to it.
    Row {
        method: "POST",
        route: "galaxy_clusters/restSearch",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange(
            "galaxy_clusters/restSearch",
            Pull,
            Some(Document::MinimalSearch),
            Some(Document::GalaxyClusterSearch),
        ),
    },
    // L3: one full cluster of the remote, inspected under its rules.
    Row {
        method: "GET",
        route: "galaxy_clusters/view",
        positional: &[Positional {
            name: "cluster uuid",
            slot: Slot::Uuid,
        }],
        named: NONE,
        json: false,
        exchange: exchange(
            "galaxy_clusters/view",
            Pull,
            None,
            Some(Document::GalaxyCluster),
        ),
    },
    // P3: push of one cluster (a one-element list), inspected under the
    // sender's rules.
    Row {
        method: "POST",
        route: "galaxies/pushCluster",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange(
            "galaxies/pushCluster",
            Push,
            Some(Document::GalaxyClusterList),
            None,
        ),
    },
    // P4: which of the sender's events the remote lacks. The body leaks
    // uuid+timestamp of candidates (§4 F); the answer is uuids.
    Row {
        method: "POST",
        route: "events/filterEventIdsForPush",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange(
            "events/filterEventIdsForPush",
            Push,
            Some(Document::EventUuidTimestamps),
            Some(Document::UuidList),
        ),
    },
    // P7 (and sighting publish): does the remote hold this event? HEAD
    // runs the view action's HEAD branch: status only, no body either way.
    Row {
        method: "HEAD",
        route: "events/view",
        positional: EVENT_UUID,
        named: NONE,
        json: false,
        exchange: exchange("events/view:head", Push, None, None),
    },
    // P8: push of a new event, inspected under the sender's rules; the
    // answer (the event's metadata, related events included) is the
    // remote's data, inspected under the remote's rules.
    Row {
        method: "POST",
        route: "events/add",
        positional: &[],
        named: METADATA,
        json: false,
        exchange: exchange(
            "events/add",
            Push,
            Some(Document::Event),
            Some(Document::Event),
        ),
    },
    // P8 and its fallbacks (§4 G): edit by uuid, or by the numeric id the
    // remote's `Location` gave after an add of an existing event.
    Row {
        method: "POST",
        route: "events/edit",
        positional: EVENT_ID,
        named: METADATA,
        json: false,
        exchange: exchange(
            "events/edit",
            Push,
            Some(Document::Event),
            Some(Document::Event),
        ),
    },
    // L4/L7 (puller), P9/P11 (pusher, for proposals and sightings): the
    // remote's minimal index. The body must say minimal and published; the
    // answer lists the remote's events, so its rules apply.
    Row {
        method: "POST",
        route: "events/index",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange(
            "events/index",
            Pull,
            Some(Document::MinimalSearch),
            Some(Document::EventIndex),
        ),
    },
    // P10: the sender's proposals on one event the remote knows, as the
    // flat rows `Server::syncProposals` posts.
    Row {
        method: "POST",
        route: "events/pushProposals",
        positional: EVENT_UUID,
        named: NONE,
        json: false,
        exchange: exchange(
            "events/pushProposals",
            Push,
            Some(Document::ProposalRows),
            None,
        ),
    },
    // P6: probe before pushing event reports (a fresh client per report);
    // the answer is the REST API description. Refusing it makes the pusher
    // silently strip every report (§4 H), so it must pass.
    Row {
        method: "GET",
        route: "eventReports/add",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange("eventReports/add", Push, None, None),
    },
    // P12: which sighting uuids of the event the remote already has.
    // Refusing it aborts the rest of a scheduled push (§10).
    Row {
        method: "POST",
        route: "sightings/filterSightingUuidsForPush",
        positional: EVENT_UUID,
        named: NONE,
        json: false,
        exchange: exchange(
            "sightings/filterSightingUuidsForPush",
            Push,
            Some(Document::UuidList),
            Some(Document::UuidList),
        ),
    },
    // P13: the sender's new sightings on one event.
    Row {
        method: "POST",
        route: "sightings/bulkSaveSightings",
        positional: EVENT_UUID,
        named: NONE,
        json: false,
        exchange: exchange(
            "sightings/bulkSaveSightings",
            Push,
            Some(Document::Sightings),
            None,
        ),
    },
    // L8 (remote > 2.4.164): sightings of up to 20 remote events. The body
    // holds MISP's own search keys only: `includeEvent`/`includeAttribute`
    // would put event titles and attribute values in the answer.
    Row {
        method: "POST",
        route: "sightings/restSearch",
        positional: &[Positional {
            name: "context",
            slot: Slot::OneOf(&["event"]),
        }],
        named: NONE,
        json: false,
        exchange: exchange(
            "sightings/restSearch",
            Pull,
            Some(Document::SightingSearch),
            Some(Document::Sightings),
        ),
    },
    // L5 (full event pull, by uuid, or by id for a single-event pull) and
    // L8 on old remotes: one remote event, inspected under its rules. Only
    // the pinned parameter sets, which keep the answer minimal.
    Row {
        method: "GET",
        route: "events/view",
        positional: EVENT_ID,
        named: &[VIEW_L5, VIEW_L8],
        json: false,
        exchange: exchange("events/view", Pull, None, Some(Document::Event)),
    },
    // L6: a page of the remote's proposals.
    Row {
        method: "GET",
        route: "shadow_attributes/index",
        positional: &[],
        named: &[PROPOSALS_PAGE],
        json: true,
        exchange: exchange(
            "shadow_attributes/index",
            Pull,
            None,
            Some(Document::ShadowAttributeList),
        ),
    },
    // L9: uuid→modified maps of the remote's analyst data.
    Row {
        method: "POST",
        route: "analyst_data/indexMinimal",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange(
            "analyst_data/indexMinimal",
            Pull,
            Some(Document::AnyJson),
            Some(Document::AnalystDataMinimal),
        ),
    },
    // L10: up to 100 analyst-data items of one type, inspected under the
    // remote's rules.
    Row {
        method: "GET",
        route: "analyst_data/index",
        positional: &[Positional {
            name: "analyst data type",
            slot: Slot::OneOf(&["Note", "Opinion", "Relationship"]),
        }],
        named: &[ANALYST_UUIDS],
        json: true,
        exchange: exchange(
            "analyst_data/index",
            Pull,
            None,
            Some(Document::AnalystDataList),
        ),
    },
    // P14: which of the sender's analyst data the remote accepts.
    Row {
        method: "POST",
        route: "analyst_data/filterAnalystDataForPush",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange(
            "analyst_data/filterAnalystDataForPush",
            Push,
            Some(Document::AnalystDataMinimal),
            Some(Document::AnalystDataMinimal),
        ),
    },
    // P15: one analyst-data item of the sender.
    Row {
        method: "POST",
        route: "analyst_data/pushAnalystData",
        positional: &[],
        named: NONE,
        json: false,
        exchange: exchange(
            "analyst_data/pushAnalystData",
            Push,
            Some(Document::AnalystDataItem),
            None,
        ),
    },
];

/// Find the row for `method` and `target`, or say why there is none.
pub(super) fn lookup(method: &str, target: &Target<'_>) -> Result<Exchange, Refusal> {
    let (route, rest) = match target.segments.as_slice() {
        [controller, action, rest @ ..] => ((*controller, *action), rest),
        other => {
            return Err(Refusal::NotInTable {
                route: Quoted::new(&other.join("/")),
            })
        }
    };
    let mut on_route = TABLE
        .iter()
        .filter(|row| same_route(row.route, route))
        .peekable();
    let Some(first) = on_route.peek() else {
        return Err(unknown_route(route));
    };
    let route_name = first.route;
    let Some(row) = on_route.find(|row| row.method == method) else {
        return Err(Refusal::MethodNotAllowed {
            method: Quoted::new(method),
            route: route_name,
        });
    };
    let extension_ok = match target.extension {
        None => !row.json,
        Some(ext) => row.json && ext == "json",
    };
    if !extension_ok {
        return Err(Refusal::BadExtension { route: row.route });
    }
    match_params(row, rest)?;
    Ok(row.exchange.clone())
}

/// The segments name `route` (`controller/action`) exactly.
fn same_route(route: &str, (controller, action): (&str, &str)) -> bool {
    route.split_once('/') == Some((controller, action))
}

/// Refusal for a route no row has: a spelling CakePHP would route to a row
/// (it camelises the controller and ignores the action's case) is named as
/// such, for whoever reads the log.
fn unknown_route((controller, action): (&str, &str)) -> Refusal {
    let received = format!("{controller}/{action}");
    let folded = fold(&received);
    match TABLE.iter().find(|row| fold(row.route) == folded) {
        Some(row) => Refusal::CaseVariant {
            route: Quoted::new(&received),
            canonical: row.route,
        },
        None => Refusal::NotInTable {
            route: Quoted::new(&received),
        },
    }
}

/// Lower-case without `_`: `galaxyClusters` and `galaxy_clusters` meet.
fn fold(route: &str) -> String {
    route
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Match the segments after the action against the row's positional slots
/// and one of its named sets.
fn match_params(row: &Row, segments: &[&str]) -> Result<(), Refusal> {
    let mut segments = segments.iter();
    for positional in row.positional {
        let Some(segment) = segments.next() else {
            return Err(Refusal::MissingSegment {
                name: positional.name,
            });
        };
        if !slot_matches(positional.slot, segment) {
            return Err(Refusal::BadParameter {
                name: Quoted::new(positional.name),
            });
        }
    }
    let mut named = Vec::new();
    for segment in segments {
        match segment.split_once(':') {
            Some(pair) => named.push(pair),
            None => {
                return Err(Refusal::UnexpectedSegment {
                    segment: Quoted::new(segment),
                })
            }
        }
    }
    // The first set that fits wins. When none does, a missing parameter of
    // a set that knew every given one says most (e.g. an L8 fetch lacking
    // one of its extras); else the first set's complaint.
    let mut first_error = None;
    let mut missing = None;
    for set in row.named {
        match match_set(set, &named) {
            Ok(()) => return Ok(()),
            Err(e @ Refusal::MissingPinnedParameter { .. }) => {
                missing.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(missing
        .or(first_error)
        .unwrap_or_else(|| Refusal::NotInTable {
            // Unreachable with the table as written (every row has a set);
            // refuse all the same.
            route: Quoted::new(row.route),
        }))
}

/// Match `key:value` pairs against one named set.
fn match_set(set: &[Named], pairs: &[(&str, &str)]) -> Result<(), Refusal> {
    let mut counts = vec![0usize; set.len()];
    for (key, value) in pairs {
        let hit = set
            .iter()
            .zip(counts.iter_mut())
            .find(|(spec, _)| spec.key == *key && value_matches(spec.value, value));
        let Some((spec, count)) = hit else {
            return Err(Refusal::BadParameter {
                name: Quoted::new(key),
            });
        };
        *count += 1;
        if *count > spec.max {
            return Err(if spec.max > 1 {
                Refusal::TooManyUuids { max: spec.max }
            } else {
                Refusal::RepeatedParameter {
                    name: Quoted::new(key),
                }
            });
        }
    }
    for (spec, count) in set.iter().zip(counts.iter()) {
        if *count < spec.min {
            let name = match spec.value {
                Value::Exact(v) => format!("{}:{}", spec.key, v),
                Value::Number | Value::Uuid => spec.key.to_string(),
            };
            return Err(Refusal::MissingPinnedParameter {
                name: Quoted::new(&name),
            });
        }
    }
    Ok(())
}

fn slot_matches(slot: Slot, segment: &str) -> bool {
    match slot {
        Slot::Uuid => is_uuid(segment),
        Slot::Id => is_uuid(segment) || (is_number(segment) && segment != "0"),
        Slot::OneOf(words) => words.contains(&segment),
    }
}

fn value_matches(value: Value, text: &str) -> bool {
    match value {
        Value::Exact(v) => text == v,
        Value::Number => is_number(text),
        Value::Uuid => is_uuid(text),
    }
}

/// Canonical lower-case 8-4-4-4-12 hex.
pub(super) fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// `0`, or 1–20 digits without a leading zero; no sign.
pub(super) fn is_number(text: &str) -> bool {
    (1..=20).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}
