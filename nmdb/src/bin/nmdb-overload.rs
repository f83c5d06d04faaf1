//! Overload benchmark: what hostile or heavy clients cost a running server
//! and the clients beside them. Prints, for one server binary:
//!
//! 1. 8 TCP clients pipelining GETs of a 60 KB value without reading the
//!    replies, for `--seconds`; a well-behaved client's GET latency beside
//!    them; the server's peak memory growth.
//! 2. 8 TCP clients flooding normal SETs of 60 KB values (20 keys each),
//!    reading their replies, for 1.5 x `--seconds`: SETs acknowledged and
//!    written per second, memory growth; once alone, once with a
//!    cache-only client beside them, whose latency is reported.
//! 3. 1000 TCP clients each sending 1100 GETs of a 60 KB value at once and
//!    reading none, for `--seconds`: the server's peak memory growth (what
//!    `--reply-buffer-mib` bounds), how many of them it closed, and a
//!    well-behaved client's GET latency beside them.
//! 4. 5000 TCP connections opened at once from 8 threads: the time until
//!    every one has been answered.
//! 5. One TCP client pipelining GETs (3000 of a 60 KB value, then 50000
//!    of a 100-byte one) and reading every answer: the best of 5 rounds,
//!    for a heavy client that does read.
//!
//! Usage: nmdb-overload [--nmdb PATH] [--seconds N]
//! Run it for two binaries (e.g. a release before and after a change) to
//! compare; BENCHMARKS.md records such a run.

#[path = "common/server.rs"]
mod server;

use nmdb_proto::frame::next_frame;
use nmdb_proto::{Request, FLAGS_CACHE_ONLY, MAX_MSG_SIZE};
use server::BenchServer;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn framed(req: Request<'_>, id: u32, flags: u16) -> Vec<u8> {
    let mut f = Vec::new();
    req.encode_framed(id, flags, &mut f);
    f
}

/// Reads one whole reply frame.
fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) {
    read_frames(s, buf, 1);
}

/// Reads `n` whole reply frames (what follows them stays in `buf`), each
/// read's bytes parsed in place: a client reading many small answers must
/// not be the one that limits.
fn read_frames(s: &mut TcpStream, buf: &mut Vec<u8>, mut n: usize) {
    let mut chunk = [0u8; 65536];
    loop {
        let mut used = 0;
        while n > 0 {
            match next_frame(&buf[used..], MAX_MSG_SIZE).expect("valid frame") {
                Some(len) => (used, n) = (used + len, n - 1),
                None => break,
            }
        }
        buf.drain(..used);
        if n == 0 {
            return;
        }
        let got = s.read(&mut chunk).expect("read");
        assert!(got > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Round trips of one client until `stop`; returns their latencies.
fn latencies(addr: SocketAddr, stop: Arc<AtomicBool>, req: Vec<u8>) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        s.write_all(&req).unwrap();
        read_frame(&mut s, &mut buf);
        out.push(t.elapsed());
    }
    out
}

/// A well-behaved client's round trips of `req` for `secs`, after which
/// `stop` is set (for the load beside it too); their latencies.
fn well_behaved_for(
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
    req: Vec<u8>,
    secs: u64,
) -> Vec<Duration> {
    let good = {
        let stop = stop.clone();
        std::thread::spawn(move || latencies(addr, stop, req))
    };
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    good.join().unwrap()
}

/// Count, quantiles and maximum of `l`, and its first latency (a client
/// that connects beside a burst may wait longest for its first answer).
fn summary(mut l: Vec<Duration>) -> String {
    let first = l[0];
    l.sort();
    let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
    format!(
        "{} requests, p50 {:?}, p99 {:?}, max {:?}, first {:?}",
        l.len(),
        at(0.5),
        at(0.99),
        l[l.len() - 1],
        first
    )
}

const MIB: u64 = 1 << 20;

fn non_readers(bin: &Path, secs: u64) {
    let server = BenchServer::start(bin, "overload-noread", false);
    let value = vec![0x6b; 60_000];
    let mut c = TcpStream::connect(server.tcp).unwrap();
    c.write_all(&framed(
        Request::Set {
            key: b"big",
            value: &value,
        },
        1,
        FLAGS_CACHE_ONLY,
    ))
    .unwrap();
    read_frame(&mut c, &mut Vec::new());
    let before = server.memory("VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let get = framed(Request::Get { key: b"big" }, 2, FLAGS_CACHE_ONLY);
    let chunk: Vec<u8> = get.iter().copied().cycle().take(get.len() * 1000).collect();
    let hogs: Vec<_> = (0..8)
        .map(|_| {
            let (stop, chunk, addr) = (stop.clone(), chunk.clone(), server.tcp);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = s.write_all(&chunk) {
                        assert!(matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut
                        ));
                    }
                }
                s
            })
        })
        .collect();
    let l = well_behaved_for(server.tcp, &stop, get, secs);
    let grown = server.memory("VmHWM").saturating_sub(before);
    drop(
        hogs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>(),
    );
    println!(
        "non-readers: 8 clients, {secs} s: memory +{} MiB",
        grown / MIB
    );
    println!("  a well-behaved GET client beside them: {}", summary(l));
}

/// True when the server has closed `s`: a non-blocking read finds the
/// end of stream or a reset (data still in the socket counts as open).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // Replies sent before the close: read on to its end.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn many_non_readers(bin: &Path, secs: u64, clients: usize) {
    let server = BenchServer::start(bin, "overload-many-noread", false);
    let value = vec![0x6b; 60_000];
    let mut c = TcpStream::connect(server.tcp).unwrap();
    let set = Request::Set {
        key: b"big",
        value: &value,
    };
    c.write_all(&framed(set, 1, FLAGS_CACHE_ONLY)).unwrap();
    read_frame(&mut c, &mut Vec::new());
    let before = server.memory("VmRSS");
    let get = framed(Request::Get { key: b"big" }, 2, FLAGS_CACHE_ONLY);
    // 22 KB of requests: the sockets take them whole, whatever the server
    // does with them.
    let requests = get.repeat(1100);
    let mut hogs: Vec<TcpStream> = (0..clients)
        .map(|_| {
            let mut s = TcpStream::connect(server.tcp).unwrap();
            s.write_all(&requests).unwrap();
            s
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let l = well_behaved_for(server.tcp, &stop, get, secs);
    let grown = server.memory("VmHWM").saturating_sub(before);
    let closed = hogs.iter_mut().map(closed_by_server).filter(|&c| c).count();
    println!(
        "many non-readers: {clients} clients, {secs} s: memory +{} MiB, {closed} closed by the server",
        grown / MIB
    );
    println!("  a well-behaved GET client beside them: {}", summary(l));
}

/// `bystander`: a cache-only client runs beside the flood and its
/// latencies are reported (it takes a CPU share from the flood on a small
/// machine, so the flood alone is measured too).
fn write_flood(bin: &Path, secs: u64, bystander: bool) {
    let server = BenchServer::start(bin, "overload-flood", false);
    let before = server.memory("VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..8u32)
        .map(|c| {
            let (stop, acked, addr) = (stop.clone(), acked.clone(), server.tcp);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut r = s.try_clone().unwrap();
                let sent = Arc::new(AtomicU64::new(0));
                let reader = {
                    let (sent, stop) = (sent.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let (mut buf, mut got) = (Vec::new(), 0u64);
                        while !stop.load(Ordering::Relaxed) || got < sent.load(Ordering::Relaxed) {
                            read_frame(&mut r, &mut buf);
                            got += 1;
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                };
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("flood-{c}-{}", i % 20);
                    let value = vec![i as u8; 60_000];
                    s.write_all(&framed(
                        Request::Set {
                            key: key.as_bytes(),
                            value: &value,
                        },
                        i,
                        0,
                    ))
                    .unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                reader.join().unwrap();
            })
        })
        .collect();
    let bystander = bystander.then(|| {
        let (stop, addr) = (stop.clone(), server.tcp);
        let req = framed(Request::Get { key: b"other" }, 9, FLAGS_CACHE_ONLY);
        std::thread::spawn(move || latencies(addr, stop, req))
    });
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let l = bystander.map(|b| b.join().unwrap());
    for f in flooders {
        f.join().unwrap();
    }
    let flooding = start.elapsed().as_secs_f64();
    // A key walk waits behind every queued write on every worker: when it
    // is answered, all acknowledged SETs are in the database.
    let mut c = TcpStream::connect(server.tcp).unwrap();
    c.write_all(&framed(Request::FirstKey, 1, 0)).unwrap();
    read_frame(&mut c, &mut Vec::new());
    let written = start.elapsed().as_secs_f64();
    let grown = server.memory("VmHWM").saturating_sub(before);
    let acked = acked.load(Ordering::Relaxed) as f64;
    println!(
        "write flood: 8 clients of 60 KB SETs for {secs} s: {:.0} SETs/s acknowledged; \
         all in the database after {written:.1} s: {:.0} SETs/s written; memory +{} MiB",
        acked / flooding,
        acked / written,
        grown / MIB
    );
    if let Some(l) = l {
        println!("  a cache-only client beside them: {}", summary(l));
    }
}

/// One client pipelining `gets` GETs of a value of `value_len` bytes, all
/// written at once, then reading every answer; the best of 5 rounds.
fn pipelined_reader(bin: &Path, value_len: usize, gets: usize) {
    let server = BenchServer::start(bin, "overload-pipeline", false);
    let value = vec![0x6b; value_len];
    let mut s = TcpStream::connect(server.tcp).unwrap();
    s.set_nodelay(true).unwrap();
    let set = Request::Set {
        key: b"big",
        value: &value,
    };
    s.write_all(&framed(set, 1, FLAGS_CACHE_ONLY)).unwrap();
    let mut buf = Vec::new();
    read_frame(&mut s, &mut buf);
    let requests = framed(Request::Get { key: b"big" }, 2, FLAGS_CACHE_ONLY).repeat(gets);
    // Writing every request before reading would fill both directions'
    // buffers: a writer thread sends them while this one reads.
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let (mut writer, requests) = (s.try_clone().unwrap(), requests.clone());
        let sent = std::thread::spawn(move || writer.write_all(&requests).unwrap());
        read_frames(&mut s, &mut buf, gets);
        sent.join().unwrap();
        best = best.min(start.elapsed());
    }
    println!(
        "pipelined reader: {gets} GETs of {value_len} bytes at once, every answer read: \
         {best:?} (best of 5), {:.2} GB/s",
        (gets * value_len) as f64 / best.as_secs_f64() / 1e9
    );
}

fn burst(bin: &Path) {
    let server = BenchServer::start(bin, "overload-burst", false);
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.tcp;
            std::thread::spawn(move || {
                let mut conns: Vec<TcpStream> = (0..625)
                    .map(|_| TcpStream::connect(addr).unwrap())
                    .collect();
                let get = framed(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY);
                for s in &mut conns {
                    s.write_all(&get).unwrap();
                }
                for s in &mut conns {
                    read_frame(s, &mut Vec::new());
                }
                conns
            })
        })
        .collect();
    let conns: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    println!(
        "burst: {} connections opened at once, all answered after {:?}",
        conns.len(),
        start.elapsed()
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bin = std::env::current_exe().unwrap().with_file_name("nmdb");
    let mut secs = 10;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nmdb" => bin = args.next().expect("--nmdb PATH").into(),
            "--seconds" => {
                secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds N")
            }
            _ => {
                eprintln!("usage: nmdb-overload [--nmdb PATH] [--seconds N]");
                std::process::exit(2);
            }
        }
    }
    // After the command line: a bad one leaves no directory behind.
    server::begin();
    println!("server: {}", bin.display());
    non_readers(&bin, secs);
    many_non_readers(&bin, secs, 1000);
    write_flood(&bin, secs * 3 / 2, false);
    write_flood(&bin, secs * 3 / 2, true);
    burst(&bin);
    pipelined_reader(&bin, 60_000, 3000);
    pipelined_reader(&bin, 100, 50_000);
    server::end_of_run();
}
