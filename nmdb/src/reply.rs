//! Where replies go: straight into a transport's buffer for answers known at
//! once, or through a [`ReplyTo`] for answers the database queue produces
//! later. Passive mode and the datagram size limit are enforced here, once,
//! for every transport.

use crate::metrics::Timer;
use nmdb_proto::{begin_frame, end_frame, Answer, ErrorCode, MAX_MSG_SIZE, TCP_PREFIX_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// Run-time modes switched by command line and signals.
#[derive(Debug, Default)]
pub struct Modes {
    read_only: AtomicBool,
    passive: AtomicBool,
}

impl Modes {
    pub fn new(read_only: bool, passive: bool) -> Self {
        Modes {
            read_only: AtomicBool::new(read_only),
            passive: AtomicBool::new(passive),
        }
    }

    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// Read-only is one way: there is no signal to leave it.
    pub fn set_read_only(&self) {
        self.read_only.store(true, Ordering::Relaxed);
    }

    pub fn passive(&self) -> bool {
        self.passive.load(Ordering::Relaxed)
    }

    /// Flips passive mode; returns the new state.
    pub fn toggle_passive(&self) -> bool {
        !self.passive.fetch_xor(true, Ordering::Relaxed)
    }
}

/// How a transport wants its replies shaped.
#[derive(Debug, Clone, Copy)]
pub struct ReplyShape {
    /// Prefix each reply with the TCP length.
    pub framed: bool,
    /// Largest reply message (without prefix); larger ones become
    /// `ERR_SEND`.
    pub max_len: usize,
}

/// Replies on stream transports (TCP): framed, and no larger than a frame
/// the original library accepts.
pub const STREAM_SHAPE: ReplyShape = ReplyShape {
    framed: true,
    max_len: MAX_MSG_SIZE - TCP_PREFIX_LEN,
};

/// Appends the reply for request `id` to `out`, shaped for the transport.
pub fn write_answer(out: &mut Vec<u8>, shape: ReplyShape, id: u32, answer: Answer<'_>) {
    let answer = if answer.encoded_len() > shape.max_len {
        Answer::Error(ErrorCode::Send)
    } else {
        answer
    };
    if shape.framed {
        let start = begin_frame(out);
        answer.encode(id, out);
        end_frame(out, start);
    } else {
        answer.encode(id, out);
    }
}

/// Where a datagram's answer goes: the sender's address, and the address
/// the request was sent to, which the answer is sent from (when the socket
/// reports it: UDP on a wildcard address).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr {
    pub addr: nmdb_net::SockAddr,
    pub via: Option<nmdb_net::Destination>,
}

/// A datagram socket the database queue can answer through.
pub trait DatagramSend: Send + Sync {
    fn send_to(&self, msg: &[u8], peer: &PeerAddr) -> io::Result<()>;
    fn shape(&self) -> ReplyShape;
}

/// A stream connection the database queue can answer through.
pub trait StreamSend: Send + Sync {
    /// Sends `frame`, one whole reply, after everything sent to this
    /// connection before it. Never waits: what the socket does not take
    /// now waits in the connection's own buffer, holding the request's
    /// in-flight `slot` until it is sent.
    fn send_frame(&self, frame: &[u8], slot: OwnedSemaphorePermit);

    /// Closes the connection: an answer its client waits for was lost
    /// (see [`ReplyTo`]), and a client that waits for its answers in
    /// order would otherwise wait forever.
    fn close_unanswered(&self);
}

/// Where the database queue sends an answer. `timer`, set by the engine
/// when metrics are on, records the request's latency as the answer is
/// sent (just before: a client that has its answer finds it counted).
///
/// Dropped without being sent (its request lost to a panic, a bug), a
/// stream's answer closes the connection ([`StreamSend::close_unanswered`]);
/// a datagram's client gives up by itself, as when a datagram is lost.
pub enum ReplyTo {
    /// `slot` is one of the connection's in-flight requests: a
    /// connection has a bounded number waiting for the database or for
    /// the client to read their replies. Taken when the answer is sent:
    /// still here when dropped, the answer never went.
    Stream {
        conn: Arc<dyn StreamSend>,
        slot: Option<OwnedSemaphorePermit>,
        timer: Option<Timer>,
    },
    Datagram {
        socket: Arc<dyn DatagramSend>,
        peer: PeerAddr,
        timer: Option<Timer>,
    },
}

impl ReplyTo {
    /// The answer to a request of stream `conn`, which holds `slot`.
    pub fn stream(conn: Arc<dyn StreamSend>, slot: OwnedSemaphorePermit) -> Self {
        ReplyTo::Stream {
            conn,
            slot: Some(slot),
            timer: None,
        }
    }

    /// This reply, recording its request's latency when sent.
    pub fn timed(mut self, t: Timer) -> Self {
        match &mut self {
            ReplyTo::Stream { timer, .. } | ReplyTo::Datagram { timer, .. } => *timer = Some(t),
        }
        self
    }

    /// Sends the answer unless the server is passive. `scratch` is a
    /// buffer the caller reuses between replies.
    pub fn send(mut self, modes: &Modes, id: u32, answer: Answer<'_>, scratch: &mut Vec<u8>) {
        match &mut self {
            ReplyTo::Stream { conn, slot, timer } => {
                // Passive: unanswered on purpose, the slot freed all the same.
                let Some(slot) = slot.take().filter(|_| !modes.passive()) else {
                    return;
                };
                scratch.clear();
                write_answer(scratch, STREAM_SHAPE, id, answer);
                if let Some(t) = timer.take() {
                    t.stop();
                }
                conn.send_frame(scratch, slot);
            }
            ReplyTo::Datagram {
                socket,
                peer,
                timer,
            } => {
                if modes.passive() {
                    return;
                }
                scratch.clear();
                write_answer(scratch, socket.shape(), id, answer);
                if let Some(t) = timer.take() {
                    t.stop();
                }
                if let Err(e) = socket.send_to(scratch, peer) {
                    log::debug!("reply to {peer:?} failed: {e}");
                }
            }
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let ReplyTo::Stream {
            conn,
            slot: Some(_),
            ..
        } = self
        {
            conn.close_unanswered();
        }
    }
}

/// A stream for tests: each frame sent to it arrives on a channel.
#[cfg(test)]
pub fn collected_frames() -> (Arc<dyn StreamSend>, std::sync::mpsc::Receiver<Vec<u8>>) {
    struct Collect(std::sync::Mutex<std::sync::mpsc::Sender<Vec<u8>>>);
    impl StreamSend for Collect {
        fn send_frame(&self, frame: &[u8], _slot: OwnedSemaphorePermit) {
            let _ = self.0.lock().unwrap().send(frame.to_vec());
        }
        /// An empty frame: a test that parses it fails.
        fn close_unanswered(&self) {
            let _ = self.0.lock().unwrap().send(Vec::new());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    (Arc::new(Collect(std::sync::Mutex::new(tx))), rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmdb_proto::ReplyCode;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    /// A stream that counts the frames sent to it and whether it was closed.
    #[derive(Default)]
    struct Watched {
        frames: AtomicUsize,
        closed: AtomicBool,
    }

    impl StreamSend for Watched {
        fn send_frame(&self, _frame: &[u8], _slot: OwnedSemaphorePermit) {
            self.frames.fetch_add(1, Ordering::SeqCst);
        }
        fn close_unanswered(&self) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_stream_answer_dropped_unsent_closes_its_connection_and_no_other_does() {
        let conn = Arc::new(Watched::default());
        let slots = Arc::new(Semaphore::new(3));
        let reply = || ReplyTo::stream(conn.clone(), slots.clone().try_acquire_owned().unwrap());
        let ok = Answer::Code(ReplyCode::Ok);
        let state = || {
            (
                conn.frames.load(Ordering::SeqCst),
                conn.closed.load(Ordering::SeqCst),
            )
        };

        reply().send(&Modes::default(), 1, ok, &mut Vec::new());
        assert_eq!(state(), (1, false), "sent");
        reply().send(&Modes::new(false, true), 2, ok, &mut Vec::new());
        assert_eq!(state(), (1, false), "passive: unanswered on purpose");
        drop(reply());
        assert_eq!(state(), (1, true), "dropped unsent");
        assert_eq!(slots.available_permits(), 3, "every slot given back");
    }
}
