//! nmdb-stats: prints the counters of an nmdb server.
//!
//! `nmdb-stats [tipc PORT | tcp|udp|sctp HOST PORT]`; with no argument it
//! asks the TIPC server on the default port (10), as the original did. It
//! goes through the library's C API, exactly as a C program would.

use std::ffi::{c_int, c_uint, CStr, CString};
use std::process::ExitCode;

use nmdb::{
    nmdb_add_sctp_server, nmdb_add_tcp_server, nmdb_add_tipc_server, nmdb_add_udp_server,
    nmdb_free, nmdb_init, nmdb_last_error, nmdb_stats, nmdb_t,
};
use nmdb_proto::stats::COUNTER_NAMES;
use nmdb_proto::DEFAULT_TIPC_PORT;

const USAGE: &str = "Use: nmdb-stats [ tipc PORT | tcp|udp|sctp HOST PORT ]";

/// Room for the counters of the one server asked, with space to spare for
/// a server that sends more than we know about.
const BUF_SIZE: usize = 64 * 8;

enum Target {
    Tipc(c_int),
    Inet(&'static str, CString, c_int),
}

fn parse_port(s: &str) -> Result<c_int, String> {
    s.parse::<c_int>().map_err(|_| format!("bad port {s:?}"))
}

fn parse_args(args: &[String]) -> Result<Target, String> {
    match args {
        [] => Ok(Target::Tipc(DEFAULT_TIPC_PORT as c_int)),
        [t, port] if t == "tipc" => Ok(Target::Tipc(parse_port(port)?)),
        [t, host, port] if matches!(t.as_str(), "tcp" | "udp" | "sctp") => {
            let proto = match t.as_str() {
                "tcp" => "tcp",
                "udp" => "udp",
                _ => "sctp",
            };
            let host = CString::new(host.as_str()).map_err(|_| "bad host".to_string())?;
            Ok(Target::Inet(proto, host, parse_port(port)?))
        }
        _ => Err(USAGE.to_string()),
    }
}

fn last_error() -> String {
    // SAFETY: nmdb_last_error() returns a valid C string owned by the
    // library, valid until this thread's next failing call.
    unsafe { CStr::from_ptr(nmdb_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Adds the server to `db`; the reason on failure.
fn add(db: *mut nmdb_t, target: &Target) -> Result<(), String> {
    // SAFETY: db is a live handle; host strings are NUL-terminated.
    let ok = unsafe {
        match target {
            Target::Tipc(port) => nmdb_add_tipc_server(db, *port),
            Target::Inet("tcp", host, port) => nmdb_add_tcp_server(db, host.as_ptr(), *port),
            Target::Inet("udp", host, port) => nmdb_add_udp_server(db, host.as_ptr(), *port),
            Target::Inet(_, host, port) => nmdb_add_sctp_server(db, host.as_ptr(), *port),
        }
    };
    if ok == 1 {
        Ok(())
    } else {
        Err(format!("Error adding server: {}", last_error()))
    }
}

/// The counters of each server, in the library's server order.
fn fetch(db: *mut nmdb_t) -> Result<Vec<Vec<u64>>, String> {
    let mut buf = vec![0u8; BUF_SIZE];
    let (mut nservers, mut nstats): (c_uint, c_uint) = (0, 0);
    // SAFETY: db is live; buf has BUF_SIZE bytes; the counts are writable.
    let rv = unsafe { nmdb_stats(db, buf.as_mut_ptr(), buf.len(), &mut nservers, &mut nstats) };
    if rv != 1 {
        return Err(format!("Error {rv}: {}", last_error()));
    }
    let per_server = nstats as usize * 8;
    Ok((0..nservers as usize)
        .map(|i| {
            buf[i * per_server..(i + 1) * per_server]
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                .collect()
        })
        .collect())
}

fn print(servers: &[Vec<u64>]) {
    for (i, counters) in servers.iter().enumerate() {
        println!("stats for server {i}:");
        for (k, value) in counters.iter().enumerate() {
            let name = COUNTER_NAMES.get(k).copied().unwrap_or("unknown_field");
            println!("\t{value}\t{name}");
        }
        println!();
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let target = match parse_args(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let db = nmdb_init();
    if db.is_null() {
        eprintln!("nmdb_init() failed: {}", last_error());
        return ExitCode::FAILURE;
    }
    let result = add(db, &target).and_then(|()| fetch(db));
    // SAFETY: db came from nmdb_init() and is not used afterwards.
    unsafe { nmdb_free(db) };
    match result {
        Ok(servers) => {
            print(&servers);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
