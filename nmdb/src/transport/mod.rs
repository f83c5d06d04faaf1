//! Transports: where request bytes arrive and reply bytes leave.
//!
//! Stream transports (TCP) are served by the network threads' event loops
//! ([`crate::netthreads`]), each connection by one loop, so thousands of
//! idle clients cost little. Datagram transports (UDP, TIPC, SCTP) share one
//! receive loop run by blocking threads, one per core for each socket (one
//! for SCTP): a message is a whole request, so there is no connection state
//! to keep. All of them hand whole messages to the
//! [`Engine`](crate::engine::Engine).

pub mod datagram;
pub mod sctp;
pub mod tcp;
pub mod tipc;
pub mod udp;
