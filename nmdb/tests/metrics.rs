//! The metrics endpoint (`--metrics`), over real HTTP against the real
//! binary: where it answers, in which format, how a bad address is
//! reported, that a scraper cannot stall it or the server, and that every
//! metric it exposes is documented. What the figures count is checked by
//! python/tests/test_metrics.py, with Prometheus's own parser.

mod support;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use support::{framed, msg, nmdb_bin, request, scrape, TempDir, TestServer, LOOPBACK, PATIENCE};

const MAN: &str = include_str!("../../man/nmdb.1");

/// A server with metrics on `metrics` (port 0: a free one), and where
/// they are.
fn start(dir: &TempDir, metrics: &str) -> (TestServer, SocketAddr) {
    metrics_server(dir, &["--metrics", metrics])
}

/// A server with metrics on a free loopback port and `extra` options.
fn start_with(dir: &TempDir, extra: &[&str]) -> (TestServer, SocketAddr) {
    let mut args = vec!["--metrics", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    metrics_server(dir, &args)
}

fn metrics_server(dir: &TempDir, args: &[&str]) -> (TestServer, SocketAddr) {
    let server = TestServer::start(dir, args);
    let addr = server.listening_on("metrics");
    (server, addr)
}

#[test]
fn metrics_are_served_at_slash_metrics_in_the_prometheus_text_format() {
    let dir = TempDir::new("metrics-format");
    let (server, addr) = start(&dir, "127.0.0.1:0");
    let answer = request(addr, "GET", "/metrics");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(answer
        .body
        .contains("# TYPE nmdb_cache_get_total counter\nnmdb_cache_get_total 0\n"));
    assert!(answer
        .body
        .contains("# TYPE nmdb_request_duration_seconds histogram\n"));
    // A query string does not change the path.
    assert_eq!(request(addr, "GET", "/metrics?x=1").status, 200);
    let head = request(addr, "HEAD", "/metrics");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    server.stop();
}

#[test]
fn other_paths_are_not_found_and_other_methods_not_allowed() {
    let dir = TempDir::new("metrics-404");
    let (server, addr) = start(&dir, "127.0.0.1:0");
    for path in ["/", "/metric", "/metrics/", "/metrics.txt", "/favicon.ico"] {
        let answer = request(addr, "GET", path);
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.body.contains("/metrics"), "{path}: {}", answer.body);
    }
    let post = request(addr, "POST", "/metrics");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    server.stop();
}

#[test]
fn metrics_listen_on_an_ipv6_address() {
    if TcpListener::bind("[::1]:0").is_err() {
        return; // no IPv6 loopback on this host
    }
    let dir = TempDir::new("metrics-ipv6");
    let (server, addr) = start(&dir, "[::1]:0");
    assert!(addr.is_ipv6() && addr.port() != 0, "{addr}");
    assert!(scrape(addr).contains("nmdb_msg_tcp_total"));
    server.stop();
}

#[test]
fn a_metrics_value_that_is_not_addr_port_is_a_usage_error_naming_it() {
    for bad in ["9100", "127.0.0.1", "localhost:port", "::1:9100"] {
        let out = std::process::Command::new(nmdb_bin())
            .args(["-f", "--metrics", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--metrics") && err.contains(bad) && err.contains("ADDR:PORT"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_the_address_in_words() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("metrics-in-use");
    let out = std::process::Command::new(nmdb_bin())
        .arg("-f")
        .args(LOOPBACK)
        .args(["--no-tipc", "--no-sctp", "--metrics", &addr])
        .arg("-d")
        .arg(dir.path().join("db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn clients_that_never_read_or_never_finish_stall_neither_scrapes_nor_requests() {
    let dir = TempDir::new("metrics-stuck");
    let (server, addr) = start(&dir, "127.0.0.1:0");
    // Asks for far more answers than the socket buffers hold, and never
    // reads one: its connection stops at a full buffer.
    let mut greedy = TcpStream::connect(addr).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let ask = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(2000);
    match greedy.write_all(ask.as_bytes()) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => panic!("write: {e}"),
    }
    // Sends half a request and waits.
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();

    for _ in 0..3 {
        assert!(scrape(addr).contains("nmdb_tcp_connections "));
    }
    // Answered over a new connection: the server still serves requests.
    assert!(server.counter(nmdb_proto::Counter::MsgTcp) >= 1);
    drop((greedy, half));
    server.stop();
}

/// The value of the unlabelled sample `name` in a scrape.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn connections_over_the_limit_are_counted_as_refused() {
    let dir = TempDir::new("metrics-refused");
    let (server, addr) = start_with(&dir, &["--max-connections", "1"]);
    let mut held = server.tcp_client();
    // Answered: this connection is counted open before the next one comes.
    held.call(&msg(nmdb_proto::Request::Stats, 1, 0));
    for _ in 0..2 {
        assert!(server.tcp_client().closed(), "over the limit: closed");
    }
    let text = scrape(addr);
    assert_eq!(sample(&text, "nmdb_tcp_connections"), 1);
    assert_eq!(sample(&text, "nmdb_tcp_connections_max"), 1);
    assert_eq!(sample(&text, "nmdb_tcp_connections_refused_total"), 2);
    drop(held);
    server.stop();
}

/// Scrapes until `ok` holds for the sample `name`; its last value.
fn sample_until(addr: SocketAddr, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let value = sample(&scrape(addr), name);
        if ok(value) || std::time::Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unread_replies_are_gauged_and_the_connections_closed_for_them_counted() {
    use nmdb_proto::{Request, FLAGS_CACHE_ONLY};
    let dir = TempDir::new("metrics-unread");
    let (server, addr) = start_with(&dir, &["--reply-buffer-mib", "1"]);
    let value = vec![0x6b; 60_000];
    let set = Request::Set {
        key: b"big",
        value: &value,
    };
    server.tcp_client().call(&msg(set, 1, FLAGS_CACHE_ONLY));
    let get = framed(Request::Get { key: b"big" }, 2, FLAGS_CACHE_ONLY);
    let requests = get.repeat(1100);
    // Clients asking for 66 MB of replies each, reading none.
    let hogs: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(server.tcp).unwrap();
            s.write_all(&requests).unwrap();
            s
        })
        .collect();
    let closed = "nmdb_tcp_connections_closed_unread_total";
    assert!(sample_until(addr, closed, |n| n > 0) > 0, "none closed");
    // Once every one of them is gone, nothing is held for them.
    drop(hogs);
    let held = "nmdb_tcp_unread_reply_bytes";
    assert_eq!(sample_until(addr, held, |n| n == 0), 0);
    server.stop();
}

/// The `nmdb_*` names in `text`, each once.
fn names(text: &str) -> Vec<String> {
    let mut found: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        // Skips the pieces of a pattern such as nmdb_NAME_total.
        .filter(|w| w.starts_with("nmdb_") && !w.ends_with('_'))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_metric_the_server_exposes_is_documented_in_nmdb_1_and_no_other() {
    let dir = TempDir::new("metrics-docs");
    let (server, addr) = start(&dir, "127.0.0.1:0");
    let text = scrape(addr);
    server.stop();
    let exposed: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert!(exposed.len() > 30, "{text}");
    let section = MAN
        .split("\n.SH METRICS\n")
        .nth(1)
        .expect("nmdb.1 has a METRICS section")
        .split("\n.SH ")
        .next()
        .unwrap();
    let documented = names(section);
    for name in &exposed {
        assert!(
            documented.contains(name),
            "{name} is not in nmdb.1's METRICS"
        );
    }
    for name in &documented {
        assert!(
            exposed.contains(name),
            "nmdb.1 documents {name}, which the server does not expose"
        );
    }
}
