//! The database queue's memory budget, in bytes.
//!
//! Every request queued for the database is charged what it holds (key,
//! value, and the queue entry itself) until its batch is written. Nothing
//! ever blocks on the budget while holding a cache stripe or serving other
//! clients: the queue always takes the request, and the budget only tells
//! transports to slow down.
//!
//! - A stream connection that finds the budget spent stops reading its
//!   socket until the queue drains below the limit: the client that floods
//!   waits, nobody else does. The overshoot is at most one request per
//!   connection.
//! - Datagram transports have no connection to pause, and their receive
//!   threads serve every client. Past half as much again as the limit,
//!   their requests that need the database are refused with `ERR_MEM`
//!   rather than queued; before that they queue as usual.

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

pub struct QueueBudget {
    queued: AtomicUsize,
    limit: usize,
    room: Notify,
}

impl QueueBudget {
    /// A budget of `limit` bytes (at least 1).
    pub fn new(limit: usize) -> Self {
        QueueBudget {
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
            room: Notify::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged and not yet released.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Charges one request of `bytes`.
    pub fn charge(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Returns bytes charged earlier; wakes the connections waiting for
    /// room once the queue is back under the limit.
    pub fn release(&self, bytes: usize) {
        let before = self.queued.fetch_sub(bytes, Ordering::AcqRel);
        if before > self.limit && before - bytes <= self.limit {
            self.room.notify_waiters();
        }
    }

    /// Stream connections stop reading while this holds.
    pub fn is_spent(&self) -> bool {
        self.queued() > self.limit
    }

    /// Datagram requests that need the database are refused while this
    /// holds.
    pub fn refuses_datagrams(&self) -> bool {
        self.queued() > self.limit.saturating_add(self.limit / 2)
    }

    /// Returns once the queue is under the limit.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not
            // missed.
            notified.as_mut().enable();
            if !self.is_spent() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn charges_and_releases_add_up() {
        let b = QueueBudget::new(100);
        b.charge(60);
        b.charge(40);
        assert!(!b.is_spent(), "at the limit is not over it");
        b.charge(1);
        assert!(b.is_spent());
        assert!(!b.refuses_datagrams());
        b.charge(50);
        assert!(b.refuses_datagrams());
        b.release(151);
        assert_eq!(b.queued(), 0);
    }

    #[tokio::test]
    async fn a_waiting_connection_resumes_when_the_queue_drains() {
        let b = Arc::new(QueueBudget::new(10));
        b.charge(20);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let releaser = std::thread::spawn({
            let b = b.clone();
            move || b.release(15)
        });
        releaser.join().unwrap();
        waiter.await.unwrap();
        assert_eq!(b.queued(), 5);
    }
}
