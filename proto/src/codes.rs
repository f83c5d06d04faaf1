//! Protocol constants: version, request, reply and error codes, flags,
//! limits and default addresses.

/// The protocol version carried in the top 4 bits of every request.
pub const PROTO_VER: u32 = 1;

/// Size of a request header: version + id (4), request code (2), flags (2).
pub const REQUEST_HEADER_LEN: usize = 8;
/// Size of a reply header: id (4), reply code (4).
pub const REPLY_HEADER_LEN: usize = 8;

/// Request ids are 28 bits wide; the top 4 bits of the first word hold the
/// version.
pub const ID_MASK: u32 = 0x0fff_ffff;

/// Largest key, value, and sum of all the sizes of one request.
pub const MAX_DATA_SIZE: usize = 65536;
/// Largest message (TCP frame including its 4-byte length prefix). TIPC's
/// message limit is what fixed it.
pub const MAX_MSG_SIZE: usize = 65536;
/// Largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP).
pub const MAX_UDP_MSG_SIZE: usize = 65507;

/// TIPC service type every nmdb server binds.
pub const TIPC_SERVER_TYPE: u32 = 26001;
/// Default TIPC instance ("port").
pub const DEFAULT_TIPC_PORT: u32 = 10;
/// Default TCP, UDP and SCTP port.
pub const DEFAULT_INET_PORT: u16 = 26010;

/// Request codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RequestCode {
    Get = 0x101,
    Set = 0x102,
    Del = 0x103,
    Cas = 0x104,
    Incr = 0x105,
    Stats = 0x106,
    FirstKey = 0x107,
    NextKey = 0x108,
}

impl RequestCode {
    pub fn from_u16(code: u16) -> Option<Self> {
        Some(match code {
            0x101 => Self::Get,
            0x102 => Self::Set,
            0x103 => Self::Del,
            0x104 => Self::Cas,
            0x105 => Self::Incr,
            0x106 => Self::Stats,
            0x107 => Self::FirstKey,
            0x108 => Self::NextKey,
            _ => return None,
        })
    }
}

/// Touch only the cache, never the database (GET, SET, DEL, CAS, INCR).
pub const FLAGS_CACHE_ONLY: u16 = 1;
/// Reply only once the database applied the change (SET, DEL).
pub const FLAGS_SYNC: u16 = 2;

/// Reply codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ReplyCode {
    Err = 0x800,
    CacheHit = 0x801,
    CacheMiss = 0x802,
    Ok = 0x803,
    NotIn = 0x804,
    NoMatch = 0x805,
}

impl ReplyCode {
    pub fn from_u32(code: u32) -> Option<Self> {
        Some(match code {
            0x800 => Self::Err,
            0x801 => Self::CacheHit,
            0x802 => Self::CacheMiss,
            0x803 => Self::Ok,
            0x804 => Self::NotIn,
            0x805 => Self::NoMatch,
            _ => return None,
        })
    }
}

/// Error codes, the payload of a `REP_ERR` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// The version field is not [`PROTO_VER`].
    Ver = 0x101,
    /// The server failed sending a reply (e.g. it would not fit a datagram).
    Send = 0x102,
    /// Malformed request: sizes or truncation.
    Broken = 0x103,
    /// Unknown request code.
    UnkReq = 0x104,
    /// Out of memory.
    Mem = 0x105,
    /// The database failed, or cannot do this (e.g. iterate).
    Db = 0x106,
    /// The server is read-only and the request would change data.
    ReadOnly = 0x107,
}

impl ErrorCode {
    pub fn from_u32(code: u32) -> Option<Self> {
        Some(match code {
            0x101 => Self::Ver,
            0x102 => Self::Send,
            0x103 => Self::Broken,
            0x104 => Self::UnkReq,
            0x105 => Self::Mem,
            0x106 => Self::Db,
            0x107 => Self::ReadOnly,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ver => "ERR_VER",
            Self::Send => "ERR_SEND",
            Self::Broken => "ERR_BROKEN",
            Self::UnkReq => "ERR_UNKREQ",
            Self::Mem => "ERR_MEM",
            Self::Db => "ERR_DB",
            Self::ReadOnly => "ERR_RO",
        }
    }
}
