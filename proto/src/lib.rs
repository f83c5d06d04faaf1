//! The nmdb wire protocol (version 1): constants, message types, parsing and
//! composing. No I/O happens here.
//!
//! The server, the C library and the tests all use this crate, so every code,
//! limit and byte layout is defined exactly once. Parsers take a complete
//! message (a datagram, or the body of a TCP frame) and either return borrowed
//! views into it or say precisely why it is unusable; they never read outside
//! the slice they are given.

pub mod codes;
pub mod frame;
pub mod reply;
pub mod request;
pub mod stats;

pub use codes::*;
pub use frame::{begin_frame, end_frame, FrameError, TCP_PREFIX_LEN};
pub use reply::{Answer, Reply, ReplyError};
pub use request::{Header, ParseError, Request};
pub use stats::{Counter, NUM_COUNTERS};

/// Reads a big-endian u32 at `at`; `None` when the slice is too short.
#[inline]
pub(crate) fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads a big-endian u64 at `at`; `None` when the slice is too short.
#[inline]
pub(crate) fn be_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}
