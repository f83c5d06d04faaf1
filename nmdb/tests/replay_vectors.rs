//! Replays every applicable step of the vectors recorded from the original
//! server (`tests/vectors/server-replies.json`) against ours, over TCP and
//! UDP, and compares the reply bytes exactly.
//!
//! Steps that are not compared are listed below by name with the reason;
//! they are still sent (so the server's state follows the recording) and,
//! where ours answers differently on purpose, what ours must answer is
//! checked instead.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

const VECTORS: &str = "../tests/vectors/server-replies.json";

/// Groups not replayed, with the reason.
fn group_not_applicable(name: &str) -> Option<&'static str> {
    Some(match name {
        n if n.starts_with("backend_qdbm") => "backend qdbm does not exist here (rocksdb and null only)",
        "tcp_short_body_crash" => "crash group (SIGSEGV in the original): see regression test frame_shorter_than_header_closes_only_that_connection",
        n if n.starts_with("tcp_client_abort") => "crash group (SIGPIPE in the original): see regression test client_reset_after_request_does_not_kill_the_server",
        n if n.starts_with("cache_size_zero") => "crash group (SIGFPE in the original): see regression test zero_cache_size_is_refused_before_anything_is_opened",
        _ => return None,
    })
}

/// What ours answers instead, for a step whose reply deliberately differs.
enum Ours {
    /// Exactly these reply bytes.
    Reply(&'static str),
    /// This reply, then the connection closes.
    ReplyThenClosed(&'static str),
    /// The connection closes without a reply.
    Closed,
    /// These replies, in any order.
    Replies(&'static [&'static str]),
    /// A key from the walk, or its end: the order is the backend's. Keys
    /// are collected and compared as a set at the end of the group.
    WalkKey,
    /// Some stored key (the order is the backend's); not collected.
    AnyKey,
    /// The recorded STATS plus these (counter index, difference) pairs,
    /// each explained by a step above that ours answers differently.
    StatsDelta(&'static [(usize, i64)]),
}

const CACHE_GET: usize = 0;
const CACHE_DEL: usize = 2;
const DB_SET: usize = 6;
const DB_INCR: usize = 9;
const CACHE_HITS: usize = 10;
const CACHE_MISSES: usize = 11;
const DB_HITS: usize = 12;
const DB_MISSES: usize = 13;
const BROKEN: usize = 19;

/// Steps not compared with the recording, with the reason and what ours
/// answers instead.
fn step_not_applicable(group: &str, step: &str) -> Option<(&'static str, Ours)> {
    use Ours::*;
    let tcp = group.ends_with("_tcp") || group.starts_with("tcp_");
    let framed = |s: &'static str, t: &'static str| if tcp { t } else { s };
    Some(match (group, step) {
        (g, s) if g.starts_with("incr_empty_value") && s == "cache INCR e1 +1" => (
            "quirk: the original reads before the value; ours: an empty value is not a NUL-terminated number",
            Reply(framed("0000000100000805", "0000000c0000000100000805")),
        ),
        (g, s) if g.starts_with("incr_empty_value") && s == "db INCR e2 +1" => (
            "quirk: the original reads before the value; ours: NOMATCH",
            Reply(framed("0000000100000805", "0000000c0000000100000805")),
        ),
        (g, s) if g.starts_with("incr_empty_value") && s == "GET e1" => (
            "follows the quirk step: the empty value was not incremented",
            Reply(framed("000000010000080100000000", "00000010000000010000080100000000")),
        ),
        (g, s) if g.starts_with("incr_empty_value") && s == "GET e2" => (
            "follows the quirk step: the empty value was not incremented",
            Reply(framed("000000010000080300000000", "00000010000000010000080300000000")),
        ),
        (g, s) if g.starts_with("protocol_errors") && s.starts_with("SET ksize=3 vsize=10 but only 5") => (
            "quirk: ours checks sizes exactly (truncated value: ERR_BROKEN)",
            Reply(framed("000000030000080000000103", "00000010000000030000080000000103")),
        ),
        (g, s) if g.starts_with("protocol_errors") && s == "GET key 'key' after truncated SET" => (
            "quirk: the truncated SET stored nothing here (cache miss)",
            Reply(framed("0000000100000802", "0000000c0000000100000802")),
        ),
        (g, s) if g.starts_with("protocol_errors") && (s.starts_with("GET ksize = psize (") || s.starts_with("DEL ksize = psize")) => (
            "quirk: the key would run past the message; ours answers ERR_BROKEN",
            Reply(framed("000000030000080000000103", "00000010000000030000080000000103")),
        ),
        (g, s) if g.starts_with("protocol_errors") && s == "GET with header only (no payload)" => (
            "quirk: stale key size in the original; ours answers ERR_BROKEN",
            Reply(framed("000000030000080000000103", "00000010000000030000080000000103")),
        ),
        (g, s) if g.starts_with("protocol_errors") && s == "INCR with 7 increment bytes (broken)" => (
            "exact size check: the original accepts a short increment; ours answers ERR_BROKEN",
            Reply(framed("000000030000080000000103", "00000010000000030000080000000103")),
        ),
        (g, s) if g.starts_with("protocol_errors") && s.starts_with("version ") => {
            let (udp_reply, tcp_reply) = if s.ends_with("0x0abcdef") {
                ("00abcdef0000080000000101", "0000001000abcdef0000080000000101")
            } else {
                ("000000010000080000000101", "00000010000000010000080000000101")
            };
            (
                "version mismatch: the original sends the id in host byte order; ours in network order",
                if tcp { ReplyThenClosed(tcp_reply) } else { Reply(udp_reply) },
            )
        }
        (g, "STATS with trailing junk" | "STATS") if g.starts_with("protocol_errors") => (
            "counters include the steps above that ours answers ERR_BROKEN on purpose",
            StatsDelta(&[(CACHE_GET, -1), (CACHE_DEL, -1), (DB_SET, -1), (DB_INCR, -1), (CACHE_HITS, -1), (BROKEN, 4)]),
        ),
        ("udp_short_datagrams", "8-byte GET header only") => (
            "exact size check: a GET without its key size is broken (ERR_BROKEN)",
            Reply("000000010000080000000103"),
        ),
        ("udp_short_datagrams", "8-byte STATS") => (
            "counters include the header-only GET that ours counts as broken",
            StatsDelta(&[(CACHE_GET, -1), (CACHE_MISSES, -1), (BROKEN, 1)]),
        ),
        ("tcp_framing", s) if s.starts_with("db GET miss (id 4) + cache GET (id 5)") => (
            "reply order is timing dependent: compared as a set",
            Replies(&["0000000c0000000500000802", "0000000c0000000400000804"]),
        ),
        ("tcp_framing", s) if s.starts_with("SET (17-byte body) + GET (16-byte body)") => (
            "quirk: the original mis-parses pipelined frames of different sizes; ours answers both and keeps the connection",
            Replies(&["0000000c0000000100000803", "0000000c0000000100000802"]),
        ),
        ("tcp_framing", "... then the remaining 8 bytes of a STATS") => (
            "counters: the connection the original closed stays open here",
            StatsDelta(&[]),
        ),
        ("tcp_pipeline_different_sizes", "SET(30 bytes)+GET(17 bytes) in one send") => (
            "quirk: the original desynchronises; ours answers both frames and keeps the connection",
            Replies(&["0000000c0000000100000803", "0000001900000001000008010000000976616c75652d6f6e65"]),
        ),
        ("tcp_pipeline_different_sizes", "GET(17)+SET(30) in one send (new connection)") => (
            "the original lost the second frame; ours answers both",
            Replies(&["0000001900000001000008010000000976616c75652d6f6e65", "0000000c0000000100000803"]),
        ),
        ("tcp_pipeline_different_sizes", "follow-up GET") => (
            "the original answers a corrupted leftover; ours answers the GET",
            Replies(&["0000001900000001000008010000000976616c75652d6f6e65"]),
        ),
        ("tcp_short_body", s) if s.starts_with("body ") => (
            "a frame shorter than a request header: ours closes that connection (the original reads stale bytes)",
            Closed,
        ),
        ("tcp_short_body", "follow-up STATS") => (
            "counters: ours counted the two short frames as broken",
            StatsDelta(&[(CACHE_GET, -2), (CACHE_MISSES, -2), (BROKEN, 2)]),
        ),
        ("stats_positions", s) if s.starts_with("FIRSTKEY") || s.starts_with("NEXTKEY") => (
            "key-walk order is the backend's: the reply must be a stored key",
            AnyKey,
        ),
        (g, s) if g.starts_with("keywalk") && (s.starts_with("FIRSTKEY") || s.starts_with("NEXTKEY")) && !s.contains("empty db") && !s.contains("not in db") && !s.contains("cache-only key") && !s.contains("deleted key") => (
            "key-walk order is the backend's: the keys are compared as a set",
            WalkKey,
        ),
        _ => return None,
    })
}

#[derive(Default)]
struct Tally {
    matched: usize,
    stats_matched: usize,
    not_applicable: Vec<String>,
    failed: Vec<String>,
}

/// The counters of a STATS reply (`tcp`: behind its length prefix).
fn decode_stats(reply: &[u8], tcp: bool) -> Vec<u64> {
    let body = if tcp { &reply[4..] } else { reply };
    body[12..]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn is_stats_request(send: &[u8], tcp: bool) -> bool {
    let m = if tcp { &send[4..] } else { send };
    m.len() >= 8 && m[4..6] == [0x01, 0x06]
}

struct Replayer<'a> {
    server: TestServer,
    tcp: Option<TcpClient>,
    udp: UdpClient,
    group: &'a str,
    tally: &'a mut Tally,
    walk_seen: BTreeSet<Vec<u8>>,
    walk_expected: BTreeSet<Vec<u8>>,
    signals_sent: [usize; 2],
}

impl Replayer<'_> {
    fn tcp(&mut self, fresh: bool) -> &mut TcpClient {
        if fresh || self.tcp.is_none() {
            self.tcp = Some(self.server.tcp_client());
        }
        self.tcp.as_mut().unwrap()
    }

    fn fail(&mut self, step: &str, why: String) {
        self.tally
            .failed
            .push(format!("{} / {step}: {why}", self.group));
    }

    fn send(&mut self, step: &Value, tcp: bool) {
        let fresh = step["new_tcp_connection"].as_bool().unwrap_or(false);
        if let Some(chunks) = step["send_chunks_hex"].as_array() {
            let delay =
                Duration::from_secs_f64(step["chunk_delay_s"].as_f64().unwrap_or(0.0).min(0.2));
            let c = self.tcp(fresh);
            for (i, chunk) in chunks.iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(delay);
                }
                c.send_raw(&hex(chunk.as_str().unwrap()));
            }
            return;
        }
        let bytes = hex(step["send_hex"].as_str().unwrap());
        if tcp {
            self.tcp(fresh).send_raw(&bytes);
        } else {
            self.udp.send(&bytes);
        }
    }

    fn recv(&mut self, tcp: bool) -> Option<Vec<u8>> {
        if tcp {
            self.tcp.as_mut().unwrap().recv_frame()
        } else {
            Some(self.udp.recv())
        }
    }

    fn action(&mut self, step: &Value) {
        let action = step["action"].as_str().unwrap_or("");
        let (sig, idx, line) = if action.contains("SIGUSR2") {
            (libc::SIGUSR2, 1, "SIGUSR2: now")
        } else if action.contains("SIGUSR1") {
            (libc::SIGUSR1, 0, "SIGUSR1: now")
        } else {
            return; // a summary of omitted repetitions
        };
        self.server.signal(sig);
        self.signals_sent[idx] += 1;
        let n = self.signals_sent[idx];
        self.server.wait_for_log_prefix(line, n);
    }

    fn step(&mut self, step: &Value) {
        if step.get("send_hex").is_none() && step.get("send_chunks_hex").is_none() {
            return self.action(step);
        }
        let name = step["name"].as_str().unwrap().to_string();
        let tcp = step["transport"].as_str().unwrap_or("tcp") == "tcp";
        let outcome = step["outcome"].as_str().unwrap_or("");
        self.send(step, tcp);

        if let Some((reason, ours)) = step_not_applicable(self.group, &name) {
            self.tally
                .not_applicable
                .push(format!("{} / {name}: {reason}", self.group));
            return self.check_ours(&name, tcp, ours, step);
        }
        match outcome {
            "reply" | "reply then connection closed" => {
                let expected = step["reply_hex"].as_str().unwrap();
                let Some(got) = self.recv(tcp) else {
                    return self.fail(&name, "connection closed instead of a reply".into());
                };
                let sent = hex(step["send_hex"].as_str().unwrap_or(""));
                if !sent.is_empty() && is_stats_request(&sent, tcp) {
                    let (want, have) = (decode_stats(&hex(expected), tcp), decode_stats(&got, tcp));
                    let differs: Vec<usize> = (0..want.len().max(have.len()))
                        .filter(|&i| i != DB_HITS && i != DB_MISSES && want.get(i) != have.get(i))
                        .collect();
                    if want.len() != have.len() || !differs.is_empty() {
                        return self.fail(
                            &name,
                            format!("stats differ at {differs:?}: want {want:?} got {have:?}"),
                        );
                    }
                    self.tally.stats_matched += 1;
                } else if to_hex(&got) != expected {
                    return self.fail(&name, format!("want {expected}\n   got {}", to_hex(&got)));
                }
                if outcome == "reply then connection closed" && !self.tcp.as_mut().unwrap().closed()
                {
                    return self.fail(&name, "connection stayed open".into());
                }
                self.tally.matched += 1;
            }
            "closed" => {
                if !self.tcp.as_mut().unwrap().closed() {
                    return self.fail(&name, "connection stayed open".into());
                }
                self.tally.matched += 1;
            }
            "replies" => {
                let want: Vec<&str> = step["replies_hex"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                for w in want {
                    match self.recv(tcp) {
                        Some(got) if to_hex(&got) == w => {}
                        other => {
                            return self.fail(
                                &name,
                                format!("want {w} got {:?}", other.map(|g| to_hex(&g))),
                            )
                        }
                    }
                }
                self.tally.matched += 1;
            }
            o if o.starts_with("no reply") => {
                // A stray reply would also surface at the next read.
                let quiet = if tcp {
                    self.tcp
                        .as_mut()
                        .unwrap()
                        .quiet_for(Duration::from_millis(100))
                } else {
                    self.udp.quiet_for(Duration::from_millis(100))
                };
                if !quiet {
                    return self.fail(&name, "unexpected reply".into());
                }
                self.tally.matched += 1;
            }
            other => self.fail(
                &name,
                format!("outcome '{other}' not understood by the replay"),
            ),
        }
    }

    fn check_ours(&mut self, name: &str, tcp: bool, ours: Ours, step: &Value) {
        match ours {
            Ours::Reply(want) | Ours::ReplyThenClosed(want) => {
                let got = self.recv(tcp).map(|g| to_hex(&g));
                if got.as_deref() != Some(want) {
                    return self.fail(name, format!("ours should answer {want}, got {got:?}"));
                }
                if matches!(ours, Ours::ReplyThenClosed(_)) && !self.tcp.as_mut().unwrap().closed()
                {
                    self.fail(name, "ours should close the connection".into());
                }
            }
            Ours::Closed => {
                if !self.tcp.as_mut().unwrap().closed() {
                    self.fail(name, "ours should close the connection".into());
                }
                self.tcp = None;
            }
            Ours::Replies(want) => {
                let mut want: Vec<&str> = want.to_vec();
                for _ in 0..want.len() {
                    let got = self.recv(tcp).map(|g| to_hex(&g)).unwrap_or_default();
                    match want.iter().position(|w| *w == got) {
                        Some(i) => {
                            want.remove(i);
                        }
                        None => {
                            return self.fail(
                                name,
                                format!("unexpected reply {got}; still expecting {want:?}"),
                            )
                        }
                    }
                }
            }
            Ours::WalkKey => {
                let got = self.recv(tcp).unwrap_or_default();
                let expected = hex(step["reply_hex"].as_str().unwrap());
                let body = |b: &[u8]| if tcp { b[4..].to_vec() } else { b.to_vec() };
                let key_of = |b: Vec<u8>| {
                    if b.len() > 12 {
                        Some(b[12..].to_vec())
                    } else {
                        None
                    }
                };
                if let Some(k) = key_of(body(&expected)) {
                    self.walk_expected.insert(k);
                }
                match key_of(body(&got)) {
                    Some(k) => {
                        self.walk_seen.insert(k);
                    }
                    None if to_hex(&body(&got)) == "0000000100000804" => {}
                    None => self.fail(name, format!("not a walk reply: {}", to_hex(&got))),
                }
            }
            Ours::AnyKey => {
                let got = self.recv(tcp).unwrap_or_default();
                let body = if tcp { &got[4..] } else { &got[..] };
                let reply = nmdb_proto::Reply::parse(body).unwrap();
                if reply.code != 0x803 || reply.data().map_or(true, |k| k.is_empty()) {
                    self.fail(name, format!("not a key: {}", to_hex(&got)));
                }
            }
            Ours::StatsDelta(delta) => {
                let got = self.recv(tcp).unwrap_or_default();
                let recorded = decode_stats(&hex(step["reply_hex"].as_str().unwrap()), tcp);
                let mut want: Vec<i64> = recorded.iter().map(|&v| v as i64).collect();
                for &(i, d) in delta {
                    want[i] += d;
                }
                let have: Vec<i64> = decode_stats(&got, tcp).iter().map(|&v| v as i64).collect();
                let differs: Vec<usize> = (0..want.len())
                    .filter(|&i| i != DB_HITS && i != DB_MISSES && want.get(i) != have.get(i))
                    .collect();
                if have.len() != want.len() || !differs.is_empty() {
                    self.fail(
                        name,
                        format!("stats differ at {differs:?}: want {want:?} got {have:?}"),
                    );
                }
            }
        }
    }
}

/// Fills a database the way the recording did for the `read_only_*` groups.
fn prefill_read_only(db: &std::path::Path, log: &std::path::Path) {
    let server = TestServer::start_on(db, log, &[]);
    let mut c = server.tcp_client();
    use nmdb_proto::Request;
    for (k, v) in [(&b"k"[..], &b"v"[..]), (b"n", b"5\0")] {
        let reply = c.call(&msg(
            Request::Set { key: k, value: v },
            1,
            nmdb_proto::FLAGS_SYNC,
        ));
        assert_eq!(to_hex(&reply), "0000000100000803");
    }
    server.stop();
}

#[test]
fn replays_every_applicable_step_of_the_original_servers_vectors() {
    let text = std::fs::read_to_string(package_dir().join(VECTORS))
        .expect("vectors present in tests/vectors");
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let mut tally = Tally::default();
    let mut groups_replayed = 0;
    let mut groups_skipped = Vec::new();
    for group in vectors["groups"].as_array().unwrap() {
        let name = group["name"].as_str().unwrap();
        if let Some(reason) = group_not_applicable(name) {
            groups_skipped.push(format!("{name}: {reason}"));
            continue;
        }
        groups_replayed += 1;
        let dir = TempDir::new("replay");
        let (db, log) = (dir.path().join("db"), dir.path().join("nmdb.log"));
        let mut flags: Vec<&str> = vec!["--no-cache-fill"];
        if group["server"]["backend"] == "null" {
            flags.extend(["-b", "null"]);
        }
        for f in group["server"]["extra_flags"].as_array().unwrap() {
            flags.push(f.as_str().unwrap());
        }
        if name.starts_with("read_only") {
            prefill_read_only(&db, &log);
        }
        let server = TestServer::start_on(&db, &log, &flags);
        let udp = server.udp_client();
        let mut r = Replayer {
            server,
            tcp: None,
            udp,
            group: name,
            tally: &mut tally,
            walk_seen: BTreeSet::new(),
            walk_expected: BTreeSet::new(),
            signals_sent: [0, 0],
        };
        for step in group["steps"].as_array().unwrap() {
            r.step(step);
        }
        if r.walk_seen != r.walk_expected {
            let (seen, want) = (r.walk_seen.clone(), r.walk_expected.clone());
            r.fail("key walk", format!("keys {seen:?}, want {want:?}"));
        }
        let Replayer { server, .. } = r;
        server.stop();
    }
    let na = tally.not_applicable.len();
    println!(
        "groups replayed: {groups_replayed}; not replayed: {}",
        groups_skipped.len()
    );
    for g in &groups_skipped {
        println!("  group not applicable: {g}");
    }
    for s in &tally.not_applicable {
        println!("  step not applicable: {s}");
    }
    for f in &tally.failed {
        println!("  FAILED: {f}");
    }
    println!(
        "replay: {} matched ({} of them STATS, compared without db_hits/db_misses), {na} not applicable, {} failed",
        tally.matched,
        tally.stats_matched,
        tally.failed.len()
    );
    assert!(
        tally.failed.is_empty(),
        "{} steps failed",
        tally.failed.len()
    );
    assert!(
        tally.matched > 1000,
        "too few steps compared: {}",
        tally.matched
    );
}
