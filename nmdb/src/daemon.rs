//! Going to the background, as the original does unless `-f` is given.
//!
//! The parent waits until the child reports that the server started (or
//! why it could not), so `nmdb` in an init script exits non-zero when the
//! server did not come up, and exits only once it accepts requests.

use nmdb_net::os_result;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The child's end of the start-up report.
pub struct Ready(File);

impl Ready {
    /// Tells the waiting parent that the server runs.
    pub fn started(mut self) {
        let _ = self.0.write_all(b"ok");
    }

    /// Tells the waiting parent why the server did not start.
    pub fn failed(mut self, msg: &str) {
        let _ = self.0.write_all(msg.as_bytes());
    }
}

/// Forks. In the parent this never returns: it waits for the child's
/// report and exits. Must be called before any thread is started.
pub fn daemonize() -> io::Result<Ready> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    os_result(unsafe { libc::pipe(fds.as_mut_ptr()) }, "pipe")?;
    // SAFETY: pipe() returned two fresh descriptors that we now own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (documented precondition).
    let pid = os_result(unsafe { libc::fork() }, "fork")?;
    if pid > 0 {
        drop(wr);
        let mut report = String::new();
        let _ = File::from(rd).read_to_string(&mut report);
        if report == "ok" {
            crate::notify::daemon_ready(pid as u32);
            std::process::exit(0);
        }
        if report.is_empty() {
            report = "the server process exited during start-up".into();
        }
        eprintln!("nmdb: {report}");
        std::process::exit(1);
    }
    drop(rd);
    // SAFETY: plain system calls on our own process and descriptors.
    unsafe {
        os_result(libc::setsid(), "setsid")?;
        let null = os_result(libc::open(c"/dev/null".as_ptr(), libc::O_RDWR), "/dev/null")?;
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if null > 2 {
            libc::close(null);
        }
    }
    Ok(Ready(File::from(wr)))
}
