//! Test support shared by the libnmdb integration tests: fake servers on
//! 127.0.0.1 (port 0) that record what the library sends and answer with
//! chosen bytes, a small in-memory server with the real semantics, and a
//! thin owner of an `nmdb_t *`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nmdb::*;
use nmdb_proto::reply::{put_code, put_data, put_error, put_incr, put_stats};
use nmdb_proto::request::parse;
use nmdb_proto::{ErrorCode, ReplyCode, Request, NUM_COUNTERS};

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A file in the repository (vectors live in tests/vectors). The
/// checkout is the one cargo or nextest names when running the test; the
/// one compiled in may be another that shared the target directory.
pub fn repo_path(rel: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join(rel)
}

/// A binary cargo built with this test: beside the test's own directory
/// in the target directory it runs from (not the path compiled in, which
/// may be another copy of the target directory).
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps/<test>")
        .join(name)
}

/// Prefixes a message with its TCP length (which counts itself).
pub fn tcp_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = ((msg.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
}

/// What a fake server does after receiving a message.
pub enum Out {
    /// Writes these bytes (TCP: raw, include the prefix) / sends a datagram.
    Send(Vec<u8>),
    /// Closes the TCP connection.
    Close,
    /// UDP: sends these bytes from another socket (another port of the same
    /// host), as a spoofer on the network would.
    SendFromElsewhere(Vec<u8>),
    /// Waits this long before what follows.
    Pause(Duration),
}

/// Given a request message (no prefix) and its index among all received,
/// what to do.
pub type Responder = Arc<dyn Fn(&[u8], usize) -> Vec<Out> + Send + Sync>;

/// A server on 127.0.0.1 that records every message (TCP: whole frames with
/// prefix; UDP: datagrams) and answers through a responder.
pub struct FakeServer {
    pub kind: Kind,
    pub addr: SocketAddrV4,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// TCP connections this server has closed (after `Out::Close`).
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(kind: Kind, responder: Responder) -> FakeServer {
        Self::start_at(kind, "127.0.0.1:0".parse().unwrap(), responder).expect("bind")
    }

    /// On a chosen address; fails if it is taken.
    pub fn start_at(
        kind: Kind,
        at: SocketAddrV4,
        responder: Responder,
    ) -> std::io::Result<FakeServer> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, thread) = match kind {
            Kind::Tcp => {
                let listener = TcpListener::bind(at)?;
                let addr = sock_v4(listener.local_addr()?);
                let (rec, cl, st) = (received.clone(), closed.clone(), stop.clone());
                let t =
                    std::thread::spawn(move || tcp_accept_loop(listener, responder, rec, cl, st));
                (addr, t)
            }
            Kind::Udp => {
                let socket = UdpSocket::bind(at)?;
                socket.set_read_timeout(Some(Duration::from_millis(20)))?;
                let addr = sock_v4(socket.local_addr()?);
                let (rec, st) = (received.clone(), stop.clone());
                let t = std::thread::spawn(move || udp_loop(socket, responder, rec, st));
                (addr, t)
            }
        };
        Ok(FakeServer {
            kind,
            addr,
            received,
            closed,
            stop,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until this server has closed `n` TCP connections in all. On
    /// loopback the peer has the FIN once close(2) returns.
    pub fn wait_closed(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.closed.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "connection {n} was never closed");
            std::thread::yield_now();
        }
    }

    /// Adds this server to `db` with the matching transport.
    pub fn add_to(&self, db: &Db) -> i32 {
        match self.kind {
            Kind::Tcp => db.add_tcp("127.0.0.1", self.port().into()),
            Kind::Udp => db.add_udp("127.0.0.1", self.port().into()),
        }
    }

    /// A handle whose calls time out after `timeout_ms`, using this server
    /// alone (the timeout is set first: adding a TCP server connects).
    pub fn client(&self, timeout_ms: u32) -> Db {
        let db = Db::new();
        db.set_timeout(timeout_ms);
        self.add_to(&db);
        db
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.kind == Kind::Tcp {
            // Wake the blocking accept().
            let _ = TcpStream::connect(self.addr);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sock_v4(a: std::net::SocketAddr) -> SocketAddrV4 {
    match a {
        std::net::SocketAddr::V4(v4) => v4,
        _ => panic!("IPv4 expected"),
    }
}

fn tcp_accept_loop(
    listener: TcpListener,
    responder: Responder,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut conns = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let (r, rec, st) = (responder.clone(), received.clone(), stop.clone());
        let closed = closed.clone();
        conns.push(std::thread::spawn(move || {
            if tcp_conn(stream, r, rec, st) {
                closed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for c in conns {
        let _ = c.join();
    }
}

/// Reads exactly `buf.len()` bytes, checking `stop` between timeouts.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> bool {
    let mut off = 0;
    while off < buf.len() {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        match stream.read(&mut buf[off..]) {
            Ok(0) => return false,
            Ok(n) => off += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Serves one connection; true when it ended by `Out::Close`.
fn tcp_conn(
    mut stream: TcpStream,
    responder: Responder,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    loop {
        let mut prefix = [0u8; 4];
        if !read_full(&mut stream, &mut prefix, &stop) {
            return false;
        }
        let total = u32::from_be_bytes(prefix) as usize;
        if !(12..=70_000 + 4 + 64).contains(&total) {
            return false;
        }
        let mut frame = prefix.to_vec();
        frame.resize(total, 0);
        if !read_full(&mut stream, &mut frame[4..], &stop) {
            return false;
        }
        let index = {
            let mut rec = received.lock().unwrap();
            rec.push(frame.clone());
            rec.len() - 1
        };
        for out in responder(&frame[4..], index) {
            match out {
                Out::Send(bytes) => {
                    if stream.write_all(&bytes).is_err() {
                        return false;
                    }
                }
                Out::Close => {
                    drop(stream);
                    return true;
                }
                Out::SendFromElsewhere(_) => panic!("UDP only"),
                Out::Pause(d) => std::thread::sleep(d),
            }
        }
    }
}

fn udp_loop(
    socket: UdpSocket,
    responder: Responder,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 70_000];
    let elsewhere = UdpSocket::bind("127.0.0.1:0").expect("second UDP socket");
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let msg = buf[..n].to_vec();
        let index = {
            let mut rec = received.lock().unwrap();
            rec.push(msg.clone());
            rec.len() - 1
        };
        for out in responder(&msg, index) {
            match out {
                Out::Send(bytes) => drop(socket.send_to(&bytes, from)),
                Out::SendFromElsewhere(bytes) => drop(elsewhere.send_to(&bytes, from)),
                Out::Close => {}
                Out::Pause(d) => std::thread::sleep(d),
            }
        }
    }
}

/// The id of a request message (no prefix).
pub fn request_id(msg: &[u8]) -> u32 {
    u32::from_be_bytes(msg[..4].try_into().unwrap()) & 0x0fff_ffff
}

/// A small in-memory server with nmdb's semantics (cache and database are
/// one map), enough for the C programs and the concurrency tests.
#[derive(Default)]
pub struct MemServer {
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    requests: Mutex<u64>,
}

impl MemServer {
    pub fn responder(self: &Arc<Self>, kind: Kind) -> Responder {
        let me = self.clone();
        Arc::new(move |msg, _| {
            let reply = me.answer(msg);
            vec![Out::Send(match kind {
                Kind::Tcp => tcp_frame(&reply),
                Kind::Udp => reply,
            })]
        })
    }

    pub fn answer(&self, msg: &[u8]) -> Vec<u8> {
        *self.requests.lock().unwrap() += 1;
        let mut out = Vec::new();
        let Ok((h, req)) = parse(msg) else {
            put_error(&mut out, request_id(msg), ErrorCode::Broken);
            return out;
        };
        let id = h.id;
        let mut data = self.data.lock().unwrap();
        match req {
            Request::Get { key } => match data.get(key) {
                Some(v) => put_data(&mut out, id, ReplyCode::CacheHit, v),
                None if h.cache_only() => put_code(&mut out, id, ReplyCode::CacheMiss),
                None => put_code(&mut out, id, ReplyCode::NotIn),
            },
            Request::Set { key, value } => {
                data.insert(key.to_vec(), value.to_vec());
                put_code(&mut out, id, ReplyCode::Ok);
            }
            Request::Del { key } => {
                let was = data.remove(key).is_some();
                let queued = !h.cache_only() && !h.sync();
                let code = if was || queued {
                    ReplyCode::Ok
                } else {
                    ReplyCode::NotIn
                };
                put_code(&mut out, id, code);
            }
            Request::Cas { key, old, new } => {
                let code = match data.get_mut(key) {
                    None => ReplyCode::NotIn,
                    Some(v) if v.as_slice() == old => {
                        *v = new.to_vec();
                        ReplyCode::Ok
                    }
                    Some(_) => ReplyCode::NoMatch,
                };
                put_code(&mut out, id, code);
            }
            Request::Incr { key, delta } => match data.get_mut(key) {
                None => put_code(&mut out, id, ReplyCode::NotIn),
                Some(v) if v.last() != Some(&0) => put_code(&mut out, id, ReplyCode::NoMatch),
                Some(v) => {
                    let text = String::from_utf8_lossy(&v[..v.len() - 1])
                        .trim()
                        .to_string();
                    let n: i64 = text.parse().unwrap_or(0);
                    let n = n.wrapping_add(delta);
                    let mut s = format!("{n:>23}").into_bytes();
                    s.push(0);
                    *v = s;
                    put_incr(&mut out, id, n);
                }
            },
            Request::Stats => {
                let mut counters = [0u64; NUM_COUNTERS];
                counters[0] = *self.requests.lock().unwrap();
                put_stats(&mut out, id, &counters);
            }
            Request::FirstKey => match data.keys().next() {
                Some(k) => put_data(&mut out, id, ReplyCode::Ok, k),
                None => put_code(&mut out, id, ReplyCode::NotIn),
            },
            Request::NextKey { key } => {
                use std::ops::Bound::{Excluded, Unbounded};
                match data.range::<[u8], _>((Excluded(key), Unbounded)).next() {
                    Some((k, _)) => put_data(&mut out, id, ReplyCode::Ok, k),
                    None => put_code(&mut out, id, ReplyCode::NotIn),
                }
            }
        }
        out
    }
}

/// Owns an `nmdb_t *` and calls the exported C functions on it.
pub struct Db(pub *mut nmdb_t);

// The library allows sharing a handle between threads.
unsafe impl Send for Db {}
unsafe impl Sync for Db {}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

impl Db {
    pub fn new() -> Db {
        let p = nmdb_init();
        assert!(!p.is_null());
        Db(p)
    }

    pub fn handle(&self) -> &nmdb::handle::Handle {
        unsafe { &*self.0 }
    }

    pub fn add_tcp(&self, host: &str, port: i32) -> i32 {
        let h = CString::new(host).unwrap();
        unsafe { nmdb_add_tcp_server(self.0, h.as_ptr(), port) }
    }

    pub fn add_udp(&self, host: &str, port: i32) -> i32 {
        let h = CString::new(host).unwrap();
        unsafe { nmdb_add_udp_server(self.0, h.as_ptr(), port) }
    }

    pub fn set_timeout(&self, ms: u32) {
        assert_eq!(unsafe { nmdb_set_timeout(self.0, ms) }, 1);
    }

    /// `(returned, value)` with a `vsize`-byte buffer.
    pub fn get(&self, key: &[u8], vsize: usize) -> (isize, Vec<u8>) {
        let mut buf = vec![0u8; vsize];
        let r = unsafe { nmdb_get(self.0, key.as_ptr(), key.len(), buf.as_mut_ptr(), vsize) };
        buf.truncate(r.max(0) as usize);
        (r, buf)
    }

    pub fn set(&self, key: &[u8], val: &[u8]) -> i32 {
        unsafe { nmdb_set(self.0, key.as_ptr(), key.len(), val.as_ptr(), val.len()) }
    }

    pub fn del(&self, key: &[u8]) -> i32 {
        unsafe { nmdb_del(self.0, key.as_ptr(), key.len()) }
    }

    pub fn incr(&self, key: &[u8], by: i64) -> (i32, i64) {
        let mut v = 0x5a5a_5a5a;
        let r = unsafe { nmdb_incr(self.0, key.as_ptr(), key.len(), by, &mut v) };
        (r, v)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        assert_eq!(unsafe { nmdb_free(self.0) }, 1);
    }
}

/// This thread's last error text.
pub fn last_error() -> String {
    unsafe { std::ffi::CStr::from_ptr(nmdb_last_error()) }
        .to_string_lossy()
        .into_owned()
}
