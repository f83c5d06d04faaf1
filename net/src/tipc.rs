//! TIPC addresses (`struct sockaddr_tipc` of `<linux/tipc.h>`) and the
//! reliable-datagram socket nmdb uses.
//!
//! A server binds the name sequence `{26001, lower, upper}`; a client sends
//! each request to the *multicast* address `{26001, port, port}`, so every
//! server bound to that name (an active one and its passive mirrors) gets
//! it, and the reply comes back from the active one to the client's socket
//! id.

use crate::{DgramSocket, SockAddr};
use std::io;

/// Address types (`addrtype`).
pub const TIPC_ADDR_NAMESEQ: u8 = 1;
/// Multicast uses the name-sequence layout.
pub const TIPC_ADDR_MCAST: u8 = 1;
pub const TIPC_ADDR_NAME: u8 = 2;
pub const TIPC_ADDR_ID: u8 = 3;

/// Scope of every nmdb name: the whole cluster.
pub const TIPC_CLUSTER_SCOPE: i8 = 2;

/// `struct sockaddr_tipc`: family, address type, scope, and a 12-byte
/// union (name sequence `{type, lower, upper}`, name `{type, instance,
/// domain}` or socket id `{ref, node}`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockaddrTipc {
    pub family: libc::sa_family_t,
    pub addrtype: u8,
    pub scope: i8,
    pub addr: [u32; 3],
}

/// The TIPC addresses nmdb uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TipcAddr {
    /// A socket: what a request comes from and a reply goes to.
    Id { reference: u32, node: u32 },
    /// One service name `{type, instance}`.
    Name { service: u32, instance: u32 },
    /// A range of instances `{type, lower, upper}`.
    NameSeq {
        service: u32,
        lower: u32,
        upper: u32,
    },
    /// Every socket bound to a name overlapping `{type, lower, upper}`.
    Mcast {
        service: u32,
        lower: u32,
        upper: u32,
    },
}

impl TipcAddr {
    /// The kernel's form, with cluster scope.
    pub fn to_sockaddr(self) -> SockAddr {
        let (addrtype, addr) = match self {
            TipcAddr::Id { reference, node } => (TIPC_ADDR_ID, [reference, node, 0]),
            TipcAddr::Name { service, instance } => (TIPC_ADDR_NAME, [service, instance, 0]),
            TipcAddr::NameSeq {
                service,
                lower,
                upper,
            } => (TIPC_ADDR_NAMESEQ, [service, lower, upper]),
            TipcAddr::Mcast {
                service,
                lower,
                upper,
            } => (TIPC_ADDR_MCAST, [service, lower, upper]),
        };
        SockAddr::from_raw(&SockaddrTipc {
            family: libc::AF_TIPC as libc::sa_family_t,
            addrtype,
            scope: TIPC_CLUSTER_SCOPE,
            addr,
        })
    }

    /// Reads a TIPC address back (a received message's sender is an id).
    pub fn from_sockaddr(addr: &SockAddr) -> Option<TipcAddr> {
        if addr.family() != libc::AF_TIPC {
            return None;
        }
        let raw: SockaddrTipc = addr.as_raw()?;
        let [a, b, c] = raw.addr;
        Some(match raw.addrtype {
            TIPC_ADDR_ID => TipcAddr::Id {
                reference: a,
                node: b,
            },
            TIPC_ADDR_NAME => TipcAddr::Name {
                service: a,
                instance: b,
            },
            TIPC_ADDR_NAMESEQ => TipcAddr::NameSeq {
                service: a,
                lower: b,
                upper: c,
            },
            _ => return None,
        })
    }
}

/// Opens a reliable-datagram (`SOCK_RDM`) TIPC socket. Fails with
/// `EAFNOSUPPORT` on a kernel without TIPC.
pub fn rdm_socket() -> io::Result<DgramSocket> {
    DgramSocket::new(libc::AF_TIPC, libc::SOCK_RDM, 0)
}

/// True when this kernel can open TIPC sockets.
pub fn available() -> bool {
    rdm_socket().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_tipc_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<SockaddrTipc>(), 16);
    }

    #[test]
    fn addresses_round_trip() {
        for a in [
            TipcAddr::Id {
                reference: 7,
                node: 0x1001,
            },
            TipcAddr::Name {
                service: 26001,
                instance: 10,
            },
            TipcAddr::NameSeq {
                service: 26001,
                lower: 10,
                upper: 12,
            },
        ] {
            assert_eq!(TipcAddr::from_sockaddr(&a.to_sockaddr()), Some(a));
        }
    }

    #[test]
    fn multicast_uses_the_name_sequence_layout_with_cluster_scope() {
        let a = TipcAddr::Mcast {
            service: 26001,
            lower: 11,
            upper: 11,
        }
        .to_sockaddr();
        let raw: SockaddrTipc = a.as_raw().unwrap();
        assert_eq!(
            (raw.addrtype, raw.scope, raw.addr),
            (TIPC_ADDR_NAMESEQ, TIPC_CLUSTER_SCOPE, [26001, 11, 11])
        );
    }
}
