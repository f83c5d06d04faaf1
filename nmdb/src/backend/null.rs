//! The null backend: accepts every write and forgets it, as the original's
//! does. Useful for a pure cache server.

use super::{Backend, BackendError, BackendResult, WriteOp};

pub struct NullBackend;

impl Backend for NullBackend {
    fn get(&self, _key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        Ok(None)
    }

    fn write(&self, _ops: &[WriteOp]) -> BackendResult<()> {
        Ok(())
    }

    fn make_durable(&self) -> BackendResult<()> {
        Ok(())
    }

    fn keeps_writes(&self) -> bool {
        false
    }

    fn first_key(&self) -> BackendResult<Option<Vec<u8>>> {
        Err(BackendError::Unsupported("iterate over keys"))
    }

    fn next_key(&self, _key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        Err(BackendError::Unsupported("iterate over keys"))
    }

    fn flush(&self) -> BackendResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_suite_every_backend_must_pass() {
        super::super::conformance::run_common(&|| Box::new(NullBackend));
    }

    #[test]
    fn writes_are_accepted_and_forgotten() {
        let b = NullBackend;
        b.write(&[WriteOp::new(b"k", Some(b"v"))]).unwrap();
        assert_eq!(b.get(b"k").unwrap(), None);
    }

    #[test]
    fn key_walk_is_unsupported() {
        assert!(matches!(
            NullBackend.first_key(),
            Err(BackendError::Unsupported(_))
        ));
        assert!(matches!(
            NullBackend.next_key(b"k"),
            Err(BackendError::Unsupported(_))
        ));
    }
}
