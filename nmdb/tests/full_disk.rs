//! A database on a file system that fills up: writes fail with ERR_DB,
//! nothing acknowledged is lost, and once space returns writes succeed
//! again without a restart.
//!
//! The small file system is a tmpfs mounted by the test, which needs root
//! (as `make check` runs in CI); elsewhere the test says so and does
//! nothing.

mod support;

use nmdb_proto::{ErrorCode, Reply, ReplyCode, Request, FLAGS_SYNC};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use support::*;

/// A tmpfs mounted for the test's lifetime.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs at {}", at.display());
        SmallFs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn set(key: &str, value: &[u8]) -> Vec<u8> {
    msg(
        Request::Set {
            key: key.as_bytes(),
            value,
        },
        1,
        FLAGS_SYNC,
    )
}

#[test]
fn writes_fail_on_a_full_disk_and_succeed_again_once_space_returns() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("full-disk test not run: mounting its small file system needs root");
        return;
    }
    let dir = TempDir::new("full-disk");
    let fs = SmallFs::mount(&dir.path().join("fs"), "24m");
    let db = fs.0.join("db");
    let log = dir.path().join("log");
    let mut server = TestServer::start_on(&db, &log, &["--no-udp"]);
    let mut c = server.tcp_client();

    let value = vec![0x5a; 60_000];
    let mut kept = Vec::new();
    let failed_at = (0..2000)
        .find(|i| {
            let key = format!("fill-{i}");
            let reply = c.call(&set(&key, &value));
            let r = Reply::parse(&reply).unwrap();
            if r.reply_code() == Some(ReplyCode::Ok) {
                kept.push(key);
                return false;
            }
            assert_eq!(r.error_code(), Some(ErrorCode::Db as u32), "{r:?}");
            true
        })
        .expect("24 MiB filled up");
    assert!(failed_at > 10, "the disk was full from the start");
    server.wait_for_log_prefix("database writes are failing", 1);

    // Space returns; the same server takes writes again by itself.
    fs.resize("256m");
    let start = Instant::now();
    loop {
        let reply = c.call(&set("after", b"space"));
        if Reply::parse(&reply).unwrap().reply_code() == Some(ReplyCode::Ok) {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "writes still fail with space back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!(
        "writes succeeded again {:?} after space returned",
        start.elapsed()
    );
    server.wait_for_log("database writes succeed again", 1);

    // Nothing acknowledged was lost, in the database itself.
    server.stop();
    let server = TestServer::start_on(&db, &dir.path().join("log2"), &["--no-udp"]);
    let mut c = server.tcp_client();
    for key in kept.iter().chain([&"after".to_string()]) {
        let reply = c.call(&msg(
            Request::Get {
                key: key.as_bytes(),
            },
            2,
            0,
        ));
        let r = Reply::parse(&reply).unwrap();
        assert_eq!(r.reply_code(), Some(ReplyCode::Ok), "{key}");
    }
    server.stop();
}
