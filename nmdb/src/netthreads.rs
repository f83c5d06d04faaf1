//! The network threads: one TCP event loop per core (`nmdb-net-N`, see
//! [`crate::transport::tcp::event_loop`]), with connections spread over
//! them as they are accepted, and one more thread, `nmdb-accept`, running
//! a single-threaded tokio runtime for the listeners (TCP accepts and the
//! metrics' HTTP server).
//!
//! A connection is served start to end by the loop it was given, so a
//! request costs one `epoll_wait`, one read and one write. Nothing on
//! these threads waits on anything but the network: database work goes to
//! its workers (`dbqueue`), and a synchronous write made in place never
//! waits in a write stall.
//!
//! Listeners have a thread of their own so that a new client is taken at
//! once, however busy the loops are with connections that have replies to
//! write; the loop it is handed to registers it at its next wake-up.

use crate::transport::tcp::event_loop::{EventLoop, Inbox, NewConnection};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Where accepted connections go: the loops, taken in turn.
pub struct Loops {
    inboxes: Vec<Arc<Inbox>>,
    next: AtomicUsize,
}

impl Loops {
    /// Hands `conn` to the next loop in turn.
    pub fn hand_over(&self, conn: NewConnection) {
        self.inboxes[self.next_index()].hand_over(conn);
    }

    fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.inboxes.len()
    }
}

struct AcceptThread {
    /// Tells the thread to shut its runtime down within this long.
    stop: oneshot::Sender<Duration>,
    thread: JoinHandle<()>,
}

pub struct NetThreads {
    loops: Arc<Loops>,
    loop_threads: Vec<JoinHandle<()>>,
    listeners: Handle,
    accept: AcceptThread,
}

impl NetThreads {
    /// Starts one event loop per CPU this process may run on.
    pub fn start() -> std::io::Result<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start_n(n)
    }

    /// Starts `n` event loops (at least one) and the accept thread.
    pub fn start_n(n: usize) -> std::io::Result<Self> {
        let mut inboxes = Vec::new();
        let mut loop_threads = Vec::new();
        for i in 0..n.max(1) {
            let event_loop = EventLoop::new()?;
            inboxes.push(event_loop.inbox().clone());
            let thread = std::thread::Builder::new()
                .name(format!("nmdb-net-{i}"))
                .spawn(move || event_loop.run());
            match thread {
                Ok(t) => loop_threads.push(t),
                Err(e) => {
                    stop_loops(&inboxes, loop_threads);
                    return Err(e);
                }
            }
        }
        let (listeners, accept) = match start_accept_thread() {
            Ok(started) => started,
            Err(e) => {
                stop_loops(&inboxes, loop_threads);
                return Err(e);
            }
        };
        Ok(NetThreads {
            loops: Arc::new(Loops {
                inboxes,
                next: AtomicUsize::new(0),
            }),
            loop_threads,
            listeners,
            accept,
        })
    }

    pub fn loops(&self) -> &Arc<Loops> {
        &self.loops
    }

    /// The runtime that listeners run on (the `nmdb-accept` thread).
    pub fn listeners(&self) -> &Handle {
        &self.listeners
    }

    /// Stops every thread: the listeners' tasks are dropped after at most
    /// `grace`, the loops' connections at once.
    pub fn shutdown(self, grace: Duration) {
        // A thread that is gone has nothing left to stop.
        let _ = self.accept.stop.send(grace);
        if self.accept.thread.join().is_err() {
            log::error!("the accept thread panicked");
        }
        stop_loops(&self.loops.inboxes, self.loop_threads);
    }
}

fn stop_loops(inboxes: &[Arc<Inbox>], threads: Vec<JoinHandle<()>>) {
    for inbox in inboxes {
        inbox.stop();
    }
    for t in threads {
        if t.join().is_err() {
            log::error!("a network thread panicked");
        }
    }
}

/// The `nmdb-accept` thread, running a single-threaded runtime until told
/// to stop; the runtime's handle, to spawn listeners on it.
fn start_accept_thread() -> std::io::Result<(Handle, AcceptThread)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // Its blocking pool's: encoding a metrics scrape (made for one,
        // gone after 10 s idle).
        .thread_name("nmdb-blocking")
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<Duration>();
    let thread = std::thread::Builder::new()
        .name("nmdb-accept".into())
        .spawn(move || {
            // Tasks spawned from anywhere run while this waits.
            let grace = runtime.block_on(stopped).unwrap_or(Duration::from_secs(1));
            runtime.shutdown_timeout(grace);
        })?;
    Ok((handle, AcceptThread { stop, thread }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_spread_over_every_loop_in_turn() {
        let threads = NetThreads::start_n(3).unwrap();
        let picked: Vec<usize> = (0..6).map(|_| threads.loops().next_index()).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
        threads.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn listeners_run_on_the_accept_thread() {
        let threads = NetThreads::start_n(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        threads.listeners().spawn(async move {
            let name = std::thread::current().name().unwrap().to_owned();
            tx.send(name).unwrap();
        });
        assert_eq!(rx.recv().unwrap(), "nmdb-accept");
        threads.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn shutdown_drops_listener_tasks_that_never_end() {
        let threads = NetThreads::start_n(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        threads.listeners().spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        threads.shutdown(Duration::from_millis(100));
        // The task was dropped, and with it the sender.
        assert!(rx.recv().is_err());
    }
}
