//! What the table needs to know about this host, read over rtnetlink: its
//! own addresses (which instances are local, in host mode) and its
//! interface names (gateway mode names interfaces that must exist).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::{self, Message};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `struct ifaddrmsg`: family, prefix length, flags, scope, index.
const IFADDRMSG_LEN: usize = 8;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;

/// Every address of every interface of this host (of the network namespace
/// the guard runs in).
pub fn addresses() -> io::Result<Vec<IpAddr>> {
    let socket = mnl::Socket::new(mnl::Bus::Route)?;
    let request = Message::new(RTM_GETADDR, wire::F_REQUEST | wire::F_DUMP, 1)
        .header(&[0u8; IFADDRMSG_LEN]) // AF_UNSPEC: both families
        .finish();
    let mut out = Vec::new();
    for (kind, payload) in wire::dump(&socket, &request)? {
        if kind != RTM_NEWADDR || payload.len() < IFADDRMSG_LEN {
            continue;
        }
        let family = i32::from(payload[0]);
        let attrs = &payload[IFADDRMSG_LEN..];
        // IFA_LOCAL is the address of the interface itself; IFA_ADDRESS is
        // the peer's on a point-to-point link, and the only one for IPv6.
        let value = wire::attr(attrs, IFA_LOCAL).or_else(|| wire::attr(attrs, IFA_ADDRESS));
        let ip = match (family, value) {
            (libc::AF_INET, Some(v)) => <[u8; 4]>::try_from(v)
                .ok()
                .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            (libc::AF_INET6, Some(v)) => <[u8; 16]>::try_from(v)
                .ok()
                .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            _ => None,
        };
        if let Some(ip) = ip {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

/// The names of this host's network interfaces.
pub fn interfaces() -> io::Result<Vec<String>> {
    let socket = mnl::Socket::new(mnl::Bus::Route)?;
    let request = Message::new(RTM_GETLINK, wire::F_REQUEST | wire::F_DUMP, 1)
        .header(&[0u8; IFINFOMSG_LEN])
        .finish();
    let mut out = Vec::new();
    for (kind, payload) in wire::dump(&socket, &request)? {
        if kind != RTM_NEWLINK || payload.len() < IFINFOMSG_LEN {
            continue;
        }
        if let Some(name) = wire::attr(&payload[IFINFOMSG_LEN..], IFLA_IFNAME) {
            out.push(wire::string(name));
        }
    }
    Ok(out)
}
