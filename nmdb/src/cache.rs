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
//!
//! Each stripe also counts the database operations queued for its keys and
//! not yet done. When none are, a synchronous write of one of its keys can
//! be applied at once by the thread that received it (see
//! [`Locked::db_idle`]): nothing older on those keys is left to overtake.
//!
//! Each entry also knows whether its key is in the database (written
//! there by a SET for the database, or read from it), so that a
//! synchronous DEL of it need not read the database to tell.
//!
//! Memory: a bucket is one allocation holding its entries packed, each a
//! varint of the key length and the stored bit, a varint value length,
//! the key and the value, front entry first. With small objects the
//! allocator's per-allocation overhead and per-entry pointers would
//! otherwise cost more than the data (a key and a value allocated apart
//! cost ~70 bytes beyond a 16-byte key and 100-byte value); packed, an
//! object costs its bytes plus about 4. A write rebuilds its bucket (at
//! most four entries), in place when it fits.

use crate::incr::{self, NotANumber};
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicU32, Ordering};

/// Entries per bucket.
pub const BUCKET_WAYS: usize = 4;
const MAX_STRIPES: usize = 1024;

/// A bucket's packed entries; empty buckets allocate nothing. Its
/// capacity may exceed its length: see [`room_for`].
type Packed = Vec<u8>;

/// Buckets of small entries get room for four at their first, so a bucket
/// filling up is written in place instead of reallocated at each insert:
/// the chunks that growing buckets left behind cost a tenth of a full
/// cache of small objects. Past this many bytes a bucket is sized exactly,
/// so the room reserved and not yet used stays under this per bucket.
const RESERVE_UP_TO: usize = 1024;

/// The capacity a bucket of `objects` entries packed in `len` bytes gets.
fn room_for(objects: usize, len: usize) -> usize {
    if objects == 0 {
        return 0;
    }
    let four = len / objects * BUCKET_WAYS;
    if objects < BUCKET_WAYS && four <= RESERVE_UP_TO {
        four.max(len)
    } else {
        len
    }
}

/// One entry, borrowed from a packed bucket.
#[derive(Clone, Copy)]
struct Entry<'a> {
    key: &'a [u8],
    value: &'a [u8],
    /// The key is in the database once the writes queued for it are
    /// applied: set by a SET for the database or a read from it, never by
    /// a cache-only SET.
    stored: bool,
}

/// The entries of a packed bucket, front first.
struct Entries<'a> {
    items: [Entry<'a>; BUCKET_WAYS],
    len: usize,
}

impl<'a> Entries<'a> {
    fn unpack(mut bytes: &'a [u8]) -> Self {
        let empty = Entry {
            key: &[],
            value: &[],
            stored: false,
        };
        let mut items = [empty; BUCKET_WAYS];
        let mut len = 0;
        while !bytes.is_empty() && len < BUCKET_WAYS {
            let (klen_stored, rest) = read_varint(bytes);
            let (vlen, rest) = read_varint(rest);
            let (key, rest) = rest.split_at(klen_stored >> 1);
            let (value, rest) = rest.split_at(vlen);
            let stored = klen_stored & 1 == 1;
            items[len] = Entry { key, value, stored };
            len += 1;
            bytes = rest;
        }
        Entries { items, len }
    }

    fn as_slice(&self) -> &[Entry<'a>] {
        &self.items[..self.len]
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.as_slice().iter().position(|e| e.key == key)
    }
}

/// Appends `n` as LEB128.
fn write_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 number written by [`write_varint`]; buckets are only
/// ever written by [`pack_into`], so the bytes are well formed.
fn read_varint(bytes: &[u8]) -> (usize, &[u8]) {
    let mut n = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (n, &bytes[i + 1..]);
        }
    }
    unreachable!("a packed bucket ends inside a length")
}

thread_local! {
    /// Where a bucket is packed before it replaces the old one: as large
    /// as the largest bucket this thread has written.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Packs `entries` into `out`, after what it holds.
fn pack_into<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = Entry<'a>>) {
    for e in entries {
        // Keys are far shorter than half the address space.
        write_varint(out, e.key.len() << 1 | usize::from(e.stored));
        write_varint(out, e.value.len());
        out.extend_from_slice(e.key);
        out.extend_from_slice(e.value);
    }
}

#[derive(Default)]
struct Stripe {
    buckets: Vec<Packed>,
    generation: u64,
    /// Entries held, and the bytes of their packed buckets.
    objects: usize,
    bytes: usize,
}

impl Stripe {
    /// Replaces bucket `index` with what `build` packs (given the old
    /// bucket), keeping the stripe's totals. `build` returns the entries
    /// held before and after. A small bucket is rewritten in place when its
    /// room fits ([`room_for`]); others get a new allocation.
    fn rebuild(&mut self, index: usize, build: impl FnOnce(&[u8], &mut Vec<u8>) -> (usize, usize)) {
        SCRATCH.with_borrow_mut(|packed| {
            packed.clear();
            let (old_objects, objects) = build(&self.buckets[index], packed);
            self.objects = self.objects + objects - old_objects;
            let bucket = &mut self.buckets[index];
            self.bytes = self.bytes + packed.len() - bucket.len();
            let room = room_for(objects, packed.len());
            let fits = bucket.capacity() >= packed.len() && bucket.capacity() <= 2 * room;
            // Large buckets always move: the allocator then reuses the holes
            // that growing buckets left (measured: 1107 bytes per 1 KB
            // object instead of 1143 when rewritten in place).
            if !fits || packed.len() > RESERVE_UP_TO {
                *bucket = Packed::with_capacity(room);
            }
            bucket.clear();
            bucket.extend_from_slice(packed);
        });
    }

    /// Puts `key` at the front of bucket `index` with `value`, dropping its
    /// old entry, or the last one when the bucket is full.
    fn insert_front(&mut self, index: usize, key: &[u8], value: &[u8], stored: bool) {
        self.rebuild(index, |bucket, packed| {
            let old = Entries::unpack(bucket);
            let others = old.as_slice().iter().filter(|e| e.key != key);
            let kept = others.clone().count().min(BUCKET_WAYS - 1);
            let new = Entry { key, value, stored };
            pack_into(
                packed,
                std::iter::once(new).chain(others.copied().take(kept)),
            );
            (old.len, kept + 1)
        });
    }

    /// Gives entry `pos` of bucket `index` a new value in place (no
    /// reordering).
    fn rewrite_value(&mut self, index: usize, pos: usize, value: &[u8]) {
        self.rebuild(index, |bucket, packed| {
            let old = Entries::unpack(bucket);
            let entries = old.as_slice().iter().enumerate().map(|(i, e)| {
                if i == pos {
                    Entry { value, ..*e }
                } else {
                    *e
                }
            });
            pack_into(packed, entries);
            (old.len, old.len)
        });
    }

    /// Removes entry `pos` of bucket `index`.
    fn remove(&mut self, index: usize, pos: usize) {
        self.rebuild(index, |bucket, packed| {
            let old = Entries::unpack(bucket);
            let rest = old.as_slice().iter().enumerate().filter(|&(i, _)| i != pos);
            pack_into(packed, rest.map(|(_, e)| *e));
            (old.len, old.len - 1)
        });
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

/// A database operation queued for a key of one stripe; hand it back with
/// [`Cache::db_done`] once the operation is applied.
#[derive(Debug, Clone, Copy)]
pub struct DbClaim {
    stripe: usize,
    hash: u64,
}

impl DbClaim {
    /// The key's [`key_hash`], computed once for the cache and reused to
    /// pick the key's database worker.
    pub fn key_hash(&self) -> u64 {
        self.hash
    }
}

/// A stripe's lock and its count of database operations, alone on their
/// cache lines: threads working on different stripes share none.
#[repr(align(128))]
struct StripeSlot {
    stripe: Mutex<Stripe>,
    /// Database operations queued for the stripe's keys and not yet done.
    db_queued: AtomicU32,
}

pub struct Cache {
    stripes: Box<[StripeSlot]>,
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

/// How a cache of `capacity` objects is laid out: stripes, and buckets in
/// each (at least one bucket in all).
fn layout(capacity: usize) -> (usize, usize) {
    let wanted = (capacity / BUCKET_WAYS).max(1);
    // The largest power of two not above `wanted`, so the bucket count
    // (stripes * per_stripe) never exceeds what was asked for.
    let nstripes = 1usize << (usize::BITS - 1 - wanted.min(MAX_STRIPES).leading_zeros());
    (nstripes, wanted / nstripes)
}

/// The index could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTooLarge {
    pub capacity: usize,
    pub bytes: usize,
}

impl std::fmt::Display for IndexTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot allocate the index of a cache of {} objects ({} MiB)",
            self.capacity,
            self.bytes >> 20
        )
    }
}

impl Cache {
    /// Bytes an empty cache of `capacity` objects takes: its buckets' and
    /// stripes' headers, allocated at start whatever it will hold.
    pub fn index_bytes(capacity: usize) -> usize {
        let (nstripes, per_stripe) = layout(capacity);
        let buckets = (nstripes * per_stripe).saturating_mul(std::mem::size_of::<Packed>());
        buckets.saturating_add(nstripes * std::mem::size_of::<StripeSlot>())
    }

    /// [`Cache::try_new`] for tests, whose caches are small.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        Self::try_new(capacity).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A cache of at most `capacity` objects (at least one bucket), or an
    /// error when its index cannot be allocated (under a memory limit,
    /// say) instead of an abort.
    pub fn try_new(capacity: usize) -> Result<Self, IndexTooLarge> {
        let (nstripes, per_stripe) = layout(capacity);
        let too_large = || IndexTooLarge {
            capacity,
            bytes: Self::index_bytes(capacity),
        };
        let mut stripes = Vec::new();
        stripes
            .try_reserve_exact(nstripes)
            .map_err(|_| too_large())?;
        for _ in 0..nstripes {
            let mut buckets = Vec::new();
            buckets
                .try_reserve_exact(per_stripe)
                .map_err(|_| too_large())?;
            buckets.resize_with(per_stripe, Packed::default);
            stripes.push(StripeSlot {
                stripe: Mutex::new(Stripe {
                    buckets,
                    ..Stripe::default()
                }),
                db_queued: AtomicU32::new(0),
            });
        }
        Ok(Cache {
            stripes: stripes.into_boxed_slice(),
            buckets: nstripes * per_stripe,
        })
    }

    /// Maximum number of objects held.
    pub fn capacity(&self) -> usize {
        self.buckets * BUCKET_WAYS
    }

    /// Objects held now. Takes every stripe's lock in turn: for reports,
    /// not for the request path.
    pub fn objects(&self) -> usize {
        self.stripes.iter().map(|s| s.stripe.lock().objects).sum()
    }

    /// Bytes of keys and values held now, with their packing (two lengths
    /// per entry). Like [`Cache::objects`], for reports.
    pub fn bytes(&self) -> usize {
        self.stripes.iter().map(|s| s.stripe.lock().bytes).sum()
    }

    /// The stripe index and the bucket within the stripe of `hash`.
    fn locate(&self, hash: u64) -> (usize, usize) {
        let bucket = (hash % self.buckets as u64) as usize;
        let n = self.stripes.len();
        (bucket % n, bucket / n)
    }

    /// The database operation `claim` is applied: written (or read), so a
    /// later write on the stripe's keys cannot overtake it.
    pub fn db_done(&self, claim: DbClaim) {
        // Release: whoever then sees the count at zero sees the write done.
        self.stripes[claim.stripe]
            .db_queued
            .fetch_sub(1, Ordering::Release);
    }

    /// Locks the stripe holding `key`. The engine keeps the lock while it
    /// queues the matching database work, so for any key the cache and the
    /// database queue see writes in the same order, whichever network
    /// thread they arrive on.
    pub fn lock(&self, key: &[u8]) -> Locked<'_> {
        let hash = key_hash(key);
        let (index, bucket) = self.locate(hash);
        Locked {
            stripe: self.stripes[index].stripe.lock(),
            db_queued: &self.stripes[index].db_queued,
            index,
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
        let (index, b) = self.locate(ticket.hash);
        let mut s = self.stripes[index].stripe.lock();
        if s.generation != ticket.generation {
            return false;
        }
        if Entries::unpack(&s.buckets[b]).position(key).is_some() {
            return false;
        }
        s.insert_front(b, key, value, true);
        true
    }
}

/// The locked stripe of one key; see [`Cache::lock`]. Every write bumps
/// the stripe's generation.
pub struct Locked<'a> {
    stripe: MutexGuard<'a, Stripe>,
    db_queued: &'a AtomicU32,
    index: usize,
    bucket: usize,
    hash: u64,
}

impl Locked<'_> {
    /// Counts a database operation queued for this key until
    /// [`Cache::db_done`] is called with the claim. Call with the stripe
    /// held, as here, so [`Locked::db_idle`] cannot miss it.
    pub fn db_queued(&self) -> DbClaim {
        self.db_queued.fetch_add(1, Ordering::Relaxed);
        DbClaim {
            stripe: self.index,
            hash: self.hash,
        }
    }

    /// True when no database operation on this stripe's keys is queued or
    /// in progress: a write applied now comes after all of them.
    pub fn db_idle(&self) -> bool {
        self.db_queued.load(Ordering::Acquire) == 0
    }

    fn entries(&self) -> Entries<'_> {
        Entries::unpack(&self.stripe.buckets[self.bucket])
    }

    fn written(&mut self) {
        self.stripe.generation += 1;
    }

    pub fn get(&mut self, key: &[u8]) -> Option<&[u8]> {
        let entries = Entries::unpack(&self.stripe.buckets[self.bucket]);
        entries.position(key).map(|i| entries.items[i].value)
    }

    /// What a later [`Cache::fill`] for this key needs.
    pub fn ticket(&self) -> FillTicket {
        FillTicket {
            hash: self.hash,
            generation: self.stripe.generation,
        }
    }

    /// A cache-only SET: the database may not hold `key`.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        self.written();
        let b = self.bucket;
        self.stripe.insert_front(b, key, value, false);
    }

    /// A SET for the database, which holds `key` once the write is
    /// applied (see [`Locked::known_stored`]).
    pub fn set_stored(&mut self, key: &[u8], value: &[u8]) {
        self.written();
        self.fill(key, value);
    }

    /// Stores a value of `key`, which missed, just read from the database
    /// with this stripe held: not a write, so no generation is bumped.
    pub fn fill(&mut self, key: &[u8], value: &[u8]) {
        let b = self.bucket;
        self.stripe.insert_front(b, key, value, true);
    }

    /// True when `key` is cached from a SET for the database or a read of
    /// it, and no cache-only SET replaced it since. With
    /// [`Locked::db_idle`], and no database write ever failed, the
    /// database then holds the key.
    pub fn known_stored(&self, key: &[u8]) -> bool {
        let entries = self.entries();
        entries
            .position(key)
            .is_some_and(|i| entries.items[i].stored)
    }

    /// Removes `key`; true if it was cached.
    pub fn del(&mut self, key: &[u8]) -> bool {
        self.written();
        let Some(pos) = self.entries().position(key) else {
            return false;
        };
        let b = self.bucket;
        self.stripe.remove(b, pos);
        true
    }

    pub fn cas(&mut self, key: &[u8], old: &[u8], new: &[u8]) -> CasOutcome {
        self.written();
        let entries = self.entries();
        let Some(pos) = entries.position(key) else {
            return CasOutcome::NotCached;
        };
        if entries.items[pos].value != old {
            return CasOutcome::Mismatch;
        }
        let b = self.bucket;
        self.stripe.rewrite_value(b, pos, new);
        CasOutcome::Swapped
    }

    pub fn incr(&mut self, key: &[u8], delta: i64) -> IncrOutcome {
        self.written();
        let entries = self.entries();
        let Some(pos) = entries.position(key) else {
            return IncrOutcome::NotCached;
        };
        let mut value = entries.items[pos].value.to_vec();
        match incr::increment(&mut value, delta) {
            Ok(n) => {
                let b = self.bucket;
                self.stripe.rewrite_value(b, pos, &value);
                IncrOutcome::Incremented(n)
            }
            Err(NotANumber) => IncrOutcome::NotANumber,
        }
    }
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
    fn only_sets_for_the_database_and_fills_mark_a_key_stored() {
        let c = Cache::new(1024);
        c.lock(b"db").set_stored(b"db", b"v");
        c.lock(b"read").fill(b"read", b"v");
        c.lock(b"cache").set(b"cache", b"v");
        assert!(c.lock(b"db").known_stored(b"db"));
        assert!(c.lock(b"read").known_stored(b"read"));
        assert!(!c.lock(b"cache").known_stored(b"cache"));
        assert!(!c.lock(b"absent").known_stored(b"absent"));
        // A value changed in place keeps what is known of its key.
        assert_eq!(c.lock(b"db").cas(b"db", b"v", b"1\0"), CasOutcome::Swapped);
        assert_eq!(c.lock(b"db").incr(b"db", 1), IncrOutcome::Incremented(2));
        assert!(c.lock(b"db").known_stored(b"db"));
        // A cache-only SET replaces it: the cache no longer vouches.
        c.lock(b"db").set(b"db", b"w");
        assert!(!c.lock(b"db").known_stored(b"db"));
        assert_eq!(get(&c, b"db").as_deref(), Some(&b"w"[..]));
    }

    #[test]
    fn tiny_cache_still_holds_one_bucket() {
        let c = Cache::new(0);
        assert_eq!(c.capacity(), BUCKET_WAYS);
        c.lock(b"a").set(b"a", b"1");
        assert!(get(&c, b"a").is_some());
    }

    #[test]
    fn an_index_that_cannot_be_allocated_is_an_error_not_an_abort() {
        // 2^60 buckets: petabytes of index.
        let e = Cache::try_new(1 << 62).err().expect("an error");
        assert_eq!(e.capacity, 1 << 62);
        assert_eq!(e.bytes, Cache::index_bytes(1 << 62));
        assert!(e.to_string().contains("cannot allocate"), "{e}");
    }

    #[test]
    fn the_index_size_counts_every_bucket_and_stripe() {
        let small = Cache::index_bytes(1024);
        let large = Cache::index_bytes(1024 * 1024);
        // 256 buckets against 262144, in 256 and 1024 stripes.
        let per_bucket = std::mem::size_of::<Packed>();
        let per_stripe = std::mem::size_of::<StripeSlot>();
        assert_eq!(small, 256 * per_bucket + 256 * per_stripe);
        assert_eq!(large, 262_144 * per_bucket + 1024 * per_stripe);
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

    #[test]
    fn cas_and_incr_keep_the_entry_in_place() {
        let c = Cache::new(BUCKET_WAYS); // one bucket
        for k in [b"1", b"2", b"3", b"4"] {
            c.lock(k).set(k, b"7\0");
        }
        // "1" is now last: rewriting it must not move it to the front.
        assert_eq!(c.lock(b"1").cas(b"1", b"7\0", b"8\0"), CasOutcome::Swapped);
        assert_eq!(c.lock(b"1").incr(b"1", 100), IncrOutcome::Incremented(108));
        c.lock(b"5").set(b"5", b"v"); // evicts the last entry, still "1"
        assert!(get(&c, b"1").is_none());
        for k in [b"2", b"3", b"4", b"5"] {
            assert!(get(&c, k).is_some());
        }
    }

    #[test]
    fn keys_and_values_of_every_length_round_trip() {
        let c = Cache::new(BUCKET_WAYS);
        // Lengths on both sides of each varint width, empty ones included.
        let lens = [0usize, 1, 127, 128, 16383, 16384, 65536];
        for (i, &klen) in lens.iter().enumerate() {
            let vlen = lens[lens.len() - 1 - i];
            let key: Vec<u8> = (0..klen).map(|n| n as u8).collect();
            let value: Vec<u8> = (0..vlen).map(|n| (n * 7) as u8).collect();
            c.lock(&key).set(&key, &value);
            assert_eq!(get(&c, &key).as_deref(), Some(&value[..]), "{klen}/{vlen}");
        }
    }

    #[test]
    fn objects_and_bytes_follow_every_change() {
        let c = Cache::new(BUCKET_WAYS);
        assert_eq!((c.objects(), c.bytes()), (0, 0));
        c.lock(b"k").set(b"k", b"vv"); // 2 length bytes + 3
        assert_eq!((c.objects(), c.bytes()), (1, 5));
        c.lock(b"k").set(b"k", b"v"); // replaced, not added
        assert_eq!((c.objects(), c.bytes()), (1, 4));
        c.lock(b"j").set(b"j", b"");
        assert_eq!((c.objects(), c.bytes()), (2, 7));
        for k in [b"a", b"b", b"c"] {
            c.lock(k).set(k, b"v");
        }
        assert_eq!(c.objects(), BUCKET_WAYS, "eviction keeps the count");
        assert!(c.lock(b"c").del(b"c"));
        assert_eq!(c.objects(), BUCKET_WAYS - 1);
        for k in [b"a", b"b", b"k", b"j"] {
            c.lock(k).del(k);
        }
        assert_eq!((c.objects(), c.bytes()), (0, 0));
    }

    #[test]
    fn a_stripe_is_db_idle_only_once_every_queued_operation_is_done() {
        let c = Cache::new(BUCKET_WAYS); // one stripe
        assert!(c.lock(b"a").db_idle());
        let first = c.lock(b"a").db_queued();
        let second = c.lock(b"b").db_queued();
        assert!(!c.lock(b"c").db_idle(), "another key of the stripe waits");
        c.db_done(first);
        assert!(!c.lock(b"a").db_idle());
        c.db_done(second);
        assert!(c.lock(b"a").db_idle());
    }

    /// The one bucket of a one-bucket cache: (length, capacity, address).
    fn only_bucket(c: &Cache) -> (usize, usize, usize) {
        let s = c.stripes[0].stripe.lock();
        let b = &s.buckets[0];
        (b.len(), b.capacity(), b.as_ptr() as usize)
    }

    #[test]
    fn a_bucket_of_small_entries_gets_room_for_four_and_fills_in_place() {
        let c = Cache::new(BUCKET_WAYS);
        c.lock(b"k1").set(b"k1", &[7; 20]); // 2 + 2 + 20 bytes packed
        let (len, cap, at) = only_bucket(&c);
        assert_eq!((len, cap), (24, 96));
        for k in [b"k2", b"k3", b"k4", b"k5", b"k6"] {
            c.lock(k).set(k, &[7; 20]);
        }
        // Filled, then evicting: same allocation throughout.
        assert_eq!(only_bucket(&c), (96, 96, at));
        assert_eq!(c.objects(), BUCKET_WAYS);
    }

    #[test]
    fn large_and_emptied_buckets_hold_no_spare_room() {
        let c = Cache::new(BUCKET_WAYS);
        c.lock(b"big").set(b"big", &[1; 2000]);
        let (len, cap, _) = only_bucket(&c);
        assert_eq!(cap, len, "a bucket past RESERVE_UP_TO is sized exactly");
        assert!(c.lock(b"big").del(b"big"));
        assert_eq!(only_bucket(&c).1, 0, "an empty bucket keeps no allocation");
        // A small bucket that shrinks a lot gives its room back.
        c.lock(b"a").set(b"a", &[1; 200]);
        c.lock(b"a").set(b"a", b"x");
        let (len, cap, _) = only_bucket(&c);
        assert!(cap <= 2 * room_for(1, len), "{cap} bytes kept for {len}");
    }
}
