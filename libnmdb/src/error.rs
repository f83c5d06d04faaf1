//! Why a call failed, and the per-thread "last error" that
//! `nmdb_last_error()` hands to C.
//!
//! The C functions can only return small integers, so the reason travels
//! separately. It is kept per thread, like `errno`, because one handle may be
//! shared by several threads: a per-handle slot would show one thread the
//! reason for another thread's failure. Successful calls leave it alone.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::fmt;
use std::io;

use nmdb_proto::frame::FrameError;
use nmdb_proto::{ErrorCode, ReplyError};

/// The part of a round trip in which an I/O problem happened. `nmdb_stats`
/// tells "could not send" (-2) apart from "no usable reply" (-1) by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Send,
    Receive,
}

impl Phase {
    /// True when the request may not have left this host.
    pub fn before_sent(self) -> bool {
        matches!(self, Phase::Connect | Phase::Send)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connecting",
            Phase::Send => "sending the request",
            Phase::Receive => "waiting for the reply",
        })
    }
}

#[derive(Debug)]
pub enum Error {
    /// The `nmdb_t *` argument was NULL.
    NullHandle,
    /// A pointer argument was NULL while its size was not 0.
    NullPointer(&'static str),
    /// A key or value (or the whole request) is over the protocol limit.
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// No server was added to the handle.
    NoServer,
    /// FIRSTKEY / NEXTKEY walk one server's database; they need exactly one.
    NotOneServer(usize),
    /// The server address or port cannot be used.
    BadAddress(String),
    /// The transport cannot be used on this host.
    Unavailable(&'static str),
    Io {
        phase: Phase,
        source: io::Error,
    },
    Timeout(Phase),
    /// The server closed the TCP connection before replying.
    Closed,
    /// The reply stream's length prefix cannot be trusted.
    BadFrame(FrameError),
    /// The reply is malformed.
    BadReply(&'static str),
    /// The server answered `REP_ERR` with this error code.
    Server(u32),
    /// The server answered with a reply code that makes no sense here.
    UnexpectedReply(u32),
    /// The caller's output buffer cannot hold the result.
    BufferTooSmall {
        need: usize,
        have: usize,
    },
    /// Two servers returned STATS with different numbers of counters.
    StatsMismatch {
        first: usize,
        other: usize,
    },
    /// A bug: a panic was caught at the C boundary.
    Panic,
}

impl Error {
    pub fn io(phase: Phase, source: io::Error) -> Self {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            Error::Timeout(phase)
        } else {
            Error::Io { phase, source }
        }
    }

    /// True when the connection the error happened on can no longer be
    /// trusted to carry the next request.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Closed | Error::BadFrame(_) | Error::Timeout(Phase::Send)
        )
    }

    /// True when the request may not have left this host (see [`Phase`]).
    pub fn before_sent(&self) -> bool {
        match self {
            Error::Io { phase, .. } | Error::Timeout(phase) => phase.before_sent(),
            Error::TooLarge { .. } | Error::Unavailable(_) => true,
            _ => false,
        }
    }
}

impl From<ReplyError> for Error {
    fn from(e: ReplyError) -> Self {
        Error::BadReply(match e {
            ReplyError::TooShort => "reply shorter than its header",
            ReplyError::Truncated => "reply payload shorter than its size field announces",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NullHandle => write!(f, "the nmdb_t handle is NULL"),
            Error::NullPointer(what) => write!(f, "{what} is NULL but its size is not 0"),
            Error::TooLarge { what, size, limit } => {
                write!(f, "{what} of {size} bytes is over the limit of {limit}")
            }
            Error::NoServer => write!(f, "no server was added to the handle"),
            Error::NotOneServer(n) => write!(
                f,
                "key walking needs exactly one server, the handle has {n}"
            ),
            Error::BadAddress(why) => write!(f, "{why}"),
            Error::Unavailable(why) => write!(f, "{why}"),
            Error::Io { phase, source } => write!(f, "error while {phase}: {source}"),
            Error::Timeout(phase) => write!(f, "timed out while {phase}"),
            Error::Closed => write!(f, "the server closed the connection"),
            Error::BadFrame(e) => write!(f, "bad reply frame: {e}"),
            Error::BadReply(why) => write!(f, "bad reply: {why}"),
            Error::Server(code) => match ErrorCode::from_u32(*code) {
                Some(c) => write!(f, "the server answered {} ({code:#x})", c.name()),
                None => write!(f, "the server answered error {code:#x}"),
            },
            Error::UnexpectedReply(code) => {
                write!(f, "unexpected reply code {code:#x} for this request")
            }
            Error::BufferTooSmall { need, have } => {
                write!(f, "the output buffer holds {have} bytes, {need} are needed")
            }
            Error::StatsMismatch { first, other } => write!(
                f,
                "servers returned different numbers of counters ({first} and {other})"
            ),
            Error::Panic => write!(f, "internal error in libnmdb (caught a panic)"),
        }
    }
}

impl std::error::Error for Error {}

const NO_ERROR: &str = "no error";

thread_local! {
    static LAST: RefCell<CString> = RefCell::new(CString::new(NO_ERROR).expect("no NUL"));
}

/// Remembers `e` as this thread's last error.
pub fn record(e: &Error) {
    let text = e.to_string().replace('\0', " ");
    let text = CString::new(text).unwrap_or_default();
    // A failed borrow (re-entrance) or a thread being torn down just loses
    // the message; it must never panic here.
    let _ = LAST.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = text;
        }
    });
}

/// This thread's last error as a C string. The pointer stays valid until the
/// thread's next failing call (or its exit).
pub fn last() -> *const c_char {
    static FALLBACK: &[u8] = b"no error information\0";
    LAST.try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(FALLBACK.as_ptr().cast())
}

/// This thread's last error as Rust text (for tests and nmdb-stats).
pub fn last_message() -> String {
    LAST.try_with(|slot| slot.borrow().to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_starts_as_no_error_and_keeps_the_latest_failure() {
        assert_eq!(last_message(), NO_ERROR);
        record(&Error::NoServer);
        assert_eq!(last_message(), "no server was added to the handle");
        record(&Error::Server(0x107));
        assert_eq!(last_message(), "the server answered ERR_RO (0x107)");
    }

    #[test]
    fn last_error_is_per_thread() {
        record(&Error::NullHandle);
        std::thread::spawn(|| assert_eq!(last_message(), NO_ERROR))
            .join()
            .unwrap();
        assert_eq!(last_message(), "the nmdb_t handle is NULL");
    }

    #[test]
    fn socket_timeouts_become_timeout_errors() {
        let e = Error::io(Phase::Receive, io::ErrorKind::WouldBlock.into());
        assert!(matches!(e, Error::Timeout(Phase::Receive)));
        assert!(!e.before_sent());
        let e = Error::io(Phase::Send, io::ErrorKind::BrokenPipe.into());
        assert!(e.before_sent() && e.breaks_connection());
    }
}
