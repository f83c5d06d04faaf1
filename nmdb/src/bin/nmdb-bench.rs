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

#[path = "common/server.rs"]
mod server;

use nmdb_proto::frame::{next_frame, TCP_PREFIX_LEN};
use nmdb_proto::request::parse_header;
use nmdb_proto::{
    begin_frame, end_frame, Answer, Reply, ReplyCode, Request, FLAGS_CACHE_ONLY, FLAGS_SYNC,
    MAX_MSG_SIZE,
};
use server::{process_cpu_time, BenchServer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A blocking client doing one request at a time, like libnmdb.
enum Client {
    Tcp(TcpStream, Vec<u8>),
    Udp(UdpSocket, Vec<u8>),
}

impl Client {
    fn connect(t: Transport, addr: SocketAddr) -> Client {
        match t {
            Transport::Tcp => {
                let s = TcpStream::connect(addr).expect("connect");
                s.set_nodelay(true).unwrap();
                Client::Tcp(s, Vec::with_capacity(70000))
            }
            Transport::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                Client::Udp(s, vec![0; 70000])
            }
        }
    }

    fn call(&mut self, msg: &[u8]) {
        match self {
            Client::Tcp(s, buf) => {
                s.write_all(msg).unwrap();
                buf.clear();
                loop {
                    if next_frame(buf, MAX_MSG_SIZE).unwrap().is_some() {
                        return;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "server closed the connection");
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            Client::Udp(s, buf) => {
                s.send(msg).unwrap();
                s.recv(buf).expect("udp reply lost");
            }
        }
    }
}

fn message(t: Transport, req: Request<'_>, flags: u16) -> Vec<u8> {
    let mut out = Vec::new();
    match t {
        Transport::Tcp => req.encode_framed(1, flags, &mut out),
        Transport::Udp => req.encode(1, flags, &mut out),
    }
    out
}

/// What the echo servers answer to every message: an OK reply carrying
/// the request's id, the size of nmdb's to a SET (12 bytes on TCP with the
/// length, 8 on UDP), so that a libnmdb program's writes take it too
/// (`tests/c/bench.c set` or `set-sync` against an echo server). `msg` is the
/// request as received (TCP: with its length); the reply replaces `out`'s
/// contents.
fn echo_reply(t: Transport, msg: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let body = match t {
        Transport::Tcp => msg.get(TCP_PREFIX_LEN..).unwrap_or_default(),
        Transport::Udp => msg,
    };
    let id = parse_header(body).map_or(0, |(_, h)| h.id);
    let ok = Answer::Code(ReplyCode::Ok);
    match t {
        Transport::Tcp => {
            let start = begin_frame(out);
            ok.encode(id, out);
            end_frame(out, start);
        }
        Transport::Udp => ok.encode(id, out),
    }
}

/// The echo server, run as `nmdb-bench --echo-server`: a process of its own
/// like nmdb, so that its CPU time is measured the same way. It answers
/// every message with [`echo_reply`] and prints its addresses on one line.
///
/// With a `log` (`--fsync-echo-server FILE`), it first appends each message
/// to that file, preallocated as RocksDB does a new log, and fdatasyncs it:
/// the least a server that answers once a write is on disk does, with
/// nothing between the network and the disk. It serves one client at a
/// time well (each fdatasync is its own, not shared by a group).
fn serve_echo(log: Option<std::fs::File>) -> ! {
    let log = log.map(std::sync::Arc::new);
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    println!(
        "echo {} {}",
        tcp.local_addr().unwrap(),
        udp.local_addr().unwrap()
    );
    std::io::stdout().flush().unwrap();
    let udp_log = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut reply = Vec::new();
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            logged(udp_log.as_deref(), &buf[..n]);
            echo_reply(Transport::Udp, &buf[..n], &mut reply);
            let _ = udp.send_to(&reply, peer);
        }
    });
    for s in tcp.incoming().flatten() {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut s = s;
            s.set_nodelay(true).unwrap();
            let mut buf = Vec::new();
            let mut reply = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                while let Ok(Some(total)) = next_frame(&buf, MAX_MSG_SIZE) {
                    logged(log.as_deref(), &buf[..total]);
                    echo_reply(Transport::Tcp, &buf[..total], &mut reply);
                    buf.drain(..total);
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
    }
    std::process::exit(0)
}

/// The fsync echo's work before it answers: `msg` appended to the log and
/// fdatasynced (nothing without a log).
fn logged(log: Option<&std::fs::File>, msg: &[u8]) {
    if let Some(mut file) = log {
        file.write_all(msg).expect("append to the log");
        file.sync_data().expect("fdatasync the log");
    }
}

/// The echo server as `nmdb-bench --event-loop-echo-server`: the same
/// answers from one thread that waits in `epoll_wait` for whichever
/// socket is ready and reads each until it would block (edge-triggered),
/// as event-driven servers do, instead of a thread blocked in `recv` per
/// socket.
fn serve_event_loop_echo() -> ! {
    use std::collections::HashMap;
    use std::os::fd::AsRawFd;
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    udp.set_nonblocking(true).unwrap();
    println!(
        "echo {} {}",
        tcp.local_addr().unwrap(),
        udp.local_addr().unwrap()
    );
    std::io::stdout().flush().unwrap();
    // SAFETY: epoll_create1 takes no pointers.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1");
    let watch = |fd: i32| {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` is valid for the call; the kernel copies it.
        let added = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        assert_eq!(added, 0, "epoll_ctl");
    };
    watch(tcp.as_raw_fd());
    watch(udp.as_raw_fd());
    let mut conns: HashMap<i32, (TcpStream, Vec<u8>)> = HashMap::new();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut chunk = [0u8; 65536];
    let mut reply = Vec::new();
    loop {
        // SAFETY: `events` is valid for 64 entries.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 64, -1) };
        for event in &events[..n.max(0) as usize] {
            let fd = event.u64 as i32;
            if fd == tcp.as_raw_fd() {
                while let Ok((s, _)) = tcp.accept() {
                    s.set_nodelay(true).unwrap();
                    s.set_nonblocking(true).unwrap();
                    watch(s.as_raw_fd());
                    conns.insert(s.as_raw_fd(), (s, Vec::new()));
                }
            } else if fd == udp.as_raw_fd() {
                while let Ok((n, peer)) = udp.recv_from(&mut chunk) {
                    echo_reply(Transport::Udp, &chunk[..n], &mut reply);
                    let _ = udp.send_to(&reply, peer);
                }
            } else if let Some((s, buf)) = conns.get_mut(&fd) {
                let open = loop {
                    match s.read(&mut chunk) {
                        Ok(0) => break false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                        Err(_) => break false,
                    }
                    while let Ok(Some(total)) = next_frame(buf, MAX_MSG_SIZE) {
                        echo_reply(Transport::Tcp, &buf[..total], &mut reply);
                        buf.drain(..total);
                        // 12 bytes: an empty socket buffer always takes them.
                        let _ = s.write(&reply);
                    }
                };
                if !open {
                    conns.remove(&fd);
                }
            }
        }
    }
}

/// The echo server as `nmdb-bench --tokio-echo-server`: the same answers
/// from a task per connection (and one for UDP) on a current-thread tokio
/// runtime, as nmdb served TCP before it had event loops of its own: what
/// such a runtime costs by itself, apart from any server's work.
fn serve_tokio_echo() -> ! {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        println!(
            "echo {} {}",
            tcp.local_addr().unwrap(),
            udp.local_addr().unwrap()
        );
        std::io::stdout().flush().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut reply = Vec::new();
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                echo_reply(Transport::Udp, &buf[..n], &mut reply);
                let _ = udp.send_to(&reply, peer).await;
            }
        });
        while let Ok((mut s, _)) = tcp.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(65536);
                let mut reply = Vec::new();
                loop {
                    while let Ok(Some(total)) = next_frame(&buf, MAX_MSG_SIZE) {
                        echo_reply(Transport::Tcp, &buf[..total], &mut reply);
                        buf.drain(..total);
                        if s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                    match s.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    std::process::exit(0)
}

struct EchoServer {
    child: Child,
    tcp: SocketAddr,
    udp: SocketAddr,
    /// The fsync echo server's log file.
    log: Option<std::path::PathBuf>,
}

impl EchoServer {
    /// The blocking echo server, one thread per client.
    fn start() -> EchoServer {
        Self::start_as(&["--echo-server"], None)
    }

    /// The blocking echo server fdatasyncing each message to a log in
    /// `dir` before answering it; the log is removed with the server.
    fn start_fsyncing(dir: &Path) -> EchoServer {
        let log = dir.join("fsync-echo-log");
        let arg = log.to_string_lossy().into_owned();
        Self::start_as(&["--fsync-echo-server", &arg], Some(log))
    }

    /// `args` pick which echo server: `--echo-server`,
    /// `--fsync-echo-server FILE` (and `log` is FILE) or
    /// `--event-loop-echo-server`.
    fn start_as(args: &[&str], log: Option<std::path::PathBuf>) -> EchoServer {
        let mut child =
            server::dies_with_this_process(&mut Command::new(std::env::current_exe().unwrap()))
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the echo server");
        server::remember(child.id(), log.clone());
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace().skip(1);
        let mut addr = || words.next().expect("echo addresses").parse().unwrap();
        EchoServer {
            tcp: addr(),
            udp: addr(),
            child,
            log,
        }
    }

    /// This echo server over transport `t`.
    fn target(&self, t: Transport) -> Target {
        Target {
            addr: match t {
                Transport::Tcp => self.tcp,
                Transport::Udp => self.udp,
            },
            pid: self.child.id(),
        }
    }
}

/// `server` over transport `t`.
fn server_target(server: &BenchServer, t: Transport) -> Target {
    Target {
        addr: match t {
            Transport::Tcp => server.tcp,
            Transport::Udp => server.udp.expect("started with UDP"),
        },
        pid: server.pid(),
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        server::stop(self.child.id(), self.log.as_deref());
    }
}

/// One side of a measurement: an address, and the process serving it.
#[derive(Clone, Copy)]
struct Target {
    addr: SocketAddr,
    pid: u32,
}

/// What a run measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    ops_per_sec: f64,
    /// The serving process's CPU time per request, in µs.
    cpu_us: f64,
    /// The part of it spent by nmdb's database threads.
    db_us: f64,
}

type MakeMsg<'a> = &'a (dyn Fn(usize, usize) -> Vec<u8> + Sync);

/// Runs `clients` threads doing `ops` calls each, message `make(client,
/// base + i)`. The CPU time is read before the clients hang up: the echo
/// server's threads end with their connections, and their time with them.
fn run(
    t: Transport,
    target: Target,
    clients: usize,
    ops: usize,
    base: usize,
    make: MakeMsg,
) -> Sample {
    let mut connected: Vec<Client> = (0..clients)
        .map(|_| Client::connect(t, target.addr))
        .collect();
    let cpu = process_cpu_time(target.pid);
    let start = Instant::now();
    std::thread::scope(|s| {
        for (c, client) in connected.iter_mut().enumerate() {
            s.spawn(move || {
                for i in 0..ops {
                    client.call(&make(c, base + i));
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = process_cpu_time(target.pid) - cpu;
    drop(connected);
    let total = (clients * ops) as f64;
    Sample {
        ops_per_sec: total / elapsed,
        cpu_us: cpu.all.as_secs_f64() * 1e6 / total,
        db_us: cpu.database.as_secs_f64() * 1e6 / total,
    }
}

fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    samples[samples.len() / 2]
}

/// Runs `a` and `b` `rounds` times, interleaved; the medians.
fn side_by_side(
    t: Transport,
    (a, b): (Target, Target),
    clients: usize,
    ops: usize,
    rounds: usize,
    make: MakeMsg,
) -> (Sample, Sample) {
    let [a, b] = interleaved(t, [a, b], clients, ops, rounds, make);
    (a, b)
}

/// Runs every target `rounds` times, taking turns; their medians.
fn interleaved<const N: usize>(
    t: Transport,
    targets: [Target; N],
    clients: usize,
    ops: usize,
    rounds: usize,
    make: MakeMsg,
) -> [Sample; N] {
    let per_round = (ops / rounds).max(1);
    let mut samples: [Vec<Sample>; N] = std::array::from_fn(|_| Vec::new());
    for r in 0..rounds {
        for (target, samples) in targets.iter().zip(&mut samples) {
            samples.push(run(t, *target, clients, per_round, r * per_round, make));
        }
    }
    samples.map(median)
}

/// An empty file at `path`, its first `preallocated` bytes allocated
/// without changing its size, as RocksDB allocates a new log: each
/// fdatasync of an append then writes the data and the new length.
fn new_file(path: &Path, preallocated: i64) -> std::fs::File {
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
enum Probe {
    /// At the end of the file, into blocks allocated beforehand without
    /// changing its size, as RocksDB does for a new log: each fdatasync
    /// writes the data and the new length.
    Append,
    /// Over records already on disk, as in a recycled log: each fdatasync
    /// writes the data alone.
    Overwrite,
}

/// Time per 128-byte write + fdatasync in `dir`, the median of 5 runs.
fn fdatasync_time(dir: &Path, count: usize, probe: Probe) -> Duration {
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Cache,
    Normal,
    /// Synchronous, at `--durability disk` (the default).
    SyncDisk,
    /// Synchronous, at `--durability process`.
    SyncProcess,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Cache => "cache-only",
            Mode::Normal => "normal",
            Mode::SyncDisk => "sync disk",
            Mode::SyncProcess => "sync process",
        }
    }

    fn flags(self) -> u16 {
        match self {
            Mode::Cache => FLAGS_CACHE_ONLY,
            Mode::Normal => 0,
            Mode::SyncDisk | Mode::SyncProcess => FLAGS_SYNC,
        }
    }
}

/// Whether request keys are spread at random (`--random-keys`) rather than
/// numbered in order; set once, before any case runs.
static RANDOM_KEYS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The key of client `c`'s request `i`: `k<c>-<i>`, which RocksDB inserts
/// near the previous one, or with `--random-keys` 16 hex digits of a hash
/// of both, each landing anywhere in its memtable as keys of a real
/// workload (hashes, user ids) do. The same (c, i) gives the same key in
/// every round and for every server.
fn key(c: usize, i: usize) -> Vec<u8> {
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
fn request(t: Transport, mode: Mode, op: &str, c: usize, i: usize) -> Vec<u8> {
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

/// A synchronous-write figure kept for the summary against the disk.
struct SyncFigure {
    case: String,
    clients: usize,
    nmdb: f64,
    echo: f64,
    /// The fsync echo server's rate (1 client only).
    fsync_echo: Option<f64>,
    /// Requests per fsync.
    group: f64,
    /// The disk's fdatasync time around this case: the disk of a VM
    /// varies by tens of percent from minute to minute.
    fsync: Duration,
}

fn requests(o: &Options) {
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

/// Synchronous SETs at `--durability disk`, one client and `o.clients`
/// taking turns round by round, each round on keys of its own. The 8-client
/// scaling of the summary above divides two cases measured a minute apart,
/// and the disk's fdatasync time drifts by tens of percent in a minute; the
/// ratio of two adjacent rounds drifts much less.
fn sync_scaling(o: &Options) {
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
const FILL_SETS: usize = 4000;

/// Synchronous SETs on a server whose RocksDB has recycled a log its
/// writes filled: 60 KB SETs are written until its LOG says two more logs
/// were reused than at start. (At `--durability disk` the server starts
/// on a reused log filled with 16 MB (the RocksDB backend's log primer); the
/// first reuse after it is of a log that held almost nothing.)
fn recycled_log(o: &Options) {
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

/// Sends `msgs` over one TCP connection, `window` at a time without
/// waiting, and calls `seen` with each reply.
fn pipeline(addr: SocketAddr, msgs: impl Iterator<Item = Vec<u8>>, mut seen: impl FnMut(&Reply)) {
    const WINDOW: usize = 256;
    let mut s = TcpStream::connect(addr).unwrap();
    let mut msgs = msgs.peekable();
    let mut out = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while msgs.peek().is_some() {
        out.clear();
        let mut sent = 0;
        for m in msgs.by_ref().take(WINDOW) {
            out.extend_from_slice(&m);
            sent += 1;
        }
        s.write_all(&out).unwrap();
        while sent > 0 {
            match next_frame(&inbuf, MAX_MSG_SIZE).unwrap() {
                Some(total) => {
                    seen(&Reply::parse(&inbuf[4..total]).expect("a reply"));
                    inbuf.drain(..total);
                    sent -= 1;
                }
                None => {
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "server closed the connection");
                    inbuf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// RSS growth per cached object, with the default cache filled with
/// 16-byte keys and `value_len`-byte values. Twice the capacity is written
/// so that nearly every bucket is full; the objects held are then counted
/// by reading every key back.
fn memory_per_object(bin: &str, value_len: usize) {
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
fn metrics_cost(o: &Options) {
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
fn event_loop_cost(o: &Options) {
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
