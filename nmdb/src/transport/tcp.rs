//! TCP: length-prefixed frames on a byte stream.
//!
//! A connection's reader parses every whole frame in what it has read, in
//! order, whatever their sizes, and appends the immediate answers to one
//! buffer, sent once per read (pipelining costs one write per read), or
//! once [`TURN_REPLY_BYTES`] have gathered: then the thread's other
//! connections have their turn.
//!
//! Replies go straight to the socket from whichever thread has them: the
//! connection's own for immediate answers, a database worker or the group
//! commit for deferred ones. That saves a wake-up of the connection's
//! thread and a hand-off per deferred answer, which is most of what a
//! synchronous write costs beyond the disk. When the socket does not take
//! everything, the rest waits in the connection's [`Outgoing`] buffer and
//! later replies queue behind it; the connection's writer task sends it
//! as the socket drains. One lock orders whole frames, so they never
//! interleave, and nobody but the writer task ever waits for the client.
//!
//! Bounds, so that a client that floods or never reads only stalls itself:
//! - replies: the reader stops reading while [`STOP_READING_BYTES`] or
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
//!   that queues more stops reading until the queue drains; no other
//!   connection waits, and no cache stripe is held meanwhile.
//! - connections: at most [`Limits::max_connections`]; new ones beyond it
//!   are closed at once. An idle timeout, when set, closes connections
//!   that sent nothing and await nothing for that long.
//!
//! A frame whose length cannot be trusted closes that connection.

use crate::engine::{Disposition, Engine, Link};
use crate::netthreads::Spawner;
use crate::reply::{ReplyShape, ReplyTo, StreamSend, STREAM_SHAPE};
use crate::throttle::EverySecond;
use nmdb_proto::frame::{next_frame, FrameError};
use nmdb_proto::{Counter, MAX_MSG_SIZE, TCP_PREFIX_LEN};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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
/// socket's send buffer, where one of 256 KiB left the rest to the writer
/// task: a client pipelining 60 KB GETs was served 3-18% faster. One
/// pipelining small answers pays a write per 64 KiB: 2-8% slower.
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

/// Why a connection's replies can go no further.
#[derive(Debug)]
enum Stalled {
    Failed(io::Error),
    /// Its client took nothing for [`STALL_GRACE`] while unread replies
    /// were over their limit.
    NotReading,
}

/// Replies waiting in connections' buffers because their sockets are full
/// (their clients are not reading), counted across all connections.
#[derive(Debug)]
pub struct UnsentReplies {
    limit: usize,
    held: AtomicUsize,
    /// Woken when `held` goes over `limit`: connections whose clients have
    /// stalled check whether they must close.
    over: Notify,
    /// Connections closed for it, for the metrics.
    closed: AtomicUsize,
    closed_log: EverySecond,
}

impl UnsentReplies {
    pub fn new(limit: usize) -> Self {
        UnsentReplies {
            limit,
            held: AtomicUsize::new(0),
            over: Notify::new(),
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

    fn add(&self, bytes: usize) {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before <= self.limit && before + bytes > self.limit {
            self.over.notify_waiters();
        }
    }

    fn remove(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Waits until `stream` takes more bytes; why the connection must close
    /// otherwise: it failed, or its client has taken nothing for
    /// [`STALL_GRACE`] while over the limit.
    async fn wait_for_reader(&self, stream: &TcpStream) -> Result<(), Stalled> {
        let deadline = tokio::time::Instant::now() + STALL_GRACE;
        loop {
            let crossed = self.over.notified();
            tokio::pin!(crossed);
            // Registered before the check, so a crossing in between is
            // not missed.
            crossed.as_mut().enable();
            let over = self.is_over();
            tokio::select! {
                ready = stream.writable() => return ready.map_err(Stalled::Failed),
                () = tokio::time::sleep_until(deadline), if over => {
                    if self.is_over() {
                        return Err(self.close_stalled());
                    }
                }
                () = &mut crossed, if !over => {}
            }
        }
    }

    /// Counts a connection closed for not reading, and says so in the log
    /// (at most once a second).
    fn close_stalled(&self) -> Stalled {
        self.closed.fetch_add(1, Ordering::Relaxed);
        if self.closed_log.ready() {
            log::warn!(
                "unread tcp replies hold {} bytes (limit {}, --reply-buffer-mib): \
                 closing connections whose clients stopped reading",
                self.held(),
                self.limit
            );
        }
        Stalled::NotReading
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

/// Accepts connections until the task is dropped, and serves each on one
/// of the network threads, in turn.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    limits: Arc<Limits>,
    threads: Arc<Spawner>,
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
                // Handed over unregistered: the thread that serves it
                // registers it with its own reactor.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("tcp connection from {peer} dropped: {e}");
                        continue;
                    }
                };
                limits.open.fetch_add(1, Ordering::Relaxed);
                let open = OpenConnection(limits.clone());
                log::debug!("tcp connection from {peer}");
                let engine = engine.clone();
                threads.spawn(async move {
                    match TcpStream::from_std(stream) {
                        Ok(stream) => serve_connection(stream, engine, open).await,
                        Err(e) => log::warn!("tcp connection from {peer} dropped: {e}"),
                    }
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

/// What waits to be sent on a connection.
#[derive(Default)]
struct Outgoing {
    /// Bytes the socket has not taken yet, whole frames from their first
    /// unsent byte on.
    pending: Vec<u8>,
    /// The in-flight slots of the deferred replies in `pending`: a slot
    /// frees once its reply is sent, so a client that does not read
    /// cannot have more than [`MAX_IN_FLIGHT`] of them waiting.
    held: Vec<OwnedSemaphorePermit>,
    /// A write failed: the connection is closing and nothing more is sent.
    broken: bool,
}

/// One client connection: its socket and its unsent replies.
struct Connection {
    stream: TcpStream,
    out: parking_lot::Mutex<Outgoing>,
    /// Where `out.pending` is counted.
    unsent: Arc<UnsentReplies>,
    /// Wakes the writer task: bytes wait in `pending`.
    has_pending: Notify,
    /// Wakes those waiting for `pending` to shrink, or for the connection
    /// to break.
    sent: Notify,
}

impl StreamSend for Connection {
    fn send_frame(&self, frame: &[u8], slot: OwnedSemaphorePermit) {
        self.send(frame, Some(slot));
    }
}

impl Connection {
    /// Sends `bytes` (whole frames) after everything sent before; never
    /// waits. `slot` is held until they are sent. Returns false once the
    /// connection is broken.
    fn send(&self, bytes: &[u8], slot: Option<OwnedSemaphorePermit>) -> bool {
        let mut out = self.out.lock();
        if out.broken {
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
        }
        let wake_writer = out.pending.is_empty();
        out.pending.extend_from_slice(&bytes[sent..]);
        self.unsent.add(bytes.len() - sent);
        out.held.extend(slot);
        drop(out);
        if wake_writer {
            self.has_pending.notify_one();
        }
        true
    }

    fn break_off(&self, out: &mut Outgoing, why: &str) -> bool {
        log::debug!("closing tcp connection: write failed: {why}");
        out.broken = true;
        self.unsent.remove(out.pending.len());
        out.pending = Vec::new();
        out.held.clear();
        self.has_pending.notify_one();
        self.sent.notify_waiters();
        false
    }

    /// Waits until fewer than `limit` bytes wait unsent; false once the
    /// connection is broken.
    async fn wait_for_pending_below(&self, limit: usize) -> bool {
        // Nearly always so: no waiter to register then.
        if let Some(below) = self.pending_below(limit) {
            return below;
        }
        loop {
            let notified = self.sent.notified();
            tokio::pin!(notified);
            // Registered before the check, so a send in between is not
            // missed.
            notified.as_mut().enable();
            if let Some(below) = self.pending_below(limit) {
                return below;
            }
            notified.await;
        }
    }

    /// `Some(false)` once broken, `Some(true)` with fewer than `limit`
    /// bytes unsent, `None` while more wait. While unread replies are over
    /// their limit, only a connection with nothing unsent goes on.
    fn pending_below(&self, limit: usize) -> Option<bool> {
        let limit = match self.unsent.is_over() {
            true => 1,
            false => limit,
        };
        let out = self.out.lock();
        if out.broken {
            Some(false)
        } else if out.pending.len() < limit {
            Some(true)
        } else {
            None
        }
    }

    fn is_broken(&self) -> bool {
        self.out.lock().broken
    }

    /// Shuts the socket down in direction `how` (`SHUT_WR`: the client
    /// reads end of stream once it has every reply).
    fn shut_down(&self, how: libc::c_int) {
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown takes the descriptor the stream owns and keeps
        // open; it changes no memory.
        unsafe { libc::shutdown(self.stream.as_raw_fd(), how) };
    }
}

/// Writes what the socket takes of `bytes` now, without waiting: how many
/// bytes it took (fewer than all once it is full), or why the connection
/// is broken.
fn write_what_fits(stream: &TcpStream, bytes: &[u8]) -> Result<usize, String> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.try_write(&bytes[sent..]) {
            Ok(0) => return Err("the socket took nothing".into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(sent)
}

/// Sends what waits in the connection's buffer as the socket takes it.
/// The only task that waits for the client to read.
async fn write_pending(conn: Arc<Connection>) {
    loop {
        conn.has_pending.notified().await;
        loop {
            let (written, all) = {
                let mut out = conn.out.lock();
                if out.broken {
                    return;
                }
                if out.pending.is_empty() {
                    break;
                }
                match write_what_fits(&conn.stream, &out.pending) {
                    Ok(n) => {
                        out.pending.drain(..n);
                        conn.unsent.remove(n);
                        if out.pending.is_empty() {
                            out.held.clear();
                            release_if_large(&mut out.pending);
                        }
                        (n, out.pending.is_empty())
                    }
                    Err(why) => {
                        conn.break_off(&mut out, &why);
                        return;
                    }
                }
            };
            if written > 0 {
                conn.sent.notify_waiters();
            }
            if all {
                continue;
            }
            match conn.unsent.wait_for_reader(&conn.stream).await {
                Ok(()) => {}
                Err(Stalled::Failed(e)) => {
                    conn.break_off(&mut conn.out.lock(), &e.to_string());
                    return;
                }
                Err(Stalled::NotReading) => {
                    conn.break_off(&mut conn.out.lock(), "its client stopped reading");
                    // Its reader may be waiting for requests: it ends too.
                    conn.shut_down(libc::SHUT_RDWR);
                    return;
                }
            }
        }
    }
}

struct TcpLink<'a> {
    conn: &'a Arc<Connection>,
    slot: &'a mut Option<OwnedSemaphorePermit>,
    /// The request put work on the database queue.
    queued: bool,
}

impl Link for TcpLink<'_> {
    fn shape(&self) -> ReplyShape {
        STREAM_SHAPE
    }

    fn pauses_when_queue_full(&self) -> bool {
        true
    }

    fn queued_for_db(&mut self) {
        self.queued = true;
    }

    fn defer(&mut self) -> ReplyTo {
        ReplyTo::Stream {
            conn: self.conn.clone(),
            slot: self
                .slot
                .take()
                .expect("a slot is reserved before every frame"),
            timer: None,
        }
    }
}

/// A connection's idle timeout: one timer for the connection's life, moved
/// only when it fires early, rather than one set and cancelled around every
/// read. With `--idle-timeout`, a cache request cost the network thread
/// 933 more instructions that way, 403 this way (callgrind), and the
/// server 0.26 µs more CPU, 0.14-0.22 µs this way (BENCHMARKS.md).
struct IdleTimer {
    idle: Duration,
    /// When the connection last began to wait for its client.
    since: tokio::time::Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimer {
    fn new(idle: Duration) -> Self {
        let now = tokio::time::Instant::now();
        IdleTimer {
            idle,
            since: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// Starts a wait for the client: it is idle once this lasts `idle`.
    fn start(&mut self) {
        self.since = tokio::time::Instant::now();
    }

    /// Returns once the wait begun by the last [`IdleTimer::start`] has
    /// lasted the timeout.
    async fn expired(&mut self) {
        loop {
            self.timer.as_mut().await;
            let deadline = self.since + self.idle;
            if deadline <= tokio::time::Instant::now() {
                return;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

/// Reads more of the connection into `inbuf`; false at end of stream, on
/// error, or when the idle timeout passed with nothing in flight. `slots`
/// are the connection's in-flight slots, `reserved` of them held for the
/// next request rather than by one waiting for the database.
async fn read_more(
    stream: &TcpStream,
    inbuf: &mut Vec<u8>,
    idle: Option<&mut IdleTimer>,
    slots: &Semaphore,
    reserved: usize,
) -> bool {
    if inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
        inbuf.reserve(READ_CHUNK);
    }
    let Some(idle) = idle else {
        return matches!(read_some(stream, inbuf).await, Ok(n) if n > 0);
    };
    idle.start();
    loop {
        tokio::select! {
            biased;
            read = read_some(stream, inbuf) => return matches!(read, Ok(n) if n > 0),
            () = idle.expired() => {
                // Waiting for the database is not idleness.
                if slots.available_permits() + reserved < MAX_IN_FLIGHT {
                    idle.start();
                    continue;
                }
                log::debug!("closing tcp connection idle for {:?}", idle.idle);
                return false;
            }
        }
    }
}

/// One read into `buf`'s spare capacity, waiting until there is something.
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => return read,
        }
    }
}

async fn serve_connection(stream: TcpStream, engine: Arc<Engine>, open: OpenConnection) {
    let _ = stream.set_nodelay(true);
    let mut idle = open.0.idle_timeout.map(IdleTimer::new);
    let conn = Arc::new(Connection {
        stream,
        out: parking_lot::Mutex::new(Outgoing::default()),
        unsent: open.0.unsent.clone(),
        has_pending: Notify::new(),
        sent: Notify::new(),
    });
    let writer = tokio::spawn(write_pending(conn.clone()));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut slot = None;
    let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();

    'conn: loop {
        // A client that does not read its replies is not read from.
        if !conn.wait_for_pending_below(STOP_READING_BYTES).await {
            break;
        }
        if !read_more(
            &conn.stream,
            &mut inbuf,
            idle.as_mut(),
            &slots,
            slot.is_some() as usize,
        )
        .await
        {
            break;
        }
        let mut used = 0;
        let mut close = false;
        loop {
            let total = match next_frame(&inbuf[used..], MAX_MSG_SIZE) {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => {
                    if let FrameError::ShorterThanHeader(_) = e {
                        engine.stats.inc(Counter::MsgTcp);
                        engine.stats.inc(Counter::NetBrokenReq);
                    }
                    log::debug!("closing tcp connection: {e}");
                    close = true;
                    break;
                }
            };
            engine.stats.inc(Counter::MsgTcp);
            if slot.is_none() {
                slot = match slots.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        // Too much waits on the database: let the client
                        // have what is answered, then wait for a slot.
                        if !send(&conn, &mut out) {
                            break 'conn;
                        }
                        match slots.clone().acquire_owned().await {
                            Ok(p) => Some(p),
                            Err(_) => break 'conn,
                        }
                    }
                };
            }
            let msg = &inbuf[used + TCP_PREFIX_LEN..used + total];
            let mut link = TcpLink {
                conn: &conn,
                slot: &mut slot,
                queued: false,
            };
            let disposition = engine.handle(msg, &mut link, &mut out);
            let queued = link.queued;
            used += total;
            if disposition == Disposition::Close {
                close = true;
                break;
            }
            // Replies past the threshold go out before more requests are
            // taken: a client that does not read stalls here, on its own.
            // Then the other connections of this thread have their turn, so
            // that a long pipeline of large answers does not hold them up.
            if out.len() >= conn.unsent.turn_bytes() {
                if !(send(&conn, &mut out) && conn.wait_for_pending_below(STOP_READING_BYTES).await)
                {
                    break 'conn;
                }
                tokio::task::yield_now().await;
            }
            // This client added to a database queue over budget: it waits
            // for the queue to drain (its answers so far are sent first).
            // Clients that queue nothing go on.
            if queued && engine.db.budget().is_spent() {
                if !send(&conn, &mut out) {
                    break 'conn;
                }
                engine.db.budget().wait_for_room().await;
            }
        }
        inbuf.drain(..used);
        if !send(&conn, &mut out) || close {
            break;
        }
    }
    // Answers still owed by the database are sent if the peer reads them:
    // every in-flight slot back means every deferred answer was handed
    // over; then what waits unsent goes, and the client reads end of
    // stream.
    drop(slot);
    let all = MAX_IN_FLIGHT as u32;
    if slots.acquire_many(all).await.is_ok() && conn.wait_for_pending_below(1).await {
        conn.shut_down(libc::SHUT_WR);
    }
    writer.abort();
    drop(open);
}

/// Sends the immediate answers gathered in `out`; false once the
/// connection is broken.
fn send(conn: &Connection, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return !conn.is_broken();
    }
    let ok = conn.send(out, None);
    out.clear();
    release_if_large(out);
    ok
}

/// Frees the memory of an empty buffer grown past [`KEPT_CAPACITY`].
fn release_if_large(buf: &mut Vec<u8>) {
    if buf.capacity() > KEPT_CAPACITY {
        *buf = Vec::new();
    }
}
