//! Connections to one server: send one request, get back the reply that
//! carries its id.
//!
//! Each transport implements [`Link`]. Stream transports (TCP) frame
//! messages behind a length prefix and re-connect after a broken connection;
//! datagram transports (UDP, TIPC, SCTP) send one message per
//! datagram and may re-send requests that are safe to repeat. All of them
//! give up at the call's deadline and skip replies whose id is not the one
//! they wait for (a late answer to an earlier, timed-out request).

mod datagram;
mod sctp;
mod tcp;
mod tipc;
mod udp;
mod wait;

use nmdb_proto::{Request, RequestCode, MAX_DATA_SIZE, REPLY_HEADER_LEN};

use crate::error::Error;
use crate::server::Endpoint;
use crate::timeout::Deadline;

/// The largest reply a valid server sends: a value of the largest size the
/// protocol allows, behind the reply header and its size field. Anything
/// announcing more is not a reply we can trust.
pub const MAX_REPLY_LEN: usize = REPLY_HEADER_LEN + 4 + MAX_DATA_SIZE;

/// One request on its way.
pub struct Exchange<'a> {
    pub request: Request<'a>,
    pub flags: u16,
    /// 28-bit request id, never 0, unique within the handle.
    pub id: u32,
    pub deadline: Deadline,
}

impl Exchange<'_> {
    /// Requests that change nothing on the server may be sent again when the
    /// reply seems lost; a write (an INCR, a CAS) must never be applied twice.
    pub fn may_resend(&self) -> bool {
        safe_to_repeat(self.request.code())
    }
}

/// The request codes that may be sent more than once for one call.
pub fn safe_to_repeat(code: RequestCode) -> bool {
    matches!(
        code,
        RequestCode::Get | RequestCode::FirstKey | RequestCode::NextKey | RequestCode::Stats
    )
}

/// A connection to one server. Calls on one link are serialised by the
/// caller (one mutex per server), so a link handles one exchange at a time.
pub trait Link: Send {
    /// Sends the request and returns the reply message (no framing) whose id
    /// is the request's. The slice lives in the link's buffer.
    fn call(&mut self, ex: &Exchange<'_>) -> Result<&[u8], Error>;
}

/// Opens a link to `endpoint`. TCP connects now (so that adding an
/// unreachable server fails, as it did in the original); datagram transports
/// only create their socket.
pub fn open(endpoint: &Endpoint, deadline: Deadline) -> Result<Box<dyn Link>, Error> {
    use crate::server::Transport;
    match *endpoint {
        Endpoint::Tipc { instance } => tipc::open(instance),
        Endpoint::Inet { transport, addr } => match transport {
            Transport::Tcp => Ok(Box::new(tcp::TcpLink::connect(addr, deadline)?)),
            Transport::Udp => Ok(Box::new(udp::open(addr)?)),
            Transport::Sctp => sctp::open(addr),
            Transport::Tipc => unreachable!("TIPC endpoints are Endpoint::Tipc"),
        },
    }
}

/// Checks that an encoded message fits the transport's limit before it is
/// sent; an over-long message would be dropped or cut by the other side.
fn check_size(len: usize, limit: usize) -> Result<(), Error> {
    if len > limit {
        return Err(Error::TooLarge {
            what: "request",
            size: len,
            limit,
        });
    }
    Ok(())
}

/// Reads the id of a reply message, if it has a whole header.
fn reply_id(msg: &[u8]) -> Option<u32> {
    if msg.len() < REPLY_HEADER_LEN {
        return None;
    }
    Some(u32::from_be_bytes(msg[..4].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_may_be_repeated() {
        for code in [
            RequestCode::Get,
            RequestCode::FirstKey,
            RequestCode::NextKey,
            RequestCode::Stats,
        ] {
            assert!(safe_to_repeat(code), "{code:?}");
        }
        for code in [
            RequestCode::Set,
            RequestCode::Del,
            RequestCode::Cas,
            RequestCode::Incr,
        ] {
            assert!(!safe_to_repeat(code), "{code:?}");
        }
    }

    #[test]
    fn reply_id_needs_a_whole_header() {
        assert_eq!(reply_id(&[0, 0, 0, 5, 0, 0, 8, 3]), Some(5));
        assert_eq!(reply_id(&[0, 0, 0, 5, 0, 0, 8]), None);
        // The version nibble is not masked: 0x10000001 is not reply 1.
        assert_eq!(reply_id(&[0x10, 0, 0, 1, 0, 0, 8, 3]), Some(0x1000_0001));
    }
}
