//! The table as data: sets, chains and rules worked out from the config,
//! before any of it is spoken to the kernel or printed.
//!
//! One [`Plan`] feeds both [`super::render`] (the `nft` text) and
//! [`super::apply`] (the netlink batch), so what `misp-guard nft render`
//! prints is what gets installed.

use std::net::IpAddr;

use crate::config::{Config, FirewallMode, Instance};

use super::Error;

/// Which deployment the table is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// On a MISP host (`guard.firewall.mode: "host"`).
    Host,
    /// On a gateway between compartments (`"gateway"`).
    Gateway,
}

/// What a set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `ipv4_addr`.
    Ipv4,
    /// `ipv6_addr`.
    Ipv6,
    /// `ipv4_addr . inet_service`.
    Ipv4Port,
    /// `ipv6_addr . inet_service`.
    Ipv6Port,
    /// `ifname`.
    Ifname,
}

/// One element of a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    /// An address.
    Addr(IpAddr),
    /// An address and a TCP port.
    AddrPort(IpAddr, u16),
    /// An interface name.
    Ifname(String),
}

/// A named set of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Its name, e.g. `remote_v4`.
    pub name: &'static str,
    /// What it holds.
    pub key: Key,
    /// Its elements, sorted.
    pub elements: Vec<Element>,
}

/// A base chain's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// `type nat`: rewrites the destination of a connection's first packet.
    Nat,
    /// `type filter`: accepts or drops.
    Filter,
}

/// The netfilter hook a chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Packets arriving on an interface, before routing.
    Prerouting,
    /// Packets routed through the box.
    Forward,
    /// Packets for this host, after routing.
    Input,
    /// Packets this host sends.
    Output,
}

/// IPv4 or IPv6: which header a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `ip`.
    V4,
    /// `ip6`.
    V6,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `redirect to :port`: to the guard's transparent listener.
    Redirect(u16),
    /// `drop`.
    Drop,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `meta mark M return`: the guard's own upstream connections leave
    /// the chain untouched.
    MarkReturn(u32),
    /// `[iifname @i] [ip saddr @s] ip daddr . tcp dport @d <action>`.
    Match {
        /// The header matched.
        family: Family,
        /// A set of incoming interfaces the packet must arrive on.
        iifname: Option<&'static str>,
        /// A set of addresses the source must be in.
        saddr: Option<&'static str>,
        /// The set of `address . port` the destination must be in.
        daddr_dport: &'static str,
        /// What happens then.
        action: Action,
    },
}

/// A base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Its name, after its hook.
    pub name: &'static str,
    /// nat or filter.
    pub kind: ChainKind,
    /// Where it is attached.
    pub hook: Hook,
    /// Its priority at the hook.
    pub priority: i32,
    /// Its rules, in order; the policy is always accept (the table only
    /// redirects and drops sync traffic, everything else is not its business).
    pub rules: Vec<Rule>,
}

/// The whole table `inet misp_guard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The deployment.
    pub mode: Mode,
    /// Sets, in the order they are created and listed.
    pub sets: Vec<Set>,
    /// Chains, in the order they are created and listed.
    pub chains: Vec<Chain>,
}

/// The priority of the gateway's filter chain: `filter`, where admins'
/// own forward rules usually sit; a drop here wins over any accept.
const FILTER_PRIORITY: i32 = 0;

impl Plan {
    /// The table for `config`, redirecting to the listener on `port`.
    /// `local` is the host's own addresses (host mode without
    /// `local_instances`); `Ok(None)` when `guard.firewall.mode` is off.
    pub fn build(config: &Config, port: u16, local: &[IpAddr]) -> Result<Option<Plan>, Error> {
        let f = &config.guard.firewall;
        match f.mode {
            FirewallMode::Off => Ok(None),
            FirewallMode::Host => {
                let is_local = |i: &Instance| match &f.local_instances {
                    Some(names) => names.contains(&i.name),
                    None => local.contains(&i.ip),
                };
                let (here, remote): (Vec<&Instance>, Vec<&Instance>) =
                    config.instances.iter().partition(|i| is_local(i));
                if here.is_empty() {
                    return Err(Error::NoLocalInstance {
                        addresses: local.to_vec(),
                    });
                }
                Ok(Some(host(
                    &here,
                    &remote,
                    port,
                    config.guard.upstream_mark,
                    f.nat_priority,
                )))
            }
            FirewallMode::Gateway => {
                let all: Vec<&Instance> = config.instances.iter().collect();
                Ok(Some(gateway(&all, &f.interfaces, port, f.nat_priority)))
            }
        }
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// The interface names the table matches (gateway mode).
    pub fn interfaces(&self) -> Vec<&str> {
        self.sets
            .iter()
            .filter(|s| s.key == Key::Ifname)
            .flat_map(|s| &s.elements)
            .filter_map(|e| match e {
                Element::Ifname(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Host mode: the local MISP's sync to the others (output) and the others'
/// sync to the local MISP (prerouting) go to the listener.
fn host(here: &[&Instance], remote: &[&Instance], port: u16, mark: u32, nat: i32) -> Plan {
    let redirect = Action::Redirect(port);
    let sets = vec![
        addr_ports("local_v4", Family::V4, here),
        addr_ports("local_v6", Family::V6, here),
        addr_ports("remote_v4", Family::V4, remote),
        addr_ports("remote_v6", Family::V6, remote),
        addrs("remote_addrs_v4", Family::V4, remote),
        addrs("remote_addrs_v6", Family::V6, remote),
    ];
    let outgoing = |family, set| Rule::Match {
        family,
        iifname: None,
        saddr: None,
        daddr_dport: set,
        action: redirect,
    };
    // Only connections from another instance: users of the local MISP's
    // web interface reach it as before.
    let inbound = |family, from, to| Rule::Match {
        family,
        iifname: None,
        saddr: Some(from),
        daddr_dport: to,
        action: redirect,
    };
    let chains = vec![
        Chain {
            name: "output",
            kind: ChainKind::Nat,
            hook: Hook::Output,
            priority: nat,
            rules: vec![
                // The guard's own upstream connections carry its mark
                // (guard.upstream_mark): never send them back to it.
                Rule::MarkReturn(mark),
                // The local MISP's push and pull to another instance.
                outgoing(Family::V4, "remote_v4"),
                outgoing(Family::V6, "remote_v6"),
            ],
        },
        Chain {
            name: "prerouting",
            kind: ChainKind::Nat,
            hook: Hook::Prerouting,
            priority: nat,
            rules: vec![
                // Another instance's pull from (or push to) the local MISP:
                // its answers are judged before they leave.
                inbound(Family::V4, "remote_addrs_v4", "local_v4"),
                inbound(Family::V6, "remote_addrs_v6", "local_v6"),
            ],
        },
        // A redirect applies to a connection's first packet only: one
        // opened while the table was gone (a `flush ruleset`, before the
        // guard put it back) would go on around the guard. After the nat
        // chains, a packet of sync that still has an instance's address
        // was not redirected: it is dropped.
        Chain {
            name: "unguarded_out",
            kind: ChainKind::Filter,
            hook: Hook::Output,
            priority: FILTER_PRIORITY,
            rules: vec![
                Rule::MarkReturn(mark),
                dropping(outgoing(Family::V4, "remote_v4")),
                dropping(outgoing(Family::V6, "remote_v6")),
            ],
        },
        Chain {
            name: "unguarded_in",
            kind: ChainKind::Filter,
            hook: Hook::Input,
            priority: FILTER_PRIORITY,
            rules: vec![
                dropping(inbound(Family::V4, "remote_addrs_v4", "local_v4")),
                dropping(inbound(Family::V6, "remote_addrs_v6", "local_v6")),
            ],
        },
    ];
    Plan {
        mode: Mode::Host,
        sets,
        chains,
    }
}

/// `rule` dropping instead of redirecting.
fn dropping(rule: Rule) -> Rule {
    match rule {
        Rule::Match {
            family,
            iifname,
            saddr,
            daddr_dport,
            ..
        } => Rule::Match {
            family,
            iifname,
            saddr,
            daddr_dport,
            action: Action::Drop,
        },
        other => other,
    }
}

/// Gateway mode: sync arriving on the interfaces goes to the listener;
/// whatever would still be forwarded to an instance is dropped.
fn gateway(all: &[&Instance], interfaces: &[String], port: u16, nat: i32) -> Plan {
    let mut names: Vec<Element> = interfaces
        .iter()
        .map(|n| Element::Ifname(n.clone()))
        .collect();
    names.sort();
    let sets = vec![
        addr_ports("instances_v4", Family::V4, all),
        addr_ports("instances_v6", Family::V6, all),
        Set {
            name: "interfaces",
            key: Key::Ifname,
            elements: names,
        },
    ];
    let rule = |family, iifname, set, action| Rule::Match {
        family,
        iifname,
        saddr: None,
        daddr_dport: set,
        action,
    };
    let redirect = Action::Redirect(port);
    let chains = vec![
        Chain {
            name: "prerouting",
            kind: ChainKind::Nat,
            hook: Hook::Prerouting,
            priority: nat,
            rules: vec![
                // Sync crossing the gateway goes to the guard.
                rule(Family::V4, Some("interfaces"), "instances_v4", redirect),
                rule(Family::V6, Some("interfaces"), "instances_v6", redirect),
            ],
        },
        Chain {
            name: "forward",
            kind: ChainKind::Filter,
            hook: Hook::Forward,
            priority: FILTER_PRIORITY,
            rules: vec![
                // Nothing reaches an instance around the guard: a packet to
                // one that is still being forwarded was not redirected
                // (another interface, a connection older than the table).
                rule(Family::V4, None, "instances_v4", Action::Drop),
                rule(Family::V6, None, "instances_v6", Action::Drop),
            ],
        },
    ];
    Plan {
        mode: Mode::Gateway,
        sets,
        chains,
    }
}

fn family_of(ip: &IpAddr) -> Family {
    if ip.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

/// The `address . port` set of `instances` of one family.
fn addr_ports(name: &'static str, family: Family, instances: &[&Instance]) -> Set {
    let mut elements: Vec<Element> = instances
        .iter()
        .filter(|i| family_of(&i.ip) == family)
        .map(|i| Element::AddrPort(i.ip, i.port))
        .collect();
    elements.sort();
    elements.dedup();
    Set {
        name,
        key: match family {
            Family::V4 => Key::Ipv4Port,
            Family::V6 => Key::Ipv6Port,
        },
        elements,
    }
}

/// The address set of `instances` of one family.
fn addrs(name: &'static str, family: Family, instances: &[&Instance]) -> Set {
    let mut elements: Vec<Element> = instances
        .iter()
        .filter(|i| family_of(&i.ip) == family)
        .map(|i| Element::Addr(i.ip))
        .collect();
    elements.sort();
    elements.dedup();
    Set {
        name,
        key: match family {
            Family::V4 => Key::Ipv4,
            Family::V6 => Key::Ipv6,
        },
        elements,
    }
}
