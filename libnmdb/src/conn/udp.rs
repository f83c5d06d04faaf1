//! UDP: one socket per server, `connect()`ed to it, so the kernel delivers
//! only datagrams from the server's own address and port: another host
//! cannot answer in its place by guessing a request id. (The original's
//! socket took replies from anyone.) Connecting a UDP socket sends nothing,
//! so adding a server whose port is closed still succeeds. A server must
//! answer from the address it was sent to, as nmdb does.

use std::net::SocketAddr;

use nmdb_net::{DgramSocket, SockAddr};
use nmdb_proto::MAX_UDP_MSG_SIZE;

use super::datagram::DatagramLink;
use crate::error::{Error, Phase};

pub fn open(server: SocketAddr) -> Result<DatagramLink, Error> {
    let socket = DgramSocket::new(nmdb_net::inet_family(&server), libc::SOCK_DGRAM, 0)
        .and_then(|s| {
            // Binds a local port too.
            s.connect(&SockAddr::from(server))?;
            Ok(s)
        })
        .map_err(|e| Error::io(Phase::Connect, e))?;
    Ok(DatagramLink::new(socket, server.into(), MAX_UDP_MSG_SIZE))
}
