//! A backend whose panics come back as errors.
//!
//! The server calls its backend from network threads, database workers
//! and the group commit. A panic under any of them (a bug in a binding, an
//! engine wrapper's `expect`) would otherwise end that thread's work: a
//! worker's queued requests would wait forever, and with the group commit
//! every synchronous write after it. Reported as a failed call instead,
//! the request is answered `ERR_DB` like any failed database call, counted
//! in the database's health, and the thread goes on.

use super::{Backend, BackendError, BackendResult, EngineGauge, WriteOp};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `B`, each call's panic turned into [`BackendError::Engine`].
pub struct Guarded<B>(pub B);

/// Runs `call`; a panic becomes an error naming `what` was called.
fn guarded<T>(what: &str, call: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
    // Unwind safety: a backend's calls take `&self` and leave nothing
    // half-done in our memory that a later call would read; the engine's
    // own state is behind its C API.
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| {
        Err(BackendError::Engine(format!(
            "the backend panicked in {what} (a bug: please report it)"
        )))
    })
}

impl<B: Backend> Backend for Guarded<B> {
    fn get(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        guarded("get", || self.0.get(key))
    }

    fn write(&self, ops: &[WriteOp]) -> BackendResult<()> {
        guarded("write", || self.0.write(ops))
    }

    fn make_durable(&self) -> BackendResult<()> {
        guarded("make_durable", || self.0.make_durable())
    }

    fn write_without_waiting(&self, key: &[u8], value: Option<&[u8]>) -> BackendResult<bool> {
        guarded("write_without_waiting", || {
            self.0.write_without_waiting(key, value)
        })
    }

    fn get_without_waiting(
        &self,
        key: &[u8],
        found: &mut dyn FnMut(&[u8]),
    ) -> BackendResult<Option<bool>> {
        guarded("get_without_waiting", || {
            self.0.get_without_waiting(key, found)
        })
    }

    fn keeps_writes(&self) -> bool {
        self.0.keeps_writes()
    }

    fn first_key(&self) -> BackendResult<Option<Vec<u8>>> {
        guarded("first_key", || self.0.first_key())
    }

    fn next_key(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        guarded("next_key", || self.0.next_key(key))
    }

    fn flush(&self) -> BackendResult<()> {
        guarded("flush", || self.0.flush())
    }

    fn gauges(&self) -> Vec<EngineGauge> {
        guarded("gauges", || Ok(self.0.gauges())).unwrap_or_else(|e| {
            log::error!("{e}");
            Vec::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FakeBackend;
    use crate::testing::PANIC_KEY;

    #[test]
    fn a_call_that_panics_fails_with_an_error_naming_it_and_the_next_call_works() {
        let backend = Guarded(FakeBackend {
            panic_key: Some(PANIC_KEY),
            fsync_panics: true,
            ..FakeBackend::default()
        });
        match backend.get(PANIC_KEY) {
            Err(BackendError::Engine(msg)) => {
                assert!(msg.contains("panicked in get"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            backend.make_durable(),
            Err(BackendError::Engine(msg)) if msg.contains("make_durable")
        ));
        backend.write(&[WriteOp::new(b"k", Some(b"v"))]).unwrap();
        assert_eq!(backend.get(b"k").unwrap(), Some(b"v".to_vec()));
    }
}
