//! A server process for the benchmark tools: started on loopback with a
//! temporary RocksDB directory, waited for until it serves, stopped with
//! SIGTERM and its directory removed when dropped.
//!
//! A run of a tool keeps every file it makes (servers' databases and logs,
//! disk probes) in a directory of its own, [`scratch`], removed at the end.
//! A tool that is interrupted leaves nothing behind either: every process
//! it starts gets SIGTERM when the tool dies, however it dies
//! ([`dies_with_this_process`]), and on SIGINT, SIGTERM or SIGHUP the tool
//! stops its servers and removes their files before it exits. A tool
//! killed outright (SIGKILL) leaves its directory; the next run of either
//! tool removes it ([`begin`]).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// This run's directory for its files: `$TMPDIR/nmdb-tool-run-PID`.
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
/// How a run's directory is named, before its pid.
const SCRATCH_PREFIX: &str = "nmdb-tool-run-";

/// What the running tool started and must undo if interrupted: each
/// process, and the file or directory it uses if any.
static STARTED: Mutex<Vec<(u32, Option<PathBuf>)>> = Mutex::new(Vec::new());

fn started() -> std::sync::MutexGuard<'static, Vec<(u32, Option<PathBuf>)>> {
    STARTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a process the tool started, and the file or directory it uses,
/// until the tool [`stop`]s it.
pub fn remember(pid: u32, path: Option<PathBuf>) {
    started().push((pid, path));
}

/// Stops process `pid` that the tool started (SIGTERM), reaps it and
/// removes its file or directory `path`; it is forgotten.
pub fn stop(pid: u32, path: Option<&Path>) {
    // Held throughout, so that an interruption meanwhile does not signal
    // a process already reaped, whose pid may be another's by then.
    let mut started = started();
    end(pid, path);
    started.retain(|&(p, _)| p != pid);
}

/// [`stop`] without the bookkeeping: `pid` is signalled, reaped, and
/// `path` removed.
fn end(pid: u32, path: Option<&Path>) {
    // SAFETY: signalling and reaping a child of ours, not yet reaped.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
        libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
    }
    if let Some(path) = path {
        let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
    }
}

/// Makes the process `cmd` starts get SIGTERM when this process dies,
/// whether it returns, is interrupted or is killed. The signal follows the
/// thread that forked: the tools start every process from their main
/// thread, which lives as long as they do.
pub fn dies_with_this_process(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the hook makes async-signal-safe
    // calls only.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the request took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// Starts a run of the tool: removes what runs killed outright left, makes
/// this run's [`scratch`] directory, and cleans up if interrupted.
pub fn begin() {
    let tmp = std::env::temp_dir();
    for left in runs_left_behind(&tmp) {
        match std::fs::remove_dir_all(&left) {
            Ok(()) => eprintln!("removed {}, left by a run killed outright", left.display()),
            Err(e) => eprintln!("cannot remove {}: {e}", left.display()),
        }
    }
    let dir = tmp.join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    SCRATCH.set(dir).expect("begin is called once");
    clean_up_when_interrupted();
}

/// Ends a run: removes its [`scratch`] directory.
pub fn end_of_run() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// The directory where this run keeps its files ([`begin`] made it).
pub fn scratch() -> &'static Path {
    SCRATCH.get().expect("begin() first")
}

/// Run directories in `tmp` whose tool no longer runs: their pid is gone
/// or is now another program's.
fn runs_left_behind(tmp: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
                .and_then(|pid| pid.parse::<u32>().ok());
            pid.is_some_and(|pid| !is_a_tool(pid))
        })
        .map(|entry| entry.path())
        .collect()
}

/// Whether process `pid` is one of the benchmark tools.
fn is_a_tool(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|name| matches!(name.trim_end(), "nmdb-bench" | "nmdb-overload"))
}

/// On SIGINT, SIGTERM or SIGHUP: stops every server the tool started,
/// waits for them, removes their files and exits (128 + the signal).
/// The tool's clients, whose servers are gone meanwhile, fail in silence.
fn clean_up_when_interrupted() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicBool, Ordering};
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !INTERRUPTED.load(Ordering::SeqCst) {
            report(info);
        }
    }));
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).expect("signal handlers");
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            // Held to the end: nothing started or stopped meanwhile.
            let started = started();
            for (pid, path) in started.iter() {
                end(*pid, path.as_deref());
            }
            end_of_run();
            eprintln!("interrupted: servers stopped, their files removed");
            std::process::exit(128 + signal);
        }
    });
}

pub struct BenchServer {
    child: Child,
    pub tcp: SocketAddr,
    /// Present when started with UDP.
    #[allow(dead_code)] // nmdb-overload uses TCP only
    pub udp: Option<SocketAddr>,
    /// Present when started with `--metrics`.
    #[allow(dead_code)] // nmdb-overload does not scrape
    pub metrics: Option<SocketAddr>,
    dir: PathBuf,
}

impl BenchServer {
    /// Starts `bin` on loopback TCP (and UDP with `udp`) on free ports.
    pub fn start(bin: &Path, tag: &str, udp: bool) -> BenchServer {
        Self::start_with(bin, tag, udp, &[])
    }

    /// Like [`BenchServer::start`], with more options for the server.
    pub fn start_with(bin: &Path, tag: &str, udp: bool, extra: &[&str]) -> BenchServer {
        let dir = scratch().join(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let mut cmd = Command::new(bin);
        dies_with_this_process(&mut cmd);
        cmd.args(["-f", "--no-tipc", "--no-sctp", "-T", "127.0.0.1", "-t", "0"]);
        if udp {
            cmd.args(["-U", "127.0.0.1", "-u", "0"]);
        } else {
            cmd.arg("--no-udp");
        }
        let child = cmd
            .args(extra)
            .arg("-d")
            .arg(dir.join("db"))
            .arg("-o")
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        remember(child.id(), Some(dir.clone()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().any(|l| l.ends_with("] ready")) {
                break text;
            }
            assert!(Instant::now() < deadline, "nmdb did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let find = |p: &str| -> Option<SocketAddr> {
            let tag = format!("listening on {p} ");
            let line = text.lines().find(|l| l.contains(&tag))?;
            line[line.find(&tag)? + tag.len()..].trim().parse().ok()
        };
        let addr = |p: &str| find(p).unwrap_or_else(|| panic!("no {p} address in:\n{text}"));
        BenchServer {
            tcp: addr("tcp"),
            udp: udp.then(|| addr("udp")),
            metrics: find("metrics"),
            child,
            dir,
        }
    }

    /// The server's database directory.
    #[allow(dead_code)] // nmdb-overload does not look into it
    pub fn db_dir(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// A counter or gauge from the server's `/metrics` (started with
    /// `--metrics`).
    #[allow(dead_code)] // nmdb-overload does not scrape
    pub fn metric(&self, name: &str) -> f64 {
        self.metric_if_any(name)
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// [`BenchServer::metric`], or `None` when the server has no such
    /// metric (an older build).
    #[allow(dead_code)] // nmdb-overload does not scrape
    pub fn metric_if_any(&self, name: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let addr = self.metrics.expect("started with --metrics");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    }

    #[allow(dead_code)] // nmdb-overload does not measure CPU
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure from /proc (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }
}

/// CPU time a process has used, in nanoseconds from the scheduler
/// (`/proc/PID/task/*/schedstat`), not clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    /// Every thread's.
    pub all: Duration,
    /// That of nmdb's database threads: its queue workers, its group
    /// commit and RocksDB's flushes and compactions. The rest is the
    /// network threads' (and, rarely, the main thread's).
    pub database: Duration,
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            all: self.all - earlier.all,
            database: self.database - earlier.database,
        }
    }
}

/// Whether a thread of nmdb named `name` does database work.
fn is_database_thread(name: &str) -> bool {
    ["nmdb-db-", "nmdb-commit", "rocksdb:"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// CPU time used so far by the threads of process `pid`.
#[allow(dead_code)] // nmdb-overload does not measure CPU
pub fn process_cpu_time(pid: u32) -> CpuTime {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut time = CpuTime::default();
    for task in tasks.flatten() {
        let read = |file: &str| std::fs::read_to_string(task.path().join(file)).ok();
        // A thread that ends meanwhile is skipped.
        let Some(ns) =
            read("schedstat").and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        let ns = Duration::from_nanos(ns);
        time.all += ns;
        if read("comm").is_some_and(|name| is_database_thread(name.trim_end())) {
            time.database += ns;
        }
    }
    time
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        stop(self.child.id(), Some(&self.dir));
    }
}
