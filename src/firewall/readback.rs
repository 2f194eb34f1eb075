//! Reading the table back after a batch: its chains, their rules (by the
//! names of their expressions), its sets and their elements, compared with
//! the plan. A kernel that acknowledged a batch and holds something else
//! (another program rewrote the table in between) is an error, not a
//! silent success.

use super::apply::{describe_chain, expressions, set_layout};
use super::plan::{ChainKind, Hook, Plan};
use super::wire::{self, Message};
use super::{Error, TABLE};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFPROTO_INET: u8 = 1;
// Attributes (linux/netfilter/nf_tables.h).
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
/// Hook numbers (`NF_INET_*`).
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;

/// A chain as the kernel describes it.
#[derive(Debug, PartialEq, Eq)]
struct ChainView {
    name: String,
    kind: String,
    hook: u32,
    priority: i32,
    /// Each rule's expression names.
    rules: Vec<Vec<String>>,
}

/// A set as the kernel describes it.
#[derive(Debug, PartialEq, Eq)]
struct SetView {
    name: String,
    key_type: u32,
    key_len: u32,
    /// Element keys, sorted.
    elements: Vec<Vec<u8>>,
}

fn kind(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

fn open() -> Result<mnl::Socket, Error> {
    mnl::Socket::new(mnl::Bus::Netfilter).map_err(Error::Open)
}

fn dump_error(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| match e.raw_os_error() {
        Some(libc::EPERM) => Error::NoPermission,
        _ => Error::ReadBack(format!("listing {what}: {e}")),
    }
}

/// Whether the table exists.
pub(super) fn exists() -> Result<bool, Error> {
    let socket = open()?;
    let request = Message::new(kind(NFT_MSG_GETTABLE), wire::F_REQUEST | wire::F_ACK, 1)
        .header(&wire::nfgenmsg(NFPROTO_INET))
        .attr_str(NFTA_TABLE_NAME, TABLE)
        .finish();
    match wire::dump(&socket, &request) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(dump_error("the table")(e)),
    }
}

/// Read the table and compare it with `plan`.
pub(super) fn check(plan: &Plan) -> Result<(), Error> {
    let socket = open()?;
    let chains = chains(&socket)?;
    let sets = sets(&socket)?;
    let want_chains: Vec<ChainView> = plan
        .chains
        .iter()
        .map(|c| ChainView {
            name: c.name.to_owned(),
            kind: match c.kind {
                ChainKind::Nat => "nat",
                ChainKind::Filter => "filter",
            }
            .to_owned(),
            hook: match c.hook {
                Hook::Prerouting => NF_INET_PRE_ROUTING,
                Hook::Forward => NF_INET_FORWARD,
                Hook::Input => NF_INET_LOCAL_IN,
                Hook::Output => NF_INET_LOCAL_OUT,
            },
            priority: c.priority,
            rules: c
                .rules
                .iter()
                .map(|r| expressions(r).iter().map(|e| e.name().to_owned()).collect())
                .collect(),
        })
        .collect();
    let want_sets: Vec<SetView> = plan
        .sets
        .iter()
        .map(|s| {
            let (key_type, key_len, mut elements) = set_layout(s);
            elements.sort();
            SetView {
                name: s.name.to_owned(),
                key_type,
                key_len,
                elements,
            }
        })
        .collect();
    if chains != want_chains {
        let which = plan
            .chains
            .iter()
            .zip(&want_chains)
            .find(|(_, w)| !chains.contains(w))
            .map(|(c, _)| describe_chain(c))
            .unwrap_or_else(|| "the list of chains".to_owned());
        return Err(Error::ReadBack(format!(
            "{which} is not as installed (kernel has {} chains: {:?})",
            chains.len(),
            chains.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()
        )));
    }
    if sets != want_sets {
        let which = want_sets
            .iter()
            .find(|w| !sets.contains(w))
            .map(|w| format!("set {}", w.name))
            .unwrap_or_else(|| "the list of sets".to_owned());
        return Err(Error::ReadBack(format!("{which} is not as installed")));
    }
    Ok(())
}

fn chains(socket: &mnl::Socket) -> Result<Vec<ChainView>, Error> {
    let request = Message::new(kind(NFT_MSG_GETCHAIN), wire::F_REQUEST | wire::F_DUMP, 1)
        .header(&wire::nfgenmsg(NFPROTO_INET))
        .attr_str(NFTA_CHAIN_TABLE, TABLE)
        .finish();
    let mut out = Vec::new();
    for (k, payload) in wire::dump(socket, &request).map_err(dump_error("chains"))? {
        let Some(attrs) = payload.get(4..) else {
            continue;
        };
        if k != kind(NFT_MSG_NEWCHAIN) || !in_table(attrs, NFTA_CHAIN_TABLE) {
            continue;
        }
        let hook = wire::attr(attrs, NFTA_CHAIN_HOOK).unwrap_or_default();
        out.push(ChainView {
            name: wire::attr(attrs, NFTA_CHAIN_NAME)
                .map(wire::string)
                .unwrap_or_default(),
            kind: wire::attr(attrs, NFTA_CHAIN_TYPE)
                .map(wire::string)
                .unwrap_or_default(),
            hook: wire::attr(hook, NFTA_HOOK_HOOKNUM)
                .and_then(wire::be_u32)
                .unwrap_or(u32::MAX),
            priority: wire::attr(hook, NFTA_HOOK_PRIORITY)
                .and_then(wire::be_u32)
                .map(|p| p as i32)
                .unwrap_or(i32::MIN),
            rules: Vec::new(),
        });
    }
    let request = Message::new(kind(NFT_MSG_GETRULE), wire::F_REQUEST | wire::F_DUMP, 2)
        .header(&wire::nfgenmsg(NFPROTO_INET))
        .attr_str(NFTA_RULE_TABLE, TABLE)
        .finish();
    for (k, payload) in wire::dump(socket, &request).map_err(dump_error("rules"))? {
        let Some(attrs) = payload.get(4..) else {
            continue;
        };
        if k != kind(NFT_MSG_NEWRULE) || !in_table(attrs, NFTA_RULE_TABLE) {
            continue;
        }
        let chain = wire::attr(attrs, NFTA_RULE_CHAIN)
            .map(wire::string)
            .unwrap_or_default();
        let names = wire::attr(attrs, NFTA_RULE_EXPRESSIONS)
            .map(|list| {
                wire::attrs(list)
                    .into_iter()
                    .filter(|(t, _)| *t == NFTA_LIST_ELEM)
                    .map(|(_, e)| {
                        wire::attr(e, NFTA_EXPR_NAME)
                            .map(wire::string)
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        match out.iter_mut().find(|c| c.name == chain) {
            Some(c) => c.rules.push(names),
            None => return Err(Error::ReadBack(format!("a rule in unknown chain {chain}"))),
        }
    }
    Ok(out)
}

fn sets(socket: &mnl::Socket) -> Result<Vec<SetView>, Error> {
    let request = Message::new(kind(NFT_MSG_GETSET), wire::F_REQUEST | wire::F_DUMP, 3)
        .header(&wire::nfgenmsg(NFPROTO_INET))
        .attr_str(NFTA_SET_TABLE, TABLE)
        .finish();
    let mut out = Vec::new();
    for (k, payload) in wire::dump(socket, &request).map_err(dump_error("sets"))? {
        let Some(attrs) = payload.get(4..) else {
            continue;
        };
        if k != kind(NFT_MSG_NEWSET) || !in_table(attrs, NFTA_SET_TABLE) {
            continue;
        }
        out.push(SetView {
            name: wire::attr(attrs, NFTA_SET_NAME)
                .map(wire::string)
                .unwrap_or_default(),
            key_type: wire::attr(attrs, NFTA_SET_KEY_TYPE)
                .and_then(wire::be_u32)
                .unwrap_or(0),
            key_len: wire::attr(attrs, NFTA_SET_KEY_LEN)
                .and_then(wire::be_u32)
                .unwrap_or(0),
            elements: Vec::new(),
        });
    }
    for (seq, set) in (4u32..).zip(out.iter_mut()) {
        let request = Message::new(
            kind(NFT_MSG_GETSETELEM),
            wire::F_REQUEST | wire::F_DUMP,
            seq,
        )
        .header(&wire::nfgenmsg(NFPROTO_INET))
        .attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
        .attr_str(NFTA_SET_ELEM_LIST_SET, &set.name)
        .finish();
        for (k, payload) in wire::dump(socket, &request).map_err(dump_error("set elements"))? {
            let Some(attrs) = payload.get(4..) else {
                continue;
            };
            if k != kind(NFT_MSG_NEWSETELEM) {
                continue;
            }
            let Some(list) = wire::attr(attrs, NFTA_SET_ELEM_LIST_ELEMENTS) else {
                continue;
            };
            for (t, elem) in wire::attrs(list) {
                if t != NFTA_LIST_ELEM {
                    continue;
                }
                if let Some(v) =
                    wire::attr(elem, NFTA_SET_ELEM_KEY).and_then(|k| wire::attr(k, NFTA_DATA_VALUE))
                {
                    set.elements.push(v.to_vec());
                }
            }
        }
        set.elements.sort();
    }
    Ok(out)
}

fn in_table(attrs: &[u8], table_attr: u16) -> bool {
    wire::attr(attrs, table_attr).map(wire::string).as_deref() == Some(TABLE)
}
