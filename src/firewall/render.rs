//! A [`Plan`] as `nft` text, laid out as `nft list table inet misp_guard`
//! prints the installed table (nftables 1.0), so an admin can compare the
//! two and load the text with `nft -f`.
//!
//! One difference cannot be avoided: the kernel lists the elements of a
//! hash set in its own hash order; here they are sorted.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::plan::{Action, Chain, ChainKind, Element, Family, Hook, Key, Plan, Rule, Set};
use super::TABLE;

/// The plan as `nft` text.
pub fn render(plan: &Plan) -> String {
    let mut out = format!("table inet {TABLE} {{\n");
    let mut first = true;
    for set in &plan.sets {
        if !first {
            out.push('\n');
        }
        first = false;
        write_set(&mut out, set);
    }
    for chain in &plan.chains {
        if !first {
            out.push('\n');
        }
        first = false;
        write_chain(&mut out, chain);
    }
    out.push_str("}\n");
    out
}

fn write_set(out: &mut String, set: &Set) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "\tset {} {{", set.name);
    let _ = writeln!(out, "\t\ttype {}", key_type(set.key));
    if !set.elements.is_empty() {
        // nft puts two plain IPv4 addresses on a line, and every other
        // element of these types on a line of its own.
        let per_line = if set.key == Key::Ipv4 { 2 } else { 1 };
        out.push_str("\t\telements = { ");
        for (i, e) in set.elements.iter().enumerate() {
            if i > 0 {
                out.push_str(if i % per_line == 0 {
                    ",\n\t\t\t     "
                } else {
                    ", "
                });
            }
            out.push_str(&element(e));
        }
        out.push_str(" }\n");
    }
    out.push_str("\t}\n");
}

fn write_chain(out: &mut String, chain: &Chain) {
    let kind = match chain.kind {
        ChainKind::Nat => "nat",
        ChainKind::Filter => "filter",
    };
    let hook = match chain.hook {
        Hook::Prerouting => "prerouting",
        Hook::Forward => "forward",
        Hook::Input => "input",
        Hook::Output => "output",
    };
    let _ = writeln!(out, "\tchain {} {{", chain.name);
    let _ = writeln!(
        out,
        "\t\ttype {kind} hook {hook} priority {}; policy accept;",
        priority(chain.hook, chain.priority)
    );
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", rule_text(rule));
    }
    out.push_str("\t}\n");
}

/// One rule as nft lists it.
pub(super) fn rule_text(rule: &Rule) -> String {
    match rule {
        Rule::MarkReturn(mark) => format!("meta mark {mark:#010x} return"),
        Rule::Match {
            family,
            iifname,
            saddr,
            daddr_dport,
            action,
        } => {
            let ip = match family {
                Family::V4 => "ip",
                Family::V6 => "ip6",
            };
            let mut s = String::new();
            if let Some(set) = iifname {
                let _ = write!(s, "iifname @{set} ");
            }
            if let Some(set) = saddr {
                let _ = write!(s, "{ip} saddr @{set} ");
            }
            let _ = write!(s, "{ip} daddr . tcp dport @{daddr_dport} ");
            match action {
                Action::Redirect(port) => {
                    let _ = write!(s, "redirect to :{port}");
                }
                Action::Drop => s.push_str("drop"),
            }
            s
        }
    }
}

fn key_type(key: Key) -> &'static str {
    match key {
        Key::Ipv4 => "ipv4_addr",
        Key::Ipv6 => "ipv6_addr",
        Key::Ipv4Port => "ipv4_addr . inet_service",
        Key::Ipv6Port => "ipv6_addr . inet_service",
        Key::Ifname => "ifname",
    }
}

fn element(e: &Element) -> String {
    match e {
        Element::Addr(ip) => addr(ip),
        Element::AddrPort(ip, port) => format!("{} . {port}", addr(ip)),
        Element::Ifname(name) => format!("{name:?}"),
    }
}

/// nft prints IPv6 addresses in the RFC 5952 form, as Rust does.
fn addr(ip: &IpAddr) -> String {
    ip.to_string()
}

/// A priority as nft prints it: a standard name, possibly with an offset
/// of up to 10, where that name is valid at the hook; else the number.
fn priority(hook: Hook, value: i32) -> String {
    const STANDARD: &[(&str, i32)] = &[
        ("raw", -300),
        ("mangle", -150),
        ("dstnat", -100),
        ("filter", 0),
        ("security", 50),
        ("srcnat", 100),
    ];
    for &(name, base) in STANDARD {
        let offset = value - base;
        if !(-10..=10).contains(&offset) {
            continue;
        }
        // dstnat is a prerouting name, srcnat a postrouting one; the
        // others are valid at every hook of the inet family.
        let valid = match name {
            "dstnat" => hook == Hook::Prerouting,
            "srcnat" => false,
            _ => true,
        };
        if !valid {
            return value.to_string();
        }
        return match offset {
            0 => name.to_owned(),
            o if o > 0 => format!("{name} + {o}"),
            o => format!("{name} - {}", -o),
        };
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_as_nft_prints_them() {
        // Each as nftables 1.0.6 printed it for a chain at that hook.
        let table: &[(Hook, i32, &str)] = &[
            (Hook::Prerouting, -100, "dstnat"),
            (Hook::Prerouting, -90, "dstnat + 10"),
            (Hook::Prerouting, -110, "dstnat - 10"),
            (Hook::Prerouting, -150, "mangle"),
            (Hook::Prerouting, 0, "filter"),
            (Hook::Prerouting, 10, "filter + 10"),
            (Hook::Prerouting, -5, "filter - 5"),
            (Hook::Prerouting, 100, "100"),
            (Hook::Prerouting, -199, "-199"),
            (Hook::Output, -100, "-100"),
            (Hook::Output, -90, "-90"),
            (Hook::Output, -150, "mangle"),
            (Hook::Output, 10, "filter + 10"),
            (Hook::Forward, 0, "filter"),
        ];
        for &(hook, value, text) in table {
            assert_eq!(priority(hook, value), text, "{hook:?} {value}");
        }
    }
}
