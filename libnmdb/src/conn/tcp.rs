//! TCP: one persistent connection per server, messages behind a 4-byte
//! length prefix that counts itself.
//!
//! Invariants: a frame is either written whole or the connection is dropped
//! (a half-written frame would desynchronise the server); `rbuf` only holds
//! bytes received on the current connection. After any break the next call
//! connects again, so a restarted server is picked up without the caller
//! doing anything. A reply not complete by the deadline stays in `rbuf`
//! and is skipped by id on the next call.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use nmdb_proto::frame::{next_frame, TCP_PREFIX_LEN};
use nmdb_proto::MAX_MSG_SIZE;

use super::wait::wait;
use super::{check_size, reply_id, Exchange, Link, MAX_REPLY_LEN};
use crate::error::{Error, Phase};
use crate::timeout::Deadline;

/// How much to ask the kernel for per read.
const READ_CHUNK: usize = 16 * 1024;

pub struct TcpLink {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Bytes at the front of `rbuf` already handed out (the last reply).
    consumed: usize,
}

impl TcpLink {
    /// Connects now: adding a server that does not accept connections fails.
    pub fn connect(addr: SocketAddr, deadline: Deadline) -> Result<Self, Error> {
        let mut link = TcpLink {
            addr,
            stream: None,
            wbuf: Vec::new(),
            rbuf: Vec::new(),
            consumed: 0,
        };
        link.ensure_connected(deadline)?;
        Ok(link)
    }

    fn ensure_connected(&mut self, deadline: Deadline) -> Result<(), Error> {
        if self.stream.is_some() && self.peer_closed() {
            self.disconnect();
        }
        if self.stream.is_some() {
            return Ok(());
        }
        let left = deadline
            .remaining()
            .map_err(|_| Error::Timeout(Phase::Connect))?;
        let addr = self.addr;
        let stream = match left {
            Some(left) => TcpStream::connect_timeout(&addr, left),
            None => TcpStream::connect(addr),
        }
        .map_err(|e| Error::io(Phase::Connect, e))?;
        // Requests are small and answered one at a time: Nagle would only
        // add latency.
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_nonblocking(true))
            .map_err(|e| Error::io(Phase::Connect, e))?;
        self.stream = Some(stream);
        self.rbuf.clear();
        self.consumed = 0;
        Ok(())
    }

    /// True when the server closed or reset the idle connection (it was
    /// restarted, or dropped us). Checked before sending, so that a write is
    /// not lost on a connection already known dead. Anything else waiting is
    /// a late reply, kept to be skipped by id.
    fn peer_closed(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut chunk = [0u8; 512];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return true,
                // A server flooding us with unrequested data is broken too.
                Ok(_) if self.rbuf.len() > 4 * MAX_MSG_SIZE => return true,
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    fn disconnect(&mut self) {
        self.stream = None;
        self.rbuf.clear();
        self.consumed = 0;
    }

    fn send(&mut self, deadline: Deadline) -> Result<(), Error> {
        let stream = self.stream.as_mut().ok_or(Error::Closed)?;
        let mut off = 0;
        while off < self.wbuf.len() {
            // std sends with MSG_NOSIGNAL: a broken connection is an EPIPE
            // error here, never a SIGPIPE killing the caller's program.
            match stream.write(&self.wbuf[off..]) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(stream.as_raw_fd(), true, deadline, None, Phase::Send)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Phase::Send, e)),
            }
        }
        Ok(())
    }

    /// Reads until a whole frame carrying `id` is in `rbuf`; returns the
    /// message's range (prefix excluded). Frames with other ids are dropped.
    fn receive(&mut self, id: u32, deadline: Deadline) -> Result<(usize, usize), Error> {
        loop {
            match next_frame(&self.rbuf, MAX_REPLY_LEN + TCP_PREFIX_LEN) {
                Err(e) => return Err(Error::BadFrame(e)),
                Ok(Some(total)) => {
                    let msg = &self.rbuf[TCP_PREFIX_LEN..total];
                    if reply_id(msg) == Some(id) {
                        self.consumed = total;
                        return Ok((TCP_PREFIX_LEN, total));
                    }
                    self.rbuf.drain(..total);
                    continue;
                }
                Ok(None) => {}
            }
            let stream = self.stream.as_mut().ok_or(Error::Closed)?;
            // Wait first: the reply is hardly ever there the moment the
            // request left, and a read that finds nothing costs a system
            // call and a buffer fill per request.
            wait(stream.as_raw_fd(), false, deadline, None, Phase::Receive)?;
            let start = self.rbuf.len();
            self.rbuf.resize(start + READ_CHUNK, 0);
            let got = stream.read(&mut self.rbuf[start..]);
            let filled = match got {
                Ok(n) => n,
                Err(_) => 0,
            };
            self.rbuf.truncate(start + filled);
            match got {
                Ok(0) => return Err(Error::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(stream.as_raw_fd(), false, deadline, None, Phase::Receive)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Phase::Receive, e)),
            }
        }
    }

    fn attempt(&mut self, ex: &Exchange<'_>) -> Result<(usize, usize), Error> {
        self.ensure_connected(ex.deadline)?;
        self.send(ex.deadline)?;
        self.receive(ex.id, ex.deadline)
    }
}

impl Link for TcpLink {
    fn call(&mut self, ex: &Exchange<'_>) -> Result<&[u8], Error> {
        self.rbuf.drain(..self.consumed);
        self.consumed = 0;

        self.wbuf.clear();
        ex.request.encode_framed(ex.id, ex.flags, &mut self.wbuf);
        check_size(self.wbuf.len(), MAX_MSG_SIZE)?;

        let mut result = self.attempt(ex);
        // A connection that went stale while idle (server restarted) shows up
        // as a reset or a close on first use. A read can simply be tried again
        // on a new connection; a write cannot, as it may have been applied.
        if let Err(e) = &result {
            if e.breaks_connection() && ex.may_resend() {
                self.disconnect();
                result = self.attempt(ex);
            }
        }
        match result {
            Ok((from, to)) => Ok(&self.rbuf[from..to]),
            Err(e) => {
                if e.breaks_connection() {
                    self.disconnect();
                }
                Err(e)
            }
        }
    }
}
