//! TIPC (`AF_TIPC`, `SOCK_RDM`, requests multicast to `{26001, port}`).
//!
//! Not carried yet (issue 4): a TIPC link will be a
//! [`super::datagram::DatagramLink`] over an RDM socket. Until then adding a
//! TIPC server fails, with a reason that says whether the host could have
//! carried it at all.

use super::Link;
use crate::error::Error;

pub fn open(_instance: u32) -> Result<Box<dyn Link>, Error> {
    // SAFETY: socket() with constant arguments; the descriptor is closed
    // right away.
    let fd = unsafe { libc::socket(libc::AF_TIPC, libc::SOCK_RDM, 0) };
    if fd < 0 {
        return Err(Error::Unavailable(
            "TIPC is not available on this host (the kernel has no AF_TIPC support)",
        ));
    }
    // SAFETY: fd was just returned by socket().
    unsafe { libc::close(fd) };
    Err(Error::Unavailable(
        "this build of libnmdb does not carry TIPC yet",
    ))
}
