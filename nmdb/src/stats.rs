//! The server's counters, in STATS order. Relaxed atomics: each counter is
//! independent and only ever read as a snapshot.

use nmdb_proto::{Counter, NUM_COUNTERS};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Stats {
    counters: [AtomicU64; NUM_COUNTERS],
}

impl Stats {
    #[inline]
    pub fn inc(&self, c: Counter) {
        self.counters[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> [u64; NUM_COUNTERS] {
        std::array::from_fn(|i| self.counters[i].load(Ordering::Relaxed))
    }
}
