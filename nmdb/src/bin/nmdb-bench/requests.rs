//! Section 2, the request cases: every operation in every mode over TCP
//! and UDP against the echo server, and the summary of synchronous writes
//! against the disk. Section 8 runs some of them again, keys at random.

use crate::client::{interleaved, message, server_target, side_by_side, Transport};
use crate::disk::{fdatasync_time, Probe};
use crate::echo::EchoServer;
use crate::server::{self, BenchServer};
use crate::Options;
use nmdb_proto::{Request, FLAGS_CACHE_ONLY, FLAGS_SYNC};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Cache,
    Normal,
    /// Synchronous, at `--durability disk` (the default).
    SyncDisk,
    /// Synchronous, at `--durability process`.
    SyncProcess,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Cache => "cache-only",
            Mode::Normal => "normal",
            Mode::SyncDisk => "sync disk",
            Mode::SyncProcess => "sync process",
        }
    }

    pub(crate) fn flags(self) -> u16 {
        match self {
            Mode::Cache => FLAGS_CACHE_ONLY,
            Mode::Normal => 0,
            Mode::SyncDisk | Mode::SyncProcess => FLAGS_SYNC,
        }
    }
}

/// Whether request keys are spread at random (`--random-keys`) rather than
/// numbered in order; set once, before any case runs.
pub(crate) static RANDOM_KEYS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The key of client `c`'s request `i`: `k<c>-<i>`, which RocksDB inserts
/// near the previous one, or with `--random-keys` 16 hex digits of a hash
/// of both, each landing anywhere in its memtable as keys of a real
/// workload (hashes, user ids) do. The same (c, i) gives the same key in
/// every round and for every server.
pub(crate) fn key(c: usize, i: usize) -> Vec<u8> {
    if RANDOM_KEYS.load(std::sync::atomic::Ordering::Relaxed) {
        // splitmix64's mixer: a bijection (no two keys collide) whose
        // every output bit depends on every input bit.
        let mut x = (c as u64) << 40 | i as u64;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        return format!("{x:016x}").into_bytes();
    }
    format!("k{c}-{i}").into_bytes()
}

/// The message of operation `op` in `mode` for key (c, i).
pub(crate) fn request(t: Transport, mode: Mode, op: &str, c: usize, i: usize) -> Vec<u8> {
    let key = key(c, i);
    let req = match op {
        "set" => Request::Set {
            key: &key,
            value: b"value-0123456789",
        },
        "get" => Request::Get { key: &key },
        "del" => Request::Del { key: &key },
        _ => unreachable!("no operation {op}"),
    };
    let flags = if op == "get" {
        mode.flags() & FLAGS_CACHE_ONLY
    } else {
        mode.flags()
    };
    message(t, req, flags)
}

/// A synchronous-write figure kept for the summary against the disk.
pub(crate) struct SyncFigure {
    pub(crate) case: String,
    pub(crate) clients: usize,
    pub(crate) nmdb: f64,
    pub(crate) echo: f64,
    /// The fsync echo server's rate (1 client only).
    pub(crate) fsync_echo: Option<f64>,
    /// Requests per fsync.
    pub(crate) group: f64,
    /// The disk's fdatasync time around this case: the disk of a VM
    /// varies by tens of percent from minute to minute.
    pub(crate) fsync: Duration,
}

pub(crate) fn requests(o: &Options) {
    let probe_dir = server::scratch();
    // With metrics, for the group commit's figures.
    let disk = BenchServer::start_with(
        o.bin.as_ref(),
        "bench-disk",
        true,
        &["--metrics", "127.0.0.1:0"],
    );
    let process = BenchServer::start_with(
        o.bin.as_ref(),
        "bench-process",
        true,
        &["--durability", "process"],
    );
    let echo = EchoServer::start();
    let fsync_echo = EchoServer::start_fsyncing(probe_dir);
    println!(
        "== requests: ops/s, median of {} interleaved rounds; echo = the loopback round-trip limit",
        o.rounds
    );
    println!(
        "{:<34} {:>9} {:>9} {:>6}   {:>11} {:>9} {:>9}",
        "case", "nmdb", "echo", "ratio", "cpu µs/req", "of it db", "echo cpu"
    );
    let mut sync_figures = Vec::new();
    for t in [Transport::Tcp, Transport::Udp] {
        let echo_target = echo.target(t);
        let fsync_echo_target = fsync_echo.target(t);
        for mode in [Mode::Cache, Mode::Normal, Mode::SyncDisk, Mode::SyncProcess] {
            let server = if mode == Mode::SyncProcess {
                &process
            } else {
                &disk
            };
            let target = server_target(server, t);
            for clients in [1, o.clients] {
                // Disk-bound writes are slow by nature: fewer keep the run short.
                let ops = if mode == Mode::SyncDisk {
                    (o.ops / 10).max(100)
                } else {
                    o.ops
                };
                for op in ["set", "get", "del"] {
                    if op == "get" && matches!(mode, Mode::SyncDisk | Mode::SyncProcess) {
                        continue; // GET has no synchronous mode
                    }
                    let plural = if clients == 1 { "" } else { "s" };
                    let case = format!(
                        "{} {} {op} ({clients} client{plural})",
                        t.name(),
                        mode.name()
                    );
                    if o.only
                        .as_ref()
                        .is_some_and(|only| !only.split('|').any(|text| case.contains(text)))
                    {
                        continue;
                    }
                    let make = move |c: usize, i: usize| request(t, mode, op, c, i);
                    let commits = || {
                        // An older server may have no metrics to read.
                        (mode == Mode::SyncDisk && server.metrics.is_some()).then(|| {
                            (
                                server.metric("nmdb_db_fsyncs_total"),
                                server.metric("nmdb_db_fsync_requests_total"),
                            )
                        })
                    };
                    let before = commits();
                    let probe = || match mode {
                        Mode::SyncDisk => fdatasync_time(probe_dir, 100, Probe::Append),
                        _ => Duration::ZERO,
                    };
                    let probe_before = probe();
                    // One client's synchronous writes also take turns with
                    // the fsync echo's.
                    let (a, b, fsynced) = if mode == Mode::SyncDisk && clients == 1 {
                        let targets = [target, echo_target, fsync_echo_target];
                        let [a, b, c] = interleaved(t, targets, clients, ops, o.rounds, &make);
                        (a, b, Some(c.ops_per_sec))
                    } else {
                        let (a, b) =
                            side_by_side(t, (target, echo_target), clients, ops, o.rounds, &make);
                        (a, b, None)
                    };
                    let fsync = (probe_before + probe()) / 2;
                    let group = match (before, commits()) {
                        (Some((f0, r0)), Some((f1, r1))) if f1 > f0 => (r1 - r0) / (f1 - f0),
                        _ => 0.0,
                    };
                    println!(
                        "{case:<34} {:>9.0} {:>9.0} {:>5.0}%   {:>11.1} {:>9.1} {:>9.1}",
                        a.ops_per_sec,
                        b.ops_per_sec,
                        100.0 * a.ops_per_sec / b.ops_per_sec,
                        a.cpu_us,
                        a.db_us,
                        b.cpu_us
                    );
                    if mode == Mode::SyncDisk {
                        sync_figures.push(SyncFigure {
                            case: format!("{} sync {op}", t.name()),
                            clients,
                            nmdb: a.ops_per_sec,
                            echo: b.ops_per_sec,
                            fsync_echo: fsynced,
                            group,
                            fsync,
                        });
                    }
                }
            }
        }
    }
    if sync_figures.is_empty() {
        return;
    }
    println!();
    println!(
        "== sync writes at --durability disk against the disk: limit = 1 / (fdatasync + round trip), \
         fdatasync of 128-byte appends to a preallocated file in {} measured before and after the case; \
         fsync echo = an echo server appending each request to a file there and fdatasyncing it before \
         answering, interleaved with the 1-client case",
        probe_dir.display()
    );
    println!(
        "{:<16} {:>9} {:>10} {:>9} {:>6}   {:>10} {:>6}   {:>9} {:>8} {:>14}",
        "case",
        "1 client",
        "fdatasync",
        "limit",
        "ratio",
        "fsync echo",
        "ratio",
        format!("{} clients", o.clients),
        "scaling",
        "requests/fsync"
    );
    for one in sync_figures.iter().filter(|f| f.clients == 1) {
        let many = sync_figures
            .iter()
            .find(|f| f.clients != 1 && f.case == one.case);
        let limit = 1.0 / (one.fsync.as_secs_f64() + 1.0 / one.echo);
        // A dash where `--only` left the many-client case out.
        let (many_rate, scaling, group) = many.map_or_else(
            || ("-".to_string(), "-".to_string(), "-".to_string()),
            |m| {
                (
                    format!("{:.0}", m.nmdb),
                    format!("{:.1}×", m.nmdb / one.nmdb),
                    format!("{:.1}", m.group),
                )
            },
        );
        let fsync_echo = one.fsync_echo.unwrap_or(f64::NAN);
        println!(
            "{:<16} {:>9.0} {:>7.0} µs {:>9.0} {:>5.0}%   {:>10.0} {:>5.0}%   {:>9} {:>8} {:>14}",
            one.case,
            one.nmdb,
            one.fsync.as_secs_f64() * 1e6,
            limit,
            100.0 * one.nmdb / limit,
            fsync_echo,
            100.0 * one.nmdb / fsync_echo,
            many_rate,
            scaling,
            group
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn random_keys_are_distinct_fixed_and_out_of_order() {
        RANDOM_KEYS.store(true, std::sync::atomic::Ordering::Relaxed);
        let keys: Vec<Vec<u8>> = (0..8)
            .flat_map(|c| (0..5000).map(move |i| key(c, i)))
            .collect();
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
        assert!(keys.iter().all(|k| k.len() == 16));
        assert_eq!(key(3, 77), key(3, 77), "the same request, the same key");
        // In order, a key follows its predecessor about half the time.
        let rising = keys.windows(2).filter(|w| w[0] < w[1]).count();
        let share = rising as f64 / (keys.len() - 1) as f64;
        assert!((0.4..0.6).contains(&share), "{share}");
    }
}
