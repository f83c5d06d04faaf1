//! Build script of the C library: the SONAME of libnmdb.so, and nmdb.h.
//!
//! The header is generated from the exported functions by the pinned
//! cbindgen into OUT_DIR on every build; its path is passed on as
//! NMDB_GENERATED_HEADER so that tests/libnmdb_header.rs can compare it with
//! the checked-in include/nmdb.h. The build never writes into the source tree.

use std::env;
use std::path::PathBuf;

fn main() {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    // Programs link against libnmdb.so.<major>; ABI-compatible releases
    // replace the file behind that name.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnmdb.so.{major}");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("nmdb.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=libnmdb/src");
    println!("cargo:rustc-env=NMDB_GENERATED_HEADER={}", out.display());

    let config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    match cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("libnmdb/src/lib.rs"))
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(&out);
        }
        // Source that does not parse is reported better by rustc; the
        // missing header then fails the header test.
        Err(e) => {
            let _ = std::fs::remove_file(&out);
            println!("cargo:warning=nmdb.h not generated: {e}");
        }
    }
}
