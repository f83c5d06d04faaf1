//! Heavy and hostile load against the real server: clients that never read,
//! write floods, connection bursts, connection limits and idle timeouts.
//! Each test bounds its own traffic; none asserts on timing: they check
//! memory, what was answered, and what was kept.

mod support;

use nmdb_proto::{Counter, Reply, ReplyCode, Request, FLAGS_CACHE_ONLY, FLAGS_SYNC};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const MIB: u64 = 1 << 20;

fn code(reply: &[u8]) -> ReplyCode {
    Reply::parse(reply).unwrap().reply_code().unwrap()
}

/// Calls `read` until two readings taken `gap` apart agree.
fn settled(gap: Duration, mut read: impl FnMut() -> u64) -> u64 {
    let mut last = read();
    loop {
        std::thread::sleep(gap);
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Writes `bytes` without reading anything back; stops early once the
/// server stops reading (a write blocks for `patience`).
fn write_without_reading(addr: SocketAddr, bytes: &[u8], patience: Duration) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(patience)).unwrap();
    for chunk in bytes.chunks(16 * 1024) {
        match s.write_all(chunk) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    s
}

/// Four clients each ask for 1100 copies of a 60 KB value (66 MB of
/// replies) with GETs of `flags` and read none, while a well-behaved
/// client's GETs are answered beside them. `server` has the value stored,
/// where those GETs find it; `answered` counts what the server has done
/// for them. Once it has taken all it will take from them, its peak
/// memory must have grown by at most 64 MiB: a server that answered into
/// memory would hold every reply.
fn non_readers_hold_bounded_memory_and_stall_nobody(
    server: &TestServer,
    value: &[u8],
    flags: u16,
    answered: Counter,
) {
    let rss_before = server.memory("VmRSS");
    let get = framed(Request::Get { key: b"big" }, 2, flags);
    let requests: Vec<u8> = get.iter().copied().cycle().take(get.len() * 1100).collect();
    let hogs: Vec<TcpStream> = (0..4)
        .map(|_| write_without_reading(server.tcp, &requests, Duration::from_millis(500)))
        .collect();

    let mut good = server.tcp_client();
    for i in 0..100u32 {
        let reply = good.call(&msg(Request::Get { key: b"big" }, i, flags));
        assert_eq!(Reply::parse(&reply).unwrap().data().unwrap(), value);
    }
    // (The probe's STATS request counts in neither counter.)
    settled(Duration::from_millis(200), || server.counter(answered));
    let grown = server.memory("VmHWM").saturating_sub(rss_before);
    assert!(
        grown <= 64 * MIB,
        "4 non-reading clients grew the server by {} MiB",
        grown / MIB
    );
    drop(hogs);
}

#[test]
fn clients_that_never_read_their_replies_hold_bounded_memory_and_stall_nobody() {
    let dir = TempDir::new("no-read");
    let server = TestServer::start(&dir, &["--no-udp"]);
    let value = vec![0x6b; 60_000];
    let set = Request::Set {
        key: b"big",
        value: &value,
    };
    assert_eq!(
        code(&server.tcp_client().call(&msg(set, 1, FLAGS_CACHE_ONLY))),
        ReplyCode::Ok
    );
    non_readers_hold_bounded_memory_and_stall_nobody(
        &server,
        &value,
        FLAGS_CACHE_ONLY,
        Counter::CacheGet,
    );
    server.stop();
}

#[test]
fn clients_that_never_read_database_answers_hold_bounded_memory_and_stall_nobody() {
    // Without cache fills, and with the key dropped from the cache, every
    // GET is answered by a database worker: the replies are deferred ones.
    let dir = TempDir::new("no-read-db");
    let server = TestServer::start(&dir, &["--no-udp", "--no-cache-fill"]);
    let value = vec![0x6b; 60_000];
    let mut c = server.tcp_client();
    let set = Request::Set {
        key: b"big",
        value: &value,
    };
    assert_eq!(code(&c.call(&msg(set, 1, FLAGS_SYNC))), ReplyCode::Ok);
    let drop_cached = msg(Request::Del { key: b"big" }, 2, FLAGS_CACHE_ONLY);
    assert_eq!(code(&c.call(&drop_cached)), ReplyCode::Ok);
    non_readers_hold_bounded_memory_and_stall_nobody(&server, &value, 0, Counter::DbHits);
    server.stop();
}

/// Reads `s` until the server ends it, at most `cap` bytes: true when it
/// ended first (end of stream or reset), false when `cap` bytes came.
fn ended_within(s: &mut TcpStream, cap: usize) -> bool {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < cap {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("neither data nor an end after {got} bytes")
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn clients_that_stop_reading_are_closed_once_unread_replies_pass_the_limit() {
    let dir = TempDir::new("unread-limit");
    let mut server = TestServer::start(&dir, &["--no-udp", "--reply-buffer-mib", "4"]);
    let value = vec![0x6b; 60_000];
    let set = Request::Set {
        key: b"big",
        value: &value,
    };
    let mut good = server.tcp_client();
    assert_eq!(
        code(&good.call(&msg(set, 1, FLAGS_CACHE_ONLY))),
        ReplyCode::Ok
    );
    let rss_before = server.memory("VmRSS");
    // 100 clients each ask for 66 MB of replies and read none: alone, each
    // would hold up to about 0.5 MiB of them in the server.
    let get = Request::Get { key: b"big" };
    let one = framed(get, 2, FLAGS_CACHE_ONLY);
    let requests: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1100).collect();
    let mut hogs: Vec<TcpStream> = (0..100)
        .map(|_| write_without_reading(server.tcp, &requests, Duration::from_millis(500)))
        .collect();
    server.wait_for_log_prefix("unread tcp replies hold", 1);

    // A client that reads keeps its connection, even asking for three
    // times the limit at once.
    for id in 0..200 {
        good.send(&msg(get, id, FLAGS_CACHE_ONLY));
    }
    for _ in 0..200 {
        assert_eq!(Reply::parse(&good.recv()).unwrap().data().unwrap(), value);
    }

    // Those that read nothing are closed once over the limit, until what
    // the others hold is under it (how many depends on how far each got
    // before the limit was passed: 34-87 of them in runs so far).
    let closed = hogs
        .iter_mut()
        .filter_map(|hog| ended_within(hog, 4 << 20).then_some(()))
        .count();
    assert!(closed > 0, "none of 100 non-readers was closed");
    let grown = server.memory("VmHWM").saturating_sub(rss_before);
    assert!(
        grown <= 32 * MIB,
        "100 non-reading clients grew the server by {} MiB",
        grown / MIB
    );
    server.stop();
}

/// (send buffer, bytes queued in it) of each established connection on
/// the server's side of `port`, from `ss -tmn` (`tb` and `w` of skmem).
fn server_side_send_buffers(port: u16) -> Vec<(u64, u64)> {
    let out = std::process::Command::new("ss")
        .args(["-Htmn", "state", "established", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) reads socket memory");
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |line: &str, name: &str| -> u64 {
        let start = line
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            + name.len();
        let digits: String = line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    text.lines()
        .filter(|l| l.contains("skmem:("))
        .map(|l| (field(l, ",tb"), field(l, ",w")))
        .collect()
}

#[test]
fn a_client_that_does_not_read_fills_only_its_kernel_send_buffer() {
    for (args, buffer) in [
        (&[][..], 256 << 10),
        (&["--tcp-send-buffer-kib", "64"][..], 64 << 10),
    ] {
        let dir = TempDir::new("send-buffer");
        let server = TestServer::start(&dir, &[&["--no-udp"][..], args].concat());
        let value = vec![0x6b; 60_000];
        let mut good = server.tcp_client();
        let set = Request::Set {
            key: b"big",
            value: &value,
        };
        assert_eq!(
            code(&good.call(&msg(set, 1, FLAGS_CACHE_ONLY))),
            ReplyCode::Ok
        );
        // Three clients each ask for 66 MB of replies and read none. Left
        // to itself the kernel grows such a connection's buffer to
        // megabytes (3.8 MB each, measured), and enough of them fill the
        // memory all of TCP may use.
        let one = framed(Request::Get { key: b"big" }, 2, FLAGS_CACHE_ONLY);
        let requests = one.repeat(1100);
        let _hogs: Vec<TcpStream> = (0..3)
            .map(|_| write_without_reading(server.tcp, &requests, Duration::from_millis(500)))
            .collect();
        // Once the server has written all the sockets take:
        let queued = settled(Duration::from_millis(200), || {
            server_side_send_buffers(server.tcp.port())
                .iter()
                .map(|&(_, queued)| queued)
                .sum()
        });
        let sockets = server_side_send_buffers(server.tcp.port());
        assert_eq!(sockets.len(), 4, "{sockets:?}");
        assert!(
            queued > 0,
            "nothing queued for the non-readers: {sockets:?}"
        );
        for (size, queued) in sockets {
            assert_eq!(size, buffer, "{args:?}");
            // The kernel may pass the size by the one packet it was
            // filling.
            assert!(queued <= buffer + (64 << 10), "{args:?}: {queued} queued");
        }
        // The connection that reads is still answered.
        let get = msg(Request::Get { key: b"big" }, 3, FLAGS_CACHE_ONLY);
        assert_eq!(
            Reply::parse(&good.call(&get)).unwrap().data().unwrap(),
            value
        );
        server.stop();
    }
}

#[test]
fn a_write_flood_is_held_to_the_queue_budget_and_every_acknowledged_write_is_kept() {
    let dir = TempDir::new("flood");
    // A 16 MiB queue budget: the rest of the growth bound is RocksDB's.
    let server = TestServer::start(&dir, &["--no-udp", "--db-queue-mib", "16"]);
    let rss_before = server.memory("VmRSS");
    const CLIENTS: u32 = 8;
    const SETS: u32 = 1000;
    // Few keys, rewritten over and over: the cache holds 8 * 20 values;
    // the 480 MB written pass through the database queue.
    const KEYS: u32 = 20;
    let value = |c: u32, i: u32| vec![(c * 31 + i) as u8; 60_000];
    let key = |c: u32, i: u32| format!("flood-{c}-{}", i % KEYS);

    let done = Arc::new(AtomicBool::new(false));
    // A cache-only client on other keys is answered throughout.
    let bystander = {
        let (done, addr) = (done.clone(), server.tcp);
        std::thread::spawn(move || {
            let mut c = TcpClient::connect(addr);
            let mut answered = 0u32;
            while !done.load(Ordering::Relaxed) {
                let m = msg(
                    Request::Set {
                        key: b"other",
                        value: b"v",
                    },
                    answered,
                    FLAGS_CACHE_ONLY,
                );
                assert_eq!(code(&c.call(&m)), ReplyCode::Ok);
                answered += 1;
            }
            answered
        })
    };
    let flooders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = server.tcp;
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let mut replies = TcpClient::from_stream(stream.try_clone().unwrap());
                let reader = std::thread::spawn(move || {
                    (0..SETS)
                        .filter(|_| code(&replies.recv()) == ReplyCode::Ok)
                        .count()
                });
                for i in 0..SETS {
                    let set = framed(
                        Request::Set {
                            key: key(c, i).as_bytes(),
                            value: &value(c, i),
                        },
                        i,
                        0,
                    );
                    stream.write_all(&set).unwrap();
                }
                reader.join().unwrap()
            })
        })
        .collect();
    for f in flooders {
        assert_eq!(f.join().unwrap(), SETS as usize, "every SET acknowledged");
    }
    done.store(true, Ordering::Relaxed);
    assert!(bystander.join().unwrap() > 0);

    let grown = server.memory("VmHWM").saturating_sub(rss_before);
    // Without a bound the queue alone holds hundreds of MB here; with it:
    // the 16 MiB budget, RocksDB's memtables (two of 32 MiB), the workers'
    // batches (4 MiB each, and RocksDB's copy) and allocator slack.
    assert!(
        grown <= 256 * MIB,
        "the flood grew the server by {} MiB",
        grown / MIB
    );
    // Every key holds its last acknowledged value, in the database itself.
    let log = dir.path().join("log2");
    let db = server.db.clone();
    server.stop();
    let server = TestServer::start_on(&db, &log, &["--no-udp"]);
    let mut c = server.tcp_client();
    for cl in 0..CLIENTS {
        for last in SETS - KEYS..SETS {
            let reply = c.call(&msg(
                Request::Get {
                    key: key(cl, last).as_bytes(),
                },
                last,
                0,
            ));
            assert_eq!(
                Reply::parse(&reply).unwrap().data().unwrap(),
                &value(cl, last)[..],
                "{}",
                key(cl, last)
            );
        }
    }
    server.stop();
}

#[test]
fn the_listen_backlog_takes_a_burst_of_connections() {
    let dir = TempDir::new("backlog");
    let server = TestServer::start(&dir, &["--no-udp"]);
    let ss = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", server.tcp.port())])
        .output()
        .expect("ss (iproute2) reads the listen backlog");
    let line = String::from_utf8(ss.stdout).unwrap();
    // State, Recv-Q, then Send-Q: the backlog of a listening socket.
    let backlog: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(backlog >= 1024, "backlog {backlog}: {line}");

    // 3000 connections at once from 6 threads, each then served.
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let addr = server.tcp;
            std::thread::spawn(move || {
                let conns: Vec<TcpClient> = (0..500).map(|_| TcpClient::connect(addr)).collect();
                conns
            })
        })
        .collect();
    let mut conns: Vec<TcpClient> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let m = msg(Request::Get { key: b"k" }, i as u32, FLAGS_CACHE_ONLY);
        assert_eq!(code(&c.call(&m)), ReplyCode::CacheMiss);
    }
    drop(conns);
    server.stop();
}

/// True once the server closed `s` (end of stream or reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    matches!(s.read(&mut [0u8; 64]), Ok(0) | Err(_))
}

#[test]
fn connections_beyond_the_limit_are_closed_and_logged() {
    let dir = TempDir::new("maxconn");
    let mut server = TestServer::start(&dir, &["--no-udp", "--max-connections", "3"]);
    let mut held: Vec<TcpClient> = (0..3).map(|_| server.tcp_client()).collect();
    for c in &mut held {
        assert_eq!(
            code(&c.call(&msg(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY))),
            ReplyCode::CacheMiss
        );
    }
    let mut fourth = TcpStream::connect(server.tcp).unwrap();
    assert!(
        closed_by_server(&mut fourth),
        "the fourth connection is closed"
    );
    server.wait_for_log_prefix("3 tcp connections open, the most allowed", 1);

    // A freed place is taken again.
    held.pop().unwrap().shutdown();
    let mut again = None;
    for _ in 0..1000 {
        let mut s = TcpStream::connect(server.tcp).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(&framed(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY))
            .unwrap();
        let mut reply = [0u8; 12];
        if s.read_exact(&mut reply).is_ok() {
            again = Some(reply);
            break;
        }
        // Still counted open: the server closes its side asynchronously.
        std::thread::yield_now();
    }
    assert!(again.is_some(), "a connection is accepted once one closed");
    server.stop();
}

#[test]
fn a_connection_busier_than_the_idle_timeout_stays_open_until_it_falls_quiet() {
    let dir = TempDir::new("busy");
    let server = TestServer::start(&dir, &["--no-udp", "--idle-timeout", "1"]);
    let mut c = server.tcp_client();
    // A request every 300 ms for 2.4 s: never a whole second without one,
    // though the connection is older than two timeouts.
    for id in 0..8 {
        let reply = c.call(&msg(Request::Get { key: b"k" }, id, FLAGS_CACHE_ONLY));
        assert_eq!(code(&reply), ReplyCode::CacheMiss, "request {id}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(c.closed(), "the server closes it once it is idle");
    server.stop();
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let dir = TempDir::new("idle");
    let server = TestServer::start(&dir, &["--no-udp", "--idle-timeout", "1"]);
    let mut c = server.tcp_client();
    assert_eq!(
        code(&c.call(&msg(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY))),
        ReplyCode::CacheMiss
    );
    assert!(c.closed(), "the server closes an idle connection");
    // Without the option, nothing is closed for being idle.
    let dir = TempDir::new("not-idle");
    let patient = TestServer::start(&dir, &["--no-udp"]);
    let mut c = patient.tcp_client();
    assert!(
        c.quiet_for(Duration::from_millis(1500)),
        "no close, no bytes"
    );
    assert_eq!(
        code(&c.call(&msg(Request::Get { key: b"k" }, 2, FLAGS_CACHE_ONLY))),
        ReplyCode::CacheMiss
    );
    server.stop();
    patient.stop();
}
