//! SCTP one-to-many sockets (`SOCK_SEQPACKET`): one message is one
//! request, message boundaries are kept, and replies go to the sender's
//! address over its association.

use crate::{DgramSocket, SockAddr};
use std::io;
use std::net::SocketAddr;

/// Opens a one-to-many SCTP socket for `family` (`AF_INET`/`AF_INET6`).
/// Fails with `EPROTONOSUPPORT` on a kernel without SCTP.
pub fn seqpacket_socket(family: libc::c_int) -> io::Result<DgramSocket> {
    DgramSocket::new(family, libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP)
}

/// A listening one-to-many socket bound to `addr`.
pub fn listen(addr: SocketAddr) -> io::Result<DgramSocket> {
    let s = seqpacket_socket(crate::inet_family(&addr))?;
    let one: libc::c_int = 1;
    s.setsockopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(crate::listen_backlog())?;
    Ok(s)
}

/// True when this kernel can open SCTP sockets.
pub fn available() -> bool {
    seqpacket_socket(libc::AF_INET).is_ok()
}
