//! The exchange logic shared by the datagram transports (UDP, TIPC, SCTP:
//! one message per request).
//!
//! A datagram can be lost, so waiting is bounded by the deadline, and a
//! request that is safe to repeat is sent again at growing intervals. Each
//! server has its own socket, so anything arriving on it is a reply from
//! that server; the id tells the current reply from a late one.
//!
//! The socket is blocking, and waiting for the reply is the receive itself,
//! bounded by the socket's receive timeout (`SO_RCVTIMEO`): a call is a
//! send and a receive, two system calls, not a receive that finds nothing
//! yet, a `poll` and a second receive. Sends never wait (`MSG_DONTWAIT`),
//! as on a non-blocking socket.

use std::io;
use std::time::Duration;

use super::{check_size, reply_id, Exchange, Link, MAX_REPLY_LEN};
use crate::error::{Error, Phase};
use crate::timeout::{Deadline, ReadTimeout, RESEND_FIRST, RESEND_MAX};

pub struct DatagramLink {
    socket: nmdb_net::DgramSocket,
    /// Where every request goes (a UDP or SCTP server, TIPC's multicast
    /// name).
    to: nmdb_net::SockAddr,
    /// The largest message this transport carries.
    max_message: usize,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    read_timeout: ReadTimeout,
}

/// When the wait for a reply stops to send the request again.
struct Resend {
    at: Deadline,
    interval: Duration,
}

impl Resend {
    fn first() -> Self {
        Resend {
            at: Deadline::after(RESEND_FIRST),
            interval: RESEND_FIRST,
        }
    }

    fn due(&self) -> bool {
        self.at.remaining().is_err()
    }

    /// How long a receive may wait before the resend: what is left, in
    /// whole milliseconds rounded down as for the deadline; zero once due.
    fn wait(&self) -> Duration {
        self.at
            .read_timeout()
            .ok()
            .flatten()
            .unwrap_or(Duration::ZERO)
    }

    fn next(&self) -> Self {
        let interval = (self.interval * 2).min(RESEND_MAX);
        Resend {
            at: Deadline::after(interval),
            interval,
        }
    }
}

impl DatagramLink {
    /// A link over `socket` (blocking: receives wait) to `to`.
    pub fn new(socket: nmdb_net::DgramSocket, to: nmdb_net::SockAddr, max_message: usize) -> Self {
        DatagramLink {
            socket,
            to,
            max_message,
            wbuf: Vec::new(),
            // One byte more than the largest valid reply, so that an
            // over-long (cut) datagram is recognisable.
            rbuf: vec![0; MAX_REPLY_LEN + 1],
            read_timeout: ReadTimeout::default(),
        }
    }

    fn send(&self) -> Result<(), Error> {
        loop {
            match self.socket.send_to_without_waiting(&self.wbuf, &self.to) {
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

    /// Bounds the next receive by the deadline and by `cap`, the time
    /// until the next resend.
    fn arm_read_timeout(&mut self, deadline: Deadline, cap: Option<Duration>) -> Result<(), Error> {
        let left = deadline
            .read_timeout()
            .map_err(|_| Error::Timeout(Phase::Receive))?;
        // The nearer of the two limits; none when neither has one.
        let wanted = left.into_iter().chain(cap).min();
        let socket = &self.socket;
        self.read_timeout
            .arm(wanted, |t| socket.set_read_timeout(t))
            .map_err(|e| Error::io(Phase::Receive, e))
    }
}

impl Link for DatagramLink {
    fn call(&mut self, ex: &Exchange<'_>) -> Result<&[u8], Error> {
        self.wbuf.clear();
        ex.request.encode(ex.id, ex.flags, &mut self.wbuf);
        check_size(self.wbuf.len(), self.max_message)?;

        self.send()?;
        // Every call's first wait ends by the first resend time, writes'
        // too (they are never resent: they just wait on), so that calls of
        // any kind with the same timeout find the receive timeout already
        // set.
        let mut resend = Some(Resend::first());
        loop {
            if let Some(due) = resend.as_ref().filter(|r| r.due()) {
                resend = if ex.may_resend() {
                    self.send()?;
                    Some(due.next())
                } else {
                    None
                };
            }
            self.arm_read_timeout(ex.deadline, resend.as_ref().map(Resend::wait))?;
            match self.socket.recv_from(&mut self.rbuf) {
                Ok((n, _)) if n <= MAX_REPLY_LEN && reply_id(&self.rbuf[..n]) == Some(ex.id) => {
                    return Ok(&self.rbuf[..n]);
                }
                // Someone else's (late) reply, a runt, or an over-long one.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The receive timeout ran out: the deadline is checked when
                // the next receive is armed, the resend time before.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // An ICMP error for an earlier datagram surfaces here on
                // some systems; the server may still answer this one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(Error::io(Phase::Receive, e)),
            }
        }
    }
}
