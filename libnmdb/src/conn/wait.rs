//! Waiting for a socket with `poll()`, bounded by a deadline. Sockets are
//! non-blocking, so this is the only place a call blocks.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::error::{Error, Phase};
use crate::timeout::Deadline;

/// What a wait ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    Yes,
    /// `cap` ran out before the deadline (time to re-send).
    CapElapsed,
}

/// Waits until `fd` is readable (or writable when `write`), the deadline
/// passes (a timeout error of `phase`), or `cap` elapses.
pub fn wait(
    fd: RawFd,
    write: bool,
    deadline: Deadline,
    cap: Option<Duration>,
    phase: Phase,
) -> Result<Ready, Error> {
    let events = if write { libc::POLLOUT } else { libc::POLLIN };
    loop {
        let ms = deadline.poll_ms(cap).ok_or(Error::Timeout(phase))?;
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io(phase, e));
        }
        if n > 0 {
            // Errors and hang-ups are reported by the read or write that
            // follows, with their real cause.
            return Ok(Ready::Yes);
        }
        if deadline.remaining().is_err() {
            return Err(Error::Timeout(phase));
        }
        if cap.is_some() {
            return Ok(Ready::CapElapsed);
        }
    }
}
