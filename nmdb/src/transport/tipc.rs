//! TIPC: reliable datagrams bound to the name sequence
//! `{26001, lower, upper}` with cluster scope (a single name when lower
//! equals upper). Clients multicast to the name, so passive mirrors bound
//! to it receive every request too.

use super::datagram::{Datagram, Kind};
use nmdb_net::tipc::{rdm_socket, TipcAddr};
use nmdb_proto::TIPC_SERVER_TYPE;
use std::io;

pub fn bind(lower: u32, upper: u32) -> io::Result<Datagram> {
    let socket = rdm_socket()?;
    let name = if lower == upper {
        TipcAddr::Name {
            service: TIPC_SERVER_TYPE,
            instance: lower,
        }
    } else {
        TipcAddr::NameSeq {
            service: TIPC_SERVER_TYPE,
            lower,
            upper,
        }
    };
    socket.bind(&name.to_sockaddr())?;
    Datagram::new(socket, Kind::Tipc)
}
