//! The guard dropped onto a MISP host, with its own nftables table
//! (`guard.firewall.mode: "host"`), between two hosts made of network
//! namespaces joined by a veth pair: MISP A and the guard on one, MISP B on
//! the other, no proxy setting anywhere, TLS on every leg. The MISPs are
//! `tests/peer/misp_sync.py`, running MISP's own push and pull sequences
//! and answering like MISP.

mod common;

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::sync::*;
use common::*;

/// Two hosts: A (its MISP, the guard) and B (its MISP). Fields drop in
/// order: processes, then the namespaces.
struct Rig {
    guard: Option<Guard>,
    server_a: Server,
    server_b: Server,
    a: Instance,
    b: Instance,
    guard_ca: GuardCa,
    config: serde_json::Value,
    ns_b: Netns,
    ns_a: Netns,
}

fn rig(tag: &str, v6: bool) -> Rig {
    rig_with(tag, v6, |_| {})
}

/// [`rig`], with `tweak` applied to the guard's config before it starts.
fn rig_with(tag: &str, v6: bool, tweak: impl FnOnce(&mut serde_json::Value)) -> Rig {
    let ns_a = Netns::new(&format!("{tag}a"));
    let ns_b = Netns::new(&format!("{tag}b"));
    let (ip_a, ip_b, prefix) = if v6 {
        ("fd00:77::2", "fd00:77::3", 64)
    } else {
        ("10.77.1.2", "10.77.1.3", 24)
    };
    veth(
        &ns_a,
        "a0",
        &format!("{ip_a}/{prefix}"),
        &ns_b,
        "b0",
        &format!("{ip_b}/{prefix}"),
    );
    let dir = ns_a.dir.path();
    let a = Instance::new(dir, "A", ip_a);
    let b = Instance::new(dir, "B", ip_b);
    let guard_ca = GuardCa::new(dir);
    let mut config = config(
        &[&a, &b],
        &guard_ca,
        serde_json::json!({ "mode": "host" }),
        dir,
    );
    // Inbound pulls from B meet A's own certificate: nothing changes on B.
    config["guard"]["instances"]["A"]["tls"]["cert"] = a.cert.display().to_string().into();
    config["guard"]["instances"]["A"]["tls"]["key"] = a.key.display().to_string().into();
    tweak(&mut config);
    let server_a = Server::start(&ns_a, &a);
    let server_b = Server::start(&ns_b, &b);
    let guard = Guard::start(&ns_a, &config);
    Rig {
        guard: Some(guard),
        server_a,
        server_b,
        a,
        b,
        guard_ca,
        config,
        ns_b,
        ns_a,
    }
}

impl Rig {
    fn guard(&self) -> &Guard {
        self.guard.as_ref().unwrap()
    }

    fn run<'a>(&'a self, kind: &'a str, from: &'a Instance, to: &'a Instance) -> Run<'a> {
        // A's MISP trusts the guard CA for B (its cert_file); B's MISP
        // trusts A's own CA, as before the guard came.
        let trust = if from.name == "A" {
            &self.guard_ca.cert
        } else {
            &self.a.ca
        };
        Run {
            kind,
            from,
            to,
            trust,
            pause_at: None,
        }
    }

    fn ns_of(&self, i: &Instance) -> &Netns {
        if i.name == "A" {
            &self.ns_a
        } else {
            &self.ns_b
        }
    }

    fn sync(&self, kind: &str, from: &Instance, to: &Instance) -> Report {
        sync(self.ns_of(from), &self.run(kind, from, to))
    }

    fn fail(&self, problems: &[String]) -> String {
        format!(
            "{}\n--- guard log (tail) ---\n{}",
            problems.join("\n"),
            log_tail(&self.guard().log(), 30)
        )
    }
}

/// Exchanges of every push before its first event: getVersion,
/// galaxy_clusters/restSearch, galaxies/pushCluster,
/// filterEventIdsForPush, then the first event's HEAD. The next one (6)
/// is the first event's POST.
const FIRST_EVENT_POST: usize = 6;

/// How many verdict lines the guard logged for `src` → `dst`.
fn verdicts(log: &str, src: &str, dst: &str) -> usize {
    let (s, d) = (
        format!("src.instance=\"{src}\""),
        format!("dst.instance=\"{dst}\""),
    );
    log.lines()
        .filter(|l| l.contains("exchange ") && l.contains(&s) && l.contains(&d))
        .count()
}

#[test]
fn host_outgoing_push_and_pull_go_through_the_guard() {
    if !can_run_firewall("host_outgoing_push_and_pull_go_through_the_guard") {
        return;
    }
    let rig = rig("fwho", false);
    let push = rig.sync("push", &rig.a, &rig.b);
    let mut problems = push_problems(&rig.a, &push, &rig.server_b);
    let pull = rig.sync("pull", &rig.a, &rig.b);
    problems.extend(pull_problems(&rig.b, &pull));
    let log = rig.guard().log();
    let exchanges = push.exchanges().len() + pull.exchanges().len();
    if verdicts(&log, "A", "B") != exchanges {
        problems.push(format!(
            "{exchanges} exchanges ran, the guard judged {}",
            verdicts(&log, "A", "B")
        ));
    }
    assert!(problems.is_empty(), "{}", rig.fail(&problems));
}

#[test]
fn host_inbound_pull_meets_the_guard_before_the_local_misp() {
    if !can_run_firewall("host_inbound_pull_meets_the_guard_before_the_local_misp") {
        return;
    }
    let rig = rig("fwhi", false);
    let pull = rig.sync("pull", &rig.b, &rig.a);
    let mut problems = pull_problems(&rig.a, &pull);
    let log = rig.guard().log();
    if verdicts(&log, "B", "A") != pull.exchanges().len() {
        problems.push("the guard did not judge every exchange of B's pull".into());
    }
    // What A's MISP answered reached it through the guard (from A's own
    // address, the guard's marked upstream connection).
    let clients: Vec<_> = rig
        .server_a
        .received()
        .iter()
        .map(|r| r["client"].clone())
        .collect();
    if clients.iter().any(|c| c != "10.77.1.2") {
        problems.push(format!(
            "A's MISP was reached other than through the guard: {clients:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", rig.fail(&problems));
}

#[test]
fn host_over_ipv6_only() {
    if !can_run_firewall("host_over_ipv6_only") {
        return;
    }
    let rig = rig("fwh6", true);
    let push = rig.sync("push", &rig.a, &rig.b);
    let mut problems = push_problems(&rig.a, &push, &rig.server_b);
    let pull = rig.sync("pull", &rig.a, &rig.b);
    problems.extend(pull_problems(&rig.b, &pull));
    let inbound = rig.sync("pull", &rig.b, &rig.a);
    problems.extend(pull_problems(&rig.a, &inbound));
    let table = table(&rig.ns_a).unwrap_or_default();
    if !table.contains("fd00:77::3 . 443") || !table.contains("fd00:77::2 . 443") {
        problems.push(format!("the IPv6 sets do not hold the instances:\n{table}"));
    }
    assert!(problems.is_empty(), "{}", rig.fail(&problems));
}

/// `nft args` inside `ns`.
fn nft_in(ns: &Netns, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns.name.as_str(), "nft"];
    all.extend_from_slice(args);
    sh(&all);
}

/// Connect from `source` to `to` inside `ns`: refused (nothing listens
/// where the table sends it) or not.
fn refused(ns: &Netns, source: &str, to: SocketAddr) -> bool {
    let source: IpAddr = source.parse().unwrap();
    ns.run(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(source, 0).into()).unwrap();
        matches!(
            s.connect_timeout(&to.into(), Duration::from_secs(3)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
}

#[test]
fn killed_guard_fails_closed_and_restarts_without_a_manual_step() {
    if !can_run_firewall("killed_guard_fails_closed_and_restarts_without_a_manual_step") {
        return;
    }
    let mut rig = rig("fwhk", false);
    let table_before = table(&rig.ns_a);
    let mut run = rig.run("push", &rig.a, &rig.b);
    run.pause_at = Some((FIRST_EVENT_POST, true));
    let running = start_run(&rig.ns_a, &run);
    let at = running.wait_paused();
    let mut problems = Vec::new();
    if !at.contains("(event)") {
        problems.push(format!("paused at {at:?}, not inside an event's body"));
    }
    // SIGKILL mid-body: no handler runs, nothing is cleaned up.
    let mut guard = rig.guard.take().unwrap();
    guard.proc.child.kill().unwrap();
    guard.proc.child.wait().unwrap();
    let report = running.resume();

    let events = &report.json["events"];
    let pushed: Vec<_> = rig
        .a
        .index()
        .iter()
        .filter(|e| events[e["uuid"].as_str().unwrap()]["status"] == 200)
        .map(|e| e["key"].clone())
        .collect();
    if !pushed.is_empty() {
        problems.push(format!("events pushed with the guard dead: {pushed:?}"));
    }
    if report.json["errors"]
        .as_array()
        .is_none_or(|e| e.is_empty())
    {
        problems.push("the sync did not fail".into());
    }
    let adds: Vec<_> = rig
        .server_b
        .received()
        .into_iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/events/"))
        })
        .filter(|r| r["method"] == "POST" && r["path"] != "/events/filterEventIdsForPush")
        .collect();
    if !adds.is_empty() {
        problems.push(format!(
            "B received {} event requests unguarded",
            adds.len()
        ));
    }
    let half_sent = report.sent_body(&format!("{FIRST_EVENT_POST:03}-event.bin"));
    let others: Vec<Vec<u8>> = report
        .sent_bodies()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("-event.bin"))
        .map(|(_, b)| b)
        .collect();
    if leaked(&rig.server_b.raw_bytes(), &half_sent, &others) {
        problems.push("bytes of the event in flight reached B".into());
    }
    if table(&rig.ns_a) != table_before || table_before.is_none() {
        problems.push("the table did not stay as it was".into());
    }
    if !refused(&rig.ns_a, &rig.a.ip, rig.b.addr()) {
        problems.push("with the guard dead, A could still connect to B's sync port".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Restarted on the same config: sync works again, nothing done by hand.
    rig.guard = Some(Guard::start_with(&rig.ns_a, &guard.config));
    drop(guard);
    let push = rig.sync("push", &rig.a, &rig.b);
    let problems = push_problems(&rig.a, &push, &rig.server_b);
    assert!(problems.is_empty(), "{}", rig.fail(&problems));
}

#[test]
fn reload_under_traffic_applies_to_new_exchanges_only() {
    if !can_run_firewall("reload_under_traffic_applies_to_new_exchanges_only") {
        return;
    }
    let rig = rig("fwhr", false);
    // A third instance on B's host, not yet in the config.
    add_addr(&rig.ns_b, "b0", "10.77.1.4/24");
    let c = Instance::new(rig.ns_a.dir.path(), "C", "10.77.1.4");
    let server_c = Server::start(&rig.ns_b, &c);

    let mut run = rig.run("push", &rig.a, &rig.b);
    run.pause_at = Some((FIRST_EVENT_POST, true));
    let running = start_run(&rig.ns_a, &run);
    running.wait_paused();

    // While an event is half-way through the guard: A's rules now block
    // tlp:green (the event in flight) and tlp:amber (the last one), and C
    // is an instance.
    let mut new = rig.config.clone();
    new["instances"]["A"]["taxonomies_rules"]["blocked_tags"] =
        serde_json::json!(["tlp:red", "tlp:green", "tlp:amber"]);
    new["instances"]["C"] = c.config();
    new["guard"]["instances"]["C"] =
        serde_json::json!({ "tls": { "ca": c.ca.display().to_string() } });
    fs::write(
        &rig.guard().config,
        serde_json::to_string_pretty(&new).unwrap(),
    )
    .unwrap();
    let line = rig.guard().reload();
    let mut problems = Vec::new();
    if !line.contains("config reloaded") {
        problems.push(format!("reload: {line}"));
    }
    if !table(&rig.ns_a)
        .unwrap_or_default()
        .contains("10.77.1.4 . 443")
    {
        problems.push("the rebuilt table does not catch C".into());
    }
    let report = running.resume();
    let status = |key: &str| {
        let e = rig.a.index().into_iter().find(|e| e["key"] == key).unwrap();
        report.json["events"][e["uuid"].as_str().unwrap()].clone()
    };
    // The exchange in flight finished under the rules it started with.
    if status("clean-small")["status"] != 200 {
        problems.push(format!(
            "the exchange in flight was cut or judged anew: {}",
            status("clean-small")
        ));
    }
    if status("clean-big")["status"] != 200 {
        problems.push(format!("clean-big: {}", status("clean-big")));
    }
    // A new exchange meets the new rules.
    let last = status("clean-last");
    if last["status"] != 403
        || !last["reason"]
            .as_str()
            .unwrap_or("")
            .contains("blocked tag: tlp:amber")
    {
        problems.push(format!(
            "the new rule did not apply to a new exchange: {last}"
        ));
    }

    // C's traffic is caught: the guard judges it under the new config.
    let to_c = sync(&rig.ns_a, &rig.run("push", &rig.a, &c));
    let log = rig.guard().log();
    if verdicts(&log, "A", "C") != to_c.exchanges().len() || to_c.exchanges().is_empty() {
        problems.push("the guard did not judge every exchange with C".into());
    }
    let big = rig
        .a
        .index()
        .into_iter()
        .find(|e| e["key"] == "clean-big")
        .unwrap();
    let tag = rig
        .a
        .index()
        .into_iter()
        .find(|e| e["key"] == "tag")
        .unwrap();
    if to_c.json["events"][big["uuid"].as_str().unwrap()]["status"] != 200
        || to_c.json["events"][tag["uuid"].as_str().unwrap()]["status"] != 403
    {
        problems.push(format!("push to C: {}", to_c.json["events"]));
    }
    if server_c.received().is_empty() {
        problems.push("C received nothing".into());
    }

    // A reload whose table the kernel refuses is refused whole: B's rules
    // would now block tlp:clear, but the old config and table stay.
    let before = table(&rig.ns_a);
    let mut refused_config = new.clone();
    refused_config["guard"]["firewall"]["nat_priority"] = serde_json::json!(-300);
    refused_config["instances"]["B"]["taxonomies_rules"]["blocked_tags"] =
        serde_json::json!(["tlp:red", "tlp:clear"]);
    fs::write(
        &rig.guard().config,
        serde_json::to_string_pretty(&refused_config).unwrap(),
    )
    .unwrap();
    let line = rig.guard().reload();
    if !line.contains("refused") || !line.contains("priority -300") {
        problems.push(format!(
            "a table the kernel refuses was not refused with its reason: {line}"
        ));
    }
    if table(&rig.ns_a) != before {
        problems.push("the table changed on a refused reload".into());
    }
    let pull = rig.sync("pull", &rig.a, &rig.b);
    problems.extend(pull_problems(&rig.b, &pull));
    drop(server_c);
    assert!(problems.is_empty(), "{}", rig.fail(&problems));
}

/// Wait until `f` holds on A's table (`None`: there is none).
fn wait_table(rig: &Rig, what: &str, f: impl Fn(Option<&str>) -> bool) {
    let start = std::time::Instant::now();
    while !f(table(&rig.ns_a).as_deref()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}:\n{}",
            log_tail(&rig.guard().log(), 20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /metrics` on A's admin listener.
fn metrics(rig: &Rig) -> String {
    use std::io::{Read, Write};
    rig.ns_a.run(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:19464").expect("admin listener");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
}

#[test]
fn a_flushed_or_changed_table_is_installed_again_and_sync_never_bypasses() {
    if !can_run_firewall("a_flushed_or_changed_table_is_installed_again_and_sync_never_bypasses") {
        return;
    }
    let rig = rig_with("fwhf", false, |c| {
        c["guard"]["admin"] = serde_json::json!({ "listen": "127.0.0.1:19464" });
    });
    let installed = table(&rig.ns_a).expect("the table at start");
    let mut problems = Vec::new();

    // What `systemctl restart nftables` does first.
    nft_in(&rig.ns_a, &["flush", "ruleset"]);
    wait_table(&rig, "the table after `nft flush ruleset`", |t| t.is_some());
    // An admin's edit of the guard's own table: its rules flushed, the
    // chains left.
    nft_in(&rig.ns_a, &["flush", "table", "inet", "misp_guard"]);
    wait_table(&rig, "the rules after `nft flush table`", |t| {
        t.is_some_and(|t| t.contains("redirect"))
    });
    if table(&rig.ns_a).as_deref() != Some(installed.as_str()) {
        problems.push(format!(
            "the table put back is not the one installed:\n{installed}\n---\n{:?}",
            table(&rig.ns_a)
        ));
    }
    let log = rig.guard().log();
    let warned = log.matches("is gone or changed").count();
    let again = log.matches("installed again").count();
    if warned < 2 || again < 2 {
        problems.push(format!(
            "{warned} warnings, {again} re-installs logged (2 each)"
        ));
    }
    let text = metrics(&rig);
    if !text.contains("misp_guard_firewall_reinstalls_total{result=\"ok\",mode=\"enforce\"} 2") {
        problems.push(format!("reinstalls not counted:\n{text}"));
    }
    if !text.contains("misp_guard_firewall_table_present{mode=\"enforce\"} 1") {
        problems.push("the table is not reported present".into());
    }

    // Sync goes through the guard again, every exchange judged: nothing
    // reaches B around it.
    let push = rig.sync("push", &rig.a, &rig.b);
    problems.extend(push_problems(&rig.a, &push, &rig.server_b));
    let log = rig.guard().log();
    let before = verdicts(&log, "A", "B");
    if before != push.exchanges().len() {
        problems.push(format!(
            "{} exchanges ran, the guard judged {before}",
            push.exchanges().len()
        ));
    }
    assert!(problems.is_empty(), "{}", rig.fail(&problems));
}

/// A connection to B opened while the guard's table was gone is not
/// carried on around the guard once the table is back: a redirect only
/// catches a connection's first packet, and the table's filter chains drop
/// the rest of one that was not redirected.
#[test]
fn a_connection_older_than_the_table_is_dropped_once_it_is_back() {
    if !can_run_firewall("a_connection_older_than_the_table_is_dropped_once_it_is_back") {
        return;
    }
    let mut rig = rig("fwhc", false);
    let mut guard = rig.guard.take().unwrap();
    guard.proc.child.kill().unwrap();
    guard.proc.child.wait().unwrap();
    nft_in(&rig.ns_a, &["delete", "table", "inet", "misp_guard"]);
    let source: IpAddr = rig.a.ip.parse().unwrap();
    let to = rig.b.addr();
    let open = || {
        rig.ns_a.run(|| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::new(source, 0).into()).unwrap();
            s.connect_timeout(&to.into(), Duration::from_secs(3))
                .expect("B's sync port straight, with no table in the way");
            std::net::TcpStream::from(s)
        })
    };
    // B closes its side at once when A closes its own in the handshake;
    // silence means A's FIN was dropped on the way.
    let answered = |s: &mut std::net::TcpStream| {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        if s.shutdown(std::net::Shutdown::Write).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        !matches!(s.read(&mut byte), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    };
    // B serves one connection's handshake at a time: the probe first.
    let mut probe = open();
    assert!(
        answered(&mut probe),
        "B does not answer a direct connection: the test could not tell a drop"
    );
    drop(probe);
    let mut old = open();

    rig.guard = Some(Guard::start_with(&rig.ns_a, &guard.config));
    drop(guard);
    assert!(table(&rig.ns_a).is_some(), "the guard installed no table");
    assert!(
        !answered(&mut old),
        "a connection opened before the table went on to B around the guard"
    );
    // (B's server now waits on that connection's handshake, so no sync
    // is run here: the other tests show new connections caught.)
}
