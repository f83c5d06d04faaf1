//! Transports: where request bytes arrive and reply bytes leave.
//!
//! Stream transports (TCP) run as tasks on the async runtime, one per
//! connection, so thousands of idle clients cost little. Datagram transports
//! (UDP, and TIPC and SCTP beside it) share one receive loop run by a few
//! blocking threads per socket: a datagram is a whole request, so there is
//! no connection state to keep. All of them hand whole messages to the
//! [`Engine`](crate::engine::Engine).

pub mod datagram;
pub mod tcp;
pub mod udp;
