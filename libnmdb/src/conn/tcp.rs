//! TCP: one persistent connection per server, messages behind a 4-byte
//! length prefix that counts itself.
//!
//! Invariants: a frame is either written whole or the connection is dropped
//! (a half-written frame would desynchronise the server); `rbuf` only holds
//! bytes received on the current connection. After any break the next call
//! connects again, so a restarted server is picked up without the caller
//! doing anything. A reply not complete by the deadline stays in `rbuf`
//! and is skipped by id on the next call.
//!
//! The socket is blocking, and waiting for a reply is the read itself,
//! bounded by the socket's receive timeout (`SO_RCVTIMEO`): one system call
//! per reply instead of a `poll` and a read. The timeout is set to the time
//! left in whole milliseconds, rounded down, so that calls with the same
//! timeout find it already set and never wait past their deadline. Sends
//! and the check for a closed connection do not wait (`MSG_DONTWAIT`).

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use nmdb_proto::frame::{next_frame, TCP_PREFIX_LEN};
use nmdb_proto::MAX_MSG_SIZE;

use super::wait::wait_writable;
use super::{check_size, reply_id, Exchange, Link, MAX_REPLY_LEN};
use crate::error::{Error, Phase};
use crate::timeout::{Deadline, ReadTimeout};

/// How much to ask the kernel for per read.
const READ_CHUNK: usize = 16 * 1024;

pub struct TcpLink {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Bytes at the front of `rbuf` already handed out (the last reply).
    consumed: usize,
    read_timeout: ReadTimeout,
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
            read_timeout: ReadTimeout::default(),
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
            .map_err(|e| Error::io(Phase::Connect, e))?;
        self.stream = Some(stream);
        self.read_timeout = ReadTimeout::default();
        self.rbuf.clear();
        self.consumed = 0;
        Ok(())
    }

    /// Bounds the next read by what is left of `deadline`.
    fn arm_read_timeout(&mut self, deadline: Deadline) -> Result<(), Error> {
        let wanted = deadline
            .read_timeout()
            .map_err(|_| Error::Timeout(Phase::Receive))?;
        let stream = self.stream.as_ref().ok_or(Error::Closed)?;
        self.read_timeout
            .arm(wanted, |t| stream.set_read_timeout(t))
            .map_err(|e| Error::io(Phase::Receive, e))
    }

    /// True when the server closed or reset the idle connection (it was
    /// restarted, or dropped us). Checked before sending, so that a write is
    /// not lost on a connection already known dead. Anything else waiting is
    /// a late reply, kept to be skipped by id.
    fn peer_closed(&mut self) -> bool {
        let Some(stream) = self.stream.as_ref() else {
            return false;
        };
        let mut chunk = [0u8; 512];
        loop {
            // SAFETY: `chunk` is valid for its length; the socket is ours.
            let got = unsafe {
                libc::recv(
                    stream.as_raw_fd(),
                    chunk.as_mut_ptr() as *mut libc::c_void,
                    chunk.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match got {
                0 => return true,
                // A server flooding us with unrequested data is broken too.
                _ if got > 0 && self.rbuf.len() > 4 * MAX_MSG_SIZE => return true,
                n if n > 0 => self.rbuf.extend_from_slice(&chunk[..n as usize]),
                _ => match io::Error::last_os_error().kind() {
                    io::ErrorKind::WouldBlock => return false,
                    io::ErrorKind::Interrupted => {}
                    _ => return true,
                },
            }
        }
    }

    fn disconnect(&mut self) {
        self.stream = None;
        self.rbuf.clear();
        self.consumed = 0;
    }

    fn send(&mut self, deadline: Deadline) -> Result<(), Error> {
        let fd = self.stream.as_ref().ok_or(Error::Closed)?.as_raw_fd();
        let mut off = 0;
        while off < self.wbuf.len() {
            let rest = &self.wbuf[off..];
            // MSG_NOSIGNAL: a broken connection is an EPIPE error here,
            // never a SIGPIPE killing the caller's program.
            // SAFETY: `rest` is valid for its length; the socket is ours.
            let sent = unsafe {
                libc::send(
                    fd,
                    rest.as_ptr() as *const libc::c_void,
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            match sent {
                0 => return Err(Error::Closed),
                n if n > 0 => off += n as usize,
                _ => match io::Error::last_os_error() {
                    e if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_writable(fd, deadline, Phase::Send)?;
                    }
                    e if e.kind() == io::ErrorKind::Interrupted => {}
                    e => return Err(Error::io(Phase::Send, e)),
                },
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
            self.arm_read_timeout(deadline)?;
            let stream = self.stream.as_mut().ok_or(Error::Closed)?;
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
                // The receive timeout ran out: the deadline is checked
                // when the next read is armed.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
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
