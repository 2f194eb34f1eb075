//! Beside the path, before it: the nftables table that sends MISP sync
//! traffic to the guard's transparent listener.
//!
//! The guard owns exactly one table, `inet misp_guard`, and touches no
//! other. It is worked out from the config ([`Plan`]), printed as `nft`
//! text ([`render`]) or installed ([`install`]) with libnftnl over netlink
//! as one batch that adds, deletes and re-creates the table, then read back
//! and compared with the plan. This module is the only part of the guard
//! that speaks netlink.
//!
//! * `guard.firewall.mode: "host"`: on a MISP host, the local MISP's
//!   connections to the other instances (nat `output`) and the other
//!   instances' connections to the local one (nat `prerouting`) are
//!   redirected to the listener; the guard's own upstream sockets carry
//!   `guard.upstream_mark` and pass.
//! * `"gateway"`: sync arriving on `guard.firewall.interfaces` is redirected
//!   (nat `prerouting`), and a filter `forward` chain drops whatever would
//!   still reach an instance around the guard.
//! * `"off"` (the default): nftables is the admin's (`nft/` has reference
//!   rulesets).
//!
//! Fail closed: nothing removes the table when the guard stops or crashes,
//! so redirected sync finds no listener and fails; `misp-guard nft remove`
//! removes it on purpose. While the guard runs, [`Kept`] installs it again
//! when something else flushes or changes it (nftables' change
//! notifications, and a slow check besides). What it refuses: a plan it cannot build (no local
//! instance in host mode, an interface this host does not have), and it
//! reports the kernel's refusal of any part of the batch by that part.

mod apply;
#[allow(unsafe_code)]
mod expr;
mod host;
mod plan;
mod readback;
mod render;
#[cfg(test)]
mod tests;
mod watch;
mod wire;

use std::fmt;
use std::io;
use std::net::IpAddr;

pub use plan::{Action, Chain, ChainKind, Element, Family, Hook, Key, Mode, Plan, Rule, Set};
pub use render::render;
pub use watch::Kept;

use crate::config::{Config, FirewallMode};

/// The one table the guard owns (family `inet`).
pub const TABLE: &str = "misp_guard";

/// The part of a batch the kernel answered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Adding the table.
    Table,
    /// Deleting the old table.
    DeleteTable,
    /// Adding a set.
    Set(String),
    /// Adding elements to a set.
    Elements(String),
    /// Adding a chain (described).
    Chain(String),
    /// Adding a rule.
    Rule {
        /// Its chain.
        chain: String,
        /// The rule as nft prints it.
        text: String,
    },
    /// The batch as a whole.
    Batch,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Table => write!(f, "table inet {TABLE}"),
            Step::DeleteTable => write!(f, "deleting the old table inet {TABLE}"),
            Step::Set(name) => write!(f, "set {name}"),
            Step::Elements(name) => write!(f, "the elements of set {name}"),
            Step::Chain(c) => f.write_str(c),
            Step::Rule { chain, text } => write!(f, "rule `{text}` of chain {chain}"),
            Step::Batch => f.write_str("the batch"),
        }
    }
}

/// Why the table could not be worked out, installed or removed. Each is
/// one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Host mode, and no instance has an address of this host.
    #[error("guard.firewall.mode is \"host\" but no instance's ip is an address of this host ({}); name the local ones in guard.firewall.local_instances", list(.addresses))]
    NoLocalInstance {
        /// The host's addresses.
        addresses: Vec<IpAddr>,
    },
    /// Gateway mode names an interface this host does not have.
    #[error("guard.firewall.interfaces: no interface {name:?} on this host (it has {})", .known.join(", "))]
    UnknownInterface {
        /// The missing name.
        name: String,
        /// The host's interfaces.
        known: Vec<String>,
    },
    /// Reading the host's addresses or interfaces failed.
    #[error("cannot read this host's {what} over netlink: {source}")]
    Host {
        /// "addresses" or "interfaces".
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel has no nf_tables to talk to.
    #[error("this kernel has no nf_tables (netfilter netlink): {0}; load the nf_tables module")]
    NoNfTables(#[source] io::Error),
    /// The kernel refused for lack of privilege.
    #[error(
        "changing nftables needs CAP_NET_ADMIN: run as root or give misp-guard that capability"
    )]
    NoPermission,
    /// Opening the netlink socket failed.
    #[error("cannot open a netfilter netlink socket: {0}")]
    Open(#[source] io::Error),
    /// Sending the batch failed.
    #[error("cannot send the batch to the kernel: {0}")]
    Send(#[source] io::Error),
    /// Reading the kernel's answer failed.
    #[error("cannot read the kernel's answer to the batch: {0}")]
    Receive(#[source] io::Error),
    /// The kernel refused a part of the batch; nothing of it was applied.
    #[error("the kernel refused {step}: {source}; nothing was changed")]
    Refused {
        /// Which part.
        step: Step,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// The table read back is not the one sent.
    #[error("table inet {TABLE} read back: {0}")]
    ReadBack(String),
}

fn list(addresses: &[IpAddr]) -> String {
    if addresses.is_empty() {
        return "it has none".into();
    }
    let v: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    format!("it has {}", v.join(", "))
}

/// The port the table redirects to: the first transparent listener's
/// (config check refuses a firewall mode without one).
pub fn listener_port(config: &Config) -> Option<u16> {
    config.guard.transparent_listen.first().map(|a| a.port())
}

/// The table for `config` on this host, redirecting to `port`: reads the
/// host's addresses (host mode without `local_instances`) and checks that
/// the interfaces exist (gateway mode). `Ok(None)` when the mode is off.
pub fn plan(config: &Config, port: u16) -> Result<Option<Plan>, Error> {
    let f = &config.guard.firewall;
    let local = match (f.mode, &f.local_instances) {
        (FirewallMode::Host, None) => host::addresses().map_err(|source| Error::Host {
            what: "addresses",
            source,
        })?,
        _ => Vec::new(),
    };
    let Some(plan) = Plan::build(config, port, &local)? else {
        return Ok(None);
    };
    let wanted = plan.interfaces();
    if !wanted.is_empty() {
        let known = host::interfaces().map_err(|source| Error::Host {
            what: "interfaces",
            source,
        })?;
        if let Some(name) = wanted.iter().find(|n| !known.iter().any(|k| k == *n)) {
            return Err(Error::UnknownInterface {
                name: (*name).to_owned(),
                known,
            });
        }
    }
    Ok(Some(plan))
}

/// What an install did, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// Chains in the table.
    pub chains: usize,
    /// Rules in them.
    pub rules: usize,
    /// Sets.
    pub sets: usize,
    /// Elements in them.
    pub elements: usize,
}

impl fmt::Display for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table inet {TABLE}: {} chains, {} rules, {} sets with {} elements",
            self.chains, self.rules, self.sets, self.elements
        )
    }
}

/// Replace the table with `plan` in one batch and read it back.
pub fn install(plan: &Plan) -> Result<Installed, Error> {
    apply::replace(plan)?;
    readback::check(plan)?;
    Ok(Installed {
        chains: plan.chains.len(),
        rules: plan.chains.iter().map(|c| c.rules.len()).sum(),
        sets: plan.sets.len(),
        elements: plan.sets.iter().map(|s| s.elements.len()).sum(),
    })
}

/// Remove the table; `Ok(false)` when there was none.
pub fn remove() -> Result<bool, Error> {
    let existed = readback::exists()?;
    if existed {
        apply::delete()?;
        if readback::exists()? {
            return Err(Error::ReadBack("still there after the delete".into()));
        }
    }
    Ok(existed)
}

/// Whether the table is installed.
pub fn installed() -> Result<bool, Error> {
    readback::exists()
}
