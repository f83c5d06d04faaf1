//! Telling the service manager what the server is doing, in systemd's
//! `sd_notify` protocol: `READY=1` once every listener is bound, the
//! database is open and the pid file written; `STOPPING=1` when a clean
//! exit begins.
//!
//! By default systemd listens only to the process it started
//! (`NotifyAccess=main`). In the foreground (`-f`) that is the server
//! itself. In the background it is the parent that waits for the daemon:
//! the parent reports readiness and hands the daemon's pid over
//! (`MAINPID=`), and from then on the daemon is the main process, so its
//! `STOPPING=1` is accepted too.
//!
//! Without `NOTIFY_SOCKET` in the environment every call does nothing.
//! The variable is left set: the server starts no programs that could
//! inherit it. A failed notification is reported and never stops the
//! server: the variable may be a leftover (a shell started from a
//! service), and a server that serves is worth more than a clean report;
//! under systemd the start then times out, and the journal says why.

use sd_notify::NotifyState;
use std::io;

fn send(states: &[NotifyState]) -> io::Result<()> {
    sd_notify::notify(states).map_err(|e| {
        let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
        io::Error::new(
            e.kind(),
            format!(
                "cannot notify the service manager at {}: {e}",
                socket.to_string_lossy()
            ),
        )
    })
}

/// The server, running in the foreground, serves.
pub fn ready() {
    if let Err(e) = send(&[NotifyState::Ready, NotifyState::Status("serving")]) {
        log::warn!("{e}");
    }
}

/// The daemon `pid` serves: sent by the parent that waited for it. The
/// parent has no log, so a failure goes to standard error, like its other
/// messages.
pub fn daemon_ready(pid: u32) {
    let states = [
        NotifyState::MainPid(pid),
        NotifyState::Ready,
        NotifyState::Status("serving"),
    ];
    if let Err(e) = send(&states) {
        eprintln!("nmdb: {e}");
    }
}

/// A clean exit begins.
pub fn stopping() {
    if let Err(e) = send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]) {
        log::warn!("{e}");
    }
}
