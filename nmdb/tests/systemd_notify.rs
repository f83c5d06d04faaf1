//! Readiness for systemd (`Type=notify`), against the real binary: the
//! test plays the service manager with a datagram socket in
//! `NOTIFY_SOCKET` that learns each sender's pid, as systemd does to decide
//! whose messages to accept (`NotifyAccess=main`: only the process it
//! started).

mod support;

use nmdb_proto::{Reply, ReplyCode, Request, FLAGS_SYNC};
use std::ffi::OsStr;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// TCP and UDP on loopback only, as the other server tests run.
const ONLY_TCP_UDP: [&str; 2] = ["--no-tipc", "--no-sctp"];

/// One message to the service manager, and who sent it.
#[derive(Debug)]
struct Notification {
    pid: i32,
    text: String,
}

impl Notification {
    fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }
}

/// The service manager's end: a datagram socket at a path, with
/// `SO_PASSCRED` so every message carries its sender's pid.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &TempDir) -> NotifySocket {
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_PASSCRED: {}", io::Error::last_os_error());
        NotifySocket { socket, path }
    }

    /// The environment that points a server at this socket.
    fn env(&self) -> [(&'static str, &OsStr); 1] {
        [("NOTIFY_SOCKET", self.path.as_os_str())]
    }

    /// The next message, waiting at most `wait` (not at all if zero).
    fn recv(&self, wait: Duration) -> Option<Notification> {
        let mut buf = [0u8; 4096];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one SCM_CREDENTIALS message, suitably aligned.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of_val(&control);
        let flags = if wait.is_zero() {
            libc::MSG_DONTWAIT
        } else {
            self.socket.set_read_timeout(Some(wait)).unwrap();
            0
        };
        // SAFETY: hdr points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut hdr, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return None,
                _ => panic!("notify socket: {e}"),
            }
        }
        let mut pid = None;
        // SAFETY: the control buffer was filled by recvmsg, and the CMSG
        // macros walk it within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                    let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    pid = Some(cred.pid);
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
        }
        Some(Notification {
            pid: pid.expect("SO_PASSCRED gives every message its sender"),
            text: String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
        })
    }

    /// Every message already sent.
    fn drain(&self) -> Vec<Notification> {
        std::iter::from_fn(|| self.recv(Duration::ZERO)).collect()
    }

    /// Waits for a message with `line` from `server`; returns the messages
    /// up to and including it. Fails if the server exits first.
    fn wait_for(&self, line: &str, server: &mut TestServer) -> Vec<Notification> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            // Exit first, then the queue: whatever it sent before exiting
            // is queued by the time the exit can be seen.
            let exited = !server.alive();
            while let Some(n) = self.recv(Duration::from_millis(if exited { 0 } else { 20 })) {
                let found = n.has(line);
                seen.push(n);
                if found {
                    return seen;
                }
            }
            assert!(
                !exited,
                "nmdb exited without sending {line}; it sent {seen:?}; log:\n{}",
                server.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "no {line} within {PATIENCE:?}; sent {seen:?}; log:\n{}",
                server.log_text()
            );
        }
    }
}

fn code(reply: &[u8]) -> ReplyCode {
    Reply::parse(reply).unwrap().reply_code().unwrap()
}

fn data(reply: &[u8]) -> Vec<u8> {
    Reply::parse(reply).unwrap().data().unwrap().to_vec()
}

/// A foreground server on loopback pointed at `socket`, not waited for.
fn spawn(dir: &TempDir, socket: &NotifySocket, extra: &[&str]) -> TestServer {
    let mut args = ONLY_TCP_UDP.to_vec();
    args.extend_from_slice(extra);
    TestServer::spawn(
        &nmdb_bin(),
        &dir.path().join("db"),
        &dir.path().join("log"),
        &args,
        &socket.env(),
    )
}

#[test]
fn ready_arrives_only_once_tcp_udp_the_database_and_the_pid_file_are_up() {
    let dir = TempDir::new("notify-ready");
    let socket = NotifySocket::bind(&dir);
    let pid_file = dir.path().join("nmdb.pid");
    let mut server = spawn(&dir, &socket, &["-i", pid_file.to_str().unwrap()]);

    let seen = socket.wait_for("READY=1", &mut server);
    // Checked before anything else happens: the server must already serve
    // when the message arrives, not merely soon after.
    let ready = seen.last().unwrap();
    assert_eq!(seen.len(), 1, "messages before READY=1: {seen:?}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).ok().as_deref(),
        Some(format!("{}\n", server.pid()).as_str()),
        "pid file when READY=1 arrived"
    );
    server.read_addrs(&ONLY_TCP_UDP);
    let mut tcp = server.tcp_client();
    let set = msg(
        Request::Set {
            key: b"up",
            value: b"yes",
        },
        1,
        FLAGS_SYNC,
    );
    assert_eq!(code(&tcp.call(&set)), ReplyCode::Ok);
    let get = msg(Request::Get { key: b"up" }, 2, 0);
    assert_eq!(data(&tcp.call(&get)), b"yes");
    assert_eq!(data(&server.udp_client().call(&get)), b"yes");

    // From the main process itself, which NotifyAccess=main accepts.
    assert_eq!(ready.pid, server.pid(), "{ready:?}");
    assert!(ready.has("STATUS=serving"), "{ready:?}");
    server.stop();
}

/// Runs `nmdb` (in the foreground or not) with `args` to its exit.
fn run_to_exit(socket: &NotifySocket, foreground: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new(nmdb_bin());
    if foreground {
        cmd.arg("-f");
    }
    cmd.args(ONLY_TCP_UDP)
        .args(
            LOOPBACK
                .chunks(2)
                .filter(|pair| !args.contains(&pair[0]))
                .flatten(),
        )
        .args(args)
        .envs(socket.env())
        .stdin(Stdio::null())
        .output()
        .expect("run nmdb")
}

#[test]
fn a_server_that_cannot_start_never_sends_ready_and_exits_non_zero() {
    let dir = TempDir::new("notify-fail");
    let socket = NotifySocket::bind(&dir);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a database").unwrap();
    let no_dir_pid = dir.path().join("missing/nmdb.pid");
    let cases: [(&str, Vec<&str>); 3] = [
        // The database opens; a listener cannot bind.
        (
            "TCP port taken",
            vec!["-d", db, "-T", "127.0.0.1", "-t", &taken_port],
        ),
        (
            "database path is a file",
            vec!["-d", file.to_str().unwrap()],
        ),
        // Everything is up but the pid file.
        (
            "pid file cannot be written",
            vec!["-d", db, "-i", no_dir_pid.to_str().unwrap()],
        ),
    ];
    for (what, args) in &cases {
        for foreground in [true, false] {
            let out = run_to_exit(&socket, foreground, args);
            let sent = socket.drain();
            let how = if foreground {
                "foreground"
            } else {
                "background"
            };
            assert!(
                !out.status.success(),
                "{what} ({how}): exited {}",
                out.status
            );
            assert!(
                !out.stderr.is_empty(),
                "{what} ({how}): no reason on standard error"
            );
            assert!(
                !sent.iter().any(|n| n.has("READY=1")),
                "{what} ({how}): sent {sent:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    drop(taken);
}

#[test]
fn sigterm_and_sigint_send_stopping_before_a_clean_exit() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let dir = TempDir::new("notify-stop");
        let socket = NotifySocket::bind(&dir);
        let mut server = spawn(&dir, &socket, &[]);
        socket.wait_for("READY=1", &mut server);
        let pid = server.pid();
        server.signal(sig);
        let seen = socket.wait_for("STOPPING=1", &mut server);
        let stopping = seen.last().unwrap();
        assert_eq!(stopping.pid, pid, "{stopping:?}");
        assert!(stopping.has("STATUS=shutting down"), "{stopping:?}");
        let status = server.wait_exit();
        assert!(
            status.success(),
            "signal {sig}: exited {status}:\n{}",
            server.log_text()
        );
        let log = server.log_text();
        assert!(log.contains("clean shutdown"), "{log}");
    }
}

/// Kills a daemon left running by a failed test.
struct Daemon(Option<i32>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) on the daemon this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn in_the_background_the_waiting_parent_sends_ready_with_the_daemons_pid() {
    let dir = TempDir::new("notify-daemon");
    let socket = NotifySocket::bind(&dir);
    let pid_file = dir.path().join("nmdb.pid");
    let db = dir.path().join("db");
    let log = dir.path().join("log");
    let mut parent = Command::new(nmdb_bin())
        .args(ONLY_TCP_UDP)
        .args(LOOPBACK)
        .args(["-d", db.to_str().unwrap(), "-o", log.to_str().unwrap()])
        .args(["-i", pid_file.to_str().unwrap()])
        .envs(socket.env())
        .stdin(Stdio::null())
        .spawn()
        .expect("run nmdb");
    let parent_pid = parent.id() as i32;
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = parent.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "nmdb did not go to the background"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "nmdb exited {status}");
    let daemon_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut daemon = Daemon(Some(daemon_pid));

    // The process systemd started says ready and hands the daemon over;
    // the daemon itself says nothing (it is not the main process yet).
    let sent = socket.drain();
    let ready: Vec<&Notification> = sent.iter().filter(|n| n.has("READY=1")).collect();
    assert_eq!(ready.len(), 1, "{sent:?}");
    assert_eq!(ready[0].pid, parent_pid, "{sent:?}");
    assert!(ready[0].has(&format!("MAINPID={daemon_pid}")), "{sent:?}");

    // Once handed over, the daemon is the main process: its STOPPING=1
    // counts. It is sent before the pid file goes.
    // SAFETY: signalling the daemon we started.
    assert_eq!(unsafe { libc::kill(daemon_pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + PATIENCE;
    while pid_file.exists() {
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.0 = None;
    let sent = socket.drain();
    assert!(
        sent.iter()
            .any(|n| n.pid == daemon_pid && n.has("STOPPING=1")),
        "{sent:?}"
    );
}

#[test]
fn an_unreachable_notify_socket_is_logged_and_the_server_serves_anyway() {
    let dir = TempDir::new("notify-nowhere");
    let nowhere = dir.path().join("no-such-socket");
    let mut server = TestServer::spawn(
        &nmdb_bin(),
        &dir.path().join("db"),
        &dir.path().join("log"),
        &ONLY_TCP_UDP,
        &[("NOTIFY_SOCKET", nowhere.as_os_str())],
    );
    server.wait_for_log("ready", 1);
    let log = server.wait_for_log_prefix("cannot notify the service manager at", 1);
    assert!(log.contains(&*nowhere.to_string_lossy()), "{log}");
    server.read_addrs(&ONLY_TCP_UDP);
    let mut tcp = server.tcp_client();
    let reply = tcp.call(&msg(Request::Get { key: b"k" }, 1, 0));
    assert_eq!(code(&reply), ReplyCode::NotIn);
    server.stop();
}
