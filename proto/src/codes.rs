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

/// Declares a `#[repr]` enum of wire codes with `ALL` (every variant, in
/// order) and `$from` (a code back to its variant), so each value is
/// written once, in the enum.
macro_rules! wire_codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $repr:ty, from $from:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:expr,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr($repr)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The variant a wire value stands for, if any.
            pub fn $from(code: $repr) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| *c as $repr == code)
            }
        }
    };
}

wire_codes! {
    /// Request codes.
    pub enum RequestCode: u16, from from_u16 {
        Get = 0x101,
        Set = 0x102,
        Del = 0x103,
        Cas = 0x104,
        Incr = 0x105,
        Stats = 0x106,
        FirstKey = 0x107,
        NextKey = 0x108,
    }
}

/// Touch only the cache, never the database (GET, SET, DEL, CAS, INCR).
pub const FLAGS_CACHE_ONLY: u16 = 1;
/// Reply only once the database applied the change (SET, DEL).
pub const FLAGS_SYNC: u16 = 2;

wire_codes! {
    /// Reply codes.
    pub enum ReplyCode: u32, from from_u32 {
        Err = 0x800,
        CacheHit = 0x801,
        CacheMiss = 0x802,
        Ok = 0x803,
        NotIn = 0x804,
        NoMatch = 0x805,
    }
}

wire_codes! {
    /// Error codes, the payload of a `REP_ERR` reply.
    pub enum ErrorCode: u32, from from_u32 {
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
}

impl ErrorCode {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_back_to_its_variant_and_nothing_else_does() {
        for &c in RequestCode::ALL {
            assert_eq!(RequestCode::from_u16(c as u16), Some(c));
        }
        for &c in ReplyCode::ALL {
            assert_eq!(ReplyCode::from_u32(c as u32), Some(c));
        }
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u32(c as u32), Some(c));
        }
        assert_eq!(RequestCode::ALL.len(), 8);
        assert_eq!(RequestCode::from_u16(0x109), None);
        assert_eq!(ReplyCode::from_u32(0x806), None);
        assert_eq!(ErrorCode::from_u32(0x100), None);
    }
}
