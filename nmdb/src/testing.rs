//! What the unit tests of several modules build on: an engine on a
//! backend of the test's choosing, and a backend that panics.

use crate::backend::{Backend, FakeBackend};
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

/// A key whose database read panics, in a [`panicking_backend`].
pub const PANIC_KEY: &[u8] = b"panic!";

/// A backend whose read of [`PANIC_KEY`] panics: a bug somewhere under a
/// request, for the code that must contain it.
pub fn panicking_backend() -> Arc<FakeBackend> {
    Arc::new(FakeBackend {
        panic_key: Some(PANIC_KEY),
        ..FakeBackend::default()
    })
}
