//! A [`Plan`] spoken to the kernel: one nf_tables batch that adds, deletes
//! and re-creates the table with its sets, chains and rules. The kernel
//! applies a batch as one transaction, so no packet ever sees half a table
//! and a refused batch leaves the old table as it was.

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftnl::expr::{Cmp, CmpOp, Immediate, Lookup, Meta, Verdict};
use nftnl::set::{Set as NftSet, SetKey};
use nftnl::{Batch, ChainType, FinalizedBatch, MsgType, Policy, ProtoFamily, Table};

use super::expr::{keys_in_host_order, Base, PayloadTo, Redirect, REG32_01, REG_1, REG_2};
use super::plan::{Action, Chain, ChainKind, Element, Family, Hook, Key, Plan, Rule, Set};
use super::wire;
use super::{Error, Step, TABLE};

// nftables' data type numbers (`enum datatypes` of nftables), and the
// shift that concatenates two of them into one key type.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
const TYPE_BITS: u32 = 6;
/// `IFNAMSIZ`.
const IFNAMSIZ: usize = 16;
/// `NFPROTO_IPV4`, `NFPROTO_IPV6` as `meta nfproto` compares them.
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// `IPPROTO_TCP` as `meta l4proto` compares it.
const IPPROTO_TCP: u8 = 6;

/// One expression of a rule, as data: built into libnftnl expressions for
/// the batch, and named for the read-back.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    /// `meta load <key> => reg 1`.
    Meta(MetaKey),
    /// `cmp eq reg 1 <bytes>`.
    CmpEq(CmpData),
    /// `payload load <len>b @ <base> + <offset> => reg <register>`.
    Payload(Base, u32, u32, u32),
    /// `lookup reg 1 set <name>`.
    Lookup(&'static str),
    /// `immediate reg 1 <port>` (network byte order).
    Port(u16),
    /// `redir proto_min reg 1`.
    Redirect,
    /// `immediate reg 0 return|drop`.
    Verdict(Action2),
}

/// The `meta` keys the table uses.
#[derive(Debug, Clone, Copy)]
pub(super) enum MetaKey {
    Mark,
    NfProto,
    L4Proto,
    IifName,
}

/// What a `cmp` compares with.
#[derive(Debug, Clone, Copy)]
pub(super) enum CmpData {
    Byte(u8),
    Mark(u32),
}

/// The verdicts the table uses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Action2 {
    Return,
    Drop,
}

impl Expr {
    /// The name the kernel gives the expression.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Expr::Meta(_) => "meta",
            Expr::CmpEq(_) => "cmp",
            Expr::Payload(..) => "payload",
            Expr::Lookup(_) => "lookup",
            Expr::Port(_) | Expr::Verdict(_) => "immediate",
            Expr::Redirect => "redir",
        }
    }
}

/// A rule as the list of expressions nft itself would generate for it
/// (its implied `meta nfproto` and `meta l4proto` checks included, so that
/// `nft list` prints it as the plain rule).
pub(super) fn expressions(rule: &Rule) -> Vec<Expr> {
    match rule {
        Rule::MarkReturn(mark) => vec![
            Expr::Meta(MetaKey::Mark),
            Expr::CmpEq(CmpData::Mark(*mark)),
            Expr::Verdict(Action2::Return),
        ],
        Rule::Match {
            family,
            iifname,
            saddr,
            daddr_dport,
            action,
        } => {
            // (nfproto, saddr offset, daddr offset, address length, port register)
            let (proto, src, dst, len, port_reg) = match family {
                Family::V4 => (NFPROTO_IPV4, 12, 16, 4, REG32_01),
                Family::V6 => (NFPROTO_IPV6, 8, 24, 16, REG_2),
            };
            let mut e = Vec::new();
            if let Some(set) = iifname {
                e.push(Expr::Meta(MetaKey::IifName));
                e.push(Expr::Lookup(set));
            }
            e.push(Expr::Meta(MetaKey::NfProto));
            e.push(Expr::CmpEq(CmpData::Byte(proto)));
            if let Some(set) = saddr {
                e.push(Expr::Payload(Base::Network, src, len, REG_1));
                e.push(Expr::Lookup(set));
            }
            e.push(Expr::Meta(MetaKey::L4Proto));
            e.push(Expr::CmpEq(CmpData::Byte(IPPROTO_TCP)));
            e.push(Expr::Payload(Base::Network, dst, len, REG_1));
            // The destination port, 2 bytes into the TCP header.
            e.push(Expr::Payload(Base::Transport, 2, 2, port_reg));
            e.push(Expr::Lookup(daddr_dport));
            match action {
                Action::Redirect(port) => {
                    e.push(Expr::Port(*port));
                    e.push(Expr::Redirect);
                }
                Action::Drop => e.push(Expr::Verdict(Action2::Drop)),
            }
            e
        }
    }
}

// === set keys ===

/// `ipv4_addr . inet_service`: each part padded to 4 bytes, as registers
/// hold a concatenation.
struct V4Port(Ipv4Addr, u16);
/// `ipv6_addr . inet_service`.
struct V6Port(Ipv6Addr, u16);
/// `ifname`: the name, NUL-padded to `IFNAMSIZ`.
struct Ifname(String);

impl SetKey for V4Port {
    const TYPE: u32 = (TYPE_IPADDR << TYPE_BITS) | TYPE_INET_SERVICE;
    const LEN: u32 = 8;

    fn data(&self) -> Box<[u8]> {
        let mut d = self.0.octets().to_vec();
        d.extend_from_slice(&self.1.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.into_boxed_slice()
    }
}

impl SetKey for V6Port {
    const TYPE: u32 = (TYPE_IP6ADDR << TYPE_BITS) | TYPE_INET_SERVICE;
    const LEN: u32 = 20;

    fn data(&self) -> Box<[u8]> {
        let mut d = self.0.octets().to_vec();
        d.extend_from_slice(&self.1.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.into_boxed_slice()
    }
}

impl SetKey for Ifname {
    const TYPE: u32 = TYPE_IFNAME;
    const LEN: u32 = IFNAMSIZ as u32;

    fn data(&self) -> Box<[u8]> {
        let mut d = self.0.as_bytes().to_vec();
        d.resize(IFNAMSIZ, 0);
        d.into_boxed_slice()
    }
}

/// The key type, key length and element keys of a set, as the kernel
/// holds them (shared with the read-back).
pub(super) fn set_layout(set: &Set) -> (u32, u32, Vec<Vec<u8>>) {
    let keys = set
        .elements
        .iter()
        .filter_map(|e| match (set.key, e) {
            (Key::Ipv4, Element::Addr(IpAddr::V4(a))) => Some(a.data().to_vec()),
            (Key::Ipv6, Element::Addr(IpAddr::V6(a))) => Some(a.data().to_vec()),
            (Key::Ipv4Port, Element::AddrPort(IpAddr::V4(a), p)) => {
                Some(V4Port(*a, *p).data().to_vec())
            }
            (Key::Ipv6Port, Element::AddrPort(IpAddr::V6(a), p)) => {
                Some(V6Port(*a, *p).data().to_vec())
            }
            (Key::Ifname, Element::Ifname(n)) => Some(Ifname(n.clone()).data().to_vec()),
            _ => None,
        })
        .collect();
    let (ty, len) = match set.key {
        Key::Ipv4 => (Ipv4Addr::TYPE, Ipv4Addr::LEN),
        Key::Ipv6 => (Ipv6Addr::TYPE, Ipv6Addr::LEN),
        Key::Ipv4Port => (V4Port::TYPE, V4Port::LEN),
        Key::Ipv6Port => (V6Port::TYPE, V6Port::LEN),
        Key::Ifname => (Ifname::TYPE, Ifname::LEN),
    };
    (ty, len, keys)
}

/// A set of any of the key types, for the lookups that refer to it.
enum AnySet<'a> {
    V4(NftSet<'a, Ipv4Addr>),
    V6(NftSet<'a, Ipv6Addr>),
    V4Port(NftSet<'a, V4Port>),
    V6Port(NftSet<'a, V6Port>),
    Ifname(NftSet<'a, Ifname>),
}

impl<'a> AnySet<'a> {
    fn new(set: &Set, id: u32, table: &'a Table) -> Result<AnySet<'a>, Error> {
        let name = c_name(set.name)?;
        let family = ProtoFamily::Inet;
        let mut s = match set.key {
            Key::Ipv4 => AnySet::V4(NftSet::new_named(&name, id, table, family)),
            Key::Ipv6 => AnySet::V6(NftSet::new_named(&name, id, table, family)),
            Key::Ipv4Port => AnySet::V4Port(NftSet::new_named(&name, id, table, family)),
            Key::Ipv6Port => AnySet::V6Port(NftSet::new_named(&name, id, table, family)),
            Key::Ifname => {
                let s = NftSet::new_named(&name, id, table, family);
                keys_in_host_order(&s);
                AnySet::Ifname(s)
            }
        };
        for e in &set.elements {
            match (&mut s, e) {
                (AnySet::V4(s), Element::Addr(IpAddr::V4(a))) => s.add(a),
                (AnySet::V6(s), Element::Addr(IpAddr::V6(a))) => s.add(a),
                (AnySet::V4Port(s), Element::AddrPort(IpAddr::V4(a), p)) => s.add(&V4Port(*a, *p)),
                (AnySet::V6Port(s), Element::AddrPort(IpAddr::V6(a), p)) => s.add(&V6Port(*a, *p)),
                (AnySet::Ifname(s), Element::Ifname(n)) => s.add(&Ifname(n.clone())),
                // The plan only puts elements of a set's own type in it.
                _ => {}
            }
        }
        Ok(s)
    }

    fn lookup(&self) -> Lookup {
        match self {
            AnySet::V4(s) => Lookup::new(s),
            AnySet::V6(s) => Lookup::new(s),
            AnySet::V4Port(s) => Lookup::new(s),
            AnySet::V6Port(s) => Lookup::new(s),
            AnySet::Ifname(s) => Lookup::new(s),
        }
    }

    /// The set and then its elements, into the batch.
    fn add_to(&'a self, batch: &mut Batch, steps: &mut Vec<Step>, name: &str) {
        fn add<'s, K: SetKey>(
            set: &'s NftSet<'s, K>,
            batch: &mut Batch,
            steps: &mut Vec<Step>,
            name: &str,
        ) {
            batch.add(set, MsgType::Add);
            steps.push(Step::Set(name.to_owned()));
            for m in set.elems_iter() {
                batch.add(&m, MsgType::Add);
                steps.push(Step::Elements(name.to_owned()));
            }
        }
        match self {
            AnySet::V4(s) => add(s, batch, steps, name),
            AnySet::V6(s) => add(s, batch, steps, name),
            AnySet::V4Port(s) => add(s, batch, steps, name),
            AnySet::V6Port(s) => add(s, batch, steps, name),
            AnySet::Ifname(s) => add(s, batch, steps, name),
        }
    }
}

fn c_name(name: &str) -> Result<CString, Error> {
    // Names here are the plan's own constants and checked interface names.
    CString::new(name).map_err(|_| Error::ReadBack(format!("name {name:?} holds a NUL")))
}

/// Replace the table with `plan` in one batch.
pub(super) fn replace(plan: &Plan) -> Result<(), Error> {
    let table = Table::new(c_name(TABLE)?, ProtoFamily::Inet);
    let mut batch = Batch::new();
    let mut steps = Vec::new();
    // Add first, so that the delete cannot fail on a host without the
    // table; the delete then takes every old set, chain and rule with it.
    batch.add(&table, MsgType::Add);
    steps.push(Step::Table);
    batch.add(&table, MsgType::Del);
    steps.push(Step::DeleteTable);
    batch.add(&table, MsgType::Add);
    steps.push(Step::Table);

    let mut sets = Vec::with_capacity(plan.sets.len());
    for (i, s) in plan.sets.iter().enumerate() {
        // Set ids name sets within the batch; any distinct numbers do.
        let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        sets.push((s.name, AnySet::new(s, id, &table)?));
    }
    for (name, s) in &sets {
        s.add_to(&mut batch, &mut steps, name);
    }

    let mut chains = Vec::with_capacity(plan.chains.len());
    for c in &plan.chains {
        chains.push((c, chain(c, &table)?));
    }
    for (c, nft) in &chains {
        batch.add(nft, MsgType::Add);
        steps.push(Step::Chain(describe_chain(c)));
    }
    for (c, nft) in &chains {
        for rule in &c.rules {
            let mut r = nftnl::Rule::new(nft);
            for e in expressions(rule) {
                add_expr(&mut r, &e, &sets)?;
            }
            batch.add(&r, MsgType::Add);
            steps.push(Step::Rule {
                chain: c.name.to_owned(),
                text: super::render::rule_text(rule),
            });
        }
    }
    send(&batch.finalize(), &steps)
}

/// Delete the table (and everything in it) in one batch; nothing happens
/// when there is none.
pub(super) fn delete() -> Result<(), Error> {
    let table = Table::new(c_name(TABLE)?, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    send(&batch.finalize(), &[Step::Table, Step::DeleteTable])
}

fn chain<'a>(c: &Chain, table: &'a Table) -> Result<nftnl::Chain<'a>, Error> {
    let mut nft = nftnl::Chain::new(c_name(c.name)?, table);
    nft.set_type(match c.kind {
        ChainKind::Nat => ChainType::Nat,
        ChainKind::Filter => ChainType::Filter,
    });
    let hook = match c.hook {
        Hook::Prerouting => nftnl::Hook::PreRouting,
        Hook::Forward => nftnl::Hook::Forward,
        Hook::Input => nftnl::Hook::In,
        Hook::Output => nftnl::Hook::Out,
    };
    nft.set_hook(hook, c.priority);
    nft.set_policy(Policy::Accept);
    Ok(nft)
}

pub(super) fn describe_chain(c: &Chain) -> String {
    let kind = match c.kind {
        ChainKind::Nat => "nat",
        ChainKind::Filter => "filter",
    };
    format!("chain {} (type {kind}, priority {})", c.name, c.priority)
}

fn add_expr(r: &mut nftnl::Rule<'_>, e: &Expr, sets: &[(&str, AnySet<'_>)]) -> Result<(), Error> {
    match e {
        Expr::Meta(k) => r.add_expr(&match k {
            MetaKey::Mark => Meta::Mark { set: false },
            MetaKey::NfProto => Meta::NfProto,
            MetaKey::L4Proto => Meta::L4Proto,
            MetaKey::IifName => Meta::IifName,
        }),
        Expr::CmpEq(CmpData::Byte(b)) => r.add_expr(&Cmp::new(CmpOp::Eq, *b)),
        Expr::CmpEq(CmpData::Mark(m)) => r.add_expr(&Cmp::new(CmpOp::Eq, *m)),
        Expr::Payload(base, offset, len, register) => r.add_expr(&PayloadTo {
            base: *base,
            offset: *offset,
            len: *len,
            register: *register,
        }),
        Expr::Lookup(name) => {
            let set = sets
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Error::ReadBack(format!("a rule names no set {name}")))?;
            r.add_expr(&set.1.lookup());
        }
        Expr::Port(port) => r.add_expr(&Immediate::new(port.to_be(), nftnl::expr::Register::Reg1)),
        Expr::Redirect => r.add_expr(&Redirect {
            port_register: REG_1,
        }),
        Expr::Verdict(Action2::Return) => r.add_expr(&Verdict::Return),
        Expr::Verdict(Action2::Drop) => r.add_expr(&Verdict::Drop),
    }
    Ok(())
}

/// Send a batch as one message and read the kernel's answer to each part:
/// the first error names the part it refused.
fn send(batch: &FinalizedBatch, steps: &[Step]) -> Result<(), Error> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(open_error)?;
    // One send: the kernel takes a batch as the messages of one datagram.
    let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
    socket.send(&bytes).map_err(Error::Send)?;

    let seqs = batch.sequence_numbers();
    // On kernels that acknowledge the begin and end of a batch, the range
    // also holds their numbers (see `nftnl::Batch`).
    let first = if seqs.len() == steps.len() + 2 {
        seqs.start + 1
    } else {
        seqs.start
    };
    let step_of = |seq: u32| {
        seq.checked_sub(first)
            .and_then(|i| steps.get(i as usize))
            .cloned()
            .unwrap_or(Step::Batch)
    };
    let mut pending: Vec<u32> = (0..steps.len() as u32).map(|i| first + i).collect();
    let mut buf = vec![0u8; wire::RECV_BUFFER];
    while !pending.is_empty() {
        let n = socket.recv_raw(&mut buf).map_err(Error::Receive)?;
        if n == 0 {
            return Err(Error::Receive(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink closed before every part was acknowledged",
            )));
        }
        for (header, payload) in wire::messages(&buf[..n]) {
            if header.kind != wire::NLMSG_ERROR {
                continue;
            }
            let seq = wire::error_seq(payload).unwrap_or(header.seq);
            match wire::error_code(payload) {
                0 => pending.retain(|&s| s != seq),
                code => return Err(refusal(step_of(seq), -code)),
            }
        }
    }
    Ok(())
}

fn open_error(e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) => Error::NoNfTables(e),
        _ => Error::Open(e),
    }
}

/// What the kernel's errno for `step` means for the admin.
fn refusal(step: Step, errno: i32) -> Error {
    let source = io::Error::from_raw_os_error(errno);
    match (errno, &step) {
        (libc::EPERM, _) => Error::NoPermission,
        // The batch as a whole: no nf_tables subsystem to hand it to.
        (libc::EOPNOTSUPP | libc::ENOENT | libc::EINVAL, Step::Batch) => Error::NoNfTables(source),
        _ => Error::Refused { step, source },
    }
}
