//! How long one call may take, and the deadline that carries that limit
//! through connect, send and receive.
//!
//! The original library waited forever, so a lost UDP datagram or a dead
//! server hung the caller. Every call here gets one deadline when it starts;
//! every blocking step waits at most until then. These constants are the only
//! place the defaults live; `man libnmdb` quotes them and a test checks that
//! it does.

use std::time::{Duration, Instant};

/// Default limit for one call, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u32 = 5000;

/// Environment variable read by `nmdb_init()` to change the default.
pub const TIMEOUT_ENV: &str = "NMDB_TIMEOUT_MS";

/// Over datagram transports, a request that is safe to repeat is sent again
/// if no reply came within this long; the wait doubles after each resend up
/// to [`RESEND_MAX`].
pub const RESEND_FIRST: Duration = Duration::from_millis(100);
pub const RESEND_MAX: Duration = Duration::from_millis(1600);

/// The timeout a new handle starts with: `NMDB_TIMEOUT_MS` when it holds a
/// number of milliseconds (0 = wait forever), else the default.
pub fn initial_timeout_ms() -> u32 {
    parse_timeout(std::env::var(TIMEOUT_ENV).ok().as_deref())
}

/// The rule behind [`initial_timeout_ms`], apart from the environment.
pub fn parse_timeout(value: Option<&str>) -> u32 {
    value
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS)
}

/// A socket's receive timeout (`SO_RCVTIMEO`) as last set, so that a call
/// wanting the one already there (calls with the same timeout, the usual
/// case) makes no system call. A new socket has none (`None`: waits
/// forever), as does a new `ReadTimeout`.
#[derive(Debug, Default)]
pub struct ReadTimeout(Option<Duration>);

impl ReadTimeout {
    /// Gives the socket the timeout `wanted` through `set`, unless it has
    /// it already.
    pub fn arm(
        &mut self,
        wanted: Option<Duration>,
        set: impl FnOnce(Option<Duration>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if wanted != self.0 {
            set(wanted)?;
            self.0 = wanted;
        }
        Ok(())
    }
}

/// The deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// The moment a call must give up; `None` waits forever (timeout 0).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub fn after_ms(ms: u32) -> Self {
        Deadline((ms != 0).then(|| Instant::now() + Duration::from_millis(u64::from(ms))))
    }

    /// `d` from now.
    pub fn after(d: Duration) -> Self {
        Deadline(Some(Instant::now() + d))
    }

    pub fn never() -> Self {
        Deadline(None)
    }

    /// Time left: `Ok(None)` for no limit, `Err(Expired)` once it has passed.
    pub fn remaining(&self) -> Result<Option<Duration>, Expired> {
        match self.0 {
            None => Ok(None),
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(Expired),
            },
        }
    }

    /// A socket receive timeout (`SO_RCVTIMEO`) for a read that must end
    /// by the deadline: what is left in whole milliseconds, rounded down so
    /// that successive calls with the same timeout ask for the same value
    /// (and need not set it again), or exactly what is left under a
    /// millisecond. `Ok(None)`: no limit.
    pub fn read_timeout(&self) -> Result<Option<Duration>, Expired> {
        Ok(self.remaining()?.map(|left| match left.as_millis() {
            0 => left,
            ms => Duration::from_millis(ms as u64),
        }))
    }

    /// Milliseconds for `poll()`, rounded up so that a wait never ends just
    /// before the deadline and spins; -1 waits forever; `None` once passed.
    pub fn poll_ms(&self) -> Option<i32> {
        Some(match self.remaining().ok()? {
            None => -1,
            Some(d) => {
                let ms = d.as_micros().div_ceil(1000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_value_must_be_a_plain_number_of_milliseconds() {
        assert_eq!(parse_timeout(None), DEFAULT_TIMEOUT_MS);
        assert_eq!(parse_timeout(Some("250")), 250);
        assert_eq!(parse_timeout(Some(" 0 ")), 0);
        assert_eq!(parse_timeout(Some("1.5")), DEFAULT_TIMEOUT_MS);
        assert_eq!(parse_timeout(Some("-3")), DEFAULT_TIMEOUT_MS);
        assert_eq!(parse_timeout(Some("")), DEFAULT_TIMEOUT_MS);
    }

    #[test]
    fn zero_timeout_never_expires() {
        let d = Deadline::after_ms(0);
        assert_eq!(d.remaining(), Ok(None));
        assert_eq!(d.poll_ms(), Some(-1));
    }

    #[test]
    fn passed_deadline_reports_expiry() {
        let d = Deadline::after_ms(1);
        std::thread::sleep(Duration::from_millis(3));
        assert!(d.remaining().is_err());
        assert_eq!(d.poll_ms(), None);
    }

    #[test]
    fn read_timeout_is_whole_milliseconds_left_rounded_down() {
        assert_eq!(Deadline::never().read_timeout(), Ok(None));
        let left = Deadline::after_ms(5000).read_timeout().unwrap().unwrap();
        assert!(left < Duration::from_millis(5000), "rounded down: {left:?}");
        assert_eq!(left.subsec_nanos() % 1_000_000, 0, "whole ms: {left:?}");
        let near = Deadline(Some(Instant::now() + Duration::from_micros(500)));
        let t = near.read_timeout().unwrap().unwrap();
        assert!(
            t > Duration::ZERO && t <= Duration::from_micros(500),
            "{t:?}"
        );
        let passed = Deadline(Some(Instant::now() - Duration::from_millis(1)));
        assert_eq!(passed.read_timeout(), Err(Expired));
    }

    #[test]
    fn a_read_timeout_is_set_only_when_it_changes() {
        let mut armed = ReadTimeout::default();
        let mut sets = Vec::new();
        let ms = |n| Some(Duration::from_millis(n));
        for wanted in [None, ms(99), ms(99), ms(4999), ms(4999), None] {
            armed
                .arm(wanted, |t| {
                    sets.push(t);
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(sets, [ms(99), ms(4999), None]);
        // A failed set is not taken for done.
        let failed = armed.arm(ms(7), |_| Err(std::io::Error::other("refused")));
        assert!(failed.is_err());
        armed
            .arm(ms(7), |t| {
                sets.push(t);
                Ok(())
            })
            .unwrap();
        assert_eq!(sets.last(), Some(&ms(7)));
    }

    #[test]
    fn poll_wait_is_rounded_up() {
        let d = Deadline::after(Duration::from_micros(1500));
        assert_eq!(d.poll_ms(), Some(2));
        let ms = Deadline::after_ms(10_000).poll_ms().unwrap();
        assert!((9_000..=10_000).contains(&ms), "{ms}");
    }
}
