//! The real `nmdb` binary, on loopback with a real RocksDB directory: every
//! request and mode, persistence across restarts and crashes, signals, and
//! read-your-writes with a tiny cache.

mod support;

use nmdb_proto::{Reply, ReplyCode, Request, FLAGS_CACHE_ONLY, FLAGS_SYNC};
use nmdb_server::backend::RocksBackend;
use std::net::SocketAddr;
use support::*;

fn code(reply: &[u8]) -> ReplyCode {
    Reply::parse(reply).unwrap().reply_code().unwrap()
}

fn data(reply: &[u8]) -> Vec<u8> {
    Reply::parse(reply).unwrap().data().unwrap().to_vec()
}

fn set(key: &[u8], value: &[u8], flags: u16) -> Vec<u8> {
    msg(Request::Set { key, value }, 1, flags)
}

fn get(key: &[u8], flags: u16) -> Vec<u8> {
    msg(Request::Get { key }, 1, flags)
}

fn del(key: &[u8], flags: u16) -> Vec<u8> {
    msg(Request::Del { key }, 1, flags)
}

/// Asserts that keys `{prefix}-0` to `{prefix}-{n - 1}` are in the database,
/// key `i` holding `i` in 4 big-endian bytes.
fn assert_numbered_values_kept(c: &mut TcpClient, prefix: &str, n: u32) {
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        assert_eq!(
            data(&c.call(&get(key.as_bytes(), 0))),
            i.to_be_bytes(),
            "{key} lost"
        );
    }
}

/// Runs the same scenario over TCP and over UDP.
fn both_transports(f: impl Fn(&mut dyn FnMut(&[u8]) -> Vec<u8>)) {
    let dir = TempDir::new("both");
    let server = TestServer::start(&dir, &[]);
    let mut tcp = server.tcp_client();
    f(&mut |m| tcp.call(m));
    let udp = server.udp_client();
    f(&mut |m| udp.call(m));
    server.stop();
}

#[test]
fn every_request_in_every_mode_behaves_as_documented() {
    both_transports(|call| {
        let k: &[u8] = b"modes";
        for flags in [0, FLAGS_SYNC] {
            assert_eq!(code(&call(&set(k, b"v1", flags))), ReplyCode::Ok);
            assert_eq!(data(&call(&get(k, 0))), b"v1");
            assert_eq!(code(&call(&del(k, flags))), ReplyCode::Ok);
            assert_eq!(code(&call(&get(k, 0))), ReplyCode::NotIn);
        }
        // Sync DEL of a missing key says so; async cannot know.
        assert_eq!(code(&call(&del(k, FLAGS_SYNC))), ReplyCode::NotIn);
        assert_eq!(code(&call(&del(k, 0))), ReplyCode::Ok);
        // Cache-only never reaches the database.
        assert_eq!(code(&call(&set(k, b"c", FLAGS_CACHE_ONLY))), ReplyCode::Ok);
        assert_eq!(code(&call(&get(k, FLAGS_CACHE_ONLY))), ReplyCode::CacheHit);
        assert_eq!(code(&call(&del(k, FLAGS_CACHE_ONLY))), ReplyCode::Ok);
        assert_eq!(code(&call(&del(k, FLAGS_CACHE_ONLY))), ReplyCode::NotIn);
        assert_eq!(code(&call(&get(k, 0))), ReplyCode::NotIn);
        // CAS and INCR against the database.
        let cas = |old: &'static [u8], new: &'static [u8]| {
            msg(
                Request::Cas {
                    key: b"c",
                    old,
                    new,
                },
                1,
                0,
            )
        };
        assert_eq!(code(&call(&cas(b"a", b"b"))), ReplyCode::NotIn);
        call(&set(b"c", b"a", FLAGS_SYNC));
        assert_eq!(code(&call(&cas(b"x", b"b"))), ReplyCode::NoMatch);
        assert_eq!(code(&call(&cas(b"a", b"b"))), ReplyCode::Ok);
        assert_eq!(data(&call(&get(b"c", 0))), b"b");
        let incr = |delta| msg(Request::Incr { key: b"n", delta }, 1, 0);
        assert_eq!(code(&call(&incr(1))), ReplyCode::NotIn);
        call(&set(b"n", b"41\0", 0));
        let r = call(&incr(1));
        assert_eq!(Reply::parse(&r).unwrap().incr_value(), Some(42));
        call(&set(b"n", b"41", 0));
        assert_eq!(code(&call(&incr(1))), ReplyCode::NoMatch);
        // Clean up so the second transport starts the same way.
        for key in [&b"c"[..], b"n"] {
            call(&del(key, FLAGS_SYNC));
        }
    });
}

#[test]
fn database_read_fills_the_cache_unless_disabled() {
    for (flags, expect) in [
        (&[][..], ReplyCode::CacheHit),
        (&["--no-cache-fill"][..], ReplyCode::CacheMiss),
    ] {
        let dir = TempDir::new("fill");
        let server = TestServer::start(&dir, flags);
        let mut c = server.tcp_client();
        c.call(&set(b"k", b"v", FLAGS_SYNC));
        c.call(&del(b"k", FLAGS_CACHE_ONLY)); // only the database has it now
        assert_eq!(code(&c.call(&get(b"k", 0))), ReplyCode::Ok);
        assert_eq!(
            code(&c.call(&get(b"k", FLAGS_CACHE_ONLY))),
            expect,
            "flags {flags:?}"
        );
        server.stop();
    }
}

#[test]
fn datagrams_queued_together_are_each_answered_to_their_sender() {
    // Sent without waiting, they queue at the server, which takes several
    // per receive and sends their answers together; a broken one among
    // them is dropped alone.
    let dir = TempDir::new("udp-burst");
    let server = TestServer::start(&dir, &[]);
    let clients: Vec<UdpClient> = (0..6).map(|_| server.udp_client()).collect();
    for round in 0..20u32 {
        for (c, client) in clients.iter().enumerate() {
            let key = format!("burst-{c}");
            let id = round * 10 + c as u32 + 1;
            let value = id.to_be_bytes();
            client.send(&msg(
                Request::Set {
                    key: key.as_bytes(),
                    value: &value,
                },
                id,
                FLAGS_CACHE_ONLY,
            ));
            if c == 2 {
                client.send(b"short");
            }
        }
        for (c, client) in clients.iter().enumerate() {
            let id = round * 10 + c as u32 + 1;
            let reply = client.recv();
            assert_eq!(Reply::parse(&reply).unwrap().id, id, "client {c}");
            assert_eq!(code(&reply), ReplyCode::Ok);
        }
    }
    for (c, client) in clients.iter().enumerate() {
        let key = format!("burst-{c}");
        let reply = client.call(&get(key.as_bytes(), FLAGS_CACHE_ONLY));
        assert_eq!(data(&reply), (190 + c as u32 + 1).to_be_bytes());
    }
    assert_eq!(server.counter(nmdb_proto::Counter::NetBrokenReq), 20);
    server.stop();
}

#[test]
fn data_survives_a_clean_restart() {
    let dir = TempDir::new("restart");
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    c.call(&set(b"persist", b"value", 0));
    c.call(&set(b"gone", b"x", FLAGS_SYNC));
    c.call(&del(b"gone", 0));
    server.stop();
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    assert_eq!(data(&c.call(&get(b"persist", 0))), b"value");
    assert_eq!(code(&c.call(&get(b"gone", 0))), ReplyCode::NotIn);
    server.stop();
}

#[test]
fn at_disk_durability_the_first_log_is_one_written_over_in_place() {
    // The server primes the log only with room on the disk; where there
    // is less, it must leave the log alone.
    for (durability, wants_primed) in [("disk", true), ("process", false)] {
        let dir = TempDir::new(&format!("primed-{durability}"));
        let server = TestServer::start(&dir, &["--durability", durability]);
        let room = RocksBackend::has_room_to_prime_log(&server.db).unwrap();
        let rocksdb_log = std::fs::read_to_string(server.db.join("LOG")).unwrap();
        assert_eq!(
            rocksdb_log.contains("from recycle list"),
            wants_primed && room,
            "--durability {durability}, room: {room}"
        );
        let mut c = server.tcp_client();
        let reply = c.call(&set(b"k", b"v", FLAGS_SYNC));
        assert_eq!(code(&reply), ReplyCode::Ok);
        server.stop();
    }
}

/// Sync SETs and DELs from several clients at once (so that the disk
/// level's group commit answers many per fsync), then SIGKILL right after
/// the last reply: every acknowledged change is there after a restart.
fn sync_writes_survive_kill_9(durability: &str) {
    const CLIENTS: u32 = 4;
    const PER_CLIENT: u32 = 150;
    let dir = TempDir::new(&format!("kill9-{durability}"));
    let level = ["--durability", durability];
    let server = TestServer::start(&dir, &level);
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let mut client = server.tcp_client();
            s.spawn(move || {
                for i in 0..PER_CLIENT {
                    let key = format!("sync-{c}-{i}");
                    let reply = client.call(&set(key.as_bytes(), &i.to_be_bytes(), FLAGS_SYNC));
                    assert_eq!(code(&reply), ReplyCode::Ok, "{key}");
                    if i % 3 == 0 {
                        let reply = client.call(&del(key.as_bytes(), FLAGS_SYNC));
                        assert_eq!(code(&reply), ReplyCode::Ok, "del {key}");
                    }
                }
            });
        }
    });
    server.kill9();
    let server = TestServer::start(&dir, &level);
    let mut c = server.tcp_client();
    for client in 0..CLIENTS {
        for i in 0..PER_CLIENT {
            let key = format!("sync-{client}-{i}");
            let reply = c.call(&get(key.as_bytes(), 0));
            if i % 3 == 0 {
                assert_eq!(code(&reply), ReplyCode::NotIn, "deleted {key} is back");
            } else {
                assert_eq!(data(&reply), i.to_be_bytes(), "{key} lost");
            }
        }
    }
    server.stop();
}

#[test]
fn changes_written_over_a_recycled_database_log_survive_kill_9() {
    // 60 KB values until RocksDB reuses a log that these writes filled:
    // its tail then holds older records, which a recovery must not replay.
    // A server primed at start (--durability disk, with room) begins on a
    // reused log of filler, and its first reuse after that is of a log
    // that held almost nothing: two reuses more than at start.
    let dir = TempDir::new("kill9-recycled");
    let mut server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    let value = vec![0x5a; 60_000];
    let mut written = 0u32;
    let reuses = || {
        std::fs::read_to_string(dir.path().join("db/LOG"))
            .unwrap()
            .matches("from recycle list")
            .count()
    };
    let at_start = reuses();
    while reuses() < at_start + 2 {
        for _ in 0..500 {
            c.send(&set(format!("fill-{written}").as_bytes(), &value, 0));
            written += 1;
        }
        for _ in 0..500 {
            assert_eq!(code(&c.recv()), ReplyCode::Ok);
        }
        assert!(written < 20_000, "no log was recycled after {written} SETs");
    }
    // Every one of them deleted, a few keys changed; then killed.
    for i in 0..written {
        c.send(&del(format!("fill-{i}").as_bytes(), FLAGS_SYNC));
    }
    for i in 0..written {
        assert_eq!(code(&c.recv()), ReplyCode::Ok, "del fill-{i}");
    }
    for i in 0..100u32 {
        let reply = c.call(&set(
            format!("kept-{i}").as_bytes(),
            &i.to_be_bytes(),
            FLAGS_SYNC,
        ));
        assert_eq!(code(&reply), ReplyCode::Ok);
    }
    server.kill9();
    server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    for i in 0..written {
        let key = format!("fill-{i}");
        assert_eq!(
            code(&c.call(&get(key.as_bytes(), 0))),
            ReplyCode::NotIn,
            "{key} is back"
        );
    }
    assert_numbered_values_kept(&mut c, "kept", 100);
    server.stop();
}

/// Synchronous writes skip the queue only when nothing is pending on
/// their keys' stripes; pipelined behind queued writes of the same keys
/// they queue, and the database ends with the last write of each key.
fn pipelined_writes_keep_their_order(durability: &str) {
    const KEYS: u32 = 300;
    let dir = TempDir::new(&format!("order-{durability}"));
    let level = ["--durability", durability];
    let server = TestServer::start(&dir, &level);
    let mut c = server.tcp_client();
    let mut sent = 0;
    for i in 0..KEYS {
        let key = format!("order-{i}");
        let key = key.as_bytes();
        c.send(&set(key, b"first", 0));
        c.send(&set(key, b"second", FLAGS_SYNC));
        c.send(&set(key, b"third", 0));
        sent += 3;
        if i % 2 == 0 {
            c.send(&del(key, FLAGS_SYNC));
            sent += 1;
        }
    }
    for _ in 0..sent {
        assert_eq!(code(&c.recv()), ReplyCode::Ok);
    }
    // One at a time now: these find their stripes idle and skip the queue.
    for i in (0..KEYS).step_by(3) {
        let key = format!("order-{i}");
        assert_eq!(
            code(&c.call(&set(key.as_bytes(), b"last", FLAGS_SYNC))),
            ReplyCode::Ok
        );
    }
    let expect = |i: u32| -> Option<&'static [u8]> {
        if i.is_multiple_of(3) {
            Some(b"last")
        } else if i.is_multiple_of(2) {
            None
        } else {
            Some(b"third")
        }
    };
    // A clean stop: the asynchronous "third" may still be queued.
    server.stop();
    let server = TestServer::start(&dir, &level);
    let mut c = server.tcp_client();
    for i in 0..KEYS {
        let key = format!("order-{i}");
        let reply = c.call(&get(key.as_bytes(), 0));
        match expect(i) {
            Some(value) => assert_eq!(data(&reply), value, "{key}"),
            None => assert_eq!(code(&reply), ReplyCode::NotIn, "{key}"),
        }
    }
    server.stop();
}

#[test]
fn pipelined_writes_keep_their_order_at_disk_durability() {
    pipelined_writes_keep_their_order("disk");
}

#[test]
fn pipelined_writes_keep_their_order_at_process_durability() {
    pipelined_writes_keep_their_order("process");
}

#[test]
fn sync_writes_survive_kill_9_right_after_the_reply_at_disk_durability() {
    sync_writes_survive_kill_9("disk");
}

#[test]
fn sync_writes_survive_kill_9_right_after_the_reply_at_process_durability() {
    sync_writes_survive_kill_9("process");
}

/// A client that pipelines requests and shuts its sending side down gets
/// every answer, those from the database and the group commit included,
/// and then end of stream.
#[test]
fn a_client_that_half_closes_gets_every_answer_then_end_of_stream() {
    const N: u32 = 200;
    let dir = TempDir::new("half-close");
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    c.send(&set(b"stored", b"v", FLAGS_SYNC));
    assert_eq!(code(&c.recv()), ReplyCode::Ok);
    // Out of the cache: GETs of it are answered by a database worker.
    c.send(&del(b"stored", FLAGS_CACHE_ONLY));
    assert_eq!(code(&c.recv()), ReplyCode::Ok);
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..N {
        let id = 1000 + i;
        let key = format!("hc-{i}");
        let (req, flags) = match i % 3 {
            0 => (
                Request::Set {
                    key: key.as_bytes(),
                    value: b"v",
                },
                FLAGS_SYNC,
            ),
            1 => (Request::Get { key: b"stored" }, 0),
            _ => (Request::Get { key: b"stored" }, FLAGS_CACHE_ONLY),
        };
        c.send(&msg(req, id, flags));
        ids.insert(id);
    }
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    while let Some(frame) = c.recv_frame() {
        let reply = Reply::parse(&frame[4..]).unwrap();
        assert!(
            ids.remove(&reply.id),
            "unexpected or repeated id {}",
            reply.id
        );
    }
    assert!(ids.is_empty(), "{} requests never answered", ids.len());
    server.stop();
}

/// SIGTERM while synchronous writes are still pipelined in: the server
/// exits cleanly, and every write it acknowledged, before or during its
/// shutdown, is there after a restart.
#[test]
fn sigterm_with_sync_writes_in_flight_keeps_every_acknowledged_one() {
    const N: u32 = 3000;
    let dir = TempDir::new("term-sync");
    let mut server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    let mut pipelined = Vec::new();
    for i in 0..N {
        let key = format!("term-{i}");
        let mut framed = Vec::new();
        Request::Set {
            key: key.as_bytes(),
            value: b"v",
        }
        .encode_framed(i, FLAGS_SYNC, &mut framed);
        pipelined.extend_from_slice(&framed);
    }
    c.send_raw(&pipelined);
    // Some are answered: the rest are in flight.
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 10 {
        let frame = c.recv();
        let reply = Reply::parse(&frame).unwrap();
        assert_eq!(reply.reply_code(), Some(ReplyCode::Ok));
        acknowledged.push(reply.id);
    }
    server.signal(libc::SIGTERM);
    while let Some(frame) = c.recv_frame() {
        let reply = Reply::parse(&frame[4..]).unwrap();
        if reply.reply_code() == Some(ReplyCode::Ok) {
            acknowledged.push(reply.id);
        }
    }
    let status = server.wait_exit();
    assert!(status.success(), "{status}:\n{}", server.log_text());
    assert!(!server.log_text().contains("panicked"));
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    for id in acknowledged {
        let key = format!("term-{id}");
        assert_eq!(data(&c.call(&get(key.as_bytes(), 0))), b"v", "{key} lost");
    }
    server.stop();
}

#[test]
fn an_unknown_durability_is_refused_with_the_choices() {
    let out = std::process::Command::new(nmdb_bin())
        .args(["--durability", "fsync", "-f"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'fsync'") && err.contains("disk, process"),
        "{err}"
    );
}

#[test]
fn sigterm_applies_thousands_of_queued_async_sets() {
    let dir = TempDir::new("sigterm");
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    // Pipelined: the replies come at once, the writes are still queued.
    const N: u32 = 20_000;
    for i in 0..N {
        c.send(&set(format!("async-{i}").as_bytes(), &i.to_be_bytes(), 0));
    }
    for _ in 0..N {
        assert_eq!(code(&c.recv()), ReplyCode::Ok);
    }
    server.stop();
    let server = TestServer::start(&dir, &["-c", "1"]);
    let mut c = server.tcp_client();
    assert_numbered_values_kept(&mut c, "async", N);
    server.stop();
}

#[test]
fn reads_see_acknowledged_writes_with_a_tiny_cache() {
    let dir = TempDir::new("ryw");
    // -c 1: 1024 objects, far fewer than the keys written.
    let server = TestServer::start(&dir, &["-c", "1"]);
    let mut c = server.tcp_client();
    let udp = server.udp_client();
    for round in 0..3u8 {
        for i in 0..5000u32 {
            let key = format!("ryw-{i}");
            let value = [round, i as u8];
            assert_eq!(
                code(&c.call(&set(key.as_bytes(), &value, 0))),
                ReplyCode::Ok
            );
            if i % 7 == 0 {
                assert_eq!(code(&c.call(&del(key.as_bytes(), 0))), ReplyCode::Ok);
            }
        }
        for i in 0..5000u32 {
            let key = format!("ryw-{i}");
            let r = if i % 2 == 0 {
                c.call(&get(key.as_bytes(), 0))
            } else {
                udp.call(&get(key.as_bytes(), 0))
            };
            if i % 7 == 0 {
                assert_eq!(code(&r), ReplyCode::NotIn, "{key} deleted");
            } else {
                assert!(matches!(code(&r), ReplyCode::Ok | ReplyCode::CacheHit));
                assert_eq!(data(&r), [round, i as u8], "{key} round {round}");
            }
        }
    }
    server.stop();
}

#[test]
fn read_only_refuses_changes_and_sigusr1_switches_to_it() {
    let dir = TempDir::new("ro");
    let mut server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    assert_eq!(code(&c.call(&set(b"k", b"v", FLAGS_SYNC))), ReplyCode::Ok);
    server.signal(libc::SIGUSR1);
    server.wait_for_log("SIGUSR1: now read-only", 1);
    let r = c.call(&set(b"k", b"w", 0));
    assert_eq!(Reply::parse(&r).unwrap().error_code(), Some(0x107));
    assert_eq!(data(&c.call(&get(b"k", 0))), b"v");
    server.stop();
    // And -r from the start, on the same database.
    let server = TestServer::start(&dir, &["-r"]);
    let mut c = server.tcp_client();
    assert_eq!(
        Reply::parse(&c.call(&del(b"k", FLAGS_SYNC)))
            .unwrap()
            .error_code(),
        Some(0x107)
    );
    assert_eq!(data(&c.call(&get(b"k", 0))), b"v");
    server.stop();
}

#[test]
fn passive_server_applies_writes_silently_until_sigusr2() {
    let dir = TempDir::new("passive");
    let mut server = TestServer::start(&dir, &["-p"]);
    let udp = server.udp_client();
    udp.send(&set(b"mirror", b"m", FLAGS_SYNC));
    assert!(udp.quiet_for(std::time::Duration::from_millis(200)));
    server.signal(libc::SIGUSR2);
    server.wait_for_log("SIGUSR2: now active", 1);
    assert_eq!(data(&udp.call(&get(b"mirror", 0))), b"m");
    server.stop();
}

#[test]
fn sighup_reopens_the_log_file_for_rotation() {
    let dir = TempDir::new("hup");
    let mut server = TestServer::start(&dir, &[]);
    let rotated = dir.path().join("nmdb.log.1");
    std::fs::rename(&server.log, &rotated).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("log file reopened", 1);
    let log = server.stop();
    assert!(log.contains("clean shutdown"), "new log: {log}");
    let old_log = std::fs::read_to_string(rotated).unwrap();
    assert!(
        old_log.lines().any(|l| support::log_message(l) == "ready"),
        "rotated log: {old_log}"
    );
}

#[test]
fn pid_file_is_written_and_removed_on_clean_exit() {
    let dir = TempDir::new("pid");
    let pid_file = dir.path().join("nmdb.pid");
    let server = TestServer::start(&dir, &["-i", pid_file.to_str().unwrap()]);
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), server.pid().to_string());
    server.stop();
    assert!(!pid_file.exists());
}

#[test]
fn null_backend_forgets_writes_and_cannot_walk() {
    let dir = TempDir::new("null");
    let server = TestServer::start(&dir, &["-b", "null"]);
    let mut c = server.tcp_client();
    assert_eq!(code(&c.call(&set(b"k", b"v", FLAGS_SYNC))), ReplyCode::Ok);
    assert_eq!(code(&c.call(&del(b"k", FLAGS_CACHE_ONLY))), ReplyCode::Ok);
    assert_eq!(code(&c.call(&get(b"k", 0))), ReplyCode::NotIn);
    // Cached by a SET for the database, yet not stored there.
    assert_eq!(code(&c.call(&set(b"j", b"v", FLAGS_SYNC))), ReplyCode::Ok);
    assert_eq!(code(&c.call(&del(b"j", FLAGS_SYNC))), ReplyCode::NotIn);
    let r = c.call(&msg(Request::FirstKey, 1, 0));
    assert_eq!(Reply::parse(&r).unwrap().error_code(), Some(0x106));
    server.stop();
}

#[test]
fn key_walk_visits_every_stored_key() {
    let dir = TempDir::new("walk");
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    let mut want: Vec<Vec<u8>> = (0..300u32).map(|i| format!("w{i}").into_bytes()).collect();
    for k in &want {
        c.call(&set(k, b"v", 0)); // async: the walk must still see them
    }
    let mut seen = Vec::new();
    let mut r = c.call(&msg(Request::FirstKey, 1, 0));
    while code(&r) == ReplyCode::Ok {
        let k = data(&r);
        r = c.call(&msg(Request::NextKey { key: &k }, 1, 0));
        seen.push(k);
    }
    assert_eq!(code(&r), ReplyCode::NotIn);
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
    server.stop();
}

#[test]
fn starts_in_the_background_by_default_and_stops_on_sigterm() {
    let dir = TempDir::new("daemon");
    let pid_file = dir.path().join("nmdb.pid");
    let status = std::process::Command::new(nmdb_bin())
        .args(["--no-tipc", "--no-sctp"])
        .args(LOOPBACK)
        .arg("-d")
        .arg(dir.path().join("db"))
        .arg("-o")
        .arg(dir.path().join("log"))
        .arg("-i")
        .arg(&pid_file)
        .status()
        .unwrap();
    assert!(status.success());
    // The parent returned only once the daemon was serving.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + PATIENCE;
    while pid_file.exists() {
        assert!(std::time::Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn transports_the_kernel_lacks_are_logged_and_skipped() {
    let dir = TempDir::new("kernel");
    // Every transport at its default, TCP and UDP on loopback.
    let server = TestServer::start_with(&dir.path().join("db"), &dir.path().join("nmdb.log"), &[]);
    let text = server.stop();
    let expect = |available: bool, unavailable_line: &str, listening_line: &str| {
        if available {
            assert!(text.contains(listening_line), "{text}");
        } else {
            assert!(
                text.contains(unavailable_line) && text.contains("the kernel has no"),
                "{text}"
            );
        }
    };
    expect(
        nmdb_net::tipc::available(),
        "tipc {26001, 10} unavailable",
        "listening on tipc {26001, 10}",
    );
    expect(
        nmdb_net::sctp::available(),
        "sctp 0.0.0.0:26010 unavailable",
        "listening on sctp 0.0.0.0:26010",
    );
    assert!(text.contains("listening on tcp 127.0.0.1:"));
}

#[test]
fn explicitly_requested_tipc_or_sctp_missing_from_the_kernel_is_an_error() {
    if nmdb_net::tipc::available() && nmdb_net::sctp::available() {
        return; // nothing is missing on this kernel; the guest tests cover the transports
    }
    let dir = TempDir::new("explicit");
    let args: &[&str] = if nmdb_net::tipc::available() {
        &["-s", "0", "--no-tipc"]
    } else {
        &["-l", "12", "--no-sctp"]
    };
    let out = std::process::Command::new(nmdb_bin())
        .arg("-f")
        .args(LOOPBACK)
        .arg("-d")
        .arg(dir.path().join("db"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the kernel has no"));
}

#[test]
fn concurrent_writers_leave_cache_and_database_agreeing() {
    // Writers on both transports race on the same few keys (SET and DEL,
    // async and sync). Whatever order wins, the cache and the database must
    // end with the same state for every key: the cache update and the
    // database queue see each key's writes in one order.
    let dir = TempDir::new("race");
    let server = TestServer::start(&dir, &[]);
    let keys: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'r', i]).collect();
    const THREADS: usize = 6;
    // Rounds in lockstep: in each, every thread writes the same key at
    // once, so the last write of every key is a race.
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS as u8 {
            let (keys, server, barrier) = (&keys, &server, &barrier);
            s.spawn(move || {
                let mut tcp = server.tcp_client();
                let udp = server.udp_client();
                for round in 0..400u32 {
                    let key = &keys[round as usize % keys.len()];
                    let value = [t, (round % 251) as u8];
                    let flags = if round % 5 == 0 { FLAGS_SYNC } else { 0 };
                    let m = if (round + t as u32).is_multiple_of(7) {
                        del(key, flags)
                    } else {
                        set(key, &value, flags)
                    };
                    barrier.wait();
                    let r = if (round + t as u32).is_multiple_of(2) {
                        tcp.call(&m)
                    } else {
                        udp.call(&m)
                    };
                    assert!(matches!(code(&r), ReplyCode::Ok | ReplyCode::NotIn));
                }
            });
        }
    });
    let mut c = server.tcp_client();
    let cached: Vec<Option<Vec<u8>>> = keys
        .iter()
        .map(|k| {
            let r = c.call(&get(k, FLAGS_CACHE_ONLY));
            (code(&r) == ReplyCode::CacheHit).then(|| data(&r))
        })
        .collect();
    server.stop();
    // Restarted, the cache is empty: every GET answers from the database.
    let server = TestServer::start(&dir, &[]);
    let mut c = server.tcp_client();
    for (k, in_cache) in keys.iter().zip(cached) {
        let r = c.call(&get(k, 0));
        let in_db = (code(&r) == ReplyCode::Ok).then(|| data(&r));
        if let Some(v) = in_cache {
            assert_eq!(in_db, Some(v), "key {k:?}: cache and database disagree");
        } else {
            // Deleted last (a cached value may also have been evicted, but
            // this cache is far larger than 8 keys).
            assert_eq!(
                in_db, None,
                "key {k:?}: deleted from the cache, still in the database"
            );
        }
    }
    server.stop();
}

#[test]
fn udp_on_every_address_answers_from_the_address_each_request_was_sent_to() {
    let dir = TempDir::new("udp-any");
    let server = TestServer::start(&dir, &["-U", "0.0.0.0", "--no-tcp"]);
    // 127.0.0.2 is this host too, but replies to 127.0.0.1 leave from
    // 127.0.0.1 unless the server says otherwise; a connected client (as
    // libnmdb's) takes only replies from the address it wrote to.
    let second = SocketAddr::from(([127, 0, 0, 2], server.udp.port()));
    let client = UdpClient::connect(second);
    // Answered at once, and answered later by the database queue.
    assert_eq!(
        code(&client.call(&set(b"k", b"v", FLAGS_SYNC))),
        ReplyCode::Ok
    );
    assert_eq!(
        code(&client.call(&get(b"k", FLAGS_CACHE_ONLY))),
        ReplyCode::CacheHit
    );
    assert_eq!(code(&client.call(&del(b"k", FLAGS_SYNC))), ReplyCode::Ok);
    // Listening beyond loopback is warned about, with where to read more.
    let log = server.stop();
    assert!(
        log.contains("udp listens on 0.0.0.0:") && log.contains("SECURITY in nmdb(1)"),
        "{log}"
    );
}

#[test]
fn udp_on_loopback_is_not_warned_about() {
    let dir = TempDir::new("udp-lo");
    let server = TestServer::start(&dir, &[]);
    let log = server.stop();
    assert!(log.contains("listening on udp 127.0.0.1:"), "{log}");
    assert!(!log.contains("udp listens on"), "{log}");
}
