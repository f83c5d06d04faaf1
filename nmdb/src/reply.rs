//! Where replies go: straight into a transport's buffer for answers known at
//! once, or through a [`ReplyTo`] for answers the database queue produces
//! later. Passive mode and the datagram size limit are enforced here, once,
//! for every transport.

use crate::metrics::Timer;
use nmdb_proto::{begin_frame, end_frame, Answer, ErrorCode, MAX_MSG_SIZE, TCP_PREFIX_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

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

/// A deferred reply on its way to a stream connection's writer. The permit
/// travels with it: a connection has a bounded number of requests in
/// flight, and a slot frees only once its reply has been written (or
/// dropped).
pub struct StreamReply {
    pub bytes: Vec<u8>,
    _slot: OwnedSemaphorePermit,
}

/// Where the database queue sends an answer. `timer`, set by the engine
/// when metrics are on, records the request's latency as the answer is
/// sent (just before: a client that has its answer finds it counted).
pub enum ReplyTo {
    Stream {
        tx: mpsc::UnboundedSender<StreamReply>,
        slot: OwnedSemaphorePermit,
        timer: Option<Timer>,
    },
    Datagram {
        socket: Arc<dyn DatagramSend>,
        peer: PeerAddr,
        timer: Option<Timer>,
    },
}

impl ReplyTo {
    /// This reply, recording its request's latency when sent.
    pub fn timed(mut self, t: Timer) -> Self {
        match &mut self {
            ReplyTo::Stream { timer, .. } | ReplyTo::Datagram { timer, .. } => *timer = Some(t),
        }
        self
    }

    /// Sends the answer unless the server is passive. `scratch` is a
    /// buffer the caller reuses between replies.
    pub fn send(self, modes: &Modes, id: u32, answer: Answer<'_>, scratch: &mut Vec<u8>) {
        if modes.passive() {
            return;
        }
        match self {
            ReplyTo::Stream { tx, slot, timer } => {
                let mut bytes = Vec::with_capacity(4 + answer.encoded_len());
                write_answer(&mut bytes, STREAM_SHAPE, id, answer);
                if let Some(t) = timer {
                    t.stop();
                }
                // The connection may be gone; its client no longer waits.
                let _ = tx.send(StreamReply { bytes, _slot: slot });
            }
            ReplyTo::Datagram {
                socket,
                peer,
                timer,
            } => {
                scratch.clear();
                write_answer(scratch, socket.shape(), id, answer);
                if let Some(t) = timer {
                    t.stop();
                }
                if let Err(e) = socket.send_to(scratch, &peer) {
                    log::debug!("reply to {peer:?} failed: {e}");
                }
            }
        }
    }
}
