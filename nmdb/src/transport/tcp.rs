//! TCP: length-prefixed frames on a byte stream.
//!
//! A connection's reader parses every whole frame in what it has read, in
//! order, whatever their sizes, appends the immediate answers to one buffer
//! and writes it once (pipelining costs one write per read). Answers from
//! the database queue arrive on a channel drained by a writer task; both
//! write under the connection's write lock, so frames never interleave.
//!
//! Bounds, so that a client that floods or never reads only stalls itself:
//! - replies: the immediate answers are written out whenever they pass
//!   [`REPLY_FLUSH_BYTES`], and at most [`MAX_IN_FLIGHT`] requests wait
//!   for the database; the reader stops reading while either write waits
//!   for the client. A connection's unsent replies therefore stay under
//!   `REPLY_FLUSH_BYTES` + `MAX_IN_FLIGHT` largest replies (about 2.3 MiB).
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
use crate::reply::{ReplyShape, ReplyTo, StreamReply, STREAM_SHAPE};
use crate::throttle::EverySecond;
use nmdb_proto::frame::{next_frame, FrameError};
use nmdb_proto::{Counter, MAX_MSG_SIZE, TCP_PREFIX_LEN};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};

/// Requests of one connection that may wait for the database at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// Immediate answers buffered before they are written, mid-read.
pub const REPLY_FLUSH_BYTES: usize = 256 * 1024;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;

/// Connection limits, shared by the accept loop and its connections.
#[derive(Debug, Default)]
pub struct Limits {
    pub max_connections: usize,
    /// Close connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Connections open now.
    open: AtomicUsize,
    /// Connections closed at once for being over `max_connections` (for
    /// the metrics; STATS has a fixed set of counters).
    refused: AtomicUsize,
    refused_log: EverySecond,
}

impl Limits {
    pub fn new(max_connections: usize, idle_timeout: Option<Duration>) -> Self {
        Limits {
            max_connections,
            idle_timeout,
            ..Limits::default()
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
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
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

struct TcpLink<'a> {
    tx: &'a mpsc::UnboundedSender<StreamReply>,
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
            tx: self.tx.clone(),
            slot: self
                .slot
                .take()
                .expect("a slot is reserved before every frame"),
            timer: None,
        }
    }
}

type Writer = Arc<Mutex<OwnedWriteHalf>>;

/// Writes deferred answers, batching whatever has queued up.
async fn write_deferred(writer: Writer, mut rx: mpsc::UnboundedReceiver<StreamReply>) {
    let mut batch = Vec::new();
    let mut held = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first.bytes);
        held.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more.bytes);
            held.push(more);
        }
        let ok = writer.lock().await.write_all(&batch).await.is_ok();
        // Dropping the replies frees their in-flight slots.
        held.clear();
        if !ok {
            return;
        }
    }
}

/// Reads more of the connection into `inbuf`; false at end of stream, on
/// error, or when the idle timeout passed with nothing in flight. `slots`
/// are the connection's in-flight slots, `reserved` of them held for the
/// next request rather than by one waiting for the database.
async fn read_more(
    reader: &mut OwnedReadHalf,
    inbuf: &mut Vec<u8>,
    idle: Option<Duration>,
    slots: &Semaphore,
    reserved: usize,
) -> bool {
    if inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
        inbuf.reserve(READ_CHUNK);
    }
    let Some(idle) = idle else {
        return matches!(reader.read_buf(inbuf).await, Ok(n) if n > 0);
    };
    loop {
        match tokio::time::timeout(idle, reader.read_buf(inbuf)).await {
            Ok(read) => return matches!(read, Ok(n) if n > 0),
            // Waiting for the database is not idleness.
            Err(_) if slots.available_permits() + reserved < MAX_IN_FLIGHT => continue,
            Err(_) => {
                log::debug!("closing tcp connection idle for {idle:?}");
                return false;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, engine: Arc<Engine>, open: OpenConnection) {
    let _ = stream.set_nodelay(true);
    let idle = open.0.idle_timeout;
    let (mut reader, writer) = stream.into_split();
    let writer: Writer = Arc::new(Mutex::new(writer));
    let (tx, rx) = mpsc::unbounded_channel();
    let deferred = tokio::spawn(write_deferred(writer.clone(), rx));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut slot = None;
    let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();

    'conn: loop {
        if !read_more(
            &mut reader,
            &mut inbuf,
            idle,
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
                        if flush(&writer, &mut out).await.is_err() {
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
                tx: &tx,
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
            if out.len() >= REPLY_FLUSH_BYTES && flush(&writer, &mut out).await.is_err() {
                break 'conn;
            }
            // This client added to a database queue over budget: it waits
            // for the queue to drain (its answers so far are sent first).
            // Clients that queue nothing go on.
            if queued && engine.db.budget().is_spent() {
                if flush(&writer, &mut out).await.is_err() {
                    break 'conn;
                }
                engine.db.budget().wait_for_room().await;
            }
        }
        inbuf.drain(..used);
        if flush(&writer, &mut out).await.is_err() || close {
            break;
        }
    }
    drop(tx);
    // Answers still owed by the database are written if the peer reads
    // them; the writer ends when the last one is sent or the socket fails.
    let _ = deferred.await;
    let _ = writer.lock().await.shutdown().await;
    drop(open);
}

async fn flush(writer: &Writer, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = writer.lock().await.write_all(out).await;
    out.clear();
    result
}
