//! Random requests from concurrent clients, checked one by one against a
//! model of what each key holds: the real `nmdb` binary on loopback, a
//! cache far smaller than the keys in use (so reads go to the database
//! after evictions), TCP clients that pipeline and UDP clients that do
//! not. Each client owns its keys, so its model sees every change in the
//! order the server received it. After the run the server is stopped
//! cleanly or killed, restarted, and every key read back.
//!
//! The seeds are fixed, so a failure repeats; it names its seed, client
//! and step. For a longer search, `NMDB_RANDOM_SEED` shifts every seed and
//! `NMDB_RANDOM_STEPS` sets each client's requests (5000):
//!
//! ```sh
//! for s in $(seq 100 150); do NMDB_RANDOM_SEED=$s NMDB_RANDOM_STEPS=20000 \
//!     cargo test --release -p nmdb-server --test random_requests || break; done
//! ```

#[path = "../../proto/tests/common/mod.rs"]
mod common;
mod support;

use common::Rng;
use nmdb_proto::{Reply, ReplyCode, Request, FLAGS_CACHE_ONLY, FLAGS_SYNC};
use support::*;

/// A value to store: mostly bytes of any kind and size, often a number
/// INCR can work on (NUL-terminated, with the white space, signs, limits
/// and trailing text C's `strtoll` meets), sometimes a number without
/// its NUL.
fn random_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0..=3 => {
            let len = match rng.below(20) {
                0 => 0,
                1 => 1000 + rng.below(3000),
                // Large, yet a CAS of two with the longest key stays
                // within the protocol's 64 KiB (TCP frames of this size
                // arrive in several reads).
                2 if rng.percent(30) => 20_000 + rng.below(10_000),
                _ => rng.below(200),
            };
            rng.bytes(len)
        }
        4..=8 => {
            let n: i128 = match rng.below(6) {
                0 => i64::MAX as i128 - rng.below(3) as i128,
                1 => i64::MIN as i128 + rng.below(3) as i128,
                2 => i64::MAX as i128 * 10, // saturates
                _ => rng.below(2000) as i128 - 1000,
            };
            let pad = " ".repeat(rng.below(4));
            let tail = if rng.percent(20) { "x7" } else { "" };
            let mut v = format!("{pad}{n}{tail}").into_bytes();
            if rng.percent(15) {
                v.resize(30 + rng.below(10), b'#'); // longer than INCR writes
            }
            v.push(0);
            v
        }
        _ => format!("{}", rng.below(100)).into_bytes(),
    }
}

/// INCR as the protocol defines it: the value must end in NUL; it is read
/// like `strtoll` (saturating), the delta added with wrap-around, and the
/// result written `%23lld` plus NUL over the first 24 bytes (a shorter
/// value grows to 24).
fn incremented(value: &[u8], delta: i64) -> Option<(Vec<u8>, i64)> {
    if value.last() != Some(&0) {
        return None;
    }
    let text = &value[..value.iter().position(|&b| b == 0).unwrap()];
    let mut i = 0;
    while i < text.len() && b" \t\n\x0b\x0c\r".contains(&text[i]) {
        i += 1;
    }
    let negative = text.get(i) == Some(&b'-');
    if matches!(text.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut n: i128 = 0;
    while i < text.len() && text[i].is_ascii_digit() {
        n = (n * 10 + i128::from(text[i] - b'0')).min(1 << 64);
        i += 1;
    }
    let n = if negative { -n } else { n };
    let parsed = n.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    let new = parsed.wrapping_add(delta);
    let mut out = value.to_vec();
    if out.len() < 24 {
        out.resize(24, 0);
    }
    out[..23].copy_from_slice(format!("{new:>23}").as_bytes());
    out[23] = 0;
    Some((out, new))
}

#[derive(Debug, Clone)]
enum Op {
    Get,
    Set(Vec<u8>),
    Del,
    Cas { old: Vec<u8>, new: Vec<u8> },
    Incr(i64),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Get => write!(f, "GET"),
            Op::Set(v) => write!(f, "SET {}", show(Some(v))),
            Op::Del => write!(f, "DEL"),
            Op::Cas { old, new } => write!(f, "CAS {} to {}", show(Some(old)), show(Some(new))),
            Op::Incr(delta) => write!(f, "INCR {delta}"),
        }
    }
}

/// What one database key holds, and what a crash may leave of it: its
/// values since the last write that was answered once durable (a sync
/// SET or DEL). Asynchronous writes, CAS and INCR may be lost by a crash,
/// but only from the newest back: each key's changes reach the log in
/// order.
struct StoredKey {
    now: Option<Vec<u8>>,
    after_crash: Vec<Option<Vec<u8>>>,
}

impl Default for StoredKey {
    /// Missing: the database starts empty, and nothing can lose that.
    fn default() -> Self {
        StoredKey {
            now: None,
            after_crash: vec![None],
        }
    }
}

impl StoredKey {
    fn changed(&mut self, to: Option<Vec<u8>>, durable: bool) {
        if durable {
            self.after_crash.clear();
        }
        self.after_crash.push(to.clone());
        self.now = to;
    }
}

/// What a cache-only key holds if it is still cached: the cache may evict
/// it at any time, so a miss is always a possible answer, and one seen
/// means it is gone.
#[derive(Default)]
struct CachedKey(Option<Vec<u8>>);

/// A value in a failure message: its size and first bytes.
fn show(value: Option<&[u8]>) -> String {
    match value {
        None => "nothing".into(),
        Some(v) if v.len() <= 32 => format!("{} bytes \"{}\"", v.len(), v.escape_ascii()),
        Some(v) => format!("{} bytes \"{}...\"", v.len(), v[..32].escape_ascii()),
    }
}

fn describe(reply: &Reply) -> String {
    match (reply.reply_code(), reply.error_code()) {
        (_, Some(e)) => format!("error {e:#x}"),
        (Some(c), _) => format!("{c:?}"),
        (None, _) => format!("code {:#x}", reply.code),
    }
}

/// Checks a database request's reply (`flags` 0 or SYNC) and moves the
/// model on.
fn check_stored(key: &mut StoredKey, op: &Op, flags: u16, reply: &Reply) -> Result<(), String> {
    let sync = flags == FLAGS_SYNC;
    let code = reply.reply_code();
    let want = |c: ReplyCode| {
        if code == Some(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?}, got {}", describe(reply)))
        }
    };
    match op {
        Op::Get => match &key.now {
            Some(v) => {
                if !matches!(code, Some(ReplyCode::Ok | ReplyCode::CacheHit)) {
                    return Err(format!("stored {}, got {}", show(Some(v)), describe(reply)));
                }
                if reply.data().ok() != Some(&v[..]) {
                    return Err(format!(
                        "read {}, stored {}",
                        show(reply.data().ok()),
                        show(Some(v))
                    ));
                }
                Ok(())
            }
            None => want(ReplyCode::NotIn),
        },
        Op::Set(v) => {
            want(ReplyCode::Ok)?;
            key.changed(Some(v.clone()), sync);
            Ok(())
        }
        Op::Del => {
            want(if sync && key.now.is_none() {
                ReplyCode::NotIn
            } else {
                ReplyCode::Ok
            })?;
            key.changed(None, sync);
            Ok(())
        }
        Op::Cas { old, new } => match &key.now {
            None => want(ReplyCode::NotIn),
            Some(v) if v == old => {
                want(ReplyCode::Ok)?;
                key.changed(Some(new.clone()), false);
                Ok(())
            }
            Some(_) => want(ReplyCode::NoMatch),
        },
        Op::Incr(delta) => match key.now.as_deref().map(|v| incremented(v, *delta)) {
            None => want(ReplyCode::NotIn),
            Some(None) => want(ReplyCode::NoMatch),
            Some(Some((value, n))) => {
                want(ReplyCode::Ok)?;
                if reply.incr_value() != Some(n) {
                    return Err(format!("INCR gave {:?}, expected {n}", reply.incr_value()));
                }
                key.changed(Some(value), false);
                Ok(())
            }
        },
    }
}

/// Checks a cache-only request's reply and moves the model on.
fn check_cached(key: &mut CachedKey, op: &Op, reply: &Reply) -> Result<(), String> {
    use ReplyCode::{CacheHit, CacheMiss, NoMatch, NotIn};
    let code = reply.reply_code();
    let unexpected = || {
        let cached = show(key.0.as_deref());
        Err(format!("got {} with {cached} cached", describe(reply)))
    };
    // Whatever else it may answer, a cached key may be found evicted.
    let evicted = match op {
        Op::Get => code == Some(CacheMiss),
        Op::Set(_) => false,
        Op::Del | Op::Cas { .. } | Op::Incr(_) => code == Some(NotIn),
    };
    if evicted {
        key.0 = None;
        return Ok(());
    }
    match (op, key.0.as_deref()) {
        (Op::Set(v), _) if code == Some(ReplyCode::Ok) => key.0 = Some(v.clone()),
        (Op::Get, Some(v)) if code == Some(CacheHit) && reply.data().ok() == Some(v) => {}
        (Op::Del, Some(_)) if code == Some(ReplyCode::Ok) => key.0 = None,
        (Op::Cas { old, new }, Some(v)) if v == &old[..] && code == Some(ReplyCode::Ok) => {
            key.0 = Some(new.clone())
        }
        (Op::Cas { old, .. }, Some(v)) if v != &old[..] && code == Some(NoMatch) => {}
        (Op::Incr(delta), Some(v)) => match incremented(v, *delta) {
            None if code == Some(NoMatch) => {}
            Some((value, n)) if code == Some(ReplyCode::Ok) && reply.incr_value() == Some(n) => {
                key.0 = Some(value)
            }
            _ => return unexpected(),
        },
        _ => return unexpected(),
    }
    Ok(())
}

/// One client's keys: `stored` for requests to the database, `cached` for
/// cache-only ones, never mixed (the guide leaves mixing to the caller).
struct Client {
    name: String,
    seed: u64,
    stored: Vec<StoredKey>,
    cached: Vec<CachedKey>,
    seen: Seen,
}

/// Answers that show a run went where it was meant to: without them the
/// model would pass without testing what it is for.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// GETs the database answered (the cache had evicted or never had it).
    database_reads: usize,
    cache_hits: usize,
    swaps: usize,
    increments: usize,
    /// Cache-only keys found evicted.
    evictions: usize,
}

impl Seen {
    fn add(&mut self, other: Seen) {
        self.database_reads += other.database_reads;
        self.cache_hits += other.cache_hits;
        self.swaps += other.swaps;
        self.increments += other.increments;
        self.evictions += other.evictions;
    }

    fn note(&mut self, step: &Step, was_cached: bool, code: Option<ReplyCode>) {
        use ReplyCode::{CacheHit, CacheMiss, NotIn};
        match (&step.op, code) {
            (Op::Get, Some(ReplyCode::Ok)) => self.database_reads += 1,
            (Op::Get, Some(CacheHit)) => self.cache_hits += 1,
            (Op::Cas { .. }, Some(ReplyCode::Ok)) => self.swaps += 1,
            (Op::Incr(_), Some(ReplyCode::Ok)) => self.increments += 1,
            (_, Some(CacheMiss | NotIn)) if step.cache_only && was_cached => self.evictions += 1,
            _ => {}
        }
    }
}

/// One request of a client: which key, what, how.
struct Step {
    cache_only: bool,
    index: usize,
    op: Op,
    flags: u16,
}

impl Client {
    fn new(name: &str, seed: u64, stored: usize, cached: usize) -> Self {
        Client {
            name: name.into(),
            seed,
            stored: (0..stored).map(|_| StoredKey::default()).collect(),
            cached: (0..cached).map(|_| CachedKey::default()).collect(),
            seen: Seen::default(),
        }
    }

    /// Key `index` of one kind: mostly short text, some with NUL and
    /// high bytes, some long.
    fn key(&self, cache_only: bool, index: usize) -> Vec<u8> {
        let kind = if cache_only { 'c' } else { 'd' };
        let mut key = format!("{}-{kind}{index}", self.name).into_bytes();
        if index.is_multiple_of(13) {
            key.extend_from_slice(b"\0\xff\x01");
        }
        if index.is_multiple_of(17) {
            key.resize(key.len() + index * 37 % 2000, b'k');
        }
        key
    }

    fn random_step(&self, rng: &mut Rng) -> Step {
        let cache_only = rng.percent(20);
        let index = if cache_only {
            rng.below(self.cached.len())
        } else {
            rng.below(self.stored.len())
        };
        let current = if cache_only {
            self.cached[index].0.clone()
        } else {
            self.stored[index].now.clone()
        };
        let op = match rng.below(20) {
            0..=6 => Op::Get,
            7..=11 => Op::Set(random_value(rng)),
            12..=13 => Op::Del,
            14..=16 => Op::Cas {
                // Half the time the value it holds, so that swaps happen.
                old: match current {
                    Some(v) if rng.percent(50) => v,
                    _ => random_value(rng),
                },
                new: random_value(rng),
            },
            _ => Op::Incr(match rng.below(4) {
                0 => i64::MAX - rng.below(3) as i64,
                1 => i64::MIN + rng.below(3) as i64,
                _ => rng.below(200) as i64 - 100,
            }),
        };
        let flags = if cache_only {
            FLAGS_CACHE_ONLY
        } else if matches!(op, Op::Set(_) | Op::Del) && rng.percent(30) {
            FLAGS_SYNC
        } else {
            0
        };
        Step {
            cache_only,
            index,
            op,
            flags,
        }
    }

    fn encode(&self, step: &Step, id: u32) -> Vec<u8> {
        let key = &self.key(step.cache_only, step.index);
        let request = match &step.op {
            Op::Get => Request::Get { key },
            Op::Set(value) => Request::Set { key, value },
            Op::Del => Request::Del { key },
            Op::Cas { old, new } => Request::Cas { key, old, new },
            Op::Incr(delta) => Request::Incr { key, delta: *delta },
        };
        msg(request, id, step.flags)
    }

    fn check(&mut self, step: &Step, reply: &[u8], at: usize) {
        let parsed = Reply::parse(reply).expect("reply header");
        let was_cached = step.cache_only && self.cached[step.index].0.is_some();
        let result = if step.cache_only {
            check_cached(&mut self.cached[step.index], &step.op, &parsed)
        } else {
            check_stored(&mut self.stored[step.index], &step.op, step.flags, &parsed)
        };
        if let Err(e) = result {
            panic!(
                "{} (seed {}) step {at}: {} flags {} on {}: {e}",
                self.name,
                self.seed,
                step.op,
                step.flags,
                String::from_utf8_lossy(&self.key(step.cache_only, step.index))
            );
        }
        self.seen.note(step, was_cached, parsed.reply_code());
    }
}

/// Each client's requests, unless `NMDB_RANDOM_STEPS` says otherwise.
fn steps() -> usize {
    env_number("NMDB_RANDOM_STEPS").map_or(5000, |n| n as usize)
}

/// Added to every test's seed.
fn seed_shift() -> u64 {
    env_number("NMDB_RANDOM_SEED").unwrap_or(0)
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text}: not a number")),
    )
}
/// Each client's keys for the database; four clients hold more than the
/// 1024 objects of `-c 1`.
const STORED_KEYS: usize = 400;
const CACHED_KEYS: usize = 60;

/// A TCP client sending 1 to 8 requests before it reads their replies,
/// matched by id (a cache hit may overtake a database answer).
fn run_tcp(client: &mut Client, server: &TestServer, rng: &mut Rng) {
    let mut conn = server.tcp_client();
    let mut at = 0;
    while at < steps() {
        let batch: Vec<Step> = (0..1 + rng.below(8))
            .map(|_| client.random_step(rng))
            .collect();
        let mut bytes = Vec::new();
        for (i, step) in batch.iter().enumerate() {
            let m = client.encode(step, i as u32);
            bytes.extend_from_slice(&((m.len() + 4) as u32).to_be_bytes());
            bytes.extend_from_slice(&m);
        }
        conn.send_raw(&bytes);
        let mut replies = vec![None; batch.len()];
        for _ in 0..batch.len() {
            let r = conn.recv();
            let id = Reply::parse(&r).unwrap().id as usize;
            assert!(
                replies[id].is_none(),
                "{}: id {id} answered twice",
                client.name
            );
            replies[id] = Some(r);
        }
        // The model takes them in the order they were sent.
        for (step, reply) in batch.iter().zip(replies) {
            client.check(step, &reply.unwrap(), at);
            at += 1;
        }
    }
}

/// A UDP client doing one request at a time, like libnmdb.
fn run_udp(client: &mut Client, server: &TestServer, rng: &mut Rng) {
    let conn = server.udp_client();
    for at in 0..steps() {
        let step = client.random_step(rng);
        let reply = conn.call(&client.encode(&step, at as u32));
        client.check(&step, &reply, at);
    }
}

/// Runs two TCP and two UDP clients at once; returns their models.
fn run_clients(server: &TestServer, seed: u64) -> Vec<Client> {
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4u64)
            .map(|c| {
                s.spawn(move || {
                    let tcp = c < 2;
                    let name = format!("{}{c}", if tcp { "tcp" } else { "udp" });
                    let seed = seed + seed_shift() * 1000 + c;
                    let mut client = Client::new(&name, seed, STORED_KEYS, CACHED_KEYS);
                    let mut rng = Rng::seeded(seed);
                    if tcp {
                        run_tcp(&mut client, server, &mut rng);
                    } else {
                        run_udp(&mut client, server, &mut rng);
                    }
                    client
                })
            })
            .collect();
        let clients: Vec<Client> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        let mut seen = Seen::default();
        clients.iter().for_each(|c| seen.add(c.seen));
        assert!(
            seen.database_reads > 0
                && seen.cache_hits > 0
                && seen.swaps > 0
                && seen.increments > 0
                && seen.evictions > 0,
            "the run missed a path: {seen:?}"
        );
        clients
    })
}

/// Reads every key of every client from a freshly started server (its
/// cache empty) and hands `accepts` the key and what the database has.
fn read_back(
    server: &TestServer,
    clients: &[Client],
    accepts: impl Fn(&StoredKey, &Option<Vec<u8>>) -> bool,
) {
    let mut c = server.tcp_client();
    for client in clients {
        for (i, key) in client.stored.iter().enumerate() {
            let name = client.key(false, i);
            let r = c.call(&msg(Request::Get { key: &name }, 0, 0));
            let reply = Reply::parse(&r).unwrap();
            let held = match reply.reply_code() {
                Some(ReplyCode::Ok) => Some(reply.data().unwrap().to_vec()),
                Some(ReplyCode::NotIn) => None,
                _ => panic!("{}: {}", String::from_utf8_lossy(&name), describe(&reply)),
            };
            assert!(
                accepts(key, &held),
                "{} holds {} after the restart; the model: now {}, after a crash one of [{}]",
                String::from_utf8_lossy(&name),
                show(held.as_deref()),
                show(key.now.as_deref()),
                key.after_crash
                    .iter()
                    .map(|v| show(v.as_deref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Cache-only writes never reach the database.
        for i in 0..client.cached.len() {
            let name = client.key(true, i);
            let r = c.call(&msg(Request::Get { key: &name }, 0, 0));
            assert_eq!(
                Reply::parse(&r).unwrap().reply_code(),
                Some(ReplyCode::NotIn),
                "{} was written cache-only, yet the database has it",
                String::from_utf8_lossy(&name)
            );
        }
    }
}

/// Walks the database's keys (FIRSTKEY, NEXTKEY) and checks that they
/// are exactly the keys the model holds: the walk waits for queued
/// writes, and no deleted key or cache-only write shows up.
fn assert_walk_finds_the_stored_keys(server: &TestServer, clients: &[Client]) {
    let mut c = server.tcp_client();
    let mut walked = Vec::new();
    let mut r = c.call(&msg(Request::FirstKey, 0, 0));
    while Reply::parse(&r).unwrap().reply_code() == Some(ReplyCode::Ok) {
        let key = Reply::parse(&r).unwrap().data().unwrap().to_vec();
        r = c.call(&msg(Request::NextKey { key: &key }, 0, 0));
        walked.push(key);
    }
    let end = Reply::parse(&r).unwrap();
    assert_eq!(
        end.reply_code(),
        Some(ReplyCode::NotIn),
        "{}",
        describe(&end)
    );
    let mut stored: Vec<Vec<u8>> = clients
        .iter()
        .flat_map(|client| {
            let held = client.stored.iter().enumerate();
            held.filter(|(_, key)| key.now.is_some())
                .map(|(i, _)| client.key(false, i))
        })
        .collect();
    walked.sort();
    stored.sort();
    assert_eq!(walked.len(), stored.len(), "keys walked, keys held");
    assert!(walked == stored, "the walk found other keys than are held");
}

/// The run, a key walk, a clean restart and every key read back.
fn random_requests_survive_a_clean_restart(args: &[&str], seed: u64) {
    let dir = TempDir::new("model");
    let server = TestServer::start(&dir, args);
    let clients = run_clients(&server, seed);
    assert_walk_finds_the_stored_keys(&server, &clients);
    server.stop();
    let server = TestServer::start(&dir, args);
    read_back(&server, &clients, |key, held| *held == key.now);
    server.stop();
}

#[test]
fn random_requests_of_concurrent_clients_agree_with_a_model_and_survive_a_clean_restart() {
    random_requests_survive_a_clean_restart(&["-c", "1"], 1);
}

#[test]
fn random_requests_agree_with_the_model_when_database_reads_do_not_fill_the_cache() {
    random_requests_survive_a_clean_restart(&["-c", "1", "--no-cache-fill"], 31);
}

/// After `kill -9`, each key holds one of its values since its last
/// acknowledged sync write, the newest changes lost first if any are.
fn random_requests_survive_kill_9(durability: &str, seed: u64) {
    let dir = TempDir::new("model-kill");
    let args = ["-c", "1", "--durability", durability];
    let server = TestServer::start(&dir, &args);
    let clients = run_clients(&server, seed);
    server.kill9();
    let server = TestServer::start(&dir, &args);
    read_back(&server, &clients, |key, held| {
        key.after_crash.contains(held)
    });
    server.stop();
}

#[test]
fn random_requests_keep_every_acknowledged_sync_write_through_kill_9_at_disk_durability() {
    random_requests_survive_kill_9("disk", 11);
}

#[test]
fn random_requests_keep_every_acknowledged_sync_write_through_kill_9_at_process_durability() {
    random_requests_survive_kill_9("process", 21);
}

#[test]
fn the_models_incr_matches_the_documented_examples() {
    // A short value grows to 24 bytes, right-aligned, NUL-terminated.
    let (v, n) = incremented(b"41\0", 1).unwrap();
    assert_eq!(n, 42);
    assert_eq!(v, format!("{:>23}\0", 42).into_bytes());
    // strtoll: white space and sign, stops at other bytes, saturates.
    assert_eq!(incremented(b" -7x9\0", 0).unwrap().1, -7);
    assert_eq!(
        incremented(b"99999999999999999999\0", 0).unwrap().1,
        i64::MAX
    );
    assert_eq!(
        incremented(b"-99999999999999999999\0", 0).unwrap().1,
        i64::MIN
    );
    assert_eq!(
        incremented(b"9223372036854775807\0", 1).unwrap().1,
        i64::MIN
    );
    // A longer value keeps its length; only the first 24 bytes change.
    let long = [b"5".as_slice(), &[b'#'; 30], b"\0"].concat();
    let (v, n) = incremented(&long, 1).unwrap();
    assert_eq!((n, v.len()), (6, long.len()));
    assert_eq!(&v[24..], &long[24..]);
    // Without the NUL it is not a number.
    assert_eq!(incremented(b"41", 1), None);
}
