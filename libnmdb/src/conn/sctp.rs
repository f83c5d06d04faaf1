//! SCTP (one-to-many `SOCK_SEQPACKET` socket, one request per message).
//!
//! Not carried yet (issue 4): an SCTP link will be a
//! [`super::datagram::DatagramLink`] over a one-to-many socket. Until then
//! adding an SCTP server fails, with a reason that says whether the host
//! could have carried it at all.

use std::net::SocketAddrV4;

use super::Link;
use crate::error::Error;

pub fn open(_server: SocketAddrV4) -> Result<Box<dyn Link>, Error> {
    // SAFETY: socket() with constant arguments; the descriptor is closed
    // right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return Err(Error::Unavailable(
            "SCTP is not available on this host (the kernel has no SCTP support)",
        ));
    }
    // SAFETY: fd was just returned by socket().
    unsafe { libc::close(fd) };
    Err(Error::Unavailable(
        "this build of libnmdb does not carry SCTP yet",
    ))
}
