//! Log output: standard output or a file that `SIGHUP` reopens, so log
//! rotation works (move the file away, send SIGHUP, the server writes a new
//! one). Lines carry a timestamp; nothing is logged per request at the
//! default level (`info`; `RUST_LOG` changes it).

use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

enum Sink {
    Stdout,
    File { path: PathBuf, file: File },
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

static SINK: OnceLock<Arc<Mutex<Sink>>> = OnceLock::new();

struct SharedWriter(Arc<Mutex<Sink>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *self.0.lock() {
            Sink::Stdout => io::stdout().write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.0.lock() {
            Sink::Stdout => io::stdout().flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

/// Opens the log (checking the file can be written) and installs the
/// logger. Call once.
pub fn init(path: Option<&Path>) -> io::Result<()> {
    let sink = match path {
        None => Sink::Stdout,
        Some(p) => Sink::File {
            path: p.to_path_buf(),
            file: open(p)
                .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", p.display())))?,
        },
    };
    let shared = SINK
        .get_or_init(|| Arc::new(Mutex::new(Sink::Stdout)))
        .clone();
    *shared.lock() = sink;
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .parse_default_env()
        .format_timestamp_secs()
        .target(env_logger::Target::Pipe(Box::new(SharedWriter(shared))))
        .try_init()
        .map_err(io::Error::other)
}

/// Reopens the log file (after rotation); standard output stays as it is.
pub fn reopen() -> io::Result<()> {
    let Some(shared) = SINK.get() else {
        return Ok(());
    };
    let mut sink = shared.lock();
    if let Sink::File { path, file } = &mut *sink {
        *file = open(path)?;
    }
    Ok(())
}
