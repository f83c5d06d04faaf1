//! UDP: one unconnected socket per server; requests go out with `sendto`.
//!
//! The socket is not `connect()`ed, as in the original: adding a server
//! whose port is closed succeeds, and a server on a multi-homed host may
//! answer from another of its addresses.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use nmdb_proto::MAX_UDP_MSG_SIZE;

use super::datagram::{DatagramLink, DatagramSocket};
use crate::error::{Error, Phase};

pub struct Udp {
    socket: UdpSocket,
    server: SocketAddrV4,
}

pub fn open(server: SocketAddrV4) -> Result<DatagramLink<Udp>, Error> {
    let socket = UdpSocket::bind(SocketAddrV4::new(0.into(), 0))
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|e| Error::io(Phase::Connect, e))?;
    Ok(DatagramLink::new(Udp { socket, server }))
}

impl DatagramSocket for Udp {
    fn send(&self, msg: &[u8]) -> io::Result<usize> {
        self.socket.send_to(msg, self.server)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.recv_from(buf).map(|(n, _)| n)
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn max_message(&self) -> usize {
        MAX_UDP_MSG_SIZE
    }
}
