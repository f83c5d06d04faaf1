//! nmdb-stats: the original command line, counters printed with their
//! names.

mod libnmdb_common;

use std::process::{Command, Output};
use std::sync::Arc;

use libnmdb_common::*;
use nmdb_proto::stats::COUNTER_NAMES;

fn nmdb_stats(args: &[&str]) -> Output {
    Command::new(built_binary("nmdb-stats"))
        .args(args)
        .output()
        .expect("run nmdb-stats")
}

#[test]
fn prints_every_counter_with_its_name_over_tcp_and_udp() {
    for (kind, proto) in [(Kind::Tcp, "tcp"), (Kind::Udp, "udp")] {
        let mem = Arc::new(MemServer::default());
        let server = FakeServer::start(kind, mem.responder(kind));
        let port = server.port().to_string();
        let out = nmdb_stats(&[proto, "127.0.0.1", &port]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "stats for server 0:");
        // MemServer reports the number of requests it answered as the first
        // counter: this STATS is the first.
        assert_eq!(lines[1], "\t1\tcache_get");
        for (i, name) in COUNTER_NAMES.iter().enumerate() {
            assert!(lines[1 + i].ends_with(&format!("\t{name}")), "{text}");
        }
        assert_eq!(lines.len(), 1 + COUNTER_NAMES.len() + 1);
    }
}

#[test]
fn without_arguments_it_asks_tipc_and_says_when_there_is_none() {
    let out = nmdb_stats(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TIPC"), "{err}");
}

#[test]
fn over_a_kernel_transport_the_host_lacks_it_says_which() {
    let cases = [
        (
            &["tipc", "10"][..],
            nmdb_net::tipc::available(),
            "TIPC is not available",
        ),
        (
            &["sctp", "127.0.0.1", "26010"],
            nmdb_net::sctp::available(),
            "SCTP is not available",
        ),
    ];
    for (args, present, message) in cases {
        if present {
            eprintln!("{}: this kernel has it; not checked here", args[0]);
            continue;
        }
        let out = nmdb_stats(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn bad_command_lines_print_the_usage() {
    for args in [
        &["tcp"][..],
        &["tcp", "localhost"],
        &["http", "a", "1"],
        &["tipc"],
    ] {
        let out = nmdb_stats(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Use: nmdb-stats"),
            "{args:?}"
        );
    }
}

#[test]
fn unreachable_server_is_an_error_with_its_reason() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let out = nmdb_stats(&["tcp", "127.0.0.1", &port]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
}
