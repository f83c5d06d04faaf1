//! One function per library operation: build the request, pick the server,
//! run the exchange, and read the answer. Everything here is safe Rust on
//! checked inputs; `lib.rs` does the C side.

use nmdb_proto::{Request, FLAGS_CACHE_ONLY, FLAGS_SYNC, MAX_DATA_SIZE};

use crate::answer::{self, Cas, Incr};
use crate::error::Error;
use crate::ffi::OutBuf;
use crate::handle::Handle;

/// The three request modes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Database-backed; SET and DEL return once queued.
    Normal,
    /// Database-backed; SET and DEL return once the database applied them.
    Sync,
    /// Cache only; the database is never touched.
    CacheOnly,
}

impl Mode {
    fn flags(self) -> u16 {
        match self {
            Mode::Normal => 0,
            Mode::Sync => FLAGS_SYNC,
            Mode::CacheOnly => FLAGS_CACHE_ONLY,
        }
    }

    fn cache_only(cache_only: bool) -> Mode {
        if cache_only {
            Mode::CacheOnly
        } else {
            Mode::Normal
        }
    }
}

/// The protocol also bounds the sum of a request's sizes (each one was
/// checked on the way in).
fn check_sum(sizes: &[usize]) -> Result<(), Error> {
    let sum: usize = sizes.iter().sum();
    if sum > MAX_DATA_SIZE {
        return Err(Error::TooLarge {
            what: "key and values together",
            size: sum,
            limit: MAX_DATA_SIZE,
        });
    }
    Ok(())
}

fn copy_out(found: Option<&[u8]>, out: &mut OutBuf) -> Result<Option<usize>, Error> {
    found.map(|bytes| out.fill(bytes)).transpose()
}

/// The value's size (copied into `out`), or `None` if the key is not there.
pub fn get(
    h: &Handle,
    key: &[u8],
    cache_only: bool,
    out: &mut OutBuf,
) -> Result<Option<usize>, Error> {
    let server = h.server_for(key)?;
    let flags = Mode::cache_only(cache_only).flags();
    h.call(&server, Request::Get { key }, flags, |reply| {
        copy_out(answer::value(&reply)?, out)
    })
}

pub fn set(h: &Handle, key: &[u8], value: &[u8], mode: Mode) -> Result<(), Error> {
    check_sum(&[key.len(), value.len()])?;
    let server = h.server_for(key)?;
    h.call(
        &server,
        Request::Set { key, value },
        mode.flags(),
        |reply| answer::stored(&reply),
    )
}

/// `true` removed (or queued), `false` it was not there.
pub fn del(h: &Handle, key: &[u8], mode: Mode) -> Result<bool, Error> {
    let server = h.server_for(key)?;
    h.call(&server, Request::Del { key }, mode.flags(), |reply| {
        answer::deleted(&reply)
    })
}

pub fn cas(h: &Handle, key: &[u8], old: &[u8], new: &[u8], cache_only: bool) -> Result<Cas, Error> {
    check_sum(&[key.len(), old.len(), new.len()])?;
    let server = h.server_for(key)?;
    let flags = Mode::cache_only(cache_only).flags();
    h.call(&server, Request::Cas { key, old, new }, flags, |reply| {
        answer::cas(&reply)
    })
}

pub fn incr(h: &Handle, key: &[u8], delta: i64, cache_only: bool) -> Result<Incr, Error> {
    check_sum(&[key.len(), 8])?;
    let server = h.server_for(key)?;
    let flags = Mode::cache_only(cache_only).flags();
    h.call(&server, Request::Incr { key, delta }, flags, |reply| {
        answer::incr(&reply)
    })
}

/// The first key of the (only) server's database, copied into `out`.
pub fn first_key(h: &Handle, out: &mut OutBuf) -> Result<Option<usize>, Error> {
    let server = h.only_server()?;
    h.call(&server, Request::FirstKey, 0, |reply| {
        copy_out(answer::key(&reply)?, out)
    })
}

/// The key after `key`, copied into `out`.
pub fn next_key(h: &Handle, key: &[u8], out: &mut OutBuf) -> Result<Option<usize>, Error> {
    let server = h.only_server()?;
    h.call(&server, Request::NextKey { key }, 0, |reply| {
        copy_out(answer::key(&reply)?, out)
    })
}

/// Asks every server for its counters and packs them one server after
/// another into `out` (server i at `i * nstats * 8`; the original left 4
/// stray bytes after each server). `nstats` is set as soon as a server's
/// counters are stored, so after a failure it tells how many each holds.
/// Returns the number of servers.
pub fn stats(h: &Handle, out: &mut OutBuf, nstats: &mut usize) -> Result<usize, Error> {
    *nstats = 0;
    let servers = h.all_servers();
    let mut per_server = None;
    for (i, server) in servers.iter().enumerate() {
        h.call(server, Request::Stats, 0, |reply| {
            let counters = answer::counters(&reply)?;
            let n = counters.len() / 8;
            let first = *per_server.get_or_insert(n);
            if n != first {
                return Err(Error::StatsMismatch { first, other: n });
            }
            out.write_at(i * counters.len(), counters)?;
            *nstats = n;
            Ok(())
        })?;
    }
    Ok(servers.len())
}
