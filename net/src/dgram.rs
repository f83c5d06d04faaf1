//! [`DgramSocket`]: a blocking message socket over [`SockAddr`].

use crate::sys::{cvt, cvt_size, setsockopt};
use crate::{pktinfo, Destination, RecvBatch, SendBatch, SockAddr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// What [`DgramSocket::recv_message`] received.
#[derive(Debug)]
pub struct Message {
    /// Bytes placed in the buffer.
    pub len: usize,
    pub from: SockAddr,
    /// The address it was sent to, when packet information is on (see
    /// [`DgramSocket::enable_packet_info`]).
    pub to: Option<Destination>,
    /// False when the message was longer than the buffer (or, on a socket
    /// with record marks, continues in the next call).
    pub complete: bool,
}

/// A blocking message socket (datagram, reliable datagram or SCTP
/// one-to-many); closed when dropped.
#[derive(Debug)]
pub struct DgramSocket {
    fd: OwnedFd,
}

impl DgramSocket {
    /// `socket(domain, ty | SOCK_CLOEXEC, protocol)`.
    pub fn new(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<Self> {
        // SAFETY: socket() has no memory arguments.
        let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
        // SAFETY: `fd` is a fresh descriptor that we now own.
        Ok(DgramSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn bind(&self, addr: &SockAddr) -> io::Result<()> {
        // SAFETY: the pointer and length describe `addr`'s storage.
        cvt(unsafe { libc::bind(self.fd.as_raw_fd(), addr.as_ptr(), addr.len) }).map(drop)
    }

    /// Fixes the peer: datagrams from any other address are no longer
    /// received.
    pub fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        // SAFETY: the pointer and length describe `addr`'s storage.
        cvt(unsafe { libc::connect(self.fd.as_raw_fd(), addr.as_ptr(), addr.len) }).map(drop)
    }

    pub fn listen(&self, backlog: libc::c_int) -> io::Result<()> {
        // SAFETY: plain system call on our descriptor.
        cvt(unsafe { libc::listen(self.fd.as_raw_fd(), backlog) }).map(drop)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SockAddr> {
        let mut addr = SockAddr::empty();
        // SAFETY: the kernel writes at most `len` bytes into the storage.
        cvt(unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                &mut addr.storage as *mut _ as *mut libc::sockaddr,
                &mut addr.len,
            )
        })?;
        Ok(addr)
    }

    /// Bounds how long `recv_from` blocks (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let t = timeout.unwrap_or_default();
        let mut tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // A zero timeval means forever: a timeout under a microsecond
        // (zero included) waits one instead.
        if timeout.is_some() && tv.tv_sec == 0 && tv.tv_usec == 0 {
            tv.tv_usec = 1;
        }
        self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }

    /// Stops receiving, sending still works: on UDP every thread blocked
    /// in a receive on this socket returns at once, and later receives
    /// return a message of length 0 without waiting. How receivers that
    /// wait without a timeout are told to stop. An unconnected socket is
    /// shut all the same, though the call reports `ENOTCONN`; that is not
    /// an error here. (TIPC takes only `SHUT_RDWR`, and one-to-many SCTP
    /// sockets ignore it.)
    pub fn shutdown_read(&self) -> io::Result<()> {
        // SAFETY: plain system call on our descriptor.
        match cvt(unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RD) }) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            r => r.map(drop),
        }
    }

    /// `setsockopt` with a plain-data value.
    pub fn setsockopt<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
    ) -> io::Result<()> {
        setsockopt(self.fd.as_raw_fd(), level, name, value)
    }

    /// Receives one message; `WouldBlock` when the read timeout passed.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        let mut addr = SockAddr::empty();
        // SAFETY: `buf` and the address storage are valid for the lengths given.
        let n = cvt_size(unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut addr.storage as *mut _ as *mut libc::sockaddr,
                &mut addr.len,
            )
        })?;
        Ok((n, addr))
    }

    /// Receives one message and says whether all of it fit in `buf`.
    /// A message is cut short when the kernel flags it truncated
    /// (`MSG_TRUNC`: UDP, TIPC) or, with `record_marks` (SCTP), when the
    /// end-of-record mark is missing: the rest follows in later calls.
    pub fn recv_message(&self, buf: &mut [u8], record_marks: bool) -> io::Result<Message> {
        let mut addr = SockAddr::empty();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid (no control data).
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = &mut addr.storage as *mut _ as *mut libc::c_void;
        hdr.msg_namelen = addr.len;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        let mut control = pktinfo::ControlBuf([0; pktinfo::CONTROL_LEN]);
        hdr.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
        hdr.msg_controllen = pktinfo::CONTROL_LEN as _;
        // SAFETY: `hdr` points at `buf`, the address storage and the control
        // buffer, all valid for the lengths given, and outlives the call.
        let len = cvt_size(unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut hdr, 0) })?;
        addr.len = hdr.msg_namelen;
        let truncated = hdr.msg_flags & libc::MSG_TRUNC != 0;
        let unfinished = record_marks && hdr.msg_flags & libc::MSG_EOR == 0;
        Ok(Message {
            len,
            from: addr,
            to: pktinfo::destination_of(&hdr),
            complete: !truncated && !unfinished,
        })
    }

    /// Receives up to `most` messages (at most the batch's room) with one
    /// system call: waits for the first, then takes those already queued
    /// (`recvmmsg` with `MSG_WAITFORONE`). For sockets without record
    /// marks (UDP, TIPC). Returns how many arrived; [`RecvBatch::message`]
    /// gives each.
    pub fn recv_batch(&self, batch: &mut RecvBatch, most: usize) -> io::Result<usize> {
        let most = most.clamp(1, batch.headers.len());
        batch.prepare(most);
        // SAFETY: every header points at its own buffer, address storage
        // and control buffer in `batch`, valid for the lengths given; their
        // vectors never grow or move.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                batch.headers.as_mut_ptr(),
                most as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        batch.received = cvt_size(got as isize)?;
        Ok(batch.received)
    }

    /// Sends every message gathered in `batch` with as few system calls as
    /// the kernel allows (`sendmmsg`), then empties it. A message the
    /// kernel refuses is reported to `failed` and skipped; the others go.
    pub fn send_batch(&self, batch: &mut SendBatch, mut failed: impl FnMut(&SockAddr, io::Error)) {
        if let [one] = &batch.messages[..] {
            // The plain call costs less for one message.
            let bytes = &batch.bytes[one.start..one.end];
            if let Err(e) = self.send_from(bytes, &one.to, one.from.as_ref()) {
                failed(&one.to, e);
            }
            batch.clear();
            return;
        }
        batch.prepare();
        let mut next = 0;
        while next < batch.headers.len() {
            let rest = &mut batch.headers[next..];
            // SAFETY: every header points at its message in `batch.bytes`,
            // its address and its control buffer, all valid for the lengths
            // given and unchanged until the call returns; the kernel only
            // reads them.
            let sent = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    libc::MSG_NOSIGNAL,
                )
            };
            match cvt_size(sent as isize) {
                Ok(n) => next += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed(&batch.messages[next].to, e);
                    next += 1;
                }
            }
        }
        batch.clear();
    }

    /// Sends one message to `addr`, from the source address `from` when
    /// given (the destination of the request it answers).
    pub fn send_from(
        &self,
        msg: &[u8],
        addr: &SockAddr,
        from: Option<&Destination>,
    ) -> io::Result<usize> {
        let Some(from) = from else {
            return self.send_to(msg, addr);
        };
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr() as *mut libc::c_void,
            iov_len: msg.len(),
        };
        // SAFETY: an all-zero msghdr is valid.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr.len;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        let mut control = pktinfo::ControlBuf([0; pktinfo::CONTROL_LEN]);
        pktinfo::write_source(&mut hdr, &mut control, from);
        // SAFETY: `hdr` points at `msg`, `addr` and `control`, all valid for
        // the lengths given; the kernel only reads them.
        cvt_size(unsafe { libc::sendmsg(self.fd.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) })
    }

    /// Sends one message to `addr`.
    pub fn send_to(&self, msg: &[u8], addr: &SockAddr) -> io::Result<usize> {
        self.sendto(msg, addr, libc::MSG_NOSIGNAL)
    }

    /// Sends one message to `addr`, or fails with `WouldBlock` where
    /// [`DgramSocket::send_to`] would wait (the send buffer is full, an
    /// SCTP association is being set up): a blocking socket whose receives
    /// wait and whose sends do not.
    pub fn send_to_without_waiting(&self, msg: &[u8], addr: &SockAddr) -> io::Result<usize> {
        self.sendto(msg, addr, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    }

    fn sendto(&self, msg: &[u8], addr: &SockAddr, flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: `msg` and `addr` are valid for the lengths given.
        cvt_size(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                flags,
                addr.as_ptr(),
                addr.len,
            )
        })
    }
}

impl AsRawFd for DgramSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    #[test]
    fn udp_datagram_round_trip_through_the_raw_socket() {
        let rx = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        rx.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let tx = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        tx.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        tx.send_to(b"ping", &rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, tx.local_addr().unwrap());
    }

    #[test]
    fn a_udp_receive_waiting_without_timeout_returns_once_reading_is_shut() {
        let rx = Arc::new(DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap());
        rx.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let mut batch = RecvBatch::new(4, 64);
                    let mut one = [0u8; 64];
                    (
                        rx.recv_message(&mut one, false).map(|m| m.len),
                        rx.recv_batch(&mut batch, 4),
                    )
                })
            })
            .collect();
        // Long enough for both threads to be asleep in the receive; were
        // they not yet, their receives would return at once all the same.
        std::thread::sleep(Duration::from_millis(50));
        rx.shutdown_read().unwrap();
        for t in waiting {
            let (one, batch) = t.join().unwrap();
            assert_eq!(one.unwrap(), 0);
            assert!(batch.is_ok());
        }
    }

    #[test]
    fn a_message_longer_than_the_buffer_is_reported_incomplete() {
        let rx = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        rx.bind(&SockAddr::from(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        ))
        .unwrap();
        let tx = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(&[7u8; 100], &to).unwrap();
        tx.send_to(&[8u8; 10], &to).unwrap();
        let mut buf = [0u8; 50];
        let cut = rx.recv_message(&mut buf, false).unwrap();
        assert_eq!((cut.len, cut.complete), (50, false));
        let whole = rx.recv_message(&mut buf, false).unwrap();
        assert_eq!((whole.len, whole.complete), (10, true));
        let port = |a: &SockAddr| a.as_inet().unwrap().port();
        assert_eq!(port(&whole.from), port(&tx.local_addr().unwrap()));
    }

    #[test]
    fn a_reply_sent_from_the_request_destination_reaches_a_connected_client() {
        let server = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        server
            .bind(&SockAddr::from("0.0.0.0:0".parse::<SocketAddr>().unwrap()))
            .unwrap();
        server.enable_packet_info(false).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = server.local_addr().unwrap().as_inet().unwrap().port();
        // 127.0.0.2 is a loopback address, but not the one a reply to
        // 127.0.0.1 is sent from by default.
        let second: SocketAddr = ([127, 0, 0, 2], port).into();
        let client = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        client.connect(&SockAddr::from(second)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 16];

        client.send_to(b"plain", &SockAddr::from(second)).unwrap();
        let req = server.recv_message(&mut buf, false).unwrap();
        assert_eq!(req.to, Some(Destination::V4(Ipv4Addr::new(127, 0, 0, 2))));
        server.send_to(b"plain", &req.from).unwrap();
        assert!(
            client.recv_from(&mut buf).is_err(),
            "a reply from the default source is filtered out by the connected client"
        );

        client.send_to(b"pinned", &SockAddr::from(second)).unwrap();
        let req = server.recv_message(&mut buf, false).unwrap();
        server
            .send_from(b"pinned", &req.from, req.to.as_ref())
            .unwrap();
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.as_inet()), (&b"pinned"[..], Some(second)));
    }

    #[test]
    fn read_timeout_gives_would_block() {
        let s = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let err = s.recv_from(&mut [0u8; 4]).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }

    #[test]
    fn a_read_timeout_under_a_microsecond_still_ends_the_wait() {
        // What is left of a deadline can be a few hundred nanoseconds; in
        // whole microseconds that is a zero timeval, which waits forever.
        for tiny in [Duration::ZERO, Duration::from_nanos(500)] {
            let s = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
            s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
                .unwrap();
            s.set_read_timeout(Some(tiny)).unwrap();
            let (done, waited) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = done.send(s.recv_from(&mut [0u8; 4]).map(drop));
            });
            let ended = waited
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("a {tiny:?} timeout waited forever"));
            assert!(ended.is_err(), "nothing was sent");
        }
    }
}
