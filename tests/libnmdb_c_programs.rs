//! The C programs in tests/c, written against the original API, built by
//! the system C compiler with every warning an error as C89, C99, C11 and
//! C++, linked against the built library both shared and static, and run
//! against an in-memory server speaking the protocol over TCP and UDP (one
//! of them under valgrind).
//!
//! The library and header are first laid out as `make install` lays them
//! (lib/libnmdb.so.X.Y.Z with its SONAME link libnmdb.so.X and the
//! development link libnmdb.so, lib/libnmdb.a, include/nmdb.h) in a
//! temporary prefix, so programs find libnmdb.so.X at run time exactly as
//! on an installed host.

mod libnmdb_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use libnmdb_common::*;

/// The programs, and whether they are valid C++ too (old_init.c passes an
/// argument to nmdb_init(), which only C's empty parentheses allow).
const PROGRAMS: &[(&str, bool)] = &[
    ("guide_example", true),
    ("api_calls", true),
    ("factorial", true),
    ("threads", true),
    ("bench", true),
    ("old_init", false),
];

const MODES: &[(&str, &[&str])] = &[
    ("c89", &["-x", "c", "-ansi", "-pedantic"]),
    ("c99", &["-x", "c", "-std=c99", "-pedantic"]),
    ("c11", &["-x", "c", "-std=c11", "-pedantic"]),
    ("cxx", &["-x", "c++", "-std=c++11", "-pedantic"]),
];

/// What a static Rust library needs from the system (rustc's
/// `--print native-static-libs` on Linux/glibc).
const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// target/<profile>/deps, where this test and the library were built.
fn deps_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A temporary install prefix with the header and both libraries.
struct Prefix {
    root: PathBuf,
}

impl Prefix {
    fn new(tag: &str) -> Prefix {
        let root = std::env::temp_dir().join(format!("nmdb-c-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (lib, inc) = (root.join("lib"), root.join("include"));
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::copy(repo_path("include/nmdb.h"), inc.join("nmdb.h")).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        let major = env!("CARGO_PKG_VERSION_MAJOR");
        let built = deps_dir();
        std::fs::copy(
            built.join("libnmdb.so"),
            lib.join(format!("libnmdb.so.{version}")),
        )
        .unwrap();
        std::fs::copy(built.join("libnmdb.a"), lib.join("libnmdb.a")).unwrap();
        std::os::unix::fs::symlink(
            format!("libnmdb.so.{version}"),
            lib.join(format!("libnmdb.so.{major}")),
        )
        .unwrap();
        std::os::unix::fs::symlink(format!("libnmdb.so.{major}"), lib.join("libnmdb.so")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        Prefix { root }
    }

    fn lib(&self) -> PathBuf {
        self.root.join("lib")
    }

    /// Compiles and links one program; returns the executable.
    fn build(&self, program: &str, mode: &str, flags: &[&str], shared: bool) -> PathBuf {
        let src = repo_path(&format!("tests/c/{program}.c"));
        let link = if shared { "so" } else { "a" };
        let exe = self
            .root
            .join("bin")
            .join(format!("{program}-{mode}-{link}"));
        let obj = exe.with_extension("o");
        let compiler = if mode == "cxx" { "c++" } else { "cc" };
        run_ok(
            Command::new(compiler)
                .args(flags)
                .args(["-Wall", "-Wextra", "-Werror", "-c", "-o"])
                .arg(&obj)
                .arg("-I")
                .arg(self.root.join("include"))
                .arg(&src),
            &format!("compile {program} ({mode})"),
        );
        let mut cmd = Command::new(compiler);
        cmd.arg("-o").arg(&exe).arg(&obj).arg("-pthread");
        if shared {
            cmd.arg("-L").arg(self.lib()).arg("-lnmdb");
        } else {
            cmd.arg(self.lib().join("libnmdb.a")).args(STATIC_LIBS);
        }
        run_ok(&mut cmd, &format!("link {program} ({mode}, {link})"));
        exe
    }

    /// Runs a program built against the shared library.
    fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new(exe);
        cmd.env("LD_LIBRARY_PATH", self.lib());
        cmd
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn mem_server(kind: Kind) -> FakeServer {
    let mem = Arc::new(MemServer::default());
    FakeServer::start(kind, mem.responder(kind))
}

fn server_args(server: &FakeServer) -> [String; 3] {
    let kind = if server.kind == Kind::Tcp {
        "tcp"
    } else {
        "udp"
    };
    [kind.into(), "127.0.0.1".into(), server.port().to_string()]
}

#[test]
fn programs_compile_cleanly_in_every_mode_and_link_shared_and_static() {
    let prefix = Prefix::new("build");
    for &(program, cxx) in PROGRAMS {
        for &(mode, flags) in MODES {
            if mode == "cxx" && !cxx {
                continue;
            }
            for shared in [true, false] {
                let exe = prefix.build(program, mode, flags, shared);
                assert!(exe.exists());
            }
        }
    }
}

#[test]
fn programs_run_against_a_server_over_tcp_and_udp() {
    let prefix = Prefix::new("run");
    for kind in [Kind::Tcp, Kind::Udp] {
        for &(program, _) in PROGRAMS {
            for shared in [true, false] {
                // A fresh server each time: the programs expect their keys
                // absent.
                let exe = prefix.build(program, "c99", MODES[1].1, shared);
                // The benchmark runs each of its loops, briefly.
                let loops: &[&str] = match program {
                    "bench" => &["cache", "set", "set-sync", "set-get"],
                    _ => &[""],
                };
                for &bench_loop in loops {
                    let server = mem_server(kind);
                    let mut cmd = prefix.command(&exe);
                    cmd.args(server_args(&server));
                    if program == "bench" {
                        cmd.args(["200", bench_loop]);
                    }
                    let what = format!("{program} {bench_loop} {kind:?} shared={shared}");
                    let out = run_ok(&mut cmd, &what);
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(text.contains(&format!("{program}: ok")), "{what}: {text}");
                }
            }
        }
    }
}

#[test]
fn guide_example_skips_when_tipc_is_not_available() {
    let prefix = Prefix::new("tipc");
    let exe = prefix.build("guide_example", "c89", MODES[0].1, true);
    let out = prefix
        .command(&exe)
        .args(["tipc", "11", "12", "13"])
        .output()
        .unwrap();
    // This host has no TIPC (77 = skipped); where TIPC works and no server
    // listens, the first request fails instead (1).
    let code = out.status.code();
    assert!(matches!(code, Some(77) | Some(1)), "{out:?}");
    if code == Some(77) {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("TIPC"), "{text}");
    }
}

#[test]
fn api_calls_run_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        panic!("valgrind is required for this test (apt-get install valgrind)");
    }
    let prefix = Prefix::new("valgrind");
    for (program, kind) in [("api_calls", Kind::Tcp), ("threads", Kind::Udp)] {
        let exe = prefix.build(program, "c11", MODES[2].1, true);
        let server = mem_server(kind);
        let mut cmd = Command::new("valgrind");
        cmd.env("LD_LIBRARY_PATH", prefix.lib())
            .args([
                "--quiet",
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect,possible",
                "--errors-for-leak-kinds=definite,indirect,possible",
                "--error-exitcode=3",
            ])
            .arg(&exe)
            .args(server_args(&server));
        run_ok(&mut cmd, &format!("valgrind {program}"));
    }
}
