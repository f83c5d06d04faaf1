//! Pacing for log lines that an overload could otherwise repeat thousands
//! of times a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Says yes at most once per wall-clock second, across threads.
#[derive(Debug, Default)]
pub struct EverySecond {
    last: AtomicU64,
}

impl EverySecond {
    pub fn ready(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        now != last
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_yes_once_within_a_second() {
        let t = EverySecond::default();
        let yes = (0..1000).filter(|_| t.ready()).count();
        // Two if the loop straddled a second boundary.
        assert!((1..=2).contains(&yes), "{yes}");
    }
}
