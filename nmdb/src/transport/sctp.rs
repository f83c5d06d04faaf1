//! SCTP: a one-to-many socket; each message is one request and the reply
//! goes back over the sender's association.

use super::datagram::{Datagram, Kind};
use std::io;
use std::net::SocketAddr;

pub fn bind(addr: SocketAddr) -> io::Result<(Datagram, SocketAddr)> {
    let socket = nmdb_net::sctp::listen(addr)?;
    let local = socket.local_addr()?.as_inet().unwrap_or(addr);
    Ok((Datagram::new(socket, Kind::Sctp)?, local))
}
