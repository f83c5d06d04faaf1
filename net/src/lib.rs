//! Datagram sockets for the transports the standard library lacks (TIPC,
//! SCTP one-to-many), shared by the server and the client library so each
//! address layout and socket call is written once.
//!
//! [`DgramSocket`] is a plain blocking socket with `recv_from`/`send_to`
//! over [`SockAddr`], which holds any of the address families used here.

pub mod pktinfo;
pub mod sctp;
pub mod tipc;

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub use pktinfo::Destination;
pub use tipc::TipcAddr;

/// A socket address of any family, as the kernel sees it.
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    /// An empty address for the kernel to fill.
    fn empty() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
        SockAddr {
            storage: unsafe { MaybeUninit::zeroed().assume_init() },
            len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// Copies a concrete `sockaddr_*` structure.
    pub(crate) fn from_raw<T: Copy>(addr: &T) -> Self {
        assert!(size_of::<T>() <= size_of::<libc::sockaddr_storage>());
        let mut out = Self::empty();
        // SAFETY: T fits in the storage (checked above); both are plain data.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr as *const T as *const u8,
                &mut out.storage as *mut _ as *mut u8,
                size_of::<T>(),
            );
        }
        out.len = size_of::<T>() as libc::socklen_t;
        out
    }

    pub fn family(&self) -> libc::c_int {
        libc::c_int::from(self.storage.ss_family)
    }

    /// Reads the address as a concrete structure, if it is at least that long.
    pub(crate) fn as_raw<T: Copy>(&self) -> Option<T> {
        if (self.len as usize) < size_of::<T>() {
            return None;
        }
        // SAFETY: the storage holds at least size_of::<T>() initialised bytes.
        Some(unsafe { std::ptr::read_unaligned(&self.storage as *const _ as *const T) })
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }

    /// The IP address and port, for `AF_INET`/`AF_INET6`.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                let a: libc::sockaddr_in = self.as_raw()?;
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a: libc::sockaddr_in6 = self.as_raw()?;
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: plain old data.
                let mut raw: libc::sockaddr_in = unsafe { MaybeUninit::zeroed().assume_init() };
                raw.sin_family = libc::AF_INET as libc::sa_family_t;
                raw.sin_port = a.port().to_be();
                raw.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                SockAddr::from_raw(&raw)
            }
            SocketAddr::V6(a) => {
                // SAFETY: plain old data.
                let mut raw: libc::sockaddr_in6 = unsafe { MaybeUninit::zeroed().assume_init() };
                raw.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                raw.sin6_port = a.port().to_be();
                raw.sin6_addr.s6_addr = a.ip().octets();
                raw.sin6_flowinfo = a.flowinfo();
                raw.sin6_scope_id = a.scope_id();
                SockAddr::from_raw(&raw)
            }
        }
    }
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(a) = self.as_inet() {
            return write!(f, "{a}");
        }
        if let Some(a) = TipcAddr::from_sockaddr(self) {
            return write!(f, "{a:?}");
        }
        write!(f, "<address family {}>", self.family())
    }
}

impl PartialEq for SockAddr {
    fn eq(&self, other: &Self) -> bool {
        let bytes = |a: &SockAddr| {
            // SAFETY: reading `len` initialised bytes of the storage.
            unsafe { std::slice::from_raw_parts(a.as_ptr() as *const u8, a.len as usize) }.to_vec()
        };
        self.len == other.len && bytes(self) == bytes(other)
    }
}

impl Eq for SockAddr {}

/// The socket family (`AF_INET`, `AF_INET6`) for an IP address.
pub fn inet_family(addr: &SocketAddr) -> libc::c_int {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// Where a socket bound to `addr` is reached from this host: the address
/// itself, or loopback for a wildcard address.
pub fn reachable_from_here(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        // As it is, with an IPv6 address's scope (a link-local one's).
        _ => addr,
    }
}

/// The address of a host named by a user, for server and library alike:
/// an IPv4 address, an IPv6 address (bare or in brackets), or a name, of
/// which the first IPv4 address is taken (what the original, IPv4 only,
/// would have used), else its first address.
pub fn resolve_host(host: &str) -> io::Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Some(ip) = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<Ipv6Addr>().ok())
    {
        return Ok(IpAddr::V6(ip));
    }
    if host.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the host name is empty",
        ));
    }
    let addrs: Vec<SocketAddr> = (host, 0).to_socket_addrs()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(SocketAddr::ip)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))
}

/// The listen backlog for servers: at least 1024, more when the system
/// allows it (`net.core.somaxconn`), so that a burst of connections is not
/// turned away by the kernel before they are accepted.
pub fn listen_backlog() -> libc::c_int {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_int>().ok())
        .unwrap_or(0);
    somaxconn.max(1024)
}

/// Gives socket `fd` a kernel send buffer of `bytes` (what the kernel may
/// hold of data written and not yet taken by the peer), which also stops
/// the kernel growing it by itself. Returns the size the kernel applied.
///
/// Linux doubles the `SO_SNDBUF` value it is given (half of the room is
/// its own bookkeeping) and caps it at `net.core.wmem_max` unless the
/// process may force it (`CAP_NET_ADMIN`), so the size is asked as half,
/// forced when allowed, and read back.
pub fn set_send_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let half = libc::c_int::try_from(bytes / 2)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "send buffer too large"))?;
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &half).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &half)?;
    }
    let mut applied: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `applied`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &mut applied as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(applied.max(0) as usize)
}

/// `setsockopt` on `fd` with a plain-data value.
fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the pointer and size describe `value`; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

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

/// Buffers for [`DgramSocket::recv_batch`]: room for `count` messages of
/// up to `size` bytes each, with their addresses and control data.
pub struct RecvBatch {
    buffers: Vec<Vec<u8>>,
    addrs: Vec<SockAddr>,
    controls: Vec<pktinfo::ControlBuf>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

impl RecvBatch {
    pub fn new(count: usize, size: usize) -> Self {
        let count = count.max(1);
        let mut batch = RecvBatch {
            buffers: (0..count).map(|_| vec![0; size]).collect(),
            addrs: (0..count).map(|_| SockAddr::empty()).collect(),
            controls: (0..count)
                .map(|_| pktinfo::ControlBuf([0; pktinfo::CONTROL_LEN]))
                .collect(),
            // SAFETY (both): all-zero iovec and mmsghdr are valid; they
            // are pointed at the buffers just below.
            iovecs: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
            headers: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
            received: 0,
        };
        // The vectors never grow, so what the headers point at stays put.
        for i in 0..count {
            batch.iovecs[i] = libc::iovec {
                iov_base: batch.buffers[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: batch.buffers[i].len(),
            };
            let hdr = &mut batch.headers[i].msg_hdr;
            hdr.msg_name = &mut batch.addrs[i].storage as *mut _ as *mut libc::c_void;
            hdr.msg_iov = &mut batch.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = batch.controls[i].0.as_mut_ptr() as *mut libc::c_void;
        }
        batch
    }

    /// Resets the lengths the kernel shortened in the first `most` headers.
    fn prepare(&mut self, most: usize) {
        self.received = 0;
        for header in &mut self.headers[..most] {
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_controllen = pktinfo::CONTROL_LEN as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
    }

    /// Message `i` of the last receive (below its count) and its bytes.
    pub fn message(&self, i: usize) -> (Message, &[u8]) {
        assert!(i < self.received, "message {i} of {}", self.received);
        let header = &self.headers[i];
        let hdr = &header.msg_hdr;
        let len = header.msg_len as usize;
        let mut from = self.addrs[i];
        from.len = hdr.msg_namelen;
        let message = Message {
            len,
            from,
            to: pktinfo::destination_of(hdr),
            complete: hdr.msg_flags & libc::MSG_TRUNC == 0,
        };
        (message, &self.buffers[i][..len])
    }
}

/// One message of a [`SendBatch`]: where its bytes are, and where to.
struct Outgoing {
    start: usize,
    end: usize,
    to: SockAddr,
    from: Option<Destination>,
}

/// Messages to send with one [`DgramSocket::send_batch`]: each is
/// appended to [`SendBatch::buffer`] and then marked with
/// [`SendBatch::mark`].
#[derive(Default)]
pub struct SendBatch {
    bytes: Vec<u8>,
    messages: Vec<Outgoing>,
    iovecs: Vec<libc::iovec>,
    controls: Vec<pktinfo::ControlBuf>,
    headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the next message's bytes go.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Makes what was appended to the buffer since `start` one message to
    /// `to`, sent from `from` when given; nothing when nothing was added.
    pub fn mark(&mut self, start: usize, to: SockAddr, from: Option<Destination>) {
        let end = self.bytes.len();
        if end > start {
            self.messages.push(Outgoing {
                start,
                end,
                to,
                from,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Builds the kernel's headers for the messages as they now are.
    fn prepare(&mut self) {
        let n = self.messages.len();
        self.iovecs.clear();
        self.headers.clear();
        self.controls
            .resize_with(n, || pktinfo::ControlBuf([0; pktinfo::CONTROL_LEN]));
        for m in &self.messages {
            self.iovecs.push(libc::iovec {
                iov_base: self.bytes[m.start..].as_ptr() as *mut libc::c_void,
                iov_len: m.end - m.start,
            });
        }
        for (i, m) in self.messages.iter().enumerate() {
            // SAFETY: an all-zero mmsghdr is valid (no control data).
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let hdr = &mut header.msg_hdr;
            hdr.msg_name = m.to.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = m.to.len;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            if let Some(from) = &m.from {
                pktinfo::write_source(hdr, &mut self.controls[i], from);
            }
            self.headers.push(header);
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
        self.headers.clear();
        self.iovecs.clear();
    }
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
    use std::sync::Arc;

    #[test]
    fn inet_addresses_round_trip() {
        for a in ["127.0.0.1:26010", "[::1]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(SockAddr::from(a).as_inet(), Some(a));
        }
    }

    #[test]
    fn a_send_buffer_is_applied_whole_and_read_back() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            set_send_buffer(s.as_raw_fd(), 256 << 10).unwrap(),
            256 << 10
        );
        assert_eq!(set_send_buffer(s.as_raw_fd(), 64 << 10).unwrap(), 64 << 10);
        let too_large = set_send_buffer(s.as_raw_fd(), usize::MAX).unwrap_err();
        assert_eq!(too_large.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            set_send_buffer(-1, 64 << 10).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }

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
    fn hosts_resolve_to_literals_in_either_spelling_and_names_to_ipv4_first() {
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(resolve_host("::1").unwrap(), v6);
        assert_eq!(resolve_host("[::1]").unwrap(), v6);
        assert_eq!(
            resolve_host("10.1.2.3").unwrap(),
            IpAddr::from([10, 1, 2, 3])
        );
        assert_eq!(
            resolve_host("localhost").unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(resolve_host("").is_err());
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
    fn a_batch_takes_every_queued_message_with_its_sender_and_destination() {
        let rx = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        rx.bind(&SockAddr::from("0.0.0.0:0".parse::<SocketAddr>().unwrap()))
            .unwrap();
        rx.enable_packet_info(false).unwrap();
        let port = rx.local_addr().unwrap().as_inet().unwrap().port();
        let to = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], port)));
        let senders: Vec<DgramSocket> = (0..3)
            .map(|_| DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap())
            .collect();
        for (i, tx) in senders.iter().enumerate() {
            tx.send_to(&vec![i as u8; 10 + i], &to).unwrap();
        }
        // One longer than a buffer, one more than a batch holds.
        senders[0].send_to(&[9u8; 100], &to).unwrap();
        senders[1].send_to(b"next batch", &to).unwrap();
        let mut batch = RecvBatch::new(4, 50);
        assert_eq!(rx.recv_batch(&mut batch, 4).unwrap(), 4);
        for (i, tx) in senders.iter().enumerate() {
            let (msg, bytes) = batch.message(i);
            assert_eq!(bytes, vec![i as u8; 10 + i]);
            assert!(msg.complete);
            let port = |a: &SockAddr| a.as_inet().unwrap().port();
            assert_eq!(port(&msg.from), port(&tx.local_addr().unwrap()));
            assert_eq!(msg.to, Some(Destination::V4(Ipv4Addr::LOCALHOST)));
        }
        let (cut, bytes) = batch.message(3);
        assert_eq!((cut.len, bytes.len(), cut.complete), (50, 50, false));
        // Only what is queued is taken: no waiting for a full batch.
        senders[2].send_to(b"then one", &to).unwrap();
        assert_eq!(rx.recv_batch(&mut batch, 4).unwrap(), 2);
        assert_eq!(batch.message(0).1, b"next batch");
        assert_eq!(batch.message(1).1, b"then one");
        // Never more than asked for.
        senders[0].send_to(b"one", &to).unwrap();
        senders[0].send_to(b"two", &to).unwrap();
        assert_eq!(rx.recv_batch(&mut batch, 1).unwrap(), 1);
        assert_eq!(rx.recv_batch(&mut batch, 4).unwrap(), 1);
        assert_eq!(batch.message(0).1, b"two");
    }

    #[test]
    fn a_send_batch_delivers_each_message_and_skips_one_the_kernel_refuses() {
        let bound = || {
            let s = DgramSocket::new(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
            s.bind(&SockAddr::from(
                "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            ))
            .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        };
        let (tx, a, c) = (bound(), bound(), bound());
        let nowhere = SockAddr::from("[::1]:9".parse::<SocketAddr>().unwrap());
        let mut batch = SendBatch::new();
        for (bytes, to) in [
            (&b"for a"[..], a.local_addr().unwrap()),
            (b"refused", nowhere),
            (b"", a.local_addr().unwrap()),
            (b"for c", c.local_addr().unwrap()),
        ] {
            let start = batch.buffer().len();
            batch.buffer().extend_from_slice(bytes);
            batch.mark(start, to, None);
        }
        let mut refused = Vec::new();
        tx.send_batch(&mut batch, |to, e| refused.push((to.as_inet(), e.kind())));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(batch.is_empty());
        let mut buf = [0u8; 16];
        let (n, _) = a.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"for a");
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"for c");
        a.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            a.recv_from(&mut buf).is_err(),
            "an empty message is not sent"
        );
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

    #[test]
    fn a_socket_on_a_wildcard_address_is_reached_through_loopback() {
        let cases = [
            ("0.0.0.0:9", "127.0.0.1:9"),
            ("[::]:9", "[::1]:9"),
            ("10.1.2.3:9", "10.1.2.3:9"),
            ("[fe80::1%2]:9", "[fe80::1%2]:9"),
        ];
        for (bound, woken) in cases {
            let bound: SocketAddr = bound.parse().unwrap();
            assert_eq!(reachable_from_here(bound), woken.parse().unwrap());
        }
    }
}
