//! What making one write durable costs on the file system under test.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// An empty file at `path`, its first `preallocated` bytes allocated
/// without changing its size, as RocksDB allocates a new log: each
/// fdatasync of an append then writes the data and the new length.
pub(crate) fn new_file(path: &Path, preallocated: i64) -> std::fs::File {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    if preallocated > 0 {
        // SAFETY: fallocate on a descriptor this function owns.
        let done = unsafe {
            libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, preallocated)
        };
        assert_eq!(done, 0, "fallocate {}", path.display());
    }
    file
}

/// How [`fdatasync_time`] writes its records.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Probe {
    /// At the end of the file, into blocks allocated beforehand without
    /// changing its size, as RocksDB does for a new log: each fdatasync
    /// writes the data and the new length.
    Append,
    /// Over records already on disk, as in a recycled log: each fdatasync
    /// writes the data alone.
    Overwrite,
}

/// Time per 128-byte write + fdatasync in `dir`, the median of 5 runs.
pub(crate) fn fdatasync_time(dir: &Path, count: usize, probe: Probe) -> Duration {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::io::AsRawFd;
    let path = dir.join("fdatasync-probe");
    let record = [0x5a_u8; 128];
    // SAFETY: fdatasync on a descriptor this function owns.
    let fdatasync = |f: &std::fs::File| assert_eq!(unsafe { libc::fdatasync(f.as_raw_fd()) }, 0);
    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let mut f = new_file(&path, if probe == Probe::Append { 1 << 20 } else { 0 });
            if probe == Probe::Overwrite {
                f.write_all(&record.repeat(count)).unwrap();
                fdatasync(&f);
                f.seek(SeekFrom::Start(0)).unwrap();
            }
            let start = Instant::now();
            for _ in 0..count {
                f.write_all(&record).unwrap();
                fdatasync(&f);
            }
            start.elapsed() / count as u32
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    runs.sort();
    runs[2]
}
