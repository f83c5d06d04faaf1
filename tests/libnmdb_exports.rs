//! The C boundary's rules, checked on the source and the built library:
//! every exported function is defined in lib.rs and runs entirely inside the
//! panic guard, and libnmdb.so exports exactly those functions.

mod libnmdb_common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use libnmdb_common::repo_path;

/// (name, body) of every `#[no_mangle]` function in `src`.
fn exports(src: &str) -> Vec<(String, String)> {
    src.split("#[no_mangle]")
        .skip(1)
        .map(|rest| {
            let name_at = rest.find("fn ").unwrap() + 3;
            let name = rest[name_at..name_at + rest[name_at..].find('(').unwrap()].to_string();
            // The body: from the signature's opening brace to the function's
            // closing brace at the start of a line.
            let open = rest.find(" {\n").expect("body");
            let close = rest.find("\n}\n").expect("end of body");
            (
                name.trim().to_string(),
                rest[open + 3..close].trim().to_string(),
            )
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_export_runs_inside_the_panic_guard() {
    let src = std::fs::read_to_string(repo_path("libnmdb/src/lib.rs")).unwrap();
    let found = exports(&src);
    assert_eq!(found.len(), 27);
    for (name, body) in &found {
        assert!(
            body.starts_with("guard(") || body.starts_with("guard_by("),
            "{name} does not start with the panic guard:\n{body}"
        );
        // One expression: nothing runs before or after the guard.
        assert!(body.ends_with(')'), "{name}: code after the guard:\n{body}");
        let depth_zero_semicolons = body
            .chars()
            .scan(0i32, |d, c| {
                *d += match c {
                    '(' | '{' | '[' => 1,
                    ')' | '}' | ']' => -1,
                    _ => 0,
                };
                Some((*d, c))
            })
            .filter(|&(d, c)| d == 0 && c == ';')
            .count();
        assert_eq!(depth_zero_semicolons, 0, "{name}: more than the guard");
    }
}

#[test]
fn exports_live_only_in_lib_rs() {
    let mut files = Vec::new();
    rust_files(&repo_path("libnmdb/src"), &mut files);
    for f in files {
        if f.ends_with("libnmdb/src/lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("no_mangle"),
            "{} exports a symbol",
            f.display()
        );
        assert!(
            !text.contains("extern \"C\" fn"),
            "{} has a C function",
            f.display()
        );
    }
}

/// target/<profile>/deps, where cargo built libnmdb.so next to this test.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

#[test]
fn shared_library_exports_exactly_the_api() {
    let so = deps_dir().join("libnmdb.so");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("nm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[1] == "T").then(|| f[2].to_string())
        })
        .collect();
    let src = std::fs::read_to_string(repo_path("libnmdb/src/lib.rs")).unwrap();
    let declared: BTreeSet<String> = exports(&src).into_iter().map(|(n, _)| n).collect();
    assert_eq!(exported, declared);
}

#[test]
fn shared_library_has_the_major_version_soname() {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(deps_dir().join("libnmdb.so"))
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    assert!(
        text.contains(&format!("Library soname: [libnmdb.so.{major}]")),
        "{text}"
    );
}
