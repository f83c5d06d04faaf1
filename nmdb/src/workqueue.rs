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
//! applied as one batch. Order is untouched: the worker always takes items
//! in queue order, and an urgent item ends the lingering, so a read still
//! sees every write queued before it.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a worker woken by asynchronous writes only waits for more.
pub const LINGER: Duration = Duration::from_millis(1);
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
}

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
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
            }),
            wake: Condvar::new(),
        }
    }

    /// Queues `item`; `urgent` when someone waits for its result. Never
    /// waits.
    pub fn push(&self, item: T, urgent: bool) {
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
    }

    /// Items queued and not yet taken by the worker.
    pub fn waiting(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Moves up to `max` items, in queue order, into `out`; waits while the
    /// queue is empty, and lingers while it holds only a few non-urgent
    /// items.
    pub fn pop_batch(&self, out: &mut Vec<T>, max: usize) {
        let mut s = self.state.lock();
        while s.items.is_empty() {
            s.worker = WorkerState::Idle;
            self.wake.wait(&mut s);
        }
        if !s.urgent && s.items.len() < LINGER_BATCH {
            s.worker = WorkerState::Lingering;
            let until = Instant::now() + LINGER;
            while s.worker == WorkerState::Lingering {
                if self.wake.wait_until(&mut s, until).timed_out() {
                    break;
                }
            }
        }
        s.worker = WorkerState::Busy;
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
