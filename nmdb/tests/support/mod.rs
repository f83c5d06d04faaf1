//! Test support: start the real `nmdb` binary on free loopback ports with a
//! real RocksDB directory, wait until it serves, talk raw protocol to it,
//! and stop it cleanly. No fixed sleeps: readiness is read from the log.

#![allow(dead_code)]

use nmdb_proto::frame::next_frame;
use nmdb_proto::{Request, MAX_MSG_SIZE};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Loopback TCP and UDP on ports the kernel picks (read back from the log).
pub const LOOPBACK: [&str; 8] = ["-T", "127.0.0.1", "-U", "127.0.0.1", "-t", "0", "-u", "0"];

/// How long a test waits for anything before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nmdb-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server binary: `$NMDB_BIN` when set (the kernel guest puts it at a
/// path of its own), else the one cargo built with this test.
pub fn nmdb_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NMDB_BIN") {
        return PathBuf::from(path);
    }
    release_dir().join("nmdb")
}

/// `target/release` (or whichever profile dir this test runs from): where
/// cargo put the binaries built with this test. Found from the running
/// executable, not from paths compiled in: a target directory shared by
/// several checkouts (a CI cache) or copied from elsewhere holds test
/// binaries built in another place.
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// This package's source directory. Cargo and nextest give it to the test
/// when they run it; the directory compiled in is only the fallback (the
/// kernel guest runs test binaries without them), since it names the
/// checkout the binary was built in, which need not be this one.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The message of a log line: what follows the `[time LEVEL module] `
/// prefix.
pub fn log_message(line: &str) -> &str {
    match line.find("] ") {
        Some(i) if line.starts_with('[') => line[i + 2..].trim_end(),
        _ => line.trim_end(),
    }
}

/// A running server process.
pub struct TestServer {
    child: Option<Child>,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    pub log: PathBuf,
    pub db: PathBuf,
}

impl TestServer {
    /// Starts a server on a fresh database under `dir` with `extra` options.
    pub fn start(dir: &TempDir, extra: &[&str]) -> TestServer {
        Self::start_on(&dir.path().join("db"), &dir.path().join("nmdb.log"), extra)
    }

    /// Starts a server with its database and log under `dir` and `extra`
    /// options, which may switch TIPC and SCTP on or off.
    pub fn start_in(dir: &TempDir, extra: &[&str]) -> TestServer {
        Self::start_with(&dir.path().join("db"), &dir.path().join("log"), extra)
    }

    /// Starts a server on the database at `db`, logging to `log`, on
    /// loopback TCP and UDP only.
    pub fn start_on(db: &Path, log: &Path, extra: &[&str]) -> TestServer {
        let mut args = vec!["--no-tipc", "--no-sctp"];
        args.extend_from_slice(extra);
        Self::start_with(db, log, &args)
    }

    /// Starts a server with loopback TCP and UDP on free ports and `extra`
    /// options (which may switch TIPC and SCTP on or off).
    pub fn start_with(db: &Path, log: &Path, extra: &[&str]) -> TestServer {
        Self::start_bin(&nmdb_bin(), db, log, extra)
    }

    /// Like `start_with`, running the server binary at `bin`.
    pub fn start_bin(bin: &Path, db: &Path, log: &Path, extra: &[&str]) -> TestServer {
        let mut server = Self::spawn(bin, db, log, extra, &[]);
        server.wait_for_log("ready", 1);
        server.read_addrs(extra);
        server
    }

    /// Starts the server at `bin` in the foreground, as `start_bin` does,
    /// with `env` added to its environment, and returns at once: the
    /// addresses are not known until `read_addrs`.
    pub fn spawn(
        bin: &Path,
        db: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &OsStr)],
    ) -> TestServer {
        let _ = std::fs::remove_file(log);
        // The loopback defaults, less the options `extra` sets itself.
        let loopback = LOOPBACK
            .chunks(2)
            .filter(|pair| !extra.contains(&pair[0]))
            .flatten();
        let child = Command::new(bin)
            .arg("-f")
            .args(loopback)
            .arg("-d")
            .arg(db)
            .arg("-o")
            .arg(log)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nmdb");
        TestServer {
            child: Some(child),
            tcp: "0.0.0.0:0".parse().unwrap(),
            udp: "0.0.0.0:0".parse().unwrap(),
            log: log.to_path_buf(),
            db: db.to_path_buf(),
        }
    }

    /// Reads the TCP and UDP addresses from the "listening on" lines the
    /// log holds now, for a server started with `extra` options.
    pub fn read_addrs(&mut self, extra: &[&str]) {
        if !extra.contains(&"--no-tcp") {
            self.tcp = self.listening_on("tcp");
        }
        if !extra.contains(&"--no-udp") {
            self.udp = self.listening_on("udp");
        }
    }

    /// The address of `what` (`tcp`, `udp`, `sctp`, `metrics`) from the
    /// "listening on" line of the log.
    pub fn listening_on(&self, what: &str) -> SocketAddr {
        let text = self.log_text();
        let prefix = format!("listening on {what} ");
        text.lines()
            .find_map(|l| log_message(l).strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {what} line in log:\n{text}"))
            .parse()
            .unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// A memory figure of the process from /proc, in bytes (`VmRSS`,
    /// `VmHWM` for the peak).
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// One STATS counter, read over a new TCP connection.
    pub fn counter(&self, which: nmdb_proto::Counter) -> u64 {
        let mut c = self.tcp_client();
        let reply = c.call(&msg(Request::Stats, 1, 0));
        let at = 8 + 4 + which as usize * 8;
        u64::from_be_bytes(reply[at..at + 8].try_into().unwrap())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `count` lines whose message is exactly
    /// `message` (a whole message: "ready" does not match "address already
    /// in use"); returns the log.
    pub fn wait_for_log(&mut self, message: &str, count: usize) -> String {
        self.wait_for_lines(message, count, |m| m == message)
    }

    /// Like `wait_for_log`, for messages that start with `prefix`.
    pub fn wait_for_log_prefix(&mut self, prefix: &str, count: usize) -> String {
        self.wait_for_lines(prefix, count, |m| m.starts_with(prefix))
    }

    fn wait_for_lines(
        &mut self,
        what: &str,
        count: usize,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.log_text();
            if text.lines().filter(|l| wanted(log_message(l))).count() >= count {
                return text;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("nmdb exited ({status}) before logging '{what}':\n{text}");
            }
            assert!(Instant::now() < deadline, "no '{what}' in the log:\n{text}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert!(
            status.success(),
            "nmdb exited with {status}:\n{}",
            self.log_text()
        );
        self.log_text()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit();
    }

    /// Waits until the process exits (after a signal, say).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("nmdb did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn tcp_client(&self) -> TcpClient {
        TcpClient::connect(self.tcp)
    }

    pub fn udp_client(&self) -> UdpClient {
        UdpClient::connect(self.udp)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Encodes a request message (no TCP prefix).
pub fn msg(req: Request<'_>, id: u32, flags: u16) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode(id, flags, &mut out);
    out
}

/// Encodes a request behind its TCP length prefix.
pub fn framed(req: Request<'_>, id: u32, flags: u16) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode_framed(id, flags, &mut out);
    out
}

/// A raw TCP client speaking length-prefixed frames.
pub struct TcpClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl TcpClient {
    pub fn connect(addr: SocketAddr) -> TcpClient {
        Self::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// Reads replies from a connection made elsewhere (e.g. a clone of
    /// another client's stream).
    pub fn from_stream(stream: TcpStream) -> TcpClient {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        TcpClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes (a prefix is not added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends one message behind its length prefix.
    pub fn send(&mut self, msg: &[u8]) {
        let mut framed = ((msg.len() + 4) as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(msg);
        self.send_raw(&framed);
    }

    /// Reads one whole frame (prefix included); `None` on end of stream.
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(total) = next_frame(&self.buf, MAX_MSG_SIZE).expect("bad reply frame") {
                return Some(self.buf.drain(..total).collect());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("tcp receive: {e}"),
            }
        }
    }

    /// One reply message without its prefix.
    pub fn recv(&mut self) -> Vec<u8> {
        let frame = self
            .recv_frame()
            .expect("connection closed instead of a reply");
        frame[4..].to_vec()
    }

    /// Sends `msg` and returns the reply message.
    pub fn call(&mut self, msg: &[u8]) -> Vec<u8> {
        self.send(msg);
        self.recv()
    }

    /// True when the server closed the connection (with nothing pending).
    pub fn closed(&mut self) -> bool {
        self.recv_frame().is_none()
    }

    /// Waits `wait` and reports whether any byte arrived.
    pub fn quiet_for(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let quiet = match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => {
                self.buf.push(b[0]);
                false
            }
            Err(_) => true,
        };
        self.stream.set_read_timeout(Some(PATIENCE)).unwrap();
        quiet
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A raw UDP client.
pub struct UdpClient {
    pub socket: UdpSocket,
}

impl UdpClient {
    pub fn connect(addr: SocketAddr) -> UdpClient {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(addr).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        UdpClient { socket }
    }

    pub fn send(&self, msg: &[u8]) {
        self.socket.send(msg).expect("udp send");
    }

    pub fn recv(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 70000];
        let n = self.socket.recv(&mut buf).expect("udp reply");
        buf.truncate(n);
        buf
    }

    pub fn call(&self, msg: &[u8]) -> Vec<u8> {
        self.send(msg);
        self.recv()
    }

    /// Waits `wait` and reports whether no datagram arrived.
    pub fn quiet_for(&self, wait: Duration) -> bool {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 70000];
        let quiet = self.socket.recv(&mut buf).is_err();
        self.socket.set_read_timeout(Some(PATIENCE)).unwrap();
        quiet
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Makes closing `stream` send a reset (SO_LINGER 0) instead of a FIN.
pub fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// An HTTP answer, taken apart just enough for the tests.
pub struct Answer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP request (to `--metrics`) on a new connection and reads
/// the whole answer (the server closes the connection after it, as asked).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole HTTP answer");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    Answer {
        status: status.parse().unwrap(),
        headers,
        body: body.to_string(),
    }
}

/// The metrics served at `addr`, once answered 200.
pub fn scrape(addr: SocketAddr) -> String {
    let answer = request(addr, "GET", "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}
