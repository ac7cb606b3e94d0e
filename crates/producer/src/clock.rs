//! Reading the time once per published event.

use std::time::{Duration, Instant, SystemTime};

/// Reads the time once per event of a batch. The monotonic reading times the delivery
/// (`fanout_produce_duration_seconds`); the wall-clock time for `ce_time` and the event id is
/// derived from it and an anchor, instead of reading the system clock a second time (each
/// reading costs as much as a third of building the envelope).
pub(crate) struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    /// Re-anchored after this long, so the wall-clock times follow any adjustment of the system
    /// clock (NTP slews by at most 0.05%, i.e. under 0.5 ms per second).
    const ANCHOR_FOR: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self { wall: SystemTime::now(), mono: Instant::now() }
    }

    /// The current monotonic and wall-clock times.
    pub(crate) fn now(&mut self) -> (Instant, SystemTime) {
        let mono = Instant::now();
        let since = mono.saturating_duration_since(self.mono);
        if since > Self::ANCHOR_FOR {
            *self = Self { wall: SystemTime::now(), mono };
            return (mono, self.wall);
        }
        (mono, self.wall + since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_follows_the_system_clock() {
        let mut clock = Clock::new();
        let before = SystemTime::now();
        let (_, derived) = clock.now();
        let after = SystemTime::now();
        // Derived from an anchor a moment ago: within the readings around it, give or take the
        // rounding of two clocks.
        let slack = Duration::from_millis(5);
        assert!(
            derived + slack >= before && derived <= after + slack,
            "{derived:?} not in [{before:?}, {after:?}]"
        );
    }
}
