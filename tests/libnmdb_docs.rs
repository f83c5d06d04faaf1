//! man/libnmdb.3 and man/nmdb-stats.1 render without warnings and agree
//! with the code: every function, every default and limit, every counter.

mod libnmdb_common;

use std::process::Command;

use libnmdb_common::repo_path;
use nmdb::timeout::{DEFAULT_TIMEOUT_MS, RESEND_FIRST, RESEND_MAX, TIMEOUT_ENV};
use nmdb_proto::stats::COUNTER_NAMES;
use nmdb_proto::{
    DEFAULT_INET_PORT, DEFAULT_TIPC_PORT, MAX_DATA_SIZE, MAX_MSG_SIZE, MAX_UDP_MSG_SIZE,
};

fn page(name: &str) -> String {
    std::fs::read_to_string(repo_path(&format!("man/{name}"))).unwrap()
}

/// The page as groff renders it, in plain text (hyphens and all).
fn rendered(name: &str) -> String {
    let out = Command::new("groff")
        .args(["-man", "-ww", "-Tutf8", "-P", "-cbou"])
        .arg(repo_path(&format!("man/{name}")))
        .env("MANWIDTH", "200")
        .output()
        .expect("groff");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).replace(['\u{2010}', '\u{2212}'], "-")
}

fn renders_without_warnings(name: &str) {
    let out = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(repo_path(&format!("man/{name}")))
        .output()
        .expect("groff");
    assert!(out.status.success(), "groff failed on {name}");
    assert!(
        out.stderr.is_empty(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_render_without_warnings() {
    renders_without_warnings("libnmdb.3");
    renders_without_warnings("nmdb-stats.1");
}

#[test]
fn libnmdb_3_describes_every_exported_function() {
    let src = std::fs::read_to_string(repo_path("libnmdb/src/lib.rs")).unwrap();
    let text = page("libnmdb.3");
    for chunk in src.split("#[no_mangle]").skip(1) {
        let at = chunk.find("fn ").unwrap() + 3;
        let name = &chunk[at..at + chunk[at..].find('(').unwrap()];
        assert!(text.contains(name), "libnmdb.3 does not mention {name}");
    }
}

#[test]
fn libnmdb_3_quotes_the_defaults_and_limits_of_the_code() {
    let text = rendered("libnmdb.3");
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        format!("{DEFAULT_TIMEOUT_MS} milliseconds by default"),
        TIMEOUT_ENV.to_string(),
        format!("within {} milliseconds", RESEND_FIRST.as_millis()),
        format!("up to {} milliseconds", RESEND_MAX.as_millis()),
        format!("at most {MAX_DATA_SIZE} bytes"),
        format!("{MAX_MSG_SIZE} bytes over TCP"),
        format!("{MAX_UDP_MSG_SIZE} over UDP"),
        format!("{DEFAULT_INET_PORT} for TCP, UDP and SCTP, and {DEFAULT_TIPC_PORT} for TIPC"),
        format!("libnmdb.so.{}", env!("CARGO_PKG_VERSION_MAJOR")),
    ] {
        assert!(flat.contains(&needle), "libnmdb.3 lacks {needle:?}");
    }
    for name in COUNTER_NAMES {
        assert!(flat.contains(name), "libnmdb.3 lacks counter {name}");
    }
}

#[test]
fn header_comments_quote_the_same_timeout_default() {
    let h = std::fs::read_to_string(repo_path("include/nmdb.h")).unwrap();
    assert!(h.contains(&format!("The default is {DEFAULT_TIMEOUT_MS}, or the")));
    assert!(h.contains(TIMEOUT_ENV));
}

#[test]
fn nmdb_stats_1_names_every_counter() {
    let flat = rendered("nmdb-stats.1")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for name in COUNTER_NAMES {
        assert!(flat.contains(name), "nmdb-stats.1 lacks counter {name}");
    }
    assert!(flat.contains(&format!("TIPC server on port {DEFAULT_TIPC_PORT}")));
}
