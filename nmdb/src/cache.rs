//! The bounded in-memory cache in front of the database.
//!
//! Like the original: `capacity / 4` buckets of at most 4 entries, counted
//! in objects. A new or updated entry goes to the front of its bucket and
//! the last one is evicted when the bucket is full; reads, CAS and INCR do
//! not reorder. Buckets are spread over lock stripes so network threads on
//! different cores rarely meet on a lock, and no lock is held across I/O.
//!
//! Each stripe counts the writes it has seen (its generation). A database
//! read records the generation when it misses and may fill the cache only if
//! no write touched the stripe since: a SET or DEL that arrives while the
//! read is in flight always wins over the older database value.

use crate::incr::{self, NotANumber};
use parking_lot::{Mutex, MutexGuard};

/// Entries per bucket.
pub const BUCKET_WAYS: usize = 4;
const MAX_STRIPES: usize = 1024;

struct Entry {
    key: Box<[u8]>,
    value: Vec<u8>,
}

#[derive(Default)]
struct Stripe {
    buckets: Vec<Vec<Entry>>,
    generation: u64,
}

impl Stripe {
    fn bucket(&mut self, index: usize) -> &mut Vec<Entry> {
        &mut self.buckets[index]
    }
}

/// Result of a cache CAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    NotCached,
    Mismatch,
    Swapped,
}

/// Result of a cache INCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrOutcome {
    NotCached,
    NotANumber,
    Incremented(i64),
}

/// Proof of the stripe generation seen when a read missed; see
/// [`Cache::fill`].
#[derive(Debug, Clone, Copy)]
pub struct FillTicket {
    hash: u64,
    generation: u64,
}

pub struct Cache {
    stripes: Box<[Mutex<Stripe>]>,
    /// Total buckets, a multiple of the stripe count.
    buckets: usize,
}

/// FNV-1a: cheap, good enough to spread keys over buckets and workers.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Cache {
    /// A cache of at most `capacity` objects (at least one bucket).
    pub fn new(capacity: usize) -> Self {
        let wanted = (capacity / BUCKET_WAYS).max(1);
        // The largest power of two not above `wanted`, so the bucket count
        // (stripes * per_stripe) never exceeds what was asked for.
        let nstripes = 1usize << (usize::BITS - 1 - wanted.min(MAX_STRIPES).leading_zeros());
        let per_stripe = wanted / nstripes;
        let stripes = (0..nstripes)
            .map(|_| {
                Mutex::new(Stripe {
                    buckets: (0..per_stripe).map(|_| Vec::new()).collect(),
                    generation: 0,
                })
            })
            .collect();
        Cache {
            stripes,
            buckets: nstripes * per_stripe,
        }
    }

    /// Maximum number of objects held.
    pub fn capacity(&self) -> usize {
        self.buckets * BUCKET_WAYS
    }

    fn locate(&self, hash: u64) -> (&Mutex<Stripe>, usize) {
        let bucket = (hash % self.buckets as u64) as usize;
        let n = self.stripes.len();
        (&self.stripes[bucket % n], bucket / n)
    }

    /// Locks the stripe holding `key`. The engine keeps the lock while it
    /// queues the matching database work, so for any key the cache and the
    /// database queue see writes in the same order, whichever network
    /// thread they arrive on.
    pub fn lock(&self, key: &[u8]) -> Locked<'_> {
        let hash = key_hash(key);
        let (stripe, bucket) = self.locate(hash);
        Locked {
            stripe: stripe.lock(),
            bucket,
            hash,
        }
    }

    /// Stores a value just read from the database, unless a write reached
    /// the key's stripe after the read missed (the write is newer).
    ///
    /// Stripes are held only briefly (queueing database work never waits),
    /// so the worker calling this just takes the lock.
    pub fn fill(&self, ticket: FillTicket, key: &[u8], value: &[u8]) -> bool {
        let (stripe, b) = self.locate(ticket.hash);
        let mut s = stripe.lock();
        if s.generation != ticket.generation {
            return false;
        }
        let bucket = s.bucket(b);
        if bucket.iter().any(|e| &*e.key == key) {
            return false;
        }
        insert_front(bucket, key, value);
        true
    }
}

/// The locked stripe of one key; see [`Cache::lock`]. Every write bumps
/// the stripe's generation.
pub struct Locked<'a> {
    stripe: MutexGuard<'a, Stripe>,
    bucket: usize,
    hash: u64,
}

impl Locked<'_> {
    fn entries(&mut self) -> &mut Vec<Entry> {
        let b = self.bucket;
        self.stripe.bucket(b)
    }

    fn entry(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.entries().iter_mut().find(|e| &*e.key == key)
    }

    fn written(&mut self) {
        self.stripe.generation += 1;
    }

    pub fn get(&mut self, key: &[u8]) -> Option<&[u8]> {
        self.entry(key).map(|e| &e.value[..])
    }

    /// What a later [`Cache::fill`] for this key needs.
    pub fn ticket(&self) -> FillTicket {
        FillTicket {
            hash: self.hash,
            generation: self.stripe.generation,
        }
    }

    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        self.written();
        insert_front(self.entries(), key, value);
    }

    /// Removes `key`; true if it was cached.
    pub fn del(&mut self, key: &[u8]) -> bool {
        self.written();
        let bucket = self.entries();
        match bucket.iter().position(|e| &*e.key == key) {
            Some(i) => {
                bucket.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn cas(&mut self, key: &[u8], old: &[u8], new: &[u8]) -> CasOutcome {
        self.written();
        match self.entry(key) {
            None => CasOutcome::NotCached,
            Some(e) if e.value != old => CasOutcome::Mismatch,
            Some(e) => {
                e.value.clear();
                e.value.extend_from_slice(new);
                CasOutcome::Swapped
            }
        }
    }

    pub fn incr(&mut self, key: &[u8], delta: i64) -> IncrOutcome {
        self.written();
        match self.entry(key) {
            None => IncrOutcome::NotCached,
            Some(e) => match incr::increment(&mut e.value, delta) {
                Ok(n) => IncrOutcome::Incremented(n),
                Err(NotANumber) => IncrOutcome::NotANumber,
            },
        }
    }
}

fn insert_front(bucket: &mut Vec<Entry>, key: &[u8], value: &[u8]) {
    if let Some(i) = bucket.iter().position(|e| &*e.key == key) {
        let mut e = bucket.remove(i);
        e.value.clear();
        e.value.extend_from_slice(value);
        bucket.insert(0, e);
        return;
    }
    if bucket.capacity() == 0 {
        bucket.reserve_exact(BUCKET_WAYS);
    }
    if bucket.len() == BUCKET_WAYS {
        bucket.pop();
    }
    bucket.insert(
        0,
        Entry {
            key: key.into(),
            value: value.to_vec(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &Cache, k: &[u8]) -> Option<Vec<u8>> {
        c.lock(k).get(k).map(<[u8]>::to_vec)
    }

    #[test]
    fn set_then_get_returns_the_value() {
        let c = Cache::new(128 * 1024);
        c.lock(b"k").set(b"k", b"v");
        assert_eq!(get(&c, b"k").as_deref(), Some(&b"v"[..]));
        c.lock(b"k").set(b"k", b"w");
        assert_eq!(get(&c, b"k").as_deref(), Some(&b"w"[..]));
    }

    #[test]
    fn capacity_is_bounded_in_objects() {
        let c = Cache::new(1024);
        assert_eq!(c.capacity(), 1024);
        for i in 0..100_000u32 {
            c.lock(&i.to_be_bytes()).set(&i.to_be_bytes(), b"v");
        }
        let held = (0..100_000u32)
            .filter(|i| get(&c, &i.to_be_bytes()).is_some())
            .count();
        assert!(held <= c.capacity(), "{held} > {}", c.capacity());
        assert!(held > c.capacity() / 2, "only {held} of {}", c.capacity());
    }

    #[test]
    fn tiny_cache_still_holds_one_bucket() {
        let c = Cache::new(0);
        assert_eq!(c.capacity(), BUCKET_WAYS);
        c.lock(b"a").set(b"a", b"1");
        assert!(get(&c, b"a").is_some());
    }

    #[test]
    fn full_bucket_evicts_the_least_recently_written() {
        let c = Cache::new(BUCKET_WAYS); // one bucket
        for k in [b"1", b"2", b"3", b"4"] {
            c.lock(k).set(k, b"v");
        }
        c.lock(b"1").set(b"1", b"again"); // moves to the front
        c.lock(b"5").set(b"5", b"v"); // evicts "2"
        assert!(get(&c, b"2").is_none());
        for k in [b"1", b"3", b"4", b"5"] {
            assert!(get(&c, k).is_some());
        }
    }

    #[test]
    fn del_reports_whether_the_key_was_cached() {
        let c = Cache::new(1024);
        c.lock(b"k").set(b"k", b"v");
        assert!(c.lock(b"k").del(b"k"));
        assert!(!c.lock(b"k").del(b"k"));
    }

    #[test]
    fn cas_swaps_only_on_match() {
        let c = Cache::new(1024);
        assert_eq!(c.lock(b"k").cas(b"k", b"a", b"b"), CasOutcome::NotCached);
        c.lock(b"k").set(b"k", b"a");
        assert_eq!(c.lock(b"k").cas(b"k", b"x", b"b"), CasOutcome::Mismatch);
        assert_eq!(c.lock(b"k").cas(b"k", b"a", b"bb"), CasOutcome::Swapped);
        assert_eq!(get(&c, b"k").as_deref(), Some(&b"bb"[..]));
    }

    #[test]
    fn incr_updates_the_cached_text() {
        let c = Cache::new(1024);
        assert_eq!(c.lock(b"n").incr(b"n", 1), IncrOutcome::NotCached);
        c.lock(b"n").set(b"n", b"41\0");
        assert_eq!(c.lock(b"n").incr(b"n", 1), IncrOutcome::Incremented(42));
        c.lock(b"t").set(b"t", b"41");
        assert_eq!(c.lock(b"t").incr(b"t", 1), IncrOutcome::NotANumber);
    }

    #[test]
    fn fill_is_refused_after_a_write_to_the_stripe() {
        let c = Cache::new(1024);
        let ticket = c.lock(b"k").ticket();
        c.lock(b"k").set(b"k", b"new");
        c.lock(b"k").del(b"k");
        assert!(!c.fill(ticket, b"k", b"old"));
        assert!(get(&c, b"k").is_none());
    }

    #[test]
    fn fill_stores_when_nothing_changed() {
        let c = Cache::new(1024);
        let ticket = c.lock(b"k").ticket();
        assert!(c.fill(ticket, b"k", b"db"));
        assert_eq!(get(&c, b"k").as_deref(), Some(&b"db"[..]));
    }

    #[test]
    fn fill_waits_for_a_held_stripe() {
        let c = std::sync::Arc::new(Cache::new(1024));
        let ticket = c.lock(b"k").ticket();
        let held = c.lock(b"k");
        let filler = {
            let c = c.clone();
            std::thread::spawn(move || c.fill(ticket, b"k", b"db"))
        };
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(held);
        assert!(
            filler.join().unwrap(),
            "the fill takes the stripe once free"
        );
        assert_eq!(c.lock(b"k").get(b"k"), Some(&b"db"[..]));
    }
}
