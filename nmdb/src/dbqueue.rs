//! The ordered database queue.
//!
//! Requests that need the database are handed to one of several worker
//! threads, chosen by key hash: every request on a key goes to the same
//! worker, so per key the database sees requests in the order the server
//! received them, while different keys proceed on different cores. A key
//! walk is a barrier through every worker, so it sees every write received
//! before it.
//!
//! A worker takes whatever has queued up and applies consecutive writes as
//! one batch: one engine write. Synchronous requests in it are answered
//! once the write is durable: the worker hands their answers to the
//! [`GroupCommit`], whose one fsync serves every worker's waiting requests,
//! and goes on. A read of a key that the pending batch touches writes the
//! batch first, so reads see the writes that came before them exactly as
//! the backend stores them. Replies that promise durability or a database
//! result (sync SET/DEL, CAS, INCR) are sent only after their batch is
//! written.
//!
//! A synchronous SET or DEL need not queue at all: when nothing is queued
//! for the database and no operation on its cache stripe is in progress,
//! the thread that received it applies it at once ([`DbQueue::write_now`])
//! and the request skips two thread hand-offs. Nothing older on the key
//! can be overtaken, since the stripe is held and none is pending. That
//! thread serves other clients, so the write never waits: one RocksDB
//! would delay (a write stall), or a DEL whose key could only be looked up
//! on disk, is queued for a worker instead.

use crate::backend::{Backend, BackendError, KeyValue, WriteOp};
use crate::budget::QueueBudget;
use crate::cache::{Cache, DbClaim, FillTicket};
use crate::groupcommit::{CommitTotals, Durability, GroupCommit, SyncReply};
use crate::incr::{self, NotANumber};
use crate::reply::{Modes, ReplyTo};
use crate::stats::Stats;
use crate::workqueue::WorkQueue;
use nmdb_proto::{Answer, Counter, ErrorCode, ReplyCode};
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Most requests a worker applies as one batch.
const MAX_BATCH: usize = 256;
/// Most key and value bytes written as one batch: the engine copies a
/// batch whole, so big values are written in several.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// A database operation, owning its bytes.
#[derive(Debug)]
pub enum DbOp {
    Get {
        key: Vec<u8>,
        /// Present when the cache may be filled with the value read.
        fill: Option<FillTicket>,
    },
    Set {
        entry: KeyValue,
        sync: bool,
    },
    Del {
        key: Vec<u8>,
        sync: bool,
    },
    Cas {
        key: Vec<u8>,
        old: Vec<u8>,
        new: Vec<u8>,
    },
    Incr {
        key: Vec<u8>,
        delta: i64,
    },
}

impl DbOp {
    /// Bytes this operation holds while queued, charged to the
    /// [`QueueBudget`]: its buffers and its queue entry.
    fn cost(&self) -> usize {
        let held = match self {
            DbOp::Get { key, .. } | DbOp::Del { key, .. } | DbOp::Incr { key, .. } => key.len(),
            DbOp::Set { entry, .. } => entry.size(),
            DbOp::Cas { key, old, new } => key.len() + old.len() + new.len(),
        };
        held + std::mem::size_of::<Msg>()
    }
}

/// One queued request: the operation, the id to answer with, and where to
/// answer (`None` for asynchronous writes, already answered).
pub struct Job {
    pub op: DbOp,
    pub id: u32,
    pub reply: Option<ReplyTo>,
    /// The key's stripe counts this job until it is applied.
    pub claim: DbClaim,
}

/// A SET or DEL for the database, borrowed from its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Set(&'a [u8]),
    /// `known_stored`: the cache knew the key to be in the database
    /// ([`Locked::known_stored`](crate::cache::Locked::known_stored)).
    Del {
        known_stored: bool,
    },
}

impl<'a> Change<'a> {
    /// The value written: `None` for a DEL.
    pub fn value(self) -> Option<&'a [u8]> {
        match self {
            Change::Set(value) => Some(value),
            Change::Del { .. } => None,
        }
    }
}

/// How a synchronous write offered to [`DbQueue::write_now`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenNow {
    /// Answer this now: `Ok` (durability `process`), or `NotIn` for a DEL
    /// of a key the database does not have.
    Answer(ReplyCode),
    /// Written; the group commit answers once it is on disk.
    AnsweredWhenDurable,
    /// The database would have made the write wait (a write stall, or a
    /// disk read to answer a DEL): nothing was written; queue it for a
    /// worker, which may wait.
    WouldWait,
}

/// What a read offered to [`DbQueue::read_now`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadNow {
    /// Stored; its value was handed over.
    Found,
    /// Not stored.
    Missing,
    /// Telling would need a disk read: queue the read for a worker.
    WouldWait,
}

/// FIRSTKEY or NEXTKEY.
#[derive(Debug)]
pub enum Walk {
    First,
    Next(Vec<u8>),
}

/// A key walk travelling through every worker; the last one to reach it
/// runs it.
struct WalkJob {
    walk: Walk,
    id: u32,
    reply: Mutex<Option<ReplyTo>>,
    workers_left: AtomicUsize,
}

// Jobs are nearly every message: boxing them to shrink the rare variants
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Msg {
    /// A request and the bytes it was charged.
    Job(Job, usize),
    Walk(Arc<WalkJob>),
    /// Apply everything before this and exit.
    Stop,
}

/// Whether database writes fail now: the change is logged once each way,
/// not once per failed batch. Also counts failures, reads included, for
/// the metrics (STATS has a fixed set of counters).
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: AtomicBool,
    failed_reads: AtomicU64,
    failed_writes: AtomicU64,
}

impl WriteHealth {
    /// Failed database reads and writes (batches) so far.
    pub fn failures(&self) -> (u64, u64) {
        let reads = self.failed_reads.load(Ordering::Relaxed);
        (reads, self.failed_writes.load(Ordering::Relaxed))
    }

    /// True until a database write fails, however many succeed after.
    pub fn no_write_ever_failed(&self) -> bool {
        self.failed_writes.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn failed(&self, e: &BackendError, changes: usize) {
        self.failed_writes.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            log::error!(
                "database writes are failing ({e}); changes are answered ERR_DB \
                 until a write succeeds again"
            );
        } else {
            log::debug!("database write of {changes} changes failed: {e}");
        }
    }

    pub(crate) fn succeeded(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            log::info!("database writes succeed again");
        }
    }

    fn read_failed(&self) {
        self.failed_reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a worker needs besides its queue.
#[derive(Clone)]
pub struct Shared {
    pub backend: Arc<dyn Backend>,
    pub cache: Arc<Cache>,
    pub stats: Arc<Stats>,
    pub modes: Arc<Modes>,
    pub cache_fill: bool,
    pub health: Arc<WriteHealth>,
    pub durability: Durability,
}

pub struct DbQueue {
    queues: Vec<Arc<WorkQueue<Msg>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    nworkers: usize,
    budget: Arc<QueueBudget>,
    /// Present with [`Durability::Disk`].
    commit: Option<Arc<GroupCommit>>,
    backend: Arc<dyn Backend>,
    health: Arc<WriteHealth>,
}

impl DbQueue {
    /// Starts `nworkers` workers sharing a budget of `budget_bytes`
    /// queued. Submitting never waits; transports consult
    /// [`DbQueue::budget`] to slow their clients down.
    pub fn start(shared: Shared, nworkers: usize, budget_bytes: usize) -> std::io::Result<Self> {
        let nworkers = nworkers.max(1);
        let budget = Arc::new(QueueBudget::new(budget_bytes));
        let commit = match shared.durability {
            Durability::Disk => Some(Arc::new(GroupCommit::start(
                shared.backend.clone(),
                shared.modes.clone(),
                shared.health.clone(),
            )?)),
            Durability::Process => None,
        };
        let mut queues = Vec::with_capacity(nworkers);
        let mut workers = Vec::with_capacity(nworkers);
        for i in 0..nworkers {
            let queue = Arc::new(WorkQueue::new());
            let mut worker = Worker::new(
                shared.clone(),
                queue.clone(),
                budget.clone(),
                commit.clone(),
            );
            workers.push(
                std::thread::Builder::new()
                    .name(format!("nmdb-db-{i}"))
                    .spawn(move || {
                        yield_cpu_to_network_threads();
                        worker.run()
                    })?,
            );
            queues.push(queue);
        }
        Ok(DbQueue {
            queues,
            workers: Mutex::new(workers),
            nworkers,
            budget,
            commit,
            backend: shared.backend,
            health: shared.health,
        })
    }

    /// What is queued, against its limit.
    pub fn budget(&self) -> &QueueBudget {
        &self.budget
    }

    /// Requests waiting in the workers' queues (a key walk once per
    /// worker), for reports: takes each queue's lock in turn.
    pub fn waiting(&self) -> usize {
        self.queues.iter().map(|q| q.waiting()).sum()
    }

    /// Queues `msg` on `worker`. Only what someone waits for wakes the
    /// worker at once; see [`WorkQueue`].
    fn send(&self, worker: usize, msg: Msg) {
        let urgent = match &msg {
            Msg::Job(job, _) => job.reply.is_some(),
            Msg::Walk(_) | Msg::Stop => true,
        };
        self.queues[worker].push(msg, urgent);
    }

    /// Whether a synchronous write may skip the queue: nothing waits for
    /// the database at all (it keeps up, and a write now will not wait
    /// behind a flood) and `stripe_idle`, the key's stripe has nothing
    /// pending (see [`Cache`]).
    pub fn may_write_now(&self, stripe_idle: bool) -> bool {
        stripe_idle && self.budget.queued() == 0
    }

    /// Applies a synchronous SET or DEL on the calling thread, which holds
    /// the key's cache stripe and has checked [`DbQueue::may_write_now`].
    /// A DEL reads first, as a queued one does, to answer `NotIn` for a
    /// key the database lacks, unless the cache knew the key stored and
    /// that knowledge holds: the backend keeps writes and none has ever
    /// failed (a failed write may have left the cache believing a key
    /// stored). `defer` gives where to answer request `id` when the group
    /// commit answers it. The calling thread serves other clients, so the
    /// write never waits in a write stall, nor a DEL for a disk read
    /// ([`WrittenNow::WouldWait`]).
    pub fn write_now(
        &self,
        id: u32,
        key: &[u8],
        change: Change<'_>,
        defer: impl FnOnce() -> ReplyTo,
    ) -> Result<WrittenNow, ErrorCode> {
        if let Change::Del { known_stored } = change {
            let trusted = self.backend.keeps_writes() && self.health.no_write_ever_failed();
            if !(known_stored && trusted) {
                match self.read_now(key, "delete", &mut |_| {})? {
                    ReadNow::Found => {}
                    ReadNow::Missing => return Ok(WrittenNow::Answer(ReplyCode::NotIn)),
                    ReadNow::WouldWait => return Ok(WrittenNow::WouldWait),
                }
            }
        }
        match self.backend.write_without_waiting(key, change.value()) {
            Ok(false) => Ok(WrittenNow::WouldWait),
            Ok(true) => {
                self.health.succeeded();
                Ok(match &self.commit {
                    Some(commit) => {
                        commit.submit_one(SyncReply { id, reply: defer() });
                        WrittenNow::AnsweredWhenDurable
                    }
                    None => WrittenNow::Answer(ReplyCode::Ok),
                })
            }
            Err(e) => {
                self.health.failed(&e, 1);
                Err(ErrorCode::Db)
            }
        }
    }

    /// Reads `key` on the calling thread when the database has what it
    /// needs in memory (memtables, block cache), `found` getting the value.
    /// The caller holds the key's cache stripe with nothing pending on it
    /// ([`Locked::db_idle`](crate::cache::Locked::db_idle)), so every
    /// earlier write of the key is in the database, as a worker's read
    /// would see it. `what` names the request in the log if reading fails.
    pub fn read_now(
        &self,
        key: &[u8],
        what: &str,
        found: &mut dyn FnMut(&[u8]),
    ) -> Result<ReadNow, ErrorCode> {
        match self.backend.get_without_waiting(key, found) {
            Ok(Some(true)) => Ok(ReadNow::Found),
            Ok(Some(false)) => Ok(ReadNow::Missing),
            Ok(None) => Ok(ReadNow::WouldWait),
            Err(e) => {
                log::error!("database {what} failed: {e}");
                self.health.read_failed();
                Err(ErrorCode::Db)
            }
        }
    }

    /// What the group commit has done; zeros at durability `process`.
    pub fn commits(&self) -> CommitTotals {
        self.commit
            .as_ref()
            .map_or_else(CommitTotals::default, |c| c.totals())
    }

    /// Queues a request on the worker that owns its key. Never waits.
    pub fn submit(&self, job: Job) {
        let worker = (job.claim.key_hash() % self.nworkers as u64) as usize;
        let cost = job.op.cost();
        self.budget.charge(cost);
        self.send(worker, Msg::Job(job, cost));
    }

    /// Queues a key walk behind everything already queued on every worker.
    pub fn walk(&self, walk: Walk, id: u32, reply: Option<ReplyTo>) {
        let job = Arc::new(WalkJob {
            walk,
            id,
            reply: Mutex::new(reply),
            workers_left: AtomicUsize::new(self.nworkers),
        });
        for w in 0..self.nworkers {
            self.send(w, Msg::Walk(job.clone()));
        }
    }

    /// Stops taking requests, applies everything queued, and waits for the
    /// workers to finish.
    pub fn shutdown(&self) {
        for w in 0..self.nworkers {
            self.send(w, Msg::Stop);
        }
        for handle in self.workers.lock().drain(..) {
            if handle.join().is_err() {
                log::error!("a database worker panicked");
            }
        }
        if let Some(commit) = &self.commit {
            commit.shutdown();
        }
    }
}

/// Niceness of the database workers, above the network threads'.
const WORKER_NICENESS: libc::c_int = 5;

/// Lowers the calling thread's CPU priority. Database work is throughput
/// work; under a write flood, cache requests (and the network threads that
/// serve them) must not wait behind it for a CPU.
fn yield_cpu_to_network_threads() {
    // SAFETY: gettid and setpriority take plain integers; on Linux a
    // thread's own id selects that thread alone.
    let ok = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICENESS) == 0
    };
    if !ok {
        log::debug!(
            "database worker keeps its CPU priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// An answer waiting for its batch to be written.
struct Waiting {
    id: u32,
    reply: ReplyTo,
    answer: Deferred,
}

enum Deferred {
    Code(ReplyCode),
    Incr(i64),
    /// `Ok` once the write is durable (synchronous SET and DEL).
    Durable,
}

struct Worker {
    shared: Shared,
    queue: Arc<WorkQueue<Msg>>,
    budget: Arc<QueueBudget>,
    commit: Option<Arc<GroupCommit>>,
    /// Bytes charged for the requests taken since the last release.
    taken: usize,
    /// Their claims on cache stripes, handed back once they are applied.
    claims: Vec<DbClaim>,
    pending: Vec<WriteOp>,
    /// Key and value bytes in `pending`.
    pending_bytes: usize,
    waiting: Vec<Waiting>,
    /// Answers of written synchronous requests, on their way to `commit`.
    to_commit: Vec<SyncReply>,
    scratch: Vec<u8>,
}

impl Worker {
    fn new(
        shared: Shared,
        queue: Arc<WorkQueue<Msg>>,
        budget: Arc<QueueBudget>,
        commit: Option<Arc<GroupCommit>>,
    ) -> Self {
        Worker {
            shared,
            queue,
            budget,
            commit,
            taken: 0,
            claims: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            waiting: Vec::new(),
            to_commit: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn run(&mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            self.queue.pop_batch(&mut batch, MAX_BATCH);
            let mut go_on = true;
            for msg in batch.drain(..) {
                // Stop is queued after everything else (shutdown comes
                // once the transports are closed).
                go_on = go_on && self.handle(msg);
            }
            if catch_unwind(AssertUnwindSafe(|| self.flush())).is_err() {
                self.recover_from_panic("writing a batch");
            }
            // Applied: later writes on their stripes may skip the queue.
            for claim in self.claims.drain(..) {
                self.shared.cache.db_done(claim);
            }
            // Written (or answered with an error): their bytes are free.
            if self.taken > 0 {
                self.budget.release(std::mem::take(&mut self.taken));
            }
            if !go_on {
                return;
            }
        }
    }

    /// Handles one message; false when the worker must stop. A panic
    /// under it (a bug) costs only the requests it touched: they are
    /// answered `ERR_DB` and the worker goes on with the rest of its
    /// queue, which would otherwise wait forever.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Stop => return false,
            Msg::Job(job, cost) => {
                self.taken += cost;
                let Job {
                    op,
                    id,
                    mut reply,
                    claim,
                } = job;
                self.claims.push(claim);
                let executed = catch_unwind(AssertUnwindSafe(|| self.execute(op, id, &mut reply)));
                if executed.is_err() {
                    self.recover_from_panic("executing a request");
                    self.answer(reply, id, Answer::Error(ErrorCode::Db));
                }
            }
            Msg::Walk(walk) => {
                let walked = catch_unwind(AssertUnwindSafe(|| {
                    self.flush();
                    if walk.workers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        self.run_walk(&walk);
                    }
                }));
                if walked.is_err() {
                    self.recover_from_panic("walking the keys");
                    let reply = walk.reply.lock().take();
                    self.answer(reply, walk.id, Answer::Error(ErrorCode::Db));
                }
            }
        }
        true
    }

    /// After a panic: the pending batch may or may not have been written,
    /// so its writes are dropped and the answers that waited for it say
    /// `ERR_DB`; what was written before goes on to the group commit.
    fn recover_from_panic(&mut self, what: &str) {
        log::error!(
            "a database worker panicked {what} (a bug: please report it); \
             the requests of its batch are answered ERR_DB"
        );
        if !self.pending.is_empty() {
            let e = BackendError::Engine(format!("the worker panicked {what}"));
            self.shared.health.failed(&e, self.pending.len());
        }
        self.pending.clear();
        self.pending_bytes = 0;
        for w in std::mem::take(&mut self.waiting) {
            self.answer(Some(w.reply), w.id, Answer::Error(ErrorCode::Db));
        }
        if let Some(commit) = &self.commit {
            commit.submit(&mut self.to_commit);
        }
    }

    fn answer(&mut self, reply: Option<ReplyTo>, id: u32, answer: Answer<'_>) {
        if let Some(reply) = reply {
            reply.send(&self.shared.modes, id, answer, &mut self.scratch);
        }
    }

    /// The value of `key` as of every request received before this one.
    /// A batch not yet written that touches the key is written first, so
    /// the answer is the backend's own (the null backend forgets writes;
    /// a read must not see them).
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let touched = self.pending.iter().any(|op| op.key() == key);
        if touched {
            self.flush();
        }
        self.shared.backend.get(key)
    }

    fn queue_write(&mut self, op: WriteOp) {
        let size = op.size();
        if self.pending_bytes + size > MAX_BATCH_BYTES {
            self.flush();
        }
        self.pending_bytes += size;
        self.pending.push(op);
    }

    fn wait_for_batch(&mut self, reply: Option<ReplyTo>, id: u32, answer: Deferred) {
        if let Some(reply) = reply {
            self.waiting.push(Waiting { id, reply, answer });
        }
    }

    /// Applies `op`, taking `reply` once it answers or queues the answer
    /// (left in place if it panics first).
    fn execute(&mut self, op: DbOp, id: u32, reply: &mut Option<ReplyTo>) {
        match op {
            DbOp::Get { key, fill } => match self.read(&key) {
                Ok(Some(value)) => {
                    self.shared.stats.inc(Counter::DbHits);
                    if let (true, Some(ticket)) = (self.shared.cache_fill, fill) {
                        self.shared.cache.fill(ticket, &key, &value);
                    }
                    self.answer(reply.take(), id, Answer::Data(ReplyCode::Ok, &value));
                }
                Ok(None) => {
                    self.shared.stats.inc(Counter::DbMisses);
                    self.answer(reply.take(), id, Answer::Code(ReplyCode::NotIn));
                }
                Err(e) => self.failed(reply.take(), id, "get", e),
            },
            DbOp::Set { entry, sync } => {
                self.queue_write(WriteOp::Put(entry));
                let answer = if sync {
                    Deferred::Durable
                } else {
                    Deferred::Code(ReplyCode::Ok)
                };
                self.wait_for_batch(reply.take(), id, answer);
            }
            DbOp::Del { key, sync } if !sync => {
                self.queue_write(WriteOp::Delete { key });
                self.wait_for_batch(reply.take(), id, Deferred::Code(ReplyCode::Ok));
            }
            DbOp::Del { key, .. } => match self.read(&key) {
                Ok(Some(_)) => {
                    self.queue_write(WriteOp::Delete { key });
                    self.wait_for_batch(reply.take(), id, Deferred::Durable);
                }
                Ok(None) => self.answer(reply.take(), id, Answer::Code(ReplyCode::NotIn)),
                Err(e) => self.failed(reply.take(), id, "delete", e),
            },
            DbOp::Cas { key, old, new } => match self.read(&key) {
                Ok(None) => self.answer(reply.take(), id, Answer::Code(ReplyCode::NotIn)),
                Ok(Some(stored)) if stored != old => {
                    self.answer(reply.take(), id, Answer::Code(ReplyCode::NoMatch))
                }
                Ok(Some(_)) => {
                    self.queue_write(WriteOp::new(&key, Some(&new)));
                    self.wait_for_batch(reply.take(), id, Deferred::Code(ReplyCode::Ok));
                }
                Err(e) => self.failed(reply.take(), id, "cas", e),
            },
            DbOp::Incr { key, delta } => match self.read(&key) {
                Ok(None) => self.answer(reply.take(), id, Answer::Code(ReplyCode::NotIn)),
                Ok(Some(mut value)) => match incr::increment(&mut value, delta) {
                    Ok(n) => {
                        self.queue_write(WriteOp::new(&key, Some(&value)));
                        self.wait_for_batch(reply.take(), id, Deferred::Incr(n));
                    }
                    Err(NotANumber) => {
                        self.answer(reply.take(), id, Answer::Code(ReplyCode::NoMatch))
                    }
                },
                Err(e) => self.failed(reply.take(), id, "incr", e),
            },
        }
    }

    fn failed(&mut self, reply: Option<ReplyTo>, id: u32, what: &str, e: BackendError) {
        log::error!("database {what} failed: {e}");
        self.shared.health.read_failed();
        self.answer(reply, id, Answer::Error(ErrorCode::Db));
    }

    /// Writes the pending batch, then sends the answers that waited for it
    /// (those that wait for the disk, through the group commit).
    fn flush(&mut self) {
        if self.pending.is_empty() && self.waiting.is_empty() {
            return;
        }
        let result = if self.pending.is_empty() {
            Ok(())
        } else {
            self.shared.backend.write(&self.pending)
        };
        match &result {
            Err(e) => self.shared.health.failed(e, self.pending.len()),
            Ok(()) if !self.pending.is_empty() => self.shared.health.succeeded(),
            Ok(()) => {}
        }
        self.pending.clear();
        self.pending_bytes = 0;
        let mut waiting = std::mem::take(&mut self.waiting);
        for w in waiting.drain(..) {
            let answer = match (&result, &w.answer) {
                (Err(_), _) => Answer::Error(ErrorCode::Db),
                (Ok(()), Deferred::Durable) => match &self.commit {
                    Some(_) => {
                        self.to_commit.push(SyncReply {
                            id: w.id,
                            reply: w.reply,
                        });
                        continue;
                    }
                    None => Answer::Code(ReplyCode::Ok),
                },
                (Ok(()), Deferred::Code(code)) => Answer::Code(*code),
                (Ok(()), Deferred::Incr(n)) => Answer::Incr(*n),
            };
            w.reply
                .send(&self.shared.modes, w.id, answer, &mut self.scratch);
        }
        self.waiting = waiting;
        if let Some(commit) = &self.commit {
            commit.submit(&mut self.to_commit);
        }
    }

    fn run_walk(&mut self, job: &WalkJob) {
        let backend = &self.shared.backend;
        let result = match &job.walk {
            Walk::First => backend.first_key(),
            Walk::Next(key) => backend.next_key(key),
        };
        let reply = job.reply.lock().take();
        match result {
            Ok(Some(key)) => self.answer(reply, job.id, Answer::Data(ReplyCode::Ok, &key)),
            Ok(None) => self.answer(reply, job.id, Answer::Code(ReplyCode::NotIn)),
            Err(BackendError::Unsupported(_)) => {
                self.answer(reply, job.id, Answer::Error(ErrorCode::Db))
            }
            Err(e) => self.failed(reply, job.id, "key walk", e),
        }
    }
}
