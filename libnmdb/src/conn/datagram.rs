//! The exchange logic shared by the datagram transports (UDP, TIPC, SCTP:
//! one message per request, each implementing [`DatagramSocket`]).
//!
//! A datagram can be lost, so waiting is bounded by the deadline, and a
//! request that is safe to repeat is sent again at growing intervals. Each
//! server has its own socket, so anything arriving on it is a reply from
//! that server; the id tells the current reply from a late one.

use std::io;
use std::os::fd::RawFd;

use super::wait::{wait, Ready};
use super::{check_size, reply_id, Exchange, Link, MAX_REPLY_LEN};
use crate::error::{Error, Phase};
use crate::timeout::{RESEND_FIRST, RESEND_MAX};

/// What a datagram transport must provide. Sockets are non-blocking.
pub trait DatagramSocket: Send {
    /// Sends one whole message to the server.
    fn send(&self, msg: &[u8]) -> io::Result<usize>;
    /// Receives one datagram.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn fd(&self) -> RawFd;
    /// The largest message this transport carries.
    fn max_message(&self) -> usize;
}

/// A raw message socket and the address every request goes to (a UDP or
/// SCTP server, TIPC's multicast name).
pub struct SocketTo {
    pub socket: nmdb_net::DgramSocket,
    pub to: nmdb_net::SockAddr,
    pub max_message: usize,
}

impl DatagramSocket for SocketTo {
    fn send(&self, msg: &[u8]) -> io::Result<usize> {
        self.socket.send_to(msg, &self.to)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.recv_from(buf).map(|(n, _)| n)
    }

    fn fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }

    fn max_message(&self) -> usize {
        self.max_message
    }
}

pub struct DatagramLink<S> {
    socket: S,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
}

impl<S: DatagramSocket> DatagramLink<S> {
    pub fn new(socket: S) -> Self {
        DatagramLink {
            socket,
            wbuf: Vec::new(),
            // One byte more than the largest valid reply, so that an
            // over-long (cut) datagram is recognisable.
            rbuf: vec![0; MAX_REPLY_LEN + 1],
        }
    }

    fn send(&self) -> Result<(), Error> {
        loop {
            match self.socket.send(&self.wbuf) {
                Ok(n) if n == self.wbuf.len() => return Ok(()),
                Ok(_) => {
                    let e = io::Error::other("the datagram was sent only in part");
                    return Err(Error::io(Phase::Send, e));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Phase::Send, e)),
            }
        }
    }
}

impl<S: DatagramSocket> Link for DatagramLink<S> {
    fn call(&mut self, ex: &Exchange<'_>) -> Result<&[u8], Error> {
        self.wbuf.clear();
        ex.request.encode(ex.id, ex.flags, &mut self.wbuf);
        check_size(self.wbuf.len(), self.socket.max_message())?;

        self.send()?;
        let mut resend_after = ex.may_resend().then_some(RESEND_FIRST);
        loop {
            match self.socket.recv(&mut self.rbuf) {
                Ok(n) if n <= MAX_REPLY_LEN && reply_id(&self.rbuf[..n]) == Some(ex.id) => {
                    return Ok(&self.rbuf[..n]);
                }
                // Someone else's (late) reply, a runt, or an over-long one.
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // An ICMP error for an earlier datagram surfaces here on
                // some systems; the server may still answer this one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(Error::io(Phase::Receive, e)),
            }
            match wait(
                self.socket.fd(),
                false,
                ex.deadline,
                resend_after,
                Phase::Receive,
            )? {
                Ready::Yes => {}
                Ready::CapElapsed => {
                    self.send()?;
                    resend_after = resend_after.map(|d| (d * 2).min(RESEND_MAX));
                }
            }
        }
    }
}
