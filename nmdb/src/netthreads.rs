//! The network threads: one single-threaded tokio runtime per core, with
//! TCP connections spread over them as they are accepted, and one more,
//! `nmdb-accept`, for the listeners alone.
//!
//! A connection is served start to end by the thread it was given, so a
//! request costs one `epoll_wait`, one read and one write, and nothing of
//! the work-stealing scheduler's bookkeeping (clock reads, idle-worker
//! wake-ups, task hand-offs between threads) that a multi-threaded
//! runtime pays per wake-up. Nothing on these threads waits on anything
//! but the network: database work goes to its workers (`dbqueue`), and a
//! synchronous write made in place never waits in a write stall.
//!
//! Listeners have a thread of their own because a runtime polls its ready
//! tasks in turn: behind a thousand connections that all have replies to
//! write, an accept loop sharing their runtime waited a whole round of them
//! (150 ms, measured) before a new client was even taken. A connection
//! handed from the accept thread is then polled after at most two of the
//! network thread's own ready tasks, not 30 as tokio does by default (see
//! [`HANDED_OVER_EVERY`]).

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
    listeners: Handle,
}

impl Spawner {
    /// The runtime that listeners run on (the `nmdb-accept` thread).
    pub fn listeners(&self) -> &Handle {
        &self.listeners
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

    /// Starts `n` network threads (at least one) and the accept thread.
    pub fn start_n(n: usize) -> std::io::Result<Self> {
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (handle, thread) = start_thread(format!("nmdb-net-{i}"))?;
            handles.push(handle);
            threads.push(thread);
        }
        let (listeners, thread) = start_thread("nmdb-accept".into())?;
        threads.push(thread);
        Ok(NetThreads {
            spawner: Arc::new(Spawner {
                handles,
                next: AtomicUsize::new(0),
                listeners,
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

/// Every how many polls a runtime takes a task another thread handed it
/// (a new connection from the accept thread, or a task another thread
/// woke) before its own ready ones: every other poll. With tokio's
/// default, every 31st, a client connecting beside 1000 connections with
/// replies to write waited 104-135 ms for its first answer; with every
/// other poll 69-85 ms, with every poll 62-74 (`nmdb-overload`,
/// BENCHMARKS.md), and one client's requests did not cost more either
/// way. Not every poll: other threads can keep handing tasks over
/// (database workers freeing the in-flight slots of many pipelining
/// clients), and the thread's own, those its sockets made ready, must
/// still have every other turn.
const HANDED_OVER_EVERY: u32 = 2;

/// A thread named `name` running a single-threaded runtime until told to
/// stop; the runtime's handle, to spawn tasks on it.
fn start_thread(name: String) -> std::io::Result<(Handle, NetThread)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .global_queue_interval(HANDED_OVER_EVERY)
        // Its blocking pool's: encoding a metrics scrape (made for one,
        // gone after 10 s idle).
        .thread_name("nmdb-blocking")
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<Duration>();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        // Tasks spawned from anywhere run while this waits.
        let grace = runtime.block_on(stopped).unwrap_or(Duration::from_secs(1));
        runtime.shutdown_timeout(grace);
    })?;
    Ok((handle, NetThread { stop, thread }))
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
    fn listeners_run_while_every_network_thread_is_busy() {
        let threads = NetThreads::start_n(1).unwrap();
        let (listener_ran, wait_for_listener) = mpsc::channel();
        let (busy_result, result) = mpsc::channel();
        // The only network thread is held until the listener has run: on
        // a shared runtime the listener could never run, and this waits
        // out its patience.
        threads.spawner().spawn(async move {
            let ran = wait_for_listener.recv_timeout(Duration::from_secs(10));
            busy_result.send(ran.is_ok()).unwrap();
        });
        threads.spawner().listeners().spawn(async move {
            let name = std::thread::current().name().unwrap().to_owned();
            listener_ran.send(name).unwrap();
        });
        assert!(
            result.recv().unwrap(),
            "the listener waited for the busy thread"
        );
        threads.shutdown(Duration::from_secs(1));
    }

    /// A task always ready again: each poll reports itself on `polled`
    /// ("start" the first time, "busy" after), then holds its thread until
    /// the test lets it go on (or ends, once the test drops the gate).
    struct Gated {
        polled: mpsc::Sender<&'static str>,
        gate: Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
        started: bool,
    }

    impl Future for Gated {
        type Output = ();

        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            let this = self.get_mut();
            let _ = this
                .polled
                .send(if this.started { "busy" } else { "start" });
            this.started = true;
            if this.gate.lock().unwrap().recv().is_err() {
                return std::task::Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }

    /// One network thread whose tasks the test steps through: `busy`
    /// [`Gated`] tasks of its own, and tasks handed to it from the test's
    /// thread, as the accept thread hands it connections. Every poll is
    /// reported, in order, by [`Stepped::next`].
    struct Stepped {
        threads: NetThreads,
        polled: mpsc::Sender<&'static str>,
        events: mpsc::Receiver<&'static str>,
        step: mpsc::Sender<()>,
    }

    impl Stepped {
        /// Starts the thread with `busy` gated tasks and steps it until
        /// each has been polled (some maybe more than once: the runtime
        /// picks the order): the last one started holds the thread, and all
        /// are its own ready tasks, none still waiting to be handed over.
        fn start(busy: usize) -> Self {
            let threads = NetThreads::start_n(1).unwrap();
            let (polled, events) = mpsc::channel();
            let (step, gate) = mpsc::channel();
            let gate = Arc::new(std::sync::Mutex::new(gate));
            for _ in 0..busy {
                let (polled, gate) = (polled.clone(), gate.clone());
                threads.spawner().spawn(Gated {
                    polled,
                    gate,
                    started: false,
                });
            }
            let stepped = Stepped {
                threads,
                polled,
                events,
                step,
            };
            let mut started = 0;
            while started < busy {
                if stepped.next() == "start" {
                    started += 1;
                }
                if started < busy {
                    stepped.go_on();
                }
            }
            stepped
        }

        /// Hands the thread a task that reports `name` when polled.
        fn hand_over(&self, name: &'static str) {
            let polled = self.polled.clone();
            self.threads.spawner().spawn(async move {
                let _ = polled.send(name);
            });
        }

        /// Lets the busy task holding the thread go on.
        fn go_on(&self) {
            self.step.send(()).unwrap();
        }

        /// The next task polled.
        fn next(&self) -> &'static str {
            self.events.recv().unwrap()
        }

        fn stop(self) {
            drop(self.step);
            self.threads.shutdown(Duration::from_secs(1));
        }
    }

    #[test]
    fn a_task_another_thread_hands_over_waits_for_two_busy_polls_at_most() {
        let thread = Stepped::start(3);
        // New connections, as the accept thread hands them over, one at a
        // time: with tokio's default they waited for 29 polls of the busy
        // tasks or more.
        for n in 0..6 {
            thread.hand_over("newcomer");
            let mut busy_first = 0;
            loop {
                thread.go_on();
                match thread.next() {
                    "newcomer" => break,
                    _ => busy_first += 1,
                }
            }
            // Every other poll at most, give or take the runtime's own
            // turn at its driver.
            assert!(
                busy_first <= 2,
                "newcomer {n} waited for {busy_first} busy polls"
            );
            // A busy task holds the thread again before the next one.
            assert_eq!(thread.next(), "busy");
        }
        thread.stop();
    }

    #[test]
    fn a_threads_own_ready_task_runs_between_tasks_handed_over() {
        // The thread's own task, always ready, holds the thread while
        // another thread hands it ten tasks at once.
        let thread = Stepped::start(1);
        const GIVEN: usize = 10;
        for _ in 0..GIVEN {
            thread.hand_over("given");
        }
        let mut order = Vec::new();
        thread.go_on();
        while order.iter().filter(|&&e| e == "given").count() < GIVEN {
            let event = thread.next();
            if event == "busy" {
                thread.go_on();
            }
            order.push(event);
        }
        // Taking every handed-over task first would run all ten in a row.
        let longest_run = order
            .split(|&e| e == "busy")
            .map(<[_]>::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run <= 2, "{order:?}");
        thread.stop();
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
