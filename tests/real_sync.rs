//! MISP sync as two real MISP 2.5.1 instances make it (the exchanges of
//! `real-misp-exchanges.md`: the same steps, the same headers, the same
//! answers), through the guard dropped onto MISP A in host mode, to and
//! from MISP B on a second host: over plain HTTP from a stock Apache, over
//! plain HTTP from an Apache with mod_deflate (gzip answers, the big ones
//! chunked), and over HTTPS.
//!
//! The MISPs are `tests/peer/misp_sync.py`, with what the real pair showed
//! the guard must get right: proposals pushed as flat rows, a remote whose
//! events correlate with the pushed ones (its add/edit answers carry
//! `RelatedEvent`), sightings answered with the sighted attribute's value,
//! a proposal and an analyst note the rules forbid beside clean ones, and
//! PHP's `[]` for "no analyst data".

mod common;

use common::sync::*;
use common::*;

/// Two hosts: A (its MISP client, the guard) and B (its MISP server).
/// Fields drop in order: processes, then the namespaces.
struct Rig {
    guard: Guard,
    server: Server,
    a: Instance,
    b: Instance,
    guard_ca: GuardCa,
    ns_b: Netns,
    ns_a: Netns,
}

fn rig(tag: &str, port: u16, server_flags: &[&str], data_flags: &[&str]) -> Rig {
    let ns_a = Netns::new(&format!("{tag}a"));
    let ns_b = Netns::new(&format!("{tag}b"));
    veth(&ns_a, "a0", "10.78.1.2/24", &ns_b, "b0", "10.78.1.3/24");
    let dir = ns_a.dir.path();
    let a = Instance::with(dir, "A", "10.78.1.2", port, data_flags);
    let b = Instance::with(dir, "B", "10.78.1.3", port, data_flags);
    let guard_ca = GuardCa::new(dir);
    let config = config(
        &[&a, &b],
        &guard_ca,
        serde_json::json!({ "mode": "host" }),
        dir,
    );
    let server = Server::start_with(&ns_b, &b, server_flags);
    let guard = Guard::start(&ns_a, &config);
    Rig {
        guard,
        server,
        a,
        b,
        guard_ca,
        ns_b,
        ns_a,
    }
}

impl Rig {
    fn run(&self, kind: &str) -> Report {
        let (from, to) = (&self.a, &self.b);
        sync(
            &self.ns_a,
            &Run {
                kind,
                from,
                to,
                trust: &self.guard_ca.cert,
                pause_at: None,
            },
        )
    }

    fn fail(&self, problems: &[String]) {
        assert!(
            problems.is_empty(),
            "{}\n--- guard log (tail) ---\n{}",
            problems.join("\n"),
            tail(&self.guard.log(), 60)
        );
        let _ = &self.ns_b;
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The steps of a run with their answers (decoded), in order.
fn steps(report: &Report) -> Vec<(String, Option<u64>, Vec<u8>, String)> {
    report
        .exchanges()
        .iter()
        .map(|x| {
            (
                x["step"].as_str().unwrap_or("").to_string(),
                x["status"].as_u64(),
                decode_b64(x["answer_b64"].as_str().unwrap_or("")),
                x["coding"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The answers of `step`.
fn answers_of(report: &Report, step: &str) -> Vec<(Option<u64>, serde_json::Value)> {
    steps(report)
        .into_iter()
        .filter(|(s, ..)| s == step)
        .map(|(_, status, body, _)| {
            (
                status,
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

fn extras(i: &Instance) -> serde_json::Value {
    let text = std::fs::read_to_string(i.data.join("extras.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The statuses of the steps of a run, in the order real MISP makes them.
fn sequence(report: &Report) -> Vec<(String, u64)> {
    steps(report)
        .into_iter()
        .map(|(step, status, ..)| (step, status.unwrap_or(0)))
        .collect()
}

/// A push from A to B, then a pull, checked step by step. A's own
/// forbidden proposal and note are refused on the push: a push body goes
/// on as the sender sent it or not at all (the proposals of that event
/// together, each note alone).
fn push_and_pull(rig: &Rig) -> (Report, Report) {
    let push = rig.run("push");
    let refused_on_push = ["step pushProposals did not run to a 200"];
    let mut problems: Vec<String> = push_problems(&rig.a, &push, &rig.server)
        .into_iter()
        .filter(|p| !refused_on_push.contains(&p.as_str()))
        .collect();
    let seq = sequence(&push);
    // P1, P4, then per event P7 (HEAD: 404, text/html, no length) and P8.
    if seq.first() != Some(&("getVersion".into(), 200)) {
        problems.push(format!("push starts {:?}", seq.first()));
    }
    for (step, status) in &seq {
        let ok = match step.as_str() {
            "exists" => *status == 404,
            "event" => *status == 200 || *status == 403,
            "pushProposals" => *status == 403,
            // One note at a time: checked below.
            "pushAnalystData" => *status == 200 || *status == 403,
            _ => *status == 200,
        };
        if !ok {
            problems.push(format!("push step {step} answered {status}"));
        }
    }
    let x = extras(&rig.a);
    let notes: Vec<u64> = answers_of(&push, "pushAnalystData")
        .into_iter()
        .map(|(status, _)| status.unwrap_or(0))
        .collect();
    if notes != [200, 403] {
        problems.push(format!(
            "the clean and the forbidden note were answered {notes:?}"
        ));
    }
    let at_b = rig.server.raw_bytes();
    for secret in [
        &x["forbidden"]["proposal_value"],
        &x["forbidden"]["note_text"],
    ] {
        if contains(&at_b, secret.as_str().unwrap_or("-").as_bytes()) {
            problems.push(format!("{secret} reached B"));
        }
    }
    // The remote correlated each pushed event with one of its own; its
    // summary never reaches A, and the push counts as done.
    for (status, answer) in answers_of(&push, "event") {
        if status == Some(200)
            && (answer["Event"]["id"] != "7" || answer["Event"].get("RelatedEvent").is_some())
        {
            problems.push(format!("an add/edit answer as A got it: {answer}"));
        }
    }
    if contains(&push.raw_bytes(), b"remote only: op nightfall") {
        problems.push("a RelatedEvent summary of B reached A".into());
    }
    if !rig.guard.log().contains("RelatedEvent left out") {
        problems.push("the guard did not log the RelatedEvent it left out".into());
    }

    let pull = rig.run("pull");
    problems.extend(pull_problems(&rig.b, &pull));
    let seq = sequence(&pull);
    let index: Vec<u64> = seq
        .iter()
        .filter(|(s, _)| s == "index")
        .map(|(_, st)| *st)
        .collect();
    // L4 gets the index and its ETag; L7 sends it back: 304, no body.
    if index != [200, 304] {
        problems.push(format!("the two index calls answered {index:?}"));
    }
    for (step, status) in &seq {
        let ok = match step.as_str() {
            "index" => *status == 200 || *status == 304,
            "eventView" => *status == 200 || *status == 403,
            _ => *status == 200,
        };
        if !ok {
            problems.push(format!("pull step {step} answered {status}"));
        }
    }
    rig.fail(&problems);
    (push, pull)
}

/// What the rules forbid of B's pages never reaches A, and the rest does.
fn forbidden_items_left_out(rig: &Rig, pull: &Report) {
    let mut problems = Vec::new();
    let raw = pull.raw_bytes();
    let x = extras(&rig.b);
    let f = &x["forbidden"];
    // Proposals: the forbidden one replaced by an empty one, so the page
    // keeps its length (MISP pages proposals until a short page).
    let page = answers_of(pull, "proposals");
    let proposals = page.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let items = proposals.as_array().cloned().unwrap_or_default();
    let empty = serde_json::json!({"ShadowAttribute": {}});
    if items.len() != 3 || items[1] != empty || items[0] == empty || items[2] == empty {
        problems.push(format!("the proposals page as A got it: {proposals}"));
    }
    // (A note's uuid is in B's uuid → modified index, as a blocked event's
    // uuid is in the events index: what the note says is not.)
    for secret in [&f["proposal"], &f["proposal_value"], &f["note_text"]] {
        if contains(&raw, secret.as_str().unwrap_or("-").as_bytes()) {
            problems.push(format!("{secret} reached A"));
        }
    }
    // Analyst data: the forbidden note left out, the clean one there.
    let chunk = answers_of(pull, "analystData");
    let notes = chunk.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let uuids: Vec<&str> = notes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["Note"]["uuid"].as_str())
        .collect();
    let clean = x["notes"][0]["Note"]["uuid"].as_str().unwrap_or("-");
    if uuids != [clean] {
        problems.push(format!("the analyst data as A got it: {notes}"));
    }
    // Sightings: every one without the attribute's value, all else kept.
    let answer = answers_of(pull, "sightings");
    let sightings = answer.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let list = sightings["response"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if list.is_empty()
        || list.iter().any(|s| {
            let s = &s["Sighting"];
            s.get("value").is_some()
                || s["attribute_uuid"].as_str().is_none()
                || s["event_uuid"].as_str().is_none()
        })
    {
        problems.push(format!("the sightings as A got them: {sightings}"));
    }
    let log = rig.guard.log();
    for said in [
        "Sighting.value left out",
        "item(s) removed",
        "blocked attribute type",
    ] {
        if !log.contains(said) {
            problems.push(format!("the guard's log does not say {said:?}"));
        }
    }
    rig.fail(&problems);
}

/// What A sent reached B with the headers real MISP sends.
fn misp_headers_reached_b(rig: &Rig) {
    let mut problems = Vec::new();
    let received = rig.server.received();
    let header = |r: &serde_json::Value, name: &str| -> Option<String> {
        r["headers"].as_array()?.iter().find_map(|h| {
            (h[0].as_str()?.eq_ignore_ascii_case(name))
                .then(|| h[1].as_str().unwrap_or("").to_string())
        })
    };
    for r in &received {
        if header(r, "authorization").as_deref() != Some(&"k".repeat(40)) {
            problems.push(format!("{} lost its API key", r["path"]));
        }
        if header(r, "accept-encoding").as_deref() != Some("deflate, gzip, br, zstd") {
            problems.push(format!(
                "{} arrived with Accept-Encoding {:?}",
                r["path"],
                header(r, "accept-encoding")
            ));
        }
    }
    let first_index = received
        .iter()
        .find(|r| r["path"] == "/events/index")
        .and_then(|r| header(r, "if-none-match"));
    if first_index.as_deref() != Some("\"\"") {
        problems.push(format!(
            "the first index came with If-None-Match {first_index:?}"
        ));
    }
    let gzipped = received
        .iter()
        .any(|r| header(r, "content-encoding").as_deref() == Some("gzip"));
    if !gzipped {
        problems.push("no request body over 1 KiB came gzip".into());
    }
    rig.fail(&problems);
}

#[test]
fn stock_apache_over_plain_http() {
    if !can_run_firewall("stock_apache_over_plain_http") {
        return;
    }
    let rig = rig("rsp", 80, &["--correlate"], &["--forbidden-extras"]);
    let (_, pull) = push_and_pull(&rig);
    forbidden_items_left_out(&rig, &pull);
    misp_headers_reached_b(&rig);
}

#[test]
fn mod_deflate_over_plain_http() {
    if !can_run_firewall("mod_deflate_over_plain_http") {
        return;
    }
    let rig = rig(
        "rsd",
        80,
        &["--deflate", "--correlate"],
        &["--forbidden-extras"],
    );
    let (push, pull) = push_and_pull(&rig);
    forbidden_items_left_out(&rig, &pull);
    misp_headers_reached_b(&rig);
    // Answers judged whole reach A as B encoded them; rebuilt ones are
    // identity-coded.
    let mut problems = Vec::new();
    let codings: Vec<(String, String)> = steps(&pull)
        .into_iter()
        .chain(steps(&push))
        .map(|(step, _, _, coding)| (step, coding))
        .collect();
    let coding_of = |step: &str| {
        codings
            .iter()
            .find(|(s, _)| s == step)
            .map(|(_, c)| c.clone())
    };
    for (step, want) in [
        ("getVersion", "gzip"),
        ("eventView", "gzip"),
        ("proposals", ""),
        ("sightings", ""),
        ("event", ""),
    ] {
        if coding_of(step).as_deref() != Some(want) {
            problems.push(format!("{step} came {:?}, not {want:?}", coding_of(step)));
        }
    }
    rig.fail(&problems);
}

#[test]
fn over_https() {
    if !can_run_firewall("over_https") {
        return;
    }
    let rig = rig("rst", 443, &["--correlate"], &["--forbidden-extras"]);
    let (_, pull) = push_and_pull(&rig);
    forbidden_items_left_out(&rig, &pull);
    misp_headers_reached_b(&rig);
}

/// A remote with no analyst data answers `indexMinimal` with PHP's empty
/// array, `[]`, and a MISP with none to offer posts `[]` to
/// `filterAnalystDataForPush`: both pass.
#[test]
fn no_analyst_data_is_an_empty_array() {
    if !can_run_firewall("no_analyst_data_is_an_empty_array") {
        return;
    }
    let rig = rig("rse", 80, &[], &["--no-analyst-data"]);
    let push = rig.run("push");
    let pull = rig.run("pull");
    let mut problems = Vec::new();
    match answers_of(&push, "filterAnalystData").first() {
        Some((Some(200), _)) => {}
        other => problems.push(format!("filterAnalystDataForPush of []: {other:?}")),
    }
    match answers_of(&pull, "analystIndex").first() {
        Some((Some(200), v)) if *v == serde_json::json!([]) => {}
        other => problems.push(format!("indexMinimal answered []: {other:?}")),
    }
    rig.fail(&problems);
}
