//! What `misp-guard nft install` (and `run`) refuse, each with one clear
//! line and a non-zero exit, leaving no table half-installed: no
//! CAP_NET_ADMIN (dropped with setpriv and with capsh), an interface the
//! host does not have, a table the kernel refuses. Each in a network
//! namespace of its own, first with no table, then over a good one that
//! must stay as it was.

mod common;

use std::fs;
use std::process::Command;

use common::sync::*;
use common::*;

fn config(firewall: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "compartments_rules": {"can_reach": {"c": ["c"]}},
        "instances": {
            "a": {"ip": "10.77.1.2", "host": "a.example", "port": 443, "compartment_id": "c"},
            "b": {"ip": "10.77.2.2", "host": "b.example", "port": 443, "compartment_id": "c"}
        },
        "guard": {"firewall": firewall}
    })
}

/// `prefix... misp-guard args...` inside `ns`: (exit code, stderr).
fn guard(ns: &Netns, prefix: &[&str], args: &[&str]) -> (Option<i32>, String) {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name])
        .args(prefix)
        .arg(GUARD)
        .args(args);
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The ways to run without CAP_NET_ADMIN that this machine has.
fn without_net_admin() -> Vec<Vec<String>> {
    let mut ways = Vec::new();
    let has = |tool: &str| Command::new(tool).arg("--help").output().is_ok();
    if has("setpriv") {
        ways.push(
            [
                "setpriv",
                "--bounding-set",
                "-net_admin",
                "--inh-caps",
                "-net_admin",
                "--",
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    if has("capsh") {
        // capsh runs the command through a shell: `--` then `-c CMD`.
        ways.push(
            ["capsh", "--drop=cap_net_admin", "--"]
                .map(String::from)
                .to_vec(),
        );
    }
    ways
}

struct Case {
    what: &'static str,
    prefix: Vec<String>,
    config: std::path::PathBuf,
    /// What the one line must say.
    says: &'static str,
}

fn run_case(ns: &Netns, case: &Case, problems: &mut Vec<String>) {
    let config = case.config.to_str().unwrap();
    let (code, stderr) = if case.prefix.first().map(String::as_str) == Some("capsh") {
        let mut prefix: Vec<&str> = case.prefix.iter().map(String::as_str).collect();
        let cmd = format!("{GUARD} nft install --config {config}");
        prefix.extend(["-c", &cmd]);
        let out = ns.command(prefix[0]).args(&prefix[1..]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    } else {
        let prefix: Vec<&str> = case.prefix.iter().map(String::as_str).collect();
        guard(ns, &prefix, &["nft", "install", "--config", config])
    };
    let lines: Vec<&str> = stderr.lines().collect();
    if code == Some(0) || code.is_none() {
        problems.push(format!("{}: exit {code:?}", case.what));
    }
    if lines.len() != 1 || !lines[0].contains(case.says) {
        problems.push(format!(
            "{}: not one line saying {:?}: {stderr:?}",
            case.what, case.says
        ));
    }
}

#[test]
fn refusals_are_one_line_and_leave_no_half_table() {
    if !can_run_firewall("refusals_are_one_line_and_leave_no_half_table") {
        return;
    }
    let ns = Netns::new("fwrf");
    sh(&[
        "ip", "-n", &ns.name, "link", "add", "ga", "type", "veth", "peer", "name", "gb",
    ]);
    let write = |name: &str, v: serde_json::Value| {
        let p = ns.path(name);
        fs::write(&p, v.to_string()).unwrap();
        p
    };
    let good = write(
        "good.json",
        config(serde_json::json!({"mode": "gateway", "interfaces": ["ga", "gb"]})),
    );
    let unknown = write(
        "unknown.json",
        config(serde_json::json!({"mode": "gateway", "interfaces": ["ga", "nosuch0"]})),
    );
    let refused = write(
        "refused.json",
        config(serde_json::json!({"mode": "host", "local_instances": ["a"], "nat_priority": -300})),
    );
    let mut cases = Vec::new();
    let ways = without_net_admin();
    assert!(!ways.is_empty(), "neither setpriv nor capsh is installed");
    for way in ways {
        cases.push(Case {
            what: if way[0] == "setpriv" {
                "setpriv without CAP_NET_ADMIN"
            } else {
                "capsh without CAP_NET_ADMIN"
            },
            prefix: way,
            config: good.clone(),
            says: "needs CAP_NET_ADMIN",
        });
    }
    cases.push(Case {
        what: "unknown interface",
        prefix: Vec::new(),
        config: unknown,
        says: "guard.firewall.interfaces: no interface \"nosuch0\" on this host",
    });
    cases.push(Case {
        what: "a table the kernel refuses",
        prefix: Vec::new(),
        config: refused.clone(),
        says: "the kernel refused chain output (type nat, priority -300)",
    });

    let mut problems = Vec::new();
    for case in &cases {
        run_case(&ns, case, &mut problems);
        if table(&ns).is_some() {
            problems.push(format!("{}: a table is there", case.what));
        }
    }
    // Over a good table: each refusal leaves it exactly as it was.
    let (code, stderr) = guard(
        &ns,
        &[],
        &["nft", "install", "--config", good.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let before = table(&ns).expect("the good table");
    for case in &cases {
        run_case(&ns, case, &mut problems);
        if table(&ns).as_ref() != Some(&before) {
            problems.push(format!("{}: the table changed", case.what));
        }
    }
    // `run` refuses to start on a table the kernel refuses, and leaves
    // the one there alone.
    let (code, stderr) = guard(&ns, &[], &["run", "--config", refused.to_str().unwrap()]);
    if code == Some(0) || !stderr.contains("the kernel refused chain output") {
        problems.push(format!("run on a refused table: exit {code:?}: {stderr}"));
    }
    if table(&ns).as_ref() != Some(&before) {
        problems.push("run on a refused table changed the table".into());
    }
    // Removing needs the capability too, and then removes it.
    let (code, stderr) = guard(
        &ns,
        &[
            "setpriv",
            "--bounding-set",
            "-net_admin",
            "--inh-caps",
            "-net_admin",
            "--",
        ],
        &["nft", "remove"],
    );
    if code == Some(0) || !stderr.contains("needs CAP_NET_ADMIN") || table(&ns).is_none() {
        problems.push(format!(
            "remove without CAP_NET_ADMIN: exit {code:?}: {stderr}"
        ));
    }
    let (code, stderr) = guard(&ns, &[], &["nft", "remove"]);
    if code != Some(0) || table(&ns).is_some() {
        problems.push(format!("remove: exit {code:?}: {stderr}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
