//! RocksDB, the default backend. The database directory is created when
//! missing. Every write goes through the write-ahead log without an fsync
//! (a process crash keeps it: the log is in the kernel's page cache);
//! [`Backend::make_durable`] fsyncs the log once for every write before it.

use super::{Backend, BackendError, BackendResult, WriteOp};
use rocksdb::{Options, ReadOptions, ReadTier, WriteBatch, WriteOptions, DB};
use std::path::Path;

pub struct RocksBackend {
    db: DB,
    write_options: WriteOptions,
    /// Fail with `Incomplete` rather than wait in a write stall.
    prompt_write_options: WriteOptions,
    /// Fail with `Incomplete` rather than read the disk: memtables and
    /// the block cache only.
    memory_read_options: ReadOptions,
}

fn engine(e: rocksdb::Error) -> BackendError {
    BackendError::Engine(e.into_string())
}

fn batch_of(ops: &[WriteOp]) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for op in ops {
        match op {
            WriteOp::Put { key, value } => batch.put(key, value),
            WriteOp::Delete { key } => batch.delete(key),
        }
    }
    batch
}

impl RocksBackend {
    pub fn open(path: &Path) -> BackendResult<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.increase_parallelism(
            std::thread::available_parallelism().map_or(2, |n| n.get()) as i32
        );
        // Concurrent writers from several queue workers share one WAL write.
        opts.set_enable_pipelined_write(true);
        // Logs no longer needed are kept and written over in place rather
        // than new ones grown: an fsync of a log whose size does not change
        // need not commit the file's length to the journal. Once the first
        // log is recycled (after about 130 MB of writes), a synchronous SET
        // took 7-17% less time here (BENCHMARKS.md). Two spares cover a
        // flush that lags; each is a memtable's worth of disk.
        opts.set_recycle_log_file_num(2);
        // Table files written by flushes and compactions are handed to the
        // disk a megabyte at a time as they grow, instead of all at their
        // final fsync (measured up to 390 ms for one file): compactions end
        // sooner and hold up fewer writes. 8 clients flooding 60 KB SETs
        // had 2-12% more of them written per second, in all 8 paired runs
        // of nmdb-overload (BENCHMARKS.md).
        opts.set_bytes_per_sync(1 << 20);
        // Flushes and compactions yield the CPU to request handling.
        let mut env = rocksdb::Env::new().map_err(engine)?;
        env.lower_thread_pool_cpu_priority();
        opts.set_env(&env);
        // Created here, so that a path that cannot be a directory is
        // reported in words (RocksDB's own message is a debug dump).
        std::fs::create_dir_all(path).map_err(|e| {
            BackendError::Engine(format!("cannot create directory {}: {e}", path.display()))
        })?;
        let db = DB::open(&opts, path).map_err(|e| {
            BackendError::Engine(format!("opening {}: {}", path.display(), e.into_string()))
        })?;
        let mut prompt_write_options = WriteOptions::default();
        prompt_write_options.set_no_slowdown(true);
        let mut memory_read_options = ReadOptions::default();
        memory_read_options.set_read_tier(ReadTier::BlockCache);
        Ok(Self {
            db,
            write_options: WriteOptions::default(),
            prompt_write_options,
            memory_read_options,
        })
    }
}

impl Backend for RocksBackend {
    fn get(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        self.db.get(key).map_err(engine)
    }

    fn write(&self, ops: &[WriteOp]) -> BackendResult<()> {
        self.db
            .write_opt(batch_of(ops), &self.write_options)
            .map_err(engine)
    }

    fn write_without_waiting(&self, key: &[u8], value: Option<&[u8]>) -> BackendResult<bool> {
        let mut batch = WriteBatch::default();
        match value {
            Some(value) => batch.put(key, value),
            None => batch.delete(key),
        }
        match self.db.write_opt(batch, &self.prompt_write_options) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(false),
            Err(e) => Err(engine(e)),
        }
    }

    fn get_without_waiting(
        &self,
        key: &[u8],
        found: &mut dyn FnMut(&[u8]),
    ) -> BackendResult<Option<bool>> {
        match self.db.get_pinned_opt(key, &self.memory_read_options) {
            Ok(value) => Ok(Some(value.map(|value| found(&value)).is_some())),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    fn make_durable(&self) -> BackendResult<()> {
        // With the log written at every write (no manual WAL flush), this
        // is an fsync of the log files: SyncWAL.
        self.db.flush_wal(true).map_err(engine)
    }

    fn first_key(&self) -> BackendResult<Option<Vec<u8>>> {
        let mut it = self.db.raw_iterator();
        it.seek_to_first();
        it.status().map_err(engine)?;
        Ok(it.key().map(<[u8]>::to_vec))
    }

    fn next_key(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        let mut it = self.db.raw_iterator();
        it.seek(key);
        it.status().map_err(engine)?;
        if it.key() != Some(key) {
            return Ok(None);
        }
        it.next();
        it.status().map_err(engine)?;
        Ok(it.key().map(<[u8]>::to_vec))
    }

    fn flush(&self) -> BackendResult<()> {
        self.db.flush_wal(true).map_err(engine)?;
        self.db.flush().map_err(engine)
    }

    fn gauges(&self) -> Vec<super::EngineGauge> {
        use rocksdb::properties as p;
        let figures = [
            (
                p::CUR_SIZE_ALL_MEM_TABLES,
                "rocksdb_memtable_bytes",
                "Bytes in RocksDB's memtables, active and waiting to be flushed.",
            ),
            (
                p::ESTIMATE_PENDING_COMPACTION_BYTES,
                "rocksdb_pending_compaction_bytes",
                "Bytes RocksDB estimates it must rewrite to finish compacting.",
            ),
            (
                p::ESTIMATE_LIVE_DATA_SIZE,
                "rocksdb_live_data_bytes",
                "Bytes of live data RocksDB estimates the database holds.",
            ),
        ];
        let mut gauges = Vec::new();
        for (property, name, help) in figures {
            match self.db.property_int_value(property) {
                Ok(Some(value)) => gauges.push(super::EngineGauge { name, help, value }),
                Ok(None) => {}
                Err(e) => log::debug!("reading RocksDB's {name}: {e}"),
            }
        }
        gauges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::conformance;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nmdb-rocks-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn passes_the_backend_conformance_suite() {
        // Every database the suite opens lives under one directory,
        // removed at the end.
        let parent = temp_dir("conf");
        let n = std::sync::atomic::AtomicUsize::new(0);
        conformance::run_all(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(RocksBackend::open(&parent.join(i.to_string())).unwrap())
        });
        std::fs::remove_dir_all(&parent).unwrap();
    }

    /// What [`Backend::get_without_waiting`] tells of `key`: `None` when
    /// it would need the disk, else the stored value if any.
    fn from_memory(b: &RocksBackend, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let mut value = None;
        let told = b
            .get_without_waiting(key, &mut |v| value = Some(v.to_vec()))
            .unwrap();
        told.map(|stored| {
            assert_eq!(stored, value.is_some(), "found iff given a value");
            value
        })
    }

    #[test]
    fn looking_a_key_up_without_waiting_never_reads_the_disk() {
        let dir = temp_dir("memory-read");
        let put = |key: &[u8]| WriteOp::Put {
            key: key.to_vec(),
            value: key.to_vec(),
        };
        let stored = |key: &[u8]| Some(Some(key.to_vec()));
        {
            let b = RocksBackend::open(&dir).unwrap();
            b.write(&[put(b"old")]).unwrap();
            // Fresh writes are in the memtable: told from memory.
            assert_eq!(from_memory(&b, b"old"), stored(b"old"));
            assert_eq!(from_memory(&b, b"none"), Some(None));
            b.flush().unwrap();
        }
        // Reopened, the key is in a table file whose blocks are not cached.
        let b = RocksBackend::open(&dir).unwrap();
        assert_eq!(from_memory(&b, b"old"), None);
        b.write(&[put(b"new")]).unwrap();
        assert_eq!(from_memory(&b, b"new"), stored(b"new"));
        // A read that may wait brings the block into the cache.
        assert_eq!(b.get(b"old").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(from_memory(&b, b"old"), stored(b"old"));
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_database_recycles_logs_and_syncs_table_files_as_they_grow() {
        let dir = temp_dir("options");
        let b = RocksBackend::open(&dir).unwrap();
        // RocksDB records the options it runs with in OPTIONS-<number>.
        let options = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .last()
            .expect("an OPTIONS file");
        for setting in ["recycle_log_file_num=2", "bytes_per_sync=1048576"] {
            assert!(
                options.lines().any(|l| l.trim() == setting),
                "{setting} not in:\n{options}"
            );
        }
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn creates_a_missing_directory_and_reopens_with_data() {
        let dir = temp_dir("reopen");
        {
            let b = RocksBackend::open(&dir).unwrap();
            b.write(&[WriteOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }])
            .unwrap();
            b.flush().unwrap();
        }
        let b = RocksBackend::open(&dir).unwrap();
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opening_a_file_instead_of_a_directory_is_an_error_with_the_path_in_words() {
        let file = temp_dir("file");
        std::fs::write(&file, b"not a database").unwrap();
        // The file itself, and a directory under it.
        for path in [file.clone(), file.join("db")] {
            let err = RocksBackend::open(&path)
                .err()
                .expect("must fail")
                .to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(!err.contains("Os {") && !err.contains("kind:"), "{err}");
        }
        std::fs::remove_file(&file).unwrap();
    }
}
