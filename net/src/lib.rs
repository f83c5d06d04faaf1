//! Datagram sockets for the transports the standard library lacks (TIPC,
//! SCTP one-to-many), shared by the server and the client library so each
//! address layout and socket call is written once.
//!
//! [`DgramSocket`] is a plain blocking socket with `recv_from`/`send_to`
//! over [`SockAddr`], which holds any of the address families used here.

mod addr;
mod batch;
mod dgram;
pub mod pktinfo;
pub mod sctp;
mod sys;
pub mod tipc;

pub use addr::{inet_family, reachable_from_here, resolve_host, SockAddr};
pub use batch::{RecvBatch, SendBatch};
pub use dgram::{DgramSocket, Message};
pub use pktinfo::Destination;
pub use sys::{listen_backlog, os_result, set_send_buffer};
pub use tipc::TipcAddr;
