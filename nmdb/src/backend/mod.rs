//! Storage behind the cache: a small trait with no engine type in its
//! signatures, so the server core neither knows nor cares which engine runs.
//!
//! Every method reports "missing" (`Ok(None)`) apart from "failed" (`Err`).
//! Writes come in batches: the database queue groups consecutive writes so
//! one engine write (and, for synchronous requests, one fsync) serves many
//! requests.

mod null;
mod rocks;

pub use null::NullBackend;
pub use rocks::RocksBackend;

use std::fmt;
use std::path::Path;

/// A key and its value in one allocation, the key's bytes first: an
/// asynchronous SET is copied once on the network thread, and freed once
/// by the database worker that wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    bytes: Vec<u8>,
    key_len: usize,
}

impl KeyValue {
    pub fn new(key: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(key.len() + value.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        KeyValue {
            bytes,
            key_len: key.len(),
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    pub fn value(&self) -> &[u8] {
        &self.bytes[self.key_len..]
    }

    /// Key and value bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key())
            .field("value", &self.value())
            .finish()
    }
}

/// One change in a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(KeyValue),
    Delete { key: Vec<u8> },
}

impl WriteOp {
    /// A put of `key` (`value` present) or its delete.
    pub fn new(key: &[u8], value: Option<&[u8]>) -> Self {
        match value {
            Some(value) => WriteOp::Put(KeyValue::new(key, value)),
            None => WriteOp::Delete { key: key.to_vec() },
        }
    }

    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put(entry) => entry.key(),
            WriteOp::Delete { key } => key,
        }
    }

    /// Key and value bytes.
    pub fn size(&self) -> usize {
        match self {
            WriteOp::Put(entry) => entry.size(),
            WriteOp::Delete { key } => key.len(),
        }
    }
}

/// A backend failure, with enough context to log.
#[derive(Debug)]
pub enum BackendError {
    /// The backend cannot do this at all (e.g. the null backend iterating).
    Unsupported(&'static str),
    /// The engine reported an error.
    Engine(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(what) => write!(f, "the backend cannot {what}"),
            Self::Engine(msg) => write!(f, "database error: {msg}"),
        }
    }
}

impl std::error::Error for BackendError {}

pub type BackendResult<T> = Result<T, BackendError>;

/// What the database queue needs from a storage engine. Implementations
/// must be usable from several worker threads at once.
pub trait Backend: Send + Sync {
    /// The stored value of `key`.
    fn get(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>>;

    /// Applies `ops` in order, atomically. Once this returns the batch
    /// survives the server process being killed, not yet a power loss.
    fn write(&self, ops: &[WriteOp]) -> BackendResult<()>;

    /// Makes every write returned so far durable (on disk, surviving a
    /// power loss). Called for a group of synchronous requests at once.
    fn make_durable(&self) -> BackendResult<()>;

    /// Applies one change like [`Backend::write`], unless the engine would
    /// first make the writer wait (a write stall while compaction catches
    /// up): then applies nothing and returns `Ok(false)`. For writes made
    /// on a thread that serves other clients. The change is one put of `key` (`value` present) or its delete,
    /// borrowed from the request: nothing is copied for it.
    fn write_without_waiting(&self, key: &[u8], value: Option<&[u8]>) -> BackendResult<bool> {
        self.write(&[WriteOp::new(key, value)]).map(|()| true)
    }

    /// Looks `key` up when that can be done without reading the disk:
    /// `Ok(Some(true))` after calling `found` with the stored value (still
    /// borrowed from the engine), `Ok(Some(false))` when it is not stored,
    /// `Ok(None)` when telling would need a disk read. For a thread that
    /// serves other clients, which must not wait for the disk.
    fn get_without_waiting(
        &self,
        key: &[u8],
        found: &mut dyn FnMut(&[u8]),
    ) -> BackendResult<Option<bool>> {
        Ok(Some(self.get(key)?.map(|value| found(&value)).is_some()))
    }

    /// Whether a written key is then stored: false for a backend that
    /// forgets writes, whose keys the cache must never assume stored.
    fn keeps_writes(&self) -> bool {
        true
    }

    /// Some key of the database (the start of a walk), `None` when empty.
    fn first_key(&self) -> BackendResult<Option<Vec<u8>>>;

    /// The key after `key` in the walk; `None` at the end of the walk or
    /// when `key` itself is not stored.
    fn next_key(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>>;

    /// Makes every applied write durable; called once before a clean exit.
    fn flush(&self) -> BackendResult<()>;

    /// The engine's own figures, read when metrics are scraped
    /// (`--metrics`); none unless the engine has some.
    fn gauges(&self) -> Vec<EngineGauge> {
        Vec::new()
    }
}

/// One figure of a storage engine, exposed as gauge `nmdb_<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineGauge {
    /// With its unit, e.g. `rocksdb_memtable_bytes`.
    pub name: &'static str,
    pub help: &'static str,
    pub value: u64,
}

/// The backends this server can run, by the name given to `-b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Rocksdb,
    Null,
}

impl BackendKind {
    pub const SUPPORTED: &'static str = "rocksdb, null";

    /// Backend names of the original server whose files we cannot read.
    pub const FOREIGN: [&'static str; 5] = ["qdbm", "bdb", "tdb", "tc", "leveldb"];

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "rocksdb" => Ok(Self::Rocksdb),
            "null" => Ok(Self::Null),
            other if Self::FOREIGN.contains(&other) => Err(format!(
                "backend '{other}' is not supported by this nmdb (supported: {}); \
                 a database written by the original's {other} backend is in another \
                 format and cannot be opened as RocksDB",
                Self::SUPPORTED
            )),
            other => Err(format!(
                "unknown backend '{other}' (supported: {})",
                Self::SUPPORTED
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rocksdb => "rocksdb",
            Self::Null => "null",
        }
    }

    /// Opens (creating when missing) the database at `path`;
    /// `for_sync_writes` when synchronous writes wait for the disk
    /// (`--durability disk`), whose fsyncs a backend may prepare for.
    pub fn open(self, path: &Path, for_sync_writes: bool) -> BackendResult<Box<dyn Backend>> {
        Ok(match self {
            Self::Rocksdb => Box::new(RocksBackend::open(path, for_sync_writes)?),
            Self::Null => Box::new(NullBackend),
        })
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The backend suite: `run_common` for every backend, the null one
    //! included; `run_all` adds what a backend that stores data must do.
    use super::*;

    fn put(k: &[u8], v: &[u8]) -> WriteOp {
        WriteOp::new(k, Some(v))
    }

    fn del(k: &[u8]) -> WriteOp {
        WriteOp::new(k, None)
    }

    pub fn missing_key_is_none_not_error(b: &dyn Backend) {
        assert_eq!(b.get(b"absent").unwrap(), None);
    }

    pub fn batch_applies_in_order(b: &dyn Backend) {
        b.write(&[
            put(b"k", b"1"),
            put(b"k", b"2"),
            put(b"gone", b"x"),
            del(b"gone"),
        ])
        .unwrap();
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(b.get(b"gone").unwrap(), None);
    }

    pub fn durable_write_is_readable(b: &dyn Backend) {
        b.write(&[put(b"s", b"v")]).unwrap();
        b.make_durable().unwrap();
        assert_eq!(b.get(b"s").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// With nothing stalling, a write that may not wait is applied.
    pub fn prompt_write_applies_when_nothing_stalls(b: &dyn Backend) {
        assert!(b.write_without_waiting(b"p", Some(b"v")).unwrap());
        assert!(b.write_without_waiting(b"gone", Some(b"x")).unwrap());
        assert!(b.write_without_waiting(b"gone", None).unwrap());
        assert_eq!(b.get(b"gone").unwrap(), None);
        b.make_durable().unwrap();
        assert_eq!(b.get(b"p").unwrap().as_deref(), Some(&b"v"[..]));
    }

    pub fn empty_and_binary_values_round_trip(b: &dyn Backend) {
        b.write(&[put(b"", b""), put(b"\0\xff", b"\0\x01\0")])
            .unwrap();
        assert_eq!(b.get(b"").unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(b.get(b"\0\xff").unwrap().as_deref(), Some(&b"\0\x01\0"[..]));
    }

    pub fn walk_visits_every_key_once(b: &dyn Backend) {
        assert_eq!(b.first_key().unwrap(), None);
        let keys: Vec<Vec<u8>> = (0..50u8).map(|i| vec![b'k', i]).collect();
        let ops: Vec<_> = keys.iter().map(|k| put(k, b"v")).collect();
        b.write(&ops).unwrap();
        let mut seen = Vec::new();
        let mut cur = b.first_key().unwrap();
        while let Some(k) = cur {
            cur = b.next_key(&k).unwrap();
            seen.push(k);
        }
        seen.sort();
        assert_eq!(seen, keys);
        assert_eq!(b.next_key(b"not stored").unwrap(), None);
    }

    /// Every shape of write is accepted, synchronous or not, and flushing
    /// succeeds: what the server relies on from any backend.
    pub fn writes_of_every_shape_are_accepted(b: &dyn Backend) {
        b.write(&[]).unwrap();
        b.make_durable().unwrap();
        b.write(&[put(b"k", b"v"), del(b"k"), del(b"never")])
            .unwrap();
        b.write(&[put(b"", b""), put(b"\0\xff", &[0xa5; 65536])])
            .unwrap();
        b.flush().unwrap();
    }

    /// The parts every backend must pass, on a fresh one from `make`.
    pub fn run_common(make: &dyn Fn() -> Box<dyn Backend>) {
        missing_key_is_none_not_error(&*make());
        writes_of_every_shape_are_accepted(&*make());
    }

    /// Runs the whole suite on a fresh backend from `make`.
    pub fn run_all(make: &dyn Fn() -> Box<dyn Backend>) {
        run_common(make);
        batch_applies_in_order(&*make());
        durable_write_is_readable(&*make());
        prompt_write_applies_when_nothing_stalls(&*make());
        empty_and_binary_values_round_trip(&*make());
        walk_visits_every_key_once(&*make());
    }
}

/// A backend for the unit tests of what sits on top of one: it remembers
/// what was written, and can be slow to make writes durable, fail or
/// panic at it, be in a write stall, or panic reading a key.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct FakeBackend {
    pub written: parking_lot::Mutex<Vec<WriteOp>>,
    /// How long [`Backend::write`] takes.
    pub write_time: std::time::Duration,
    /// How long [`Backend::make_durable`] takes.
    pub fsync_time: std::time::Duration,
    /// [`Backend::make_durable`] fails.
    pub fsync_fails: bool,
    /// [`Backend::write_without_waiting`] refuses: a write stall.
    pub stalled: bool,
    /// [`Backend::get_without_waiting`] cannot tell without the disk.
    pub reads_need_disk: bool,
    /// [`Backend::make_durable`] panics.
    pub fsync_panics: bool,
    /// [`Backend::get`] of this key panics.
    pub panic_key: Option<&'static [u8]>,
    /// Calls of [`Backend::make_durable`] so far.
    pub fsyncs: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl Backend for FakeBackend {
    /// The value of the last write of `key`.
    fn get(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        assert_ne!(self.panic_key, Some(key), "a read that panics, on purpose");
        let written = self.written.lock();
        let last = written
            .iter()
            .rev()
            .find(|op| op.key() == key)
            .map(|op| match op {
                WriteOp::Put(entry) => Some(entry.value().to_vec()),
                WriteOp::Delete { .. } => None,
            });
        Ok(last.flatten())
    }

    fn write(&self, ops: &[WriteOp]) -> BackendResult<()> {
        std::thread::sleep(self.write_time);
        self.written.lock().extend_from_slice(ops);
        Ok(())
    }

    fn make_durable(&self) -> BackendResult<()> {
        std::thread::sleep(self.fsync_time);
        assert!(!self.fsync_panics, "an fsync that panics, on purpose");
        self.fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match self.fsync_fails {
            true => Err(BackendError::Engine("disk on fire".into())),
            false => Ok(()),
        }
    }

    fn write_without_waiting(&self, key: &[u8], value: Option<&[u8]>) -> BackendResult<bool> {
        if self.stalled {
            return Ok(false);
        }
        self.write(&[WriteOp::new(key, value)]).map(|()| true)
    }

    fn get_without_waiting(
        &self,
        key: &[u8],
        found: &mut dyn FnMut(&[u8]),
    ) -> BackendResult<Option<bool>> {
        if self.reads_need_disk {
            return Ok(None);
        }
        Ok(Some(self.get(key)?.map(|value| found(&value)).is_some()))
    }

    fn first_key(&self) -> BackendResult<Option<Vec<u8>>> {
        Ok(None)
    }

    fn next_key(&self, _: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        Ok(None)
    }

    fn flush(&self) -> BackendResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_value_gives_back_the_key_and_value_it_was_made_of() {
        for (key, value) in [
            (&b"k"[..], &b"value"[..]),
            (b"key", b""),
            (b"", b"v"),
            (b"\0\xff", b"\xff\0"),
        ] {
            let entry = KeyValue::new(key, value);
            assert_eq!((entry.key(), entry.value()), (key, value));
            assert_eq!(entry.size(), key.len() + value.len());
            let op = WriteOp::Put(entry);
            assert_eq!((op.key(), op.size()), (key, key.len() + value.len()));
        }
        assert_eq!(WriteOp::new(b"gone", None).key(), b"gone");
    }
}
