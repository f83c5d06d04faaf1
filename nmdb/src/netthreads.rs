//! The network threads: one single-threaded tokio runtime per core, with
//! TCP connections spread over them as they are accepted.
//!
//! A connection is served start to end by the thread it was given, so a
//! request costs one `epoll_wait`, one read and one write, and nothing of
//! the work-stealing scheduler's bookkeeping (clock reads, idle-worker
//! wake-ups, task hand-offs between threads) that a multi-threaded
//! runtime pays per wake-up. Nothing on these threads waits on anything
//! but the network: database work goes to its workers (`dbqueue`), and a
//! synchronous write made in place never waits in a write stall.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Where new tasks go: the runtimes' handles, taken in turn.
#[derive(Debug)]
pub struct Spawner {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Spawner {
    /// The runtime that listeners and other long-lived tasks run on.
    pub fn first(&self) -> &Handle {
        &self.handles[0]
    }

    /// Runs `task` on the next network thread in turn.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[i].spawn(task));
    }
}

struct NetThread {
    /// Tells the thread to shut its runtime down within this long.
    stop: oneshot::Sender<Duration>,
    thread: JoinHandle<()>,
}

pub struct NetThreads {
    spawner: Arc<Spawner>,
    threads: Vec<NetThread>,
}

impl NetThreads {
    /// Starts one network thread per CPU this process may run on.
    pub fn start() -> std::io::Result<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start_n(n)
    }

    /// Starts `n` network threads (at least one).
    pub fn start_n(n: usize) -> std::io::Result<Self> {
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<Duration>();
            let thread = std::thread::Builder::new()
                .name(format!("nmdb-net-{i}"))
                .spawn(move || {
                    // Tasks spawned from anywhere run while this waits.
                    let grace = runtime.block_on(stopped).unwrap_or(Duration::from_secs(1));
                    runtime.shutdown_timeout(grace);
                })?;
            threads.push(NetThread { stop, thread });
        }
        Ok(NetThreads {
            spawner: Arc::new(Spawner {
                handles,
                next: AtomicUsize::new(0),
            }),
            threads,
        })
    }

    pub fn spawner(&self) -> &Arc<Spawner> {
        &self.spawner
    }

    /// Stops every thread, dropping its tasks after at most `grace`.
    pub fn shutdown(self, grace: Duration) {
        let mut joins = Vec::new();
        for t in self.threads {
            // A thread that is gone has nothing left to stop.
            let _ = t.stop.send(grace);
            joins.push(t.thread);
        }
        for j in joins {
            if j.join().is_err() {
                log::error!("a network thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn tasks_are_spread_over_every_thread_in_turn() {
        let threads = NetThreads::start_n(3).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..6 {
            let tx = tx.clone();
            threads.spawner().spawn(async move {
                let name = std::thread::current().name().unwrap().to_owned();
                tx.send(name).unwrap();
            });
        }
        let mut names: Vec<String> = (0..6).map(|_| rx.recv().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "nmdb-net-0",
                "nmdb-net-0",
                "nmdb-net-1",
                "nmdb-net-1",
                "nmdb-net-2",
                "nmdb-net-2"
            ]
        );
        threads.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn shutdown_drops_tasks_that_never_end() {
        let threads = NetThreads::start_n(2).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        threads.spawner().spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        threads.shutdown(Duration::from_millis(100));
        // The task was dropped, and with it the sender.
        assert!(rx.recv().is_err());
    }
}
