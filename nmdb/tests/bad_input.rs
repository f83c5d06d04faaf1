//! Regression tests for every way the original server could be crashed or
//! confused, and for the promise that one client cannot stall the others.

mod support;

use nmdb_proto::{Reply, ReplyCode, Request, FLAGS_CACHE_ONLY, FLAGS_SYNC};
use std::process::Command;
use std::time::Duration;
use support::*;

fn code(reply: &[u8]) -> ReplyCode {
    Reply::parse(reply).unwrap().reply_code().unwrap()
}

#[test]
fn frame_shorter_than_header_closes_only_that_connection() {
    // The original's SIGSEGV: a GET with a huge key size, then a 9-byte frame.
    let dir = TempDir::new("short");
    let mut server = TestServer::start(&dir, &[]);
    let mut other = server.tcp_client();
    for len in 9u8..=11 {
        let mut c = server.tcp_client();
        c.send_raw(&hex("000000111000000101010001100000006b"));
        assert_eq!(Reply::parse(&c.recv()).unwrap().error_code(), Some(0x103));
        let mut frame = vec![0, 0, 0, len];
        frame.extend_from_slice(&hex("10000001010100")[..len as usize - 4]);
        c.send_raw(&frame);
        assert!(c.closed(), "length {len}: connection must close");
        assert!(server.alive());
        assert_eq!(
            code(&other.call(&msg(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY))),
            ReplyCode::CacheMiss
        );
    }
    let stats = other.call(&msg(Request::Stats, 1, 0));
    let broken = u64::from_be_bytes(stats[12 + 19 * 8..12 + 20 * 8].try_into().unwrap());
    assert_eq!(broken, 6, "three huge GETs and three short frames");
    server.stop();
}

#[test]
fn untrustworthy_frame_lengths_close_the_connection() {
    let dir = TempDir::new("lengths");
    let server = TestServer::start(&dir, &[]);
    for prefix in ["00000000", "00000004", "00000008", "00010001", "ffffffff"] {
        let mut c = server.tcp_client();
        c.send_raw(&hex(prefix));
        assert!(c.closed(), "prefix {prefix}");
    }
    let mut c = server.tcp_client();
    assert_eq!(
        code(&c.call(&msg(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY))),
        ReplyCode::CacheMiss
    );
    server.stop();
}

#[test]
fn client_reset_after_request_does_not_kill_the_server() {
    // The original's SIGPIPE: RST (SO_LINGER 0) before the reply is written.
    let dir = TempDir::new("rst");
    let mut server = TestServer::start(&dir, &[]);
    let requests = [
        msg(Request::Get { key: b"k" }, 1, FLAGS_CACHE_ONLY),
        msg(Request::Get { key: b"missing" }, 1, 0),
        msg(
            Request::Set {
                key: b"s",
                value: &[7; 30000],
            },
            1,
            FLAGS_SYNC,
        ),
    ];
    for round in 0..200 {
        for req in &requests {
            let mut c = server.tcp_client();
            reset_on_close(&c.stream);
            c.send(req);
            drop(c);
        }
        assert!(server.alive(), "died in round {round}");
    }
    let mut c = server.tcp_client();
    assert_eq!(
        code(&c.call(&msg(Request::Get { key: b"s" }, 1, 0))),
        ReplyCode::CacheHit
    );
    server.stop();
}

#[test]
fn zero_cache_size_is_refused_before_anything_is_opened() {
    let dir = TempDir::new("c0");
    let db = dir.path().join("db");
    let out = Command::new(nmdb_bin())
        .args(["-f", "-c", "0", "-d"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache size"));
    assert!(!db.exists(), "the database must not be created");
}

#[test]
fn invalid_command_lines_exit_non_zero_with_a_message() {
    let dir = TempDir::new("cli");
    let db = dir.path().join("db");
    for args in [
        &["-b", "qdbm"][..],
        &["-b", "nosuch"],
        &["-t", "70000"],
        &["-c", "many"],
        &["-x"],
        &["-l", "5", "-L", "4"],
    ] {
        let out = Command::new(nmdb_bin())
            .args(["-f", "-d"])
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
        assert!(!db.exists(), "{args:?}: database created");
    }
    let help = Command::new(nmdb_bin()).arg("-h").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("-c <nobj>"));
}

#[test]
fn explicitly_requested_transport_that_cannot_start_is_an_error() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port().to_string();
    let dir = TempDir::new("busy");
    let out = Command::new(nmdb_bin())
        .args([
            "-f",
            "--no-tipc",
            "--no-sctp",
            "-T",
            "127.0.0.1",
            "-t",
            &port,
            "-U",
            "127.0.0.1",
            "-u",
            "0",
            "-d",
        ])
        .arg(dir.path().join("db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port));
}

#[test]
fn pipelined_frames_of_different_sizes_are_all_answered() {
    let dir = TempDir::new("pipe");
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    let value_of = |i: u32| vec![b'a' + (i % 26) as u8; (i as usize * 37) % 3000];
    let mut batch = Vec::new();
    for i in 0..200u32 {
        let key = format!("key-{i}");
        for m in [
            msg(
                Request::Set {
                    key: key.as_bytes(),
                    value: &value_of(i),
                },
                i,
                FLAGS_CACHE_ONLY,
            ),
            msg(
                Request::Get {
                    key: key.as_bytes(),
                },
                i,
                FLAGS_CACHE_ONLY,
            ),
        ] {
            batch.extend_from_slice(&((m.len() + 4) as u32).to_be_bytes());
            batch.extend_from_slice(&m);
        }
    }
    // Once in a single write, once in 7-byte pieces that split every frame.
    for piece in [batch.len(), 7] {
        for chunk in batch.chunks(piece) {
            c.send_raw(chunk);
        }
        for i in 0..200u32 {
            let set = Reply::parse(&c.recv())
                .map(|r| (r.id, r.reply_code()))
                .unwrap();
            assert_eq!(set, (i, Some(ReplyCode::Ok)));
            let reply = c.recv();
            let get = Reply::parse(&reply).unwrap();
            assert_eq!((get.id, get.reply_code()), (i, Some(ReplyCode::CacheHit)));
            assert_eq!(get.data().unwrap(), value_of(i), "piece {piece}, key {i}");
        }
    }
    server.stop();
}

#[test]
fn client_that_never_reads_does_not_stall_others() {
    let dir = TempDir::new("slow");
    let server = TestServer::start(&dir, &[]);
    let mut setup = server.tcp_client();
    let big = vec![b'x'; 60_000];
    setup.call(&msg(
        Request::Set {
            key: b"big",
            value: &big,
        },
        1,
        FLAGS_CACHE_ONLY,
    ));
    // A client that asks for megabytes and reads nothing.
    let mut hog = server.tcp_client();
    hog.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let get_big = msg(Request::Get { key: b"big" }, 1, FLAGS_CACHE_ONLY);
    let mut frame = ((get_big.len() + 4) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&get_big);
    for _ in 0..2000 {
        if std::io::Write::write_all(&mut hog.stream, &frame).is_err() {
            break; // the server stopped reading it: back-pressure works
        }
    }
    let mut other = server.tcp_client();
    for i in 0..100u32 {
        let key = format!("k{i}");
        assert_eq!(
            code(&other.call(&msg(
                Request::Set {
                    key: key.as_bytes(),
                    value: b"v"
                },
                1,
                0
            ))),
            ReplyCode::Ok
        );
    }
    let udp = server.udp_client();
    assert_eq!(
        code(&udp.call(&msg(Request::Get { key: b"k1" }, 1, 0))),
        ReplyCode::CacheHit
    );
    drop(hog);
    server.stop();
}

#[test]
fn oversized_udp_reply_becomes_err_send() {
    let dir = TempDir::new("udpbig");
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    let value = vec![1u8; 65_515];
    c.call(&msg(
        Request::Set {
            key: b"T",
            value: &value,
        },
        1,
        FLAGS_CACHE_ONLY,
    ));
    let udp = server.udp_client();
    let r = udp.call(&msg(Request::Get { key: b"T" }, 1, FLAGS_CACHE_ONLY));
    assert_eq!(Reply::parse(&r).unwrap().error_code(), Some(0x102));
    server.stop();
}
