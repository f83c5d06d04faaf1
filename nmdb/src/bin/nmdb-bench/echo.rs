//! The echo servers nmdb is measured against, each a process of its own
//! (`nmdb-bench --echo-server` and its siblings), and their handles.

use crate::client::{Target, Transport};
use crate::server::{self};
use nmdb_proto::frame::{next_frame, TCP_PREFIX_LEN};
use nmdb_proto::request::parse_header;
use nmdb_proto::{begin_frame, end_frame, Answer, ReplyCode, MAX_MSG_SIZE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What the echo servers answer to every message: an OK reply carrying
/// the request's id, the size of nmdb's to a SET (12 bytes on TCP with the
/// length, 8 on UDP), so that a libnmdb program's writes take it too
/// (`tests/c/bench.c set` or `set-sync` against an echo server). `msg` is the
/// request as received (TCP: with its length); the reply replaces `out`'s
/// contents.
pub(crate) fn echo_reply(t: Transport, msg: &[u8], out: &mut Vec<u8>) {
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
pub(crate) fn serve_echo(log: Option<std::fs::File>) -> ! {
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
pub(crate) fn logged(log: Option<&std::fs::File>, msg: &[u8]) {
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
pub(crate) fn serve_event_loop_echo() -> ! {
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
pub(crate) fn serve_tokio_echo() -> ! {
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

pub(crate) struct EchoServer {
    pub(crate) child: Child,
    pub(crate) tcp: SocketAddr,
    pub(crate) udp: SocketAddr,
    /// The fsync echo server's log file.
    pub(crate) log: Option<std::path::PathBuf>,
}

impl EchoServer {
    /// The blocking echo server, one thread per client.
    pub(crate) fn start() -> EchoServer {
        Self::start_as(&["--echo-server"], None)
    }

    /// The blocking echo server fdatasyncing each message to a log in
    /// `dir` before answering it; the log is removed with the server.
    pub(crate) fn start_fsyncing(dir: &Path) -> EchoServer {
        let log = dir.join("fsync-echo-log");
        let arg = log.to_string_lossy().into_owned();
        Self::start_as(&["--fsync-echo-server", &arg], Some(log))
    }

    /// `args` pick which echo server: `--echo-server`,
    /// `--fsync-echo-server FILE` (and `log` is FILE) or
    /// `--event-loop-echo-server`.
    pub(crate) fn start_as(args: &[&str], log: Option<std::path::PathBuf>) -> EchoServer {
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
    pub(crate) fn target(&self, t: Transport) -> Target {
        Target {
            addr: match t {
                Transport::Tcp => self.tcp,
                Transport::Udp => self.udp,
            },
            pid: self.child.id(),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        server::stop(self.child.id(), self.log.as_deref());
    }
}
