//! A connection's sending side, shared by its event loop and by the
//! threads that answer its deferred requests: the socket, and the replies
//! it has not taken yet.

use super::{UnsentReplies, KEPT_CAPACITY, STALL_GRACE};
use crate::reply::StreamSend;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

/// What waits to be sent on a connection.
#[derive(Default)]
struct Outgoing {
    /// Bytes the socket has not taken yet, whole frames from their first
    /// unsent byte on.
    pending: Vec<u8>,
    /// The in-flight slots of the deferred replies in `pending`: a slot
    /// frees once its reply is sent, so a client that does not read
    /// cannot have more than [`super::MAX_IN_FLIGHT`] of them waiting.
    held: Vec<OwnedSemaphorePermit>,
    /// Since when the client has taken nothing while bytes wait.
    stalled_since: Option<Instant>,
}

/// One client connection's socket and unsent replies.
pub struct Connection {
    stream: TcpStream,
    out: parking_lot::Mutex<Outgoing>,
    /// `out.pending`'s length, readable without the lock (written under
    /// it): the loop checks it on every request.
    pending_bytes: AtomicUsize,
    /// A write failed: the connection is closing and nothing more is sent.
    broken: AtomicBool,
    /// Where `out.pending` is counted.
    unsent: Arc<UnsentReplies>,
}

impl StreamSend for Connection {
    fn send_frame(&self, frame: &[u8], slot: OwnedSemaphorePermit) {
        self.send(frame, Some(slot));
    }

    fn close_unanswered(&self) {
        self.abandon("an answer was lost to an internal error");
    }
}

impl Connection {
    /// `stream` must be non-blocking.
    pub fn new(stream: TcpStream, unsent: Arc<UnsentReplies>) -> Self {
        Connection {
            stream,
            out: parking_lot::Mutex::new(Outgoing::default()),
            pending_bytes: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
            unsent,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Where this connection's unsent replies are counted.
    pub fn unsent(&self) -> &UnsentReplies {
        &self.unsent
    }

    /// Sends `bytes` (whole frames) after everything sent before; never
    /// waits. `slot` is held until they are sent. Returns false once the
    /// connection is broken.
    pub fn send(&self, bytes: &[u8], slot: Option<OwnedSemaphorePermit>) -> bool {
        let mut out = self.out.lock();
        if self.is_broken() {
            return false;
        }
        let mut sent = 0;
        // Straight to the socket unless older bytes wait: those go first.
        if out.pending.is_empty() {
            match write_what_fits(&self.stream, bytes) {
                Ok(n) if n == bytes.len() => return true,
                Ok(n) => sent = n,
                Err(why) => return self.break_off(&mut out, &why),
            }
            // The socket is full: the client has taken nothing since now.
            out.stalled_since = Some(Instant::now());
        }
        out.pending.extend_from_slice(&bytes[sent..]);
        self.pending_bytes
            .store(out.pending.len(), Ordering::Release);
        self.unsent.add(bytes.len() - sent);
        out.held.extend(slot);
        true
    }

    /// Sends what waits, as much as the socket takes now; false once the
    /// connection is broken.
    pub fn flush(&self) -> bool {
        if self.pending_bytes.load(Ordering::Acquire) == 0 {
            return !self.is_broken();
        }
        let mut out = self.out.lock();
        if self.is_broken() {
            return false;
        }
        let n = match write_what_fits(&self.stream, &out.pending) {
            Ok(0) => return true,
            Ok(n) => n,
            Err(why) => return self.break_off(&mut out, &why),
        };
        out.pending.drain(..n);
        self.unsent.remove(n);
        if out.pending.is_empty() {
            out.held.clear();
            out.stalled_since = None;
            release_if_large(&mut out.pending);
        } else {
            out.stalled_since = Some(Instant::now());
        }
        self.pending_bytes
            .store(out.pending.len(), Ordering::Release);
        true
    }

    /// Bytes waiting unsent.
    pub fn pending(&self) -> usize {
        self.pending_bytes.load(Ordering::Acquire)
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Whether the client has taken nothing of what waits for
    /// [`STALL_GRACE`] by `now`.
    pub fn stalled_past_grace(&self, now: Instant) -> bool {
        if self.pending() == 0 {
            return false;
        }
        let since = self.out.lock().stalled_since;
        since.is_some_and(|t| now.saturating_duration_since(t) >= STALL_GRACE)
    }

    /// Marks the connection broken and drops what waits; false.
    fn break_off(&self, out: &mut Outgoing, why: &str) -> bool {
        log::debug!("closing tcp connection: {why}");
        self.broken.store(true, Ordering::Release);
        self.unsent.remove(out.pending.len());
        out.pending = Vec::new();
        out.held.clear();
        out.stalled_since = None;
        self.pending_bytes.store(0, Ordering::Release);
        false
    }

    /// Closes the connection now (its client stopped reading, or an
    /// answer it waits for was lost): what waits is dropped and the socket
    /// shut both ways.
    pub fn abandon(&self, why: &str) {
        self.break_off(&mut self.out.lock(), why);
        self.shut_down(Shutdown::Both);
    }

    /// Shuts the socket down in direction `how` (`Write`: the client
    /// reads end of stream once it has every reply). The descriptor stays
    /// open for the threads that still hold the connection.
    pub fn shut_down(&self, how: Shutdown) {
        let _ = self.stream.shutdown(how);
    }
}

/// Writes what the socket takes of `bytes` now, without waiting: how many
/// bytes it took (fewer than all once it is full), or why the connection
/// is broken.
fn write_what_fits(mut stream: &TcpStream, bytes: &[u8]) -> Result<usize, String> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err("the socket took nothing".into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write failed: {e}")),
        }
    }
    Ok(sent)
}

/// Frees the memory of an empty buffer grown past [`KEPT_CAPACITY`].
pub fn release_if_large(buf: &mut Vec<u8>) {
    if buf.capacity() > KEPT_CAPACITY {
        *buf = Vec::new();
    }
}
