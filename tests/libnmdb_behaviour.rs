//! What the library adds to the original: bounded waits, resends of reads
//! only, ids that tell replies apart, re-connection, a handle shared by
//! threads, and error returns (never crashes) for misuse.

mod libnmdb_common;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libnmdb_common::*;
use nmdb::*;

fn frame_for(kind: Kind, msg: Vec<u8>) -> Vec<u8> {
    match kind {
        Kind::Tcp => tcp_frame(&msg),
        Kind::Udp => msg,
    }
}

/// A reply header (+ payload) for request `msg`, with its id shifted by
/// `id_offset` (0 = the right id).
fn reply_to(msg: &[u8], id_offset: u32, code: u32, payload: &[u8]) -> Vec<u8> {
    let mut r = (request_id(msg) + id_offset).to_be_bytes().to_vec();
    r.extend_from_slice(&code.to_be_bytes());
    r.extend_from_slice(payload);
    r
}

fn value_payload(v: &[u8]) -> Vec<u8> {
    let mut p = (v.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(v);
    p
}

/// A server that ignores the first `drop` messages and answers the rest
/// with a cache hit of "v" (or OK for writes).
fn lossy_server(kind: Kind, drop: usize) -> FakeServer {
    FakeServer::start(
        kind,
        Arc::new(move |msg, i| {
            if i < drop {
                return Vec::new();
            }
            let r = if msg[5] == 0x01 {
                reply_to(msg, 0, 0x801, &value_payload(b"v"))
            } else {
                reply_to(msg, 0, 0x803, &[])
            };
            vec![Out::Send(frame_for(kind, r))]
        }),
    )
}

#[test]
fn lost_udp_reply_to_a_read_is_recovered_by_resending_it() {
    let server = lossy_server(Kind::Udp, 2);
    let db = server.client(2000);
    assert_eq!(db.get(b"k", 8), (1, b"v".to_vec()));
    let sent = server.received();
    assert_eq!(sent.len(), 3, "sent, resent, resent");
    assert!(sent.iter().all(|m| *m == sent[0]), "same message, same id");
}

#[test]
fn udp_writes_are_never_sent_twice() {
    let server = lossy_server(Kind::Udp, usize::MAX);
    let db = server.client(600);
    let key = b"k";
    let start = Instant::now();
    assert_eq!(db.set(key, b"v"), -1);
    assert_eq!(db.del(key), -1);
    assert_eq!(db.incr(key, 1).0, -1);
    let r = unsafe { nmdb_cas(db.0, key.as_ptr(), 1, key.as_ptr(), 1, key.as_ptr(), 1) };
    assert_eq!(r, -1);
    assert!(start.elapsed() >= Duration::from_millis(4 * 590));
    assert_eq!(server.received().len(), 4, "one datagram per write");
}

#[test]
fn a_slow_udp_reply_is_waited_for_past_the_first_resend_time() {
    // Each reply comes 250 ms after its request: past the first resend
    // time (100 ms), within the call's timeout.
    let server = FakeServer::start(
        Kind::Udp,
        Arc::new(|msg, _| {
            let r = if msg[5] == 0x01 {
                reply_to(msg, 0, 0x801, &value_payload(b"slow"))
            } else {
                reply_to(msg, 0, 0x803, &[])
            };
            vec![Out::Pause(Duration::from_millis(250)), Out::Send(r)]
        }),
    );
    let db = server.client(2000);
    assert_eq!(db.set(b"k", b"v"), 1);
    assert_eq!(server.received().len(), 1, "a write is never resent");
    assert_eq!(db.get(b"k", 8), (4, b"slow".to_vec()));
    // The server answers one message at a time: by the time this write's
    // reply comes, it has answered the read's resend too (a reply the
    // write skipped by its id).
    assert_eq!(db.set(b"k", b"v"), 1);
    let received = server.received();
    assert_eq!(
        received.len(),
        4,
        "write, read, its resend at 100 ms, write"
    );
    assert_eq!(received[1], received[2]);
}

#[test]
fn an_unanswered_udp_read_is_resent_at_growing_intervals_until_the_deadline() {
    let server = lossy_server(Kind::Udp, usize::MAX);
    let db = server.client(500);
    assert_get_times_out_on_time(&db, 500);
    // Sent at 0, then at 100 and 300 ms (intervals 100, 200); the next
    // would be at 700 ms, past the deadline.
    assert_eq!(server.received().len(), 3);
}

#[test]
fn dead_tcp_server_gives_the_error_value_after_the_timeout() {
    // Accepts (through the backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let db = Db::new();
    db.set_timeout(300);
    assert_eq!(db.add_tcp("127.0.0.1", port.into()), 1);
    let start = Instant::now();
    assert_eq!(db.get(b"k", 8).0, -2);
    assert_eq!(db.set(b"k", b"v"), -1);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(590) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(last_error().contains("timed out"), "{}", last_error());
}

/// A TCP server that sends each reply a few bytes at a time, `gap` apart,
/// and a handle using it with calls of `timeout_ms`.
fn trickling_tcp_server(gap: Duration, timeout_ms: u32) -> (FakeServer, Db) {
    let server = FakeServer::start(
        Kind::Tcp,
        Arc::new(move |msg, _| {
            let reply = tcp_frame(&reply_to(msg, 0, 0x801, &value_payload(b"trickled")));
            reply
                .chunks(5)
                .flat_map(|piece| [Out::Pause(gap), Out::Send(piece.to_vec())])
                .collect()
        }),
    );
    let db = server.client(timeout_ms);
    (server, db)
}

#[test]
fn a_tcp_reply_arriving_in_pieces_is_put_together() {
    let (_server, db) = trickling_tcp_server(Duration::from_millis(20), 2000);
    for _ in 0..2 {
        assert_eq!(db.get(b"k", 16), (8, b"trickled".to_vec()));
    }
}

#[test]
fn a_tcp_reply_still_arriving_at_the_deadline_times_out_on_time() {
    // Every piece comes within the timeout of the one before, but the
    // whole reply (5 pieces, 100 ms apart) not within the call's: a wait
    // bounded per read instead of per call would return it.
    let (_server, db) = trickling_tcp_server(Duration::from_millis(100), 250);
    assert_get_times_out_on_time(&db, 250);
}

/// A GET through `db`, whose timeout is `timeout_ms`, gives the error value
/// and a "timed out" error at its deadline: not sooner, not much later.
fn assert_get_times_out_on_time(db: &Db, timeout_ms: u64) {
    let start = Instant::now();
    assert_eq!(db.get(b"k", 16).0, -2);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(timeout_ms - 5) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(last_error().contains("timed out"), "{}", last_error());
}

#[test]
fn replies_with_a_foreign_id_are_skipped() {
    for kind in [Kind::Tcp, Kind::Udp] {
        // A stale reply (another id) comes first, then the real one.
        let server = FakeServer::start(
            kind,
            Arc::new(move |msg, _| {
                vec![
                    Out::Send(frame_for(
                        kind,
                        reply_to(msg, 1, 0x801, &value_payload(b"stale")),
                    )),
                    Out::Send(frame_for(
                        kind,
                        reply_to(msg, 0, 0x801, &value_payload(b"fresh")),
                    )),
                ]
            }),
        );
        let db = Db::new();
        server.add_to(&db);
        assert_eq!(db.get(b"k", 16), (5, b"fresh".to_vec()), "{kind:?}");
        assert_eq!(db.get(b"k", 16), (5, b"fresh".to_vec()), "{kind:?}");
    }
}

#[test]
fn udp_replies_from_another_address_than_the_server_are_ignored() {
    // A host that sees the request answers first, with the right id, from
    // its own address; then the server answers.
    let server = FakeServer::start(
        Kind::Udp,
        Arc::new(|msg, _| {
            vec![
                Out::SendFromElsewhere(reply_to(msg, 0, 0x801, &value_payload(b"forged"))),
                Out::Send(reply_to(msg, 0, 0x801, &value_payload(b"server"))),
            ]
        }),
    );
    let db = Db::new();
    server.add_to(&db);
    for _ in 0..3 {
        assert_eq!(db.get(b"k", 16), (6, b"server".to_vec()));
    }
}

#[test]
fn late_reply_to_a_timed_out_request_is_not_taken_for_the_next() {
    // The first request's reply comes only with the second request.
    let held = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let h = held.clone();
    let server = FakeServer::start(
        Kind::Udp,
        Arc::new(move |msg, i| {
            let mut h = h.lock().unwrap();
            let value: &[u8] = if i == 0 { b"first" } else { b"second" };
            h.push(reply_to(msg, 0, 0x801, &value_payload(value)));
            if i == 0 {
                return Vec::new();
            }
            h.drain(..).map(Out::Send).collect()
        }),
    );
    let db = server.client(150);
    // A write, so it is not resent: it times out.
    assert_eq!(db.set(b"a", b"x"), -1);
    db.set_timeout(2000);
    assert_eq!(db.get(b"b", 16), (6, b"second".to_vec()));
}

#[test]
fn request_ids_are_unique_and_never_zero() {
    let mem = Arc::new(MemServer::default());
    let server = FakeServer::start(Kind::Tcp, mem.responder(Kind::Tcp));
    let db = Db::new();
    server.add_to(&db);
    for i in 0..100u32 {
        assert_eq!(db.set(&i.to_be_bytes(), b"v"), 1);
    }
    let ids: BTreeSet<u32> = server
        .received()
        .iter()
        .map(|m| request_id(&m[4..]))
        .collect();
    assert_eq!(ids.len(), 100);
    assert!(!ids.contains(&0));
}

#[test]
fn tcp_connection_closed_by_the_server_is_reestablished_on_the_next_call() {
    // Answers one request per connection, then closes it.
    let server = FakeServer::start(
        Kind::Tcp,
        Arc::new(|msg, _| {
            vec![
                Out::Send(tcp_frame(&reply_to(msg, 0, 0x803, &[]))),
                Out::Close,
            ]
        }),
    );
    let db = Db::new();
    server.add_to(&db);
    for i in 0..5 {
        // The previous connection is closed, as after a server restart.
        server.wait_closed(i);
        assert_eq!(db.set(b"k", b"v"), 1, "call {i}");
    }
    assert_eq!(server.received().len(), 5);
}

#[test]
fn restarted_tcp_server_is_used_again_without_the_caller_doing_anything() {
    let mem = Arc::new(MemServer::default());
    let server = FakeServer::start(Kind::Tcp, mem.responder(Kind::Tcp));
    let addr = server.addr;
    let db = server.client(1000);
    assert_eq!(db.set(b"k", b"v"), 1);
    drop(server);
    // Down: an error, not a hang.
    assert!(db.set(b"k", b"v") < 0);
    let again = FakeServer::start_at(Kind::Tcp, addr, mem.responder(Kind::Tcp)).unwrap();
    assert_eq!(db.get(b"k", 8), (1, b"v".to_vec()));
    assert_eq!(db.set(b"k", b"w"), 1);
    drop(again);
}

#[test]
fn value_too_big_for_the_buffer_leaves_the_connection_usable() {
    let mem = Arc::new(MemServer::default());
    let server = FakeServer::start(Kind::Tcp, mem.responder(Kind::Tcp));
    let db = Db::new();
    server.add_to(&db);
    assert_eq!(db.set(b"big", &[7; 1000]), 1);
    assert_eq!(db.get(b"big", 999).0, -2);
    assert!(last_error().contains("999"), "{}", last_error());
    assert_eq!(db.get(b"big", 1000).0, 1000);
}

#[test]
fn reply_frame_longer_than_any_valid_reply_drops_the_connection() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = FakeServer::start(
        Kind::Tcp,
        Arc::new(move |msg, _| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                // Announces 1 MB: not a reply we can trust.
                vec![Out::Send(vec![0, 0x10, 0, 0, 0, 0, 0, 1])]
            } else {
                vec![Out::Send(tcp_frame(&reply_to(msg, 0, 0x803, &[])))]
            }
        }),
    );
    let db = Db::new();
    server.add_to(&db);
    assert_eq!(db.set(b"k", b"v"), -1);
    assert!(last_error().contains("frame"), "{}", last_error());
    assert_eq!(db.set(b"k", b"v"), 1);
}

#[test]
fn one_handle_is_safe_to_share_between_threads() {
    let mem = Arc::new(MemServer::default());
    let tcp = FakeServer::start(Kind::Tcp, mem.responder(Kind::Tcp));
    let mem2 = Arc::new(MemServer::default());
    let udp = FakeServer::start(Kind::Udp, mem2.responder(Kind::Udp));
    let db = Arc::new(Db::new());
    tcp.add_to(&db);
    udp.add_to(&db);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let key = format!("t{t}-k{}", i % 7);
                    let val = format!("t{t}-v{i}");
                    assert_eq!(db.set(key.as_bytes(), val.as_bytes()), 1);
                    let (n, got) = db.get(key.as_bytes(), 64);
                    assert_eq!((n as usize, got), (val.len(), val.into_bytes()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn misuse_gives_error_returns_not_crashes() {
    let null = std::ptr::null_mut();
    let mut buf = [0u8; 8];
    let (mut a, mut b) = (0u32, 0u32);
    let k = b"k".as_ptr();
    unsafe {
        assert_eq!(nmdb_get(null, k, 1, buf.as_mut_ptr(), 8), -2);
        assert_eq!(last_error(), "the nmdb_t handle is NULL");
        assert_eq!(nmdb_cache_get(null, k, 1, buf.as_mut_ptr(), 8), -2);
        assert_eq!(nmdb_set(null, k, 1, k, 1), -1);
        assert_eq!(nmdb_set_sync(null, k, 1, k, 1), -1);
        assert_eq!(nmdb_sync_set(null, k, 1, k, 1), -1);
        assert_eq!(nmdb_cache_set(null, k, 1, k, 1), -1);
        assert_eq!(nmdb_del(null, k, 1), -1);
        assert_eq!(nmdb_del_sync(null, k, 1), -1);
        assert_eq!(nmdb_sync_del(null, k, 1), -1);
        assert_eq!(nmdb_cache_del(null, k, 1), -1);
        assert_eq!(nmdb_cas(null, k, 1, k, 1, k, 1), -1);
        assert_eq!(nmdb_cache_cas(null, k, 1, k, 1, k, 1), -1);
        assert_eq!(nmdb_incr(null, k, 1, 1, std::ptr::null_mut()), -1);
        assert_eq!(nmdb_cache_incr(null, k, 1, 1, std::ptr::null_mut()), -1);
        assert_eq!(nmdb_firstkey(null, buf.as_mut_ptr(), 8), -2);
        assert_eq!(nmdb_nextkey(null, k, 1, buf.as_mut_ptr(), 8), -2);
        assert_eq!(nmdb_stats(null, buf.as_mut_ptr(), 8, &mut a, &mut b), -2);
        assert_eq!(nmdb_add_tcp_server(null, c"127.0.0.1".as_ptr(), 1), 0);
        assert_eq!(nmdb_add_udp_server(null, c"127.0.0.1".as_ptr(), 1), 0);
        assert_eq!(nmdb_add_tipc_server(null, 1), 0);
        assert_eq!(nmdb_add_server(null, 1), 0);
        assert_eq!(nmdb_add_sctp_server(null, c"127.0.0.1".as_ptr(), 1), 0);
        assert_eq!(nmdb_set_timeout(null, 1), 0);
        assert_eq!(nmdb_free(null), 0);
    }

    let mem = Arc::new(MemServer::default());
    let server = FakeServer::start(Kind::Tcp, mem.responder(Kind::Tcp));
    let db = Db::new();
    server.add_to(&db);
    let big = vec![0u8; 65537];
    unsafe {
        assert_eq!(nmdb_add_tcp_server(db.0, std::ptr::null(), 1), 0);
        assert_eq!(nmdb_get(db.0, std::ptr::null(), 3, buf.as_mut_ptr(), 8), -2);
        assert_eq!(last_error(), "key is NULL but its size is not 0");
        assert_eq!(nmdb_get(db.0, k, 1, std::ptr::null_mut(), 8), -2);
        assert_eq!(nmdb_set(db.0, k, 1, std::ptr::null(), 5), -1);
        assert_eq!(
            nmdb_get(db.0, big.as_ptr(), big.len(), buf.as_mut_ptr(), 8),
            -2
        );
        assert!(last_error().contains("over the limit"), "{}", last_error());
        assert_eq!(nmdb_set(db.0, k, 1, big.as_ptr(), big.len()), -1);
        // Within each limit, over the message limit together.
        assert_eq!(
            nmdb_set(db.0, big.as_ptr(), 40_000, big.as_ptr(), 40_000),
            -1
        );
        assert_eq!(
            nmdb_incr(db.0, big.as_ptr(), 65_530, 1, std::ptr::null_mut()),
            -1
        );
        assert_eq!(
            nmdb_stats(db.0, buf.as_mut_ptr(), 8, std::ptr::null_mut(), &mut b),
            -2
        );
        assert_eq!(
            nmdb_stats(db.0, std::ptr::null_mut(), 8, &mut a, &mut b),
            -2
        );
        assert_eq!(
            nmdb_stats(db.0, std::ptr::null_mut(), 0, &mut a, &mut b),
            -3
        );
        // The empty key and empty value need no pointer.
        assert_eq!(nmdb_set(db.0, std::ptr::null(), 0, std::ptr::null(), 0), 1);
        assert_eq!(
            nmdb_get(db.0, std::ptr::null(), 0, std::ptr::null_mut(), 0),
            0
        );
    }
    // Nothing bad reached the server: only the STATS whose answer did not
    // fit, and the empty SET and GET.
    let codes: Vec<u8> = server.received().iter().map(|m| m[9]).collect();
    assert_eq!(codes, [0x06, 0x02, 0x01]);
}

#[test]
fn tipc_and_sctp_servers_cannot_be_added_on_this_host_and_say_why() {
    let db = Db::new();
    unsafe {
        assert_eq!(nmdb_add_tipc_server(db.0, -1), 0);
        assert!(last_error().contains("TIPC"), "{}", last_error());
        assert_eq!(nmdb_add_server(db.0, 12), 0);
        let host = CString::new("127.0.0.1").unwrap();
        assert_eq!(nmdb_add_sctp_server(db.0, host.as_ptr(), -1), 0);
        assert!(last_error().contains("SCTP"), "{}", last_error());
        assert!(nmdb_connect(10).is_null());
    }
    assert_eq!(db.handle().server_count(), 0);
}
