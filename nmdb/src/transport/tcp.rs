//! TCP: length-prefixed frames on a byte stream.
//!
//! A connection's reader parses every whole frame in what it has read, in
//! order, whatever their sizes, appends the immediate answers to one buffer
//! and writes it once (pipelining costs one write per read). Answers from
//! the database queue arrive on a channel drained by a writer task; both
//! write under the connection's write lock, so frames never interleave.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] requests of a connection wait in the
//! database queue; past that the reader stops reading until answers are
//! written. A client that does not read its answers therefore only stalls
//! itself. A frame whose length cannot be trusted closes that connection.

use crate::engine::{Disposition, Engine, Link};
use crate::reply::{ReplyShape, ReplyTo, StreamReply, STREAM_SHAPE};
use nmdb_proto::frame::{next_frame, FrameError};
use nmdb_proto::{Counter, MAX_MSG_SIZE, TCP_PREFIX_LEN};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};

/// Requests of one connection that may wait for the database at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                log::debug!("tcp connection from {peer}");
                tokio::spawn(serve_connection(stream, engine.clone()));
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
}

impl Link for TcpLink<'_> {
    fn shape(&self) -> ReplyShape {
        STREAM_SHAPE
    }

    fn defer(&mut self) -> ReplyTo {
        ReplyTo::Stream {
            tx: self.tx.clone(),
            slot: self
                .slot
                .take()
                .expect("a slot is reserved before every frame"),
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

async fn serve_connection(stream: TcpStream, engine: Arc<Engine>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let writer: Writer = Arc::new(Mutex::new(writer));
    let (tx, rx) = mpsc::unbounded_channel();
    let deferred = tokio::spawn(write_deferred(writer.clone(), rx));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut slot = None;
    let mut inbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();

    'conn: loop {
        if inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
            inbuf.reserve(READ_CHUNK);
        }
        match reader.read_buf(&mut inbuf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
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
            };
            let disposition = engine.handle(msg, &mut link, &mut out);
            used += total;
            if disposition == Disposition::Close {
                close = true;
                break;
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
}

async fn flush(writer: &Writer, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = writer.lock().await.write_all(out).await;
    out.clear();
    result
}
