//! Per-thread shards for counters written on the request path.
//!
//! A counter that every network thread increments is one cache line
//! bouncing between cores on every request. Counters are kept instead in a
//! few copies, each alone on its cache lines; a thread always writes the
//! same copy (handed out round-robin when it first writes), and a reader
//! adds the copies up.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shards handed out to threads so far.
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number (before masking), `usize::MAX` until it
    /// first asks.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Shards for about one thread per core: a power of two from 4 to 64.
pub fn shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    cores.next_power_of_two().clamp(4, 64)
}

/// The calling thread's shard among `count` (a power of two).
#[inline]
pub fn this_thread(count: usize) -> usize {
    debug_assert!(count.is_power_of_two());
    let n = SHARD.with(|s| {
        let n = s.get();
        if n != usize::MAX {
            return n;
        }
        let n = THREADS.fetch_add(1, Ordering::Relaxed);
        s.set(n);
        n
    });
    n & (count - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_shard_and_threads_get_different_ones() {
        let mine = this_thread(64);
        assert_eq!(this_thread(64), mine);
        let other = std::thread::spawn(|| this_thread(64)).join().unwrap();
        assert_ne!(other, mine);
    }
}
