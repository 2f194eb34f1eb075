//! The Debian package as an admin uses it, under a real systemd: a Debian
//! 12 container (tests/common/nspawn.rs) in which the .deb is installed with
//! dpkg, refused while its config is the shipped one, configured as a MISP
//! host (host mode, TLS on both legs) whose MISP pushes to a partner MISP in
//! a network namespace beside it, reloaded by `systemctl reload` and by
//! editing the file, upgraded, stopped, removed and purged.
//!
//! The .deb is `$MISP_GUARD_DEB`, or the newest target/debian/misp-guard_*.deb
//! (`packaging/build-deb` makes it). Without root, systemd-nspawn,
//! debootstrap or a .deb the test says why and passes; with
//! `MISP_GUARD_REQUIRE_SYSTEMD=1` (as .ci/run sets it) any of those fails
//! it instead.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::nspawn::{cached_root, Container};
use common::sync::*;
use common::Netns;

/// The MISP host's side of the veth pair (in the container) and the
/// partner's.
const IP_A: &str = "10.79.1.2";
const IP_B: &str = "10.79.1.3";
/// A third instance a reload adds.
const IP_C: &str = "10.79.1.4";
const CONFIG: &str = "/etc/misp-guard/config.json";
const UNITS: &str =
    "/lib/systemd/system/misp-guard.service /lib/systemd/system/misp-guard.path /lib/systemd/system/misp-guard-reload.service";

/// Skip with a reason, or fail when the CI asks for this test to run.
fn skip(reason: &str) {
    if std::env::var_os("MISP_GUARD_REQUIRE_SYSTEMD").is_some_and(|v| v == "1") {
        panic!("MISP_GUARD_REQUIRE_SYSTEMD=1 but: {reason}");
    }
    eprintln!("SKIP the systemd package test: {reason}");
}

fn the_deb() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MISP_GUARD_DEB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("MISP_GUARD_DEB={}: no such file", p.display()))
        };
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let debs = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("misp-guard_") && n.ends_with(".deb")
        });
    debs.max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
        .ok_or(format!(
            "no {}/misp-guard_*.deb: build it with packaging/build-deb",
            dir.display()
        ))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Everything the test needs, or why it cannot run here.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root".into());
    }
    for tool in [
        "systemd-nspawn",
        "debootstrap",
        "nsenter",
        "ip",
        "nft",
        "python3",
        "dpkg-deb",
    ] {
        if !have(tool) {
            return Err(format!("needs {tool}"));
        }
    }
    let deb = the_deb()?;
    let root = cached_root()?;
    Ok((deb, root))
}

/// The container and what runs beside it. Fields drop in order: the
/// partner's server and the container first, then the namespaces.
struct Rig {
    server_b: Option<Server>,
    c: Container,
    a: Instance,
    b: Instance,
    ns_b: Netns,
    dir: tempfile::TempDir,
}

impl Rig {
    fn ns_a(&self) -> &Netns {
        &self.c.netns
    }

    fn push(&self, trust: &Path) -> Report {
        sync(self.ns_a(), &self.run(trust))
    }

    fn run<'a>(&'a self, trust: &'a Path) -> Run<'a> {
        Run {
            kind: "push",
            from: &self.a,
            to: &self.b,
            trust,
            pause_at: None,
        }
    }

    fn show(&self, property: &str) -> String {
        show(&self.c, property)
    }

    fn journal(&self) -> String {
        self.c.ok("journalctl -u misp-guard -o cat --no-pager")
    }

    /// What went wrong, with the guard's journal.
    fn fail(&self, what: &str) -> String {
        let j = self.journal();
        let lines: Vec<&str> = j.lines().collect();
        format!(
            "{what}\n--- journalctl -u misp-guard (tail) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// The number in STATUS='…; reload N in force|refused: …', 0 before
    /// any reload.
    fn reloads(&self) -> u64 {
        let status = self.show("StatusText");
        status
            .rsplit_once("; reload ")
            .and_then(|(_, r)| r.split(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Wait for reload `n` to be over; its STATUS.
    fn wait_reload(&self, n: u64) -> String {
        let start = Instant::now();
        loop {
            if self.reloads() >= n {
                return self.show("StatusText");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}",
                self.fail(&format!("no reload {n}"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Poll `f` until it gives something (journald writes what a process
/// printed a little after the process is gone).
fn wait_for<T>(mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A property of misp-guard.service.
fn show(c: &Container, property: &str) -> String {
    c.ok(&format!("systemctl show -p {property} --value misp-guard"))
        .trim()
        .to_string()
}

/// The config an admin writes for this MISP host: both instances, the
/// guard's CA made by `ca init`, each instance verified with its own CA
/// (the container has no system trust store), host mode (A found as the
/// address of this host), and a proxy listener below 1024.
fn config(a: &Instance, b: &Instance, c: Option<&str>) -> serde_json::Value {
    let mut instances = serde_json::json!({ "A": a.config(), "B": b.config() });
    if let Some(ip) = c {
        let mut third = b.config();
        third["ip"] = ip.into();
        third["host"] = "misp-c.example".into();
        instances["C"] = third;
    }
    let mut v = serde_json::json!({
        "compartments_rules": { "can_reach": { "c": ["c"] } },
        "instances": instances,
        "guard": {
            "listen": { "transparent": ["[::]:8443"], "proxy": ["127.0.0.1:800"] },
            "firewall": { "mode": "host" },
            "tls": {
                "ca_cert": "/var/lib/misp-guard/ca/ca.crt",
                "ca_key": "/var/lib/misp-guard/ca/ca.key"
            },
            "instances": {
                "A": { "tls": { "ca": "/etc/misp-guard/a-ca.pem" } },
                "B": { "tls": { "ca": "/etc/misp-guard/b-ca.pem" } }
            },
            "log": { "format": "journald" },
            "spill_dir": "/var/lib/misp-guard/spill"
        }
    });
    if c.is_some() {
        v["guard"]["instances"]["C"] =
            serde_json::json!({ "tls": { "ca": "/etc/misp-guard/b-ca.pem" } });
    }
    v
}

/// `journalctl -o json` entries: field → value (the first, when a field
/// repeats; byte arrays as lossy text).
fn entries(json_lines: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.as_object().cloned())
        .collect()
}

fn field(e: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    match e.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(values) => match values.first()? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(_) => {
                let bytes: Vec<u8> = values
                    .iter()
                    .filter_map(|b| b.as_u64().map(|b| b as u8))
                    .collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        },
        other => Some(other.to_string()),
    }
}

#[test]
fn the_package_under_systemd() {
    let (deb, root) = match prerequisites() {
        Ok(p) => p,
        Err(reason) => return skip(&reason),
    };
    eprintln!("testing {}", deb.display());
    let c = match Container::boot(&root, "sd") {
        Ok(c) => c,
        Err(reason) => return skip(&format!("cannot boot a container here: {reason}")),
    };

    // --- install: enabled, not started; user, modes, files.
    fs::copy(&deb, c.host_path("/root/misp-guard.deb")).unwrap();
    let out = c.ok("dpkg -i /root/misp-guard.deb 2>&1");
    assert!(
        out.contains("edit /etc/misp-guard/config.json"),
        "install says what to do next:\n{out}"
    );
    assert_eq!(
        c.ok("systemctl is-enabled misp-guard.service misp-guard.path"),
        "enabled\nenabled\n"
    );
    assert_eq!(
        c.run("systemctl is-active misp-guard").stdout,
        b"inactive\n",
        "started on a fresh install"
    );
    assert_eq!(
        c.ok("getent passwd misp-guard | cut -d: -f6,7"),
        "/var/lib/misp-guard:/usr/sbin/nologin\n"
    );
    assert_eq!(
        c.ok("stat -c '%n %U:%G %a' /etc/misp-guard /etc/misp-guard/config.json /var/lib/misp-guard /var/lib/misp-guard/ca /var/lib/misp-guard/spill"),
        "/etc/misp-guard root:misp-guard 750\n\
         /etc/misp-guard/config.json root:misp-guard 640\n\
         /var/lib/misp-guard misp-guard:misp-guard 750\n\
         /var/lib/misp-guard/ca misp-guard:misp-guard 750\n\
         /var/lib/misp-guard/spill misp-guard:misp-guard 750\n"
    );
    assert!(c
        .ok("dpkg-query -W -f='${Conffiles}' misp-guard")
        .contains("/etc/misp-guard/config.json"));
    c.ok(
        "test -x /usr/bin/misp-guard && test -f /usr/share/man/man1/misp-guard.1.gz \
          && test -f /usr/share/man/man1/misp-guard-run.1.gz \
          && test -f /usr/share/bash-completion/completions/misp-guard \
          && test -f /usr/share/zsh/vendor-completions/_misp-guard \
          && test -f /usr/share/fish/vendor_completions.d/misp-guard.fish \
          && test -f /usr/share/misp-guard/misp-guard.example.json \
          && test -f /usr/share/misp-guard/nft/misp-host.nft \
          && test -f /usr/share/misp-guard/nft/gateway.nft",
    );
    c.ok("grep -q -- '--config' /usr/share/bash-completion/completions/misp-guard");

    // --- the shipped config: accepted by config check, refused by run in
    // one line, and no restart loop.
    assert!(c
        .ok("misp-guard config check /etc/misp-guard/config.json")
        .starts_with("no instances configured: edit /etc/misp-guard/config.json"));
    assert!(!c.run("systemctl start misp-guard").status.success());
    let refused = wait_for(
        || {
            let lines: Vec<String> = entries(&c.ok("journalctl -u misp-guard -o json --no-pager"))
                .iter()
                .filter(|e| field(e, "SYSLOG_IDENTIFIER").as_deref() == Some("misp-guard"))
                .filter_map(|e| field(e, "MESSAGE"))
                .collect();
            (!lines.is_empty()).then_some(lines)
        },
        "the guard's refusal in the journal",
    );
    assert_eq!(
        refused,
        ["no instances configured: edit /etc/misp-guard/config.json"],
        "the refusal is one line"
    );
    assert_eq!(show(&c, "ActiveState"), "failed");
    assert_eq!(show(&c, "NRestarts"), "0", "a refused config is restarted");
    assert_eq!(
        show(&c, "StatusText"),
        "no instances configured: edit /etc/misp-guard/config.json"
    );
    c.ok("systemctl reset-failed misp-guard");

    // --- configure it as an admin does: a partner MISP B beside the host,
    // the guard's CA made by the guard's user, B's CA, the config.
    let ns_b = Netns::new("sdb");
    veth(
        &c.netns,
        "a0",
        &format!("{IP_A}/24"),
        &ns_b,
        "b0",
        &format!("{IP_B}/24"),
    );
    let dir = tempfile::tempdir().unwrap();
    let a = Instance::new(dir.path(), "A", IP_A);
    let b = Instance::new(dir.path(), "B", IP_B);
    let mut rig = Rig {
        server_b: None,
        c,
        a,
        b,
        ns_b,
        dir,
    };
    let c = &rig.c;
    c.ok("runuser -u misp-guard -- misp-guard ca init --out /var/lib/misp-guard/ca");
    assert_eq!(
        c.ok("stat -c '%U %a' /var/lib/misp-guard/ca/ca.key"),
        "misp-guard 600\n"
    );
    let trust = rig.dir.path().join("guard-ca.crt");
    fs::copy(c.host_path("/var/lib/misp-guard/ca/ca.crt"), &trust).unwrap();
    for (file, ca) in [("a-ca.pem", &rig.a.ca), ("b-ca.pem", &rig.b.ca)] {
        let path = format!("/etc/misp-guard/{file}");
        c.write(&path, &fs::read(ca).unwrap());
        c.ok(&format!(
            "chown root:misp-guard {path} && chmod 0640 {path}"
        ));
    }
    let good = serde_json::to_vec_pretty(&config(&rig.a, &rig.b, None)).unwrap();
    c.write(CONFIG, &good);
    assert!(c
        .ok("misp-guard config check /etc/misp-guard/config.json")
        .contains("instances"));

    // --- start: returns after READY=1, when the listeners and the table
    // are there.
    c.ok("systemctl start misp-guard");
    let listening = rig.ns_a().command("ss").args(["-Hltn"]).output().unwrap();
    let listening = String::from_utf8_lossy(&listening.stdout);
    assert!(
        listening.contains("*:8443") || listening.contains("[::]:8443"),
        "{listening}"
    );
    assert!(listening.contains("127.0.0.1:800 "), "{listening}");
    let listed = table(rig.ns_a()).expect("no table when systemctl start returned");
    assert!(listed.contains(&format!("{IP_B} . 443")), "{listed}");
    assert!(listed.contains(&format!("{IP_A} . 443")), "{listed}");
    assert_eq!(
        (show(c, "ActiveState"), show(c, "SubState")),
        ("active".into(), "running".into())
    );
    let status = rig.show("StatusText");
    assert!(
        status.starts_with("instances: 2; listeners: [::]:8443 transparent, 127.0.0.1:800 proxy; table inet misp_guard: "),
        "{status}"
    );

    // --- least privilege, as the kernel sees the running process.
    let pid = rig.show("MainPID");
    let proc_status = c.ok(&format!("cat /proc/{pid}/status"));
    let uid = c.ok("id -u misp-guard");
    let line = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    // CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12), nothing else.
    for cap in ["CapPrm", "CapEff", "CapAmb", "CapBnd"] {
        assert_eq!(line(cap), "0000000000001400", "{cap}:\n{proc_status}");
    }
    assert_eq!(line("NoNewPrivs"), "1");
    assert_eq!(line("Seccomp"), "2");
    assert!(line("Uid").starts_with(&format!("{}\t", uid.trim())));

    // --- a push through the guard: clean events arrive, blocked ones do
    // not; the journal has the fields, and no body or key.
    rig.server_b = Some(Server::start(&rig.ns_b, &rig.b));
    let report = rig.push(&trust);
    let server = rig.server_b.as_ref().unwrap();
    let problems = push_problems(&rig.a, &report, server);
    assert!(problems.is_empty(), "{}", rig.fail(&problems.join("\n")));
    let json = rig.c.ok("journalctl -u misp-guard -o json --no-pager");
    let blocks: Vec<_> = entries(&json)
        .into_iter()
        .filter(|e| field(e, "VERDICT").as_deref() == Some("block"))
        .collect();
    assert!(!blocks.is_empty(), "{}", rig.fail("no VERDICT=block entry"));
    for e in &blocks {
        for name in [
            "RULE",
            "VALUE",
            "AT",
            "METHOD",
            "PATH",
            "STATUS",
            "DURATION_MS",
            "BYTES_IN",
            "BYTES_OUT",
            "MODE",
        ] {
            assert!(field(e, name).is_some(), "no {name} in {e:?}");
        }
        assert_eq!(field(e, "SRC_INSTANCE").as_deref(), Some("A"), "{e:?}");
        assert_eq!(field(e, "DST_INSTANCE").as_deref(), Some("B"), "{e:?}");
        assert_eq!(
            field(e, "_SYSTEMD_UNIT").as_deref(),
            Some("misp-guard.service")
        );
        assert_eq!(
            field(e, "PRIORITY").as_deref(),
            Some("4"),
            "a block is a warning"
        );
    }
    assert!(
        blocks
            .iter()
            .any(|e| field(e, "RULE").as_deref() == Some("blocked tag")
                && field(e, "VALUE").as_deref() == Some("tlp:red")),
        "no blocked tag tlp:red among {blocks:?}"
    );
    let by_match = rig
        .c
        .ok("journalctl -u misp-guard VERDICT=block -o cat --no-pager");
    assert_eq!(by_match.lines().count(), blocks.len(), "{by_match}");
    assert!(
        !json.contains(&"k".repeat(40)),
        "the API key is in the journal"
    );
    for e in rig.a.index() {
        if e["expect"] != "allow" {
            let event = rig.a.event(e["uuid"].as_str().unwrap());
            let title = markers(&event).remove(0);
            let title = title.trim_start_matches("\"info\":");
            assert!(
                !json.contains(title.trim_matches('"')),
                "an event's title is in the journal"
            );
        }
    }

    // --- reloads from a file change, good and bad, under traffic: a push
    // (to a fresh B, which wants every event again) paused inside an
    // event's body while the file changes.
    rig.server_b = None;
    // Server::start waits for this file to appear.
    fs::remove_file(rig.ns_b.path("server-B/ready")).unwrap();
    rig.server_b = Some(Server::start(&rig.ns_b, &rig.b));
    let before = rig.reloads();
    let mut paused = rig.run(&trust);
    paused.pause_at = Some((6, true));
    let running = start_run(rig.ns_a(), &paused);
    running.wait_paused();
    rig.c.write(CONFIG, b"{\"instances\": ");
    let status = rig.wait_reload(before + 1);
    assert!(
        status.contains(&format!("reload {} refused: ", before + 1)),
        "{status}"
    );
    assert!(rig
        .journal()
        .contains("config reload refused, the old config stays in force"));
    assert_eq!(rig.show("MainPID"), pid, "a bad edit restarted the guard");
    let with_c = serde_json::to_vec_pretty(&config(&rig.a, &rig.b, Some(IP_C))).unwrap();
    rig.c.write(CONFIG, &with_c);
    let status = rig.wait_reload(before + 2);
    assert!(status.starts_with("instances: 3;"), "{status}");
    assert!(
        status.ends_with(&format!("reload {} in force", before + 2)),
        "{status}"
    );
    assert!(table(rig.ns_a())
        .unwrap_or_default()
        .contains(&format!("{IP_C} . 443")));
    let report = running.resume();
    let server = rig.server_b.as_ref().unwrap();
    let mut problems = push_problems(&rig.a, &report, server);
    if !problems.is_empty() {
        problems.push(format!("the client's errors: {}", report.json["errors"]));
    }
    assert!(problems.is_empty(), "{}", rig.fail(&problems.join("\n")));

    // --- systemctl reload: waits for the outcome, fails when refused.
    rig.c.ok("systemctl stop misp-guard.path");
    rig.c.write(CONFIG, b"{\"instances\": ");
    let out = rig.c.run("systemctl reload misp-guard");
    assert!(!out.status.success(), "a refused reload succeeded");
    assert_eq!(rig.c.ok("systemctl is-active misp-guard"), "active\n");
    assert_eq!(rig.show("MainPID"), pid);
    assert!(rig.show("StatusText").contains("refused"));
    rig.c.write(CONFIG, &good);
    rig.c.ok("systemctl reload misp-guard");
    let status = rig.show("StatusText");
    assert!(
        status.starts_with("instances: 2;") && status.ends_with(" in force"),
        "systemctl reload returned before the reload was over: {status}"
    );
    assert!(!table(rig.ns_a()).unwrap_or_default().contains(IP_C));
    rig.c.ok("systemctl start misp-guard.path");

    // --- inside: the unit files verify, and the exposure score.
    let verify = rig
        .c
        .run(&format!("systemd-analyze verify --man=no {UNITS} 2>&1"));
    assert!(
        verify.status.success() && verify.stdout.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let security = rig
        .c
        .ok("systemd-analyze security --no-pager misp-guard.service");
    let overall = security
        .lines()
        .find(|l| l.contains("Overall exposure level for misp-guard.service:"))
        .unwrap_or_default()
        .to_string();
    eprintln!("{overall}");
    // "→ Overall exposure level for misp-guard.service: 1.6 OK :-)"
    let score: f64 = overall
        .split_once("misp-guard.service:")
        .and_then(|(_, s)| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(10.0);
    assert!(score < 2.0 && overall.contains(" OK"), "{security}");

    // --- upgrade: the admin's config stays, the running guard restarts.
    let dir = rig.dir.path();
    let unpacked = dir.join("unpacked");
    common::sh(&[
        "dpkg-deb",
        "-R",
        deb.to_str().unwrap(),
        unpacked.to_str().unwrap(),
    ]);
    let control = unpacked.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_string();
    fs::write(
        &control,
        text.replace(
            &format!("Version: {version}"),
            &format!("Version: {version}+1"),
        ),
    )
    .unwrap();
    let newer = rig.c.host_path("/root/misp-guard-newer.deb");
    common::sh(&[
        "dpkg-deb",
        "--root-owner-group",
        "-b",
        unpacked.to_str().unwrap(),
        newer.to_str().unwrap(),
    ]);
    let out = rig.c.ok("dpkg -i /root/misp-guard-newer.deb 2>&1");
    assert!(!out.contains("edit /etc/misp-guard/config.json"), "{out}");
    assert_eq!(rig.c.ok("systemctl is-active misp-guard"), "active\n");
    let new_pid = rig.show("MainPID");
    assert_ne!(
        new_pid, pid,
        "the running guard was not restarted by the upgrade"
    );
    assert_eq!(
        fs::read(rig.c.host_path(CONFIG)).unwrap(),
        good,
        "the upgrade changed the config"
    );
    assert_eq!(
        rig.c.ok("stat -c '%U:%G %a' /etc/misp-guard/config.json"),
        "root:misp-guard 640\n"
    );
    assert!(table(rig.ns_a()).is_some());

    // --- stop: the table stays (fail closed).
    rig.c.ok("systemctl stop misp-guard");
    assert_eq!(
        rig.c.run("systemctl is-active misp-guard").stdout,
        b"inactive\n"
    );
    assert!(table(rig.ns_a()).is_some(), "stop removed the table");

    // --- remove: stops a running guard, says the table stays, keeps the
    // config and the user.
    rig.c.ok("systemctl start misp-guard");
    let out = rig.c.ok("dpkg -r misp-guard 2>&1");
    assert!(
        out.contains("the nftables table inet misp_guard stays"),
        "{out}"
    );
    assert!(
        !rig.c
            .run("grep -qx misp-guard /proc/[0-9]*/comm")
            .status
            .success(),
        "still running after remove"
    );
    assert!(table(rig.ns_a()).is_some(), "remove removed the table");
    rig.c
        .ok("test -f /etc/misp-guard/config.json && getent passwd misp-guard >/dev/null");
    rig.c.ok("test ! -e /usr/bin/misp-guard");

    // --- purge: user, files and table gone.
    rig.c.ok("dpkg --purge misp-guard");
    assert!(table(rig.ns_a()).is_none(), "purge left the table");
    for gone in [
        "getent passwd misp-guard",
        "getent group misp-guard",
        "test -e /etc/misp-guard",
        "test -e /var/lib/misp-guard",
        "test -e /etc/systemd/system/multi-user.target.wants/misp-guard.service",
        "test -e /etc/systemd/system/misp-guard.service.wants/misp-guard.path",
        "test -e /lib/systemd/system/misp-guard.service",
    ] {
        assert!(
            !rig.c.run(gone).status.success(),
            "after purge: {gone} is still true"
        );
    }
}
