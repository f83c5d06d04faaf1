//! RocksDB, the default backend. The database directory is created when
//! missing. Every write goes through the write-ahead log without an fsync
//! (a process crash keeps it: the log is in the kernel's page cache);
//! [`Backend::make_durable`] fsyncs the log once for every write before it.
//!
//! Opened for synchronous writes, the first two logs are ones written over
//! in place (see [`prime_log`]), as RocksDB's logs are once it recycles
//! them.

use super::{Backend, BackendError, BackendResult, WriteOp};
use rocksdb::{Options, ReadOptions, ReadTier, WriteBatch, WriteOptions, DB};
use std::path::Path;

/// Log bytes written at open into each of the first two logs RocksDB
/// writes to, so that both are written over like recycled files
/// ([`prime_log`]). A log grows to about a memtable ([`MEMTABLE_BYTES`])
/// before RocksDB moves on; 16 MB covers a server that takes few
/// synchronous writes for hours (2 KB a second: two hours). Both logs
/// took 80 ms at start here, one 48-59 ms; one of 64 MB took 140-220 ms
/// (BENCHMARKS.md).
const LOG_PRIMER_BYTES: usize = 16 << 20;
/// The size a memtable grows to before RocksDB flushes it to a table
/// file: see where it is set in [`RocksBackend::open`].
const MEMTABLE_BYTES: usize = 32 << 20;
/// The log is not primed on a file system with less than this free: the
/// filler must never be what fills a disk.
const PRIMER_MIN_FREE_BYTES: u64 = 1 << 30;
/// The column family that carries the priming writes; dropped once the
/// log is primed, so the database's layout is unchanged for older nmdb.
const PRIMER_FAMILY: &str = "nmdb-log-primer";

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
            WriteOp::Put(entry) => batch.put(entry.key(), entry.value()),
            WriteOp::Delete { key } => batch.delete(key),
        }
    }
    batch
}

impl RocksBackend {
    /// Whether the file system of `path` has room for opening it for
    /// synchronous writes to prime the log ([`PRIMER_MIN_FREE_BYTES`]).
    pub fn has_room_to_prime_log(path: &Path) -> std::io::Result<bool> {
        Ok(free_bytes(path)? >= PRIMER_MIN_FREE_BYTES)
    }

    /// Opens the database at `path`; `for_sync_writes`: the first log is
    /// primed when the disk has room ([`prime_log`]).
    pub fn open(path: &Path, for_sync_writes: bool) -> BackendResult<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.increase_parallelism(
            std::thread::available_parallelism().map_or(2, |n| n.get()) as i32
        );
        // Concurrent writers from several queue workers share one WAL write.
        // The log is written at every write, not buffered until the group
        // commit asks (`manual_wal_flush`): that would spare a synchronous
        // write made on a network thread its own log write (8 clients' rate
        // rose 4-7%), but RocksDB then takes any failed log write as fatal,
        // and a database that filled its disk would stay read-only once
        // space returned (BENCHMARKS.md).
        opts.set_enable_pipelined_write(true);
        // Logs no longer needed are kept and written over in place rather
        // than new ones grown: an fsync of a log whose size does not change
        // need not commit the file's length to the journal. Once the first
        // log is recycled (after about 65 MB of writes), a synchronous SET
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
        // Half RocksDB's default memtable. Inserting a key at random into
        // a memtable's skiplist took 1.7-1.8 µs here at 64 MB and 1.2 at
        // 32 MB (4 million random 16-byte keys, RocksDB alone), and all
        // threads' CPU with the flushes and compactions 22-24% less; keys
        // that arrive in order cost the writer the same, 10% less in all.
        // The memtables' memory is halved. Level 1 keeps RocksDB's size:
        // scaled down with the memtable it spared small keys nothing, but a
        // flood of 60 KB SETs went 8% slower and a cache client beside it
        // waited twice as long at the 99th percentile (BENCHMARKS.md).
        opts.set_write_buffer_size(MEMTABLE_BYTES);
        // Every table file carries a Bloom filter of its keys (10 bits, 1.25
        // bytes a key, held in memory; about 1% false positives): a read of
        // a key the database lacks, as a cache's misses often are, skips
        // the files without it instead of searching each one's blocks.
        // Such a read took 0.7 µs here against 7.6, one of a stored key 4.2
        // against 7.6, and a write 3-5% more CPU (BENCHMARKS.md). A lookup
        // that may not wait for the disk can also tell such a key missing.
        let mut tables = rocksdb::BlockBasedOptions::default();
        tables.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&tables);
        // Flushes and compactions yield the CPU to request handling.
        let mut env = rocksdb::Env::new().map_err(engine)?;
        env.lower_thread_pool_cpu_priority();
        opts.set_env(&env);
        // Created here, so that a path that cannot be a directory is
        // reported in words (RocksDB's own message is a debug dump).
        if path.is_file() {
            return Err(BackendError::Engine(a_file_not_a_directory(path)));
        }
        // Warned about, not refused: a setup that keeps its log or pid
        // file in the database's directory, which always worked, would
        // otherwise stop starting.
        if let Some(stranger) = a_file_no_database_would_hold(path) {
            log::warn!(
                "{} holds no database but other files ({stranger}, ...): the database is \
                 created among them. If -d was mistyped, stop the server and give it a new \
                 or empty directory",
                path.display()
            );
        }
        std::fs::create_dir_all(path).map_err(|e| {
            BackendError::Engine(format!("cannot create directory {}: {e}", path.display()))
        })?;
        let opening = |e: rocksdb::Error| {
            BackendError::Engine(format!("opening {}: {}", path.display(), e.into_string()))
        };
        // Every column family must be opened: a start cut short while
        // priming leaves the primer's.
        let families = DB::list_cf(&opts, path).unwrap_or_else(|_| vec!["default".into()]);
        // Each family with `opts` ([`DB::open_cf`] would give them RocksDB's
        // defaults, the memtable's size among them).
        let descriptors = families
            .iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, opts.clone()));
        let mut db = DB::open_cf_descriptors(&opts, path, descriptors).map_err(opening)?;
        if db.cf_handle(PRIMER_FAMILY).is_some() {
            db.drop_cf(PRIMER_FAMILY).map_err(opening)?;
        }
        if for_sync_writes {
            match Self::has_room_to_prime_log(path) {
                Ok(true) => prime_log(&mut db, &opts).map_err(|e| {
                    BackendError::Engine(format!(
                        "priming the log in {}: {}",
                        path.display(),
                        e.into_string()
                    ))
                })?,
                Ok(false) => log::info!(
                    "less than {} MB free in {}: the first log is not primed, and \
                     synchronous writes fsync appends until RocksDB recycles logs",
                    PRIMER_MIN_FREE_BYTES >> 20,
                    path.display()
                ),
                Err(e) => log::warn!("free space of {}: {e}", path.display()),
            }
        }
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

/// Why `path`, a file, cannot be the database. The original server's
/// backends keep their database in one file (its user guide creates one
/// with QDBM's `dpmgr create`), so a command line carried over from it
/// points here: say so rather than only that a directory is missing.
fn a_file_not_a_directory(path: &Path) -> String {
    // QDBM's Depot files begin with this (lower case on big-endian hosts).
    let qdbm = std::fs::File::open(path).ok().and_then(|mut f| {
        let mut magic = [0u8; 7];
        std::io::Read::read_exact(&mut f, &mut magic).ok()?;
        Some(magic.eq_ignore_ascii_case(b"[DEPOT]"))
    });
    let what = if qdbm == Some(true) {
        "a QDBM database file of the original nmdb"
    } else {
        "a file; the original nmdb's backends (qdbm, bdb, tdb, tc) keep a database in one file"
    };
    format!(
        "{} is {what}, which this server cannot read: it keeps a RocksDB database in a \
         directory. Give -d a directory (created if missing); to carry data over, read \
         every key from the original server (a key walk) and write it to this one",
        path.display()
    )
}

/// A name in directory `path` that shows it is not a database's, when it
/// holds no database: RocksDB creates one among whatever is there (`-d ~`
/// or `-d /var/lib` by mistake). A missing or empty directory is fine,
/// and so are a fresh file system's `lost+found` and the files a database
/// creation cut short leaves.
fn a_file_no_database_would_hold(path: &Path) -> Option<String> {
    if path.join("CURRENT").exists() {
        return None;
    }
    let rocksdb_made = |name: &str| {
        ["LOCK", "LOG", "IDENTITY", "lost+found"].contains(&name)
            || ["LOG.old.", "OPTIONS-", "MANIFEST-"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
            || [".log", ".sst", ".dbtmp"].iter().any(|end| {
                // Numbered: 000012.log, not nmdb.log.
                name.strip_suffix(end)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
    };
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| !rocksdb_made(name))
}

/// Makes the log RocksDB writes next, and the one it moves on to at the
/// first flush, files already written over their first
/// [`LOG_PRIMER_BYTES`].
///
/// An fdatasync after an append to a new log writes the data and the
/// file's new length (ext4: the data, the inode and a cache flush); over
/// a recycled log, whose length does not change, the data alone. Here
/// that was 250-260 µs against 160-170 µs, and RocksDB recycles a log only
/// once two memtables' worth (about 65 MB) has been written. So each of
/// two logs is filled with log-only records (never in a table), fsynced,
/// and left by flushing a column family of our own, which switches logs:
/// the first switch opens a second log, the second switch reuses the
/// first, filled, and leaves the second, filled too, to be reused by the
/// first flush of the database's own. (With one log filled, that flush
/// appended to a new log: a run of `make bench` that flushed midway had
/// its later synchronous writes take 30-50% longer.) The family is
/// dropped, its tables with it.
fn prime_log(db: &mut DB, opts: &Options) -> Result<(), rocksdb::Error> {
    db.create_cf(PRIMER_FAMILY, opts)?;
    {
        let family = db.cf_handle(PRIMER_FAMILY).expect("created above");
        let filler = vec![0_u8; 1 << 20];
        // Fills the log in use, then moves to the next: a flush switches
        // logs only when the memtable holds something, `change`.
        let fill_and_switch = |change: WriteBatch| -> Result<(), rocksdb::Error> {
            for _ in 0..LOG_PRIMER_BYTES / filler.len() {
                let mut batch = WriteBatch::default();
                batch.put_log_data(&filler);
                db.write(batch)?;
            }
            db.flush_wal(true)?;
            db.write(change)?;
            db.flush_cf(&family)
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(&family, b"switch", b"");
        fill_and_switch(batch)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(&family, b"switch");
        fill_and_switch(batch)?;
    }
    db.drop_cf(PRIMER_FAMILY)
}

/// Bytes an unprivileged writer may still add to the file system of `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is a valid
    // C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
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
        // One change needs no batch of ours: RocksDB's put and delete build
        // theirs on the stack.
        let written = match value {
            Some(value) => self.db.put_opt(key, value, &self.prompt_write_options),
            None => self.db.delete_opt(key, &self.prompt_write_options),
        };
        match written {
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
            Box::new(RocksBackend::open(&parent.join(i.to_string()), false).unwrap())
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
        let put = |key: &[u8]| WriteOp::new(key, Some(key));
        let stored = |key: &[u8]| Some(Some(key.to_vec()));
        {
            let b = RocksBackend::open(&dir, false).unwrap();
            b.write(&[put(b"old")]).unwrap();
            // Fresh writes are in the memtable: told from memory.
            assert_eq!(from_memory(&b, b"old"), stored(b"old"));
            assert_eq!(from_memory(&b, b"none"), Some(None));
            b.flush().unwrap();
        }
        // Reopened, the key is in a table file whose blocks are not cached.
        let b = RocksBackend::open(&dir, false).unwrap();
        assert_eq!(from_memory(&b, b"old"), None);
        b.write(&[put(b"new")]).unwrap();
        assert_eq!(from_memory(&b, b"new"), stored(b"new"));
        // A read that may wait brings the block into the cache.
        assert_eq!(b.get(b"old").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(from_memory(&b, b"old"), stored(b"old"));
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The options RocksDB records that it runs with (in its newest
    /// OPTIONS-<number> file): the database's, then each family's, under
    /// headers such as `[CFOptions "default"]`.
    fn recorded_options(dir: &Path) -> String {
        let newest = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let number: u64 = name.strip_prefix("OPTIONS-")?.parse().ok()?;
                Some((number, e.path()))
            })
            .max()
            .expect("an OPTIONS file");
        std::fs::read_to_string(newest.1).unwrap()
    }

    /// The lines of `options` under `header` (up to the next header).
    fn section<'a>(options: &'a str, header: &str) -> Vec<&'a str> {
        options
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != header)
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .collect()
    }

    #[test]
    fn the_database_recycles_logs_and_syncs_table_files_as_they_grow() {
        let dir = temp_dir("options");
        let b = RocksBackend::open(&dir, false).unwrap();
        let options = recorded_options(&dir);
        let db = section(&options, "[DBOptions]");
        for setting in ["recycle_log_file_num=2", "bytes_per_sync=1048576"] {
            assert!(db.contains(&setting), "{setting} not in:\n{options}");
        }
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_stored_keys_family_runs_with_its_tuned_options_whether_new_or_reopened() {
        let dir = temp_dir("memtable");
        for opening in ["new", "reopened"] {
            let b = RocksBackend::open(&dir, true).unwrap();
            let options = recorded_options(&dir);
            let family = section(&options, "[CFOptions \"default\"]");
            assert!(
                family.contains(&"write_buffer_size=33554432"),
                "{opening}: not the smaller memtable in:\n{options}"
            );
            let tables = section(&options, "[TableOptions/BlockBasedTable \"default\"]");
            assert!(
                tables.contains(&"filter_policy=bloomfilter"),
                "{opening}: no Bloom filter in:\n{options}"
            );
            drop(b);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_missing_from_table_files_is_told_missing_without_reading_them() {
        let dir = temp_dir("filter");
        {
            let b = RocksBackend::open(&dir, false).unwrap();
            let ops: Vec<WriteOp> = (0..1000)
                .map(|i| {
                    let key = format!("key-{i:04}");
                    WriteOp::new(key.as_bytes(), Some(b"v"))
                })
                .collect();
            b.write(&ops).unwrap();
            b.flush().unwrap();
        }
        // Reopened: the keys are in a table file none of whose blocks is
        // cached. Keys inside its range that it lacks are told missing
        // from its filter; without one, each would need a block read.
        let b = RocksBackend::open(&dir, false).unwrap();
        let absent: Vec<String> = (0..100).map(|i| format!("key-{i:04}x")).collect();
        let told = absent
            .iter()
            .filter(|key| from_memory(&b, key.as_bytes()) == Some(None))
            .count();
        // A Bloom filter of 10 bits a key lets about 1% through.
        assert!(told >= 95, "{told} of 100 absent keys told from memory");
        assert_eq!(
            from_memory(&b, b"key-0500"),
            None,
            "a stored key needs its block"
        );
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The database's log files, largest first: (size, name).
    fn logs(dir: &Path) -> Vec<(u64, String)> {
        let mut logs: Vec<(u64, String)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| {
                (
                    e.metadata().unwrap().len(),
                    e.file_name().to_string_lossy().into(),
                )
            })
            .collect();
        logs.sort_unstable_by(|a, b| b.cmp(a));
        logs
    }

    /// Whether RocksDB's own log says it took a log file to write over.
    fn reused_a_log(dir: &Path) -> bool {
        std::fs::read_to_string(dir.join("LOG"))
            .unwrap()
            .contains("from recycle list")
    }

    #[test]
    fn opened_for_sync_writes_the_first_log_is_a_filled_one_written_over() {
        let dir = temp_dir("primed");
        let put = |b: &RocksBackend, v: &[u8]| b.write(&[WriteOp::new(b"k", Some(v))]).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let room = RocksBackend::has_room_to_prime_log(&dir).unwrap();
        for round in 0..2 {
            let b = RocksBackend::open(&dir, true).unwrap();
            if round == 1 {
                // Primed again over a database with data: the data is kept.
                assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v0"[..]));
            }
            put(&b, format!("v{round}").as_bytes());
            b.make_durable().unwrap();
            assert_eq!(reused_a_log(&dir), room, "round {round}");
            if room {
                // The log in use and the one the first flush moves to.
                let filled = logs(&dir)
                    .iter()
                    .filter(|(size, _)| *size >= LOG_PRIMER_BYTES as u64)
                    .count();
                assert!(filled >= 2, "{:?}", logs(&dir));
            }
            drop(b);
            // The primer's column family is gone: older builds open it.
            let opts = Options::default();
            assert_eq!(DB::list_cf(&opts, &dir).unwrap(), ["default"]);
        }
        assert_eq!(
            RocksBackend::open(&dir, false)
                .unwrap()
                .get(b"k")
                .unwrap()
                .as_deref(),
            Some(&b"v1"[..])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn after_the_first_flush_the_log_in_use_is_a_filled_one_too() {
        let dir = temp_dir("primed-flush");
        std::fs::create_dir_all(&dir).unwrap();
        if !RocksBackend::has_room_to_prime_log(&dir).unwrap() {
            eprintln!("skipped: the log is not primed on a disk this full");
            return;
        }
        let b = RocksBackend::open(&dir, true).unwrap();
        b.write(&[WriteOp::new(b"k", Some(b"v"))]).unwrap();
        // A flush of a memtable that holds something moves to a new log,
        // named after a number higher than any before it.
        b.flush().unwrap();
        let in_use = logs(&dir)
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1))
            .expect("a log");
        assert!(
            in_use.0 >= LOG_PRIMER_BYTES as u64,
            "in use {in_use:?}, all {:?}",
            logs(&dir)
        );
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opened_for_asynchronous_writes_the_log_is_not_primed() {
        let dir = temp_dir("unprimed");
        let b = RocksBackend::open(&dir, false).unwrap();
        assert!(!reused_a_log(&dir));
        assert!(
            logs(&dir).iter().all(|(size, _)| *size < 1 << 20),
            "{:?}",
            logs(&dir)
        );
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_primer_family_left_by_a_start_cut_short_is_dropped_at_open() {
        let dir = temp_dir("leftover");
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            let mut db = DB::open(&opts, &dir).unwrap();
            db.create_cf(PRIMER_FAMILY, &opts).unwrap();
            db.put(b"k", b"v").unwrap();
        }
        let b = RocksBackend::open(&dir, false).unwrap();
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        drop(b);
        assert_eq!(DB::list_cf(&Options::default(), &dir).unwrap(), ["default"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn creates_a_missing_directory_and_reopens_with_data() {
        let dir = temp_dir("reopen");
        {
            let b = RocksBackend::open(&dir, false).unwrap();
            b.write(&[WriteOp::new(b"k", Some(b"v"))]).unwrap();
            b.flush().unwrap();
        }
        let b = RocksBackend::open(&dir, false).unwrap();
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Why opening `path` fails (it must).
    fn open_error(path: &std::path::Path) -> String {
        RocksBackend::open(path, false)
            .err()
            .expect("must fail")
            .to_string()
    }

    #[test]
    fn opening_a_file_instead_of_a_directory_is_an_error_with_the_path_in_words() {
        let file = temp_dir("file");
        std::fs::write(&file, b"not a database").unwrap();
        // The file itself, and a directory under it.
        for path in [file.clone(), file.join("db")] {
            let err = open_error(&path);
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(!err.contains("Os {") && !err.contains("kind:"), "{err}");
        }
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn a_directory_of_other_files_without_a_database_is_told_apart() {
        let dir = temp_dir("strangers");
        assert_eq!(a_file_no_database_would_hold(&dir), None, "missing");
        std::fs::create_dir_all(dir.join("lost+found")).unwrap();
        assert_eq!(
            a_file_no_database_would_hold(&dir),
            None,
            "a fresh file system"
        );
        std::fs::write(dir.join("LOG"), b"").unwrap();
        assert_eq!(
            a_file_no_database_would_hold(&dir),
            None,
            "a creation cut short"
        );
        std::fs::write(dir.join("nmdb.log"), b"mine").unwrap();
        assert_eq!(
            a_file_no_database_would_hold(&dir).as_deref(),
            Some("nmdb.log")
        );
        // Opened all the same (and warned about); then it holds a database.
        drop(RocksBackend::open(&dir, false).unwrap());
        assert_eq!(a_file_no_database_would_hold(&dir), None, "a database");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_database_file_of_the_original_is_named_as_such() {
        let file = temp_dir("qdbm");
        // The start of a file made by QDBM's `dpmgr create`.
        std::fs::write(&file, b"[DEPOT]\n\x0c\0\0\0\0\0").unwrap();
        let err = open_error(&file);
        assert!(err.contains("QDBM database file of the original"), "{err}");
        assert!(err.contains("Give -d a directory"), "{err}");
        std::fs::write(&file, b"something else").unwrap();
        let err = open_error(&file);
        assert!(err.contains("keep a database in one file"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
