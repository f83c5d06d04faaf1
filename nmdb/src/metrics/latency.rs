//! Request latency histograms, recorded on the request path.
//!
//! The rule here is cost: recording runs once per request on every network
//! thread, so it takes no lock, allocates nothing and makes no system call
//! (prometheus-client's own `Histogram` takes a lock per observation, which
//! is why it is not used). A recording is two relaxed atomic additions: one
//! to a bucket, one to the sum. Buckets are fixed powers of two of a
//! microsecond, so finding one is a leading-zeros count, not a search.
//!
//! Every histogram is kept in several shards, and a thread always records
//! into the same shard (picked round-robin when it first records), so
//! threads on different cores rarely write to the same cache line. A scrape
//! adds the shards up; the count is the sum of the buckets, so the two
//! always agree. A scrape racing with recordings may see a request in its
//! bucket and not yet in the sum: scrapes are a snapshot, not a barrier.

use crate::shard;
use nmdb_proto::{Header, Request};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bucket upper bounds are 2^i µs for i in `0..BOUNDS`: 1 µs to 2^24 µs
/// (about 16.8 s). One more bucket holds what is slower (`+Inf`).
pub const BOUNDS: usize = 25;
const SLOTS: usize = BOUNDS + 1;

/// The request types and modes that get a histogram, as (op, mode) labels.
/// Modes a request type does not have are not listed: a GET is never
/// synchronous, and CAS and INCR always wait for the database unless
/// cache-only.
pub const KINDS: [(&str, &str); 15] = [
    ("get", "normal"),
    ("get", "cache"),
    ("set", "normal"),
    ("set", "sync"),
    ("set", "cache"),
    ("del", "normal"),
    ("del", "sync"),
    ("del", "cache"),
    ("cas", "normal"),
    ("cas", "cache"),
    ("incr", "normal"),
    ("incr", "cache"),
    ("firstkey", "normal"),
    ("nextkey", "normal"),
    ("stats", "normal"),
];

/// Which histogram a request's latency goes to: an index into [`KINDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(u8);

impl Kind {
    /// The kind of a parsed request, with the mode the engine serves it in
    /// (cache-only wins over sync, as in the engine).
    #[inline]
    pub fn of(h: &Header, req: &Request<'_>) -> Kind {
        let cache = h.cache_only();
        // normal, cache
        let two = |at: u8| at + cache as u8;
        // normal, sync, cache
        let three = |at: u8| at + if cache { 2 } else { h.sync() as u8 };
        Kind(match req {
            Request::Get { .. } => two(0),
            Request::Set { .. } => three(2),
            Request::Del { .. } => three(5),
            Request::Cas { .. } => two(8),
            Request::Incr { .. } => two(10),
            Request::FirstKey => 12,
            Request::NextKey { .. } => 13,
            Request::Stats => 14,
        })
    }

    /// The (op, mode) labels.
    pub fn labels(self) -> (&'static str, &'static str) {
        KINDS[self.0 as usize]
    }
}

/// The bucket of a latency of `nanos`: the first whose bound it does not
/// exceed.
#[inline]
fn bucket(nanos: u64) -> usize {
    let micros = nanos.div_ceil(1000);
    if micros <= 1 {
        return 0;
    }
    ((u64::BITS - (micros - 1).leading_zeros()) as usize).min(BOUNDS)
}

/// The upper bound of bucket `i` in seconds (`+Inf` for the last).
pub fn bound_seconds(i: usize) -> f64 {
    if i < BOUNDS {
        (1u64 << i) as f64 * 1e-6
    } else {
        f64::INFINITY
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; SLOTS],
    sum_nanos: AtomicU64,
}

/// One shard of every histogram, alone on its cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Shard([Histogram; KINDS.len()]);

/// What a scrape reads of one histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Requests per bucket (not cumulative), the last one `+Inf`.
    pub buckets: [u64; SLOTS],
    pub sum_seconds: f64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

pub struct Latency {
    /// A power of two of them.
    shards: Box<[Shard]>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// Shards for about one thread per core ([`shard::shard_count`]).
    pub fn new() -> Self {
        Latency {
            shards: (0..shard::shard_count())
                .map(|_| Shard::default())
                .collect(),
        }
    }

    /// Records one request of `kind` that took `elapsed`.
    #[inline]
    pub fn record(&self, kind: Kind, elapsed: Duration) {
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        let shard = &self.shards[shard::this_thread(self.shards.len())];
        let h = &shard.0[kind.0 as usize];
        h.buckets[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        h.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histogram of `kind`, its shards added up.
    pub fn snapshot(&self, kind: Kind) -> Snapshot {
        let mut buckets = [0u64; SLOTS];
        let mut sum = 0u64;
        for shard in self.shards.iter() {
            let h = &shard.0[kind.0 as usize];
            for (total, b) in buckets.iter_mut().zip(&h.buckets) {
                *total += b.load(Ordering::Relaxed);
            }
            sum = sum.wrapping_add(h.sum_nanos.load(Ordering::Relaxed));
        }
        Snapshot {
            buckets,
            sum_seconds: sum as f64 * 1e-9,
        }
    }

    /// Every kind, in [`KINDS`] order.
    pub fn kinds() -> impl Iterator<Item = Kind> {
        (0..KINDS.len() as u8).map(Kind)
    }
}

/// A request's start, travelling with its reply when the database queue
/// answers it later; recorded when the reply is sent.
pub struct Timer {
    latency: Arc<Latency>,
    kind: Kind,
    started: Instant,
}

impl Timer {
    pub fn new(latency: Arc<Latency>, kind: Kind, started: Instant) -> Self {
        Timer {
            latency,
            kind,
            started,
        }
    }

    /// Records the time since the request was parsed.
    pub fn stop(self) {
        self.latency.record(self.kind, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmdb_proto::{FLAGS_CACHE_ONLY, FLAGS_SYNC};

    #[test]
    fn latencies_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let cases = [
            (0, 0),
            (1_000, 0),
            (1_001, 1),
            (2_000, 1),
            (2_001, 2),
            (4_000, 2),
            (4_001, 3),
            (1_000_000, 10),
            ((1 << 24) * 1000, 24),
            ((1 << 24) * 1000 + 1, BOUNDS),
            (u64::MAX, BOUNDS),
        ];
        let bound_nanos = |i: usize| (1u64 << i) * 1000;
        for (nanos, want) in cases {
            assert_eq!(bucket(nanos), want, "{nanos} ns");
            if want < BOUNDS {
                assert!(nanos <= bound_nanos(want), "{nanos} ns");
            }
            if want > 0 {
                assert!(nanos > bound_nanos(want - 1), "{nanos} ns");
            }
        }
        assert_eq!(bound_seconds(0), 1e-6);
        assert_eq!(bound_seconds(BOUNDS - 1), 16.777216);
        assert_eq!(bound_seconds(BOUNDS), f64::INFINITY);
    }

    #[test]
    fn recordings_from_many_threads_all_count() {
        let latency = Arc::new(Latency::new());
        let kind = Kind(3);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = latency.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        l.record(kind, Duration::from_micros(3));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = latency.snapshot(kind);
        assert_eq!(s.count(), 8000);
        assert_eq!(s.buckets[2], 8000);
        assert!((s.sum_seconds - 8000.0 * 3e-6).abs() < 1e-9);
        assert_eq!(latency.snapshot(Kind(0)).count(), 0);
    }

    #[test]
    fn each_request_maps_to_its_op_and_mode() {
        let header = |flags| Header {
            id: 1,
            code: 0,
            flags,
        };
        let (n, c, s) = (header(0), header(FLAGS_CACHE_ONLY), header(FLAGS_SYNC));
        let both = header(FLAGS_CACHE_ONLY | FLAGS_SYNC);
        let set = Request::Set {
            key: b"k",
            value: b"v",
        };
        let get = Request::Get { key: b"k" };
        let cases = [
            (&n, &get, ("get", "normal")),
            (&s, &get, ("get", "normal")),
            (&c, &get, ("get", "cache")),
            (&n, &set, ("set", "normal")),
            (&s, &set, ("set", "sync")),
            (&c, &set, ("set", "cache")),
            (&both, &set, ("set", "cache")),
            (&s, &Request::Del { key: b"k" }, ("del", "sync")),
            (
                &c,
                &Request::Incr {
                    key: b"k",
                    delta: 1,
                },
                ("incr", "cache"),
            ),
            (
                &s,
                &Request::Cas {
                    key: b"k",
                    old: b"",
                    new: b"",
                },
                ("cas", "normal"),
            ),
            (&c, &Request::FirstKey, ("firstkey", "normal")),
            (&n, &Request::NextKey { key: b"k" }, ("nextkey", "normal")),
            (&c, &Request::Stats, ("stats", "normal")),
        ];
        for (h, req, want) in cases {
            assert_eq!(Kind::of(h, req).labels(), want, "{req:?} flags {}", h.flags);
        }
    }
}
