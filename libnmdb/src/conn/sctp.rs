//! SCTP: a one-to-many `SOCK_SEQPACKET` socket per server; each request is
//! one message, and the association is set up by the first `sendto`.

use std::net::SocketAddr;

use nmdb_proto::MAX_MSG_SIZE;

use super::datagram::DatagramLink;
use super::Link;
use crate::error::{Error, Phase};

pub fn open(server: SocketAddr) -> Result<Box<dyn Link>, Error> {
    let family = nmdb_net::inet_family(&server);
    let socket = nmdb_net::sctp::seqpacket_socket(family).map_err(|e| match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT) => {
            Error::Unavailable(
                "SCTP is not available on this host (the kernel has no SCTP support)",
            )
        }
        _ => Error::io(Phase::Connect, e),
    })?;
    Ok(Box::new(DatagramLink::new(
        socket,
        server.into(),
        MAX_MSG_SIZE,
    )))
}
