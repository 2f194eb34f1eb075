//! The older guard's 122 verdict scenarios through `misp-guard check`: the
//! offline verdict must equal the old guard's, naming the same rule and
//! value.

mod common;

use std::process::Command;

use common::{scenarios, GUARD, SHARED};

#[test]
fn every_scenario_gives_the_old_guards_verdict_offline() {
    let dir = tempfile::tempdir().unwrap();
    let all = scenarios();
    assert_eq!(all.len(), 122, "the conformance data has 122 scenarios");
    let mut failures = Vec::new();
    for (i, s) in all.iter().enumerate() {
        let mut c = Command::new(GUARD);
        c.arg("check")
            .arg("--config")
            .arg(format!("{SHARED}/config.json"))
            .arg("--source")
            .arg(&s.client_ip)
            .arg("--method")
            .arg(&s.method)
            .arg("--url")
            .arg(format!("http://{}:{}{}", s.host, s.port, s.url));
        let body = s.body();
        if !body.is_empty() {
            let p = dir.path().join(format!("req-{i}"));
            std::fs::write(&p, &body).unwrap();
            c.arg("--request-body").arg(p);
        }
        if s.is_pull() {
            if let Some(f) = &s.fixture {
                c.arg("--response-body").arg(f);
            }
        }
        for (k, v) in &s.response_headers {
            c.arg("--response-header").arg(format!("{k}: {v}"));
        }
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let first = stdout.lines().next().unwrap_or("").to_string();
        let code = out.status.code().unwrap_or(-1);
        let ok = match s.expected_status {
            200 => code == 0 && first == "allowed",
            _ => {
                code == 1
                    && first.starts_with("blocked: ")
                    && match s.expected_block() {
                        None => true,
                        Some((rule, _)) if rule == "cannot reach compartment" => {
                            first.contains(&rule)
                        }
                        Some((rule, value)) => first.contains(&format!("{rule}: {value} at ")),
                    }
            }
        };
        if !ok {
            failures.push(format!(
                "{} [{}]: expected {} {:?}, got exit {code}: {first} {}",
                s.name,
                s.file,
                s.expected_status,
                s.expected_block(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 122 scenarios differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
