//! TIPC (`AF_TIPC`, `SOCK_RDM`): each request is multicast to the name
//! `{26001, port}`, so every server bound to it (an active one and its
//! passive mirrors) receives it; only the active one answers, to this
//! socket.

use nmdb_net::tipc::{rdm_socket, TipcAddr};
use nmdb_proto::{MAX_MSG_SIZE, TIPC_SERVER_TYPE};

use super::datagram::DatagramLink;
use super::Link;
use crate::error::{Error, Phase};

pub fn open(instance: u32) -> Result<Box<dyn Link>, Error> {
    let socket = rdm_socket().map_err(|e| match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => Error::Unavailable(
            "TIPC is not available on this host (the kernel has no AF_TIPC support)",
        ),
        _ => Error::io(Phase::Connect, e),
    })?;
    let to = TipcAddr::Mcast {
        service: TIPC_SERVER_TYPE,
        lower: instance,
        upper: instance,
    }
    .to_sockaddr();
    Ok(Box::new(DatagramLink::new(socket, to, MAX_MSG_SIZE)))
}
