//! Addresses as the guard compares them, below both [`crate::listen`] and
//! [`crate::relay`]: one spelling for an IPv4 peer, whichever socket it
//! arrived on.

use std::net::{IpAddr, SocketAddr};

/// `::ffff:a.b.c.d` is the IPv4 client a.b.c.d on a dual-stack socket.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmap_v4_mapped() {
        let a: SocketAddr = "[::ffff:10.0.0.1]:443".parse().unwrap();
        assert_eq!(unmap(a), "10.0.0.1:443".parse::<SocketAddr>().unwrap());
        let b: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(unmap(b), b);
    }
}
