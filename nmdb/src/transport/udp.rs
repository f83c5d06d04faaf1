//! UDP: one request per datagram, no length prefix.

use super::datagram::{DatagramSocket, STOP_POLL};
use crate::reply::{DatagramSend, PeerAddr, ReplyShape};
use nmdb_proto::{Counter, MAX_UDP_MSG_SIZE};
use std::io;
use std::net::{SocketAddr, UdpSocket};

pub struct Udp {
    socket: UdpSocket,
}

impl Udp {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        Ok(Udp { socket })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl DatagramSend for Udp {
    fn send_to(&self, msg: &[u8], peer: &PeerAddr) -> io::Result<()> {
        let PeerAddr::Inet(addr) = peer;
        self.socket.send_to(msg, addr).map(|_| ())
    }

    fn shape(&self) -> ReplyShape {
        ReplyShape {
            framed: false,
            max_len: MAX_UDP_MSG_SIZE,
        }
    }
}

impl DatagramSocket for Udp {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, PeerAddr)> {
        let (len, addr) = self.socket.recv_from(buf)?;
        Ok((len, PeerAddr::Inet(addr)))
    }

    fn counter(&self) -> Counter {
        Counter::MsgUdp
    }

    fn name(&self) -> &'static str {
        "udp"
    }
}
