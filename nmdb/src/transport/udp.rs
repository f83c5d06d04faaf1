//! UDP: one request per datagram, no length prefix.

use super::datagram::{Datagram, Kind};
use nmdb_net::{DgramSocket, SockAddr};
use std::io;
use std::net::SocketAddr;

/// Binds a UDP socket; returns it and the address actually bound.
pub fn bind(addr: SocketAddr) -> io::Result<(Datagram, SocketAddr)> {
    let socket = DgramSocket::new(nmdb_net::inet_family(&addr), libc::SOCK_DGRAM, 0)?;
    socket.bind(&SockAddr::from(addr))?;
    if addr.ip().is_unspecified() {
        // Answer from the address each request was sent to, not the one
        // the route back picks: clients accept replies only from the
        // address they wrote to.
        socket.enable_packet_info(addr.is_ipv6())?;
    }
    let local = socket.local_addr()?.as_inet().unwrap_or(addr);
    Ok((Datagram::new(socket, Kind::Udp)?, local))
}
