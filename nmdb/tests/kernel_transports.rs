//! TIPC and SCTP against the real server, in a kernel that has them.
//!
//! The host kernel (and CI's) lacks both, so these tests are ignored there;
//! `tests/kernel/run.sh` boots a stock Debian kernel under qemu and runs
//! them with `--include-ignored`.

mod support;

use nmdb_net::tipc::{rdm_socket, TipcAddr};
use nmdb_net::{DgramSocket, SockAddr};
use nmdb_proto::{
    Counter, Reply, ReplyCode, Request, FLAGS_CACHE_ONLY, FLAGS_SYNC, TIPC_SERVER_TYPE,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

const NEEDS_KERNEL: &str = "needs TIPC and SCTP in the kernel: run by tests/kernel/run.sh";

/// A client that multicasts each request to a TIPC name, as libnmdb does.
struct TipcClient {
    socket: DgramSocket,
    to: SockAddr,
}

impl TipcClient {
    fn new(instance: u32) -> TipcClient {
        let socket = rdm_socket().expect("TIPC socket");
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let to = TipcAddr::Mcast {
            service: TIPC_SERVER_TYPE,
            lower: instance,
            upper: instance,
        }
        .to_sockaddr();
        TipcClient { socket, to }
    }

    fn send(&self, msg: &[u8]) {
        self.socket.send_to(msg, &self.to).expect("TIPC send");
    }

    fn recv(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 70000];
        let (n, _) = self.socket.recv_from(&mut buf).expect("TIPC reply");
        buf.truncate(n);
        buf
    }

    fn call(&self, msg: &[u8]) -> Vec<u8> {
        self.send(msg);
        self.recv()
    }

    fn quiet_for(&self, wait: Duration) -> bool {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let quiet = self.socket.recv_from(&mut [0u8; 70000]).is_err();
        self.socket.set_read_timeout(Some(PATIENCE)).unwrap();
        quiet
    }
}

/// A one-to-many SCTP client.
struct SctpClient {
    socket: DgramSocket,
    to: SockAddr,
}

impl SctpClient {
    fn new(server: SocketAddr) -> SctpClient {
        let family = nmdb_net::inet_family(&server);
        let socket = nmdb_net::sctp::seqpacket_socket(family).expect("SCTP socket");
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        SctpClient {
            socket,
            to: server.into(),
        }
    }

    fn call(&self, msg: &[u8]) -> Vec<u8> {
        self.socket.send_to(msg, &self.to).expect("SCTP send");
        let mut buf = vec![0u8; 70000];
        let (n, _) = self.socket.recv_from(&mut buf).expect("SCTP reply");
        buf.truncate(n);
        buf
    }
}

fn code(reply: &[u8]) -> ReplyCode {
    Reply::parse(reply).unwrap().reply_code().unwrap()
}

fn data(reply: &[u8]) -> Vec<u8> {
    Reply::parse(reply).unwrap().data().unwrap().to_vec()
}

/// The same request/mode checks the TCP and UDP tests make.
fn every_request_and_mode(call: &dyn Fn(&[u8]) -> Vec<u8>) {
    let set = |k: &[u8], v: &[u8], f| call(&msg(Request::Set { key: k, value: v }, 7, f));
    let get = |k: &[u8], f| call(&msg(Request::Get { key: k }, 7, f));
    let del = |k: &[u8], f| call(&msg(Request::Del { key: k }, 7, f));
    for flags in [0, FLAGS_SYNC] {
        assert_eq!(code(&set(b"k", b"v", flags)), ReplyCode::Ok);
        assert_eq!(data(&get(b"k", 0)), b"v");
        assert_eq!(code(&del(b"k", flags)), ReplyCode::Ok);
        assert_eq!(code(&get(b"k", 0)), ReplyCode::NotIn);
    }
    assert_eq!(code(&set(b"c", b"x", FLAGS_CACHE_ONLY)), ReplyCode::Ok);
    assert_eq!(data(&get(b"c", FLAGS_CACHE_ONLY)), b"x");
    assert_eq!(code(&get(b"c", 0)), ReplyCode::CacheHit);
    assert_eq!(code(&del(b"c", FLAGS_CACHE_ONLY)), ReplyCode::Ok);
    assert_eq!(code(&get(b"c", FLAGS_CACHE_ONLY)), ReplyCode::CacheMiss);
    set(b"n", b"41\0", FLAGS_SYNC);
    let r = call(&msg(
        Request::Incr {
            key: b"n",
            delta: 1,
        },
        7,
        0,
    ));
    assert_eq!(Reply::parse(&r).unwrap().incr_value(), Some(42));
    let cas = call(&msg(
        Request::Cas {
            key: b"n",
            old: b"nope",
            new: b"x",
        },
        7,
        0,
    ));
    assert_eq!(code(&cas), ReplyCode::NoMatch);
    assert_eq!(code(&call(&msg(Request::FirstKey, 7, 0))), ReplyCode::Ok);
    let stats = call(&msg(Request::Stats, 7, 0));
    assert_eq!(
        Reply::parse(&stats).unwrap().stats_bytes().unwrap().len(),
        184
    );
    // A 60000-byte value fits one TIPC or SCTP message each way.
    let big = vec![0x5a; 60_000];
    assert_eq!(code(&set(b"big", &big, 0)), ReplyCode::Ok);
    assert_eq!(data(&get(b"big", 0)), big);
}

#[test]
#[ignore = "needs TIPC and SCTP in the kernel: run by tests/kernel/run.sh"]
fn tipc_server_answers_every_request_and_mode() {
    let _ = NEEDS_KERNEL;
    let dir = TempDir::new("tipc");
    let server = TestServer::start_in(&dir, &["-l", "40", "--no-sctp"]);
    assert!(server.log_text().contains("listening on tipc {26001, 40}"));
    let client = TipcClient::new(40);
    every_request_and_mode(&|m| client.call(m));
    assert!(
        server.counter(Counter::MsgTipc) > 10,
        "msg_tipc counts TIPC messages"
    );
    server.stop();
}

#[test]
#[ignore = "needs TIPC and SCTP in the kernel: run by tests/kernel/run.sh"]
fn sctp_server_answers_every_request_and_mode_over_ipv4_and_ipv6() {
    for host in ["127.0.0.1", "::1"] {
        let dir = TempDir::new("sctp");
        let server = TestServer::start_in(&dir, &["--no-tipc", "-S", host, "-s", "0"]);
        let addr = server.listening_on("sctp");
        assert_eq!(addr.ip(), host.parse::<std::net::IpAddr>().unwrap());
        let client = SctpClient::new(addr);
        every_request_and_mode(&|m| client.call(m));
        assert!(
            server.counter(Counter::MsgSctp) > 10,
            "msg_sctp counts SCTP messages"
        );
        server.stop();
    }
}

/// The receivers wait without a timeout: at shutdown each TIPC and SCTP
/// socket is sent a wake-up per receiver (SCTP: to loopback when bound to
/// a wildcard address). One that missed its wake-up would hold the stop
/// for ten seconds and be left behind with a warning.
#[test]
#[ignore = "needs TIPC and SCTP in the kernel: run by tests/kernel/run.sh"]
fn shutdown_wakes_every_tipc_and_sctp_receiver() {
    for (i, host) in ["0.0.0.0", "::", "127.0.0.1", "::1"]
        .into_iter()
        .enumerate()
    {
        let dir = TempDir::new("wake");
        let instance = (70 + i).to_string();
        let server = TestServer::start_in(&dir, &["-l", &instance, "-S", host, "-s", "0"]);
        let client = SctpClient::new(nmdb_net::reachable_from_here(server.listening_on("sctp")));
        let reply = client.call(&msg(Request::Get { key: b"k" }, 1, 0));
        assert_eq!(code(&reply), ReplyCode::NotIn, "{host}");
        let started = Instant::now();
        let log = server.stop();
        assert!(
            !log.contains("datagram receivers still running") && !log.contains("cannot wake"),
            "{host}: {log}"
        );
        eprintln!("{host}: stopped in {:?}", started.elapsed());
    }
}

#[test]
#[ignore = "needs TIPC and SCTP in the kernel: run by tests/kernel/run.sh"]
fn tipc_server_binds_the_whole_lower_to_upper_range() {
    let dir = TempDir::new("range");
    let server = TestServer::start_in(&dir, &["-l", "50", "-L", "52", "--no-sctp"]);
    assert!(server
        .log_text()
        .contains("listening on tipc {26001, 50, 52}"));
    for instance in 50..=52 {
        let c = TipcClient::new(instance);
        assert_eq!(
            code(&c.call(&msg(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY))),
            ReplyCode::CacheMiss,
            "instance {instance}"
        );
    }
    // Outside the range nobody is bound: the multicast has no destination.
    let outside = TipcClient::new(53);
    let sent = outside
        .socket
        .send_to(&msg(Request::Stats, 1, 0), &outside.to);
    assert!(sent.is_err() || outside.quiet_for(Duration::from_millis(300)));
    server.stop();
}

#[test]
#[ignore = "needs TIPC and SCTP in the kernel: run by tests/kernel/run.sh"]
fn passive_mirror_applies_every_write_and_takes_over_on_sigusr2() {
    let active_dir = TempDir::new("active");
    let passive_dir = TempDir::new("passive");
    let active = TestServer::start_in(&active_dir, &["-l", "60", "--no-sctp"]);
    let mut passive = TestServer::start_in(&passive_dir, &["-l", "60", "-p", "--no-sctp"]);
    let client = TipcClient::new(60);
    // Every write reaches both; only the active server answers.
    for i in 0..50u32 {
        let key = format!("mirror-{i}");
        let flags = if i % 2 == 0 { FLAGS_SYNC } else { 0 };
        assert_eq!(
            code(&client.call(&msg(
                Request::Set {
                    key: key.as_bytes(),
                    value: &i.to_be_bytes()
                },
                i + 1,
                flags
            ))),
            ReplyCode::Ok
        );
    }
    assert_eq!(
        code(&client.call(&msg(Request::Del { key: b"mirror-0" }, 99, FLAGS_SYNC))),
        ReplyCode::Ok
    );
    assert!(
        client.quiet_for(Duration::from_millis(300)),
        "the passive server must not answer"
    );
    // The active server goes away; the passive one takes over.
    active.stop();
    passive.signal(libc::SIGUSR2);
    passive.wait_for_log("SIGUSR2: now active", 1);
    assert_eq!(
        code(&client.call(&msg(Request::Get { key: b"mirror-0" }, 1, 0))),
        ReplyCode::NotIn
    );
    for i in 1..50u32 {
        let key = format!("mirror-{i}");
        assert_eq!(
            data(&client.call(&msg(
                Request::Get {
                    key: key.as_bytes()
                },
                1,
                0
            ))),
            i.to_be_bytes(),
            "{key}"
        );
    }
    // And it is in the passive server's own database, not only its cache.
    let db = passive.db.clone();
    let log = passive_dir.path().join("log2");
    passive.stop();
    let restarted = TestServer::start_on(&db, &log, &[]);
    let mut c = restarted.tcp_client();
    assert_eq!(
        data(&c.call(&msg(Request::Get { key: b"mirror-49" }, 1, 0))),
        49u32.to_be_bytes()
    );
    restarted.stop();
}

#[test]
#[ignore = "needs TIPC and SCTP in the kernel: run by tests/kernel/run.sh"]
fn over_long_tipc_and_sctp_messages_are_dropped_as_broken_never_parsed_cut() {
    let dir = TempDir::new("overlong");
    let server = TestServer::start_in(&dir, &["-l", "80", "-S", "127.0.0.1", "-s", "0"]);
    let sctp_addr = server.listening_on("sctp");
    // A SET whose value runs past the protocol's 64 KiB message: a server
    // that parsed what fits its buffer would store a cut value.
    let mut over_long = msg(
        Request::Set {
            key: b"cut",
            value: &[0x33; 65_600],
        },
        5,
        0,
    );
    over_long.truncate(65_900);

    let tipc = TipcClient::new(80);
    tipc.send(&over_long);
    assert!(
        tipc.quiet_for(Duration::from_millis(300)),
        "no answer to a cut message"
    );
    assert_eq!(server.counter(Counter::NetBrokenReq), 1);
    let miss = tipc.call(&msg(Request::Get { key: b"cut" }, 6, 0));
    assert_eq!(code(&miss), ReplyCode::NotIn, "nothing of it was stored");

    let sctp = SctpClient::new(sctp_addr);
    sctp.socket
        .send_to(&over_long, &sctp.to)
        .expect("SCTP send");
    // Its later pieces are skipped too: the next request is answered as
    // the next one, not mistaken for the rest of the long message.
    let miss = sctp.call(&msg(Request::Get { key: b"cut" }, 7, 0));
    assert_eq!(Reply::parse(&miss).unwrap().id, 7);
    assert_eq!(code(&miss), ReplyCode::NotIn);
    assert_eq!(server.counter(Counter::NetBrokenReq), 2);
    server.stop();
}
