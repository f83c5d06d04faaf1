//! Waiting with `poll()`, bounded by a deadline, for a socket that cannot
//! take more to become writable. (Replies are waited for in the receive
//! itself, bounded by the socket's receive timeout.)

use std::io;
use std::os::fd::RawFd;

use crate::error::{Error, Phase};
use crate::timeout::Deadline;

/// Waits until `fd` is writable, or the deadline passes (a timeout error
/// of `phase`).
pub fn wait_writable(fd: RawFd, deadline: Deadline, phase: Phase) -> Result<(), Error> {
    loop {
        let ms = deadline.poll_ms().ok_or(Error::Timeout(phase))?;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
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
            // Errors and hang-ups are reported by the write that follows,
            // with their real cause.
            return Ok(());
        }
    }
}
