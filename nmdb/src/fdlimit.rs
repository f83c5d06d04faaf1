//! The open-file limit, raised to what the connection limit needs.

/// Descriptors kept for everything but client connections: the database's
/// files, listeners, the log.
const RESERVED_FDS: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` so that `max_connections` fit (never
/// above the hard limit, never lowered). Returns the number of
/// connections the limit allows, which may be fewer than asked.
pub fn fit_connections(max_connections: usize) -> usize {
    let wanted = max_connections as u64 + RESERVED_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return max_connections;
    }
    if lim.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    let fits = lim.rlim_cur.saturating_sub(RESERVED_FDS) as usize;
    fits.min(max_connections)
}
