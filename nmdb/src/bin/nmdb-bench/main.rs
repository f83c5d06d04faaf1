//! The benchmark behind `make bench`: every figure of BENCHMARKS.md next to
//! its reference, in one run.
//!
//! Usage: nmdb-bench [--nmdb PATH] [--ops N] [--clients N] [--rounds N]
//!                   [--only TEXT] [--random-keys]
//!
//! `--only` runs just the request cases whose name contains TEXT (e.g.
//! "tcp sync", or several texts: "normal set|process set"), or just the
//! `scaling`, `recycled`, `memory`, `metrics`, `event-loop` or
//! `random-keys` section. `--random-keys` spreads the requests' keys at
//! random instead of numbering them in order, which RocksDB inserts more
//! cheaply than a real workload's keys.
//!
//! 1. Disk: a loop of 128-byte appends, each followed by `fdatasync`, in
//!    the directory the server's database is in: what making one write
//!    durable costs on this filesystem.
//! 2. Requests: ops/s of `nmdb` (loopback, RocksDB in a temporary
//!    directory) in every mode over TCP and UDP, next to an echo server (a
//!    process of its own answering each message with a reply of the size
//!    nmdb's has: the loopback round-trip limit), with the CPU time each
//!    spends per request, and how much of nmdb's its database threads
//!    spent (queue workers, group commit, RocksDB's own). Every case runs
//!    `rounds` times, nmdb and echo interleaved, and the median is shown,
//!    so that a disturbance in one round does not decide the figure.
//!    Synchronous writes at the default durability are also set against
//!    their own limit, one fdatasync plus one round trip, and against an
//!    fsync echo server (the echo server appending each request to a file
//!    and fdatasyncing it before it answers: a durable server with nothing
//!    else to do), and their 8-client rate against the 1-client one.
//! 3. Scaling: one client's synchronous SETs and 8 clients' taking turns
//!    round by round on one server, and the median of the rounds' ratios:
//!    the disk's latency drifts from minute to minute, and this ratio
//!    drifts less than one of two cases measured apart. With the server's
//!    own average fsync time, on which the ratio depends.
//! 4. Recycled log: synchronous writes once RocksDB writes its log over a
//!    recycled file its writes filled (after 65-100 MB of writes),
//!    against the limits from fdatasync of appends and of overwrites in
//!    place.
//! 5. Memory: the server's RSS growth per cached object with the default
//!    cache full, for 16-byte keys with 100-byte and 1 KB values.
//! 6. Metrics: cache-only requests with `--metrics` on and off.
//! 7. Event loop: the echo server above (a blocking thread per client)
//!    against an echo server answering from one thread's epoll loop, the
//!    way event-driven servers (libevent's, nmdb's) wait for requests, an
//!    echo server on a current-thread tokio runtime (as nmdb served TCP
//!    before it had event loops of its own), and nmdb's cache-only GET
//!    against them: what part of the distance to the round-trip limit
//!    waiting that way costs by itself, what a runtime adds, and what is
//!    left to nmdb's own work.
//! 8. Keys at random: the asynchronous and `process` SETs of section 2
//!    again, their keys spread at random: RocksDB inserts numbered keys
//!    next to the last one, far more cheaply than a real workload's.
//!
//! Pin it to one CPU (`taskset -c 0`, as `make bench` does) on a VM that
//! idles CPUs: a wake-up on the other, idle CPU costs more than a request.

#[path = "../common/server.rs"]
mod server;

mod client;
mod disk;
mod echo;
mod requests;
mod sections;

use crate::disk::new_file;
use crate::echo::{serve_echo, serve_event_loop_echo, serve_tokio_echo};
use crate::requests::{requests, RANDOM_KEYS};
use crate::sections::{
    event_loop_cost, memory_per_object, metrics_cost, recycled_log, sync_scaling,
};
use std::path::Path;

/// The command line (see the usage at the top).
#[derive(Clone)]
struct Options {
    bin: String,
    ops: usize,
    clients: usize,
    rounds: usize,
    only: Option<String>,
}

fn parse_args() -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        bin: std::env::current_exe()
            .unwrap()
            .with_file_name("nmdb")
            .to_string_lossy()
            .into_owned(),
        ops: 20_000,
        clients: 8,
        rounds: 5,
        only: None,
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("option needs a value");
        match a.as_str() {
            "--echo-server" => serve_echo(None),
            "--fsync-echo-server" => serve_echo(Some(new_file(Path::new(&val()), 64 << 20))),
            "--event-loop-echo-server" => serve_event_loop_echo(),
            "--tokio-echo-server" => serve_tokio_echo(),
            "--nmdb" => o.bin = val(),
            "--ops" => o.ops = val().parse().expect("--ops N"),
            "--clients" => o.clients = val().parse().expect("--clients N"),
            "--rounds" => o.rounds = val().parse::<usize>().expect("--rounds N").max(1),
            "--only" => o.only = Some(val()),
            "--random-keys" => RANDOM_KEYS.store(true, std::sync::atomic::Ordering::Relaxed),
            _ => {
                eprintln!("usage: nmdb-bench [--nmdb PATH] [--ops N] [--clients N] [--rounds N] [--only TEXT] [--random-keys]");
                std::process::exit(2);
            }
        }
    }
    o
}

fn main() {
    let o = parse_args();
    server::begin();
    println!(
        "nmdb-bench: {} ops per client and case, {} rounds",
        o.ops, o.rounds
    );
    let section = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    let requests_wanted = !matches!(
        o.only.as_deref(),
        Some("scaling" | "recycled" | "memory" | "metrics" | "event-loop" | "random-keys")
    );
    if requests_wanted {
        println!();
        requests(&o);
    }
    if section("scaling") {
        println!();
        sync_scaling(&o);
    }
    if section("recycled") {
        println!();
        recycled_log(&o);
    }
    if section("memory") {
        println!();
        println!("== memory: RSS growth per cached object, default cache (131072 objects)");
        memory_per_object(&o.bin, 100);
        memory_per_object(&o.bin, 1024);
    }
    if section("metrics") {
        println!();
        println!("== metrics: cache-only requests with --metrics 127.0.0.1:0 and without");
        metrics_cost(&o);
    }
    if section("event-loop") {
        println!();
        println!(
            "== event loop: the blocking echo, an echo answering from one thread's epoll loop, \
             one on tokio, and nmdb's cache-only GET"
        );
        event_loop_cost(&o);
    }
    if section("random-keys") {
        println!();
        println!(
            "== keys at random: the asynchronous and --durability process SETs above with keys \
             spread at random (--random-keys), as a real workload's are, not numbered in order"
        );
        RANDOM_KEYS.store(true, std::sync::atomic::Ordering::Relaxed);
        requests(&Options {
            only: Some("normal set|process set".into()),
            ..o.clone()
        });
    }
    server::end_of_run();
}
