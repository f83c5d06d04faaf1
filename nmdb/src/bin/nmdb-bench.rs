//! A quick side-by-side benchmark: ops/s of a running `nmdb` against an
//! echo server (the loopback round-trip limit) over the same transport, in
//! the same run.
//!
//! Usage: nmdb-bench [--nmdb PATH] [--ops N] [--clients N]
//!
//! It starts `nmdb` itself (foreground, loopback, a temporary RocksDB
//! directory) and an in-process echo server that answers each message with
//! a reply of the same size an nmdb reply has. Pin it to one CPU with
//! `taskset -c 0` for single-client figures on a VM that idles CPUs.

#[path = "common/server.rs"]
mod server;

use nmdb_proto::frame::next_frame;
use nmdb_proto::{Request, FLAGS_CACHE_ONLY, FLAGS_SYNC, MAX_MSG_SIZE};
use server::BenchServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Tcp,
    Udp,
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

fn message(t: Transport, req: Request<'_>, id: u32, flags: u16) -> Vec<u8> {
    let mut out = Vec::new();
    if t == Transport::Tcp {
        out.extend_from_slice(&((req.encoded_len() + 4) as u32).to_be_bytes());
    }
    req.encode(id, flags, &mut out);
    out
}

/// Echo servers that answer like nmdb would size-wise (a 12-byte reply).
fn start_echo() -> (SocketAddr, SocketAddr) {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addrs = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in tcp.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::new();
                let reply = [0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 8, 3];
                let mut chunk = [0u8; 65536];
                loop {
                    while let Ok(Some(total)) = next_frame(&buf, MAX_MSG_SIZE) {
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
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let reply = [0, 0, 0, 1, 0, 0, 8, 3];
        while let Ok((_, peer)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&reply, peer);
        }
    });
    addrs
}

/// Runs `clients` threads doing `ops` calls each; returns ops/s.
fn run(
    t: Transport,
    addr: SocketAddr,
    clients: usize,
    ops: usize,
    make: &(dyn Fn(usize, usize) -> Vec<u8> + Sync),
) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            s.spawn(move || {
                let mut client = Client::connect(t, addr);
                for i in 0..ops {
                    client.call(&make(c, i));
                }
            });
        }
    });
    (clients * ops) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bin = std::env::current_exe()
        .unwrap()
        .with_file_name("nmdb")
        .to_string_lossy()
        .into_owned();
    let (mut ops, mut clients) = (20_000usize, 8usize);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("option needs a value");
        match a.as_str() {
            "--nmdb" => bin = val(),
            "--ops" => ops = val().parse().expect("--ops N"),
            "--clients" => clients = val().parse().expect("--clients N"),
            _ => {
                eprintln!("usage: nmdb-bench [--nmdb PATH] [--ops N] [--clients N]");
                std::process::exit(2);
            }
        }
    }
    let nmdb = BenchServer::start(bin.as_ref(), "bench", true);
    let echo = start_echo();
    println!(
        "ops/s, {ops} ops per client; echo = loopback round-trip limit with same-sized messages"
    );
    println!(
        "{:<32} {:>12} {:>12} {:>8}",
        "case", "nmdb", "echo", "ratio"
    );
    let modes: [(&str, u16); 3] = [
        ("cache-only", FLAGS_CACHE_ONLY),
        ("normal", 0),
        ("sync", FLAGS_SYNC),
    ];
    for t in [Transport::Tcp, Transport::Udp] {
        let tname = if t == Transport::Tcp { "tcp" } else { "udp" };
        let (addr, echo_addr) = if t == Transport::Tcp {
            (nmdb.tcp, echo.0)
        } else {
            (nmdb.udp.expect("started with UDP"), echo.1)
        };
        for (mname, flags) in modes {
            for (n, label) in [(1usize, "1 client"), (clients, "clients")] {
                // Sync writes are slow by nature (an fsync each, shared when
                // concurrent): fewer of them keep the run short.
                let ops = if flags == FLAGS_SYNC {
                    (ops / 10).max(100)
                } else {
                    ops
                };
                for (op, f) in [
                    (
                        "set",
                        &(move |c: usize, i: usize| {
                            message(
                                t,
                                Request::Set {
                                    key: format!("k{c}-{i}").as_bytes(),
                                    value: b"value-0123456789",
                                },
                                1,
                                flags,
                            )
                        }) as &(dyn Fn(usize, usize) -> Vec<u8> + Sync),
                    ),
                    (
                        "get",
                        &(move |c: usize, i: usize| {
                            message(
                                t,
                                Request::Get {
                                    key: format!("k{c}-{i}").as_bytes(),
                                },
                                1,
                                flags & FLAGS_CACHE_ONLY,
                            )
                        }),
                    ),
                    (
                        "del",
                        &(move |c: usize, i: usize| {
                            message(
                                t,
                                Request::Del {
                                    key: format!("k{c}-{i}").as_bytes(),
                                },
                                1,
                                flags,
                            )
                        }),
                    ),
                ] {
                    if op == "get" && flags == FLAGS_SYNC {
                        continue; // GET has no sync mode
                    }
                    let a = run(t, addr, n, ops, f);
                    let b = run(t, echo_addr, n, ops, f);
                    let case = format!(
                        "{tname} {mname} {op} ({})",
                        if n == 1 {
                            label.to_string()
                        } else {
                            format!("{n} {label}")
                        }
                    );
                    println!("{case:<32} {a:>12.0} {b:>12.0} {:>7.0}%", 100.0 * a / b);
                }
            }
        }
    }
    drop(nmdb);
}
