//! IPv6: the real server listening on ::1, reached through the C API with
//! IPv6 literals (bare and in brackets) over TCP and UDP, and by
//! nmdb-stats.

mod libnmdb_common;
#[path = "../nmdb/tests/support/mod.rs"]
mod support;

use libnmdb_common::Db;
use std::process::Command;
use support::{TempDir, TestServer};

fn server_on_ipv6_loopback(dir: &TempDir) -> TestServer {
    TestServer::start_on(
        &dir.path().join("db"),
        &dir.path().join("log"),
        &["-T", "::1", "-U", "::1"],
    )
}

#[test]
fn the_c_api_reaches_a_server_on_ipv6_loopback_over_tcp_and_udp() {
    let dir = TempDir::new("ipv6-api");
    let server = server_on_ipv6_loopback(&dir);
    assert!(server.tcp.is_ipv6() && server.udp.is_ipv6());

    let tcp = Db::new();
    assert_eq!(tcp.add_tcp("::1", server.tcp.port().into()), 1);
    assert_eq!(tcp.set(b"six", b"over tcp"), 1);
    assert_eq!(tcp.get(b"six", 32), (8, b"over tcp".to_vec()));

    // Written over TCP, read back over UDP; the socket takes replies only
    // from [::1]:port, so the server must answer from there.
    let udp = Db::new();
    assert_eq!(udp.add_udp("[::1]", server.udp.port().into()), 1);
    assert_eq!(udp.get(b"six", 32), (8, b"over tcp".to_vec()));
    assert_eq!(udp.del(b"six"), 1);
    assert_eq!(tcp.get(b"six", 32).0, -1, "gone");
    server.stop();
}

#[test]
fn nmdb_stats_takes_an_ipv6_address() {
    let dir = TempDir::new("ipv6-stats");
    let server = server_on_ipv6_loopback(&dir);
    for (proto, port) in [("tcp", server.tcp.port()), ("udp", server.udp.port())] {
        let out = Command::new(support::release_dir().join("nmdb-stats"))
            .args([proto, "::1", &port.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{proto}: {out:?}");
        assert!(text.contains(&format!("msg_{proto}")), "{text}");
    }
    server.stop();
}
