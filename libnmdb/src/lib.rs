//! libnmdb: the C client library of nmdb.
//!
//! This file is the edge: it holds every exported C function and nothing
//! else. Each one runs inside the panic guard (`ffi::guard`), turns its C
//! arguments into checked Rust values, calls `ops`, and maps the outcome to
//! the return value the original 0.23 library documented. The doc comments
//! below are copied into `include/nmdb.h` by cbindgen.

#![allow(non_camel_case_types)]
// The exports' doc comments become nmdb.h's, written for C programmers; the
// contract for every pointer is the same and stated once, in libnmdb(3): a
// handle is NULL or live, a buffer is NULL with size 0 or holds its size.
#![allow(clippy::missing_safety_doc)]

pub mod answer;
pub mod conn;
pub mod error;
pub mod ffi;
pub mod handle;
pub mod ops;
pub mod placement;
pub mod server;
pub mod timeout;

use std::ffi::{c_char, c_int, c_uchar, c_uint};
use std::ptr;

use libc::{size_t, ssize_t};

use crate::answer::{Cas, Incr};
use crate::error::Error;
use crate::ffi::{guard, guard_by, OutBuf};
use crate::handle::Handle;
use crate::ops::Mode;
use crate::server::{Endpoint, Transport};

/// The opaque connection handle of the C API (typedef struct nmdb_conn
/// nmdb_t;).
pub type nmdb_t = Handle;

/// Creates a handle with no server. The C declaration keeps the original's
/// empty parentheses, so old callers passing a port still compile; any
/// argument is ignored. Returns NULL on failure.
#[no_mangle]
pub extern "C" fn nmdb_init() -> *mut nmdb_t {
    guard(ptr::null_mut(), || {
        Ok(Box::into_raw(Box::new(Handle::new())))
    })
}

/// Older spelling (user guide): nmdb_init() then
/// nmdb_add_tipc_server(db, port). Returns NULL if either fails.
#[no_mangle]
pub extern "C" fn nmdb_connect(port: c_int) -> *mut nmdb_t {
    guard(ptr::null_mut(), || {
        let db = Handle::new();
        db.add_server(Endpoint::tipc(port))?;
        Ok(Box::into_raw(Box::new(db)))
    })
}

unsafe fn add_inet(
    db: *mut nmdb_t,
    transport: Transport,
    addr: *const c_char,
    port: c_int,
) -> Result<c_int, Error> {
    let db = ffi::handle(db)?;
    let host = ffi::c_str(addr, "addr")?;
    db.add_server(Endpoint::inet_from_c(transport, host, port)?)?;
    Ok(1)
}

unsafe fn add_tipc(db: *mut nmdb_t, port: c_int) -> Result<c_int, Error> {
    ffi::handle(db)?.add_server(Endpoint::tipc(port))?;
    Ok(1)
}

/// Adds the TIPC server with this port (instance); negative means 10.
/// Requests are multicast to the name {26001, port}. Returns 1 on success,
/// 0 on failure (the kernel has no TIPC support).
#[no_mangle]
pub unsafe extern "C" fn nmdb_add_tipc_server(db: *mut nmdb_t, port: c_int) -> c_int {
    guard(0, || add_tipc(db, port))
}

/// Older spelling (user guide) of nmdb_add_tipc_server().
#[no_mangle]
pub unsafe extern "C" fn nmdb_add_server(db: *mut nmdb_t, port: c_int) -> c_int {
    guard(0, || add_tipc(db, port))
}

/// Adds a TCP server and connects to it. addr is an IPv4 dotted quad, an
/// IPv6 address (bare or in brackets) or a host name (its first IPv4
/// address, else its first address); a negative port means 26010.
/// Returns 1 on success, 0 on failure (bad address, connection refused).
#[no_mangle]
pub unsafe extern "C" fn nmdb_add_tcp_server(
    db: *mut nmdb_t,
    addr: *const c_char,
    port: c_int,
) -> c_int {
    guard(0, || add_inet(db, Transport::Tcp, addr, port))
}

/// Adds a UDP server (nothing is sent until the first request). Same
/// arguments and return values as nmdb_add_tcp_server().
#[no_mangle]
pub unsafe extern "C" fn nmdb_add_udp_server(
    db: *mut nmdb_t,
    addr: *const c_char,
    port: c_int,
) -> c_int {
    guard(0, || add_inet(db, Transport::Udp, addr, port))
}

/// Adds an SCTP server (one-to-many socket). Returns 1 on success, 0 on
/// failure (bad address, or the kernel has no SCTP support).
#[no_mangle]
pub unsafe extern "C" fn nmdb_add_sctp_server(
    db: *mut nmdb_t,
    addr: *const c_char,
    port: c_int,
) -> c_int {
    guard(0, || add_inet(db, Transport::Sctp, addr, port))
}

/// Closes every connection and frees the handle. Returns 1; with NULL it
/// does nothing and returns 0. No other thread may use the handle any more.
#[no_mangle]
pub unsafe extern "C" fn nmdb_free(db: *mut nmdb_t) -> c_int {
    guard(0, || {
        if db.is_null() {
            return Err(Error::NullHandle);
        }
        drop(Box::from_raw(db));
        Ok(1)
    })
}

/// Sets the longest time one call on this handle may take, in milliseconds;
/// 0 waits forever, like the original. The default is 5000, or the
/// NMDB_TIMEOUT_MS environment variable read by nmdb_init(). Returns 1, or
/// 0 if db is NULL.
#[no_mangle]
pub unsafe extern "C" fn nmdb_set_timeout(db: *mut nmdb_t, msec: c_uint) -> c_int {
    guard(0, || {
        ffi::handle(db)?.set_timeout_ms(msec);
        Ok(1)
    })
}

/// Describes why the calling thread's most recent failing nmdb call failed
/// ("no error" if none did). The string belongs to the library and stays
/// valid until that thread's next failing call.
#[no_mangle]
pub extern "C" fn nmdb_last_error() -> *const c_char {
    guard(ptr::null(), || Ok(error::last()))
}

unsafe fn get(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *mut c_uchar,
    vsize: size_t,
    cache_only: bool,
) -> Result<ssize_t, Error> {
    let db = ffi::handle(db)?;
    let key = ffi::input(key, ksize, "key")?;
    let mut out = OutBuf::new(val, vsize, "val")?;
    Ok(match ops::get(db, key, cache_only, &mut out)? {
        Some(len) => len as ssize_t,
        None => -1,
    })
}

/// Gets the value of a key into val (vsize bytes). Returns the value's
/// size, -1 if the key is not there, -2 on error (including a value larger
/// than vsize).
#[no_mangle]
pub unsafe extern "C" fn nmdb_get(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *mut c_uchar,
    vsize: size_t,
) -> ssize_t {
    guard(-2, || get(db, key, ksize, val, vsize, false))
}

/// Like nmdb_get(), looking only in the cache.
#[no_mangle]
pub unsafe extern "C" fn nmdb_cache_get(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *mut c_uchar,
    vsize: size_t,
) -> ssize_t {
    guard(-2, || get(db, key, ksize, val, vsize, true))
}

unsafe fn set(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *const c_uchar,
    vsize: size_t,
    mode: Mode,
) -> Result<c_int, Error> {
    let db = ffi::handle(db)?;
    let key = ffi::input(key, ksize, "key")?;
    let value = ffi::input(val, vsize, "val")?;
    ops::set(db, key, value, mode)?;
    Ok(1)
}

/// Sets the value of a key; returns once the server queued the database
/// write. Returns 1 on success, < 0 on failure.
#[no_mangle]
pub unsafe extern "C" fn nmdb_set(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *const c_uchar,
    vsize: size_t,
) -> c_int {
    guard(-1, || set(db, key, ksize, val, vsize, Mode::Normal))
}

/// Like nmdb_set(), returning once the database stored the value.
#[no_mangle]
pub unsafe extern "C" fn nmdb_set_sync(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *const c_uchar,
    vsize: size_t,
) -> c_int {
    guard(-1, || set(db, key, ksize, val, vsize, Mode::Sync))
}

/// Older spelling (user guide) of nmdb_set_sync().
#[no_mangle]
pub unsafe extern "C" fn nmdb_sync_set(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *const c_uchar,
    vsize: size_t,
) -> c_int {
    guard(-1, || set(db, key, ksize, val, vsize, Mode::Sync))
}

/// Like nmdb_set(), storing only in the cache.
#[no_mangle]
pub unsafe extern "C" fn nmdb_cache_set(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    val: *const c_uchar,
    vsize: size_t,
) -> c_int {
    guard(-1, || set(db, key, ksize, val, vsize, Mode::CacheOnly))
}

unsafe fn del(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    mode: Mode,
) -> Result<c_int, Error> {
    let db = ffi::handle(db)?;
    let key = ffi::input(key, ksize, "key")?;
    Ok(c_int::from(ops::del(db, key, mode)?))
}

/// Removes a key; returns once the server queued the database delete.
/// Returns 1 if queued, 0 if the server answered that the key was not
/// there, < 0 on failure.
#[no_mangle]
pub unsafe extern "C" fn nmdb_del(db: *mut nmdb_t, key: *const c_uchar, ksize: size_t) -> c_int {
    guard(-1, || del(db, key, ksize, Mode::Normal))
}

/// Like nmdb_del(), returning once the database removed the key: 1 if it
/// was removed, 0 if it was not there, < 0 on failure.
#[no_mangle]
pub unsafe extern "C" fn nmdb_del_sync(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
) -> c_int {
    guard(-1, || del(db, key, ksize, Mode::Sync))
}

/// Older spelling (user guide) of nmdb_del_sync().
#[no_mangle]
pub unsafe extern "C" fn nmdb_sync_del(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
) -> c_int {
    guard(-1, || del(db, key, ksize, Mode::Sync))
}

/// Like nmdb_del(), in the cache only: 1 if it was removed, 0 if it was
/// not cached, < 0 on failure.
#[no_mangle]
pub unsafe extern "C" fn nmdb_cache_del(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
) -> c_int {
    guard(-1, || del(db, key, ksize, Mode::CacheOnly))
}

#[allow(clippy::too_many_arguments)]
unsafe fn cas(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    oldval: *const c_uchar,
    ovsize: size_t,
    newval: *const c_uchar,
    nvsize: size_t,
    cache_only: bool,
) -> Result<c_int, Error> {
    let db = ffi::handle(db)?;
    let key = ffi::input(key, ksize, "key")?;
    let old = ffi::input(oldval, ovsize, "oldval")?;
    let new = ffi::input(newval, nvsize, "newval")?;
    Ok(match ops::cas(db, key, old, new, cache_only)? {
        Cas::Swapped => 2,
        Cas::NoMatch => 1,
        Cas::NotIn => 0,
    })
}

/// Compare and swap: if the key's value is oldval, it becomes newval.
/// Returns 2 if swapped, 1 if the value did not match, 0 if the key is not
/// there, < 0 on failure.
#[no_mangle]
pub unsafe extern "C" fn nmdb_cas(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    oldval: *const c_uchar,
    ovsize: size_t,
    newval: *const c_uchar,
    nvsize: size_t,
) -> c_int {
    guard(-1, || {
        cas(db, key, ksize, oldval, ovsize, newval, nvsize, false)
    })
}

/// Like nmdb_cas(), in the cache only.
#[no_mangle]
pub unsafe extern "C" fn nmdb_cache_cas(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    oldval: *const c_uchar,
    ovsize: size_t,
    newval: *const c_uchar,
    nvsize: size_t,
) -> c_int {
    guard(-1, || {
        cas(db, key, ksize, oldval, ovsize, newval, nvsize, true)
    })
}

unsafe fn incr(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    increment: i64,
    newval: *mut i64,
    cache_only: bool,
) -> Result<c_int, Error> {
    let db = ffi::handle(db)?;
    let key = ffi::input(key, ksize, "key")?;
    Ok(match ops::incr(db, key, increment, cache_only)? {
        Incr::Incremented(value) => {
            if let Some(v) = value {
                ffi::set_out(newval, v);
            }
            2
        }
        Incr::NotNumber => 1,
        Incr::NotIn => 0,
    })
}

/// Adds increment to the number stored as the key's value (a decimal
/// number in text, ending in a NUL byte). Returns 2 if incremented (the new
/// value is stored in *newval when newval is not NULL and the server
/// sent it), 1 if the value is not such a number, 0 if the key is not
/// there, < 0 on failure.
#[no_mangle]
pub unsafe extern "C" fn nmdb_incr(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    increment: i64,
    newval: *mut i64,
) -> c_int {
    guard(-1, || incr(db, key, ksize, increment, newval, false))
}

/// Like nmdb_incr(), in the cache only.
#[no_mangle]
pub unsafe extern "C" fn nmdb_cache_incr(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    increment: i64,
    newval: *mut i64,
) -> c_int {
    guard(-1, || incr(db, key, ksize, increment, newval, true))
}

/// Gets the first key of the server's database into key (ksize bytes).
/// Returns the key's size, -1 if there are no keys, -2 on error (including
/// a key larger than ksize, and a handle with other than one server).
#[no_mangle]
pub unsafe extern "C" fn nmdb_firstkey(
    db: *mut nmdb_t,
    key: *mut c_uchar,
    ksize: size_t,
) -> ssize_t {
    guard(-2, || {
        let db = ffi::handle(db)?;
        let mut out = OutBuf::new(key, ksize, "key")?;
        Ok(match ops::first_key(db, &mut out)? {
            Some(len) => len as ssize_t,
            None => -1,
        })
    })
}

/// Gets the key after key into newkey (nksize bytes). Returns the new
/// key's size, -1 if there are no more keys, -2 on error (as
/// nmdb_firstkey()).
#[no_mangle]
pub unsafe extern "C" fn nmdb_nextkey(
    db: *mut nmdb_t,
    key: *const c_uchar,
    ksize: size_t,
    newkey: *mut c_uchar,
    nksize: size_t,
) -> ssize_t {
    guard(-2, || {
        let db = ffi::handle(db)?;
        let key = ffi::input(key, ksize, "key")?;
        let mut out = OutBuf::new(newkey, nksize, "newkey")?;
        Ok(match ops::next_key(db, key, &mut out)? {
            Some(len) => len as ssize_t,
            None => -1,
        })
    })
}

/// The return value of nmdb_stats() for an error.
fn stats_error(e: &Error) -> c_int {
    match e {
        Error::BufferTooSmall { .. } => -3,
        Error::StatsMismatch { .. } => -4,
        Error::NullHandle | Error::NullPointer(_) => -2,
        e if e.before_sent() => -2,
        _ => -1,
    }
}

/// Gets every server's counters: 8 bytes each in network byte order, server
/// after server (server i's start at byte i * nstats * 8), into buf
/// (bsize bytes). Sets *nservers and *nstats (*nstats is 0 until a
/// server's counters are stored). Returns 1 on success, -1 if a server did
/// not answer OK (or not in time), -2 if a request could not be sent (or an
/// argument is NULL), -3 if buf is too small, -4 if servers returned
/// different numbers of counters. With no server: 1, with 0 and 0.
#[no_mangle]
pub unsafe extern "C" fn nmdb_stats(
    db: *mut nmdb_t,
    buf: *mut c_uchar,
    bsize: size_t,
    nservers: *mut c_uint,
    nstats: *mut c_uint,
) -> c_int {
    guard_by(stats_error, || {
        let db = ffi::handle(db)?;
        if nservers.is_null() {
            return Err(Error::NullPointer("nservers"));
        }
        if nstats.is_null() {
            return Err(Error::NullPointer("nstats"));
        }
        let mut out = OutBuf::new(buf, bsize, "buf")?;
        let mut per_server = 0;
        let result = ops::stats(db, &mut out, &mut per_server);
        *nstats = per_server as c_uint;
        *nservers = result? as c_uint;
        Ok(1)
    })
}
