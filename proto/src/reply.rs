//! Replies: compose (server side) and parse (client side).
//!
//! A reply is `id(4) code(4)` followed by a payload whose shape depends on
//! the request: nothing, an error code, `size(4)` + bytes, or the INCR and
//! STATS forms. Composers append to a caller's buffer so the server can reuse
//! one buffer per connection.

use crate::codes::*;
use crate::stats::NUM_COUNTERS;
use crate::{be_u32, be_u64};

fn put_header(out: &mut Vec<u8>, id: u32, code: ReplyCode) {
    out.extend_from_slice(&(id & ID_MASK).to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

/// A reply with no payload (`REP_OK` for writes, `REP_NOTIN`, ...).
pub fn put_code(out: &mut Vec<u8>, id: u32, code: ReplyCode) {
    put_header(out, id, code);
}

/// `REP_ERR` with its error code.
pub fn put_error(out: &mut Vec<u8>, id: u32, err: ErrorCode) {
    put_header(out, id, ReplyCode::Err);
    out.extend_from_slice(&(err as u32).to_be_bytes());
}

/// A reply carrying `size(4)` + `data`: a value (GET) or a key (FIRSTKEY,
/// NEXTKEY).
pub fn put_data(out: &mut Vec<u8>, id: u32, code: ReplyCode, data: &[u8]) {
    out.reserve(REPLY_HEADER_LEN + 4 + data.len());
    put_header(out, id, code);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// The reply to a successful INCR: `REP_OK`, `00 00 00 08`, new value.
pub fn put_incr(out: &mut Vec<u8>, id: u32, value: i64) {
    put_header(out, id, ReplyCode::Ok);
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
}

/// Size of the STATS payload after its own size field.
pub const STATS_PAYLOAD_LEN: usize = NUM_COUNTERS * 8;

/// The reply to STATS: `REP_OK`, size (184), 23 counters.
pub fn put_stats(out: &mut Vec<u8>, id: u32, counters: &[u64; NUM_COUNTERS]) {
    put_header(out, id, ReplyCode::Ok);
    out.extend_from_slice(&(STATS_PAYLOAD_LEN as u32).to_be_bytes());
    for c in counters {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// Every reply the server can send, before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A reply with no payload.
    Code(ReplyCode),
    /// `REP_ERR` with its error code.
    Error(ErrorCode),
    /// `size(4)` + bytes: a value or a key.
    Data(ReplyCode, &'a [u8]),
    /// The new value after INCR.
    Incr(i64),
    /// The STATS counters.
    Stats(&'a [u64; NUM_COUNTERS]),
}

impl Answer<'_> {
    /// Size of the encoded reply, header included.
    pub fn encoded_len(&self) -> usize {
        REPLY_HEADER_LEN
            + match self {
                Self::Code(_) => 0,
                Self::Error(_) => 4,
                Self::Data(_, d) => 4 + d.len(),
                Self::Incr(_) => 12,
                Self::Stats(_) => 4 + STATS_PAYLOAD_LEN,
            }
    }

    /// Appends the reply to `out` (no TCP prefix).
    pub fn encode(&self, id: u32, out: &mut Vec<u8>) {
        match *self {
            Self::Code(code) => put_code(out, id, code),
            Self::Error(err) => put_error(out, id, err),
            Self::Data(code, data) => put_data(out, id, code, data),
            Self::Incr(v) => put_incr(out, id, v),
            Self::Stats(counters) => put_stats(out, id, counters),
        }
    }
}

/// A parsed reply: the header, and the payload still raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    pub id: u32,
    /// Raw reply code; see [`ReplyCode::from_u32`].
    pub code: u32,
    pub payload: &'a [u8],
}

/// Why a reply cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// Shorter than a reply header.
    TooShort,
    /// The payload does not hold what its size field announces.
    Truncated,
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort => write!(f, "reply shorter than its header"),
            Self::Truncated => write!(f, "reply payload shorter than announced"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl<'a> Reply<'a> {
    /// Splits a whole reply message (no TCP prefix) into header and payload.
    pub fn parse(msg: &'a [u8]) -> Result<Self, ReplyError> {
        let id = be_u32(msg, 0).ok_or(ReplyError::TooShort)?;
        let code = be_u32(msg, 4).ok_or(ReplyError::TooShort)?;
        Ok(Reply {
            id,
            code,
            payload: &msg[REPLY_HEADER_LEN..],
        })
    }

    pub fn reply_code(&self) -> Option<ReplyCode> {
        ReplyCode::from_u32(self.code)
    }

    /// The error code of a `REP_ERR` reply.
    pub fn error_code(&self) -> Option<u32> {
        if self.code != ReplyCode::Err as u32 {
            return None;
        }
        be_u32(self.payload, 0)
    }

    /// The `size(4)` + bytes payload of a GET, FIRSTKEY or NEXTKEY reply.
    pub fn data(&self) -> Result<&'a [u8], ReplyError> {
        let size = be_u32(self.payload, 0).ok_or(ReplyError::Truncated)? as usize;
        self.payload
            .get(4..4usize.checked_add(size).ok_or(ReplyError::Truncated)?)
            .ok_or(ReplyError::Truncated)
    }

    /// The new value of an INCR reply: the payload must be exactly the size
    /// field and 8 bytes (the original library ignores the size's value).
    pub fn incr_value(&self) -> Option<i64> {
        (self.payload.len() == 12).then(|| be_u64(self.payload, 4).map(|v| v as i64))?
    }

    /// The counter bytes of a STATS reply (8 bytes each, network order):
    /// everything after the size field, limited to what the size announces.
    pub fn stats_bytes(&self) -> Result<&'a [u8], ReplyError> {
        let bytes = self.data()?;
        if bytes.len() % 8 != 0 {
            return Err(ReplyError::Truncated);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_has_the_documented_bytes() {
        let mut out = Vec::new();
        put_error(&mut out, 3, ErrorCode::Broken);
        assert_eq!(out, [0, 0, 0, 3, 0, 0, 8, 0, 0, 0, 1, 3]);
        let r = Reply::parse(&out).unwrap();
        assert_eq!(r.error_code(), Some(0x103));
    }

    #[test]
    fn data_reply_round_trips() {
        let mut out = Vec::new();
        put_data(&mut out, 0x0fff_ffff, ReplyCode::CacheHit, b"v0");
        assert_eq!(
            out.len(),
            Answer::Data(ReplyCode::CacheHit, b"v0").encoded_len()
        );
        let r = Reply::parse(&out).unwrap();
        assert_eq!(
            (r.id, r.reply_code()),
            (0x0fff_ffff, Some(ReplyCode::CacheHit))
        );
        assert_eq!(r.data(), Ok(&b"v0"[..]));
    }

    #[test]
    fn data_reply_announcing_more_than_present_is_truncated() {
        let msg = [0, 0, 0, 1, 0, 0, 8, 3, 0, 0, 0, 9, b'x'];
        assert_eq!(
            Reply::parse(&msg).unwrap().data(),
            Err(ReplyError::Truncated)
        );
        let msg = [0, 0, 0, 1, 0, 0, 8, 3];
        assert_eq!(
            Reply::parse(&msg).unwrap().data(),
            Err(ReplyError::Truncated)
        );
    }

    #[test]
    fn incr_reply_carries_the_new_value() {
        let mut out = Vec::new();
        put_incr(&mut out, 1, -58);
        let r = Reply::parse(&out).unwrap();
        assert_eq!(r.incr_value(), Some(-58));
    }

    #[test]
    fn answer_encoded_len_matches_the_encoding() {
        let counters = [7u64; NUM_COUNTERS];
        for a in [
            Answer::Code(ReplyCode::NotIn),
            Answer::Error(ErrorCode::ReadOnly),
            Answer::Data(ReplyCode::Ok, b"abc"),
            Answer::Incr(42),
            Answer::Stats(&counters),
        ] {
            let mut out = Vec::new();
            a.encode(1, &mut out);
            assert_eq!(out.len(), a.encoded_len(), "{a:?}");
        }
    }

    #[test]
    fn stats_reply_is_184_bytes_of_counters() {
        let mut counters = [0u64; NUM_COUNTERS];
        counters[0] = 5;
        let mut out = Vec::new();
        put_stats(&mut out, 99, &counters);
        assert_eq!(out.len(), 8 + 4 + 184);
        let r = Reply::parse(&out).unwrap();
        assert_eq!(r.stats_bytes().unwrap().len(), 184);
    }
}
