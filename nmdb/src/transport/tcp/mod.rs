//! TCP: length-prefixed frames on a byte stream, served by the network
//! threads' event loops ([`event_loop`]), each waiting in `epoll_wait`
//! for whichever of its connections is ready.
//!
//! A connection's frames are parsed in order, whatever their sizes, from
//! everything read, and the immediate answers are gathered in one buffer,
//! sent once per read (pipelining costs one write per read), or once
//! [`TURN_REPLY_BYTES`] have gathered: then the thread's other
//! connections have their turn.
//!
//! Replies go straight to the socket from whichever thread has them: the
//! connection's loop for immediate answers, a database worker or the
//! group commit for deferred ones. That saves a wake-up of the loop and a
//! hand-off per deferred answer, which is most of what a synchronous write
//! costs beyond the disk. When the socket does not take everything, the
//! rest waits in the connection's own buffer ([`connection`]) and later
//! replies queue behind it; the loop sends it as the socket drains. One
//! lock orders whole frames, so they never interleave, and no thread ever
//! waits for a client.
//!
//! Bounds, so that a client that floods or never reads only stalls itself:
//! - replies: a connection is not read while [`STOP_READING_BYTES`] or
//!   more wait unsent, and at most [`MAX_IN_FLIGHT`] requests wait for the
//!   database or for their deferred replies to be sent. A connection's
//!   unsent replies therefore stay under `STOP_READING_BYTES` +
//!   `TURN_REPLY_BYTES` + `MAX_IN_FLIGHT` + 1 largest replies (about
//!   2.4 MiB).
//! - unread replies, all connections together: what the sockets have not
//!   taken is counted in [`UnsentReplies`]. Past its limit
//!   (`--reply-buffer-mib`), a connection whose client has taken nothing
//!   for [`STALL_GRACE`] while replies wait is closed, so clients that stop
//!   reading cannot together hold more than the limit for long, however
//!   many connections they open; a client that reads keeps its connection.
//! - replies the kernel holds: each connection's send buffer is fixed
//!   (`--tcp-send-buffer-kib`, see [`bind`]), so non-readers cannot fill
//!   the memory the kernel gives all TCP sockets.
//! - the database queue: when it is over its byte budget, the connection
//!   that queues more stops being read until the queue drains; no other
//!   connection waits, and no cache stripe is held meanwhile.
//! - connections: at most [`Limits::max_connections`]; new ones beyond it
//!   are closed at once. An idle timeout, when set, closes connections
//!   that sent nothing and await nothing for that long.
//!
//! A frame whose length cannot be trusted closes that connection.

mod connection;
pub mod event_loop;

use crate::engine::Engine;
use crate::netthreads::Loops;
use crate::throttle::EverySecond;
use event_loop::NewConnection;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};

/// Requests of one connection that may wait for the database at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// A connection is not read while this many bytes of its replies wait
/// unsent: its client is not reading them.
pub const STOP_READING_BYTES: usize = 256 * 1024;
/// Immediate answers a reader gathers before it sends them, mid-read, and
/// lets the thread's other connections have a turn. The smaller the turn,
/// the sooner a new client is served beside many connections with answers
/// to write: a client connecting beside 1000 clients asking for 60 KB
/// values and reading none had its first answer after 45-62 ms instead of
/// 63-82 ms with 256 KiB turns (BENCHMARKS.md). A turn also fits the
/// socket's send buffer, where one of 256 KiB left the rest to wait in
/// the connection's buffer: a client pipelining 60 KB GETs was served
/// 3-18% faster. One pipelining small answers pays a write per 64 KiB:
/// 2-8% slower.
pub const TURN_REPLY_BYTES: usize = 64 * 1024;
/// The turn while unread replies are over their limit: a client that is
/// not reading then adds little before its reader stops.
const TURN_REPLY_BYTES_OVER: usize = 16 * 1024;
/// A buffer emptied with more capacity than this gives it back, so that
/// a burst does not stay resident in every connection that had one.
const KEPT_CAPACITY: usize = 64 * 1024;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;
/// How long a client may take nothing of its replies, while unread
/// replies are over their limit, before its connection is closed.
pub const STALL_GRACE: Duration = Duration::from_secs(1);

/// Replies waiting in connections' buffers because their sockets are full
/// (their clients are not reading), counted across all connections.
pub struct UnsentReplies {
    limit: usize,
    held: AtomicUsize,
    /// The event loops serving connections, woken when `held` goes over
    /// `limit`: they then time how long each client has taken nothing.
    watchers: parking_lot::Mutex<Vec<Arc<event_loop::Inbox>>>,
    /// Connections closed for it, for the metrics.
    closed: AtomicUsize,
    closed_log: EverySecond,
}

impl std::fmt::Debug for UnsentReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsentReplies")
            .field("limit", &self.limit)
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}

impl UnsentReplies {
    pub fn new(limit: usize) -> Self {
        UnsentReplies {
            limit,
            held: AtomicUsize::new(0),
            watchers: parking_lot::Mutex::new(Vec::new()),
            closed: AtomicUsize::new(0),
            closed_log: EverySecond::default(),
        }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Connections closed because their clients did not read while the
    /// limit was passed.
    pub fn closed_connections(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }

    fn is_over(&self) -> bool {
        self.held() > self.limit
    }

    /// Answers a reader gathers before writing them and ending its turn:
    /// fewer while over the limit.
    fn turn_bytes(&self) -> usize {
        match self.is_over() {
            true => TURN_REPLY_BYTES_OVER,
            false => TURN_REPLY_BYTES,
        }
    }

    /// Wakes `inbox`'s loop whenever the limit is passed; each loop asks
    /// once.
    fn watch(&self, inbox: &Arc<event_loop::Inbox>) {
        self.watchers.lock().push(inbox.clone());
    }

    fn add(&self, bytes: usize) {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before <= self.limit && before + bytes > self.limit {
            for inbox in self.watchers.lock().iter() {
                inbox.wake();
            }
        }
    }

    fn remove(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Counts a connection closed for not reading, and says so in the log
    /// (at most once a second).
    fn count_stalled(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        if self.closed_log.ready() {
            log::warn!(
                "unread tcp replies hold {} bytes (limit {}, --reply-buffer-mib): \
                 closing connections whose clients stopped reading",
                self.held(),
                self.limit
            );
        }
    }
}

/// Connection limits, shared by the accept loop and its connections.
#[derive(Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Close connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    pub unsent: Arc<UnsentReplies>,
    /// Connections open now.
    open: AtomicUsize,
    /// Connections closed at once for being over `max_connections` (for
    /// the metrics; STATS has a fixed set of counters).
    refused: AtomicUsize,
    refused_log: EverySecond,
}

impl Limits {
    pub fn new(
        max_connections: usize,
        idle_timeout: Option<Duration>,
        unsent_reply_bytes: usize,
    ) -> Self {
        Limits {
            max_connections,
            idle_timeout,
            unsent: Arc::new(UnsentReplies::new(unsent_reply_bytes)),
            open: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            refused_log: EverySecond::default(),
        }
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn refused_connections(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Counts a connection open for as long as it lives.
struct OpenConnection(Arc<Limits>);

impl OpenConnection {
    fn new(limits: Arc<Limits>) -> Self {
        limits.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(limits)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Binds a listening TCP socket with the server backlog
/// ([`nmdb_net::listen_backlog`]); call within the runtime.
///
/// `send_buffer` (`--tcp-send-buffer-kib`) is the kernel send buffer its
/// connections inherit. Left to itself, the kernel grows the buffer of a
/// connection whose client does not read to megabytes; a thousand such
/// clients then fill the memory the kernel allows all of TCP
/// (`net.ipv4.tcp_mem`), and every other connection's replies wait until
/// it frees: measured, a new client's first answer took 0.6 to 1.2 s
/// beside 1000 non-readers, 70 ms with 256 KiB buffers. Replies that do
/// not fit wait in the connection's own buffer instead, where
/// [`UnsentReplies`] counts and bounds them.
pub fn bind(addr: SocketAddr, send_buffer: Option<usize>) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if let Some(asked) = send_buffer {
        use std::os::fd::AsRawFd;
        let applied = nmdb_net::set_send_buffer(socket.as_raw_fd(), asked)?;
        if applied != asked {
            log::warn!(
                "tcp send buffers are {applied} bytes, not the {asked} asked \
                 (--tcp-send-buffer-kib): the kernel's net.core.wmem_max caps them"
            );
        }
    }
    socket.bind(addr)?;
    socket.listen(nmdb_net::listen_backlog() as u32)
}

/// Accepts connections until the task is dropped, and hands each to one
/// of the network threads' event loops, in turn.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    limits: Arc<Limits>,
    loops: Arc<Loops>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if limits.open.load(Ordering::Relaxed) >= limits.max_connections {
                    limits.refused.fetch_add(1, Ordering::Relaxed);
                    if limits.refused_log.ready() {
                        log::warn!(
                            "{} tcp connections open, the most allowed: closing new ones \
                             (from {peer} and others)",
                            limits.max_connections
                        );
                    }
                    drop(stream);
                    continue;
                }
                // Handed over unregistered (and still non-blocking): the
                // loop that serves it registers it with its own epoll.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("tcp connection from {peer} dropped: {e}");
                        continue;
                    }
                };
                log::debug!("tcp connection from {peer}");
                loops.hand_over(NewConnection {
                    stream,
                    engine: engine.clone(),
                    open: OpenConnection::new(limits.clone()),
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of
                // spinning, and keep serving the connections we have.
                log::warn!("tcp accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
