//! What the `nftnl` crate lacks, over `nftnl-sys`: two expressions and the
//! user data of a set. The only `unsafe` code of the guard.
//!
//! * [`Redirect`]: `redirect to :port`. Chosen over DNAT to the listener's
//!   address because `redirect` needs no address: in the output hook it
//!   rewrites the destination to loopback, in prerouting to the incoming
//!   interface's own address, so one wildcard listener (`0.0.0.0:8443` or
//!   `[::]:8443`) receives both the local MISP's connections and routed
//!   ones, whatever addresses the host has. DNAT would need a fixed address
//!   per family and hook, and DNAT of routed traffic to 127.0.0.1 is
//!   refused by the kernel unless `route_localnet` is turned on.
//! * [`PayloadTo`]: a payload load into a register of our choosing. The
//!   crate's `Payload` always loads into register 1, but a lookup of
//!   `address . port` needs the port right after the address: in the 32-bit
//!   register after an IPv4 address, in the next 128-bit register after an
//!   IPv6 one (as `nft` itself lays out a concatenation).
//! * [`keys_in_host_order`]: the note `nft` reads to print a set's keys;
//!   without it an `ifname` set lists as `""`, though it matches.
//!
//! Each `to_expr` allocates a libnftnl expression and sets its attributes;
//! `Rule::add_expr` takes ownership of it (libnftnl frees it with the rule).

use std::ptr::NonNull;

use nftnl::expr::Expression;
use nftnl::nftnl_sys as sys;
use nftnl::set::Set;
use nftnl::Rule;

/// The first 128-bit data register (`NFT_REG_1`).
pub const REG_1: u32 = libc::NFT_REG_1 as u32;
/// The second 128-bit data register (`NFT_REG_2`), after a 16-byte value.
pub const REG_2: u32 = libc::NFT_REG_2 as u32;
/// The 32-bit register right after the first 32 bits of `NFT_REG_1`
/// (`NFT_REG32_01`), after a 4-byte value.
pub const REG32_01: u32 = libc::NFT_REG32_01 as u32;

/// `NF_NAT_RANGE_PROTO_SPECIFIED`: the redirect carries a port.
const NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// Allocate a libnftnl expression by name. libnftnl returns null only when
/// out of memory, where the process cannot go on (as the `nftnl` crate does).
fn alloc(name: &'static std::ffi::CStr) -> NonNull<sys::nftnl_expr> {
    // SAFETY: `name` is a NUL-terminated static string naming an expression
    // type libnftnl knows ("redir", "payload"); the call only reads it.
    let raw = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
    match NonNull::new(raw) {
        Some(p) => p,
        None => std::process::abort(),
    }
}

/// `redirect to :port`, the port taken from a register (loaded before it
/// with an `Immediate` of the port in network byte order).
pub struct Redirect {
    /// The register holding the port.
    pub port_register: u32,
}

impl Expression for Redirect {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let expr = alloc(c"redir");
        // SAFETY: `expr` is a live "redir" expression just allocated; both
        // attributes are u32 attributes of that type (NFTNL_EXPR_REDIR_*),
        // which libnftnl copies.
        unsafe {
            sys::nftnl_expr_set_u32(
                expr.as_ptr(),
                sys::NFTNL_EXPR_REDIR_REG_PROTO_MIN as u16,
                self.port_register,
            );
            sys::nftnl_expr_set_u32(
                expr.as_ptr(),
                sys::NFTNL_EXPR_REDIR_FLAGS as u16,
                NAT_RANGE_PROTO_SPECIFIED,
            );
        }
        expr
    }
}

/// Which header a payload is read from.
#[derive(Debug, Clone, Copy)]
pub enum Base {
    /// The IPv4 or IPv6 header.
    Network,
    /// The TCP header.
    Transport,
}

/// Load `len` bytes at `offset` of a header into `register`.
pub struct PayloadTo {
    /// The header.
    pub base: Base,
    /// Bytes from its start.
    pub offset: u32,
    /// Bytes to load.
    pub len: u32,
    /// The destination register.
    pub register: u32,
}

impl Expression for PayloadTo {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let base = match self.base {
            Base::Network => libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
            Base::Transport => libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
        };
        let expr = alloc(c"payload");
        // SAFETY: `expr` is a live "payload" expression just allocated; the
        // four attributes are u32 attributes of that type
        // (NFTNL_EXPR_PAYLOAD_*), which libnftnl copies.
        unsafe {
            let e = expr.as_ptr();
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_PAYLOAD_BASE as u16, base);
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, self.offset);
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, self.len);
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_PAYLOAD_DREG as u16, self.register);
        }
        expr
    }
}

/// `NFTNL_UDATA_SET_KEYBYTEORDER`, the first set user-data type.
const UDATA_SET_KEYBYTEORDER: u8 = 0;
/// nftables' `BYTEORDER_HOST_ENDIAN`.
const BYTEORDER_HOST_ENDIAN: u32 = 1;

/// Record in `set`'s user data that its keys are in host byte order (as
/// nft records it for strings such as interface names), so that `nft list`
/// prints them. The data is one libnftnl TLV: type, length, value.
pub fn keys_in_host_order<K>(set: &Set<'_, K>) {
    let mut udata = vec![UDATA_SET_KEYBYTEORDER, 4];
    udata.extend_from_slice(&BYTEORDER_HOST_ENDIAN.to_ne_bytes());
    // SAFETY: `set.as_ptr()` is the live libnftnl set `set` owns;
    // NFTNL_SET_USERDATA is a data attribute, which libnftnl copies from
    // the `udata.len()` bytes at `udata.as_ptr()` before this returns.
    let rc = unsafe {
        sys::nftnl_set_set_data(
            set.as_ptr().as_ptr(),
            sys::NFTNL_SET_USERDATA as u16,
            udata.as_ptr().cast(),
            udata.len() as u32,
        )
    };
    // Only an allocation failure makes libnftnl fail here.
    if rc < 0 {
        std::process::abort();
    }
}
