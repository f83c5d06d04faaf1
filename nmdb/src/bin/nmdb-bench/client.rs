//! The clients that measure: one request at a time over TCP or UDP, run
//! against a target (nmdb or an echo server) in interleaved rounds.

use crate::server::{process_cpu_time, BenchServer};
use nmdb_proto::frame::next_frame;
use nmdb_proto::{Reply, Request, MAX_MSG_SIZE};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A blocking client doing one request at a time, like libnmdb.
pub(crate) enum Client {
    Tcp(TcpStream, Vec<u8>),
    Udp(UdpSocket, Vec<u8>),
}

impl Client {
    pub(crate) fn connect(t: Transport, addr: SocketAddr) -> Client {
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

    pub(crate) fn call(&mut self, msg: &[u8]) {
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

pub(crate) fn message(t: Transport, req: Request<'_>, flags: u16) -> Vec<u8> {
    let mut out = Vec::new();
    match t {
        Transport::Tcp => req.encode_framed(1, flags, &mut out),
        Transport::Udp => req.encode(1, flags, &mut out),
    }
    out
}

/// `server` over transport `t`.
pub(crate) fn server_target(server: &BenchServer, t: Transport) -> Target {
    Target {
        addr: match t {
            Transport::Tcp => server.tcp,
            Transport::Udp => server.udp.expect("started with UDP"),
        },
        pid: server.pid(),
    }
}

/// One side of a measurement: an address, and the process serving it.
#[derive(Clone, Copy)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
}

/// What a run measured.
#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) ops_per_sec: f64,
    /// The serving process's CPU time per request, in µs.
    pub(crate) cpu_us: f64,
    /// The part of it spent by nmdb's database threads.
    pub(crate) db_us: f64,
}

pub(crate) type MakeMsg<'a> = &'a (dyn Fn(usize, usize) -> Vec<u8> + Sync);

/// Runs `clients` threads doing `ops` calls each, message `make(client,
/// base + i)`. The CPU time is read before the clients hang up: the echo
/// server's threads end with their connections, and their time with them.
pub(crate) fn run(
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

pub(crate) fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    samples[samples.len() / 2]
}

/// Runs `a` and `b` `rounds` times, interleaved; the medians.
pub(crate) fn side_by_side(
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
pub(crate) fn interleaved<const N: usize>(
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

/// Sends `msgs` over one TCP connection, `window` at a time without
/// waiting, and calls `seen` with each reply.
pub(crate) fn pipeline(
    addr: SocketAddr,
    msgs: impl Iterator<Item = Vec<u8>>,
    mut seen: impl FnMut(&Reply),
) {
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
