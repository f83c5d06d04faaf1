//! The server's counters, in STATS order. Relaxed atomics: each counter is
//! independent and only ever read as a snapshot. Every request increments
//! two or three of them, so they are sharded per thread ([`crate::shard`]):
//! threads on different cores do not share their cache lines.

use crate::shard;
use nmdb_proto::{Counter, NUM_COUNTERS};
use std::sync::atomic::{AtomicU64, Ordering};

/// One copy of every counter, alone on its cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Shard([AtomicU64; NUM_COUNTERS]);

pub struct Stats {
    /// A power of two of them.
    shards: Box<[Shard]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            shards: (0..shard::shard_count())
                .map(|_| Shard::default())
                .collect(),
        }
    }
}

impl Stats {
    #[inline]
    pub fn inc(&self, c: Counter) {
        let shard = &self.shards[shard::this_thread(self.shards.len())];
        shard.0[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter, its shards added up.
    pub fn snapshot(&self) -> [u64; NUM_COUNTERS] {
        std::array::from_fn(|i| {
            self.shards
                .iter()
                .map(|s| s.0[i].load(Ordering::Relaxed))
                .sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_many_threads_add_up_exactly() {
        let stats = Arc::new(Stats::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        stats.inc(Counter::CacheGet);
                    }
                    stats.inc(Counter::DbHits);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counts = stats.snapshot();
        assert_eq!(counts[Counter::CacheGet as usize], 8000);
        assert_eq!(counts[Counter::DbHits as usize], 8);
        assert_eq!(counts.iter().sum::<u64>(), 8008);
    }
}
