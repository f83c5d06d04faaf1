//! `make install` as a user runs it, then C programs written against the
//! original API built the usual way (`pkg-config`, the installed header and
//! library, shared and static) and run against the installed real server
//! over TCP and UDP, one of them under valgrind; the installed systemd unit
//! passes `systemd-analyze verify`.

#[path = "../nmdb/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{release_dir, TempDir, TestServer};

const PREFIX: &str = "/usr/local";

fn repo() -> PathBuf {
    support::package_dir()
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `make install DESTDIR=<dir> PREFIX=/usr/local`; returns the root.
fn make_install(dest: &Path) -> PathBuf {
    make_install_to(dest, Path::new(PREFIX));
    dest.join(PREFIX.trim_start_matches('/'))
}

/// Runs `make install DESTDIR=<dest> PREFIX=<prefix>`.
fn make_install_to(dest: &Path, prefix: &Path) {
    let target = release_dir().parent().unwrap().to_path_buf();
    run_ok(
        Command::new("make")
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", &target)
            .arg("install")
            .arg(format!("DESTDIR={}", dest.display()))
            .arg(format!("PREFIX={}", prefix.display())),
        "make install",
    );
}

/// Every file and link under `root`, relative, sorted.
fn listing(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if meta.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&path).unwrap().display()
                ));
            } else if meta.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// `pkg-config` against the staged install, paths rewritten into it.
fn pkg_config(dest: &Path, root: &Path, args: &[&str]) -> Vec<String> {
    let out = run_ok(
        Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", root.join("lib/pkgconfig"))
            .env("PKG_CONFIG_SYSROOT_DIR", dest)
            .args(args)
            .arg("libnmdb"),
        "pkg-config",
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn make_install_lays_out_exactly_the_documented_files() {
    let dest = TempDir::new("install");
    let root = make_install(dest.path());
    let version = env!("CARGO_PKG_VERSION");
    let want = vec![
        "bin/nmdb".to_string(),
        "bin/nmdb-stats".into(),
        "include/nmdb.h".into(),
        "lib/libnmdb.a".into(),
        "lib/libnmdb.so -> libnmdb.so.0".into(),
        format!("lib/libnmdb.so.0 -> libnmdb.so.{version}"),
        format!("lib/libnmdb.so.{version}"),
        "lib/pkgconfig/libnmdb.pc".into(),
        "lib/systemd/system/nmdb.service".into(),
        "share/man/man1/nmdb-stats.1".into(),
        "share/man/man1/nmdb.1".into(),
        "share/man/man3/libnmdb.3".into(),
    ];
    assert_eq!(listing(&root), want);

    let readelf = run_ok(
        Command::new("readelf")
            .arg("-d")
            .arg(root.join("lib/libnmdb.so")),
        "readelf",
    );
    assert!(String::from_utf8_lossy(&readelf.stdout).contains("Library soname: [libnmdb.so.0]"));

    let cflags = pkg_config(dest.path(), &root, &["--cflags"]);
    assert_eq!(cflags, [format!("-I{}", root.join("include").display())]);
    let libs = pkg_config(dest.path(), &root, &["--libs"]);
    assert_eq!(
        libs,
        [format!("-L{}", root.join("lib").display()), "-lnmdb".into()]
    );

    // The unit runs the installed binary (the prefix, not the staging
    // directory).
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/nmdb.service")).unwrap();
    assert!(
        unit.lines()
            .any(|l| l == format!("ExecStart={PREFIX}/bin/nmdb -f -d /var/lib/nmdb")),
        "{unit}"
    );
    assert!(
        !unit.contains("@PREFIX@"),
        "unsubstituted template:\n{unit}"
    );

    // make uninstall removes all of it (directories may stay).
    run_ok(
        Command::new("make")
            .current_dir(repo())
            .arg("uninstall")
            .arg(format!("DESTDIR={}", dest.path().display()))
            .arg(format!("PREFIX={PREFIX}")),
        "make uninstall",
    );
    assert_eq!(listing(&root), Vec::<String>::new());
}

/// Starts the installed server on a fresh database, TCP and UDP only.
fn start_installed(root: &Path, tag: &str) -> (TempDir, TestServer) {
    let dir = TempDir::new(tag);
    let server = TestServer::start_bin(
        &root.join("bin/nmdb"),
        &dir.path().join("db"),
        &dir.path().join("log"),
        &["--no-tipc", "--no-sctp"],
    );
    (dir, server)
}

/// Builds `tests/c/<program>.c` against the staged install with pkg-config.
fn build(dest: &Path, root: &Path, program: &str, shared: bool) -> PathBuf {
    build_source(dest, root, &format!("tests/c/{program}.c"), shared)
}

/// Builds the C program at `source` (relative to the repository).
fn build_source(dest: &Path, root: &Path, source: &str, shared: bool) -> PathBuf {
    let program = Path::new(source).file_stem().unwrap().to_string_lossy();
    let exe = root.join(format!(
        "{program}-{}",
        if shared { "shared" } else { "static" }
    ));
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&exe);
    cmd.arg(repo().join(source));
    cmd.args(pkg_config(dest, root, &["--cflags"]));
    if shared {
        cmd.args(pkg_config(dest, root, &["--libs"]));
    } else {
        // pkg-config --static gives the libraries libnmdb.a needs.
        let libs = pkg_config(dest, root, &["--libs", "--static"]);
        cmd.arg(root.join("lib/libnmdb.a"))
            .args(libs.iter().filter(|l| *l != "-lnmdb"));
    }
    run_ok(&mut cmd, &format!("build {program}"));
    exe
}

#[test]
fn c_programs_built_against_the_installed_library_pass_against_the_installed_server() {
    let dest = TempDir::new("installed-c");
    let root = make_install(dest.path());
    let lib = root.join("lib");
    for program in ["api_calls", "guide_example", "factorial", "threads"] {
        for shared in [true, false] {
            let exe = build(dest.path(), &root, program, shared);
            for transport in ["tcp", "udp"] {
                // A fresh server each time: the programs own their keys.
                let (_dir, server) = start_installed(&root, "installed-server");
                let port = if transport == "tcp" {
                    server.tcp.port()
                } else {
                    server.udp.port()
                };
                let out = run_ok(
                    Command::new(&exe).env("LD_LIBRARY_PATH", &lib).args([
                        transport,
                        "127.0.0.1",
                        &port.to_string(),
                    ]),
                    &format!(
                        "{program} ({}) over {transport}",
                        if shared { "shared" } else { "static" }
                    ),
                );
                assert!(
                    String::from_utf8_lossy(&out.stdout).contains("ok"),
                    "{program}"
                );
                server.stop();
            }
        }
    }
}

#[test]
fn installed_library_runs_clean_under_valgrind_against_the_real_server() {
    let dest = TempDir::new("installed-valgrind");
    let root = make_install(dest.path());
    let exe = build(dest.path(), &root, "api_calls", true);
    for transport in ["tcp", "udp"] {
        let (_dir, server) = start_installed(&root, "valgrind-server");
        let port = if transport == "tcp" {
            server.tcp.port()
        } else {
            server.udp.port()
        };
        run_ok(
            Command::new("valgrind")
                .args([
                    "--quiet",
                    "--error-exitcode=99",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite,indirect,possible",
                ])
                .arg(&exe)
                .args([transport, "127.0.0.1", &port.to_string()])
                .env("LD_LIBRARY_PATH", root.join("lib")),
            &format!("valgrind api_calls over {transport}"),
        );
        server.stop();
    }
}

/// The program the guest kernel runs over TIPC, SCTP and all four
/// transports (tests/kernel/run.sh) passes here over TCP, UDP, and both on
/// one handle: the same behaviour tests on every transport.
#[test]
fn guest_behaviour_program_passes_over_tcp_udp_and_both_on_one_handle() {
    let dest = TempDir::new("installed-guest");
    let root = make_install(dest.path());
    let exe = build_source(dest.path(), &root, "tests/kernel/guest_api.c", false);
    let (_a_dir, a) = start_installed(&root, "guest-a");
    let (_b_dir, b) = start_installed(&root, "guest-b");
    let tcp = format!("tcp:127.0.0.1:{}", a.tcp.port());
    let udp = format!("udp:127.0.0.1:{}", b.udp.port());
    for servers in [vec![&tcp], vec![&udp], vec![&tcp, &udp]] {
        run_ok(
            Command::new(&exe).args(&servers),
            &format!("guest_api {servers:?}"),
        );
    }
    a.stop();
    b.stop();
}

/// The unit as installed, its `ExecStart` naming a binary that exists (the
/// prefix is a real directory here, not a staging one) and its
/// `Documentation=man:nmdb(1)` the installed page.
#[test]
fn installed_systemd_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed (Debian package systemd)");
        return;
    }
    let prefix = TempDir::new("installed-unit");
    make_install_to(Path::new(""), prefix.path());
    let unit = prefix.path().join("lib/systemd/system/nmdb.service");
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify");
    if Command::new("man").arg("--version").output().is_ok() {
        verify.env("MANPATH", prefix.path().join("share/man"));
    } else {
        eprintln!("man is not installed (Debian package man-db): not checking Documentation=");
        verify.arg("--man=no");
    }
    let out = run_ok(verify.arg(&unit), "systemd-analyze verify");
    // Unknown or misspelt settings are only warned about.
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {}:\n{}{}",
        unit.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
