//! UDP: one unconnected socket per server; requests go out with `sendto`.
//!
//! The socket is not `connect()`ed, as in the original: adding a server
//! whose port is closed succeeds, and a server on a multi-homed host may
//! answer from another of its addresses.

use std::net::{SocketAddr, SocketAddrV4};

use nmdb_net::{DgramSocket, SockAddr};
use nmdb_proto::MAX_UDP_MSG_SIZE;

use super::datagram::{DatagramLink, SocketTo};
use crate::error::{Error, Phase};

pub fn open(server: SocketAddrV4) -> Result<DatagramLink<SocketTo>, Error> {
    let socket = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .and_then(|s| {
            s.bind(&SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))))?;
            s.set_nonblocking()?;
            Ok(s)
        })
        .map_err(|e| Error::io(Phase::Connect, e))?;
    Ok(DatagramLink::new(SocketTo {
        socket,
        to: SocketAddr::V4(server).into(),
        max_message: MAX_UDP_MSG_SIZE,
    }))
}
