//! The 23 counters of a STATS reply, in wire order.
//!
//! Exactly these 23: the original library's `nmdb_stats` fails when servers
//! return different numbers of counters, so appending counters would break
//! fleets that mix servers.

/// Index of each counter in the STATS reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Counter {
    CacheGet,
    CacheSet,
    CacheDel,
    CacheCas,
    CacheIncr,
    DbGet,
    DbSet,
    DbDel,
    DbCas,
    DbIncr,
    CacheHits,
    CacheMisses,
    DbHits,
    DbMisses,
    MsgTipc,
    MsgTcp,
    MsgUdp,
    MsgSctp,
    NetVersionMismatch,
    NetBrokenReq,
    NetUnkReq,
    DbFirstKey,
    DbNextKey,
}

/// Number of counters in a STATS reply.
pub const NUM_COUNTERS: usize = 23;

/// Counter names as `nmdb-stats` prints them, in wire order.
pub const COUNTER_NAMES: [&str; NUM_COUNTERS] = [
    "cache_get",
    "cache_set",
    "cache_del",
    "cache_cas",
    "cache_incr",
    "db_get",
    "db_set",
    "db_del",
    "db_cas",
    "db_incr",
    "cache_hits",
    "cache_misses",
    "db_hits",
    "db_misses",
    "msg_tipc",
    "msg_tcp",
    "msg_udp",
    "msg_sctp",
    "net_version_mismatch",
    "net_broken_req",
    "net_unk_req",
    "db_firstkey",
    "db_nextkey",
];

impl Counter {
    pub fn name(self) -> &'static str {
        COUNTER_NAMES[self as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_counter_index_matches_the_count() {
        assert_eq!(Counter::DbNextKey as usize, NUM_COUNTERS - 1);
        assert_eq!(Counter::DbHits.name(), "db_hits");
        assert_eq!(Counter::MsgTcp.name(), "msg_tcp");
    }
}
