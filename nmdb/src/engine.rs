//! Request execution: what each request does to the cache, what it hands to
//! the database queue, and the answer. Transports call [`Engine::handle`]
//! with one whole message; nothing here knows about sockets.
//!
//! Answers known at once are appended to the transport's output buffer
//! (no allocation: a cache hit is copied straight from the cache under its
//! stripe lock). Answers that need the database travel with the request to
//! the queue, which sends them through the [`Link`]'s deferred target.

use crate::backend::KeyValue;
use crate::cache::{Cache, CasOutcome, IncrOutcome, Locked};
use crate::dbqueue::{Change, DbOp, DbQueue, Job, ReadNow, Walk, WrittenNow};
use crate::metrics::{Kind, Latency, Timer};
use crate::reply::{write_answer, Modes, ReplyShape, ReplyTo};
use crate::stats::Stats;
use crate::throttle::EverySecond;
use nmdb_proto::request::{self, Header, ParseError, Request};
use nmdb_proto::{Answer, Counter, ErrorCode, ReplyCode};
use std::sync::Arc;
use std::time::Instant;

/// A transport's side of one request.
pub trait Link {
    /// How replies on this transport look.
    fn shape(&self) -> ReplyShape;
    /// Where the database queue should send a later answer.
    fn defer(&mut self) -> ReplyTo;
    /// Whether this transport stops reading its client while the database
    /// queue is over budget (streams). Those that cannot (datagrams) have
    /// requests for the database refused instead, past a higher mark.
    fn pauses_when_queue_full(&self) -> bool;
    /// Told when this request put work on the database queue.
    fn queued_for_db(&mut self);
}

/// What the transport should do after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Continue,
    /// The peer speaks another protocol version, or handling its request
    /// panicked: a stream transport closes the connection (after sending
    /// what is in its buffer), as the original does for the former.
    Close,
}

pub struct Engine {
    pub cache: Arc<Cache>,
    pub db: DbQueue,
    pub stats: Arc<Stats>,
    pub modes: Arc<Modes>,
    /// Remember database reads in the cache (read-through).
    pub cache_fill: bool,
    /// Paces the warning about refused datagram requests.
    pub queue_full_log: EverySecond,
    /// Request latencies, when metrics are on (`--metrics`).
    pub latency: Option<Arc<Latency>>,
}

/// Appends answers unless the server is passive.
struct Out<'a> {
    buf: &'a mut Vec<u8>,
    shape: ReplyShape,
    silent: bool,
    /// When metrics are on: the request's kind and when it was parsed,
    /// taken by its answer or by the reply the database queue sends.
    timing: Option<(&'a Arc<Latency>, Kind, Instant)>,
}

impl Out<'_> {
    fn answer(&mut self, id: u32, answer: Answer<'_>) {
        if !self.silent {
            write_answer(self.buf, self.shape, id, answer);
            // Recorded as the answer joins the transport's output, which
            // is written once the messages of this read are handled.
            if let Some((latency, kind, started)) = self.timing.take() {
                latency.record(kind, started.elapsed());
            }
        }
    }

    /// `reply`, carrying the request's start when metrics are on.
    fn later(&mut self, reply: ReplyTo) -> ReplyTo {
        match self.timing.take() {
            Some((latency, kind, started)) => {
                reply.timed(Timer::new(latency.clone(), kind, started))
            }
            None => reply,
        }
    }

    fn code(&mut self, id: u32, code: ReplyCode) {
        self.answer(id, Answer::Code(code));
    }
}

impl Engine {
    /// Handles one whole message.
    ///
    /// A request whose handling panics (a bug) is dropped with whatever
    /// part of its answer was written, and the transport told to close: a
    /// stream connection ends, a datagram receiver goes on, and the thread
    /// keeps serving everyone else. (A cache stripe it held is released as
    /// the panic unwinds; parking_lot's locks are not poisoned.)
    pub fn handle(&self, msg: &[u8], link: &mut dyn Link, out: &mut Vec<u8>) -> Disposition {
        let start = out.len();
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.handle_message(msg, link, out)
        }));
        handled.unwrap_or_else(|_| {
            log::error!("handling a request panicked: dropped it (a tcp connection is closed)");
            out.truncate(start);
            Disposition::Close
        })
    }

    fn handle_message(&self, msg: &[u8], link: &mut dyn Link, out: &mut Vec<u8>) -> Disposition {
        let mut out = Out {
            buf: out,
            shape: link.shape(),
            silent: self.modes.passive(),
            timing: None,
        };
        match request::parse(msg) {
            Ok((header, req)) => {
                if let Some(latency) = &self.latency {
                    out.timing = Some((latency, Kind::of(&header, &req), Instant::now()));
                }
                self.execute(header, req, link, &mut out);
                Disposition::Continue
            }
            Err(ParseError::TooShort) => {
                self.stats.inc(Counter::NetBrokenReq);
                Disposition::Continue
            }
            Err(ParseError::Version { id }) => {
                self.stats.inc(Counter::NetVersionMismatch);
                out.answer(id, Answer::Error(ErrorCode::Ver));
                Disposition::Close
            }
            Err(ParseError::Unknown { id }) => {
                self.stats.inc(Counter::NetUnkReq);
                out.answer(id, Answer::Error(ErrorCode::UnkReq));
                Disposition::Continue
            }
            Err(ParseError::Broken { id, .. }) => {
                self.stats.inc(Counter::NetBrokenReq);
                out.answer(id, Answer::Error(ErrorCode::Broken));
                Disposition::Continue
            }
        }
    }

    /// Counts a data request as cache or database work, after the
    /// read-only check.
    fn count(&self, cache_only: bool, cache: Counter, db: Counter) {
        self.stats.inc(if cache_only { cache } else { db });
    }

    /// Queues database work. Callers hold the key's cache stripe (`slot`),
    /// so the queue sees the key's writes in the order the cache did.
    /// `answer_later`: the queue answers (else it was answered already).
    fn submit(
        &self,
        op: DbOp,
        id: u32,
        slot: &Locked<'_>,
        link: &mut dyn Link,
        out: &mut Out<'_>,
        answer_later: bool,
    ) {
        let reply = answer_later.then(|| out.later(link.defer()));
        link.queued_for_db();
        let claim = slot.db_queued();
        self.db.submit(Job {
            op,
            id,
            reply,
            claim,
        });
    }

    /// Applies a synchronous SET or DEL on this thread, the key's stripe
    /// held; see [`DbQueue::write_now`]. False when the database would
    /// make the write wait: the caller queues it instead.
    fn write_now(
        &self,
        id: u32,
        key: &[u8],
        change: Change<'_>,
        link: &mut dyn Link,
        out: &mut Out<'_>,
    ) -> bool {
        match self
            .db
            .write_now(id, key, change, || out.later(link.defer()))
        {
            Ok(WrittenNow::WouldWait) => return false,
            Ok(WrittenNow::Answer(code)) => out.code(id, code),
            Ok(WrittenNow::AnsweredWhenDurable) => {}
            Err(code) => out.answer(id, Answer::Error(code)),
        }
        true
    }

    fn execute(&self, h: Header, req: Request<'_>, link: &mut dyn Link, out: &mut Out<'_>) {
        let id = h.id;
        let cache_only = h.cache_only();
        let writes = matches!(
            req,
            Request::Set { .. } | Request::Del { .. } | Request::Cas { .. } | Request::Incr { .. }
        );
        if writes && self.modes.read_only() {
            out.answer(id, Answer::Error(ErrorCode::ReadOnly));
            return;
        }
        // Before the cache is touched: a refused write changes nothing.
        if writes && !cache_only && self.queue_refuses(link) {
            return out.answer(id, Answer::Error(ErrorCode::Mem));
        }
        match req {
            Request::Get { key } => self.get(id, cache_only, key, link, out),
            Request::Set { key, value } => {
                self.count(cache_only, Counter::CacheSet, Counter::DbSet);
                let mut slot = self.cache.lock(key);
                if cache_only {
                    slot.set(key, value);
                    return out.code(id, ReplyCode::Ok);
                }
                slot.set_stored(key, value);
                self.write(h, key, Change::Set(value), &slot, link, out);
            }
            Request::Del { key } => {
                self.count(cache_only, Counter::CacheDel, Counter::DbDel);
                let mut slot = self.cache.lock(key);
                let known_stored = h.sync() && slot.known_stored(key);
                let was_cached = slot.del(key);
                if cache_only {
                    return out.code(
                        id,
                        if was_cached {
                            ReplyCode::Ok
                        } else {
                            ReplyCode::NotIn
                        },
                    );
                }
                self.write(h, key, Change::Del { known_stored }, &slot, link, out);
            }
            Request::Cas { key, old, new } => {
                self.count(cache_only, Counter::CacheCas, Counter::DbCas);
                let mut slot = self.cache.lock(key);
                match (slot.cas(key, old, new), cache_only) {
                    (CasOutcome::Mismatch, _) => out.code(id, ReplyCode::NoMatch),
                    (CasOutcome::NotCached, true) => out.code(id, ReplyCode::NotIn),
                    (CasOutcome::Swapped, true) => out.code(id, ReplyCode::Ok),
                    (_, false) => {
                        let op = DbOp::Cas {
                            key: key.to_vec(),
                            old: old.to_vec(),
                            new: new.to_vec(),
                        };
                        self.submit(op, id, &slot, link, out, true);
                    }
                }
            }
            Request::Incr { key, delta } => {
                self.count(cache_only, Counter::CacheIncr, Counter::DbIncr);
                let mut slot = self.cache.lock(key);
                match (slot.incr(key, delta), cache_only) {
                    (IncrOutcome::NotANumber, _) => out.code(id, ReplyCode::NoMatch),
                    (IncrOutcome::NotCached, true) => out.code(id, ReplyCode::NotIn),
                    (IncrOutcome::Incremented(n), true) => out.answer(id, Answer::Incr(n)),
                    (_, false) => {
                        let op = DbOp::Incr {
                            key: key.to_vec(),
                            delta,
                        };
                        self.submit(op, id, &slot, link, out, true);
                    }
                }
            }
            Request::Stats => {
                let counters = self.stats.snapshot();
                out.answer(id, Answer::Stats(&counters));
            }
            Request::FirstKey => {
                self.stats.inc(Counter::DbFirstKey);
                self.db.walk(Walk::First, id, Some(out.later(link.defer())));
            }
            Request::NextKey { key } => {
                self.stats.inc(Counter::DbNextKey);
                let reply = out.later(link.defer());
                self.db.walk(Walk::Next(key.to_vec()), id, Some(reply));
            }
        }
    }

    /// True when a request for the database from `link` must be refused:
    /// the queue is far over budget and this transport cannot pause.
    fn queue_refuses(&self, link: &dyn Link) -> bool {
        if link.pauses_when_queue_full() || !self.db.budget().refuses_datagrams() {
            return false;
        }
        if self.queue_full_log.ready() {
            log::warn!(
                "database queue holds {} bytes (limit {}): refusing datagram requests \
                 for the database with ERR_MEM until it drains",
                self.db.budget().queued(),
                self.db.budget().limit()
            );
        }
        true
    }

    /// A SET or DEL for the database, the key's stripe held. A
    /// synchronous one is written on this thread when nothing is pending
    /// on the stripe and the database need not make it wait; otherwise it
    /// is queued and answered once written. An asynchronous one is queued
    /// and answered at once.
    fn write(
        &self,
        h: Header,
        key: &[u8],
        change: Change<'_>,
        slot: &Locked<'_>,
        link: &mut dyn Link,
        out: &mut Out<'_>,
    ) {
        let (id, sync) = (h.id, h.sync());
        if sync
            && self.db.may_write_now(slot.db_idle())
            && self.write_now(id, key, change, link, out)
        {
            return;
        }
        let op = match change {
            Change::Set(value) => DbOp::Set {
                entry: KeyValue::new(key, value),
                sync,
            },
            Change::Del { .. } => DbOp::Del {
                key: key.to_vec(),
                sync,
            },
        };
        self.submit(op, id, slot, link, out, sync);
        if !sync {
            out.code(id, ReplyCode::Ok);
        }
    }

    fn get(&self, id: u32, cache_only: bool, key: &[u8], link: &mut dyn Link, out: &mut Out<'_>) {
        self.count(cache_only, Counter::CacheGet, Counter::DbGet);
        let mut slot = self.cache.lock(key);
        if let Some(value) = slot.get(key) {
            self.stats.inc(Counter::CacheHits);
            return out.answer(id, Answer::Data(ReplyCode::CacheHit, value));
        }
        if cache_only {
            self.stats.inc(Counter::CacheMisses);
            return out.code(id, ReplyCode::CacheMiss);
        }
        // With nothing of this stripe queued, the database has every write
        // of the key: what it holds in memory answers here, sparing the
        // hand-off to a worker and back.
        if slot.db_idle() {
            let fill = self.cache_fill;
            let read = self.db.read_now(key, "get", &mut |value| {
                if fill {
                    slot.fill(key, value);
                }
                out.answer(id, Answer::Data(ReplyCode::Ok, value));
            });
            match read {
                Ok(ReadNow::Found) => return self.stats.inc(Counter::DbHits),
                Ok(ReadNow::Missing) => {
                    self.stats.inc(Counter::DbMisses);
                    return out.code(id, ReplyCode::NotIn);
                }
                Ok(ReadNow::WouldWait) => {}
                Err(code) => return out.answer(id, Answer::Error(code)),
            }
        }
        if self.queue_refuses(link) {
            return out.answer(id, Answer::Error(ErrorCode::Mem));
        }
        let op = DbOp::Get {
            key: key.to_vec(),
            fill: self.cache_fill.then(|| slot.ticket()),
        };
        self.submit(op, id, &slot, link, out, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{FakeBackend, WriteOp};
    use crate::dbqueue::WriteHealth;
    use crate::groupcommit::Durability;
    use crate::reply::{collected_frames, StreamSend, STREAM_SHAPE};
    use nmdb_proto::{Reply, FLAGS_CACHE_ONLY, FLAGS_SYNC};
    use std::time::Duration;
    use tokio::sync::Semaphore;

    /// A stream transport's side, its deferred answers sent to `conn`.
    struct TestLink {
        conn: Arc<dyn StreamSend>,
        slots: Arc<Semaphore>,
    }

    impl Link for TestLink {
        fn shape(&self) -> ReplyShape {
            STREAM_SHAPE
        }
        fn defer(&mut self) -> ReplyTo {
            ReplyTo::stream(
                self.conn.clone(),
                self.slots.clone().try_acquire_owned().unwrap(),
            )
        }
        fn pauses_when_queue_full(&self) -> bool {
            true
        }
        fn queued_for_db(&mut self) {}
    }

    /// An engine on `backend`, its database queue started.
    fn engine_on(backend: Arc<FakeBackend>, durability: Durability) -> Engine {
        engine_with_health(backend, durability, Arc::default())
    }

    /// [`engine_on`], its database's health told by `health`.
    fn engine_with_health(
        backend: Arc<FakeBackend>,
        durability: Durability,
        health: Arc<WriteHealth>,
    ) -> Engine {
        crate::testing::engine_with(backend, durability, health)
    }

    /// Sends `req` as request 7 with `flags`; the answer, and whether it
    /// came at once (`false`: deferred, from the queue or the group
    /// commit).
    fn answer_of(engine: &Engine, req: Request<'_>, flags: u16) -> (ReplyCode, bool) {
        let (code, _, at_once) = answer_with_data(engine, req, flags);
        (code, at_once)
    }

    /// Like [`answer_of`], with the reply's data (empty when it has none).
    fn answer_with_data(
        engine: &Engine,
        req: Request<'_>,
        flags: u16,
    ) -> (ReplyCode, Vec<u8>, bool) {
        let (frame, at_once) = reply_frame(engine, req, flags);
        let reply = Reply::parse(&frame[4..]).unwrap();
        let code = reply.reply_code().expect("a reply code");
        let data = reply.data().map(<[u8]>::to_vec).unwrap_or_default();
        (code, data, at_once)
    }

    /// The error code `req` is answered with.
    fn error_of(engine: &Engine, req: Request<'_>) -> u32 {
        let (frame, _) = reply_frame(engine, req, 0);
        let reply = Reply::parse(&frame[4..]).unwrap();
        reply.error_code().expect("an error")
    }

    /// The framed reply to `req`, and whether it came at once.
    fn reply_frame(engine: &Engine, req: Request<'_>, flags: u16) -> (Vec<u8>, bool) {
        let (conn, frames) = collected_frames();
        let mut link = TestLink {
            conn,
            slots: Arc::new(Semaphore::new(4)),
        };
        let mut msg = Vec::new();
        req.encode(7, flags, &mut msg);
        let mut out = Vec::new();
        engine.handle(&msg, &mut link, &mut out);
        match out.is_empty() {
            false => (out, true),
            true => (
                frames
                    .recv_timeout(Duration::from_secs(10))
                    .expect("no answer"),
                false,
            ),
        }
    }

    #[test]
    fn a_sync_write_the_database_would_stall_goes_to_the_queue_and_is_answered() {
        for durability in [Durability::Disk, Durability::Process] {
            // In a write stall: writes that may not wait are refused.
            let backend = Arc::new(FakeBackend {
                stalled: true,
                ..FakeBackend::default()
            });
            let engine = engine_on(backend.clone(), durability);
            let set = Request::Set {
                key: b"k",
                value: b"v",
            };
            let (code, at_once) = answer_of(&engine, set, FLAGS_SYNC);
            assert_eq!(code, ReplyCode::Ok, "{durability:?}");
            assert!(!at_once, "{durability:?}: answered before it was written");
            assert_eq!(
                *backend.written.lock(),
                [WriteOp::new(b"k", Some(b"v"))],
                "{durability:?}: the queue's worker wrote it"
            );
            engine.db.shutdown();
        }
    }

    #[test]
    fn a_sync_del_that_would_read_the_disk_goes_to_the_queue_and_is_answered() {
        // The fake database has no key: a DEL is answered NotIn, at once
        // when that is known from memory, by a worker otherwise.
        for reads_need_disk in [false, true] {
            let backend = Arc::new(FakeBackend {
                reads_need_disk,
                ..FakeBackend::default()
            });
            let engine = engine_on(backend, Durability::Process);
            let (code, at_once) = answer_of(&engine, Request::Del { key: b"k" }, FLAGS_SYNC);
            assert_eq!(code, ReplyCode::NotIn);
            assert_eq!(
                at_once, !reads_need_disk,
                "reads need the disk: {reads_need_disk}"
            );
            engine.db.shutdown();
        }
    }

    /// A database whose every read needs the disk: a sync DEL that reads
    /// it is queued, one that does not is answered at once.
    fn reads_need_disk() -> Arc<FakeBackend> {
        Arc::new(FakeBackend {
            reads_need_disk: true,
            ..FakeBackend::default()
        })
    }

    const SET_K: Request<'static> = Request::Set {
        key: b"k",
        value: b"v",
    };
    const DEL_K: Request<'static> = Request::Del { key: b"k" };

    #[test]
    fn a_sync_del_of_a_key_set_for_the_database_is_answered_without_reading_it() {
        let backend = reads_need_disk();
        let engine = engine_on(backend.clone(), Durability::Process);
        assert_eq!(answer_of(&engine, SET_K, FLAGS_SYNC), (ReplyCode::Ok, true));
        assert_eq!(answer_of(&engine, DEL_K, FLAGS_SYNC), (ReplyCode::Ok, true));
        assert_eq!(
            *backend.written.lock(),
            [put(b"k", b"v"), WriteOp::Delete { key: b"k".to_vec() }]
        );
        engine.db.shutdown();
    }

    #[test]
    fn a_sync_del_reads_the_database_when_the_cache_cannot_vouch_for_the_key() {
        // Cached by a cache-only SET: the database may lack the key.
        let engine = engine_on(reads_need_disk(), Durability::Process);
        answer_of(&engine, SET_K, FLAGS_CACHE_ONLY);
        let answer = answer_of(&engine, DEL_K, FLAGS_SYNC);
        assert_eq!(answer, (ReplyCode::NotIn, false));
        engine.db.shutdown();

        // Set for the database, but a database write has failed since
        // the server started: what the cache believes stored may not be.
        let health = Arc::new(WriteHealth::default());
        let engine = engine_with_health(reads_need_disk(), Durability::Process, health.clone());
        answer_of(&engine, SET_K, FLAGS_SYNC);
        health.failed(&crate::backend::BackendError::Engine("full".into()), 1);
        let answer = answer_of(&engine, DEL_K, FLAGS_SYNC);
        assert_eq!(answer, (ReplyCode::Ok, false));
        engine.db.shutdown();
    }

    fn put(key: &[u8], value: &[u8]) -> WriteOp {
        WriteOp::new(key, Some(value))
    }

    #[test]
    fn a_cache_miss_the_database_holds_in_memory_is_answered_at_once_and_cached() {
        let backend = Arc::new(FakeBackend::default());
        backend.written.lock().push(put(b"k", b"stored"));
        let engine = engine_on(backend, Durability::Process);
        let get = Request::Get { key: b"k" };
        assert_eq!(
            answer_with_data(&engine, get, 0),
            (ReplyCode::Ok, b"stored".to_vec(), true)
        );
        assert_eq!(
            answer_with_data(&engine, get, FLAGS_CACHE_ONLY),
            (ReplyCode::CacheHit, b"stored".to_vec(), true),
            "the value read is cached"
        );
        let missing = Request::Get { key: b"none" };
        assert_eq!(answer_of(&engine, missing, 0), (ReplyCode::NotIn, true));
        engine.db.shutdown();
    }

    #[test]
    fn a_cache_miss_that_would_read_the_disk_goes_to_the_queue() {
        let backend = Arc::new(FakeBackend {
            reads_need_disk: true,
            ..FakeBackend::default()
        });
        backend.written.lock().push(put(b"k", b"stored"));
        let engine = engine_on(backend, Durability::Process);
        let get = Request::Get { key: b"k" };
        assert_eq!(
            answer_with_data(&engine, get, 0),
            (ReplyCode::Ok, b"stored".to_vec(), false)
        );
        engine.db.shutdown();
    }

    #[test]
    fn a_request_that_panics_in_a_database_worker_is_answered_err_db_and_the_worker_goes_on() {
        // Reads that need the disk go to the key's worker; this one panics
        // there. Each time the same worker must answer: it lives on.
        let backend = Arc::new(FakeBackend {
            reads_need_disk: true,
            panic_key: Some(crate::testing::PANIC_KEY),
            ..FakeBackend::default()
        });
        let engine = engine_on(backend, Durability::Process);
        let get = Request::Get {
            key: crate::testing::PANIC_KEY,
        };
        for _ in 0..3 {
            assert_eq!(error_of(&engine, get), ErrorCode::Db as u32);
        }
        let other = Request::Get { key: b"other" };
        assert_eq!(answer_of(&engine, other, 0), (ReplyCode::NotIn, false));
        engine.db.shutdown();
    }

    #[test]
    fn a_cache_miss_waits_for_the_queued_writes_of_its_stripe() {
        // The worker takes a while to write: a read made at once, before
        // the queued SET is applied, would miss it.
        let backend = Arc::new(FakeBackend {
            write_time: Duration::from_millis(200),
            ..FakeBackend::default()
        });
        let engine = engine_on(backend, Durability::Process);
        let set = Request::Set {
            key: b"k",
            value: b"new",
        };
        assert_eq!(answer_of(&engine, set, 0), (ReplyCode::Ok, true));
        // Out of the cache only: the next GET misses it.
        let del = Request::Del { key: b"k" };
        assert_eq!(
            answer_of(&engine, del, FLAGS_CACHE_ONLY),
            (ReplyCode::Ok, true)
        );
        let get = Request::Get { key: b"k" };
        assert_eq!(
            answer_with_data(&engine, get, 0),
            (ReplyCode::Ok, b"new".to_vec(), false)
        );
        engine.db.shutdown();
    }
}
