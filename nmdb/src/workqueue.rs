//! The queue in front of one database worker. It never makes a pusher
//! wait (pushers hold cache stripes and serve other clients); what it
//! holds is bounded in bytes by the [`QueueBudget`](crate::budget).
//!
//! A plain channel wakes the worker for every request, and a worker that
//! wakes, writes one request and sleeps again costs two context switches
//! per asynchronous write. Here only a request somebody waits for (a read,
//! a synchronous write, a key walk: "urgent") wakes the worker at once.
//! Asynchronous writes, already answered, wake an idle worker too, but it
//! then lingers up to [`LINGER`] for more of them, so a stream of writes is
//! applied as one batch. After such a batch the worker expects the stream
//! to go on and lingers again before it goes idle, so a steady stream is
//! taken by the worker's timer alone, with no wake-up from the threads
//! that queue it. Order is untouched: the worker always takes items in
//! queue order, and an urgent item ends the lingering, so a read still
//! sees every write queued before it.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a worker woken by asynchronous writes only waits for more.
/// Longer lingers make fewer, larger batches: each batch costs a wake-up
/// and a RocksDB write group with its log `write`. At 4 ms rather than 1,
/// one client's normal SETs took 6-13% less server CPU and 8 clients'
/// 8-13% less; at 16 ms rather than 4, one client's normal SETs went from
/// 73-82% of echo to 81-87% over TCP and from 62-73% to 71-74% over UDP
/// (BENCHMARKS.md). 64 ms gained nothing more: four workers sharing 40k
/// writes a second each fill [`LINGER_BATCH`] in about 13 ms. Nobody
/// waits for these writes: a read or synchronous write queued behind
/// them ends the linger, and a clean exit applies them; a crash may lose
/// the last 16 ms of them.
pub const LINGER: Duration = Duration::from_millis(16);
/// Queued asynchronous writes that end the lingering early.
pub const LINGER_BATCH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    /// Processing a batch: pushes need not wake it.
    Busy,
    /// Waiting for anything.
    Idle,
    /// Collecting asynchronous writes before processing them.
    Lingering,
}

struct State<T> {
    items: VecDeque<T>,
    /// Some queued item is urgent.
    urgent: bool,
    worker: WorkerState,
    /// The last batch taken was asynchronous writes only: more are likely.
    streaming: bool,
}

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    linger: Duration,
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WorkQueue<T> {
    pub fn new() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                urgent: false,
                worker: WorkerState::Busy,
                streaming: false,
            }),
            wake: Condvar::new(),
            linger: LINGER,
        }
    }

    /// A queue whose worker lingers `linger` instead of [`LINGER`].
    #[cfg(test)]
    fn with_linger(linger: Duration) -> Self {
        WorkQueue {
            linger,
            ..Self::new()
        }
    }

    /// Queues `item`; `urgent` when someone waits for its result. Never
    /// waits. True when the push woke the worker.
    pub fn push(&self, item: T, urgent: bool) -> bool {
        let mut s = self.state.lock();
        s.items.push_back(item);
        s.urgent |= urgent;
        let wake = match s.worker {
            WorkerState::Idle => true,
            WorkerState::Lingering => s.urgent || s.items.len() >= LINGER_BATCH,
            WorkerState::Busy => false,
        };
        if wake {
            s.worker = WorkerState::Busy;
            self.wake.notify_one();
        }
        wake
    }

    /// Items queued and not yet taken by the worker.
    pub fn waiting(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Moves up to `max` items, in queue order, into `out`; waits while the
    /// queue is empty, and lingers while it holds only a few non-urgent
    /// items (or none, right after a batch of them).
    pub fn pop_batch(&self, out: &mut Vec<T>, max: usize) {
        let mut s = self.state.lock();
        let mut linger_until = s.streaming.then(|| Instant::now() + self.linger);
        while !s.urgent && s.items.len() < LINGER_BATCH {
            let Some(until) = linger_until.or_else(|| {
                // Nothing expected: any push wakes the worker.
                (!s.items.is_empty()).then(|| Instant::now() + self.linger)
            }) else {
                s.worker = WorkerState::Idle;
                self.wake.wait(&mut s);
                continue;
            };
            linger_until = Some(until);
            s.worker = WorkerState::Lingering;
            if self.wake.wait_until(&mut s, until).timed_out() {
                if !s.items.is_empty() {
                    break;
                }
                // The stream ended: wait for anything.
                linger_until = None;
                s.streaming = false;
            }
        }
        s.worker = WorkerState::Busy;
        s.streaming = !s.urgent;
        let n = s.items.len().min(max.max(1));
        out.extend(s.items.drain(..n));
        // What is left was queued behind a full batch: take it at once.
        s.urgent = !s.items.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_come_out_in_queue_order() {
        let q = WorkQueue::new();
        for i in 0..10 {
            q.push(i, i % 3 == 0);
        }
        let mut out = Vec::new();
        q.pop_batch(&mut out, 4);
        q.pop_batch(&mut out, 100);
        assert_eq!(out, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn an_urgent_item_takes_the_writes_queued_before_it_along() {
        let q = WorkQueue::new();
        q.push(1, false);
        q.push(2, false);
        q.push(3, true);
        let mut out = Vec::new();
        q.pop_batch(&mut out, 100);
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn an_urgent_push_wakes_a_lingering_worker() {
        let q = Arc::new(WorkQueue::new());
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                while out.len() < 2 {
                    q.pop_batch(&mut out, 100);
                }
                out
            })
        };
        q.push(1, false);
        q.push(2, true);
        assert_eq!(worker.join().unwrap(), [1, 2]);
    }

    #[test]
    fn a_lone_non_urgent_item_is_delivered_once_the_linger_ends() {
        let q = Arc::new(WorkQueue::new());
        q.push(7, false);
        let mut out = Vec::new();
        let start = Instant::now();
        q.pop_batch(&mut out, 100);
        assert_eq!(out, [7]);
        // It waited for company first: no wake-up ended the linger early.
        assert!(start.elapsed() >= LINGER, "{:?}", start.elapsed());
    }

    /// One [`WorkQueue::pop_batch`] on a thread of its own.
    fn pop_in_a_thread(q: &Arc<WorkQueue<i32>>) -> std::thread::JoinHandle<Vec<i32>> {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            q.pop_batch(&mut out, 100);
            out
        })
    }

    /// Waits until the worker waits in `state`.
    fn wait_for_state(q: &WorkQueue<i32>, state: WorkerState) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while q.state.lock().worker != state {
            assert!(Instant::now() < deadline, "the worker never got {state:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn after_a_batch_of_asynchronous_writes_more_of_them_wake_nobody() {
        let q = Arc::new(WorkQueue::with_linger(Duration::from_secs(60)));
        // A full batch of asynchronous writes, taken without lingering.
        for i in 0..LINGER_BATCH as i32 {
            q.push(i, false);
        }
        let mut out = Vec::new();
        q.pop_batch(&mut out, LINGER_BATCH);
        assert_eq!(out.len(), LINGER_BATCH);
        let worker = pop_in_a_thread(&q);
        // The worker expects more and lingers, not idle, on an empty queue.
        wait_for_state(&q, WorkerState::Lingering);
        assert!(q.waiting() == 0);
        assert!(!q.push(-2, false), "an asynchronous write woke the worker");
        assert!(q.push(-3, true), "a request someone waits for must wake it");
        assert_eq!(worker.join().unwrap(), [-2, -3]);
    }

    #[test]
    fn a_stream_that_ends_leaves_the_worker_idle_for_the_next_push_to_wake() {
        let q = Arc::new(WorkQueue::new());
        q.push(1, false);
        let mut out = Vec::new();
        q.pop_batch(&mut out, 100);
        let worker = pop_in_a_thread(&q);
        // Once the worker gave up lingering it waits for anything, and an
        // asynchronous write wakes it.
        wait_for_state(&q, WorkerState::Idle);
        assert!(q.push(2, false));
        assert_eq!(worker.join().unwrap(), [2]);
    }

    #[test]
    fn waiting_counts_what_the_worker_has_not_taken() {
        let q = WorkQueue::new();
        assert_eq!(q.waiting(), 0);
        for i in 0..5 {
            q.push(i, true);
        }
        assert_eq!(q.waiting(), 5);
        let mut out = Vec::new();
        q.pop_batch(&mut out, 3);
        assert_eq!(q.waiting(), 2);
    }
}
