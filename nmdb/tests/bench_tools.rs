//! The benchmark tools run end to end (with tiny loads: what they measure
//! is not checked here, only that they still measure it).

use std::process::Command;

/// Runs nmdb-bench with `args` (2 clients, 1 round) against the nmdb
/// built beside it; what it printed, once it has succeeded.
fn nmdb_bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nmdb-bench"))
        .args(["--nmdb", env!("CARGO_BIN_EXE_nmdb")])
        .args(["--rounds", "1", "--clients", "2"])
        .args(args)
        .output()
        .expect("run nmdb-bench");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The numbers on the line of `text` that starts with `case`, after it;
/// words ending in one of `units` count, that unit cut off.
fn figures(text: &str, case: &str, units: &[char]) -> Vec<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(case))
        .unwrap_or_else(|| panic!("no {case} in:\n{text}"));
    line[case.len()..]
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(units).parse().ok())
        .collect()
}

#[test]
fn the_event_loop_section_of_nmdb_bench_prints_every_case() {
    let text = nmdb_bench(&["--only", "event-loop", "--ops", "200"]);
    for case in [
        "tcp get (1 client)",
        "tcp get (2 clients)",
        "udp get (1 client)",
        "udp get (2 clients)",
    ] {
        // Four rates (blocking, event-loop and tokio echo, nmdb), each
        // measured: none may be zero.
        let rates = figures(&text, case, &[]);
        assert_eq!(rates.len(), 4, "{case}: {rates:?}");
        assert!(rates.iter().all(|&r| r > 0.0), "{case}: {rates:?}");
    }
}

#[test]
fn the_sync_disk_summary_of_nmdb_bench_sets_nmdb_beside_the_fsync_echo() {
    let text = nmdb_bench(&["--only", "tcp sync disk set", "--ops", "1000"]);
    // 1 client, fdatasync µs, limit, ratio%, fsync echo, ratio%, 2
    // clients, scaling×, requests/fsync: every figure measured.
    let summary = figures(&text, "tcp sync set ", &['%', '×']);
    assert_eq!(summary.len(), 9, "{summary:?}");
    assert!(summary.iter().all(|f| *f > 0.0), "{summary:?}");
}

#[test]
fn the_sync_disk_summary_shows_a_dash_for_a_many_client_case_left_out() {
    let text = nmdb_bench(&["--only", "tcp sync disk set (1", "--ops", "300"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("tcp sync set "))
        .unwrap_or_else(|| panic!("no summary in:\n{text}"));
    // 1 client, fdatasync, limit, ratio, fsync echo, ratio measured; the
    // 2-client rate, scaling and group not.
    let words: Vec<&str> = line.split_whitespace().skip(3).collect();
    assert_eq!(words[words.len() - 3..], ["-", "-", "-"], "{line}");
    assert!(!line.contains("NaN") && !line.contains(" 0.0"), "{line}");
}

#[test]
fn the_scaling_section_of_nmdb_bench_measures_both_client_counts_in_turn_and_the_fsync() {
    let text = nmdb_bench(&["--only", "scaling", "--ops", "1000"]);
    for case in ["tcp sync set", "udp sync set"] {
        // 1 client, 2 clients, scaling×, lowest×, highest×, and the
        // server's average fsync in µs (its unit a word apart).
        let f = figures(&text, case, &['×']);
        assert_eq!(f.len(), 6, "{case}: {f:?}");
        assert!(f.iter().all(|x| *x > 0.0), "{case}: {f:?}");
        assert!(f[3] <= f[2] && f[2] <= f[4], "{case}: {f:?}");
    }
}

#[test]
fn nmdb_bench_counts_database_threads_apart_for_writes_and_not_for_cache_requests() {
    let text = nmdb_bench(&["--only", "tcp ", "--ops", "2000"]);
    // nmdb, echo, ratio%, cpu µs/req, of it db, echo cpu.
    let write = figures(&text, "tcp normal set (1 client)", &['%']);
    assert_eq!(write.len(), 6, "{write:?}");
    let (cpu, db) = (write[3], write[4]);
    assert!(
        db > 0.0 && db < cpu,
        "normal SET: {db} of {cpu} µs in the database"
    );
    // Cache-only requests never reach a database thread.
    let cached = figures(&text, "tcp cache-only get (1 client)", &['%']);
    assert_eq!(cached.len(), 6, "{cached:?}");
    assert_eq!(cached[4], 0.0, "cache-only GET: {cached:?}");
}

#[test]
fn nmdb_bench_measures_writes_of_keys_spread_at_random() {
    let text = nmdb_bench(&[
        "--only",
        "udp normal set (1",
        "--ops",
        "2000",
        "--random-keys",
    ]);
    // nmdb, echo, ratio%, cpu µs/req, of it db, echo cpu.
    let write = figures(&text, "udp normal set (1 client)", &['%']);
    assert_eq!(write.len(), 6, "{write:?}");
    assert!(write[0] > 0.0 && write[4] > 0.0, "{write:?}");
}

#[test]
fn the_random_keys_section_runs_the_asynchronous_and_process_sets_again() {
    let text = nmdb_bench(&["--only", "random-keys", "--ops", "400"]);
    for t in ["tcp", "udp"] {
        for mode in ["normal", "sync process"] {
            for clients in ["1 client", "2 clients"] {
                let case = format!("{t} {mode} set ({clients})");
                // nmdb, echo, ratio%, cpu µs/req, of it db, echo cpu.
                let f = figures(&text, &case, &['%']);
                assert_eq!(f.len(), 6, "{case}: {f:?}");
                assert!(f[0] > 0.0 && f[1] > 0.0, "{case}: {f:?}");
            }
        }
    }
    // Only those: no other request case, and no summary of sync cases.
    assert!(!text.contains("get (") && !text.contains("del ("), "{text}");
    assert!(!text.contains("against the disk"), "{text}");
}

/// The state and parent's pid of process `pid` (from `/proc/PID/stat`,
/// after the name in parentheses); `None` once it is gone.
fn state_and_parent(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.to_owned();
    Some((state, fields.next()?.parse().ok()?))
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&child| state_and_parent(child).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

/// Whether process `pid` still runs (a zombie has ended).
fn runs(pid: u32) -> bool {
    state_and_parent(pid).is_some_and(|(state, _)| state != "Z")
}

/// A child process, killed if the test ends before it does: an nmdb-bench
/// left running would measure for ever.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An nmdb-bench measuring one case for ever, the directory of its files,
/// and its servers once all four run (two nmdb, two echo servers) with
/// their files in place.
fn nmdb_bench_with_its_servers_up() -> (Running, std::path::PathBuf, Vec<u32>) {
    let bench = Command::new(env!("CARGO_BIN_EXE_nmdb-bench"))
        .args(["--nmdb", env!("CARGO_BIN_EXE_nmdb")])
        .args(["--only", "tcp cache-only get (1", "--ops", "100000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let bench = Running(bench);
    let dir = std::env::temp_dir().join(format!("nmdb-tool-run-{}", bench.0.id()));
    let files = ["bench-disk", "bench-process", "fsync-echo-log"].map(|f| dir.join(f));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let servers = loop {
        let servers = children_of(bench.0.id());
        if servers.len() == 4 && files.iter().all(|f| f.exists()) {
            break servers;
        }
        assert!(std::time::Instant::now() < deadline, "servers: {servers:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (bench, dir, servers)
}

#[test]
fn an_interrupted_nmdb_bench_stops_its_servers_and_removes_their_files() {
    let (mut bench, dir, servers) = nmdb_bench_with_its_servers_up();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(bench.0.id() as i32, libc::SIGINT) };
    let status = bench.0.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status:?}");
    for server in servers {
        assert!(!runs(server), "server {server} still runs");
    }
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn the_files_of_a_killed_nmdb_bench_are_removed_by_the_next_run() {
    let (mut live, live_dir, _) = nmdb_bench_with_its_servers_up();
    let (mut killed, dir, servers) = nmdb_bench_with_its_servers_up();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(killed.0.id() as i32, libc::SIGKILL) };
    killed.0.wait().unwrap();
    // Its servers end with it, their files left behind.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while servers.iter().any(|&s| runs(s)) {
        assert!(
            std::time::Instant::now() < deadline,
            "servers outlive a killed nmdb-bench"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(dir.join("bench-disk").exists());
    nmdb_bench(&["--only", "event-loop", "--ops", "200"]);
    assert!(!dir.exists(), "{} is left", dir.display());
    // The files of a run still going are its own.
    assert!(
        live_dir.join("bench-disk").exists(),
        "a live run's files were removed"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(live.0.id() as i32, libc::SIGINT) };
    live.0.wait().unwrap();
}
