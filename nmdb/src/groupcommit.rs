//! Group commit: one fsync for every synchronous write that is waiting.
//!
//! Database workers write their batches without waiting for the disk and
//! hand the answers of synchronous requests here. One committer thread
//! makes the log durable (an fsync of RocksDB's write-ahead log) for
//! everything written so far and then answers all of them, while the
//! workers go on writing: the writes that arrive during one fsync share the
//! next. The fsync is serial by nature (one log); the thread does one
//! wake-up per group, not per request.
//!
//! Concurrent clients that wait for their answers arrive almost together,
//! right after the previous group's answers. Starting the fsync on the
//! first of them would split every round into a group of one and a group
//! of the rest, halving throughput; so when the previous group was bigger
//! than what is waiting, the committer waits for as many requests as that
//! group had, for at most the time of one fsync (and never more than
//! [`MAX_GATHER`]): a straggler left out would wait for a whole fsync more
//! anyway. A lone client never waits (its previous group was one), and the
//! wait adapts when clients come and go: a group cut short by the deadline
//! sets the next group's target.

use crate::backend::{Backend, BackendError};
use crate::dbqueue::WriteHealth;
use crate::reply::{Modes, ReplyTo};
use nmdb_proto::{Answer, ErrorCode, ReplyCode};
use parking_lot::{Condvar, Mutex};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// When a synchronous write is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Once it is on disk (the log fsynced): survives a power loss. What
    /// the user guide promises for the synchronous functions.
    #[default]
    Disk,
    /// Once the database has it (the log written to the kernel, not
    /// fsynced): survives the server being killed, not a power loss. The
    /// original server's behaviour.
    Process,
}

impl Durability {
    pub const NAMES: &'static str = "disk, process";

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "disk" => Ok(Self::Disk),
            "process" => Ok(Self::Process),
            other => Err(format!(
                "unknown durability '{other}' (choose one of: {})",
                Self::NAMES
            )),
        }
    }
}

/// The answer to a synchronous write, held until its write is durable.
pub struct SyncReply {
    pub id: u32,
    pub reply: ReplyTo,
}

/// What the group commit has done so far, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitTotals {
    pub fsyncs: u64,
    /// Synchronous requests those fsyncs answered: over `fsyncs`, the
    /// average group.
    pub requests: u64,
    /// Time spent in them: over `fsyncs`, what the disk takes to make a
    /// write durable, the floor of a synchronous write's latency.
    pub fsync_time: Duration,
}

/// [`CommitTotals`] as they grow, each fsync counted before its answers
/// go: a client that has its answer finds its fsync in the metrics.
#[derive(Debug, Default)]
struct CommitCounts {
    fsyncs: AtomicU64,
    requests: AtomicU64,
    fsync_nanos: AtomicU64,
}

impl CommitCounts {
    fn record(&self, took: Duration, requests: usize) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }

    fn totals(&self) -> CommitTotals {
        CommitTotals {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            fsync_time: Duration::from_nanos(self.fsync_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Longest a group waits for more requests, whatever the fsync costs.
const MAX_GATHER: Duration = Duration::from_millis(1);

struct State {
    waiting: Vec<SyncReply>,
    /// How many waiting answers wake the committer: one when it is idle,
    /// the group it gathers for while gathering. Waking it for each
    /// arrival would cost a context switch per request.
    wake_at: usize,
    stop: bool,
}

impl State {
    fn new() -> Self {
        State {
            waiting: Vec::new(),
            wake_at: 1,
            stop: false,
        }
    }

    /// Whether the committer waits for what just arrived.
    fn enough(&self) -> bool {
        self.waiting.len() >= self.wake_at
    }
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when requests arrive or the committer must stop.
    arrived: Condvar,
    backend: Arc<dyn Backend>,
    modes: Arc<Modes>,
    health: Arc<WriteHealth>,
    counts: CommitCounts,
}

pub struct GroupCommit {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    pub fn start(
        backend: Arc<dyn Backend>,
        modes: Arc<Modes>,
        health: Arc<WriteHealth>,
    ) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new()),
            arrived: Condvar::new(),
            backend,
            modes,
            health,
            counts: CommitCounts::default(),
        });
        let thread = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("nmdb-commit".into())
                .spawn(move || Committer::new(inner).run())?
        };
        Ok(GroupCommit {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues answers whose writes the backend has taken (not yet
    /// durable); they are sent once a later fsync covers them.
    pub fn submit(&self, replies: &mut Vec<SyncReply>) {
        if !replies.is_empty() {
            self.arrive(|waiting| waiting.append(replies));
        }
    }

    /// [`GroupCommit::submit`] for one answer.
    pub fn submit_one(&self, reply: SyncReply) {
        self.arrive(|waiting| waiting.push(reply));
    }

    /// Adds to what waits, waking the committer once there is enough.
    fn arrive(&self, add: impl FnOnce(&mut Vec<SyncReply>)) {
        let mut state = self.inner.state.lock();
        add(&mut state.waiting);
        if state.enough() {
            self.inner.arrived.notify_one();
        }
    }

    pub fn totals(&self) -> CommitTotals {
        self.inner.counts.totals()
    }

    /// Makes everything submitted durable and answers it, then stops the
    /// committer. Call once nothing submits any more.
    pub fn shutdown(&self) {
        self.inner.state.lock().stop = true;
        self.inner.arrived.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                log::error!("the group commit thread panicked");
            }
        }
    }
}

struct Committer {
    inner: Arc<Inner>,
    /// Requests the last fsync covered.
    last_group: usize,
    /// What an fsync takes, smoothed.
    fsync_time: Duration,
    group: Vec<SyncReply>,
    scratch: Vec<u8>,
}

impl Committer {
    fn new(inner: Arc<Inner>) -> Self {
        Committer {
            inner,
            last_group: 1,
            fsync_time: Duration::ZERO,
            group: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn run(&mut self) {
        while self.gather() {
            let started = Instant::now();
            let result = self.make_durable();
            let took = started.elapsed();
            self.fsync_time = if self.fsync_time.is_zero() {
                took
            } else {
                (self.fsync_time * 7 + took) / 8
            };
            self.inner.counts.record(took, self.group.len());
            self.answer(&result);
        }
    }

    /// The backend's fsync. One that panics (a bug) fails this group,
    /// answered `ERR_DB`, rather than end the thread every later
    /// synchronous write waits for.
    fn make_durable(&self) -> Result<(), BackendError> {
        let backend = &self.inner.backend;
        catch_unwind(AssertUnwindSafe(|| backend.make_durable())).unwrap_or_else(|_| {
            log::error!("the database's fsync panicked (a bug: please report it)");
            Err(BackendError::Engine("the fsync panicked".into()))
        })
    }

    /// Waits for a group and moves it into `self.group`; false once
    /// stopped with nothing left.
    fn gather(&mut self) -> bool {
        let inner = self.inner.clone();
        let mut state = inner.state.lock();
        state.wake_at = 1;
        while state.waiting.is_empty() {
            if state.stop {
                return false;
            }
            inner.arrived.wait(&mut state);
        }
        if state.waiting.len() < self.last_group && !state.stop {
            state.wake_at = self.last_group;
            let deadline = Instant::now() + self.fsync_time.min(MAX_GATHER);
            while state.waiting.len() < self.last_group && !state.stop {
                if inner.arrived.wait_until(&mut state, deadline).timed_out() {
                    break;
                }
            }
            state.wake_at = 1;
        }
        std::mem::swap(&mut self.group, &mut state.waiting);
        true
    }

    fn answer(&mut self, result: &Result<(), BackendError>) {
        match result {
            Ok(()) => self.inner.health.succeeded(),
            Err(e) => self.inner.health.failed(e, self.group.len()),
        }
        let answer = match result {
            Ok(()) => Answer::Code(ReplyCode::Ok),
            Err(_) => Answer::Error(ErrorCode::Db),
        };
        self.last_group = self.group.len();
        for SyncReply { id, reply } in self.group.drain(..) {
            reply.send(&self.inner.modes, id, answer, &mut self.scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FakeBackend;
    use crate::reply::collected_frames;
    use nmdb_proto::Reply;
    use std::sync::mpsc::Receiver;
    use tokio::sync::Semaphore;

    fn start(fail: bool) -> (GroupCommit, Arc<FakeBackend>) {
        let disk = Arc::new(FakeBackend {
            fsync_time: Duration::from_millis(20),
            fsync_fails: fail,
            ..FakeBackend::default()
        });
        let commit = GroupCommit::start(
            disk.clone(),
            Arc::new(Modes::default()),
            Arc::new(WriteHealth::default()),
        )
        .unwrap();
        (commit, disk)
    }

    /// `n` answers on one stream, and where they arrive.
    fn replies(n: usize) -> (Vec<SyncReply>, Receiver<Vec<u8>>) {
        let (conn, rx) = collected_frames();
        let slots = Arc::new(Semaphore::new(n));
        let replies = (0..n as u32)
            .map(|id| SyncReply {
                id,
                reply: ReplyTo::stream(conn.clone(), slots.clone().try_acquire_owned().unwrap()),
            })
            .collect();
        (replies, rx)
    }

    /// Waits for `n` answers; their reply codes, or error codes as `Err`.
    fn answers(rx: &mut Receiver<Vec<u8>>, n: usize) -> Vec<Result<u32, u32>> {
        (0..n)
            .map(|i| {
                let r = rx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| panic!("{i} of {n} answered"));
                let reply = Reply::parse(&r[4..]).unwrap();
                match reply.error_code() {
                    Some(e) => Err(e),
                    None => Ok(reply.reply_code().unwrap() as u32),
                }
            })
            .collect()
    }

    #[test]
    fn writes_waiting_together_share_an_fsync() {
        let (commit, disk) = start(false);
        let (waiting, mut rx) = replies(8);
        // The first starts an fsync of 20 ms; the others queue during it
        // and share the next.
        for reply in waiting {
            commit.submit_one(reply);
        }
        let got = answers(&mut rx, 8);
        assert!(
            got.iter().all(|a| *a == Ok(ReplyCode::Ok as u32)),
            "{got:?}"
        );
        let fsyncs = disk.fsyncs.load(Ordering::SeqCst);
        assert!(fsyncs <= 2, "8 waiting writes took {fsyncs} fsyncs");
        commit.shutdown();
    }

    #[test]
    fn totals_count_the_fsyncs_the_requests_they_answered_and_their_time() {
        let (commit, disk) = start(false);
        let (mut waiting, mut rx) = replies(3);
        commit.submit(&mut waiting);
        assert_eq!(answers(&mut rx, 3).len(), 3);
        let totals = commit.totals();
        let fsyncs = disk.fsyncs.load(Ordering::SeqCst);
        assert_eq!(totals.fsyncs, fsyncs as u64);
        assert_eq!(totals.requests, 3);
        // Each fake fsync sleeps for its fsync_time.
        assert!(
            totals.fsync_time >= disk.fsync_time * fsyncs as u32,
            "{totals:?}"
        );
        commit.shutdown();
    }

    #[test]
    fn nothing_is_answered_before_its_fsync() {
        let (commit, disk) = start(false);
        let (mut waiting, mut rx) = replies(1);
        commit.submit(&mut waiting);
        let got = answers(&mut rx, 1);
        assert_eq!(got, [Ok(ReplyCode::Ok as u32)]);
        assert_eq!(
            disk.fsyncs.load(Ordering::SeqCst),
            1,
            "answered before the fsync ended"
        );
        commit.shutdown();
    }

    #[test]
    fn a_failed_fsync_answers_err_db() {
        let (commit, _) = start(true);
        let (mut waiting, mut rx) = replies(3);
        commit.submit(&mut waiting);
        let got = answers(&mut rx, 3);
        assert!(
            got.iter().all(|a| *a == Err(ErrorCode::Db as u32)),
            "{got:?}"
        );
        commit.shutdown();
    }

    #[test]
    fn an_fsync_that_panics_is_answered_err_db_and_the_committer_goes_on() {
        let disk = FakeBackend {
            fsync_panics: true,
            ..FakeBackend::default()
        };
        let commit = GroupCommit::start(
            Arc::new(disk),
            Arc::new(Modes::default()),
            Arc::new(WriteHealth::default()),
        )
        .unwrap();
        for _ in 0..2 {
            let (mut waiting, mut rx) = replies(2);
            commit.submit(&mut waiting);
            let got = answers(&mut rx, 2);
            assert_eq!(got, [Err(ErrorCode::Db as u32); 2]);
        }
        commit.shutdown();
    }

    #[test]
    fn shutdown_answers_what_was_submitted() {
        let (commit, disk) = start(false);
        let (mut waiting, mut rx) = replies(5);
        commit.submit(&mut waiting);
        commit.shutdown();
        assert_eq!(answers(&mut rx, 5).len(), 5);
        assert!(disk.fsyncs.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn durability_names_parse_and_others_are_refused_with_the_choices() {
        assert_eq!(Durability::parse("disk"), Ok(Durability::Disk));
        assert_eq!(Durability::parse("process"), Ok(Durability::Process));
        let err = Durability::parse("fsync").unwrap_err();
        assert!(
            err.contains("'fsync'") && err.contains("disk, process"),
            "{err}"
        );
    }
}
