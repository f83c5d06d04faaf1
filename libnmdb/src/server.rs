//! Where a server is: its transport and address, how an address given by a
//! C caller is resolved, and the order servers are kept in.
//!
//! The order is part of the drop-in contract: the server for a key is
//! `servers[hash % n]` in this order, so it must be exactly the original's.
//! The original compared its stored `sockaddr_in` fields (network byte order)
//! as native integers on little-endian machines; we reproduce that on every
//! host by reading those bytes as little-endian explicitly.
//!
//! IPv6 servers, which the original did not have, come after every IPv4
//! server of the same transport, ordered by address (its 16 bytes in
//! order), then by port number (see libnmdb(3)).

use std::cmp::Ordering;
use std::ffi::{c_int, CStr};
use std::fmt;
use std::net::SocketAddr;

use nmdb_proto::{DEFAULT_INET_PORT, DEFAULT_TIPC_PORT};

use crate::error::Error;

/// Transports, declared in the original's sort order (TIPC < TCP < UDP < SCTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tipc,
    Tcp,
    Udp,
    Sctp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tipc => "tipc",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Sctp => "sctp",
        }
    }
}

/// One server as the library addresses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TIPC name `{26001, instance}`.
    Tipc { instance: u32 },
    /// An IPv4 or IPv6 server over TCP, UDP or SCTP.
    Inet {
        transport: Transport,
        addr: SocketAddr,
    },
}

impl Endpoint {
    pub fn transport(&self) -> Transport {
        match self {
            Endpoint::Tipc { .. } => Transport::Tipc,
            Endpoint::Inet { transport, .. } => *transport,
        }
    }

    /// The sort key: transport, then address family (IPv4 first), then
    /// address, then port. For IPv4 the address and port are the
    /// original's: network-order bytes read as little-endian integers (so
    /// 127.0.0.2 sorts after 127.1.0.1 and port 256 before port 255). For
    /// IPv6 they are the address bytes in order and the port number.
    pub fn order_key(&self) -> (Transport, u8, u128, u16) {
        match self {
            Endpoint::Tipc { instance } => (Transport::Tipc, 0, u128::from(*instance), 0),
            Endpoint::Inet {
                transport,
                addr: SocketAddr::V4(a),
            } => (
                *transport,
                0,
                u128::from(u32::from_le_bytes(a.ip().octets())),
                u16::from_le_bytes(a.port().to_be_bytes()),
            ),
            Endpoint::Inet {
                transport,
                addr: SocketAddr::V6(a),
            } => (
                *transport,
                1,
                u128::from_be_bytes(a.ip().octets()),
                a.port(),
            ),
        }
    }

    /// A TIPC server; a negative port means the default instance.
    pub fn tipc(port: c_int) -> Endpoint {
        let instance = u32::try_from(port).unwrap_or(DEFAULT_TIPC_PORT);
        Endpoint::Tipc { instance }
    }

    /// A server at `host`: an IPv4 address, an IPv6 address (bare or in
    /// brackets), or a name, of which the first IPv4 address is used, else
    /// its first IPv6 one; a negative port means the default.
    pub fn inet(transport: Transport, host: &str, port: c_int) -> Result<Endpoint, Error> {
        let port = inet_port(port)?;
        let ip = nmdb_net::resolve_host(host)
            .map_err(|e| Error::BadAddress(format!("cannot resolve {host:?}: {e}")))?;
        Ok(Endpoint::Inet {
            transport,
            addr: SocketAddr::new(ip, port),
        })
    }

    /// Like [`Endpoint::inet`], for a host name coming from C.
    pub fn inet_from_c(transport: Transport, host: &CStr, port: c_int) -> Result<Endpoint, Error> {
        let host = host
            .to_str()
            .map_err(|_| Error::BadAddress("the host name is not valid UTF-8".into()))?;
        Endpoint::inet(transport, host, port)
    }
}

impl Ord for Endpoint {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tipc { instance } => write!(f, "tipc {instance}"),
            Endpoint::Inet { transport, addr } => write!(f, "{} {addr}", transport.name()),
        }
    }
}

fn inet_port(port: c_int) -> Result<u16, Error> {
    if port < 0 {
        return Ok(DEFAULT_INET_PORT);
    }
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Error::BadAddress(format!(
            "port {port} is not between 1 and 65535"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn tcp(a: [u8; 4], port: u16) -> Endpoint {
        Endpoint::Inet {
            transport: Transport::Tcp,
            addr: SocketAddrV4::new(a.into(), port).into(),
        }
    }

    fn tcp6(a: &str, port: u16) -> Endpoint {
        Endpoint::Inet {
            transport: Transport::Tcp,
            addr: SocketAddr::new(a.parse().unwrap(), port),
        }
    }

    #[test]
    fn addresses_compare_by_their_last_byte_first() {
        assert!(tcp([127, 0, 0, 1], 1) < tcp([127, 1, 0, 1], 1));
        assert!(tcp([127, 1, 0, 1], 1) < tcp([127, 0, 0, 2], 1));
        assert!(tcp([9, 0, 0, 10], 1) > tcp([10, 0, 0, 9], 1));
    }

    #[test]
    fn ports_compare_by_their_low_byte_first() {
        assert!(tcp([127, 0, 0, 1], 256) < tcp([127, 0, 0, 1], 255));
        assert!(tcp([127, 0, 0, 1], 20224) < tcp([127, 0, 0, 1], 20222));
        assert!(tcp([127, 0, 0, 1], 20001) < tcp([127, 0, 0, 1], 20002));
    }

    #[test]
    fn transport_comes_before_address() {
        let udp = Endpoint::Inet {
            transport: Transport::Udp,
            addr: SocketAddrV4::new([1, 0, 0, 0].into(), 1).into(),
        };
        let sctp = Endpoint::Inet {
            transport: Transport::Sctp,
            addr: SocketAddrV4::new([0, 0, 0, 0].into(), 1).into(),
        };
        assert!(Endpoint::tipc(99) < tcp([0, 0, 0, 0], 1));
        assert!(tcp([255, 255, 255, 255], 65535) < udp);
        assert!(udp < sctp);
        assert!(Endpoint::tipc(3) < Endpoint::tipc(4));
    }

    #[test]
    fn ipv6_servers_follow_the_ipv4_ones_of_their_transport_by_address_then_port() {
        let udp4 = Endpoint::Inet {
            transport: Transport::Udp,
            addr: "0.0.0.1:1".parse().unwrap(),
        };
        assert!(tcp([255, 255, 255, 255], 65535) < tcp6("::", 1));
        assert!(tcp6("ffff::", 65535) < udp4);
        assert!(tcp6("::1", 9) < tcp6("::2", 1));
        assert!(tcp6("::1:0", 1) > tcp6("::2", 1));
        assert!(tcp6("::1", 255) < tcp6("::1", 256));
    }

    #[test]
    fn ipv6_literals_are_taken_bare_or_in_brackets() {
        for host in ["::1", "[::1]"] {
            let e = Endpoint::inet(Transport::Udp, host, 9).unwrap();
            assert_eq!(e.to_string(), "udp [::1]:9");
        }
    }

    #[test]
    fn negative_ports_mean_the_defaults() {
        assert_eq!(Endpoint::tipc(-1), Endpoint::Tipc { instance: 10 });
        let e = Endpoint::inet(Transport::Udp, "127.0.0.1", -1).unwrap();
        assert_eq!(
            e,
            Endpoint::Inet {
                transport: Transport::Udp,
                addr: "127.0.0.1:26010".parse().unwrap()
            }
        );
    }

    #[test]
    fn unusable_ports_and_hosts_are_rejected() {
        for port in [0, 65536, c_int::MAX] {
            assert!(Endpoint::inet(Transport::Tcp, "127.0.0.1", port).is_err());
        }
        assert!(Endpoint::inet(Transport::Tcp, "", 1).is_err());
        assert!(Endpoint::inet(Transport::Tcp, "no-such-host.invalid", 1).is_err());
    }

    #[test]
    fn localhost_resolves_to_its_ipv4_address() {
        let e = Endpoint::inet(Transport::Tcp, "localhost", 7).unwrap();
        assert_eq!(e, tcp([127, 0, 0, 1], 7));
    }
}
