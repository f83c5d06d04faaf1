//! What the unit tests of several modules build on: an engine on a
//! backend of the test's choosing, and a backend that panics.

use crate::backend::{Backend, BackendResult, NullBackend, WriteOp};
use crate::cache::Cache;
use crate::dbqueue::{DbQueue, Shared, WriteHealth};
use crate::engine::Engine;
use crate::groupcommit::Durability;
use crate::reply::Modes;
use crate::stats::Stats;
use crate::throttle::EverySecond;
use std::sync::Arc;

/// An engine on `backend` with a small cache, its database queue started.
pub fn engine_on(backend: Arc<dyn Backend>) -> Arc<Engine> {
    Arc::new(engine_with(backend, Durability::Disk, Arc::default()))
}

/// [`engine_on`] at `durability`, its database's health told by `health`.
pub fn engine_with(
    backend: Arc<dyn Backend>,
    durability: Durability,
    health: Arc<WriteHealth>,
) -> Engine {
    let cache = Arc::new(Cache::new(1024));
    let stats = Arc::new(Stats::default());
    let modes = Arc::new(Modes::default());
    let shared = Shared {
        backend,
        cache: cache.clone(),
        stats: stats.clone(),
        modes: modes.clone(),
        cache_fill: true,
        health,
        durability,
    };
    Engine {
        cache,
        db: DbQueue::start(shared, 2, 1 << 20).unwrap(),
        stats,
        modes,
        cache_fill: true,
        queue_full_log: EverySecond::default(),
        latency: None,
    }
}

/// The key whose database read panics in [`PanickingBackend`].
pub const PANIC_KEY: &[u8] = b"panic!";

/// The null backend, but for a read of [`PANIC_KEY`], which panics: a bug
/// somewhere under a request, for the code that must contain it.
pub struct PanickingBackend;

impl Backend for PanickingBackend {
    fn get(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        assert_ne!(key, PANIC_KEY, "a read that panics, on purpose");
        NullBackend.get(key)
    }

    fn write(&self, ops: &[WriteOp]) -> BackendResult<()> {
        NullBackend.write(ops)
    }

    fn make_durable(&self) -> BackendResult<()> {
        NullBackend.make_durable()
    }

    fn keeps_writes(&self) -> bool {
        NullBackend.keeps_writes()
    }

    fn first_key(&self) -> BackendResult<Option<Vec<u8>>> {
        NullBackend.first_key()
    }

    fn next_key(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        NullBackend.next_key(key)
    }

    fn flush(&self) -> BackendResult<()> {
        NullBackend.flush()
    }
}
