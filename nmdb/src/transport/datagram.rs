//! The receive loop shared by every datagram transport (UDP, TIPC, SCTP):
//! one message is one request, and the answer goes back to the sender's
//! address.
//!
//! Several threads run the loop on the same socket (see
//! [`Kind::receive_threads`]). Each receive takes every queued message up
//! to [`BATCH`] in one system call, so under load a request costs less
//! than a call of its own (SCTP, whose over-long messages come in pieces,
//! takes one at a time). A message longer than the protocol allows is
//! counted as a broken request and dropped whole, never parsed cut short.
//!
//! Receivers wait without a timeout: a receive timeout arms a kernel
//! timer at every wait, and that cost one UDP client 4-5% of its requests
//! per second (BENCHMARKS.md). At shutdown they are woken to see the stop
//! flag ([`Datagram::stop_receiving`]): a UDP socket is shut for reading;
//! TIPC and SCTP sockets, which can only be shut both ways (their last
//! replies could not be sent) or not at all, are sent one message per
//! receiver.

use crate::engine::{Engine, Link};
use crate::reply::{DatagramSend, PeerAddr, ReplyShape, ReplyTo};
use nmdb_net::sctp::seqpacket_socket;
use nmdb_net::tipc::rdm_socket;
use nmdb_net::{DgramSocket, Message, RecvBatch, SendBatch, SockAddr};
use nmdb_proto::{Counter, REQUEST_HEADER_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Which datagram transport a socket carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Udp,
    Tipc,
    Sctp,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Udp => "udp",
            Kind::Tipc => "tipc",
            Kind::Sctp => "sctp",
        }
    }

    fn counter(self) -> Counter {
        match self {
            Kind::Udp => Counter::MsgUdp,
            Kind::Tipc => Counter::MsgTipc,
            Kind::Sctp => Counter::MsgSctp,
        }
    }

    /// Whether messages carry end-of-record marks (SCTP): a message
    /// longer than the buffer then arrives in pieces.
    fn has_record_marks(self) -> bool {
        self == Kind::Sctp
    }

    /// Receive threads for one socket. One for SCTP, whose pieces of an
    /// over-long message must reach the thread that skips them; the others
    /// take one per core this process may run on, so that every core can
    /// serve requests (the kernel hands each datagram to one waiting
    /// thread). No more: these threads never wait for the database, so a
    /// second thread on one core would serve nothing the first could not,
    /// and the kernel, which wakes the thread that has waited longest,
    /// would hand it every other request of a lone client at the cost of a
    /// switch between them (0.9 µs of CPU a request, BENCHMARKS.md).
    pub fn receive_threads(self) -> usize {
        if self.has_record_marks() {
            1
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// Largest reply that fits one message of this transport.
    fn max_reply(self) -> usize {
        match self {
            Kind::Udp => nmdb_proto::MAX_UDP_MSG_SIZE,
            Kind::Tipc | Kind::Sctp => nmdb_proto::MAX_MSG_SIZE,
        }
    }
}

/// A bound datagram socket and what it carries.
pub struct Datagram {
    socket: DgramSocket,
    kind: Kind,
    wake: Wake,
}

/// How a socket's receivers are woken at shutdown to see the stop flag.
enum Wake {
    /// UDP: the socket is shut for reading.
    ShutReading,
    /// TIPC and SCTP: one message per receiver, from a socket of its own
    /// to the receiving socket's address (TIPC: its port; SCTP: its
    /// address, loopback for a wildcard one). Both are made at start, so
    /// that waking needs no new descriptor at shutdown (a flood of
    /// connections may have taken them all).
    Message { from: DgramSocket, to: SockAddr },
}

impl Datagram {
    /// Wraps a bound socket, with what will wake its receivers.
    pub fn new(socket: DgramSocket, kind: Kind) -> io::Result<Self> {
        let wake = match kind {
            Kind::Udp => Wake::ShutReading,
            Kind::Tipc => Wake::Message {
                from: rdm_socket()?,
                to: socket.local_addr()?,
            },
            Kind::Sctp => {
                let to = socket.local_addr()?.as_inet().ok_or_else(|| {
                    io::Error::other("an SCTP socket without an internet address")
                })?;
                Wake::Message {
                    from: seqpacket_socket(nmdb_net::inet_family(&to))?,
                    to: SockAddr::from(nmdb_net::reachable_from_here(to)),
                }
            }
        };
        Ok(Datagram { socket, kind, wake })
    }

    /// Wakes the receivers once the stop flag is set, so that they see
    /// it. Replies can still be sent. A wake-up message can be refused
    /// when the socket's queue is full, but then its receivers are not
    /// waiting; the caller calls again until every receiver has stopped.
    pub fn stop_receiving(&self) -> io::Result<()> {
        match &self.wake {
            Wake::ShutReading => self.socket.shutdown_read(),
            Wake::Message { from, to } => {
                for _ in 0..self.kind.receive_threads() {
                    // Seen as a wake-up, never served: the stop flag is set.
                    from.send_to_without_waiting(&[0], to)?;
                }
                Ok(())
            }
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl DatagramSend for Datagram {
    fn send_to(&self, msg: &[u8], peer: &PeerAddr) -> io::Result<()> {
        self.socket
            .send_from(msg, &peer.addr, peer.via.as_ref())
            .map(drop)
    }

    fn shape(&self) -> ReplyShape {
        ReplyShape {
            framed: false,
            max_len: self.kind.max_reply(),
        }
    }
}

struct DatagramLink<'a> {
    socket: &'a Arc<Datagram>,
    peer: PeerAddr,
}

impl Link for DatagramLink<'_> {
    fn shape(&self) -> ReplyShape {
        self.socket.shape()
    }

    fn pauses_when_queue_full(&self) -> bool {
        false
    }

    fn queued_for_db(&mut self) {}

    fn defer(&mut self) -> ReplyTo {
        ReplyTo::Datagram {
            socket: self.socket.clone(),
            peer: self.peer,
            timer: None,
        }
    }
}

/// Messages taken with one receive call, when several are queued.
const BATCH: usize = 8;
/// After a batch receive found one message, this many receives take one
/// message each, with the plain call: a batch receive costs a lone client
/// (nothing else queued) about a fifth more CPU per request.
const SINGLE_RUN: u32 = 16;

/// Logs a receive failure unless it is an interruption (ICMP errors from
/// earlier replies surface here on some kernels; they concern one peer,
/// not the socket).
fn receive_failed(name: &str, e: &io::Error) {
    if e.kind() != io::ErrorKind::Interrupted {
        log::debug!("{name} receive failed: {e}");
    }
}

fn receive_loop(socket: Arc<Datagram>, engine: Arc<Engine>, stop: Arc<AtomicBool>) {
    if socket.kind.has_record_marks() {
        return receive_pieces(socket, engine, stop);
    }
    // One byte more than the largest message: a longer one is flagged
    // incomplete by the kernel and dropped as broken, never parsed cut.
    let mut batch = RecvBatch::new(BATCH, nmdb_proto::MAX_MSG_SIZE + 1);
    let mut single = vec![0u8; nmdb_proto::MAX_MSG_SIZE + 1];
    let mut replies = SendBatch::new();
    let mut singles_left = 0;
    while !stop.load(Ordering::Relaxed) {
        if singles_left > 0 {
            singles_left -= 1;
            match socket.socket.recv_message(&mut single, false) {
                // Woken to stop: what came is the empty read of a socket
                // shut for reading, not a request.
                Ok(_) if stop.load(Ordering::Relaxed) => break,
                Ok(msg) => {
                    let bytes = &single[..msg.len];
                    serve_message(&socket, &engine, &msg, bytes, &mut replies);
                    send_replies(&socket, &mut replies);
                }
                Err(e) => receive_failed(socket.kind.name(), &e),
            }
            continue;
        }
        let received = match socket.socket.recv_batch(&mut batch, BATCH) {
            Ok(_) if stop.load(Ordering::Relaxed) => break,
            Ok(n) => n,
            Err(e) => {
                receive_failed(socket.kind.name(), &e);
                continue;
            }
        };
        if received == 1 {
            singles_left = SINGLE_RUN;
        }
        for i in 0..received {
            let (msg, bytes) = batch.message(i);
            serve_message(&socket, &engine, &msg, bytes, &mut replies);
        }
        send_replies(&socket, &mut replies);
    }
}

/// Sends the immediate answers gathered in `replies`.
fn send_replies(socket: &Datagram, replies: &mut SendBatch) {
    if !replies.is_empty() {
        let name = socket.kind.name();
        socket.socket.send_batch(replies, |to, e| {
            log::debug!("{name} reply to {to:?} failed: {e}");
        });
    }
}

/// The receive loop of a socket with record marks (SCTP): one message,
/// or one piece of a message, per call.
fn receive_pieces(socket: Arc<Datagram>, engine: Arc<Engine>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; nmdb_proto::MAX_MSG_SIZE + 1];
    let mut replies = SendBatch::new();
    // Inside an over-long message, whose pieces keep coming until its
    // end-of-record mark.
    let mut skipping_rest = false;
    while !stop.load(Ordering::Relaxed) {
        let msg = match socket.socket.recv_message(&mut buf, true) {
            // Woken to stop: what came is a wake-up, not a request.
            Ok(_) if stop.load(Ordering::Relaxed) => break,
            Ok(m) => m,
            Err(e) => {
                receive_failed(socket.kind.name(), &e);
                continue;
            }
        };
        if skipping_rest {
            skipping_rest = !msg.complete;
            continue;
        }
        skipping_rest = !msg.complete;
        serve_message(&socket, &engine, &msg, &buf[..msg.len], &mut replies);
        send_replies(&socket, &mut replies);
    }
}

/// Answers one received message (`bytes`, all of it that fit) into
/// `replies`, or counts it broken when it was longer than the protocol
/// allows.
fn serve_message(
    socket: &Arc<Datagram>,
    engine: &Engine,
    msg: &Message,
    bytes: &[u8],
    replies: &mut SendBatch,
) {
    let peer = PeerAddr {
        addr: msg.from,
        via: msg.to,
    };
    if !msg.complete {
        engine.stats.inc(socket.kind.counter());
        engine.stats.inc(Counter::NetBrokenReq);
        log::debug!(
            "{}: dropped a message from {peer:?} longer than the protocol allows",
            socket.kind.name()
        );
        return;
    }
    if bytes.len() >= REQUEST_HEADER_LEN {
        engine.stats.inc(socket.kind.counter());
    }
    let start = replies.buffer().len();
    let mut link = DatagramLink { socket, peer };
    // A datagram has no connection to close: the disposition is moot.
    engine.handle(bytes, &mut link, replies.buffer());
    replies.mark(start, peer.addr, peer.via);
}

/// Starts the receive loops of `socket`.
pub fn spawn(
    socket: Arc<Datagram>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    (0..socket.kind.receive_threads())
        .map(|i| {
            let (socket, engine, stop) = (socket.clone(), engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("nmdb-{}-{i}", socket.kind.name()))
                .spawn(move || receive_loop(socket, engine, stop))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{engine_on, panicking_backend, PANIC_KEY};
    use nmdb_proto::{Reply, Request, FLAGS_CACHE_ONLY};
    use std::time::Duration;

    #[test]
    fn a_request_that_panics_is_dropped_and_every_receiver_goes_on() {
        let (socket, addr) = super::super::udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let socket = Arc::new(socket);
        let engine = engine_on(panicking_backend());
        let stop = Arc::new(AtomicBool::new(false));
        let receivers = spawn(socket.clone(), engine, stop.clone()).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reply = [0u8; 64];
        // Without the receivers going on, each round would end one of
        // them, and a later round's answer would never come.
        for id in 0..2 * receivers.len() as u32 {
            let mut msg = Vec::new();
            Request::Get { key: PANIC_KEY }.encode(id, 0, &mut msg);
            client.send_to(&msg, addr).unwrap();
            msg.clear();
            Request::Get { key: b"k" }.encode(id, FLAGS_CACHE_ONLY, &mut msg);
            client.send_to(&msg, addr).unwrap();
            let n = client
                .recv(&mut reply)
                .expect("the answer to a later request");
            assert_eq!(Reply::parse(&reply[..n]).unwrap().id, id);
        }
        stop.store(true, Ordering::Relaxed);
        socket.stop_receiving().unwrap();
        for r in receivers {
            r.join().unwrap();
        }
    }

    #[test]
    fn udp_and_tipc_get_a_receive_thread_per_core_and_sctp_one() {
        let cores = std::thread::available_parallelism().unwrap().get();
        for kind in [Kind::Udp, Kind::Tipc] {
            assert_eq!(kind.receive_threads(), cores);
        }
        assert_eq!(Kind::Sctp.receive_threads(), 1);
    }
}
