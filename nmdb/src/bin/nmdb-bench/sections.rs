//! Sections 3 to 7: sync scaling, the recycled log, memory per object,
//! the metrics' cost, and the event loop.

use crate::client::{
    interleaved, median, message, pipeline, run, server_target, side_by_side, Sample, Transport,
};
use crate::disk::{fdatasync_time, Probe};
use crate::echo::EchoServer;
use crate::requests::{request, Mode};
use crate::server::{self, BenchServer};
use crate::Options;
use nmdb_proto::{ReplyCode, Request, FLAGS_CACHE_ONLY};
use std::process::Command;
use std::time::Duration;

/// Synchronous SETs at `--durability disk`, one client and `o.clients`
/// taking turns round by round, each round on keys of its own. The 8-client
/// scaling of the summary above divides two cases measured a minute apart,
/// and the disk's fdatasync time drifts by tens of percent in a minute; the
/// ratio of two adjacent rounds drifts much less.
pub(crate) fn sync_scaling(o: &Options) {
    let server = BenchServer::start_with(
        o.bin.as_ref(),
        "bench-scaling",
        true,
        &["--metrics", "127.0.0.1:0"],
    );
    println!(
        "== sync scaling at --durability disk: 1 client and {} taking turns, {} rounds; \
         scaling = median of the rounds' ratios; fsync = the server's own, on average",
        o.clients, o.rounds
    );
    println!(
        "{:<14} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9}",
        "case",
        "1 client",
        format!("{} clients", o.clients),
        "scaling",
        "lowest",
        "highest",
        "fsync"
    );
    // (seconds in fsyncs, fsyncs) so far; None from a server without the
    // time metric.
    let fsyncs = || {
        let seconds = server.metric_if_any("nmdb_db_fsync_seconds_total")?;
        Some((seconds, server.metric("nmdb_db_fsyncs_total")))
    };
    let per_round = (o.ops / 10).max(100);
    for t in [Transport::Tcp, Transport::Udp] {
        let target = server_target(&server, t);
        let make = move |c: usize, i: usize| request(t, Mode::SyncDisk, "set", c, i);
        let (mut one, mut many, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let before = fsyncs();
        for r in 0..o.rounds {
            let base = r * per_round;
            let a = run(t, target, 1, per_round, base, &make);
            let b = run(t, target, o.clients, per_round, base, &make);
            ratios.push(b.ops_per_sec / a.ops_per_sec);
            one.push(a);
            many.push(b);
        }
        let fsync = match (before, fsyncs()) {
            (Some((s0, n0)), Some((s1, n1))) if n1 > n0 => {
                format!("{:.0} µs", (s1 - s0) / (n1 - n0) * 1e6)
            }
            _ => "-".into(),
        };
        ratios.sort_by(f64::total_cmp);
        println!(
            "{:<14} {:>9.0} {:>10.0} {:>7.1}× {:>7.1}× {:>7.1}× {:>9}",
            format!("{} sync set", t.name()),
            median(one).ops_per_sec,
            median(many).ops_per_sec,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            fsync
        );
    }
}

/// 60 KB SETs written before [`recycled_log`] measures, at most.
pub(crate) const FILL_SETS: usize = 4000;

/// Synchronous SETs on a server whose RocksDB has recycled a log its
/// writes filled: 60 KB SETs are written until its LOG says two more logs
/// were reused than at start. (At `--durability disk` the server starts
/// on a reused log filled with 16 MB (the RocksDB backend's log primer); the
/// first reuse after it is of a log that held almost nothing.)
pub(crate) fn recycled_log(o: &Options) {
    let probe_dir = server::scratch();
    let server = BenchServer::start_with(
        o.bin.as_ref(),
        "bench-recycled",
        true,
        &["--metrics", "127.0.0.1:0"],
    );
    let rocksdb_log = server.db_dir().join("LOG");
    let reuses = || {
        std::fs::read_to_string(&rocksdb_log)
            .unwrap_or_default()
            .matches("from recycle list")
            .count()
    };
    let at_start = reuses();
    let recycled = || reuses() >= at_start + 2;
    let value = vec![0x5a_u8; 60_000];
    // 32 MB memtables: a log is recycled from the second switch on, after
    // about 65 MB (a server that does not recycle writes them all).
    let mut written = 0;
    while written < FILL_SETS && !recycled() {
        let fill = (written..written + 500).map(|i| {
            let key = format!("fill-{i}");
            let set = Request::Set {
                key: key.as_bytes(),
                value: &value,
            };
            message(Transport::Tcp, set, 0)
        });
        pipeline(server.tcp, fill, |r| {
            assert_eq!(r.reply_code(), Some(ReplyCode::Ok))
        });
        written += 500;
    }
    let echo = EchoServer::start();
    println!(
        "== sync writes at --durability disk after {} MB of SETs (log recycled: {}): \
         limits from fdatasync of 128-byte appends and of overwrites in place, in {}",
        written * value.len() / 1_000_000,
        if recycled() { "yes" } else { "no" },
        probe_dir.display()
    );
    println!(
        "{:<14} {:>9} {:>10} {:>9} {:>6} {:>10} {:>9} {:>6}   {:>9} {:>8} {:>14}",
        "case",
        "1 client",
        "append",
        "limit",
        "ratio",
        "overwrite",
        "limit",
        "ratio",
        format!("{} clients", o.clients),
        "scaling",
        "requests/fsync"
    );
    for t in [Transport::Tcp, Transport::Udp] {
        let (nmdb, echo) = (server_target(&server, t), echo.target(t));
        let make = move |c: usize, i: usize| request(t, Mode::SyncDisk, "set", c, i);
        let ops = (o.ops / 10).max(100);
        let probes =
            || [Probe::Append, Probe::Overwrite].map(|p| fdatasync_time(probe_dir, 100, p));
        let before = probes();
        let (one, echo_one) = side_by_side(t, (nmdb, echo), 1, ops, o.rounds, &make);
        let after = probes();
        let commits = || {
            (
                server.metric("nmdb_db_fsyncs_total"),
                server.metric("nmdb_db_fsync_requests_total"),
            )
        };
        let (f0, r0) = commits();
        let (many, _) = side_by_side(t, (nmdb, echo), o.clients, ops, o.rounds, &make);
        let (f1, r1) = commits();
        let [append, overwrite] = [0, 1].map(|k| (before[k] + after[k]) / 2);
        let limit = |fsync: Duration| 1.0 / (fsync.as_secs_f64() + 1.0 / echo_one.ops_per_sec);
        let [(append_us, append_limit), (overwrite_us, overwrite_limit)] =
            [append, overwrite].map(|fsync| (fsync.as_secs_f64() * 1e6, limit(fsync)));
        println!(
            "{:<14} {:>9.0} {:>7.0} µs {:>9.0} {:>5.0}% {:>7.0} µs {:>9.0} {:>5.0}%   {:>9.0} {:>7.1}× {:>14.1}",
            format!("{} sync set", t.name()),
            one.ops_per_sec,
            append_us,
            append_limit,
            100.0 * one.ops_per_sec / append_limit,
            overwrite_us,
            overwrite_limit,
            100.0 * one.ops_per_sec / overwrite_limit,
            many.ops_per_sec,
            many.ops_per_sec / one.ops_per_sec,
            if f1 > f0 { (r1 - r0) / (f1 - f0) } else { 0.0 },
        );
    }
}

/// RSS growth per cached object, with the default cache filled with
/// 16-byte keys and `value_len`-byte values. Twice the capacity is written
/// so that nearly every bucket is full; the objects held are then counted
/// by reading every key back.
pub(crate) fn memory_per_object(bin: &str, value_len: usize) {
    let server = BenchServer::start(bin.as_ref(), "bench-memory", false);
    // Default cache: 128 "thousands" of 1024 objects.
    let capacity = 128 * 1024;
    let keys = 2 * capacity;
    let key = |i: usize| format!("key-{i:012}").into_bytes();
    let value = vec![0xab_u8; value_len];
    // One round trip first, so the connection's own buffers are counted
    // before the fill.
    pipeline(
        server.tcp,
        std::iter::once(message(
            Transport::Tcp,
            Request::Get { key: b"x" },
            FLAGS_CACHE_ONLY,
        )),
        |_| (),
    );
    let before = server.memory("VmRSS");
    let sets = (0..keys).map(|i| {
        message(
            Transport::Tcp,
            Request::Set {
                key: &key(i),
                value: &value,
            },
            FLAGS_CACHE_ONLY,
        )
    });
    pipeline(server.tcp, sets, |r| {
        assert_eq!(r.reply_code(), Some(ReplyCode::Ok))
    });
    let after = server.memory("VmRSS");
    let mut held = 0usize;
    let gets = (0..keys).map(|i| {
        message(
            Transport::Tcp,
            Request::Get { key: &key(i) },
            FLAGS_CACHE_ONLY,
        )
    });
    pipeline(server.tcp, gets, |r| {
        held += usize::from(r.reply_code() == Some(ReplyCode::CacheHit))
    });
    println!(
        "16-byte keys, {value_len:>4}-byte values: {held} objects held of {capacity}, RSS +{:.1} MiB, {:.0} bytes per object ({:.0} of them overhead)",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / held as f64,
        (after - before) as f64 / held as f64 - (16 + value_len) as f64
    );
}

/// Cache-only requests against a server with `--metrics` and one without.
pub(crate) fn metrics_cost(o: &Options) {
    let help = Command::new(&o.bin).arg("-h").output().unwrap();
    if !String::from_utf8_lossy(&help.stdout).contains("--metrics") {
        println!("(this server has no --metrics)");
        return;
    }
    let plain = BenchServer::start(o.bin.as_ref(), "bench-plain", false);
    let with = BenchServer::start_with(
        o.bin.as_ref(),
        "bench-metrics",
        false,
        &["--metrics", "127.0.0.1:0"],
    );
    let t = Transport::Tcp;
    println!(
        "{:<34} {:>9} {:>9} {:>6}   {:>11} {:>9}",
        "case", "metrics", "without", "ratio", "cpu µs/req", "without"
    );
    for op in ["set", "get"] {
        let make = move |c: usize, i: usize| request(t, Mode::Cache, op, c, i);
        let targets = (server_target(&with, t), server_target(&plain, t));
        // More rounds than elsewhere: the difference sought is small.
        let (a, b) = side_by_side(t, targets, 1, o.ops * 2, o.rounds * 2 + 1, &make);
        println!(
            "{:<34} {:>9.0} {:>9.0} {:>5.1}%   {:>11.1} {:>9.1}",
            format!("tcp cache-only {op} (1 client)"),
            a.ops_per_sec,
            b.ops_per_sec,
            100.0 * a.ops_per_sec / b.ops_per_sec,
            a.cpu_us,
            b.cpu_us
        );
    }
}

/// Section 6: the blocking echo, the event-loop echo, the tokio echo and
/// nmdb's cache-only GET (a miss), interleaved.
pub(crate) fn event_loop_cost(o: &Options) {
    let server = BenchServer::start(o.bin.as_ref(), "bench-event-loop", true);
    let blocking = EchoServer::start();
    let event_loop = EchoServer::start_as(&["--event-loop-echo-server"], None);
    let tokio = EchoServer::start_as(&["--tokio-echo-server"], None);
    println!(
        "{:<22} {:>8} {:>10} {:>6} {:>8} {:>6}   {:>8} {:>6} {:>8}   {:>19}",
        "case",
        "echo",
        "event loop",
        "ratio",
        "tokio",
        "ratio",
        "nmdb",
        "ratio",
        "to tokio",
        "cpu µs/req e/el/t/n"
    );
    for t in [Transport::Tcp, Transport::Udp] {
        let targets = [
            blocking.target(t),
            event_loop.target(t),
            tokio.target(t),
            server_target(&server, t),
        ];
        let make = move |c: usize, i: usize| request(t, Mode::Cache, "get", c, i);
        for clients in [1, o.clients] {
            let [e, el, tk, n] = interleaved(t, targets, clients, o.ops, o.rounds, &make);
            let ratio = |a: &Sample, b: &Sample| 100.0 * a.ops_per_sec / b.ops_per_sec;
            println!(
                "{:<22} {:>8.0} {:>10.0} {:>5.0}% {:>8.0} {:>5.0}%   {:>8.0} {:>5.0}% {:>7.0}%   {:>19}",
                format!(
                    "{} get ({clients} client{})",
                    t.name(),
                    if clients == 1 { "" } else { "s" }
                ),
                e.ops_per_sec,
                el.ops_per_sec,
                ratio(&el, &e),
                tk.ops_per_sec,
                ratio(&tk, &e),
                n.ops_per_sec,
                ratio(&n, &e),
                ratio(&n, &tk),
                format!(
                    "{:.1}/{:.1}/{:.1}/{:.1}",
                    e.cpu_us, el.cpu_us, tk.cpu_us, n.cpu_us
                ),
            );
        }
    }
}
