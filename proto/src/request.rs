//! Requests: the 8-byte header, the typed request, and parse / compose.
//!
//! Parsing checks every declared size against the limits and against the
//! bytes actually present before slicing, so a hostile message can neither
//! make us read past its end nor allocate. Bytes after the last declared
//! field are ignored, as the original does.

use crate::codes::*;
use crate::{be_u32, be_u64};

/// The fixed part of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 28-bit request id, echoed in the reply.
    pub id: u32,
    /// Raw request code (may be unknown).
    pub code: u16,
    /// Raw flags; bits other than [`FLAGS_CACHE_ONLY`] and [`FLAGS_SYNC`]
    /// are ignored.
    pub flags: u16,
}

impl Header {
    pub fn cache_only(&self) -> bool {
        self.flags & FLAGS_CACHE_ONLY != 0
    }

    pub fn sync(&self) -> bool {
        self.flags & FLAGS_SYNC != 0
    }
}

/// A well-formed request; byte fields borrow from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Get {
        key: &'a [u8],
    },
    Set {
        key: &'a [u8],
        value: &'a [u8],
    },
    Del {
        key: &'a [u8],
    },
    Cas {
        key: &'a [u8],
        old: &'a [u8],
        new: &'a [u8],
    },
    Incr {
        key: &'a [u8],
        delta: i64,
    },
    Stats,
    FirstKey,
    NextKey {
        key: &'a [u8],
    },
}

/// Why a message is not a usable request. Every variant but `TooShort`
/// carries the id to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than a header: there is no id to reply to.
    TooShort,
    /// The version field is not [`PROTO_VER`] (reply `ERR_VER`).
    Version { id: u32 },
    /// Unknown request code (reply `ERR_UNKREQ`).
    Unknown { id: u32 },
    /// Declared sizes over the limits or past the end (reply `ERR_BROKEN`).
    Broken { id: u32, code: RequestCode },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort => write!(f, "message shorter than a request header"),
            Self::Version { id } => write!(f, "request {id}: unsupported protocol version"),
            Self::Unknown { id } => write!(f, "request {id}: unknown request code"),
            Self::Broken { id, code } => write!(f, "request {id} ({code:?}): malformed sizes"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads the header of `msg` without looking at the version.
pub fn parse_header(msg: &[u8]) -> Option<(u32, Header)> {
    let word = be_u32(msg, 0)?;
    let code = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    let flags = u16::from_be_bytes([*msg.get(6)?, *msg.get(7)?]);
    Some((
        word >> 28,
        Header {
            id: word & ID_MASK,
            code,
            flags,
        },
    ))
}

/// A cursor over the payload that hands out declared-size fields only when
/// they are present.
struct Fields<'a> {
    payload: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn size(&mut self) -> Option<usize> {
        let v = be_u32(self.payload, self.at)?;
        self.at += 4;
        Some(v as usize)
    }

    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let out = self.payload.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
}

/// True when every size and their sum respect [`MAX_DATA_SIZE`].
fn sizes_within_limits(sizes: &[usize]) -> bool {
    let mut sum = 0usize;
    for &s in sizes {
        if s > MAX_DATA_SIZE {
            return false;
        }
        sum += s;
    }
    sum <= MAX_DATA_SIZE
}

fn parse_payload(code: RequestCode, payload: &[u8]) -> Option<Request<'_>> {
    let mut f = Fields { payload, at: 0 };
    Some(match code {
        RequestCode::Get | RequestCode::Del | RequestCode::NextKey => {
            let ksize = f.size()?;
            let key = f.bytes(ksize)?;
            match code {
                RequestCode::Get => Request::Get { key },
                RequestCode::Del => Request::Del { key },
                _ => Request::NextKey { key },
            }
        }
        RequestCode::Set => {
            let (ksize, vsize) = (f.size()?, f.size()?);
            if !sizes_within_limits(&[ksize, vsize]) {
                return None;
            }
            Request::Set {
                key: f.bytes(ksize)?,
                value: f.bytes(vsize)?,
            }
        }
        RequestCode::Cas => {
            let (ksize, osize, nsize) = (f.size()?, f.size()?, f.size()?);
            if !sizes_within_limits(&[ksize, osize, nsize]) {
                return None;
            }
            Request::Cas {
                key: f.bytes(ksize)?,
                old: f.bytes(osize)?,
                new: f.bytes(nsize)?,
            }
        }
        RequestCode::Incr => {
            let ksize = f.size()?;
            if !sizes_within_limits(&[ksize, 8]) {
                return None;
            }
            let key = f.bytes(ksize)?;
            let delta = be_u64(f.bytes(8)?, 0)? as i64;
            Request::Incr { key, delta }
        }
        RequestCode::Stats => Request::Stats,
        RequestCode::FirstKey => Request::FirstKey,
    })
}

/// Parses one whole message (a datagram, or a TCP frame without its prefix).
pub fn parse(msg: &[u8]) -> Result<(Header, Request<'_>), ParseError> {
    let (version, header) = parse_header(msg).ok_or(ParseError::TooShort)?;
    let id = header.id;
    if version != PROTO_VER {
        return Err(ParseError::Version { id });
    }
    let code = RequestCode::from_u16(header.code).ok_or(ParseError::Unknown { id })?;
    let payload = &msg[REQUEST_HEADER_LEN..];
    let request = parse_payload(code, payload).ok_or(ParseError::Broken { id, code })?;
    Ok((header, request))
}

impl Request<'_> {
    pub fn code(&self) -> RequestCode {
        match self {
            Self::Get { .. } => RequestCode::Get,
            Self::Set { .. } => RequestCode::Set,
            Self::Del { .. } => RequestCode::Del,
            Self::Cas { .. } => RequestCode::Cas,
            Self::Incr { .. } => RequestCode::Incr,
            Self::Stats => RequestCode::Stats,
            Self::FirstKey => RequestCode::FirstKey,
            Self::NextKey { .. } => RequestCode::NextKey,
        }
    }

    /// The key this request is about, if any.
    pub fn key(&self) -> Option<&[u8]> {
        match *self {
            Self::Get { key }
            | Self::Set { key, .. }
            | Self::Del { key }
            | Self::Cas { key, .. }
            | Self::Incr { key, .. }
            | Self::NextKey { key } => Some(key),
            Self::Stats | Self::FirstKey => None,
        }
    }

    /// Size of the encoded message, header included.
    pub fn encoded_len(&self) -> usize {
        REQUEST_HEADER_LEN
            + match self {
                Self::Get { key } | Self::Del { key } | Self::NextKey { key } => 4 + key.len(),
                Self::Set { key, value } => 8 + key.len() + value.len(),
                Self::Cas { key, old, new } => 12 + key.len() + old.len() + new.len(),
                Self::Incr { key, .. } => 4 + key.len() + 8,
                Self::Stats | Self::FirstKey => 0,
            }
    }

    /// Appends the request behind its TCP length prefix, as
    /// [`Request::encode`] otherwise.
    pub fn encode_framed(&self, id: u32, flags: u16, out: &mut Vec<u8>) {
        let start = crate::frame::begin_frame(out);
        self.encode(id, flags, out);
        crate::frame::end_frame(out, start);
    }

    /// Appends the message (no TCP prefix) to `out`. The caller is
    /// responsible for sizes fitting the protocol limits; `id` is masked to
    /// 28 bits.
    pub fn encode(&self, id: u32, flags: u16, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&((PROTO_VER << 28) | (id & ID_MASK)).to_be_bytes());
        out.extend_from_slice(&(self.code() as u16).to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        let size =
            |out: &mut Vec<u8>, s: &[u8]| out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        match *self {
            Self::Get { key } | Self::Del { key } | Self::NextKey { key } => {
                size(out, key);
                out.extend_from_slice(key);
            }
            Self::Set { key, value } => {
                size(out, key);
                size(out, value);
                out.extend_from_slice(key);
                out.extend_from_slice(value);
            }
            Self::Cas { key, old, new } => {
                size(out, key);
                size(out, old);
                size(out, new);
                out.extend_from_slice(key);
                out.extend_from_slice(old);
                out.extend_from_slice(new);
            }
            Self::Incr { key, delta } => {
                size(out, key);
                out.extend_from_slice(key);
                out.extend_from_slice(&delta.to_be_bytes());
            }
            Self::Stats | Self::FirstKey => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_a_cache_get_as_the_original_library_sends_it() {
        let msg = hex("1000000101010001000000026730");
        let (h, r) = parse(&msg).unwrap();
        assert_eq!(h.id, 1);
        assert!(h.cache_only() && !h.sync());
        assert_eq!(r, Request::Get { key: b"g0" });
    }

    #[test]
    fn every_request_round_trips_through_encode_and_parse() {
        let reqs = [
            Request::Get { key: b"k" },
            Request::Set {
                key: b"k",
                value: b"value",
            },
            Request::Del { key: b"" },
            Request::Cas {
                key: b"k",
                old: b"a",
                new: b"bb",
            },
            Request::Incr {
                key: b"n",
                delta: -100,
            },
            Request::Stats,
            Request::FirstKey,
            Request::NextKey { key: b"alpha" },
        ];
        for r in reqs {
            let mut out = Vec::new();
            r.encode(0x0abc_def1, 3, &mut out);
            assert_eq!(out.len(), r.encoded_len());
            let (h, parsed) = parse(&out).unwrap();
            assert_eq!((h.id, h.flags, parsed), (0x0abc_def1, 3, r));
        }
    }

    #[test]
    fn version_other_than_one_is_rejected_with_the_id() {
        let msg = hex("20abcdef01010001000000016b");
        assert_eq!(parse(&msg), Err(ParseError::Version { id: 0x0abcdef }));
    }

    #[test]
    fn unknown_codes_are_rejected_with_the_id() {
        for code in ["0000", "0100", "0109", "0201", "0803", "ffff"] {
            let msg = hex(&format!("10000005{code}0000000000016b"));
            assert_eq!(parse(&msg), Err(ParseError::Unknown { id: 5 }));
        }
    }

    #[test]
    fn header_only_get_is_broken_not_read_past_the_end() {
        let msg = hex("1000000301010001");
        assert!(matches!(parse(&msg), Err(ParseError::Broken { id: 3, .. })));
    }

    #[test]
    fn key_running_past_the_message_is_broken() {
        // GET ksize = payload size: the original reads 4 bytes past the end.
        let msg = hex("10000003010100010000000566");
        assert!(matches!(parse(&msg), Err(ParseError::Broken { .. })));
    }

    #[test]
    fn set_with_truncated_value_is_broken() {
        let msg = hex("1000000301020000000000030000000a6b65797661");
        assert!(matches!(parse(&msg), Err(ParseError::Broken { .. })));
    }

    #[test]
    fn incr_with_seven_increment_bytes_is_broken() {
        let msg = hex("1000000301050000000000016b00000000000000");
        assert!(matches!(parse(&msg), Err(ParseError::Broken { .. })));
    }

    #[test]
    fn size_sum_over_the_limit_is_broken_even_when_bytes_are_present() {
        let mut msg = Vec::new();
        Request::Set {
            key: &[0; 40000],
            value: &[0; 40000],
        }
        .encode(1, 0, &mut msg);
        assert!(matches!(parse(&msg), Err(ParseError::Broken { .. })));
    }

    #[test]
    fn huge_declared_sizes_do_not_overflow() {
        let msg = hex("100000030104000000ffffffffffffffffffffffff");
        assert!(matches!(parse(&msg), Err(ParseError::Broken { .. })));
        let msg = hex("1000000301010000ffffffff6b");
        assert!(matches!(parse(&msg), Err(ParseError::Broken { .. })));
    }

    #[test]
    fn trailing_bytes_after_the_last_field_are_ignored() {
        let msg = hex("10000003010700006a756e6b");
        assert_eq!(parse(&msg).unwrap().1, Request::FirstKey);
        let msg = hex("1000000101010000000000016b7878");
        assert_eq!(parse(&msg).unwrap().1, Request::Get { key: b"k" });
    }

    #[test]
    fn short_messages_have_no_id() {
        for len in 0..8 {
            assert_eq!(parse(&[0x10; 8][..len]), Err(ParseError::TooShort));
        }
    }

    #[test]
    fn parse_never_panics_on_any_short_prefix_of_valid_messages() {
        let mut msg = Vec::new();
        Request::Cas {
            key: b"key",
            old: b"old",
            new: b"new",
        }
        .encode(7, 0, &mut msg);
        for len in 0..msg.len() {
            let _ = parse(&msg[..len]);
        }
    }
}
