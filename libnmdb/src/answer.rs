//! What a reply means for each kind of request, as the original library
//! read it (checked by `tests/libnmdb_vectors.rs`), except where its reading
//! was a defect: an OK reply to GET without its value is an error here, not
//! a copy of leftover bytes.
//!
//! Pure functions from a parsed reply to an outcome; the C return values are
//! chosen at the edge (`lib.rs`).

use nmdb_proto::{Reply, ReplyCode};

use crate::error::Error;

/// A reply code the request does not expect, or `REP_ERR`.
fn unexpected(reply: &Reply<'_>) -> Error {
    match reply.error_code() {
        Some(code) => Error::Server(code),
        None => Error::UnexpectedReply(reply.code),
    }
}

/// GET: `Some(value)`, or `None` when the key is not there (in the cache
/// for a cache-only GET).
pub fn value<'a>(reply: &Reply<'a>) -> Result<Option<&'a [u8]>, Error> {
    match reply.reply_code() {
        Some(ReplyCode::CacheHit | ReplyCode::Ok) => Ok(Some(reply.data()?)),
        Some(ReplyCode::NotIn | ReplyCode::CacheMiss) => Ok(None),
        _ => Err(unexpected(reply)),
    }
}

/// FIRSTKEY / NEXTKEY: `Some(key)`, or `None` at the end of the walk.
pub fn key<'a>(reply: &Reply<'a>) -> Result<Option<&'a [u8]>, Error> {
    match reply.reply_code() {
        Some(ReplyCode::Ok) => Ok(Some(reply.data()?)),
        Some(ReplyCode::NotIn) => Ok(None),
        _ => Err(unexpected(reply)),
    }
}

/// SET: only OK is success.
pub fn stored(reply: &Reply<'_>) -> Result<(), Error> {
    match reply.reply_code() {
        Some(ReplyCode::Ok) => Ok(()),
        _ => Err(unexpected(reply)),
    }
}

/// DEL: `true` removed (or queued), `false` it was not there.
pub fn deleted(reply: &Reply<'_>) -> Result<bool, Error> {
    match reply.reply_code() {
        Some(ReplyCode::Ok) => Ok(true),
        Some(ReplyCode::NotIn) => Ok(false),
        _ => Err(unexpected(reply)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    Swapped,
    NoMatch,
    NotIn,
}

pub fn cas(reply: &Reply<'_>) -> Result<Cas, Error> {
    match reply.reply_code() {
        Some(ReplyCode::Ok) => Ok(Cas::Swapped),
        Some(ReplyCode::NoMatch) => Ok(Cas::NoMatch),
        Some(ReplyCode::NotIn) => Ok(Cas::NotIn),
        _ => Err(unexpected(reply)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incr {
    /// Incremented; the new value when the reply carries it in the expected
    /// shape (the original wrote the caller's `newval` only then).
    Incremented(Option<i64>),
    /// The stored value is not a NUL-terminated number.
    NotNumber,
    NotIn,
}

pub fn incr(reply: &Reply<'_>) -> Result<Incr, Error> {
    match reply.reply_code() {
        Some(ReplyCode::Ok) => Ok(Incr::Incremented(reply.incr_value())),
        Some(ReplyCode::NoMatch) => Ok(Incr::NotNumber),
        Some(ReplyCode::NotIn) => Ok(Incr::NotIn),
        _ => Err(unexpected(reply)),
    }
}

/// STATS: the counter bytes (8 each, network order).
pub fn counters<'a>(reply: &Reply<'a>) -> Result<&'a [u8], Error> {
    match reply.reply_code() {
        Some(ReplyCode::Ok) => Ok(reply.stats_bytes()?),
        _ => Err(unexpected(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u32, payload: &[u8]) -> Reply<'_> {
        Reply {
            id: 1,
            code,
            payload,
        }
    }

    #[test]
    fn ok_to_get_without_a_value_is_an_error_not_leftover_bytes() {
        assert!(matches!(value(&reply(0x803, &[])), Err(Error::BadReply(_))));
    }

    #[test]
    fn get_value_is_limited_to_its_size_field() {
        let r = reply(0x801, &[0, 0, 0, 2, b'a', b'b', b'c']);
        assert_eq!(value(&r).unwrap(), Some(&b"ab"[..]));
    }

    #[test]
    fn error_replies_carry_the_servers_error_code() {
        let r = reply(0x800, &[0, 0, 1, 7]);
        assert!(matches!(stored(&r), Err(Error::Server(0x107))));
        assert!(matches!(
            deleted(&reply(0x805, &[])),
            Err(Error::UnexpectedReply(0x805))
        ));
    }

    #[test]
    fn cache_miss_is_not_a_key_walk_answer() {
        assert!(key(&reply(0x802, &[])).is_err());
        assert_eq!(value(&reply(0x802, &[])).unwrap(), None);
    }

    #[test]
    fn incr_value_only_when_the_payload_has_the_expected_shape() {
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&99i64.to_be_bytes());
        assert_eq!(
            incr(&reply(0x803, &p)).unwrap(),
            Incr::Incremented(Some(99))
        );
        assert_eq!(incr(&reply(0x803, &[])).unwrap(), Incr::Incremented(None));
        p.push(0);
        assert_eq!(incr(&reply(0x803, &p)).unwrap(), Incr::Incremented(None));
    }
}
