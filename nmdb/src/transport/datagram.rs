//! The receive loop shared by every datagram transport (UDP now; TIPC and
//! SCTP have the same shape): one datagram is one request, and the answer
//! goes back to the sender's address.
//!
//! Several threads run the loop on the same socket, so one slow request
//! (a database read) does not hold up the next datagram. Sockets have a
//! receive timeout so the threads notice shutdown.

use crate::engine::{Engine, Link};
use crate::reply::{DatagramSend, PeerAddr, ReplyShape, ReplyTo};
use nmdb_proto::{Counter, REQUEST_HEADER_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a blocked receiver checks for shutdown.
pub const STOP_POLL: Duration = Duration::from_millis(200);

/// A datagram socket the receive loop can serve.
pub trait DatagramSocket: DatagramSend {
    /// Receives one datagram; `WouldBlock`/`TimedOut` when the receive
    /// timeout passed with nothing.
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, PeerAddr)>;
    /// The counter of messages received on this transport.
    fn counter(&self) -> Counter;
    /// Name for logs.
    fn name(&self) -> &'static str;
}

struct DatagramLink<'a, S: DatagramSocket + 'static> {
    socket: &'a Arc<S>,
    peer: PeerAddr,
}

impl<S: DatagramSocket + 'static> Link for DatagramLink<'_, S> {
    fn shape(&self) -> ReplyShape {
        self.socket.shape()
    }

    fn defer(&mut self) -> ReplyTo {
        ReplyTo::Datagram {
            socket: self.socket.clone(),
            peer: self.peer,
        }
    }
}

fn receive_loop<S: DatagramSocket + 'static>(
    socket: Arc<S>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
) {
    // One byte more than the largest datagram, so nothing is cut silently.
    let mut buf = vec![0u8; 65536 + 1];
    let mut out = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // ICMP errors from earlier replies surface here on some
                // kernels; they concern one peer, not the socket.
                log::debug!("{} receive failed: {e}", socket.name());
                continue;
            }
        };
        if len >= REQUEST_HEADER_LEN {
            engine.stats.inc(socket.counter());
        }
        out.clear();
        let mut link = DatagramLink {
            socket: &socket,
            peer,
        };
        engine.handle(&buf[..len], &mut link, &mut out);
        if !out.is_empty() {
            if let Err(e) = socket.send_to(&out, &peer) {
                log::debug!("{} reply to {peer:?} failed: {e}", socket.name());
            }
        }
    }
}

/// Starts `threads` receive loops on `socket`.
pub fn spawn<S: DatagramSocket + 'static>(
    socket: Arc<S>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
    threads: usize,
) -> io::Result<Vec<JoinHandle<()>>> {
    (0..threads.max(1))
        .map(|i| {
            let (socket, engine, stop) = (socket.clone(), engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("nmdb-{}-{i}", socket.name()))
                .spawn(move || receive_loop(socket, engine, stop))
        })
        .collect()
}
